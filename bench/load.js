'use strict';
// Load generator: raw `net` SMTP client sessions, run in its own process by
// bench/run.js so that the client's CPU is not charged to the server under
// test. Results are printed as one `@@bench {json}` line on stdout.
//
// Modes:
//   throughput  C sessions x M messages each. Every session says EHLO, then per
//               message pipelines MAIL FROM / RCPT TO / DATA in one write (when
//               PIPELINING is advertised), sends the dot-stuffed body in one
//               write after the 354 and waits for the final 250 before the next
//               message; QUIT at the end. Latency = body written -> 250 read.
//               With --warmup W every session first sends W messages that are
//               not measured. The clock runs from the moment every session has
//               finished EHLO (and its warm-up) to the last final 250.
//               Client CPU use over that interval is reported too.
//   big         one session sending one message of --size bytes, generated on
//               the fly from a 1 MiB pattern with backpressure (never held in
//               memory).
//   idle        --sessions connections, each held open after EHLO (or after the
//               greeting with --greet-only); prints a `ready` message, waits
//               for a line "release" on stdin, then QUITs and closes them all.
//
//   node bench/load.js --mode throughput --port P --sessions 20 --messages 100 --size 1024
//   node bench/load.js --mode big --port P --size 1073741824
//   node bench/load.js --mode idle --port P --sessions 4000 [--greet-only]

const net = require('node:net');
const { once } = require('node:events');
const { performance } = require('node:perf_hooks');
const { parseArgs, intArg, emit, percentile, replyReader } = require('./lib/util');
const { buildMessage, streamedMessageParts } = require('./lib/message');

const args = parseArgs(process.argv.slice(2), ['greet-only']);
const mode = typeof args.mode === 'string' ? args.mode : 'throughput';
const host = typeof args.host === 'string' ? args.host : '127.0.0.1';
const port = intArg(args.port, 0);
const sessions = intArg(args.sessions, mode === 'big' ? 1 : 20);
const messages = intArg(args.messages, 100);
const warmup = intArg(args.warmup, 0);
const size = intArg(args.size, 1024);
const timeoutMs = intArg(args['timeout-ms'], 120000);
const connectConcurrency = intArg(args['connect-concurrency'], 200);
const greetOnly = args['greet-only'] === true;

// Loopback only: this generator must never be pointed at another machine.
if (!/^(127\.\d+\.\d+\.\d+|localhost|::1)$/.test(host)) {
  console.error(`load: refusing non-loopback host ${host}`);
  process.exit(2);
}
if (!port) {
  console.error('load: --port is required');
  process.exit(2);
}

const EHLO = Buffer.from('EHLO loadgen.bench.example\r\n');
const MAIL = 'MAIL FROM:<sender@bench.example>\r\n';
const RCPT = 'RCPT TO:<rcpt@bench.example>\r\n';
const DATA = 'DATA\r\n';
const ENVELOPE = Buffer.from(MAIL + RCPT + DATA);
const QUIT = Buffer.from('QUIT\r\n');

const sockets = new Set();
let finished = false;

function finish(result) {
  if (finished) return;
  finished = true;
  clearTimeout(watchdog);
  const own = process.cpuUsage();
  emit({ type: 'result', mode, ...result, clientCpuTotalSec: (own.user + own.system) / 1e6 });
  for (const s of sockets) s.destroy();
  if (mode === 'idle') process.stdin.destroy();
  // Everything is closed by now; make sure a stuck handle cannot keep us alive.
  setTimeout(() => process.exit(0), 2000).unref();
}

const watchdog = setTimeout(() => {
  onTimeout();
}, timeoutMs);
let onTimeout = () => finish({ ok: false, timedOut: true, error: `timed out after ${timeoutMs} ms` });

/**
 * One SMTP client connection. Replies are matched in order against a queue
 * of expectations: { code: 2|3 (first digit wanted), then(code, lines) }.
 */
