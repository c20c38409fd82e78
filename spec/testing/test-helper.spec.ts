/**
 * The test helper used as a user would: from jest, with nodemailer as the code that sends mail.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as nodemailer from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import {
  decodeEncodedWords,
  parseHeaders,
  startTestMailServer,
  type TestMailServer,
  type TestMailServerOptions,
} from '../../lib/testing';

let server: TestMailServer | undefined;

async function start(options?: TestMailServerOptions): Promise<TestMailServer> {
  server = await startTestMailServer(options);
  return server;
}

/** A nodemailer transport to the server (no pooling: one connection per message). */
function transport(s: TestMailServer, extra: SMTPTransport.Options = {}) {
  return nodemailer.createTransport({ host: s.host, port: s.port, secure: false, ...extra });
}

afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('startTestMailServer', () => {
  it('catches what nodemailer sends: envelope, raw text, headers, subject', async () => {
    const s = await start();
    expect(s.host).toBe('127.0.0.1');
    expect(s.url).toBe(`smtp://127.0.0.1:${s.port}`);
    const info = await transport(s).sendMail({
      from: 'Shop <shop@example.com>',
      to: ['ann@example.com', 'bob@example.com'],
      cc: 'carl@example.com',
      subject: 'Your order #42',
      text: 'Thanks for your order.\n.leading dot\n',
      headers: { 'X-Order': '42', 'X-Long': 'a '.repeat(60).trim() },
    });
    const message = await s.waitForMessage((m) => m.subject === 'Your order #42');
    expect(message.envelope).toMatchObject({
      mailFrom: 'shop@example.com',
      rcptTo: ['ann@example.com', 'bob@example.com', 'carl@example.com'],
      remoteAddress: '127.0.0.1',
      secure: false,
      user: null,
      size: message.raw.length,
    });
    expect(info.response).toBe(`250 2.0.0 Ok: queued as ${message.envelope.id}`);
    expect(message.text).toBe(message.raw.toString('utf8'));
    expect(message.text).toContain('\r\n.leading dot\r\n'); // unstuffed, as sent
    expect(message.headers.get('from')).toEqual(['Shop <shop@example.com>']);
    expect(message.headers.get('to')).toEqual(['ann@example.com, bob@example.com']);
    expect(message.headers.get('x-order')).toEqual(['42']);
    expect(message.headers.get('message-id')).toEqual([info.messageId]);
    // Folded by nodemailer, unfolded here.
    expect(message.raw.toString()).toMatch(/X-Long: [a ]+\r\n [a ]+/);
    expect(message.headers.get('x-long')?.[0].replace(/\s+/g, ' ')).toBe('a '.repeat(60).trim());
    expect(message.headers.get('x-long')?.[0]).not.toMatch(/[\r\n]/);
    expect(s.messages).toEqual([message]);
  });

  it('the message is already in `messages` when sendMail resolves', async () => {
    const s = await start();
    await transport(s).sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'now', text: 'x' });
    expect(s.messages.map((m) => m.subject)).toEqual(['now']);
  });

  it('waitForMessage waits for a message still to come, and skips those that do not match', async () => {
    const s = await start();
    const waiting = s.waitForMessage((m) => m.headers.get('to')?.[0] === 'second@example.com');
    const mailer = transport(s);
    await mailer.sendMail({ from: 'a@example.com', to: 'first@example.com', subject: '1', text: 'x' });
    await mailer.sendMail({ from: 'a@example.com', to: 'second@example.com', subject: '2', text: 'x' });
    expect((await waiting).subject).toBe('2');
    // Without a predicate: the first message caught.
    expect((await s.waitForMessage()).subject).toBe('1');
  });

  it('waitForMessage rejects after its timeout, saying what was caught', async () => {
    const s = await start();
    await transport(s).sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'other', text: 'x' });
    const startedAt = Date.now();
    await expect(s.waitForMessage((m) => m.subject === 'never', { timeout: 100 })).rejects.toThrow(
      'waitForMessage: no matching message within 100 ms (1 caught, subjects: "other")',
    );
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(90);
  });

  it('waitForMessage rejects when the predicate throws, and when the server closes', async () => {
    const s = await start();
    const pending = s.waitForMessage(() => false, { timeout: 60_000 });
    const throwing = s.waitForMessage(() => {
      throw new Error('bad predicate');
    });
    await transport(s).sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 's', text: 'x' });
    await expect(throwing).rejects.toThrow('bad predicate');
    await expect(s.waitForMessage(() => JSON.parse('{'))).rejects.toThrow(SyntaxError);
    const rejected = expect(pending).rejects.toThrow('closed before a matching message came');
    await s.close();
    await rejected;
    await expect(s.waitForMessage((m) => m.subject === 'later')).rejects.toThrow('is closed');
    expect((await s.waitForMessage()).subject).toBe('s'); // what was caught stays readable
  });

  it('clear() forgets the messages caught so far', async () => {
    const s = await start();
    const mailer = transport(s);
    await mailer.sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'old', text: 'x' });
    const messages = s.messages;
    s.clear();
    expect(s.messages).toEqual([]);
    expect(messages).toBe(s.messages);
    await expect(s.waitForMessage(() => true, { timeout: 50 })).rejects.toThrow('no message caught');
    await mailer.sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'new', text: 'x' });
    expect((await s.waitForMessage()).subject).toBe('new');
  });

  it('decodes an encoded Subject and keeps UTF-8 text', async () => {
    const s = await start();
    await transport(s).sendMail({
      from: 'a@example.com',
      to: 'b@example.com',
      subject: 'Grüße aus Köln ✉ — a long subject that nodemailer will have to fold over more lines',
      text: 'héllo wörld',
      textEncoding: 'base64',
    });
    const message = await s.waitForMessage();
    expect(message.subject).toBe(
      'Grüße aus Köln ✉ — a long subject that nodemailer will have to fold over more lines',
    );
    expect(message.headers.get('subject')?.[0]).toMatch(/^=\?UTF-8\?/i);
  });

  it('sets faults: a refused recipient fails the send; once cleared, the retry succeeds', async () => {
    const s = await start();
    const mailer = transport(s);
    const mail = { from: 'a@example.com', to: 'b@example.com', subject: 'retry me', text: 'x' };

    s.setFaults({ rcpt: 451 });
    await expect(mailer.sendMail(mail)).rejects.toMatchObject({ code: 'EENVELOPE', responseCode: 451 });
    expect(s.messages).toEqual([]);

    s.setFaults({});
    await mailer.sendMail(mail);
    expect((await s.waitForMessage((m) => m.subject === 'retry me')).envelope.rcptTo).toEqual([
      'b@example.com',
    ]);
  });

  it('exercises a retry loop: temporary failures are retried, permanent ones are not', async () => {
    const s = await start();
    const mailer = transport(s);
    // The code under test: retries 4xx up to 3 times, gives up on 5xx.
    const sendWithRetry = async (mail: nodemailer.SendMailOptions, onRetry: () => void) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return { info: await mailer.sendMail(mail), attempt };
        } catch (error) {
          const code = (error as { responseCode?: number }).responseCode ?? 0;
          if (code < 400 || code >= 500 || attempt === 3) throw error;
          onRetry();
        }
      }
    };
    const mail = { from: 'a@example.com', to: 'b@example.com', subject: 'loop', text: 'x' };

    s.setFaults({ data: 451 });
    let retries = 0;
    const result = await sendWithRetry(mail, () => {
      if (++retries === 2) s.setFaults({});
    });
    expect(result.attempt).toBe(3);
    expect(s.messages).toHaveLength(1);

    s.setFaults({ mail: 550 });
    await expect(sendWithRetry(mail, () => undefined)).rejects.toMatchObject({ responseCode: 550 });
    s.setFaults({ data: 452 });
    await expect(sendWithRetry(mail, () => undefined)).rejects.toMatchObject({ responseCode: 452 });
    expect(s.messages).toHaveLength(1);
  });

  it('faults narrowed to an address, at a rate, and given at the start', async () => {
    const s = await start({ faults: { rcpt: 550, addresses: ['Gone@Example.com'] } });
    const info = await transport(s).sendMail({
      from: 'a@example.com',
      to: ['here@example.com', 'gone@example.com'],
      subject: 'partial',
      text: 'x',
    });
    expect(info.accepted).toEqual(['here@example.com']);
    expect(info.rejected).toEqual(['gone@example.com']);
    expect((await s.waitForMessage()).envelope.rcptTo).toEqual(['here@example.com']);

    s.setFaults({ mail: 451, rate: 0 });
    await transport(s).sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'rate 0', text: 'x' });
    expect(s.messages).toHaveLength(2);
  });

  it('dropAt closes the connection of the next sends; throttle slows them', async () => {
    const s = await start();
    s.setFaults({ dropAt: 'rcpt' });
    await expect(
      transport(s).sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'dropped', text: 'x' }),
    ).rejects.toThrow();
    s.setFaults({ throttle: 2000 });
    const startedAt = Date.now();
    await transport(s).sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'slow', text: 'x' });
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(150); // the EHLO reply alone is two slices
    expect(s.messages.map((m) => m.subject)).toEqual(['slow']);
  });

  it('tls and auth: STARTTLS with a self-signed certificate and a login', async () => {
    const s = await start({ tls: true, auth: [{ user: 'app', pass: 'secret' }], hostname: 'mail.test' });
    const mailer = transport(s, {
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'app', pass: 'secret' },
    });
    await mailer.verify();
    await mailer.sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'secure', text: 'x' });
    const message = await s.waitForMessage();
    expect(message.envelope).toMatchObject({ secure: true, user: 'app' });

    const wrong = transport(s, {
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: 'app', pass: 'no' },
    });
    await expect(wrong.verify()).rejects.toMatchObject({ code: 'EAUTH', responseCode: 535 });
  });

  it('maxSize refuses larger messages with 552', async () => {
    const s = await start({ maxSize: 2000 });
    await expect(
      transport(s).sendMail({
        from: 'a@example.com',
        to: 'b@example.com',
        subject: 'big',
        text: 'x'.repeat(5000),
      }),
    ).rejects.toMatchObject({ responseCode: 552 });
    expect(s.messages).toEqual([]);
  });

  it('maildir: also writes <id>.eml and <id>.json', async () => {
    const maildir = await fs.mkdtemp(path.join(os.tmpdir(), 'test-helper-'));
    try {
      const s = await start({ maildir: path.join(maildir, 'nested') });
      await transport(s).sendMail({
        from: 'a@example.com',
        to: 'b@example.com',
        subject: 'on disk',
        text: 'x',
      });
      const message = await s.waitForMessage();
      const id = message.envelope.id;
      expect(await fs.readdir(path.join(maildir, 'nested'))).toEqual([`${id}.eml`, `${id}.json`].sort());
      expect((await fs.readFile(path.join(maildir, 'nested', `${id}.eml`))).equals(message.raw)).toBe(true);
      const json = JSON.parse(await fs.readFile(path.join(maildir, 'nested', `${id}.json`), 'utf8'));
      expect(json).toEqual(message.envelope);
    } finally {
      await fs.rm(maildir, { recursive: true, force: true });
    }
  });

  it('close() ends open connections and can be called twice', async () => {
    const s = await start();
    const pooled = transport(s, { pool: true });
    await pooled.sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'pooled', text: 'x' });
    await s.close();
    await s.close();
    pooled.close();
    await expect(
      transport(s).sendMail({ from: 'a@example.com', to: 'b@example.com', subject: 'after', text: 'x' }),
    ).rejects.toMatchObject({ code: 'ESOCKET' });
  });
});

