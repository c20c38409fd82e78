/**
 * One named test per MailHog defect the core fixes (see the reference's §9: S1–S4, D5–D22).
 * Each test fails against MailHog's behaviour as the reference describes it.
 */
import { createHmac } from 'node:crypto';
import type { Command } from '../../lib/protocol/command';
import type { Extension } from '../../lib/protocol/extension';
import { Reply } from '../../lib/protocol/reply';
import { reply } from '../../lib/protocol/replies';
import { State } from '../../lib/protocol/state';
import type { AuthCredentials } from '../../lib/protocol/types';
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
} from './helpers';

describe('S1: a whole session written at once, before the greeting was read', () => {
  const script =
    'EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n';

  test('every pipelined command is answered, in order, from one chunk', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await feed(p, script);
    expect(codes(out.text)).toEqual([250, 250, 250, 354, 250, 221]);
    expect(finals(out.text).slice(1)).toEqual([
      '250 2.1.0 Sender a@x.test ok',
      '250 2.1.5 Recipient b@y.test ok',
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.0.0 Ok: queued as Q1',
      '221 2.0.0 Bye',
    ]);
    expect(out.actions).toEqual(['close']);
    expect(rec.messages[0].body.toString()).toBe('Subject: x\r\n\r\nbody\r\n');
  });

  test('the same session byte by byte gives the same replies', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await session(
      p,
      [...Buffer.from(script)].map((byte) => Buffer.from([byte])),
    );
    expect(codes(out)).toEqual([250, 250, 250, 354, 250, 221]);
    expect(rec.messages[0].body.toString()).toBe('Subject: x\r\n\r\nbody\r\n');
  });

  test('command lines ended by a bare LF are accepted (nc without -C, heredocs)', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await session(
      p,
      'EHLO c.test\nMAIL FROM:<a@x.test>\nRCPT TO:<b@y.test>\nDATA\nhi\r\n.\r\nQUIT\n',
    );
    expect(codes(out)).toEqual([250, 250, 250, 354, 250, 221]);
    expect(rec.messages[0].body.toString()).toBe('hi\r\n');
  });

  test('in DATA, LF.LF does not end the text (SMTP smuggling); only CRLF.CRLF does', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await session(p, `${envelope()}DATA\r\na\n.\nMAIL FROM:<evil@x>\n.\r\nb\r\n.\r\n`);
    expect(codes(out)).toEqual([250, 250, 250, 354, 250]);
    expect(rec.messages).toHaveLength(1);
    expect(rec.messages[0].body.toString()).toBe('a\n.\nMAIL FROM:<evil@x>\n.\r\nb\r\n');
  });

  test('a partial trailing line waits for the rest instead of spinning', async () => {
    const p = make();
    expect(await session(p, 'EHLO c.test\r\nNO')).toMatch(/^250-/);
    expect(p.bufferedInput).toBe(2);
    expect(await session(p, 'OP\r\n')).toBe('250 2.0.0 Ok\r\n');
  });
});

describe('S2: the null reverse-path', () => {
  test('MAIL FROM:<> is accepted', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await session(p, 'EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n');
    expect(finals(out)[1]).toBe('250 2.1.0 Sender <> ok');
    expect(rec.messages[0].envelope.mailFrom.address).toBe('');
  });

  test('RCPT TO:<> stays invalid (501)', async () => {
    const out = await session(make(), 'EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<>\r\n');
    expect(finals(out)[2]).toBe('501 5.1.3 Bad recipient address syntax');
  });
});

