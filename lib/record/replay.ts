/**
 * Replays the client side of a recorded transcript against a live SMTP server and compares the
 * server's replies with the recorded ones.
 *
 * The transcript is first turned into a plan: client bytes sent between two recorded server
 * replies become one write (which keeps pipelined groups together), each recorded reply becomes
 * an expectation, and a `T` record becomes a TLS upgrade of the socket. Redacted `!` lines are
 * regenerated from `credentials` (PLAIN, LOGIN, CRAM-MD5, XOAUTH2); without credentials the
 * whole AUTH exchange is left out and reported as skipped.
 */
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { Transcript } from './transcript';
import {
  REDACTED,
  ReplyAssembler,
  classifyCommand,
  enhancedCodeOf,
  isBodyTerminator,
  stripTerminator,
  terminatorOf,
  type Reply,
} from './smtp-lines';

export interface ReplayCredentials {
  username: string;
  /** The password (for XOAUTH2: the access token). */
  password: string;
}

export interface ReplayOptions {
  host: string;
  port: number;
  /** Limit for connecting, for each reply and for the TLS handshake. Default 10000 ms. */
  timeoutMs?: number;
  /** Used to regenerate redacted AUTH lines. */
  credentials?: ReplayCredentials;
  /**
   * `'codes'` (default): reply code and enhanced status code of each reply.
   * `'text'`: the whole reply text, minus what changes by design (queue ids, CRAM-MD5
   * challenges, timestamps, the greeting's host name).
   */
  compare?: 'codes' | 'text';
  /** SNI name for TLS. Default: `host` unless it is an IP address. */
  servername?: string;
}

export interface ReplayDifference {
  /** 0-based index of the recorded server reply (the greeting is 0). */
  index: number;
  /** The client command the reply answers, e.g. `RCPT TO:<a@b.example>`, or `(greeting)`. */
  command: string;
  expected: string;
  actual: string;
}

export interface ReplaySkip {
  /** Index of the first recorded reply that was not compared. */
  index: number;
  command: string;
  reason: string;
}

export interface ReplayReport {
  differences: ReplayDifference[];
  repliesCompared: number;
  /** True when no difference was found (skipped exchanges do not count as differences). */
  ok: boolean;
  /** AUTH exchanges left out because their redacted lines could not be regenerated. */
  skipped: ReplaySkip[];
  /** Why the replay stopped before the end of the transcript, if it did. */
  aborted?: string;
}

// ------------------------------------------------------------------ plan

interface Exchange {
  mechanism: string;
  command: string;
  initialResponse: boolean;
  redacted: boolean;
  /** A `!` line we cannot make sense of: never regenerable. */
  opaque: boolean;
  steps: number;
}

type Piece =
  | { kind: 'bytes'; data: Buffer; exchange?: Exchange; step?: number; term?: string }
  | { kind: 'auth'; prefix: string; term: string; exchange: Exchange }
  | { kind: 'sasl'; step: number; term: string; exchange: Exchange };

interface Expectation {
  index: number;
  reply: Reply;
  command: string;
  greeting: boolean;
  exchange?: Exchange;
}

type Action =
  | { kind: 'send'; pieces: Piece[] }
  | { kind: 'expect'; expect: Expectation }
  | { kind: 'tls'; index: number };

interface Plan {
  implicitTls: boolean;
  actions: Action[];
}

const MAX_LABEL = 200;
const REDACTED_AUTH_LINE = /^(AUTH[ \t]+[^ \t\r\n]+) <redacted>(\r?\n)?$/i;
const REDACTED_SASL_LINE = /^<redacted>(\r?\n)?$/;

function label(line: Buffer): string {
  const text = stripTerminator(line.toString('latin1'));
  return text.length > MAX_LABEL ? text.slice(0, MAX_LABEL) + '...' : text;
}

