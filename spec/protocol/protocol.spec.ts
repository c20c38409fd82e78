import { limits, pipelining, requireTls as requireTlsExtension } from '../../lib/protocol/extensions';
import { DEFAULTS, Protocol } from '../../lib/protocol/protocol';
import { Reply } from '../../lib/protocol/reply';
import { State } from '../../lib/protocol/state';
import type { IncomingMessage } from '../../lib/protocol/types';
import {
  b64,
  codes,
  drain,
  envelope,
  feed,
  finals,
  lines,
  make,
  parseReplies,
  plain,
  recorder,
  session,
  sleep,
} from './helpers';

const OK = '250 2.0.0 Ok';
const MUST_TLS = '530 5.7.0 Must issue a STARTTLS command first';

describe('defaults', () => {
  test('documented values', () => {
    expect(DEFAULTS).toMatchObject({
      hostname: 'localhost',
      maximumRecipients: 100,
      maximumLineLength: 512,
      maximumAuthLineLength: 12288,
      maxErrors: 20,
      maxAuthFailures: 3,
      maxCommandsBeforeHelo: 20,
      allowBareLfInCommands: true,
      bareNewlines: 'keep',
    });
    const p = new Protocol();
    expect(p.state).toBe(State.Invalid);
    expect(p.start().render(false)).toBe('220 localhost ESMTP smtp-session-stream\r\n');
    expect(p.state).toBe(State.Establish);
    expect(p.enhancedStatusCodes).toBe(true);
  });

  test('hostname and ident go into the greeting and the EHLO reply', async () => {
    const p = new Protocol({ hostname: 'mail.example', ident: 'Catcher' });
    expect(p.start().toString()).toBe('220 mail.example ESMTP Catcher');
    expect(lines(await session(p, 'EHLO c\r\n'))[0]).toBe('250-mail.example Hello c');
  });

  test('the default EHLO reply', async () => {
    expect(lines(await session(make(), 'EHLO c\r\n'))).toEqual([
      '250-mx.test Hello c',
      '250-PIPELINING',
      '250-SIZE 26214400',
      '250-8BITMIME',
      '250-SMTPUTF8',
      '250-ENHANCEDSTATUSCODES',
      '250-CHUNKING',
      '250-BINARYMIME',
      '250 DSN',
    ]);
  });

  test('without ENHANCEDSTATUSCODES, replies carry no x.y.z code', async () => {
    const p = make({ disabledExtensions: ['ENHANCEDSTATUSCODES'] });
    expect(p.enhancedStatusCodes).toBe(false);
    expect(finals(await session(p, 'NOOP\r\nMAIL FROM:<a@x.test>\r\n'))).toEqual([
      '250 Ok',
      '503 Error: send HELO/EHLO first',
    ]);
  });

  test('use() after construction adds to this session only', async () => {
    const a = make();
    const b = make();
    expect(a.use({ name: 'XLATE', ehlo: () => 'XLATE' })).toBe(a);
    expect(a.hasExtension('xlate')).toBe(true);
    expect(b.hasExtension('XLATE')).toBe(false);
    expect(lines(await session(a, 'EHLO c\r\n')).pop()).toBe('250 XLATE');
    expect(lines(await session(b, 'EHLO c\r\n')).pop()).toBe('250 DSN');
    expect(lines(await session(make(), 'EHLO c\r\n')).join()).not.toContain('XLATE');
  });

  test('registering an extension twice throws', () => {
    expect(() => make({ extensions: [pipelining] })).toThrow('extension PIPELINING is already registered');
  });
});

describe('rejectBrokenMailSyntax / rejectBrokenRcptSyntax', () => {
  const forms = ['FROM: <a@x.test>', 'FROM:a@x.test', 'FROM : <a@x.test>', 'from:\t<a@x.test>'];

  test.each(forms)('lenient (default) accepts MAIL %s', async (form) => {
    expect(finals(await session(make(), `EHLO c\r\nMAIL ${form}\r\n`))[1]).toBe(
      '250 2.1.0 Sender a@x.test ok',
    );
  });

  test.each(forms)('strict refuses MAIL %s', async (form) => {
    const out = await session(make({ rejectBrokenMailSyntax: true }), `EHLO c\r\nMAIL ${form}\r\n`);
    // No colon right after FROM is a malformed command (5.5.4); a malformed path is 5.1.7 (Postfix).
    expect(finals(out)[1]).toBe(
      form.startsWith('FROM :')
        ? '501 5.5.4 Syntax: MAIL FROM:<address>'
        : '501 5.1.7 Bad sender address syntax',
    );
  });

  test('strict still accepts the exact form', async () => {
    const p = make({ rejectBrokenMailSyntax: true, rejectBrokenRcptSyntax: true });
    expect(codes(await session(p, envelope()))).toEqual([250, 250, 250]);
  });

  test('RCPT: lenient accepts, strict refuses a blank and a bare address', async () => {
    const lenient = await session(
      make(),
      'EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO: <b@y.test>\r\nRCPT TO:c@y.test\r\n',
    );
    expect(finals(lenient).slice(2)).toEqual([
      '250 2.1.5 Recipient b@y.test ok',
      '250 2.1.5 Recipient c@y.test ok',
    ]);
    const strict = await session(
      make({ rejectBrokenRcptSyntax: true }),
      'EHLO c\r\nMAIL FROM: <a@x.test>\r\nRCPT TO: <b@y.test>\r\nRCPT TO:c@y.test\r\n',
    );
    expect(finals(strict).slice(1)).toEqual([
      '250 2.1.0 Sender a@x.test ok',
      '501 5.1.3 Bad recipient address syntax',
      '501 5.1.3 Bad recipient address syntax',
    ]);
  });
});