describe('S3: RSET keeps HELO', () => {
  test('RSET aborts the transaction only; the identity survives', async () => {
    const p = make();
    const out = await session(p, `${envelope()}RSET\r\nMAIL FROM:<a@x.test>\r\n`);
    expect(codes(out)).toEqual([250, 250, 250, 250, 250]);
    expect(p.session.helo).toBe('c.test');
    expect(p.state).toBe(State.Rcpt);
  });

  test('RSET before HELO does not skip the greeting', async () => {
    const p = make();
    const out = await session(p, 'RSET\r\nMAIL FROM:<a@x.test>\r\n');
    expect(finals(out)).toEqual(['250 2.0.0 Ok', '503 5.5.1 Error: send HELO/EHLO first']);
    expect(p.state).toBe(State.Establish);
  });

  test('the second message of a session still has the HELO name', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    await session(
      p,
      `${envelope()}DATA\r\none\r\n.\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\ntwo\r\n.\r\n`,
    );
    expect(rec.messages.map((m) => m.session.helo)).toEqual(['c.test', 'c.test']);
    expect(rec.messages.map((m) => m.session.transactionCount)).toEqual([0, 1]);
  });
});

describe('S4: extension hooks', () => {
  const seen: string[] = [];
  const xtest: Extension = {
    name: 'XTEST',
    ehlo: () => 'XTEST on',
    verbs: {
      XPING: { handle: (command) => new Reply(250, `pong ${command.args}`, '2.0.0') },
    },
    mailParameters: {
      XPRIO(value) {
        if (value !== 'HIGH' && value !== 'LOW') return reply('BadParameterValue', 'XPRIO');
        seen.push(value);
      },
    },
  };

  test('an extension adds an EHLO keyword, a verb and a MAIL parameter', async () => {
    const p = make({ extensions: [xtest] });
    const out = await session(p, 'EHLO c\r\nXPING 1\r\nMAIL FROM:<a@x.test> XPRIO=HIGH\r\n');
    expect(lines(out)).toContain('250 XTEST on');
    expect(finals(out).slice(1)).toEqual(['250 2.0.0 pong 1', '250 2.1.0 Sender a@x.test ok']);
    expect(p.envelope?.mailFrom.params).toEqual({ XPRIO: 'HIGH' });
    expect(seen).toEqual(['HIGH']);
    expect(
      finals(await session(make({ extensions: [xtest] }), 'EHLO c\r\nMAIL FROM:<a@x.test> XPRIO=x\r\n'))[1],
    ).toBe('501 5.5.4 Bad XPRIO parameter value');
  });

  test('a parameter nobody registered → 555', async () => {
    const out = await session(make(), 'EHLO c\r\nMAIL FROM:<a@x.test> XPRIO=HIGH\r\n');
    expect(finals(out)[1]).toBe('555 5.5.4 Unsupported parameter XPRIO');
  });

  test('SMTPUTF8 is advertised; UTF-8 addresses need the MAIL parameter', async () => {
    const out = await session(
      make(),
      'EHLO c\r\nMAIL FROM:<ü@x.test>\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<ü@y.test>\r\nRSET\r\n' +
        'MAIL FROM:<ü@x.test> SMTPUTF8\r\nRCPT TO:<ü@bücher.test>\r\n',
    );
    expect(lines(out)).toContain('250-SMTPUTF8');
    expect(finals(out).slice(1)).toEqual([
      '553 5.6.7 Error: non-ASCII address requires the SMTPUTF8 parameter',
      '250 2.1.0 Sender a@x.test ok',
      '553 5.6.7 Error: non-ASCII address requires the SMTPUTF8 parameter',
      '250 2.0.0 Ok',
      '250 2.1.0 Sender ü@x.test ok',
      '250 2.1.5 Recipient ü@bücher.test ok',
    ]);
  });

  test('a built-in extension can be switched off', async () => {
    const out = await session(make({ disabledExtensions: ['chunking', 'SMTPUTF8'] }), 'EHLO c\r\n');
    expect(lines(out)).not.toContain('250-CHUNKING');
    expect(lines(out)).not.toContain('250-SMTPUTF8');
    expect(lines(out)).toContain('250-8BITMIME');
  });
});

