/**
 * The examples as their users run them: built by `tsconfig.build.json`, started as
 * `node dist/examples/<name>.js --port 0`, driven by nodemailer over loopback, stopped by SIGTERM.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import nodemailer from 'nodemailer';

const ROOT = path.resolve(__dirname, '../..');
const EXAMPLES = ['starttls-auth-server', 'session-recorder', 'compose-streams'] as const;
type ExampleName = (typeof EXAMPLES)[number];

const START_TIMEOUT = 15_000;
const LINE_TIMEOUT = 10_000;
const EXIT_TIMEOUT = 10_000;

const source = (name: ExampleName): string => path.join(ROOT, 'examples', `${name}.ts`);
const compiled = (name: ExampleName): string => path.join(ROOT, 'dist', 'examples', `${name}.js`);

function isStale(name: ExampleName): boolean {
  const out = compiled(name);
  return !fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(source(name)).mtimeMs;
}

/** Builds only when an example's output is missing or older than its source. */
function buildIfStale(): void {
  if (!EXAMPLES.some(isStale)) return;
  const tsc = (...extra: string[]) =>
    spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json', ...extra], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
  let result = tsc();
  // An incremental build skips sources whose content it has seen, even when their output is
  // gone or older: then emit everything once, without the build info.
  if (EXAMPLES.some(isStale)) result = tsc('--incremental', 'false');
  // Type errors elsewhere in lib/ still emit; only a missing or stale example is fatal here.
  const stale = EXAMPLES.filter(isStale);
  if (stale.length > 0) {
    throw new Error(`build left ${stale.join(', ')} stale:\n${result.stdout}${result.stderr}`);
  }
}

/** A running example: its stdout as lines, waitable. */
class Example {
  readonly lines: string[] = [];
  private stdout = '';
  private stderr = '';
  private exit: Promise<number | null>;
  private exited = false;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly child: ChildProcess) {
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      this.stdout += text;
      const parts = this.stdout.split('\n');
      this.stdout = parts.pop() ?? '';
      this.lines.push(...parts);
      this.waiters.forEach((wake) => wake());
    });
    child.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    this.exit = new Promise((resolve) =>
      child.once('exit', (code) => {
        this.exited = true;
        this.waiters.forEach((wake) => wake());
        resolve(code);
      }),
    );
  }

  static running = new Set<Example>();

  /** Starts `name` on a free port; resolves with the port once it says it is listening. */
  static async start(name: ExampleName, args: string[] = []): Promise<{ example: Example; port: number }> {
    const child = spawn(process.execPath, [compiled(name), '--port', '0', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const example = new Example(child);
    Example.running.add(example);
    const match = await example.waitFor(/^listening on smtp:\/\/127\.0\.0\.1:(\d+)$/, START_TIMEOUT);
    return { example, port: Number(match[1]) };
  }

  /** The first stdout line (already printed or to come) matching `pattern`. */
  waitFor(pattern: RegExp, timeout = LINE_TIMEOUT): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        for (const line of this.lines) {
          const match = line.match(pattern);
          if (match) return done(() => resolve(match));
        }
        if (this.exited) done(() => reject(this.failure(`exited before printing ${pattern}`)));
      };
      const timer = setTimeout(
        () => done(() => reject(this.failure(`no ${pattern} in ${timeout} ms`))),
        timeout,
      );
      const done = (settle: () => void): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      this.waiters.add(check);
      check();
    });
  }

  /** SIGTERM, then the exit code (SIGKILL and a failure if it does not stop in time). */
  async stop(): Promise<number | null> {
    if (!this.exited) this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>(
      (resolve) => (timer = setTimeout(() => resolve('timeout'), EXIT_TIMEOUT)),
    );
    const result = await Promise.race([this.exit, timedOut]);
    clearTimeout(timer);
    Example.running.delete(this);
    if (result === 'timeout') {
      this.child.kill('SIGKILL');
      await this.exit;
      throw this.failure(`did not exit within ${EXIT_TIMEOUT} ms of SIGTERM`);
    }
    return result;
  }

  private failure(what: string): Error {
    return new Error(
      `${what}\n--- stdout\n${this.lines.join('\n')}${this.stdout}\n--- stderr\n${this.stderr}`,
    );
  }
}

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

/** A message sent as it is: nodemailer neither rewrites it nor adds headers. */
function rawMessage(tag: string): Buffer {
  return Buffer.from(
    `From: alice@example.test\r\nTo: bob@example.test\r\nSubject: ${tag}\r\n\r\n` +
      `.a line that needs dot-stuffing\r\nand another (${tag})\r\n`,
  );
}

const envelope = { from: 'alice@example.test', to: ['bob@example.test'] };

function client(port: number, options: Record<string, unknown> = {}) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    connectionTimeout: LINE_TIMEOUT,
    greetingTimeout: LINE_TIMEOUT,
    socketTimeout: LINE_TIMEOUT,
    ...options,
  });
}

const tempDirs: string[] = [];
const tempDir = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-examples-'));
  tempDirs.push(dir);
  return dir;
};

beforeAll(buildIfStale, 250_000);

