'use strict';
// Load generator for bench/soak.js, run in its own process (raw `net` sockets). Reports with
// `@@bench {json}` lines on stdout; reads commands ("go", "stop") from stdin.
//
// Modes:
//   deliver  --sessions C --messages M: opens C sessions (at most --connect-concurrency
//            handshakes at a time), each greeted and past EHLO, then reports `ready` and waits
//            for "go" on stdin. Then the M messages are handed out to whichever session is free
//            (one message in flight per session: MAIL FROM + RCPT TO… + DATA pipelined in one
//            write, the dot-stuffed body after the 354). All C sessions stay open until the last
//            message is answered, then all QUIT.
//   fast     --sessions C --duration-ms T: the same per-session loop, started as soon as all C
//            sessions are past EHLO, no new message after T ms (and never more than
//            --messages). Reports msg/s and per-message latency (MAIL FROM written → final
//            reply read).
//   slow     --sessions N: slowloris clients, one byte per second each (--interval-ms). Even
//            ones dribble the whole session from the first command (EHLO, MAIL, RCPT, DATA,
//            body…); odd ones say EHLO, MAIL, RCPT and DATA at full speed and then dribble the
//            message body. Reports `ready` once every session is greeted (and the odd ones have
//            their 354), dribbles until "stop" on stdin or --duration-ms, then drops them all.
//
// deliver and fast write one JSON line per message to --manifest FILE: token, expected sha256 and
// size, envelope, every reply code, the final reply line. The runner checks the maildir against it.

const fs = require('node:fs');
const net = require('node:net');
const { setInterval, clearInterval } = require('node:timers');
const { performance } = require('node:perf_hooks');
const { parseArgs, intArg, emit, percentile, replyReader } = require('./util');
const { buildSoakMessage, tokenOf, DOMAIN } = require('./soak-message');

const args = parseArgs(process.argv.slice(2));
const mode = String(args.mode || 'deliver');
const host = typeof args.host === 'string' ? args.host : '127.0.0.1';
const port = intArg(args.port, 0);
const sessions = intArg(args.sessions, 20);
const maxMessages = intArg(args.messages, 1000);
const durationMs = intArg(args['duration-ms'], 10000);
const timeoutMs = intArg(args['timeout-ms'], 120000);
const seed = intArg(args.seed, 1);
const phase = String(args.phase || mode);
const minSize = intArg(args['min-size'], 200);
const maxSize = intArg(args['max-size'], 20480);
const intervalMs = intArg(args['interval-ms'], 1000);
const connectConcurrency = intArg(args['connect-concurrency'], 200);
const manifestPath = typeof args.manifest === 'string' ? args.manifest : null;

if (!/^(127\.\d+\.\d+\.\d+|localhost|::1)$/.test(host)) {
  console.error(`soak-load: refusing non-loopback host ${host}`);
  process.exit(2);
}
if (!port) {
  console.error('soak-load: --port is required');
  process.exit(2);
}

const conns = new Set();
let finished = false;
let onTimeout = () => finish({ ok: false, timedOut: true });
const watchdog = setTimeout(() => onTimeout(), timeoutMs);

function finish(result) {
  if (finished) return;
  finished = true;
  clearTimeout(watchdog);
  const own = process.cpuUsage();
  emit({ type: 'result', mode, ...result, cpuTotalSec: (own.user + own.system) / 1e6 });
  for (const c of conns) c.socket.destroy();
  process.stdin.destroy();
  setTimeout(() => process.exit(0), 1000).unref();
}

/** Calls handler(line) for each line on stdin. */
function onStdin(handler) {
  let rest = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    rest += chunk;
    let i;
    while ((i = rest.indexOf('\n')) >= 0) {
      handler(rest.slice(0, i).trim());
      rest = rest.slice(i + 1);
    }
  });
  process.stdin.on('end', () => handler('stop'));
}

/**
 * One client connection. Replies are matched in order against a queue of expectations
 * { what, then(code, lines) }; every reply is handed over whatever its code (the caller judges).
 */
