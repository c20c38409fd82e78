import type { Extension } from '../../lib/protocol/extension';
import { extensions } from '../../lib/protocol';
import { reply } from '../../lib/protocol/replies';
import { Reply } from '../../lib/protocol/reply';
import { State } from '../../lib/protocol/state';
import type { IncomingMessage } from '../../lib/protocol/types';
import { codes, ehloKeywords, envelopeLines, open, parseReplies, send, type Session } from './drive';

type Options = Parameters<typeof open>[0];

async function ehlo(options: Options = {}): Promise<string[]> {
  const s = open(options);
  return ehloKeywords(await send(s, 'EHLO c.test\r\n'));
}

/** One reply per line of `lines` after EHLO; returns their raw text. */
async function answers(s: Session, ...lines: Array<string | Buffer>): Promise<string[]> {
  await send(s, 'EHLO c.test\r\n');
  const out: string[] = [];
  for (const line of lines) {
    const replies = parseReplies(await send(s, line));
    expect(replies).toHaveLength(1);
    out.push(replies[0].raw);
  }
  return out;
}

const utf8 = (text: string) => Buffer.from(text, 'utf8');

describe('SIZE (RFC 1870)', () => {
  it('advertises the default limit, a configured one, or a bare SIZE without limit', async () => {
    expect(await ehlo()).toContain('SIZE 26214400');
    expect(await ehlo({ maxMessageSize: 1000 })).toContain('SIZE 1000');
    const unlimited = await ehlo({ maxMessageSize: 0 });
    expect(unlimited).toContain('SIZE');
    expect(unlimited.filter((k) => k.startsWith('SIZE'))).toEqual(['SIZE']);
  });

  it('refuses a declared size over the limit at MAIL, records one under it', async () => {
    const s = open({ maxMessageSize: 1000 });
    expect(
      await answers(s, 'MAIL FROM:<a@x.test> SIZE=2000\r\n', 'MAIL FROM:<a@x.test> SIZE=1000\r\n'),
    ).toEqual([
      '552 5.3.4 Error: message size exceeds fixed maximum message size',
      '250 2.1.0 Sender a@x.test ok',
    ]);
    expect(s.p.envelope?.declaredSize).toBe(1000);
    expect(s.p.envelope?.mailFrom.params).toEqual({ SIZE: '1000' });
  });

  it.each(['SIZE=abc', 'SIZE', 'SIZE=-1', 'SIZE=1e3', `SIZE=${'9'.repeat(21)}`])(
    'refuses %s with 501',
    async (param) => {
      const s = open();
      expect(await answers(s, `MAIL FROM:<a@x.test> ${param}\r\n`)).toEqual([
        '501 5.5.4 Bad SIZE parameter value',
      ]);
    },
  );

  it('accepts any declared size when there is no limit', async () => {
    const s = open({ maxMessageSize: 0 });
    expect(await answers(s, 'MAIL FROM:<a@x.test> SIZE=99999999999\r\n')).toEqual([
      '250 2.1.0 Sender a@x.test ok',
    ]);
  });

  it('takes a message of exactly the limit (unstuffed text, final CRLF included)', async () => {
    const s = open({ maxMessageSize: 10 });
    await send(s, `${envelopeLines()}DATA\r\n..123\r\nab\r\n.\r\n`);
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 250]);
    expect(s.delivered[0].bytes.toString()).toBe('.123\r\nab\r\n');
    await send(s, 'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n..1234\r\nab\r\n.\r\n');
    expect(codes(s.transcript).slice(6)).toEqual([250, 250, 354, 552]);
    expect(s.delivered).toHaveLength(1);
  });

  it('refuses a message that grows past the limit: the reader fails, the rest is dropped, 552 after the dot', async () => {
    const seen: Buffer[] = [];
    const errors: unknown[] = [];
    let aborted = false;
    const s = open({
      maxMessageSize: 1000,
      bodyHighWaterMark: 256,
      messageReceivedHandler: async (message: IncomingMessage) => {
        message.signal.addEventListener('abort', () => (aborted = true));
        try {
          for await (const chunk of message.body) seen.push(Buffer.from(chunk));
        } catch (error) {
          errors.push(error);
          throw error;
        }
        return 'should-not-happen';
      },
    });
    await send(s, `${envelopeLines()}DATA\r\n`);
    const line = `${'x'.repeat(98)}\r\n`;
    for (let i = 0; i < 30; i++) await send(s, line);
    const replies = await send(s, '.\r\n');
    expect(parseReplies(replies).map((r) => r.raw)).toEqual([
      '552 5.3.4 Error: message size exceeds fixed maximum message size',
    ]);
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toContain('552');
    expect(aborted).toBe(true);
    expect(Buffer.concat(seen).length).toBeLessThanOrEqual(1000);
    expect(s.p.bufferedInput).toBe(0);
    // The next transaction works as usual.
    s.p.messageReceivedHandler = async (message) => {
      seen.length = 0;
      for await (const chunk of message.body) seen.push(Buffer.from(chunk));
      return 'NEXT';
    };
    expect(
      codes(await send(s, 'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nsmall\r\n.\r\n')),
    ).toEqual([250, 250, 354, 250]);
    expect(Buffer.concat(seen).toString()).toBe('small\r\n');
    expect(s.transcript).toContain('250 2.0.0 Ok: queued as NEXT');
  });

  it('refuses an oversized message whose text arrives in one piece with the commands after it', async () => {
    const s = open({ maxMessageSize: 100 });
    await send(s, `${envelopeLines()}DATA\r\n${'y'.repeat(500)}\r\n.\r\nMAIL FROM:<a@x.test>\r\nQUIT\r\n`);
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 552, 250, 221]);
    expect(s.delivered).toHaveLength(0);
    expect(s.bodyErrors).toHaveLength(1);
  });
});

