import { EventEmitter } from 'node:events';
import type * as tls from 'node:tls';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { canonicalAddress } from '../protocol/ip';
import type { ProxyHeader } from '../protocol/proxy-header';
import { SmtpSessionStream, secureContextFor, type SmtpSessionOptions } from '../stream/session-stream';

export interface SmtpServerOptions extends SmtpSessionOptions {
  /**
   * Implicit TLS (RFC 8314, port 465 style): each session speaks TLS from the first byte (after a
   * PROXY header, with `proxy`); needs `tls`. A handshake is a session like any other: counted by
   * `maxClients`, timed by `tlsHandshakeTimeout`, ended by `close()`.
   */
  secure?: boolean;
  /** Concurrent sessions; one more gets `421 4.7.0` and is closed. Default 1000. 0: no limit. */
  maxClients?: number;
  /**
   * Concurrent sessions per client address; beyond it `421 4.7.0`. Default 0 (no limit). With
   * `proxy`, the address is the real client's, from its PROXY header.
   */
  maxClientsPerAddress?: number;
  /** A stream to put between each session's replies and its socket (e.g. a throttle or a tap). */
  outputTransform?: () => import('node:stream').Duplex;
  /** Milliseconds `close()` waits for sessions to finish their messages before cutting them. Default 30 000. */
  closeTimeout?: number;
}

/**
 * A `net.Server` that serves each connection with an `SmtpSessionStream` (which runs TLS itself,
 * STARTTLS or implicit). Emits `session` for each one, plus `listening`, `close`, `error`,
 * `sessionError` and `tlsClientError`.
 */
export class SmtpServer extends EventEmitter {
  readonly server: net.Server;
  readonly sessions = new Set<SmtpSessionStream>();
  /** Connections refused with a 421 that is still on its way (after a TLS handshake, say). */
  private readonly refused = new Set<SmtpSessionStream>();
  private readonly options: SmtpServerOptions;
  private readonly perAddress = new Map<string, number>();
  private closed: Promise<void> | undefined;
  private starting = false;

  constructor(options: SmtpServerOptions = {}, onSession?: (session: SmtpSessionStream) => void) {
    super();
    if (options.secure && options.tls === undefined)
      throw new Error('SmtpServer: secure needs tls options (key/cert)');
    this.options = { ...options };
    if (options.tls !== undefined) this.setSecureContext(options.tls);
    if (onSession) this.on('session', onSession);
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    // While start() waits, a listen error is its rejection, not also an unhandled 'error' event.
    this.server.on('error', (error) => {
      if (!this.starting) this.emit('error', error);
    });
    this.server.on('listening', () => this.emit('listening'));
  }

  /**
   * TLS settings for the sessions from now on (STARTTLS and implicit TLS), e.g. a renewed
   * certificate: the key and certificate are checked at once (a bad pair throws here, not at a
   * client's handshake) and parsed once for every session. Sessions already open keep theirs.
   */
  setSecureContext(tlsOptions: tls.TlsOptions): void {
    this.options.tls = { ...tlsOptions, secureContext: secureContextFor(tlsOptions) };
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
  close(): Promise<void> {
    // Every caller waits for the same end.
    this.closed ??= this.closeSessions();
    return this.closed;
  }

  private get closing(): boolean {
    return this.closed !== undefined;
  }

  private async closeSessions(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.shutdown();
    // Refused connections have nothing left to finish: a 421 still waiting for a handshake is dropped.
    for (const session of this.refused) session.destroy();
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
    // The server's options as the prototype, the connection's facts as own properties: no copy of
    // every option per session (an options object per idle session is memory for nothing).
    const options: SmtpSessionOptions = Object.create(this.options);
    options.remoteAddress = socket.remoteAddress;
    options.remotePort = socket.remotePort;
    options.localAddress = socket.localAddress;
    options.localPort = socket.localPort;
    if (this.options.secure) {
      // `secure` here means a TLS listener: the session runs the handshake and is secure after it.
      options.secure = false;
      options.implicitTls = true;
    } else if (this.options.tlsInfo !== undefined) {
      options.tlsInfo = undefined; // a plain connection is not TLS, whatever the server options say
    }
    const session = new SmtpSessionStream(options);
    if (this.listenerCount('tlsClientError') > 0)
      session.on('tlsClientError', (error: Error) => this.emit('tlsClientError', error, session));
    const transform = this.options.outputTransform?.();
    const maxClients = this.options.maxClients ?? 1000;
    const perAddressLimit = this.options.maxClientsPerAddress ?? 0;
    // Behind a PROXY header the socket's address is the proxy's: the client's comes with the header.
    let address: string | undefined = this.options.proxy
      ? undefined
      : canonicalAddress(socket.remoteAddress ?? '');
    let counted = false;
    // One 'close' listener does the whole teardown: each listener costs memory per idle session.
    const onClosed = (): void => {
      this.refused.delete(session);
      if (!counted) return;
      counted = false;
      this.sessions.delete(session);
      if (address !== undefined) this.release(address);
    };
    wire(socket, session, transform, (error) => this.emit('sessionError', error, session), onClosed);
    if (this.closing || (maxClients > 0 && this.sessions.size >= maxClients)) {
      this.refuse(session, this.closing ? 'ShuttingDown' : 'TooManyConnections');
      return;
    }
    if (address !== undefined && !this.admit(address, perAddressLimit)) {
      this.refuse(session, 'TooManyConnections');
      return;
    }
    counted = true;
    this.sessions.add(session);
    if (address === undefined && perAddressLimit > 0) {
      session.once('proxy', (header: ProxyHeader) => {
        const client = canonicalAddress(header.sourceAddress ?? socket.remoteAddress ?? '');
        if (!this.admit(client, perAddressLimit)) return session.refuse('TooManyConnections');
        address = client;
      });
    }
    this.emit('session', session);
  }

  private refuse(session: SmtpSessionStream, id: 'ShuttingDown' | 'TooManyConnections'): void {
    if (!session.destroyed) this.refused.add(session);
    session.refuse(id);
  }

  /** Counts one more session from `address`, unless that would pass the limit. */
  private admit(address: string, limit: number): boolean {
    const count = (this.perAddress.get(address) ?? 0) + 1;
    if (limit > 0 && count > limit) return false;
    this.perAddress.set(address, count);
    return true;
  }

  private release(address: string): void {
    const left = (this.perAddress.get(address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(address, left);
    else this.perAddress.delete(address);
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
