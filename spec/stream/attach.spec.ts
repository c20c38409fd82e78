/**
 * SmtpSessionStream.attach(connection): the session reads the connection's 'data' and writes its
 * replies straight to `connection.write()`, without pipes. Driven over an in-memory `duplexPair`
 * (a non-socket Duplex, the test playing the client on the other side) and over real loopback
 * sockets through SmtpServer (which attaches unless `outputTransform` is set).
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { type Duplex, type DuplexOptions, PassThrough, duplexPair } from 'node:stream';
import type { Reply } from '../../lib/protocol/reply';
import type { TlsInfo } from '../../lib/protocol/types';
import { SmtpServer, type SmtpServerOptions } from '../../lib/server/server';
import type { SmtpMessage } from '../../lib/stream/events';
import { SmtpSessionStream, type SmtpSessionOptions } from '../../lib/stream/session-stream';
import {
  HOST,
  Peer,
  cleanup,
  codes,
  connect,
  crlf,
  finalReplies,
  settled,
  sha256,
  sleep,
  store,
  startTlsClient,
  track,
  within,
  type StoredMessage,
  GREETING,
  tlsOptions,
} from './helpers';

const TOO_MANY = `421 4.7.0 ${HOST} Error: too many connections, try again later\r\n`;

afterEach(async () => {
  jest.restoreAllMocks();
  await cleanup();
});

interface Attached {
  session: SmtpSessionStream;
  /** The session's side of the pair: what a socket would be. */
  a: Duplex;
  /** The client's side. */
  b: Duplex;
}

/** A session and a fresh in-memory pair, not attached yet; everything is destroyed by cleanup(). */
function pairSession(options: SmtpSessionOptions = {}, pairOptions?: DuplexOptions): Attached {
  const session = new SmtpSessionStream({ hostname: HOST, ...options });
  const [a, b] = duplexPair(pairOptions);
  a.on('error', () => undefined);
  b.on('error', () => undefined);
  track(() => {
    session.destroy();
    a.destroy();
    b.destroy();
  });
  return { session, a, b };
}

/** Resolves when `emitter` emits `event` (with a deadline). */
function once(emitter: NodeJS.EventEmitter, event: string, ms = 2000): Promise<void> {
  return within(new Promise<void>((resolve) => emitter.once(event, () => resolve())), ms, `'${event}' event`);
}

