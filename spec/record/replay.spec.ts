import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { parseTranscript, type Transcript } from '../../lib/record/transcript';
import { recordSession } from '../../lib/record/recorder';
import { replayTranscript } from '../../lib/record/replay';
import { REPLAY_USAGE, runReplayCli } from '../../lib/record/replay-cli';
import { SmtpServer, type SmtpServerOptions } from '../../lib/server/server';
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
    ]);
    // The server then waits for the XOAUTH2 client's answer to its error challenge, which the
    // recording does not have: the exchange is cancelled, and QUIT gets its own reply.
    expect(wrong.differences[2].resync).toBe('sent * to cancel the SASL exchange: 501 5.0.0');
    expect(wrong.repliesCompared).toBe(11);
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
    const credentials = { cause: 'credentials', reason: expect.stringMatching(/credentials/) };
    expect(report.skipped).toEqual([
      { index: 2, command: 'AUTH LOGIN', replies: 3, ...credentials },
      { index: 6, command: 'AUTH CRAM-MD5', replies: 2, ...credentials },
      { index: 8, command: 'AUTH XOAUTH2', replies: 2, ...credentials },
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

// ------------------------------------------------------------------ a live server that answers differently

const liveServers: SmtpServer[] = [];
afterEach(async () => {
  await Promise.all(liveServers.splice(0).map((s) => s.close()));
});

/** A real SmtpServer on 127.0.0.1 that keeps what each session received and the messages it took. */
async function liveServer(options: SmtpServerOptions = {}) {
  const received: string[] = [];
  const commands: string[][] = [];
  const messages: string[] = [];
  const server = new SmtpServer(
    {
      hostname: 'mx.test',
      lookupPassword: (user) => (user === CREDENTIALS.username ? CREDENTIALS.password : undefined),
      ...options,
    },
    (session) => {
      const index = received.push('') - 1;
      commands.push([]);
      session.on('input', (chunk) => (received[index] += chunk.toString('latin1')));
      session.on('command', (command) => commands[index].push(command.orig));
      session.on('message', async (message) => {
        messages.push((await message.buffer()).toString('latin1'));
        message.accept();
      });
    },
  );
  liveServers.push(server);
  const { port } = await server.start(0, '127.0.0.1');
  return { port, received, commands, messages };
}

/** A transcript from its record lines (the header is added). */
function transcriptOf(...records: string[]): Transcript {
  return parseTranscript(['# smtp-session-stream transcript 1', ...records, ''].join('\n'));
}

const refuseXyz = { validateRecipientHandler: (to: { address: string }) => to.address !== 'x@y.z' };

/** A session whose message text holds lines that would be commands (the reviewer's case). */
const REFUSED_DATA = [
  '0 S 220 mx.test ESMTP\\r\\n',
  '1 C EHLO c\\r\\n',
  '1 S 250 mx.test\\r\\n',
  '2 C MAIL FROM:<a@b.c>\\r\\n',
  '2 S 250 2.1.0 Ok\\r\\n',
  '3 C RCPT TO:<x@y.z>\\r\\n',
  '3 S 250 2.1.5 Ok\\r\\n',
  '4 C DATA\\r\\n',
  '4 S 354 go\\r\\n',
  '5 C Subject: hi\\r\\n',
  '5 C \\r\\n',
  '5 C RSET\\r\\n',
  '5 C MAIL FROM:<evil@b.c>\\r\\n',
  '5 C RCPT TO:<victim@y.z>\\r\\n',
  '5 C .\\r\\n',
  '6 S 250 2.0.0 Ok: queued as X\\r\\n',
  '7 C QUIT\\r\\n',
  '7 S 221 2.0.0 Bye\\r\\n',
  '8 E',
];

describe('replayTranscript when the live server answers differently', () => {
  it('does not send message text after a refused DATA, sends RSET in its place and stays aligned', async () => {
    const transcript = transcriptOf(...REFUSED_DATA);
    const live = await liveServer(refuseXyz);
    const report = await replayTranscript(transcript, {
      host: '127.0.0.1',
      port: live.port,
      timeoutMs: 3000,
    });
    expect(report.differences).toEqual([
      { index: 3, command: 'RCPT TO:<x@y.z>', expected: '250 2.1.5', actual: '550 5.1.1' },
      { index: 4, command: 'DATA', expected: '354', actual: '554 5.5.1' },
    ]);
    expect(report.skipped).toEqual([
      {
        index: 5,
        command: 'DATA (end of message)',
        cause: 'reply',
        reason: 'not sent: the live server answered DATA with 554 5.5.1, the recording has 354',
        replies: 1,
        resync: 'sent RSET in its place: 250 2.0.0',
      },
    ]);
    expect(report.repliesCompared).toBe(6); // the QUIT reply is compared with QUIT
    expect(report.aborted).toBeUndefined();
    // The body lines never reached the server as commands.
    expect(live.received.join('')).toBe(
      'EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\nRSET\r\nQUIT\r\n',
    );
  });

  it('ends the refused transaction, so a pipelined next one is compared as recorded', async () => {
    const transcript = transcriptOf(
      '0 S 220 mx.test ESMTP\\r\\n',
      '1 C EHLO c\\r\\n',
      '1 S 250 mx.test\\r\\n',
      '2 C MAIL FROM:<a@b.c>\\r\\n',
      '2 C RCPT TO:<x@y.z>\\r\\n',
      '2 C DATA\\r\\n',
      '3 S 250 2.1.0 Ok\\r\\n',
      '3 S 250 2.1.5 Ok\\r\\n',
      '3 S 354 go\\r\\n',
      '4 C first\\r\\n',
      '4 C .\\r\\n',
      '4 C MAIL FROM:<a@b.c>\\r\\n',
      '4 C RCPT TO:<ok@y.z>\\r\\n',
      '4 C DATA\\r\\n',
      '5 S 250 2.0.0 Ok: queued as A\\r\\n',
      '5 S 250 2.1.0 Ok\\r\\n',
      '5 S 250 2.1.5 Ok\\r\\n',
      '5 S 354 go\\r\\n',
      '6 C second\\r\\n',
      '6 C .\\r\\n',
      '6 C QUIT\\r\\n',
      '7 S 250 2.0.0 Ok: queued as B\\r\\n',
      '7 S 221 2.0.0 Bye\\r\\n',
      '8 E',
    );
    const live = await liveServer(refuseXyz);
    const report = await replayTranscript(transcript, {
      host: '127.0.0.1',
      port: live.port,
      timeoutMs: 3000,
    });
    expect(report.differences.map((d) => [d.index, d.command, d.actual])).toEqual([
      [3, 'RCPT TO:<x@y.z>', '550 5.1.1'],
      [4, 'DATA', '554 5.5.1'],
    ]);
    expect(report.skipped.map((s) => [s.index, s.replies, s.resync])).toEqual([
      [5, 1, 'sent RSET in its place: 250 2.0.0'],
    ]);
    expect(report.repliesCompared).toBe(10); // 11 recorded, the end of the refused text skipped
    expect(live.messages).toEqual(['second\r\n']);
  });

  it.each([
    ['redacted', '! <redacted>'],
    ['recorded in clear', `C ${Buffer.from('alice').toString('base64')}`],
  ])(
    'does not send SASL responses (%s) after a refused AUTH, even one pipelined behind it',
    async (_, response) => {
      const transcript = transcriptOf(
        '0 S 220 mx.test ESMTP\\r\\n',
        '1 C EHLO c\\r\\n',
        '1 S 250-mx.test\\r\\n',
        '1 S 250 AUTH PLAIN LOGIN\\r\\n',
        '2 C AUTH LOGIN\\r\\n',
        `2 ${response}\\r\\n`, // pipelined: before the 334 it answers
        '3 S 334 VXNlcm5hbWU6\\r\\n',
        '3 S 334 UGFzc3dvcmQ6\\r\\n',
        `4 ${response.startsWith('!') ? response : `C ${Buffer.from('s3cret').toString('base64')}`}\\r\\n`,
        '5 S 235 2.7.0 Authentication successful\\r\\n',
        '6 C QUIT\\r\\n',
        '6 S 221 2.0.0 Bye\\r\\n',
        '7 E',
      );
      // This server offers PLAIN only: AUTH LOGIN gets 504 where the recording has 334.
      const live = await liveServer({ getAuthenticationMechanismsHandler: () => ['PLAIN'] });
      const options = { host: '127.0.0.1', port: live.port, timeoutMs: 3000, credentials: CREDENTIALS };
      const report = await replayTranscript(transcript, options);
      expect(report.differences).toEqual([
        { index: 2, command: 'AUTH LOGIN', expected: '334', actual: '504 5.5.4' },
      ]);
      expect(report.skipped).toEqual([
        {
          index: 3,
          command: 'AUTH LOGIN (response 1)',
          cause: 'reply',
          reason: 'not sent: the live server answered AUTH LOGIN with 504 5.5.4, the recording has 334',
          replies: 2,
        },
      ]);
      expect(report.repliesCompared).toBe(4); // greeting, EHLO, AUTH LOGIN, QUIT
      expect(live.received[0]).toBe('EHLO c\r\nAUTH LOGIN\r\nQUIT\r\n');

      // Against a server that offers LOGIN the same transcript replays whole: the pipelined
      // response goes out once the 334 it answers has come.
      const login = await liveServer();
      const again = await replayTranscript(transcript, { ...options, port: login.port });
      expect(again).toEqual({ differences: [], repliesCompared: 6, ok: true, skipped: [] });
    },
  );

  it('cancels a SASL exchange the live server opens where the recording has a final reply', async () => {
    const transcript = transcriptOf(
      '0 S 220 mx.test ESMTP\\r\\n',
      '1 C EHLO c\\r\\n',
      '1 S 250 mx.test\\r\\n',
      '2 C AUTH LOGIN\\r\\n',
      '2 S 504 5.5.4 Unrecognized authentication type\\r\\n',
      '3 C NOOP\\r\\n',
      '3 S 250 2.0.0 Ok\\r\\n',
      '4 E',
    );
    const live = await liveServer(); // offers LOGIN: 334
    const report = await replayTranscript(transcript, {
      host: '127.0.0.1',
      port: live.port,
      timeoutMs: 3000,
    });
    expect(report.differences).toEqual([
      {
        index: 2,
        command: 'AUTH LOGIN',
        expected: '504 5.5.4',
        actual: '334',
        resync: 'sent * to cancel the SASL exchange: 501 5.7.0',
      },
    ]);
    expect(report.repliesCompared).toBe(4); // NOOP's reply is NOOP's, not a SASL verdict
    expect(live.received[0]).toBe('EHLO c\r\nAUTH LOGIN\r\n*\r\nNOOP\r\n');
  });

  it('stops, without ending a message, when the live server takes a DATA the recording had refused', async () => {
    const transcript = transcriptOf(
      '0 S 220 mx.test ESMTP\\r\\n',
      '1 C EHLO c\\r\\n',
      '1 S 250 mx.test\\r\\n',
      '2 C MAIL FROM:<a@b.c>\\r\\n',
      '2 S 250 2.1.0 Ok\\r\\n',
      '3 C RCPT TO:<x@y.z>\\r\\n',
      '3 S 550 5.1.1 No\\r\\n',
      '4 C DATA\\r\\n',
      '4 S 554 5.5.1 No valid recipients\\r\\n',
      '5 C QUIT\\r\\n',
      '5 S 221 2.0.0 Bye\\r\\n',
      '6 E',
    );
    const live = await liveServer(); // takes every recipient
    const report = await replayTranscript(transcript, {
      host: '127.0.0.1',
      port: live.port,
      timeoutMs: 3000,
    });
    expect(report.differences.map((d) => [d.index, d.expected, d.actual])).toEqual([
      [3, '550 5.1.1', '250 2.1.5'],
      [4, '554 5.5.1', '354'],
    ]);
    expect(report.aborted).toBe(
      'DATA: the live server answered 354 and waits for message text the recording does not have; stopped without sending any',
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(live.messages).toEqual([]);
    expect(live.received[0]).not.toContain('QUIT');
  });
});

/** A client that pipelined NOOP behind STARTTLS (which the server discards), then a transaction under TLS. */
const PIPELINED_AFTER_STARTTLS = [
  '0 S 220 mx.test ESMTP\\r\\n',
  '1 C EHLO c\\r\\n',
  '1 C STARTTLS\\r\\n',
  '1 C NOOP\\r\\n',
  '1 S 250-mx.test\\r\\n',
  '1 S 250 STARTTLS\\r\\n',
  '1 S 220 2.0.0 Ready to start TLS\\r\\n',
  '2 T TLSv1.3 TLS_AES_256_GCM_SHA384',
  '3 C EHLO c\\r\\n',
  '3 C MAIL FROM:<a@b.c>\\r\\n',
  '3 C RCPT TO:<x@y.z>\\r\\n',
  '3 C QUIT\\r\\n',
  '4 S 250 mx.test\\r\\n',
  '4 S 250 2.1.0 Ok\\r\\n',
  '4 S 250 2.1.5 Ok\\r\\n',
  '4 S 221 2.0.0 Bye\\r\\n',
  '5 E',
];

describe('replayTranscript after STARTTLS', () => {
  it('names each reply after its command when commands were pipelined behind STARTTLS', async () => {
    const { key, cert } = createSelfSignedCertificate();
    const live = await liveServer({ ...refuseXyz, tls: { key, cert } });
    const report = await replayTranscript(transcriptOf(...PIPELINED_AFTER_STARTTLS), {
      host: '127.0.0.1',
      port: live.port,
      timeoutMs: 3000,
    });
    // Not `reply #5 to MAIL FROM:<a@b.c>`: the discarded NOOP has no reply to take.
    expect(report.differences).toEqual([
      { index: 5, command: 'RCPT TO:<x@y.z>', expected: '250 2.1.5', actual: '550 5.1.1' },
    ]);
    expect(report.repliesCompared).toBe(7);
    expect(report.aborted).toBeUndefined();
    // The NOOP went out as the client sent it, in clear, with STARTTLS; the server discarded it.
    expect(live.received[0]).toBe(
      'EHLO c\r\nSTARTTLS\r\nNOOP\r\nEHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nQUIT\r\n',
    );
    expect(live.commands[0]).toEqual([
      'EHLO c',
      'STARTTLS',
      'EHLO c',
      'MAIL FROM:<a@b.c>',
      'RCPT TO:<x@y.z>',
      'QUIT',
    ]);
  });

  it('sends the pipelined commands in the same write as STARTTLS, so a server that runs them shows', async () => {
    // A server that runs what was pipelined behind STARTTLS once TLS is up (CVE-2011-0411) answers
    // the NOOP under TLS: that extra reply is the first difference.
    const s = await server({ secureContext, runPipelinedAfterStartTls: true });
    const report = await replayTranscript(transcriptOf(...PIPELINED_AFTER_STARTTLS), {
      host: '127.0.0.1',
      port: s.port,
      timeoutMs: 3000,
    });
    expect(s.chunks[0][0]).toBe('EHLO c\r\nSTARTTLS\r\nNOOP\r\n');
    expect(report.differences[0]).toEqual({
      index: 3,
      command: 'EHLO c',
      expected: '250',
      actual: '250 2.0.0',
    });

    // A server that discards them, as it must, matches the recording.
    const correct = await server({ secureContext });
    const again = await replayTranscript(transcriptOf(...PIPELINED_AFTER_STARTTLS), {
      host: '127.0.0.1',
      port: correct.port,
      timeoutMs: 3000,
    });
    expect(again).toEqual({ differences: [], repliesCompared: 7, ok: true, skipped: [] });
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

  it('prints skipped parts in reply order, with the live reply that caused them', async () => {
    const live = await liveServer(refuseXyz);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'replay-'));
    const file = path.join(dir, 'refused.txt');
    fs.writeFileSync(file, ['# smtp-session-stream transcript 1', ...REFUSED_DATA, ''].join('\n'));
    const out = new StringOut();
    try {
      expect(await runReplayCli([file, '--to', `127.0.0.1:${live.port}`], out)).toBe(1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(out.text).toBe(
      'reply #3 to RCPT TO:<x@y.z>:\n  expected 250 2.1.5\n  actual   550 5.1.1\n' +
        'reply #4 to DATA:\n  expected 354\n  actual   554 5.5.1\n' +
        'reply #5 to DATA (end of message): skipped: not sent: the live server answered DATA with ' +
        '554 5.5.1, the recording has 354 (1 reply not compared); sent RSET in its place: 250 2.0.0\n' +
        'replay: 6 replies compared, 2 differences, 1 part(s) not sent after a different reply\n',
    );
  });

  it('--help describes every option, --proxy and its default included', async () => {
    const out = new StringOut();
    expect(await runReplayCli(['replay', '--help'], out)).toBe(0);
    expect(out.text.startsWith(REPLAY_USAGE + '\n')).toBe(true);
    for (const option of ['--to', '--auth', '--compare', '--timeout', '--proxy']) {
      expect(out.text).toContain(`  ${option} `);
    }
    expect(out.text).toMatch(/--proxy[\s\S]*Off by default/);
  });

  it.each([
    [[]],
    [['basic.txt', '--to', '127.0.0.1:25', '--proxy=yes']],
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
