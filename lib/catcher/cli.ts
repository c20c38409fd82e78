#!/usr/bin/env -S node --max-semi-space-size=1
// The flag keeps V8's young generation small: streaming a 1 GiB message to disk then grows RSS by
// 8 MB instead of 28 MB (bench/RESULTS.md); `npm start` passes it too.
import cluster from 'node:cluster';
import { runReplayCli } from '../record/replay-cli';
import { startCatcher } from './catcher';
import type { EnvelopeRecord } from './maildir';
import { parseCatcherArgs, UsageError, USAGE, type CatcherOptions } from './options';

/** `smtp-session-stream [serve] [options]` and `smtp-session-stream replay FILE --to HOST:PORT`. */
async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'replay') return runReplayCli(argv.slice(1));
  let options: CatcherOptions;
  try {
    options = parseCatcherArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`smtp-session-stream: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (options.workers > 1 && cluster.isPrimary) return runPrimary(options);
  await serve(options);
  return -1; // keep running
}

async function serve(options: CatcherOptions): Promise<void> {
  const log = (record: EnvelopeRecord): void => {
    if (options.jsonLog) process.stdout.write(JSON.stringify(record) + '\n');
    else if (!options.quiet) {
      process.stdout.write(
        `${record.receivedAt} ${record.id} from=<${record.mailFrom}> to=${record.rcptTo.map((r) => `<${r}>`).join(',')} size=${record.size} client=${record.remoteAddress}${record.secure ? ' tls' : ''}${record.user ? ` user=${record.user}` : ''}\n`,
      );
    }
  };
  const catcher = await startCatcher(options, log);
  if (cluster.isWorker) process.send?.({ listening: catcher.url });
  else process.stdout.write(`listening on ${catcher.url}\n`);
  let signals = 0;
  let closing: Promise<void> | undefined;
  const close = (): void => {
    closing ??= catcher.close().then(() => process.exit(0));
  };
  const stop = (): void => {
    if (++signals > 1) process.exit(1); // a second signal: stop now
    close();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // The primary of --workers asks by message, not by signal: on Ctrl-C the whole process group gets
  // SIGINT as well, and the primary's request must not count as a second signal.
  if (cluster.isWorker) process.on('message', (message) => message === 'shutdown' && close());
}

/** `--workers N`: N processes share one listening socket (node:cluster). */
function runPrimary(options: CatcherOptions): Promise<number> {
  let announced = false;
  for (let i = 0; i < options.workers; i++) {
    const worker = cluster.fork();
    worker.on('message', (message: { listening?: string }) => {
      if (message.listening && !announced) {
        announced = true;
        process.stdout.write(`listening on ${message.listening} (${options.workers} workers)\n`);
      }
    });
  }
  let signals = 0;
  let exitCode = 0;
  const stop = (): void => {
    if (++signals > 1) exitCode = 1;
    for (const worker of Object.values(cluster.workers ?? {})) {
      if (worker === undefined) continue;
      // The first signal: graceful (see serve); a second one: stop now.
      if (signals > 1) worker.process.kill('SIGKILL');
      else if (worker.isConnected()) worker.send('shutdown');
    }
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return new Promise((resolve) => {
    cluster.on('exit', (_worker, code) => {
      // A worker that could not listen exits 1; one that a signal ended before it was ready has no code.
      if (code !== null && code !== 0) exitCode = 1;
      if (Object.keys(cluster.workers ?? {}).length === 0) resolve(exitCode);
    });
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`smtp-session-stream: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
    if (cluster.isWorker) process.exit(); // its IPC channel would keep it alive
  },
);
