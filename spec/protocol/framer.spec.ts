import { Framer, FrameType, type Frame } from '../../lib/protocol/framer';
import { bytes, codes, open, ownBuffer, parseReplies, prng, pump, referenceDotText, send } from './drive';

const LIMITS = { maxLineLength: 512, hardLineCap: 256 * 1024 };

/** Every frame `next()` has ready now. */
function drain(framer: Framer): Frame[] {
  const frames: Frame[] = [];
  for (let frame = framer.next(); frame !== undefined; frame = framer.next()) frames.push(frame);
  return frames;
}

/**
 * A readable summary of the frames: consecutive Body chunks joined (their cut points depend on how
 * the input was split, their content must not), other frames as tags.
 */
function summarize(frames: Frame[]): string[] {
  const out: string[] = [];
  let text: string | undefined;
  const flush = () => {
    if (text !== undefined) out.push(`BODY:${JSON.stringify(text)}`);
    text = undefined;
  };
  for (const frame of frames) {
    if (frame.type === FrameType.Body) {
      text = (text ?? '') + frame.chunk.toString('latin1');
      continue;
    }
    flush();
    if (frame.type === FrameType.Line)
      out.push(`LINE:${JSON.stringify(frame.line.toString('latin1'))}${frame.bareLf ? ':LF' : ''}`);
    else if (frame.type === FrameType.LineTooLong) out.push('TOO-LONG');
    else if (frame.type === FrameType.Overflow) out.push('OVERFLOW');
    else out.push('END');
  }
  flush();
  return out;
}

/**
 * DATA text fed in `pieces`; returns the summary of all frames. Eager: every frame is taken after
 * each push. Lazy: at most one frame is taken per push (as when the core waits for a slow consumer
 * while more input arrives), the rest at the end.
 */
function feedText(pieces: Buffer[], lazy = false): string[] {
  const framer = new Framer(LIMITS);
  framer.startDotData();
  const frames: Frame[] = [];
  for (const piece of pieces) {
    framer.push(piece);
    if (!lazy) frames.push(...drain(framer));
    else {
      const frame = framer.next();
      if (frame !== undefined) frames.push(frame);
    }
  }
  frames.push(...drain(framer));
  return summarize(frames);
}

function splitAt(input: Buffer, ...cuts: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  let from = 0;
  for (const cut of cuts) {
    pieces.push(input.subarray(from, cut));
    from = cut;
  }
  pieces.push(input.subarray(from));
  return pieces;
}

function byteByByte(input: Buffer): Buffer[] {
  return [...input].map((b) => Buffer.from([b]));
}

/** What the reference model says the frames of `input` (DATA, then command lines) are. */
function expectedText(input: Buffer): string[] {
  const ref = referenceDotText(input);
  if (ref === undefined) throw new Error('test input must be complete');
  const out: string[] = [];
  if (ref.text.length > 0) out.push(`BODY:${JSON.stringify(ref.text.toString('latin1'))}`);
  out.push('END');
  const framer = new Framer(LIMITS);
  framer.push(ref.rest);
  return [...out, ...summarize(drain(framer))];
}

/**
 * The splits of `input` (every one-cut or two-cut split, plus one byte per push) whose frames differ
 * from `expected`; compared as strings so that thousands of splits stay fast.
 */
function mismatches(input: Buffer, expected: string[], cuts: 1 | 2): string[] {
  const want = expected.join('|');
  const bad: string[] = [];
  const check = (name: string, pieces: Buffer[]) => {
    const got = feedText(pieces).join('|');
    if (got !== want) bad.push(`${name}: ${got}`);
    const lazy = feedText(pieces, true).join('|');
    if (lazy !== want) bad.push(`${name} (lazy): ${lazy}`);
  };
  check('whole', [input]);
  check('bytes', byteByByte(input));
  for (let a = 0; a <= input.length; a++) {
    if (cuts === 1) check(`cut ${a}`, splitAt(input, a));
    else for (let b = a; b <= input.length; b++) check(`cuts ${a},${b}`, splitAt(input, a, b));
  }
  return bad;
}