describe('8BITMIME (RFC 6152)', () => {
  it('records BODY=8BITMIME and BODY=7BIT, refuses other values', async () => {
    const s = open();
    expect(
      await answers(
        s,
        'MAIL FROM:<a@x.test> BODY=8bitmime\r\n',
        'RSET\r\n',
        'MAIL FROM:<a@x.test> BODY=FOO\r\n',
        'MAIL FROM:<a@x.test> BODY\r\n',
        'MAIL FROM:<a@x.test> BODY=7BIT\r\n',
      ),
    ).toEqual([
      '250 2.1.0 Sender a@x.test ok',
      '250 2.0.0 Ok',
      '501 5.5.4 Bad BODY parameter value',
      '501 5.5.4 Bad BODY parameter value',
      '250 2.1.0 Sender a@x.test ok',
    ]);
    expect(s.p.envelope?.bodyType).toBe('7BIT');
  });

  it('stores 8-bit text byte for byte', async () => {
    const s = open();
    const text = Buffer.concat([
      Buffer.from('Subject: caf\xe9\r\n\r\n', 'latin1'),
      Buffer.from([0x80, 0xff, 0x00, 0xc3, 0xa9]),
      Buffer.from('\r\n'),
    ]);
    await send(
      s,
      'EHLO c.test\r\nMAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\nDATA\r\n',
      text,
      '.\r\n',
    );
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 250]);
    expect(s.delivered[0].bytes.equals(text)).toBe(true);
    expect(s.delivered[0].envelope.bodyType).toBe('8BITMIME');
  });
});

describe('BINARYMIME (RFC 3030 §3)', () => {
  it('is advertised with CHUNKING and refuses DATA with 503', async () => {
    const s = open();
    const keywords = ehloKeywords(await send(s, 'EHLO c.test\r\n'));
    expect(keywords).toEqual(expect.arrayContaining(['CHUNKING', 'BINARYMIME']));
    const replies = await send(s, 'MAIL FROM:<a@x.test> BODY=BINARYMIME\r\nRCPT TO:<b@y.test>\r\nDATA\r\n');
    expect(parseReplies(replies).map((r) => r.raw)).toEqual([
      '250 2.1.0 Sender a@x.test ok',
      '250 2.1.5 Recipient b@y.test ok',
      '503 5.5.1 Error: BODY=BINARYMIME requires BDAT',
    ]);
    expect(s.p.envelope?.bodyType).toBe('BINARYMIME');
  });

  it('is neither advertised nor accepted without CHUNKING', async () => {
    const s = open({ disabledExtensions: ['CHUNKING'] });
    const keywords = ehloKeywords(await send(s, 'EHLO c.test\r\n'));
    expect(keywords).not.toContain('BINARYMIME');
    expect(keywords).not.toContain('CHUNKING');
    expect(parseReplies(await send(s, 'MAIL FROM:<a@x.test> BODY=BINARYMIME\r\n'))[0].raw).toBe(
      '501 5.5.4 Bad BODY parameter value',
    );
  });

  it('is not accepted when BINARYMIME itself is disabled', async () => {
    const s = open({ disabledExtensions: ['BINARYMIME'] });
    expect(await answers(s, 'MAIL FROM:<a@x.test> BODY=BINARYMIME\r\n')).toEqual([
      '501 5.5.4 Bad BODY parameter value',
    ]);
  });
});

