'use strict';
// Benchmark runner for smtp-session-stream. See bench/README.md.
//
//   npm run bench                      # build, then the full suite (a few minutes)
//   node bench/run.js --quick          # ~1 minute smoke run
//   node bench/run.js --only loopback  # one section: core | loopback | memory (comma list allowed)
//
// Every server and the load generator run as child processes of this one;
// all of them are killed when it exits. Traffic goes to 127.0.0.1 only.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { setInterval, clearInterval } = require('node:timers');
const { setTimeout: sleep } = require('node:timers/promises');
const { performance } = require('node:perf_hooks');
const u = require('./lib/util');
const { renderMarkdown, renderSvg } = require('./lib/report');

/** Like sleep(), but does not keep the process alive: for Promise.race timeouts. */
const { deadline } = u;

const HOST = '127.0.0.1';
const GC_HOOK = path.join(__dirname, 'lib', 'gc-hook.js');
const RESULTS_DIR = path.join(__dirname, 'results');
const SECTIONS = ['core', 'loopback', 'memory'];

const USAGE = `usage: node bench/run.js [--quick] [--only core|loopback|memory[,…]] [options]

  --quick               smoke run (~1 minute): fewer messages, 1 run per case
  --only NAMES          run only these sections (comma separated)
  --servers KEYS        only these servers (comma separated), e.g. raw-ceiling,smtp-server-store
  --sessions N          parallel client sessions in the loopback section (default 20)
  --reps N              runs per loopback case (default 5, --quick 1)
  --idle-sessions N     sessions held in the idle-memory test (default 4000, --quick 1000)
  --big-mib N           size of the streamed message in MiB (default 1024, --quick 128)
  --maildir-root DIR    where storing servers write (default /dev/shm/smtp-bench if /dev/shm
                        exists, else bench/.maildirs; env SMTP_BENCH_MAILDIR_ROOT). Each run
                        gets its own folder, removed after.
  --no-write            do not write bench/results/latest.{md,svg,json}
  --render FILE.json    only re-render the reports from a saved latest.json
`;

const args = u.parseArgs(process.argv.slice(2), ['quick', 'help', 'no-write']);
if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const quick = args.quick === true;
const only = typeof args.only === 'string' ? args.only.split(',').map((s) => s.trim()) : SECTIONS;
for (const s of only) {
  if (!SECTIONS.includes(s)) {
    console.error(`unknown section "${s}" (expected one of ${SECTIONS.join(', ')})\n\n${USAGE}`);
    process.exit(2);
  }
}

const cfg = {
  quick,
  sessions: u.intArg(args.sessions, 20),
  reps: u.intArg(args.reps, quick ? 1 : 5),
  sizes: [
    // Warm-ups long enough for V8 to optimise every server's hot paths (a few thousand calls).
    { label: '1 KB', size: 1024, messages: quick ? 50 : 300, warmup: quick ? 20 : 100 },
    { label: '100 KB', size: 100 * 1024, messages: quick ? 10 : 30, warmup: quick ? 3 : 10 },
  ],
  idleSessions: u.intArg(args['idle-sessions'], quick ? 1000 : 4000),
  bigSize: u.intArg(args['big-mib'], quick ? 128 : 1024) * 1024 * 1024,
  // Where the storing servers write. Default: memory-backed /dev/shm when there is one, so the
  // storing ratios measure the servers' work and not the disk (on this project's VM, creating a
  // file on ext4 costs 150-700 µs of kernel time, 25x tmpfs, and both servers drown in it).
  // The report prints the folder and what two files cost there; --maildir-root picks a disk.
  maildirRoot: path.resolve(
    typeof args['maildir-root'] === 'string'
      ? args['maildir-root']
      : process.env.SMTP_BENCH_MAILDIR_ROOT ||
          (fs.existsSync('/dev/shm') ? '/dev/shm/smtp-bench' : path.join(__dirname, '.maildirs')),
  ),
  serverFilter: typeof args.servers === 'string' ? args.servers.split(',').map((s) => s.trim()) : null,
};

// ---------------------------------------------------------------------------
// Servers under test. `script` is relative to the repository root.

const distRel = path.relative(u.ROOT, u.DIST) || '.';
// The Node flags the catcher's bin and `npm start` run it with (see lib/catcher/cli.ts).
const CATCHER_NODE_ARGS = (process.env.SMTP_BENCH_CATCHER_NODE_ARGS ?? '--max-semi-space-size=1')
  .split(/\s+/)
  .filter(Boolean);
