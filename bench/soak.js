'use strict';
// Soak test for the catcher: many concurrent sessions, many unique messages, slow clients.
// See the "Soak test" section of bench/README.md.
//
//   npm run build && node bench/soak.js           # 1,000 sessions, 20,000 messages (~2-3 min)
//   node bench/soak.js --quick                    # 200 sessions, 2,000 messages (~40 s)
//
// The catcher and the load generators (bench/lib/soak-load.js) are child processes of this one,
// all on 127.0.0.1; they are killed and the temporary maildir removed when this process exits
// (also on Ctrl-C). Exit code: 0 when every message is accounted for, 1 when a message was lost,
// corrupted or duplicated (or another integrity check failed, or the catcher wedged), 2 on usage
// errors. A MISS of the slow-client target is reported, not an error.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const { setInterval, clearInterval } = require('node:timers');
const { setTimeout: sleep } = require('node:timers/promises');
const { performance } = require('node:perf_hooks');
const u = require('./lib/util');
const { buildSoakMessage, parseToken, runOf } = require('./lib/soak-message');

const HOST = '127.0.0.1';
const LOAD = path.join(__dirname, 'lib', 'soak-load.js');
const RESULTS = path.join(__dirname, 'results', 'soak.md');
const CATCHER = path.join(u.DIST, 'lib', 'catcher', 'cli.js');
const WANT_NOFILE = 65536;

const USAGE = `usage: node bench/soak.js [--quick] [options]

  --quick                200 sessions, 2,000 messages, 50 slow clients (~40 s)
  --sessions N           concurrent sessions in the load phase (default 1000, quick 200)
  --messages N           messages delivered across them (default 20000, quick 2000)
  --slow N               slow clients (default 200, quick 50; 0 skips the slow-client phase)
  --fast-sessions N      fast client sessions in the slow-client phase (default 20)
  --fast-ms MS           length of each fast measurement (default 8000, quick 4000)
  --rounds N             slow-client rounds: without, (with, without) × N (default 2, quick 1)
  --min-size B           smallest message (default 200)
  --max-size B           largest message (default 20480)
  --seed N               message seed (default: random; printed, reproduces every message)
  --idle-timeout S       the catcher's --idle-timeout (default 60)
  --max-clients N        the catcher's --max-clients (default: enough for every session + 100)
  --catcher-nofile N     the catcher's open-file limit to ask for (default 65536; e.g. 1024 to see
                         how it copes with running out of file descriptors)
  --no-write             do not write bench/results/soak.md
  --keep                 keep the maildir (its path is printed) instead of removing it
`;

const args = u.parseArgs(process.argv.slice(2), ['quick', 'help', 'no-write', 'keep']);
if (args.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const quick = args.quick === true;
let cfg;
try {
  cfg = {
    quick,
    sessions: u.intArg(args.sessions, quick ? 200 : 1000),
    messages: u.intArg(args.messages, quick ? 2000 : 20000),
    slow: u.intArg(args.slow, quick ? 50 : 200),
    fastSessions: u.intArg(args['fast-sessions'], 20),
    fastMs: u.intArg(args['fast-ms'], quick ? 4000 : 8000),
    rounds: Math.max(1, u.intArg(args.rounds, quick ? 1 : 2)),
    minSize: u.intArg(args['min-size'], 200),
    maxSize: u.intArg(args['max-size'], 20480),
    seed: u.intArg(args.seed, crypto.randomBytes(4).readUInt32BE(0) >>> 1),
    idleTimeout: u.intArg(args['idle-timeout'], 60),
    catcherNofile: u.intArg(args['catcher-nofile'], WANT_NOFILE),
    keep: args.keep === true,
  };
  cfg.maxClients = u.intArg(args['max-clients'], Math.max(cfg.sessions, cfg.slow + cfg.fastSessions) + 100);
  if (cfg.maxSize < cfg.minSize || cfg.minSize < 200) throw new Error('need 200 <= --min-size <= --max-size');
  if (cfg.sessions < 1 || cfg.fastSessions < 1) throw new Error('need at least one session');
} catch (err) {
  console.error(`${err.message}\n\n${USAGE}`);
  process.exit(2);
}
// Bounds: the load phase, each fast run, the slow phase, the whole run.
const LOAD_TIMEOUT_MS = quick ? 30000 : 120000;
const SLOW_BOUND_MS = cfg.fastMs + 12000;
const WATCHDOG_MS = quick ? 150000 : 420000;

const log = (line = '') => process.stdout.write(line + '\n');
const fmt = u.fmt;

// ---------------------------------------------------------------------------
// Children and temporary files: all removed on exit, Ctrl-C or the watchdog.

const children = new Set();
let tempRoot = null;
let verifier = null; // the Verifier of this run, see below
let keepTemp = false;

function cleanup() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // gone already
    }
  }
  children.clear();
  if (tempRoot && !keepTemp) fs.rmSync(tempRoot, { recursive: true, force: true });
  tempRoot = null;
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\n${sig}: stopping, removing the children and the temporary maildir`);
    cleanup();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  console.error(`soak: watchdog — still running after ${WATCHDOG_MS / 1000} s, giving up`);
  cleanup();
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

/** Like sleep(), but does not keep the process alive. */
const { deadline } = u;

/**
 * `node …nodeArgs` through `sh -c 'ulimit -n 65536 || ulimit -n <hard>; exec node …'`: the child
 * may hold thousands of sockets and files. `exec` keeps the pid, so child.pid is node's.
 */
function spawnNode(nodeArgs, { stdin = 'ignore', nofile = WANT_NOFILE } = {}) {
  const script = `ulimit -n ${nofile} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`;
  const child = spawn('/bin/sh', ['-c', script, 'soak-sh', process.execPath, ...nodeArgs], {
    cwd: u.ROOT,
    stdio: [stdin, 'pipe', 'pipe'],
  });
  children.add(child);
  child.stderrTail = [];
  u.onLines(child.stderr, (line) => {
    child.stderrTail.push(line);
    if (child.stderrTail.length > 60) child.stderrTail.shift();
  });
  child.exited = new Promise((resolve) => {
    const done = (info) => {
      children.delete(child);
      child.exitInfo = info;
      resolve(info);
    };
    child.on('exit', (code, signal) => done({ code, signal }));
    child.on('error', (err) => done({ code: null, signal: null, error: err.message }));
  });
  return child;
}

const stopChild = (child, graceMs = 3000) => u.stopChild(child, graceMs);

/** A child reporting with `@@bench {json}` lines; next(type, ms) waits for the next of a type. */
function messageChild(nodeArgs, { stdin = 'ignore', onMessage = () => {} } = {}) {
  const child = spawnNode(nodeArgs, { stdin });
  u.readMessages(child, {
    onMessage,
    exitDetail: () => {
      const tail = child.stderrTail
        .filter(Boolean)
        .slice(process.env.SOAK_DEBUG ? -60 : -3)
        .join(' / ');
      return tail ? `: ${tail}` : '';
    },
  });
  child.send = (line) => {
    if (child.stdin && !child.stdin.destroyed) child.stdin.write(line + '\n');
  };
  return child;
}

// ---------------------------------------------------------------------------
// /proc readers

/** Soft and hard "Max open files" of a process. */
function openFileLimit(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/limits`, 'utf8');
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
    return m ? { soft: m[1], hard: m[2] } : null;
  } catch {
    return null;
  }
}

