/**
 * swaks (the Debian package) against SmtpServer over loopback: plain, STARTTLS + AUTH LOGIN, AUTH
 * PLAIN over implicit TLS, --pipeline, dot-stuffing, and how swaks reports refusals (its exit codes,
 * and `<**` / `<~*` on an error reply in its transcript on stdout: `->` / `~>` sent in clear / in
 * TLS, `<-` / `<~` received).
 *
 * The text goes in with `--data -` (stdin). swaks rewrites it (sub process_args, "SMTP DATA"): the
 * header block is split into lines and joined again with CRLF, tokens like %DATE% are replaced, a
 * leading "From " line is dropped, a closing "CRLF . CRLF" given with the text is taken off, a dot
 * is added before each line that starts with one, bare LF becomes CRLF, and then `CRLF .` is
 * appended. The texts here have CRLF lines, "Name: value" headers, no tokens, no literal \n and no
 * leading "From ", so the only changes left are the dot-stuffing and that final CRLF: a text ending
 * in CRLF without the closing dot is stored with one more CRLF (an empty last line); with the
 * closing dot, exactly as given.
 */
import { cleanup, tlsOptions } from '../stream/helpers';
import {
  bytes,
  describeWithTool,
  dotStuffed,
  PASSWORD,
  runTool,
  startServer,
  type ToolResult,
} from './tools';

afterEach(cleanup);

function swaks(port: number, from: string, to: string[], ...options: string[]): string[] {
  return [
    '--server',
    '127.0.0.1',
    '--port',
    String(port),
    '--timeout',
    '8',
    '--helo',
    'swaks.test',
    '--from',
    from,
    '--to',
    to.join(','),
    ...options,
    '--data',
    '-',
  ];
}

/** STARTTLS, then AUTH LOGIN as alice with `password`. */
const tlsLogin = (password: string): string[] => [
  '--tls',
  '--auth',
  'LOGIN',
  '--auth-user',
  'alice',
  '--auth-password',
  password,
];

/** The lines of swaks' transcript (it prints the text's lines with their CR). */
const transcript = (result: ToolResult): string[] => result.stdout.split(/\r?\n/);

/** What swaks reports as negotiated: `=== TLS started with cipher TLSv1.3:TLS_AES_…:256`. */
const swaksTlsProtocol = (result: ToolResult): string | undefined =>
  /^=== TLS started with cipher (TLSv1\.[0-9]):/m.exec(result.stdout)?.[1];

