/**
 * SmtpSessionStream as a Duplex: over an in-memory pair (`duplexPair`), over real loopback sockets,
 * and driven directly with write()/read(). Every assertion that can looks at the bytes: replies as
 * sent, message text as stored.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { duplexPair, PassThrough } from 'node:stream';
import * as tls from 'node:tls';
import { formatProxyV1, formatProxyV2 } from '../../lib/protocol/proxy-header';
import { Reply } from '../../lib/protocol/reply';
import type { Command } from '../../lib/protocol/command';
import type { TlsInfo } from '../../lib/protocol/types';
import { AuthRequest, SmtpMessage } from '../../lib/stream/events';
import { SmtpSessionStream, STREAM_DEFAULTS, type SmtpSessionOptions } from '../../lib/stream/session-stream';
import {
  HOST,
  Peer,
  asyncHop,
  cleanup,
  codes,
  connect,
  crlf,
  finalReplies,
  memorySession,
  settled,
  sha256,
  sleep,
  socketServer,
  store,
  startTlsClient,
  track,
  within,
  type StoredMessage,
  GREETING,
  tlsOptions,
} from './helpers';

afterEach(cleanup);

/** Feeds `chunks` straight into a session (no pipe), ends it, and returns everything it output. */
async function drive(
  session: SmtpSessionStream,
  chunks: Buffer[],
): Promise<{ output: string; chunks: number }> {
  const out: Buffer[] = [];
  session.on('data', (chunk: Buffer) => out.push(chunk));
  const ended = new Promise<void>((resolve) => session.once('end', resolve));
  for (const chunk of chunks) session.write(chunk);
  session.end();
  await within(ended, 3000, 'session end');
  return { output: Buffer.concat(out).toString('utf8'), chunks: out.length };
}

const TRANSACTION = crlf(
  'EHLO client.test',
  'MAIL FROM:<alice@a.test>',
  'RCPT TO:<bob@b.test>',
  'RCPT TO:<carol@b.test>',
  'DATA',
  'Subject: one write',
  '',
  '..leading dot',
  'plain line',
  '.',
  'NOOP',
  'QUIT',
);

describe('greeting and input framing', () => {
  test('the greeting is the first thing read, and nothing is sent before the client reads', async () => {
    const { client } = memorySession();
    await client.waitFor('\r\n');
    expect(client.text).toBe(GREETING);
    expect(client.dataEvents).toBe(1);
  });

  test('a bare session greets on its first read, not on construction', async () => {
    const session = new SmtpSessionStream({ hostname: HOST });
    track(() => void session.destroy());
    const replies: number[] = [];
    session.on('reply', (r: Reply) => replies.push(r.code));
    await sleep(5);
    expect(replies).toEqual([]);
    const first = await within(
      new Promise<Buffer>((resolve) => session.once('data', resolve)),
      1000,
      'greeting',
    );
    expect(first.toString()).toBe(GREETING);
    expect(replies).toEqual([220]);
  });

  test('a whole session in one write, before the greeting is read (telnet <<EOF)', async () => {
    const session = new SmtpSessionStream({ hostname: HOST, now: () => 0 });
    const stored: StoredMessage[] = [];
    store(session, stored);
    const { output } = await drive(session, [Buffer.from(TRANSACTION)]);
    expect(output.startsWith(GREETING)).toBe(true);
    expect(finalReplies(output)).toEqual([
      '220 mx.test ESMTP smtp-session-stream',
      '250 DSN',
      '250 2.1.0 Sender alice@a.test ok',
      '250 2.1.5 Recipient bob@b.test ok',
      '250 2.1.5 Recipient carol@b.test ok',
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.0.0 Ok: queued as id-1',
      '250 2.0.0 Ok',
      '221 2.0.0 Bye',
    ]);
    expect(stored).toHaveLength(1);
    expect(stored[0].body.toString('latin1')).toBe(
      'Subject: one write\r\n\r\n.leading dot\r\nplain line\r\n',
    );
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['bob@b.test', 'carol@b.test']);
    expect(stored[0].session.helo).toBe('client.test');
  });

  test('the same session one byte per write gives identical replies and stored bytes', async () => {
    const run = async (split: boolean): Promise<{ output: string; body: Buffer }> => {
      const session = new SmtpSessionStream({ hostname: HOST, now: () => 0 });
      const stored: StoredMessage[] = [];
      store(session, stored);
      const bytes = Buffer.from(TRANSACTION);
      const chunks = split ? [...bytes].map((b) => Buffer.of(b)) : [bytes];
      const { output } = await drive(session, chunks);
      expect(stored).toHaveLength(1);
      return { output, body: stored[0].body };
    };
    const whole = await run(false);
    const bytewise = await run(true);
    expect(bytewise.output).toBe(whole.output);
    expect(bytewise.body.equals(whole.body)).toBe(true);
  });

  test('replies to a pipelined batch are written as one chunk', async () => {
    const { client } = memorySession(); // no message listener: nothing to wait for
    client.write('EHLO c.test\r\n');
    await client.waitFor('250 DSN\r\n');
    const before = client.dataEvents;
    client.write(
      crlf(
        'MAIL FROM:<a@a.test>',
        'RCPT TO:<b@b.test>',
        'RCPT TO:<c@b.test>',
        'DATA',
        'hi',
        '.',
        'NOOP',
        'RSET',
      ),
    );
    await client.waitForReplies(1 + 1 + 7);
    expect(client.dataEvents - before).toBe(1);
    expect(codes(client.text).slice(2)).toEqual([250, 250, 250, 354, 250, 250, 250]);
  });

  test('a pipelined batch with an async message listener costs at most one more chunk', async () => {
    const { session, client } = memorySession();
    store(session, []);
    client.write('EHLO c.test\r\n');
    await client.waitFor('250 DSN\r\n');
    const before = client.dataEvents;
    client.write(crlf('MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'hi', '.', 'NOOP'));
    await client.waitForReplies(2 + 5);
    expect(client.dataEvents - before).toBeLessThanOrEqual(2);
  });
});

describe('end of input', () => {
  test('a half-closed client (end() right after writing) gets every reply and its message stored', async () => {
    const { session, client } = memorySession();
    const stored: StoredMessage[] = [];
    session.on('message', async (message: SmtpMessage) => {
      await sleep(20); // the answer comes after the client has already ended its side
      stored.push({ envelope: message.envelope, session: message.session, body: await message.buffer() });
      message.accept('late-1');
    });
    const body = randomBytes(100_000)
      .toString('base64')
      .replace(/(.{76})/g, '$1\r\n');
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA') + body + '\r\n.\r\n');
    client.stream.end();
    await client.waitForEnd();
    expect(finalReplies(client.text).slice(-2)).toEqual([
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.0.0 Ok: queued as late-1',
    ]);
    expect(stored[0].body.toString('latin1')).toBe(body + '\r\n');
  });

  test('over a real socket, half-close after a pipelined session without QUIT', async () => {
    const stored: StoredMessage[] = [];
    const server = await socketServer({}, (session) => store(session, stored));
    const client = await connect(server.port);
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'x', '.', 'NOOP'));
    client.stream.end();
    await client.waitForEnd();
    expect(codes(client.text)).toEqual([220, 250, 250, 250, 354, 250, 250]);
    expect(stored.map((m) => m.body.toString())).toEqual(['x\r\n']);
  });

  test('the session ends its side after QUIT even if the client keeps its side open', async () => {
    const { client, session } = memorySession();
    client.write('QUIT\r\n');
    await client.waitForEnd();
    expect(client.text).toBe(GREETING + '221 2.0.0 Bye\r\n');
    // Bytes after QUIT are swallowed, never answered.
    client.write('NOOP\r\n');
    await sleep(10);
    expect(client.text).toBe(GREETING + '221 2.0.0 Bye\r\n');
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    client.stream.end();
    await within(closed, 1000, 'session close');
    expect(session.signal.aborted).toBe(true);
  });
});