describe('parseHeaders', () => {
  const parse = (text: string) => Object.fromEntries(parseHeaders(Buffer.from(text, 'utf8')));

  it('lower-cases names, unfolds, trims, keeps repeats in order, stops at the empty line', () => {
    expect(
      parse(
        'From nobody Mon Jan  1 00:00:00 2024\r\nReceived: a\r\nSUBJECT: one\r\n\t two \r\nReceived: b\r\n' +
          'Empty:\r\nno colon here\r\nSpaced : x\r\n\r\nBody: not a header\r\n',
      ),
    ).toEqual({ received: ['a', 'b'], subject: ['one\t two'], empty: [''], spaced: ['x'] });
  });

  it('takes LF line ends, a message without body, and a message without headers', () => {
    expect(parse('A: 1\nB: 2\n\nC: 3')).toEqual({ a: ['1'], b: ['2'] });
    expect(parse('A: 1\r\nB: 2')).toEqual({ a: ['1'], b: ['2'] });
    expect(parse('A: 1\nB: 2\r\n\r\nC: 3')).toEqual({ a: ['1'], b: ['2'] });
    expect(parse('A: 1\n\r\nC: 3\r')).toEqual({ a: ['1'] });
    expect(parse('A: 1\r')).toEqual({ a: ['1'] });
    expect(parse('\r\nA: body')).toEqual({});
    expect(parse(' A: continuation first\r\n')).toEqual({});
  });
});

describe('decodeEncodedWords', () => {
  it.each([
    ['plain', 'plain'],
    ['=?UTF-8?B?R3LDvMOfZQ==?=', 'Grüße'],
    ['=?utf-8?q?Gr=C3=BC=C3=9Fe_aus?= =?utf-8?q?_K=C3=B6ln?=', 'Grüße aus Köln'],
    ['=?ISO-8859-1?Q?caf=E9?= ok', 'café ok'],
    ['=?UTF-8*en?B?aGk=?=', 'hi'],
    ['=?x-unknown?B?aGk=?=', '=?x-unknown?B?aGk=?='],
    ['a =?UTF-8?B?aGk=?= b', 'a hi b'],
  ])('%s → %s', (encoded, decoded) => {
    expect(decodeEncodedWords(encoded)).toBe(decoded);
  });
});