/** Turns a transcript into a list of writes, expected replies and TLS upgrades. */
function planReplay(transcript: Transcript): Plan {
  const actions: Action[] = [];
  const replies = new ReplyAssembler();
  const queue: Array<{ command: string; exchange?: Exchange }> = [];
  let implicitTls = false;
  let replyIndex = 0;
  let sentAnything = false;

  let context: 'command' | 'body' | 'raw' = 'command';
  let rawRemaining = 0;
  let lastReplyCode = 0;
  let authAwaitingReply = false;
  let dataAwaiting = false;
  let exchange: Exchange | null = null;
  let line: Buffer[] = [];
  let linePieces: Array<Extract<Piece, { kind: 'bytes' }>> = [];

  const send = (piece: Piece) => {
    sentAnything = true;
    const last = actions[actions.length - 1];
    if (last?.kind === 'send') last.pieces.push(piece);
    else actions.push({ kind: 'send', pieces: [piece] });
  };
  const inSasl = () => lastReplyCode === 334 || authAwaitingReply;
  const continuation = (): Exchange => {
    exchange ??= {
      mechanism: '?',
      command: 'AUTH',
      initialResponse: false,
      redacted: false,
      opaque: false,
      steps: 0,
    };
    exchange.steps++;
    return exchange;
  };

  const completeLine = () => {
    const bytes = Buffer.concat(line);
    const pieces = linePieces;
    line = [];
    linePieces = [];
    if (bytes.length === 0) return;
    if (context === 'body') {
      if (isBodyTerminator(bytes)) {
        context = 'command';
        queue.push({ command: 'DATA (end of message)' });
      }
      return;
    }
    if (inSasl()) {
      const ex = continuation();
      pieces.forEach((p) => (p.exchange = ex));
      if (pieces.length === 1) {
        pieces[0].step = ex.steps;
        pieces[0].term = terminatorOf(bytes);
      }
      queue.push({ command: `${ex.command} (response ${ex.steps})`, exchange: ex });
      return;
    }
    const command = classifyCommand(bytes.toString('latin1'));
    dataAwaiting = command.kind === 'data';
    if (command.kind === 'auth') {
      exchange = {
        mechanism: command.mechanism,
        command: command.initialResponse ? `${command.prefix} ...` : label(bytes),
        initialResponse: command.initialResponse,
        redacted: false,
        opaque: false,
        steps: 0,
      };
      authAwaitingReply = true;
      pieces.forEach((p) => (p.exchange = exchange!));
      queue.push({ command: exchange.command, exchange });
      return;
    }
    if (command.kind === 'bdat' && command.size > 0 && terminatorOf(bytes) !== '') {
      context = 'raw';
      rawRemaining = command.size;
    }
    queue.push({ command: label(bytes) });
  };

  const redactedLine = (data: Buffer) => {
    completeLine();
    const text = data.toString('latin1');
    const auth = REDACTED_AUTH_LINE.exec(text);
    if (auth && !inSasl()) {
      const info = classifyCommand(auth[1]);
      exchange = {
        mechanism: info.kind === 'auth' ? info.mechanism : '?',
        command: `${auth[1]} ${REDACTED}`,
        initialResponse: true,
        redacted: true,
        opaque: false,
        steps: 0,
      };
      authAwaitingReply = true;
      dataAwaiting = false;
      send({ kind: 'auth', prefix: auth[1], term: auth[2] ?? '', exchange });
      queue.push({ command: exchange.command, exchange });
      return;
    }
    const ex = continuation();
    ex.redacted = true;
    if (!REDACTED_SASL_LINE.test(text)) ex.opaque = true;
    send({ kind: 'sasl', step: ex.steps, term: terminatorOf(data), exchange: ex });
    queue.push({ command: `${ex.command} (response ${ex.steps})`, exchange: ex });
  };

  const clientBytes = (data: Buffer) => {
    let i = 0;
    while (i < data.length) {
      if (context === 'raw') {
        const take = Math.min(rawRemaining, data.length - i);
        send({ kind: 'bytes', data: data.subarray(i, i + take) });
        rawRemaining -= take;
        i += take;
        if (rawRemaining === 0) context = 'command';
        continue;
      }
      const nl = data.indexOf(0x0a, i);
      const stop = nl === -1 ? data.length : nl + 1;
      const piece: Extract<Piece, { kind: 'bytes' }> = { kind: 'bytes', data: data.subarray(i, stop) };
      send(piece);
      line.push(piece.data);
      linePieces.push(piece);
      i = stop;
      if (nl !== -1) completeLine();
    }
  };

  const serverBytes = (data: Buffer) => {
    for (const reply of replies.push(data)) {
      const entry = queue.shift();
      const greeting = replyIndex === 0 && !entry && !sentAnything;
      actions.push({
        kind: 'expect',
        expect: {
          index: replyIndex++,
          reply,
          command: entry?.command ?? (greeting ? '(greeting)' : '(unsolicited)'),
          greeting,
          exchange: entry?.exchange,
        },
      });
      lastReplyCode = reply.code;
      authAwaitingReply = false;
      if (reply.code === 354 && dataAwaiting) {
        dataAwaiting = false;
        context = 'body';
      }
      if (reply.code !== 334 && entry?.exchange && entry.exchange === exchange) exchange = null;
    }
  };

  for (const record of transcript.records) {
    switch (record.dir) {
      case 'C':
        clientBytes(record.data);
        break;
      case '!':
        redactedLine(record.data);
        break;
      case 'S':
        serverBytes(record.data);
        break;
      case 'T':
        completeLine();
        if (actions.length === 0) {
          implicitTls = true;
        } else {
          actions.push({ kind: 'tls', index: replyIndex });
        }
        context = 'command';
        rawRemaining = 0;
        lastReplyCode = 0;
        authAwaitingReply = false;
        dataAwaiting = false;
        exchange = null;
        break;
      case 'E':
        break;
    }
  }
  return { implicitTls, actions };
}

