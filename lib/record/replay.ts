/**
 * Replays the client side of a recorded transcript against a live SMTP server and compares the
 * server's replies with the recorded ones.
 *
 * The transcript is first turned into a plan: client bytes sent between two recorded server
 * replies become one write (which keeps pipelined groups together), each recorded reply becomes
 * an expectation, and a `T` record becomes a TLS upgrade of the socket. Redacted `!` lines are
 * regenerated from `credentials` (PLAIN, LOGIN, CRAM-MD5, XOAUTH2); without credentials the
 * whole AUTH exchange is left out and reported as skipped.
 *
 * Some client text may only follow a given reply: message text a 354 (RFC 5321 §4.1.1.4), a SASL
 * response a 334 (RFC 4954 §4). The plan ties such text to the command whose reply it waits for
 * (its gate). When the live server answers that command with a reply of another class than the
 * recorded one, the text is not sent, the replies to it are not awaited (they will not come), and
 * the report says so; refused message text is replaced by RSET, which ends the transaction as the
 * end of the text did. BDAT chunk bytes are part of their command and always sent: a server
 * consumes the chunk of a BDAT it refuses (RFC 3030 §2).
 */
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { parseProxyHeader } from '../protocol/proxy-header';
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
  /**
   * Send a PROXY protocol v1 header first (before TLS too): the transcript's `# proxy:` one, or
   * `PROXY UNKNOWN` when it has none. For a server that expects one (SmtpServer's `proxy`, the
   * catcher's `--proxy`). Default false, also for transcripts recorded behind a proxy: a server
   * that expects no header would answer it as a command and every reply after would be compared
   * with the wrong command, while a missing header fails plainly at the greeting.
   */
  proxy?: boolean;
}

export interface ReplayDifference {
  /** 0-based index of the recorded server reply (the greeting is 0). */
  index: number;
  /** The client command the reply answers, e.g. `RCPT TO:<a@b.example>`, or `(greeting)`. */
  command: string;
  expected: string;
  actual: string;
  /**
   * Sent after this reply to keep the live session in step, with the live answer. The live
   * server answered 334 where the recording has a final reply, so it waits for a SASL response
   * the recording does not have: the exchange is cancelled with `*` (RFC 4954 §4), e.g.
   * `sent * to cancel the SASL exchange: 501 5.7.0`.
   */
  resync?: string;
}

export interface ReplaySkip {
  /** Index of the first recorded reply that was not compared. */
  index: number;
  /** The client command or step that reply answers (for an AUTH exchange: its AUTH command). */
  command: string;
  /**
   * `'credentials'`: an AUTH exchange whose redacted lines cannot be regenerated, left out.
   * `'reply'`: client text that may only follow a reply (message text after 354, SASL responses
   * after 334), not sent because the live server answered with a reply of another class.
   */
  cause: 'credentials' | 'reply';
  /** Says what was left out and why; for `'reply'`, the live reply that caused it. */
  reason: string;
  /** How many recorded replies were not compared because of it. */
  replies: number;
  /** Sent in place of what was left out, with the live answer: `sent RSET in its place: 250 2.0.0`. */
  resync?: string;
}

