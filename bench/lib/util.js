'use strict';
// Small helpers shared by the benchmark runner, the load generator, the core
// worker and the benchmark servers. Plain CommonJS, no dependencies.

const fs = require('node:fs');
const path = require('node:path');
const net = require('node:net');

const ROOT = path.resolve(__dirname, '..', '..');

// Where our compiled library lives. SMTP_BENCH_DIST lets the benchmark be
// pointed at another build (for example a stub used to test the bench itself).
const DIST = process.env.SMTP_BENCH_DIST
  ? path.resolve(process.env.SMTP_BENCH_DIST)
  : path.join(ROOT, 'dist');

// Child processes talk to the runner with lines `@@bench {json}` on stdout.
const MSG_PREFIX = '@@bench ';

function emit(obj) {
  process.stdout.write(MSG_PREFIX + JSON.stringify(obj) + '\n');
}

/**
 * Minimal argv parser: `--flag`, `--key value`, `--key=value`.
 * `booleans` lists the flags that never take a value.
 */
function parseArgs(argv, booleans = []) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      out._.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    if (eq > 0) {
      out[a.slice(2, eq)] = a.slice(eq + 1);
    } else if (booleans.includes(a.slice(2))) {
      out[a.slice(2)] = true;
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) {
      out[a.slice(2)] = argv[++i];
    } else {
      out[a.slice(2)] = true;
    }
  }
  return out;
}

function intArg(value, fallback) {
  if (value === undefined || value === true) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new Error(`not a number: ${value}`);
  return Math.floor(n);
}