// Extra CLI flags for every catcher run (default --quiet: no log line per message, like the
// smtp-server storing server); SMTP_BENCH_CATCHER_ARGS='' runs it as `npm start` does.
const CATCHER_ARGS = (process.env.SMTP_BENCH_CATCHER_ARGS ?? '--quiet').split(/\s+/).filter(Boolean);
const CATCHER_SCRIPT = path.join(distRel, 'lib', 'catcher', 'cli.js');
const SERVERS = {
  catcher: {
    label: 'catcher (ours, storing)',
    script: CATCHER_SCRIPT,
    stores: true,
    missing: 'run `npm run build` (the catcher CLI is built from lib/catcher)',
    nodeArgs: CATCHER_NODE_ARGS,
    extraArgs: CATCHER_ARGS,
    // The 1 GiB test must not hit the default 25 MiB limit.
    bigArgs: (size) => ['--max-size', String(size * 2)],
  },
  // Issue #6: scaling out is measured on its own; the targets compare one process with one process.
  'catcher-workers': {
    label: 'catcher --workers 2 (ours, storing, 2 processes)',
    script: CATCHER_SCRIPT,
    stores: true,
    tree: true, // CPU and RSS summed over the primary and its workers
    nodeArgs: CATCHER_NODE_ARGS,
    extraArgs: [...CATCHER_ARGS, '--workers', '2'],
  },
  'smtp-server-store': {
    label: 'smtp-server storing',
    script: 'bench/servers/smtp-server-store.js',
    stores: true,
    bigArgs: (size) => ['--size', String(size * 2)],
  },
  'session-discard': {
    label: 'session stream (ours, discarding)',
    script: 'bench/servers/session-discard.js',
    // The default maxClients (1000) would refuse most of the idle sessions.
    idleArgs: (n) => ['--max-clients', String(n + 100)],
  },
  'raw-ceiling': { label: 'raw net ceiling', script: 'bench/servers/raw-ceiling.js' },
  'smtp-server-discard': { label: 'smtp-server discarding', script: 'bench/servers/smtp-server-discard.js' },
  'net-greet': {
    label: 'bare node:net (greets only)',
    script: 'bench/servers/net-greet.js',
    greetOnly: true,
  },
};
const LOOPBACK_ORDER = [
  'catcher',
  'smtp-server-store',
  'session-discard',
  'raw-ceiling',
  'smtp-server-discard',
  'catcher-workers',
];
/**
 * Node flags for every server in the idle-sessions test. Accepting 4,000 connections grows V8's
 * young generation (up to 2 x 16 MiB by default) and that memory stays committed after a GC:
 * ~8 KB "per session" that no session holds. One small young generation for all of them (the
 * catcher's own default, see lib/catcher/cli.ts) leaves what the sessions really keep.
 */
const IDLE_NODE_ARGS = (process.env.SMTP_BENCH_IDLE_NODE_ARGS ?? '--max-semi-space-size=1')
  .split(/\s+/)
  .filter(Boolean);
const wanted = (key) => !cfg.serverFilter || cfg.serverFilter.includes(key);

// ---------------------------------------------------------------------------
// Child processes

const children = new Set();
const tempDirs = new Set();

function killAll() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    console.error(`\n${sig}: stopping`);
    killAll();
    process.exit(130);
  });
}

/**
 * Starts `node …nodeArgs` through `sh -c 'ulimit -n …; exec node …'` so that
 * the child may hold thousands of sockets. `exec` keeps the pid: child.pid
 * is the node process.
 */
function spawnNode(nodeArgs, { stdin = 'ignore', stderr = 'inherit' } = {}) {
  const script = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"';
  const child = spawn('/bin/sh', ['-c', script, 'bench-sh', process.execPath, ...nodeArgs], {
    cwd: u.ROOT,
    stdio: [stdin, 'pipe', stderr],
  });
  children.add(child);
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      child.exitInfo = { code, signal };
      resolve(child.exitInfo);
    });
    child.on('error', (err) => {
      children.delete(child);
      child.exitInfo = { code: null, signal: null, error: err.message };
      resolve(child.exitInfo);
    });
  });
  return child;
}

const stopChild = (child, graceMs = 4000) => u.stopChild(child, graceMs);

