'use strict';
// Turns the runner's raw results into medians, ratios and target checks, and
// renders them as Markdown (printed and written to bench/results/latest.md)
// and as a hand-written SVG bar chart (bench/results/latest.svg).

const { median, fmt } = require('./util');

const LOOPBACK_KEYS = [
  'catcher',
  'smtp-server-store',
  'session-discard',
  'raw-ceiling',
  'smtp-server-discard',
  'catcher-workers',
];
const COLORS = {
  catcher: '#1f77b4',
  'smtp-server-store': '#ff7f0e',
  'session-discard': '#2ca02c',
  'raw-ceiling': '#7f7f7f',
  'smtp-server-discard': '#d62728',
  'catcher-workers': '#9467bd',
};

/** Median row per server and size. */
function summarizeLoopback(lb) {
  const rows = [];
  for (const sz of lb.sizes) {
    for (const key of LOOPBACK_KEYS) {
      const all = lb.runs.filter((r) => r.key === key && r.size === sz.label);
      if (all.length === 0) continue;
      const skipped = all.find((r) => r.skipped);
      const measured = all.filter((r) => !r.skipped);
      if (measured.length === 0) {
        rows.push({ key, size: sz.label, skipped: skipped.skipped });
        continue;
      }
      const ok = measured.filter((r) => r.ok);
      const use = ok.length ? ok : measured;
      const stores = use.filter((r) => r.stored);
      rows.push({
        key,
        size: sz.label,
        runs: measured.length,
        okRuns: ok.length,
        msgsPerSec: median(use.map((r) => r.msgsPerSec)),
        mbPerSec: median(use.map((r) => r.mbPerSec)),
        p50Ms: median(use.map((r) => r.p50Ms)),
        p99Ms: median(use.map((r) => r.p99Ms)),
        peakRssMB: median(use.map((r) => r.peakRssMB)),
        serverCpuUsPerMsg: median(use.map((r) => r.serverCpuUsPerMsg)),
        clientCpuPct: median(use.map((r) => r.clientCpuPct)),
        otherCpuPct: median(use.map((r) => r.otherCpuPct)),
        stored: stores.length ? (stores.every((r) => r.storedOk) ? 'all' : 'MISMATCH') : 'n/a',
        storedDetail: stores.map((r) => `${r.stored.eml}/${r.stored.expected}`).join(', '),
        preflight: measured.every((r) => r.preflight === 'ok')
          ? 'ok'
          : measured.find((r) => r.preflight !== 'ok').preflight,
      });
    }
  }
  return rows;
}

function ratio(rows, a, b, size) {
  const ra = rows.find((r) => r.key === a && r.size === size && !r.skipped);
  const rb = rows.find((r) => r.key === b && r.size === size && !r.skipped);
  if (!ra || !rb || !ra.msgsPerSec || !rb.msgsPerSec) return null;
  return ra.msgsPerSec / rb.msgsPerSec;
}

/** The same comparison by server CPU per message: cpu(b) / cpu(a), so > 1 means a is cheaper. */
function cpuRatio(rows, a, b, size) {
  const ra = rows.find((r) => r.key === a && r.size === size && !r.skipped);
  const rb = rows.find((r) => r.key === b && r.size === size && !r.skipped);
  if (!ra || !rb || !ra.serverCpuUsPerMsg || !rb.serverCpuUsPerMsg) return null;
  return rb.serverCpuUsPerMsg / ra.serverCpuUsPerMsg;
}

const RATIOS = [
  {
    a: 'catcher',
    b: 'smtp-server-store',
    name: 'catcher / smtp-server storing (a/b)',
    goals: { '1 KB': 2.0, '100 KB': 1.5 },
  },
  {
    a: 'session-discard',
    b: 'raw-ceiling',
    name: 'session stream discarding / raw ceiling (c/d)',
    goals: { '1 KB': 0.7 },
  },
  {
    a: 'session-discard',
    b: 'smtp-server-discard',
    name: 'session stream discarding / smtp-server discarding (c/e)',
    goals: {},
  },
  {
    a: 'smtp-server-discard',
    b: 'raw-ceiling',
    name: 'smtp-server discarding / raw ceiling (e/d)',
    goals: {},
  },
  {
    a: 'catcher-workers',
    b: 'catcher',
    name: 'catcher --workers 2 / catcher in one process (f/a)',
    goals: {},
  },
];