class Conn {
  constructor(onFail) {
    this.onFail = onFail;
    this.expect = [];
    this.onData = replyReader((code, lines) => {
      const want = this.expect.shift();
      if (!want || Math.floor(code / 100) !== want.code) {
        this.fail(
          want ? `${want.what}: ${lines.join(' | ')}` : `unexpected reply: ${lines[lines.length - 1]}`,
        );
        return false;
      }
      want.then(code, lines);
      return !(this.closed || this.socket.destroyed);
    });
    this.closed = false;
    this.done = false;
    this.socket = net.connect({ host, port });
    sockets.add(this.socket);
    this.socket.setNoDelay(true);
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk) => this.onData(chunk));
    this.socket.on('error', (err) => this.fail(`socket error: ${err.code || err.message}`));
    this.socket.on('close', () => {
      this.closed = true;
      sockets.delete(this.socket);
      if (!this.done) this.fail('connection closed by server');
    });
  }

  await(code, what, then) {
    this.expect.push({ code, what, then });
  }

  write(buf) {
    return this.socket.write(buf);
  }

  quit(then) {
    this.done = true;
    this.expect.length = 0;
    if (this.closed) return then && then();
    this.await(2, 'QUIT', () => this.socket.end());
    this.socket.once('close', () => then && then());
    this.write(QUIT);
    // A server that never answers QUIT must not keep us waiting.
    setTimeout(() => this.socket.destroy(), 3000).unref();
  }

  fail(reason) {
    if (this.done) return;
    this.done = true;
    this.expect.length = 0;
    this.socket.destroy();
    this.onFail(reason);
  }
}

/** Greeting + EHLO; calls ready(pipelining) or the connection's onFail. */
function handshake(conn, ready) {
  conn.await(2, 'greeting', () => {
    if (greetOnly) return ready(false);
    conn.await(2, 'EHLO', (_code, lines) => {
      ready(lines.some((l) => /^250[ -]PIPELINING\b/i.test(l)));
    });
    conn.write(EHLO);
  });
}

/**
 * MAIL FROM, RCPT TO and DATA: in one write when the server offers PIPELINING, else each after
 * the previous reply; `sendBody` runs on the 354.
 */
function sendEnvelope(conn, pipelining, sendBody) {
  if (pipelining) {
    conn.await(2, 'MAIL FROM', () => {});
    conn.await(2, 'RCPT TO', () => {});
    conn.await(3, 'DATA', sendBody);
    conn.write(ENVELOPE);
    return;
  }
  conn.await(2, 'MAIL FROM', () => {
    conn.await(2, 'RCPT TO', () => {
      conn.await(3, 'DATA', sendBody);
      conn.write(DATA);
    });
    conn.write(RCPT);
  });
  conn.write(MAIL);
}

function runThroughput() {
  const { wire, size: msgSize } = buildMessage(size, 7);
  const total = sessions * messages;
  const latencies = new Float64Array(total);
  let completed = 0;
  let warmed = 0;
  let cpu0 = null;
  let cpu = null;
  let failedSessions = 0;
  let readyCount = 0;
  let doneSessions = 0;
  let tStart = 0;
  let tEnd = 0;
  const errors = [];
  const starters = [];

  const summary = (extra) => {
    const lat = latencies.slice(0, completed).sort();
    const seconds = completed > 0 ? (tEnd - tStart) / 1000 : 0;
    if (!cpu && cpu0) cpu = process.cpuUsage(cpu0);
    return {
      warmupMessages: warmed,
      clientCpuPct: cpu && seconds > 0 ? (cpu.user + cpu.system) / 1e4 / seconds : null,
      sessions,
      messagesPerSession: messages,
      size: msgSize,
      wireSize: wire.length,
      messages: completed,
      expected: total,
      bytes: completed * msgSize,
      seconds,
      msgsPerSec: seconds > 0 ? completed / seconds : null,
      mbPerSec: seconds > 0 ? (completed * msgSize) / 1e6 / seconds : null,
      p50Ms: percentile(lat, 50),
      p99Ms: percentile(lat, 99),
      maxMs: lat.length ? lat[lat.length - 1] : null,
      failedSessions,
      errors: errors.length,
      errorSamples: errors.slice(0, 5),
      ...extra,
    };
  };
  onTimeout = () => {
    tEnd = tEnd || performance.now();
    finish({ ok: false, timedOut: true, error: `timed out after ${timeoutMs} ms`, ...summary() });
  };

  const sessionDone = () => {
    doneSessions++;
    if (doneSessions === sessions) {
      finish({ ok: errors.length === 0 && completed === total, ...summary() });
    }
  };

  let startedAll = false;
  const maybeStart = () => {
    if (startedAll || readyCount + failedSessions < sessions) return;
    startedAll = true;
    cpu0 = process.cpuUsage();
    tStart = performance.now();
    for (const start of starters) start();
  };

  for (let i = 0; i < sessions; i++) {
    let sent = 0;
    const conn = new Conn((reason) => {
      errors.push(reason);
      failedSessions++;
      maybeStart();
      sessionDone();
    });
    let pipelining = false;

    const sendBody = () => {
      const t0 = performance.now();
      conn.await(2, 'end of DATA', () => {
        if (sent <= 0) {
          warmed++;
          return next();
        }
        const now = performance.now();
        latencies[completed++] = now - t0;
        if (now > tEnd) {
          tEnd = now;
          if (completed === total) cpu = process.cpuUsage(cpu0);
        }
        next();
      });
      conn.write(wire);
    };
    const next = () => {
      if (sent === 0 && warmingUp) {
        // Warm-up done for this session: wait for the others at the barrier.
        warmingUp = false;
        sent = 0;
        readyCount++;
        starters.push(next);
        return maybeStart();
      }
      if (sent === messages) return conn.quit(sessionDone);
      sent++;
      sendEnvelope(conn, pipelining, sendBody);
    };
    let warmingUp = warmup > 0;
    handshake(conn, (pipe) => {
      pipelining = pipe;
      if (warmingUp) {
        sent = -warmup; // counts up to 0 through the warm-up messages
        return next();
      }
      readyCount++;
      starters.push(next);
      maybeStart();
    });
  }
}

