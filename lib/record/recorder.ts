/**
 * Records an SMTP session into the transcript format of `./transcript` (see `FORMAT.md`).
 *
 * The recorder only listens to a handful of events of the session, so it works with anything
 * that emits them:
 * - `'input' (chunk: Buffer)` cleartext bytes received from the client, in arrival order;
 * - `'output' (chunk: Buffer)` cleartext bytes sent to the client;
 * - `'secure' (info)` the TLS handshake completed;
 * - `'close' ()` the session is over.
 *
 * Records are cut at line ends so the file stays line-oriented: a client or server line is
 * written as one record once its LF arrives, whatever the chunking. A partial line is written
 * early only when the other side speaks (or TLS starts, or the session closes) before it is
 * complete, or when it grows past {@link MAX_PENDING} bytes.
 *
 * Redaction (on by default): the initial response of `AUTH <mech> <initial-response>` and every
 * client line sent during a SASL exchange (while the server's last reply is `334`, or while an
 * AUTH command awaits its reply) are replaced by `AUTH <mech> <redacted>` / `<redacted>` in a
 * `!` record. The `334` challenges are kept. A `*` line (the client cancelling) is kept.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  formatHeader,
  formatMetadataLine,
  formatRecord,
  formatTlsPayload,
  type RecordDirection,
} from './transcript';
import {
  REDACTED,
  authPrefixOf,
  authPrefixState,
  classifyCommand,
  isBodyTerminator,
  isSaslCancel,
  parseReplyLine,
} from './smtp-lines';

/** The minimal session interface the recorder attaches to. */
export interface RecordableSession {
  on(event: 'input' | 'output', listener: (chunk: Buffer) => void): unknown;
  on(event: 'secure', listener: (info?: SecureInfo) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  removeListener(event: 'input' | 'output', listener: (chunk: Buffer) => void): unknown;
  removeListener(event: 'secure', listener: (info?: SecureInfo) => void): unknown;
  removeListener(event: 'close', listener: () => void): unknown;
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;
}

export interface SecureInfo {
  protocol?: string | null;
  cipher?: string | null;
  servername?: string | null;
}

/** A function receiving each transcript line (without its `\n`), or a stream (gets `line + '\n'`). */
export type TranscriptSink = ((line: string) => void) | NodeJS.WritableStream;

export interface RecorderOptions {
  /** Replace AUTH secrets by `<redacted>` markers. Default `true`. */
  redactAuth?: boolean;
  /** Millisecond clock used for record times (relative to its value at attach time). Default `performance.now`. */
  clock?: () => number;
  /** Wall-clock start written as `# started:`. Default: now. */
  startedAt?: Date;
  /** Extra `# key: value` metadata lines, written after started/remote/local. */
  metadata?: Record<string, string>;
  /** When the sink is a stream: end it when the session closes. Default `true`. */
  endStream?: boolean;
}

/** Longest partial line held back before it is written out anyway (and the redaction buffer bound). */
export const MAX_PENDING = 16 * 1024;
/** How much of each client line is kept to classify it (command verb, AUTH mechanism, `*`, `.`). */
const HEAD_MAX = 512;

type Context = 'command' | 'body' | 'raw';
/**
 * How the current client line is written: `plain` bytes as they come; `undecided` held until we
 * know whether it is an `AUTH <mech> <initial-response>` line; `redact` (SASL response) and
 * `auth-ir` (AUTH with initial response) dropped and replaced by a `!` record at the line end.
 */
type LineMode = 'plain' | 'undecided' | 'redact' | 'auth-ir';

interface ClientLine {
  mode: LineMode;
  context: Context;
  start: number;
  head: string;
  length: number;
  prev: number;
  last: number;
}

function toBuffer(chunk: Buffer | string): Buffer {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}

/** `[::1]:25` for IPv6, `1.2.3.4:25` for IPv4, the bare address without a port. */
export function formatEndpoint(address?: string, port?: number): string | undefined {
  if (!address) return undefined;
  const host = address.includes(':') ? `[${address}]` : address;
  return port === undefined ? host : `${host}:${port}`;
}

export class SessionRecorder {
  private readonly write: (line: string) => void;
  private readonly clock: () => number;
  private readonly t0: number;
  private readonly redact: boolean;
  private lastTime = 0;
  private finished = false;
  /** Set when writing to the sink threw; recording stops. */
  error: Error | null = null;

  // Client side.
  private context: Context = 'command';
  private rawRemaining = 0;
  private line: ClientLine | null = null;
  private cPending: Buffer[] = [];
  private cPendingLen = 0;
  private cPendingTime = 0;