describe('SMTPUTF8 (RFC 6531)', () => {
  it('accepts UTF-8 addresses with the parameter and hands them over unchanged', async () => {
    const s = open();
    await send(
      s,
      utf8(
        'EHLO c.test\r\nMAIL FROM:<用户@例子.广告> SMTPUTF8\r\nRCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\r\nDATA\r\n',
      ),
      utf8('Subject: 𝄞\r\n\r\nünïcödé\r\n.\r\n'),
    );
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 250]);
    const [message] = s.delivered;
    expect(message.envelope.smtputf8).toBe(true);
    expect(message.envelope.mailFrom.address).toBe('用户@例子.广告');
    expect(message.envelope.rcptTo[0].address).toBe('δοκιμή@παράδειγμα.δοκιμή');
    expect(message.bytes.equals(utf8('Subject: 𝄞\r\n\r\nünïcödé\r\n'))).toBe(true);
    expect(s.transcript).toContain('250 2.1.0 Sender 用户@例子.广告 ok');
  });

  it('refuses UTF-8 addresses without the parameter with 553 5.6.7', async () => {
    const s = open();
    expect(
      await answers(
        s,
        utf8('MAIL FROM:<用户@例子.广告>\r\n'),
        'MAIL FROM:<a@x.test>\r\n',
        utf8('RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\r\n'),
      ),
    ).toEqual([
      '553 5.6.7 Error: non-ASCII address requires the SMTPUTF8 parameter',
      '250 2.1.0 Sender a@x.test ok',
      '553 5.6.7 Error: non-ASCII address requires the SMTPUTF8 parameter',
    ]);
  });

  it('refuses invalid UTF-8 bytes and non-ASCII outside addresses with 500', async () => {
    const s = open();
    expect(
      await answers(
        s,
        Buffer.concat([
          Buffer.from('MAIL FROM:<a'),
          Buffer.from([0xc3, 0x28]),
          Buffer.from('@x.test> SMTPUTF8\r\n'),
        ]),
        Buffer.concat([
          Buffer.from('MAIL FROM:<a'),
          Buffer.from([0xff]),
          Buffer.from('@x.test> SMTPUTF8\r\n'),
        ]),
        utf8('NOOP ünï\r\n'),
      ),
    ).toEqual([
      '500 5.5.2 Error: command contains invalid characters',
      '500 5.5.2 Error: command contains invalid characters',
      '500 5.5.2 Error: command contains invalid characters',
    ]);
  });

  it('refuses SMTPUTF8 with a value', async () => {
    const s = open();
    expect(await answers(s, 'MAIL FROM:<a@x.test> SMTPUTF8=yes\r\n')).toEqual([
      '501 5.5.4 Bad SMTPUTF8 parameter value',
    ]);
  });

  it('can be supplied by a user extension in place of the built-in one', async () => {
    const mine: Extension = {
      name: 'SMTPUTF8',
      ehlo: () => 'SMTPUTF8',
      mailParameters: {
        SMTPUTF8(_value, target) {
          target.envelope.smtputf8 = true;
        },
      },
    };
    const s = open({ disabledExtensions: ['smtputf8'], extensions: [mine] });
    expect(ehloKeywords(await send(s, 'EHLO c.test\r\n'))).toContain('SMTPUTF8');
    expect(parseReplies(await send(s, utf8('MAIL FROM:<ü@x.test> SMTPUTF8\r\n')))[0].code).toBe(250);
    expect(s.p.envelope?.smtputf8).toBe(true);
  });
});