describe('D5–D7: message text', () => {
  async function body(text: string): Promise<string> {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await session(p, `${envelope()}DATA\r\n${text}QUIT\r\n`);
    expect(codes(out)).toEqual([250, 250, 250, 354, 250, 221]);
    return rec.messages[0].body.toString('latin1');
  }

  test('D5: an empty body (a dot right after 354) ends the data; QUIT is a command again', async () => {
    expect(await body('.\r\n')).toBe('');
  });

  test('D6: a leading dot is removed from the first line too', async () => {
    expect(await body('..first\r\nmid\r\n..second\r\n...third\r\n.\r\n')).toBe(
      '.first\r\nmid\r\n.second\r\n..third\r\n',
    );
  });

  test('D7: the CRLF ending the last line is kept', async () => {
    expect(await body('Subject: x\r\n\r\nbody\r\n.\r\n')).toBe('Subject: x\r\n\r\nbody\r\n');
  });
});

describe('D8: HELO/EHLO in a transaction', () => {
  test('clears the envelope, so recipients do not leak into the next transaction', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await session(
      p,
      `${envelope('a@x.test', ['first@y.test'])}HELO again\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<second@y.test>\r\nDATA\r\nx\r\n.\r\n`,
    );
    expect(codes(out)).toEqual([250, 250, 250, 250, 250, 250, 354, 250]);
    expect(rec.messages[0].envelope.rcptTo.map((r) => r.address)).toEqual(['second@y.test']);
    expect(rec.messages[0].session.helo).toBe('again');
  });
});

describe('D9: DATA with zero recipients', () => {
  test('no RCPT at all → 503; every RCPT refused → 554', async () => {
    expect(finals(await session(make(), 'EHLO c\r\nMAIL FROM:<a@x.test>\r\nDATA\r\n'))[2]).toBe(
      '503 5.5.1 Error: need RCPT command',
    );
    const p = make({ maximumRecipients: 0 });
    const out = await session(p, `${envelope()}DATA\r\n`);
    expect(finals(out).slice(2)).toEqual([
      '452 4.5.3 Error: too many recipients',
      '554 5.5.1 Error: no valid recipients',
    ]);
  });
});

describe('D10: reply codes', () => {
  test('sequence 503, syntax 501, too many recipients 452, storage failure 451', async () => {
    const p = make({
      maximumRecipients: 1,
      messageReceivedHandler: () => {
        throw new Error('disk full');
      },
    });
    const out = await session(
      p,
      'MAIL FROM:<a@x.test>\r\nEHLO c\r\nRCPT TO:<b@y.test>\r\nMAIL FROM:a b\r\nMAIL FROM:<a@x.test>\r\n' +
        'AUTH PLAIN\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:b\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\nx\r\n.\r\n',
    );
    expect(codes(out)).toEqual([503, 250, 503, 501, 250, 503, 503, 501, 250, 452, 354, 451]);
    expect(finals(out)[11]).toBe('451 4.3.0 Error: unable to store message, try again later');
  });
});

describe('D11: the EHLO/HELO reply names the server', () => {
  test('`250-<server> Hello <client>`, and no domain → 501', async () => {
    const out = await session(make(), 'EHLO client.example\r\nHELO client.example\r\nEHLO\r\n');
    const replies = parseReplies(out);
    expect(replies[0].lines[0]).toBe('250-mx.test Hello client.example');
    expect(replies[1].lines).toEqual(['250 mx.test Hello client.example']);
    expect(replies[2].lines).toEqual(['501 Syntax: EHLO hostname']); // no enhanced code (RFC 2034 §3)
  });

  test('the EHLO order keeps MailHog’s first keywords: PIPELINING, STARTTLS, AUTH', async () => {
    const out = await session(make({ tlsHandler: () => true, lookupPassword: () => 'x' }), 'EHLO c\r\n');
    expect(lines(out).slice(0, 5)).toEqual([
      '250-mx.test Hello c',
      '250-PIPELINING',
      '250-STARTTLS',
      '250-AUTH PLAIN LOGIN CRAM-MD5',
      '250-SIZE 26214400',
    ]);
  });
});