describe('Framer: command lines', () => {
  it('cuts CRLF-terminated lines and flags bare LF ones', () => {
    const framer = new Framer(LIMITS);
    framer.push(bytes('EHLO a\r\nNOOP\nRSET\r\n\r\n\n'));
    expect(summarize(drain(framer))).toEqual([
      'LINE:"EHLO a"',
      'LINE:"NOOP":LF',
      'LINE:"RSET"',
      'LINE:""',
      'LINE:"":LF',
    ]);
    expect(framer.buffered).toBe(0);
  });

  it('keeps an unterminated line until its LF arrives', () => {
    const framer = new Framer(LIMITS);
    framer.push(bytes('MAIL FROM:<a@b>'));
    expect(framer.next()).toBeUndefined();
    expect(framer.buffered).toBe(15);
    framer.push(bytes('\r'));
    expect(framer.next()).toBeUndefined();
    framer.push(bytes('\nRC'));
    expect(summarize(drain(framer))).toEqual(['LINE:"MAIL FROM:<a@b>"']);
    expect(framer.buffered).toBe(2);
  });

  it('gives the same lines whatever the split, down to one byte per push', () => {
    const input = bytes('EHLO c.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\nDATA\r\n');
    const whole = new Framer(LIMITS);
    whole.push(input);
    const expected = summarize(drain(whole));
    expect(expected).toHaveLength(4);
    for (let cut = 0; cut <= input.length; cut++) {
      const framer = new Framer(LIMITS);
      const frames: Frame[] = [];
      for (const piece of splitAt(input, cut)) {
        framer.push(piece);
        frames.push(...drain(framer));
      }
      expect(summarize(frames)).toEqual(expected);
    }
    const framer = new Framer(LIMITS);
    const frames: Frame[] = [];
    for (const piece of byteByByte(input)) {
      framer.push(piece);
      frames.push(...drain(framer));
    }
    expect(summarize(frames)).toEqual(expected);
  });

  it('takes a line of exactly maxLineLength and refuses one byte more, after its LF', () => {
    const limits = { maxLineLength: 10, hardLineCap: 1000 };
    const framer = new Framer(limits);
    framer.push(bytes(`${'a'.repeat(10)}\r\n${'b'.repeat(11)}\r\n${'c'.repeat(11)}\nNOOP\r\n`));
    expect(summarize(drain(framer))).toEqual([
      `LINE:"${'a'.repeat(10)}"`,
      'TOO-LONG',
      'TOO-LONG',
      'LINE:"NOOP"',
    ]);
  });

  it('does not count a CR that waits for its LF in another push', () => {
    const framer = new Framer({ maxLineLength: 10, hardLineCap: 1000 });
    framer.push(bytes(`${'a'.repeat(10)}\r`));
    expect(framer.next()).toBeUndefined();
    framer.push(bytes('\n'));
    expect(summarize(drain(framer))).toEqual([`LINE:"${'a'.repeat(10)}"`]);
  });

  it('drops an overlong line as it arrives: memory stays bounded, LineTooLong comes after the LF', () => {
    const framer = new Framer({ maxLineLength: 512, hardLineCap: 2 * 1024 * 1024 });
    const piece = Buffer.alloc(1024, 0x41);
    let maxBuffered = 0;
    for (let i = 0; i < 1024; i++) {
      framer.push(piece);
      expect(framer.next()).toBeUndefined();
      maxBuffered = Math.max(maxBuffered, framer.buffered);
    }
    expect(maxBuffered).toBeLessThanOrEqual(1024);
    framer.push(bytes('AAAA\r\nNOOP\r\n'));
    expect(summarize(drain(framer))).toEqual(['TOO-LONG', 'LINE:"NOOP"']);
    expect(framer.buffered).toBe(0);
  });

  it('reports Overflow once an unterminated line passes the hard cap', () => {
    const framer = new Framer({ maxLineLength: 512, hardLineCap: 4096 });
    const piece = Buffer.alloc(1024, 0x41);
    const seen: string[][] = [];
    for (let i = 0; i < 5; i++) {
      framer.push(piece);
      seen.push(summarize(drain(framer)));
    }
    expect(seen).toEqual([[], [], [], [], ['OVERFLOW']]);
    expect(framer.buffered).toBe(0);
  });

  it('hands out lines as views of the pushed Buffer (no copy)', () => {
    const pushed = ownBuffer('NOOP\r\nRSET\r\n');
    const framer = new Framer(LIMITS);
    framer.push(pushed);
    const frames = drain(framer);
    for (const frame of frames) {
      if (frame.type !== FrameType.Line) throw new Error('expected lines');
      expect(frame.line.buffer === pushed.buffer).toBe(true);
    }
    expect(frames).toHaveLength(2);
  });

  it('clear() drops and counts what is buffered; takeRest() returns it', () => {
    const framer = new Framer(LIMITS);
    framer.push(bytes('NOOP\r\npartial'));
    expect(summarize(drain(framer))).toEqual(['LINE:"NOOP"']);
    expect(framer.clear()).toBe(7);
    expect(framer.buffered).toBe(0);
    framer.push(bytes('NOOP\r\nRSET\r\nQU'));
    framer.next();
    expect(framer.takeRest().toString('latin1')).toBe('RSET\r\nQU');
    expect(framer.buffered).toBe(0);
    expect(framer.next()).toBeUndefined();
  });

  it('ignores empty pushes', () => {
    const framer = new Framer(LIMITS);
    framer.push(bytes('NO'));
    framer.push(Buffer.alloc(0));
    framer.push(bytes('OP\r\n'));
    expect(summarize(drain(framer))).toEqual(['LINE:"NOOP"']);
  });
});

