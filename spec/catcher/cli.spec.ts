/**
 * The command line as outside tools drive it: `node dist/lib/catcher/cli.js …` in a child process.
 * The build is made here if it is missing (`npm ci` makes it through `prepare`).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { USAGE } from '../../lib/catcher/options';
import { createSelfSignedCertificate } from '../../lib/tls/self-signed';
import { crlf, eventually, RawClient, removeDir, storedMessages, tempDir } from './helpers';

const ROOT = path.resolve(__dirname, '../..');
const CLI = path.join(ROOT, 'dist/lib/catcher/cli.js');
const MESSAGE = crlf('From: a@example.com', 'To: b@example.com', 'Subject: cli', '', 'body');

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

interface Cli {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running: Cli[] = [];

/** Spawns the command line in its own process group (so a test can signal the group). */
function cli(...args: string[]): Cli {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, detached: true, stdio: 'pipe' });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const handle = { child, stdout: () => out, stderr: () => err, exited };
  running.push(handle);
  return handle;
}

/** Waits for `listening on smtp://127.0.0.1:<port>` and returns the port. */
async function listening(c: Cli): Promise<number> {
  const match = await eventually(
    () => /^listening on smtp:\/\/127\.0\.0\.1:(\d+)/m.exec(c.stdout()) ?? undefined,
    15000,
  );
  return Number(match[1]);
}

