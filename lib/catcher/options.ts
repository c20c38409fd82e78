import * as os from 'node:os';

/** The catcher's command-line contract. Outside tools script against these names: keep them. */
export interface CatcherOptions {
  host: string;
  port: number;
  maildir: string;
  hostname: string;
  tls: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsImplicit: boolean;
  auth: Array<{ user: string; pass: string }>;
  requireTls: boolean;
  requireAuth: boolean;
  maxSize: number;
  maxRecipients: number;
  record?: string;
  idleTimeout: number;
  maxClients: number;
  lmtp: boolean;
  proxy: boolean;
  discard: boolean;
  workers: number;
  fsync: boolean;
  jsonLog: boolean;
  quiet: boolean;
  bareNewlines: 'keep' | 'reject';
  faults: FaultOptions;
  help: boolean;
}

/** Fault injection, for testing the retry paths of code that sends mail. */
export interface FaultOptions {
  /** Reply code (e.g. 451 or 550) per command to refuse. */
  mail?: number;
  rcpt?: number;
  auth?: number;
  data?: number;
  /** Probability (0–1) that a configured refusal applies. Default 1. */
  rate: number;
  /** Only these addresses (sender or recipient) trigger the refusals. */
  addresses: string[];
  /** Close the connection at this step instead of answering. */
  dropAt?: 'connect' | 'ehlo' | 'mail' | 'rcpt' | 'data' | 'body';
  /** Bytes per second the replies are sent at (throttled link). */
  throttle?: number;
}

export const USAGE = `Usage: smtp-session-stream [serve] [options]
       smtp-session-stream replay FILE --to HOST:PORT [--auth user:pass] [--compare codes|text]
                                [--timeout MS] [--proxy]

A catch-all SMTP server: every message is written to the mail folder as <id>.eml (the bytes
received) and <id>.json (the envelope). Prints "listening on smtp://HOST:PORT" when ready.

Options:
  --host HOST             address to listen on (default 127.0.0.1)
  --port PORT             port (default 2525; 0 picks a free one)
  --maildir DIR           where messages go (default ./mail)
  --hostname NAME         the server's name in the greeting (default: this machine's name)
  --tls                   offer STARTTLS (a fresh self-signed certificate unless --tls-cert/--tls-key)
  --tls-cert FILE         PEM certificate for TLS
  --tls-key FILE          PEM private key for TLS
  --tls-implicit          speak TLS from the first byte (port 465 style) instead of STARTTLS
  --auth USER:PASS        accept this login (repeatable); enables AUTH PLAIN, LOGIN and CRAM-MD5
  --require-tls           refuse everything but EHLO/STARTTLS/NOOP/RSET/QUIT before TLS
  --require-auth          refuse MAIL before a successful AUTH
  --max-size BYTES        largest message, advertised as SIZE (default 26214400; 0: no limit)
  --max-recipients N      recipients per message (default 1000)
  --record DIR            write a transcript of every session to DIR
  --idle-timeout SECONDS  close silent sessions with 421 (default 300)
  --max-clients N         concurrent sessions; more get 421 (default 1000)
  --lmtp                  speak LMTP (LHLO, one reply per recipient) instead of SMTP
  --proxy                 expect a HAProxy PROXY protocol header (v1/v2) on each connection
  --bare-newlines MODE    keep | reject bare CR/LF inside messages (default keep)
  --discard               accept messages and drop them (benchmarks, honeypots)
  --workers N             N processes sharing the listening socket (default 1)
  --fsync                 fsync each message before answering 250 (slower, survives power loss)
  --json-log              print one JSON line per message on stdout (instead of the text log line)
  --quiet                 no per-message log line
  -h, --help              this text

Fault injection (test the retry paths of your mailer):
  --fail-mail CODE        answer MAIL FROM with CODE (e.g. 451, 550)
  --fail-rcpt CODE        answer RCPT TO with CODE
  --fail-auth CODE        answer AUTH with CODE
  --fail-data CODE        answer the end of the message with CODE (nothing is stored)
  --fail-rate P           apply the refusals above with probability P, 0-1 (default 1)
  --fail-address ADDR     apply them only when ADDR is the sender or a recipient (repeatable)
  --drop-at STEP          close the connection at connect|ehlo|mail|rcpt|data|body
  --throttle BYTES        send replies at BYTES per second
`;

export class UsageError extends Error {}

const VALUE_FLAGS = new Set([
  'host',
  'port',
  'maildir',
  'hostname',
  'tls-cert',
  'tls-key',
  'auth',
  'max-size',
  'max-recipients',
  'record',
  'idle-timeout',
  'max-clients',
  'workers',
  'bare-newlines',
  'fail-mail',
  'fail-rcpt',
  'fail-auth',
  'fail-data',
  'fail-rate',
  'fail-address',
  'drop-at',
  'throttle',
]);
const BOOLEAN_FLAGS = new Set([
  'tls',
  'tls-implicit',
  'require-tls',
  'require-auth',
  'lmtp',
  'proxy',
  'discard',
  'fsync',
  'json-log',
  'quiet',
  'help',
]);

