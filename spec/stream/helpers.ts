/**
 * Shared harness for the stream, server and interop specs: a client-side `Peer` that records what
 * it receives and waits for it with a deadline, a session over an in-memory `duplexPair`, and a
 * session per connection over real loopback sockets. Everything opened here is closed by `cleanup()`.
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { Duplex, duplexPair, pipeline } from 'node:stream';
import * as tls from 'node:tls';
import { SmtpSessionStream, type SmtpSessionOptions } from '../../lib/stream/session-stream';
import type { SmtpMessage } from '../../lib/stream/events';
import type { Envelope, SessionInfo } from '../../lib/protocol/types';
import { createSelfSignedCertificate } from '../../lib/tls/self-signed';

export const HOST = 'mx.test';
/** What every session of these specs greets with (hostname HOST, default ident). */
export const GREETING = `220 ${HOST} ESMTP smtp-session-stream\r\n`;

let certificate: { key: string; cert: string } | undefined;
/** A self-signed key and certificate for HOST, made once per test file on first use. */
export function tlsOptions(): { key: string; cert: string } {
  certificate ??= createSelfSignedCertificate();
  return { key: certificate.key, cert: certificate.cert };
}

/** Everything opened by a test, closed by `cleanup()` in `afterEach`. */
const openThings: Array<() => void | Promise<void>> = [];

export function track(close: () => void | Promise<void>): void {
  openThings.push(close);
}