describe('ENHANCEDSTATUSCODES (RFC 2034)', () => {
  const ENHANCED = /^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} /m;

  it('puts x.y.z on replies, never on the greeting or the EHLO reply', async () => {
    const s = open();
    const ehloReply = await send(s, 'EHLO c.test\r\n');
    expect(s.transcript).toBe(`220 mx.test ESMTP smtp-session-stream\r\n${ehloReply}`);
    expect(ehloReply).not.toMatch(ENHANCED);
    expect(ehloReply.startsWith('250-mx.test Hello c.test\r\n')).toBe(true);
    expect(await send(s, 'NOOP\r\n')).toBe('250 2.0.0 Ok\r\n');
    expect(await send(s, 'HELO c.test\r\n')).toBe('250 mx.test Hello c.test\r\n');
  });

  it('leaves x.y.z off everything when disabled', async () => {
    const s = open({ disabledExtensions: ['ENHANCEDSTATUSCODES'] });
    await send(s, `${envelopeLines()}RCPT TO:<bad>\r\nDATA\r\nx\r\n.\r\nFOO\r\nQUIT\r\n`);
    expect(ehloKeywords(s.transcript)).not.toContain('ENHANCEDSTATUSCODES');
    const lines = parseReplies(s.transcript).map((r) => r.raw);
    expect(lines.slice(2)).toEqual([
      '250 Sender a@x.test ok',
      '250 Recipient b@y.test ok',
      '501 Bad recipient address syntax',
      '354 End data with <CR><LF>.<CR><LF>',
      '250 Ok: queued as ID1',
      '500 Error: command not recognized',
      '221 Bye',
    ]);
  });
});

describe('DSN (RFC 3461)', () => {
  it('parses RET, ENVID, NOTIFY and ORCPT into the envelope, xtext decoded', async () => {
    const s = open();
    await send(
      s,
      'EHLO c.test\r\nMAIL FROM:<a@x.test> RET=hdrs ENVID=QQ+2B314+3Dx\r\n' +
        'RCPT TO:<b@y.test> NOTIFY=SUCCESS,failure,DELAY ORCPT=rfc822;b+40y.test\r\n' +
        'RCPT TO:<c@y.test> NOTIFY=NEVER\r\nRCPT TO:<d@y.test>\r\nDATA\r\nx\r\n.\r\n',
    );
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 250, 250, 354, 250]);
    const { envelope } = s.delivered[0];
    expect(envelope.dsn).toEqual({ ret: 'HDRS', envid: 'QQ+314=x' });
    expect(envelope.rcptTo).toEqual([
      {
        address: 'b@y.test',
        params: { NOTIFY: 'SUCCESS,failure,DELAY', ORCPT: 'rfc822;b+40y.test' },
        dsn: { notify: ['SUCCESS', 'FAILURE', 'DELAY'], orcpt: { addrType: 'RFC822', address: 'b@y.test' } },
      },
      { address: 'c@y.test', params: { NOTIFY: 'NEVER' }, dsn: { notify: ['NEVER'] } },
      { address: 'd@y.test', params: {} },
    ]);
    expect(ehloKeywords(s.transcript)).toContain('DSN');
  });

  it.each([
    ['MAIL FROM:<a@x.test> RET=BODY', '501 5.5.4 Bad RET parameter value'],
    ['MAIL FROM:<a@x.test> RET', '501 5.5.4 Bad RET parameter value'],
    ['MAIL FROM:<a@x.test> ENVID', '501 5.5.4 Bad ENVID parameter value'],
    ['MAIL FROM:<a@x.test> ENVID=a+zz', '501 5.5.4 Bad ENVID parameter value'],
    ['MAIL FROM:<a@x.test> ENVID=a+2b', '501 5.5.4 Bad ENVID parameter value'],
    [`MAIL FROM:<a@x.test> ENVID=${'e'.repeat(101)}`, '501 5.5.4 Bad ENVID parameter value'],
    ['MAIL FROM:<a@x.test> RET=FULL RET=HDRS', '501 5.5.4 Syntax error (bad parameter RET)'],
  ])('refuses %s', async (line, expected) => {
    const s = open();
    expect(await answers(s, `${line}\r\n`)).toEqual([expected]);
    expect(s.p.envelope).toBeUndefined();
  });

  it.each([
    ['NOTIFY=NEVER,SUCCESS', 'NOTIFY'],
    ['NOTIFY=SUCCESS,NEVER', 'NOTIFY'],
    ['NOTIFY=SUCCESS,SUCCESS', 'NOTIFY'],
    ['NOTIFY=SOMETIMES', 'NOTIFY'],
    ['NOTIFY', 'NOTIFY'],
    ['NOTIFY=SUCCESS,', 'NOTIFY'],
    ['ORCPT=rfc822', 'ORCPT'],
    ['ORCPT=;b@y.test', 'ORCPT'],
    ['ORCPT=rfc822;', 'ORCPT'],
    ['ORCPT=rfc_822;b@y.test', 'ORCPT'],
    ['ORCPT=rfc822;b+4', 'ORCPT'],
    ['ORCPT', 'ORCPT'],
  ])('refuses RCPT with %s', async (param, name) => {
    const s = open();
    expect(await answers(s, 'MAIL FROM:<a@x.test>\r\n', `RCPT TO:<b@y.test> ${param}\r\n`)).toEqual([
      '250 2.1.0 Sender a@x.test ok',
      `501 5.5.4 Bad ${name} parameter value`,
    ]);
    expect(s.p.envelope?.rcptTo).toEqual([]);
  });
});

