import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { parseTranscript, type Transcript } from '../../lib/record/transcript';
import { recordSession } from '../../lib/record/recorder';
import { replayTranscript } from '../../lib/record/replay';
import { runReplayCli } from '../../lib/record/replay-cli';
import { createSelfSignedCertificate } from '../../lib/tls/self-signed';
import {
  startScriptServer,
  type FakeSession,
  type ScriptServer,
  type ScriptServerOptions,
} from './helpers/script-server';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'transcripts');
const fixturePath = (name: string) => path.join(FIXTURES, name);
const fixture = (name: string) => parseTranscript(fs.readFileSync(fixturePath(name), 'utf8'));
const CREDENTIALS = { username: 'alice', password: 's3cret' };

class StringOut {
  text = '';
  write(chunk: string) {
    this.text += chunk;
    return true;
  }
}

const servers: ScriptServer[] = [];
async function server(options: ScriptServerOptions = {}): Promise<ScriptServer> {
  const s = await startScriptServer(options);
  servers.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

let secureContext: tls.SecureContext;
beforeAll(() => {
  const { key, cert } = createSelfSignedCertificate();
  secureContext = tls.createSecureContext({ key, cert });
});

/** Starts a server whose sessions are recorded; returns the transcripts once sessions close. */
async function recordingServer(options: ScriptServerOptions = {}) {
  const transcripts: Array<Promise<Transcript>> = [];
  const s = await server({
    ...options,
    onSession: (session: FakeSession) => {
      transcripts.push(
        new Promise((resolve) => {
          const lines: string[] = [];
          recordSession(session, (line) => lines.push(line));
          session.once('close', () => setImmediate(() => resolve(parseTranscript(lines.join('\n') + '\n'))));
        }),
      );
    },
  });
  return { server: s, transcripts };
}

describe('replayTranscript', () => {
  it('reports ok for a matching server and keeps pipelined commands in one write', async () => {
    const s = await server();
    const report = await replayTranscript(fixture('basic.txt'), {
      host: '127.0.0.1',
      port: s.port,
      timeoutMs: 5000,
    });
    expect(report).toEqual({ differences: [], repliesCompared: 7, ok: true, skipped: [] });
    const chunks = s.chunks[0];
    expect(chunks).toContain('MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n');
    // the body, including the byte-exact UTF-8 and the dot-stuffed line, went out as one write
    expect(chunks.join('')).toContain('Hello \u00c3\u00a9t\u00c3\u00a9\r\n..leading dot\r\n');
  });

  it('reports a difference when the server answers 550 instead of 250', async () => {
    const s = await server({ rcptReply: '550 5.1.1 No such user' });
    const report = await replayTranscript(fixture('basic.txt'), {
      host: '127.0.0.1',
      port: s.port,
      timeoutMs: 5000,
    });
    expect(report.ok).toBe(false);
    expect(report.repliesCompared).toBe(7);
    expect(report.differences).toEqual([
      { index: 3, command: 'RCPT TO:<bob@example.test>', expected: '250 2.1.5', actual: '550 5.1.1' },
    ]);
  });

  it('compares text, ignoring greeting host, timestamps, queue ids and CRAM-MD5 challenges', async () => {
    const rec = await recordingServer();
    // Produce a live recording by replaying the fixture (with credentials) against the server.
    const first = await replayTranscript(fixture('auth-login-cram.txt'), {
      host: '127.0.0.1',
      port: rec.server.port,
      credentials: CREDENTIALS,
      timeoutMs: 5000,
    });
    expect(first.ok).toBe(true);
    const recorded = await rec.transcripts[0];
    const text = recorded.records.map((r) => r.data.toString('latin1')).join('');
    expect(text).not.toContain('s3cret');
    expect(text).not.toContain(Buffer.from('s3cret').toString('base64'));

    const s2 = await server();
    const again = await replayTranscript(recorded, {
      host: '127.0.0.1',
      port: s2.port,
      credentials: CREDENTIALS,
      compare: 'text',
      timeoutMs: 5000,
    });
    expect(again).toEqual({ differences: [], repliesCompared: 11, ok: true, skipped: [] });

    // and the whole DATA flow too (queue ids differ between runs)
    const rec2 = await recordingServer();
    await replayTranscript(fixture('basic.txt'), {
      host: '127.0.0.1',
      port: rec2.server.port,
      timeoutMs: 5000,
    });
    const basic = await rec2.transcripts[0];
    const third = await replayTranscript(basic, {
      host: '127.0.0.1',
      port: s2.port,
      compare: 'text',
      timeoutMs: 5000,
    });
    expect(third.differences).toEqual([]);

    // a text difference is reported with the full reply text
    const s3 = await server({ rcptReply: '250 2.1.5 Fine by me' });
    const fourth = await replayTranscript(basic, {
      host: '127.0.0.1',
      port: s3.port,
      compare: 'text',
      timeoutMs: 5000,
    });
    expect(fourth.differences).toEqual([
      {
        index: 3,
        command: 'RCPT TO:<bob@example.test>',
        expected: '250 2.1.5 Recipient OK',
        actual: '250 2.1.5 Fine by me',
      },
    ]);
  });

  it('regenerates redacted LOGIN, CRAM-MD5 and XOAUTH2 exchanges from credentials', async () => {
    const s = await server();
    const ok = await replayTranscript(fixture('auth-login-cram.txt'), {
      host: '127.0.0.1',
      port: s.port,
      credentials: CREDENTIALS,
      timeoutMs: 5000,
    });
    expect(ok).toEqual({ differences: [], repliesCompared: 11, ok: true, skipped: [] });

    const wrong = await replayTranscript(fixture('auth-login-cram.txt'), {
      host: '127.0.0.1',
      port: s.port,
      credentials: { username: 'alice', password: 'wrong' },
      timeoutMs: 5000,
    });
    expect(wrong.differences.map((d) => [d.index, d.command, d.expected, d.actual])).toEqual([
      [4, 'AUTH LOGIN (response 2)', '235 2.7.0', '535 5.7.8'],
      [7, 'AUTH CRAM-MD5 (response 1)', '235 2.7.0', '535 5.7.8'],
      [9, 'AUTH XOAUTH2 (response 1)', '235 2.7.0', '334'],
      // the server still waits for the XOAUTH2 client's empty answer, so QUIT is taken as one
      [10, 'QUIT', '221 2.0.0', '535 5.7.8'],
    ]);
  });

  it('skips redacted exchanges without credentials', async () => {
    const s = await server();
    const report = await replayTranscript(fixture('auth-login-cram.txt'), {
      host: '127.0.0.1',
      port: s.port,
      timeoutMs: 5000,
    });
    expect(report.ok).toBe(true);
    expect(report.repliesCompared).toBe(4); // greeting, EHLO, RSET, QUIT
    expect(report.skipped).toEqual([
      { index: 2, command: 'AUTH LOGIN', reason: expect.stringMatching(/credentials/) },
      { index: 6, command: 'AUTH CRAM-MD5', reason: expect.stringMatching(/credentials/) },
      { index: 8, command: 'AUTH XOAUTH2', reason: expect.stringMatching(/credentials/) },
    ]);
    expect(s.chunks[0].join('')).toBe('EHLO client.example\r\nRSET\r\nQUIT\r\n');
  });

  it('replays a STARTTLS session, upgrading the socket after 220', async () => {
    const rec = await recordingServer({ secureContext });
    const report = await replayTranscript(fixture('starttls-auth.txt'), {
      host: '127.0.0.1',
      port: rec.server.port,
      credentials: CREDENTIALS,
      timeoutMs: 5000,
    });
    expect(report).toEqual({ differences: [], repliesCompared: 10, ok: true, skipped: [] });

    // The server-side recording of that replay has the T record and the redacted AUTH line...
    const recorded = await rec.transcripts[0];
    const dirs = recorded.records.map((r) => r.dir).join('');
    expect(dirs).toMatch(/^SCSSSSSCST/);
    expect(recorded.records.find((r) => r.dir === 'T')!.data.toString()).toMatch(/^TLSv1\.[23] \S+$/);
    expect(recorded.records.find((r) => r.dir === '!')!.data.toString()).toBe('AUTH PLAIN <redacted>\r\n');
    // ...and replays again, in text mode, once credentials are given.
    const again = await replayTranscript(recorded, {
      host: '127.0.0.1',
      port: rec.server.port,
      credentials: CREDENTIALS,
      compare: 'text',
      timeoutMs: 5000,
    });
    expect(again.differences).toEqual([]);
    expect(again.ok).toBe(true);
  });

  it('stops with a difference when the server refuses STARTTLS', async () => {
    const s = await server(); // no TLS configured: 454
    const report = await replayTranscript(fixture('starttls-auth.txt'), {
      host: '127.0.0.1',
      port: s.port,
      credentials: CREDENTIALS,
      timeoutMs: 5000,
    });
    expect(report.ok).toBe(false);
    expect(report.differences[0]).toEqual({
      index: 2,
      command: 'STARTTLS',
      expected: '220 2.0.0',
      actual: '454 4.7.0',
    });
    expect(report.aborted).toMatch(/STARTTLS/);
  });

  it('replays implicit TLS transcripts over TLS from the start', async () => {
    const s = await server({ secureContext, implicitTls: true });
    const report = await replayTranscript(fixture('implicit-tls.txt'), {
      host: '127.0.0.1',
      port: s.port,
      timeoutMs: 5000,
    });
    expect(report).toEqual({ differences: [], repliesCompared: 4, ok: true, skipped: [] });
  });

  it('reports a server that closes early or stays silent', async () => {
    const silent = net.createServer((socket) => {
      socket.write('220 hi\r\n');
      socket.on('data', () => socket.end()); // hangs up at the first command
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const report = await replayTranscript(fixture('basic.txt'), {
        host: '127.0.0.1',
        port,
        timeoutMs: 2000,
      });
      expect(report.ok).toBe(false);
      expect(report.differences).toEqual([
        {
          index: 1,
          command: 'EHLO client.example',
          expected: '250',
          actual: expect.stringMatching(/closed/),
        },
      ]);
      expect(report.aborted).toBeDefined();
    } finally {
      await new Promise((resolve) => silent.close(resolve));
    }

    const mute = net.createServer(() => {});
    const muteSockets = new Set<net.Socket>();
    mute.on('connection', (socket) => muteSockets.add(socket));
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
    try {
      const port = (mute.address() as net.AddressInfo).port;
      const report = await replayTranscript(fixture('basic.txt'), {
        host: '127.0.0.1',
        port,
        timeoutMs: 300,
      });
      expect(report.differences).toEqual([
        { index: 0, command: '(greeting)', expected: '220', actual: '(no reply within 300 ms)' },
      ]);
    } finally {
      for (const socket of muteSockets) socket.destroy();
      await new Promise((resolve) => mute.close(resolve));
    }
  });

  it('rejects when it cannot connect', async () => {
    const port = await closedPort();
    await expect(
      replayTranscript(fixture('basic.txt'), { host: '127.0.0.1', port, timeoutMs: 2000 }),
    ).rejects.toThrow(/cannot connect/);
  });
});

async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('runReplayCli', () => {
  it('returns 0 and prints a summary when nothing differs', async () => {
    const s = await server();
    const out = new StringOut();
    const code = await runReplayCli(['replay', fixturePath('basic.txt'), '--to', `127.0.0.1:${s.port}`], out);
    expect(code).toBe(0);
    expect(out.text).toBe('replay: 7 replies compared, 0 differences (ok)\n');
  });

  it('returns 1 and prints each difference', async () => {
    const s = await server({ rcptReply: '550 5.1.1 No such user' });
    const out = new StringOut();
    const code = await runReplayCli(
      [fixturePath('basic.txt'), `--to=127.0.0.1:${s.port}`, '--timeout', '5000'],
      out,
    );
    expect(code).toBe(1);
    expect(out.text).toBe(
      'reply #3 to RCPT TO:<bob@example.test>:\n' +
        '  expected 250 2.1.5\n' +
        '  actual   550 5.1.1\n' +
        'replay: 7 replies compared, 1 difference\n',
    );
  });

  it('passes --auth and --compare through and lists skipped exchanges', async () => {
    const s = await server();
    const out = new StringOut();
    const file = fixturePath('auth-login-cram.txt');
    expect(await runReplayCli([file, '--to', `127.0.0.1:${s.port}`, '--auth', 'alice:s3cret'], out)).toBe(0);
    expect(out.text).toBe('replay: 11 replies compared, 0 differences (ok)\n');

    const out2 = new StringOut();
    expect(await runReplayCli([file, '--to', `127.0.0.1:${s.port}`, '--compare', 'codes'], out2)).toBe(0);
    expect(out2.text).toContain('reply #2 to AUTH LOGIN: skipped: ');
    expect(out2.text).toContain(
      'replay: 4 replies compared, 0 differences, 3 AUTH exchange(s) skipped (ok)\n',
    );
  });

  it.each([
    [[]],
    [['basic.txt']],
    [['basic.txt', '--to', 'nohostport']],
    [['basic.txt', '--to', '127.0.0.1:99999']],
    [['basic.txt', '--to', '127.0.0.1:25', '--compare', 'bytes']],
    [['basic.txt', '--to', '127.0.0.1:25', '--timeout', 'soon']],
    [['basic.txt', '--to', '127.0.0.1:25', '--auth', 'nocolon']],
    [['basic.txt', '--to', '127.0.0.1:25', '--frobnicate']],
    [['a.txt', 'b.txt', '--to', '127.0.0.1:25']],
    [['basic.txt', '--to']],
  ])('returns 2 on usage error %j', async (argv) => {
    const out = new StringOut();
    expect(await runReplayCli(argv, out)).toBe(2);
    expect(out.text).toMatch(/usage: smtp-session-stream replay FILE --to HOST:PORT/);
  });

  it('returns 2 on connection and file errors', async () => {
    const port = await closedPort();
    const out = new StringOut();
    expect(await runReplayCli([fixturePath('basic.txt'), '--to', `127.0.0.1:${port}`], out)).toBe(2);
    expect(out.text).toMatch(/cannot connect to 127\.0\.0\.1:\d+/);

    const missing = path.join(os.tmpdir(), `no-such-transcript-${process.pid}.txt`);
    const out2 = new StringOut();
    expect(await runReplayCli([missing, '--to', `127.0.0.1:${port}`], out2)).toBe(2);
    expect(out2.text).toMatch(/ENOENT/);

    const bad = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'replay-')), 'bad.txt');
    fs.writeFileSync(bad, '# smtp-session-stream transcript 1\n0 Q nope\n');
    const out3 = new StringOut();
    expect(await runReplayCli([bad, '--to', `127.0.0.1:${port}`], out3)).toBe(2);
    expect(out3.text).toMatch(/transcript line 2: unknown direction/);
    fs.rmSync(path.dirname(bad), { recursive: true, force: true });
  });
});
