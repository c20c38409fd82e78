/**
 * A tiny scripted SMTP server for the replay tests: fixed answers per command, just enough
 * DATA/STARTTLS/AUTH handling to exercise the replay client. Listens on 127.0.0.1 only.
 *
 * Every connection is also exposed as a recordable fake session (the events a
 * SmtpSessionStream emits) so tests can record live sessions.
 */
import * as crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';

export class FakeSession extends EventEmitter {
  /** What SmtpSessionStream's `session` says about TLS (set `secure` for implicit TLS). */
  session: { secure: boolean; tls?: { protocol?: string; cipher?: string } } = { secure: false };

  constructor(
    // Not readonly: a PROXY header changes them, as it does on SmtpSessionStream.
    public remoteAddress?: string,
    public remotePort?: number,
    public localAddress?: string,
    public localPort?: number,
  ) {
    super();
  }
}

export interface ScriptServerOptions {
  /** Reply to every RCPT. Default `250 2.1.5 Recipient OK`. */
  rcptReply?: string;
  /** Enables STARTTLS (or implicit TLS with `implicitTls`). */
  secureContext?: tls.SecureContext;
  implicitTls?: boolean;
  /** Accepted credentials. Default alice / s3cret. */
  username?: string;
  password?: string;
  /** Called for each connection with its recordable fake session. */
  onSession?: (session: FakeSession) => void;
  /**
   * Runs commands pipelined behind STARTTLS once TLS is up, as servers open to CVE-2011-0411 did
   * (a correct server discards them, RFC 3207 §4.2). Default false.
   */
  runPipelinedAfterStartTls?: boolean;
}

export interface ScriptServer {
  port: number;
  /** Per connection, the raw chunks received (latin1), to check pipelining. */
  chunks: string[][];
  close(): Promise<void>;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

export async function startScriptServer(options: ScriptServerOptions = {}): Promise<ScriptServer> {
  const username = options.username ?? 'alice';
  const password = options.password ?? 's3cret';
  const sockets = new Set<net.Socket>();
  const chunks: string[][] = [];
  // The greeting host changes on every start, like a real server's would between runs.
  const greetingHost = `mx-${crypto.randomBytes(3).toString('hex')}.test`;

  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => {});
    const received: string[] = [];
    chunks.push(received);
    const session = new FakeSession(raw.remoteAddress, raw.remotePort, raw.localAddress, raw.localPort);
    options.onSession?.(session);
    raw.on('close', () => session.emit('close'));

    let socket: net.Socket = raw;
    let buffer = '';
    let secure = false;
    let inBody = false;
    let sasl: { mech: string; step: number; user?: string; challenge?: string; failed?: boolean } | null =
      null;

    const send = (...lines: string[]) => {
      const data = Buffer.from(lines.map((l) => l + '\r\n').join(''), 'latin1');
      session.emit('output', data);
      socket.write(data);
    };
    const authResult = (ok: boolean) => {
      sasl = null;
      send(ok ? '235 2.7.0 Authentication successful' : '535 5.7.8 Authentication credentials invalid');
    };
    const checkPlain = (response: string) => {
      const [, user, pass] = unb64(response).split('\0');
      return user === username && pass === password;
    };
    const checkXoauth2 = (response: string) =>
      unb64(response) === `user=${username}\x01auth=Bearer ${password}\x01\x01`;

    const onSasl = (line: string) => {
      const s = sasl!;
      if (line === '*') {
        sasl = null;
        return send('501 5.0.0 Authentication cancelled');
      }
      s.step++;
      switch (s.mech) {
        case 'PLAIN':
          return authResult(checkPlain(line));
        case 'LOGIN':
          if (s.user === undefined) {
            s.user = unb64(line);
            return send('334 ' + b64('Password:'));
          }
          return authResult(s.user === username && unb64(line) === password);
        case 'CRAM-MD5': {
          const [user, digest] = unb64(line).split(' ');
          const want = crypto.createHmac('md5', password).update(s.challenge!).digest('hex');
          return authResult(user === username && digest === want);
        }
        case 'XOAUTH2':
          if (s.failed) return authResult(false);
          if (checkXoauth2(line)) return authResult(true);
          s.failed = true;
          return send('334 ' + b64('{"status":"401"}'));
      }
    };