  // Server side.
  private sPending: Buffer[] = [];
  private sPendingLen = 0;
  private sPendingTime = 0;
  private sLineHead = '';

  // Session state used to decide what to redact and where DATA bodies are.
  private lastReplyCode = 0;
  private authAwaitingReply = false;
  private dataAwaiting = false;

  private lastEmitted = 0;

  private readonly onInputEvent = (chunk: Buffer | string) => this.onInput(toBuffer(chunk));
  private readonly onOutputEvent = (chunk: Buffer | string) => this.onOutput(toBuffer(chunk));
  private readonly onSecureEvent = (info?: SecureInfo) => this.onSecure(info ?? {});
  private readonly onCloseEvent = () => this.finish();

  constructor(
    readonly session: RecordableSession,
    private readonly sink: TranscriptSink,
    private readonly options: RecorderOptions = {},
  ) {
    this.redact = options.redactAuth ?? true;
    this.clock = options.clock ?? (() => performance.now());
    this.t0 = this.clock();
    this.write = typeof sink === 'function' ? (line) => sink(line) : (line) => void sink.write(line + '\n');

    const meta: Record<string, string> = { started: (options.startedAt ?? new Date()).toISOString() };
    const remote = formatEndpoint(session.remoteAddress, session.remotePort);
    const local = formatEndpoint(session.localAddress, session.localPort);
    if (remote) meta.remote = remote;
    if (local) meta.local = local;
    this.emitLines(formatHeader(meta));
    for (const [key, value] of Object.entries(options.metadata ?? {})) {
      this.emitLines([formatMetadataLine(key, value)]);
    }

    if (!this.finished) {
      session.on('input', this.onInputEvent);
      session.on('output', this.onOutputEvent);
      session.on('secure', this.onSecureEvent);
      session.on('close', this.onCloseEvent);
    }
  }

  /** True once the `E` record was written (or recording stopped on a sink error). */
  get closed(): boolean {
    return this.finished;
  }

  /**
   * Flushes everything, writes the `E` record, detaches from the session and (for stream sinks,
   * unless `endStream: false`) ends the stream. Called on `'close'`; idempotent.
   */
  finish(): void {
    if (this.finished) return;
    const t = this.now();
    this.guard(() => {
      this.finishClientLine();
      this.flushClient();
      this.flushServer();
      this.emit(t, 'E', Buffer.alloc(0));
    });
    this.stop();
  }

  /** Stops listening without writing anything more (no `E` record). */
  detach(): void {
    this.session.removeListener('input', this.onInputEvent);
    this.session.removeListener('output', this.onOutputEvent);
    this.session.removeListener('secure', this.onSecureEvent);
    this.session.removeListener('close', this.onCloseEvent);
  }

  private stop(): void {
    this.finished = true;
    this.detach();
    if (typeof this.sink !== 'function' && this.options.endStream !== false) this.sink.end();
  }

  private guard(fn: () => void): void {
    if (this.finished) return;
    try {
      fn();
    } catch (err) {
      this.error = err instanceof Error ? err : new Error(String(err));
      this.stop();
    }
  }

  private now(): number {
    const t = Math.max(this.lastTime, Math.floor(this.clock() - this.t0));
    this.lastTime = t;
    return t;
  }

  private emitLines(lines: string[]): void {
    this.guard(() => lines.forEach((line) => this.write(line)));
  }

  private emit(time: number, dir: RecordDirection, data: Buffer): void {
    // Records are written in event order; keep their times non-decreasing too.
    this.lastEmitted = Math.max(this.lastEmitted, time);
    this.write(formatRecord({ time: this.lastEmitted, dir, data }));
  }

  // ---------------------------------------------------------------- events

  private onInput(chunk: Buffer): void {
    const t = this.now();
    this.guard(() => {
      this.flushServer();
      let i = 0;
      while (i < chunk.length) {
        if (this.context === 'raw') {
          const end = Math.min(chunk.length, i + this.rawRemaining);
          const nl = chunk.indexOf(0x0a, i);
          const stop = nl !== -1 && nl < end ? nl + 1 : end;
          this.appendClient(chunk.subarray(i, stop), t);
          this.boundClient(t);
          this.rawRemaining -= stop - i;
          i = stop;
          if (this.rawRemaining === 0) {
            this.flushClient();
            this.context = 'command';
          } else if (chunk[stop - 1] === 0x0a) {
            this.flushClient();
          }
          continue;
        }
        const nl = chunk.indexOf(0x0a, i);
        const stop = nl === -1 ? chunk.length : nl + 1;
        this.feedLine(chunk.subarray(i, stop), nl !== -1, t);
        i = stop;
      }
    });
  }