export interface ReplayReport {
  differences: ReplayDifference[];
  repliesCompared: number;
  /** True when no difference was found (skipped exchanges do not count as differences). */
  ok: boolean;
  /** Parts of the transcript left out, in order (see {@link ReplaySkip}). */
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

/**
 * A client line that gets a reply of its own (a command, a SASL response, the end of message
 * text): the recorded replies answer the entries in order.
 */
interface Entry {
  command: string;
  /** What the entry is, for what the live server may wait for after it (see `followUp`). */
  role: 'data' | 'auth' | 'sasl' | 'text' | 'other';
  exchange?: Exchange;
  /** The entry whose live reply must be of the recorded class for this one to be sent. */
  gate?: Entry;
  /** The recorded reply to it, once the plan has met it. */
  expectation?: Expectation;
}

/**
 * What is written. `gate`: see {@link Entry}. `resync`: written instead when the gate is closed
 * (RSET for the line that ends message text).
 */
type Piece =
  | {
      kind: 'bytes';
      data: Buffer;
      gate?: Entry;
      exchange?: Exchange;
      step?: number;
      term?: string;
      resync?: Buffer;
    }
  | { kind: 'auth'; prefix: string; term: string; exchange: Exchange; gate?: undefined }
  | { kind: 'sasl'; step: number; term: string; exchange: Exchange; gate?: Entry };

type BytesPiece = Extract<Piece, { kind: 'bytes' }>;

interface Expectation {
  index: number;
  reply: Reply;
  command: string;
  greeting: boolean;
  exchange?: Exchange;
  entry?: Entry;
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
/** Ends the transaction in place of message text that cannot be sent (RFC 5321 §4.1.1.5). */
const RSET = Buffer.from('RSET\r\n', 'latin1');
/** Cancels a SASL exchange (RFC 4954 §4). */
const CANCEL = Buffer.from('*\r\n', 'latin1');

function label(line: Buffer): string {
  const text = stripTerminator(line.toString('latin1'));
  return text.length > MAX_LABEL ? text.slice(0, MAX_LABEL) + '...' : text;
}

/** Turns a transcript into a list of writes, expected replies and TLS upgrades. */
function planReplay(transcript: Transcript): Plan {
  const actions: Action[] = [];
  const replies = new ReplyAssembler();
  const queue: Entry[] = [];
  let implicitTls = false;
  let replyIndex = 0;
  let sentAnything = false;

  let context: 'command' | 'body' | 'raw' = 'command';
  let rawRemaining = 0;
  let lastReplyCode = 0;
  let authAwaitingReply = false;
  let dataAwaiting = false;
  let exchange: Exchange | null = null;
  /** The entry queued last: a SASL response answers the reply to it. */
  let lastEntry: Entry | undefined;
  /** The DATA whose 354 opened the message text being read. */
  let bodyGate: Entry | undefined;
  let line: Buffer[] = [];
  let linePieces: BytesPiece[] = [];
  // Decided at the first byte of a line, as the recorder decides whether to redact it.
  let lineSasl = false;
  let lineGate: Entry | undefined;
  /**
   * Pieces whose gate has no recorded reply yet (a SASL response the recorded client pipelined
   * behind AUTH), and every piece after them: a client answers a 334 only once it has it
   * (RFC 4954 §4), so they go out after that reply, in their order.
   */
  const held: Piece[] = [];

  const append = (piece: Piece) => {
    const last = actions[actions.length - 1];
    if (last?.kind === 'send') last.pieces.push(piece);
    else actions.push({ kind: 'send', pieces: [piece] });
  };
  const send = (piece: Piece) => {
    sentAnything = true;
    if (held.length > 0 || (piece.gate && !piece.gate.expectation)) held.push(piece);
    else append(piece);
  };
  /** Moves held pieces to the plan once their gate's reply is in it (`all`: at TLS and the end). */
  const release = (all: boolean) => {
    while (held.length > 0 && (all || !held[0].gate || held[0].gate.expectation)) append(held.shift()!);
  };
  const enqueue = (entry: Entry) => {
    queue.push(entry);
    lastEntry = entry;
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

  const startLine = () => {
    lineSasl = context === 'command' && inSasl();
    lineGate = context === 'body' ? bodyGate : lineSasl ? lastEntry : undefined;
  };

  const completeLine = () => {
    const bytes = Buffer.concat(line);
    const pieces = linePieces;
    const gate = lineGate;
    line = [];
    linePieces = [];
    lineGate = undefined;
    if (bytes.length === 0) return;
    if (context === 'body') {
      if (isBodyTerminator(bytes)) {
        context = 'command';
        pieces[pieces.length - 1].resync = RSET;
        enqueue({ command: 'DATA (end of message)', role: 'text', gate });
      }
      return;
    }
    if (lineSasl) {
      const ex = continuation();
      pieces.forEach((p) => (p.exchange = ex));
      if (pieces.length === 1) {
        pieces[0].step = ex.steps;
        pieces[0].term = terminatorOf(bytes);
      }
      enqueue({ command: `${ex.command} (response ${ex.steps})`, role: 'sasl', exchange: ex, gate });
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
      enqueue({ command: exchange.command, role: 'auth', exchange });
      return;
    }
    if (command.kind === 'bdat' && command.size > 0 && terminatorOf(bytes) !== '') {
      context = 'raw';
      rawRemaining = command.size;
    }
    enqueue({ command: label(bytes), role: command.kind === 'data' ? 'data' : 'other' });
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
      enqueue({ command: exchange.command, role: 'auth', exchange });
      return;
    }
    const gate = inSasl() ? lastEntry : undefined;
    const ex = continuation();
    ex.redacted = true;
    if (!REDACTED_SASL_LINE.test(text)) ex.opaque = true;
    send({ kind: 'sasl', step: ex.steps, term: terminatorOf(data), exchange: ex, gate });
    enqueue({ command: `${ex.command} (response ${ex.steps})`, role: 'sasl', exchange: ex, gate });
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
      if (line.length === 0) startLine();
      const piece: BytesPiece = { kind: 'bytes', data: data.subarray(i, stop), gate: lineGate };
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
      const expect: Expectation = {
        index: replyIndex++,
        reply,
        command: entry?.command ?? (greeting ? '(greeting)' : '(unsolicited)'),
        greeting,
        exchange: entry?.exchange,
        entry,
      };
      if (entry) entry.expectation = expect;
      actions.push({ kind: 'expect', expect });
      lastReplyCode = reply.code;
      authAwaitingReply = false;
      if (reply.code === 354 && dataAwaiting) {
        dataAwaiting = false;
        context = 'body';
        bodyGate = entry;
      }
      if (reply.code !== 334 && entry?.exchange && entry.exchange === exchange) exchange = null;
      release(false);
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
        release(true);
        if (actions.length === 0) {
          implicitTls = true;
        } else {
          actions.push({ kind: 'tls', index: replyIndex });
        }
        // Commands the client pipelined behind STARTTLS got no reply: the server discards what
        // follows STARTTLS in clear (RFC 3207 §4.2, and §4: STARTTLS ends a pipelined group).
        // They are still sent, in the same write as STARTTLS as the client sent them, so a server
        // that wrongly runs them after the handshake shows up as extra replies; but no reply is
        // awaited for them, or every later reply would be named after the command before it.
        queue.length = 0;
        lastEntry = undefined;
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
  release(true);
  return { implicitTls, actions };
}

/** The PROXY v1 header to send first: the recorded one (`# proxy:`), or `PROXY UNKNOWN`. */
function proxyHeaderOf(transcript: Transcript): Buffer {
  const recorded = transcript.metadata.proxy;
  const header = Buffer.from(`${recorded ?? 'PROXY UNKNOWN'}\r\n`, 'utf8');
  const parsed = parseProxyHeader(header);
  if (parsed.status !== 'complete' || parsed.header.version !== 1 || parsed.rest.length > 0) {
    const why = parsed.status === 'invalid' ? `: ${parsed.reason}` : '';
    throw new Error(`"# proxy:" is not a PROXY v1 header line${why}`);
  }
  return header;
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

  /**
   * Connects, sends the PROXY header if any, then (implicit TLS) does the handshake: the header
   * comes first on the connection, before any TLS byte (proxy-protocol.txt §2).
   */
  static async open(
    options: ReplayOptions,
    implicitTls: boolean,
    timeoutMs: number,
    proxyHeader?: Buffer,
  ): Promise<LiveConnection> {
    const { host, port } = options;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.on('error', () => {}); // reported through `fail` / the connection's own handler
      const timer = setTimeout(() => fail(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new Error(`cannot connect to ${host}:${port}: ${err.message}`));
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', fail);
        socket.setNoDelay(true);
        resolve(socket);
      });
    });
    const connection = new LiveConnection(socket, timeoutMs);
    if (proxyHeader) connection.write(proxyHeader);
    if (implicitTls) {
      await connection.upgradeTls(options).catch((err: Error) => {
        connection.destroy();
        throw new Error(`cannot connect to ${host}:${port}: TLS handshake failed: ${err.message}`);
      });
    }
    return connection;
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

