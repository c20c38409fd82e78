/**
 * Sessions of a real SmtpServer (and of the catcher) over 127.0.0.1, recorded and replayed against
 * the same server: AUTH lines with blanks where the server allows them, implicit TLS, PROXY
 * headers. What goes over the wire is real; only the clients are scripted.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import * as tls from 'node:tls';
import { startCatcher } from '../../lib/catcher/catcher';
import { parseCatcherArgs } from '../../lib/catcher/options';
import { formatProxyV1, formatProxyV2 } from '../../lib/protocol/proxy-header';
import { recordSession, recordToFile, type RecordToFileResult } from '../../lib/record/recorder';
import { replayTranscript } from '../../lib/record/replay';
import { parseTranscript, type Transcript } from '../../lib/record/transcript';
import { SmtpServer, type SmtpServerOptions } from '../../lib/server/server';
import {
  HOST,
  Peer,
  cleanup,
  connect,
  sha256,
  sleep,
  startTlsClient,
  tlsOptions,
  track,
  within,
} from '../stream/helpers';

afterEach(cleanup);

const USER = { username: 'alice', password: 's3cret' };
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const PLAIN_IR = b64('\0alice\0s3cret');

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'record-server-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A real SmtpServer that accepts every message and alice/s3cret; closed by `cleanup()`. */
async function startServer(
  options: SmtpServerOptions,
  onSession: (session: Parameters<ConstructorParameters<typeof SmtpServer>[1] & object>[0]) => void,
): Promise<number> {
  const server = new SmtpServer(
    {
      hostname: HOST,
      lookupPassword: (user) => (user === USER.username ? USER.password : undefined),
      ...options,
    },
    (session) => {
      onSession(session);
      session.on('message', async (message) => {
        await message.buffer();
        message.accept();
      });
    },
  );
  const { port } = await server.start(0, '127.0.0.1');
  track(() => server.close());
  return port;
}

/** A server whose sessions are recorded with recordSession; each transcript resolves at close. */
async function recordingServer(options: SmtpServerOptions = {}) {
  const transcripts: Array<Promise<Transcript>> = [];
  const port = await startServer(options, (session) => {
    const lines: string[] = [];
    recordSession(session, (line) => lines.push(line));
    transcripts.push(
      new Promise((resolve) =>
        session.once('close', () => setImmediate(() => resolve(parseTranscript(lines.join('\n') + '\n')))),
      ),
    );
  });
  return { port, transcripts };
}

/** Writes each step, waits for what it must bring; then waits for the server to hang up. */
async function talk(peer: Peer, steps: Array<[string | Buffer, string]>): Promise<string> {
  for (const [send, until] of steps) {
    if (send.length > 0) peer.write(send);
    await peer.waitFor(until);
  }
  await peer.waitForEnd();
  return peer.text;
}

function secretsIn(transcript: Transcript): boolean {
  const text = transcript.records.map((r) => r.data.toString('latin1')).join('');
  return [PLAIN_IR, b64('alice'), b64('s3cret'), 's3cret'].some((secret) => text.includes(secret));
}

describe('AUTH lines with blanks the server accepts', () => {
  it.each([
    [`  AUTH PLAIN ${PLAIN_IR}\r\n`, '! AUTH PLAIN <redacted>\r\n'],
    [`\tauth\tplain ${PLAIN_IR}\r\n`, '! auth plain <redacted>\r\n'],
    [`Auth Plain  ${PLAIN_IR}  \r\n`, '! Auth Plain <redacted>\r\n'],
  ])('%j: the server says 235, the transcript has no secret and replays', async (line, redacted) => {
    const { port, transcripts } = await recordingServer();
    const peer = await connect(port);
    await peer.waitFor('220 ');
    peer.write('EHLO c\r\n');
    await peer.waitFor('250 ');
    // One byte per write: the line arrives in many chunks.
    for (const byte of Buffer.from(line, 'latin1')) {
      peer.write(Buffer.from([byte]));
      await sleep(1);
    }
    await talk(peer, [
      ['', '235 2.7.0'],
      ['QUIT\r\n', '221 '],
    ]);
    const transcript = await within(transcripts[0], 2000, 'transcript');
    expect(secretsIn(transcript)).toBe(false);
    const shown = transcript.records.map((r) => `${r.dir} ${r.data.toString('latin1')}`);
    expect(shown).toContain(redacted);
    const report = await replayTranscript(transcript, {
      host: '127.0.0.1',
      port,
      credentials: USER,
      timeoutMs: 3000,
    });
    expect(report).toEqual({ differences: [], repliesCompared: 4, ok: true, skipped: [] });
  });

  it('redacts the responses after an AUTH with leading blanks and no initial response', async () => {
    const { port, transcripts } = await recordingServer();
    const peer = await connect(port);
    // The response pipelined right behind the AUTH, before its 334.
    await talk(peer, [
      ['', '220 '],
      ['EHLO c\r\n', '250 '],
      [` AUTH LOGIN\r\n${b64('alice')}\r\n`, '334 UGFzc3dvcmQ6'],
      [`${b64('s3cret')}\r\n`, '235 2.7.0'],
      ['QUIT\r\n', '221 '],
    ]);
    const transcript = await within(transcripts[0], 2000, 'transcript');
    expect(secretsIn(transcript)).toBe(false);
    expect(transcript.records.filter((r) => r.dir === '!')).toHaveLength(2);
    const report = await replayTranscript(transcript, {
      host: '127.0.0.1',
      port,
      credentials: USER,
      timeoutMs: 3000,
    });
    expect(report).toEqual({ differences: [], repliesCompared: 6, ok: true, skipped: [] });
  });
});