/** Seeded PRNG (mulberry32): returns floats in [0, 1). */
function mulberry32(seed) {
  let s = seed >>> 0;
  return function next() {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function median(values) {
  const xs = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return null;
  const mid = xs.length >> 1;
  return xs.length % 2 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

/** Nearest-rank percentile of an ascending sorted array-like. */
function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** VmRSS / VmHWM of a process in KiB, or null when it is gone. */
function procMemory(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const field = (name) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  return { rssKB: field('VmRSS'), hwmKB: field('VmHWM') };
}

/** A process and all its descendants (from /proc/<pid>/task/<tid>/children), parents first. */
function processTree(pid) {
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    let tasks;
    try {
      tasks = fs.readdirSync(`/proc/${all[i]}/task`);
    } catch {
      continue; // gone meanwhile
    }
    for (const tid of tasks) {
      let text;
      try {
        text = fs.readFileSync(`/proc/${all[i]}/task/${tid}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const child of text.split(' ')) if (child.trim() !== '') all.push(Number(child));
    }
  }
  return all;
}

/** procCpuSeconds summed over a process and its descendants (--workers), or null. */
function treeCpuSeconds(pid) {
  let total = 0;
  for (const member of processTree(pid)) {
    const seconds = procCpuSeconds(member);
    if (seconds === null) return member === pid ? null : total;
    total += seconds;
  }
  return total;
}

/** VmRSS summed over a process and its descendants, in KiB, or null when it is gone. */
function treeRssKB(pid) {
  let total = 0;
  for (const member of processTree(pid)) {
    const m = procMemory(member);
    if (m === null) {
      if (member === pid) return null;
      continue;
    }
    total += m.rssKB || 0;
  }
  return total;
}

/** utime + stime of a process in seconds (from /proc/<pid>/stat), or null. */
function procCpuSeconds(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  return Number.isFinite(ticks) ? ticks / CLOCK_TICKS : null;
}
const CLOCK_TICKS = 100; // sysconf(_SC_CLK_TCK) on Linux

/** Busy CPU seconds of the whole machine (all cores, from /proc/stat), or null. */
function machineBusySeconds() {
  let text;
  try {
    text = fs.readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const f = text.slice(0, text.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal …: busy = all but idle and iowait
  const busy = f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3] - f[4];
  return Number.isFinite(busy) ? busy / CLOCK_TICKS : null;
}

/** Reset VmHWM of a process to its current RSS (Linux >= 4.0). */
function resetPeak(pid) {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** An unused TCP port on 127.0.0.1 (small race, fine for a benchmark). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Splits latin1 text from an SMTP server into replies: calls onReply(code, lines) once per reply
 * (multi-line replies gathered); onReply returning false stops this chunk (the rest stays buffered).
 */
function replyReader(onReply) {
  let buf = '';
  let lines = [];
  return (chunk) => {
    buf += chunk;
    let idx;
    while ((idx = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, idx > 0 && buf[idx - 1] === '\r' ? idx - 1 : idx);
      buf = buf.slice(idx + 1);
      lines.push(line);
      if (line.length >= 4 && line[3] === '-') continue;
      const reply = lines;
      lines = [];
      if (onReply(parseInt(line.slice(0, 3), 10), reply) === false) return;
    }
  };
}

/**
 * Reads a child's `@@bench {json}` messages: onMessage(msg) for each, onLine(line) for other stdout
 * lines, and child.next(type, ms) resolving with the next message of that type, or with
 * `{ type, ok: false, error, missing: true }` after `ms` or once the child has exited (then with
 * exitDetail() appended). `child.exited` must resolve with `{ code, signal }`.
 */
function readMessages(child, { onLine = () => {}, onMessage = () => {}, exitDetail = () => '' } = {}) {
  const queue = [];
  const waiters = [];
  onLines(child.stdout, (line) => {
    if (!line.startsWith(MSG_PREFIX)) return onLine(line);
    let msg;
    try {
      msg = JSON.parse(line.slice(MSG_PREFIX.length));
    } catch {
      return onLine(line);
    }
    onMessage(msg);
    const i = waiters.findIndex((w) => w.type === msg.type);
    if (i >= 0) {
      const w = waiters.splice(i, 1)[0];
      clearTimeout(w.timer);
      w.resolve(msg);
    } else queue.push(msg);
  });
  child.next = (type, timeoutMs) => {
    const i = queue.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]);
    return new Promise((resolve) => {
      const w = { type, resolve };
      waiters.push(w);
      const fail = (why) => {
        const k = waiters.indexOf(w);
        if (k < 0) return;
        waiters.splice(k, 1);
        resolve({ type, ok: false, error: why, missing: true });
      };
      w.timer = setTimeout(() => fail(`no ${type} within ${timeoutMs} ms`), timeoutMs);
      child.exited.then((info) => {
        // Let the stdout lines that preceded the exit be parsed first.
        setTimeout(() => {
          clearTimeout(w.timer);
          fail(
            `exited (code ${info.code}${info.signal ? `, ${info.signal}` : ''}) before ${type}${exitDetail()}`,
          );
        }, 100);
      });
    });
  };
  return child;
}

/** Calls onLine for every complete line of a readable stream. */
function onLines(stream, onLine) {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    rest += chunk;
    let idx;
    while ((idx = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, idx).replace(/\r$/, '');
      rest = rest.slice(idx + 1);
      onLine(line);
    }
  });
  stream.on('end', () => {
    if (rest) onLine(rest);
    rest = '';
  });
}

function firstLine(text) {
  return String(text).split('\n')[0].trim();
}

/** Counts files ending with one of `exts` under dir (a few levels deep). */
function countFiles(dir, exts, depth = 3) {
  const counts = Object.fromEntries(exts.map((e) => [e, 0]));
  let bytes = 0;
  const walk = (d, level) => {
    let entries;
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const ent of entries) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) {
        if (level < depth) walk(p, level + 1);
        continue;
      }
      if (ent.name.startsWith('.') || ent.name.includes('.tmp')) continue;
      for (const e of exts) {
        if (ent.name.endsWith(e)) {
          counts[e]++;
          if (e === '.eml') {
            try {
              bytes += fs.statSync(p).size;
            } catch {
              // removed meanwhile
            }
          }
        }
      }
    }
  };
  walk(dir, 0);
  return { counts, emlBytes: bytes };
}

function fmt(n, digits = 0) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Resolves with `value` after `ms` without keeping the process alive. */
const deadline = (ms, value) => new Promise((resolve) => setTimeout(() => resolve(value), ms).unref());

/**
 * SIGTERM, then SIGKILL after `graceMs`; resolves with the child's `exitInfo`. Expects the
 * `exited` promise and `exitInfo` that the runners' spawn helpers attach to each child.
 */
async function stopChild(child, graceMs) {
  if (child.exitInfo) return child.exitInfo;
  child.kill('SIGTERM');
  if ((await Promise.race([child.exited, deadline(graceMs, 'timeout')])) === 'timeout') {
    child.kill('SIGKILL');
    await child.exited;
  }
  return child.exitInfo;
}

module.exports = {
  deadline,
  stopChild,
  ROOT,
  DIST,
  MSG_PREFIX,
  emit,
  parseArgs,
  intArg,
  mulberry32,
  median,
  percentile,
  procMemory,
  procCpuSeconds,
  treeCpuSeconds,
  treeRssKB,
  machineBusySeconds,
  resetPeak,
  freePort,
  onLines,
  replyReader,
  readMessages,
  firstLine,
  countFiles,
  fmt,
};