class Conn {
  constructor(index) {
    this.index = index;
    this.expect = [];
    this.onData = replyReader((code, lines) => {
      const want = this.expect.shift();
      if (want) {
        want.then(code, lines);
        return;
      }
      this.unexpected = (this.unexpected || 0) + 1;
      if (this.onUnexpected) this.onUnexpected(code, lines);
    });
    this.closed = false;
    this.quitting = false;
    this.greeted = false;
    this.onClose = null;
    this.socket = net.connect({ host, port });
    conns.add(this);
    this.socket.setNoDelay(true);
    this.socket.setEncoding('latin1');
    this.socket.on('data', (chunk) => this.onData(chunk));
    this.socket.on('error', (err) => (this.error = err.code || err.message));
    this.socket.on('close', () => {
      this.closed = true;
      conns.delete(this);
      const waiting = this.expect.map((e) => e.what);
      this.expect.length = 0;
      if (this.onClose) this.onClose(waiting);
    });
  }

  await(what, then) {
    this.expect.push({ what, then });
  }

  write(data) {
    if (!this.closed) this.socket.write(data);
  }

  quit() {
    this.quitting = true;
    if (this.closed) return;
    this.expect.length = 0;
    this.await('QUIT', () => this.socket.end());
    this.write('QUIT\r\n');
    setTimeout(() => this.socket.destroy(), 3000).unref();
  }
}

/** Opens `count` connections, at most connectConcurrency handshakes at a time. */
function openSessions(count, { onEhlo, onGreeting, onFail, helo = 'soak-client' }) {
  let launched = 0;
  let inFlight = 0;
  const launch = () => {
    while (launched < count && inFlight < connectConcurrency) {
      const conn = new Conn(launched++);
      inFlight++;
      let settled = false;
      const settle = () => {
        if (settled) return false;
        settled = true;
        inFlight--;
        setImmediate(launch);
        return true;
      };
      conn.onClose = (waiting) => {
        if (settle()) onFail(conn, `closed before EHLO done${conn.error ? ` (${conn.error})` : ''}`, waiting);
      };
      conn.await('greeting', (code, lines) => {
        if (code !== 220) {
          settle();
          return onFail(conn, `greeting: ${lines.join(' | ')}`, []);
        }
        conn.greeted = true;
        if (onGreeting && onGreeting(conn) === false) return settle();
        conn.await('EHLO', (ecode, elines) => {
          if (!settle()) return;
          if (ecode !== 250) return onFail(conn, `EHLO: ${elines.join(' | ')}`, []);
          conn.caps = elines.map((l) => l.slice(4).split(' ')[0].toUpperCase());
          onEhlo(conn);
        });
        conn.write(`EHLO ${helo}-${conn.index}.${DOMAIN}\r\n`);
      });
    }
  };
  launch();
}

function tally(map, key) {
  map[key] = (map[key] || 0) + 1;
}

// ---------------------------------------------------------------------------
// deliver / fast

