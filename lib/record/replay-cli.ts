/**
 * `smtp-session-stream replay FILE --to HOST:PORT [--auth user:pass] [--compare codes|text]
 * [--timeout MS] [--proxy]`
 *
 * Exit codes: 0 no difference, 1 differences, 2 usage, file or connection errors.
 */
import * as fs from 'node:fs';
import { parseTranscript } from './transcript';
import { replayTranscript, type ReplayDifference, type ReplayOptions, type ReplaySkip } from './replay';

export const REPLAY_USAGE =
  'usage: smtp-session-stream replay FILE --to HOST:PORT [--auth USER:PASS] [--compare codes|text] [--timeout MS] [--proxy]';

/** What `--help` prints. */
export const REPLAY_HELP = `${REPLAY_USAGE}

Plays the client side of a transcript (see lib/record/FORMAT.md) against a server and prints
every reply that differs from the recorded one.

Options:
  --to HOST:PORT        the server to replay against ([IPV6]:PORT for IPv6)
  --auth USER:PASS      fills in redacted AUTH credentials (PLAIN, LOGIN, CRAM-MD5, XOAUTH2);
                        without it redacted AUTH exchanges are skipped
  --compare codes|text  codes (default): reply and enhanced codes; text: the whole reply text,
                        except greeting host, queue ids, CRAM-MD5 challenges and timestamps
  --timeout MS          limit for connecting, each reply and a TLS handshake (default 10000)
  --proxy               send a PROXY protocol v1 header first: the transcript's "# proxy:" one,
                        or PROXY UNKNOWN. For a server that expects one (the catcher's --proxy).
                        Off by default, also for transcripts recorded behind a proxy: a server
                        that expects no header would answer it as a command and shift every
                        reply after it, while one that expects it never greets without it

Message text is only sent after a 354, SASL responses only after a 334: when the live server
answers otherwise, they are skipped (RSET replaces refused message text) and listed.

Exit codes: 0 no difference, 1 differences, 2 usage, file or connection errors.
`;

interface Output {
  write(chunk: string): unknown;
}

class UsageError extends Error {}

interface ParsedArgs {
  file: string;
  options: ReplayOptions;
}

/** `host:port`, `[v6]:port`. */
function parseTarget(value: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:]+):(\d+)$/.exec(value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`--to expects HOST:PORT, got ${JSON.stringify(value)}`);
  }
  return { host: m[1], port };
}

function parseArgs(argv: string[]): ParsedArgs {
  const args = argv[0] === 'replay' ? argv.slice(1) : argv.slice();
  const positional: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    if (name === 'proxy') {
      if (eq !== -1) throw new UsageError('--proxy takes no value');
      flags.set(name, '');
      continue;
    }
    if (!['to', 'auth', 'compare', 'timeout'].includes(name))
      throw new UsageError(`unknown option --${name}`);
    const value = eq === -1 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    flags.set(name, value);
  }
  if (positional.length !== 1) throw new UsageError('expected exactly one transcript FILE');
  const to = flags.get('to');
  if (!to) throw new UsageError('--to HOST:PORT is required');
  const options: ReplayOptions = parseTarget(to);

  const auth = flags.get('auth');
  if (auth !== undefined) {
    const colon = auth.indexOf(':');
    if (colon <= 0) throw new UsageError('--auth expects USER:PASS');
    options.credentials = { username: auth.slice(0, colon), password: auth.slice(colon + 1) };
  }
  const compare = flags.get('compare');
  if (compare !== undefined) {
    if (compare !== 'codes' && compare !== 'text') throw new UsageError('--compare expects codes or text');
    options.compare = compare;
  }
  const timeout = flags.get('timeout');
  if (timeout !== undefined) {
    const ms = Number(timeout);
    if (!/^\d+$/.test(timeout) || ms <= 0) throw new UsageError('--timeout expects a positive number of ms');
    options.timeoutMs = ms;
  }
  if (flags.has('proxy')) options.proxy = true;
  return { file: positional[0], options };
}

function formatDifference(d: ReplayDifference): string {
  const then = d.resync ? `  then     ${d.resync}\n` : '';
  return `reply #${d.index} to ${d.command}:\n  expected${indent(d.expected)}\n  actual  ${indent(d.actual)}\n${then}`;
}

function formatSkip(s: ReplaySkip): string {
  let text = `reply #${s.index} to ${s.command}: skipped: ${s.reason}`;
  if (s.cause === 'reply') text += ` (${s.replies} ${s.replies === 1 ? 'reply' : 'replies'} not compared)`;
  if (s.resync) text += `; ${s.resync}`;
  return text + '\n';
}

function indent(text: string): string {
  return text.includes('\n') ? '\n      ' + text.split('\n').join('\n      ') : ' ' + text;
}

export async function runReplayCli(argv: string[], out: Output = process.stdout): Promise<number> {
  let parsed: ParsedArgs;
  try {
    if (argv.includes('--help') || argv.includes('-h')) {
      out.write(REPLAY_HELP);
      return 0;
    }
    parsed = parseArgs(argv);
  } catch (err) {
    out.write(`replay: ${(err as Error).message}\n${REPLAY_USAGE}\n`);
    return 2;
  }

  let report;
  try {
    const transcript = parseTranscript(fs.readFileSync(parsed.file, 'utf8'));
    report = await replayTranscript(transcript, parsed.options);
  } catch (err) {
    out.write(`replay: ${parsed.file}: ${(err as Error).message}\n`);
    return 2;
  }

  // In reply order: a skip right after the difference that caused it.
  const items: Array<{ index: number; text: string }> = [
    ...report.differences.map((d) => ({ index: d.index, text: formatDifference(d) })),
    ...report.skipped.map((s) => ({ index: s.index, text: formatSkip(s) })),
  ];
  items.sort((a, b) => a.index - b.index);
  for (const item of items) out.write(item.text);

  const n = report.differences.length;
  const summary = [
    `${report.repliesCompared} ${report.repliesCompared === 1 ? 'reply' : 'replies'} compared`,
    `${n} ${n === 1 ? 'difference' : 'differences'}`,
  ];
  const credentials = report.skipped.filter((s) => s.cause === 'credentials').length;
  const notSent = report.skipped.length - credentials;
  if (credentials > 0) summary.push(`${credentials} AUTH exchange(s) skipped`);
  if (notSent > 0) summary.push(`${notSent} part(s) not sent after a different reply`);
  if (report.aborted) summary.push(`stopped early: ${report.aborted}`);
  out.write(`replay: ${summary.join(', ')}${report.ok ? ' (ok)' : ''}\n`);
  return report.ok ? 0 : 1;
}