describe('message listeners', () => {
  const prelude = crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA');

  test('no message listener: the text is drained and accepted', async () => {
    const { client } = memorySession();
    const big = 'y'.repeat(998) + '\r\n';
    client.write(prelude + big.repeat(300) + '.\r\n' + crlf('MAIL FROM:<c@a.test>', 'RCPT TO:<d@b.test>'));
    await client.waitForReplies(8);
    const replies = finalReplies(client.text);
    expect(replies[5]).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
    expect(replies.slice(6)).toEqual(['250 2.1.0 Sender c@a.test ok', '250 2.1.5 Recipient d@b.test ok']);
  });

  test('a listener that accepts without reading: the body is drained, the session goes on', async () => {
    const { session, client } = memorySession();
    let calls = 0;
    session.on('message', (message: SmtpMessage) => {
      calls++;
      message.accept(`unread-${calls}`);
    });
    const megabyte = ('z'.repeat(1022) + '\r\n').repeat(1024);
    client.write(prelude + megabyte + '.\r\n');
    client.write(crlf('MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'second', '.'));
    await client.waitForReplies(10, 4000);
    const replies = finalReplies(client.text);
    expect(replies[5]).toBe('250 2.0.0 Ok: queued as unread-1');
    expect(replies[9]).toBe('250 2.0.0 Ok: queued as unread-2');
    expect(calls).toBe(2);
  });

  test('an async listener that settles without reading or deciding: accepted, body drained', async () => {
    const { session, client } = memorySession({ now: () => 35 });
    session.on('message', async () => {
      await sleep(5);
    });
    client.write(prelude + 'q\r\n'.repeat(100_000) + '.\r\nNOOP\r\n');
    await client.waitForReplies(7, 4000);
    expect(finalReplies(client.text).slice(5)).toEqual([
      expect.stringMatching(/^250 2\.0\.0 Ok: queued as Z[0-9A-Z]+$/),
      '250 2.0.0 Ok',
    ]);
  });

  test('a listener that throws: 451 4.3.0, and the session goes on', async () => {
    const { session, client } = memorySession();
    let n = 0;
    session.on('message', (message: SmtpMessage) => {
      if (++n === 1) throw new Error('disk on fire');
      message.accept('after-throw');
    });
    client.write(
      prelude + 'one\r\n.\r\n' + crlf('MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'two', '.'),
    );
    await client.waitForReplies(10);
    const replies = finalReplies(client.text);
    expect(replies[5]).toBe('451 4.3.0 Error: unable to store message, try again later');
    expect(replies[9]).toBe('250 2.0.0 Ok: queued as after-throw');
  });

  test('an async listener that rejects its Promise: 451 4.3.0', async () => {
    const { session, client } = memorySession();
    session.on('message', async (message: SmtpMessage) => {
      await message.buffer();
      throw new Error('nope');
    });
    client.write(prelude + 'one\r\n.\r\nNOOP\r\n');
    await client.waitForReplies(7);
    expect(finalReplies(client.text).slice(5)).toEqual([
      '451 4.3.0 Error: unable to store message, try again later',
      '250 2.0.0 Ok',
    ]);
  });

  test('reject with a custom Reply, with a text, or with the default', async () => {
    const { session, client } = memorySession();
    const answers: Array<(m: SmtpMessage) => void> = [
      (m) => m.reject(new Reply(554, ['Policy says no', 'not today'], '5.7.1')),
      (m) => m.reject('Go away'),
      (m) => m.reject(),
      (m) => m.reject(new Reply(452, 'Mailbox full, try later', '4.2.2')),
    ];
    let n = 0;
    session.on('message', (m: SmtpMessage) => answers[n++](m));
    const txn = crlf('MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'body', '.');
    client.write('EHLO c\r\n' + txn.repeat(4));
    await client.waitForReplies(1 + 1 + 4 * 4);
    const text = client.text;
    expect(text).toContain('\r\n554-5.7.1 Policy says no\r\n554 5.7.1 not today\r\n');
    expect(text).toContain('\r\n550 5.7.1 Go away\r\n');
    expect(text).toContain('\r\n550 5.7.1 Error: message rejected\r\n');
    expect(text).toContain('\r\n452 4.2.2 Mailbox full, try later\r\n');
    expect(session.session.transactionCount).toBe(0);
  });

  test('async listeners run in order, and pipelined commands wait for them', async () => {
    const log: string[] = [];
    const { session, client } = memorySession({
      validateSenderHandler: (from) => {
        log.push(`MAIL ${from.address}`);
      },
    });
    session.on('message', async (message: SmtpMessage) => {
      log.push(`first-start ${message.envelope.mailFrom.address}`);
      await sleep(30);
      log.push(`first-end ${message.envelope.mailFrom.address}`);
    });
    session.on('message', async (message: SmtpMessage) => {
      log.push(`second ${message.envelope.mailFrom.address}`);
      const body = await message.buffer();
      message.accept(body.toString().trim());
    });
    const txn = (from: string, text: string): string =>
      crlf(`MAIL FROM:<${from}>`, 'RCPT TO:<b@b.test>', 'DATA', text, '.');
    client.write('EHLO c\r\n' + txn('one@a.test', 'M1') + txn('two@a.test', 'M2') + 'NOOP\r\n');
    await client.waitForReplies(2 + 8 + 1);
    expect(finalReplies(client.text).filter((l) => l.includes('queued'))).toEqual([
      '250 2.0.0 Ok: queued as M1',
      '250 2.0.0 Ok: queued as M2',
    ]);
    expect(finalReplies(client.text).at(-1)).toBe('250 2.0.0 Ok');
    expect(log).toEqual([
      'MAIL one@a.test',
      'first-start one@a.test',
      'first-end one@a.test',
      'second one@a.test',
      'MAIL two@a.test',
      'first-start two@a.test',
      'first-end two@a.test',
      'second two@a.test',
    ]);
  });

  test('only the first decision counts', async () => {
    const { session, client } = memorySession();
    session.on('message', (m: SmtpMessage) => {
      m.accept('first-answer');
      m.reject('too late');
      m.accept('also too late');
    });
    client.write(prelude + 'x\r\n.\r\n');
    await client.waitForReplies(6);
    expect(finalReplies(client.text)[5]).toBe('250 2.0.0 Ok: queued as first-answer');
  });

  test('a synchronous accept wins over later listeners, which are not called', async () => {
    const { session, client } = memorySession();
    const seen: string[] = [];
    session.on('message', (m: SmtpMessage) => {
      seen.push('first');
      m.accept('first');
    });
    session.on('message', () => seen.push('second'));
    client.write(prelude + 'x\r\n.\r\n');
    await client.waitForReplies(6);
    expect(finalReplies(client.text)[5]).toBe('250 2.0.0 Ok: queued as first');
    expect(seen).toEqual(['first']);
  });
});

describe('auth event', () => {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');

  function authSession(): { client: Peer; session: SmtpSessionStream; requests: AuthRequest[] } {
    const { session, client } = memorySession();
    const requests: AuthRequest[] = [];
    session.on('auth', async (request: AuthRequest) => {
      requests.push(request);
      await sleep(1);
      if (request.username === 'locked') request.reject(new Reply(454, 'Try later', '4.7.0'));
      else if (request.validatePassword('s3cret')) request.accept(`${request.username}@users`);
      else request.reject();
    });
    return { session, client, requests };
  }

  test('EHLO offers AUTH once an auth listener is attached', async () => {
    const { client } = authSession();
    client.write('EHLO c\r\n');
    await client.waitFor('250 DSN\r\n');
    expect(client.text).toMatch(/\r\n250-AUTH PLAIN LOGIN[^\r]*\r\n/);
  });

  test('PLAIN: accept records the user; a wrong password gets 535 5.7.8; a custom Reply is sent as is', async () => {
    const { client, requests } = authSession();
    client.write(
      crlf(
        'EHLO c',
        `AUTH PLAIN ${b64('\0alice\0wrong')}`,
        `AUTH PLAIN ${b64('\0locked\0s3cret')}`,
        `AUTH PLAIN ${b64('\0alice\0s3cret')}`,
        'MAIL FROM:<alice@a.test>',
      ),
    );
    await client.waitForReplies(6);
    expect(finalReplies(client.text).slice(2)).toEqual([
      '535 5.7.8 Authentication credentials invalid',
      '454 4.7.0 Try later',
      '235 2.7.0 Authentication successful',
      '250 2.1.0 Sender alice@a.test ok',
    ]);
    expect(requests.map((r) => [r.method, r.username, r.password])).toEqual([
      ['PLAIN', 'alice', 'wrong'],
      ['PLAIN', 'locked', 's3cret'],
      ['PLAIN', 'alice', 's3cret'],
    ]);
  });

  test('LOGIN: prompts, then accept / reject through the listener', async () => {
    const { client, session } = authSession();
    client.write('EHLO c\r\nAUTH LOGIN\r\n');
    await client.waitFor(`334 ${b64('Username:')}\r\n`);
    client.write(b64('bob') + '\r\n');
    await client.waitFor(`334 ${b64('Password:')}\r\n`);
    client.write(b64('bad') + '\r\n');
    await client.waitFor('535 5.7.8');
    client.write(crlf('AUTH LOGIN', b64('bob'), b64('s3cret')));
    await client.waitFor('235 2.7.0');
    expect(session.session.user).toBe('bob@users');
  });

  test('without an auth listener or hook, AUTH is not offered and is refused', async () => {
    const { client } = memorySession();
    client.write(crlf('EHLO c', `AUTH PLAIN ${b64('\0a\0b')}`));
    await client.waitForReplies(3);
    expect(client.text).not.toContain('AUTH');
    expect(finalReplies(client.text)[2]).toBe('503 5.5.1 Error: authentication not enabled');
  });
});

describe('observation events', () => {
  test('command, reply, input and output carry what went in and out', async () => {
    const { session, client } = memorySession();
    const commands: Command[] = [];
    const replies: Reply[] = [];
    const input: Buffer[] = [];
    const output: Buffer[] = [];
    session.on('command', (c: Command) => commands.push(c));
    session.on('reply', (r: Reply) => replies.push(r));
    session.on('input', (b: Buffer) => input.push(b));
    session.on('output', (b: Buffer) => output.push(b));
    const sent = crlf(
      'EHLO c.test',
      'mail from:<a@a.test>',
      'RCPT TO:<b@b.test>',
      'DATA',
      'not a command',
      '.',
      'QUIT',
    );
    client.write(sent.slice(0, 20));
    client.write(sent.slice(20));
    await client.waitForEnd();
    expect(commands.map((c) => c.verb)).toEqual(['EHLO', 'MAIL', 'RCPT', 'DATA', 'QUIT']);
    expect(commands[1].orig).toBe('mail from:<a@a.test>');
    expect(commands[1].args).toBe('from:<a@a.test>');
    expect(replies.map((r) => r.code)).toEqual([220, 250, 250, 250, 354, 250, 221]);
    expect(replies[6].id).toBe('Bye');
    expect(Buffer.concat(input).toString()).toBe(sent);
    expect(Buffer.concat(output).toString()).toBe(client.text);
  });
});

describe('AbortSignal', () => {
  test('message.signal and session.signal fire when the client disconnects mid-DATA; nothing is accepted', async () => {
    let captured: SmtpMessage | undefined;
    let bodyError: unknown;
    let sessionRef: SmtpSessionStream | undefined;
    const server = await socketServer({}, (session) => {
      sessionRef = session;
      session.on('message', async (message: SmtpMessage) => {
        captured = message;
        try {
          await message.buffer();
        } catch (error) {
          bodyError = error;
        }
        message.accept('must-not-be-sent');
      });
    });
    const client = await connect(server.port);
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'part of the text'));
    await client.waitFor('354 ');
    await within(
      (async () => {
        while (captured === undefined || captured.size === 0) await sleep(2);
      })(),
      1000,
      'text reaches the listener',
    );
    const message = captured as SmtpMessage;
    const session = sessionRef as SmtpSessionStream;
    const aborted = new Promise<void>((resolve) => message.signal.addEventListener('abort', () => resolve()));
    const sessionAborted = new Promise<void>((resolve) =>
      session.signal.addEventListener('abort', () => resolve()),
    );
    expect(message.signal.aborted).toBe(false);
    (client.stream as import('node:net').Socket).resetAndDestroy();
    await within(Promise.all([aborted, sessionAborted]), 1000, 'abort signals');
    await sleep(10);
    expect(String(bodyError)).toMatch(/Error/);
    expect(session.session.transactionCount).toBe(0);
    expect(client.text).not.toContain('queued');
  });

  test('a half-close mid-DATA aborts the message too', async () => {
    const { session, client } = memorySession();
    let signal: AbortSignal | undefined;
    session.on('message', async (message: SmtpMessage) => {
      signal = message.signal;
      await message.buffer().catch(() => undefined);
    });
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'half'));
    client.stream.end();
    await client.waitForEnd();
    expect(signal?.aborted).toBe(true);
    expect(codes(client.text)).toEqual([220, 250, 250, 250, 354]);
    expect(session.session.transactionCount).toBe(0);
  });
});