/**
 * A child that reports with `@@bench {json}` lines. Other stdout lines go to
 * onLine. next(type) waits for the next message of that type.
 */
function messageChild(nodeArgs, { stdin, onLine = () => {} } = {}) {
  const child = spawnNode(nodeArgs, { stdin });
  return u.readMessages(child, {
    onLine,
    onMessage: (msg) => {
      if (msg.type === 'progress' && child.onProgress) child.onProgress(msg);
    },
  });
}

/** Runs bench/load.js to completion and returns its result message. */
async function runLoad(loadArgs, timeoutMs, onProgress) {
  const child = messageChild([
    path.join(__dirname, 'load.js'),
    ...loadArgs,
    '--timeout-ms',
    String(timeoutMs),
  ]);
  child.onProgress = onProgress;
  const res = await child.next('result', timeoutMs + 10000);
  await stopChild(child, 3000);
  return res;
}

// ---------------------------------------------------------------------------
// Server lifecycle

const skipReasons = {};

async function startServer(key, extraArgs = [], nodeArgs = null) {
  const def = SERVERS[key];
  const skipKey = [key, ...extraArgs].join(' ');
  if (skipReasons[key]) return { skipped: skipReasons[key] };
  if (skipReasons[skipKey]) return { skipped: skipReasons[skipKey] };
  const script = path.join(u.ROOT, def.script);
  if (!fs.existsSync(script)) {
    skipReasons[key] = `${def.script} not found${def.missing ? ` — ${def.missing}` : ''}`;
    return { skipped: skipReasons[key] };
  }
  const port = await u.freePort();
  if (def.stores) fs.mkdirSync(cfg.maildirRoot, { recursive: true });
  const maildir = def.stores ? fs.mkdtempSync(path.join(cfg.maildirRoot, `smtp-bench-${key}-`)) : null;
  if (maildir) tempDirs.add(maildir);
  const serverArgs = [
    '--host',
    HOST,
    '--port',
    String(port),
    ...(maildir ? ['--maildir', maildir] : []),
    ...(def.extraArgs || []),
    ...extraArgs,
  ];
  const child = spawnNode(
    ['--expose-gc', ...(nodeArgs || def.nodeArgs || []), '-r', GC_HOOK, script, ...serverArgs],
    {
      stderr: 'pipe',
    },
  );
  const stderrTail = [];
  u.onLines(child.stderr, (line) => {
    stderrTail.push(line);
    if (stderrTail.length > 20) stderrTail.shift();
  });
  const gcWaiters = [];
  let resolveListening;
  const listening = new Promise((r) => (resolveListening = r));
  u.onLines(child.stdout, (line) => {
    const m = /listening on smtp:\/\/(\[[^\]]+\]|[^\s:/]+):(\d+)/.exec(line);
    if (m) resolveListening({ host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) || port });
    else if (line.startsWith('bench-gc-done')) {
      const w = gcWaiters.shift();
      if (w) w();
    }
  });
  const cleanup = () => {
    if (!maildir) return;
    fs.rmSync(maildir, { recursive: true, force: true });
    tempDirs.delete(maildir);
  };
  const started = await Promise.race([
    listening,
    child.exited.then(async () => {
      await sleep(50); // let the last stderr lines arrive
      return { error: `exited with code ${child.exitInfo.code}` };
    }),
    deadline(15000, { error: 'did not print "listening on smtp://HOST:PORT" within 15 s' }),
  ]);
  if (started.error) {
    await stopChild(child, 1000);
    cleanup();
    const why = stderrTail.filter(Boolean).slice(-3).join(' / ');
    const flags = [...(def.extraArgs || []), ...extraArgs].join(' ');
    skipReasons[skipKey] =
      `${def.script}${flags ? ` ${flags}` : ''} ${started.error}${why ? `: ${why}` : ''}`;
    return { skipped: skipReasons[skipKey] };
  }
  if (started.host !== HOST && started.host !== 'localhost') {
    await stopChild(child, 1000);
    cleanup();
    return { skipped: `${def.script} listens on ${started.host}, expected ${HOST}` };
  }
  const pid = child.pid;
  return {
    key,
    pid,
    host: HOST,
    port: started.port,
    maildir,
    stderrTail,
    alive: () => !child.exitInfo,
    rssKB: () => (def.tree ? u.treeRssKB(pid) : (u.procMemory(pid) || {}).rssKB) || null,
    /** Full GC in the server (through gc-hook.js), then a short settle. */
    async gc() {
      if (child.exitInfo) return false;
      const done = new Promise((r) => gcWaiters.push(r));
      process.kill(pid, 'SIGUSR2');
      const ok = await Promise.race([done.then(() => true), deadline(3000, false)]);
      await sleep(ok ? 150 : 500);
      return ok;
    },
    async stop() {
      await stopChild(child);
      cleanup();
    },
  };
}

