import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import fc from 'fast-check';
import {
  FILE_HIGH_WATER_MARK,
  MAX_PENDING,
  proxyMetadata,
  recordSession,
  recordToFile,
  type RecorderOptions,
  type SecureInfo,
} from '../../lib/record/recorder';
import { parseTranscript } from '../../lib/record/transcript';
import { FakeSession } from './helpers/script-server';
import { within } from '../stream/helpers';

type Event = ['input' | 'output', Buffer] | ['secure', SecureInfo] | ['close'];

const C = (s: string | Buffer): Event => ['input', Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1')];
const S = (s: string): Event => ['output', Buffer.from(s, 'latin1')];
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

function newSession() {
  return new FakeSession('192.0.2.1', 50000, '192.0.2.25', 25);
}

/** Records `events` on a fake session with a constant clock; returns the file contents. */
function record(events: Event[], options: RecorderOptions = {}): string {
  const session = newSession();
  const lines: string[] = [];
  recordSession(session, (line) => lines.push(line), { clock: () => 0, startedAt: new Date(0), ...options });
  for (const event of events) {
    if (event[0] === 'close') session.emit('close');
    else session.emit(event[0], event[1]);
  }
  session.emit('close');
  return lines.join('\n') + '\n';
}

/** Only the record lines, without the header block. */
function body(text: string): string[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
}

function bytewise(events: Event[]): Event[] {
  return events.flatMap((e): Event[] =>
    e[0] === 'input' || e[0] === 'output' ? [...e[1]].map((b) => [e[0], Buffer.from([b])] as Event) : [e],
  );
}

/** Every way of cutting one chunk of `events` in two. */
function* singleSplits(events: Event[]): Generator<Event[]> {
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    if (e[0] !== 'input' && e[0] !== 'output') continue;
    for (let p = 1; p < e[1].length; p++) {
      yield [
        ...events.slice(0, i),
        [e[0], e[1].subarray(0, p)],
        [e[0], e[1].subarray(p)],
        ...events.slice(i + 1),
      ];
    }
  }
}

const SECRETS = [
  's3cret',
  'alice\0s3cret',
  b64('\0alice\0s3cret'),
  b64('alice'),
  b64('s3cret'),
  'ya29.tok3n',
];
const SECRETS_B64 = [
  b64('user=alice\x01auth=Bearer ya29.tok3n\x01\x01'),
  b64('alice 348cf5e23a0d7a0cd3bd3e8ee82b0eb4'),
];

function expectNoSecrets(text: string) {
  const decoded = parseTranscript(text)
    .records.map((r) => r.data.toString('latin1'))
    .join('');
  for (const secret of [...SECRETS, ...SECRETS_B64]) {
    expect(text).not.toContain(secret);
    expect(decoded).not.toContain(secret);
  }
}

/** A session exercising pipelining, DATA, BDAT, and every redacted AUTH flavour. */
const SESSION: Event[] = [
  S('220 mx.example ESMTP\r\n'),
  C('EHLO client.example\r\n'),
  S('250-mx.example\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r\n'),
  // PLAIN with an initial response
  C(`AUTH PLAIN ${b64('\0alice\0s3cret')}\r\n`),
  S('535 5.7.8 try again\r\n'),
  // PLAIN with a continuation
  C('auth plain\r\n'),
  S('334 \r\n'),
  C(`${b64('\0alice\0s3cret')}\r\n`),
  S('535 5.7.8 try again\r\n'),
  // LOGIN
  C('AUTH LOGIN\r\n'),
  S(`334 ${b64('Username:')}\r\n`),
  C(`${b64('alice')}\r\n`),
  S(`334 ${b64('Password:')}\r\n`),
  C(`${b64('s3cret')}\r\n`),
  S('535 5.7.8 try again\r\n'),
  // CRAM-MD5 (RFC 2195 example challenge)
  C('AUTH CRAM-MD5\r\n'),
  S('334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n'),
  C(`${b64('alice 348cf5e23a0d7a0cd3bd3e8ee82b0eb4')}\r\n`),
  S('535 5.7.8 try again\r\n'),
  // XOAUTH2: initial response, error challenge, empty answer
  C(`AUTH XOAUTH2 ${b64('user=alice\x01auth=Bearer ya29.tok3n\x01\x01')}\r\n`),
  S(`334 ${b64('{"status":"401"}')}\r\n`),
  C('\r\n'),
  S('535 5.7.8 try again\r\n'),
  // cancelled LOGIN: the * is kept
  C('AUTH LOGIN\r\n'),
  S(`334 ${b64('Username:')}\r\n`),
  C('*\r\n'),
  S('501 5.0.0 cancelled\r\n'),
  C(`AUTH PLAIN ${b64('\0alice\0s3cret')}\r\n`),
  S('235 2.7.0 ok\r\n'),
  // pipelined transaction, body with things that look like commands and 8-bit bytes
  C('MAIL FROM:<a@example>\r\nRCPT TO:<b@example>\r\nDATA\r\n'),
  S('250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n'),
  C(Buffer.from('Subject: t\r\n\r\nAUTH PLAIN this-is-body\r\n\xff\x00\\ bytes\r\n..\r\n.\r\n', 'latin1')),
  S('250 2.0.0 queued as ABC\r\n'),
  // BDAT: the chunk is raw bytes, not commands
  C('BDAT 28 LAST\r\nAUTH PLAIN not-a-command\r\nxy'),
  S('250 2.0.0 queued as DEF\r\n'),
  C('QUIT\r\n'),
  S('221 2.0.0 bye\r\n'),
];

