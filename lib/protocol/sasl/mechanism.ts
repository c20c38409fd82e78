import { timingSafeEqual } from 'node:crypto';
import type { AuthCredentials } from '../types';

/**
 * One SASL mechanism (RFC 4422) as a pure step function: the server's side of the exchange.
 * `start` gets the decoded initial response (`undefined` when the client sent none); every step
 * answers with a challenge to send (as a 334), the completed credentials, or a failure.
 */
export interface SaslMechanism {
  readonly name: string;
  /** Needs the user's password to verify (CRAM-MD5): offered only with `lookupPassword` or a validate hook. */
  readonly needsPasswordLookup?: boolean;
  /** Needs a token-aware validate hook (XOAUTH2): never offered with `lookupPassword` alone. */
  readonly needsValidateHook?: boolean;
  start(initialResponse: Buffer | undefined, context: SaslContext): SaslStep;
}

export interface SaslContext {
  hostname: string;
  /** Random bytes for challenges; injected so the core stays free of I/O. */
  randomBytes(size: number): Buffer;
  now(): number;
}

export type SaslStep =
  | { kind: 'challenge'; challenge: Buffer; next: (response: Buffer) => SaslStep }
  | { kind: 'done'; credentials: AuthCredentials; onFailure?: FailureStep }
  | { kind: 'malformed'; detail: string };

/** A mechanism that sends one more challenge after a failure (XOAUTH2's error JSON). */
export interface FailureStep {
  challenge: Buffer;
}

/** RFC 4648 base64 as RFC 4954 §4 wants it: the whole line, no whitespace, `=` alone for empty. */
export function decodeSaslBase64(text: string): Buffer | undefined {
  if (text === '=') return Buffer.alloc(0);
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  return Buffer.from(text, 'base64');
}

/**
 * Credentials holding a password. `passwordBytes` are the octets the client sent, when they need not
 * be UTF-8 (LOGIN): the password is checked against those, so two different byte strings never pass
 * for one another through a lossy decoding.
 */
export function passwordCredentials(
  method: string,
  username: string,
  password: string,
  authzid?: string,
  passwordBytes: Buffer = Buffer.from(password, 'utf8'),
): AuthCredentials {
  return {
    method,
    username,
    password,
    authzid,
    validatePassword: (candidate) => safeEqual(Buffer.from(candidate, 'utf8'), passwordBytes),
  };
}

/** Constant-time comparison of two byte strings of any length. */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) {
    timingSafeEqual(a, a); // spend the same time either way
    return false;
  }
  return timingSafeEqual(a, b);
}
