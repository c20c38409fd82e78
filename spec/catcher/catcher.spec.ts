import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { startCatcher, type Catcher } from '../../lib/catcher/catcher';
import type { EnvelopeRecord } from '../../lib/catcher/maildir';
import { createSelfSignedCertificate } from '../../lib/index';
import {
  catcherOptions,
  crlf,
  eventually,
  listDir,
  portOf,
  python,
  RawClient,
  removeDir,
  storedMessages,
  tempDir,
} from './helpers';

/**
 * python3's smtplib as the client: STARTTLS (or implicit TLS), optional AUTH with each mechanism
 * given, one message each. Prints {"<mech>": [auth code, sendmail result or error code]}.
 */
const SMTPLIB = `
import json, smtplib, ssl, sys
a = json.loads(sys.argv[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
out = {}
for mech in a["mechs"]:
    body = ("From: a@example.com\\r\\nTo: b@example.com\\r\\nSubject: " + a["tag"] + " " + mech + "\\r\\n\\r\\nhi\\r\\n").encode()
    try:
        if a.get("implicit"):
            s = smtplib.SMTP_SSL("127.0.0.1", a["port"], local_hostname="py.test", timeout=10, context=ctx)
        else:
            s = smtplib.SMTP("127.0.0.1", a["port"], local_hostname="py.test", timeout=10)
            s.starttls(context=ctx)
        with s:
            s.ehlo("py.test")
            code = None
            if mech != "NONE":
                s.user, s.password = a["user"], a["password"]
                code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")))
            s.sendmail("a@example.com", ["b@example.com"], body)
            out[mech] = [code, "sent", s.esmtp_features.get("auth", "")]
    except smtplib.SMTPException as e:
        out[mech] = [getattr(e, "smtp_code", None), type(e).__name__]
print(json.dumps(out))
`;

interface SmtplibRun {
  port: number;
  mechs: string[];
  tag: string;
  user?: string;
  password?: string;
  implicit?: boolean;
}

async function smtplib(run: SmtplibRun): Promise<Record<string, [number | null, string, string?]>> {
  return JSON.parse(await python(SMTPLIB, [JSON.stringify(run)]));
}

const MESSAGE = crlf('From: a@example.com', 'To: b@example.com', 'Subject: hello', '', 'body');

let dir: string;
let catcher: Catcher | undefined;
let caught: EnvelopeRecord[];
const clients: RawClient[] = [];

/** Starts an in-process catcher on port 0 with `dir/mail` and the given flags. */
async function start(...flags: string[]): Promise<number> {
  catcher = await startCatcher(catcherOptions(path.join(dir, 'mail'), ...flags), (r) => caught.push(r));
  return portOf(catcher.url);
}

async function connect(port: number): Promise<RawClient> {
  const { client, greeting } = await RawClient.connect(port);
  expect(greeting.code).toBe(220);
  clients.push(client);
  return client;
}

const stored = () => storedMessages(path.join(dir, 'mail'));
const codes = (replies: Array<{ code: number }>) => replies.map((r) => r.code);

beforeEach(async () => {
  dir = await tempDir('catcher-');
  caught = [];
});

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await catcher?.close();
  catcher = undefined;
  await removeDir(dir);
});