/** Exits within `ms` or fails. */
async function exitOf(c: Cli, ms = 10000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no exit within ${ms} ms; stderr: ${c.stderr()}`)), ms);
  });
  try {
    return await Promise.race([c.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

let dir: string;
beforeEach(async () => {
  dir = await tempDir('catcher-cli-');
});
afterEach(async () => {
  for (const c of running.splice(0)) {
    if (c.child.exitCode === null && c.child.signalCode === null) {
      try {
        process.kill(-(c.child.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
      await c.exited;
    }
  }
  await removeDir(dir);
});

/** Opens a session and sends everything of a message up to (not including) the final dot. */
async function startMessage(port: number, from = 'a@example.com'): Promise<RawClient> {
  const { client } = await RawClient.connect(port);
  await client.send('EHLO client.test');
  await client.send(`MAIL FROM:<${from}>`);
  await client.send('RCPT TO:<b@example.com>');
  expect((await client.send('DATA')).code).toBe(354);
  client.write(MESSAGE.slice(0, 20));
  return client;
}

/**
 * The pids owning established TCP connections to `port` on this machine (Linux /proc), or
 * undefined where /proc does not tell.
 */
async function connectionOwners(port: number): Promise<Set<number> | undefined> {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = await fs.readFile(table, 'utf8');
    } catch {
      return undefined;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      if (parseInt(f[1].split(':')[1], 16) === port && f[3] === '01') inodes.add(`socket:[${f[9]}]`);
    }
  }
  const owners = new Set<number>();
  for (const pid of (await fs.readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const fds = await fs.readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (inodes.has(target)) owners.add(Number(pid));
    }
  }
  return owners;
}

describe('the command line', () => {
  it('--help prints the usage and exits 0', async () => {
    const c = cli('--help');
    expect(await exitOf(c)).toEqual({ code: 0, signal: null });
    expect(c.stdout()).toBe(USAGE);
  });

  it('a bad flag exits 2 with the reason and the usage on stderr', async () => {
    const c = cli('--port', '0', '--bogus');
    expect(await exitOf(c)).toEqual({ code: 2, signal: null });
    expect(c.stderr()).toBe(`smtp-session-stream: unknown option: --bogus\n\n${USAGE}`);
    expect(c.stdout()).toBe('');
  });

  it('exits 1 at start, naming the flags, when --tls-cert/--tls-key cannot be used', async () => {
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    await fs.writeFile(cert, createSelfSignedCertificate().cert);
    await fs.writeFile(key, createSelfSignedCertificate().key); // another pair's key
    const c = cli('--port', '0', '--maildir', dir, '--tls', '--tls-cert', cert, '--tls-key', key);
    expect(await exitOf(c)).toEqual({ code: 1, signal: null });
    expect(c.stderr()).toMatch(/^smtp-session-stream: --tls-cert\/--tls-key cannot be used: .+\n$/);
    expect(c.stdout()).not.toContain('listening on');
  });

  it('exits 1 with a message when it cannot listen', async () => {
    const first = cli('--host', '127.0.0.1', '--port', '0', '--maildir', dir, '--quiet');
    const port = await listening(first);
    const second = cli('--host', '127.0.0.1', '--port', String(port), '--maildir', dir);
    expect(await exitOf(second)).toEqual({ code: 1, signal: null });
    expect(second.stderr()).toMatch(/^smtp-session-stream: .*EADDRINUSE.*\n$/);
    // With workers too: each one says why, and the primary exits 1 once they are gone.
    const third = cli('--host', '127.0.0.1', '--port', String(port), '--maildir', dir, '--workers', '2');
    expect(await exitOf(third)).toEqual({ code: 1, signal: null });
    expect(third.stderr()).toMatch(/^(smtp-session-stream: .*EADDRINUSE.*\n){2}$/);
    first.child.kill('SIGTERM');
    expect(await exitOf(first)).toEqual({ code: 0, signal: null });
  });

  it('prints "listening on", serves, and --json-log prints one JSON line per message', async () => {
    const maildir = path.join(dir, 'mail');
    const c = cli('--host', '127.0.0.1', '--port', '0', '--maildir', maildir, '--json-log');
    const port = await listening(c);
    const { client } = await RawClient.connect(port);
    for (let i = 0; i < 2; i++) {
      const replies = await client.sendMail('a@example.com', ['b@example.com'], MESSAGE);
      expect(replies.at(-1)?.code).toBe(250);
    }
    await client.quit();
    const lines = await eventually(() => {
      const l = c.stdout().trim().split('\n');
      return l.length >= 3 ? l : undefined;
    });
    expect(lines[0]).toBe(`listening on smtp://127.0.0.1:${port}`);
    const logged = lines.slice(1).map((l) => JSON.parse(l) as { id: string });
    const stored = await storedMessages(maildir);
    expect(logged.map((r) => r.id).sort()).toEqual(stored.map((m) => m.id).sort());
    for (const m of stored) {
      expect(m.eml.toString()).toBe(MESSAGE);
      expect(logged.find((r) => r.id === m.id)).toEqual(m.json);
    }
    c.child.kill('SIGTERM');
    expect(await exitOf(c)).toEqual({ code: 0, signal: null });
  });

  it('SIGTERM: finishes the message in flight, says 421 to the idle, then exits 0', async () => {
    const maildir = path.join(dir, 'mail');
    const c = cli('--host', '127.0.0.1', '--port', '0', '--maildir', maildir);
    const port = await listening(c);
    const { client: idle } = await RawClient.connect(port);
    const busy = await startMessage(port);
    c.child.kill('SIGTERM');
    const shutdown = await idle.reply();
    expect(shutdown.code).toBe(421);
    expect(shutdown.text).toMatch(/^4\.3\.2 /);
    await idle.closed;
    expect(c.child.exitCode).toBeNull(); // still there for the message in flight
    busy.write(MESSAGE.slice(20));
    expect((await busy.send('.')).code).toBe(250);
    expect((await busy.reply()).code).toBe(421);
    await busy.closed;
    expect(await exitOf(c)).toEqual({ code: 0, signal: null });
    const [stored] = await storedMessages(maildir);
    expect(stored.eml.toString()).toBe(MESSAGE);
    // The text log line: time, id, envelope, size, client.
    expect(c.stdout()).toMatch(
      new RegExp(
        `^\\S+Z ${stored.id} from=<a@example\\.com> to=<b@example\\.com> size=${MESSAGE.length} client=127\\.0\\.0\\.1$`,
        'm',
      ),
    );
  });

  it('a second signal stops at once (exit 1)', async () => {
    const c = cli('--host', '127.0.0.1', '--port', '0', '--maildir', dir, '--quiet');
    const port = await listening(c);
    const { client: idle } = await RawClient.connect(port);
    const busy = await startMessage(port);
    c.child.kill('SIGINT');
    expect((await idle.reply()).code).toBe(421); // the first signal is being handled
    expect(c.child.exitCode).toBeNull(); // waiting for the message in flight
    c.child.kill('SIGINT');
    expect(await exitOf(c)).toEqual({ code: 1, signal: null });
    busy.destroy();
  });

  it('--workers 2: both workers serve and store messages, SIGTERM stops them all', async () => {
    const maildir = path.join(dir, 'mail');
    const c = cli('--host', '127.0.0.1', '--port', '0', '--maildir', maildir, '--workers', '2', '--quiet');
    const port = await listening(c);
    expect(c.stdout()).toContain(`listening on smtp://127.0.0.1:${port} (2 workers)`);
    // Sessions held open at once: the primary hands them to the workers in turn (once the second
    // one listens too: "listening" is printed when the first one is ready).
    const sessions: RawClient[] = [];
    const workers = await eventually(async () => {
      sessions.push(...(await Promise.all([0, 1].map(async () => (await RawClient.connect(port)).client))));
      const owners = await connectionOwners(port);
      if (owners === undefined) return 'unknown';
      expect(owners.has(c.child.pid as number)).toBe(false);
      owners.delete(process.pid); // our own end of each connection
      return owners.size === 2 ? owners : undefined;
    });
    for (const [i, client] of sessions.entries()) {
      const replies = await client.sendMail(`s${i}@example.com`, ['b@example.com'], MESSAGE);
      expect(replies.at(-1)?.code).toBe(250);
      await client.quit();
    }
    const stored = await storedMessages(maildir);
    expect(stored.map((m) => m.json.mailFrom).sort()).toEqual(
      sessions.map((_, i) => `s${i}@example.com`).sort(),
    );
    if (workers !== 'unknown') expect(workers.size).toBe(2);
    c.child.kill('SIGTERM');
    expect(await exitOf(c)).toEqual({ code: 0, signal: null });
  });

  it('--workers 2: a signal to the whole process group still lets the message in flight finish', async () => {
    const maildir = path.join(dir, 'mail');
    const c = cli('--host', '127.0.0.1', '--port', '0', '--maildir', maildir, '--workers', '2', '--quiet');
    const port = await listening(c);
    const busy = await startMessage(port);
    process.kill(-(c.child.pid as number), 'SIGINT'); // Ctrl-C in a terminal
    await new Promise((resolve) => setTimeout(resolve, 300));
    busy.write(MESSAGE.slice(20));
    expect((await busy.send('.')).code).toBe(250);
    await busy.closed;
    expect({ ...(await exitOf(c)), stderr: c.stderr() }).toEqual({ code: 0, signal: null, stderr: '' });
    expect(await storedMessages(maildir)).toHaveLength(1);
  });
});