describe('implicit TLS', () => {
  // Whether the session learns it is secure at attach time or from a 'secure' event after its own
  // handshake, the T record comes before anything else.
  it('records a T record first, and the transcript replays over TLS against the same server', async () => {
    const { port, transcripts } = await recordingServer({ secure: true, tls: tlsOptions() });
    const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    track(() => void socket.destroy());
    const peer = new Peer(socket);
    await talk(peer, [
      ['', '220 '],
      ['EHLO c\r\n', '250 '],
      ['MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n', '354 '],
      ['Subject: t\r\n\r\nhello\r\n.\r\n', '250 2.0.0'],
      ['QUIT\r\n', '221 '],
    ]);
    const transcript = await within(transcripts[0], 2000, 'transcript');
    expect(transcript.records[0].dir).toBe('T');
    expect(transcript.records[0].data.toString()).toMatch(/^TLSv1\.[23] \S+$/);
    expect(transcript.records[1].data.toString()).toMatch(/^220 /);

    const report = await replayTranscript(transcript, { host: '127.0.0.1', port, timeoutMs: 3000 });
    expect(report).toEqual({ differences: [], repliesCompared: 7, ok: true, skipped: [] });
  });
});

describe('PROXY protocol', () => {
  const V1 = formatProxyV1({
    family: 'TCP4',
    sourceAddress: '198.51.100.7',
    destinationAddress: '192.0.2.25',
    sourcePort: 40000,
    destinationPort: 25,
  });
  const V2 = formatProxyV2({
    family: 'TCP6',
    sourceAddress: '2001:db8::7',
    destinationAddress: '2001:db8::25',
    sourcePort: 40001,
    destinationPort: 25,
  });
  const SESSION: Array<[string, string]> = [
    ['EHLO c\r\n', '250 '],
    ['MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n', '354 '],
    ['Subject: t\r\n\r\nhello\r\n.\r\n', '250 2.0.0'],
    ['QUIT\r\n', '221 '],
  ];

  async function proxiedServer() {
    const results: RecordToFileResult[] = [];
    const port = await startServer({ proxy: { timeout: 300 } }, (session) => {
      results.push(recordToFile(session, tmp));
    });
    return { port, results };
  }

  it('names the client (file, remote, local), keeps the header, and replays with proxy: true', async () => {
    const { port, results } = await proxiedServer();
    for (const header of [V1, V2]) {
      const peer = await connect(port);
      peer.write(header);
      await talk(peer, [['', '220 '], ...SESSION]);
    }
    // And one that never sends its header: the server hangs up after 300 ms.
    const silent = await connect(port);
    await silent.waitForEnd(2000);
    await within(
      (async () => {
        while (results.length < 3) await sleep(10);
        await Promise.all(results.map((r) => r.done));
      })(),
      3000,
      'recordings closed',
    );

    expect(results.map((r) => path.basename(r.path))).toEqual([
      expect.stringMatching(/-198\.51\.100\.7-[0-9a-f]{8}\.txt$/),
      expect.stringMatching(/-2001_db8__7-[0-9a-f]{8}\.txt$/),
      expect.stringMatching(/-127\.0\.0\.1-[0-9a-f]{8}\.txt$/),
    ]);
    // The session without a header left no file; the others are the only ones there.
    expect(fs.readdirSync(tmp).sort()).toEqual(
      results
        .slice(0, 2)
        .map((r) => path.basename(r.path))
        .sort(),
    );
    const [first, second] = results.slice(0, 2).map((r) => parseTranscript(fs.readFileSync(r.path, 'utf8')));
    expect(first.metadata).toMatchObject({
      remote: '198.51.100.7:40000',
      local: '192.0.2.25:25',
      proxy: 'PROXY TCP4 198.51.100.7 192.0.2.25 40000 25',
    });
    expect(second.metadata).toMatchObject({
      remote: '[2001:db8::7]:40001',
      local: '[2001:db8::25]:25',
      proxy: 'PROXY TCP6 2001:db8::7 2001:db8::25 40001 25',
    });
    expect(first.records[0].data.toString()).toMatch(/^220 /);

    for (const transcript of [first, second]) {
      const report = await replayTranscript(transcript, {
        host: '127.0.0.1',
        port,
        proxy: true,
        timeoutMs: 3000,
      });
      expect(report).toEqual({ differences: [], repliesCompared: 7, ok: true, skipped: [] });
    }
    // Without the header this server never greets; the report says what to do.
    const without = await replayTranscript(first, { host: '127.0.0.1', port, timeoutMs: 2000 });
    expect(without.differences).toEqual([
      { index: 0, command: '(greeting)', expected: '220', actual: expect.stringMatching(/closed/) },
    ]);
    expect(without.aborted).toMatch(/recorded behind a PROXY header.*--proxy/);
  });

  it('rejects a "# proxy:" that is no PROXY v1 line before connecting', async () => {
    const transcript = parseTranscript(
      '# smtp-session-stream transcript 1\n# proxy: PROXY TCP4 1.2.3\n0 E\n',
    );
    await expect(replayTranscript(transcript, { host: '127.0.0.1', port: 1, proxy: true })).rejects.toThrow(
      /# proxy:.*not a PROXY v1 header line/,
    );
  });

  it('the catcher with --proxy --record: transcripts name the client and replay against it', async () => {
    const records = path.join(tmp, 'records');
    const catcher = await startCatcher(
      parseCatcherArgs([
        '--port',
        '0',
        '--proxy',
        '--record',
        records,
        '--maildir',
        path.join(tmp, 'mail'),
        '--hostname',
        HOST,
        '--quiet',
      ]),
    );
    track(() => catcher.close());
    const port = Number(new URL(catcher.url).port);
    const peer = await connect(port);
    peer.write(V1);
    await talk(peer, [['', '220 '], ...SESSION]);
    const file = await within(
      (async () => {
        for (;;) {
          const [name] = fs.readdirSync(records).filter((n) => n.includes('-198.51.100.7-'));
          const text = name ? fs.readFileSync(path.join(records, name), 'utf8') : '';
          if (/\n\d+ E\n$/.test(text)) return path.join(records, name);
          await sleep(10);
        }
      })(),
      3000,
      'the transcript',
    );
    const transcript = parseTranscript(fs.readFileSync(file, 'utf8'));
    expect(transcript.metadata.remote).toBe('198.51.100.7:40000');
    const report = await replayTranscript(transcript, {
      host: '127.0.0.1',
      port,
      proxy: true,
      timeoutMs: 3000,
    });
    expect(report).toEqual({ differences: [], repliesCompared: 7, ok: true, skipped: [] });
  });
});

