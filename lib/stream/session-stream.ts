import { duplexPair } from 'node:stream';
import * as tls from 'node:tls';
import { Duplex } from 'readable-stream';
import { Protocol, type ProtocolOptions } from '../protocol/protocol';
import { LazyAbort } from '../protocol/lazy-abort';
import { parseProxyHeader, type ProxyHeader } from '../protocol/proxy-header';
import { isAllowed, type AllowList } from '../protocol/allow-list';
import type { Reply } from '../protocol/reply';
import type { Command } from '../protocol/command';
import { State } from '../protocol/state';
import type { AuthResult, IncomingMessage, MessageResult, SessionInfo, TlsInfo } from '../protocol/types';
import { AuthRequest, SmtpMessage, type Decision } from './events';

export interface ProxyProtocolOptions {
  /** Addresses allowed to send a PROXY header; others are disconnected. Default: any. */
  allowFrom?: AllowList;
  /** Milliseconds to wait for the header. Default 10 000. */
  timeout?: number;
  /** Longest header accepted (v2 with TLVs). Default 4096. */
  maxLength?: number;
}

export interface SmtpSessionOptions extends ProtocolOptions {
  /**
   * TLS for STARTTLS (key/cert, or a secureContext, SNICallback for certificates per server name).
   * Without it STARTTLS is not offered.
   */
  tls?: tls.TlsOptions;
  /** The connection piped in is already TLS (implicit TLS, RFC 8314): details for the session. */
  tlsInfo?: TlsInfo;
  /**
   * Implicit TLS (RFC 8314) run by the session itself: the client's first bytes (after a PROXY
   * header, if one is expected) are a TLS handshake with the `tls` options, and the greeting follows
   * it. What `SmtpServer` uses for `secure: true`, so that a handshake is timed and counted like any
   * session and a PROXY header can come before it.
   */
  implicitTls?: boolean;
  /** Milliseconds of client silence while a command is expected → 421 4.4.2. Default 300 000 (RFC 5321 §4.5.3.2.7). */
  idleTimeout?: number;
  /** Milliseconds of silence inside message text (DATA/BDAT) → 421 4.4.2. Default 180 000 (§4.5.3.2.5). */
  dataTimeout?: number;
  /** Milliseconds for a TLS handshake (STARTTLS or implicit); then the connection is closed. Default 30 000. */
  tlsHandshakeTimeout?: number;
  /** Expect a HAProxy PROXY protocol header (v1 or v2) before SMTP; the greeting waits for it. */
  proxy?: boolean | ProxyProtocolOptions;
}

export const STREAM_DEFAULTS = {
  idleTimeout: 300_000,
  dataTimeout: 180_000,
  tlsHandshakeTimeout: 30_000,
  proxyTimeout: 10_000,
  proxyMaxLength: 4096,
} as const;

interface TlsLayer {
  socket: tls.TLSSocket;
  /** Our end of the pair: encrypted bytes in (from the client) and out (to the client). */
  wire: import('node:stream').Duplex;
  established: boolean;
  /** TLS from the first byte (no STARTTLS): the greeting waits for the handshake. */
  implicit: boolean;
}

type Ending = 'shutdown' | 'TooManyConnections' | 'ShuttingDown' | 'Timeout';

/** Replies one `run()` may produce before the stream writes them and checks the reader keeps up. */
const REPLIES_PER_RUN = 256;

type Listener = (...args: never[]) => unknown;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyListener = (...args: any[]) => void;

/** What `attach()` needs of a connection: a `net.Socket`, a `tls.TLSSocket` or any Node Duplex. */
export type AttachableConnection = Pick<
  import('node:stream').Duplex,
  'write' | 'end' | 'pause' | 'resume' | 'on' | 'destroy' | 'destroyed'
>;

