import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import {
  TRANSCRIPT_HEADER,
  escapeBytes,
  formatRecord,
  formatTranscript,
  parseTlsPayload,
  formatTlsPayload,
  parseTranscript,
  unescapeBytes,
  type RecordDirection,
  type Transcript,
} from '../../lib/record/transcript';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'transcripts');

describe('escapeBytes / unescapeBytes', () => {
  it('escapes each of the 256 byte values as specified', () => {
    for (let b = 0; b < 256; b++) {
      const escaped = escapeBytes(Buffer.from([b]));
      let expected: string;
      if (b === 0x0d) expected = '\\r';
      else if (b === 0x0a) expected = '\\n';
      else if (b === 0x00) expected = '\\0';
      else if (b === 0x5c) expected = '\\\\';
      else if (b >= 0x20 && b <= 0x7e) expected = String.fromCharCode(b);
      else expected = '\\x' + b.toString(16).padStart(2, '0');
      expect(escaped).toBe(expected);
      expect(unescapeBytes(escaped)).toEqual(Buffer.from([b]));
    }
  });

  it('round-trips all 256 byte values in one buffer', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const escaped = escapeBytes(all);
    expect(escaped).toMatch(/^[\x20-\x7e]*$/);
    expect(unescapeBytes(escaped)).toEqual(all);
  });

  it('round-trips random buffers', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const escaped = escapeBytes(bytes);
        expect(escaped).not.toMatch(/[^\x20-\x7e]/);
        expect(unescapeBytes(escaped)).toEqual(Buffer.from(bytes));
      }),
      { numRuns: 500 },
    );
  });

  it('accepts upper-case hex', () => {
    expect(unescapeBytes('\\xFF\\xAb')).toEqual(Buffer.from([0xff, 0xab]));
  });

  it.each([
    ['a\\q', /unknown escape/],
    ['a\\', /lone backslash/],
    ['\\x4', /invalid \\x escape/],
    ['\\xg0', /invalid \\x escape/],
    ['tab\there', /invalid character/],
    ['caf\u00e9', /invalid character/],
  ])('rejects %j', (text, message) => {
    expect(() => unescapeBytes(text)).toThrow(message);
  });
});

const directions: RecordDirection[] = ['C', 'S', 'T', '!'];
const recordArb = fc.record({
  time: fc.nat({ max: 10_000_000 }),
  dir: fc.constantFrom(...directions),
  data: fc.uint8Array({ maxLength: 120 }).map((a) => Buffer.from(a)),
});
const metadataArb = fc.dictionary(
  fc.stringMatching(/^[a-z][a-z0-9_.-]{0,10}$/),
  fc.string({ maxLength: 40, unit: 'binary' }),
  { maxKeys: 5 },
);