function verdict(value, ok) {
  if (value === null || value === undefined || !Number.isFinite(value)) return 'n/a';
  return ok ? 'PASS' : 'MISS';
}

function computeTargets(results, rows) {
  const targets = [];
  if (results.loopback) {
    for (const r of RATIOS) {
      for (const [size, goal] of Object.entries(r.goals)) {
        const v = ratio(rows, r.a, r.b, size);
        targets.push({
          name: `${r.name.replace(/ \(.\/.\)$/, '')}, msg/s at ${size}`,
          measured: v === null ? 'n/a' : `${fmt(v, 2)}×`,
          goal: `≥ ${fmt(goal, 1)}×`,
          result: verdict(v, v >= goal),
        });
      }
    }
  }
  if (results.core) {
    for (const label of ['100 KB', '10 MB']) {
      const d = results.core.data && results.core.data.find((x) => x.label === label);
      const v = d && d.ok && d.mbPerSec ? d.mbPerSec / 1000 : null;
      targets.push({
        name: `core DATA throughput at ${label}`,
        measured: v === null ? 'n/a' : `${fmt(v, 2)} GB/s`,
        goal: '≥ 1 GB/s',
        result: verdict(v, v >= 1),
      });
    }
  }
  if (results.memory) {
    const m = results.memory;
    const big = m.big.find((x) => x.key === 'catcher');
    const v = big && !big.skipped && big.ok ? big.growthMB : null;
    const refused = big && !big.skipped && !big.ok && Number.isFinite(big.growthMB);
    targets.push({
      name: `peak RSS growth, one ${fmt(m.bigSize / 1048576)} MiB message to the catcher`,
      measured:
        v !== null
          ? `${fmt(v, 1)} MB`
          : refused
            ? `${fmt(big.growthMB, 1)} MB, but not accepted: ${big.reply}`
            : 'n/a',
      goal: '≤ 12 MB' + (m.bigSize !== 1024 ** 3 ? ' (at 1 GiB)' : ''),
      result: verdict(v, v <= 12),
    });
    const idle = m.idle.find((x) => x.key === 'session-discard');
    const w = idle && !idle.skipped && !idle.error ? idle.perSessionKB : null;
    targets.push({
      name: `RSS per idle session at ${fmt(m.idleSessions)} sessions (session stream)`,
      measured: w === null ? 'n/a' : `${fmt(w, 2)} KB`,
      goal: '≤ 8 KB' + (m.idleSessions !== 4000 ? ' (at 4,000)' : ''),
      result: verdict(w, w <= 8),
    });
  }
  return targets;
}