/** Max VmRSS sampled every 100 ms (summed over the process tree with `tree`). */
function rssSampler(pid, tree = false) {
  let maxKB = 0;
  const take = () => {
    const kB = tree ? u.treeRssKB(pid) : (u.procMemory(pid) || {}).rssKB;
    if (kB && kB > maxKB) maxKB = kB;
  };
  take();
  const timer = setInterval(take, 100);
  return {
    stop() {
      clearInterval(timer);
      take();
      return maxKB;
    },
  };
}

/** One message through nodemailer: checks that a real client gets through before the raw load. */
async function preflight(srv) {
  const nodemailer = require('nodemailer');
  const transport = nodemailer.createTransport({
    host: srv.host,
    port: srv.port,
    secure: false,
    ignoreTLS: true,
    name: 'preflight.bench.example',
    connectionTimeout: 5000,
    greetingTimeout: 5000,
    socketTimeout: 10000,
  });
  try {
    const info = await transport.sendMail({
      from: 'sender@bench.example',
      to: 'rcpt@bench.example',
      subject: 'bench preflight',
      text: 'nodemailer preflight message\n.leading dot line\n',
    });
    return { ok: true, response: info.response };
  } catch (err) {
    return { ok: false, error: u.firstLine(err.message) };
  } finally {
    transport.close();
  }
}

async function waitStored(maildir, expected, timeoutMs = 3000) {
  const deadline = performance.now() + timeoutMs;
  let found;
  for (;;) {
    found = u.countFiles(maildir, ['.eml', '.json']);
    if (found.counts['.eml'] >= expected && found.counts['.json'] >= expected) break;
    if (performance.now() > deadline) break;
    await sleep(100);
  }
  return { eml: found.counts['.eml'], json: found.counts['.json'], emlBytes: found.emlBytes, expected };
}

const mb = (kb) => (kb === null || kb === undefined ? null : kb / 1024);
const log = (line = '') => process.stdout.write(line + '\n');

// ---------------------------------------------------------------------------
// Sections

async function sectionCore() {
  log('\n== core: Protocol in-process (no sockets) ==');
  const child = messageChild(
    ['--expose-gc', path.join(__dirname, 'core.js'), ...(quick ? ['--quick'] : [])],
    {
      onLine: (line) => log(`  ${line}`),
    },
  );
  const res = await child.next('result', quick ? 90000 : 180000);
  await stopChild(child, 2000);
  if (res.ok === false && res.error) log(`  error: ${res.error}`);
  return res;
}

