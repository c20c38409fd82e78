import { REPLIES, reply, type ReplyId } from '../../lib/protocol/replies';
import { Reply, isReply } from '../../lib/protocol/reply';

describe('Reply', () => {
  test('one line, with and without the enhanced code', () => {
    const r = new Reply(250, 'Ok', '2.0.0');
    expect(r.render(true)).toBe('250 2.0.0 Ok\r\n');
    expect(r.render(false)).toBe('250 Ok\r\n');
    expect(r.toString()).toBe('250 2.0.0 Ok');
    expect(new Reply(354, 'go ahead').render(true)).toBe('354 go ahead\r\n');
  });

  test('multi-line: dash on every line but the last, the enhanced code on each', () => {
    const r = new Reply(250, ['first', 'second', 'last'], '2.0.0');
    expect(r.render(true)).toBe('250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 last\r\n');
    expect(r.render(false)).toBe('250-first\r\n250-second\r\n250 last\r\n');
    expect(r.toString()).toBe('250-2.0.0 first\r\n250-2.0.0 second\r\n250 2.0.0 last');
  });

  test('no lines → one empty line, still `code SP CRLF`', () => {
    expect(new Reply(250, []).render(false)).toBe('250 \r\n');
    expect(new Reply(334, '').render(true)).toBe('334 \r\n');
  });

  test('CR and LF inside text are replaced: no forged reply lines', () => {
    const r = new Reply(550, ['a\r\n250 ok', 'b\rc\nd'], '5.1.1');
    expect(r.lines).toEqual(['a  250 ok', 'b c d']);
    expect(r.render(true)).toBe('550-5.1.1 a  250 ok\r\n550 5.1.1 b c d\r\n');
    expect(r.render(true).split('\r\n')).toHaveLength(3);
  });

  test.each([199, 600, 250.5, NaN, 0, 1000])('code %s → RangeError', (code) => {
    expect(() => new Reply(code, 'x')).toThrow(RangeError);
  });

  test.each(['2.0', '6.0.0', '2.0.0.0', 'x.y.z', '2.1000.0', ' 2.0.0'])(
    'enhanced %j → RangeError',
    (enhanced) => {
      expect(() => new Reply(250, 'x', enhanced)).toThrow(RangeError);
    },
  );

  test('bounds: 200 and 599 are fine; 3-digit enhanced parts', () => {
    expect(new Reply(200, 'x').code).toBe(200);
    expect(new Reply(599, 'x', '5.999.999').render(true)).toBe('599 5.999.999 x\r\n');
  });

  test('positive, withText, id, isReply', () => {
    expect(new Reply(354, 'x').positive).toBe(true);
    expect(new Reply(399, 'x').positive).toBe(true);
    expect(new Reply(421, 'x').positive).toBe(false);
    const base = reply('SenderRejected', 'a@b');
    const custom = base.withText(['nope', 'really']);
    expect(custom).toMatchObject({
      code: 550,
      enhanced: '5.1.0',
      id: 'SenderRejected',
      lines: ['nope', 'really'],
    });
    expect(new Reply(250, 'x').id).toBe('Custom');
    expect(isReply(custom)).toBe(true);
    expect(isReply({ code: 250, lines: ['x'] })).toBe(false);
    expect(isReply(null)).toBe(false);
  });
});