export async function cleanup(): Promise<void> {
  const closers = openThings.splice(0).reverse();
  for (const close of closers) await close();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves with `promise`, or rejects after `ms` with `what` in the message. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Waits until `value()` has not changed for `quietMs` (at most `ms`); returns it. */
export async function settled(value: () => number, quietMs = 100, ms = 3000): Promise<number> {
  const deadline = Date.now() + ms;
  let last = value();
  let since = Date.now();
  while (Date.now() < deadline) {
    await sleep(20);
    const now = value();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return now;
  }
  throw new Error(`value still changing after ${ms} ms (last ${last})`);
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The client's end of a connection: records the bytes it receives and the events it sees. */
export class Peer {
  readonly chunks: Buffer[] = [];
  dataEvents = 0;
  ended = false;
  closed = false;
  readonly endedPromise: Promise<void>;
  readonly closedPromise: Promise<void>;
  private waiters = new Set<() => void>();
  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk);
    this.dataEvents++;
    this.wake();
  };

  constructor(readonly stream: Duplex) {
    stream.on('data', this.onData);
    stream.on('error', () => undefined);
    this.endedPromise = new Promise((resolve) =>
      stream.once('end', () => {
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
    this.closedPromise = new Promise((resolve) =>
      stream.once('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      }),
    );
  }

  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get text(): string {
    return this.bytes.toString('utf8');
  }

  /** Final reply lines (`250 …`, not `250-…`) received so far. */
  get replies(): string[] {
    return finalReplies(this.text);
  }

  write(data: string | Buffer): boolean {
    return this.stream.write(data);
  }

  /** Waits until the received text satisfies `test` (a substring, a RegExp or a predicate). */
  async waitFor(test: string | RegExp | ((text: string) => boolean), ms = 2000): Promise<string> {
    const matches = (): boolean => {
      const text = this.text;
      if (typeof test === 'string') return text.includes(test);
      if (test instanceof RegExp) return test.test(text);
      return test(text);
    };
    if (matches()) return this.text;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (matches()) {
          finish();
          resolve(this.text);
        } else if (this.ended || this.closed) {
          finish();
          reject(new Error(`stream ended before ${String(test)}; got:\n${this.text}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out waiting for ${String(test)}; got:\n${this.text}`));
      }, ms);
      const finish = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  /** Waits until `count` final reply lines have arrived; returns them. */
  async waitForReplies(count: number, ms = 2000): Promise<string[]> {
    await this.waitFor((text) => finalReplies(text).length >= count, ms);
    return this.replies;
  }

  /** Waits for the server's end of the stream (FIN / push(null)). */
  async waitForEnd(ms = 2000): Promise<void> {
    await within(Promise.race([this.endedPromise, this.closedPromise]), ms, 'end of stream');
  }

  /** Stops recording (e.g. before handing the stream to TLS); returns what was received. */
  detach(): string {
    this.stream.off('data', this.onData);
    this.stream.pause();
    return this.text;
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** The final line of each reply in `text`. */
export function finalReplies(text: string): string[] {
  return text.split('\r\n').filter((line) => /^\d{3}( |$)/.test(line));
}

/** Just the codes of the final reply lines. */
export function codes(text: string): number[] {
  return finalReplies(text).map((line) => Number(line.slice(0, 3)));
}

export interface StoredMessage {
  envelope: Envelope;
  session: SessionInfo;
  body: Buffer;
}

/** A `message` listener that buffers each body and accepts it with `id-<n>`. */
export function store(session: SmtpSessionStream, into: StoredMessage[]): void {
  session.on('message', async (message: SmtpMessage) => {
    const body = await message.buffer();
    into.push({ envelope: message.envelope, session: { ...message.session }, body });
    message.accept(`id-${into.length}`);
  });
}

export interface MemorySession {
  session: SmtpSessionStream;
  client: Peer;
  /** The session's side of the pair (what a socket would be). */
  serverSide: Duplex;
}

/** A session behind an in-memory pair: `serverSide.pipe(session).pipe(serverSide)`. */
export function memorySession(options: SmtpSessionOptions = {}): MemorySession {
  const session = new SmtpSessionStream({ hostname: HOST, ...options });
  const [clientSide, serverSide] = duplexPair();
  serverSide.pipe(session).pipe(serverSide);
  const client = new Peer(clientSide);
  track(() => {
    session.destroy();
    clientSide.destroy();
    serverSide.destroy();
  });
  return { session, client, serverSide };
}

export interface SocketServer {
  port: number;
  sessions: SmtpSessionStream[];
  sockets: net.Socket[];
  close(): Promise<void>;
}

/**
 * A bare `net.Server` that pipes every connection through a new session (no SmtpServer), so the
 * stream can be tested over real sockets on its own.
 */
export async function socketServer(
  options: SmtpSessionOptions | ((socket: net.Socket) => SmtpSessionOptions),
  onSession?: (session: SmtpSessionStream, socket: net.Socket) => void,
): Promise<SocketServer> {
  const sessions: SmtpSessionStream[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const extra = typeof options === 'function' ? options(socket) : options;
    const session = new SmtpSessionStream({
      hostname: HOST,
      remoteAddress: socket.remoteAddress,
      remotePort: socket.remotePort,
      localAddress: socket.localAddress,
      localPort: socket.localPort,
      ...extra,
    });
    sessions.push(session);
    sockets.push(socket);
    socket.on('error', () => undefined);
    onSession?.(session, socket);
    pipeline(socket, session, socket, () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const close = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy();
    for (const session of sessions) session.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  track(close);
  return { port, sessions, sockets, close };
}

/** `event` on `emitter` within 2 s; its 'error' (or the deadline) rejects, naming `what`. */
function eventWithin(emitter: net.Socket, event: string, what: string): Promise<void> {
  return within(
    new Promise<void>((resolve, reject) => {
      emitter.once(event, () => resolve());
      emitter.once('error', reject);
    }),
    2000,
    what,
  );
}

/** A plain client socket to 127.0.0.1:port, wrapped in a Peer, closed by `cleanup()`. */
export async function connect(port: number, host = '127.0.0.1'): Promise<Peer> {
  const socket = net.connect({ port, host });
  track(() => {
    socket.destroy();
  });
  const peer = new Peer(socket);
  await eventWithin(socket, 'connect', `connect to ${host}:${port}`);
  return peer;
}

/** A TLS client over `stream` (after the server's 220 to STARTTLS), handshake done; closed by `cleanup()`. */
export async function startTlsClient(
  stream: Duplex,
  servername?: string,
): Promise<{ socket: tls.TLSSocket; peer: Peer }> {
  const socket = tls.connect({ socket: stream, rejectUnauthorized: false, servername });
  track(() => void socket.destroy());
  const peer = new Peer(socket);
  await eventWithin(socket, 'secureConnect', 'TLS handshake');
  return { socket, peer };
}

/**
 * Puts one event-loop turn between a client TLS socket and an in-memory pair. Over a pair whose
 * other end answers synchronously, the whole handshake would finish inside `tls.connect()`, before
 * node attaches its own 'secure' listener, and 'secureConnect' would never fire (a harness
 * artefact: real sockets are never synchronous). Writes are cut into 16 KB pieces, as a network would.
 */
export function asyncHop(inner: Duplex): Duplex {
  const outer = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      // Like a network, deliver at most 16 KB at a time (TLS coalesces writes into one big chunk).
      let offset = 0;
      const next = (): void => {
        while (offset < chunk.length) {
          const piece = chunk.subarray(offset, offset + 16 * 1024);
          offset += piece.length;
          if (!inner.write(piece)) return void inner.once('drain', next);
        }
        callback();
      };
      setImmediate(next);
    },
    final(callback) {
      setImmediate(() => {
        inner.end();
        callback();
      });
    },
    read() {
      inner.resume();
    },
    destroy(error, callback) {
      inner.destroy();
      callback(error);
    },
  });
  inner.on('data', (chunk: Buffer) => {
    if (!outer.push(chunk)) inner.pause();
  });
  inner.on('end', () => outer.push(null));
  inner.on('close', () => outer.destroy());
  return outer;
}

/** Lines joined with CRLF and a final CRLF. */
export function crlf(...lines: string[]): string {
  return lines.map((line) => `${line}\r\n`).join('');
}