// ------------------------------------------------------------------ credentials

const SUPPORTED_MECHANISMS = new Set(['PLAIN', 'LOGIN', 'CRAM-MD5', 'XOAUTH2']);

function b64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

function canRegenerate(exchange: Exchange, credentials?: ReplayCredentials): boolean {
  if (!credentials || exchange.opaque || !SUPPORTED_MECHANISMS.has(exchange.mechanism)) return false;
  return !(exchange.mechanism === 'CRAM-MD5' && exchange.initialResponse);
}

function skipReason(exchange: Exchange, credentials?: ReplayCredentials): string {
  if (!credentials) return 'redacted credentials (pass credentials to replay this exchange)';
  if (exchange.opaque) return 'unrecognised redacted line';
  return `cannot regenerate redacted ${exchange.mechanism} credentials`;
}

function initialResponse(mechanism: string, { username, password }: ReplayCredentials): string {
  switch (mechanism) {
    case 'PLAIN':
      return b64(`\0${username}\0${password}`);
    case 'LOGIN':
      return b64(username);
    case 'XOAUTH2':
      return b64(`user=${username}\x01auth=Bearer ${password}\x01\x01`);
    default:
      throw new Error(`no initial response for ${mechanism}`);
  }
}

function challengeOf(reply: Reply | null): Buffer {
  const line = reply?.lines[reply.lines.length - 1] ?? '';
  return Buffer.from(line.slice(4).trim(), 'base64');
}

function saslResponse(
  exchange: Exchange,
  step: number,
  challenge: Reply | null,
  creds: ReplayCredentials,
): string {
  switch (exchange.mechanism) {
    case 'PLAIN':
      return step === 1 && !exchange.initialResponse ? initialResponse('PLAIN', creds) : '';
    case 'LOGIN': {
      const prompt = challengeOf(challenge).toString('utf8').toLowerCase();
      if (prompt.includes('user')) return b64(creds.username);
      if (prompt.includes('pass')) return b64(creds.password);
      const usernameSent = exchange.initialResponse || step > 1;
      return b64(usernameSent ? creds.password : creds.username);
    }
    case 'CRAM-MD5': {
      const digest = crypto.createHmac('md5', creds.password).update(challengeOf(challenge)).digest('hex');
      return b64(`${creds.username} ${digest}`);
    }
    case 'XOAUTH2':
      // After a failed XOAUTH2 the server sends a 334 with an error; the client answers empty.
      return step === 1 && !exchange.initialResponse ? initialResponse('XOAUTH2', creds) : '';
    default:
      throw new Error(`cannot answer ${exchange.mechanism}`);
  }
}

// ------------------------------------------------------------------ comparison

const MONTHS = 'Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec';
const TIMESTAMP_PATTERNS: RegExp[] = [
  // RFC 5322 dates: "Tue, 7 May 2024 10:00:00 +0000 (UTC)"
  new RegExp(
    `(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\\s+)?\\d{1,2}\\s+(?:${MONTHS})\\s+\\d{4}\\s+\\d{1,2}:\\d{2}(?::\\d{2})?(?:\\s+[+-]\\d{4})?(?:\\s+\\([A-Za-z]+\\))?`,
    'g',
  ),
  // ISO 8601: "2024-05-07T10:00:00.123Z"
  /\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?/g,
  // Bare clock times: "10:00:00"
  /\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b/g,
];

