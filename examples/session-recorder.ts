/**
 * Records every session into a transcript file of its own (format: lib/record/FORMAT.md): both
 * directions with millisecond times, the cleartext after STARTTLS, and AUTH secrets redacted.
 * A transcript can be read, diffed, and replayed against a server with
 * `smtp-session-stream replay FILE --to HOST:PORT`.
 *
 *   npm run build && node dist/examples/session-recorder.js [--port 2527] [--host 127.0.0.1]
 *                                                          [--dir ./transcripts]
 *
 * Users (so that there is an AUTH to redact): alice / wonderland.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { SmtpServer, createSelfSignedCertificate, recordToFile, type SmtpSessionStream } from '../lib';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '2527' },
    host: { type: 'string', default: '127.0.0.1' },
    dir: { type: 'string', default: './transcripts' },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new Error(`--port: not a port: ${values.port}`);
}
const dir = resolve(values.dir);

const USERS = new Map([['alice', 'wonderland']]);
const pending = new Set<Promise<void>>();

const server = new SmtpServer({
  hostname: 'localhost',
  tls: createSelfSignedCertificate({ altNames: ['localhost', '127.0.0.1', '::1'] }),
  // A password table is enough for PLAIN, LOGIN and CRAM-MD5 when no `auth` listener decides.
  lookupPassword: (user) => USERS.get(user),
  // No password mechanisms in cleartext (RFC 4954 §4): AUTH appears in EHLO only after STARTTLS.
  getAuthenticationMechanismsHandler: (session) => (session.secure ? ['PLAIN', 'LOGIN', 'CRAM-MD5'] : []),
  closeTimeout: 5000,
});

server.on('session', (session: SmtpSessionStream) => {
  // Attach before the greeting goes out (it is sent on the first read, after this handler), so
  // the transcript starts with the 220. The recorder listens to the session's `input`/`output`
  // events, which carry cleartext, so TLS is recorded as a `T` line and what follows is readable.
  const recording = recordToFile(session, dir);
  const done = recording.done.then(() => {
    pending.delete(done);
    if (recording.error) console.error(`transcript ${recording.path} failed: ${recording.error.message}`);
    else console.log(`transcript ${recording.path}`);
  });
  pending.add(done);
});
// Resets, TLS garbage and the like end only that connection; they are reported here.
server.on('sessionError', (error: Error) => console.error(`session error: ${error.message}`));

server.start(port, values.host).then(
  (address) => {
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    console.log(`recording into ${dir}`);
    console.log(`listening on smtp://${host}:${address.port}`);
  },
  (error: Error) => {
    console.error(`cannot listen: ${error.message}`);
    process.exitCode = 1;
  },
);

// Each transcript ends with an `E` record when its session closes: wait for the files to be
// closed too, so that none is cut short by the exit.
const stop = (): void => {
  console.log('stopping');
  void server
    .close()
    .then(() => Promise.all(pending))
    .then(() => console.log('stopped'));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
