/**
 * Shared pieces of the command-line client specs (curl, openssl s_client, swaks): finding a tool on
 * PATH (missing: its tests are skipped with a note, or fail under CI), running it as a child process
 * with a deadline, and an SmtpServer on loopback that keeps what it receives. Everything started
 * here is stopped by `cleanup()` from spec/stream/helpers.ts.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { accessSync, constants, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Duplex } from 'node:stream';
import { SmtpServer, type SmtpServerOptions } from '../../lib/server/server';
import type { AuthRequest } from '../../lib/stream/events';
import { removeDir, tempDir } from '../catcher/helpers';
import { HOST, store, track, type StoredMessage, tlsOptions } from '../stream/helpers';

/** The one password every test server accepts (any user name). */
export const PASSWORD = 'correct horse';

/** How long a tool may run before it is killed and its test fails; below jest's 20 s testTimeout. */
export const TOOL_DEADLINE = 10_000;

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((dir) => dir !== '')
    .some((dir) => {
      try {
        accessSync(path.join(dir, tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
}

/**
 * `describe(title, body)` when `tool` is on PATH. Otherwise, under CI (CI set), one test that fails
 * naming the tool; elsewhere the block is skipped, its title and a warning saying why. Decided at load.
 */
export function describeWithTool(tool: string, title: string, body: () => void): void {
  if (onPath(tool)) {
    describe(title, body);
    return;
  }
  const why = `${tool} is not installed (not found on PATH); install the Debian package: apt-get install ${tool}`;
  if (process.env.CI !== undefined && process.env.CI !== '') {
    describe(title, () => {
      test(`${tool} is installed`, () => {
        throw new Error(`${why}. CI must run these interop tests (.ci/run installs the tools).`);
      });
    });
    return;
  }
  console.warn(`${title}: skipped, ${why}`);
  describe.skip(`${title} (skipped: ${tool} not installed)`, body);
}

export interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ToolProcess {
  child: ChildProcessWithoutNullStreams;
  /** Resolves when the tool has exited; rejects if it is still running after the deadline (then killed). */
  exited: Promise<ToolResult>;
}

/** Starts `command` with `args`; killed after `ms`, and by `cleanup()` if still running. */
export function spawnTool(command: string, args: string[], ms = TOOL_DEADLINE): ToolProcess {
  // LC_ALL=C: messages in English, whatever the machine's locale.
  const child = spawn(command, args, { stdio: 'pipe', env: { ...process.env, LC_ALL: 'C' } });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  track(() => {
    if (running()) child.kill('SIGKILL');
  });
  // A tool that exits without reading all its input must not fail the test with EPIPE.
  child.stdin.on('error', () => undefined);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<ToolResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`${command} still running after ${ms} ms, killed\nstdout:\n${stdout}\nstderr:\n${stderr}`),
      );
    }, ms);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  // Awaited by the test sooner or later; until then a deadline must not be an unhandled rejection.
  exited.catch(() => undefined);
  return { child, exited };
}

/** Runs `command` to the end with `input` on its stdin (then closed). */
export function runTool(command: string, args: string[], input: string | Buffer = ''): Promise<ToolResult> {
  const { child, exited } = spawnTool(command, args);
  child.stdin.end(input);
  return exited;
}

/**
 * The tool's stdin and stdout as one Duplex, so that a `Peer` (spec/stream/helpers.ts) can drive an
 * interactive tool like a socket: write command lines, wait for replies.
 */
export function toolStdio(child: ChildProcessWithoutNullStreams): Duplex {
  const io = new Duplex({
    read() {
      child.stdout.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      child.stdin.write(chunk, callback);
    },
    final(callback) {
      child.stdin.end(callback);
    },
  });
  child.stdout.on('data', (text: string) => {
    if (!io.push(Buffer.from(text))) child.stdout.pause();
  });
  child.stdout.once('end', () => io.push(null));
  return io;
}

export interface Harness {
  port: number;
  stored: StoredMessage[];
  auth: AuthRequest[];
}

/**
 * An SmtpServer on 127.0.0.1, port 0, named HOST, that stores every message (`store()`), accepts
 * AUTH with PASSWORD for any user, and refuses recipients whose local part is `nobody` (550 5.1.1).
 */
export async function startServer(options: SmtpServerOptions = {}): Promise<Harness> {
  const stored: StoredMessage[] = [];
  const auth: AuthRequest[] = [];
  const server = new SmtpServer(
    {
      hostname: HOST,
      validateRecipientHandler: (to) => !to.address.startsWith('nobody@'),
      ...options,
    },
    (session) => {
      store(session, stored);
      session.on('auth', (request: AuthRequest) => {
        auth.push(request);
        if (request.validatePassword(PASSWORD)) request.accept();
        else request.reject();
      });
    },
  );
  const { port } = await server.start(0);
  track(() => server.close());
  return { port, stored, auth };
}

/**
 * `tlsOptions()` (the certificate every test server uses: CN and DNS name `localhost`) as PEM files,
 * for the tools to verify the server with; removed by `cleanup()`.
 */
export async function pemFiles(): Promise<{ cert: string; key: string }> {
  const dir = await tempDir('interop-tls-');
  track(() => removeDir(dir));
  const { cert, key } = tlsOptions();
  const files = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
  await fs.writeFile(files.cert, cert);
  await fs.writeFile(files.key, key, { mode: 0o600 });
  return files;
}

/**
 * Bytes as a latin1 string, one character per byte: equal strings are equal bytes, and a failing
 * comparison shows a readable diff.
 */
export function bytes(data: Buffer | string): string {
  return (typeof data === 'string' ? Buffer.from(data) : data).toString('latin1');
}

/** `text` (CRLF lines) as a client writes it: a dot before each line that starts with one (RFC 5321 §4.5.2). */
export function dotStuffed(text: string): string {
  return text.replace(/(^|\r\n)\./g, '$1..');
}