describe('requireTls', () => {
  const tlsOptions = { requireTls: true, tlsHandler: () => true, lookupPassword: () => 'pw' };

  test('before TLS: MAIL, AUTH, HELP, VRFY → 530; EHLO/NOOP/RSET/QUIT/STARTTLS allowed', async () => {
    const p = make(tlsOptions);
    const out = await feed(
      p,
      `EHLO c\r\nMAIL FROM:<a@x.test>\r\nAUTH PLAIN ${plain('u', 'pw')}\r\nHELP\r\nVRFY u\r\nNOOP\r\nRSET\r\nSTARTTLS\r\n`,
    );
    expect(finals(out.text).slice(1)).toEqual([
      MUST_TLS,
      MUST_TLS,
      MUST_TLS,
      MUST_TLS,
      OK,
      OK,
      '220 2.0.0 Ready to start TLS',
    ]);
    expect(out.actions).toEqual(['starttls']);
  });

  test('AUTH is advertised only after tlsStarted; then MAIL works', async () => {
    const p = make(tlsOptions);
    const before = await session(p, 'EHLO c\r\n');
    expect(lines(before)).toContain('250-STARTTLS');
    expect(lines(before).some((l) => l.includes('AUTH'))).toBe(false);
    await feed(p, 'STARTTLS\r\n');
    p.tlsStarted({});
    const after = await session(p, `EHLO c\r\nAUTH PLAIN ${plain('u', 'pw')}\r\nMAIL FROM:<a@x.test>\r\n`);
    expect(lines(after)).toContain('250-AUTH PLAIN LOGIN CRAM-MD5');
    expect(lines(after)).not.toContain('250-STARTTLS');
    expect(finals(after).slice(1)).toEqual([
      '235 2.7.0 Authentication successful',
      '250 2.1.0 Sender a@x.test ok',
    ]);
  });

  test('QUIT is allowed before TLS', async () => {
    expect(finals(await session(make(tlsOptions), 'QUIT\r\n'))).toEqual(['221 2.0.0 Bye']);
  });

  test('unknown verbs are still 500, not 530', async () => {
    expect(finals(await session(make(tlsOptions), 'FROB\r\n'))).toEqual([
      '500 5.5.2 Error: command not recognized',
    ]);
  });
});

describe('requireAuth', () => {
  test('MAIL → 530 5.7.0 until AUTH succeeds', async () => {
    const p = make({ requireAuth: true, lookupPassword: () => 'pw' });
    const out = await session(
      p,
      `EHLO c\r\nMAIL FROM:<a@x.test>\r\nAUTH PLAIN ${plain('u', 'bad')}\r\nMAIL FROM:<a@x.test>\r\n` +
        `AUTH PLAIN ${plain('u', 'pw')}\r\nMAIL FROM:<a@x.test>\r\n`,
    );
    expect(finals(out).slice(1)).toEqual([
      '530 5.7.0 Authentication required',
      '535 5.7.8 Authentication credentials invalid',
      '530 5.7.0 Authentication required',
      '235 2.7.0 Authentication successful',
      '250 2.1.0 Sender a@x.test ok',
    ]);
  });
});

describe('maximumRecipients', () => {
  const rcpts = (n: number) => Array.from({ length: n }, (_, i) => `r${i}@y.test`);

  test('default 100: the 101st gets 452 4.5.3; the transaction goes on', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook, maxErrors: 0 });
    const out = await session(p, `${envelope('a@x.test', rcpts(102))}DATA\r\nx\r\n.\r\n`);
    const replies = finals(out);
    expect(replies.slice(2, 102).every((r) => r.startsWith('250 2.1.5 Recipient'))).toBe(true);
    expect(replies.slice(102, 104)).toEqual([
      '452 4.5.3 Error: too many recipients',
      '452 4.5.3 Error: too many recipients',
    ]);
    expect(replies[105]).toBe('250 2.0.0 Ok: queued as Q1');
    expect(rec.messages[0].envelope.rcptTo).toHaveLength(100);
  });

  test('452 for excess recipients is not an error: a pipelining client with 130 recipients still delivers', async () => {
    // RFC 5321 §4.5.3.1.10: the client sends the rest later; Postfix does not count the overshoot either.
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await feed(p, `${envelope('a@x.test', rcpts(130))}DATA\r\nx\r\n.\r\n`);
    expect(codes(out.text).filter((c) => c === 452)).toHaveLength(30);
    expect(finals(out.text).slice(-2)).toEqual([
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.0.0 Ok: queued as Q1',
    ]);
    expect(out.actions).toEqual([]);
    expect(rec.messages[0].envelope.rcptTo).toHaveLength(100);
  });

  test('custom limit, and -1 for none', async () => {
    expect(codes(await session(make({ maximumRecipients: 2 }), envelope('a@x.test', rcpts(3))))).toEqual([
      250, 250, 250, 250, 452,
    ]);
    const out = await session(
      make({ maximumRecipients: -1, maxErrors: 0 }),
      envelope('a@x.test', rcpts(150)),
    );
    expect(codes(out).filter((c) => c !== 250)).toEqual([]);
  });

  test('the limit is checked before the syntax', async () => {
    const out = await session(make({ maximumRecipients: 1 }), `${envelope()}RCPT TO:<bad\r\n`);
    expect(finals(out)[3]).toBe('452 4.5.3 Error: too many recipients');
  });

  test('LIMITS (opt-in) advertises it', async () => {
    expect(
      lines(await session(make({ extensions: [limits], maximumRecipients: 7 }), 'EHLO c\r\n')).pop(),
    ).toBe('250 LIMITS RCPTMAX=7');
    expect(
      lines(await session(make({ extensions: [limits], maximumRecipients: -1 }), 'EHLO c\r\n')).join(),
    ).not.toContain('LIMITS');
  });
});

