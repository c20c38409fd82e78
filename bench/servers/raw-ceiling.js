'use strict';
// The ceiling: the least work a Node SMTP responder can do on raw `net`
// sockets. It greets, answers every command line with a fixed reply (all the
// replies produced by one chunk of pipelined commands go out in one write),
// finds the end of DATA by scanning Buffers for "\r\n.\r\n" with indexOf
// (also when the terminator is split across chunks) and discards the body.
// No parsing, no validation, no limits beyond a line length cap.
//
//   node bench/servers/raw-ceiling.js --host 127.0.0.1 --port 2525

const net = require('node:net');
const { parseArgs, intArg } = require('../lib/util');

const args = parseArgs(process.argv.slice(2));
const host = typeof args.host === 'string' ? args.host : '127.0.0.1';
const port = intArg(args.port, 2525);

const TERM = Buffer.from('\r\n.\r\n');
const CRLF = Buffer.from('\r\n');
const MAX_LINE = 4096;

const GREETING = Buffer.from('220 bench ESMTP raw-ceiling\r\n');
const EHLO = '250-bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 26214400\r\n';
const REPLIES = {
  HELO: '250 bench\r\n',
  EHLO,
  MAIL: '250 2.1.0 Ok\r\n',
  RCPT: '250 2.1.5 Ok\r\n',
  RSET: '250 2.0.0 Ok\r\n',
  NOOP: '250 2.0.0 Ok\r\n',
  DATA: '354 End data with <CR><LF>.<CR><LF>\r\n',
  QUIT: '221 2.0.0 Bye\r\n',
};
const DEFAULT_REPLY = '250 2.0.0 Ok\r\n';
const QUEUED = '250 2.0.0 Ok: queued\r\n';

let messages = 0;

function handle(socket) {
  socket.setNoDelay(true);
  let inData = false;
  let tail = CRLF; // last bytes seen in DATA mode; DATA's own CRLF counts
  let line = null; // partial command line (Buffer) carried between chunks
  let closing = false;

  socket.on('data', (chunk) => {
    let out = '';
    let pos = 0;
    while (pos < chunk.length && !closing) {
      if (inData) {
        let end = -1;
        // Terminator split across the previous chunk(s) and this one? Only
        // possible when the previous bytes end in CR, LF or a dot.
        const last = tail[tail.length - 1];
        const j =
          last === 13 || last === 10 || last === 46
            ? Buffer.concat([tail, chunk.subarray(pos, pos + 4)]).indexOf(TERM)
            : -1;
        if (j >= 0) {
          end = pos + j + TERM.length - tail.length;
        } else {
          const k = chunk.indexOf(TERM, pos);
          if (k >= 0) end = k + TERM.length;
        }
        if (end < 0) {
          const rest = chunk.subarray(pos);
          tail =
            rest.length >= 4
              ? Buffer.from(rest.subarray(rest.length - 4))
              : Buffer.concat([tail, rest]).subarray(-4);
          pos = chunk.length;
        } else {
          inData = false;
          messages++;
          out += QUEUED;
          pos = end;
        }
        continue;
      }
      const nl = chunk.indexOf(10, pos);
      if (nl < 0) {
        const piece = chunk.subarray(pos);
        line = line ? Buffer.concat([line, piece]) : Buffer.from(piece);
        if (line.length > MAX_LINE) {
          out += '500 5.5.6 Line too long\r\n';
          line = null;
        }
        break;
      }
      let cmd = chunk.subarray(pos, nl + 1);
      if (line) {
        cmd = Buffer.concat([line, cmd]);
        line = null;
      }
      pos = nl + 1;
      const verb = cmd.toString('latin1', 0, Math.min(4, cmd.length)).toUpperCase();
      out += REPLIES[verb] || DEFAULT_REPLY;
      if (verb === 'DATA') {
        inData = true;
        tail = CRLF;
      } else if (verb === 'QUIT') {
        closing = true;
      }
    }
    if (closing) {
      socket.end(out);
    } else if (out) {
      socket.write(out);
    }
  });
  socket.on('error', () => {});
  socket.write(GREETING);
}

const server = net.createServer(handle);
server.on('error', (err) => {
  console.error(`raw-ceiling: ${err.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  const addr = server.address();
  console.log(`listening on smtp://${host}:${addr.port}`);
});

function shutdown() {
  console.log(`raw-ceiling: ${messages} messages`);
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
