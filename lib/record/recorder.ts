/**
 * Records an SMTP session into the transcript format of `./transcript` (see `FORMAT.md`).
 *
 * The recorder only listens to a handful of events of the session, so it works with anything
 * that emits them:
 * - `'input' (chunk: Buffer)` cleartext bytes received from the client, in arrival order;
 * - `'output' (chunk: Buffer)` cleartext bytes sent to the client;
 * - `'secure' (info)` the TLS handshake completed;
 * - `'proxy' (header)` the PROXY protocol header arrived (before anything else);
 * - `'close' ()` the session is over.
 *
 * The header block is written when the first event arrives, not at attach time: a session behind
 * a proxy only learns its client's address from the PROXY header, and `# remote:` must name the
 * client. A session that is under TLS from the start (implicit TLS, `session.secure` already set
 * at attach time) gets its `T` record first. A session that closes before any event (a PROXY
 * header that never came) leaves no transcript at all.
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
import { formatProxyV1, type ProxyHeader } from '../protocol/proxy-header';
import { formatHeader, formatRecord, formatTlsPayload, type RecordDirection } from './transcript';
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
  on(event: 'proxy', listener: (header: ProxyInfo) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  removeListener(event: 'input' | 'output', listener: (chunk: Buffer) => void): unknown;
  removeListener(event: 'secure', listener: (info?: SecureInfo) => void): unknown;
  removeListener(event: 'proxy', listener: (header: ProxyInfo) => void): unknown;
  removeListener(event: 'close', listener: () => void): unknown;
  /** Read when the header block is written: after a PROXY header, the client's addresses. */
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;
  /** The session's TLS state (SmtpSessionStream's `session`): `secure` at attach time means implicit TLS. */
  readonly session?: { readonly secure?: boolean; readonly tls?: SecureInfo };
  /**
   * Reads nothing more from the client until `until` settles (SmtpSessionStream's `holdInput`).
   * Called when a stream sink is full, so that a slow disk slows the client instead of the
   * transcript piling up in memory; a session without it is recorded as fast as it runs.
   */
  holdInput?(until: PromiseLike<unknown>): void;
}

/** What the recorder reads of a PROXY header (the `proxy` event of SmtpSessionStream). */
export type ProxyInfo = Pick<
  ProxyHeader,
  'command' | 'family' | 'sourceAddress' | 'sourcePort' | 'destinationAddress' | 'destinationPort'
>;

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
  /**
   * Extra `# key: value` metadata lines, written after started/remote/local/proxy. A key the
   * recorder writes itself is not replaced (a key appears once in a file).
   */
  metadata?: Record<string, string>;
  /** When the sink is a stream: end it when the session closes. Default `true`. */
  endStream?: boolean;
}