describe('D12: tokenizer and AUTH arguments', () => {
  const auth = () => make({ lookupPassword: (user) => (user === 'u' ? 'pw' : undefined) });

  test('a leading space and tab separators are fine', async () => {
    expect(codes(await session(make(), ' EHLO\tc\r\n\tMAIL\tFROM:<a@x.test>\r\n'))).toEqual([250, 250]);
  });

  test('mechanism names are case-insensitive', async () => {
    const out = await session(auth(), `EHLO c\r\nauth plain ${plain('u', 'pw')}\r\n`);
    expect(finals(out)[1]).toBe('235 2.7.0 Authentication successful');
  });

  test('AUTH LOGIN takes an initial response (the username)', async () => {
    const out = await session(auth(), `EHLO c\r\nAUTH LOGIN ${b64('u')}\r\n${b64('pw')}\r\n`);
    expect(finals(out).slice(1)).toEqual(['334 UGFzc3dvcmQ6', '235 2.7.0 Authentication successful']);
  });

  test('`=` is an empty initial response', async () => {
    const out = await session(auth(), 'EHLO c\r\nAUTH PLAIN =\r\nAUTH LOGIN =\r\n');
    expect(finals(out).slice(1)).toEqual([
      '501 5.5.4 Syntax error (PLAIN wants authzid NUL authcid NUL password)',
      '334 UGFzc3dvcmQ6',
    ]);
  });

  test('`*` cancels the exchange → 501', async () => {
    const p = auth();
    const out = await session(p, 'EHLO c\r\nAUTH LOGIN\r\n*\r\nNOOP\r\n');
    expect(finals(out).slice(1)).toEqual([
      '334 VXNlcm5hbWU6',
      '501 5.7.0 Authentication cancelled',
      '250 2.0.0 Ok',
    ]);
    expect(p.state).toBe(State.Mail);
  });
});

describe('D13: a SASL sub-mode', () => {
  test('NOOP during AUTH LOGIN is taken as the response, not run as a command', async () => {
    const seen: AuthCredentials[] = [];
    const commands: string[] = [];
    const p = make({
      validateAuthenticationHandler: (credentials) => {
        seen.push(credentials);
        return false;
      },
      smtpVerbFilter: (command) => void commands.push(command.verb),
    });
    const out = await session(p, 'EHLO c\r\nAUTH LOGIN\r\nNOOP\r\nRSET\r\n');
    expect(finals(out).slice(1)).toEqual([
      '334 VXNlcm5hbWU6',
      '334 UGFzc3dvcmQ6',
      '535 5.7.8 Authentication credentials invalid',
    ]);
    expect(seen[0].username).toBe(Buffer.from('NOOP', 'base64').toString('utf8'));
    expect(seen[0].password).toBe(Buffer.from('RSET', 'base64').toString('utf8'));
    expect(commands).toEqual(['EHLO', 'AUTH']);
  });

  test('AUTH CRAM-MD5 typed during AUTH PLAIN is not a new AUTH command', async () => {
    const p = make({ lookupPassword: () => 'pw' });
    const out = await session(p, 'EHLO c\r\nAUTH PLAIN\r\nAUTH CRAM-MD5\r\n');
    expect(finals(out).slice(1)).toEqual(['334 ', '501 5.5.2 Error: cannot decode response']);
    expect(p.session.user).toBeUndefined();
    expect(p.state).toBe(State.Mail);
  });
});

