/**
 * `smtp-session-stream replay FILE --to HOST:PORT [--auth user:pass] [--compare codes|text] [--timeout MS]`
 *
 * Exit codes: 0 no difference, 1 differences, 2 usage, file or connection errors.
 */
import * as fs from 'node:fs';
import { parseTranscript } from './transcript';
import { replayTranscript, type ReplayOptions } from './replay';

export const REPLAY_USAGE =
  'usage: smtp-session-stream replay FILE --to HOST:PORT [--auth USER:PASS] [--compare codes|text] [--timeout MS]';

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
  return { file: positional[0], options };
}

function indent(text: string): string {
  return text.includes('\n') ? '\n      ' + text.split('\n').join('\n      ') : ' ' + text;
}

export async function runReplayCli(argv: string[], out: Output = process.stdout): Promise<number> {
  let parsed: ParsedArgs;
  try {
    if (argv.includes('--help') || argv.includes('-h')) {
      out.write(REPLAY_USAGE + '\n');
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

  for (const d of report.differences) {
    out.write(
      `reply #${d.index} to ${d.command}:\n  expected${indent(d.expected)}\n  actual  ${indent(d.actual)}\n`,
    );
  }
  for (const s of report.skipped) {
    out.write(`reply #${s.index} to ${s.command}: skipped: ${s.reason}\n`);
  }
  const n = report.differences.length;
  const summary = [
    `${report.repliesCompared} ${report.repliesCompared === 1 ? 'reply' : 'replies'} compared`,
    `${n} ${n === 1 ? 'difference' : 'differences'}`,
  ];
  if (report.skipped.length > 0) summary.push(`${report.skipped.length} AUTH exchange(s) skipped`);
  if (report.aborted) summary.push(`stopped early: ${report.aborted}`);
  out.write(`replay: ${summary.join(', ')}${report.ok ? ' (ok)' : ''}\n`);
  return report.ok ? 0 : 1;
}