describe('a transcript sink slower than the client', () => {
  /**
   * A stream sink slower than the client: it writes 4 KB per millisecond (4 MB/s), taking all that
   * queued meanwhile at each write. `maxQueued` is the most it ever held: sampled before each
   * completion, when what it holds is at its peak.
   */
  class SlowSink extends Writable {
    maxQueued = 0;
    readonly parts: Buffer[] = [];
    constructor() {
      super({ highWaterMark: 16 * 1024 });
    }
    override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
      let bytes = 0;
      for (const { chunk } of chunks) {
        this.parts.push(chunk);
        bytes += chunk.length;
      }
      setTimeout(
        () => {
          this.maxQueued = Math.max(this.maxQueued, this.writableLength);
          callback();
        },
        Math.ceil(bytes / 4096),
      );
    }
  }

  const BODY_SIZE = 4 * 1024 * 1024;
  const BODY = Buffer.from(`${'x'.repeat(76)}\r\n`.repeat(BODY_SIZE / 78), 'latin1');
  /** Much less than the message: what the sink may hold is its high-water mark and about one chunk. */
  const QUEUE_BOUND = 512 * 1024;

  /** A server whose sessions are recorded into SlowSinks; `hashes` of the messages it accepted. */
  async function slowRecordingServer(options: SmtpServerOptions) {
    const sinks: SlowSink[] = [];
    const hashes: string[] = [];
    const server = new SmtpServer({ hostname: HOST, maxMessageSize: 0, ...options }, (session) => {
      const sink = new SlowSink();
      sinks.push(sink);
      track(() => void sink.destroy());
      recordSession(session, sink);
      session.on('message', async (message) => {
        const hash = createHash('sha256');
        try {
          for await (const chunk of message.body) hash.update(chunk as Buffer);
        } catch {
          return; // the session ended under it (the dead-sink test)
        }
        hashes.push(hash.digest('hex'));
        message.accept('SLOW');
      });
    });
    const { port } = await server.start(0, '127.0.0.1');
    track(() => server.close());
    return { port, sinks, hashes };
  }

  /** Sends a 4 MB message as fast as the connection takes it, then QUIT; returns the cleartext sent. */
  async function sendBigMessage(peer: Peer): Promise<string> {
    const commands = 'EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n';
    peer.write(commands);
    await peer.waitFor('354 ');
    for (let i = 0; i < BODY.length; i += 64 * 1024) {
      if (!peer.write(BODY.subarray(i, i + 64 * 1024))) {
        await new Promise((resolve) => peer.stream.once('drain', resolve));
      }
    }
    peer.write('.\r\nQUIT\r\n');
    await peer.waitFor('221 ', 20_000);
    await peer.waitForEnd();
    return commands + BODY.toString('latin1') + '.\r\nQUIT\r\n';
  }

  /** The transcript in `sink` once the recorder has ended it. */
  async function transcriptIn(sink: SlowSink): Promise<Transcript> {
    if (!sink.writableFinished)
      await within(new Promise((r) => sink.once('finish', r)), 5000, 'sink finished');
    return parseTranscript(Buffer.concat(sink.parts).toString('latin1'));
  }

  const clientBytes = (transcript: Transcript) =>
    Buffer.concat(transcript.records.filter((r) => r.dir === 'C').map((r) => r.data)).toString('latin1');

  it.each([
    ['attached to the socket (SmtpServer)', {}],
    ['piped (SmtpServer with an outputTransform)', { outputTransform: () => new PassThrough() }],
  ])(
    '%s: the client is held while the sink is full; the sink never queues the message',
    async (_, options: SmtpServerOptions) => {
      const { port, sinks, hashes } = await slowRecordingServer(options);
      const peer = await connect(port);
      await peer.waitFor('220 ');
      const sent = await sendBigMessage(peer);
      expect(hashes).toEqual([sha256(BODY)]);
      const transcript = await transcriptIn(sinks[0]);
      expect(clientBytes(transcript)).toBe(sent); // every byte recorded, in order
      expect(sinks[0].maxQueued).toBeLessThan(QUEUE_BOUND);
    },
    30_000,
  );

  it('under STARTTLS too', async () => {
    const { port, sinks, hashes } = await slowRecordingServer({ tls: tlsOptions() });
    const plain = await connect(port);
    await plain.waitFor('220 ');
    plain.write('EHLO c\r\nSTARTTLS\r\n');
    await plain.waitFor('220 2.0.0');
    plain.detach();
    const { peer } = await startTlsClient(plain.stream, HOST);
    const sent = await sendBigMessage(peer);
    expect(hashes).toEqual([sha256(BODY)]);
    const transcript = await transcriptIn(sinks[0]);
    expect(transcript.records.some((r) => r.dir === 'T')).toBe(true);
    expect(clientBytes(transcript)).toBe('EHLO c\r\nSTARTTLS\r\n' + sent);
    expect(sinks[0].maxQueued).toBeLessThan(QUEUE_BOUND);
  }, 30_000);

  it('a sink that never drains (a dead disk) does not wedge the session: 421 4.4.2 at the DATA timeout', async () => {
    const sinks: Writable[] = [];
    let closed!: () => void;
    const sessionClosed = new Promise<void>((resolve) => (closed = resolve));
    const server = new SmtpServer({ hostname: HOST, dataTimeout: 300, idleTimeout: 300 }, (session) => {
      const sink = new Writable({ highWaterMark: 16 * 1024, write: () => undefined }); // never completes
      sinks.push(sink);
      track(() => void sink.destroy());
      recordSession(session, sink);
      session.on('message', async (message) => {
        await message.buffer().catch(() => undefined);
      });
      session.once('close', closed);
    });
    const { port } = await server.start(0, '127.0.0.1');
    track(() => server.close());
    const peer = await connect(port);
    await peer.waitFor('220 ');
    peer.write('EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n');
    await peer.waitFor('354 ');
    peer.write(BODY);
    await peer.waitFor('421 4.4.2', 3000);
    await peer.waitForEnd(3000);
    await within(sessionClosed, 3000, 'session closed');
    expect(peer.text).not.toContain('250 2.0.0');
    expect(sinks[0].writableLength).toBeLessThan(QUEUE_BOUND);
  });
});