async function loopbackRun(key, sz, rep) {
  const srv = await startServer(key);
  if (srv.skipped) return { key, size: sz.label, skipped: srv.skipped };
  try {
    const pre = await preflight(srv);
    await sleep(100);
    await srv.gc();
    const idleKB = srv.rssKB();
    const tree = SERVERS[key].tree === true;
    const cpuSeconds = tree ? u.treeCpuSeconds : u.procCpuSeconds;
    if (!tree) u.resetPeak(srv.pid);
    const sampler = rssSampler(srv.pid, tree);
    const cpu0 = cpuSeconds(srv.pid);
    const busy0 = u.machineBusySeconds();
    const self0 = process.cpuUsage();
    const wall0 = performance.now();
    const load = await runLoad(
      [
        '--mode',
        'throughput',
        '--host',
        srv.host,
        '--port',
        String(srv.port),
        '--sessions',
        String(cfg.sessions),
        '--messages',
        String(sz.messages),
        '--size',
        String(sz.size),
        '--warmup',
        String(sz.warmup),
      ],
      120000,
    );
    const cpu1 = cpuSeconds(srv.pid);
    const busy1 = u.machineBusySeconds();
    const self1 = process.cpuUsage(self0);
    const wallSec = (performance.now() - wall0) / 1000;
    const maxSampledKB = sampler.stop();
    const handled = (load.messages || 0) + (load.warmupMessages || 0);
    const mem = (!tree && u.procMemory(srv.pid)) || {};
    const run = {
      key,
      size: sz.label,
      rep,
      ok: load.ok === true,
      msgsPerSec: load.msgsPerSec,
      mbPerSec: load.mbPerSec,
      p50Ms: load.p50Ms,
      p99Ms: load.p99Ms,
      messages: load.messages,
      expected: load.expected,
      idleRssMB: mb(idleKB),
      peakRssMB: mb(Math.max(mem.hwmKB || 0, maxSampledKB)),
      // Server CPU per message, warm-up included (whole load run / all messages).
      serverCpuUsPerMsg:
        cpu0 !== null && cpu1 !== null && handled > 0 ? ((cpu1 - cpu0) * 1e6) / handled : null,
      clientCpuPct: load.clientCpuPct,
      // CPU used by other processes on the machine meanwhile (other builds or tests
      // make the numbers noisy), in % of one core over the load run.
      otherCpuPct:
        busy0 !== null &&
        busy1 !== null &&
        cpu0 !== null &&
        cpu1 !== null &&
        load.clientCpuTotalSec !== undefined
          ? Math.max(
              0,
              ((busy1 - busy0 - (cpu1 - cpu0) - load.clientCpuTotalSec - (self1.user + self1.system) / 1e6) /
                wallSec) *
                100,
            )
          : null,
      preflight: pre.ok ? 'ok' : pre.error,
      errors: load.errorSamples || (load.error ? [load.error] : []),
      serverAlive: srv.alive(),
    };
    if (SERVERS[key].stores) {
      run.stored = await waitStored(srv.maildir, handled + (pre.ok ? 1 : 0));
      run.storedOk = run.stored.eml === run.stored.expected && run.stored.json === run.stored.expected;
    }
    return run;
  } finally {
    await srv.stop();
  }
}

function describeRun(r) {
  if (r.skipped) return `skipped: ${r.skipped}`;
  const parts = [
    `${u.fmt(r.msgsPerSec)} msg/s`,
    `${u.fmt(r.mbPerSec, 1)} MB/s`,
    `p50 ${u.fmt(r.p50Ms, 2)} ms`,
    `p99 ${u.fmt(r.p99Ms, 2)} ms`,
    `peak RSS ${u.fmt(r.peakRssMB, 1)} MB`,
    `server CPU ${u.fmt(r.serverCpuUsPerMsg)} µs/msg`,
    `client CPU ${u.fmt(r.clientCpuPct)}%`,
    `other CPU ${u.fmt(r.otherCpuPct)}%`,
  ];
  if (r.stored) parts.push(`stored ${r.stored.eml}/${r.stored.expected}${r.storedOk ? '' : ' MISMATCH'}`);
  if (!r.ok) parts.push(`FAILED (${r.messages || 0}/${r.expected || '?'} messages)`);
  if (r.preflight !== 'ok') parts.push(`nodemailer preflight: ${r.preflight}`);
  if (r.errors && r.errors.length) parts.push(`errors: ${r.errors.slice(0, 2).join(' / ')}`);
  if (!r.serverAlive) parts.push('server died');
  return parts.join('  ');
}

async function sectionLoopback() {
  log(
    `\n== loopback: ${cfg.sessions} sessions x M messages, load generator in its own process, ` +
      `${cfg.reps} run(s) per case ==`,
  );
  const runs = [];
  const keys = LOOPBACK_ORDER.filter(wanted);
  for (const sz of cfg.sizes) {
    log(
      `-- ${sz.label} messages: ${cfg.sessions} sessions x (${sz.warmup} warm-up + ${sz.messages} measured) per run`,
    );
    for (let rep = 1; rep <= cfg.reps; rep++) {
      for (const key of keys) {
        if (skipReasons[key] && rep > 1) continue;
        const r = await loopbackRun(key, sz, rep);
        runs.push(r);
        log(`  ${sz.label.padEnd(6)} ${key.padEnd(20)} run ${rep}/${cfg.reps}: ${describeRun(r)}`);
      }
    }
  }
  return { runs, sessions: cfg.sessions, reps: cfg.reps, sizes: cfg.sizes };
}

