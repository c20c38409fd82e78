/**
 * A submission-style server: STARTTLS first, then AUTH, then mail (RFC 3207, RFC 4954).
 *
 *   npm run build && node dist/examples/starttls-auth-server.js [--port 2526] [--host 127.0.0.1]
 *                                                            [--cert cert.pem --key key.pem]
 *
 * Users: alice / wonderland, bob / builder. Each accepted message is summarised on stdout as its
 * size and SHA-256, computed while the text streams in (nothing is buffered whole).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  SmtpServer,
  createSelfSignedCertificate,
  type AuthRequest,
  type SmtpMessage,
  type SmtpSessionStream,
  type TlsInfo,
} from '../lib';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '2526' },
    host: { type: 'string', default: '127.0.0.1' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new Error(`--port: not a port: ${values.port}`);
}
if ((values.cert === undefined) !== (values.key === undefined)) {
  throw new Error('--cert and --key go together');
}

// Plain passwords, because a CRAM-MD5 proof can only be checked against the password itself
// (RFC 2195 §2); a deployment without CRAM-MD5 would keep hashes and compare `request.password`.
const USERS = new Map([
  ['alice', 'wonderland'],
  ['bob', 'builder'],
]);

// No key ships with the examples: without --cert/--key, a throw-away certificate per start.
const tls =
  values.cert !== undefined && values.key !== undefined
    ? { cert: readFileSync(values.cert), key: readFileSync(values.key) }
    : createSelfSignedCertificate({ altNames: ['localhost', '127.0.0.1', '::1'] });

const server = new SmtpServer({
  hostname: 'localhost',
  tls,
  // Passwords and mail only inside TLS (RFC 3207 §4: AUTH is not even offered before it), and mail
  // only from known users, as a submission server should (RFC 6409 §4.3).
  requireTls: true,
  requireAuth: true,
  closeTimeout: 5000,
});

let nextSession = 1;
server.on('session', (session: SmtpSessionStream) => {
  const tag = `[${nextSession++} ${session.remoteAddress}:${session.remotePort}]`;
  console.log(`${tag} connected`);

  session.on('secure', (info: TlsInfo) => console.log(`${tag} secure ${info.protocol} ${info.cipher}`));

  // validatePassword rather than comparing `password`: CRAM-MD5 never sends the password.
  session.on('auth', (request: AuthRequest) => {
    const password = USERS.get(request.username);
    const ok = password !== undefined && request.validatePassword(password);
    console.log(`${tag} auth ${request.method} ${request.username} ${ok ? 'accepted' : 'rejected'}`);
    if (ok) request.accept();
    else request.reject();
  });

  // An async listener: the message is accepted once its Promise resolves (451 if it rejects),
  // and the client's next command waits for it. for-await pulls the body, so a slow hash slows
  // the client down instead of filling memory.
  session.on('message', async (message: SmtpMessage) => {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of message.body) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    const to = message.envelope.rcptTo.map((rcpt) => rcpt.address).join(',');
    console.log(
      `${tag} message user=${message.session.user} from=<${message.envelope.mailFrom.address}> ` +
        `to=<${to}> size=${size} sha256=${hash.digest('hex')}`,
    );
  });

  session.on('close', () => console.log(`${tag} closed`));
});
// Resets, TLS garbage and the like end only that connection; they are reported here.
server.on('sessionError', (error: Error) => console.error(`session error: ${error.message}`));

server.start(port, values.host).then(
  (address) => {
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    console.log(`listening on smtp://${host}:${address.port}`);
  },
  (error: Error) => {
    console.error(`cannot listen: ${error.message}`);
    process.exitCode = 1;
  },
);

// Graceful: idle sessions get 421 now, sessions inside a message after it is answered. A second
// signal falls through to Node's default handler and kills the process.
const stop = (): void => {
  console.log('stopping');
  void server.close().then(() => console.log('stopped'));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
