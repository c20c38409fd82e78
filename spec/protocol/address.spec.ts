import {
  isIPv4,
  isIPv6,
  parseParameters,
  parsePathArgument,
  type PathOptions,
  type PathProblem,
} from '../../lib/protocol/address';

const FROM: PathOptions = { keyword: 'FROM', strict: false, utf8: false };
const TO: PathOptions = { keyword: 'TO', strict: false, utf8: false };
const STRICT_FROM: PathOptions = { ...FROM, strict: true };
const UTF8_TO: PathOptions = { ...TO, utf8: true };

describe('parsePathArgument: accepted paths', () => {
  test.each<[string, PathOptions, string, string, string]>([
    // args, options, address, domain, parameters
    ['FROM:<a@b.example>', FROM, 'a@b.example', 'b.example', ''],
    ['from:<a@b.example>', FROM, 'a@b.example', 'b.example', ''],
    ['FROM:<a@b.example> SIZE=10 BODY=8BITMIME', FROM, 'a@b.example', 'b.example', 'SIZE=10 BODY=8BITMIME'],
    ['FROM:<a@b.example>\tSIZE=10  ', FROM, 'a@b.example', 'b.example', 'SIZE=10'],
    ['FROM:<>', FROM, '', '', ''],
    ['FROM:<> RET=HDRS', FROM, '', '', 'RET=HDRS'],
    ['FROM:<"john doe"@x.test>', FROM, '"john doe"@x.test', 'x.test', ''],
    ['FROM:<"a>b"@x.test>', FROM, '"a>b"@x.test', 'x.test', ''],
    ['FROM:<"a\\"b@c"@x.test>', FROM, '"a\\"b@c"@x.test', 'x.test', ''],
    ['FROM:<first.last+tag@sub.x.test>', FROM, 'first.last+tag@sub.x.test', 'sub.x.test', ''],
    ["FROM:<!#$%&'*+-/=?^_`{|}~@x.test>", FROM, "!#$%&'*+-/=?^_`{|}~@x.test", 'x.test', ''],
    ['TO:<u@[192.0.2.1]>', TO, 'u@[192.0.2.1]', '[192.0.2.1]', ''],
    ['TO:<u@[IPv6:2001:db8::1]>', TO, 'u@[IPv6:2001:db8::1]', '[IPv6:2001:db8::1]', ''],
    ['TO:<u@[ipv6:::ffff:192.0.2.1]>', TO, 'u@[ipv6:::ffff:192.0.2.1]', '[ipv6:::ffff:192.0.2.1]', ''],
    ['TO:<u@[x-tag:some-content]>', TO, 'u@[x-tag:some-content]', '[x-tag:some-content]', ''],
    ['TO:<@relay1.test,@relay2.test:u@d.test>', TO, 'u@d.test', 'd.test', ''],
    ['TO:<postmaster>', TO, 'postmaster', '', ''],
    ['TO:<PostMaster> NOTIFY=NEVER', TO, 'PostMaster', '', 'NOTIFY=NEVER'],
    ['TO:<postmaster@x.test>', TO, 'postmaster@x.test', 'x.test', ''],
    ['TO:<u@example.com.>', TO, 'u@example.com.', 'example.com.', ''],
    ['TO:<u@under_score.test>', TO, 'u@under_score.test', 'under_score.test', ''],
    ['TO:<u@localhost>', TO, 'u@localhost', 'localhost', ''],
    // Lenient forms (Postfix without strict_rfc821_envelopes).
    ['FROM: <a@b.example>', FROM, 'a@b.example', 'b.example', ''],
    ['FROM :<a@b.example>', FROM, 'a@b.example', 'b.example', ''],
    ['FROM:\t<a@b.example>', FROM, 'a@b.example', 'b.example', ''],
    ['FROM:a@b.example', FROM, 'a@b.example', 'b.example', ''],
    ['FROM: a@b.example SIZE=5', FROM, 'a@b.example', 'b.example', 'SIZE=5'],
    // UTF-8 only when allowed (RFC 6531).
    ['TO:<ü@x.test>', UTF8_TO, 'ü@x.test', 'x.test', ''],
    ['TO:<u@bücher.example>', UTF8_TO, 'u@bücher.example', 'bücher.example', ''],
    ['TO:<"ü ö"@x.test>', UTF8_TO, '"ü ö"@x.test', 'x.test', ''],
  ])('%s', (args, options, address, domain, parameters) => {
    const result = parsePathArgument(args, options);
    if (!result.ok) throw new Error(`refused: ${result.problem}`);
    expect(result.path.address).toBe(address);
    expect(result.path.domain).toBe(domain);
    expect(result.parameters).toBe(parameters);
    expect(result.path.nonAscii).toBe([...address].some((c) => c.charCodeAt(0) > 0x7f));
    if (address.includes('@')) expect(`${result.path.localPart}@${result.path.domain}`).toBe(address);
  });

  test('the exact form works in strict mode', () => {
    expect(parsePathArgument('FROM:<a@b.example> SIZE=1', STRICT_FROM)).toEqual({
      ok: true,
      path: { address: 'a@b.example', localPart: 'a', domain: 'b.example', nonAscii: false },
      parameters: 'SIZE=1',
    });
    expect(parsePathArgument('FROM:<>', STRICT_FROM)).toMatchObject({ ok: true, path: { address: '' } });
  });
});