function runMessages() {
  const timed = mode === 'fast';
  const records = [];
  const latencies = [];
  const unexpected = {}; // "what code" -> count
  const unexpectedSamples = [];
  const closedEarly = [];
  let greetings = 0;
  let ehloDone = 0;
  let failedSessions = 0;
  let nextIndex = 0;
  let answered = 0; // messages whose transaction is over (final reply, refusal or lost session)
  let delivered = 0;
  let bytesDelivered = 0;
  const shape = { bytesSent: 0, dotLines: 0, loneDots: 0, longLines: 0 };
  let started = false;
  let stopIssuing = false;
  let tStart = 0;
  let tLast = 0;
  let cpu0 = null;
  let cpu = null;
  const ready = [];
  const t0 = performance.now();

  const note = (what, code, line) => {
    tally(unexpected, `${what} ${Number.isFinite(code) ? code : 'none'}`);
    if (unexpectedSamples.length < 8) unexpectedSamples.push(`${what}: ${line}`);
  };

  const moreWork = () =>
    !stopIssuing &&
    nextIndex < maxMessages &&
    !(timed && started && performance.now() - tStart >= durationMs);

  const summary = () => {
    const lat = Float64Array.from(latencies).sort();
    const seconds = tLast > tStart ? (tLast - tStart) / 1000 : 0;
    if (!cpu && cpu0) cpu = process.cpuUsage(cpu0);
    const stuck = {};
    for (const c of conns) if (c.expect.length) tally(stuck, `waiting for ${c.expect[0].what}`);
    return {
      phase,
      sessions,
      greetings,
      ehloDone,
      failedSessions,
      openAtEnd: conns.size,
      attempted: nextIndex,
      answered,
      delivered,
      bytesDelivered,
      seconds,
      msgsPerSec: seconds > 0 ? delivered / seconds : null,
      mbPerSec: seconds > 0 ? bytesDelivered / 1e6 / seconds : null,
      p50Ms: percentile(lat, 50),
      p99Ms: percentile(lat, 99),
      maxMs: lat.length ? lat[lat.length - 1] : null,
      clientCpuSec: cpu ? (cpu.user + cpu.system) / 1e6 : null,
      shape,
      unexpected,
      unexpectedSamples,
      closedEarly: closedEarly.length,
      closedEarlySamples: closedEarly.slice(0, 5),
      stuck,
    };
  };

  const writeManifest = () => {
    if (!manifestPath) return;
    fs.writeFileSync(
      manifestPath,
      records.map((r) => JSON.stringify(r)).join('\n') + (records.length ? '\n' : ''),
    );
  };

  const done = (extra = {}) => {
    writeManifest();
    finish({ ok: answered === nextIndex && !extra.timedOut, ...summary(), ...extra });
  };

  onTimeout = () => {
    stopIssuing = true;
    for (const r of records) if (r.status === 'pending') r.status = 'timeout';
    done({ timedOut: true, error: `timed out after ${timeoutMs} ms` });
  };
  // A bug here must still leave the manifest behind, or the messages sent so far look unknown.
  process.on('uncaughtException', (err) => {
    process.exitCode = 1;
    stopIssuing = true;
    done({ error: `load generator crashed: ${err.stack || err.message}` });
  });

  const allAnswered = () => answered === nextIndex && !moreWork();
  let quitting = false;
  const maybeFinish = () => {
    if (quitting || !started) return;
    if (conns.size === 0) stopIssuing = true; // every session is gone: nobody left to send
    if (!allAnswered()) return;
    quitting = true;
    tLast = tLast || performance.now();
    if (!cpu && cpu0) cpu = process.cpuUsage(cpu0);
    // All sessions were held open until now; close them together.
    const open = [...conns];
    if (open.length === 0) return done();
    let left = open.length;
    for (const c of open) {
      c.onClose = () => --left === 0 && done();
      c.quit();
    }
  };

  /** Sends the next message on conn, or leaves it idle when there is none. */
  const sendNext = (conn) => {
    if (conn.closed || !moreWork()) return maybeFinish();
    const index = nextIndex++;
    const m = buildSoakMessage({ seed, phase, index, minSize, maxSize });
    shape.bytesSent += m.size;
    shape.dotLines += m.dotLines;
    shape.loneDots += m.loneDots;
    shape.longLines += m.longLines;
    const rec = {
      token: m.token,
      index,
      sha256: m.sha256,
      size: m.size,
      mailFrom: m.mailFrom,
      rcptTo: m.rcptTo,
      acceptedRcpt: [],
      replies: {},
      status: 'pending',
      finalLine: null,
      session: conn.index,
    };
    records.push(rec);
    conn.current = rec;
    const t = performance.now();
    const end = (status) => {
      if (rec.status !== 'pending') return;
      rec.status = status;
      conn.current = null;
      answered++;
      if (status === 'delivered') {
        const now = performance.now();
        latencies.push(now - t);
        delivered++;
        bytesDelivered += m.size;
        if (now > tLast) tLast = now;
      }
      sendNext(conn);
    };
    rec.end = end;
    const eightBit = conn.caps.includes('8BITMIME') ? ' BODY=8BITMIME' : '';
    const size = conn.caps.includes('SIZE') ? ` SIZE=${m.size}` : '';
    let envelope = `MAIL FROM:<${m.mailFrom}>${eightBit}${size}\r\n`;
    for (const r of m.rcptTo) envelope += `RCPT TO:<${r}>\r\n`;
    envelope += 'DATA\r\n';
    const check = (what, want) => (code, lines) => {
      if (code !== want) note(what, code, lines.join(' | '));
    };
    conn.await('MAIL FROM', (code, lines) => {
      rec.replies.mail = code;
      check('MAIL FROM', 250)(code, lines);
    });
    m.rcptTo.forEach((r) => {
      conn.await('RCPT TO', (code, lines) => {
        (rec.replies.rcpt = rec.replies.rcpt || []).push(code);
        if (code === 250) rec.acceptedRcpt.push(r);
        check('RCPT TO', 250)(code, lines);
      });
    });
    conn.await('DATA', (code, lines) => {
      rec.replies.data = code;
      if (code !== 354) {
        note('DATA', code, lines.join(' | '));
        return end('refused');
      }
      conn.await('end of DATA', (fcode, flines) => {
        rec.replies.final = fcode;
        rec.finalLine = flines.join(' | ');
        if (fcode !== 250) {
          note('end of DATA', fcode, rec.finalLine);
          return end('refused');
        }
        end('delivered');
      });
      conn.write(m.wire);
    });
    conn.write(envelope);
  };

  const onSessionClosed = (conn, waiting) => {
    if (conn.quitting) return;
    closedEarly.push(
      `session ${conn.index}: closed by server${conn.error ? ` (${conn.error})` : ''}${waiting.length ? ` while waiting for ${waiting[0]}` : ''}`,
    );
    if (conn.current) conn.current.end('no final reply');
    maybeFinish();
  };

  const start = () => {
    if (started) return;
    started = true;
    cpu0 = process.cpuUsage();
    tStart = performance.now();
    for (const conn of ready) sendNext(conn);
    if (ready.length === 0) maybeFinish();
    const progress = setInterval(() => {
      if (quitting) return clearInterval(progress);
      emit({ type: 'progress', phase, delivered, answered, attempted: nextIndex, open: conns.size });
    }, 2000);
    progress.unref();
  };

  const settledAll = () => {
    if (ehloDone + failedSessions < sessions) return;
    emit({
      type: 'ready',
      phase,
      greetings,
      ehloDone,
      failedSessions,
      open: conns.size,
      connectSeconds: (performance.now() - t0) / 1000,
      failSamples: closedEarly.slice(0, 5),
    });
    if (timed) start();
  };

  openSessions(sessions, {
    onGreeting: () => {
      greetings++;
    },
    onEhlo: (conn) => {
      ehloDone++;
      conn.onClose = (waiting) => onSessionClosed(conn, waiting);
      conn.onUnexpected = (code, lines) => note('(no command)', code, lines.join(' | '));
      ready.push(conn);
      settledAll();
    },
    onFail: (conn, why) => {
      failedSessions++;
      closedEarly.push(`session ${conn.index}: ${why}`);
      conn.socket.destroy();
      settledAll();
    },
  });

  if (!timed) {
    onStdin((line) => {
      if (line === 'go') start();
      else if (line === 'stop') {
        stopIssuing = true;
        if (!started) done({ error: 'stopped before go' });
        else maybeFinish();
      }
    });
  }
}

