/**
 * The transcripts recorded from real clients (`scripts/record-fixtures.sh`: nodemailer, Python's
 * smtplib, swaks, curl) replayed against a fresh catcher configured as the recording one was: every
 * reply must come back the same. Against a catcher configured differently they must not.
 *
 * Only files named after a real client are replayed here; the hand-written examples next to them
 * (`basic.txt`, `starttls-auth.txt`, …) describe other servers and are covered by replay.spec.ts.
 * Replaying needs none of the clients: the replay plays the client side itself.
 */
import { execFile } from 'node:child_process';
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startCatcher, type Catcher } from '../../lib/catcher/catcher';
import { parseCatcherArgs } from '../../lib/catcher/options';
import { parseTranscript, replayTranscript, type ReplayReport } from '../../lib/record';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/catcher/cli.js');
const FIXTURES = path.join(ROOT, 'spec/fixtures/transcripts');
const REAL_CLIENT = /^(nodemailer|smtplib|swaks|curl)-[a-z0-9-]+\.txt$/;
const CREDENTIALS = { username: 'user', password: 'pass' };
/** The catcher's options when the fixtures were recorded (minus `--record`). */
const RECORDING_ARGS = ['--tls', '--auth', 'user:pass', '--hostname', 'fixtures.test'];

const fixtures = readdirSync(FIXTURES)
  .filter((name) => REAL_CLIENT.test(name))
  .sort();
const read = (name: string): string => readFileSync(path.join(FIXTURES, name), 'utf8');

/** Final lines of the recorded server replies (`250 …`, not `250-…`): one per reply. */
function recordedReplies(text: string): number {
  return parseTranscript(text).records.filter(
    (r) => r.dir === 'S' && /^\d{3}(?: |\r?\n|$)/.test(r.data.toString('latin1')),
  ).length;
}

function describeReport(report: ReplayReport): string {
  return JSON.stringify({ ...report, differences: report.differences.slice(0, 5) }, null, 2);
}

let tmp: string;
let same: Catcher;
let different: Catcher;

async function catcher(extra: string[]): Promise<Catcher> {
  const maildir = await fs.mkdtemp(path.join(tmp, 'mail-'));
  return startCatcher(
    parseCatcherArgs(['--port', '0', '--maildir', maildir, '--quiet', ...RECORDING_ARGS, ...extra]),
  );
}

function target(c: Catcher): { host: string; port: number } {
  const url = new URL(c.url);
  return { host: url.hostname, port: Number(url.port) };
}

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'fixtures-replay-'));
  same = await catcher([]);
  // Messages over 10 bytes are refused: every fixture sends a longer one.
  different = await catcher(['--max-size', '10']);
});

afterAll(async () => {
  await Promise.all([same?.close(), different?.close()]);
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('real-client fixtures', () => {
  it('include one per client and scenario the recording script makes', () => {
    expect(fixtures).toEqual(
      expect.arrayContaining([
        'nodemailer-plain.txt',
        'nodemailer-starttls-auth-plain.txt',
        'nodemailer-starttls-auth-login.txt',
        'smtplib-plain.txt',
        'smtplib-cram-md5.txt',
        'swaks-plain.txt',
        'curl-plain.txt',
      ]),
    );
  });

  it.each(fixtures)('%s keeps AUTH secrets out', (name) => {
    const text = read(name);
    // user\0user\0pass, \0user\0pass, "user", "pass", "user " (start of a CRAM-MD5 response).
    for (const secret of ['dXNlcgB1c2VyAHBhc3M', 'AHVzZXIAcGFzcw', 'dXNlcg==', 'cGFzcw==', 'dXNlciA']) {
      expect(text).not.toContain(secret);
    }
    const transcript = parseTranscript(text);
    const authenticates = transcript.records.some(
      (r) => r.dir === 'S' && r.data.toString('latin1').startsWith('235 '),
    );
    if (authenticates) expect(transcript.records.some((r) => r.dir === '!')).toBe(true);
  });
});

describe('replaying the real-client fixtures', () => {
  it.each(fixtures)('%s gets the recorded replies from a catcher configured alike', async (name) => {
    const text = read(name);
    const report = await replayTranscript(parseTranscript(text), {
      ...target(same),
      credentials: CREDENTIALS,
    });
    if (!report.ok) throw new Error(`${name}: ${describeReport(report)}`);
    expect(report.differences).toEqual([]);
    expect(report.skipped).toEqual([]);
    expect(report.aborted).toBeUndefined();
    expect(report.repliesCompared).toBe(recordedReplies(text));
  });

  it('nodemailer-plain.txt differs against a catcher with --max-size 10', async () => {
    const report = await replayTranscript(parseTranscript(read('nodemailer-plain.txt')), {
      ...target(different),
      credentials: CREDENTIALS,
    });
    expect(report.ok).toBe(false);
    // The end of DATA: 250 recorded, 552 (message too big) now.
    expect(report.differences).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          command: 'DATA (end of message)',
          expected: expect.stringMatching(/^250/),
        }),
      ]),
    );
  });
});

describe('smtp-session-stream replay (the command line)', () => {
  beforeAll(async () => {
    if (existsSync(CLI)) return;
    await new Promise<void>((resolve, reject) =>
      execFile(
        process.execPath,
        [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
        { cwd: ROOT, timeout: 120_000 },
        (error, stdout) => (error ? reject(new Error(`build failed: ${stdout}`)) : resolve()),
      ),
    );
  }, 130_000);

  /** Runs the CLI asynchronously: the catchers answering it live in this process. */
  function replay(
    name: string,
    c: Catcher,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const { host, port } = target(c);
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [CLI, 'replay', path.join(FIXTURES, name), '--to', `${host}:${port}`, '--auth', 'user:pass'],
        { cwd: ROOT, timeout: 15_000 },
        (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  it('exits 0 when every reply matches', async () => {
    const result = await replay('smtplib-cram-md5.txt', same);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/0 differences \(ok\)/);
  });

  it('exits 1 against a catcher configured differently', async () => {
    const result = await replay('smtplib-cram-md5.txt', different);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/to DATA \(end of message\):/);
  });
});