describe('backpressure', () => {
  const FIVE_MB = 5 * 1024 * 1024;

  /** Base64 lines of random bytes: `size` octets of valid message text ending in CRLF. */
  function text(size: number): Buffer {
    const line = 76;
    const raw = randomBytes(Math.ceil((size * 3) / 4)).toString('base64');
    let out = '';
    for (let i = 0; i + line <= raw.length && out.length + line + 2 <= size; i += line) {
      out += raw.slice(i, i + line) + '\r\n';
    }
    return Buffer.from(out, 'latin1');
  }

  /** A listener that reads at most `bytesPerMs`, hashing, and tracks how far ahead the session got. */
  function slowConsumer(
    session: SmtpSessionStream,
    bytesPerMs: number,
    result: { hash?: string; read: number; maxAhead: number },
  ): void {
    session.on('message', async (message: SmtpMessage) => {
      const hash = createHash('sha256');
      const started = Date.now();
      for await (const chunk of message.body) {
        hash.update(chunk as Buffer);
        result.read += (chunk as Buffer).length;
        result.maxAhead = Math.max(result.maxAhead, message.size - result.read);
        const due = started + result.read / bytesPerMs;
        if (due > Date.now()) await sleep(due - Date.now());
      }
      result.hash = hash.digest('hex');
      message.accept('slow');
    });
  }

  test('in memory: a slow reader of a 5 MB message stops the client’s writes; every byte arrives', async () => {
    const { session, client } = memorySession();
    const result = { read: 0, maxAhead: 0, hash: undefined as string | undefined };
    slowConsumer(session, 4096, result); // 4 MB/s
    const body = text(FIVE_MB);
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA'));
    await client.waitFor('354 ');
    let refused = 0;
    for (let i = 0; i < body.length; i += 64 * 1024) {
      if (!client.write(body.subarray(i, i + 64 * 1024))) refused++;
    }
    client.write('.\r\n');
    await sleep(50);
    // The session took a bounded amount; the rest waits in the client's write buffer.
    expect(refused).toBeGreaterThan(0);
    expect(client.stream.writableLength).toBeGreaterThan(FIVE_MB - 1024 * 1024);
    await client.waitFor('queued as slow', 10_000);
    expect(result.hash).toBe(sha256(body));
    expect(result.read).toBe(body.length);
    expect(result.maxAhead).toBeLessThan(512 * 1024);
  });

  test('over a socket: a slow reader holds the client; memory stays bounded; the hash matches', async () => {
    const result = { read: 0, maxAhead: 0, hash: undefined as string | undefined };
    let socketBytesRead = () => 0;
    let maxUnconsumed = 0;
    const server = await socketServer({}, (session, socket) => {
      socketBytesRead = () => socket.bytesRead;
      slowConsumer(session, 3200, result); // 3.2 MB/s
      session.on('input', () => {
        maxUnconsumed = Math.max(maxUnconsumed, socket.bytesRead - result.read);
      });
    });
    const client = await connect(server.port);
    const body = text(FIVE_MB);
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA'));
    await client.waitFor('354 ');
    const accepted = client.write(Buffer.concat([body, Buffer.from('.\r\n')]));
    expect(accepted).toBe(false);
    await sleep(300);
    // Slow reader: after 300 ms about 1 MB was consumed; the socket has not flushed 5 MB.
    expect(result.read).toBeLessThan(1.5 * 1024 * 1024);
    // The session stopped reading the socket: the rest waits in kernel buffers or in the client.
    expect(socketBytesRead()).toBeLessThan(body.length / 2);
    expect(socketBytesRead() - result.read).toBeLessThan(1024 * 1024);
    await client.waitFor('queued as slow', 15_000);
    expect(result.hash).toBe(sha256(body));
    expect(result.read).toBe(body.length);
    expect(result.maxAhead).toBeLessThan(512 * 1024);
    expect(maxUnconsumed).toBeLessThan(1024 * 1024);
  }, 20_000);

  test('a client that does not read replies makes the session stop consuming input', async () => {
    const { session, client } = memorySession();
    client.detach(); // paused: replies pile up unread
    const N = 60_000;
    let replies = 0;
    session.on('reply', () => replies++);
    const writes = 200;
    let written = 0;
    client.stream.write('EHLO c\r\n');
    for (let i = 0; i < writes; i++) client.stream.write('NOOP\r\n'.repeat(N / writes), () => written++);
    client.stream.write('QUIT\r\n');
    expect(await settled(() => replies)).toBeLessThan(N / 10);
    expect(written).toBeLessThan(writes / 4);
    // Now read: everything is answered, in order.
    const reader = new Peer(client.stream);
    client.stream.resume();
    await reader.waitForEnd(5000);
    const all = client.text + reader.text;
    expect(codes(all).length).toBe(1 + 1 + N + 1);
    expect(all.endsWith('250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n')).toBe(true);
  });
});