describe('startCatcher', () => {
  it('listens on the given host with the real port in its url', async () => {
    const port = await start();
    expect(catcher?.url).toBe(`smtp://127.0.0.1:${port}`);
    expect(port).toBeGreaterThan(0);
    expect(catcher?.server.address().port).toBe(port);
  });

  it('puts an IPv6 host in brackets in its url', async () => {
    const v6 = await new Promise<boolean>((resolve) => {
      const probe = net.createServer().once('error', () => resolve(false));
      probe.listen(0, '::1', () => probe.close(() => resolve(true)));
    });
    if (!v6) return; // no IPv6 loopback here
    catcher = await startCatcher({ ...catcherOptions(path.join(dir, 'mail')), host: '::1' });
    const port = portOf(catcher.url);
    expect(catcher.url).toBe(`smtp://[::1]:${port}`);
    const { client, greeting } = await RawClient.connect(port, '::1');
    clients.push(client);
    expect(greeting.code).toBe(220);
    await client.quit();
  });

  it('stores a plain message byte-exact, dot-unstuffed, with its envelope', async () => {
    const port = await start();
    const client = await connect(port);
    const text = crlf('Subject: plain', '', '..leading dot', '...two', 'utf-8: h\u00e9llo', 'end.');
    const replies = await client.sendMail('a@example.com', ['b@example.com', 'c@example.com'], text);
    expect(codes(replies)).toEqual([250, 250, 250, 250, 354, 250]);
    await client.quit();

    const [message, ...others] = await stored();
    expect(others).toEqual([]);
    expect(message.eml.toString('utf8')).toBe(
      text.replace('..leading', '.leading').replace('...two', '..two'),
    );
    expect(replies[5].text).toBe(`2.0.0 Ok: queued as ${message.id}`);
    expect(message.json).toMatchObject({
      id: message.id,
      helo: 'client.test',
      mailFrom: 'a@example.com',
      rcptTo: ['b@example.com', 'c@example.com'],
      remoteAddress: '127.0.0.1',
      secure: false,
      user: null,
      size: message.eml.length,
    });
    expect(caught).toEqual([message.json]);
  });

  it('stores binary 8BITMIME text and the MAIL/RCPT parameters', async () => {
    const port = await start();
    const client = await connect(port);
    await client.send('EHLO client.test');
    expect((await client.send('MAIL FROM:<a@example.com> BODY=8BITMIME SIZE=20')).code).toBe(250);
    expect((await client.send('RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE')).code).toBe(250);
    expect((await client.send('DATA')).code).toBe(354);
    const bytes = Buffer.from([0x53, 0x3a, 0x20, 0xe9, 0xff, 0x0d, 0x0a, 0x0d, 0x0a, 0x80, 0x0d, 0x0a]);
    client.write(bytes);
    expect((await client.send('.')).code).toBe(250);
    await client.quit();
    const [message] = await stored();
    expect(message.eml.equals(bytes)).toBe(true);
    expect(message.json).toMatchObject({
      mailParams: { BODY: '8BITMIME', SIZE: '20' },
      rcptParams: [{ NOTIFY: 'SUCCESS,FAILURE' }],
      bodyType: '8BITMIME',
    });
  });

  it('--tls --auth: STARTTLS with a self-signed certificate, then AUTH PLAIN, LOGIN and CRAM-MD5', async () => {
    const port = await start('--tls', '--auth', 'user:pass', '--auth', 'other:x');
    const client = await connect(port);
    const ehlo = await client.send('EHLO client.test');
    expect(ehlo.lines).toContain('250-STARTTLS');
    await client.quit();

    const ok = await smtplib({
      port,
      mechs: ['PLAIN', 'LOGIN', 'CRAM-MD5'],
      tag: 'tls',
      user: 'user',
      password: 'pass',
    });
    expect(ok.PLAIN.slice(0, 2)).toEqual([235, 'sent']);
    expect(ok.LOGIN.slice(0, 2)).toEqual([235, 'sent']);
    expect(ok['CRAM-MD5'].slice(0, 2)).toEqual([235, 'sent']);
    expect(ok.PLAIN[2]?.trim().split(' ').sort()).toEqual(['CRAM-MD5', 'LOGIN', 'PLAIN']);
    const bad = await smtplib({
      port,
      mechs: ['PLAIN', 'CRAM-MD5'],
      tag: 'bad',
      user: 'user',
      password: 'nope',
    });
    expect(bad.PLAIN).toEqual([535, 'SMTPAuthenticationError']);
    expect(bad['CRAM-MD5']).toEqual([535, 'SMTPAuthenticationError']);

    const messages = await stored();
    expect(messages.map((m) => m.eml.toString().match(/Subject: (.*)/)?.[1]).sort()).toEqual([
      'tls CRAM-MD5',
      'tls LOGIN',
      'tls PLAIN',
    ]);
    for (const m of messages) {
      expect(m.json).toMatchObject({ secure: true, user: 'user', helo: 'py.test' });
      expect((m.json.tls as { protocol: string }).protocol).toMatch(/^TLSv1\.[23]$/);
    }
  });

  it('--tls-cert/--tls-key with --tls-implicit: TLS from the first byte with the given certificate', async () => {
    const { key, cert } = createSelfSignedCertificate({ commonName: 'mx.test', altNames: ['mx.test'] });
    await fs.writeFile(path.join(dir, 'cert.pem'), cert);
    await fs.writeFile(path.join(dir, 'key.pem'), key);
    const port = await start(
      '--tls-implicit',
      '--tls-cert',
      path.join(dir, 'cert.pem'),
      '--tls-key',
      path.join(dir, 'key.pem'),
      '--auth',
      'user:pass',
    );
    const result = await smtplib({
      port,
      mechs: ['PLAIN'],
      tag: 'implicit',
      user: 'user',
      password: 'pass',
      implicit: true,
    });
    expect(result.PLAIN.slice(0, 2)).toEqual([235, 'sent']);
    const [message] = await stored();
    expect(message.json).toMatchObject({ secure: true, user: 'user' });
  });

  it('--require-auth: MAIL before AUTH gets 530', async () => {
    const port = await start('--auth', 'user:pass', '--require-auth');
    const client = await connect(port);
    await client.send('EHLO client.test');
    const mail = await client.send('MAIL FROM:<a@example.com>');
    expect(mail.code).toBe(530);
    expect(mail.text).toMatch(/^5\.7\.0 /);
    const plain = Buffer.from('\0user\0pass').toString('base64');
    expect((await client.send(`AUTH PLAIN ${plain}`)).code).toBe(235);
    expect((await client.send('MAIL FROM:<a@example.com>')).code).toBe(250);
    await client.quit();
  });

  it('--require-tls: everything but EHLO/STARTTLS/NOOP/RSET/QUIT is refused before TLS', async () => {
    const port = await start('--tls', '--require-tls');
    const client = await connect(port);
    await client.send('EHLO client.test');
    const mail = await client.send('MAIL FROM:<a@example.com>');
    expect(mail.code).toBe(530);
    expect(mail.text).toMatch(/STARTTLS/);
    expect((await client.send('NOOP')).code).toBe(250);
    await client.quit();
    const result = await smtplib({ port, mechs: ['NONE'], tag: 'require-tls' });
    expect(result.NONE.slice(0, 2)).toEqual([null, 'sent']);
    expect((await stored()).map((m) => m.json.secure)).toEqual([true]);
  });

  it('--max-size 1000: advertised, a larger message gets 552 and is not stored', async () => {
    const port = await start('--max-size', '1000');
    const client = await connect(port);
    expect((await client.send('EHLO client.test')).lines).toContain('250-SIZE 1000');
    expect((await client.send('MAIL FROM:<a@example.com> SIZE=5000')).code).toBe(552);
    const big = crlf('Subject: big', '', 'x'.repeat(4000));
    const replies = await client.sendMail('a@example.com', ['b@example.com'], big);
    expect(codes(replies)).toEqual([250, 250, 250, 354, 552]);
    expect(replies[4].text).toMatch(/^5\.3\.4 /);
    expect(await listDir(path.join(dir, 'mail'))).toEqual([]);
    // The session goes on, and a message within the limit is stored.
    expect(codes(await client.sendMail('a@example.com', ['b@example.com'], MESSAGE))).toEqual([
      250, 250, 250, 354, 250,
    ]);
    await client.quit();
    expect((await stored()).map((m) => m.eml.toString())).toEqual([MESSAGE]);
  });

  it('--max-recipients 2: the third recipient gets 452', async () => {
    const port = await start('--max-recipients', '2');
    const client = await connect(port);
    const replies = await client.sendMail('a@example.com', ['b@x.test', 'c@x.test', 'd@x.test'], MESSAGE);
    expect(codes(replies)).toEqual([250, 250, 250, 250, 452, 354, 250]);
    await client.quit();
    expect((await stored())[0].json.rcptTo).toEqual(['b@x.test', 'c@x.test']);
  });

  it('--max-clients 1: one more connection gets 421', async () => {
    const port = await start('--max-clients', '1');
    const first = await connect(port);
    const { client: second, greeting } = await RawClient.connect(port);
    clients.push(second);
    expect(greeting.code).toBe(421);
    await second.closed;
    expect((await first.send('NOOP')).code).toBe(250);
    await first.quit();
  });

  it('--discard: answers 250, stores nothing, still reports the message', async () => {
    const port = await start('--discard');
    const client = await connect(port);
    const replies = await client.sendMail('a@example.com', ['b@example.com'], MESSAGE);
    expect(codes(replies)).toEqual([250, 250, 250, 354, 250]);
    await client.quit();
    expect(await listDir(path.join(dir, 'mail'))).toEqual([]);
    expect(caught).toHaveLength(1);
    expect(caught[0]).toMatchObject({ mailFrom: 'a@example.com', size: MESSAGE.length });
    expect(replies[4].text).toBe(`2.0.0 Ok: queued as ${caught[0].id}`);
  });

  it('--lmtp: LHLO, and one reply per recipient after the text', async () => {
    const port = await start('--lmtp');
    const client = await connect(port);
    expect((await client.send('EHLO client.test')).code).toBe(500);
    expect((await client.send('LHLO client.test')).code).toBe(250);
    await client.send('MAIL FROM:<a@example.com>');
    await client.send('RCPT TO:<b@example.com>');
    await client.send('RCPT TO:<c@example.com>');
    expect((await client.send('DATA')).code).toBe(354);
    client.write(MESSAGE);
    const first = await client.send('.');
    const second = await client.reply();
    await client.quit();
    const [message] = await stored();
    expect(first.code).toBe(250);
    expect(second.code).toBe(250);
    expect(first.text).toContain('b@example.com');
    expect(second.text).toContain('c@example.com');
    expect(first.text).toContain(message.id);
    expect(message.json.rcptTo).toEqual(['b@example.com', 'c@example.com']);
  });

  it('--lmtp with --fail-data: the refusal is repeated for each recipient', async () => {
    const port = await start('--lmtp', '--fail-data', '452');
    const client = await connect(port);
    await client.send('LHLO client.test');
    await client.send('MAIL FROM:<a@example.com>');
    await client.send('RCPT TO:<b@example.com>');
    await client.send('RCPT TO:<c@example.com>');
    await client.send('DATA');
    client.write(MESSAGE);
    expect((await client.send('.')).code).toBe(452);
    expect((await client.reply()).code).toBe(452);
    await client.quit();
  });

  it('--proxy: the PROXY header gives the client address', async () => {
    const port = await start('--proxy');
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('PROXY TCP4 192.0.2.7 198.51.100.1 40001 25\r\n');
    socket.end(
      crlf('EHLO client.test', 'MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>', 'DATA') +
        MESSAGE +
        crlf('.', 'QUIT'),
    );
    socket.resume();
    await new Promise((resolve) => socket.once('close', resolve));
    const [message] = await stored();
    expect(message.json).toMatchObject({ remoteAddress: '192.0.2.7', remotePort: 40001 });
  });

  it('--bare-newlines reject: a bare LF in the text gets 554', async () => {
    const port = await start('--bare-newlines', 'reject');
    const client = await connect(port);
    const replies = await client.sendMail(
      'a@example.com',
      ['b@example.com'],
      'Subject: x\r\n\r\nbare\nlf\r\n',
    );
    expect(replies[4].code).toBe(554);
    await client.quit();
    expect(await stored()).toEqual([]);
  });

  it('--record DIR: writes a transcript of each session', async () => {
    const records = path.join(dir, 'records');
    const port = await start('--record', records);
    const client = await connect(port);
    await client.sendMail('a@example.com', ['b@example.com'], MESSAGE);
    await client.quit();
    const [file] = await eventually(async () => {
      const files = await listDir(records);
      return files.length > 0 ? files : undefined;
    });
    expect(file).toMatch(/^\d{4}-\d\d-\d\dT.*-127\.0\.0\.1-[0-9a-f]{8}\.txt$/);
    const transcript = await eventually(async () => {
      const text = await fs.readFile(path.join(records, file), 'utf8');
      return text.includes('QUIT') ? text : undefined;
    });
    expect(transcript).toContain('EHLO client.test');
    expect(transcript).toContain('MAIL FROM:<a@example.com>');
    expect(transcript).toContain('Subject: hello');
  });
  it('--record into a path that cannot be a folder: fails at the start', async () => {
    await fs.writeFile(path.join(dir, 'file'), 'x');
    await expect(start('--record', path.join(dir, 'file', 'records'))).rejects.toMatchObject({
      code: 'ENOTDIR',
    });
  });

  it('--record: a folder gone after the start leaves sessions unrecorded, the server up', async () => {
    const records = path.join(dir, 'records');
    const port = await start('--record', records);
    await fs.rm(records, { recursive: true });
    await fs.writeFile(records, 'now a file');
    const client = await connect(port);
    expect(codes(await client.sendMail('a@example.com', ['b@example.com'], MESSAGE))).toEqual([
      250, 250, 250, 354, 250,
    ]);
    await client.quit();
    expect(await stored()).toHaveLength(1);
  });

  it('a port already in use: startCatcher rejects, nothing is thrown elsewhere', async () => {
    const port = await start();
    await expect(
      startCatcher(catcherOptions(path.join(dir, 'mail2'), '--port', String(port))),
    ).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});

describe('fault injection', () => {
  it('--fail-rcpt 451 --fail-address: refuses only that recipient (any case)', async () => {
    const port = await start('--fail-rcpt', '451', '--fail-address', 'x@y.test');
    const client = await connect(port);
    const replies = await client.sendMail('a@example.com', ['b@example.com', 'X@Y.test'], MESSAGE);
    expect(codes(replies)).toEqual([250, 250, 250, 451, 354, 250]);
    expect(replies[3].text).toBe('4.0.0 Injected failure (451)');
    await client.quit();
    expect((await stored())[0].json.rcptTo).toEqual(['b@example.com']);
  });

  it('--fail-mail 550: every MAIL is refused', async () => {
    const port = await start('--fail-mail', '550');
    const client = await connect(port);
    await client.send('EHLO client.test');
    const mail = await client.send('MAIL FROM:<a@example.com>');
    expect(mail.code).toBe(550);
    expect(mail.text).toBe('5.0.0 Injected failure (550)');
    await client.quit();
  });

  it('--fail-auth 454: AUTH is refused', async () => {
    const port = await start('--auth', 'user:pass', '--fail-auth', '454');
    const client = await connect(port);
    await client.send('EHLO client.test');
    const plain = Buffer.from('\0user\0pass').toString('base64');
    expect((await client.send(`AUTH PLAIN ${plain}`)).code).toBe(454);
    await client.quit();
  });

  it('--fail-data 554: the message is refused at its end and nothing is stored', async () => {
    const port = await start('--fail-data', '554');
    const client = await connect(port);
    const replies = await client.sendMail('a@example.com', ['b@example.com'], MESSAGE);
    expect(codes(replies)).toEqual([250, 250, 250, 354, 554]);
    await client.quit();
    expect(await listDir(path.join(dir, 'mail'))).toEqual([]);
    expect(caught).toEqual([]);
  });

  it('--fail-rate 0: the refusals never apply', async () => {
    const port = await start('--fail-mail', '451', '--fail-data', '554', '--fail-rate', '0');
    const client = await connect(port);
    for (let i = 0; i < 5; i++) {
      const replies = await client.sendMail('a@example.com', ['b@example.com'], MESSAGE);
      expect(codes(replies)).toEqual([250, 250, 250, 354, 250]);
    }
    await client.quit();
    expect(await stored()).toHaveLength(5);
  });

  it('--fail-address: a refusal applies when the address is the sender', async () => {
    const port = await start('--fail-mail', '451', '--fail-data', '554', '--fail-address', 'bad@example.com');
    const client = await connect(port);
    expect(codes(await client.sendMail('good@example.com', ['bad@example.com'], MESSAGE))).toEqual([
      250, 250, 250, 354, 554,
    ]);
    expect((await client.send('MAIL FROM:<bad@example.com>')).code).toBe(451);
    await client.quit();
  });

  it.each(['ehlo', 'mail', 'rcpt', 'data'])(
    '--drop-at %s: closes the connection instead of answering',
    async (step) => {
      const port = await start('--drop-at', step);
      const client = await connect(port);
      const script = ['EHLO client.test', 'MAIL FROM:<a@example.com>', 'RCPT TO:<b@example.com>', 'DATA'];
      const at = ['ehlo', 'mail', 'rcpt', 'data'].indexOf(step);
      for (const line of script.slice(0, at)) expect((await client.send(line)).code).toBe(250);
      await expect(client.send(script[at])).rejects.toThrow('connection closed');
    },
  );

  it('--drop-at body: closes the connection inside the text, nothing is stored', async () => {
    const port = await start('--drop-at', 'body');
    const client = await connect(port);
    await client.send('EHLO client.test');
    await client.send('MAIL FROM:<a@example.com>');
    await client.send('RCPT TO:<b@example.com>');
    expect((await client.send('DATA')).code).toBe(354);
    client.write('Subject: x\r\n\r\npart');
    await client.closed;
    // The temporary file of the half message goes once the server has seen the end of the session.
    await eventually(async () => ((await listDir(path.join(dir, 'mail'))).length === 0 ? true : undefined));
    expect(caught).toEqual([]);
  });

  it('--drop-at connect: closes right away', async () => {
    const port = await start('--drop-at', 'connect');
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (d) => (received += d.toString('latin1')));
    socket.on('error', () => undefined);
    await new Promise((resolve) => socket.once('close', resolve));
    expect(received).toBe(''); // not even the greeting
  });

  it('--throttle: replies arrive slowly but intact', async () => {
    const port = await start('--throttle', '400'); // 40-byte slices, one every 100 ms
    const client = await connect(port);
    const startedAt = Date.now();
    const ehlo = await client.send('EHLO client.test');
    const elapsed = Date.now() - startedAt;
    const bytes = ehlo.lines.join('\r\n').length + 2;
    expect(bytes).toBeGreaterThan(120);
    // n slices go out n-1 pauses apart: at least that, whatever the machine's load.
    expect(elapsed).toBeGreaterThanOrEqual((Math.ceil(bytes / 40) - 1) * 100 - 20);
    expect(ehlo.lines[0]).toBe('250-mx.test Hello client.test');
    expect(ehlo.lines.at(-1)).toMatch(/^250 /);
    const replies = [
      await client.send('MAIL FROM:<a@example.com>'),
      await client.send('RCPT TO:<b@example.com>'),
    ];
    expect(codes(replies)).toEqual([250, 250]);
    expect((await client.send('DATA')).code).toBe(354);
    client.write(MESSAGE);
    expect((await client.send('.')).code).toBe(250);
    await client.quit();
    expect((await stored()).map((m) => m.eml.toString())).toEqual([MESSAGE]);
  });
});
