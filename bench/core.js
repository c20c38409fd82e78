'use strict';
// Core section worker: drives our sans-I/O `Protocol` in-process (no sockets)
// and reports (a) commands/s and (b) DATA throughput. bench/run.js starts it
// as a child (`node --expose-gc bench/core.js`); it prints progress lines and
// one `@@bench {json}` result line.
//
// The contract it codes against:
//   const { Protocol } = require('../dist/lib');
//   const p = new Protocol({ hostname: 'bench', messageReceivedHandler: async (msg) => {
//     for await (const chunk of msg.body) { /* count */ }
//     return 'id';
//   } });
//   p.start(); p.receive(buffer); const r = p.run();
//   // r.output: Buffer | null (reply bytes); r.pending: Promise | null (await, then run() again)
//
//   node bench/core.js [--quick]

const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { parseArgs, emit, mulberry32, DIST, firstLine } = require('./lib/util');
const { buildMessage } = require('./lib/message');

const args = parseArgs(process.argv.slice(2), ['quick']);
const quick = args.quick === true;
const gc = typeof globalThis.gc === 'function' ? () => globalThis.gc() : () => {};

const CMD_CYCLE = [
  'MAIL FROM:<sender@bench.example>\r\n',
  'RCPT TO:<rcpt@bench.example>\r\n',
  'RSET\r\n',
  'NOOP\r\n',
];
const EHLO = Buffer.from('EHLO core.bench.example\r\n');
const ENVELOPE = Buffer.from(CMD_CYCLE[0] + CMD_CYCLE[1] + 'DATA\r\n');
const MAX_RUNS = 1e6; // run() calls without input before we call it a livelock

function loadProtocol() {
  let lib;
  try {
    lib = require(path.join(DIST, 'lib'));
  } catch (err) {
    return { skipped: `require('../dist/lib') failed: ${firstLine(err.message)}` };
  }
  const { Protocol } = lib || {};
  if (typeof Protocol !== 'function') return { skipped: "'../dist/lib' has no Protocol export" };
  let probe;
  try {
    probe = new Protocol({ hostname: 'bench' });
  } catch (err) {
    return { skipped: `new Protocol() threw: ${firstLine(err.message)}` };
  }
  for (const m of ['start', 'receive', 'run']) {
    if (typeof probe[m] !== 'function') return { skipped: `Protocol has no ${m}() method` };
  }
  return { Protocol };
}

/**
 * Calls run() until it produces neither output nor a pending promise.
 * Synchronous while nothing is pending (no microtask per command); returns a
 * promise only when the protocol asked us to wait.
 */
function drain(p, sink) {
  const pending = runUntilIdle(p, sink);
  return pending ? drainAfter(p, sink, pending) : null;
}

/** run() until idle; returns the pending promise that stopped it, or null. */
function runUntilIdle(p, sink) {
  for (let i = 0; i < MAX_RUNS; i++) {
    const r = p.run();
    if (!r) return null;
    if (r.output) sink(r.output);
    if (r.pending) return r.pending;
    if (!r.output) return null;
  }
  throw new Error('run() kept producing output without input');
}

async function drainAfter(p, sink, pending) {
  for (let i = 0; pending && i < MAX_RUNS; i++) {
    await pending;
    pending = runUntilIdle(p, sink);
  }
}

async function feed(p, buf, sink) {
  p.receive(buf);
  const w = drain(p, sink);
  if (w) await w;
}

/** Reply lines from a list of output buffers: { total, bad: [first few non-2xx] }. */
function checkReplies(outputs) {
  const text = Buffer.concat(outputs).toString('latin1');
  const lines = text.split('\r\n').filter(Boolean);
  let total = 0;
  const bad = [];
  for (const line of lines) {
    if (line[3] === '-') continue;
    total++;
    if (line[0] !== '2' && bad.length < 3) bad.push(line);
  }
  return { total, bad };
}

