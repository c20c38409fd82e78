/**
 * `openssl s_client -starttls smtp` (the Debian package) against SmtpServer over loopback. s_client
 * does the greeting, EHLO and STARTTLS itself, verifies the certificate, then relays its stdin and
 * stdout over TLS: the test drives the rest of the session through it, one command at a time, as a
 * `Peer` (spec/stream/helpers.ts), and does its own dot-stuffing. `-brief` puts the negotiated
 * protocol and the verification result on stderr and only the server's bytes on stdout; it also
 * implies -ign_eof, and `-nocommands` keeps lines starting with R, Q or k from being taken as
 * s_client commands (renegotiate, quit, key update).
 */
import { Peer, cleanup, tlsOptions } from '../stream/helpers';
import {
  bytes,
  describeWithTool,
  dotStuffed,
  PASSWORD,
  pemFiles,
  spawnTool,
  startServer,
  toolStdio,
  type ToolResult,
} from './tools';

afterEach(cleanup);

const REPLY_WAIT = 5000;

/** s_client to 127.0.0.1:port with STARTTLS, EHLO name openssl.test, the test certificate verified. */
async function sClient(port: number): Promise<{ peer: Peer; exited: Promise<ToolResult> }> {
  const { cert } = await pemFiles();
  const { child, exited } = spawnTool('openssl', [
    's_client',
    '-connect',
    `127.0.0.1:${port}`,
    '-starttls',
    'smtp',
    '-name',
    'openssl.test',
    '-servername',
    'localhost',
    '-CAfile',
    cert,
    '-verify_hostname',
    'localhost',
    '-verify_return_error',
    '-brief',
    '-nocommands',
  ]);
  return { peer: new Peer(toolStdio(child)), exited };
}

/** Writes `line` + CRLF and returns the final line of the reply to it. */
async function command(peer: Peer, line: string): Promise<string> {
  const count = peer.replies.length + 1;
  peer.write(`${line}\r\n`);
  return (await peer.waitForReplies(count, REPLY_WAIT))[count - 1];
}

const plain = (user: string, password: string): string =>
  Buffer.from(`\0${user}\0${password}`).toString('base64');

describeWithTool('openssl', 'openssl s_client -starttls smtp', () => {
  test('a whole session over the TLS it negotiated: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT', async () => {
    const { port, stored, auth } = await startServer({
      tls: tlsOptions(),
      requireTls: true,
      requireAuth: true,
    });
    const { peer, exited } = await sClient(port);
    // The EHLO after TLS (RFC 3207 §4.2): no STARTTLS any more, AUTH now (requireTls hid it before).
    expect(await command(peer, 'EHLO openssl.test')).toMatch(/^250 /);
    const ehlo = peer.text.split('\r\n');
    expect(ehlo[0]).toBe('250-mx.test Hello openssl.test');
    expect(ehlo.some((line) => /^250[ -]AUTH .*\bPLAIN\b/.test(line))).toBe(true);
    expect(ehlo.some((line) => /^250[ -]STARTTLS$/.test(line))).toBe(false);
    expect(await command(peer, `AUTH PLAIN ${plain('alice', PASSWORD)}`)).toBe(
      '235 2.7.0 Authentication successful',
    );
    expect(await command(peer, 'MAIL FROM:<alice@a.test>')).toBe('250 2.1.0 Sender alice@a.test ok');
    expect(await command(peer, 'RCPT TO:<bob@b.test>')).toBe('250 2.1.5 Recipient bob@b.test ok');
    expect(await command(peer, 'DATA')).toBe('354 End data with <CR><LF>.<CR><LF>');
    const text = 'Subject: through s_client\r\n\r\n.\r\n..two\r\nRCPT is just text here\r\nQ too\r\n.end\r\n';
    peer.write(dotStuffed(text));
    expect(await command(peer, '.')).toBe('250 2.0.0 Ok: queued as id-1');
    expect(await command(peer, 'QUIT')).toBe('221 2.0.0 Bye');
    peer.stream.end();
    const result = await exited; // s_client exits once the server has closed
    expect(result).toMatchObject({ code: 0 });
    expect(result.stderr).toMatch(/^CONNECTION ESTABLISHED$/m);
    expect(result.stderr).toMatch(/^Verification: OK$/m);
    expect(stored).toHaveLength(1);
    expect(bytes(stored[0].body)).toBe(bytes(text));
    expect(stored[0].envelope.mailFrom.address).toBe('alice@a.test');
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['bob@b.test']);
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.helo).toBe('openssl.test');
    expect(stored[0].session.user).toBe('alice');
    expect(stored[0].session.tls?.servername).toBe('localhost');
    // Both ends agree on what was negotiated.
    const protocol = stored[0].session.tls?.protocol;
    expect(protocol).toMatch(/^TLSv1\.[23]$/);
    expect(result.stderr).toMatch(new RegExp(`^Protocol version: ${protocol?.replace('.', '\\.')}$`, 'm'));
    expect(auth.map((a) => [a.method, a.username, a.password])).toEqual([['PLAIN', 'alice', PASSWORD]]);
  });

  test('refusals inside the TLS session: bad AUTH 535, MAIL before AUTH 530, refused RCPT 550, and it goes on', async () => {
    const { port, stored } = await startServer({ tls: tlsOptions(), requireAuth: true });
    const { peer, exited } = await sClient(port);
    expect(await command(peer, 'EHLO openssl.test')).toMatch(/^250 /);
    expect(await command(peer, `AUTH PLAIN ${plain('alice', 'wrong')}`)).toBe(
      '535 5.7.8 Authentication credentials invalid',
    );
    expect(await command(peer, 'MAIL FROM:<alice@a.test>')).toMatch(/^530 5\.7\.0 /);
    expect(await command(peer, `AUTH PLAIN ${plain('alice', PASSWORD)}`)).toMatch(/^235 /);
    expect(await command(peer, 'MAIL FROM:<alice@a.test>')).toMatch(/^250 /);
    expect(await command(peer, 'RCPT TO:<nobody@b.test>')).toBe('550 5.1.1 Invalid recipient nobody@b.test');
    expect(await command(peer, 'DATA')).toMatch(/^554 5\.5\.1 /); // no valid recipient yet
    expect(await command(peer, 'RCPT TO:<bob@b.test>')).toMatch(/^250 /);
    expect(await command(peer, 'DATA')).toMatch(/^354 /);
    peer.write('Subject: after the refusals\r\n\r\nok\r\n');
    expect(await command(peer, '.')).toMatch(/^250 /);
    expect(await command(peer, 'QUIT')).toBe('221 2.0.0 Bye');
    peer.stream.end();
    expect(await exited).toMatchObject({ code: 0 });
    expect(stored).toHaveLength(1);
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['bob@b.test']);
    expect(stored[0].body.toString()).toBe('Subject: after the refusals\r\n\r\nok\r\n');
    expect(stored[0].session.user).toBe('alice');
    expect(stored[0].session.secure).toBe(true);
  });
});
