/**
 * Shared pieces of the catcher specs: a raw SMTP client over a loopback socket (one reply at a
 * time, multi-line replies joined), catcher options built through the real command-line parser,
 * temporary folders, python3's smtplib run asynchronously, and polling for files.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseCatcherArgs, type CatcherOptions } from '../../lib/catcher/options';

export interface SmtpReply {
  code: number;
  /** Every line as sent, without CRLF. */
  lines: string[];
  /** The text of the last line after the code and separator. */
  text: string;
}

/** A raw SMTP client: `send` writes one line and resolves with the next complete reply. */
export class RawClient {
  /** Resolves when the server has closed the connection (or it was destroyed). */
  readonly closed: Promise<void>;
  private buffered = '';
  private lines: string[] = [];
  private readonly replies: SmtpReply[] = [];
  private readonly waiters: Array<{ resolve: (r: SmtpReply) => void; reject: (e: Error) => void }> = [];
  private ended = false;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => this.onData(text));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        for (const waiter of this.waiters.splice(0)) waiter.reject(new Error('connection closed'));
        resolve();
      }),
    );
  }

  /** Connects and reads the greeting. */
  static async connect(
    port: number,
    host = '127.0.0.1',
  ): Promise<{ client: RawClient; greeting: SmtpReply }> {
    const socket = net.connect(port, host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawClient(socket);
    return { client, greeting: await client.reply() };
  }

  /** The next complete reply (already received or still to come). */
  reply(): Promise<SmtpReply> {
    const ready = this.replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.ended) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Writes `line` + CRLF and returns the reply to it. */
  send(line: string): Promise<SmtpReply> {
    this.socket.write(line + '\r\n', 'latin1');
    return this.reply();
  }

  /** Writes bytes as they are (message text, pipelined commands). */
  write(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes);
  }

  /** EHLO, MAIL, each RCPT, DATA, the text (dot-stuffed by the caller), final dot: every reply. */
  async sendMail(
    from: string,
    to: string[],
    text: string | Buffer,
    helo = 'client.test',
  ): Promise<SmtpReply[]> {
    const replies = [await this.send(`EHLO ${helo}`), await this.send(`MAIL FROM:<${from}>`)];
    for (const rcpt of to) replies.push(await this.send(`RCPT TO:<${rcpt}>`));
    const data = await this.send('DATA');
    replies.push(data);
    if (data.code !== 354) return replies;
    this.write(text);
    replies.push(await this.send('.'));
    return replies;
  }

  /** QUIT (if still open), then waits for the close. */
  async quit(): Promise<void> {
    if (!this.ended) {
      this.socket.write('QUIT\r\n');
      this.socket.end();
    }
    await this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(text: string): void {
    this.buffered += text;
    for (;;) {
      const end = this.buffered.indexOf('\r\n');
      if (end < 0) return;
      const line = this.buffered.slice(0, end);
      this.buffered = this.buffered.slice(end + 2);
      this.lines.push(line);
      if (line.charAt(3) === '-') continue;
      const reply: SmtpReply = { code: Number(line.slice(0, 3)), lines: this.lines, text: line.slice(4) };
      this.lines = [];
      const waiter = this.waiters.shift();
      if (waiter !== undefined) waiter.resolve(reply);
      else this.replies.push(reply);
    }
  }
}

/** Catcher options through the real parser: port 0, the given maildir, quiet, plus `flags`. */
export function catcherOptions(maildir: string, ...flags: string[]): CatcherOptions {
  return parseCatcherArgs([
    '--port',
    '0',
    '--maildir',
    maildir,
    '--hostname',
    'mx.test',
    '--quiet',
    ...flags,
  ]);
}

/** The port of an `smtp://host:port` URL. */
export function portOf(url: string): number {
  return Number(new URL(url).port);
}

export async function tempDir(prefix = 'catcher-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
}

/** Files of `dir` (sorted), `[]` when it does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).sort();
  } catch {
    return [];
  }
}

/** The `<id>.eml` / `<id>.json` pairs of a maildir. */
export async function storedMessages(
  dir: string,
): Promise<Array<{ id: string; eml: Buffer; json: Record<string, unknown> }>> {
  const names = await listDir(dir);
  const ids = names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5));
  return Promise.all(
    ids.map(async (id) => ({
      id,
      eml: await fs.readFile(path.join(dir, `${id}.eml`)),
      json: JSON.parse(await fs.readFile(path.join(dir, `${id}.json`), 'utf8')) as Record<string, unknown>,
    })),
  );
}

/** Polls `check` every 20 ms until it returns a value other than undefined, or fails after `ms`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  ms = 5000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs a python3 script (asynchronously, bounded); resolves with its stdout, rejects with its stderr. */
export function python(script: string, args: string[], timeoutMs = 15000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', script, ...args], { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) reject(new Error(`python3 failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** A message text with CRLF line ends. */
export function crlf(...lines: string[]): string {
  return lines.map((l) => l + '\r\n').join('');
}