describe('clients that do not read replies', () => {
  test('commands without reading replies: the replies held for the client stay bounded', async () => {
    const { session, client, serverSide } = memorySession();
    client.detach(); // never reads
    let replies = 0;
    session.on('reply', () => replies++);
    client.stream.write('EHLO x\r\n'.repeat(8192)); // 64 KB in; each EHLO reply is ~150 bytes out
    await settled(() => replies);
    // Answered as fast as the reader reads, not 1.2 MB into memory at once.
    expect(serverSide.writableLength + client.stream.readableLength).toBeLessThan(256 * 1024);
    expect(replies).toBeLessThan(8192 / 4);
  });

  test('a client that never reads is cut after the idle timeout, even with replies still queued', async () => {
    const { session, client } = memorySession({ idleTimeout: 200 });
    client.detach();
    client.stream.write('EHLO x\r\n'.repeat(8192));
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    await within(closed, 3000, 'session closed although its output never drained');
  });
});

describe('pipe wiring (socket.pipe(session).pipe(socket))', () => {
  async function pipedServer(
    options: SmtpSessionOptions,
  ): Promise<{ port: number; sessions: SmtpSessionStream[] }> {
    const sessions: SmtpSessionStream[] = [];
    const server = net.createServer((socket) => {
      const session = new SmtpSessionStream({
        hostname: HOST,
        remoteAddress: socket.remoteAddress,
        ...options,
      });
      sessions.push(session);
      socket.pipe(session).pipe(socket); // exactly the README's one-liner: no error handler of its own
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    track(
      () =>
        new Promise<void>((resolve) => {
          for (const session of sessions) session.destroy();
          server.close(() => resolve());
        }),
    );
    return { port: (server.address() as net.AddressInfo).port, sessions };
  }

  test('a session that ends itself closes the connection (a PROXY header from a stranger)', async () => {
    const { port } = await pipedServer({ proxy: { allowFrom: ['192.0.2.1'] } });
    const peer = await connect(port);
    await within(peer.closedPromise, 2000, 'connection closed');
    expect(peer.text).toBe('');
  });

  test('any error of a piped source ends the session quietly; an unpiped source is let go', async () => {
    const session = new SmtpSessionStream({ hostname: HOST });
    const first = new PassThrough();
    const second = new PassThrough();
    track(() => {
      session.destroy();
      first.destroy();
      second.destroy();
    });
    first.pipe(session);
    first.unpipe(session);
    expect(first.listenerCount('error')).toBe(0);
    second.pipe(session);
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    // No 'error' listener on the session: were the error re-emitted there, this would throw.
    second.emit('error', Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }));
    await within(closed, 1000, 'session closed');
    expect(session.destroyed).toBe(true);
  });

  test('a client reset is the end of its session, not an uncaught error', async () => {
    const { port, sessions } = await pipedServer({});
    const peer = await connect(port);
    await peer.waitFor(GREETING);
    const socket = peer.stream as net.Socket;
    socket.write('EHLO c\r\nMAIL FROM:<a@a.test>\r\n');
    await peer.waitFor('250 2.1.0');
    socket.resetAndDestroy();
    await within(
      (async () => {
        while (!sessions[0].destroyed) await sleep(5);
      })(),
      2000,
      'session destroyed',
    );
  });
});