describe('line lengths', () => {
  test('512 octets (CRLF excluded) pass, 513 → 500 5.5.2', async () => {
    const at = `NOOP ${'x'.repeat(512 - 5)}`;
    expect(at).toHaveLength(512);
    expect(finals(await session(make(), `${at}\r\n${at}x\r\n`))).toEqual([
      OK,
      '500 5.5.2 Error: line too long',
    ]);
  });

  test('a custom maximumLineLength', async () => {
    const p = make({ maximumLineLength: 20 });
    expect(codes(await session(p, `NOOP ${'x'.repeat(15)}\r\nNOOP ${'x'.repeat(16)}\r\n`))).toEqual([
      250, 500,
    ]);
  });

  test('AUTH lines and SASL responses up to 12288 octets are accepted', async () => {
    const password = 'p'.repeat(9000);
    const p = make({ lookupPassword: () => password });
    const line = `AUTH PLAIN ${plain('u', password)}`;
    expect(line.length).toBeGreaterThan(12000);
    expect(line.length).toBeLessThanOrEqual(12288);
    expect(finals(await session(p, `EHLO c\r\n${line}\r\n`))[1]).toBe('235 2.7.0 Authentication successful');
    const p2 = make({ lookupPassword: () => password });
    const out = await session(p2, `EHLO c\r\nAUTH PLAIN\r\n${plain('u', password)}\r\n`);
    expect(finals(out)[2]).toBe('235 2.7.0 Authentication successful');
  });

  test('a SASL response over the AUTH limit → 500 and the exchange ends', async () => {
    const p = make({ lookupPassword: () => 'pw' });
    const out = await session(p, `EHLO c\r\nAUTH PLAIN\r\n${'A'.repeat(13000)}\r\nNOOP\r\n`);
    expect(finals(out).slice(1)).toEqual(['334 ', '500 5.5.2 Error: line too long', OK]);
    expect(p.state).toBe(State.Mail);
  });

  test('a non-AUTH line between 512 and 12288 octets → 500', async () => {
    expect(finals(await session(make(), `HELO ${'h'.repeat(5000)}\r\n`))).toEqual([
      '500 5.5.2 Error: line too long',
    ]);
  });

  test('an unterminated line past hardLineCap → 421 and close', async () => {
    const p = make({ hardLineCap: 20000 });
    const out = await feed(p, ['x'.repeat(10000), 'x'.repeat(10000), 'x'.repeat(10000)]);
    expect(finals(out.text)).toEqual(['421 4.7.0 mx.test Error: line too long, closing connection']);
    expect(out.actions).toEqual(['close']);
    expect(p.state).toBe(State.Done);
  });
});

describe('maxErrors, maxCommandsBeforeHelo, maxAuthFailures', () => {
  test('default 20 errors → 421 4.7.0 and close', async () => {
    const p = make();
    const out = await feed(p, `EHLO c\r\n${'FROB\r\n'.repeat(25)}`);
    const replies = finals(out.text);
    expect(replies).toHaveLength(22);
    expect(replies[21]).toBe('421 4.7.0 mx.test Error: too many errors');
    expect(out.actions).toEqual(['close']);
  });

  test('maxErrors 0: no limit', async () => {
    const out = await session(make({ maxErrors: 0 }), `EHLO c\r\n${'FROB\r\n'.repeat(30)}NOOP\r\n`);
    expect(codes(out)).toHaveLength(32);
    expect(codes(out).pop()).toBe(250);
  });

  test('a delivered message forgives earlier errors (Postfix): a long session is not cut off', async () => {
    const rec = recorder();
    const p = make({
      maxErrors: 3,
      messageReceivedHandler: rec.hook,
      validateRecipientHandler: (to) => to.address !== 'bad@y.test',
    });
    const one = 'MAIL FROM:<a@x.test>\r\nRCPT TO:<bad@y.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nhi\r\n.\r\n';
    const out = await feed(p, `EHLO c\r\n${one.repeat(10)}QUIT\r\n`);
    expect(rec.messages).toHaveLength(10);
    expect(codes(out.text).filter((code) => code === 421)).toEqual([]);
    expect(finals(out.text).at(-1)).toBe('221 2.0.0 Bye');
    // A refused message forgives nothing: three refusals in a row still close the session.
    const strict = make({ maxErrors: 3, maxMessageSize: 1 });
    const tooBig = 'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nhi\r\n.\r\nFROB\r\n';
    expect(codes(await session(strict, `EHLO c\r\n${tooBig.repeat(3)}`)).slice(-2)).toEqual([500, 421]);
  });

  test('hook refusals and 4xx count too', async () => {
    const p = make({ maxErrors: 3, validateRecipientHandler: () => false });
    const out = await feed(p, `${envelope()}RCPT TO:<c@y.test>\r\nRCPT TO:<d@y.test>\r\nNOOP\r\n`);
    expect(codes(out.text)).toEqual([250, 250, 550, 550, 550, 421]);
  });

  test('default 20 commands before HELO → 421 on the 21st', async () => {
    const p = make();
    const out = await feed(p, 'NOOP\r\n'.repeat(25));
    expect(codes(out.text)).toEqual([...Array(20).fill(250), 421]);
    expect(finals(out.text)[20]).toBe('421 4.7.0 mx.test Error: too many errors');
    expect(out.actions).toEqual(['close']);
  });

  test('custom maxCommandsBeforeHelo; HELO resets nothing but is not counted', async () => {
    expect(
      codes(await session(make({ maxCommandsBeforeHelo: 2 }), 'NOOP\r\nRSET\r\nHELO c\r\nNOOP\r\nNOOP\r\n')),
    ).toEqual([250, 250, 250, 250, 250]);
    expect(codes(await session(make({ maxCommandsBeforeHelo: 2 }), 'NOOP\r\nRSET\r\nNOOP\r\n'))).toEqual([
      250, 250, 421,
    ]);
    expect(codes(await session(make({ maxCommandsBeforeHelo: 0 }), 'NOOP\r\n'.repeat(40)))).toHaveLength(40);
  });

  test('maxAuthFailures custom', async () => {
    const p = make({ maxAuthFailures: 1, lookupPassword: () => 'pw' });
    const out = await feed(p, `EHLO c\r\nAUTH PLAIN ${plain('u', 'x')}\r\nNOOP\r\n`);
    expect(codes(out.text)).toEqual([250, 535, 421]);
    expect(out.actions).toEqual(['close']);
  });
});