describe('Framer: DATA text', () => {
  it('ends only at CRLF.CRLF and keeps the CRLF before the final dot', () => {
    expect(feedText([bytes('Subject: x\r\n\r\nhello\r\n.\r\n')])).toEqual([
      'BODY:"Subject: x\\r\\n\\r\\nhello\\r\\n"',
      'END',
    ]);
  });

  it('reads an empty message', () => {
    expect(feedText([bytes('.\r\n')])).toEqual(['END']);
  });

  it('removes a leading dot from every line, the first one included', () => {
    expect(feedText([bytes('..first\r\n..\r\n...\r\nmid.dle\r\n.\r\n')])).toEqual([
      'BODY:".first\\r\\n.\\r\\n..\\r\\nmid.dle\\r\\n"',
      'END',
    ]);
  });

  it.each([
    ['<LF>.<LF>', 'a\n.\nb'],
    ['<CR>.<CR>', 'a\r.\rb'],
    ['<CR>.<CR><LF>', 'a\r.\r\nb'],
    ['<LF>.<CR><LF>', 'a\n.\r\nb'],
    ['<CR><LF>.<LF>', 'a\r\n.\nb'],
    ['<CR><LF>.<CR>', 'a\r\n.\rb'],
  ])('does not end the text at %s', (_name, text) => {
    const frames = feedText([bytes(`${text}\r\nMAIL FROM:<evil@x>\r\n`)]);
    expect(frames).not.toContain('END');
    expect(frames).toHaveLength(1);
  });

  it('returns to command lines right after the final dot (pipelined commands in the same chunk)', () => {
    const framer = new Framer(LIMITS);
    framer.startDotData();
    framer.push(bytes('hi\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n'));
    expect(framer.readingText).toBe(true);
    expect(summarize([framer.next() as Frame, framer.next() as Frame])).toEqual(['BODY:"hi\\r\\n"', 'END']);
    expect(framer.readingText).toBe(false);
    expect(summarize([framer.next() as Frame])).toEqual(['LINE:"MAIL FROM:<a@b>"']);
    expect(framer.takeRest().toString('latin1')).toBe('RCPT TO:<c@d>\r\n');
  });

  const tricky = [
    '\r\n.\r\n',
    '.\r\n',
    '..\r\n',
    '\r\n..x',
    '\r\n.\r',
    '\r.\r',
    '\n.\n',
    '\r\n.\rx',
    '\r\n.',
  ];
  const contexts = [
    (t: string) => `${t}\r\n.\r\nNOOP\r\n`,
    (t: string) => `a${t}b\r\n.\r\nNOOP\r\n`,
    (t: string) => `x\r\n${t}\r\n.\r\nQUIT\r\n`,
  ];
  for (const t of tricky) {
    for (const [i, context] of contexts.entries()) {
      it(`gives the same frames for ${JSON.stringify(t)} (context ${i}) whatever the split`, () => {
        const input = bytes(context(t));
        const expected = expectedText(input);
        expect(feedText([input])).toEqual(expected);
        expect(feedText(byteByByte(input))).toEqual(expected);
        expect(mismatches(input, expected, 2)).toEqual([]);
      });
    }
  }

  it('agrees with the reference model on every short text over {CR, LF, ., a}, split anywhere', () => {
    const alphabet = ['\r', '\n', '.', 'a'];
    let texts = [''];
    let checked = 0;
    for (let length = 1; length <= 5; length++) {
      texts = texts.flatMap((t) => alphabet.map((c) => t + c));
      for (const text of texts) {
        const input = bytes(`${text}\r\n.\r\nNOOP\r\n`);
        expect(mismatches(input, expectedText(input), 1)).toEqual([]);
        checked++;
      }
    }
    expect(checked).toBe(4 + 16 + 64 + 256 + 1024);
  });

  it('agrees with the reference model on longer random texts cut into random pieces', () => {
    const random = prng(5321);
    const alphabet = ['\r', '\n', '.', 'a', '\r\n', '\r\n.', '\r\n..', '\x00', '\xff'];
    for (let run = 0; run < 300; run++) {
      let text = '';
      const length = Math.floor(random() * 60);
      for (let i = 0; i < length; i++) text += alphabet[Math.floor(random() * alphabet.length)];
      const input = bytes(`${text}\r\n.\r\nRSET\r\n`);
      const cuts: number[] = [];
      for (let at = 0; at < input.length; at += 1 + Math.floor(random() * 6)) cuts.push(at);
      expect(feedText(splitAt(input, ...cuts))).toEqual(expectedText(input));
    }
  });

  it('hands out text as views of the pushed Buffer when no dot is removed', () => {
    const pushed = ownBuffer('line one\r\ntwo\r\n.\r\n');
    const framer = new Framer(LIMITS);
    framer.startDotData();
    framer.push(pushed);
    const frames = drain(framer);
    const bodies = frames.filter((f) => f.type === FrameType.Body);
    expect(bodies).toHaveLength(1);
    for (const frame of bodies) expect(frame.chunk.buffer === pushed.buffer).toBe(true);
    expect(summarize(frames)).toEqual(['BODY:"line one\\r\\ntwo\\r\\n"', 'END']);
  });

  it('keeps the commands that arrive after the final dot before the last frame was taken', () => {
    const framer = new Framer(LIMITS);
    framer.startDotData();
    framer.push(bytes('..stuffed\r\n.\r\n'));
    expect(summarize([framer.next() as Frame])).toEqual(['BODY:".stuffed\\r\\n"']);
    framer.push(bytes('NOOP\r\n'));
    expect(summarize(drain(framer))).toEqual(['END', 'LINE:"NOOP"']);
  });

  it('joins the text of one chunk into one frame when dots are removed', () => {
    const framer = new Framer(LIMITS);
    framer.startDotData();
    framer.push(ownBuffer('line one\r\n..two\r\n..three\r\nfour\r\n.\r\n'));
    const frames = drain(framer);
    expect(summarize(frames)).toEqual(['BODY:"line one\\r\\n.two\\r\\n.three\\r\\nfour\\r\\n"', 'END']);
  });

  it('copies nothing for a large text pushed in large pieces', () => {
    const piece = ownBuffer(Buffer.alloc(64 * 1024, 'x\r\n'));
    const framer = new Framer(LIMITS);
    framer.startDotData();
    framer.push(piece);
    const frames = drain(framer);
    expect(frames.every((f) => f.type === FrameType.Body && f.chunk.buffer === piece.buffer)).toBe(true);
    expect(frames.reduce((n, f) => n + (f.type === FrameType.Body ? f.chunk.length : 0), 0)).toBe(
      piece.length,
    );
    expect(framer.buffered).toBe(0);
  });
});