describe('holdInput (a consumer of input/output events that cannot keep up)', () => {
  /** A promise and the function that settles it. */
  function gate(): { until: Promise<void>; open: () => void } {
    let open!: () => void;
    const until = new Promise<void>((resolve) => (open = resolve));
    return { until, open };
  }

  test('held from an input listener: that chunk waits, and nothing more is read, until it settles', async () => {
    const { session, client } = memorySession();
    const hold = gate();
    let read = 0;
    session.on('input', (chunk: Buffer) => {
      if (read === 0) session.holdInput(hold.until);
      read += chunk.length;
    });
    await client.waitFor(GREETING);
    client.write('EHLO c\r\n');
    await sleep(20);
    client.write('NOOP\r\n'.repeat(1000));
    await sleep(50);
    expect(read).toBe(8); // the pipe's write callback is held: no second chunk
    expect(codes(client.text)).toEqual([220]);
    hold.open();
    await client.waitForReplies(1 + 1 + 1000);
    expect(read).toBe(8 + 6000);
  });

  test('held from an output listener: the run under way ends its batch, then waits', async () => {
    const { session, client } = memorySession();
    const hold = gate();
    let held = false;
    session.on('output', (chunk: Buffer) => {
      if (!held && chunk.includes('250 2.0.0')) {
        held = true;
        session.holdInput(hold.until);
      }
    });
    await client.waitFor(GREETING);
    client.write('EHLO c\r\n' + 'NOOP\r\n'.repeat(2000)); // one chunk, more replies than one run gives
    await sleep(50);
    const answered = codes(client.text).length - 1;
    expect(answered).toBeGreaterThan(1);
    expect(answered).toBeLessThan(2001);
    hold.open();
    await client.waitForReplies(1 + 2001);
  });

  test('holds overlap: input goes on once every one has settled, a rejected one too', async () => {
    const { session, client } = memorySession();
    const first = gate();
    let reject!: (error: Error) => void;
    const second = new Promise<void>((_, r) => (reject = r));
    const third = gate();
    session.once('input', () => {
      session.holdInput(first.until);
      session.holdInput(second);
      session.holdInput(third.until);
    });
    await client.waitFor(GREETING);
    client.write('NOOP\r\n');
    first.open();
    reject(new Error('the consumer failed')); // a failed hold does not end the others
    await sleep(50);
    expect(codes(client.text)).toEqual([220]);
    third.open();
    await client.waitForReplies(2);
  });

  test('a hold that never ends is ended by the idle timeout: 421 4.4.2, then the session closes', async () => {
    const { session, client } = memorySession({ idleTimeout: 200 });
    session.once('input', () => session.holdInput(new Promise(() => undefined)));
    await client.waitFor(GREETING);
    client.write('NOOP\r\n');
    await client.waitFor('421 4.4.2', 3000);
    await within(new Promise((resolve) => session.once('close', resolve)), 3000, 'session closed');
    expect(codes(client.text)).toEqual([220, 421]);
  });

  test('a session never held keeps no state for it (memory per idle session)', async () => {
    const { session, client } = memorySession();
    await client.waitFor(GREETING);
    client.write('NOOP\r\n');
    await client.waitForReplies(2);
    expect('inputHold' in session).toBe(false);
  });
});

describe('timers', () => {
  test('idle timeout: 421 4.4.2, then the session closes', async () => {
    const started = Date.now();
    const { client } = memorySession({ idleTimeout: 200 });
    await client.waitForEnd(2000);
    const elapsed = Date.now() - started;
    expect(client.text).toBe(GREETING + `421 4.4.2 ${HOST} Error: timeout exceeded\r\n`);
    expect(elapsed).toBeGreaterThanOrEqual(180);
    expect(elapsed).toBeLessThan(1000);
  });

  test('client activity restarts the idle timer', async () => {
    const { client } = memorySession({ idleTimeout: 200 });
    for (let i = 0; i < 3; i++) {
      await sleep(120);
      client.write('NOOP\r\n');
    }
    await sleep(60);
    expect(client.text).not.toContain('421');
    await client.waitForEnd(1000);
    expect(finalReplies(client.text).at(-1)).toBe(`421 4.4.2 ${HOST} Error: timeout exceeded`);
  });

  test('data timeout: silence inside the text → 421 4.4.2, the message is abandoned', async () => {
    const { session, client } = memorySession({ idleTimeout: 5000, dataTimeout: 150 });
    let signal: AbortSignal | undefined;
    session.on('message', async (message: SmtpMessage) => {
      signal = message.signal;
      await message.buffer().catch(() => undefined);
    });
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'some text'));
    const started = Date.now();
    await client.waitForEnd(2000);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(finalReplies(client.text).slice(-2)).toEqual([
      '354 End data with <CR><LF>.<CR><LF>',
      `421 4.4.2 ${HOST} Error: timeout exceeded`,
    ]);
    expect(signal?.aborted).toBe(true);
    expect(session.session.transactionCount).toBe(0);
  });

  test('message.aborted turns true when the session ends, like its signal', async () => {
    const { session, client } = memorySession({ idleTimeout: 5000, dataTimeout: 150 });
    const seen: boolean[] = [];
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    session.on('message', async (message: SmtpMessage) => {
      seen.push(message.aborted);
      await message.buffer().catch(() => undefined); // fails: the DATA timeout ends the session
      seen.push(message.aborted, message.signal.aborted);
      done();
    });
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'text'));
    await finished;
    expect(seen).toEqual([false, true, true]);
  });

  test('waiting for a slow listener is not client silence', async () => {
    const { session, client } = memorySession({ idleTimeout: 100, dataTimeout: 100 });
    session.on('message', async (message: SmtpMessage) => {
      await sleep(300);
      message.accept('slow-hook');
    });
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'x', '.'));
    await client.waitFor('queued as slow-hook', 2000);
    expect(client.text).not.toContain('421');
    await client.waitForEnd(1000); // then the idle timer runs again
    expect(finalReplies(client.text).at(-1)).toMatch(/^421 4\.4\.2/);
  });

  test('a short DATA timeout does not cut a command-state silence that the idle timeout allows', async () => {
    // One timer serves both limits (it runs for the shorter); the state's own limit decides.
    const { session, client } = memorySession({ idleTimeout: 400, dataTimeout: 100 });
    session.on('message', (message: SmtpMessage) => message.accept('first'));
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'x', '.'));
    await client.waitFor('queued as first', 1000);
    const afterMessage = Date.now();
    await sleep(250); // past the DATA limit, within the idle one
    expect(client.text).not.toContain('421');
    client.write('MAIL FROM:<a@a.test>\r\nRCPT TO:<b@b.test>\r\nDATA\r\n');
    await client.waitFor('354', 1000);
    const inText = Date.now();
    await client.waitForEnd(1000);
    expect(finalReplies(client.text).at(-1)).toBe(`421 4.4.2 ${HOST} Error: timeout exceeded`);
    expect(Date.now() - inText).toBeLessThan(350); // the DATA limit (100 ms), not the idle one
    expect(inText - afterMessage).toBeGreaterThanOrEqual(240);
  });

  test('a long DATA timeout outlasts a shorter idle timeout inside the text', async () => {
    const { session, client } = memorySession({ idleTimeout: 100, dataTimeout: 400 });
    session.on('message', async (message: SmtpMessage) => {
      await message.buffer();
      message.accept('slow-text');
    });
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'part one'));
    await client.waitFor('354', 1000);
    await sleep(250); // silent inside the text: past the idle limit, within the DATA one
    expect(client.text).not.toContain('421');
    client.write(crlf('part two', '.'));
    await client.waitFor('queued as slow-text', 1000);
    const answered = Date.now();
    await client.waitForEnd(1000); // back in command state: the idle limit again
    expect(Date.now() - answered).toBeLessThan(350);
    expect(finalReplies(client.text).at(-1)).toBe(`421 4.4.2 ${HOST} Error: timeout exceeded`);
  });

  test('the silence clock is monotonic: wall-clock steps neither cut nor spare a session', async () => {
    const realNow = Date.now.bind(Date);
    // A step forward right after the client spoke: no early 421.
    const forward = memorySession({ idleTimeout: 300 });
    await sleep(200);
    forward.client.write('NOOP\r\n');
    const step = jest.spyOn(Date, 'now').mockImplementation(() => realNow() + 3_600_000);
    try {
      await sleep(200); // the first check (at 300 ms) sees 100 ms of real silence
      expect(forward.client.text).not.toContain('421');
    } finally {
      step.mockRestore();
    }
    // A step backward: the timeout still comes after the idle limit of real silence.
    const backward = memorySession({ idleTimeout: 200 });
    const back = jest.spyOn(Date, 'now').mockImplementation(() => realNow() - 3_600_000);
    try {
      await backward.client.waitForEnd(1000);
    } finally {
      back.mockRestore();
    }
    expect(finalReplies(backward.client.text).at(-1)).toBe(`421 4.4.2 ${HOST} Error: timeout exceeded`);
  });

  test('the defaults are RFC 5321 §4.5.3.2 values', () => {
    expect(STREAM_DEFAULTS.idleTimeout).toBe(300_000);
    expect(STREAM_DEFAULTS.dataTimeout).toBe(180_000);
  });
});

