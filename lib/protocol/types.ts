import type { MessageBody } from './body';
import type { Command } from './command';
import type { Reply } from './reply';
import type { State } from './state';

export type MaybePromise<T> = T | Promise<T>;

/** TLS facts the driver reports after a handshake. */
export interface TlsInfo {
  protocol?: string | null;
  cipher?: string | null;
  servername?: string | null;
  authorized?: boolean;
  /** Subject CN of a client certificate, when one was presented. */
  peerCommonName?: string | null;
}

/** Per-connection facts, readable by every hook. */
export interface SessionInfo {
  /** The server's own name (greeting, EHLO reply). */
  hostname: string;
  /** What the client gave to HELO/EHLO/LHLO (kept across RSET and transactions, cleared by STARTTLS). */
  helo: string | undefined;
  heloVerb: 'HELO' | 'EHLO' | 'LHLO' | undefined;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
  /** TLS is up (STARTTLS done or implicit TLS). */
  secure: boolean;
  tls: TlsInfo | undefined;
  /** The authenticated identity (AUTH), if any. */
  user: string | undefined;
  /** Messages accepted so far in this session. */
  transactionCount: number;
  /** Free for applications and extensions (e.g. PROXY protocol details, XCLIENT attributes). */
  extra: Record<string, unknown>;
}

/** An address with its ESMTP parameters (keys upper-cased; a flag without value is `true`). */
export interface EnvelopeAddress {
  address: string;
  params: Record<string, string | true>;
}

export interface DsnRecipient {
  notify?: Array<'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY'>;
  orcpt?: { addrType: string; address: string };
}

export interface Envelope {
  mailFrom: EnvelopeAddress;
  rcptTo: Array<EnvelopeAddress & { dsn?: DsnRecipient }>;
  /** BODY= of RFC 6152 / RFC 3030. */
  bodyType: '7BIT' | '8BITMIME' | 'BINARYMIME';
  /** SMTPUTF8 given on MAIL (RFC 6531). */
  smtputf8: boolean;
  /** SIZE= declared on MAIL (RFC 1870). */
  declaredSize?: number;
  /** RET= and ENVID= (RFC 3461). */
  dsn?: { ret?: 'FULL' | 'HDRS'; envid?: string };
  /** REQUIRETLS given on MAIL (RFC 8689). */
  requireTls: boolean;
  /** How the text arrives. */
  transfer: 'DATA' | 'BDAT';
}

/** What the message hook receives. */
export interface IncomingMessage {
  envelope: Envelope;
  session: SessionInfo;
  /** The message text, unstuffed, exactly as received, streamed chunk by chunk. */
  body: MessageBody;
  /** Fires when the client goes away or the message can no longer be accepted. */
  signal: AbortSignal;
  /**
   * `signal.aborted`, without making the signal: a hook that only checks it stays cheap (an
   * AbortController per message is a measurable share of a small message's cost).
   */
  readonly aborted?: boolean;
}

/**
 * The message hook's answer: a queue id (→ `250 2.0.0 Ok: queued as <id>`), a Reply (any code), or
 * nothing (accepted under a generated id). In LMTP mode, an array gives one answer per accepted
 * recipient, in order (RFC 2033 §4.2).
 */
export type MessageResult = string | Reply | void | undefined | Array<string | Reply>;

/** Credentials from a completed SASL exchange (RFC 4954). Secrets are never logged. */
export interface AuthCredentials {
  method: string;
  /** Authentication identity (PLAIN authcid, LOGIN user, CRAM-MD5 user, XOAUTH2 user). */
  username: string;
  /**
   * Authorization identity (PLAIN authzid), only when it differs from `username`. With
   * `lookupPassword` alone such a request fails (535); a validate hook decides it itself.
   */
  authzid?: string;
  /** PLAIN and LOGIN. */
  password?: string;
  /** XOAUTH2 bearer token. */
  accessToken?: string;
  /** True when `candidate` is the user's password: works for PLAIN, LOGIN and CRAM-MD5 alike. */
  validatePassword(candidate: string): boolean;
}

/** An authentication hook's answer: true/false, a custom Reply, or the identity to record. */
export type AuthResult = boolean | Reply | { user: string };

