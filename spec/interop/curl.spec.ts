/**
 * curl (the Debian package) against SmtpServer and the catcher over loopback: plain SMTP, STARTTLS
 * with --ssl-reqd and each AUTH mechanism, smtps:// against the catcher's --tls-implicit, and the
 * ways curl reports a refusal. curl reads the message from its stdin (`--upload-file -`); `--verbose`
 * puts the SMTP dialogue (`> ` sent, `< ` received) on stderr. TLS is verified against the test
 * certificate (`--cacert`, name `localhost` pinned to 127.0.0.1 with `--resolve`).
 */
import * as path from 'node:path';
import { startCatcher } from '../../lib/catcher/catcher';
import { catcherOptions, portOf, removeDir, storedMessages, tempDir } from '../catcher/helpers';
import { cleanup, track, tlsOptions } from '../stream/helpers';
import { bytes, describeWithTool, PASSWORD, pemFiles, runTool, startServer } from './tools';

afterEach(cleanup);

/**
 * curl's arguments: no ~/.curlrc (-q, first), the dialogue on stderr, a bound on its own run, then
 * `args` (the URL and options), the text from stdin.
 */
function curlArgs(...args: string[]): string[] {
  const common = ['-q', '--silent', '--show-error', '--verbose', '--max-time', '8'];
  return [...common, ...args, '--upload-file', '-'];
}

/** curl sends TEXT from `from` to each of `to`; `options` (the URL first) come before the envelope. */
function curl(envelope: { from: string; to: string[] }, ...options: string[]): ReturnType<typeof runTool> {
  const recipients = envelope.to.flatMap((address) => ['--mail-rcpt', address]);
  return runTool('curl', curlArgs(...options, '--mail-from', envelope.from, ...recipients), TEXT);
}

/** `smtp[s]://localhost:port/curl.test` (the path is curl's EHLO name), verified with the test certificate. */
async function tlsArgs(scheme: 'smtp' | 'smtps', port: number): Promise<string[]> {
  const { cert } = await pemFiles();
  return [
    `${scheme}://localhost:${port}/curl.test`,
    '--resolve',
    `localhost:${port}:127.0.0.1`,
    '--cacert',
    cert,
  ];
}

// The first line starts with a dot too (curl stuffs the start of the text as a line start), and the
// last line has no CRLF: curl adds one before the final dot (lib/smtp.c smtp_done, RFC 5321
// §4.1.1.4), so the stored text is TEXT + CRLF. That is the only change curl makes.
const TEXT = [
  '.a first line that starts with a dot',
  'Subject: curl über SMTP',
  '',
  '.',
  '..',
  '. space after the dot',
  'tab\there, trailing space ',
  'y'.repeat(998),
  'last line, no CRLF after it',
].join('\r\n');
const STORED = Buffer.from(TEXT + '\r\n');