// ---------------------------------------------------------------------------
// slow

function runSlow() {
  let greetings = 0;
  let inData = 0;
  let readySent = false;
  let bytesSent = 0;
  let closedByServer = 0;
  const replies = {};
  const closeSamples = [];
  const timers = [];
  const t0 = performance.now();
  let stopped = false;

  const stop = (why) => {
    if (stopped) return;
    stopped = true;
    for (const t of timers) clearInterval(t);
    const open = conns.size;
    finish({
      ok: true,
      why,
      sessions,
      greetings,
      inData,
      bytesSent,
      closedByServer,
      openAtStop: open,
      replies,
      closeSamples,
      seconds: (performance.now() - t0) / 1000,
    });
  };
  onTimeout = () => stop('timeout');
  setTimeout(() => stop('duration'), durationMs).unref();

  const dribble = (conn, text) => {
    let i = 0;
    const tick = () => {
      if (conn.closed || i >= text.length) return;
      conn.write(text[i++]);
      bytesSent++;
    };
    // Spread the sessions over the second.
    const first = setTimeout(
      () => {
        tick();
        timers.push(setInterval(tick, intervalMs));
      },
      Math.floor((conn.index * intervalMs) / Math.max(1, sessions)),
    );
    timers.push(first);
  };
  const countReplies = (conn) => {
    conn.onUnexpected = (code) => tally(replies, String(code));
  };
  const maybeReady = () => {
    if (readySent) return;
    const wantData = Math.floor(sessions / 2);
    if (greetings + closedByServer >= sessions && inData >= wantData - closedByServer) {
      readySent = true;
      emit({
        type: 'ready',
        greetings,
        inData,
        closedByServer,
        connectSeconds: (performance.now() - t0) / 1000,
      });
    }
  };
  const sessionText = (i) =>
    `MAIL FROM:<slow${i}@${DOMAIN}>\r\nRCPT TO:<slow-rcpt${i}@${DOMAIN}>\r\nDATA\r\n`;
  const bodyText = (i) =>
    `Message-ID: <soak.${tokenOf(seed, 'slow', i)}@${DOMAIN}>\r\nSubject: soak ${tokenOf(seed, 'slow', i)} slow\r\n\r\n` +
    'x'.repeat(4000) +
    '\r\n.\r\n';

  let launched = 0;
  let inFlight = 0;
  const launch = () => {
    while (launched < sessions && inFlight < connectConcurrency && !stopped) {
      const conn = new Conn(launched++);
      inFlight++;
      let settled = false;
      const settle = () => {
        if (!settled) {
          settled = true;
          inFlight--;
          setImmediate(launch);
        }
      };
      conn.onClose = () => {
        settle();
        if (stopped) return;
        closedByServer++;
        if (closeSamples.length < 5)
          closeSamples.push(`slow ${conn.index}: closed by server${conn.error ? ` (${conn.error})` : ''}`);
        maybeReady();
      };
      conn.await('greeting', (code) => {
        tally(replies, String(code));
        greetings++;
        settle();
        countReplies(conn);
        if (conn.index % 2 === 0) {
          // The whole session at one byte per second, from the first command.
          dribble(conn, `EHLO s${conn.index}\r\n` + sessionText(conn.index) + bodyText(conn.index));
          maybeReady();
          return;
        }
        // Envelope at full speed, then the body at one byte per second.
        conn.await('EHLO', (c) => tally(replies, String(c)));
        conn.await('MAIL FROM', (c) => tally(replies, String(c)));
        conn.await('RCPT TO', (c) => tally(replies, String(c)));
        conn.await('DATA', (c) => {
          tally(replies, String(c));
          if (c === 354) {
            inData++;
            dribble(conn, bodyText(conn.index));
          }
          maybeReady();
        });
        conn.write(`EHLO slow-${conn.index}.${DOMAIN}\r\n` + sessionText(conn.index));
      });
    }
  };
  launch();
  onStdin((line) => line === 'stop' && stop('stopped'));
}

if (mode === 'deliver' || mode === 'fast') runMessages();
else if (mode === 'slow') runSlow();
else {
  console.error(`soak-load: unknown --mode ${mode}`);
  process.exit(2);
}