  /** Upgrades the plain socket to TLS (after STARTTLS + 220, or at once for implicit TLS). */
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
 * Rejects only when the connection cannot be established at all, or when `proxy` is set and
 * the transcript's `# proxy:` is not a PROXY v1 line; problems later on (timeouts, the server
 * closing early, a failed TLS handshake) end the replay with a difference and `aborted` set.
 */
export async function replayTranscript(
  transcript: Transcript,
  options: ReplayOptions,
): Promise<ReplayReport> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const proxyHeader = options.proxy ? proxyHeaderOf(transcript) : undefined;
  const plan = planReplay(transcript);
  const hint = proxyHint(transcript, options);
  const connection = await LiveConnection.open(options, plan.implicitTls, timeoutMs, proxyHeader).catch(
    (err: Error) => {
      throw new Error(err.message + hint);
    },
  );
  const replayer = new Replayer(connection, options, hint);
  try {
    await replayer.run(plan.actions);
  } finally {
    await connection.close().catch(() => connection.destroy());
  }
  const { report } = replayer;
  report.ok = report.differences.length === 0;
  return report;
}

/**
 * What to say when a transcript recorded behind a proxy fails at the start without `proxy`: the
 * server may be waiting for the header (or, with implicit TLS, take the handshake for one).
 */
