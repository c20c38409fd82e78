import { promises as fs, readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import {
  SmtpServer,
  createSelfSignedCertificate,
  extensions,
  isReply,
  type IncomingMessage,
  type MessageResult,
  type SmtpServerOptions,
  type SmtpSessionStream,
} from '../index';
import { recordToFile } from '../record';
import { FaultInjector } from './faults';
import { SmallFileWriter } from './file-writer';
import { envelopeRecord, storeMessage, type EnvelopeRecord } from './maildir';
import { nextMessageId } from './ids';
import type { CatcherOptions } from './options';
import { Throttle } from './throttle';

export interface Catcher {
  server: SmtpServer;
  /** `smtp://HOST:PORT` as bound (with the real port when 0 was asked). */
  url: string;
  close(): Promise<void>;
}

/** Per-message notification (the log line, `--json-log`, the test helper). */
export type CaughtListener = (record: EnvelopeRecord) => void;

/**
 * The catch-all server behind the command line: an `SmtpServer` like any user's, storing each
 * message as `<id>.eml` + `<id>.json` unless `discard` is set.
 */
export async function startCatcher(options: CatcherOptions, onCaught?: CaughtListener): Promise<Catcher> {
  await fs.mkdir(options.maildir, { recursive: true });
  // Fail at the start, not at the first connection, when the recordings cannot go there.
  if (options.record !== undefined) await fs.mkdir(options.record, { recursive: true });
  const faults = new FaultInjector(options.faults);
  const passwords = new Map(options.auth.map(({ user, pass }) => [user, pass]));
  const tls = options.tls || options.tlsImplicit ? loadTls(options) : undefined;
  const writer = options.discard ? undefined : new SmallFileWriter();

  const storeOrDiscard = async (message: IncomingMessage): Promise<MessageResult> => {
    const fault = faults.dataFault([
      message.envelope.mailFrom.address,
      ...message.envelope.rcptTo.map((r) => r.address),
    ]);
    if (fault !== undefined || options.discard) {
      let size = 0;
      for await (const chunk of message.body) size += chunk.length;
      if (fault !== undefined) return fault;
      const record = envelopeRecord(nextMessageId(), message, size);
      onCaught?.(record);
      return record.id;
    }
    const record = await storeMessage(options.maildir, message, { fsync: options.fsync, writer });
    onCaught?.(record);
    return options.lmtp ? message.envelope.rcptTo.map(() => record.id) : record.id;
  };

  const serverOptions: SmtpServerOptions = {
    hostname: options.hostname,
    maxMessageSize: options.maxSize,
    maximumRecipients: options.maxRecipients,
    requireTls: options.requireTls,
    requireAuth: options.requireAuth,
    lmtp: options.lmtp,
    bareNewlines: options.bareNewlines,
    idleTimeout: options.idleTimeout * 1000,
    dataTimeout: options.idleTimeout * 1000,
    maxClients: options.maxClients,
    proxy: options.proxy,
    secure: options.tlsImplicit,
    tls,
    extensions: [extensions.limits],
    messageReceivedHandler: storeOrDiscard,
    lookupPassword: passwords.size > 0 ? (user) => passwords.get(user) : undefined,
    smtpVerbFilter: faults.active ? (command, session) => faults.filter(command, session) : undefined,
    outputTransform: options.faults.throttle
      ? () => new Throttle(options.faults.throttle as number)
      : undefined,
  };
  const server = new SmtpServer(serverOptions, (session: SmtpSessionStream) => {
    faults.attach(session);
    if (options.record === undefined) return;
    try {
      recordToFile(session, options.record);
    } catch {
      // The folder went away since the start: this session goes unrecorded rather than the server down.
    }
  });
  server.on('sessionError', () => undefined);
  // start() rejects on a listen error (EADDRINUSE…); without a listener the re-emitted 'error'
  // would also be thrown as unhandled.
  const ignore = (): void => undefined;
  server.on('error', ignore);
  const address = await server.start(options.port, options.host).finally(() => server.off('error', ignore));
  writer?.prepare();
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    server,
    url: `smtp://${host}:${address.port}`,
    // The writer goes last: messages still being answered during the close are stored.
    close: () => server.close().finally(() => writer?.close()),
  };
}

function loadTls(options: CatcherOptions): { key: string | Buffer; cert: string | Buffer } {
  if (options.tlsCert !== undefined && options.tlsKey !== undefined) {
    const given = { cert: readFileSync(options.tlsCert), key: readFileSync(options.tlsKey) };
    try {
      createSecureContext(given); // at start, not at the first client's STARTTLS
    } catch (error) {
      throw new Error(`--tls-cert/--tls-key cannot be used: ${(error as Error).message}`, { cause: error });
    }
    return given;
  }
  // No key ships with the package: a fresh self-signed certificate per start.
  const { key, cert } = createSelfSignedCertificate({
    commonName: 'localhost',
    altNames: ['localhost', options.hostname, '127.0.0.1', '::1'].filter((n, i, all) => all.indexOf(n) === i),
  });
  return { key, cert };
}

export { isReply };