describe('D14: credential handling', () => {
  test('a fresh CRAM-MD5 challenge each time; the answer is checked against it', async () => {
    const p = make({ lookupPassword: (user) => (user === 'u' ? 'pw' : undefined) });
    const first = finals(await session(p, 'EHLO c\r\nAUTH CRAM-MD5\r\n'))[1];
    const challenge1 = Buffer.from(first.slice(4), 'base64').toString();
    expect(challenge1).toMatch(/^<[0-9a-f]{16}\.\d+@mx\.test>$/);
    const stale = createHmac('md5', 'pw').update(challenge1).digest('hex');
    expect(finals(await session(p, '*\r\nAUTH CRAM-MD5\r\n'))).toHaveLength(2);
    const p2 = make({ lookupPassword: () => 'pw' });
    const second = finals(await session(p2, 'EHLO c\r\nAUTH CRAM-MD5\r\n'))[1];
    expect(second).not.toBe(first);
    // Replaying the digest of the first challenge fails.
    expect(finals(await session(p2, `${b64(`u ${stale}`)}\r\n`))).toEqual([
      '535 5.7.8 Authentication credentials invalid',
    ]);
  });

  test('LOGIN credentials arrive decoded; PLAIN keeps the authzid', async () => {
    const seen: AuthCredentials[] = [];
    const hook = (credentials: AuthCredentials) => {
      seen.push(credentials);
      return true;
    };
    await session(
      make({ validateAuthenticationHandler: hook }),
      `EHLO c\r\nAUTH LOGIN\r\n${b64('jo')}\r\n${b64('sécret')}\r\n`,
    );
    await session(
      make({ validateAuthenticationHandler: hook }),
      `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw', 'admin')}\r\n`,
    );
    expect(
      seen.map(({ method, username, password, authzid }) => ({ method, username, password, authzid })),
    ).toEqual([
      { method: 'LOGIN', username: 'jo', password: 'sécret', authzid: undefined },
      { method: 'PLAIN', username: 'jo', password: 'pw', authzid: 'admin' },
    ]);
  });

  test('bad base64 → 501 instead of being ignored', async () => {
    const out = await session(make({ lookupPassword: () => 'pw' }), 'EHLO c\r\nAUTH PLAIN !!!!\r\n');
    expect(finals(out)[1]).toBe('501 5.5.2 Error: cannot decode response');
  });

  test('without a way to check credentials AUTH is off, not "accept anything"', async () => {
    const out = await session(make(), `EHLO c\r\nAUTH PLAIN ${plain('u', 'pw')}\r\n`);
    expect(lines(out).some((line) => line.includes('AUTH'))).toBe(false);
    expect(finals(out)[1]).toBe('503 5.5.1 Error: authentication not enabled');
  });
});

describe('D15: every command gets exactly one reply', () => {
  const hookCases: Array<[string, Parameters<typeof make>[0], string, number]> = [
    ['auth hook false', { validateAuthenticationHandler: () => false }, `AUTH PLAIN ${plain('u', 'p')}`, 535],
    [
      'auth hook null',
      { validateAuthenticationHandler: () => null as never },
      `AUTH PLAIN ${plain('u', 'p')}`,
      535,
    ],
    [
      'auth hook resolves null',
      { validateAuthenticationHandler: async () => null as never },
      `AUTH PLAIN ${plain('u', 'p')}`,
      535,
    ],
    [
      'auth hook throws',
      {
        validateAuthenticationHandler: () => {
          throw new Error('x');
        },
      },
      `AUTH PLAIN ${plain('u', 'p')}`,
      451,
    ],
    ['tls hook false', { tlsHandler: () => false }, 'STARTTLS', 454],
    ['tls hook undefined', { tlsHandler: () => undefined as never }, 'STARTTLS', 454],
    ['tls hook rejects', { tlsHandler: () => Promise.reject(new Error('x')) }, 'STARTTLS', 451],
    ['sender hook false', { validateSenderHandler: () => false }, 'MAIL FROM:<a@x.test>', 550],
    [
      'sender hook rejects',
      { validateSenderHandler: async () => Promise.reject(new Error('x')) },
      'MAIL FROM:<a@x.test>',
      451,
    ],
    ['verb filter throws', { smtpVerbFilter: () => { throw new Error('x'); } }, 'NOOP', 451], // prettier-ignore
    ['verb filter null', { smtpVerbFilter: () => null as never }, 'NOOP', 250],
  ];

  test.each(hookCases)('%s → one reply, then the session goes on', async (name, options, line, code) => {
    const p = make(options);
    await session(p, 'EHLO c\r\n');
    const out = await session(p, `${line}\r\nNOOP\r\n`);
    // A filter that throws fails every command, NOOP included: still one reply each.
    expect(codes(out)).toEqual([code, name === 'verb filter throws' ? 451 : 250]);
  });

  test('a message hook returning nothing still gets 250 queued', async () => {
    const out = await session(
      make({ messageReceivedHandler: () => undefined }),
      `${envelope()}DATA\r\nx\r\n.\r\n`,
    );
    expect(finals(out)[4]).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
  });
});