    const startAuth = (mech: string, initial: string | undefined) => {
      sasl = { mech, step: 0 };
      switch (mech) {
        case 'PLAIN':
          return initial === undefined ? send('334 ') : authResult(checkPlain(initial));
        case 'LOGIN':
          if (initial === undefined) return send('334 ' + b64('Username:'));
          sasl.user = unb64(initial);
          return send('334 ' + b64('Password:'));
        case 'CRAM-MD5':
          sasl.challenge = `<${crypto.randomInt(1e9)}.${Date.now()}@mx.test>`;
          return send('334 ' + b64(sasl.challenge));
        case 'XOAUTH2':
          if (initial === undefined) return send('334 ');
          return onSasl(initial);
        default:
          sasl = null;
          return send('504 5.5.4 Unrecognized authentication type');
      }
    };

    const onLine = (line: string): boolean => {
      if (inBody) {
        if (line === '.') {
          inBody = false;
          send(`250 2.0.0 Ok: queued as ${crypto.randomBytes(3).toString('hex').toUpperCase()}`);
        }
        return true;
      }
      if (sasl) {
        onSasl(line);
        return true;
      }
      const [verb, ...args] = line.split(' ');
      switch (verb.toUpperCase()) {
        case 'EHLO':
          send(
            `250-mx.test Hello ${args[0] ?? ''}`,
            '250-PIPELINING',
            ...(options.secureContext && !secure ? ['250-STARTTLS'] : []),
            '250-AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2',
            '250 ENHANCEDSTATUSCODES',
          );
          break;
        case 'MAIL':
          send('250 2.1.0 Sender OK');
          break;
        case 'RCPT':
          send(options.rcptReply ?? '250 2.1.5 Recipient OK');
          break;
        case 'DATA':
          inBody = true;
          send('354 Start mail input; end with <CRLF>.<CRLF>');
          break;
        case 'RSET':
        case 'NOOP':
          send('250 2.0.0 OK');
          break;
        case 'AUTH':
          startAuth((args[0] ?? '').toUpperCase(), args[1]);
          break;
        case 'QUIT':
          send('221 2.0.0 Bye');
          socket.end();
          return false;
        case 'STARTTLS':
          if (!options.secureContext || secure) {
            send('454 4.7.0 TLS not available');
            break;
          }
          send('220 2.0.0 Ready to start TLS');
          upgrade();
          return false;
        default:
          send('500 5.5.1 Unrecognized command');
      }
      return true;
    };

    const onData = (chunk: Buffer) => {
      session.emit('input', chunk);
      received.push(chunk.toString('latin1'));
      buffer += chunk.toString('latin1');
      runBuffered();
    };

    const runBuffered = () => {
      let nl: number;
      while ((nl = buffer.indexOf('\r\n')) !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        if (!onLine(line)) {
          // No pipelining across STARTTLS / after QUIT (unless this server is told to be wrong).
          if (!(options.runPipelinedAfterStartTls && socket !== raw)) buffer = '';
          return;
        }
      }
    };

    const upgrade = () => {
      raw.removeListener('data', onData);
      const secured = new tls.TLSSocket(raw, { isServer: true, secureContext: options.secureContext });
      secured.on('error', () => {});
      secured.once('secure', () => {
        secure = true;
        session.emit('secure', {
          protocol: secured.getProtocol(),
          cipher: secured.getCipher()?.standardName,
          servername: secured.servername || null,
        });
        runBuffered(); // runPipelinedAfterStartTls: what came in clear
      });
      secured.on('data', onData);
      socket = secured;
    };

    if (options.implicitTls) {
      upgrade();
      socket.once('secure', () => send(`220 ${greetingHost} ESMTP ready at ${new Date().toUTCString()}`));
    } else {
      raw.on('data', onData);
      send(`220 ${greetingHost} ESMTP ready at ${new Date().toUTCString()}`);
    }
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    chunks,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