describe('HTTP on the SMTP port', () => {
  test('an HTTP request line → 221 2.7.0 and close', async () => {
    const out = await feed(make(), 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(finals(out.text)).toEqual(['221 2.7.0 Error: HTTP request on the SMTP port. Goodbye.']);
    expect(out.actions).toEqual(['close']);
  });
});

describe('MAIL / RCPT parameters (SIZE, 8BITMIME, SMTPUTF8, DSN, AUTH=)', () => {
  async function mail(params: string, options = {}): Promise<string> {
    return finals(await session(make(options), `EHLO c\r\nMAIL FROM:<a@x.test> ${params}\r\n`))[1];
  }

  test.each([
    ['SIZE=1000', '250 2.1.0 Sender a@x.test ok'],
    ['SIZE=30000000', '552 5.3.4 Error: message size exceeds fixed maximum message size'],
    ['SIZE=abc', '501 5.5.4 Bad SIZE parameter value'],
    ['SIZE', '501 5.5.4 Bad SIZE parameter value'],
    ['BODY=8BITMIME', '250 2.1.0 Sender a@x.test ok'],
    ['body=7bit', '250 2.1.0 Sender a@x.test ok'],
    ['BODY=9BIT', '501 5.5.4 Bad BODY parameter value'],
    ['SMTPUTF8', '250 2.1.0 Sender a@x.test ok'],
    ['SMTPUTF8=yes', '501 5.5.4 Bad SMTPUTF8 parameter value'],
    ['RET=HDRS ENVID=abc+2Bdef', '250 2.1.0 Sender a@x.test ok'],
    ['RET=ALL', '501 5.5.4 Bad RET parameter value'],
    ['RET', '501 5.5.4 Bad RET parameter value'],
    ['BODY', '501 5.5.4 Bad BODY parameter value'],
    ['ENVID', '501 5.5.4 Bad ENVID parameter value'],
    ['ENVID=a+zz', '501 5.5.4 Bad ENVID parameter value'],
    ['AUTH=<>', '250 2.1.0 Sender a@x.test ok'],
    ['AUTH', '501 5.5.4 Bad AUTH parameter value'],
    ['SIZE=1 SIZE=2', '501 5.5.4 Syntax error (bad parameter SIZE)'],
    ['SIZE=', '501 5.5.4 Syntax error (bad parameter SIZE)'],
    ['REQUIRETLS', '555 5.5.4 Unsupported parameter REQUIRETLS'],
  ])('MAIL %s → %s', async (params, expected) => {
    expect(await mail(params)).toBe(expected);
  });

  test('SIZE without a limit is advertised bare and takes any size', async () => {
    expect(lines(await session(make({ maxMessageSize: 0 }), 'EHLO c\r\n'))).toContain('250-SIZE');
    expect(await mail('SIZE=999999999999', { maxMessageSize: 0 })).toBe('250 2.1.0 Sender a@x.test ok');
  });

  test('the envelope records what the parameters say', async () => {
    const p = make();
    await session(
      p,
      'EHLO c\r\nMAIL FROM:<a@x.test> RET=full ENVID=x+2By SMTPUTF8 SIZE=12\r\n' +
        'RCPT TO:<b@y.test> NOTIFY=success,failure ORCPT=rfc822;b+40y.test\r\n',
    );
    expect(p.envelope).toMatchObject({
      smtputf8: true,
      declaredSize: 12,
      dsn: { ret: 'FULL', envid: 'x+y' },
      rcptTo: [
        {
          address: 'b@y.test',
          dsn: { notify: ['SUCCESS', 'FAILURE'], orcpt: { addrType: 'RFC822', address: 'b@y.test' } },
        },
      ],
    });
  });

  test.each([
    ['NOTIFY=NEVER,SUCCESS', '501 5.5.4 Bad NOTIFY parameter value'],
    ['NOTIFY=SUCCESS,SUCCESS', '501 5.5.4 Bad NOTIFY parameter value'],
    ['NOTIFY', '501 5.5.4 Bad NOTIFY parameter value'],
    ['NOTIFY=DELAY', '250 2.1.5 Recipient b@y.test ok'],
    ['ORCPT=rfc822', '501 5.5.4 Bad ORCPT parameter value'],
    ['ORCPT=;a@b', '501 5.5.4 Bad ORCPT parameter value'],
    ['ORCPT=rfc822;', '501 5.5.4 Bad ORCPT parameter value'],
    ['ORCPT', '501 5.5.4 Bad ORCPT parameter value'],
    ['XYZ=1', '555 5.5.4 Unsupported parameter XYZ'],
  ])('RCPT %s → %s', async (params, expected) => {
    const out = await session(make(), `EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test> ${params}\r\n`);
    expect(finals(out)[2]).toBe(expected);
  });

  test('BODY=BINARYMIME needs BDAT: DATA → 503', async () => {
    const out = await session(
      make(),
      'EHLO c\r\nMAIL FROM:<a@x.test> BODY=BINARYMIME\r\nRCPT TO:<b@y.test>\r\nDATA\r\n',
    );
    expect(finals(out)[3]).toBe('503 5.5.1 Error: BODY=BINARYMIME requires BDAT');
    expect(await mail('BODY=BINARYMIME', { disabledExtensions: ['BINARYMIME'] })).toBe(
      '501 5.5.4 Bad BODY parameter value',
    );
  });
});

describe('REQUIRETLS (opt-in)', () => {
  test('advertised and accepted only under TLS', async () => {
    const p = make({ extensions: [requireTlsExtension], tlsHandler: () => true });
    const before = await session(p, 'EHLO c\r\nMAIL FROM:<a@x.test> REQUIRETLS\r\n');
    expect(parseReplies(before)[0].lines.join()).not.toContain('REQUIRETLS');
    expect(finals(before)[1]).toBe('530 5.7.10 Error: REQUIRETLS needs a TLS session');
    await feed(p, 'STARTTLS\r\n');
    p.tlsStarted({});
    const after = await session(p, 'EHLO c\r\nMAIL FROM:<a@x.test> REQUIRETLS\r\n');
    expect(lines(after)).toContain('250 REQUIRETLS');
    expect(finals(after)[1]).toBe('250 2.1.0 Sender a@x.test ok');
    expect(p.envelope?.requireTls).toBe(true);
    const p2 = make({ extensions: [requireTlsExtension], secure: true });
    expect(finals(await session(p2, 'EHLO c\r\nMAIL FROM:<a@x.test> REQUIRETLS=1\r\n'))[1]).toBe(
      '501 5.5.4 Bad REQUIRETLS parameter value',
    );
  });
});

describe('CHUNKING (BDAT)', () => {
  test('chunks make one message; each non-last chunk is acknowledged', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await session(p, [`${envelope()}BDAT 5\r\nhel`, 'loBDAT 8 LAST\r\n', ' world\r\nNOOP\r\n']);
    expect(finals(out).slice(3)).toEqual(['250 2.0.0 5 octets received', '250 2.0.0 Ok: queued as Q1', OK]);
    expect(rec.messages[0].body.toString()).toBe('hello world\r\n');
    expect(rec.messages[0].envelope.transfer).toBe('BDAT');
  });

  test('BINARYMIME with BDAT; bytes are not dot-unstuffed', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const payload = '..\r\n.\r\n\0\xff';
    const out = await session(p, [
      'EHLO c\r\nMAIL FROM:<a@x.test> BODY=BINARYMIME\r\nRCPT TO:<b@y.test>\r\n',
      Buffer.concat([Buffer.from(`BDAT ${payload.length} LAST\r\n`), Buffer.from(payload, 'latin1')]),
    ]);
    expect(codes(out)).toEqual([250, 250, 250, 250]);
    expect(rec.messages[0].body.toString('latin1')).toBe(payload);
  });

  test('a refused BDAT still consumes its chunk', async () => {
    const out = await session(make(), 'EHLO c\r\nBDAT 6\r\nNOOP\r\nNOOP\r\n');
    expect(finals(out).slice(1)).toEqual(['503 5.5.1 Error: need MAIL command', OK]);
    const out2 = await session(make(), 'EHLO c\r\nMAIL FROM:<a@x.test>\r\nBDAT 6 LAST\r\nNOOP\r\nNOOP\r\n');
    expect(finals(out2).slice(2)).toEqual(['503 5.5.1 Error: need RCPT command', OK]);
  });

  test('bad BDAT arguments → 501, and like any refused BDAT they fail the transaction', async () => {
    const again = 'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n';
    const out = await session(make(), `${envelope()}BDAT x\r\nBDAT 1 FIRST\r\n${again}BDAT 1 FIRST\r\n`);
    expect(finals(out).slice(3)).toEqual([
      '501 5.5.4 Syntax error (BDAT size [LAST])',
      '503 5.5.1 Error: need MAIL command',
      '250 2.1.0 Sender a@x.test ok',
      '250 2.1.5 Recipient b@y.test ok',
      '501 5.5.4 Syntax error (BDAT size [LAST])',
    ]);
  });

  test('RSET between chunks abandons the message', async () => {
    let error: unknown;
    const p = make({
      messageReceivedHandler: async (message) => {
        try {
          await message.body.buffer();
        } catch (e) {
          error = e;
        }
      },
    });
    const out = await session(p, `${envelope()}BDAT 3\r\nabcRSET\r\nMAIL FROM:<a@x.test>\r\n`);
    expect(finals(out).slice(3)).toEqual(['250 2.0.0 3 octets received', OK, '250 2.1.0 Sender a@x.test ok']);
    await sleep(1);
    expect(String(error)).toContain('transaction reset');
  });

  test('a chunk over the size limit fails the transaction', async () => {
    const p = make({ maxMessageSize: 10 });
    const out = await session(p, `${envelope()}BDAT 20\r\n${'x'.repeat(20)}NOOP\r\n`);
    expect(finals(out).slice(3)).toEqual([
      '552 5.3.4 Error: message size exceeds fixed maximum message size',
      OK,
    ]);
    expect(p.state).toBe(State.Mail);
  });

  test('without CHUNKING, BDAT → 502', async () => {
    const out = await session(make({ disabledExtensions: ['CHUNKING'] }), `${envelope()}BDAT 1 LAST\r\n`);
    expect(finals(out)[3]).toBe('502 5.5.1 Error: command not implemented');
  });
});