describe('parsePathArgument: refused paths', () => {
  const long = (n: number) => 'a'.repeat(n);
  test.each<[string, PathOptions, PathProblem]>([
    ['', FROM, 'command'],
    ['FROM:', FROM, 'command'],
    ['FROM: ', FROM, 'command'],
    ['<a@b.example>', FROM, 'command'],
    ['FROM<a@b.example>', FROM, 'command'],
    ['XFROM:<a@b.example>', FROM, 'command'],
    ['garbageFROM:<a@b.example>', FROM, 'command'],
    ['TO:<a@b.example>', FROM, 'command'],
    ['FROM:<a@b.example>junk', FROM, 'syntax'],
    ['FROM:<a@b.example', FROM, 'syntax'],
    ['FROM:<a<b@c.example>', FROM, 'syntax'],
    ['FROM:<a b@c.example>', FROM, 'syntax'],
    ['FROM:<a@>', FROM, 'syntax'],
    ['FROM:<@b.example>', FROM, 'syntax'],
    ['FROM:<a>', FROM, 'syntax'],
    ['FROM:<a..b@c.example>', FROM, 'syntax'],
    ['FROM:<.a@c.example>', FROM, 'syntax'],
    ['FROM:<a.@c.example>', FROM, 'syntax'],
    ['FROM:<"unterminated@c.example>', FROM, 'syntax'],
    ['FROM:<a@-b.example>', FROM, 'syntax'],
    ['FROM:<a@b-.example>', FROM, 'syntax'],
    ['FROM:<a@b..example>', FROM, 'syntax'],
    ['FROM:<a@b@c.example>', FROM, 'syntax'],
    ['FROM:<postmaster>', FROM, 'syntax'],
    ['TO:<>', TO, 'null-not-allowed'],
    ['TO:<u@[300.1.1.1]>', TO, 'syntax'],
    ['TO:<u@[192.0.2]>', TO, 'syntax'],
    ['TO:<u@[IPv6:1::2::3]>', TO, 'syntax'],
    ['TO:<u@[IPv6:12345::1]>', TO, 'syntax'],
    ['TO:<u@[:nothing]>', TO, 'syntax'],
    ['TO:<u@[tag:with space]>', TO, 'syntax'],
    ['TO:<u@192.0.2.1]>', TO, 'syntax'],
    ['TO:<@bad_route!:u@d.test>', TO, 'syntax'],
    ['TO:<relay.test:u@d.test>', TO, 'syntax'],
    ['TO:<@a.test,b.test:u@d.test>', TO, 'syntax'],
    ['TO:<@a.test>', TO, 'syntax'],
    ['TO:<@[192.0.2.1]:u@d.test>', TO, 'syntax'],
    [`TO:<${long(65)}@x.test>`, TO, 'too-long'],
    [`TO:<u@${long(64)}.test>`, TO, 'syntax'],
    [`TO:<u@${Array(50).fill('abcd').join('.')}.${long(60)}>`, TO, 'too-long'],
    [`TO:<${long(64)}@${Array(40).fill('abcde').join('.')}>`, TO, 'too-long'],
    ['TO:<ü@x.test>', TO, 'non-ascii'],
    ['TO:<u@bücher.example>', TO, 'non-ascii'],
    ['FROM: <a@b.example>', STRICT_FROM, 'syntax'],
    ['FROM:a@b.example', STRICT_FROM, 'syntax'],
    ['FROM :<a@b.example>', STRICT_FROM, 'command'],
  ])('%s → %s', (args, options, problem) => {
    expect(parsePathArgument(args, options)).toEqual({ ok: false, problem });
  });

  test('a 64-octet local part and a 254-octet path are the limits', () => {
    expect(parsePathArgument(`TO:<${'a'.repeat(64)}@x.test>`, TO).ok).toBe(true);
    const domain = `${Array(4).fill('b'.repeat(60)).join('.')}.cc`; // 60*4 + 3 + 3 = 246
    expect(parsePathArgument(`TO:<${'a'.repeat(254 - 1 - domain.length)}@${domain}>`, TO).ok).toBe(true);
    expect(parsePathArgument(`TO:<${'a'.repeat(255 - 1 - domain.length)}@${domain}>`, TO)).toEqual({
      ok: false,
      problem: 'too-long',
    });
  });
});

