import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { SmtpSessionStream, type SmtpSessionOptions } from '../stream/session-stream';

export interface SmtpServerOptions extends SmtpSessionOptions {
  /** Implicit TLS (RFC 8314, port 465 style): the listener speaks TLS from the first byte; needs `tls`. */
  secure?: boolean;
  /** Concurrent sessions; one more gets `421 4.7.0` and is closed. Default 1000. 0: no limit. */
  maxClients?: number;
  /** Concurrent sessions per client address; beyond it `421 4.7.0`. Default 0 (no limit). */
  maxClientsPerAddress?: number;
  /** A stream to put between each session's replies and its socket (e.g. a throttle or a tap). */
  outputTransform?: () => import('node:stream').Duplex;
  /** Milliseconds `close()` waits for sessions to finish their messages before cutting them. Default 30 000. */
  closeTimeout?: number;
}

/**
 * A `net.Server` (or `tls.Server` for implicit TLS) that pipes each connection through an
 * `SmtpSessionStream`. Emits `session` for each one, plus `listening`, `close` and `error`.
 */
export class SmtpServer extends EventEmitter {
  readonly server: net.Server;
  readonly sessions = new Set<SmtpSessionStream>();
  private readonly options: SmtpServerOptions;
  private readonly perAddress = new Map<string, number>();
  private closing = false;
  private starting = false;

  constructor(options: SmtpServerOptions = {}, onSession?: (session: SmtpSessionStream) => void) {
    super();
    this.options = options;
    if (onSession) this.on('session', onSession);
    if (options.secure) {
      if (options.tls === undefined) throw new Error('SmtpServer: secure needs tls options (key/cert)');
      this.server = tls.createServer({ ...options.tls, allowHalfOpen: true }, (socket) =>
        this.accept(socket),
      );
      this.server.on('tlsClientError', (error) => this.emit('tlsClientError', error));
    } else {
      this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    }
    // While start() waits, a listen error is its rejection, not also an unhandled 'error' event.
    this.server.on('error', (error) => {
      if (!this.starting) this.emit('error', error);
    });
    this.server.on('listening', () => this.emit('listening'));
  }

  listen(port?: number, host?: string, callback?: () => void): this;
  listen(options: net.ListenOptions, callback?: () => void): this;
  listen(...args: unknown[]): this {
    (this.server.listen as (...a: unknown[]) => net.Server)(...args);
    return this;
  }

  /** Resolves once listening; returns the bound address. */
  async start(port = 0, host = '127.0.0.1'): Promise<net.AddressInfo> {
    this.starting = true;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    }).finally(() => (this.starting = false));
    return this.address();
  }

  address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  /**
   * Stops accepting; idle sessions get `421 4.3.2` now, sessions inside a message after it is
   * answered; whatever is still open after `closeTimeout` is cut.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.shutdown();
    const deadline = this.options.closeTimeout ?? 30_000;
    const timer = setTimeout(() => {
      for (const session of this.sessions) session.destroy();
    }, deadline);
    timer.unref();
    await Promise.all([...this.sessions].map((session) => waitClosed(session)));
    clearTimeout(timer);
    await closed;
    this.emit('close');
  }

  private accept(socket: net.Socket): void {
    // Replies are small and the client waits for each batch: send them now, not after an ACK.
    socket.setNoDelay(true);
    const address = socket.remoteAddress ?? '';
    const secure = socket instanceof tls.TLSSocket;
    // The server's options as the prototype, the connection's facts as own properties: no copy of
    // every option per session (an options object per idle session is memory for nothing).
    const options: SmtpSessionOptions = Object.create(this.options);
    options.remoteAddress = socket.remoteAddress;
    options.remotePort = socket.remotePort;
    options.localAddress = socket.localAddress;
    options.localPort = socket.localPort;
    if (secure) {
      options.secure = true;
      options.tlsInfo = {
        protocol: socket.getProtocol(),
        cipher: socket.getCipher()?.name ?? null,
        servername: (socket as tls.TLSSocket & { servername?: string | false }).servername || null,
        authorized: socket.authorized,
      };
      options.tls = undefined; // a TLS listener does not offer STARTTLS on top
    } else if (this.options.tlsInfo !== undefined) {
      options.tlsInfo = undefined; // a plain connection is not TLS, whatever the server options say
    }
    const session = new SmtpSessionStream(options);
    const transform = this.options.outputTransform?.();
    const count = (this.perAddress.get(address) ?? 0) + 1;
    const maxClients = this.options.maxClients ?? 1000;
    const perAddressLimit = this.options.maxClientsPerAddress ?? 0;
    const overLimit =
      this.closing ||
      (maxClients > 0 && this.sessions.size >= maxClients) ||
      (perAddressLimit > 0 && count > perAddressLimit);
    let counted = false;
    // One 'close' listener does the whole teardown: each listener costs memory per idle session.
    const onClosed = (): void => {
      if (!counted) return;
      counted = false;
      this.sessions.delete(session);
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left > 0) this.perAddress.set(address, left);
      else this.perAddress.delete(address);
    };
    wire(socket, session, transform, (error) => this.emit('sessionError', error, session), onClosed);
    if (overLimit) {
      session.refuse(this.closing ? 'ShuttingDown' : 'TooManyConnections');
      return;
    }
    counted = true;
    this.sessions.add(session);
    this.perAddress.set(address, count);
    this.emit('session', session);
  }
}

/**
 * Connects a socket and its session, errors and closes travelling both ways. Without an output
 * transform the session is attached to the socket directly (`session.attach`), which measured
 * 2× less memory per idle session and less CPU per message than `socket.pipe(session).pipe(socket)`
 * (and 4× less than `stream.pipeline`); with one, the streams are piped.
 */
function wire(
  socket: net.Socket,
  session: SmtpSessionStream,
  transform: Duplex | undefined,
  onError: (error: Error) => void,
  onClosed: () => void,
): void {
  let failed = false;
  const fail = (error: Error): void => {
    if (failed) return;
    failed = true;
    if (
      (error as NodeJS.ErrnoException).code !== 'ECONNRESET' &&
      (error as NodeJS.ErrnoException).code !== 'EPIPE'
    ) {
      onError(error);
    }
    session.destroy();
    transform?.destroy();
    socket.destroy();
  };
  let linger: NodeJS.Timeout | undefined;
  // Our last reply (221, 421) is out and our side is closed: a client that keeps its side open
  // (allowHalfOpen) gets a moment to read and close, then the connection is cut, so nothing lingers.
  const startLinger = (): void => {
    linger = setTimeout(() => socket.destroy(), LINGER_MS);
    linger.unref();
  };
  socket.on('error', fail);
  session.on('error', fail);
  // The client went away: the session is over (its hooks see the AbortSignal).
  socket.on('close', () => {
    clearTimeout(linger);
    if (!session.destroyed) session.destroy();
    transform?.destroy();
    onClosed();
  });
  if (transform === undefined) {
    socket.on('finish', startLinger);
    session.attach(socket);
    return;
  }
  socket.pipe(session);
  session.pipe(transform);
  transform.pipe(socket);
  transform.on('error', fail);
  transform.once('end', startLinger);
  // The session ended without ending its output (destroyed): nothing more will be written.
  session.on('close', () => {
    if (!session.readableEnded && !socket.destroyed) socket.destroy();
  });
}

/** How long a half-open client may keep its side open after our side has closed. */
const LINGER_MS = 2000;

function waitClosed(session: SmtpSessionStream): Promise<void> {
  if (session.destroyed || session.closed) return Promise.resolve();
  return new Promise((resolve) => session.once('close', () => resolve()));
}