/** What the recorder reads of a stream sink, when it has it (Node's Writable does). */
interface SinkState {
  readonly destroyed?: boolean;
  readonly writableEnded?: boolean;
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

/** The error itself when it is one: also from another realm (under jest's VM, Node's own errors fail `instanceof Error`). */
function asError(err: unknown): Error {
  if (err instanceof Error) return err;
  const like = err as { message?: unknown } | null;
  return typeof like?.message === 'string' ? (err as Error) : new Error(String(err));
}

function toBuffer(chunk: Buffer | string): Buffer {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
}

/**
 * The `# proxy:` value: the header in PROXY v1 form without its CRLF. A v2 header is written as
 * the v1 line that says the same; what v1 cannot say (LOCAL, UNIX, UDP) becomes `PROXY UNKNOWN`,
 * which tells a server to use the connection's own addresses, as LOCAL does.
 */
export function proxyMetadata(header: ProxyInfo): string {
  const { family, sourceAddress, destinationAddress, sourcePort, destinationPort } = header;
  if (header.command !== 'PROXY' || (family !== 'TCP4' && family !== 'TCP6')) return 'PROXY UNKNOWN';
  if (sourceAddress === undefined || destinationAddress === undefined) return 'PROXY UNKNOWN';
  if (sourcePort === undefined || destinationPort === undefined) return 'PROXY UNKNOWN';
  try {
    const line = formatProxyV1({ family, sourceAddress, destinationAddress, sourcePort, destinationPort });
    return line.toString('latin1').slice(0, -2);
  } catch {
    return 'PROXY UNKNOWN'; // not from a parsed header: addresses we cannot vouch for
  }
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
  private readonly startedAt: Date;
  /** The session was under TLS when we attached (implicit TLS): its `T` record comes first. */
  private readonly implicitTls: SecureInfo | undefined;
  private lastTime = 0;
  /** The header block has been written (at the first event). */
  private started = false;
  private finished = false;
  /**
   * Set when writing to the sink threw, or a stream sink emitted `'error'` (ENOSPC…, possibly
   * after the session closed); recording stops and the file may be truncated.
   */
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

  /** Set while the session's input is held for a full stream sink: ends the hold. */
  private releaseHold: (() => void) | null = null;

  private readonly onInputEvent = (chunk: Buffer | string) => this.onInput(toBuffer(chunk));
  private readonly onOutputEvent = (chunk: Buffer | string) => this.onOutput(toBuffer(chunk));
  private readonly onSecureEvent = (info?: SecureInfo) => this.onSecure(info ?? {});
  private readonly onProxyEvent = (header: ProxyInfo) => this.onProxy(header);
  private readonly onCloseEvent = () => this.finish();
  private readonly onSinkError = (err: unknown) => {
    this.error ??= asError(err);
    this.endHold();
    if (!this.finished) this.stop();
  };
  private readonly onSinkDrain = () => this.endHold();

  constructor(
    readonly session: RecordableSession,
    private readonly sink: TranscriptSink,
    private readonly options: RecorderOptions = {},
  ) {
    this.redact = options.redactAuth ?? true;
    this.clock = options.clock ?? (() => performance.now());
    this.t0 = this.clock();
    this.startedAt = options.startedAt ?? new Date();
    this.implicitTls = session.session?.secure ? (session.session.tls ?? {}) : undefined;
    if (typeof sink === 'function') {
      this.write = (line) => sink(line);
    } else {
      this.write = (line) => {
        if (!sink.write(line + '\n')) this.holdSession(sink);
      };
      // A stream reports write failures (ENOSPC…) later, as an event: they are ours to report,
      // and an unhandled 'error' would take the process down.
      sink.on('error', this.onSinkError);
    }
    session.on('input', this.onInputEvent);
    session.on('output', this.onOutputEvent);
    session.on('secure', this.onSecureEvent);
    session.on('proxy', this.onProxyEvent);
    session.on('close', this.onCloseEvent);
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
    // Nothing happened (a PROXY header that never came): no transcript rather than an empty one.
    if (!this.started) return this.stop();
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
    this.session.removeListener('proxy', this.onProxyEvent);
    this.session.removeListener('close', this.onCloseEvent);
  }

  private stop(): void {
    this.finished = true;
    this.detach();
    this.endHold();
    if (typeof this.sink !== 'function' && this.options.endStream !== false) this.sink.end();
  }

  /**
   * The stream sink is full (`write()` returned false): the session reads nothing more from the
   * client until it drains, so a slow disk slows the client as a slow message consumer does,
   * instead of queueing the session (a whole message) in the sink. What the session already
   * received is still recorded (at most about one chunk more). The session's idle timeout bounds
   * a sink that never drains; its `'close'` or `'error'` ends the hold too.
   */
  private holdSession(sink: NodeJS.WritableStream): void {
    if (this.releaseHold !== null || this.finished || typeof this.session.holdInput !== 'function') return;
    const state = sink as NodeJS.WritableStream & SinkState;
    if (state.destroyed === true || state.writableEnded === true) return; // will never drain
    const until = new Promise<void>((resolve) => (this.releaseHold = resolve));
    sink.once('drain', this.onSinkDrain);
    sink.once('close', this.onSinkDrain);
    this.session.holdInput(until);
  }

  private endHold(): void {
    const release = this.releaseHold;
    if (release === null) return;
    this.releaseHold = null;
    const sink = this.sink as NodeJS.WritableStream;
    sink.removeListener('drain', this.onSinkDrain);
    sink.removeListener('close', this.onSinkDrain);
    release();
  }

  private guard(fn: () => void): void {
    if (this.finished) return;
    try {
      fn();
    } catch (err) {
      this.error = asError(err);
      this.stop();
    }
  }

  private now(): number {
    const t = Math.max(this.lastTime, Math.floor(this.clock() - this.t0));
    this.lastTime = t;
    return t;
  }

  /**
   * Writes the header block (and the `T` record of implicit TLS) before the first record. Run at
   * the first event, when the session knows its client: after the PROXY header, if there is one.
   */
  private start(proxy?: ProxyInfo): void {
    if (this.started) return;
    this.started = true;
    const { session } = this;
    const meta: Record<string, string> = { started: this.startedAt.toISOString() };
    const remote = formatEndpoint(session.remoteAddress, session.remotePort);
    const local = formatEndpoint(session.localAddress, session.localPort);
    if (remote) meta.remote = remote;
    if (local) meta.local = local;
    if (proxy) meta.proxy = proxyMetadata(proxy);
    for (const [key, value] of Object.entries(this.options.metadata ?? {})) {
      if (!Object.prototype.hasOwnProperty.call(meta, key)) meta[key] = value;
    }
    formatHeader(meta).forEach((line) => this.write(line));
    // The handshake was over before we attached, so before anything we record: time 0.
    if (this.implicitTls) this.emit(0, 'T', formatTlsPayload(this.implicitTls));
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
      this.start();
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
      this.start();
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

  /** The PROXY header: first of all events when there is one (a later one changes nothing). */
  private onProxy(header: ProxyInfo): void {
    this.guard(() => this.start(header));
  }

  private onSecure(info: SecureInfo): void {
    const t = this.now();
    this.guard(() => {
      this.start();
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
      case 'auth-ir': {
        // Blanks alone, past the hold limit, have no `AUTH` to show: the marker stands alone.
        const prefix = authPrefixOf(line.head);
        const marker = prefix === '' ? REDACTED : `${prefix} ${REDACTED}`;
        this.emit(line.start, '!', Buffer.from(marker + term, 'latin1'));
        this.authAwaitingReply = true;
        this.dataAwaiting = false;
        return;
      }
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
  /**
   * The transcript file, `<dir>/<time>-<remote>-<random>.txt`. When the session starts with a
   * PROXY header, the file is renamed after the client's address from it and this property
   * follows (read it after `done` rather than destructuring it at once).
   */
  readonly path: string;
  recorder: SessionRecorder;
  /** Resolves once the file is closed (and renamed or removed); never rejects. */
  done: Promise<void>;
  /** Set if the file could not be opened or written (ENOSPC…): then it may be truncated. */
  readonly error: Error | null;
}

/**
 * What a transcript file may queue before the session's input is held (about one client chunk
 * more may follow): the bound on what recording a session holds in memory. Above the 16 KiB
 * default so that disk writes overlap with reading the client: through the catcher, a 200 MB
 * message on a local disk took ~14% longer to receive with `--record` at 16 KiB, ~5% at 256 KiB,
 * as long as without holds at 1 MiB.
 */
export const FILE_HIGH_WATER_MARK = 256 * 1024;

/** `<ISO time with - for :>-<remote address>-<random hex>.txt` */
function transcriptFileName(stamp: string, remoteAddress: string | undefined): string {
  const remote = (remoteAddress ?? 'unknown').replace(/[^A-Za-z0-9.]/g, '_');
  return `${stamp}-${remote}-${crypto.randomBytes(4).toString('hex')}.txt`;
}

/**
 * Records `session` into a new file in `dir` (created if missing), named
 * `<ISO time with - for :>-<remote address>-<random hex>.txt`, closed on the session's `'close'`.
 *
 * The file is created at once, named after the connection's peer. A session behind a proxy only
 * learns its client from the PROXY header: the file is then renamed after the client's address.
 * A session that closes before its first event (a PROXY header that never came: a load
 * balancer's health check, a port scan) leaves no file.
 */
export function recordToFile(
  session: RecordableSession,
  dir: string,
  options?: Omit<RecorderOptions, 'endStream'>,
): RecordToFileResult {
  fs.mkdirSync(dir, { recursive: true });
  const startedAt = options?.startedAt ?? new Date();
  const stamp = startedAt.toISOString().replace(/:/g, '-');
  const peer = session.remoteAddress;
  let file = path.join(dir, transcriptFileName(stamp, peer));
  const stream = fs.createWriteStream(file, {
    flags: 'wx',
    encoding: 'utf8',
    highWaterMark: FILE_HIGH_WATER_MARK,
  });
  const opened = new Promise<boolean>((resolve) => {
    stream.once('ready', () => resolve(true));
    stream.once('error', () => resolve(false));
  });
  let renamed: Promise<void> = Promise.resolve();
  const onProxy = () => {
    session.removeListener('proxy', onProxy);
    if (session.remoteAddress === peer) return; // LOCAL or UNKNOWN: still the connection's peer
    const named = path.join(dir, transcriptFileName(stamp, session.remoteAddress));
    // Once the file exists; the recorder keeps writing to the same open file meanwhile.
    renamed = opened.then(async (ok) => {
      if (!ok) return;
      // A failed rename leaves the transcript whole under its first name.
      await fs.promises.rename(file, named).then(
        () => void (file = named),
        () => undefined,
      );
    });
  };
  session.on('proxy', onProxy);
  const recorder = new SessionRecorder(session, stream, { ...options, startedAt, endStream: true });
  const done = new Promise<void>((resolve) => {
    stream.on('close', () => {
      session.removeListener('proxy', onProxy);
      void renamed.then(async () => {
        // Nothing recorded: the session closed before its first event.
        if (recorder.error === null && stream.bytesWritten === 0) {
          await fs.promises.rm(file, { force: true }).catch(() => undefined);
        }
        resolve();
      });
    });
  });
  return {
    get path() {
      return file;
    },
    recorder,
    done,
    get error() {
      return recorder.error;
    },
  };
}