function normalizeText(expect: Expectation, reply: Reply): string {
  if (reply.code === 334 && expect.exchange?.mechanism === 'CRAM-MD5') return '334 <challenge>';
  return reply.lines
    .map((line, i) => {
      let text = line;
      if (i === 0 && expect.greeting) text = text.replace(/^(\d{3}[ -])\S+/, '$1<host>');
      text = text.replace(/(queued as) \S+/gi, '$1 <id>');
      for (const pattern of TIMESTAMP_PATTERNS) text = text.replace(pattern, '<time>');
      return text;
    })
    .join('\n');
}

function describeCodes(reply: Reply): string {
  if (reply.code < 0) return `(not a reply) ${reply.lines[reply.lines.length - 1]}`;
  const enhanced = enhancedCodeOf(reply);
  return enhanced ? `${reply.code} ${enhanced}` : String(reply.code);
}

// ------------------------------------------------------------------ connection

type NextReply = { reply: Reply } | { error: string };

class LiveConnection {
  private replies: Reply[] = [];
  private assembler = new ReplyAssembler();
  private wake: (() => void) | null = null;
  private ended: string | null = null;
  private closed = false;
  private detachSocket: () => void = () => {};

  private constructor(
    private socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    this.attach(socket);
  }

  static open(options: ReplayOptions, implicitTls: boolean, timeoutMs: number): Promise<LiveConnection> {
    const { host, port } = options;
    return new Promise((resolve, reject) => {
      const socket = implicitTls
        ? tls.connect({ host, port, rejectUnauthorized: false, servername: sniName(options) })
        : net.connect({ host, port });
      socket.on('error', () => {}); // reported through `fail` / the connection's own handler
      const timer = setTimeout(() => fail(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`cannot connect to ${host}:${port}: ${err.message}`));
      };
      socket.once('error', fail);
      socket.once(implicitTls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', fail);
        socket.setNoDelay(true);
        resolve(new LiveConnection(socket, timeoutMs));
      });
    });
  }

  private attach(socket: net.Socket): void {
    const onData = (chunk: Buffer) => {
      this.replies.push(...this.assembler.push(chunk));
      this.notify();
    };
    const onEnd = () => this.finish('connection closed by the server');
    const onError = (err: Error) => this.finish(`connection error: ${err.message}`);
    const onClose = () => {
      this.closed = true;
      this.finish('connection closed');
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    this.detachSocket = () => {
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
    };
  }

  private finish(reason: string): void {
    this.ended ??= reason;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  write(data: Buffer): void {
    if (data.length > 0 && !this.ended) this.socket.write(data);
  }

  async nextReply(): Promise<NextReply> {
    for (;;) {
      const reply = this.replies.shift();
      if (reply) return { reply };
      if (this.ended) return { error: `(${this.ended})` };
      const woken = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          this.wake = null;
          resolve(false);
        }, this.timeoutMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
      if (!woken) return { error: `(no reply within ${this.timeoutMs} ms)` };
    }
  }

  /** Upgrades the plain socket to TLS (after STARTTLS + 220). */
  async upgradeTls(options: ReplayOptions): Promise<void> {
    if (this.ended) throw new Error(this.ended);
    // Anything the server sent after its 220 must not be trusted across the upgrade (RFC 3207).
    this.replies = [];
    this.assembler = new ReplyAssembler();
    this.detachSocket();
    const plain = this.socket;
    plain.on('error', () => {}); // errors surface on the TLS socket
    const secure = tls.connect({ socket: plain, rejectUnauthorized: false, servername: sniName(options) });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`TLS handshake timed out after ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      const done = (err?: Error) => {
        clearTimeout(timer);
        secure.removeListener('error', done);
        if (err) {
          secure.destroy();
          reject(err);
        } else {
          resolve();
        }
      };
      secure.once('error', done);
      secure.once('secureConnect', () => done());
    });
    this.socket = secure;
    this.attach(secure);
  }

  async close(): Promise<void> {
    const socket = this.socket;
    if (this.closed || socket.destroyed) {
      socket.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(
        () => {
          socket.destroy();
          resolve();
        },
        Math.min(this.timeoutMs, 2000),
      );
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.end();
    });
    this.detachSocket();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function sniName(options: ReplayOptions): string | undefined {
  if (options.servername) return options.servername;
  return net.isIP(options.host) === 0 ? options.host : undefined;
}

// ------------------------------------------------------------------ replay

/**
 * Plays the client side of `transcript` against `host:port` and compares the replies.
 * Rejects only when the connection cannot be established at all; problems later on (timeouts,
 * the server closing early, a failed TLS handshake) end the replay with a difference and
 * `aborted` set.
 */
export async function replayTranscript(
  transcript: Transcript,
  options: ReplayOptions,
): Promise<ReplayReport> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const compare = options.compare ?? 'codes';
  const { credentials } = options;
  const plan = planReplay(transcript);
  const report: ReplayReport = { differences: [], repliesCompared: 0, ok: true, skipped: [] };

  const skipped = (exchange?: Exchange) =>
    exchange !== undefined && exchange.redacted && !canRegenerate(exchange, credentials);
  const reported = new Set<Exchange>();

  const connection = await LiveConnection.open(options, plan.implicitTls, timeoutMs);
  let lastLive: Reply | null = null;
  const abort = (index: number, command: string, expected: string, actual: string) => {
    report.differences.push({ index, command, expected, actual });
    report.aborted = `${command}: ${actual}`;
  };

  try {
    for (const action of plan.actions) {
      if (action.kind === 'send') {
        const parts: Buffer[] = [];
        for (const piece of action.pieces) {
          if (piece.exchange && skipped(piece.exchange)) continue;
          parts.push(render(piece, lastLive, credentials));
        }
        connection.write(Buffer.concat(parts));
      } else if (action.kind === 'expect') {
        const { expect } = action;
        if (expect.exchange && skipped(expect.exchange)) {
          if (!reported.has(expect.exchange)) {
            reported.add(expect.exchange);
            report.skipped.push({
              index: expect.index,
              command: expect.exchange.command,
              reason: skipReason(expect.exchange, credentials),
            });
          }
          continue;
        }
        const expected =
          compare === 'text' ? normalizeText(expect, expect.reply) : describeCodes(expect.reply);
        const next = await connection.nextReply();
        if ('error' in next) {
          abort(expect.index, expect.command, expected, next.error);
          break;
        }
        lastLive = next.reply;
        report.repliesCompared++;
        const actual = compare === 'text' ? normalizeText(expect, next.reply) : describeCodes(next.reply);
        if (actual !== expected) {
          report.differences.push({ index: expect.index, command: expect.command, expected, actual });
        }
      } else {
        if (lastLive?.code !== 220) {
          abort(action.index, 'STARTTLS', 'TLS upgrade after 220', 'no 220 reply to STARTTLS; not upgrading');
          break;
        }
        try {
          await connection.upgradeTls(options);
        } catch (err) {
          abort(
            action.index,
            'STARTTLS',
            'TLS handshake',
            `(TLS handshake failed: ${(err as Error).message})`,
          );
          break;
        }
      }
    }
  } finally {
    await connection.close().catch(() => connection.destroy());
  }
  report.ok = report.differences.length === 0;
  return report;
}

function render(piece: Piece, challenge: Reply | null, credentials?: ReplayCredentials): Buffer {
  switch (piece.kind) {
    case 'bytes': {
      // A recorded (unredacted) CRAM-MD5 answer is only valid for the recorded challenge.
      const ex = piece.exchange;
      if (ex && credentials && ex.mechanism === 'CRAM-MD5' && piece.step !== undefined && !ex.opaque) {
        return Buffer.from(
          saslResponse(ex, piece.step, challenge, credentials) + (piece.term ?? ''),
          'latin1',
        );
      }
      return piece.data;
    }
    case 'auth':
      return Buffer.from(
        `${piece.prefix} ${initialResponse(piece.exchange.mechanism, credentials!)}${piece.term}`,
        'latin1',
      );
    case 'sasl':
      return Buffer.from(
        saslResponse(piece.exchange, piece.step, challenge, credentials!) + piece.term,
        'latin1',
      );
  }
}