describe('LMTP', () => {
  test('LHLO, and one reply per recipient after the text', async () => {
    const p = new Protocol({
      hostname: 'mx.test',
      lmtp: true,
      messageReceivedHandler: () => ['id1', new Reply(452, 'full', '4.2.2')],
    });
    expect(p.start().toString()).toBe('220 mx.test LMTP smtp-session-stream');
    const out = await session(
      p,
      `${envelope('a@x.test', ['b@y.test', 'c@y.test'], 'LHLO c')}DATA\r\nx\r\n.\r\nHELO c\r\n`,
    );
    expect(finals(out).slice(4)).toEqual([
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.1.5 <b@y.test> Ok: queued as id1',
      '452 4.2.2 full',
      '500 5.5.2 Error: command not recognized',
    ]);
  });

  test('a single answer applies to every recipient', async () => {
    const p = new Protocol({ hostname: 'mx.test', lmtp: true, messageReceivedHandler: () => 'Q' });
    p.start();
    const out = await session(
      p,
      `${envelope('a@x.test', ['b@y.test', 'c@y.test'], 'LHLO c')}DATA\r\nx\r\n.\r\n`,
    );
    expect(finals(out).slice(5)).toEqual([
      '250 2.1.5 <b@y.test> Ok: queued as Q',
      '250 2.1.5 <c@y.test> Ok: queued as Q',
    ]);
  });
});

