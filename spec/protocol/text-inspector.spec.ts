import { TextInspector, type TextProblem } from '../../lib/protocol/text-inspector';
import { bytes, codes, envelopeLines, open, parseReplies, send } from './drive';

/** The first problem found when `pieces` are inspected in order. */
function inspect(inspector: TextInspector, ...pieces: string[]): TextProblem | undefined {
  for (const piece of pieces) {
    const problem = inspector.inspect(bytes(piece));
    if (problem !== undefined) return problem;
  }
  return undefined;
}

const bare = () => new TextInspector(true, 0);
const long = (limit: number) => new TextInspector(false, limit);

/** Plain reference: any CR not followed by LF, or LF not preceded by CR. */
function hasBareNewline(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\r' && text[i + 1] !== '\n') return true;
    if (text[i] === '\n' && text[i - 1] !== '\r') return true;
  }
  return false;
}

/** Plain reference: lines end at LF; a CR right before the LF is not counted. */
function hasLongLine(text: string, limit: number): boolean {
  return text.split('\n').some((line, i, all) => {
    const terminated = i < all.length - 1;
    const length = terminated && line.endsWith('\r') ? line.length - 1 : line.length;
    return length > limit;
  });
}

describe('TextInspector: bare CR and LF', () => {
  it('accepts CRLF-only text', () => {
    expect(inspect(bare(), 'Subject: a\r\n\r\nbody\r\n', 'more\r\n')).toBeUndefined();
  });

  it.each([
    ['a bare CR', 'a\rb\r\n'],
    ['a bare LF', 'a\nb\r\n'],
    ['an LF on its own line', 'a\r\n\n'],
    ['CR CR LF', 'a\r\r\n'],
    ['an LF first', '\nabc'],
    ['<LF>.<LF>', 'x\n.\nMAIL FROM:<e@x>\r\n'],
    ['<CR>.<CR>', 'x\r.\rMAIL FROM:<e@x>\r\n'],
  ])('refuses %s', (_name, text) => {
    expect(inspect(bare(), text)).toBe('bare-newline');
  });

  it('accepts a CRLF split between chunks', () => {
    expect(inspect(bare(), 'line\r', '\nnext\r', '\n')).toBeUndefined();
    expect(inspect(bare(), 'line\r', '\n', 'a\r\n')).toBeUndefined();
  });

  it('refuses a CR at the end of a chunk when the next one does not start with LF', () => {
    expect(inspect(bare(), 'line\r', 'x\r\n')).toBe('bare-newline');
    expect(inspect(bare(), 'line\r\nab\r', '\r\n')).toBe('bare-newline');
  });

  it('refuses an LF at the start of a chunk when the previous one did not end with CR', () => {
    expect(inspect(bare(), 'line', '\nx')).toBe('bare-newline');
    expect(inspect(bare(), 'line\r\n', '\n')).toBe('bare-newline');
  });

  it('ignores bare newlines when only the line limit is asked for', () => {
    expect(inspect(long(100), 'a\rb\nc\r\n')).toBeUndefined();
  });
});

describe('TextInspector: long lines', () => {
  it('allows exactly the limit and refuses one octet more, CRLF excluded', () => {
    expect(inspect(long(5), '12345\r\n')).toBeUndefined();
    expect(inspect(long(5), '123456\r\n')).toBe('long-line');
    expect(inspect(long(5), 'ok\r\n123456\r\n')).toBe('long-line');
  });

  it('counts a line across chunks', () => {
    expect(inspect(long(5), '123', '45\r\n', '12345\r\n')).toBeUndefined();
    expect(inspect(long(5), '123', '456')).toBe('long-line');
    expect(inspect(long(5), '1234', '56\r\n')).toBe('long-line');
  });

  it('does not count a CR split from its LF', () => {
    expect(inspect(long(5), '12345\r', '\n')).toBeUndefined();
    expect(inspect(long(5), '12345', '\r', '\n')).toBeUndefined();
    expect(inspect(long(5), '12345', '\r\n')).toBeUndefined();
  });

  it('counts a bare CR that turned out not to end the line', () => {
    expect(inspect(long(5), '12345\r', 'x\r\n')).toBe('long-line');
    expect(inspect(long(5), '123\r', 'x\r\n')).toBeUndefined();
  });

  it('treats a bare LF as the line end', () => {
    expect(inspect(long(3), 'abc\nabc\n')).toBeUndefined();
    expect(inspect(long(3), 'abcd\n')).toBe('long-line');
  });

  it('starts counting afresh after each line end', () => {
    const inspector = long(4);
    for (let i = 0; i < 100; i++) expect(inspector.inspect(bytes('abcd\r\n'))).toBeUndefined();
  });
});

describe('TextInspector against a plain reference', () => {
  it('gives the same verdict for every short text over {CR, LF, a}, whole or cut anywhere', () => {
    const alphabet = ['\r', '\n', 'a'];
    let texts = [''];
    const wrong: string[] = [];
    for (let length = 1; length <= 7; length++) {
      texts = texts.flatMap((t) => alphabet.map((c) => t + c));
      for (const core of texts) {
        const text = `${core}\r\n`;
        const splits: string[][] = [[text], [...text]];
        for (let cut = 1; cut < text.length; cut++) splits.push([text.slice(0, cut), text.slice(cut)]);
        for (const pieces of splits) {
          if ((inspect(bare(), ...pieces) === 'bare-newline') !== hasBareNewline(text))
            wrong.push(`bare ${JSON.stringify(pieces)}`);
          if ((inspect(long(2), ...pieces) === 'long-line') !== hasLongLine(text, 2))
            wrong.push(`long ${JSON.stringify(pieces)}`);
          const both = inspect(new TextInspector(true, 2), ...pieces) !== undefined;
          if (both !== (hasBareNewline(text) || hasLongLine(text, 2)))
            wrong.push(`both ${JSON.stringify(pieces)}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });
});

describe('maxDataLineLength seen through the Protocol', () => {
  it('refuses a message with a line over the limit with 554 5.6.0 after the final dot, then goes on', async () => {
    const s = open({ maxDataLineLength: 10 });
    await send(s, `${envelopeLines()}DATA\r\n0123456789\r\n`, '0123456789', 'A\r\n.\r\n');
    const replies = parseReplies(s.transcript);
    expect(replies.map((r) => r.code)).toEqual([220, 250, 250, 250, 354, 554]);
    expect(replies[5].raw).toBe('554 5.6.0 Error: message contains a line longer than 10 octets');
    expect(s.delivered).toHaveLength(0);
    await send(s, 'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n0123456789\r\n..23456789\r\n.\r\n');
    expect(codes(s.transcript).slice(6)).toEqual([250, 250, 354, 250]);
    expect(s.delivered[0].bytes.toString()).toBe('0123456789\r\n.23456789\r\n');
  });

  it('does not apply to BDAT, which is binary-clean', async () => {
    const s = open({ maxDataLineLength: 10, bareNewlines: 'reject' });
    await send(s, `${envelopeLines()}BDAT 22 LAST\r\n${'x'.repeat(20)}\n\r`);
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 250]);
    expect(s.delivered[0].bytes.length).toBe(22);
  });
});
