/**
 * Python's smtplib against SmtpServer over loopback: each test runs a small script in a child
 * `python3` (`runTool`: spawned asynchronously, killed after a deadline) and compares what was stored with the
 * bytes the script sent. The message is passed to the script in base64 so both sides agree on it.
 */
import { Reply } from '../../lib/protocol/reply';
import { SmtpServer, type SmtpServerOptions } from '../../lib/server/server';
import type { AuthRequest, SmtpMessage } from '../../lib/stream/events';
import { HOST, cleanup, store, track, type StoredMessage, tlsOptions } from '../stream/helpers';
import { runTool } from './tools';

afterEach(cleanup);

/** Runs the script and parses the JSON it prints last; fails with its stderr if it did not exit 0. */
async function runJson(script: string, args: string[]): Promise<Record<string, unknown>> {
  // python3 is on every machine (the guide's premise): no describeWithTool around these tests.
  const result = await runTool('python3', ['-c', script, ...args]);
  if (result.code !== 0) throw new Error(`python exited ${result.code}\n${result.stderr}\n${result.stdout}`);
  const lines = result.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
}

async function startServer(
  options: SmtpServerOptions = {},
): Promise<{ port: number; stored: StoredMessage[]; auth: AuthRequest[]; server: SmtpServer }> {
  const stored: StoredMessage[] = [];
  const auth: AuthRequest[] = [];
  const server = new SmtpServer({ hostname: HOST, ...options }, (session) => {
    if (!options.lmtp) store(session, stored);
    session.on('auth', (request: AuthRequest) => {
      auth.push(request);
      if (request.validatePassword('correct horse')) request.accept();
      else request.reject();
    });
  });
  const { port } = await server.start(0);
  track(() => server.close());
  return { port, stored, auth, server };
}

const b64 = (data: string | Buffer): string => Buffer.from(data).toString('base64');

const PREAMBLE = `
import base64, json, smtplib, ssl, sys
port = int(sys.argv[1])
message = base64.b64decode(sys.argv[2])
`;