describe('malformed MAIL and RCPT commands', () => {
  test('a command without `FROM:` / `TO:` is 501 5.5.4 Syntax; a bad address is 5.1.7 / 5.1.3', async () => {
    const out = await session(
      make(),
      'EHLO c\r\nMAIL\r\nMAIL TO:<a@x.test>\r\nMAIL FROM:\r\nMAIL FROM:<a@@x>\r\n' +
        'MAIL FROM:<a@x.test>\r\nRCPT\r\nRCPT FROM:<b@y.test>\r\nRCPT TO:<b@@y>\r\n',
    );
    expect(finals(out).slice(1)).toEqual([
      '501 5.5.4 Syntax: MAIL FROM:<address>',
      '501 5.5.4 Syntax: MAIL FROM:<address>',
      '501 5.5.4 Syntax: MAIL FROM:<address>',
      '501 5.1.7 Bad sender address syntax',
      '250 2.1.0 Sender a@x.test ok',
      '501 5.5.4 Syntax: RCPT TO:<address>',
      '501 5.5.4 Syntax: RCPT TO:<address>',
      '501 5.1.3 Bad recipient address syntax',
    ]);
  });

  test('before start() a command is told the session has not started', async () => {
    const p = new Protocol({ hostname: 'mx.test' });
    p.receive(Buffer.from('EHLO c\r\n'));
    expect(p.run().output?.toString()).toBe(
      '503 5.5.1 Error: session not started (the server has not greeted yet)\r\n',
    );
  });
});

describe('MailHog-shaped API', () => {
  test('parse(): one command per call, the rest handed back (string)', () => {
    const p = make();
    let r = p.parse('EHLO c\r\nMAIL FROM:<a@x.test>\r\nRC');
    expect(r.reply?.code).toBe(250);
    expect(r.replies).toHaveLength(1);
    expect(r.rest).toBe('MAIL FROM:<a@x.test>\r\nRC');
    r = p.parse(r.rest);
    expect(r.reply?.toString()).toBe('250 2.1.0 Sender a@x.test ok');
    expect(r.rest).toBe('RC');
    r = p.parse(`${r.rest}PT TO:<b@y.test>\r\nDATA\r\n..one\r\ntwo\r\n.\r\nQUIT\r\n`);
    expect(r.reply?.toString()).toBe('250 2.1.5 Recipient b@y.test ok');
    r = p.parse(r.rest);
    expect(r.reply?.code).toBe(354);
    r = p.parse(r.rest);
    expect(r.reply?.toString()).toMatch(/^250 2\.0\.0 Ok: queued as /);
    expect(r.rest).toBe('QUIT\r\n');
    r = p.parse(r.rest);
    expect(r.reply?.toString()).toBe('221 2.0.0 Bye');
    expect(r.rest).toBe('');
    expect(p.parse('NOOP\r\n').reply).toBeNull();
  });

  test('parse(): Buffers, a partial line, and a pending hook with flush()', async () => {
    const p = make({ validateSenderHandler: async () => (await sleep(2), true) });
    let r = p.parse(Buffer.from('EHLO c\r\nMAIL FROM:<a@x.test>\r\nNOOP\r\n'));
    expect(Buffer.isBuffer(r.rest)).toBe(true);
    r = p.parse(r.rest);
    expect(r.reply).toBeNull();
    expect(r.pending).not.toBeNull();
    expect(r.rest.toString()).toBe('NOOP\r\n');
    const replies = await p.flush();
    expect(replies.map((x) => x.toString())).toEqual(['250 2.1.0 Sender a@x.test ok']);
    expect(p.parse(r.rest).reply?.toString()).toBe(OK);
    expect(p.parse(Buffer.from('NO')).rest.toString()).toBe('NO');
  });

  test('processCommand(): trims CR/LF runs; returns a Reply, or a Promise when a hook is async', async () => {
    const p = make({ validateRecipientHandler: async () => true });
    expect((p.processCommand('\n\rHELO x\r\n\n') as Reply).toString()).toBe('250 mx.test Hello x');
    expect((p.processCommand(Buffer.from('MAIL FROM:<a@x.test>')) as Reply).code).toBe(250);
    const pending = p.processCommand('RCPT TO:<b@y.test>');
    expect(pending).toBeInstanceOf(Promise);
    expect((await pending)?.toString()).toBe('250 2.1.5 Recipient b@y.test ok');
    expect((p.processCommand('HELO x\ry') as Reply).toString()).toBe(
      '500 5.5.2 Error: command contains invalid characters',
    );
  });

  test('processCommand(Buffer) checks the bytes themselves: bad UTF-8 is refused, not turned into U+FFFD', () => {
    const p = make();
    p.processCommand('EHLO c');
    const line = Buffer.concat([
      Buffer.from('MAIL FROM:<'),
      Buffer.from([0xe9]),
      Buffer.from('@b.test> SMTPUTF8\r\n'),
    ]);
    expect((p.processCommand(line) as Reply).toString()).toBe(
      '500 5.5.2 Error: command contains invalid characters',
    );
    const utf8 = Buffer.from('\r\nMAIL FROM:<é@b.test> SMTPUTF8\r\n', 'utf8');
    expect((p.processCommand(utf8) as Reply).toString()).toBe('250 2.1.0 Sender é@b.test ok');
  });

  test('processData(): text in any chunks; the reply once the final dot is seen', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    expect(() => p.processData('x')).toThrow('processData() outside DATA');
    for (const line of ['EHLO c', 'MAIL FROM:<a@x.test>', 'RCPT TO:<b@y.test>']) p.processCommand(line);
    expect((p.processCommand('DATA') as Reply).code).toBe(354);
    expect(await p.processData('Subject: x\r\n\r\n.')).toBeNull();
    expect(await p.processData('.dots\r\n')).toBeNull();
    const answer = await p.processData(Buffer.from('.\r\n'));
    expect(answer?.toString()).toBe('250 2.0.0 Ok: queued as Q1');
    expect(rec.messages[0].body.toString()).toBe('Subject: x\r\n\r\n.dots\r\n');
  });
});