function proxyHint(transcript: Transcript, options: ReplayOptions): string {
  if (transcript.metadata.proxy === undefined || options.proxy) return '';
  return ' (the transcript was recorded behind a PROXY header: if this server expects one, replay with proxy: true, --proxy)';
}

/** The class of a reply: 2 for 2yz, 3 for 3yz… (-1 for a line that is no reply). */
function replyClass(reply: Reply): number {
  return reply.code < 0 ? -1 : Math.floor(reply.code / 100);
}

/** Runs a plan against one live connection and builds the report. */
class Replayer {
  readonly report: ReplayReport = { differences: [], repliesCompared: 0, ok: true, skipped: [] };
  private readonly compare: 'codes' | 'text';
  private readonly credentials: ReplayCredentials | undefined;
  /** The last live reply compared (the challenge SASL responses answer, the 220 before TLS). */
  private lastLive: Reply | null = null;
  /** Live replies to the plan's entries. */
  private readonly live = new Map<Entry, Reply>();
  /** Entries not sent, with the entry whose live reply differed in class (the cause). */
  private readonly notSent = new Map<Entry, Entry>();
  /** One skip per cause: an entry whose live reply differed, or an AUTH exchange left out. */
  private readonly skips = new Map<Entry | Exchange, ReplaySkip>();

  constructor(
    private readonly connection: LiveConnection,
    private readonly options: ReplayOptions,
    /** Added to a failure at the greeting (see `proxyHint`). */
    private readonly greetingHint: string,
  ) {
    this.compare = options.compare ?? 'codes';
    this.credentials = options.credentials;
  }

  async run(actions: Action[]): Promise<void> {
    for (const action of actions) {
      let goOn: boolean;
      if (action.kind === 'send') goOn = this.send(action.pieces);
      else if (action.kind === 'expect') goOn = await this.expect(action.expect);
      else goOn = await this.upgrade(action.index);
      if (!goOn) return;
    }
  }

  private send(pieces: Piece[]): boolean {
    const parts: Buffer[] = [];
    for (const piece of pieces) {
      if (piece.exchange && this.leftOut(piece.exchange)) continue;
      if (this.blockedBy(piece.gate)) {
        if (piece.kind === 'bytes' && piece.resync) parts.push(piece.resync);
        continue;
      }
      parts.push(render(piece, this.lastLive, this.credentials));
    }
    this.connection.write(Buffer.concat(parts));
    return true;
  }

  private async expect(expect: Expectation): Promise<boolean> {
    const { entry, exchange } = expect;
    if (exchange && this.leftOut(exchange)) {
      this.skipped(exchange, expect.index, exchange.command, 'credentials', () =>
        skipReason(exchange, this.credentials),
      );
      return true;
    }
    const cause = entry && this.blockedBy(entry.gate);
    if (cause) return this.notAnswered(entry, cause, expect);

    const expected = this.describe(expect, expect.reply);
    const next = await this.connection.nextReply();
    if ('error' in next) {
      const hint = expect.greeting ? this.greetingHint : '';
      return this.abort(expect.index, expect.command, expected, next.error, hint);
    }
    this.lastLive = next.reply;
    if (entry) this.live.set(entry, next.reply);
    this.report.repliesCompared++;
    const actual = this.describe(expect, next.reply);
    let difference: ReplayDifference | undefined;
    if (actual !== expected) {
      difference = { index: expect.index, command: expect.command, expected, actual };
      this.report.differences.push(difference);
    }
    return this.followUp(expect, next.reply, difference);
  }