describe('shutdown and refuse', () => {
  test('shutdown() while idle: 421 4.3.2 at once', async () => {
    const { session, client } = memorySession();
    await client.waitFor(GREETING);
    session.shutdown();
    await client.waitForEnd();
    expect(client.text).toBe(GREETING + `421 4.3.2 ${HOST} Service shutting down\r\n`);
  });

  test('shutdown() mid-message: the message is answered, then 421', async () => {
    const { session, client } = memorySession();
    const stored: StoredMessage[] = [];
    store(session, stored);
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'first half'));
    await client.waitFor('354 ');
    session.shutdown();
    await sleep(20);
    expect(client.text).not.toContain('421');
    client.write('second half\r\n.\r\nNOOP\r\n');
    await client.waitForEnd();
    expect(finalReplies(client.text).slice(-2)).toEqual([
      '250 2.0.0 Ok: queued as id-1',
      `421 4.3.2 ${HOST} Service shutting down`,
    ]);
    expect(stored[0].body.toString()).toBe('first half\r\nsecond half\r\n');
  });

  test('shutdown() before the greeting was read: only the 421 is sent and reported', async () => {
    const session = new SmtpSessionStream({ hostname: HOST });
    track(() => void session.destroy());
    const replies: number[] = [];
    session.on('reply', (r: Reply) => replies.push(r.code));
    session.shutdown();
    const { output } = await drive(session, []);
    expect(output).toBe(`421 4.3.2 ${HOST} Service shutting down\r\n`);
    expect(replies).toEqual([421]);
  });

  test('refuse(): a 421 of the server’s choosing instead of the greeting', async () => {
    const session = new SmtpSessionStream({ hostname: HOST });
    track(() => void session.destroy());
    session.refuse('TooManyConnections');
    const { output } = await drive(session, [Buffer.from('EHLO c\r\n')]);
    expect(output).toBe(`421 4.7.0 ${HOST} Error: too many connections, try again later\r\n`);
  });
});

