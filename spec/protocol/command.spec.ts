import { decodeLine, isHttpRequestLine, parseCommand } from '../../lib/protocol/command';

describe('parseCommand', () => {
  test.each([
    ['', '', ''],
    ['   ', '', ''],
    ['\t', '', ''],
    ['noop', 'NOOP', ''],
    ['NOOP', 'NOOP', ''],
    ['Mail From:<a@b>', 'MAIL', 'From:<a@b>'],
    ['MAIL FROM:<a@b>  SIZE=1  ', 'MAIL', 'FROM:<a@b>  SIZE=1'],
    ['\tHELO\t x.test ', 'HELO', 'x.test'],
    ['  EHLO   two  words  ', 'EHLO', 'two  words'],
    ['AUTH PLAIN dGVzdA==', 'AUTH', 'PLAIN dGVzdA=='],
    ['QUIT\t', 'QUIT', ''],
    ['x', 'X', ''],
    ['FROM:<a@b>', 'FROM:<A@B>', ''],
  ])('%j → verb %j, args %j', (line, verb, args) => {
    expect(parseCommand(line)).toEqual({ verb, args, orig: line });
  });

  test('the original line is kept exactly', () => {
    const line = ' rcpt  TO:<b@c> ';
    expect(parseCommand(line).orig).toBe(line);
  });
});

describe('decodeLine', () => {
  const bytes = (...parts: Array<string | number[]>) =>
    Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

  test('plain ASCII and tabs', () => {
    expect(decodeLine(bytes('MAIL FROM:<a@b>'))).toEqual({ text: 'MAIL FROM:<a@b>', nonAscii: false });
    expect(decodeLine(bytes('HELO\tx'))).toEqual({ text: 'HELO\tx', nonAscii: false });
    expect(decodeLine(Buffer.alloc(0))).toEqual({ text: '', nonAscii: false });
    expect(decodeLine(bytes('~ !'))).toEqual({ text: '~ !', nonAscii: false });
  });

  test('UTF-8 is decoded once and flagged', () => {
    expect(decodeLine(bytes('RCPT TO:<ü@bücher.example>'))).toEqual({
      text: 'RCPT TO:<ü@bücher.example>',
      nonAscii: true,
    });
    expect(decodeLine(bytes('VRFY 日本'))).toEqual({ text: 'VRFY 日本', nonAscii: true });
  });

  test.each([
    ['NUL', bytes('HELO a', [0], 'b'), 'nul'],
    ['bare CR', bytes('HELO a\rb'), 'control'],
    ['LF', bytes('HELO a\nb'), 'control'],
    ['ESC', bytes('HELO a', [0x1b], 'b'), 'control'],
    ['DEL', bytes('HELO a', [0x7f]), 'control'],
    ['NUL after UTF-8', bytes('ü', [0]), 'nul'],
    ['latin-1 byte', bytes('HELO caf', [0xe9]), 'bad-utf8'],
    ['0xff', bytes([0xff, 0xfe]), 'bad-utf8'],
    ['overlong encoding', bytes([0xc0, 0x80]), 'bad-utf8'],
    ['truncated sequence', bytes('a', [0xe6, 0x97]), 'bad-utf8'],
    ['UTF-16 surrogate', bytes([0xed, 0xa0, 0x80]), 'bad-utf8'],
  ])('%s → %s', (_name, line, problem) => {
    expect(decodeLine(line)).toEqual({ problem });
  });
});

describe('isHttpRequestLine', () => {
  test.each([
    ['GET', '/ HTTP/1.1', true],
    ['POST', '/submit HTTP/1.0', true],
    ['CONNECT', 'mx.test:25 HTTP/1.1', true],
    ['GET', '/ http/2', true],
    ['GET', '/', false],
    ['GET', '/ HTTP/1.1 x', false],
    ['MAIL', 'FROM:<a@b> HTTP/1.1', false],
    ['HELO', 'HTTP/1.1', false],
  ])('%s %s → %s', (verb, args, expected) => {
    expect(isHttpRequestLine(verb, args)).toBe(expected);
  });
});