/**
 * An SMTP session as a Duplex: write the client's bytes in, read the server's bytes out
 * (`socket.pipe(session).pipe(socket)`). It moves bytes between the client, the `Protocol` core and
 * TLS, owns the timers, and turns the core's hooks into events; every decision is the core's.
 *
 * Events: `message` (SmtpMessage), `auth` (AuthRequest), `starttls` (before the upgrade), `secure`
 * (TlsInfo, after it), `proxy` (ProxyHeader), `command` (Command), `reply` (Reply), `input` / `output`
 * (cleartext Buffers, for recorders), `tlsClientError`, and the stream events (`close`, `error`…).
 * Async listeners of `message`, `auth` and `starttls` are awaited in order; pipelined commands
 * wait for them.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class SmtpSessionStream extends Duplex {
  readonly protocol: Protocol;

  private readonly controller = new LazyAbort();
  private readonly options: SmtpSessionOptions;
  private greeted = false;
  private closing = false;
  private tlsLayer: TlsLayer | undefined;
  /** A write callback held back while the core is busy or the reader of our replies is slow. */
  private heldCallback: ((error?: Error | null) => void) | undefined;
  /** Set while replies are not being read: processing resumes from `_read`. */
  private outputBlocked = false;
  private running = false;
  private inputEnded = false;
  private finalCallback: ((error?: Error | null) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the client was last heard from (monotonic ms, see `now()`), for the silence timer. */
  private lastActivity = 0;
  /** `protocol.replyCount` when the idle timer was last restarted: more means a command completed. */
  private repliesAtTouch = 0;
  /** The running timer is the idle/DATA one (not the proxy or TLS handshake one). */
  private timerIsIdle = false;
  private proxyPending: Buffer | undefined;
  /** Set by `attach()`: replies go straight to this connection instead of our readable side. */
  private connection: AttachableConnection | undefined;
  /** A chunk from the attached connection is held by the core (the connection is paused). */
  private inputHeld = false;
  /** Input arrived while drive() was running (an in-process connection writing from a handler). */
  private fedWhileRunning = false;
  /** Someone listens to `input` / `output`: only then are those events emitted (they cost per chunk). */
  private inputTapped = false;
  private outputTapped = false;
  /** A shutdown or refusal asked for during a TLS handshake: done once it completes (never in clear). */
  private endingAfterHandshake: Ending | undefined;
  /** The connection piped into us (`socket.pipe(session)`): its errors end us, our end closes it. */
  private source: import('node:stream').Readable | undefined;
  /** Made when a source is piped in (never for `attach()`): ends this session on the source's error. */
  private onSourceError: ((error: Error) => void) | undefined;
  /** Destroyed after all our output was taken: the source is not ours to close (see onUnreadEnd). */
  declare private sourceKept: boolean | undefined;
  /**
   * A hold asked for (`holdInput`) while `drive()` runs: the run waits for it before it reads on.
   * Declared, not initialised: only a session that is ever held (a recorded one) gets the slot.
   */
  declare private inputHold: PromiseLike<unknown> | undefined;

  constructor(options: SmtpSessionOptions = {}) {
    super({ allowHalfOpen: true, decodeStrings: true });
    if (options.implicitTls && options.tls === undefined)
      throw new Error('SmtpSessionStream: implicitTls needs tls options (key/cert)');
    this.options = options;
    const protocol = new Protocol(options);
    this.protocol = protocol;
    if (options.tlsInfo !== undefined) protocol.setTlsInfo(options.tlsInfo);
    if (
      options.tls !== undefined &&
      options.tlsHandler === undefined &&
      !protocol.session.secure &&
      !options.implicitTls
    ) {
      protocol.tlsHandler = async (session) => {
        await this.emitInOrder('starttls', session);
        return true;
      };
    }
    if (options.proxy) {
      const allow = typeof options.proxy === 'object' ? options.proxy.allowFrom : undefined;
      const allowed = allow === undefined || isAllowed(allow, options.remoteAddress);
      this.proxyPending = Buffer.alloc(0);
      if (!allowed) queueMicrotask(() => this.destroy());
      else
        this.arm(
          typeof options.proxy === 'object'
            ? (options.proxy.timeout ?? STREAM_DEFAULTS.proxyTimeout)
            : STREAM_DEFAULTS.proxyTimeout,
          () => this.destroy(),
        );
    }
  }

  /**
   * `socket.pipe(session).pipe(socket)`: the source's error (a reset, a timeout) ends the session
   * instead of going unhandled and crashing the process, and a session that ends itself closes
   * the source (`_destroy`). Seen in `emit`, not by listeners: a listener costs memory per session.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  override emit(event: string | symbol, ...args: any[]): boolean {
    if (event === 'pipe') this.adoptSource(args[0] as import('node:stream').Readable);
    else if (event === 'unpipe') this.releaseSource(args[0] as import('node:stream').Readable);
    return super.emit(event, ...args);
  }

  private adoptSource(source: import('node:stream').Readable): void {
    this.source = source;
    // The connection's own failure: the session ends (no error of its own to report).
    this.onSourceError ??= () => this.destroy();
    source.on('error', this.onSourceError);
  }

  private releaseSource(source: import('node:stream').Readable): void {
    if (this.onSourceError !== undefined) source.off('error', this.onSourceError);
    if (this.source === source) this.source = undefined;
  }

  // Events are the stream's face of the core's hooks: the first listener of an event installs its
  // hook. (Overriding the adders, not a 'newListener' listener: that costs memory per session.)
  override on(event: string | symbol, listener: AnyListener): this {
    this.installHook(event);
    return super.on(event, listener);
  }
  override addListener(event: string | symbol, listener: AnyListener): this {
    this.installHook(event);
    return super.addListener(event, listener);
  }
  override prependListener(event: string | symbol, listener: AnyListener): this {
    this.installHook(event);
    return super.prependListener(event, listener);
  }

  private installHook(event: string | symbol): void {
    const { protocol, options } = this;
    if (protocol === undefined) return; // listeners added by the Duplex constructor
    if (event === 'input') this.inputTapped = true;
    else if (event === 'output') this.outputTapped = true;
    else if (event === 'message' && options.messageReceivedHandler === undefined) {
      protocol.messageReceivedHandler = (incoming) => this.dispatchMessage(incoming);
    } else if (event === 'auth' && options.validateAuthenticationHandler === undefined) {
      protocol.validateAuthenticationHandler = (credentials, session) =>
        // No decision is a refusal: an auth listener must accept() to let anyone in.
        this.decideWith(new AuthRequest(credentials, session), 'auth', (): AuthResult => false);
    } else if (event === 'command' && protocol.onCommand === options.onCommand) {
      protocol.onCommand = (command, session) => {
        options.onCommand?.(command, session);
        this.emit('command', command);
      };
    } else if (event === 'reply' && protocol.onReply === options.onReply) {
      protocol.onReply = (answer, session) => {
        options.onReply?.(answer, session);
        this.emit('reply', answer);
      };
    }
  }

  /** Fires when the session ends (client gone, closed, destroyed). */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The per-connection facts hooks see (addresses, HELO, TLS, user). */
  get session(): SessionInfo {
    return this.protocol.session;
  }

  get remoteAddress(): string | undefined {
    return this.protocol.session.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.protocol.session.remotePort;
  }
  get localAddress(): string | undefined {
    return this.protocol.session.localAddress;
  }
  get localPort(): number | undefined {
    return this.protocol.session.localPort;
  }

  /**
   * Reads nothing more from the client until `until` settles: for a consumer of the `input` and
   * `output` events that cannot keep up (a transcript recorder whose disk is slower than the
   * client). Input is held as for a slow message consumer: the connection is paused (`attach()`),
   * or the write callback held (pipe), or TLS input paused, so the client is slowed rather than
   * buffered. A run of the core under way finishes its batch of replies; input not yet processed
   * waits, and all goes on once `until` settles (fulfilled or rejected). Holds may overlap: each
   * one is waited for. Nothing is kept for a session that is never held. The silence timers keep
   * running, so a hold that outlasts the idle (or DATA) timeout ends the session with
   * `421 4.4.2`, as a client gone silent would: a consumer that never catches up cannot wedge it.
   */
  holdInput(until: PromiseLike<unknown>): void {
    if (this.destroyed || this.closing) return;
    if (this.running) {
      // drive() is on the stack (an `input`/`output` listener), or waiting for a hook or a hold:
      // it waits for this one before it goes on.
      const held = this.inputHold;
      this.inputHold = held === undefined ? until : Promise.allSettled([held, until]);
      return;
    }
    // Between chunks: held from now on, as while a hook is pending (`running` stays set, so input
    // that arrives is queued and its connection paused), and driven on once it settles.
    this.running = true;
    this.resumeAfter(until);
  }

  private resumeAfter(hold: PromiseLike<unknown>): void {
    const resume = (): void => this.drive();
    hold.then(resume, resume);
  }

  /** A hold is pending (`holdInput`): drive() waits for it, input held, as for a hook. */
  private waitForHold(): boolean {
    const hold = this.inputHold;
    if (hold === undefined) return false;
    this.inputHold = undefined;
    this.resumeAfter(hold);
    return true;
  }

  /** Graceful end: 421 now if idle, or right after the message in progress has been answered. */
  shutdown(): void {
    if (this.closing || this.destroyed) return;
    if (this.handshaking()) {
      this.endingAfterHandshake ??= 'shutdown';
      return;
    }
    // Not greeted yet: the 421 replaces the greeting (which must not be reported as sent).
    this.greeted = true;
    this.protocol.shutdown();
    if (!this.running) this.drive();
  }

  /** Ends the session with a 421 of the server's choosing (e.g. too many connections). */
  refuse(id: 'TooManyConnections' | 'ShuttingDown' | 'Timeout'): void {
    if (this.closing || this.destroyed) return;
    if (this.handshaking()) {
      this.endingAfterHandshake = id;
      return;
    }
    this.greeted = true;
    this.sendCleartext(this.protocol.closeWith(id));
    this.closeOutput();
  }

  /**
   * A TLS handshake is under way, or implicit TLS has not begun: nothing may be written in clear
   * text now, so a 421 waits for the handshake (which its own timeout bounds).
   */
  private handshaking(): boolean {
    if (this.tlsLayer !== undefined) return !this.tlsLayer.established;
    return this.options.implicitTls === true && !this.greeted;
  }

  /**
   * Serves one connection directly, without `pipe` (what `SmtpServer` does): its data is our input,
   * replies are written to it, its backpressure pauses us and ours pauses it. Same behaviour as
   * `connection.pipe(session).pipe(connection)` for a fraction of the memory and CPU, but our own
   * readable side stays empty (tap replies with the `output` event). The caller still owns the
   * connection's `error` and `close` (destroy the session on both); destroying the session
   * destroys the connection.
   */
  attach(connection: AttachableConnection): this {
    if (this.connection !== undefined) throw new Error('SmtpSessionStream: already attached');
    this.connection = connection;
    connection.on('data', (chunk: Buffer) => this.receiveAttached(chunk));
    connection.on('drain', () => this.outputDrained());
    connection.on('end', () => this._final(noop));
    connection.resume(); // as pipe() does: a connection paused before (pauseOnConnect) is read too
    // Greeted after the caller's synchronous set-up, as a pipe would: a refusal replaces it.
    queueMicrotask(() => {
      if (this.proxyPending === undefined) this.open();
    });
    return this;
  }

  private receiveAttached(chunk: Buffer): void {
    this.inputHeld = true;
    this._write(chunk, 'binary', this.releaseAttachedInput);
    if (this.inputHeld) this.connection?.pause();
  }

  private readonly releaseAttachedInput = (): void => {
    if (!this.inputHeld) return;
    this.inputHeld = false;
    this.connection?.resume();
  };

  // ---- Duplex plumbing ------------------------------------------------------------------------

  override _read(): void {
    if (this.proxyPending === undefined) this.open();
    this.outputDrained();
  }

  /** Whoever reads our replies can take more: resume TLS output and the core. */
  private outputDrained(): void {
    this.tlsLayer?.wire.resume();
    if (this.outputBlocked) {
      this.outputBlocked = false;
      if (!this.running) this.drive();
    }
  }

  /** Bytes to the client (cleartext or TLS records); false when the reader wants a pause. */
  private sendRaw(bytes: Buffer | string): boolean {
    if (this.connection !== undefined) return this.connection.write(bytes);
    return this.push(bytes);
  }

  private endRaw(): void {
    if (this.connection !== undefined) this.connection.end();
    else this.push(null);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.closing) return callback();
    if (this.proxyPending !== undefined) return this.readProxyHeader(chunk, callback);
    this.takeInput(chunk, callback);
  }

  /** The client's bytes after any PROXY header: into TLS while TLS is on (or starting), else to the core. */
  private takeInput(chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (this.tlsLayer === undefined && this.options.implicitTls) this.open();
    const layer = this.tlsLayer;
    if (layer === undefined) return this.feed(chunk, callback);
    this.touch();
    if (layer.wire.write(chunk)) callback();
    else layer.wire.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.tlsLayer !== undefined && !this.closing) {
      // The encrypted input ended; the cleartext still inside TLS is answered first, and the TLS
      // socket's own 'end' (after its last record is read) ends the input.
      this.tlsLayer.wire.end();
      this.finalCallback = callback;
      return;
    }
    this.inputEnded = true;
    this.endOfInput(callback);
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    this.clearTimer();
    this.protocol.abort(error ?? new Error('session closed'));
    this.controller.abort(error ?? new Error('session closed'));
    this.tlsLayer?.socket.destroy();
    this.tlsLayer?.wire.destroy();
    this.releaseHeld();
    if (this.connection !== undefined && !this.connection.destroyed) this.connection.destroy();
    if (this.source !== undefined && this.sourceKept !== true && !this.source.destroyed)
      this.source.destroy();
    callback(error);
  }

  // ---- Cleartext in, replies out --------------------------------------------------------------

  /** The session starts: the greeting, or for implicit TLS the handshake (the greeting follows it). */
  private open(): void {
    if (this.greeted || this.destroyed || this.closing) return;
    if (!this.options.implicitTls) return this.greet();
    if (this.tlsLayer === undefined) this.upgrade(true);
  }

  private greet(): void {
    this.greeted = true;
    this.sendCleartext(Buffer.from(this.protocol.start().render(false), 'latin1'));
    this.touch();
  }

  private feed(chunk: Buffer, callback: (error?: Error | null) => void): void {
    if (!this.greeted) this.open();
    if (this.inputTapped) this.emit('input', chunk);
    // The silence clock is restarted after the chunk is processed (end of drive()), when the state
    // it leaves is known: a command completed, or text in DATA.
    this.protocol.receive(chunk);
    this.heldCallback = callback;
    if (!this.running) this.drive();
    else this.fedWhileRunning = true;
  }

  /** Runs the core until it needs more input, waits for a hook, or our reader is slow. */
  private drive(): void {
    if (this.destroyed) return;
    this.running = true;
    if (this.waitForHold()) return; // asked for while a hook or another hold was waited for
    for (;;) {
      // Replies as text unless an `output` listener wants Buffers: no Buffer per batch to write.
      // At most REPLIES_PER_RUN per run, so that a client that sends commands without reading the
      // replies is held back by its own backpressure, not answered into our memory.
      const result = this.outputTapped
        ? this.protocol.run(REPLIES_PER_RUN)
        : this.protocol.runText(REPLIES_PER_RUN);
      if (result.output !== null) this.sendCleartext(result.output);
      if (result.action === 'close') {
        this.running = false;
        this.closeOutput();
        return;
      }
      if (result.action === 'starttls') {
        this.running = false;
        this.releaseHeld();
        this.upgrade();
        return;
      }
      if (result.pending !== null) {
        result.pending.then(
          () => this.drive(),
          (error: unknown) => this.destroy(error as Error),
        );
        return;
      }
      if (this.outputBlocked) break; // resumed by the reader's drain
      if (this.waitForHold()) return; // asked for by an input/output listener of this run
      if (result.more) continue; // the reply budget stopped the run: the reader keeps up, go on
      // An in-process connection can answer our write at once, from inside it: that input came
      // while we were running and must be processed now, or both sides would wait for ever.
      if (this.fedWhileRunning) {
        this.fedWhileRunning = false;
        continue;
      }
      break;
    }
    this.running = false;
    if (this.outputBlocked) return; // resumed by _read
    this.touch();
    this.releaseHeld();
    if (this.tlsLayer?.established) this.tlsLayer.socket.resume();
    if (this.inputEnded && this.finalCallback !== undefined) {
      const callback = this.finalCallback;
      this.finalCallback = undefined;
      this.endOfInput(callback);
    }
  }

  private releaseHeld(): void {
    const callback = this.heldCallback;
    this.heldCallback = undefined;
    callback?.();
  }

  private sendCleartext(bytes: Buffer | string): void {
    const layer = this.tlsLayer;
    if (layer !== undefined && !layer.established) return; // never clear text into a handshake
    if (this.outputTapped)
      this.emit('output', typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes);
    if (layer !== undefined) {
      // A client that does not read replies must stop us under TLS too (resumed on 'drain').
      if (!layer.socket.write(bytes)) this.outputBlocked = true;
      return;
    }
    if (!this.sendRaw(bytes)) this.outputBlocked = true;
  }

  /** The client ended its side: finish what was received, then end ours. */
  private endOfInput(callback: (error?: Error | null) => void): void {
    if (this.running || this.protocol.busy) {
      this.finalCallback = callback;
      return;
    }
    if (this.protocol.state !== State.Done) this.protocol.abort(new Error('client closed its side'));
    this.closeOutput();
    callback();
  }

  /** No more replies: end our readable side (after TLS's close_notify when TLS is up). */
  private closeOutput(): void {
    if (this.closing) return;
    this.closing = true;
    // Our side is done. A client that never reads our last replies never lets them drain: the
    // connection goes after the idle timeout. (Once they are out, whoever owns the connection
    // decides how long a half-open client may stay: SmtpServer gives it 2 s after 'finish'.)
    this.arm(this.options.idleTimeout ?? STREAM_DEFAULTS.idleTimeout, this.onUnreadEnd);
    this.releaseHeld();
    if (this.tlsLayer?.established) {
      this.tlsLayer.socket.end();
      return;
    }
    this.endRaw();
  }

  // ---- STARTTLS inside the stream ------------------------------------------------------------

  /** TLS inside the stream: after STARTTLS's 220, or from the first byte (`implicit`). */
  private upgrade(implicit = false): void {
    const [inner, wire] = duplexPair();
    let socket: tls.TLSSocket;
    try {
      socket = new tls.TLSSocket(inner as unknown as import('node:net').Socket, {
        ...this.options.tls,
        secureContext: secureContextFor(this.options.tls),
        isServer: true,
      });
    } catch (error) {
      // Unusable TLS options (a key that does not match its certificate…): this session fails,
      // never the process.
      this.protocol.tlsFailed();
      this.emit('tlsClientError', error as Error);
      this.destroy();
      return;
    }
    const layer: TlsLayer = { socket, wire, established: false, implicit };
    this.tlsLayer = layer;
    this.arm(this.options.tlsHandshakeTimeout ?? STREAM_DEFAULTS.tlsHandshakeTimeout, () => this.destroy());
    wire.on('data', (encrypted: Buffer) => {
      if (!this.sendRaw(encrypted)) wire.pause();
    });
    wire.on('end', () => {
      if (!this.closing) this.closing = true;
      this.endRaw();
    });
    socket.on('secure', () => {
      layer.established = true;
      const info: TlsInfo = {
        protocol: socket.getProtocol(),
        cipher: socket.getCipher()?.name ?? null,
        servername: (socket as tls.TLSSocket & { servername?: string | false }).servername || null,
        authorized: socket.authorized,
        peerCommonName: peerCommonName(socket),
      };
      if (implicit) this.protocol.setTlsInfo(info);
      else this.protocol.tlsStarted(info);
      this.emit('secure', info);
      const ending = this.endingAfterHandshake;
      this.endingAfterHandshake = undefined;
      if (ending === 'shutdown') this.shutdown();
      else if (ending !== undefined) this.refuse(ending);
      // (A `secure` listener may have ended the session already.)
      else if (implicit && !this.greeted && !this.closing && !this.destroyed) this.greet();
      this.touch();
    });
    socket.on('data', (cleartext: Buffer) => {
      if (this.closing) return;
      if (this.inputTapped) this.emit('input', cleartext);
      this.touch();
      this.protocol.receive(cleartext);
      if (!this.running) this.drive();
      else this.fedWhileRunning = true;
      if (this.running || this.outputBlocked) socket.pause();
    });
    socket.on('drain', () => {
      if (!this.outputBlocked) return;
      this.outputBlocked = false;
      if (!this.running) this.drive();
    });
    socket.on('end', () => {
      // The last cleartext has been read (close_notify, or the encrypted input ended): as at the
      // end of plain input, what was received is answered first.
      this.inputEnded = true;
      const callback = this.finalCallback ?? noop;
      this.finalCallback = undefined;
      if (!this.closing || callback !== noop) this.endOfInput(callback);
    });
    socket.on('error', (error: Error) => {
      // Garbage instead of a handshake, or a broken TLS stream: this connection only.
      if (!layer.established) this.protocol.tlsFailed();
      this.emit('tlsClientError', error);
      this.destroy();
    });
  }

  // ---- PROXY protocol ------------------------------------------------------------------------

  private readProxyHeader(chunk: Buffer, callback: (error?: Error | null) => void): void {
    const buffered = Buffer.concat([this.proxyPending as Buffer, chunk]);
    const maxLength = typeof this.options.proxy === 'object' ? this.options.proxy.maxLength : undefined;
    const result = parseProxyHeader(buffered, { maxLength: maxLength ?? STREAM_DEFAULTS.proxyMaxLength });
    if (result.status === 'incomplete') {
      this.proxyPending = buffered;
      return callback();
    }
    this.proxyPending = undefined;
    this.clearTimer();
    if (result.status === 'invalid') {
      this.emit('proxyError', new Error(`invalid PROXY header: ${result.reason}`));
      callback();
      this.destroy();
      return;
    }
    this.applyProxyHeader(result.header);
    this.open();
    if (result.rest.length > 0) this.takeInput(result.rest, callback);
    else callback();
  }

  private applyProxyHeader(header: ProxyHeader): void {
    const session = this.protocol.session;
    session.extra.proxy = header;
    if (header.command === 'PROXY' && header.sourceAddress !== undefined) {
      session.remoteAddress = header.sourceAddress;
      session.remotePort = header.sourcePort;
      session.localAddress = header.destinationAddress;
      session.localPort = header.destinationPort;
    }
    this.emit('proxy', header);
  }

  // ---- Hooks as events -----------------------------------------------------------------------

  private dispatchMessage(incoming: IncomingMessage): Promise<MessageResult> {
    const message = new SmtpMessage(incoming);
    return this.decideWith(message, 'message', () => undefined).finally(() => {
      const { body } = message;
      // A body being piped or read goes on to its end; one nobody touched is drained.
      const inUse =
        body.readableFlowing === true || body.listenerCount('data') > 0 || body.listenerCount('readable') > 0;
      if (inUse && !body.destroyed) incoming.body.claim();
      else if (!body.destroyed) body.destroy();
    });
  }

  /**
   * Runs the listeners of `event` in order with `subject`; the answer is the first accept/reject,
   * or `fallback()` once every listener has settled without one (only if all returned Promises).
   */
  private async decideWith<T>(
    subject: { decision: Decision<T> },
    event: 'message' | 'auth',
    fallback: () => T,
  ): Promise<T> {
    const { decision } = subject;
    let allAsync = true;
    for (const listener of this.listeners(event) as Listener[]) {
      const result = (listener as (subject: unknown) => unknown).call(this, subject);
      if (isThenable(result)) await Promise.race([result, decision.promise]);
      else allAsync = false;
      if (decision.decided) return decision.value as T;
    }
    if (!allAsync) await decision.promise;
    return decision.decided ? (decision.value as T) : fallback();
  }

  /** Emits to each listener in order, awaiting any Promise it returns. */
  private async emitInOrder(event: string, ...args: unknown[]): Promise<void> {
    for (const listener of this.listeners(event) as Listener[]) {
      const result = (listener as (...a: unknown[]) => unknown).apply(this, args);
      if (isThenable(result)) await result;
    }
  }

  // ---- Timers --------------------------------------------------------------------------------

  /**
   * Client activity: restart the silence clock. Per chunk that is one clock read: the timer is
   * not touched. It runs for at most the shorter of the idle and DATA timeouts; when it fires it
   * measures the silence against the current state's limit and, short of it, waits for the rest.
   * (It can never fire late: a switch to the shorter limit needs client input, which comes after
   * the timer was armed, so the new deadline is after the timer's.)
   */
  private touch(): void {
    if (this.closing || this.tlsLayer?.established === false) return;
    const inText = this.protocol.state === State.Data || this.protocol.state === State.Bdat;
    // A command trickling in (slowloris) does not restart the clock: the whole line must arrive
    // within the idle timeout after the previous reply.
    const progressed = this.protocol.replyCount !== this.repliesAtTouch;
    const partialCommand = !inText && this.protocol.bufferedInput > 0 && !progressed;
    if (partialCommand && this.timer !== undefined && this.timerIsIdle) return;
    this.repliesAtTouch = this.protocol.replyCount;
    this.lastActivity = now();
    if (this.timer !== undefined && this.timerIsIdle) return;
    this.arm(this.silencePeriod(), this.onTimeout);
    this.timerIsIdle = this.timer !== undefined;
  }

  /** The silence allowed now: the DATA timeout inside message text, else the idle timeout. */
  private silenceLimit(): number {
    const inText = this.protocol.state === State.Data || this.protocol.state === State.Bdat;
    const limit = inText
      ? (this.options.dataTimeout ?? STREAM_DEFAULTS.dataTimeout)
      : (this.options.idleTimeout ?? STREAM_DEFAULTS.idleTimeout);
    return limit > 0 && Number.isFinite(limit) ? limit : Infinity;
  }

  /** How often the silence is checked: the shorter of the two limits that are set. */
  private silencePeriod(): number {
    const idle = this.options.idleTimeout ?? STREAM_DEFAULTS.idleTimeout;
    const data = this.options.dataTimeout ?? STREAM_DEFAULTS.dataTimeout;
    const valid = (ms: number): number => (ms > 0 && Number.isFinite(ms) ? ms : Infinity);
    return Math.min(valid(idle), valid(data));
  }

  private readonly onUnreadEnd = (): void => {
    const connection = this.connection as { writableLength?: number } | undefined;
    if (connection !== undefined) {
      // Attached: our replies still queued means the client is not reading; else its owner's call.
      if ((connection.writableLength ?? 0) > 0) this.destroy();
      return;
    }
    if (this.readableEnded) {
      // Piped, and everything we sent was taken (perhaps by a slow transform still delivering it):
      // the session is over, but the connection is left to whoever reads our output.
      this.sourceKept = true;
    }
    this.destroy();
  };

  private readonly onTimeout = (): void => {
    const time = now();
    // Waiting for our own hooks is not the client's silence.
    if (this.protocol.busy) this.lastActivity = time;
    const silent = time - this.lastActivity;
    const limit = this.silenceLimit();
    if (silent + 1 < limit) {
      // Activity since the timer was armed, or a state with a longer limit: wait for the rest.
      this.arm(Math.min(limit - silent, this.silencePeriod()), this.onTimeout);
      this.timerIsIdle = this.timer !== undefined;
      return;
    }
    this.refuse('Timeout');
  };

  private arm(ms: number, action: () => void): void {
    this.clearTimer();
    if (ms <= 0 || !Number.isFinite(ms)) return;
    this.timer = setTimeout(action, ms);
    this.timer.unref?.();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerIsIdle = false;
  }
}