  private onOutput(chunk: Buffer): void {
    const t = this.now();
    this.guard(() => {
      if (this.line?.mode === 'plain' || this.context === 'raw') this.flushClient();
      let i = 0;
      while (i < chunk.length) {
        const nl = chunk.indexOf(0x0a, i);
        const stop = nl === -1 ? chunk.length : nl + 1;
        const piece = chunk.subarray(i, stop);
        if (this.sLineHead.length < 8) {
          this.sLineHead += piece.subarray(0, 8 - this.sLineHead.length).toString('latin1');
        }
        this.appendServer(piece, t);
        if (nl !== -1) {
          this.flushServer();
          const reply = parseReplyLine(this.sLineHead);
          this.sLineHead = '';
          if (reply.final) this.onReply(reply.code);
        }
        i = stop;
      }
    });
  }

  private onSecure(info: SecureInfo): void {
    const t = this.now();
    this.guard(() => {
      this.finishClientLine();
      this.flushClient();
      this.flushServer();
      this.emit(t, 'T', formatTlsPayload(info));
      // RFC 3207 §4.2: all knowledge from before TLS is discarded.
      this.context = 'command';
      this.rawRemaining = 0;
      this.lastReplyCode = 0;
      this.authAwaitingReply = false;
      this.dataAwaiting = false;
    });
  }

  private onReply(code: number): void {
    this.lastReplyCode = code;
    this.authAwaitingReply = false;
    if (code === 354 && this.dataAwaiting) {
      this.dataAwaiting = false;
      this.context = 'body';
    }
  }

  // ---------------------------------------------------------------- client lines

  /** Feeds a piece of one client line (no LF inside, except as its last byte when `complete`). */
  private feedLine(piece: Buffer, complete: boolean, t: number): void {
    if (!this.line) {
      let mode: LineMode = 'plain';
      if (this.context === 'command' && this.redact) {
        mode = this.lastReplyCode === 334 || this.authAwaitingReply ? 'redact' : 'undecided';
      }
      this.line = { mode, context: this.context, start: t, head: '', length: 0, prev: -1, last: -1 };
    }
    const line = this.line;
    if (line.head.length < HEAD_MAX) {
      line.head += piece.subarray(0, HEAD_MAX - line.head.length).toString('latin1');
    }
    line.length += piece.length;
    if (piece.length >= 2) {
      line.prev = piece[piece.length - 2];
    } else if (piece.length === 1) {
      line.prev = line.last;
    }
    if (piece.length > 0) line.last = piece[piece.length - 1];

    if (line.mode === 'plain' || line.mode === 'undecided') this.appendClient(piece, t);
    if (line.mode === 'undecided') {
      const state = authPrefixState(line.head);
      if (state === 'no') {
        line.mode = 'plain';
      } else if (state === 'ir' || (state === 'maybe' && line.head.length >= HEAD_MAX)) {
        // Secrets ahead: drop what was held and write the marker at the end of the line.
        line.mode = 'auth-ir';
        this.discardClient();
      } else if (complete) {
        line.mode = 'plain'; // `AUTH <mech>` without an initial response
      }
    }
    if (line.mode === 'plain') this.boundClient(t);
    if (complete) this.finishClientLine();
  }

  /** Completes the current client line (at its LF, or forced by TLS/close). */
  private finishClientLine(): void {
    const line = this.line;
    if (!line) return;
    this.line = null;
    const term = line.last === 0x0a ? (line.prev === 0x0d ? '\r\n' : '\n') : '';
    switch (line.mode) {
      case 'undecided': {
        // Forced completion of something that still looks like `AUTH <mech>`: not a secret.
        this.flushClient();
        break;
      }
      case 'plain':
        this.flushClient();
        break;
      case 'redact': {
        if (line.length <= 3 && isSaslCancel(Buffer.from(line.head, 'latin1'))) {
          this.emit(line.start, 'C', Buffer.from(line.head, 'latin1'));
        } else {
          this.emit(line.start, '!', Buffer.from(REDACTED + term, 'latin1'));
        }
        return;
      }
      case 'auth-ir':
        this.emit(line.start, '!', Buffer.from(`${authPrefixOf(line.head)} ${REDACTED}${term}`, 'latin1'));
        this.authAwaitingReply = true;
        this.dataAwaiting = false;
        return;
    }

    if (line.context === 'body') {
      if (line.length <= 3 && isBodyTerminator(Buffer.from(line.head, 'latin1'))) this.context = 'command';
      return;
    }
    if (line.context !== 'command' || line.length > HEAD_MAX) {
      this.dataAwaiting = false;
      return;
    }
    const command = classifyCommand(line.head);
    this.dataAwaiting = command.kind === 'data';
    if (command.kind === 'auth') this.authAwaitingReply = true;
    if (command.kind === 'bdat' && command.size > 0 && term !== '') {
      this.context = 'raw';
      this.rawRemaining = command.size;
    }
  }