describe('Unknown parameters', () => {
  it('refuses an unknown MAIL or RCPT parameter with 555 5.5.4', async () => {
    const s = open();
    expect(
      await answers(
        s,
        'MAIL FROM:<a@x.test> XYZ=1\r\n',
        'MAIL FROM:<a@x.test>\r\n',
        'RCPT TO:<b@y.test> RET=FULL\r\n',
        'RCPT TO:<b@y.test> FOO\r\n',
      ),
    ).toEqual([
      '555 5.5.4 Unsupported parameter XYZ',
      '250 2.1.0 Sender a@x.test ok',
      '555 5.5.4 Unsupported parameter RET',
      '555 5.5.4 Unsupported parameter FOO',
    ]);
  });
});

describe('REQUIRETLS (RFC 8689)', () => {
  it('is off unless asked for', async () => {
    const s = open();
    expect(ehloKeywords(await send(s, 'EHLO c.test\r\n'))).not.toContain('REQUIRETLS');
    s.p.tlsStarted({});
    expect(ehloKeywords(await send(s, 'EHLO c.test\r\n'))).not.toContain('REQUIRETLS');
    expect(parseReplies(await send(s, 'MAIL FROM:<a@x.test> REQUIRETLS\r\n'))[0].raw).toBe(
      '555 5.5.4 Unsupported parameter REQUIRETLS',
    );
  });

  it('is advertised and accepted only once TLS is up', async () => {
    const s = open({ extensions: [extensions.requireTls] });
    expect(ehloKeywords(await send(s, 'EHLO c.test\r\n'))).not.toContain('REQUIRETLS');
    expect(parseReplies(await send(s, 'MAIL FROM:<a@x.test> REQUIRETLS\r\n'))[0].raw).toBe(
      '530 5.7.10 Error: REQUIRETLS needs a TLS session',
    );
    s.p.tlsStarted({ protocol: 'TLSv1.3' });
    expect(ehloKeywords(await send(s, 'EHLO c.test\r\n'))).toContain('REQUIRETLS');
    expect(
      codes(await send(s, 'MAIL FROM:<a@x.test> REQUIRETLS\r\nRCPT TO:<b@y.test>\r\nDATA\r\nx\r\n.\r\n')),
    ).toEqual([250, 250, 354, 250]);
    expect(s.delivered[0].envelope.requireTls).toBe(true);
    expect(s.delivered[0].envelope.mailFrom.params).toEqual({ REQUIRETLS: true });
  });

  it('refuses REQUIRETLS with a value', async () => {
    const s = open({ extensions: [extensions.requireTls], secure: true });
    expect(await answers(s, 'MAIL FROM:<a@x.test> REQUIRETLS=yes\r\n')).toEqual([
      '501 5.5.4 Bad REQUIRETLS parameter value',
    ]);
  });
});