function noop(): void {}

/**
 * One SecureContext per TLS options object: building one parses the key and certificate, far more
 * work than a handshake needs, and sessions of one server share their options. A caller's own
 * `secureContext` is used as it is.
 */
const secureContexts = new WeakMap<tls.TlsOptions, tls.SecureContext>();

export function secureContextFor(options: tls.TlsOptions | undefined): tls.SecureContext | undefined {
  if (options === undefined) return undefined;
  if (options.secureContext !== undefined) return options.secureContext;
  let context = secureContexts.get(options);
  if (context === undefined) {
    context = tls.createSecureContext(options);
    secureContexts.set(options, context);
  }
  return context;
}

/**
 * Milliseconds on a monotonic clock (wall-clock steps, NTP or a resumed VM, must not cut or spare
 * a session), as a small integer: no boxed number per session.
 */
function now(): number {
  return Math.floor(performance.now());
}

function isThenable(value: unknown): value is Promise<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

function peerCommonName(socket: tls.TLSSocket): string | null {
  const certificate = socket.getPeerCertificate?.();
  const cn = certificate?.subject?.CN;
  return typeof cn === 'string' ? cn : null;
}

export type { Reply };

/** The session's events with their arguments, for typed listeners. */
export interface SmtpSessionEvents {
  message: (message: SmtpMessage) => unknown;
  auth: (request: AuthRequest) => unknown;
  starttls: (session: SessionInfo) => unknown;
  secure: (info: TlsInfo) => void;
  proxy: (header: ProxyHeader) => void;
  command: (command: Command) => void;
  reply: (reply: Reply) => void;
  input: (chunk: Buffer) => void;
  output: (chunk: Buffer) => void;
  tlsClientError: (error: Error) => void;
  proxyError: (error: Error) => void;
}

// Typed overloads for the session's own events; stream events keep their usual signatures.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface SmtpSessionStream {
  on<E extends keyof SmtpSessionEvents>(event: E, listener: SmtpSessionEvents[E]): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this; // eslint-disable-line @typescript-eslint/no-explicit-any
  once<E extends keyof SmtpSessionEvents>(event: E, listener: SmtpSessionEvents[E]): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this; // eslint-disable-line @typescript-eslint/no-explicit-any
}
