import { Reply } from './reply';

/**
 * Every reply the core can send, in one table: code, RFC 3463 enhanced code, text. The `id` of each
 * Reply is its key here, a stable string tests and users can match on. Texts keep MailHog's wording
 * where users' tests assert it (`250 Ok`, `221 Bye`, `354 End data with …`, `queued as`).
 * The greeting, the HELO/EHLO/LHLO replies and 334/354 carry no enhanced code (RFC 2034 §3).
 */
interface ReplySpec {
  code: number;
  enhanced?: string;
  text: string | ((...args: never[]) => string | string[]);
}

export const REPLIES = {
  // 2xx
  Greeting: { code: 220, text: (host: string, ident: string) => `${host} ESMTP ${ident}` },
  LmtpGreeting: { code: 220, text: (host: string, ident: string) => `${host} LMTP ${ident}` },
  ReadyToStartTls: { code: 220, enhanced: '2.0.0', text: 'Ready to start TLS' },
  Bye: { code: 221, enhanced: '2.0.0', text: 'Bye' },
  HttpRefused: { code: 221, enhanced: '2.7.0', text: 'Error: HTTP request on the SMTP port. Goodbye.' },
  Help: {
    code: 214,
    enhanced: '2.0.0',
    text: (verbs: string) => [`Commands: ${verbs}`, 'See RFC 5321 for details'],
  },
  AuthOk: { code: 235, enhanced: '2.7.0', text: 'Authentication successful' },
  Hello: { code: 250, text: (host: string, client: string) => `${host} Hello ${client}` },
  Ehlo: { code: 250, text: (lines: string[]) => lines },
  Ok: { code: 250, enhanced: '2.0.0', text: 'Ok' },
  SenderOk: { code: 250, enhanced: '2.1.0', text: (path: string) => `Sender ${path} ok` },
  RecipientOk: { code: 250, enhanced: '2.1.5', text: (path: string) => `Recipient ${path} ok` },
  Queued: { code: 250, enhanced: '2.0.0', text: (id: string) => `Ok: queued as ${id}` },
  LmtpDelivered: {
    code: 250,
    enhanced: '2.1.5',
    text: (path: string, id: string) => `<${path}> Ok: queued as ${id}`,
  },
  ChunkReceived: { code: 250, enhanced: '2.0.0', text: (octets: number) => `${octets} octets received` },
  CannotVrfy: {
    code: 252,
    enhanced: '2.5.0',
    text: 'Cannot VRFY user, but will accept message and attempt delivery',
  },
  // 3xx
  AuthChallenge: { code: 334, text: (challenge: string) => challenge },
  StartMailInput: { code: 354, text: 'End data with <CR><LF>.<CR><LF>' },
  // 4xx
  TooManyConnections: {
    code: 421,
    enhanced: '4.7.0',
    text: (host: string) => `${host} Error: too many connections, try again later`,
  },
  Timeout: { code: 421, enhanced: '4.4.2', text: (host: string) => `${host} Error: timeout exceeded` },
  TooManyErrors: { code: 421, enhanced: '4.7.0', text: (host: string) => `${host} Error: too many errors` },
  TooManyAuthFailures: {
    code: 421,
    enhanced: '4.7.0',
    text: (host: string) => `${host} Error: too many failed authentication attempts`,
  },
  LineTooLongFatal: {
    code: 421,
    enhanced: '4.7.0',
    text: (host: string) => `${host} Error: line too long, closing connection`,
  },
  ShuttingDown: { code: 421, enhanced: '4.3.2', text: (host: string) => `${host} Service shutting down` },
  LocalError: { code: 451, enhanced: '4.3.0', text: 'Error: internal error, try again later' },
  StorageFailed: { code: 451, enhanced: '4.3.0', text: 'Error: unable to store message, try again later' },
  TooManyRecipients: { code: 452, enhanced: '4.5.3', text: 'Error: too many recipients' },
  TlsUnavailable: { code: 454, enhanced: '4.7.0', text: 'TLS not available due to temporary reason' },
  // 5xx
  Unrecognized: { code: 500, enhanced: '5.5.2', text: 'Error: command not recognized' },
  LineTooLong: { code: 500, enhanced: '5.5.2', text: 'Error: line too long' },
  BareLfInCommand: { code: 500, enhanced: '5.5.2', text: 'Error: command line ended with a bare <LF>' },
  BadCharacters: { code: 500, enhanced: '5.5.2', text: 'Error: command contains invalid characters' },
  SyntaxError: {
    code: 501,
    enhanced: '5.5.4',
    text: (detail: string) => (detail ? `Syntax error (${detail})` : 'Syntax error'),
  },
  HeloSyntax: { code: 501, text: (verb: string) => `Syntax: ${verb} hostname` },
  MailCommandSyntax: { code: 501, enhanced: '5.5.4', text: 'Syntax: MAIL FROM:<address>' },
  RcptCommandSyntax: { code: 501, enhanced: '5.5.4', text: 'Syntax: RCPT TO:<address>' },
  BadSenderSyntax: { code: 501, enhanced: '5.1.7', text: 'Bad sender address syntax' },
  BadRecipientSyntax: { code: 501, enhanced: '5.1.3', text: 'Bad recipient address syntax' },
  BadParameterValue: { code: 501, enhanced: '5.5.4', text: (name: string) => `Bad ${name} parameter value` },
  BadBase64: { code: 501, enhanced: '5.5.2', text: 'Error: cannot decode response' },
  AuthCancelled: { code: 501, enhanced: '5.7.0', text: 'Authentication cancelled' },
  TlsAlreadyActive: { code: 503, enhanced: '5.5.1', text: 'Error: TLS already active' },
  AuthNotEnabled: { code: 503, enhanced: '5.5.1', text: 'Error: authentication not enabled' },
  AlreadyAuthenticated: { code: 503, enhanced: '5.5.1', text: 'Error: already authenticated' },
  NotImplemented: { code: 502, enhanced: '5.5.1', text: 'Error: command not implemented' },
  BadSequence: { code: 503, enhanced: '5.5.1', text: (detail: string) => `Error: ${detail}` },
  MechanismUnsupported: { code: 504, enhanced: '5.5.4', text: 'Unrecognized authentication type' },
  MustIssueStartTls: { code: 530, enhanced: '5.7.0', text: 'Must issue a STARTTLS command first' },
  RequireTlsNeedsTls: { code: 530, enhanced: '5.7.10', text: 'Error: REQUIRETLS needs a TLS session' },
  AuthRequired: { code: 530, enhanced: '5.7.0', text: 'Authentication required' },
  AuthFailed: { code: 535, enhanced: '5.7.8', text: 'Authentication credentials invalid' },
  SenderRejected: { code: 550, enhanced: '5.1.0', text: (path: string) => `Invalid sender ${path}` },
  RecipientRejected: { code: 550, enhanced: '5.1.1', text: (path: string) => `Invalid recipient ${path}` },
  MessageTooBig: {
    code: 552,
    enhanced: '5.3.4',
    text: 'Error: message size exceeds fixed maximum message size',
  },
  NonAsciiAddress: {
    code: 553,
    enhanced: '5.6.7',
    text: 'Error: non-ASCII address requires the SMTPUTF8 parameter',
  },
  XclientNotAuthorized: { code: 550, enhanced: '5.7.0', text: 'Error: insufficient authorization' },
  MessageRejected: { code: 550, enhanced: '5.7.1', text: 'Error: message rejected' },
  NoValidRecipients: { code: 554, enhanced: '5.5.1', text: 'Error: no valid recipients' },
  BareNewline: { code: 554, enhanced: '5.6.0', text: 'Error: message contains bare <CR> or <LF> characters' },
  DataLineTooLong: {
    code: 554,
    enhanced: '5.6.0',
    text: (limit: number) => `Error: message contains a line longer than ${limit} octets`,
  },
  UnknownParameter: { code: 555, enhanced: '5.5.4', text: (name: string) => `Unsupported parameter ${name}` },
} satisfies Record<string, ReplySpec>;

export type ReplyId = keyof typeof REPLIES;
type ArgsOf<T> = T extends { text: (...args: infer A) => unknown } ? A : [];

const cached = new Map<string, Reply>();
// A Map, not `REPLIES[id]`: one lookup site seeing every id would be a megamorphic property load.
const SPECS: ReadonlyMap<string, ReplySpec> = new Map(Object.entries(REPLIES));

/** Builds the reply `id` of the table, with the arguments its text takes. Static replies are shared. */
export function reply<K extends ReplyId>(id: K, ...args: ArgsOf<(typeof REPLIES)[K]>): Reply {
  const hit = cached.get(id);
  if (hit !== undefined) return hit;
  const spec = SPECS.get(id) as ReplySpec;
  if (typeof spec.text === 'string') {
    const shared = new Reply(spec.code, spec.text, spec.enhanced, id);
    cached.set(id, shared);
    return shared;
  }
  const text = (spec.text as (...a: unknown[]) => string | string[])(...args);
  return new Reply(spec.code, text, spec.enhanced, id);
}