const SESSION_RECORDS = [
  '0 S 220 mx.example ESMTP\\r\\n',
  '0 C EHLO client.example\\r\\n',
  '0 S 250-mx.example\\r\\n',
  '0 S 250-PIPELINING\\r\\n',
  '0 S 250-CHUNKING\\r\\n',
  '0 S 250 AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\\r\\n',
  '0 ! AUTH PLAIN <redacted>\\r\\n',
  '0 S 535 5.7.8 try again\\r\\n',
  '0 C auth plain\\r\\n',
  '0 S 334 \\r\\n',
  '0 ! <redacted>\\r\\n',
  '0 S 535 5.7.8 try again\\r\\n',
  '0 C AUTH LOGIN\\r\\n',
  '0 S 334 VXNlcm5hbWU6\\r\\n',
  '0 ! <redacted>\\r\\n',
  '0 S 334 UGFzc3dvcmQ6\\r\\n',
  '0 ! <redacted>\\r\\n',
  '0 S 535 5.7.8 try again\\r\\n',
  '0 C AUTH CRAM-MD5\\r\\n',
  '0 S 334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\\r\\n',
  '0 ! <redacted>\\r\\n',
  '0 S 535 5.7.8 try again\\r\\n',
  '0 ! AUTH XOAUTH2 <redacted>\\r\\n',
  '0 S 334 eyJzdGF0dXMiOiI0MDEifQ==\\r\\n',
  '0 ! <redacted>\\r\\n',
  '0 S 535 5.7.8 try again\\r\\n',
  '0 C AUTH LOGIN\\r\\n',
  '0 S 334 VXNlcm5hbWU6\\r\\n',
  '0 C *\\r\\n',
  '0 S 501 5.0.0 cancelled\\r\\n',
  '0 ! AUTH PLAIN <redacted>\\r\\n',
  '0 S 235 2.7.0 ok\\r\\n',
  '0 C MAIL FROM:<a@example>\\r\\n',
  '0 C RCPT TO:<b@example>\\r\\n',
  '0 C DATA\\r\\n',
  '0 S 250 2.1.0 ok\\r\\n',
  '0 S 250 2.1.5 ok\\r\\n',
  '0 S 354 go ahead\\r\\n',
  '0 C Subject: t\\r\\n',
  '0 C \\r\\n',
  '0 C AUTH PLAIN this-is-body\\r\\n',
  '0 C \\xff\\0\\\\ bytes\\r\\n',
  '0 C ..\\r\\n',
  '0 C .\\r\\n',
  '0 S 250 2.0.0 queued as ABC\\r\\n',
  '0 C BDAT 28 LAST\\r\\n',
  '0 C AUTH PLAIN not-a-command\\r\\n',
  '0 C xy',
  '0 S 250 2.0.0 queued as DEF\\r\\n',
  '0 C QUIT\\r\\n',
  '0 S 221 2.0.0 bye\\r\\n',
  '0 E',
];