  /** The reply to an entry that was not sent: none comes, unless RSET went in its place. */
  private async notAnswered(entry: Entry, cause: Entry, expect: Expectation): Promise<boolean> {
    this.notSent.set(entry, cause);
    const skip = this.skipped(cause, expect.index, expect.command, 'reply', () => {
      const recorded = describeCodes(cause.expectation!.reply);
      const live = describeCodes(this.live.get(cause)!);
      return `not sent: the live server answered ${cause.command} with ${live}, the recording has ${recorded}`;
    });
    if (entry.role !== 'text') return true;
    const next = await this.connection.nextReply();
    if ('error' in next)
      return this.abort(expect.index, 'RSET (in place of the message text)', '250', next.error);
    skip.resync = `sent RSET in its place: ${describeCodes(next.reply)}`;
    return true;
  }

  /**
   * After a live reply of another class than the recorded one, the server may wait for client
   * text the recording does not have: a SASL response after 334 (cancelled with `*`), message
   * text after 354 (the replay stops).
   */
  private async followUp(expect: Expectation, live: Reply, difference?: ReplayDifference): Promise<boolean> {
    const role = expect.entry?.role;
    if (role === 'data' && replyClass(live) === 3 && replyClass(expect.reply) !== 3) {
      // After a 354 the only way out of the message text is its end (RFC 5321 §4.1.1.4): a "."
      // would deliver an empty message. Hanging up delivers nothing.
      this.report.aborted =
        `${expect.command}: the live server answered ${describeCodes(live)} and waits for message ` +
        'text the recording does not have; stopped without sending any';
      return false;
    }
    if ((role === 'auth' || role === 'sasl') && live.code === 334 && expect.reply.code !== 334) {
      this.connection.write(CANCEL);
      const next = await this.connection.nextReply();
      if ('error' in next)
        return this.abort(expect.index, `${expect.command} (cancelled with *)`, '501', next.error);
      if (difference) difference.resync = `sent * to cancel the SASL exchange: ${describeCodes(next.reply)}`;
    }
    return true;
  }

  private async upgrade(index: number): Promise<boolean> {
    if (this.lastLive?.code !== 220) {
      return this.abort(
        index,
        'STARTTLS',
        'TLS upgrade after 220',
        'no 220 reply to STARTTLS; not upgrading',
      );
    }
    try {
      await this.connection.upgradeTls(this.options);
    } catch (err) {
      return this.abort(
        index,
        'STARTTLS',
        'TLS handshake',
        `(TLS handshake failed: ${(err as Error).message})`,
      );
    }
    return true;
  }

  /** An AUTH exchange whose redacted lines cannot be regenerated: left out whole. */
  private leftOut(exchange: Exchange): boolean {
    return exchange.redacted && !canRegenerate(exchange, this.credentials);
  }

  /**
   * The entry whose live reply differed in class from the recorded one, if what is behind `gate`
   * must not be sent; undefined when it may (no gate, or no recorded reply to go by).
   */
  private blockedBy(gate?: Entry): Entry | undefined {
    if (!gate?.expectation) return undefined;
    const cause = this.notSent.get(gate);
    if (cause) return cause;
    const live = this.live.get(gate);
    if (!live) return undefined; // left out with its AUTH exchange, and its dependants with it
    return replyClass(live) === replyClass(gate.expectation.reply) ? undefined : gate;
  }

  private skipped(
    key: Entry | Exchange,
    index: number,
    command: string,
    cause: ReplaySkip['cause'],
    reason: () => string,
  ): ReplaySkip {
    let skip = this.skips.get(key);
    if (!skip) {
      skip = { index, command, cause, reason: reason(), replies: 0 };
      this.skips.set(key, skip);
      this.report.skipped.push(skip);
    }
    skip.replies++;
    return skip;
  }

  private describe(expect: Expectation, reply: Reply): string {
    return this.compare === 'text' ? normalizeText(expect, reply) : describeCodes(reply);
  }

  private abort(index: number, command: string, expected: string, actual: string, hint = ''): false {
    this.report.differences.push({ index, command, expected, actual });
    this.report.aborted = `${command}: ${actual}${hint}`;
    return false;
  }
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
