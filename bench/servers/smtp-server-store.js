'use strict';
// Reference for the storing catcher: nodemailer's smtp-server doing the same
// work as `dist/lib/catcher/cli.js` — stream each message body to
// `<id>.eml` (through a temporary name, then rename) and write `<id>.json`
// with the envelope, then accept the message with the id.
//
//   node bench/servers/smtp-server-store.js --host 127.0.0.1 --port 2525 --maildir DIR [--size BYTES]
//
// disableReverseLookup: the bench only talks to 127.0.0.1 and must not send
// DNS queries anywhere; our catcher does no reverse lookup either.

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { pipeline } = require('node:stream');
const { SMTPServer } = require('smtp-server');
const { parseArgs, intArg } = require('../lib/util');

const args = parseArgs(process.argv.slice(2));
const host = typeof args.host === 'string' ? args.host : '127.0.0.1';
const port = intArg(args.port, 2525);
const size = intArg(args.size, 25 * 1024 * 1024);
if (typeof args.maildir !== 'string') {
  console.error('smtp-server-store: --maildir DIR is required');
  process.exit(2);
}
const maildir = path.resolve(args.maildir);
fs.mkdirSync(maildir, { recursive: true });

let stored = 0;

function newId() {
  return `${Date.now().toString(36)}-${crypto.randomBytes(6).toString('hex')}`;
}

const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS', 'AUTH'],
  logger: false,
  size,
  disableReverseLookup: true,
  onData(stream, session, callback) {
    const id = newId();
    const tmp = path.join(maildir, `.${id}.eml.tmp`);
    const final = path.join(maildir, `${id}.eml`);
    pipeline(stream, fs.createWriteStream(tmp), (err) => {
      const fail = (e) => fs.unlink(tmp, () => callback(e));
      if (err) return fail(err);
      if (stream.sizeExceeded) {
        const e = new Error(`Message exceeds fixed maximum message size of ${size} bytes`);
        e.responseCode = 552;
        return fail(e);
      }
      fs.rename(tmp, final, (renameErr) => {
        if (renameErr) return fail(renameErr);
        const env = session.envelope;
        const meta = {
          id,
          helo: session.hostNameAppearsAs,
          mailFrom: env.mailFrom ? env.mailFrom.address : null,
          rcptTo: env.rcptTo.map((r) => r.address),
          remoteAddress: session.remoteAddress,
          remotePort: session.remotePort,
          secure: session.secure,
          size: stream.byteLength,
          receivedAt: new Date().toISOString(),
        };
        fs.writeFile(path.join(maildir, `${id}.json`), JSON.stringify(meta, null, 2) + '\n', (writeErr) => {
          if (writeErr) return callback(writeErr);
          stored++;
          callback(null, id);
        });
      });
    });
  },
});

server.on('error', (err) => console.error(`smtp-server-store: ${err.message}`));
server.server.on('error', (err) => {
  console.error(`smtp-server-store: ${err.message}`);
  process.exit(1);
});
server.listen(port, host, () => {
  console.log(`listening on smtp://${host}:${server.server.address().port}`);
});

function shutdown() {
  console.log(`smtp-server-store: ${stored} messages stored`);
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
