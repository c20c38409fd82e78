'use strict';
// Context for the discarding numbers: nodemailer's smtp-server reading each
// message body and throwing it away (same options as smtp-server-store.js).
//
//   node bench/servers/smtp-server-discard.js --host 127.0.0.1 --port 2525 [--size BYTES]

const { SMTPServer } = require('smtp-server');
const { parseArgs, intArg } = require('../lib/util');

const args = parseArgs(process.argv.slice(2));
const host = typeof args.host === 'string' ? args.host : '127.0.0.1';
const port = intArg(args.port, 2525);
const size = intArg(args.size, 25 * 1024 * 1024);

let received = 0;

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS', 'AUTH'],
  logger: false,
  size,
  disableReverseLookup: true,
  onData(stream, _session, callback) {
    stream.on('error', callback);
    stream.on('end', () => {
      if (stream.sizeExceeded) {
        const e = new Error(`Message exceeds fixed maximum message size of ${size} bytes`);
        e.responseCode = 552;
        return callback(e);
      }
      received++;
      callback(null, 'discarded');
    });
    stream.resume();
  },
});

server.on('error', (err) => console.error(`smtp-server-discard: ${err.message}`));
server.server.on('error', (err) => {
  console.error(`smtp-server-discard: ${err.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  console.log(`listening on smtp://${host}:${server.server.address().port}`);
});

function shutdown() {
  console.log(`smtp-server-discard: ${received} messages`);
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