describe('attach over a non-socket Duplex (duplexPair)', () => {
  test('a full transaction: exact replies, exact body bytes, 221 ends the connection', async () => {
    const { session, a, b } = pairSession();
    const bodies: Buffer[] = [];
    session.on('message', async (message: SmtpMessage) => {
      bodies.push(await message.buffer());
      message.accept('att-1');
    });
    const output: Buffer[] = [];
    session.on('output', (chunk: Buffer) => output.push(chunk));
    const aFinished = once(a, 'finish');

    expect(session.attach(a)).toBe(session);
    // Greeted in a microtask, not synchronously inside attach().
    expect(output).toHaveLength(0);
    expect(a.writableLength).toBe(0);
    await Promise.resolve();
    expect(Buffer.concat(output).toString()).toBe(GREETING);

    const client = new Peer(b);
    await client.waitFor(GREETING);
    expect(client.text).toBe(GREETING);

    client.write('EHLO client.test\r\n');
    await client.waitFor('250 DSN\r\n');
    expect(codes(client.text)).toEqual([220, 250]);

    // MAIL, RCPT and DATA pipelined in one write.
    client.write(crlf('MAIL FROM:<alice@a.test>', 'RCPT TO:<bob@b.test>', 'DATA'));
    await client.waitForReplies(5);
    expect(finalReplies(client.text).slice(2)).toEqual([
      '250 2.1.0 Sender alice@a.test ok',
      '250 2.1.5 Recipient bob@b.test ok',
      '354 End data with <CR><LF>.<CR><LF>',
    ]);

    const text = Buffer.concat([
      Buffer.from('Subject: attached\r\n\r\n..a line starting with a dot\r\n', 'latin1'),
      Buffer.from([0x38, 0x62, 0x69, 0x74, 0x3a, 0xe9, 0xff, 0x00, 0x0d, 0x0a]), // 8bit:é\xff\0 CRLF
      Buffer.from('last line\r\n', 'latin1'),
    ]);
    client.write(Buffer.concat([text, Buffer.from('.\r\n')]));
    await client.waitFor('queued as att-1\r\n');
    client.write('QUIT\r\n');
    await client.waitForEnd();

    expect(finalReplies(client.text)).toEqual([
      '220 mx.test ESMTP smtp-session-stream',
      '250 DSN',
      '250 2.1.0 Sender alice@a.test ok',
      '250 2.1.5 Recipient bob@b.test ok',
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.0.0 Ok: queued as att-1',
      '221 2.0.0 Bye',
    ]);
    expect(client.ended).toBe(true);
    expect(bodies).toHaveLength(1);
    const expected = Buffer.concat([
      Buffer.from('Subject: attached\r\n\r\n.a line starting with a dot\r\n', 'latin1'),
      Buffer.from([0x38, 0x62, 0x69, 0x74, 0x3a, 0xe9, 0xff, 0x00, 0x0d, 0x0a]),
      Buffer.from('last line\r\n', 'latin1'),
    ]);
    expect(bodies[0].equals(expected)).toBe(true);
    // Every byte the client got went through connection.write() (the 'output' tap), and the
    // session's own readable side stayed empty.
    expect(Buffer.concat(output).equals(client.bytes)).toBe(true);
    expect(session.readableLength).toBe(0);
    await aFinished;
    expect(a.writableFinished).toBe(true);
  });

  test('input backpressure: the connection is paused while an async message listener decides', async () => {
    const { session, a, b } = pairSession();
    let open = (): void => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let entered = (): void => undefined;
    const inListener = new Promise<void>((resolve) => (entered = resolve));
    const bodies: Buffer[] = [];
    session.on('message', async (message: SmtpMessage) => {
      bodies.push(await message.buffer());
      entered();
      await gate;
      message.accept('gated');
    });
    const replies: Reply[] = [];
    session.on('reply', (reply: Reply) => replies.push(reply));
    session.attach(a);
    const client = new Peer(b);
    await client.waitFor(GREETING);

    client.write(
      crlf(
        'EHLO c.test',
        'MAIL FROM:<a@a.test>',
        'RCPT TO:<b@b.test>',
        'DATA',
        'Subject: held',
        '',
        'text',
        '.',
      ),
    );
    await within(inListener, 2000, 'message listener called');
    await client.waitForReplies(5);
    await sleep(20);
    expect(codes(client.text)).toEqual([220, 250, 250, 250, 354]);
    expect(bodies[0].toString('latin1')).toBe('Subject: held\r\n\r\ntext\r\n');
    // The core holds the chunk: the connection is paused.
    expect(a.isPaused()).toBe(true);
    expect(a.readableFlowing).toBe(false);

    // The client pipelines more while the listener is still deciding.
    const more = crlf('NOOP', 'RSET', 'MAIL FROM:<c@c.test>', 'QUIT');
    client.write(more);
    await sleep(100);
    expect(a.isPaused()).toBe(true);
    // Nothing was consumed, answered or written for the pipelined commands.
    expect(a.readableLength).toBe(Buffer.byteLength(more));
    expect(replies.map((r) => r.code)).toEqual([220, 250, 250, 250, 354]);
    expect(codes(client.text)).toEqual([220, 250, 250, 250, 354]);
    expect(client.ended).toBe(false);

    open();
    await client.waitForEnd();
    expect(finalReplies(client.text).slice(5)).toEqual([
      '250 2.0.0 Ok: queued as gated',
      '250 2.0.0 Ok',
      '250 2.0.0 Ok',
      '250 2.1.0 Sender c@c.test ok',
      '221 2.0.0 Bye',
    ]);
    expect(replies.map((r) => r.code)).toEqual([220, 250, 250, 250, 354, 250, 250, 250, 250, 221]);
  });

  test('output backpressure: a client that does not read stops the replies; reading resumes them all', async () => {
    const { session, a, b } = pairSession({}, { highWaterMark: 1024 });
    let replies = 0;
    session.on('reply', () => replies++);
    // Record every connection.write() the session makes, and whether the connection had asked for a
    // pause (write() returned false, no 'drain' yet) when it was made.
    const write = a.write.bind(a) as (chunk: Buffer) => boolean;
    let writes = 0;
    let refused = 0;
    let writesWhileFull = 0;
    a.write = ((chunk: Buffer): boolean => {
      writes++;
      if (a.writableNeedDrain) writesWhileFull++;
      const ok = write(chunk);
      if (!ok) refused++;
      return ok;
    }) as typeof a.write;
    session.attach(a);

    // The client writes but does not read (no 'data' listener: b is not flowing).
    const N = 20_000;
    const batches = 100;
    b.write('EHLO c\r\n');
    for (let i = 0; i < batches; i++) b.write('NOOP\r\n'.repeat(N / batches));
    b.write('QUIT\r\n');

    const stalled = await settled(() => replies, 150);
    // Stopped well before the end, after write() said the buffer is full.
    expect(refused).toBeGreaterThan(0);
    expect(stalled).toBeLessThan(N / 10);
    expect(a.writableNeedDrain).toBe(true);
    expect(writesWhileFull).toBe(0);
    // ...and it stopped reading the client too.
    expect(a.isPaused()).toBe(true);
    const writesBefore = writes;
    await sleep(100);
    expect(writes).toBe(writesBefore);
    expect(replies).toBe(stalled);

    // The client starts reading: every reply arrives, in order, then the end.
    const client = new Peer(b);
    await client.waitForEnd(5000);
    const all = codes(client.text);
    expect(all).toHaveLength(1 + 1 + N + 1);
    expect(all[0]).toBe(220);
    expect(all.slice(1, -1).every((code) => code === 250)).toBe(true);
    expect(client.text.startsWith(GREETING)).toBe(true);
    expect(client.text.endsWith('250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n')).toBe(true);
    expect(replies).toBe(1 + 1 + N + 1);
    expect(writesWhileFull).toBe(0);
  });

  test('refuse() right after attach: only the 421, no greeting, then the end', async () => {
    const { session, a, b } = pairSession();
    const sent: number[] = [];
    session.on('reply', (reply: Reply) => sent.push(reply.code));
    session.attach(a);
    session.refuse('TooManyConnections');
    const client = new Peer(b);
    await client.waitForEnd();
    await sleep(20);
    expect(client.text).toBe(TOO_MANY);
    expect(sent).toEqual([421]);
    expect(client.ended).toBe(true);
  });

  test('client half-close mid-transaction: what was received is answered, then the connection ends', async () => {
    const { session, a, b } = pairSession();
    const messages: SmtpMessage[] = [];
    session.on('message', (message: SmtpMessage) => {
      messages.push(message);
      message.accept();
    });
    const finished = once(a, 'finish');
    session.attach(a);
    const client = new Peer(b);
    await client.waitFor(GREETING);
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>'));
    b.end();
    await client.waitForEnd();
    await finished;
    expect(finalReplies(client.text)).toEqual([
      '220 mx.test ESMTP smtp-session-stream',
      '250 DSN',
      '250 2.1.0 Sender a@a.test ok',
      '250 2.1.5 Recipient b@b.test ok',
    ]);
    expect(messages).toHaveLength(0);
    expect(a.writableFinished).toBe(true);
  });

  test('client half-close while an async listener decides: the 250 still goes out, then the end', async () => {
    const { session, a, b } = pairSession();
    const stored: StoredMessage[] = [];
    session.on('message', async (message: SmtpMessage) => {
      const body = await message.buffer();
      await sleep(50); // the client has ended its side by now
      stored.push({ envelope: message.envelope, session: message.session, body });
      message.accept('late');
    });
    const finished = once(a, 'finish');
    session.attach(a);
    const client = new Peer(b);
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'late text', '.'));
    b.end();
    await client.waitForEnd();
    await finished;
    expect(codes(client.text)).toEqual([220, 250, 250, 250, 354, 250]);
    expect(finalReplies(client.text).at(-1)).toBe('250 2.0.0 Ok: queued as late');
    expect(stored.map((m) => m.body.toString())).toEqual(['late text\r\n']);
  });

  test('destroying the session destroys the connection; attaching twice throws', async () => {
    const { session, a, b } = pairSession();
    session.attach(a);
    const client = new Peer(b);
    await client.waitFor(GREETING);

    const [c, d] = duplexPair();
    track(() => {
      c.destroy();
      d.destroy();
    });
    expect(() => session.attach(c)).toThrow(/already attached/);
    expect(() => session.attach(a)).toThrow(/already attached/);
    // The failed attach left the second connection alone.
    expect(c.listenerCount('data')).toBe(0);

    const closed = once(a, 'close');
    session.destroy();
    await closed;
    expect(a.destroyed).toBe(true);
    expect(session.destroyed).toBe(true);
    expect(session.signal.aborted).toBe(true);
    // Nothing more reaches the client.
    b.write('NOOP\r\n');
    await sleep(20);
    expect(client.text).toBe(GREETING);
  });
});