describe('D16: line limits', () => {
  test('a long command line → 500 5.5.2, and the session goes on', async () => {
    const p = make();
    const out = await session(p, `EHLO c\r\nNOOP ${'x'.repeat(600)}\r\nNOOP\r\n`);
    expect(finals(out).slice(1)).toEqual(['500 5.5.2 Error: line too long', '250 2.0.0 Ok']);
  });

  test('a huge command line split over chunks → one 500 5.5.2, then in step', async () => {
    const p = make();
    const out = await session(p, ['NOOP ', 'x'.repeat(20000), 'y'.repeat(20000), '\r\nNOOP\r\n']);
    expect(finals(out)).toEqual(['500 5.5.2 Error: line too long', '250 2.0.0 Ok']);
  });

  test('parse(): the tail of an overlong line never runs as a command', () => {
    const p = make();
    let r = p.parse(`NOOP ${'x'.repeat(13000)}`);
    expect(r.replies).toEqual([]);
    r = p.parse(`${r.rest}RSET\r\nNOOP\r\n`);
    expect(r.replies.map(String)).toEqual(['500 5.5.2 Error: line too long']);
    expect(p.parse(r.rest).replies.map(String)).toEqual(['250 2.0.0 Ok']);
  });

  test('long DATA lines never put replies out of step', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const long = 'z'.repeat(5000);
    const out = await session(p, `${envelope()}DATA\r\n${long}\r\n.\r\nNOOP\r\n`);
    expect(codes(out)).toEqual([250, 250, 250, 354, 250, 250]);
    expect(rec.messages[0].body.toString()).toBe(`${long}\r\n`);
  });

  test('with a DATA line limit, the refusal comes after the final dot, once', async () => {
    const p = make({ maxDataLineLength: 998 });
    const out = await session(p, `${envelope()}DATA\r\n${'z'.repeat(1200)}\r\nmore\r\n.\r\nNOOP\r\n`);
    expect(finals(out).slice(3)).toEqual([
      '354 End data with <CR><LF>.<CR><LF>',
      '554 5.6.0 Error: message contains a line longer than 998 octets',
      '250 2.0.0 Ok',
    ]);
  });
});

describe('D17: CR/LF hygiene in commands', () => {
  test.each([
    ['bare CR', 'HELO x\ry'],
    ['NUL', 'HELO x\0y'],
    ['DEL', 'HELO x\x7fy'],
    ['invalid UTF-8', Buffer.concat([Buffer.from('HELO x'), Buffer.from([0xff, 0xfe])])],
  ])('%s inside a command → 500, nothing echoed', async (_name, line) => {
    const p = make();
    const out = await session(p, [line, '\r\nNOOP\r\n']);
    expect(finals(out)).toEqual(['500 5.5.2 Error: command contains invalid characters', '250 2.0.0 Ok']);
    expect(p.state).toBe(State.Establish);
  });

  test('a refused bare-LF line during AUTH ends the exchange', async () => {
    const p = make({ allowBareLfInCommands: false, lookupPassword: () => 'pw' });
    const out = await session(p, `EHLO c\r\nAUTH PLAIN\r\n${plain('u', 'pw')}\nMAIL FROM:<a@x.test>\r\n`);
    expect(finals(out).slice(1)).toEqual([
      '334 ',
      '500 5.5.2 Error: command line ended with a bare <LF>',
      '250 2.1.0 Sender a@x.test ok',
    ]);
  });

  test('bare-LF command lines can be refused', async () => {
    const out = await session(make({ allowBareLfInCommands: false }), 'NOOP\nNOOP\r\n');
    expect(finals(out)).toEqual(['500 5.5.2 Error: command line ended with a bare <LF>', '250 2.0.0 Ok']);
  });

  test('an empty line → 500 but nothing else', async () => {
    expect(finals(await session(make(), '\r\nNOOP\r\n'))).toEqual([
      '500 5.5.2 Error: command not recognized',
      '250 2.0.0 Ok',
    ]);
  });
});

