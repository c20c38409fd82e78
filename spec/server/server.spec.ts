/**
 * SmtpServer over loopback: connection limits, graceful close, abrupt clients, implicit TLS.
 */
import * as net from 'node:net';
import { PassThrough } from 'node:stream';
import * as tls from 'node:tls';
import { Throttle } from '../../lib/catcher/throttle';
import { SmtpServer, type SmtpServerOptions } from '../../lib/server/server';
import { createSelfSignedCertificate } from '../../lib/tls/self-signed';
import { SmtpSessionStream } from '../../lib/stream/session-stream';
import {
  HOST,
  Peer,
  cleanup,
  codes,
  connect,
  crlf,
  finalReplies,
  sleep,
  store,
  track,
  within,
  type StoredMessage,
  GREETING,
  tlsOptions,
} from '../stream/helpers';

const TOO_MANY = `421 4.7.0 ${HOST} Error: too many connections, try again later\r\n`;
const SHUTTING_DOWN = `421 4.3.2 ${HOST} Service shutting down\r\n`;

afterEach(cleanup);

async function startServer(
  options: SmtpServerOptions = {},
  stored: StoredMessage[] = [],
  onSession?: (session: SmtpSessionStream) => void,
): Promise<{ server: SmtpServer; port: number; stored: StoredMessage[] }> {
  const server = new SmtpServer({ hostname: HOST, ...options }, (session) => {
    store(session, stored);
    onSession?.(session);
  });
  const { port } = await server.start(0);
  track(() => server.close());
  return { server, port, stored };
}

/** Resolves once the server has forgotten `count` sessions (their 'close' ran). */
async function sessionsDownTo(server: SmtpServer, count: number): Promise<void> {
  await within(
    (async () => {
      while (server.sessions.size > count) await sleep(5);
    })(),
    2000,
    `sessions down to ${count}`,
  );
}