afterAll(async () => {
  for (const example of Example.running) {
    example.child.kill('SIGKILL');
  }
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('examples/starttls-auth-server', () => {
  it('wants STARTTLS and AUTH, then prints size and sha256 of each message', async () => {
    const { example, port } = await Example.start('starttls-auth-server');
    try {
      for (const method of ['PLAIN', 'CRAM-MD5']) {
        const raw = rawMessage(method);
        const transport = client(port, {
          requireTLS: true,
          tls: { rejectUnauthorized: false },
          auth: { user: 'alice', pass: 'wonderland', method },
        });
        const info = await transport.sendMail({ envelope, raw });
        transport.close();
        expect(info.response).toMatch(/^250 /);
        await example.waitFor(new RegExp(`auth ${method} alice accepted$`));
        await example.waitFor(new RegExp(`message user=alice .* size=${raw.length} sha256=${sha256(raw)}$`));
      }
      await example.waitFor(/ secure TLSv1\.[23] /);

      const wrongPassword = client(port, {
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'alice', pass: 'not-it' },
      });
      await expect(wrongPassword.sendMail({ envelope, raw: rawMessage('x') })).rejects.toMatchObject({
        responseCode: 535,
      });
      wrongPassword.close();

      // requireTls: no mail in cleartext.
      const cleartext = client(port, { ignoreTLS: true });
      await expect(cleartext.sendMail({ envelope, raw: rawMessage('x') })).rejects.toMatchObject({
        responseCode: 530,
      });
      cleartext.close();
    } finally {
      expect(await example.stop()).toBe(0);
    }
    await example.waitFor(/^stopped$/);
  }, 60_000);
});

describe('examples/session-recorder', () => {
  it('writes a transcript per session, with the EHLO, TLS, and AUTH redacted', async () => {
    const dir = tempDir();
    const { example, port } = await Example.start('session-recorder', ['--dir', dir]);
    let transcript: string;
    try {
      const transport = client(port, {
        requireTLS: true,
        tls: { rejectUnauthorized: false },
        auth: { user: 'alice', pass: 'wonderland', method: 'PLAIN' },
      });
      const info = await transport.sendMail({ envelope, raw: rawMessage('recorded') });
      transport.close();
      expect(info.response).toMatch(/^250 /);
      const [, file] = await example.waitFor(/^transcript (\S+)$/);
      expect(path.dirname(file)).toBe(path.resolve(dir));
      transcript = fs.readFileSync(file, 'utf8');
    } finally {
      expect(await example.stop()).toBe(0);
    }

    expect(transcript.split('\n')[0]).toBe('# smtp-session-stream transcript 1');
    expect(transcript).toMatch(/^\d+ S 220 /m);
    expect(transcript).toMatch(/^\d+ C EHLO \S+\\r\\n$/m);
    expect(transcript).toMatch(/^\d+ T TLSv1\.[23] /m);
    // After the T record the session is cleartext again in the file: the message is readable.
    expect(transcript).toMatch(/^\d+ C Subject: recorded\\r\\n$/m);
    expect(transcript).toMatch(/^\d+ ! AUTH PLAIN <redacted>\\r\\n$/m);
    expect(transcript).not.toContain(Buffer.from('\0alice\0wonderland').toString('base64'));
    expect(transcript).not.toContain('wonderland');
    expect(transcript.trimEnd().split('\n').pop()).toMatch(/^\d+ E$/);
  }, 60_000);
});

describe('examples/compose-streams', () => {
  it('delivers through tap → session → throttle, gzipping the body, replies slowed to the rate', async () => {
    const dir = tempDir();
    const rate = 300;
    const { example, port } = await Example.start('compose-streams', ['--rate', String(rate), '--out', dir]);
    try {
      const raw = rawMessage('composed');
      const started = performance.now();
      const transport = client(port, { ignoreTLS: true });
      const info = await transport.sendMail({ envelope, raw });
      transport.close();
      expect(info.response).toMatch(/^250 /);

      const [, size, lines, file] = await example.waitFor(/^message size=(\d+) lines=(\d+) gzip=(\S+)$/);
      expect(Number(size)).toBe(raw.length);
      expect(Number(lines)).toBe(raw.toString('latin1').split('\n').length - 1);
      expect(gunzipSync(fs.readFileSync(file)).equals(raw)).toBe(true);

      const [, bytesIn, bytesOut] = await example.waitFor(/closed: (\d+) bytes in, (\d+) bytes out/);
      const elapsed = performance.now() - started;
      expect(Number(bytesIn)).toBeGreaterThan(raw.length);
      // The greeting, EHLO, MAIL/RCPT/DATA replies: enough that the rate must show.
      expect(Number(bytesOut)).toBeGreaterThan(200);
      // Every slice but the first waited for its share of the budget (slices are rate/20 bytes).
      const slice = Math.ceil(rate / 20);
      expect(elapsed).toBeGreaterThanOrEqual(((Number(bytesOut) - slice) * 1000) / rate - 20);
    } finally {
      expect(await example.stop()).toBe(0);
    }
  }, 60_000);
});