describeWithTool('swaks', 'swaks', () => {
  test('plain: envelope, HELO name, the text with the CRLF swaks appends', async () => {
    const { port, stored } = await startServer();
    const text = 'Subject: swaks plain\r\nX-Folded: one\r\n\ttwo\r\n\r\nGrüße, 8-bit\r\nlast line\r\n';
    const result = await runTool('swaks', swaks(port, 'sender@a.test', ['one@b.test', 'two@b.test']), text);
    expect(result).toMatchObject({ code: 0 });
    expect(transcript(result)).toContain('<-  250 2.0.0 Ok: queued as id-1');
    expect(stored).toHaveLength(1);
    // swaks appends "CRLF ." to the text it was given (see the header comment).
    expect(bytes(stored[0].body)).toBe(bytes(text + '\r\n'));
    expect(stored[0].envelope.mailFrom.address).toBe('sender@a.test');
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['one@b.test', 'two@b.test']);
    expect(stored[0].session.heloVerb).toBe('EHLO');
    expect(stored[0].session.helo).toBe('swaks.test');
    expect(stored[0].session.secure).toBe(false);
  });

  test('STARTTLS (--tls) + AUTH LOGIN: the text exactly as given, under TLS, authenticated', async () => {
    const { port, stored, auth } = await startServer({
      tls: tlsOptions(),
      requireTls: true,
      requireAuth: true,
    });
    const text = 'Subject: swaks STARTTLS + AUTH LOGIN\r\n\r\nsecret\r\n';
    const result = await runTool(
      'swaks',
      swaks(port, 'alice@a.test', ['bob@b.test'], ...tlsLogin(PASSWORD)),
      text + '.\r\n',
    );
    expect(result).toMatchObject({ code: 0 });
    const lines = transcript(result);
    expect(lines).toContain(' -> STARTTLS');
    expect(lines).toContain(' ~> AUTH LOGIN');
    expect(lines).toContain('<~  235 2.7.0 Authentication successful');
    expect(auth.map((a) => [a.method, a.username, a.password])).toEqual([['LOGIN', 'alice', PASSWORD]]);
    expect(stored).toHaveLength(1);
    expect(bytes(stored[0].body)).toBe(bytes(text));
    expect(stored[0].envelope.mailFrom.address).toBe('alice@a.test');
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['bob@b.test']);
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.user).toBe('alice');
    expect(stored[0].session.tls?.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(swaksTlsProtocol(result)).toBe(stored[0].session.tls?.protocol);
  });

  test('AUTH PLAIN over implicit TLS (--tls-on-connect against a secure listener)', async () => {
    const { port, stored, auth } = await startServer({ tls: tlsOptions(), secure: true, requireAuth: true });
    const text = 'Subject: swaks AUTH PLAIN\r\n\r\nimplicit TLS\r\n';
    const result = await runTool(
      'swaks',
      swaks(
        port,
        'alice@a.test',
        ['bob@b.test'],
        '--tls-on-connect',
        '--auth',
        'PLAIN',
        '--auth-user',
        'alice',
        '--auth-password',
        PASSWORD,
      ),
      text + '.\r\n',
    );
    expect(result).toMatchObject({ code: 0 });
    const lines = transcript(result);
    expect(lines).not.toContain(' -> STARTTLS');
    expect(lines.some((line) => line.startsWith(' ~> AUTH PLAIN '))).toBe(true);
    expect(auth.map((a) => [a.method, a.username, a.password])).toEqual([['PLAIN', 'alice', PASSWORD]]);
    expect(stored).toHaveLength(1);
    expect(bytes(stored[0].body)).toBe(bytes(text));
    expect(stored[0].session.secure).toBe(true);
    expect(stored[0].session.user).toBe('alice');
    expect(swaksTlsProtocol(result)).toBe(stored[0].session.tls?.protocol);
  });

  test('--pipeline: MAIL, RCPT, RCPT, DATA in one batch; the refused RCPT is reported, the rest goes on', async () => {
    const { port, stored } = await startServer();
    const text = 'Subject: pipelined\r\n\r\nbody\r\n';
    const result = await runTool(
      'swaks',
      swaks(port, 'p@a.test', ['one@b.test', 'nobody@b.test'], '--pipeline'),
      text + '.\r\n',
    );
    expect(result).toMatchObject({ code: 0 }); // one recipient was accepted
    const lines = transcript(result);
    const mail = lines.indexOf(' -> MAIL FROM:<p@a.test>');
    expect(mail).toBeGreaterThan(0);
    // All four commands went out before the first reply came back (RFC 2920 §3.1), and the replies
    // came in order.
    expect(lines.slice(mail, mail + 8)).toEqual([
      ' -> MAIL FROM:<p@a.test>',
      ' -> RCPT TO:<one@b.test>',
      ' -> RCPT TO:<nobody@b.test>',
      ' -> DATA',
      '<-  250 2.1.0 Sender p@a.test ok',
      '<-  250 2.1.5 Recipient one@b.test ok',
      '<** 550 5.1.1 Invalid recipient nobody@b.test',
      '<-  354 End data with <CR><LF>.<CR><LF>',
    ]);
    expect(stored).toHaveLength(1);
    expect(stored[0].envelope.rcptTo.map((r) => r.address)).toEqual(['one@b.test']);
    expect(bytes(stored[0].body)).toBe(bytes(text));
  });

  test('lines starting with dots: stuffed on the wire, stored byte for byte', async () => {
    const { port, stored } = await startServer();
    const text = [
      'Subject: dots through swaks',
      '',
      '.',
      '..',
      '...',
      '. leading space',
      '.\tTab',
      'mid . dot',
      '.end',
      '',
    ].join('\r\n');
    const result = await runTool('swaks', swaks(port, 'd@a.test', ['e@b.test']), text + '.\r\n');
    expect(result).toMatchObject({ code: 0 });
    // What swaks wrote between the 354 and the reply to the final dot: the stuffed lines, then the dot.
    const lines = transcript(result);
    const start = lines.indexOf('<-  354 End data with <CR><LF>.<CR><LF>') + 1;
    const end = lines.findIndex((line, i) => i >= start && line.startsWith('<-'));
    expect(start).toBeGreaterThan(0);
    expect(lines.slice(start, end)).toEqual(
      [...dotStuffed(text).split('\r\n').slice(0, -1), '.'].map((line) => ` -> ${line}`),
    );
    expect(stored).toHaveLength(1);
    expect(bytes(stored[0].body)).toBe(bytes(text));
  });

  test('the only recipient refused: 550 shown as an error, swaks exits 24 (no RCPT accepted)', async () => {
    const { port, stored } = await startServer();
    const result = await runTool(
      'swaks',
      swaks(port, 'a@a.test', ['nobody@b.test']),
      'Subject: x\r\n\r\nx\r\n',
    );
    expect(result).toMatchObject({ code: 24 });
    const lines = transcript(result);
    expect(lines).toContain('<** 550 5.1.1 Invalid recipient nobody@b.test');
    expect(lines).not.toContain(' -> DATA');
    expect(stored).toHaveLength(0);
  });

  test('a wrong password: 535 shown as an error, swaks exits 28 (AUTH failed), nothing sent', async () => {
    const { port, stored, auth } = await startServer({ tls: tlsOptions(), requireAuth: true });
    const result = await runTool(
      'swaks',
      swaks(port, 'alice@a.test', ['bob@b.test'], ...tlsLogin('wrong')),
      'Subject: x\r\n\r\nx\r\n',
    );
    expect(result).toMatchObject({ code: 28 });
    const lines = transcript(result);
    expect(lines).toContain('<~* 535 5.7.8 Authentication credentials invalid');
    expect(lines.some((line) => line.startsWith(' ~> MAIL '))).toBe(false);
    expect(auth.map((a) => [a.method, a.password])).toEqual([['LOGIN', 'wrong']]);
    expect(stored).toHaveLength(0);
  });
});