/** Every hook may return a value or a Promise of it; pipelined input waits for it, in order. */
export interface ProtocolHooks {
  /** Log lines (secrets are never passed). Default: none. */
  logHandler?: (message: string, state: State, session: SessionInfo) => void;
  /**
   * Called when the message text starts (after 354, or the first BDAT); `body` streams it. The
   * answer is sent after the end of the text. Throwing or rejecting → 451 4.3.0. Without this hook,
   * messages are read, discarded and accepted.
   */
  messageReceivedHandler?: (message: IncomingMessage) => MaybePromise<MessageResult>;
  /** MAIL FROM, after syntax and parameter checks. false → 550 5.1.0; a Reply is sent as it is. */
  validateSenderHandler?: (
    from: EnvelopeAddress,
    session: SessionInfo,
  ) => MaybePromise<boolean | Reply | void | undefined>;
  /** RCPT TO, after syntax, limit and parameter checks. false → 550 5.1.1; a Reply as it is. */
  validateRecipientHandler?: (
    to: EnvelopeAddress,
    session: SessionInfo,
    envelope: Envelope,
  ) => MaybePromise<boolean | Reply | void | undefined>;
  /** AUTH credentials. true → 235; false → 535 5.7.8. Without it (and without `lookupPassword`), AUTH is off. */
  validateAuthenticationHandler?: (
    credentials: AuthCredentials,
    session: SessionInfo,
  ) => MaybePromise<AuthResult>;
  /** A password table lookup; enough for PLAIN, LOGIN and CRAM-MD5 when no validate hook is set. */
  lookupPassword?: (username: string, session: SessionInfo) => MaybePromise<string | undefined | null>;
  /** Sees every command first; a Reply answers it instead of the normal handling. */
  smtpVerbFilter?: (command: Command, session: SessionInfo) => MaybePromise<Reply | void | undefined>;
  /**
   * STARTTLS was asked for. true → `220 Ready to start TLS`, then the driver upgrades and calls
   * `tlsStarted()`; a Reply (e.g. 454) refuses. Without this hook STARTTLS is not offered.
   */
  tlsHandler?: (session: SessionInfo) => MaybePromise<boolean | Reply>;
  /** SASL mechanisms to offer in EHLO. Default: those usable with the auth hooks that are set. */
  getAuthenticationMechanismsHandler?: (session: SessionInfo) => string[];
  /** Observation: every command line handled (SASL responses are not passed). */
  onCommand?: (command: Command, session: SessionInfo) => void;
  /** Observation: every reply sent. */
  onReply?: (reply: Reply, session: SessionInfo) => void;
}

export type BareNewlinePolicy = 'keep' | 'reject';

/** Behaviour flags and limits. Every one has a default; see `DEFAULTS` in protocol.ts. */
export interface ProtocolFlags {
  hostname?: string;
  /** Greeting text after the hostname. */
  ident?: string;
  /** Require `MAIL FROM:<path>` exactly (no blanks around `:`, brackets required). Default false. */
  rejectBrokenMailSyntax?: boolean;
  /** The same for RCPT. Default false. */
  rejectBrokenRcptSyntax?: boolean;
  /** Only NOOP, EHLO/HELO, STARTTLS, RSET and QUIT before TLS (RFC 3207 §4). Default false. */
  requireTls?: boolean;
  /** MAIL needs a successful AUTH first (530 5.7.0). Default false. */
  requireAuth?: boolean;
  /** Recipients per transaction; over → 452 4.5.3. Default 100 (RFC 5321 §4.5.3.1.8). -1: no limit. */
  maximumRecipients?: number;
  /** Command line length without CRLF; over → 500 5.5.2. Default 512 (RFC 5321 §4.5.3.1.4). */
  maximumLineLength?: number;
  /** AUTH lines and SASL responses. Default 12288 (RFC 4954 §4). */
  maximumAuthLineLength?: number;
  /** An unterminated line longer than this closes the session with 421. Default 256 KiB. */
  hardLineCap?: number;
  /** Message size in octets, advertised as SIZE; 0: no limit. Default 25 MiB. */
  maxMessageSize?: number;
  /** DATA text lines over this many octets (CRLF excluded) → 554 5.6.0 after the final dot; 0: no limit. Default 0. */
  maxDataLineLength?: number;
  /** Bare CR or LF inside message text: kept as received, or the message is refused with 554 5.6.0. Default 'keep'. */
  bareNewlines?: BareNewlinePolicy;
  /** A command line ended by a lone LF is accepted (as most servers do) or refused with 500. Default true. */
  allowBareLfInCommands?: boolean;
  /** Errors (4xx/5xx replies to commands) before the session is closed with 421 4.7.0. Default 20. 0: no limit. */
  maxErrors?: number;
  /** Failed AUTH attempts before 421 4.7.0. Default 3. */
  maxAuthFailures?: number;
  /** Commands allowed before the first HELO/EHLO; past it → 421. Default 20. 0: no limit. */
  maxCommandsBeforeHelo?: number;
  /** The session is already under TLS (implicit TLS, RFC 8314). Default false. */
  secure?: boolean;
  /** LMTP (RFC 2033): LHLO instead of HELO/EHLO, one reply per recipient after the text. Default false. */
  lmtp?: boolean;
  /** Body channel buffer before the core waits for the message consumer. Default 64 KiB. */
  bodyHighWaterMark?: number;
}