describe('Python smtplib', () => {
  test('plain sendmail: envelope and text stored byte for byte', async () => {
    const { port, stored } = await startServer();
    const message = Buffer.from('From: py@a.test\r\nSubject: smtplib\r\n\r\nHello from Python\r\n', 'latin1');
    const out = await runJson(
      PREAMBLE +
        `
with smtplib.SMTP('127.0.0.1', port, local_hostname='py.test', timeout=5) as s:
    refused = s.sendmail('py@a.test', ['x@b.test', 'y@b.test'], message)
    code, text = s.noop()
print(json.dumps({'refused': refused, 'noop': code}))
`,
      [String(port), b64(message)],
    );
    expect(out).toEqual({ refused: {}, noop: 250 });
    expect(stored).toHaveLength(1);
    expect(stored[0].body.equals(message)).toBe(true);
    expect(stored[0].envelope.mailFrom.address).toBe('py@a.test');
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['x@b.test', 'y@b.test']);
    expect(stored[0].session.heloVerb).toBe('EHLO');
    expect(stored[0].session.helo).toBe('py.test');
  });

  test('starttls() + login(): the text arrives under TLS, authenticated', async () => {
    const { port, stored, auth } = await startServer({
      tls: tlsOptions(),
      requireTls: true,
      requireAuth: true,
    });
    const message = Buffer.from('Subject: tls\r\n\r\nsecret\r\n');
    const out = await runJson(
      PREAMBLE +
        `
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP('127.0.0.1', port, local_hostname='py.test', timeout=5) as s:
    s.ehlo()
    before = s.has_extn('auth')
    s.starttls(context=ctx)
    s.ehlo()
    code, _ = s.login('alice', 'correct horse')
    s.sendmail('alice@a.test', ['bob@b.test'], message)
print(json.dumps({'authBeforeTls': before, 'login': code, 'version': s.sock.version() if s.sock else None}))
`,
      [String(port), b64(message)],
    );
    expect(out.authBeforeTls).toBe(false); // requireTls hides AUTH before TLS
    expect(out.login).toBe(235);
    expect(auth).toHaveLength(1);
    expect(auth[0].username).toBe('alice');
    expect(['CRAM-MD5', 'PLAIN', 'LOGIN']).toContain(auth[0].method);
    expect(stored[0].body.equals(message)).toBe(true);
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.user).toBe('alice');
  });

  test.each(['PLAIN', 'LOGIN'])('login() restricted to AUTH %s', async (method) => {
    const { port, auth } = await startServer({ tls: tlsOptions() });
    const out = await runJson(
      PREAMBLE +
        `
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP('127.0.0.1', port, local_hostname='py.test', timeout=5) as s:
    s.starttls(context=ctx)
    s.ehlo()
    s.esmtp_features['auth'] = sys.argv[3]
    try:
        s.login('alice', 'wrong')
        bad = None
    except smtplib.SMTPAuthenticationError as e:
        bad = e.smtp_code
    code, _ = s.login('alice', 'correct horse')
print(json.dumps({'bad': bad, 'good': code}))
`,
      [String(port), b64(''), method],
    );
    expect(out).toEqual({ bad: 535, good: 235 });
    expect(auth.map((a) => [a.method, a.password])).toEqual([
      [method, 'wrong'],
      [method, 'correct horse'],
    ]);
  });

  test('lines starting with dots survive transparency both ways', async () => {
    const { port, stored } = await startServer();
    const message = Buffer.from(
      ['Subject: dots', '', '.', '..', '...', '. leading space', '.\tTab', 'mid . dot', '.end', ''].join(
        '\r\n',
      ),
    );
    await runJson(
      PREAMBLE +
        `
with smtplib.SMTP('127.0.0.1', port, local_hostname='py.test', timeout=5) as s:
    s.sendmail('d@a.test', ['e@b.test'], message)
print(json.dumps({}))
`,
      [String(port), b64(message)],
    );
    expect(stored[0].body.toString('latin1')).toBe(message.toString('latin1'));
  });

  test('8-bit UTF-8 text with SMTPUTF8 and BODY=8BITMIME', async () => {
    const { port, stored } = await startServer();
    const message = Buffer.from(
      'From: jöran@exämple.test\r\nSubject: grüße 🚀\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n' +
        'Größe: 5 µm — ∑ 漢字 🚀\r\n\u00ff\u00fe raw 8-bit\r\n',
      'utf8',
    );
    const out = await runJson(
      PREAMBLE +
        `
with smtplib.SMTP('127.0.0.1', port, local_hostname='py.test', timeout=5) as s:
    s.ehlo()
    features = [s.has_extn('smtputf8'), s.has_extn('8bitmime')]
    s.sendmail('jöran@exämple.test', ['ünï@bücher.test'], message, mail_options=['SMTPUTF8', 'BODY=8BITMIME'])
print(json.dumps({'features': features}))
`,
      [String(port), b64(message)],
    );
    expect(out.features).toEqual([true, true]);
    expect(stored[0].envelope.smtputf8).toBe(true);
    expect(stored[0].envelope.bodyType).toBe('8BITMIME');
    expect(stored[0].envelope.mailFrom.address).toBe('jöran@exämple.test');
    expect(stored[0].envelope.rcptTo[0].address).toBe('ünï@bücher.test');
    expect(stored[0].body.equals(message)).toBe(true);
  });

  test('smtplib.LMTP against an lmtp server: one reply per recipient', async () => {
    const stored: StoredMessage[] = [];
    const server = new SmtpServer({ hostname: HOST, lmtp: true }, (session) => {
      session.on('message', async (m: SmtpMessage) => {
        stored.push({ envelope: m.envelope, session: { ...m.session }, body: await m.buffer() });
        m.answerEach(
          m.envelope.rcptTo.map((r) =>
            r.address.startsWith('full') ? new Reply(452, 'Mailbox full', '4.2.2') : `lmtp-${r.address}`,
          ),
        );
      });
    });
    const { port } = await server.start(0);
    track(() => server.close());
    const message = Buffer.from('Subject: lmtp\r\n\r\nto two mailboxes\r\n');
    const out = await runJson(
      PREAMBLE +
        `
s = smtplib.LMTP('127.0.0.1', port, local_hostname='py.test')
s.sock.settimeout(5)
code, text = s.ehlo()
s.mail('l@a.test')
s.rcpt('one@b.test')
s.rcpt('full@b.test')
first = s.data(message)
second = s.getreply()
s.quit()
print(json.dumps({'lhlo': code, 'first': [first[0], first[1].decode()], 'second': [second[0], second[1].decode()]}))
`,
      [String(port), b64(message)],
    );
    expect(out.lhlo).toBe(250);
    expect(out.first).toEqual([250, '2.1.5 <one@b.test> Ok: queued as lmtp-one@b.test']);
    expect(out.second).toEqual([452, '4.2.2 Mailbox full']);
    expect(stored[0].session.heloVerb).toBe('LHLO');
    expect(stored[0].body.equals(message)).toBe(true);
  });
});