describe('STARTTLS over an in-memory pair', () => {
  async function upgrade(
    client: Peer,
    servername?: string,
  ): Promise<{ socket: tls.TLSSocket; peer: Peer; before: string; hop: import('node:stream').Duplex }> {
    const before = client.detach();
    const hop = asyncHop(client.stream);
    const { socket, peer } = await startTlsClient(hop, servername);
    return { socket, peer, before, hop };
  }

  test('secure event, STARTTLS gone from EHLO, state reset, message stored under TLS', async () => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    const stored: StoredMessage[] = [];
    store(session, stored);
    const events: string[] = [];
    let info: TlsInfo | undefined;
    session.on('starttls', () => events.push('starttls'));
    session.on('secure', (i: TlsInfo) => {
      events.push('secure');
      info = i;
    });
    client.write('EHLO before.test\r\n');
    await client.waitFor('250 DSN\r\n');
    expect(client.text).toContain('250-STARTTLS\r\n');
    const secured = new Promise<void>((resolve) => session.once('secure', () => resolve()));
    client.write('STARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready to start TLS\r\n');
    const { peer, socket } = await upgrade(client, 'mx.test');
    await within(secured, 1000, 'secure event');
    expect(events).toEqual(['starttls', 'secure']);
    expect(info?.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(info?.cipher).toBe(socket.getCipher().name);
    expect(info?.servername).toBe('mx.test');
    expect(session.session.secure).toBe(true);
    // RFC 3207 §4.2: the server forgets the client; a MAIL before the new EHLO is out of sequence.
    socket.write('MAIL FROM:<a@a.test>\r\n');
    await peer.waitForReplies(1);
    expect(peer.replies[0]).toMatch(/^503 5\.5\.1 /);
    socket.write('EHLO after.test\r\n');
    await peer.waitFor('250 DSN\r\n');
    expect(peer.text).not.toContain('STARTTLS');
    socket.write(
      crlf('MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'secret text', '..dot', '.', 'QUIT'),
    );
    await peer.waitFor('221 2.0.0 Bye\r\n');
    expect(stored).toHaveLength(1);
    expect(stored[0].body.toString()).toBe('secret text\r\n.dot\r\n');
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.helo).toBe('after.test');
    expect(stored[0].session.tls?.protocol).toBe(info?.protocol);
    await peer.waitForEnd();
  });

  test('STARTTLS is not offered without tls options', async () => {
    const { client } = memorySession();
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitForReplies(3);
    expect(client.text).not.toContain('250-STARTTLS');
    expect(finalReplies(client.text)[2]).toMatch(/^50[02] /);
  });

  test('plaintext pipelined after STARTTLS is discarded, never executed inside TLS', async () => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    const commands: string[] = [];
    session.on('command', (c: Command) => commands.push(c.orig));
    client.write(crlf('EHLO c', 'STARTTLS', 'MAIL FROM:<injected@evil.test>', 'RCPT TO:<victim@b.test>'));
    await client.waitFor('220 2.0.0 Ready to start TLS\r\n');
    await sleep(10);
    const { before, socket, peer } = await upgrade(client);
    expect(codes(before)).toEqual([220, 250, 220]); // nothing answered the injected lines
    socket.write(crlf('EHLO c', 'RCPT TO:<b@b.test>'));
    await peer.waitForReplies(2);
    expect(peer.replies[1]).toMatch(/^503 5\.5\.1 /); // no MAIL was ever executed
    expect(commands).toEqual(['EHLO c', 'STARTTLS', 'EHLO c', 'RCPT TO:<b@b.test>']);
  });

  test('garbage instead of a handshake: tlsClientError, connection closed, process fine', async () => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    const errors: Error[] = [];
    session.on('tlsClientError', (e: Error) => errors.push(e));
    session.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready');
    client.write('this is not a TLS ClientHello at all\r\n\r\n');
    await within(closed, 2000, 'session close');
    expect(errors).toHaveLength(1);
    expect(client.text).not.toContain('this is not');
    expect(session.destroyed).toBe(true);
  });

  test('no handshake within tlsHandshakeTimeout: the connection is closed', async () => {
    const { session, client } = memorySession({
      tls: tlsOptions(),
      tlsHandshakeTimeout: 100,
      idleTimeout: 5000,
    });
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready');
    const started = Date.now();
    await within(closed, 2000, 'handshake timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(80);
  });

  test('a listener can refuse STARTTLS by rejecting: the session stays cleartext', async () => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    session.on('starttls', async () => {
      throw new Error('no TLS for you');
    });
    client.write('EHLO c\r\nSTARTTLS\r\nNOOP\r\n');
    await client.waitForReplies(4);
    expect(finalReplies(client.text).slice(2)).toEqual([
      '451 4.3.0 Error: internal error, try again later',
      '250 2.0.0 Ok',
    ]);
  });

  test('under TLS, a client that does not read replies makes the session stop consuming input', async () => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready');
    const { socket, peer } = await upgrade(client);
    socket.write('EHLO c\r\n');
    await peer.waitFor('250 DSN\r\n');
    peer.detach(); // stop reading replies
    let replies = 0;
    session.on('reply', () => replies++);
    const N = 80_000;
    const writes = 1000;
    let written = 0;
    for (let i = 0; i < writes; i++) socket.write('NOOP\r\n'.repeat(N / writes), () => written++);
    socket.write('QUIT\r\n');
    // The session stalls after a bounded number of replies, and the client's writes stall too.
    expect(await settled(() => replies)).toBeLessThan(N / 2);
    expect(written).toBeLessThan(writes / 2);
    const reader = new Peer(socket);
    socket.resume();
    await reader.waitFor('221 2.0.0 Bye\r\n', 10_000);
    expect(codes(peer.text + reader.text).length).toBe(1 + N + 1);
  });

  test.each([
    ['close_notify (tls.end())', 'tls'],
    ['a FIN under TLS (the transport ends)', 'transport'],
  ])('half-close by %s right after the final dot: the message is still answered', async (_how, which) => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    let aborted = false;
    const stored: string[] = [];
    session.on('message', async (m: SmtpMessage) => {
      m.signal.addEventListener('abort', () => (aborted = true));
      const body = await m.buffer();
      await sleep(40); // still deciding when the client's end arrives
      stored.push(body.toString());
      m.accept('after-end');
    });
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready');
    const { socket, peer, hop } = await upgrade(client);
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    socket.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'late', '.'));
    await peer.waitFor('354 ');
    await sleep(10);
    if (which === 'tls') socket.end();
    else hop.end();
    await peer.waitFor('250 2.0.0 Ok: queued as after-end\r\n');
    await within(closed, 2000, 'session close');
    expect(stored).toEqual(['late\r\n']);
    expect(aborted).toBe(false);
  });

  test('a TLS client that ends mid-DATA: the message is abandoned', async () => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    let signal: AbortSignal | undefined;
    session.on('message', async (m: SmtpMessage) => {
      signal = m.signal;
      await m.buffer().catch(() => undefined);
    });
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready');
    const { socket, peer } = await upgrade(client);
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    socket.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'no end'));
    await peer.waitFor('354 ');
    socket.end();
    await within(closed, 2000, 'session close');
    expect(signal?.aborted).toBe(true);
    expect(peer.text).not.toContain('queued');
    expect(session.session.transactionCount).toBe(0);
  });

  test('a client that half-closes under TLS with commands still inside TLS gets every reply', async () => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    const stored: StoredMessage[] = [];
    session.on('message', async (message: SmtpMessage) => {
      const body = await message.buffer();
      await sleep(150); // the rest of the input waits inside TLS meanwhile
      stored.push({ envelope: message.envelope, body, session: { ...message.session } });
    });
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready');
    const { socket, peer } = await upgrade(client);
    socket.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'one', '.'));
    socket.write(crlf('MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>'));
    socket.write(crlf('DATA', 'two', '.', 'QUIT'));
    socket.end();
    await peer.waitForEnd();
    expect(codes(peer.text)).toEqual([250, 250, 250, 354, 250, 250, 250, 354, 250, 221]);
    expect(stored.map((m) => m.body.toString())).toEqual(['one\r\n', 'two\r\n']);
  });

  test('shutdown() between the 220 and the handshake: the 421 comes inside TLS, nothing in clear', async () => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready');
    await sleep(10);
    session.shutdown();
    const { peer } = await upgrade(client);
    await peer.waitForEnd();
    expect(peer.text).toBe(`421 4.3.2 ${HOST} Service shutting down\r\n`);
  });

  test('TLS options that cannot work fail this session at STARTTLS, never the process', async () => {
    const other = await import('../../lib/tls/self-signed');
    const mismatched = { key: other.createSelfSignedCertificate().key, cert: tlsOptions().cert };
    const { session, client } = memorySession({ tls: mismatched });
    const errors: Error[] = [];
    session.on('tlsClientError', (error: Error) => errors.push(error));
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await within(closed, 2000, 'session closed');
    expect(errors).toHaveLength(1);
    expect(client.text).toContain('220 2.0.0 Ready to start TLS');
  });

  test('the client ending its side under TLS ends the session', async () => {
    const { session, client } = memorySession({ tls: tlsOptions() });
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready');
    const { socket, peer } = await upgrade(client);
    socket.write('EHLO c\r\n');
    await peer.waitFor('250 DSN');
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    socket.end();
    await within(closed, 2000, 'session close after TLS end');
  });
});

describe('implicit TLS', () => {
  test('implicitTls: the session runs the handshake itself and greets inside TLS', async () => {
    const session = new SmtpSessionStream({ hostname: HOST, tls: tlsOptions(), implicitTls: true });
    const [clientSide, serverSide] = duplexPair();
    serverSide.pipe(session).pipe(serverSide);
    const stored: StoredMessage[] = [];
    store(session, stored);
    const events: string[] = [];
    session.on('secure', () => events.push('secure'));
    const clientTls = tls.connect({ socket: asyncHop(clientSide), rejectUnauthorized: false });
    track(() => {
      clientTls.destroy();
      session.destroy();
    });
    const peer = new Peer(clientTls);
    await peer.waitFor(GREETING);
    expect(events).toEqual(['secure']);
    clientTls.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'x', '.', 'QUIT'));
    await peer.waitFor('221 ');
    expect(peer.text).not.toContain('STARTTLS');
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.tls?.protocol).toBe(clientTls.getProtocol());
  });

  test('a TLS connection piped in: the session is secure from the first byte', async () => {
    const [clientSide, serverSide] = duplexPair();
    const serverTls = new tls.TLSSocket(serverSide as unknown as import('node:net').Socket, {
      isServer: true,
      ...tlsOptions(),
    });
    const session = new SmtpSessionStream({
      hostname: HOST,
      tls: tlsOptions(), // offered only when not secure already
      secure: true,
      tlsInfo: { protocol: 'TLSv1.3', cipher: 'TEST' },
    });
    const stored: StoredMessage[] = [];
    store(session, stored);
    const clientTls = tls.connect({ socket: asyncHop(clientSide), rejectUnauthorized: false });
    track(() => {
      clientTls.destroy();
      serverTls.destroy();
      session.destroy();
    });
    serverTls.on('secure', () => serverTls.pipe(session).pipe(serverTls));
    const peer = new Peer(clientTls);
    await peer.waitFor(GREETING);
    clientTls.write(
      crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'implicit', '.', 'QUIT'),
    );
    await peer.waitFor('221 ');
    expect(peer.text).not.toContain('STARTTLS');
    expect(stored[0].body.toString()).toBe('implicit\r\n');
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.tls).toEqual({ protocol: 'TLSv1.3', cipher: 'TEST' });
  });
});