describe('D18: STARTTLS', () => {
  test('bytes pipelined after STARTTLS are discarded; only the handshake resets the session', async () => {
    const commands: string[] = [];
    const p = make({ tlsHandler: () => true, onCommand: (command) => commands.push(command.orig) });
    await session(p, 'EHLO c\r\n');
    p.receive(Buffer.from('STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@y.test>\r\n'));
    const r = p.run();
    expect(r.output?.toString()).toBe('220 2.0.0 Ready to start TLS\r\n');
    expect(r.action).toBe('starttls');
    expect(p.state).toBe(State.StartTls);
    expect(p.bufferedInput).toBe(0);
    p.tlsStarted({ protocol: 'TLSv1.3' });
    expect(p.state).toBe(State.Establish);
    expect(p.session.helo).toBeUndefined();
    expect(p.session.secure).toBe(true);
    const after = await session(p, 'MAIL FROM:<a@x.test>\r\n');
    expect(finals(after)).toEqual(['503 5.5.1 Error: send HELO/EHLO first']);
    expect(commands).toEqual(['EHLO c', 'STARTTLS', 'MAIL FROM:<a@x.test>']);
  });

  test('plaintext that arrives before the handshake completes never runs after it', async () => {
    const commands: string[] = [];
    const p = make({ tlsHandler: () => true, onCommand: (command) => commands.push(command.verb) });
    const out = await feed(p, 'EHLO c\r\nSTARTTLS\r\n');
    expect(out.actions).toEqual(['starttls']);
    p.receive(Buffer.from('MAIL FROM:<evil@x.test>\r\n'));
    expect(p.run().output).toBeNull();
    p.tlsStarted({});
    expect(await session(p, 'EHLO c\r\n')).toMatch(/^250-mx\.test Hello c\r\n/);
    expect(commands).toEqual(['EHLO', 'STARTTLS', 'EHLO']);
  });

  test('an async TLS hook: bytes received while it decides are discarded too', async () => {
    let allow!: (ok: boolean) => void;
    const p = make({ tlsHandler: () => new Promise<boolean>((resolve) => (allow = resolve)) });
    await session(p, 'EHLO c\r\n');
    p.receive(Buffer.from('STARTTLS\r\n'));
    const r1 = p.run();
    expect(r1.output).toBeNull();
    p.receive(Buffer.from('MAIL FROM:<evil@x.test>\r\n'));
    allow(true);
    await r1.pending;
    const r2 = p.run();
    expect(r2.output?.toString()).toBe('220 2.0.0 Ready to start TLS\r\n');
    expect(r2.action).toBe('starttls');
    expect(p.bufferedInput).toBe(0);
  });

  test('STARTTLS refused inside a transaction and after TLS; EHLO hides it after TLS', async () => {
    const p = make({ tlsHandler: () => true });
    const out = await session(p, `${envelope()}STARTTLS\r\nRSET\r\nSTARTTLS x\r\n`);
    expect(finals(out).slice(3)).toEqual([
      '503 5.5.1 Error: MAIL transaction in progress',
      '250 2.0.0 Ok',
      '501 5.5.4 Syntax error (no parameters allowed)',
    ]);
    await feed(p, 'STARTTLS\r\n');
    p.tlsStarted({});
    const again = await session(p, 'EHLO c\r\nSTARTTLS\r\n');
    expect(lines(again)).not.toContain('250-STARTTLS');
    expect(finals(again)[1]).toBe('503 5.5.1 Error: TLS already active');
  });

  test('a failed handshake ends the session', async () => {
    const p = make({ tlsHandler: () => true });
    await feed(p, 'EHLO c\r\nSTARTTLS\r\n');
    p.tlsFailed();
    expect(p.state).toBe(State.Done);
    expect(p.run().action).toBe('close');
  });
});