async function benchCommands(Protocol, { count, batch, timeLimitMs }) {
  const cmds = CMD_CYCLE.map((c) => Buffer.from(c));
  const batchBuf = Buffer.from(Array.from({ length: batch }, (_, i) => CMD_CYCLE[i % 4]).join(''));
  const run = async (n, keep) => {
    const p = new Protocol({ hostname: 'bench' });
    const outputs = [];
    const sink = keep ? (b) => outputs.push(b) : () => {};
    p.start();
    const w = drain(p, () => {});
    if (w) await w;
    await feed(p, EHLO, () => {});
    const deadline = performance.now() + timeLimitMs;
    const t0 = performance.now();
    let sent = 0;
    if (batch === 1) {
      while (sent < n) {
        p.receive(cmds[sent & 3]);
        const d = drain(p, sink);
        if (d) await d;
        sent++;
        if ((sent & 1023) === 0 && performance.now() > deadline) break;
      }
    } else {
      while (sent < n) {
        p.receive(batchBuf);
        const d = drain(p, sink);
        if (d) await d;
        sent += batch;
        if (performance.now() > deadline) break;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    return { sent, seconds, outputs };
  };
  await run(Math.max(batch, Math.floor(count / 10)), false); // warm-up
  gc();
  const { sent, seconds, outputs } = await run(count, true);
  const { total, bad } = checkReplies(outputs);
  return {
    mode: batch === 1 ? 'one command per receive()' : `${batch} pipelined commands per receive()`,
    commands: sent,
    seconds,
    commandsPerSec: sent / seconds,
    replies: total,
    ok: total === sent && bad.length === 0,
    note:
      total !== sent
        ? `${total} replies for ${sent} commands`
        : bad.length
          ? `non-2xx: ${bad.join(' | ')}`
          : '',
  };
}

async function benchData(Protocol, { size, label, messages, timeLimitMs, seed }) {
  const { wire, size: msgSize } = buildMessage(size, seed);
  let bodyBytes = 0;
  let handled = 0;
  const p = new Protocol({
    hostname: 'bench',
    messageReceivedHandler: async (msg) => {
      for await (const chunk of msg.body) bodyBytes += chunk.length;
      handled++;
      return 'bench-id';
    },
  });
  const rng = mulberry32(seed);
  let last = null;
  const sink = (b) => {
    last = b;
  };
  p.start();
  const w = drain(p, sink);
  if (w) await w;
  await feed(p, EHLO, sink);

  let wireBytes = 0;
  let failures = 0;
  let failSample = '';
  const one = async () => {
    last = null;
    await feed(p, ENVELOPE, sink);
    const env = last ? last.toString('latin1') : '';
    if (!/(^|\n)354/.test(env)) {
      failures++;
      failSample = failSample || `after DATA: ${JSON.stringify(env.slice(0, 120))}`;
      return false;
    }
    last = null;
    for (let off = 0; off < wire.length;) {
      const n = 1 + Math.floor(rng() * 65536); // 1 B .. 64 KiB
      p.receive(wire.subarray(off, off + n));
      const d = drain(p, sink);
      if (d) await d;
      off += n;
    }
    wireBytes += wire.length;
    const done = last ? last.toString('latin1') : '';
    if (!/(^|\n)250/.test(done)) {
      failures++;
      failSample = failSample || `after body: ${JSON.stringify(done.slice(0, 120))}`;
      return false;
    }
    return true;
  };

  // Enough warm-up for V8 to optimise the hot paths; then long enough runs to average out noise.
  const warm = Math.max(2, Math.min(200, Math.floor(messages / 10)));
  for (let i = 0; i < warm; i++) if (!(await one())) break;
  gc();
  bodyBytes = 0;
  handled = 0;
  wireBytes = 0;
  const deadline = performance.now() + timeLimitMs;
  const t0 = performance.now();
  let sent = 0;
  while (sent < messages && failures === 0) {
    await one();
    sent++;
    if (performance.now() > deadline) break;
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    label,
    size: msgSize,
    messages: sent,
    seconds,
    msgsPerSec: sent / seconds,
    mbPerSec: wireBytes / 1e6 / seconds,
    handled,
    bodyBytes,
    ok: failures === 0 && handled === sent,
    note: failures
      ? failSample
      : handled !== sent
        ? `handler saw ${handled} of ${sent} messages`
        : bodyBytes < sent * (msgSize - 2)
          ? `handler counted ${bodyBytes} body bytes, expected about ${sent * msgSize}`
          : '',
  };
}

async function main() {
  const loaded = loadProtocol();
  if (loaded.skipped) {
    console.log(`skipped: ${loaded.skipped}`);
    emit({ type: 'result', section: 'core', skipped: loaded.skipped });
    return;
  }
  const { Protocol } = loaded;
  const scale = quick ? 0.2 : 1;
  const timeLimitMs = quick ? 4000 : 12000;
  const result = { type: 'result', section: 'core', commands: [], data: [] };

  for (const batch of [1, 100]) {
    const r = await benchCommands(Protocol, { count: Math.round(400000 * scale), batch, timeLimitMs }).catch(
      (err) => ({ mode: `batch ${batch}`, ok: false, note: firstLine(err.stack || err.message) }),
    );
    result.commands.push(r);
    console.log(
      `commands (${r.mode}): ${r.commandsPerSec ? Math.round(r.commandsPerSec).toLocaleString('en-US') : '—'} cmd/s` +
        (r.note ? `  [${r.note}]` : ''),
    );
    gc();
  }

  const cases = [
    { size: 1024, label: '1 KB', messages: Math.round(20000 * scale) },
    { size: 100 * 1024, label: '100 KB', messages: Math.round(5000 * scale) },
    { size: 10 * 1024 * 1024, label: '10 MB', messages: Math.max(3, Math.round(60 * scale)) },
  ];
  for (const c of cases) {
    // The median of five runs (one with --quick): this VM has spells of host contention, which
    // can sink a run or two in a row.
    const runs = [];
    for (let i = 0; i < (quick ? 1 : 5); i++) {
      runs.push(
        await benchData(Protocol, { ...c, timeLimitMs, seed: 42 }).catch((err) => ({
          label: c.label,
          size: c.size,
          ok: false,
          note: firstLine(err.stack || err.message),
        })),
      );
      gc();
    }
    const failed = runs.find((run) => !run.ok);
    const r = failed ?? [...runs].sort((x, y) => x.mbPerSec - y.mbPerSec)[Math.floor(runs.length / 2)];
    r.runsMbPerSec = runs.map((run) => run.mbPerSec);
    result.data.push(r);
    console.log(
      `DATA ${c.label}: ${r.mbPerSec ? r.mbPerSec.toFixed(1) : '—'} MB/s, ` +
        `${r.msgsPerSec ? Math.round(r.msgsPerSec).toLocaleString('en-US') : '—'} msg/s` +
        (r.note ? `  [${r.note}]` : ''),
    );
    gc();
  }
  emit(result);
}

main().catch((err) => {
  console.log(`error: ${firstLine(err.stack || err.message)}`);
  emit({ type: 'result', section: 'core', error: firstLine(err.message) });
  process.exitCode = 1;
});