async function bigRun(key, extraArgs) {
  const srv = await startServer(key, extraArgs);
  if (srv.skipped) return { key, skipped: srv.skipped };
  try {
    await sleep(300);
    await srv.gc();
    const idleKB = srv.rssKB();
    const peakReset = u.resetPeak(srv.pid);
    const sampler = rssSampler(srv.pid);
    const load = await runLoad(
      ['--mode', 'big', '--host', srv.host, '--port', String(srv.port), '--size', String(cfg.bigSize)],
      300000,
      (p) => log(`    … ${u.fmt(p.sentBytes / 1048576)} MiB sent`),
    );
    const maxSampledKB = sampler.stop();
    const mem = u.procMemory(srv.pid) || {};
    const peakKB = Math.max(peakReset ? mem.hwmKB || 0 : 0, maxSampledKB);
    const res = {
      key,
      ok: load.ok === true && load.code === 250,
      size: cfg.bigSize,
      seconds: load.seconds,
      mbPerSec: load.mbPerSec,
      reply: load.reply || load.error,
      idleRssMB: mb(idleKB),
      peakRssMB: mb(peakKB),
      growthMB: mb(peakKB - idleKB),
      peakFrom: peakReset ? 'VmHWM after clear_refs, and VmRSS every 100 ms' : 'VmRSS every 100 ms',
      serverAlive: srv.alive(),
    };
    if (SERVERS[key].stores) {
      const stored = await waitStored(srv.maildir, 1);
      res.storedBytes = stored.emlBytes;
    }
    return res;
  } finally {
    await srv.stop();
  }
}

async function idleRun(key, n) {
  const srv = await startServer(key, SERVERS[key].idleArgs ? SERVERS[key].idleArgs(n) : [], IDLE_NODE_ARGS);
  if (srv.skipped) return { key, skipped: srv.skipped };
  let load;
  try {
    await sleep(300);
    await srv.gc();
    const idleKB = srv.rssKB();
    load = messageChild(
      [
        path.join(__dirname, 'load.js'),
        '--mode',
        'idle',
        '--host',
        srv.host,
        '--port',
        String(srv.port),
        '--sessions',
        String(n),
        '--timeout-ms',
        '120000',
        ...(SERVERS[key].greetOnly ? ['--greet-only'] : []),
      ],
      { stdin: 'pipe' },
    );
    const ready = await load.next('ready', 90000);
    if (ready.ok === false) throw new Error(ready.error);
    await sleep(1000);
    await srv.gc();
    const withKB = srv.rssKB();
    load.stdin.end('release\n');
    const done = await load.next('result', 30000);
    return {
      key,
      ok: ready.failed === 0 && done.ok !== false,
      sessions: n,
      held: ready.held,
      failed: ready.failed,
      dropped: done.dropped || 0,
      connectSeconds: ready.seconds,
      idleRssMB: mb(idleKB),
      withRssMB: mb(withKB),
      perSessionKB: ready.held > 0 ? (withKB - idleKB) / ready.held : null,
      errors: ready.errorSamples || [],
      serverAlive: srv.alive(),
    };
  } catch (err) {
    return { key, ok: false, error: u.firstLine(err.message) };
  } finally {
    if (load) await stopChild(load, 3000);
    await srv.stop();
  }
}

async function sectionMemory() {
  const bigLabel = `${u.fmt(cfg.bigSize / 1048576)} MiB`;
  log(
    `\n== memory: one ${bigLabel} message over one connection; ${u.fmt(cfg.idleSessions)} idle sessions ==`,
  );
  const big = [];
  for (const key of ['catcher', 'smtp-server-store']) {
    if (!wanted(key)) continue;
    log(`  ${bigLabel} stream -> ${key}`);
    const r = await bigRun(key, SERVERS[key].bigArgs(cfg.bigSize));
    big.push(r);
    log(
      r.skipped
        ? `    skipped: ${r.skipped}`
        : `    peak RSS growth ${u.fmt(r.growthMB, 1)} MB (idle ${u.fmt(r.idleRssMB, 1)} MB, peak ${u.fmt(
            r.peakRssMB,
            1,
          )} MB), ${u.fmt(r.mbPerSec, 1)} MB/s, reply: ${r.reply}` + (r.serverAlive ? '' : ', server died'),
    );
  }
  const idle = [];
  for (const key of ['session-discard', 'smtp-server-discard', 'net-greet']) {
    if (!wanted(key)) continue;
    log(`  ${u.fmt(cfg.idleSessions)} idle sessions -> ${key}`);
    const r = await idleRun(key, cfg.idleSessions);
    idle.push(r);
    log(
      r.skipped
        ? `    skipped: ${r.skipped}`
        : r.error
          ? `    failed: ${r.error}`
          : `    ${u.fmt(r.perSessionKB, 2)} KB per session (idle ${u.fmt(r.idleRssMB, 1)} MB, with ${r.held} sessions ${u.fmt(
              r.withRssMB,
              1,
            )} MB)` + (r.failed ? `, ${r.failed} failed to connect: ${r.errors[0]}` : ''),
    );
  }
  return { big, idle, bigSize: cfg.bigSize, idleSessions: cfg.idleSessions, idleNodeArgs: IDLE_NODE_ARGS };
}