describe('the reply table', () => {
  const ids = Object.keys(REPLIES) as ReplyId[];
  const build = (id: ReplyId): Reply => {
    const spec = REPLIES[id] as { text: unknown };
    const arity = typeof spec.text === 'function' ? spec.text.length : 0;
    const args = Array.from({ length: arity }, (_, i) => (id === 'Ehlo' ? ['one', 'two'] : `arg${i}`));
    return (reply as (id: ReplyId, ...a: unknown[]) => Reply)(id, ...args);
  };

  test.each(ids)('%s renders with a valid code', (id) => {
    const spec: { code: number; enhanced?: string } = REPLIES[id];
    const r = build(id);
    expect(r.id).toBe(id);
    expect(r.code).toBe(spec.code);
    expect(r.enhanced).toBe(spec.enhanced);
    if (spec.enhanced !== undefined) {
      // RFC 3463 §3.1: the class of the enhanced code matches the first digit of the reply code.
      expect(spec.enhanced[0]).toBe(String(spec.code)[0]);
    }
    for (const enhanced of [true, false]) {
      const text = r.render(enhanced);
      expect(text.endsWith('\r\n')).toBe(true);
      const rendered = text.split('\r\n').slice(0, -1);
      expect(rendered).toHaveLength(r.lines.length);
      rendered.forEach((line, i) => {
        expect(line).toMatch(new RegExp(`^${spec.code}${i === rendered.length - 1 ? ' ' : '-'}`));
        expect(line).not.toMatch(/[\r\n]/);
        if (enhanced && spec.enhanced)
          expect(line.slice(4)).toMatch(new RegExp(`^${spec.enhanced.replace(/\./g, '\\.')} `));
      });
    }
  });

  test('the 220 greeting, 334 and 354 carry no enhanced code (RFC 2034 §3)', () => {
    for (const id of [
      'Greeting',
      'LmtpGreeting',
      'Hello',
      'Ehlo',
      'AuthChallenge',
      'StartMailInput',
    ] as ReplyId[]) {
      expect(REPLIES[id]).not.toHaveProperty('enhanced');
    }
  });

  test('the empty SASL challenge goes out as `334 CRLF`', () => {
    expect(reply('AuthChallenge', '').render(true)).toBe('334 \r\n');
  });

  test('static replies are shared; replies with arguments are built each time', () => {
    expect(reply('Ok')).toBe(reply('Ok'));
    expect(reply('SenderOk', 'a@b')).not.toBe(reply('SenderOk', 'a@b'));
  });

  test.each<[Reply, string]>([
    [reply('Greeting', 'mx.test', 'MailHog'), '220 mx.test ESMTP MailHog'],
    [reply('LmtpGreeting', 'mx.test', 'x'), '220 mx.test LMTP x'],
    [reply('Ok'), '250 2.0.0 Ok'],
    [reply('Bye'), '221 2.0.0 Bye'],
    [reply('StartMailInput'), '354 End data with <CR><LF>.<CR><LF>'],
    [reply('Queued', 'ABC'), '250 2.0.0 Ok: queued as ABC'],
    [reply('SenderOk', 'a@b'), '250 2.1.0 Sender a@b ok'],
    [reply('RecipientOk', 'c@d'), '250 2.1.5 Recipient c@d ok'],
    [reply('AuthOk'), '235 2.7.0 Authentication successful'],
    [reply('AuthChallenge', 'VXNlcm5hbWU6'), '334 VXNlcm5hbWU6'],
    [reply('AuthChallenge', ''), '334'], // toString() trims; on the wire it is `334 CRLF`
    [reply('SyntaxError', ''), '501 5.5.4 Syntax error'],
    [reply('SyntaxError', 'why'), '501 5.5.4 Syntax error (why)'],
    [reply('Hello', 'mx.test', 'c'), '250 mx.test Hello c'],
    [reply('Ehlo', ['mx.test Hello c', 'PIPELINING']), '250-mx.test Hello c\r\n250 PIPELINING'],
    [reply('Help', 'HELO EHLO'), '214-2.0.0 Commands: HELO EHLO\r\n214 2.0.0 See RFC 5321 for details'],
    [reply('TooManyRecipients'), '452 4.5.3 Error: too many recipients'],
    [reply('LocalError'), '451 4.3.0 Error: internal error, try again later'],
    [reply('AuthFailed'), '535 5.7.8 Authentication credentials invalid'],
    [reply('ChunkReceived', 42), '250 2.0.0 42 octets received'],
    [reply('DataLineTooLong', 998), '554 5.6.0 Error: message contains a line longer than 998 octets'],
    [reply('LmtpDelivered', 'b@c', 'ID'), '250 2.1.5 <b@c> Ok: queued as ID'],
    [reply('SenderRejected', 'x\r\nINJECT'), '550 5.1.0 Invalid sender x  INJECT'],
  ])('%s', (r, expected) => {
    expect(r.toString()).toBe(expected);
  });
});
