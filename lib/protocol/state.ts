/**
 * Everything that decides which command may run in which state lives here: the state enum and the
 * transition table. Reading the table is reading the protocol (RFC 5321 §3.3, §4.1.4).
 */
export enum State {
  /** Created, greeting not sent yet (`start()` not called). */
  Invalid = 'INVALID',
  /** Greeting sent; the client must identify itself with EHLO/HELO (LHLO in LMTP). */
  Establish = 'ESTABLISH',
  /** Identified, no mail transaction open: MAIL, AUTH, STARTTLS are possible. */
  Mail = 'MAIL',
  /** MAIL accepted; collecting recipients. */
  Rcpt = 'RCPT',
  /** After 354: message text until CRLF.CRLF. */
  Data = 'DATA',
  /** Between BDAT chunks of one transaction (RFC 3030). */
  Bdat = 'BDAT',
  /** A SASL exchange is under way: the next line is a response, never a command (RFC 4954 §4). */
  Auth = 'AUTH',
  /** 220 sent to STARTTLS; waiting for the driver to finish the TLS handshake (RFC 3207 §4.2). */
  StartTls = 'STARTTLS',
  /** QUIT answered or the session was closed: no further input is read. */
  Done = 'DONE',
}

/** What the dispatcher answers when a verb arrives in a state its rule does not list. */
export type SequenceError =
  'not-started' | 'helo-first' | 'need-mail' | 'need-rcpt' | 'nested-mail' | 'in-transaction' | 'in-bdat';

export interface CommandRule {
  /** States in which the verb may run. */
  from: readonly State[];
  /** The state after the command succeeded; `undefined`: the handler decides (or nothing changes). */
  to?: State;
}

const ANY_OPEN: readonly State[] = [State.Establish, State.Mail, State.Rcpt, State.Bdat];
const IDENTIFIED: readonly State[] = [State.Mail, State.Rcpt, State.Bdat];

/**
 * The transition table. Verbs absent from the table are unknown (500) unless an extension registers
 * them; extension verbs carry their own rule. Notes:
 * - HELO/EHLO/LHLO in any open state start over: they abort a transaction like RSET (§4.1.4).
 * - RSET keeps the client's identity: back to MAIL when identified, else ESTABLISH (§4.1.1.5).
 * - AUTH and STARTTLS are refused inside a transaction (RFC 4954 §4, Postfix).
 * - DATA needs at least one accepted recipient: the handler checks that (503 / 554).
 */
export const TRANSITIONS: Readonly<Record<string, CommandRule>> = {
  HELO: { from: ANY_OPEN, to: State.Mail },
  EHLO: { from: ANY_OPEN, to: State.Mail },
  LHLO: { from: ANY_OPEN, to: State.Mail },
  MAIL: { from: [State.Mail], to: State.Rcpt },
  RCPT: { from: [State.Rcpt], to: State.Rcpt },
  DATA: { from: [State.Rcpt], to: State.Data },
  BDAT: { from: [State.Rcpt, State.Bdat] },
  RSET: { from: ANY_OPEN },
  NOOP: { from: ANY_OPEN },
  QUIT: { from: ANY_OPEN, to: State.Done },
  HELP: { from: ANY_OPEN },
  VRFY: { from: ANY_OPEN },
  EXPN: { from: ANY_OPEN },
  AUTH: { from: [State.Mail], to: State.Auth },
  STARTTLS: { from: [State.Establish, State.Mail], to: State.StartTls },
};

/** Verbs that RFC 5321 and its extensions define but this server does not implement: 502. */
export const UNIMPLEMENTED_VERBS: ReadonlySet<string> = new Set([
  'EXPN',
  'TURN',
  'ETRN',
  'ATRN',
  'SEND',
  'SOML',
  'SAML',
]);

/** Which 503 text a verb gets in a state it is not allowed in. */
export function sequenceError(verb: string, state: State): SequenceError {
  if (state === State.Invalid) return 'not-started';
  if (state === State.Establish) return 'helo-first';
  if (state === State.Bdat) return 'in-bdat';
  if (verb === 'MAIL') return 'nested-mail';
  if (verb === 'RCPT') return 'need-mail';
  if (verb === 'DATA' || verb === 'BDAT') return state === State.Mail ? 'need-mail' : 'need-rcpt';
  return 'in-transaction';
}

export const SEQUENCE_TEXT: Readonly<Record<SequenceError, string>> = {
  'not-started': 'session not started (the server has not greeted yet)',
  'helo-first': 'send HELO/EHLO first',
  'need-mail': 'need MAIL command',
  'need-rcpt': 'need RCPT command',
  'nested-mail': 'nested MAIL command',
  'in-transaction': 'MAIL transaction in progress',
  'in-bdat': 'BDAT transaction in progress (send BDAT, or RSET to abandon it)',
};

/** True in the states where a command line (not message text or a SASL response) is expected. */
export function readsCommands(state: State): boolean {
  return state === State.Establish || state === State.Mail || state === State.Rcpt || state === State.Bdat;
}

/** Identified client (HELO/EHLO done). */
export function isIdentified(state: State): boolean {
  return IDENTIFIED.includes(state);
}

/** TRANSITIONS as a Map: a lookup per command by a verb string made at run time (no internalizing). */
export const TRANSITION_RULES: ReadonlyMap<string, CommandRule> = new Map(Object.entries(TRANSITIONS));