describe('parseParameters', () => {
  test.each<[string, Record<string, string | true>]>([
    ['', {}],
    ['SIZE=10', { SIZE: '10' }],
    ['size=10 body=8BITMIME', { SIZE: '10', BODY: '8BITMIME' }],
    ['SMTPUTF8', { SMTPUTF8: true }],
    ['A=1\tB=2   C', { A: '1', B: '2', C: true }],
    ['X-PRIO=high', { 'X-PRIO': 'high' }],
    ['ORCPT=rfc822;a+40b', { ORCPT: 'rfc822;a+40b' }],
    ['ENVID=ü', { ENVID: 'ü' }],
  ])('%j → ok', (text, expected) => {
    const result = parseParameters(text);
    if (!result.ok) throw new Error(`refused ${result.keyword}`);
    expect(Object.fromEntries(result.params)).toEqual(expected);
  });

  test.each<[string, string]>([
    ['SIZE=1 size=2', 'SIZE'],
    ['SIZE=', 'SIZE'],
    ['=x', '=x'],
    ['-X=1', '-X'],
    ['X_Y=1', 'X_Y'],
    ['X=a=b', 'X'],
    ['X=a\x7f', 'X'],
    ['X=a\x01', 'X'],
  ])('%j → refused at %s', (text, keyword) => {
    expect(parseParameters(text)).toEqual({ ok: false, keyword });
  });
});

describe('address literals', () => {
  test.each([
    ['192.0.2.1', true],
    ['0.0.0.0', true],
    ['255.255.255.255', true],
    ['256.1.1.1', false],
    ['01.1.1.1', false],
    ['1.1.1', false],
    ['1.1.1.1.1', false],
    ['a.b.c.d', false],
    ['', false],
  ])('isIPv4(%j) = %s', (text, expected) => {
    expect(isIPv4(text)).toBe(expected);
  });

  test.each([
    ['2001:db8::1', true],
    ['::', true],
    ['::1', true],
    ['1:2:3:4:5:6:7:8', true],
    ['1:2:3:4:5:6:7:8:9', false],
    ['1:2:3:4:5:6:7', false],
    ['1::2::3', false],
    ['12345::', false],
    ['g::1', false],
    ['::ffff:192.0.2.1', true],
    ['1:2:3:4:5:6:192.0.2.1', true],
    ['1:2:3:4:5:6:7:192.0.2.1', false],
    ['::ffff:300.0.2.1', false],
    ['', false],
  ])('isIPv6(%j) = %s', (text, expected) => {
    expect(isIPv6(text)).toBe(expected);
  });
});
