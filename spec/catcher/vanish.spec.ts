/**
 * A client that vanishes at any byte of its session (issue: hostile input, point 4): the server
 * keeps running, leaves no session, timer or temporary file behind, and stores a message only if
 * its 250 was sent.
 */
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import { startCatcher, type Catcher } from '../../lib/catcher/catcher';
import { catcherOptions, tempDir } from './helpers';

const SESSION = Buffer.from(
  'EHLO vanish.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n' +
    'Subject: vanish\r\n\r\n..dotted\r\nbody line\r\n.\r\nQUIT\r\n',
);

/** Sends the first `cut` bytes of the session, then resets the connection; resolves with what came back. */
function sendAndVanish(port: number, cut: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => {
      received += text;
      if (
        received.startsWith('220') &&
        received.indexOf('\r\n') === received.length - 2 &&
        !socket.destroyed
      ) {
        // The whole session (with QUIT) ends normally; any shorter cut vanishes with a reset.
        if (cut >= SESSION.length) socket.write(SESSION);
        else socket.write(SESSION.subarray(0, cut), () => setTimeout(() => socket.resetAndDestroy(), 20));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(received));
  });
}

async function settle(catcher: Catcher): Promise<void> {
  for (let i = 0; i < 100 && catcher.server.sessions.size > 0; i++)
    await new Promise((r) => setTimeout(r, 10));
}

describe('a client that vanishes at any byte', () => {
  let maildir: string;
  let catcher: Catcher;

  beforeAll(async () => {
    maildir = await tempDir();
    catcher = await startCatcher(catcherOptions(maildir, '--quiet'));
  });
  afterAll(async () => {
    await catcher.close();
    await fs.rm(maildir, { recursive: true, force: true });
  });

  it('leaves no session and no temporary file, and stores only what got its 250', async () => {
    const port = catcher.server.address().port;
    const handlesBefore = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles()
      .length;
    let acknowledged = 0;
    for (const cut of [
      ...Array.from({ length: Math.ceil(SESSION.length / 3) }, (_, i) => i * 3),
      SESSION.length,
    ]) {
      const replies = await sendAndVanish(port, cut);
      if (/\r\n250 2\.0\.0 Ok: queued as /.test(replies)) acknowledged++;
      await settle(catcher);
      expect(catcher.server.sessions.size).toBe(0);
      const files = await fs.readdir(maildir);
      expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    }
    const files = await fs.readdir(maildir);
    const stored = files.filter((f) => f.endsWith('.eml'));
    // Every message acknowledged with 250 is stored; nothing cut short is (only whole messages,
    // each with its envelope). A client that left after its final dot may or may not be stored.
    expect(stored.length).toBeGreaterThanOrEqual(acknowledged);
    expect(files.filter((f) => f.endsWith('.json'))).toHaveLength(stored.length);
    for (const name of stored) {
      expect(await fs.readFile(`${maildir}/${name}`, 'latin1')).toBe(
        'Subject: vanish\r\n\r\n.dotted\r\nbody line\r\n',
      );
    }
    expect(acknowledged).toBeGreaterThan(0);
    // No timer, socket or other handle left behind by the sessions (give sockets a moment to close).
    await new Promise((r) => setTimeout(r, 50));
    const handlesAfter = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles()
      .length;
    expect(handlesAfter).toBeLessThanOrEqual(handlesBefore);
  });
});