describe('Framer: BDAT chunks', () => {
  it('hands out exactly the announced number of bytes, then reads lines again', () => {
    const framer = new Framer(LIMITS);
    framer.startChunk(8);
    framer.push(bytes('\r\n.\r\n\x00\xffabNOOP\r\n'));
    expect(summarize(drain(framer))).toEqual(['BODY:"\\r\\n.\\r\\n\\u0000ÿa"', 'END', 'LINE:"bNOOP"']);
  });

  it('counts bytes across pushes, one byte at a time', () => {
    const input = bytes('0123456789RSET\r\n');
    const framer = new Framer(LIMITS);
    framer.startChunk(10);
    const frames: Frame[] = [];
    for (const piece of byteByByte(input)) {
      framer.push(piece);
      frames.push(...drain(framer));
    }
    expect(summarize(frames)).toEqual(['BODY:"0123456789"', 'END', 'LINE:"RSET"']);
  });

  it('ends a 0-byte chunk at once, without input', () => {
    const framer = new Framer(LIMITS);
    framer.startChunk(0);
    expect(framer.readingText).toBe(true);
    expect(summarize(drain(framer))).toEqual(['END']);
    expect(framer.readingText).toBe(false);
  });

  it('waits for more when the chunk is not complete', () => {
    const framer = new Framer(LIMITS);
    framer.startChunk(5);
    expect(framer.next()).toBeUndefined();
    framer.push(bytes('ab'));
    expect(summarize(drain(framer))).toEqual(['BODY:"ab"']);
    framer.push(bytes('cde'));
    expect(summarize(drain(framer))).toEqual(['BODY:"cde"', 'END']);
  });

  it('hands out chunk bytes as views of the pushed Buffer', () => {
    const pushed = ownBuffer('abcdefNOOP\r\n');
    const framer = new Framer(LIMITS);
    framer.startChunk(6);
    framer.push(pushed);
    const frame = framer.next();
    if (frame?.type !== FrameType.Body) throw new Error('expected a Body frame');
    expect(frame.chunk.buffer === pushed.buffer).toBe(true);
    expect(frame.chunk.toString()).toBe('abcdef');
  });
});