// ---------------------------------------------------------------------------

/**
 * What the disk charges for one stored message's file work, outside any server: two files
 * created, written (1 KB) and renamed into place, synchronously. Reported beside the storing
 * results so a slow file system is visible instead of being read as a slow server.
 */
function probeFileCost(root) {
  fs.mkdirSync(root, { recursive: true });
  const dir = fs.mkdtempSync(path.join(root, 'probe-'));
  const body = Buffer.alloc(1024, 0x61);
  const count = 300;
  try {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      for (const ext of ['eml', 'json']) {
        const tmp = path.join(dir, `.${i}.${ext}.tmp`);
        fs.writeFileSync(tmp, body, { flag: 'wx' });
        fs.renameSync(tmp, path.join(dir, `${i}.${ext}`));
      }
    }
    const cpu = process.cpuUsage(cpu0);
    return {
      wallUs: ((performance.now() - t0) * 1000) / count,
      systemUs: cpu.system / count,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const started = new Date();
  const t0 = performance.now();
  const command = ['node', 'bench/run.js', ...process.argv.slice(2)].join(' ');
  const meta = {
    date: started.toISOString(),
    command,
    cpus: os.cpus().length,
    cpuModel: (os.cpus()[0] || {}).model || 'unknown',
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    totalMemGiB: os.totalmem() / 1024 ** 3,
    quick,
    sections: only,
    dist: distRel,
    maildirRoot: cfg.maildirRoot.startsWith(u.ROOT)
      ? path.relative(u.ROOT, cfg.maildirRoot) || '.'
      : cfg.maildirRoot,
    fileCost: probeFileCost(cfg.maildirRoot),
  };
  log(
    `smtp-session-stream benchmarks — ${meta.date}\n` +
      `${command}  |  node ${meta.node}  |  os.cpus().length ${meta.cpus}  |  ${quick ? 'quick' : 'full'} mode`,
  );

  // The whole suite is bounded in time, whatever happens below.
  const limitMs = (quick ? 5 : 12) * 60 * 1000;
  const watchdog = setTimeout(() => {
    console.error(`\nbenchmark exceeded ${limitMs / 60000} minutes, stopping`);
    killAll();
    process.exit(1);
  }, limitMs);
  watchdog.unref();

  const results = { meta };
  if (only.includes('core')) results.core = await sectionCore();
  if (only.includes('loopback')) results.loopback = await sectionLoopback();
  if (only.includes('memory')) results.memory = await sectionMemory();
  meta.seconds = (performance.now() - t0) / 1000;

  report(results);
  clearTimeout(watchdog);
}

/** Prints the summary and (unless --no-write) writes latest.md, latest.svg and latest.json. */
function report(results) {
  const md = renderMarkdown(results, { servers: SERVERS });
  log('\n' + md);
  if (args['no-write'] === true) return;
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const write = (name, text) => {
    const file = path.join(RESULTS_DIR, name);
    fs.writeFileSync(file + '.tmp', text);
    fs.renameSync(file + '.tmp', file);
  };
  write('latest.md', md);
  write('latest.svg', renderSvg(results, { servers: SERVERS }));
  write('latest.json', JSON.stringify(results, null, 2) + '\n');
  log(
    `written: bench/results/latest.md, latest.svg, latest.json` +
      (results.meta.seconds ? ` (${u.fmt(results.meta.seconds, 1)} s)` : ''),
  );
}

if (typeof args.render === 'string') {
  // Re-render the reports from a saved latest.json, without running anything.
  report(JSON.parse(fs.readFileSync(args.render, 'utf8')));
  process.exit(0);
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  killAll();
  process.exit(1);
});