function runBig() {
  const parts = streamedMessageParts(size, 11);
  let tStart = 0;
  const progressStep = 256 * 1024 * 1024;
  const conn = new Conn((reason) => finish({ ok: false, error: reason, size }));
  onTimeout = () => {
    conn.fail('timeout');
    finish({ ok: false, timedOut: true, error: `timed out after ${timeoutMs} ms`, size });
  };

  const stream = async () => {
    const write = async (buf) => {
      if (!conn.write(buf)) await once(conn.socket, 'drain');
    };
    tStart = performance.now();
    let sent = 0;
    let nextReport = progressStep;
    await write(parts.head);
    sent += parts.head.length;
    for (let i = 0; i < parts.repeat && !conn.done; i++) {
      await write(parts.pattern);
      sent += parts.pattern.length;
      if (sent >= nextReport) {
        emit({ type: 'progress', sentBytes: sent });
        nextReport += progressStep;
      }
    }
    await write(parts.tail);
  };

  handshake(conn, (pipelining) => {
    const sendBody = () => {
      conn.await(2, 'end of DATA', (code, lines) => {
        const seconds = (performance.now() - tStart) / 1000;
        conn.quit(() =>
          finish({
            ok: true,
            size,
            seconds,
            mbPerSec: size / 1e6 / seconds,
            reply: lines.join(' | '),
            code,
          }),
        );
      });
      stream().catch((err) => conn.fail(`write failed: ${err.message}`));
    };
    sendEnvelope(conn, pipelining, sendBody);
  });
}

function runIdle() {
  const conns = [];
  let launched = 0;
  let held = 0;
  let failed = 0;
  let dropped = 0;
  let released = false;
  const errors = [];
  let inFlight = 0;
  const t0 = performance.now();

  onTimeout = () => {
    finish({ ok: false, timedOut: true, error: `timed out after ${timeoutMs} ms`, held, failed, dropped });
  };

  const settled = () => {
    if (held + failed < sessions) return launch();
    emit({
      type: 'ready',
      held,
      failed,
      seconds: (performance.now() - t0) / 1000,
      errorSamples: errors.slice(0, 5),
    });
  };

  const launch = () => {
    while (launched < sessions && inFlight < connectConcurrency) {
      launched++;
      inFlight++;
      let isHeld = false;
      const conn = new Conn((reason) => {
        if (released) return;
        if (isHeld) {
          dropped++;
          held--;
          errors.push(`held session dropped: ${reason}`);
          return;
        }
        inFlight--;
        failed++;
        errors.push(reason);
        settled();
      });
      conns.push(conn);
      handshake(conn, () => {
        isHeld = true;
        inFlight--;
        held++;
        settled();
      });
    }
  };

  const release = () => {
    if (released) return;
    released = true;
    let open = conns.length;
    const closedOne = () => {
      open--;
      if (open === 0) finish({ ok: dropped === 0 && failed === 0, held, failed, dropped });
    };
    for (const conn of conns) {
      if (conn.closed) closedOne();
      else if (greetOnly) {
        conn.done = true;
        conn.socket.once('close', closedOne);
        conn.socket.end();
        setTimeout(() => conn.socket.destroy(), 3000).unref();
      } else conn.quit(closedOne);
    }
  };

  let input = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    input += chunk;
    if (input.includes('release')) release();
  });
  process.stdin.on('end', release);
  launch();
}

if (mode === 'throughput') runThroughput();
else if (mode === 'big') runBig();
else if (mode === 'idle') runIdle();
else {
  console.error(`load: unknown --mode ${mode}`);
  process.exit(2);
}
