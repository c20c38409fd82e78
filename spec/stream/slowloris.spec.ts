import * as net from 'node:net';
import { SmtpServer } from '../../lib/server/server';

/** A client that trickles a command a byte at a time must not hold its slot past the idle timeout. */
describe('slow command lines (slowloris)', () => {
  let server: SmtpServer;
  let port: number;
  beforeAll(async () => {
    server = new SmtpServer({ hostname: 'mx.test', idleTimeout: 400 });
    ({ port } = await server.start(0));
  });
  afterAll(() => server.close());

  it('answers 421 4.4.2 when one command takes longer than the idle timeout, even if bytes keep coming', async () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setEncoding('latin1');
    let received = '';
    socket.on('data', (text: string) => (received += text));
    await new Promise((resolve) => socket.once('connect', resolve));
    const line = 'EHLO slow.example.with.a.long.name\r\n';
    let i = 0;
    // One byte every 50 ms: each byte arrives well inside the timeout, the line takes ~1.8 s.
    const timer = setInterval(() => {
      if (i < line.length && !socket.destroyed) socket.write(line[i++]);
    }, 50);
    const started = Date.now();
    await new Promise((resolve) => socket.once('close', resolve));
    clearInterval(timer);
    expect(received).toMatch(/^220 [^\r]*\r\n421 4\.4\.2 mx\.test Error: timeout exceeded\r\n$/);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(i).toBeLessThan(line.length);
  });

  it('keeps an active client whose commands each complete in time', async () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setEncoding('latin1');
    let received = '';
    socket.on('data', (text: string) => (received += text));
    await new Promise((resolve) => socket.once('connect', resolve));
    for (let n = 0; n < 6; n++) {
      socket.write('NO');
      await new Promise((r) => setTimeout(r, 100));
      socket.write('OP\r\n');
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(received.match(/^250 2\.0\.0 Ok\r\n/gm)).toHaveLength(6);
    expect(received).not.toContain('421');
    socket.end('QUIT\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
  });
});