function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

/** TCP connections in ESTABLISHED state whose local port is `port` (the server's side). */
function establishedAt(port) {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[1].endsWith(`:${hex}`) && f[3] === '01') n++;
    }
  }
  return n;
}

/** Max VmRSS and fd count of a process, sampled every 250 ms. */
function sampler(pid) {
  const s = { maxRssKB: 0, maxFds: 0 };
  const take = () => {
    const m = u.procMemory(pid);
    if (m && m.rssKB > s.maxRssKB) s.maxRssKB = m.rssKB;
    const fds = fdCount(pid);
    if (fds !== null && fds > s.maxFds) s.maxFds = fds;
  };
  take();
  const timer = setInterval(take, 250);
  s.stop = () => {
    clearInterval(timer);
    take();
    return s;
  };
  return s;
}

let probes = 0;
const probeResults = [];

/**
 * A fresh SMTP session: greeting, EHLO, one small message (token `<run>-probe-<n>`), QUIT, each
 * step within timeoutMs. Resolves with { ok, steps: [step, ms]…, error }.
 */
function probe(port, timeoutMs = 5000) {
  const token = `${runOf(cfg.seed)}-probe-${probes++}`;
  const script = [
    ['greeting', null, '220'],
    ['EHLO', 'EHLO probe.soak.example\r\n', '250'],
    ['MAIL FROM', 'MAIL FROM:<probe@soak.example>\r\n', '250'],
    ['RCPT TO', 'RCPT TO:<probe@soak.example>\r\n', '250'],
    ['DATA', 'DATA\r\n', '354'],
    [
      'end of DATA',
      `Message-ID: <soak.${token}@soak.example>\r\nSubject: soak ${token} probe\r\n\r\nprobe\r\n.\r\n`,
      '250',
    ],
    ['QUIT', 'QUIT\r\n', '221'],
  ];
  return new Promise((resolve) => {
    const t0 = performance.now();
    const socket = net.connect({ host: HOST, port });
    const result = { ok: false, token, steps: [] };
    let buf = '';
    let step = 0;
    let timer = null;
    let settled = false;
    const end = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) result.error = error;
      result.ok = !error;
      result.totalMs = performance.now() - t0;
      probeResults.push(result);
      resolve(result);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => end(`no reply to ${script[step][0]} within ${timeoutMs} ms`), timeoutMs);
    };
    arm();
    socket.setEncoding('latin1');
    socket.on('error', (err) => end(`socket error: ${err.code || err.message}`));
    socket.on('close', () =>
      end(step < script.length ? `closed while waiting for ${script[step][0]}` : undefined),
    );
    socket.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1);
        if (line[3] === '-') continue;
        const [name, , want] = script[step];
        if (!line.startsWith(want)) return end(`${name}: ${line}`);
        result.steps.push([name, performance.now() - t0]);
        if (++step === script.length) return end();
        arm();
        socket.write(script[step][1]);
      }
    });
  });
}

/** CPU seconds used by everything on the machine but `pids` and this process, over an interval. */
function cpuWatch(pids) {
  const busy0 = u.machineBusySeconds();
  const own0 = process.cpuUsage();
  const proc0 = pids.map((pid) => u.procCpuSeconds(pid) || 0);
  const t0 = performance.now();
  return (extraSec = 0) => {
    const seconds = (performance.now() - t0) / 1000;
    const own = process.cpuUsage(own0);
    const procs = pids.map((pid, i) => (u.procCpuSeconds(pid) || proc0[i]) - proc0[i]);
    const busy = u.machineBusySeconds();
    const other =
      busy === null || busy0 === null
        ? null
        : busy - busy0 - procs.reduce((a, b) => a + b, 0) - (own.user + own.system) / 1e6 - extraSec;
    return { seconds, procs, otherPct: other === null ? null : Math.max(0, (100 * other) / seconds) };
  };
}

// ---------------------------------------------------------------------------
// The catcher

async function startCatcher(maildir) {
  const catcherArgs = [
    '--host',
    HOST,
    '--port',
    '0',
    '--maildir',
    maildir,
    '--quiet',
    '--max-clients',
    String(cfg.maxClients),
    '--idle-timeout',
    String(cfg.idleTimeout),
  ];
  const child = spawnNode([CATCHER, ...catcherArgs], { nofile: cfg.catcherNofile });
  const listening = new Promise((resolve) => {
    u.onLines(child.stdout, (line) => {
      const m = /listening on smtp:\/\/(\[[^\]]+\]|[^\s:/]+):(\d+)/.exec(line);
      if (m) resolve({ host: m[1], port: Number(m[2]) });
    });
  });
  const started = await Promise.race([
    listening,
    child.exited.then(async (info) => {
      await sleep(50);
      return { error: `exited with code ${info.code}: ${child.stderrTail.slice(-3).join(' / ')}` };
    }),
    deadline(15000, { error: 'no "listening on smtp://HOST:PORT" within 15 s' }),
  ]);
  if (started.error) throw new Error(`catcher: ${started.error}`);
  if (started.host !== HOST) throw new Error(`catcher listens on ${started.host}, expected ${HOST}`);
  const command = `node ${path.relative(u.ROOT, CATCHER)} ${catcherArgs.join(' ').replace(maildir, 'DIR')}`;
  return { child, pid: child.pid, port: started.port, command };
}

