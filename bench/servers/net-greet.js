'use strict';
// Baseline for the idle-session memory test: a bare node:net server that
// sends the 220 greeting and then only reads (and drops) whatever arrives.
// (RSS with N sessions - RSS idle) / N is the cost of a Node socket alone.
//
//   node bench/servers/net-greet.js --host 127.0.0.1 --port 2525

const net = require('node:net');
const { parseArgs, intArg } = require('../lib/util');

const args = parseArgs(process.argv.slice(2));
const host = typeof args.host === 'string' ? args.host : '127.0.0.1';
const port = intArg(args.port, 2525);

const GREETING = Buffer.from('220 bench ESMTP net-greet\r\n');

const server = net.createServer((socket) => {
  socket.on('data', () => {});
  socket.on('error', () => {});
  socket.write(GREETING);
});
server.on('error', (err) => {
  console.error(`net-greet: ${err.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  console.log(`listening on smtp://${host}:${server.address().port}`);
});

function shutdown() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