describe('driver API', () => {
  test('closeWith(): 421, close, and a message in progress is abandoned', async () => {
    let signal: AbortSignal | undefined;
    const p = make({
      messageReceivedHandler: (message) => {
        signal = message.signal;
        return message.body.buffer().then(() => 'never');
      },
    });
    await session(p, `${envelope()}DATA\r\npart`);
    expect(p.closeWith('Timeout').toString()).toBe('421 4.4.2 mx.test Error: timeout exceeded\r\n');
    expect(p.state).toBe(State.Done);
    expect(signal?.aborted).toBe(true);
    const r = await drain(p);
    expect(r).toEqual({ text: '', actions: ['close'] });
    expect(p.closeWith('ShuttingDown').toString()).toBe('421 4.3.2 mx.test Service shutting down\r\n');
    expect(make().closeWith('TooManyConnections').toString()).toBe(
      '421 4.7.0 mx.test Error: too many connections, try again later\r\n',
    );
  });

  test('closeWith() while a hook is pending: its late answer changes nothing', async () => {
    let release!: (value: boolean) => void;
    const p = make({ validateSenderHandler: () => new Promise<boolean>((resolve) => (release = resolve)) });
    p.receive(Buffer.from('EHLO c\r\nMAIL FROM:<a@x.test>\r\n'));
    const r = p.run();
    expect(r.pending).not.toBeNull();
    p.closeWith('Timeout');
    release(true);
    await r.pending;
    expect(p.state).toBe(State.Done);
    expect(p.run().output).toBeNull();
    p.receive(Buffer.from('RCPT TO:<b@y.test>\r\n'));
    expect(p.run().output).toBeNull();
  });

  test('a late message answer after closeWith() is not sent and not counted', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const p = make({
      messageReceivedHandler: async (message: IncomingMessage) => {
        await message.body.buffer().catch(() => undefined);
        await gate;
        return 'late';
      },
    });
    p.receive(Buffer.from(`${envelope()}DATA\r\nx\r\n.\r\n`));
    const r = p.run();
    expect(r.pending).not.toBeNull();
    p.closeWith('Timeout');
    release();
    await r.pending;
    expect(p.run().output).toBeNull();
    expect(p.state).toBe(State.Done);
    expect(p.session.transactionCount).toBe(0);
  });

  test('shutdown(): now when idle, after the message in progress otherwise', async () => {
    const idle = make();
    idle.shutdown();
    expect(await feed(idle, [])).toEqual({ text: '', actions: [] });
    const r = idle.run();
    expect(r.output?.toString()).toBe('421 4.3.2 mx.test Service shutting down\r\n');
    expect(r.action).toBe('close');
    idle.shutdown(); // already done: nothing more
    expect(idle.run().output).toBeNull();

    const busy = make({ messageReceivedHandler: async (m) => (await m.body.buffer(), 'Q') });
    await session(busy, `${envelope()}DATA\r\nsome`);
    busy.shutdown();
    const out = await feed(busy, ' text\r\n.\r\nNOOP\r\n');
    expect(finals(out.text)).toEqual([
      '250 2.0.0 Ok: queued as Q',
      '421 4.3.2 mx.test Service shutting down',
    ]);
    expect(out.actions).toEqual(['close']);
  });

  test('shutdown() while a MAIL hook is pending closes right after its reply', async () => {
    const p = make({ validateSenderHandler: async () => (await sleep(2), true) });
    p.receive(Buffer.from('EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n'));
    const first = p.run();
    expect(first.pending).not.toBeNull();
    p.shutdown();
    const rest = await drain(p);
    expect(finals(rest.text)).toEqual([
      '250 2.1.0 Sender a@x.test ok',
      '421 4.3.2 mx.test Service shutting down',
    ]);
    expect(rest.actions).toEqual(['close']);
  });

  test('abort(): the message hook sees the signal and a failing body', async () => {
    let error: unknown;
    let signal: AbortSignal | undefined;
    const p = make({
      messageReceivedHandler: async (message) => {
        signal = message.signal;
        try {
          await message.body.buffer();
        } catch (e) {
          error = e;
        }
      },
    });
    await session(p, `${envelope()}DATA\r\nhalf`);
    p.abort(new Error('gone'));
    await sleep(1);
    expect(p.state).toBe(State.Done);
    expect(signal?.aborted).toBe(true);
    expect((error as Error).message).toBe('gone');
    expect(p.bufferedInput).toBe(0);
  });

  test('busy and bufferedInput follow a pending hook', async () => {
    const p = make({ validateSenderHandler: async () => (await sleep(1), true) });
    p.receive(Buffer.from('EHLO c\r\nMAIL FROM:<a@x.test>\r\nNOOP\r\n'));
    const r = p.run();
    expect(p.busy).toBe(true);
    expect(p.bufferedInput).toBe(6);
    await r.pending;
    expect(p.busy).toBe(false);
    expect(finals((await drain(p)).text)).toEqual(['250 2.1.0 Sender a@x.test ok', OK]);
    expect(p.bufferedInput).toBe(0);
  });

  test('commands before start() get a 503', async () => {
    const p = new Protocol({ hostname: 'mx.test' });
    p.receive(Buffer.from('HELO c\r\n'));
    expect(codes(p.run().output!.toString())).toEqual([503]);
    expect(p.state).toBe(State.Invalid);
  });

  test('session facts from the options reach the hooks', async () => {
    let seen: unknown;
    const p = make({
      remoteAddress: '192.0.2.9',
      remotePort: 40000,
      localAddress: '192.0.2.1',
      localPort: 25,
      validateSenderHandler: (_from, info) => void (seen = { ...info }),
    });
    await session(p, 'EHLO c\r\nMAIL FROM:<a@x.test>\r\n');
    expect(seen).toMatchObject({
      hostname: 'mx.test',
      helo: 'c',
      heloVerb: 'EHLO',
      remoteAddress: '192.0.2.9',
      remotePort: 40000,
      localAddress: '192.0.2.1',
      localPort: 25,
      secure: false,
    });
  });

  test('shutdown() while a hook is pending that then fails: 451, then 421', async () => {
    const p = make({ validateSenderHandler: () => Promise.reject('no reason') });
    p.receive(Buffer.from('EHLO c\r\nMAIL FROM:<a@x.test>\r\n'));
    p.run();
    p.shutdown();
    const rest = await drain(p);
    expect(finals(rest.text)).toEqual([
      '451 4.3.0 Error: internal error, try again later',
      '421 4.3.2 mx.test Service shutting down',
    ]);
    expect(rest.actions).toEqual(['close']);
  });

  test('abort() without a reason', async () => {
    let error: unknown;
    const p = make({
      messageReceivedHandler: async (m) => {
        await m.body.buffer().catch((e: unknown) => void (error = e));
      },
    });
    await session(p, `${envelope()}DATA\r\nx`);
    p.abort();
    await sleep(1);
    expect((error as Error).message).toBe('client disconnected');
    expect(p.run()).toEqual({ output: null, pending: null, action: null, more: false });
  });

  test('parse() while a hook is pending only queues: the rest comes back whole', async () => {
    const p = make({ validateSenderHandler: async () => (await sleep(1), true) });
    p.parse('EHLO c\r\n');
    let r = p.parse('MAIL FROM:<a@x.test>\r\n');
    expect(r.pending).not.toBeNull();
    r = p.parse('NOOP\r\n');
    expect(r.reply).toBeNull();
    expect(r.rest).toBe('NOOP\r\n');
    await p.flush();
    expect(p.parse(r.rest).reply?.toString()).toBe(OK);
  });

  test('a message hook rejecting with a non-Error → 451, logged as text', async () => {
    const log: string[] = [];
    const p = make({ messageReceivedHandler: () => Promise.reject('quota'), logHandler: (m) => log.push(m) });
    expect(finals(await session(p, `${envelope()}DATA\r\nx\r\n.\r\n`))[4]).toBe(
      '451 4.3.0 Error: unable to store message, try again later',
    );
    expect(log).toContain('message hook failed: quota');
  });

  test('chunks after a size failure are dropped; one refusal at the end', async () => {
    const p = make({ maxMessageSize: 50 });
    const out = await session(p, [
      `${envelope()}DATA\r\n`,
      'a'.repeat(40),
      'b'.repeat(40),
      'c'.repeat(40),
      '\r\n.\r\nNOOP\r\n',
    ]);
    expect(finals(out).slice(4)).toEqual([
      '552 5.3.4 Error: message size exceeds fixed maximum message size',
      OK,
    ]);
  });

  test('UTF-8 only where addresses may hold it: EHLO → 500, VRFY → 252', async () => {
    const out = await session(make(), 'EHLO bücher.example\r\nVRFY jörg\r\n');
    expect(finals(out)).toEqual([
      '500 5.5.2 Error: command contains invalid characters',
      '252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery',
    ]);
  });

  test('an extension may advertise several EHLO lines', async () => {
    const out = await session(
      make({ extensions: [{ name: 'XMULTI', ehlo: () => ['XONE', 'XTWO 2'] }] }),
      'EHLO c\r\n',
    );
    expect(lines(out).slice(-2)).toEqual(['250-XONE', '250 XTWO 2']);
  });

  test('b64 helper sanity', () => {
    expect(b64('a')).toBe('YQ==');
  });
});