// ---------------------------------------------------------------------------
// Phases

function loadArgs(port, extra) {
  return [
    LOAD,
    '--host',
    HOST,
    '--port',
    String(port),
    '--seed',
    String(cfg.seed),
    '--min-size',
    String(cfg.minSize),
    '--max-size',
    String(cfg.maxSize),
    ...extra,
  ];
}

async function phaseLoad(catcher, dir) {
  log(`\n== 1. load: ${fmt(cfg.sessions)} concurrent sessions, ${fmt(cfg.messages)} messages ==`);
  const manifest = path.join(dir, 'manifest-load.jsonl');
  let lastProgress = 0;
  const gen = messageChild(
    loadArgs(catcher.port, [
      '--mode',
      'deliver',
      '--phase',
      'load',
      '--sessions',
      String(cfg.sessions),
      '--messages',
      String(cfg.messages),
      '--manifest',
      manifest,
      '--timeout-ms',
      String(LOAD_TIMEOUT_MS),
    ]),
    {
      stdin: 'pipe',
      onMessage: (msg) => {
        if (msg.type !== 'progress') return;
        const now = performance.now();
        if (now - lastProgress < 4000) return;
        lastProgress = now;
        log(
          `  … ${fmt(msg.delivered)} delivered, ${fmt(msg.attempted)} sent, ${fmt(msg.open)} sessions open`,
        );
      },
    },
  );
  const out = { manifest };
  const samples = sampler(catcher.pid);
  const ready = await gen.next('ready', 60000);
  out.ready = ready;
  out.limitGenerator = openFileLimit(gen.pid); // read now: before the exec it would be the shell's
  out.establishedAtStart = establishedAt(catcher.port);
  out.catcherFdsAtStart = fdCount(catcher.pid);
  if (ready.missing) {
    out.error = `sessions not ready: ${ready.error}`;
    samples.stop();
    await stopChild(gen);
    return out;
  }
  log(
    `  ${fmt(ready.greetings)} greeted, ${fmt(ready.ehloDone)} past EHLO in ${fmt(ready.connectSeconds, 1)} s; ` +
      `the catcher holds ${fmt(out.establishedAtStart)} established connections`,
  );
  // The generator's CPU comes from its own report (it may be gone before /proc is read).
  const genCpuAtGo = u.procCpuSeconds(gen.pid) || 0;
  const cpu = cpuWatch([catcher.pid]);
  gen.send('go');
  const res = await gen.next('result', LOAD_TIMEOUT_MS + 15000);
  out.cpu = cpu(res.cpuTotalSec ? res.cpuTotalSec - genCpuAtGo : 0);
  out.samples = samples.stop();
  out.result = res;
  if (res.missing || res.timedOut) {
    out.error = res.error || 'load phase did not finish';
    out.probe = await probe(catcher.port);
  }
  await stopChild(gen);
  verifier.addManifest('load', manifest);
  // Every message is answered: check and remove what is stored (not while one may be half renamed).
  if (!out.error) verifier.scan();
  if (!res.missing) {
    log(
      `  ${fmt(res.delivered)}/${fmt(res.attempted)} answered 250 in ${fmt(res.seconds, 1)} s ` +
        `(${fmt(res.msgsPerSec)} msg/s, p50 ${fmt(res.p50Ms)} ms, p99 ${fmt(res.p99Ms)} ms)`,
    );
  }
  if (out.error) log(`  error: ${out.error}`);
  return out;
}

async function fastRun(catcher, dir, label, extraPids = [], ms = cfg.fastMs) {
  const phase = `fast-${label}`;
  const manifest = path.join(dir, `manifest-${phase}.jsonl`);
  const cpu = cpuWatch([catcher.pid, ...extraPids]);
  const catcherCpu0 = u.procCpuSeconds(catcher.pid);
  const gen = messageChild(
    loadArgs(catcher.port, [
      '--mode',
      'fast',
      '--phase',
      phase,
      '--sessions',
      String(cfg.fastSessions),
      '--messages',
      '200000',
      '--duration-ms',
      String(ms),
      '--manifest',
      manifest,
      '--timeout-ms',
      String(ms + 20000),
    ]),
  );
  const res = await gen.next('result', ms + 30000);
  await stopChild(gen);
  const c = cpu(res.cpuTotalSec || 0);
  const catcherCpu = (u.procCpuSeconds(catcher.pid) || 0) - (catcherCpu0 || 0);
  verifier.addManifest(phase, manifest);
  if (!res.missing && !res.timedOut) verifier.scan();
  return {
    label,
    phase,
    manifest,
    ...res,
    otherCpuPct: c.otherPct,
    catcherCpuPct: (100 * catcherCpu) / c.seconds,
    catcherUsPerMsg: res.delivered ? (catcherCpu * 1e6) / res.delivered : null,
  };
}

