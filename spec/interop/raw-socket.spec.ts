/**
 * A raw `net` socket against SmtpServer: whole sessions in one write, BDAT, an HTTP request on the
 * SMTP port, and command lines with bytes that are not text.
 */
import { SmtpServer } from '../../lib/server/server';
import type { Command } from '../../lib/protocol/command';
import {
  HOST,
  cleanup,
  codes,
  connect,
  crlf,
  finalReplies,
  store,
  track,
  type StoredMessage,
  GREETING,
} from '../stream/helpers';

afterEach(cleanup);

async function startServer(): Promise<{ port: number; stored: StoredMessage[]; commands: string[] }> {
  const stored: StoredMessage[] = [];
  const commands: string[] = [];
  const server = new SmtpServer({ hostname: HOST }, (session) => {
    store(session, stored);
    session.on('command', (c: Command) => commands.push(c.orig));
  });
  const { port } = await server.start(0);
  track(() => server.close());
  return { port, stored, commands };
}

describe('raw socket', () => {
  test('EHLO, MAIL, RCPT, DATA, the text and QUIT in a single write', async () => {
    const { port, stored } = await startServer();
    const client = await connect(port);
    const text = 'Subject: one write\r\n\r\n..stuffed\r\nline\r\n';
    client.write(
      crlf('EHLO raw.test', 'MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA') + text + '.\r\nQUIT\r\n',
    );
    await client.waitForEnd();
    expect(client.text.startsWith(GREETING)).toBe(true);
    expect(finalReplies(client.text).slice(2)).toEqual([
      '250 2.1.0 Sender a@a.test ok',
      '250 2.1.5 Recipient b@b.test ok',
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.0.0 Ok: queued as id-1',
      '221 2.0.0 Bye',
    ]);
    expect(stored[0].body.toString('latin1')).toBe('Subject: one write\r\n\r\n.stuffed\r\nline\r\n');
  });

  test('BDAT chunks in one write: exact byte counts, no dot handling', async () => {
    const { port, stored } = await startServer();
    const client = await connect(port);
    const first = Buffer.from('Subject: bdat\r\n\r\n.\r\n', 'latin1'); // a lone dot is just text here
    const second = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x2e, 0x0d, 0x0a, 0x42]);
    client.write(
      Buffer.concat([
        Buffer.from(crlf('EHLO raw.test', 'MAIL FROM:<a@a.test> BODY=BINARYMIME', 'RCPT TO:<b@b.test>')),
        Buffer.from(`BDAT ${first.length}\r\n`),
        first,
        Buffer.from(`BDAT ${second.length} LAST\r\n`),
        second,
        Buffer.from('QUIT\r\n'),
      ]),
    );
    await client.waitForEnd();
    expect(finalReplies(client.text).slice(2)).toEqual([
      '250 2.1.0 Sender a@a.test ok',
      '250 2.1.5 Recipient b@b.test ok',
      `250 2.0.0 ${first.length} octets received`,
      '250 2.0.0 Ok: queued as id-1',
      '221 2.0.0 Bye',
    ]);
    expect(stored[0].body.equals(Buffer.concat([first, second]))).toBe(true);
    expect(stored[0].envelope.transfer).toBe('BDAT');
    expect(stored[0].envelope.bodyType).toBe('BINARYMIME');
  });

  test('an HTTP request on the SMTP port is refused and closed; nothing after it is executed', async () => {
    const { port, stored, commands } = await startServer();
    const client = await connect(port);
    const smuggled = crlf(
      'EHLO evil',
      'MAIL FROM:<spam@evil.test>',
      'RCPT TO:<victim@b.test>',
      'DATA',
      'spam',
      '.',
    );
    client.write(
      `POST / HTTP/1.1\r\nHost: mx.test\r\nContent-Type: text/plain\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
    );
    await client.waitForEnd();
    expect(client.text).toBe(GREETING + '221 2.7.0 Error: HTTP request on the SMTP port. Goodbye.\r\n');
    expect(commands).toEqual(['POST / HTTP/1.1']);
    expect(stored).toHaveLength(0);
  });

  test('GET / HTTP/1.1 is refused the same way', async () => {
    const { port, commands } = await startServer();
    const client = await connect(port);
    client.write('GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n');
    await client.waitForEnd();
    expect(codes(client.text)).toEqual([220, 221]);
    expect(commands).toEqual(['GET / HTTP/1.1']);
  });

  test('NUL, control bytes and invalid UTF-8 in commands: 500, and the session goes on', async () => {
    const { port, stored } = await startServer();
    const client = await connect(port);
    client.write(
      Buffer.concat([
        Buffer.from('EHLO raw.test\r\n'),
        Buffer.from('NOOP\0\r\n', 'latin1'),
        Buffer.from('MAIL FROM:<a\0b@a.test>\r\n', 'latin1'),
        Buffer.from([...Buffer.from('MAIL FROM:<'), 0xff, 0xfe, ...Buffer.from('@a.test>\r\n')]),
        Buffer.from([...Buffer.from('RCPT TO:<'), 0xc3, ...Buffer.from('@b.test>\r\n')]), // truncated sequence
        Buffer.from('NO\x01OP\r\n', 'latin1'),
        Buffer.from(crlf('MAIL FROM:<a@a.test>', 'RCPT TO:<b@b.test>', 'DATA', 'fine', '.', 'QUIT')),
      ]),
    );
    await client.waitForEnd();
    const replies = finalReplies(client.text);
    expect(replies.slice(2, 7)).toEqual(
      Array(5).fill('500 5.5.2 Error: command contains invalid characters'),
    );
    expect(codes(client.text).slice(7)).toEqual([250, 250, 354, 250, 221]);
    expect(stored.map((m) => m.body.toString())).toEqual(['fine\r\n']);
  });
});
