/**
 * A mail server for the tests of code that sends mail: start it on a free loopback port, point the
 * code under test at it, then look at what arrived (`messages`, `waitForMessage`) and make it fail
 * on purpose (`setFaults`) to exercise retry paths. Built on the public `SmtpServer` and the
 * catcher's fault injection and storage.
 *
 * ```ts
 * const server = await startTestMailServer();
 * await sendWelcomeMail({ host: server.host, port: server.port });
 * const mail = await server.waitForMessage((m) => m.subject === 'Welcome');
 * await server.close();
 * ```
 */
import { promises as fs } from 'node:fs';
import { PassThrough, type Duplex } from 'node:stream';
import {
  createSelfSignedCertificate,
  MessageBody,
  SmtpServer,
  type IncomingMessage,
  type MessageResult,
  type SmtpSessionStream,
} from '../index';
import { FaultInjector } from '../catcher/faults';
import { nextMessageId } from '../catcher/ids';
import { envelopeRecord, storeMessage, type EnvelopeRecord } from '../catcher/maildir';
import type { FaultOptions } from '../catcher/options';
import { Throttle } from '../catcher/throttle';

export type { EnvelopeRecord, FaultOptions };

export interface TestMailServerOptions {
  /** Also write each message as `<id>.eml` + `<id>.json` here (the catcher's format). Default: memory only. */
  maildir?: string;
  /** Offer STARTTLS with a fresh self-signed certificate (clients must not verify it). Default false. */
  tls?: boolean;
  /** Accepted logins; AUTH PLAIN, LOGIN and CRAM-MD5 are offered when given. Default: no AUTH. */
  auth?: Array<{ user: string; pass: string }>;
  /** Faults from the start (see `setFaults`). Default: none. */
  faults?: Partial<FaultOptions>;
  /** The server's name in the greeting and EHLO reply. Default `localhost`. */
  hostname?: string;
  /** Largest message in bytes, advertised as SIZE; larger ones get 552. Default 25 MiB; 0: no limit. */
  maxSize?: number;
}

export interface CaughtMessage {
  /** The envelope and session facts, as in the catcher's `<id>.json`. */
  envelope: EnvelopeRecord;
  /** The message exactly as received (after dot-unstuffing). */
  raw: Buffer;
  /** `raw` decoded as UTF-8. */
  text: string;
  /**
   * The header fields of `raw`: lower-cased names, values unfolded (RFC 5322 §2.2.3) and trimmed,
   * in order of appearance. Values are not MIME-decoded.
   */
  headers: Map<string, string[]>;
  /** The first Subject, with RFC 2047 encoded-words decoded. */
  subject?: string;
}

export interface TestMailServer {
  /** Always `127.0.0.1`. */
  host: string;
  /** The free port picked at start. */
  port: number;
  /** `smtp://127.0.0.1:<port>`. */
  url: string;
  /**
   * Every message accepted so far, in order of arrival. A message is in here before its `250` is
   * sent, so once the sender's call has resolved the message can be looked at without waiting.
   */
  readonly messages: CaughtMessage[];
  /**
   * The first message (already caught, or still to come) for which `predicate` is true (any
   * message without one). Rejects after `timeout` ms (default 5000), or when the server closes.
   */
  waitForMessage(
    predicate?: (message: CaughtMessage) => boolean,
    options?: { timeout?: number },
  ): Promise<CaughtMessage>;
  /** Forgets the messages caught so far (files in `maildir` stay). */
  clear(): void;
  /**
   * Replaces the faults: refusals (`mail`, `rcpt`, `auth`, `data` with a reply code, narrowed by
   * `addresses` and `rate`) apply from the next command on; `dropAt` and `throttle` from the next
   * connection on. `setFaults({})` turns them all off.
   */
  setFaults(faults: Partial<FaultOptions>): void;
  /** Stops listening and ends the sessions (those inside a message after it is answered). */
  close(): Promise<void>;
}

/** Milliseconds `close()` gives a session to finish its message before cutting it. */
const CLOSE_TIMEOUT = 2000;
const DEFAULT_WAIT = 5000;