async function phaseSlow(catcher, dir) {
  const rounds = cfg.rounds;
  log(
    `\n== 2. slow clients: ${fmt(cfg.fastSessions)} fast sessions, ${cfg.fastMs / 1000} s per run, ` +
      `${rounds}× (without, with ${fmt(cfg.slow)} slow clients), then without ==`,
  );
  const out = { runs: [], groups: [] };
  const show = (r) =>
    log(
      `  ${r.label.padEnd(9)} ${r.missing ? `failed: ${r.error}` : `${fmt(r.msgsPerSec)} msg/s, p50 ${fmt(r.p50Ms, 1)} ms, p99 ${fmt(r.p99Ms, 1)} ms, other CPU ${fmt(r.otherCpuPct)} %`}`,
    );
  const without = async (k) => {
    const r = await fastRun(catcher, dir, `base${k}`);
    r.withSlow = false;
    out.runs.push(r);
    show(r);
  };
  if (cfg.messages < 10000) {
    // A short load phase leaves the catcher's JIT cold: warm it up so that the first run is fair.
    out.warmup = await fastRun(catcher, dir, 'warmup', [], Math.min(cfg.fastMs, 2000));
    show(out.warmup);
  }
  await without(1);
  for (let k = 1; k <= rounds; k++) {
    const t0 = performance.now();
    const slow = messageChild(
      loadArgs(catcher.port, [
        '--mode',
        'slow',
        '--sessions',
        String(cfg.slow),
        '--duration-ms',
        String(SLOW_BOUND_MS),
        '--timeout-ms',
        String(SLOW_BOUND_MS + 2000),
      ]),
      { stdin: 'pipe' },
    );
    const g = { ready: await slow.next('ready', 8000) };
    await sleep(1500); // let the dribbling settle in
    g.established = establishedAt(catcher.port);
    const r = await fastRun(catcher, dir, `slow${k}`, [slow.pid]);
    r.withSlow = true;
    out.runs.push(r);
    show(r);
    slow.send('stop');
    g.result = await slow.next('result', 5000);
    await stopChild(slow);
    g.seconds = (performance.now() - t0) / 1000;
    out.groups.push(g);
    log(
      `  slow clients: ${fmt(g.ready.greetings)} greeted, ${fmt(g.ready.inData)} inside DATA, ` +
        `${fmt(g.result.bytesSent)} bytes dribbled, ${fmt(g.result.closedByServer)} closed by the server; ` +
        `with them for ${fmt(g.seconds, 1)} s`,
    );
    await sleep(500);
    await without(k + 1);
  }

  const mean = (runs, key) => {
    const xs = runs.filter((r) => !r.missing && Number.isFinite(r[key]));
    return xs.length ? xs.reduce((a, r) => a + r[key], 0) / xs.length : null;
  };
  const summary = (runs) => ({
    msgsPerSec: mean(runs, 'msgsPerSec'),
    p50Ms: mean(runs, 'p50Ms'),
    p99Ms: mean(runs, 'p99Ms'),
    catcherUsPerMsg: mean(runs, 'catcherUsPerMsg'),
  });
  out.baseline = summary(out.runs.filter((r) => !r.withSlow));
  out.slowMean = summary(out.runs.filter((r) => r.withSlow));
  out.ratio =
    out.baseline.msgsPerSec && out.slowMean.msgsPerSec
      ? out.slowMean.msgsPerSec / out.baseline.msgsPerSec
      : null;
  out.pass = out.ratio !== null && out.ratio >= 0.8;
  return out;
}

async function phaseAfter(catcher, maildir, fdsIdle) {
  const out = {};
  // Every client is gone: the catcher's connections should drain to zero.
  const t0 = performance.now();
  for (;;) {
    out.establishedAfter = establishedAt(catcher.port);
    if (out.establishedAfter === 0 || performance.now() - t0 > 5000) break;
    await sleep(100);
  }
  out.drainMs = performance.now() - t0;
  out.probe = await probe(catcher.port);
  out.fdsIdle = fdsIdle;
  // The probe's socket may still be closing on the catcher's side: give it up to 2 s.
  for (let i = 0; i < 20; i++) {
    out.fdsAfter = fdCount(catcher.pid);
    if (out.fdsAfter === null || out.fdsAfter <= fdsIdle) break;
    await sleep(100);
  }
  out.rss = u.procMemory(catcher.pid);
  out.tempFiles = fs.readdirSync(maildir).filter((n) => n.startsWith('.') || n.includes('.tmp'));
  const t1 = performance.now();
  const exit = await stopChild(catcher.child, 10000);
  out.exit = { ...exit, ms: performance.now() - t1 };
  return out;
}

// ---------------------------------------------------------------------------
// Verification: the maildir against the manifests.