function table(header, rows) {
  const esc = (c) => String(c === null || c === undefined ? '—' : c).replace(/\|/g, '\\|');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

function renderMarkdown(results, { servers }) {
  const { meta } = results;
  const label = (key) => `${key} — ${servers[key] ? servers[key].label : key}`;
  const out = [];
  const skipped = new Map();
  out.push('# smtp-session-stream benchmarks', '');
  out.push(
    table(
      ['', ''],
      [
        ['date', meta.date],
        ['command', `\`${meta.command}\``],
        ['os.cpus().length', `${meta.cpus} (${meta.cpuModel})`],
        ['node', meta.node],
        ['platform', `${meta.platform}, ${fmt(meta.totalMemGiB, 1)} GiB RAM`],
        ['mode', meta.quick ? 'quick (smoke run: smaller counts, 1 run per case)' : 'full'],
        ['sections', meta.sections.join(', ')],
        ['library', `${meta.dist}/lib`],
        ...(meta.fileCost
          ? [
              [
                'storing folder',
                `${meta.maildirRoot}: two 1 KB files created and renamed in ` +
                  `${fmt(meta.fileCost.wallUs, 0)} µs (${fmt(meta.fileCost.systemUs, 0)} µs kernel CPU), ` +
                  'synchronously, outside any server',
              ],
            ]
          : []),
        ['duration', meta.seconds ? `${fmt(meta.seconds, 1)} s` : '—'],
      ],
    ),
  );

  const rows = results.loopback ? summarizeLoopback(results.loopback) : [];
  const targets = computeTargets(results, rows);
  if (targets.length) {
    out.push('', '## Targets', '');
    const other = median(rows.filter((r) => !r.skipped).map((r) => r.otherCpuPct));
    if (other !== null && other > 25) {
      out.push(
        `**Warning:** other processes used a median ${fmt(other)}% of a core during the loopback runs ` +
          '(other builds or tests on this machine); msg/s and their ratios are noisy. Rerun on a quiet ' +
          'machine, or compare the "by CPU" ratios.',
        '',
      );
    }
    out.push(
      table(
        ['target', 'measured', 'goal', 'result'],
        targets.map((t) => [t.name, t.measured, t.goal, t.result]),
      ),
    );
  }

  if (results.core) {
    const c = results.core;
    out.push('', '## Core: `Protocol` in-process, no sockets', '');
    if (c.skipped || c.error) {
      out.push(`skipped: ${c.skipped || c.error}`);
      skipped.set('core', c.skipped || c.error);
    } else {
      const crow = [];
      for (const r of c.commands || []) {
        crow.push([
          `commands, ${r.mode}`,
          r.commandsPerSec ? `${fmt(r.commandsPerSec)} commands/s` : '—',
          r.commands ? fmt(r.commands) : '—',
          r.ok ? 'ok' : r.note || 'failed',
        ]);
      }
      for (const r of c.data || []) {
        crow.push([
          `DATA, ${r.label} messages, random 1 B–64 KiB chunks`,
          r.mbPerSec
            ? `${fmt(r.mbPerSec, 1)} MB/s (${fmt(r.msgsPerSec)} msg/s)` +
              (r.runsMbPerSec && r.runsMbPerSec.length > 1
                ? `, median of ${r.runsMbPerSec.map((v) => fmt(v, 0)).join(' / ')}`
                : '')
            : '—',
          r.messages ? `${fmt(r.messages)} messages` : '—',
          r.ok ? 'ok' : r.note || 'failed',
        ]);
      }
      out.push(table(['case', 'result', 'count', 'check'], crow));
    }
  }

  if (results.loopback) {
    const lb = results.loopback;
    out.push(
      '',
      `## Loopback: ${lb.sessions} parallel sessions, median of ${lb.reps} run${lb.reps > 1 ? 's' : ''}`,
      '',
    );
    out.push(
      `Measured messages per session: ${lb.sizes.map((s) => `${s.messages} at ${s.label} (after ${s.warmup} warm-up)`).join(', ')}. ` +
        'Latency: body written → final 250 read. Peak RSS: VmHWM of the server process (reset after start). ' +
        'Server CPU: utime+stime of the server over the load run / messages. Client CPU: the load generator, % of one core. ' +
        'Other CPU: what other processes on the machine used meanwhile, % of one core (high = noisy numbers). ' +
        '`catcher-workers` is the catcher with `--workers 2` (node:cluster, two processes on one port): ' +
        'scaling out, measured on its own (no target); its CPU and RSS are summed over the primary and ' +
        'its workers, which share the 2 cores with the load generator.',
      '',
    );
    out.push(
      table(
        [
          'server',
          'size',
          'msg/s',
          'MB/s',
          'p50 ms',
          'p99 ms',
          'peak RSS MB',
          'server CPU µs/msg',
          'client CPU %',
          'other CPU %',
          'stored',
          'runs ok',
        ],
        rows.map((r) => {
          if (r.skipped) {
            skipped.set(r.key, r.skipped);
            return [label(r.key), r.size, 'skipped', '', '', '', '', '', '', '', '', ''];
          }
          return [
            label(r.key),
            r.size,
            fmt(r.msgsPerSec),
            fmt(r.mbPerSec, 1),
            fmt(r.p50Ms, 2),
            fmt(r.p99Ms, 2),
            fmt(r.peakRssMB, 1),
            fmt(r.serverCpuUsPerMsg),
            fmt(r.clientCpuPct),
            fmt(r.otherCpuPct),
            r.stored === 'n/a' ? 'n/a' : `${r.stored} (${r.storedDetail})`,
            `${r.okRuns}/${r.runs}`,
          ];
        }),
      ),
    );
    const failedPre = rows.filter((r) => r.preflight && r.preflight !== 'ok');
    if (failedPre.length) {
      out.push(
        '',
        ...failedPre.map((r) => `- nodemailer preflight failed for ${r.key} at ${r.size}: ${r.preflight}`),
      );
    }
    out.push('', '### Ratios', '');
    out.push(
      'msg/s columns: ratio of median msg/s (the targets). CPU columns, context: the inverse ratio of ' +
        'median server CPU per message (> 1 = the first server spends less CPU per message); it is less ' +
        'sensitive to other load on the machine and to the client sharing the 2 cores.',
      '',
    );
    out.push(
      table(
        ['ratio', '1 KB msg/s', '100 KB msg/s', '1 KB by CPU', '100 KB by CPU', 'target'],
        RATIOS.map((r) => {
          const cpuCell = (size) => {
            const v = cpuRatio(rows, r.a, r.b, size);
            return v === null ? 'n/a' : `${fmt(v, 2)}×`;
          };
          const cell = (size) => {
            const v = ratio(rows, r.a, r.b, size);
            if (v === null) return 'n/a';
            const goal = r.goals[size];
            return goal ? `${fmt(v, 2)}× ${v >= goal ? 'PASS' : 'MISS'}` : `${fmt(v, 2)}×`;
          };
          const goals = Object.entries(r.goals).map(([s, g]) => `≥ ${fmt(g, 1)}× at ${s}`);
          return [
            r.name,
            cell('1 KB'),
            cell('100 KB'),
            cpuCell('1 KB'),
            cpuCell('100 KB'),
            goals.length ? goals.join(', ') : 'context',
          ];
        }),
      ),
    );
  }

  if (results.loopback) {
    // Run by run: the servers take turns, so neighbouring runs saw the same machine. The spread
    // shows how much a single run can be trusted on a shared VM.
    const lb = results.loopback;
    const perRun = (a, b, size) => {
      const values = [];
      for (let rep = 1; rep <= (lb.reps || 0); rep++) {
        const ra = lb.runs.find((r) => r.key === a && r.size === size && r.rep === rep && r.ok);
        const rb = lb.runs.find((r) => r.key === b && r.size === size && r.rep === rep && r.ok);
        if (ra && rb && rb.msgsPerSec > 0) values.push(ra.msgsPerSec / rb.msgsPerSec);
      }
      return values;
    };
    const rowsPerRun = RATIOS.filter((r) => Object.keys(r.goals).length > 0).map((r) => [
      r.name,
      ...['1 KB', '100 KB'].map((size) => {
        const v = perRun(r.a, r.b, size);
        return v.length ? v.map((x) => `${fmt(x, 2)}×`).join(' / ') : 'n/a';
      }),
    ]);
    if (rowsPerRun.length && (lb.reps || 0) > 1) {
      out.push('', '### The target ratios run by run', '');
      out.push(table(['ratio', '1 KB, runs 1…n', '100 KB, runs 1…n'], rowsPerRun));
    }
  }

  if (results.memory) {
    const m = results.memory;
    out.push('', '## Memory', '');
    out.push(`### One ${fmt(m.bigSize / 1048576)} MiB message over one connection`, '');
    out.push(
      table(
        ['server', 'peak RSS − idle RSS, MB', 'idle RSS MB', 'peak RSS MB', 'MB/s', 'final reply'],
        m.big.map((r) => {
          if (r.skipped) {
            skipped.set(r.key, r.skipped);
            return [label(r.key), 'skipped', '', '', '', ''];
          }
          return [
            label(r.key),
            fmt(r.growthMB, 1),
            fmt(r.idleRssMB, 1),
            fmt(r.peakRssMB, 1),
            fmt(r.mbPerSec, 1),
            (r.reply || '') + (r.serverAlive ? '' : ' (server died)'),
          ];
        }),
      ),
    );
    out.push('', `### ${fmt(m.idleSessions)} idle sessions held after EHLO`, '');
    if (m.idleNodeArgs && m.idleNodeArgs.length) {
      out.push(
        `Every server here runs with \`node ${m.idleNodeArgs.join(' ')}\`, so that the young ` +
          'generation grown while accepting the connections is not counted as memory the sessions hold.',
        '',
      );
    }
    out.push(
      table(
        ['server', 'KB per session', 'idle RSS MB', 'RSS with sessions MB', 'sessions held'],
        m.idle.map((r) => {
          if (r.skipped) {
            skipped.set(r.key, r.skipped);
            return [label(r.key), 'skipped', '', '', ''];
          }
          if (r.error) return [label(r.key), `failed: ${r.error}`, '', '', ''];
          return [
            label(r.key),
            fmt(r.perSessionKB, 2),
            fmt(r.idleRssMB, 1),
            fmt(r.withRssMB, 1),
            `${fmt(r.held)}/${fmt(r.sessions)}` + (r.failed ? ` (${r.failed} failed)` : ''),
          ];
        }),
      ),
    );
  }

  if (skipped.size) {
    out.push('', '## Skipped', '');
    for (const [key, why] of skipped) out.push(`- ${key}: skipped: ${why}`);
  }
  return out.join('\n') + '\n';
}

function xmlEscape(s) {
  return String(s).replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]);
}