  private appendClient(piece: Buffer, t: number): void {
    if (piece.length === 0) return;
    if (this.cPendingLen === 0) this.cPendingTime = t;
    this.cPending.push(piece);
    this.cPendingLen += piece.length;
  }

  private discardClient(): void {
    this.cPending = [];
    this.cPendingLen = 0;
  }

  /** Writes out exact {@link MAX_PENDING}-byte slices of an over-long plain line. */
  private boundClient(t: number): void {
    while (this.cPendingLen >= MAX_PENDING) {
      const all = Buffer.concat(this.cPending);
      this.emit(this.cPendingTime, 'C', all.subarray(0, MAX_PENDING));
      const rest = all.subarray(MAX_PENDING);
      this.cPending = rest.length ? [rest] : [];
      this.cPendingLen = rest.length;
      this.cPendingTime = t;
    }
  }

  private flushClient(): void {
    if (this.cPendingLen === 0) return;
    this.emit(this.cPendingTime, 'C', Buffer.concat(this.cPending));
    this.discardClient();
  }

  // ---------------------------------------------------------------- server lines

  private appendServer(piece: Buffer, t: number): void {
    if (piece.length === 0) return;
    if (this.sPendingLen === 0) this.sPendingTime = t;
    this.sPending.push(piece);
    this.sPendingLen += piece.length;
    while (this.sPendingLen >= MAX_PENDING) {
      const all = Buffer.concat(this.sPending);
      this.emit(this.sPendingTime, 'S', all.subarray(0, MAX_PENDING));
      const rest = all.subarray(MAX_PENDING);
      this.sPending = rest.length ? [rest] : [];
      this.sPendingLen = rest.length;
      this.sPendingTime = t;
    }
  }

  private flushServer(): void {
    if (this.sPendingLen === 0) return;
    this.emit(this.sPendingTime, 'S', Buffer.concat(this.sPending));
    this.sPending = [];
    this.sPendingLen = 0;
  }
}

/** Attaches a {@link SessionRecorder} to `session`; see the class for details. */
export function recordSession(
  session: RecordableSession,
  sink: TranscriptSink,
  options?: RecorderOptions,
): SessionRecorder {
  return new SessionRecorder(session, sink, options);
}

export interface RecordToFileResult {
  /** The transcript file: `<dir>/<time>-<remote>-<random>.txt`. */
  path: string;
  recorder: SessionRecorder;
  /** Resolves once the file is closed (after the session's `'close'`); never rejects. */
  done: Promise<void>;
  /** Set if the file could not be written. */
  readonly error: Error | null;
}

/**
 * Records `session` into a new file in `dir` (created if missing), named
 * `<ISO time with - for :>-<remote address>-<random hex>.txt`, closed on the session's `'close'`.
 */
export function recordToFile(
  session: RecordableSession,
  dir: string,
  options?: Omit<RecorderOptions, 'endStream'>,
): RecordToFileResult {
  fs.mkdirSync(dir, { recursive: true });
  const startedAt = options?.startedAt ?? new Date();
  const stamp = startedAt.toISOString().replace(/:/g, '-');
  const remote = (session.remoteAddress ?? 'unknown').replace(/[^A-Za-z0-9.]/g, '_');
  const file = path.join(dir, `${stamp}-${remote}-${crypto.randomBytes(4).toString('hex')}.txt`);
  const stream = fs.createWriteStream(file, { flags: 'wx', encoding: 'utf8' });
  let error: Error | null = null;
  const done = new Promise<void>((resolve) => {
    stream.on('close', () => resolve());
    stream.on('error', (err) => {
      error = err;
      recorder.detach();
      resolve();
    });
  });
  const recorder = new SessionRecorder(session, stream, { ...options, startedAt, endStream: true });
  return {
    path: file,
    recorder,
    done,
    get error() {
      return error;
    },
  };
}