describe('Framer limits seen through the Protocol', () => {
  it('refuses an overlong command line with 500 after its LF and goes on', async () => {
    const s = open();
    const replies = await send(s, `NOOP ${'x'.repeat(600)}\r\n`, 'NOOP\r\n');
    expect(parseReplies(replies).map((r) => r.raw)).toEqual([
      '500 5.5.2 Error: line too long',
      '250 2.0.0 Ok',
    ]);
  });

  it('keeps bufferedInput small while a 1 MB unterminated line arrives in 1 KB pieces, then closes with 421', async () => {
    const s = open();
    const piece = Buffer.alloc(1024, 0x41);
    let maxBuffered = 0;
    let closedAt = -1;
    for (let i = 0; i < 1024 && closedAt < 0; i++) {
      const out = await send(s, piece);
      maxBuffered = Math.max(maxBuffered, s.p.bufferedInput);
      if (out !== '') closedAt = i;
    }
    expect(maxBuffered).toBeLessThanOrEqual(12288 + 1024);
    // The default hard cap is 256 KiB.
    expect(closedAt).toBe(256);
    expect(parseReplies(s.transcript).map((r) => r.raw)).toEqual([
      '220 mx.test ESMTP smtp-session-stream',
      '421 4.7.0 mx.test Error: line too long, closing connection',
    ]);
    expect(s.actions).toEqual(['close']);
    expect(s.p.bufferedInput).toBe(0);
    expect(await send(s, 'NOOP\r\n')).toBe('');
  });

  it('keeps commands that arrive while the core waits for a slow consumer after dot-stuffed text', async () => {
    const s = open({ bodyHighWaterMark: 4 });
    await send(s, 'EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n');
    // The text fills the body channel: the core stops and waits for the consumer…
    s.p.receive(bytes('..stuffed line\r\n.\r\n'));
    const first = s.p.run();
    expect(first.output).toBeNull();
    expect(first.pending).not.toBeNull();
    // …while the stream keeps receiving the next commands.
    s.p.receive(bytes('NOOP\r\nQUIT\r\n'));
    await first.pending;
    await pump(s);
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 250, 250, 221]);
    expect(s.delivered[0].bytes.toString()).toBe('.stuffed line\r\n');
  });

  it('honours a configured hardLineCap', async () => {
    const s = open({ hardLineCap: 20000 });
    await send(s, 'EHLO c.test\r\n', Buffer.alloc(15000, 0x41));
    expect(codes(s.transcript)).toEqual([220, 250]);
    await send(s, Buffer.alloc(6000, 0x41));
    expect(codes(s.transcript)).toEqual([220, 250, 421]);
  });
});