describe('connection limits', () => {
  test('maxClients: one more gets 421 4.7.0 and is closed; the others keep working', async () => {
    const { server, port, stored } = await startServer({ maxClients: 2 });
    const a = await connect(port);
    const b = await connect(port);
    await a.waitFor(GREETING);
    await b.waitFor(GREETING);
    const c = await connect(port);
    await c.waitForEnd();
    expect(c.text).toBe(TOO_MANY);
    expect(server.sessions.size).toBe(2);
    a.write(crlf('EHLO a', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'from a', '.', 'QUIT'));
    await a.waitForEnd();
    expect(codes(a.text)).toEqual([220, 250, 250, 250, 354, 250, 221]);
    expect(stored.map((m) => m.body.toString())).toEqual(['from a\r\n']);
    b.write('NOOP\r\n');
    await b.waitFor('250 2.0.0 Ok\r\n');
    // A slot is free again once a's session is gone.
    await sessionsDownTo(server, 1);
    const d = await connect(port);
    await d.waitFor(GREETING);
    expect(d.text).toBe(GREETING);
  });

  test('maxClientsPerAddress counts each client address on its own', async () => {
    const { port } = await startServer({ maxClientsPerAddress: 1 });
    const first = await connect(port);
    await first.waitFor(GREETING);
    const second = await connect(port);
    await second.waitForEnd();
    expect(second.text).toBe(TOO_MANY);
    // Another loopback address is another client.
    const other = new Peer(net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' }));
    track(() => void other.stream.destroy());
    await other.waitFor(GREETING);
    first.write('QUIT\r\n');
    await first.waitForEnd();
  });

  test('maxClientsPerAddress frees the slot when a session ends', async () => {
    const { server, port } = await startServer({ maxClientsPerAddress: 2 });
    const a = await connect(port);
    const b = await connect(port);
    await a.waitFor(GREETING);
    await b.waitFor(GREETING);
    const c = await connect(port);
    await c.waitForEnd();
    expect(c.text).toBe(TOO_MANY);
    a.write('QUIT\r\n');
    await a.waitForEnd();
    await sessionsDownTo(server, 1);
    const d = await connect(port);
    await d.waitFor(GREETING);
    await sleep(20);
    expect(d.text).toBe(GREETING);
  });

  test('the default maxClients is 1000 and 0 means no limit', async () => {
    const { server, port } = await startServer({ maxClients: 0 });
    const peers = await Promise.all(Array.from({ length: 20 }, () => connect(port)));
    await Promise.all(peers.map((p) => p.waitFor(GREETING)));
    expect(server.sessions.size).toBe(20);
  });
});

describe('graceful close', () => {
  test('a client mid-message gets its 250, then 421; idle ones get 421 at once; close() resolves', async () => {
    const { server, port, stored } = await startServer();
    const busy = await connect(port);
    const idle = await connect(port);
    const fresh = await connect(port);
    idle.write('EHLO idle\r\n');
    await idle.waitFor('250 DSN\r\n');
    await fresh.waitFor(GREETING);
    busy.write(
      crlf('EHLO busy', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'Subject: in flight', ''),
    );
    await busy.waitFor('354 ');
    let closed = false;
    const closing = server.close().then(() => (closed = true));
    await idle.waitForEnd();
    await fresh.waitForEnd();
    expect(finalReplies(idle.text).at(-1) + '\r\n').toBe(SHUTTING_DOWN);
    expect(fresh.text).toBe(GREETING + SHUTTING_DOWN);
    await sleep(30);
    expect(busy.text).not.toContain('421');
    expect(closed).toBe(false);
    busy.write('the rest of the text\r\n.\r\nNOOP\r\n');
    await busy.waitForEnd();
    expect(finalReplies(busy.text).slice(-2)).toEqual([
      '250 2.0.0 Ok: queued as id-1',
      SHUTTING_DOWN.trimEnd(),
    ]);
    await within(closing, 2000, 'close()');
    expect(stored[0].body.toString()).toBe('Subject: in flight\r\n\r\nthe rest of the text\r\n');
    // The listener is gone.
    const refused = net.connect({ port, host: '127.0.0.1' });
    await expect(
      new Promise((resolve, reject) => {
        refused.once('connect', resolve);
        refused.once('error', reject);
      }),
    ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  test('a connection handed over while close() waits is refused with 421 4.3.2', async () => {
    const { server, port } = await startServer();
    const busy = await connect(port);
    busy.write(crlf('EHLO busy', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'x'));
    await busy.waitFor('354 ');
    const closing = server.close();
    // A socket accepted by the kernel just before close() reaches 'connection' only now.
    const side = net.createServer((socket) => server.server.emit('connection', socket));
    await new Promise<void>((resolve) => side.listen(0, '127.0.0.1', resolve));
    track(() => new Promise<void>((resolve) => side.close(() => resolve())));
    const late = await connect((side.address() as net.AddressInfo).port);
    await late.waitForEnd();
    expect(late.text).toBe(SHUTTING_DOWN);
    busy.write('.\r\n');
    await busy.waitForEnd();
    expect(finalReplies(busy.text).slice(-2)).toEqual([
      '250 2.0.0 Ok: queued as id-1',
      SHUTTING_DOWN.trimEnd(),
    ]);
    await within(closing, 2000, 'close()');
  });

  test('close() with no sessions resolves, emits close, and a second call is harmless', async () => {
    const server = new SmtpServer({ hostname: HOST });
    await server.start(0);
    const events: string[] = [];
    server.on('close', () => events.push('close'));
    await within(server.close(), 1000, 'close()');
    await within(server.close(), 1000, 'second close()');
    expect(events).toEqual(['close']);
  });

  test('a second close() waits for the same end as the first', async () => {
    const { server, port } = await startServer({ closeTimeout: 300 });
    const slow = await connect(port);
    slow.write(crlf('EHLO s', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'never ends'));
    await slow.waitFor('354 ');
    const started = Date.now();
    const first = server.close();
    const second = server.close();
    expect(second).toBe(first);
    await within(second, 2000, 'second close()');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  test('closeTimeout cuts a session that never finishes its message', async () => {
    const { server, port } = await startServer({ closeTimeout: 150 });
    const slow = await connect(port);
    slow.write(crlf('EHLO s', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'never ends'));
    await slow.waitFor('354 ');
    const started = Date.now();
    await within(server.close(), 2000, 'close()');
    expect(Date.now() - started).toBeGreaterThanOrEqual(120);
    await slow.waitForEnd();
    expect(slow.text).not.toContain('250 2.0.0 Ok: queued');
  });
});

describe('abrupt clients', () => {
  test('resets in every state throw nothing and leave the server serving', async () => {
    const server = new SmtpServer({ hostname: HOST }, (session) => {
      session.on('message', async (m: import('../../lib/stream/events').SmtpMessage) => {
        await m.buffer().catch(() => undefined);
      });
    });
    const { port } = await server.start(0);
    track(() => server.close());
    const sessions: SmtpSessionStream[] = [];
    server.on('session', (s: SmtpSessionStream) => sessions.push(s));
    const sessionErrors: Array<NodeJS.ErrnoException> = [];
    server.on('sessionError', (e: NodeJS.ErrnoException) => sessionErrors.push(e));
    const scripts = [
      '',
      'EHLO x\r\n',
      crlf('EHLO x', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'partial'),
      'EHLO x\r\nNOOP',
    ];
    for (const script of scripts) {
      const peer = await connect(port);
      await peer.waitFor(GREETING);
      if (script) peer.write(script);
      await sleep(10);
      (peer.stream as net.Socket).resetAndDestroy();
    }
    await sessionsDownTo(server, 0);
    // Reported as an event (never an 'error' that could crash the process), and only as resets.
    for (const error of sessionErrors) expect(['ECONNRESET', 'EPIPE']).toContain(error.code);
    expect(sessions.every((s) => s.destroyed)).toBe(true);
    const ok = await connect(port);
    ok.write('QUIT\r\n');
    await ok.waitForEnd();
    expect(ok.text).toBe(GREETING + '221 2.0.0 Bye\r\n');
  });
});

describe('implicit TLS', () => {
  test('secure: true speaks TLS from the first byte; no STARTTLS; the message is stored', async () => {
    const { port, stored } = await startServer({ secure: true, tls: tlsOptions() });
    const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, servername: 'mx.test' });
    track(() => void socket.destroy());
    const peer = new Peer(socket);
    await peer.waitFor(GREETING);
    socket.write(
      crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'over 465', '.', 'QUIT'),
    );
    await peer.waitForEnd();
    expect(codes(peer.text)).toEqual([220, 250, 250, 250, 354, 250, 221]);
    expect(peer.text).not.toContain('STARTTLS');
    expect(stored[0].body.toString()).toBe('over 465\r\n');
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.tls?.protocol).toBe(socket.getProtocol());
    expect(stored[0].session.tls?.servername).toBe('mx.test');
  });

  test('a cleartext client on the TLS port: tlsClientError, the server goes on', async () => {
    const { server, port } = await startServer({ secure: true, tls: tlsOptions() });
    const errors: Error[] = [];
    server.on('tlsClientError', (e: Error) => errors.push(e));
    const plain = await connect(port);
    plain.write('EHLO plain\r\n');
    await plain.waitForEnd();
    expect(plain.text).toBe('');
    expect(errors.length).toBe(1);
  });

  test('secure without tls options is refused at construction', () => {
    expect(() => new SmtpServer({ secure: true })).toThrow(/secure needs tls/);
  });

  test('a key that does not fit its certificate is refused at construction, not at a handshake', () => {
    const other = createSelfSignedCertificate();
    expect(() => new SmtpServer({ tls: { key: other.key, cert: tlsOptions().cert } })).toThrow();
    expect(() => new SmtpServer({ secure: true, tls: { key: 'no key', cert: 'no cert' } })).toThrow();
  });

  test('a handshake that never finishes is cut after tlsHandshakeTimeout, and its slot is freed', async () => {
    const { server, port } = await startServer({ secure: true, tls: tlsOptions(), tlsHandshakeTimeout: 200 });
    const silent = await connect(port); // says nothing
    const half = await connect(port);
    half.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // the start of a ClientHello
    await within(Promise.all([silent.closedPromise, half.closedPromise]), 2000, 'handshakes cut');
    await sessionsDownTo(server, 0);
    expect(silent.text + half.text).toBe('');
  });

  test('a client that leaves before its handshake leaves no half-open connection behind', async () => {
    const { server, port } = await startServer({ secure: true, tls: tlsOptions() });
    const clients = await Promise.all(Array.from({ length: 10 }, () => connect(port)));
    await within(
      (async () => {
        while (server.sessions.size < 10) await sleep(5);
      })(),
      2000,
      '10 sessions',
    );
    for (const client of clients) (client.stream as net.Socket).end();
    await sessionsDownTo(server, 0);
    await within(Promise.all(clients.map((c) => c.closedPromise)), 2000, 'connections closed');
  });

  test('handshakes count towards maxClients; one over the limit gets its 421 inside TLS', async () => {
    const { port } = await startServer({ secure: true, tls: tlsOptions(), maxClients: 1 });
    await connect(port); // holds the one slot without ever starting TLS
    const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    track(() => void socket.destroy());
    const peer = new Peer(socket);
    await peer.waitForEnd();
    expect(peer.text).toBe(TOO_MANY);
  });

  test('close() does not wait for a refused connection that never starts its handshake', async () => {
    const { server, port } = await startServer({
      secure: true,
      tls: tlsOptions(),
      maxClients: 1,
      tlsHandshakeTimeout: 10_000,
      closeTimeout: 200,
    });
    await connect(port); // holds the slot until closeTimeout cuts it
    const refused = await connect(port); // over the limit: its 421 would wait for a handshake
    await sleep(50);
    const started = Date.now();
    await within(server.close(), 5000, 'close()');
    expect(Date.now() - started).toBeLessThan(2000);
    await within(refused.closedPromise, 1000, 'refused connection closed');
  });

  test('setSecureContext(): a renewed certificate for the sessions from now on; a bad one throws', async () => {
    const first = createSelfSignedCertificate({ commonName: 'first.test', altNames: ['first.test'] });
    const second = createSelfSignedCertificate({ commonName: 'second.test', altNames: ['second.test'] });
    const { server, port } = await startServer({ secure: true, tls: { key: first.key, cert: first.cert } });
    const subject = async (): Promise<string | undefined> => {
      const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      track(() => void socket.destroy());
      await within(new Promise((resolve) => socket.once('secureConnect', resolve)), 2000, 'handshake');
      const cn = socket.getPeerCertificate().subject?.CN;
      socket.destroy();
      return typeof cn === 'string' ? cn : undefined;
    };
    expect(await subject()).toBe('first.test');
    server.setSecureContext({ key: second.key, cert: second.cert });
    expect(await subject()).toBe('second.test');
    expect(() => server.setSecureContext({ key: first.key, cert: second.cert })).toThrow();
    expect(await subject()).toBe('second.test'); // the failed renewal changed nothing
  });

  test('close() during a handshake: the 421 goes out inside TLS, never in clear text', async () => {
    const { server, port } = await startServer({ secure: true, tls: tlsOptions() });
    const raw = await connect(port);
    await within(
      (async () => {
        while (server.sessions.size < 1) await sleep(5);
      })(),
      2000,
      'session',
    );
    const closing = server.close();
    // The handshake only starts now, after close() asked the session to end.
    const socket = tls.connect({ socket: raw.stream as net.Socket, rejectUnauthorized: false });
    track(() => void socket.destroy());
    const peer = new Peer(socket);
    await peer.waitForEnd();
    expect(peer.text).toBe(SHUTTING_DOWN);
    await within(closing, 2000, 'close()');
  });

  test('a secure listener that shuts the session down: the 421 arrives inside TLS, no greeting', async () => {
    const { port } = await startServer({ secure: true, tls: tlsOptions() }, [], (session) =>
      session.on('secure', () => session.shutdown()),
    );
    const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    track(() => void socket.destroy());
    const peer = new Peer(socket);
    await peer.waitForEnd();
    expect(peer.text).toBe(SHUTTING_DOWN);
  });

  test('implicitTls without tls options is refused at construction', () => {
    expect(() => new SmtpSessionStream({ implicitTls: true })).toThrow(/implicitTls needs tls/);
  });

  test('with proxy, the PROXY header comes first and the handshake after it (HAProxy send-proxy)', async () => {
    const { port, stored } = await startServer({ secure: true, tls: tlsOptions(), proxy: true });
    const raw = await connect(port);
    raw.write('PROXY TCP4 198.51.100.7 192.0.2.1 40000 465\r\n');
    const socket = tls.connect({ socket: raw.stream as net.Socket, rejectUnauthorized: false });
    track(() => void socket.destroy());
    const peer = new Peer(socket);
    await peer.waitFor(GREETING);
    socket.write(
      crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'proxied', '.', 'QUIT'),
    );
    await peer.waitForEnd();
    expect(codes(peer.text)).toEqual([220, 250, 250, 250, 354, 250, 221]);
    expect(stored[0].session.remoteAddress).toBe('198.51.100.7');
    expect(stored[0].session.secure).toBe(true);
  });
});

describe('output through a slow transform', () => {
  test('a throttled last reply is delivered whole, even when it takes longer than the idle timeout', async () => {
    const { port } = await startServer({ idleTimeout: 300, outputTransform: () => new Throttle(200) });
    const peer = await connect(port);
    peer.write('EHLO c\r\nQUIT\r\n');
    await peer.waitForEnd(10_000);
    expect(finalReplies(peer.text).at(-1)).toBe('221 2.0.0 Bye');
  }, 15_000);
});

describe('PROXY protocol and per-address limits', () => {
  test('maxClientsPerAddress counts the real clients named by PROXY headers, not the proxy', async () => {
    const { server, port } = await startServer({ proxy: true, maxClientsPerAddress: 1 });
    const viaProxy = async (client: string): Promise<Peer> => {
      const peer = await connect(port);
      peer.write(`PROXY TCP4 ${client} 192.0.2.1 40000 25\r\n`);
      return peer;
    };
    const a = await viaProxy('198.51.100.1');
    const b = await viaProxy('198.51.100.2');
    await a.waitFor(GREETING);
    await b.waitFor(GREETING);
    const again = await viaProxy('198.51.100.1');
    await again.waitForEnd();
    expect(again.text).toBe(TOO_MANY);
    a.write('QUIT\r\n');
    await a.waitForEnd();
    await sessionsDownTo(server, 1);
    const later = await viaProxy('198.51.100.1');
    await later.waitFor(GREETING);
  });
});

describe('plumbing', () => {
  test('STARTTLS is offered with tls options; outputTransform sees every reply byte', async () => {
    const seen: Buffer[] = [];
    const { port } = await startServer({
      tls: tlsOptions(),
      outputTransform: () => {
        const tap = new PassThrough();
        tap.on('data', (b: Buffer) => seen.push(b));
        return tap;
      },
    });
    const client = await connect(port);
    client.write('EHLO c\r\nQUIT\r\n');
    await client.waitForEnd();
    expect(client.text).toContain('250-STARTTLS\r\n');
    expect(Buffer.concat(seen).toString()).toBe(client.text);
  });

  test('errors of the listener after start() are forwarded as error events', async () => {
    const { server } = await startServer();
    const errors: Error[] = [];
    server.on('error', (e: Error) => errors.push(e));
    server.server.emit('error', new Error('EMFILE-ish'));
    expect(errors.map((e) => e.message)).toEqual(['EMFILE-ish']);
  });

  test('start() rejects when the port is taken; listen() and address() work', async () => {
    const { port } = await startServer();
    const second = new SmtpServer({ hostname: HOST });
    await expect(second.start(port)).rejects.toMatchObject({ code: 'EADDRINUSE' });
    const third = new SmtpServer({ hostname: HOST });
    const listening = new Promise<void>((resolve) => third.once('listening', resolve));
    third.listen(0, '127.0.0.1');
    await within(listening, 1000, 'listening');
    expect(third.address().port).toBeGreaterThan(0);
    await third.close();
  });
});