describe('SessionRecorder', () => {
  it('writes the header, metadata and one record per line', () => {
    const text = record(SESSION);
    expect(text.split('\n').slice(0, 4)).toEqual([
      '# smtp-session-stream transcript 1',
      '# started: 1970-01-01T00:00:00.000Z',
      '# remote: 192.0.2.1:50000',
      '# local: 192.0.2.25:25',
    ]);
    expect(body(text)).toEqual(SESSION_RECORDS);
    expectNoSecrets(text);
    const parsed = parseTranscript(text);
    expect(parsed.metadata).toEqual({
      started: '1970-01-01T00:00:00.000Z',
      remote: '192.0.2.1:50000',
      local: '192.0.2.25:25',
    });
  });

  it('produces identical files whatever the chunking (every single split position)', () => {
    const baseline = record(SESSION);
    let runs = 0;
    for (const events of singleSplits(SESSION)) {
      const text = record(events);
      if (text !== baseline) expect(text).toBe(baseline); // only build the diff on failure
      runs++;
    }
    expect(runs).toBeGreaterThan(500);
    expect(record(bytewise(SESSION))).toBe(baseline);
  });

  it('produces identical files for random re-chunkings (merged and split chunks)', () => {
    const baseline = record(SESSION);
    // Runs of same-direction events can be merged and cut anywhere without changing the file.
    const runs: Array<{ kind: 'input' | 'output'; data: Buffer }> = [];
    for (const e of SESSION) {
      if (e[0] !== 'input' && e[0] !== 'output') continue;
      const last = runs[runs.length - 1];
      if (last?.kind === e[0]) last.data = Buffer.concat([last.data, e[1]]);
      else runs.push({ kind: e[0], data: e[1] });
    }
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }), {
          minLength: runs.length,
          maxLength: runs.length,
        }),
        (cutsPerRun) => {
          const events: Event[] = [];
          runs.forEach((run, i) => {
            const cuts = [...new Set(cutsPerRun[i].map((c) => Math.floor(c * run.data.length)))].sort(
              (a, b) => a - b,
            );
            let from = 0;
            for (const cut of [...cuts, run.data.length]) {
              if (cut > from) events.push([run.kind, run.data.subarray(from, cut)]);
              from = Math.max(from, cut);
            }
          });
          expect(record(events)).toBe(baseline);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps secrets out of the file even when fed byte by byte', () => {
    expectNoSecrets(record(bytewise(SESSION)));
  });

  it('records everything verbatim with redactAuth: false', () => {
    const text = record(SESSION, { redactAuth: false });
    expect(text).toContain(`0 C AUTH PLAIN ${b64('\0alice\0s3cret')}\\r\\n`);
    expect(text).toContain(`0 C ${b64('s3cret')}\\r\\n`);
    expect(text).not.toContain(' ! ');
    expect(record(bytewise(SESSION), { redactAuth: false })).toBe(text);
  });

  it('redacts SASL lines a client pipelines behind AUTH before the 334 arrives', () => {
    const text = record([S('220 hi\r\n'), C(`AUTH LOGIN\r\n${b64('alice')}\r\n`), S('334 VXNlcm5hbWU6\r\n')]);
    expect(body(text)).toEqual([
      '0 S 220 hi\\r\\n',
      '0 C AUTH LOGIN\\r\\n',
      '0 ! <redacted>\\r\\n',
      '0 S 334 VXNlcm5hbWU6\\r\\n',
      '0 E',
    ]);
  });

  it('keeps bare-LF line endings in the redacted form', () => {
    const text = record([S('220 hi\r\n'), C('AUTH PLAIN c2VjcmV0\n'), S('334 \r\n'), C('c2VjcmV0\n')]);
    expect(body(text)).toContain('0 ! AUTH PLAIN <redacted>\\n');
    expect(body(text)).toContain('0 ! <redacted>\\n');
  });

  it('writes a partial line early when the other side speaks, then continues it', () => {
    const text = record([S('220 hi\r\n'), C('MAI'), S('421 4.4.2 timeout\r\n'), C('L FROM:<>\r\n')]);
    expect(body(text)).toEqual([
      '0 S 220 hi\\r\\n',
      '0 C MAI',
      '0 S 421 4.4.2 timeout\\r\\n',
      '0 C L FROM:<>\\r\\n',
      '0 E',
    ]);
    // a partial server line too
    expect(body(record([S('220 h'), C('EHLO x\r\n'), S('i\r\n')]))).toEqual([
      '0 S 220 h',
      '0 C EHLO x\\r\\n',
      '0 S i\\r\\n',
      '0 E',
    ]);
  });

  it('holds back a partial line that may carry credentials, and redacts it at close', () => {
    const text = record([S('220 hi\r\n'), C('AUTH PLAIN c2Vj'), S('421 bye\r\n'), C('cmV0')]);
    expect(body(text)).toEqual(['0 S 220 hi\\r\\n', '0 S 421 bye\\r\\n', '0 ! AUTH PLAIN <redacted>', '0 E']);
    expect(body(record([S('220 hi\r\n'), C('AUTH LOG')]))).toEqual([
      '0 S 220 hi\\r\\n',
      '0 C AUTH LOG',
      '0 E',
    ]);
  });

  it('bounds what it holds: long plain lines are cut at MAX_PENDING, long AUTH lines stay redacted', () => {
    const long = 'X'.repeat(MAX_PENDING * 2 + 100);
    const text = record([S('220 hi\r\n'), C(`NOOP ${long}\r\n`)]);
    const records = parseTranscript(text).records.filter((r) => r.dir === 'C');
    expect(records.map((r) => r.data.length)).toEqual([
      MAX_PENDING,
      MAX_PENDING,
      5 + long.length + 2 - 2 * MAX_PENDING,
    ]);
    expect(Buffer.concat(records.map((r) => r.data)).toString()).toBe(`NOOP ${long}\r\n`);
    // the cuts do not depend on the chunking
    const chunked = [
      S('220 hi\r\n'),
      ...[...`NOOP ${long}\r\n`.matchAll(/[\s\S]{1,1000}/g)].map((m) => C(m[0])),
    ];
    expect(record(chunked)).toBe(text);

    const secret = 'S'.repeat(MAX_PENDING * 3);
    const auth = record([
      S('220 hi\r\n'),
      ...[...`AUTH PLAIN ${secret}\r\n`.matchAll(/[\s\S]{1,999}/g)].map((m) => C(m[0])),
    ]);
    expect(body(auth)).toEqual(['0 S 220 hi\\r\\n', '0 ! AUTH PLAIN <redacted>\\r\\n', '0 E']);
    // BDAT chunk data without line ends is cut the same way
    const raw = 'R'.repeat(MAX_PENDING + 10);
    const bdat = parseTranscript(
      record([S('220 hi\r\n'), C(`BDAT ${raw.length} LAST\r\n`), C(raw), C('QUIT\r\n')]),
    );
    expect(bdat.records.filter((r) => r.dir === 'C').map((r) => r.data.length)).toEqual([
      `BDAT ${raw.length} LAST\r\n`.length,
      MAX_PENDING,
      10,
      6,
    ]);
    // "AUTH" followed by endless blanks never decides: redact rather than hold forever
    const blanks = record([S('220 hi\r\n'), C(`AUTH${' '.repeat(2000)}x\r\n`)]);
    expect(body(blanks)).toEqual(['0 S 220 hi\\r\\n', '0 ! AUTH <redacted>\\r\\n', '0 E']);
  });

  it('writes T records and forgets the pre-TLS state', () => {
    const text = record([
      S('220 hi\r\n'),
      C('STARTTLS\r\n'),
      S('220 go\r\n'),
      ['secure', { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', servername: 'mx' }],
      C('EHLO x\r\n'),
      ['secure', {}],
    ]);
    expect(body(text)).toEqual([
      '0 S 220 hi\\r\\n',
      '0 C STARTTLS\\r\\n',
      '0 S 220 go\\r\\n',
      '0 T TLSv1.3 TLS_AES_128_GCM_SHA256',
      '0 C EHLO x\\r\\n',
      '0 T - -',
      '0 E',
    ]);
  });

  it('uses the clock for record times, relative to attach time and never decreasing', () => {
    let now = 1000;
    const session = newSession();
    const lines: string[] = [];
    recordSession(session, (l) => lines.push(l), { clock: () => now });
    now = 1003.7;
    session.emit('output', Buffer.from('220 hi\r\n'));
    now = 1010;
    session.emit('input', Buffer.from('NO'));
    now = 1020;
    session.emit('input', Buffer.from('OP\r\n'));
    now = 1005; // a clock going backwards does not make times decrease
    session.emit('output', Buffer.from('250 ok\r\n'));
    now = 1030;
    session.emit('close');
    expect(body(lines.join('\n'))).toEqual([
      '3 S 220 hi\\r\\n',
      '10 C NOOP\\r\\n',
      '20 S 250 ok\\r\\n',
      '30 E',
    ]);
  });

  it('stops at close: one E record, listeners removed, stream sinks ended', async () => {
    const session = newSession();
    const stream = new PassThrough();
    let out = '';
    stream.on('data', (d) => (out += d));
    const ended = new Promise((resolve) => stream.on('end', resolve));
    const recorder = recordSession(session, stream, { clock: () => 0 });
    session.emit('output', Buffer.from('220 hi\r\n'));
    session.emit('close');
    session.emit('close');
    session.emit('input', Buffer.from('late\r\n'));
    await ended;
    expect(recorder.closed).toBe(true);
    expect(session.listenerCount('input')).toBe(0);
    expect(out.endsWith('0 S 220 hi\\r\\n\n0 E\n')).toBe(true);
    expect(parseTranscript(out).records).toHaveLength(2);
  });

  it('stops recording (without throwing into the session) when the sink throws', () => {
    const session = newSession();
    let calls = 0;
    const recorder = recordSession(session, () => {
      if (++calls > 4) throw new Error('disk full');
    });
    expect(() => session.emit('output', Buffer.from('220 hi\r\n'))).not.toThrow();
    expect(recorder.error?.message).toBe('disk full');
    expect(session.listenerCount('output')).toBe(0);
  });

  it('formats IPv6 endpoints and omits unknown ones', () => {
    const session = new FakeSession('::1', 40000, undefined, undefined);
    const lines: string[] = [];
    recordSession(session, (l) => lines.push(l), { metadata: { note: 'multi\nline', remote: 'x' } });
    session.emit('output', Buffer.from('220 hi\r\n'));
    // the recorder's own keys are not replaced (a second `remote` would make the file invalid)
    expect(lines.slice(2, 4)).toEqual(['# remote: [::1]:40000', '# note: multi\\nline']);
    session.emit('close');
    expect(parseTranscript(lines.join('\n') + '\n').metadata.remote).toBe('[::1]:40000');
  });
});