function readManifest(file) {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Bytes as text: printable ASCII kept, everything else as \\xNN. */
function showBytes(buf) {
  let out = '';
  for (const b of buf)
    out +=
      b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return `"${out}"`;
}

/** The command that rebuilds a message's content (add --wire for the bytes sent after the 354). */
function rebuildCommand(rec) {
  return `node bench/lib/soak-message.js ${cfg.seed} ${rec.phase} ${rec.index} ${cfg.minSize} ${cfg.maxSize}`;
}

function firstDifference(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/**
 * Checks the maildir against the manifests, incrementally: after each phase its manifest is added
 * and scan() reads every finished message (`.eml` + `.json`) present, then removes them (unless
 * --keep), so that the maildir, the disk and the kernel's dirty pages stay small during the run.
 * What was seen is kept per token, so a duplicate is found even when its copies are scanned in
 * different phases. scan() runs only when no message is in flight (every reply received).
 */
class Verifier {
  constructor(maildir, { remove }) {
    this.maildir = maildir;
    this.remove = remove;
    this.byToken = new Map();
    this.phases = [];
    this.seen = new Set();
    this.slowPrefix = `${runOf(cfg.seed)}-slow-`;
    this.probePrefix = `${runOf(cfg.seed)}-probe-`;
    this.v = {
      emlFiles: 0,
      jsonFiles: 0,
      storedBytes: 0,
      unidentified: [],
      slowStored: [],
      probeStored: 0,
      jsonMissing: [],
      jsonMismatch: [],
      orphanJson: [],
      idMismatch: [],
      corruptSamples: [],
      scans: 0,
      scanSeconds: 0,
    };
  }

  addManifest(phase, file) {
    const recs = readManifest(file);
    this.phases.push({ phase, tokens: recs.map((r) => r.token) });
    for (const r of recs) this.byToken.set(r.token, { ...r, phase, files: [] });
  }

  scan() {
    const t0 = performance.now();
    const { v, maildir } = this;
    const names = fs.readdirSync(maildir).filter((n) => !n.startsWith('.') && !this.seen.has(n));
    const emls = names.filter((n) => n.endsWith('.eml'));
    const jsons = new Set(names.filter((n) => n.endsWith('.json')));
    v.scans++;
    v.emlFiles += emls.length;
    v.jsonFiles += jsons.size;
    const done = [];
    for (const name of emls) {
      const id = name.slice(0, -4);
      const jsonName = `${id}.json`;
      done.push(name);
      const buf = fs.readFileSync(path.join(maildir, name));
      v.storedBytes += buf.length;
      const rec = this.checkContent(id, buf);
      if (!jsons.has(jsonName)) {
        v.jsonMissing.push(id);
        continue;
      }
      jsons.delete(jsonName);
      done.push(jsonName);
      if (rec) this.checkEnvelope(id, jsonName, buf, rec);
    }
    for (const name of jsons) {
      v.orphanJson.push(name);
      done.push(name);
    }
    for (const name of done) {
      this.seen.add(name);
      if (this.remove) fs.rmSync(path.join(maildir, name), { force: true });
    }
    v.scanSeconds += (performance.now() - t0) / 1000;
  }

  /** Hashes one stored message and files it under its token; returns the sent record or undefined. */
  checkContent(id, buf) {
    const { v } = this;
    const sha256 = crypto.createHash('sha256').update(buf).digest('hex');
    const { token } = parseToken(buf);
    const rec = token ? this.byToken.get(token) : undefined;
    if (!rec) {
      if (token && token.startsWith(this.probePrefix)) v.probeStored++;
      else if (token && token.startsWith(this.slowPrefix)) v.slowStored.push(`${id}: ${token}`);
      else v.unidentified.push(`${id}: ${token ? `token ${token} not sent by this run` : 'no soak token'}`);
      return undefined;
    }
    rec.files.push({ id, sha256, size: buf.length });
    if (sha256 !== rec.sha256 && v.corruptSamples.length < 5) {
      const want = buildSoakMessage({
        seed: cfg.seed,
        phase: rec.phase,
        index: rec.index,
        minSize: cfg.minSize,
        maxSize: cfg.maxSize,
      }).content;
      const at = firstDifference(buf, want);
      v.corruptSamples.push(
        `${id}.eml = ${rec.token} (session ${rec.session}): ${buf.length} bytes stored, ${rec.size} sent; ` +
          `first difference at byte ${at}: stored ${showBytes(buf.subarray(Math.max(0, at - 16), at + 16))}, ` +
          `sent ${showBytes(want.subarray(Math.max(0, at - 16), at + 16))}; rebuild: \`${rebuildCommand(rec)}\``,
      );
    }
    return rec;
  }

  /** `<id>.json` against the message: id, size, mailFrom, accepted recipients. */
  checkEnvelope(id, jsonName, buf, rec) {
    let env;
    try {
      env = JSON.parse(fs.readFileSync(path.join(this.maildir, jsonName), 'utf8'));
    } catch (err) {
      this.v.jsonMismatch.push(`${id}: unreadable JSON (${err.message})`);
      return;
    }
    const problems = [];
    if (env.id !== id) problems.push(`id ${env.id}`);
    if (env.size !== buf.length) problems.push(`size ${env.size} but the .eml has ${buf.length} bytes`);
    if (env.size !== rec.size) problems.push(`size ${env.size}, sent ${rec.size}`);
    if (env.mailFrom !== rec.mailFrom) problems.push(`mailFrom ${env.mailFrom}, sent ${rec.mailFrom}`);
    if (JSON.stringify(env.rcptTo) !== JSON.stringify(rec.acceptedRcpt)) {
      problems.push(`rcptTo ${JSON.stringify(env.rcptTo)}, accepted ${JSON.stringify(rec.acceptedRcpt)}`);
    }
    if (problems.length) this.v.jsonMismatch.push(`${id} (${rec.token}): ${problems.join('; ')}`);
  }

  /** Per-phase and total counts, once everything is scanned. */
  result() {
    const v = this.v;
    v.phases = this.phases.map(({ phase, tokens }) => {
      const p = {
        phase,
        attempted: tokens.length,
        delivered: 0,
        refused: 0,
        unanswered: 0,
        stored: 0,
        lost: [],
        corrupted: [],
        duplicated: [],
        storedWithout250: [],
      };
      for (const token of tokens) {
        const r = this.byToken.get(token);
        const delivered = r.status === 'delivered';
        const ids = r.files.map((f) => f.id).join(', ');
        if (delivered) p.delivered++;
        else if (r.status === 'refused') p.refused++;
        else p.unanswered++;
        if (r.files.length > 0) p.stored++;
        if (delivered && r.files.length === 0) {
          p.lost.push(
            `${r.token} (session ${r.session}, reply "${r.finalLine}"; rebuild: \`${rebuildCommand(r)}\`)`,
          );
        }
        if (!delivered && r.files.length > 0)
          p.storedWithout250.push(`${r.token}: ${r.status}, stored as ${ids}`);
        if (r.files.some((f) => f.sha256 !== r.sha256)) p.corrupted.push(`${r.token} → ${ids}`);
        if (r.files.length > 1) p.duplicated.push(`${r.token} → ${ids}`);
        // The 250 names the stored id ("queued as ID"): it must be the file holding this message.
        const queued = r.finalLine && /queued as (\S+)/.exec(r.finalLine);
        if (delivered && queued && r.files.length === 1 && r.files[0].id !== queued[1]) {
          v.idMismatch.push(`${r.token}: reply said ${queued[1]}, stored as ${r.files[0].id}`);
        }
      }
      return p;
    });
    const sum = (k) => v.phases.reduce((a, p) => a + (Array.isArray(p[k]) ? p[k].length : p[k]), 0);
    v.total = {
      attempted: sum('attempted'),
      delivered: sum('delivered'),
      stored: sum('stored'),
      lost: sum('lost'),
      corrupted: sum('corrupted'),
      duplicated: sum('duplicated'),
      storedWithout250: sum('storedWithout250'),
    };
    return v;
  }
}

// ---------------------------------------------------------------------------
// Report

function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const sumValues = (obj) => Object.values(obj || {}).reduce((a, b) => a + b, 0);
const limitText = (l) => (l ? `${l.soft} (hard ${l.hard})` : 'unknown');
const list = (items, max = 5) =>
  items
    .slice(0, max)
    .map((s) => `  - ${s}`)
    .concat(items.length > max ? [`  - … ${items.length - max} more`] : []);

/** PASS / MISS of the slow-client target, marked when other processes disturbed the runs. */
function slowVerdict(S) {
  const noisy = S.runs.some((x) => x.otherCpuPct > 25);
  return `${S.pass ? 'PASS' : 'MISS'} (${S.ratio === null ? 'n/a' : `${fmt(S.ratio, 2)}×`}${noisy ? ', noisy' : ''})`;
}

function probeText(p) {
  if (p.ok) return `ok in ${fmt(p.totalMs, 1)} ms`;
  const done = p.steps.map(([name, ms]) => `${name} ${fmt(ms, 1)} ms`).join(', ');
  return `**failed: ${p.error}**${done ? ` (answered: ${done})` : ''}`;
}

function render(r) {
  const out = [];
  const L = r.load || {};
  const res = L.result || {};
  const V = r.verify;
  out.push('# Catcher soak test', '');
  out.push(
    table(
      ['', ''],
      [
        ['date', r.date],
        ['command', `\`node bench/soak.js${cfg.quick ? ' --quick' : ''}\``],
        ['node', process.version],
        ['cores', `${os.cpus().length} (${(os.cpus()[0] || {}).model || '?'})`],
        [
          'open-file limit',
          `catcher ${limitText(r.limitCatcher)} (asked ${cfg.catcherNofile}), load generator ${limitText(L.limitGenerator)} (asked ${WANT_NOFILE})`,
        ],
        ['catcher', `\`${r.catcherCommand || '?'}\``],
        ['seed', `${cfg.seed} (tokens \`${runOf(cfg.seed)}-PHASE-INDEX\`)`],
        [
          'messages',
          `${fmt(cfg.minSize)}–${fmt(cfg.maxSize)} bytes, printable ASCII + UTF-8, dot lines, long lines`,
        ],
        ['duration', `${fmt(r.seconds, 1)} s`],
        ['result', r.verdict],
      ],
    ),
  );

  out.push('', `## 1. Load: ${fmt(cfg.sessions)} concurrent sessions, ${fmt(cfg.messages)} messages`, '');
  if (L.ready && !L.ready.missing) {
    out.push(
      `- Sessions: ${fmt(L.ready.greetings)}/${fmt(cfg.sessions)} greeted, ${fmt(L.ready.ehloDone)} past EHLO ` +
        `(${fmt(L.ready.failedSessions)} failed) in ${fmt(L.ready.connectSeconds, 1)} s, all before the first MAIL FROM; ` +
        `the catcher held ${fmt(L.establishedAtStart)} established connections then (/proc/net/tcp), ${fmt(L.catcherFdsAtStart)} fds.`,
    );
  }
  if (res.attempted !== undefined) {
    out.push(
      `- Delivery: ${fmt(res.delivered)} × 250 of ${fmt(res.attempted)} sent in ${fmt(res.seconds, 1)} s: ` +
        `${fmt(res.msgsPerSec)} msg/s, ${fmt(res.mbPerSec, 1)} MB/s; latency (MAIL FROM → 250) p50 ${fmt(res.p50Ms)} ms, ` +
        `p99 ${fmt(res.p99Ms)} ms, max ${fmt(res.maxMs)} ms.`,
      `- Catcher: peak RSS ${fmt(L.samples ? L.samples.maxRssKB / 1024 : null, 1)} MB, peak ${fmt(L.samples && L.samples.maxFds)} open fds, ` +
        `CPU ${fmt(L.cpu && res.delivered ? (L.cpu.procs[0] * 1e6) / res.delivered : null)} µs/msg; other processes used ` +
        `${fmt(L.cpu && L.cpu.otherPct)} % of a core meanwhile.`,
      `- Sessions closed by the server during the run: ${fmt(res.closedEarly)}; all ${fmt(cfg.sessions)} QUIT together at the end.`,
    );
    if (res.shape) {
      out.push(
        `- Content sent: ${fmt(res.shape.bytesSent / 1e6, 1)} MB; ${fmt(res.shape.dotLines)} lines starting with a dot ` +
          `(${fmt(res.shape.loneDots)} of them exactly "."), ${fmt(res.shape.longLines)} lines of 1,000–8,000 bytes.`,
      );
    }
    if (res.closedEarlySamples && res.closedEarlySamples.length) out.push(...list(res.closedEarlySamples));
  }
  if (L.error) {
    out.push(`- **Did not finish: ${L.error}**`);
    if (res.stuck) out.push(`- Sessions still waiting: ${JSON.stringify(res.stuck)}`);
    if (L.probe)
      out.push(`- A fresh session then (greeting, EHLO, one small message, QUIT): ${probeText(L.probe)}.`);
  }

  if (V) {
    out.push('', '## Integrity (maildir vs. what was sent)', '');
    out.push(
      "Delivered: final 250 received. Stored: an `.eml` carries the message's token. Lost: 250 but no file. " +
        "Corrupted: stored bytes' sha256 ≠ the sent content's (after dot-unstuffing). Duplicated: the token in more than one file. " +
        'Non-250: replies other than the expected 250/354 (any command).',
      '',
    );
    const unexpectedOf = (phase) => {
      if (phase === 'load') return sumValues(res.unexpected);
      const run = r.slow && [r.slow.warmup, ...r.slow.runs].find((x) => x && x.phase === phase);
      return run ? sumValues(run.unexpected) : null;
    };
    out.push(
      table(
        [
          'phase',
          'sent',
          'delivered (250)',
          'stored',
          'lost',
          'corrupted',
          'duplicated',
          'stored w/o 250',
          'refused / no reply',
          'non-250 replies',
        ],
        V.phases.map((p) => [
          p.phase,
          fmt(p.attempted),
          fmt(p.delivered),
          fmt(p.stored),
          fmt(p.lost.length),
          fmt(p.corrupted.length),
          fmt(p.duplicated.length),
          fmt(p.storedWithout250.length),
          `${fmt(p.refused)} / ${fmt(p.unanswered)}`,
          fmt(unexpectedOf(p.phase)),
        ]),
      ),
      '',
    );
    out.push(
      `- Files: ${fmt(V.emlFiles)} \`.eml\` (${fmt(V.storedBytes / 1e6, 1)} MB), ${fmt(V.jsonFiles)} \`.json\`, ` +
        `checked in ${V.scans} scans (after each phase, ${fmt(V.scanSeconds, 1)} s in all)${cfg.keep ? '' : ' and removed'}; ` +
        `\`.json\` missing ${fmt(V.jsonMissing.length)}, without \`.eml\` ${fmt(V.orphanJson.length)}, ` +
        `not matching its message (id, size, mailFrom, rcptTo) ${fmt(V.jsonMismatch.length)}; ` +
        `250 naming another file ${fmt(V.idMismatch.length)}; files of no sent message ${fmt(V.unidentified.length)}; ` +
        `stored from slow clients (never finished) ${fmt(V.slowStored.length)}; ` +
        `probe messages stored ${fmt(V.probeStored)} (${fmt(probeResults.filter((p) => p.ok).length)} answered 250).`,
    );
    for (const p of V.phases) {
      for (const [k, label] of [
        ['lost', 'lost'],
        ['corrupted', 'corrupted'],
        ['duplicated', 'duplicated'],
        ['storedWithout250', 'stored without 250'],
      ]) {
        if (p[k].length) out.push(`- ${p.phase} ${label}:`, ...list(p[k]));
      }
    }
    if (V.corruptSamples.length) out.push('- Corruption detail:', ...list(V.corruptSamples));
    for (const [k, label] of [
      ['jsonMismatch', '`.json` mismatches'],
      ['jsonMissing', '`.eml` without `.json`'],
      ['orphanJson', '`.json` without `.eml`'],
      ['idMismatch', '250 id ≠ file'],
      ['unidentified', 'unidentified files'],
      ['slowStored', 'stored slow-client messages'],
    ]) {
      if (V[k].length) out.push(`- ${label}:`, ...list(V[k]));
    }
    const samples = [
      ...(res.unexpectedSamples || []),
      ...((r.slow && r.slow.runs.flatMap((x) => x.unexpectedSamples || [])) || []),
    ];
    if (samples.length) out.push('- Non-250 reply samples:', ...list(samples));
  }

  const S = r.slow;
  if (S) {
    out.push(
      '',
      `## 2. Slow clients: ${fmt(cfg.slow)} slowloris sessions vs ${fmt(cfg.fastSessions)} fast sessions`,
      '',
    );
    out.push(
      `Each fast run: ${fmt(cfg.fastSessions)} sessions, one message in flight each (random ${fmt(cfg.minSize)}–${fmt(cfg.maxSize)} B, ` +
        `pipelined envelope), for ${cfg.fastMs / 1000} s; runs without and with slow clients alternate. ` +
        'Latency: MAIL FROM written → final 250. Slow clients: one byte per second each; even ones dribble the whole ' +
        'session from EHLO, odd ones send EHLO/MAIL/RCPT/DATA at once and dribble the body; they connect before ' +
        'the run and are dropped without QUIT after it. Ratios: mean of the runs with / mean of the runs without.' +
        (S.warmup
          ? ` A ${fmt(S.warmup.seconds, 1)} s warm-up run (${fmt(S.warmup.msgsPerSec)} msg/s, not counted) came first.`
          : ''),
      '',
    );
    out.push(
      table(
        [
          'run',
          'msg/s',
          'MB/s',
          'p50 ms',
          'p99 ms',
          'delivered',
          'catcher CPU %',
          'catcher CPU µs/msg',
          'other CPU %',
        ],
        S.runs.map((x) => [
          x.withSlow ? `${x.label}: with ${fmt(cfg.slow)} slow` : `${x.label}: without`,
          x.missing ? `failed: ${x.error}` : fmt(x.msgsPerSec),
          fmt(x.mbPerSec, 2),
          fmt(x.p50Ms, 1),
          fmt(x.p99Ms, 1),
          fmt(x.delivered),
          fmt(x.catcherCpuPct),
          fmt(x.catcherUsPerMsg),
          fmt(x.otherCpuPct),
        ]),
      ),
      '',
    );
    const w = S.slowMean;
    const b = S.baseline;
    const ratio = (x, y) => (x && y ? `${fmt(x / y, 2)}×` : 'n/a');
    out.push(
      `- **Fast throughput with slow clients / without: ${ratio(w.msgsPerSec, b.msgsPerSec)} — ${S.pass ? 'PASS' : 'MISS'}** ` +
        `(target ≥ 0.8×; ${fmt(w.msgsPerSec)} vs ${fmt(b.msgsPerSec)} msg/s).`,
      `- Latency with / without: p50 ${ratio(w.p50Ms, b.p50Ms)} (${fmt(w.p50Ms, 1)} vs ${fmt(b.p50Ms, 1)} ms), ` +
        `p99 ${ratio(w.p99Ms, b.p99Ms)} (${fmt(w.p99Ms, 1)} vs ${fmt(b.p99Ms, 1)} ms); catcher CPU per message ` +
        `${ratio(w.catcherUsPerMsg, b.catcherUsPerMsg)} (less sensitive to other load on the machine).`,
    );
    const noisy = S.runs.filter((x) => x.otherCpuPct > 25);
    if (noisy.length) {
      out.push(
        `- **Noisy:** other processes used ${noisy.map((x) => `${fmt(x.otherCpuPct)} %`).join(', ')} of a core during ` +
          `${noisy.map((x) => x.label).join(', ')}: the throughput ratio is unreliable; compare CPU per message, or rerun on a quiet machine.`,
      );
    }
    S.groups.forEach((g, i) => {
      const sr = g.result || {};
      const sready = g.ready || {};
      out.push(
        `- Slow clients, round ${i + 1}: ${fmt(sready.greetings)}/${fmt(cfg.slow)} greeted, ${fmt(sready.inData)} inside DATA; ` +
          `the catcher held ${fmt(g.established)} connections just before the fast run; ${fmt(sr.bytesSent)} bytes dribbled; ` +
          `${fmt(sr.closedByServer)} closed by the server; replies ${JSON.stringify(sr.replies || {})}; ` +
          `present for ${fmt(g.seconds, 1)} s.`,
      );
      if (sr.closeSamples && sr.closeSamples.length) out.push(...list(sr.closeSamples));
    });
  }

  const A = r.after;
  if (A) {
    out.push('', '## 3. After the soak', '');
    out.push(
      `- Connections at the catcher after all clients left: ${fmt(A.establishedAfter)} (after ${fmt(A.drainMs)} ms).`,
      `- A fresh session (greeting, EHLO, one small message, QUIT): ${probeText(A.probe)}.`,
      `- Catcher open fds: ${fmt(A.fdsIdle)} when idle before the load, ${fmt(A.fdsAfter)} after; RSS ${fmt(A.rss ? A.rss.rssKB / 1024 : null, 1)} MB, peak ${fmt(A.rss ? A.rss.hwmKB / 1024 : null, 1)} MB.`,
      `- Temporary files left in the maildir: ${fmt(A.tempFiles.length)}${A.tempFiles.length ? ` (${A.tempFiles.slice(0, 3).join(', ')}…)` : ''}.`,
      `- SIGTERM → exit ${A.exit.code === null ? `by ${A.exit.signal}` : `code ${A.exit.code}`} in ${fmt(A.exit.ms)} ms.`,
    );
  }
  if (r.failures.length) out.push('', '## Failures', '', ...r.failures.map((f) => `- ${f}`));
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------

async function main() {
  if (!fs.existsSync(CATCHER)) {
    console.error(`soak: ${path.relative(u.ROOT, CATCHER)} not found — run \`npm run build\` first`);
    return 2;
  }
  const t0 = performance.now();
  const report = { date: new Date().toISOString(), failures: [] };
  tempRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp-soak-'));
  keepTemp = args.keep === true;
  const maildir = path.join(tempRoot, 'mail');
  fs.mkdirSync(maildir);
  verifier = new Verifier(maildir, { remove: !keepTemp });
  log(
    `soak: node ${process.version}, ${os.cpus().length} cores, seed ${cfg.seed}, ${cfg.quick ? 'quick' : 'full'} mode` +
      (keepTemp ? `, maildir ${maildir}` : ''),
  );

  const catcher = await startCatcher(maildir);
  report.catcherCommand = catcher.command;
  report.limitCatcher = openFileLimit(catcher.pid);
  log(`catcher: pid ${catcher.pid}, port ${catcher.port}, open-file limit ${limitText(report.limitCatcher)}`);
  await sleep(200);
  const fdsIdle = fdCount(catcher.pid);

  report.load = await phaseLoad(catcher, tempRoot);
  const wedged = report.load.error && report.load.probe && !report.load.probe.ok;
  // A load phase that did not finish makes the slow-client comparison meaningless: skip it.
  if (!report.load.error && catcher.child.exitInfo === undefined && cfg.slow > 0) {
    report.slow = await phaseSlow(catcher, tempRoot);
  }
  if (catcher.child.exitInfo === undefined) report.after = await phaseAfter(catcher, maildir, fdsIdle);
  else
    report.failures.push(
      `the catcher exited during the run: ${JSON.stringify(catcher.child.exitInfo)} ${catcher.child.stderrTail.join(' / ')}`,
    );

  log('\n== verifying the rest of the maildir ==');
  verifier.scan(); // the catcher is stopped: whatever is left, including the probes' messages
  report.verify = verifier.result();
  const V = report.verify;

  // Verdict
  const f = report.failures;
  const L = report.load;
  if (L.error)
    f.push(
      `load phase: ${L.error}${wedged ? ' — and a fresh session got no answer: the catcher is wedged' : ''}`,
    );
  if (L.ready && !L.ready.missing && L.ready.greetings < cfg.sessions) {
    f.push(`only ${L.ready.greetings} of ${cfg.sessions} sessions were greeted`);
  }
  if (L.establishedAtStart !== undefined && L.establishedAtStart < cfg.sessions) {
    f.push(`the catcher held ${L.establishedAtStart} connections, not ${cfg.sessions}, when sending started`);
  }
  if (V.total.lost) f.push(`${V.total.lost} message(s) lost (250 but no file)`);
  if (V.total.corrupted) f.push(`${V.total.corrupted} message(s) corrupted`);
  if (V.total.duplicated) f.push(`${V.total.duplicated} message(s) duplicated`);
  if (V.jsonMismatch.length + V.jsonMissing.length + V.orphanJson.length) {
    f.push(
      `envelope files: ${V.jsonMismatch.length} mismatched, ${V.jsonMissing.length} missing, ${V.orphanJson.length} orphaned`,
    );
  }
  if (V.idMismatch.length) f.push(`${V.idMismatch.length} replies named a different file`);
  if (V.unidentified.length || V.slowStored.length) {
    f.push(`${V.unidentified.length + V.slowStored.length} stored files match no completed message`);
  }
  const loadUnexpected = sumValues(L.result && L.result.unexpected);
  if (loadUnexpected) f.push(`${loadUnexpected} unexpected (non-250/354) replies in the load phase`);
  if (report.after) {
    if (!report.after.probe.ok)
      f.push(`the catcher did not answer a fresh session after the soak: ${report.after.probe.error}`);
    if (report.after.tempFiles.length)
      f.push(`${report.after.tempFiles.length} temporary files left in the maildir`);
  }
  report.seconds = (performance.now() - t0) / 1000;
  const integrity = V.total.lost + V.total.corrupted + V.total.duplicated === 0;
  report.verdict =
    f.length === 0
      ? `PASS — every message accounted for${report.slow ? `; slow clients ${slowVerdict(report.slow)}` : ''}`
      : `FAIL${integrity ? '' : ' (integrity)'} — ${f.join('; ')}`;

  const md = render(report);
  log('\n' + md);
  if (args['no-write'] !== true) {
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    fs.writeFileSync(RESULTS, md);
    log(`written to ${path.relative(u.ROOT, RESULTS)}`);
  }
  if (keepTemp) log(`maildir kept: ${maildir}`);
  return f.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    cleanup();
    process.exit(code);
  },
  (err) => {
    console.error(`soak: ${err.stack || err.message}`);
    cleanup();
    process.exit(1);
  },
);