/** Upper axis bound: a round multiple of a power of ten, at least max (4 grid steps). */
function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/** One panel per message size, one bar per server: messages/s (median). */
function renderSvg(results, { servers }) {
  const W = 960;
  const H = 420;
  const parts = [];
  const text = (x, y, s, attrs = '') => parts.push(`<text x="${x}" y="${y}" ${attrs}>${xmlEscape(s)}</text>`);
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      'font-family="Helvetica, Arial, sans-serif" font-size="12">',
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
  );
  const meta = results.meta;
  text(
    W / 2,
    24,
    'smtp-session-stream — loopback messages/s (median)',
    'text-anchor="middle" font-size="16" font-weight="bold"',
  );
  text(
    W / 2,
    42,
    `${meta.date.slice(0, 10)} · node ${meta.node} · ${meta.cpus} CPUs · ${meta.quick ? 'quick' : 'full'} mode`,
    'text-anchor="middle" fill="#555"',
  );
  if (!results.loopback) {
    text(W / 2, H / 2, 'loopback section not run', 'text-anchor="middle" fill="#999" font-size="14"');
    parts.push('</svg>');
    return parts.join('\n') + '\n';
  }
  const rows = summarizeLoopback(results.loopback);
  const sizes = results.loopback.sizes.map((s) => s.label);
  const keys = LOOPBACK_KEYS.filter((k) => rows.some((r) => r.key === k));
  const top = 70;
  const bottom = H - 90;
  const panelW = (W - 40) / sizes.length;
  sizes.forEach((size, p) => {
    const x0 = 20 + p * panelW + 50;
    const x1 = 20 + (p + 1) * panelW - 20;
    const vals = keys.map((k) => rows.find((r) => r.key === k && r.size === size));
    const max = niceMax(Math.max(0, ...vals.map((r) => (r && r.msgsPerSec) || 0)));
    text(
      (x0 + x1) / 2,
      top - 8,
      `${size} messages`,
      'text-anchor="middle" font-size="14" font-weight="bold"',
    );
    for (let i = 0; i <= 4; i++) {
      const y = bottom - ((bottom - top) * i) / 4;
      parts.push(`<line x1="${x0}" y1="${y}" x2="${x1}" y2="${y}" stroke="#e5e5e5"/>`);
      text(x0 - 6, y + 4, fmt((max * i) / 4), 'text-anchor="end" fill="#555" font-size="11"');
    }
    parts.push(`<line x1="${x0}" y1="${bottom}" x2="${x1}" y2="${bottom}" stroke="#333"/>`);
    const slot = (x1 - x0) / Math.max(1, keys.length);
    const bw = slot * 0.7;
    vals.forEach((r, i) => {
      const bx = x0 + i * slot + (slot - bw) / 2;
      const cx = bx + bw / 2;
      if (!r || r.skipped || !r.msgsPerSec) {
        const y = bottom - 8;
        text(cx + 4, y, 'skipped', `fill="#999" transform="rotate(-90 ${(cx + 4).toFixed(1)} ${y})"`);
      } else {
        const h = ((bottom - top) * r.msgsPerSec) / max;
        parts.push(
          `<rect x="${bx.toFixed(1)}" y="${(bottom - h).toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" ` +
            `fill="${COLORS[keys[i]]}"><title>${xmlEscape(`${keys[i]} ${size}: ${fmt(r.msgsPerSec)} msg/s`)}</title></rect>`,
        );
        text(cx, bottom - h - 4, fmt(r.msgsPerSec), 'text-anchor="middle" font-size="11"');
      }
    });
  });
  // Legend
  const lw = (W - 40) / keys.length;
  keys.forEach((k, i) => {
    const lx = 20 + i * lw;
    const ly = H - 50;
    parts.push(`<rect x="${lx}" y="${ly}" width="12" height="12" fill="${COLORS[k]}"/>`);
    text(lx + 18, ly + 10, k, 'font-size="12"');
    text(lx + 18, ly + 26, servers[k] ? servers[k].label : '', 'font-size="10" fill="#666"');
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

module.exports = { renderMarkdown, renderSvg, summarizeLoopback, computeTargets };