describe('recordToFile', () => {
  it('writes <dir>/<time>-<remote>-<random>.txt and closes it on close', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'record-'));
    try {
      const target = path.join(dir, 'nested');
      const session = new FakeSession('2001:db8::1', 1234, '127.0.0.1', 25);
      const { path: file, done } = recordToFile(session, target, {
        startedAt: new Date('2024-05-01T12:34:56.789Z'),
      });
      expect(path.dirname(file)).toBe(target);
      expect(path.basename(file)).toMatch(/^2024-05-01T12-34-56\.789Z-2001_db8__1-[0-9a-f]{8}\.txt$/);
      session.emit('output', Buffer.from('220 hi\r\n'));
      session.emit('input', Buffer.from(`AUTH PLAIN ${b64('\0alice\0s3cret')}\r\n`));
      session.emit('close');
      await done;
      const transcript = parseTranscript(fs.readFileSync(file, 'utf8'));
      expect(transcript.metadata.remote).toBe('[2001:db8::1]:1234');
      expect(transcript.records.map((r) => [r.dir, r.data.toString()])).toEqual([
        ['S', '220 hi\r\n'],
        ['!', 'AUTH PLAIN <redacted>\r\n'],
        ['E', ''],
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('RecordableSession', () => {
  it('is satisfied by plain EventEmitters and Duplex streams (type-level check)', () => {
    const duplex = Object.assign(new PassThrough(), { remoteAddress: '192.0.2.9', remotePort: 1 });
    const lines: string[] = [];
    const recorder = recordSession(duplex, (l) => lines.push(l), { clock: () => 0 });
    duplex.emit('input', Buffer.from('NOOP\r\n'));
    duplex.emit('close');
    expect(recorder.closed).toBe(true);
    expect(lines.slice(2)).toEqual(['# remote: 192.0.2.9:1', '0 C NOOP\\r\\n', '0 E']);
  });
});

describe('AUTH lines as the server reads them (blanks before the verb, case, trailing blanks)', () => {
  const ir = b64('\0alice\0s3cret');
  const xoauth = b64('user=alice\x01auth=Bearer ya29.tok3n\x01\x01');

  it.each([
    [` AUTH PLAIN ${ir}\r\n`, 'AUTH PLAIN <redacted>\\r\\n'],
    [`\tAUTH PLAIN ${ir}\r\n`, 'AUTH PLAIN <redacted>\\r\\n'],
    [` \t auth\tplain \t${ir}\r\n`, 'auth plain <redacted>\\r\\n'],
    [`Auth Plain ${ir} \r\n`, 'Auth Plain <redacted>\\r\\n'],
    [`  AUTH XOAUTH2 ${xoauth}\n`, 'AUTH XOAUTH2 <redacted>\\n'],
  ])('%j is recorded as a ! line whatever the chunking', (line, redacted) => {
    const events = [S('220 hi\r\n'), C(line), S('235 2.7.0 ok\r\n')];
    const text = record(events);
    expect(body(text)).toEqual(['0 S 220 hi\\r\\n', `0 ! ${redacted}`, '0 S 235 2.7.0 ok\\r\\n', '0 E']);
    expectNoSecrets(text);
    for (const events2 of singleSplits(events)) {
      const again = record(events2);
      if (again !== text) expect(again).toBe(text);
    }
    expect(record(bytewise(events))).toBe(text);
  });

  it('keeps AUTH without an initial response as C (leading or trailing blanks) and redacts the responses', () => {
    const events: Event[] = [
      S('220 hi\r\n'),
      C(' AUTH LOGIN\r\n'),
      S('334 VXNlcm5hbWU6\r\n'),
      C(`${b64('alice')}\r\n`),
      S('334 UGFzc3dvcmQ6\r\n'),
      C(`${b64('s3cret')}\r\n`),
      S('535 5.7.8 no\r\n'),
      // trailing blanks are no initial response (the server trims them)
      C('AUTH PLAIN \r\n'),
      S('334 \r\n'),
      C(`${ir}\r\n`),
      S('535 5.7.8 no\r\n'),
      // the response pipelined behind an AUTH with a leading tab, before its 334
      C(`\tauth plain\r\n${ir}\r\n`),
      S('334 \r\n235 2.7.0 ok\r\n'),
    ];
    const text = record(events);
    expect(body(text)).toEqual([
      '0 S 220 hi\\r\\n',
      '0 C  AUTH LOGIN\\r\\n',
      '0 S 334 VXNlcm5hbWU6\\r\\n',
      '0 ! <redacted>\\r\\n',
      '0 S 334 UGFzc3dvcmQ6\\r\\n',
      '0 ! <redacted>\\r\\n',
      '0 S 535 5.7.8 no\\r\\n',
      '0 C AUTH PLAIN \\r\\n',
      '0 S 334 \\r\\n',
      '0 ! <redacted>\\r\\n',
      '0 S 535 5.7.8 no\\r\\n',
      '0 C \\x09auth plain\\r\\n',
      '0 ! <redacted>\\r\\n',
      '0 S 334 \\r\\n',
      '0 S 235 2.7.0 ok\\r\\n',
      '0 E',
    ]);
    expectNoSecrets(text);
    for (const events2 of singleSplits(events)) {
      const again = record(events2);
      if (again !== text) expect(again).toBe(text);
    }
    expect(record(bytewise(events))).toBe(text);
  });

  it('reads a BDAT with blanks before the verb as BDAT: its chunk is data, never redacted', () => {
    const chunk = 'AUTH PLAIN not-a-command\r\n';
    const text = record([
      S('220 hi\r\n'),
      C(` BDAT ${chunk.length} LAST\r\n${chunk}`),
      S('250 2.0.0 ok\r\n'),
    ]);
    expect(body(text)).toEqual([
      '0 S 220 hi\\r\\n',
      `0 C  BDAT ${chunk.length} LAST\\r\\n`,
      '0 C AUTH PLAIN not-a-command\\r\\n',
      '0 S 250 2.0.0 ok\\r\\n',
      '0 E',
    ]);
  });
});

describe('implicit TLS and PROXY headers', () => {
  it('writes the T record first for a session that is under TLS from the start', () => {
    const session = newSession();
    session.session = { secure: true, tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' } };
    const lines: string[] = [];
    recordSession(session, (l) => lines.push(l), { clock: () => 0 });
    session.emit('output', Buffer.from('220 hi\r\n'));
    session.emit('close');
    expect(body(lines.join('\n'))).toEqual(['0 T TLSv1.3 TLS_AES_256_GCM_SHA384', '0 S 220 hi\\r\\n', '0 E']);
  });

  it('writes the header block once the PROXY header has named the client', () => {
    // The connection comes from the proxy; the header says who the client is.
    const session = new FakeSession('10.0.0.1', 5000, '10.0.0.2', 2525);
    const lines: string[] = [];
    recordSession(session, (l) => lines.push(l), { clock: () => 0, startedAt: new Date(0) });
    expect(lines).toEqual([]);
    Object.assign(session, {
      remoteAddress: '198.51.100.7',
      remotePort: 40000,
      localAddress: '192.0.2.25',
      localPort: 25,
    });
    session.emit('proxy', {
      version: 2,
      command: 'PROXY',
      family: 'TCP4',
      sourceAddress: '198.51.100.7',
      sourcePort: 40000,
      destinationAddress: '192.0.2.25',
      destinationPort: 25,
    });
    session.emit('output', Buffer.from('220 hi\r\n'));
    session.emit('close');
    expect(lines).toEqual([
      '# smtp-session-stream transcript 1',
      '# started: 1970-01-01T00:00:00.000Z',
      '# remote: 198.51.100.7:40000',
      '# local: 192.0.2.25:25',
      '# proxy: PROXY TCP4 198.51.100.7 192.0.2.25 40000 25',
      '0 S 220 hi\\r\\n',
      '0 E',
    ]);
  });

  it.each([
    [
      {
        command: 'PROXY',
        family: 'TCP6',
        sourceAddress: '2001:db8::7',
        sourcePort: 1,
        destinationAddress: '::1',
        destinationPort: 25,
      },
      'PROXY TCP6 2001:db8::7 ::1 1 25',
    ],
    [{ command: 'LOCAL', family: 'TCP4' }, 'PROXY UNKNOWN'],
    [{ command: 'PROXY', family: 'UNKNOWN' }, 'PROXY UNKNOWN'],
    [
      { command: 'PROXY', family: 'UNIX', sourceAddress: '/run/a', destinationAddress: '/run/b' },
      'PROXY UNKNOWN',
    ],
    [
      {
        command: 'PROXY',
        family: 'UDP4',
        sourceAddress: '192.0.2.1',
        sourcePort: 1,
        destinationAddress: '192.0.2.2',
        destinationPort: 2,
      },
      'PROXY UNKNOWN',
    ],
  ] as const)('writes %j as "# proxy: %s"', (header, value) => {
    expect(proxyMetadata(header)).toBe(value);
  });

  it('writes nothing for a session that closes before its first event', async () => {
    const session = newSession();
    const lines: string[] = [];
    const recorder = recordSession(session, (l) => lines.push(l));
    session.emit('close');
    expect(recorder.closed).toBe(true);
    expect(lines).toEqual([]);

    const other = newSession();
    const stream = new PassThrough();
    let out = '';
    stream.on('data', (d) => (out += d));
    const ended = new Promise((resolve) => stream.on('end', resolve));
    recordSession(other, stream);
    other.emit('close');
    await ended;
    expect(out).toBe('');
  });
});

describe('sink errors', () => {
  const devFull = fs.existsSync('/dev/full') ? it : it.skip;

  devFull('a stream sink failing later (ENOSPC on /dev/full) sets recorder.error and stops', async () => {
    const session = newSession();
    const sink = fs.createWriteStream('/dev/full');
    const recorder = recordSession(session, sink);
    session.emit('output', Buffer.from('220 hi\r\n'));
    await new Promise<void>((resolve) => sink.once('close', () => resolve()));
    expect(recorder.error).toMatchObject({ code: 'ENOSPC' });
    expect(recorder.closed).toBe(true);
    expect(session.listenerCount('input')).toBe(0);
    expect(() => session.emit('input', Buffer.from('QUIT\r\n'))).not.toThrow();
  });

  devFull('an error after the session closed (the last writes failing) is reported too', async () => {
    const session = newSession();
    const sink = fs.createWriteStream('/dev/full');
    const recorder = recordSession(session, sink);
    session.emit('output', Buffer.from('220 hi\r\n'));
    session.emit('close');
    expect(recorder.closed).toBe(true);
    await new Promise<void>((resolve) => sink.once('close', () => resolve()));
    expect(recorder.error).toMatchObject({ code: 'ENOSPC' });
  });

  devFull('recordToFile: a disk that fills up is reported in error and recorder.error', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'record-full-'));
    // The transcript file is opened on /dev/full: every write fails with ENOSPC, as on a full disk.
    const nodeFs = jest.requireActual<typeof fs>('node:fs');
    const real = nodeFs.createWriteStream.bind(nodeFs);
    const spy = jest
      .spyOn(nodeFs, 'createWriteStream')
      .mockImplementation(((_file: fs.PathLike, options?: { encoding?: BufferEncoding }) =>
        real('/dev/full', { ...options, flags: 'w' })) as typeof fs.createWriteStream);
    try {
      const session = newSession();
      const result = recordToFile(session, dir);
      session.emit('output', Buffer.from('220 hi\r\n'));
      session.emit('close');
      await result.done;
      expect(result.error).toMatchObject({ code: 'ENOSPC' });
      expect(result.recorder.error).toBe(result.error);
    } finally {
      spy.mockRestore();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ------------------------------------------------------------------ stream sinks that fall behind

/** A fake session that can be held, as SmtpSessionStream can: keeps each hold and whether it ended. */
class HoldableSession extends FakeSession {
  readonly holds: Array<{ ended: boolean }> = [];
  holdInput(until: PromiseLike<unknown>): void {
    const hold = { ended: false };
    this.holds.push(hold);
    const end = () => void (hold.ended = true);
    until.then(end, end);
  }
}

/** A stream sink that completes no write until `flush()` (a stalled disk); `lines` as they reach it. */
function stalledSink(highWaterMark = 256) {
  const callbacks: Array<() => void> = [];
  const lines: string[] = [];
  const sink = new Writable({
    highWaterMark,
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString('latin1'));
      callbacks.push(callback);
    },
  });
  sink.on('error', () => undefined);
  const flush = () => {
    while (callbacks.length > 0) callbacks.shift()!();
  };
  return { sink, flush, lines };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));
const BODY_LINES = Buffer.from(`${'x'.repeat(98)}\r\n`.repeat(20), 'latin1'); // 2000 bytes

describe('a stream sink that falls behind', () => {
  it("holds the session's input once while the sink is full, until 'drain'", async () => {
    const session = new HoldableSession('192.0.2.1', 50000);
    const { sink, flush } = stalledSink(256);
    recordSession(session, sink, { clock: () => 0 });
    session.emit('output', Buffer.from('220 hi\r\n'));
    expect(session.holds).toHaveLength(0); // under the high-water mark
    session.emit('input', BODY_LINES); // 20 lines past it: one hold, not one per line
    expect(session.holds).toHaveLength(1);
    await tick();
    expect(session.holds[0].ended).toBe(false);
    flush();
    await tick();
    expect(session.holds[0].ended).toBe(true);
    session.emit('input', BODY_LINES);
    expect(session.holds).toHaveLength(2); // full again: held again
    flush();
    await tick();
    expect(session.holds[1].ended).toBe(true);
  });

  it.each([
    ['the sink closes', (sink: Writable) => sink.destroy()],
    ['the sink fails', (sink: Writable) => sink.destroy(new Error('EIO'))],
    ['the session closes', (_sink: Writable, session: FakeSession) => session.emit('close')],
  ])('ends the hold when %s (no drain will come)', async (_, end) => {
    const session = new HoldableSession('192.0.2.1', 50000);
    const { sink } = stalledSink(256);
    const recorder = recordSession(session, sink, { clock: () => 0 });
    session.emit('input', BODY_LINES);
    expect(session.holds).toHaveLength(1);
    end(sink, session);
    await tick();
    expect(session.holds[0].ended).toBe(true);
    expect(sink.listenerCount('drain')).toBe(0);
    session.emit('close');
    expect(recorder.closed).toBe(true);
  });

  it('recordToFile: the session is held while its file falls behind, and the file is whole', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'record-held-'));
    try {
      const session = new HoldableSession('192.0.2.1', 50000);
      const { path: file, done } = recordToFile(session, dir);
      // Before the file is even open, more than its high-water mark of lines: held.
      const lines = Math.ceil(FILE_HIGH_WATER_MARK / BODY_LINES.length) + 1;
      for (let i = 0; i < lines; i++) session.emit('input', BODY_LINES);
      expect(session.holds).toHaveLength(1);
      await within(
        (async () => {
          while (!session.holds[0].ended) await tick();
        })(),
        3000,
        'the file drained',
      );
      session.emit('close');
      await done;
      const transcript = parseTranscript(fs.readFileSync(file, 'utf8'));
      expect(transcript.records.filter((r) => r.dir === 'C')).toHaveLength(lines * 20);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('does not hold for a function sink, a sink already destroyed, or a session that cannot be held', async () => {
    const session = new HoldableSession('192.0.2.1', 50000);
    recordSession(session, () => undefined);
    session.emit('input', BODY_LINES);
    expect(session.holds).toHaveLength(0);

    const gone = stalledSink(256);
    gone.sink.destroy();
    const late = new HoldableSession('192.0.2.1', 50000);
    recordSession(late, gone.sink);
    late.emit('input', BODY_LINES);
    expect(late.holds).toHaveLength(0);

    // Without holdInput the transcript is still whole, only buffered in the sink meanwhile.
    const plain = newSession();
    const { sink, flush, lines } = stalledSink(256);
    recordSession(plain, sink, { clock: () => 0 });
    plain.emit('input', BODY_LINES);
    plain.emit('close');
    flush();
    expect(lines.filter((line) => line.startsWith('0 C '))).toHaveLength(20);
    expect(lines[lines.length - 1]).toBe('0 E\n');
  });
});