export async function startTestMailServer(options: TestMailServerOptions = {}): Promise<TestMailServer> {
  if (options.maildir !== undefined) await fs.mkdir(options.maildir, { recursive: true });
  const server = new TestMailServerImpl(options);
  await server.start();
  return server;
}

interface Waiter {
  predicate: (message: CaughtMessage) => boolean;
  resolve: (message: CaughtMessage) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

class TestMailServerImpl implements TestMailServer {
  host = '127.0.0.1';
  port = 0;
  url = '';
  readonly messages: CaughtMessage[] = [];
  private faults: FaultOptions;
  private injector: FaultInjector;
  private readonly waiters = new Set<Waiter>();
  private readonly server: SmtpServer;
  private closed = false;

  constructor(private readonly options: TestMailServerOptions) {
    this.faults = fullFaults(options.faults ?? {});
    this.injector = new FaultInjector(this.faults);
    const passwords = new Map((options.auth ?? []).map(({ user, pass }) => [user, pass]));
    const hostname = options.hostname ?? 'localhost';
    this.server = new SmtpServer(
      {
        hostname,
        maxMessageSize: options.maxSize,
        closeTimeout: CLOSE_TIMEOUT,
        tls: options.tls ? certificate(hostname) : undefined,
        lookupPassword: passwords.size > 0 ? (user) => passwords.get(user) : undefined,
        // Always installed: faults can be set after the start.
        smtpVerbFilter: (command, session) => this.injector.filter(command, session),
        messageReceivedHandler: (message) => this.receive(message),
        outputTransform: (): Duplex =>
          this.faults.throttle !== undefined ? new Throttle(this.faults.throttle) : new PassThrough(),
      },
      (session: SmtpSessionStream) => this.injector.attach(session),
    );
    // Clients that misbehave on purpose (dropped connections, bad TLS) are not the test's failure.
    this.server.on('sessionError', () => undefined);
    this.server.on('tlsClientError', () => undefined);
  }

  async start(): Promise<void> {
    const ignore = (): void => undefined; // start() rejects; the re-emitted 'error' must not throw
    this.server.on('error', ignore);
    try {
      const address = await this.server.start(0, this.host);
      this.port = address.port;
      this.url = `smtp://${this.host}:${this.port}`;
    } finally {
      this.server.off('error', ignore);
    }
  }

  waitForMessage(
    predicate: (message: CaughtMessage) => boolean = () => true,
    options: { timeout?: number } = {},
  ): Promise<CaughtMessage> {
    const timeout = options.timeout ?? DEFAULT_WAIT;
    return new Promise((resolve, reject) => {
      try {
        const found = this.messages.find(predicate);
        if (found !== undefined) return resolve(found);
      } catch (error) {
        return reject(error);
      }
      if (this.closed) return reject(new Error('waitForMessage: the test mail server is closed'));
      const waiter: Waiter = {
        predicate,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(
            new Error(`waitForMessage: no matching message within ${timeout} ms (${this.describeCaught()})`),
          );
        }, timeout),
      };
      this.waiters.add(waiter);
    });
  }

  clear(): void {
    this.messages.length = 0;
  }

  setFaults(faults: Partial<FaultOptions>): void {
    this.faults = fullFaults(faults);
    this.injector = new FaultInjector(this.faults);
  }

  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      for (const waiter of this.waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(
          new Error('waitForMessage: the test mail server was closed before a matching message came'),
        );
      }
      this.waiters.clear();
    }
    await this.server.close();
  }

  private async receive(message: IncomingMessage): Promise<MessageResult> {
    // Read first: a message over the size limit is refused by the core (552) through this read.
    const raw = await message.body.buffer();
    const fault = this.injector.dataFault([
      message.envelope.mailFrom.address,
      ...message.envelope.rcptTo.map((r) => r.address),
    ]);
    if (fault !== undefined) return fault;
    let envelope: EnvelopeRecord;
    if (this.options.maildir !== undefined) {
      const body = new MessageBody();
      body.push(raw);
      body.end();
      // Not `{ ...message, body }`: signal and aborted are getters of the hook message's class.
      envelope = await storeMessage(this.options.maildir, {
        envelope: message.envelope,
        session: message.session,
        body,
        get signal() {
          return message.signal;
        },
        get aborted() {
          return message.aborted;
        },
      });
    } else {
      envelope = envelopeRecord(nextMessageId(), message, raw.length);
    }
    const headers = parseHeaders(raw);
    const subject = headers.get('subject')?.[0];
    const caught: CaughtMessage = {
      envelope,
      raw,
      text: raw.toString('utf8'),
      headers,
      subject: subject === undefined ? undefined : decodeEncodedWords(subject),
    };
    this.messages.push(caught);
    this.notify(caught);
    return envelope.id;
  }

  private notify(message: CaughtMessage): void {
    for (const waiter of this.waiters) {
      let matches: boolean;
      try {
        matches = waiter.predicate(message);
      } catch (error) {
        this.settle(waiter);
        waiter.reject(error as Error);
        continue;
      }
      if (matches) {
        this.settle(waiter);
        waiter.resolve(message);
      }
    }
  }

  private settle(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    this.waiters.delete(waiter);
  }

  private describeCaught(): string {
    const n = this.messages.length;
    if (n === 0) return 'no message caught';
    const subjects = this.messages.slice(0, 10).map((m) => JSON.stringify(m.subject ?? null));
    return `${n} caught, subjects: ${subjects.join(', ')}${n > 10 ? ', …' : ''}`;
  }
}