describe('formatRecord / parseTranscript', () => {
  it('formats records as "<ms> <dir> <escaped>"', () => {
    expect(formatRecord({ time: 12, dir: 'C', data: Buffer.from('EHLO x\r\n') })).toBe('12 C EHLO x\\r\\n');
    expect(formatRecord({ time: 0, dir: 'E', data: Buffer.alloc(0) })).toBe('0 E');
    // No line ends in a space: the last one is written \x20.
    expect(formatRecord({ time: 1, dir: 'C', data: Buffer.from('MAIL ') })).toBe('1 C MAIL\\x20');
    expect(() => formatRecord({ time: -1, dir: 'C', data: Buffer.alloc(0) })).toThrow(RangeError);
    expect(() => formatRecord({ time: 1.5, dir: 'C', data: Buffer.alloc(0) })).toThrow(RangeError);
  });

  it('parse(format(x)) == x', () => {
    fc.assert(
      fc.property(
        metadataArb,
        fc.array(recordArb, { maxLength: 30 }),
        fc.boolean(),
        (metadata, records, end) => {
          const transcript: Transcript = {
            version: 1,
            metadata,
            records: end ? [...records, { time: 99_999_999, dir: 'E', data: Buffer.alloc(0) }] : records,
          };
          const text = formatTranscript(transcript);
          expect(text.startsWith(TRANSCRIPT_HEADER + '\n')).toBe(true);
          // line-oriented: one line per record plus the header block
          expect(text.split('\n').length).toBe(
            1 + Object.keys(metadata).length + transcript.records.length + 1,
          );
          expect(text).not.toMatch(/ \n/);
          const parsed = parseTranscript(text);
          expect(parsed.version).toBe(1);
          expect(parsed.metadata).toEqual(metadata);
          expect(parsed.records).toEqual(transcript.records);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('tolerates CRLF file line endings, blank lines and comments', () => {
    const text = [
      TRANSCRIPT_HEADER,
      '# started: 2024-05-01T12:00:00.000Z',
      '# this line is a comment',
      '',
      '0 S 220 ok\\r\\n',
      '# another comment',
      '5 C QUIT\\r\\n',
      '6 E',
    ].join('\r\n');
    const t = parseTranscript(text);
    expect(t.metadata).toEqual({ started: '2024-05-01T12:00:00.000Z' });
    expect(t.records.map((r) => [r.time, r.dir, r.data.toString('latin1')])).toEqual([
      [0, 'S', '220 ok\r\n'],
      [5, 'C', 'QUIT\r\n'],
      [6, 'E', ''],
    ]);
  });

  it.each([
    ['', 1, /expected header/],
    ['# smtp-session-stream transcript 2\n', 1, /unsupported transcript version 2/],
    [`${TRANSCRIPT_HEADER}\n0 C ok\n1 X nope\n`, 3, /unknown direction "X"/],
    [`${TRANSCRIPT_HEADER}\n0 C ok\nabc C x\n`, 3, /expected "<ms> <dir> <payload>"/],
    [`${TRANSCRIPT_HEADER}\n01 C x\n`, 2, /expected/],
    [`${TRANSCRIPT_HEADER}\n-1 C x\n`, 2, /expected/],
    [`${TRANSCRIPT_HEADER}\n0 C a\\q\n`, 2, /unknown escape/],
    [`${TRANSCRIPT_HEADER}\n0 C a\tb\n`, 2, /invalid character/],
    [`${TRANSCRIPT_HEADER}\n0 E\n1 C x\n`, 3, /after the end/],
    [`${TRANSCRIPT_HEADER}\n0 E x\n`, 2, /no payload/],
    [`${TRANSCRIPT_HEADER}\n0 C x\n# remote: 1.2.3.4:5\n`, 3, /metadata line after/],
    [`${TRANSCRIPT_HEADER}\n# a: 1\n# a: 2\n`, 3, /duplicate metadata key/],
    [`${TRANSCRIPT_HEADER}\n99999999999999999999 C x\n`, 2, /out of range/],
  ])('rejects malformed input %#', (text, line, message) => {
    expect(() => parseTranscript(text)).toThrow(new RegExp(`^transcript line ${line}: `));
    expect(() => parseTranscript(text)).toThrow(message);
  });

  it('formats and parses TLS payloads', () => {
    const data = formatTlsPayload({ protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' });
    expect(data.toString()).toBe('TLSv1.3 TLS_AES_256_GCM_SHA384');
    expect(parseTlsPayload(data)).toEqual({ protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' });
    expect(parseTlsPayload(formatTlsPayload({}))).toEqual({ protocol: null, cipher: null });
  });

  it('parses the example in FORMAT.md', () => {
    const doc = fs.readFileSync(path.join(__dirname, '..', '..', 'lib', 'record', 'FORMAT.md'), 'utf8');
    const example = /```text\n(# smtp-session-stream transcript 1\n[\s\S]*?)```/.exec(doc)![1];
    const t = parseTranscript(example);
    expect(formatTranscript(t)).toBe(example);
    expect(t.records.map((r) => r.dir).join('')).toBe('SCSSSCSTCS!SCCCSSSCCCCSCSE');
    expect(t.records[18].data.toString('utf8')).toBe('Subject: caf\u00e9\r\n');
  });

  it('parses every fixture transcript and formats it back identically', () => {
    const files = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.txt'));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const text = fs.readFileSync(path.join(FIXTURES, file), 'utf8');
      const parsed = parseTranscript(text);
      expect(formatTranscript(parsed)).toBe(text);
    }
  });
});