describe('D19: requireTls is consistent', () => {
  test('EHLO twice, RSET then EHLO, NOOP all work before TLS; MAIL does not', async () => {
    const p = make({ requireTls: true, tlsHandler: () => true });
    const out = await session(
      p,
      'RSET\r\nEHLO c\r\nEHLO c\r\nHELO c\r\nNOOP\r\nRSET\r\nMAIL FROM:<a@x.test>\r\n',
    );
    expect(codes(out)).toEqual([250, 250, 250, 250, 250, 250, 530]);
    expect(finals(out)[6]).toBe('530 5.7.0 Must issue a STARTTLS command first');
  });
});

describe('D20: nothing after QUIT', () => {
  test('RSET after QUIT does not reopen the session', async () => {
    const p = make();
    const out = await feed(p, 'EHLO c\r\nQUIT\r\nRSET\r\nNOOP\r\n');
    expect(finals(out.text).slice(1)).toEqual(['221 2.0.0 Bye']);
    expect(out.actions).toEqual(['close']);
    expect(await session(p, 'RSET\r\n')).toBe('');
    expect(p.state).toBe(State.Done);
  });
});

describe('D21: reply rendering', () => {
  test('always `code SP text CRLF`, never a bare LF, even with no text', () => {
    expect(new Reply(250, []).render(true)).toBe('250 \r\n');
    expect(new Reply(250, '').render(false)).toBe('250 \r\n');
    expect(new Reply(550, ['a', 'b'], '5.1.1').render(true)).toBe('550-5.1.1 a\r\n550 5.1.1 b\r\n');
  });

  test('CR/LF in echoed arguments cannot forge reply lines', async () => {
    const p = make({
      validateSenderHandler: (from) => new Reply(550, `no ${from.address}\r\n250 fake`, '5.7.1'),
    });
    const out = await session(p, 'EHLO c\r\nMAIL FROM:<a@x.test>\r\n');
    expect(finals(out)[1]).toBe('550 5.7.1 no a@x.test  250 fake');
    expect(() => parseReplies(out)).not.toThrow();
  });

  test('hooks can build replies with their own code, enhanced code and lines', async () => {
    const p = make({
      validateRecipientHandler: () => new Reply(450, ['greylisted', 'come back later'], '4.7.1'),
    });
    const out = await session(p, envelope());
    expect(lines(out).slice(-2)).toEqual(['450-4.7.1 greylisted', '450 4.7.1 come back later']);
  });
});

describe('D22: the verb filter sees the whole command', () => {
  test('verb, args and the original line, plus the session', async () => {
    const seen: Array<Command & { helo: string | undefined }> = [];
    const p = make({
      smtpVerbFilter: (command, info) => {
        seen.push({ ...command, helo: info.helo });
        if (command.verb === 'MAIL' && command.args.includes('SIZE='))
          return new Reply(552, 'no sizes', '5.3.4');
      },
    });
    const out = await session(p, 'EHLO c\r\nmail  FROM:<a@x.test> SIZE=10 \r\n');
    expect(finals(out)[1]).toBe('552 5.3.4 no sizes');
    expect(seen[1]).toEqual({
      verb: 'MAIL',
      args: 'FROM:<a@x.test> SIZE=10',
      orig: 'mail  FROM:<a@x.test> SIZE=10 ',
      helo: 'c',
    });
  });

  test('the filter is never called for DATA text', async () => {
    const verbs: string[] = [];
    const p = make({ smtpVerbFilter: (command) => void verbs.push(command.verb) });
    await session(p, `${envelope()}DATA\r\nQUIT\r\nRSET\r\n.\r\n`);
    expect(verbs).toEqual(['EHLO', 'MAIL', 'RCPT', 'DATA']);
    expect(p.state).toBe(State.Mail);
  });
});

test('drain() settles on an idle protocol', async () => {
  expect(await drain(make())).toEqual({ text: '', actions: [] });
});
