'use strict';
// Our session stream with no message handler: every session drains and
// accepts the body. Compared with raw-ceiling.js (the ceiling) and with
// smtp-server-discard.js.
//
//   node bench/servers/session-discard.js --host 127.0.0.1 --port 2525 [--max-clients N]
//
// --max-clients sets the server's maxClients option (the idle-session memory
// test holds more sessions than the default allows); otherwise defaults.

const path = require('node:path');
const { parseArgs, intArg, DIST, firstLine } = require('../lib/util');

const args = parseArgs(process.argv.slice(2));
const host = typeof args.host === 'string' ? args.host : '127.0.0.1';
const port = intArg(args.port, 2525);

let lib;
try {
  lib = require(path.join(DIST, 'lib'));
} catch (err) {
  console.error(`session-discard: cannot load dist/lib (${firstLine(err.message)})`);
  process.exit(2);
}
const { SmtpServer } = lib;
if (typeof SmtpServer !== 'function') {
  console.error('session-discard: dist/lib has no SmtpServer export');
  process.exit(2);
}

const options = { hostname: 'bench' };
if (args['max-clients'] !== undefined) options.maxClients = intArg(args['max-clients'], 0);
const server = new SmtpServer(options);
if (typeof server.on === 'function') {
  server.on('error', (err) => {
    console.error(`session-discard: ${err && err.message}`);
    process.exit(1);
  });
}
server.listen(port, host, () => {
  const addr = typeof server.address === 'function' ? server.address() : null;
  console.log(`listening on smtp://${host}:${addr && addr.port ? addr.port : port}`);
});

function shutdown() {
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