export function parseCatcherArgs(argv: string[]): CatcherOptions {
  const options: CatcherOptions = {
    host: '127.0.0.1',
    port: 2525,
    maildir: './mail',
    hostname: os.hostname() || 'localhost',
    tls: false,
    tlsImplicit: false,
    auth: [],
    requireTls: false,
    requireAuth: false,
    maxSize: 25 * 1024 * 1024,
    maxRecipients: 1000,
    idleTimeout: 300,
    maxClients: 1000,
    lmtp: false,
    proxy: false,
    discard: false,
    workers: 1,
    fsync: false,
    jsonLog: false,
    quiet: false,
    bareNewlines: 'keep',
    faults: { rate: 1, addresses: [] },
    help: false,
  };
  const args = argv[0] === 'serve' ? argv.slice(1) : argv;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '-h') {
      options.help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument: ${arg}`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (BOOLEAN_FLAGS.has(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      applyBoolean(options, name);
      continue;
    }
    if (!VALUE_FLAGS.has(name)) throw new UsageError(`unknown option: --${name}`);
    const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    applyValue(options, name, value);
  }
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together');
  }
  if (options.tlsCert !== undefined && !options.tlsImplicit) options.tls = true;
  return options;
}

function applyBoolean(options: CatcherOptions, name: string): void {
  switch (name) {
    case 'tls':
      options.tls = true;
      break;
    case 'tls-implicit':
      options.tlsImplicit = true;
      break;
    case 'require-tls':
      options.requireTls = true;
      break;
    case 'require-auth':
      options.requireAuth = true;
      break;
    case 'lmtp':
      options.lmtp = true;
      break;
    case 'proxy':
      options.proxy = true;
      break;
    case 'discard':
      options.discard = true;
      break;
    case 'fsync':
      options.fsync = true;
      break;
    case 'json-log':
      options.jsonLog = true;
      break;
    case 'quiet':
      options.quiet = true;
      break;
    case 'help':
      options.help = true;
      break;
  }
}

function applyValue(options: CatcherOptions, name: string, value: string): void {
  switch (name) {
    case 'host':
      options.host = value;
      break;
    case 'port':
      options.port = integer(name, value, 0, 65535);
      break;
    case 'maildir':
      options.maildir = value;
      break;
    case 'hostname':
      options.hostname = value;
      break;
    case 'tls-cert':
      options.tlsCert = value;
      break;
    case 'tls-key':
      options.tlsKey = value;
      break;
    case 'auth': {
      const colon = value.indexOf(':');
      if (colon <= 0) throw new UsageError('--auth wants USER:PASS');
      options.auth.push({ user: value.slice(0, colon), pass: value.slice(colon + 1) });
      break;
    }
    case 'max-size':
      options.maxSize = integer(name, value, 0, Number.MAX_SAFE_INTEGER);
      break;
    case 'max-recipients':
      options.maxRecipients = integer(name, value, 1, 1_000_000);
      break;
    case 'record':
      options.record = value;
      break;
    case 'idle-timeout':
      options.idleTimeout = integer(name, value, 0, 86_400);
      break;
    case 'max-clients':
      options.maxClients = integer(name, value, 0, 1_000_000);
      break;
    case 'workers':
      options.workers = integer(name, value, 1, 256);
      break;
    case 'bare-newlines':
      if (value !== 'keep' && value !== 'reject') throw new UsageError('--bare-newlines is keep or reject');
      options.bareNewlines = value;
      break;
    case 'fail-mail':
      options.faults.mail = replyCode(name, value);
      break;
    case 'fail-rcpt':
      options.faults.rcpt = replyCode(name, value);
      break;
    case 'fail-auth':
      options.faults.auth = replyCode(name, value);
      break;
    case 'fail-data':
      options.faults.data = replyCode(name, value);
      break;
    case 'fail-rate': {
      // Number('') is 0: an empty value must not silently turn the faults off.
      const rate = value.trim() === '' ? NaN : Number(value);
      if (!(rate >= 0 && rate <= 1)) throw new UsageError('--fail-rate is a number from 0 to 1');
      options.faults.rate = rate;
      break;
    }
    case 'fail-address':
      options.faults.addresses.push(value.toLowerCase());
      break;
    case 'drop-at': {
      const steps = ['connect', 'ehlo', 'mail', 'rcpt', 'data', 'body'] as const;
      const step = steps.find((s) => s === value);
      if (step === undefined) throw new UsageError(`--drop-at is one of ${steps.join('|')}`);
      options.faults.dropAt = step;
      break;
    }
    case 'throttle':
      options.faults.throttle = integer(name, value, 1, Number.MAX_SAFE_INTEGER);
      break;
  }
}

function integer(name: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} wants a whole number`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}`);
  return n;
}

function replyCode(name: string, value: string): number {
  const code = integer(name, value, 400, 599);
  return code;
}