describe('attach with a client that answers from inside its data handler', () => {
  // An in-process connection delivers our reply synchronously, and the client's next command
  // comes back while the session is still sending: it must still be processed.
  for (const answer of ['synchronously', 'on the next turn'] as const) {
    test(`a lockstep client answering ${answer} gets every reply`, async () => {
      const session = new SmtpSessionStream({ hostname: HOST });
      track(() => void session.destroy());
      const bodies: string[] = [];
      session.on('message', async (message: SmtpMessage) => {
        bodies.push((await message.buffer()).toString('latin1'));
        message.accept('LOCKSTEP');
      });
      const [a, b] = duplexPair();
      track(() => void b.destroy());
      const script = crlf('EHLO c', 'MAIL FROM:<a@b.test>', 'RCPT TO:<d@e.test>', 'DATA')
        .split(/(?<=\r\n)/)
        .concat([crlf('Subject: x', '', 'hi', '.'), crlf('QUIT')]);
      let text = '';
      let next = 0;
      b.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        if (!/(^|\n)\d{3} [^\n]*\r\n$/.test(text) || next >= script.length) return;
        const line = script[next++];
        if (answer === 'synchronously') b.write(line);
        else setImmediate(() => b.write(line));
      });
      const ended = new Promise<void>((resolve) => b.on('end', resolve));
      session.attach(a);
      await within(ended, 2000, 'the end of the session');
      expect(codes(text)).toEqual([220, 250, 250, 250, 354, 250, 221]);
      expect(bodies).toEqual(['Subject: x\r\n\r\nhi\r\n']);
    });
  }
});