describe('STARTTLS (RFC 3207)', () => {
  it('answers 220, asks the driver to upgrade and drops what was pipelined after it', async () => {
    const s = open({ tlsHandler: () => true });
    expect(ehloKeywords(await send(s, 'EHLO c.test\r\n'))).toContain('STARTTLS');
    expect(await send(s, 'STARTTLS\r\nMAIL FROM:<injected@x.test>\r\n')).toBe(
      '220 2.0.0 Ready to start TLS\r\n',
    );
    expect(s.actions).toEqual(['starttls']);
    s.p.tlsStarted({ protocol: 'TLSv1.3' });
    expect(s.p.envelope).toBeUndefined();
    const keywords = ehloKeywords(await send(s, 'EHLO c.test\r\n'));
    expect(keywords).not.toContain('STARTTLS');
    expect(parseReplies(await send(s, 'STARTTLS\r\n'))[0].raw).toBe('503 5.5.1 Error: TLS already active');
  });

  it('passes on the hook’s refusal, sync or async, and refuses arguments', async () => {
    const s = open({ tlsHandler: async () => new Reply(454, 'No certificate', '4.7.0') });
    expect(await answers(s, 'STARTTLS now\r\n', 'STARTTLS\r\n')).toEqual([
      '501 5.5.4 Syntax error (no parameters allowed)',
      '454 4.7.0 No certificate',
    ]);
    const t = open({ tlsHandler: () => false });
    expect(await answers(t, 'STARTTLS\r\n')).toEqual(['454 4.7.0 TLS not available due to temporary reason']);
    const none = open();
    expect(await answers(none, 'STARTTLS\r\n')).toEqual(['502 5.5.1 Error: command not implemented']);
  });
});

describe('AUTH parameter on MAIL (RFC 4954 §5)', () => {
  it('records AUTH=<mailbox> and refuses AUTH without a value', async () => {
    const s = open({ lookupPassword: () => 'secret' });
    expect(await answers(s, 'MAIL FROM:<a@x.test> AUTH\r\n', 'MAIL FROM:<a@x.test> AUTH=<>\r\n')).toEqual([
      '501 5.5.4 Bad AUTH parameter value',
      '250 2.1.0 Sender a@x.test ok',
    ]);
    expect(s.p.envelope?.mailFrom.params).toEqual({ AUTH: '<>' });
  });
});

describe('LIMITS (RFC 9422)', () => {
  it('advertises RCPTMAX when opted in', async () => {
    expect(await ehlo()).not.toContain('LIMITS RCPTMAX=100');
    expect(await ehlo({ extensions: [extensions.limits] })).toContain('LIMITS RCPTMAX=100');
    expect(await ehlo({ extensions: [extensions.limits], maximumRecipients: 5 })).toContain(
      'LIMITS RCPTMAX=5',
    );
    const none = await ehlo({ extensions: [extensions.limits], maximumRecipients: -1 });
    expect(none.some((k) => k.startsWith('LIMITS'))).toBe(false);
  });

  it('enforces the RCPTMAX it advertises with 452 4.5.3', async () => {
    const s = open({ extensions: [extensions.limits], maximumRecipients: 2 });
    expect(ehloKeywords(await send(s, 'EHLO c.test\r\n'))).toContain('LIMITS RCPTMAX=2');
    const replies = await send(
      s,
      'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nRCPT TO:<d@y.test>\r\nDATA\r\nx\r\n.\r\n',
    );
    expect(parseReplies(replies)[3].raw).toBe('452 4.5.3 Error: too many recipients');
    expect(s.delivered[0].envelope.rcptTo.map((r) => r.address)).toEqual(['b@y.test', 'c@y.test']);
  });
});