function fullFaults(faults: Partial<FaultOptions>): FaultOptions {
  return {
    ...faults,
    rate: faults.rate ?? 1,
    addresses: (faults.addresses ?? []).map((a) => a.toLowerCase()),
  };
}

function certificate(hostname: string): { key: string; cert: string } {
  const names = ['localhost', hostname, '127.0.0.1'].filter((n, i, all) => all.indexOf(n) === i);
  const { key, cert } = createSelfSignedCertificate({ commonName: hostname, altNames: names });
  return { key, cert };
}

/**
 * The header section of a message (up to the first empty line), unfolded: a line that starts
 * with a space or tab continues the field before it (RFC 5322 §2.2.3). Lines that are not
 * fields (no colon, or an mbox `From ` line) are skipped.
 */
export function parseHeaders(raw: Buffer): Map<string, string[]> {
  const fields: string[] = [];
  for (let start = 0; start < raw.length;) {
    const lf = raw.indexOf(0x0a, start);
    const next = lf < 0 ? raw.length : lf + 1;
    const end = lf < 0 ? raw.length : lf > start && raw[lf - 1] === 0x0d ? lf - 1 : lf;
    const line = raw.toString('utf8', start, end);
    start = next;
    if (line === '') break; // the empty line that ends the header section
    if ((line[0] === ' ' || line[0] === '\t') && fields.length > 0) fields[fields.length - 1] += line;
    else fields.push(line);
  }
  const headers = new Map<string, string[]>();
  for (const field of fields) {
    const colon = field.indexOf(':');
    if (colon <= 0) continue;
    // Blanks may precede the colon (obsolete syntax, RFC 5322 §4.5), never the name.
    const name = field.slice(0, colon).trimEnd().toLowerCase();
    if (name === '' || /\s/.test(name)) continue;
    const values = headers.get(name) ?? [];
    values.push(field.slice(colon + 1).trim());
    headers.set(name, values);
  }
  return headers;
}

const ENCODED_WORD = /=\?([^?\s*]+)(?:\*[^?\s]*)?\?([BbQq])\?([^?\s]*)\?=/g;

/** Decodes RFC 2047 encoded-words (`=?utf-8?B?…?=`); white space between two of them goes (§6.2). */
export function decodeEncodedWords(value: string): string {
  return value
    .replace(/(\?=)\s+(?==\?)/g, '$1')
    .replace(ENCODED_WORD, (word, charset: string, encoding: string, text: string) => {
      const bytes =
        encoding.toUpperCase() === 'B'
          ? Buffer.from(text, 'base64')
          : Buffer.from(
              text
                .replace(/_/g, ' ')
                .replace(/=([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
              'latin1',
            );
      try {
        return new TextDecoder(charset).decode(bytes);
      } catch {
        return word; // an unknown charset: leave the word as it is
      }
    });
}
