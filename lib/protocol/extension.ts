import type { Command } from './command';
import type { Protocol } from './protocol';
import type { Reply } from './reply';
import type { State } from './state';
import type { Envelope, EnvelopeAddress, DsnRecipient, MaybePromise } from './types';

/**
 * The extension API: what an ESMTP extension adds to the core, declared as data. The built-in
 * extensions (`extensions/*.ts`) use exactly this API, so they double as examples.
 */
export interface Extension {
  /** The EHLO keyword this extension is known by (`SIZE`); used to disable it. */
  readonly name: string;
  /** The EHLO line(s) to advertise, or undefined to stay silent for this session (e.g. before TLS). */
  ehlo?(protocol: Protocol): string | readonly string[] | undefined;
  /** New commands, by upper-case verb. */
  readonly verbs?: Readonly<Record<string, VerbDefinition>>;
  /** MAIL FROM parameters this extension accepts, by upper-case keyword. */
  readonly mailParameters?: Readonly<Record<string, ParameterHandler>>;
  /** RCPT TO parameters this extension accepts, by upper-case keyword. */
  readonly rcptParameters?: Readonly<Record<string, ParameterHandler>>;
}

export interface VerbDefinition {
  /** States the verb may run in; elsewhere it gets 503. Default: any state that reads commands. */
  readonly from?: readonly State[];
  /** May run before TLS when `requireTls` is set (RFC 3207 §4). Default false. */
  readonly allowedBeforeTls?: boolean;
  /**
   * Called for every line with this verb before any check, to claim the bytes that follow the line
   * (BDAT's chunk is consumed even when the command is then refused, RFC 3030 §2).
   */
  frame?(command: Command, protocol: Protocol): void;
  /** Takes SASL-sized lines (AUTH). Default false. */
  readonly longLine?: boolean;
  /**
   * Handles the command. Returns the reply, or `null` when the handler arranged for the reply to
   * come later (BDAT answers after its chunk has been read).
   */
  handle(command: Command, protocol: Protocol): MaybePromise<Reply | null>;
}

/** Where a parameter handler records what it parsed. */
export interface ParameterTarget {
  envelope: Envelope;
  /** RCPT parameters only: the recipient being added. */
  recipient?: EnvelopeAddress & { dsn?: DsnRecipient };
}

/** Validates one ESMTP parameter and records it; returns a Reply to refuse the command. */
export type ParameterHandler = (
  value: string | true,
  target: ParameterTarget,
  protocol: Protocol,
) => Reply | void;