describe('User extensions', () => {
  const xfoo: Extension = {
    name: 'XFOO',
    ehlo: () => ['XFOO', 'XHELLO'],
    verbs: {
      xhello: { handle: (command) => new Reply(250, `hello ${command.args}`, '2.0.0') },
      XLATER: {
        from: [State.Mail],
        handle: async () => {
          await new Promise((resolve) => setImmediate(resolve));
          return reply('Ok');
        },
      },
    },
    mailParameters: {
      xfoo(value) {
        if (value !== 'bar') return reply('BadParameterValue', 'XFOO');
      },
    },
    rcptParameters: {
      XPRIO(value, target) {
        if (target.recipient !== undefined) target.recipient.params.XSEEN = value;
      },
    },
  };

  it('registers an EHLO keyword, a verb and MAIL/RCPT parameters through the public API', async () => {
    const s = open({ extensions: [xfoo] });
    expect(parseReplies(await send(s, 'XHELLO early\r\n'))[0].raw).toBe('250 2.0.0 hello early');
    const keywords = ehloKeywords(await send(s, 'EHLO c.test\r\n'));
    expect(keywords.slice(-2)).toEqual(['XFOO', 'XHELLO']);
    const replies = await send(
      s,
      'xhello world\r\nXLATER\r\nMAIL FROM:<a@x.test> XFOO=baz\r\nMAIL FROM:<a@x.test> xfoo=bar\r\n' +
        'RCPT TO:<b@y.test> XPRIO=7\r\nDATA\r\nx\r\n.\r\n',
    );
    expect(parseReplies(replies).map((r) => r.raw)).toEqual([
      '250 2.0.0 hello world',
      '250 2.0.0 Ok',
      '501 5.5.4 Bad XFOO parameter value',
      '250 2.1.0 Sender a@x.test ok',
      '250 2.1.5 Recipient b@y.test ok',
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.0.0 Ok: queued as ID1',
    ]);
    const { envelope } = s.delivered[0];
    expect(envelope.mailFrom.params).toEqual({ XFOO: 'bar' });
    expect(envelope.rcptTo[0].params).toEqual({ XSEEN: '7', XPRIO: '7' });
  });

  it('keeps a verb to the states it names', async () => {
    const s = open({ extensions: [xfoo] });
    expect(parseReplies(await send(s, 'XLATER\r\n'))[0].raw).toBe('503 5.5.1 Error: send HELO/EHLO first');
  });

  it('refuses to register the same extension twice', () => {
    expect(() => open({ extensions: [xfoo, xfoo] })).toThrow('XFOO is already registered');
    expect(() => open({ extensions: [{ name: 'SIZE' }] })).toThrow('SIZE is already registered');
  });

  it('can be added with use() after construction', async () => {
    const s = open();
    s.p.use(xfoo);
    expect(s.p.hasExtension('xfoo')).toBe(true);
    expect(parseReplies(await send(s, 'XHELLO x\r\n'))[0].raw).toBe('250 2.0.0 hello x');
  });
});

describe('Disabling built-in extensions', () => {
  const cases: Array<[string, string[], Options]> = [
    ['PIPELINING', [], {}],
    ['SIZE', ['MAIL FROM:<a@x.test> SIZE=10'], {}],
    ['8BITMIME', ['MAIL FROM:<a@x.test> BODY=8BITMIME', 'MAIL FROM:<a@x.test> BODY=7BIT'], {}],
    ['SMTPUTF8', ['MAIL FROM:<a@x.test> SMTPUTF8'], {}],
    ['DSN', ['MAIL FROM:<a@x.test> RET=FULL', 'MAIL FROM:<a@x.test> ENVID=x'], {}],
    ['AUTH', ['MAIL FROM:<a@x.test> AUTH=<>'], { lookupPassword: () => 'secret' }],
    ['STARTTLS', [], { tlsHandler: () => true }],
    ['CHUNKING', [], {}],
    ['ENHANCEDSTATUSCODES', [], {}],
  ];

  it.each(cases)('%s: its keyword and its parameters go away', async (name, lines, options) => {
    const on = await ehlo(options);
    expect(on.some((k) => k.split(' ')[0] === name)).toBe(true);
    const s = open({ ...options, disabledExtensions: [name.toLowerCase()] });
    const keywords = ehloKeywords(await send(s, 'EHLO c.test\r\n'));
    expect(keywords.some((k) => k.split(' ')[0] === name)).toBe(false);
    expect(s.p.hasExtension(name)).toBe(false);
    for (const line of lines) {
      const key = /(\S+?)(=|$)/.exec(line.split(' ').pop() as string)?.[1] as string;
      const [answer] = parseReplies(await send(s, `${line}\r\n`));
      expect(answer.code).toBe(555);
      expect(answer.lines[0]).toContain(`Unsupported parameter ${key}`);
    }
  });

  it('without AUTH and STARTTLS their verbs are no longer implemented', async () => {
    const s = open({
      lookupPassword: () => 'secret',
      tlsHandler: () => true,
      disabledExtensions: ['AUTH', 'STARTTLS'],
    });
    expect(await answers(s, 'AUTH PLAIN AGEAYg==\r\n', 'STARTTLS\r\n')).toEqual([
      '502 5.5.1 Error: command not implemented',
      '502 5.5.1 Error: command not implemented',
    ]);
  });

  it('without CHUNKING BDAT is not accepted', async () => {
    const s = open({ disabledExtensions: ['CHUNKING'] });
    const replies = await answers(s, 'MAIL FROM:<a@x.test>\r\n', 'RCPT TO:<b@y.test>\r\n', 'BDAT 3 LAST\r\n');
    expect(replies[2]).toMatch(/^50[02] /);
    expect(s.delivered).toHaveLength(0);
  });
});