describe('PROXY protocol', () => {
  const v1 = formatProxyV1({
    family: 'TCP4',
    sourceAddress: '203.0.113.7',
    destinationAddress: '192.0.2.1',
    sourcePort: 51234,
    destinationPort: 25,
  });
  const v2 = formatProxyV2({
    family: 'TCP6',
    sourceAddress: '2001:db8::7',
    destinationAddress: '2001:db8::1',
    sourcePort: 40000,
    destinationPort: 587,
  });

  async function proxied(
    header: Buffer,
    options: SmtpSessionOptions['proxy'] = true,
  ): Promise<StoredMessage> {
    const { session, client } = memorySession({ proxy: options, remoteAddress: '127.0.0.1' });
    const stored: StoredMessage[] = [];
    store(session, stored);
    await sleep(5);
    expect(client.text).toBe(''); // the greeting waits for the header
    client.write(
      Buffer.concat([header, Buffer.from(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>'))]),
    );
    await client.waitForReplies(4);
    expect(client.text.startsWith(GREETING)).toBe(true);
    client.write(crlf('DATA', 'via proxy', '.'));
    await client.waitFor('queued as id-1');
    return stored[0];
  }

  test('v1: the envelope sees the proxied client', async () => {
    const m = await proxied(v1);
    expect(m.session.remoteAddress).toBe('203.0.113.7');
    expect(m.session.remotePort).toBe(51234);
    expect(m.session.localAddress).toBe('192.0.2.1');
    expect(m.session.localPort).toBe(25);
    expect(m.body.toString()).toBe('via proxy\r\n');
  });

  test('v2, split across writes: the envelope sees the proxied client', async () => {
    const { session, client } = memorySession({
      proxy: { allowFrom: ['127.0.0.1'] },
      remoteAddress: '127.0.0.1',
    });
    const stored: StoredMessage[] = [];
    store(session, stored);
    const headers: unknown[] = [];
    session.on('proxy', (h: unknown) => headers.push(h));
    const all = Buffer.concat([
      v2,
      Buffer.from(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'v2', '.')),
    ]);
    for (let i = 0; i < all.length; i += 7) client.write(all.subarray(i, i + 7));
    await client.waitFor('queued as id-1');
    expect(stored[0].session.remoteAddress).toBe('2001:db8::7');
    expect(stored[0].session.remotePort).toBe(40000);
    expect(headers).toHaveLength(1);
  });

  test('a header in a write of its own: the greeting follows it', async () => {
    const { session, client } = memorySession({ proxy: true });
    client.write(v1);
    await client.waitFor(GREETING);
    expect(session.remoteAddress).toBe('203.0.113.7');
    expect(session.session.extra.proxy).toMatchObject({ version: 1, sourcePort: 51234 });
  });

  test('an allowFrom predicate sees the socket address', async () => {
    const seen: Array<string | undefined> = [];
    const m = await proxied(v1, {
      allowFrom: (address) => {
        seen.push(address);
        return address === '127.0.0.1';
      },
    });
    expect(seen).toEqual(['127.0.0.1']);
    expect(m.session.remoteAddress).toBe('203.0.113.7');
  });

  test('a header from an address not allowed: closed without a greeting', async () => {
    const { session, client } = memorySession({
      proxy: { allowFrom: ['10.0.0.1'] },
      remoteAddress: '127.0.0.1',
    });
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    client.write(v1);
    await within(closed, 1000, 'close');
    await sleep(5);
    expect(client.text).toBe('');
  });

  test('an invalid header: closed without a greeting, proxyError', async () => {
    const { session, client } = memorySession({ proxy: true });
    const errors: Error[] = [];
    session.on('proxyError', (e: Error) => errors.push(e));
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    client.write('EHLO i-forgot-the-header\r\n');
    await within(closed, 1000, 'close');
    await sleep(5);
    expect(client.text).toBe('');
    expect(errors).toHaveLength(1);
  });

  test('no header within the timeout: closed without a greeting', async () => {
    const { session, client } = memorySession({ proxy: { timeout: 100 } });
    const closed = new Promise<void>((resolve) => session.once('close', resolve));
    client.write('PROXY TCP4 '); // incomplete, then silence
    const started = Date.now();
    await within(closed, 1000, 'proxy timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(80);
    expect(client.text).toBe('');
  });

  test('over a real socket: the proxied address reaches the envelope', async () => {
    const stored: StoredMessage[] = [];
    const server = await socketServer({ proxy: { allowFrom: ['127.0.0.1'] } }, (s) => store(s, stored));
    const client = await connect(server.port);
    client.write(
      Buffer.concat([
        v1,
        Buffer.from(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'p', '.', 'QUIT')),
      ]),
    );
    await client.waitForEnd();
    expect(codes(client.text)).toEqual([220, 250, 250, 250, 354, 250, 221]);
    expect(stored[0].session.remoteAddress).toBe('203.0.113.7');
  });
});

describe('over real sockets', () => {
  test('a transaction and QUIT; session facts come from the socket', async () => {
    const stored: StoredMessage[] = [];
    const server = await socketServer({}, (session) => store(session, stored));
    const client = await connect(server.port);
    await client.waitFor(GREETING);
    client.write(crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA'));
    await client.waitFor('354 ');
    client.write('Subject: socket\r\n\r\nbody\r\n.\r\nQUIT\r\n');
    await client.waitForEnd();
    expect(stored[0].body.toString()).toBe('Subject: socket\r\n\r\nbody\r\n');
    expect(stored[0].session.remoteAddress).toBe('127.0.0.1');
    expect(stored[0].session.localPort).toBe(server.port);
    const [session] = server.sessions;
    const socket = server.sockets[0];
    expect([session.remoteAddress, session.remotePort, session.localAddress, session.localPort]).toEqual([
      socket.remoteAddress,
      socket.remotePort,
      socket.localAddress,
      socket.localPort,
    ]);
  });

  test('STARTTLS over a socket with tls.connect', async () => {
    const stored: StoredMessage[] = [];
    const server = await socketServer({ tls: tlsOptions() }, (session) => store(session, stored));
    const client = await connect(server.port);
    client.write('EHLO c\r\nSTARTTLS\r\n');
    await client.waitFor('220 2.0.0 Ready to start TLS\r\n');
    client.detach();
    const socket = tls.connect({
      socket: client.stream as import('node:net').Socket,
      rejectUnauthorized: false,
    });
    track(() => void socket.destroy());
    const peer = new Peer(socket);
    await within(new Promise((resolve) => socket.once('secureConnect', resolve)), 2000, 'handshake');
    socket.write(
      crlf('EHLO c', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'tls body', '.', 'QUIT'),
    );
    await peer.waitFor('221 2.0.0 Bye');
    await peer.waitForEnd();
    expect(stored[0].body.toString()).toBe('tls body\r\n');
    expect(stored[0].session.secure).toBe(true);
  });
});