describeWithTool('curl', 'curl', () => {
  test('plain SMTP: envelope, EHLO name and the text byte for byte', async () => {
    const { port, stored } = await startServer();
    const result = await curl(
      { from: 'sender@a.test', to: ['one@b.test', 'two@b.test'] },
      `smtp://127.0.0.1:${port}/curl.test`,
    );
    expect(result).toMatchObject({ code: 0 });
    expect(result.stderr).toMatch(/^< 250 2\.0\.0 Ok: queued as id-1\r?$/m);
    expect(stored).toHaveLength(1);
    expect(bytes(stored[0].body)).toBe(bytes(STORED));
    expect(stored[0].envelope.mailFrom.address).toBe('sender@a.test');
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['one@b.test', 'two@b.test']);
    expect(stored[0].session.heloVerb).toBe('EHLO');
    expect(stored[0].session.helo).toBe('curl.test');
    expect(stored[0].session.secure).toBe(false);
  });

  test.each([
    // What curl picks by itself among PLAIN LOGIN CRAM-MD5 XOAUTH2 (its most secure one).
    ['CRAM-MD5', []],
    ['PLAIN', ['--login-options', 'AUTH=PLAIN']],
    ['LOGIN', ['--login-options', 'AUTH=LOGIN']],
  ])('STARTTLS (--ssl-reqd) + AUTH %s: stored under TLS, authenticated', async (method, options) => {
    const { port, stored, auth } = await startServer({
      tls: tlsOptions(),
      requireTls: true,
      requireAuth: true,
    });
    const result = await curl(
      { from: 'alice@a.test', to: ['bob@b.test'] },
      ...(await tlsArgs('smtp', port)),
      '--ssl-reqd',
      ...options,
      '--user',
      `alice:${PASSWORD}`,
    );
    expect(result).toMatchObject({ code: 0 });
    // STARTTLS before any AUTH, then the EHLO again (RFC 3207 §4.2).
    expect(result.stderr).toMatch(/^> STARTTLS\r?\n[\s\S]*^> EHLO curl\.test\r?\n[\s\S]*^> AUTH /m);
    expect(auth.map((a) => [a.method, a.username])).toEqual([[method, 'alice']]);
    // CRAM-MD5 never sends the password; the server checked the digest against it.
    expect(auth[0].password).toBe(method === 'CRAM-MD5' ? undefined : PASSWORD);
    expect(stored).toHaveLength(1);
    expect(bytes(stored[0].body)).toBe(bytes(STORED));
    expect(stored[0].envelope.mailFrom.address).toBe('alice@a.test');
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['bob@b.test']);
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(stored[0].session.tls?.servername).toBe('localhost');
    expect(stored[0].session.user).toBe('alice');
  });

  test('smtps:// against the catcher (--tls-implicit --require-auth): the .eml is the text, the .json says TLS and user', async () => {
    const dir = await tempDir('interop-curl-');
    track(() => removeDir(dir));
    const { cert, key } = await pemFiles();
    const maildir = path.join(dir, 'mail');
    const catcher = await startCatcher(
      catcherOptions(
        maildir,
        '--tls-implicit',
        '--tls-cert',
        cert,
        '--tls-key',
        key,
        '--auth',
        `alice:${PASSWORD}`,
        '--require-auth',
      ),
    );
    track(() => catcher.close());
    const port = portOf(catcher.url);
    const result = await curl(
      { from: 'alice@a.test', to: ['bob@b.test', 'carol@b.test'] },
      ...(await tlsArgs('smtps', port)),
      '--user',
      `alice:${PASSWORD}`,
    );
    expect(result).toMatchObject({ code: 0 });
    expect(result.stderr).not.toMatch(/^> STARTTLS/m); // TLS from the first byte, nothing to upgrade
    const messages = await storedMessages(maildir);
    expect(messages).toHaveLength(1);
    expect(bytes(messages[0].eml)).toBe(bytes(STORED));
    expect(messages[0].json).toMatchObject({
      helo: 'curl.test',
      mailFrom: 'alice@a.test',
      rcptTo: ['bob@b.test', 'carol@b.test'],
      secure: true,
      user: 'alice',
      size: STORED.length,
    });
    expect((messages[0].json.tls as { protocol: string }).protocol).toMatch(/^TLSv1\.[23]$/);
  });

  test('a wrong password: 535, curl exits 67 (login denied), nothing stored', async () => {
    const { port, stored, auth } = await startServer({ tls: tlsOptions(), requireAuth: true });
    const result = await curl(
      { from: 'alice@a.test', to: ['bob@b.test'] },
      ...(await tlsArgs('smtp', port)),
      '--ssl-reqd',
      '--user',
      'alice:wrong',
    );
    expect(result).toMatchObject({ code: 67 });
    expect(result.stderr).toMatch(/^< 535 5\.7\.8 /m);
    expect(result.stderr).toMatch(/^curl: \(67\) Login denied/m);
    expect(result.stderr).not.toMatch(/^> MAIL /m);
    expect(auth.map((a) => [a.method, a.username])).toEqual([['CRAM-MD5', 'alice']]);
    expect(stored).toHaveLength(0);
  });

  test('the only recipient refused: 550, curl exits 55 (RCPT failed), nothing stored', async () => {
    const { port, stored } = await startServer();
    const result = await curl(
      { from: 'a@a.test', to: ['nobody@b.test'] },
      `smtp://127.0.0.1:${port}/curl.test`,
    );
    expect(result).toMatchObject({ code: 55 });
    expect(result.stderr).toMatch(/^< 550 5\.1\.1 /m);
    expect(result.stderr).toMatch(/^curl: \(55\) RCPT failed: 550/m);
    expect(result.stderr).not.toMatch(/^> DATA/m);
    expect(stored).toHaveLength(0);
  });

  test('--mail-rcpt-allowfails: the refused recipient is left out, the others get the message', async () => {
    const { port, stored } = await startServer();
    const result = await curl(
      { from: 'a@a.test', to: ['one@b.test', 'nobody@b.test', 'two@b.test'] },
      `smtp://127.0.0.1:${port}/curl.test`,
      '--mail-rcpt-allowfails',
    );
    expect(result).toMatchObject({ code: 0 });
    expect(result.stderr).toMatch(/^< 550 5\.1\.1 /m);
    expect(stored).toHaveLength(1);
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['one@b.test', 'two@b.test']);
    expect(bytes(stored[0].body)).toBe(bytes(STORED));
  });

  test('--ssl-reqd against a server without STARTTLS: curl stops (exit 64) before MAIL', async () => {
    const { port, stored } = await startServer();
    const result = await curl(
      { from: 'a@a.test', to: ['b@b.test'] },
      `smtp://127.0.0.1:${port}/curl.test`,
      '--ssl-reqd',
    );
    expect(result).toMatchObject({ code: 64 });
    expect(result.stderr).toMatch(/STARTTLS not supported/);
    expect(result.stderr).not.toMatch(/^> MAIL /m);
    expect(stored).toHaveLength(0);
  });
});
