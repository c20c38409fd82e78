/**
 * An SMTP session is just a Duplex, so it composes with any other Node stream. Here the server is
 * wired by hand, without SmtpServer:
 *
 *   socket → tap (counts client bytes) → session → throttle (bytes/s) → socket
 *
 * and each message body goes through a line counter and gzip into a file in the temp directory.
 *
 *   npm run build && node dist/examples/compose-streams.js [--port 2528] [--host 127.0.0.1]
 *                                                         [--rate 2048] [--out /tmp]
 */
import { createWriteStream, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough, Transform, pipeline, type TransformCallback } from 'node:stream';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { SmtpSessionStream, type SmtpMessage } from '../lib';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '2528' },
    host: { type: 'string', default: '127.0.0.1' },
    rate: { type: 'string', default: '2048' },
    out: { type: 'string', default: tmpdir() },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new Error(`--port: not a port: ${values.port}`);
}
const rate = Number(values.rate);
if (!(rate > 0)) throw new Error(`--rate: bytes per second > 0, not ${values.rate}`);
const outDir = resolve(values.out);

/** Counts what flows through and changes nothing: the place to hang metrics or a wire log. */
class ByteCounter extends PassThrough {
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/**
 * Lets at most `bytesPerSecond` through, in slices of 1/20 s. The next chunk is not taken before
 * the current one is out, so a slow link pushes back on the session, which stops reading commands
 * until its replies have gone: pipelining clients cannot make it queue replies without bound.
 */
class Throttle extends Transform {
  bytes = 0;
  private readonly sliceBytes: number;
  private nextSendAt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly bytesPerSecond: number) {
    super();
    this.sliceBytes = Math.max(1, Math.ceil(bytesPerSecond / 20));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let offset = 0;
    const sendSome = (): void => {
      this.timer = undefined;
      if (offset >= chunk.length) return callback();
      // The budget is shared across chunks, so many small replies are slowed down like one big one.
      const wait = this.nextSendAt - performance.now();
      if (wait > 0) {
        this.timer = setTimeout(sendSome, wait);
        return;
      }
      const slice = chunk.subarray(offset, offset + this.sliceBytes);
      offset += slice.length;
      this.bytes += slice.length;
      this.nextSendAt =
        Math.max(performance.now(), this.nextSendAt) + (slice.length * 1000) / this.bytesPerSecond;
      this.push(slice);
      sendSome();
    };
    sendSome();
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    clearTimeout(this.timer);
    callback(error);
  }
}

/** Counts LF-terminated lines of the message text on its way through. */
class LineCounter extends Transform {
  lines = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (let at = chunk.indexOf(0x0a); at !== -1; at = chunk.indexOf(0x0a, at + 1)) this.lines++;
    callback(null, chunk);
  }
}

let nextMessage = 1;
async function storeCompressed(message: SmtpMessage): Promise<void> {
  const file = join(outDir, `compose-streams-${process.pid}-${nextMessage++}.eml.gz`);
  const lines = new LineCounter();
  try {
    // pipeline() moves data only as fast as the file takes it; the session in turn stops reading
    // the client's DATA while the body is not consumed. Nothing is held in memory whole.
    await pipelineAsync(message.body, lines, createGzip(), createWriteStream(file));
  } catch (error) {
    rmSync(file, { force: true }); // a partial file is not a message; the client gets a 451
    throw error;
  }
  console.log(`message size=${message.size} lines=${lines.lines} gzip=${file}`);
}

const sessions = new Set<SmtpSessionStream>();
let nextSession = 1;

// allowHalfOpen: a client may send its last pipelined commands and close its side at once; our
// side must stay writable until the session has answered them.
const server = net.createServer({ allowHalfOpen: true }, (socket) => {
  const tag = `[${nextSession++} ${socket.remoteAddress}:${socket.remotePort}]`;
  // Without SmtpServer, the session only knows the addresses it is given.
  const session = new SmtpSessionStream({
    hostname: 'localhost',
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    localAddress: socket.localAddress,
    localPort: socket.localPort,
  });
  session.on('message', (message: SmtpMessage) => storeCompressed(message));
  sessions.add(session);

  const tap = new ByteCounter();
  const throttle = new Throttle(rate);
  // pipeline, not pipe: an error or close anywhere tears all of them down and is reported once.
  pipeline(socket, tap, session, throttle, socket, (error) => {
    sessions.delete(session);
    const why = error && error.code !== 'ERR_STREAM_PREMATURE_CLOSE' ? ` (${error.message})` : '';
    console.log(`${tag} closed: ${tap.bytes} bytes in, ${throttle.bytes} bytes out${why}`);
  });
});
server.on('error', (error) => {
  console.error(`cannot listen: ${error.message}`);
  process.exitCode = 1;
});
server.listen(port, values.host, () => {
  const address = server.address() as net.AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  console.log(`replies throttled to ${rate} bytes/s, bodies gzipped into ${outDir}`);
  console.log(`listening on smtp://${host}:${address.port}`);
});

// SmtpServer.close() does this for us; by hand: stop accepting, ask each session to finish (421
// when idle, after the current message otherwise), and cut whatever is left after a while.
const stop = (): void => {
  console.log('stopping');
  server.close(() => console.log('stopped'));
  for (const session of sessions) session.shutdown();
  setTimeout(() => sessions.forEach((session) => session.destroy()), 5000).unref();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