describe('attach with input held (holdInput)', () => {
  test('the connection is paused until the hold settles; nothing is lost', async () => {
    const { session, a, b } = pairSession();
    let open!: () => void;
    const until = new Promise<void>((resolve) => (open = resolve));
    let read = 0;
    session.on('input', (chunk: Buffer) => {
      if (read === 0) session.holdInput(until);
      read += chunk.length;
    });
    session.attach(a);
    const client = new Peer(b);
    await client.waitFor(GREETING);
    client.write('EHLO c\r\n');
    await sleep(20);
    expect(a.isPaused()).toBe(true);
    client.write('NOOP\r\n'.repeat(1000));
    await sleep(50);
    expect(read).toBe(8);
    expect(codes(client.text)).toEqual([220]);
    open();
    await client.waitForReplies(1 + 1 + 1000);
    expect(read).toBe(8 + 6000);
    expect(a.isPaused()).toBe(false);
  });
});

describe('attach over real sockets', () => {
  async function startServer(
    options: SmtpServerOptions,
    onSession: (session: SmtpSessionStream) => void,
  ): Promise<{ server: SmtpServer; port: number }> {
    const server = new SmtpServer({ hostname: HOST, ...options }, onSession);
    const { port } = await server.start(0, '127.0.0.1');
    track(() => server.close());
    return { server, port };
  }

  /** Random base64 lines, `size` octets or a little less, ending in CRLF. */
  function text(size: number): Buffer {
    const raw = randomBytes(Math.ceil((size * 3) / 4)).toString('base64');
    const lines: string[] = [];
    for (let i = 0; i + 76 <= raw.length && (lines.length + 1) * 78 <= size; i += 76) {
      lines.push(raw.slice(i, i + 76));
    }
    return Buffer.from(lines.map((line) => `${line}\r\n`).join(''), 'latin1');
  }

  test('STARTTLS through attach: a real TLS client, EHLO over TLS, a message, secure event', async () => {
    const attach = jest.spyOn(SmtpSessionStream.prototype, 'attach');
    const stored: StoredMessage[] = [];
    const sessions: SmtpSessionStream[] = [];
    const secureEvents: TlsInfo[] = [];
    let secured = (): void => undefined;
    const securedEvent = new Promise<void>((resolve) => (secured = resolve));
    const { port } = await startServer({ tls: tlsOptions() }, (session) => {
      sessions.push(session);
      store(session, stored);
      session.on('secure', (info: TlsInfo) => {
        secureEvents.push(info);
        secured();
      });
    });
    const client = await connect(port);
    await client.waitFor(GREETING);
    expect(attach).toHaveBeenCalledTimes(1);
    expect(attach.mock.calls[0][0]).toBeInstanceOf(net.Socket);

    client.write('EHLO before.test\r\n');
    await client.waitFor('250 DSN\r\n');
    expect(client.text).toContain('250-STARTTLS\r\n');
    client.write('STARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready to start TLS\r\n');
    client.detach();
    const { socket, peer } = await startTlsClient(client.stream, 'mx.test');
    // The client can finish its handshake (TLS 1.3) before the server has seen its Finished.
    await within(securedEvent, 2000, "the session's secure event");
    expect(secureEvents).toHaveLength(1);
    expect(secureEvents[0].protocol).toMatch(/^TLSv1\.[23]$/);
    expect(secureEvents[0].cipher).toBe(socket.getCipher().name);
    expect(secureEvents[0].servername).toBe('mx.test');
    expect(sessions[0].session.secure).toBe(true);

    socket.write('EHLO after.test\r\n');
    await peer.waitFor('250 DSN\r\n');
    expect(peer.text).not.toContain('STARTTLS');
    // A message big enough to need several TLS records and socket writes each way.
    const body = text(256 * 1024);
    socket.write(crlf('MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA'));
    await peer.waitFor('354 ');
    socket.write(Buffer.concat([body, Buffer.from('.\r\nQUIT\r\n')]));
    await peer.waitFor('221 2.0.0 Bye\r\n', 5000);
    await peer.waitForEnd();
    expect(codes(peer.text)).toEqual([250, 250, 250, 354, 250, 221]);
    expect(stored).toHaveLength(1);
    expect(sha256(stored[0].body)).toBe(sha256(body));
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.helo).toBe('after.test');
    expect(sessions[0].readableLength).toBe(0);
  });

  test('SmtpServer with outputTransform pipes instead of attaching, and serves a full transaction', async () => {
    const attach = jest.spyOn(SmtpSessionStream.prototype, 'attach');
    const stored: StoredMessage[] = [];
    let transformed = 0;
    const { port } = await startServer(
      {
        outputTransform: () => {
          const pass = new PassThrough();
          pass.on('data', (chunk: Buffer) => (transformed += chunk.length));
          return pass;
        },
      },
      (session) => store(session, stored),
    );
    const client = await connect(port);
    await client.waitFor(GREETING);
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA'));
    await client.waitFor('354 ');
    client.write('Subject: piped\r\n\r\nvia a transform\r\n.\r\nQUIT\r\n');
    await client.waitForEnd();
    expect(codes(client.text)).toEqual([220, 250, 250, 250, 354, 250, 221]);
    expect(stored.map((m) => m.body.toString())).toEqual(['Subject: piped\r\n\r\nvia a transform\r\n']);
    expect(attach).not.toHaveBeenCalled();
    expect(transformed).toBe(client.bytes.length);
  });
});

describe('attach on a connection that arrives paused', () => {
  test('a socket accepted with pauseOnConnect is read, as connection.pipe(session) would', async () => {
    const sessions: SmtpSessionStream[] = [];
    const sockets: net.Socket[] = [];
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      const session = new SmtpSessionStream({ hostname: HOST });
      sessions.push(session);
      sockets.push(socket);
      socket.on('error', () => session.destroy());
      socket.on('close', () => session.destroy());
      session.attach(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    track(
      () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => resolve());
        }),
    );
    const client = await connect((server.address() as net.AddressInfo).port);
    await client.waitFor(GREETING);
    client.write('EHLO c\r\nQUIT\r\n');
    await client.waitForEnd(1000);
    expect(codes(client.text)).toEqual([220, 250, 221]);
  });
});
