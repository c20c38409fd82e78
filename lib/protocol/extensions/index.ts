import type { Extension } from '../extension';
import { auth } from './auth';
import { chunking } from './chunking';
import { dsn } from './dsn';
import { binaryMime, eightBitMime } from './eight-bit-mime';
import { enhancedStatusCodes } from './enhanced-status-codes';
import { limits } from './limits';
import { pipelining } from './pipelining';
import { requireTls } from './require-tls';
import { size } from './size';
import { smtpUtf8 } from './smtputf8';
import { startTls } from './starttls';
import { xclient, xforward } from './xclient';

export {
  auth,
  chunking,
  dsn,
  binaryMime,
  eightBitMime,
  enhancedStatusCodes,
  limits,
  pipelining,
  requireTls,
  size,
  smtpUtf8,
  startTls,
  xclient,
  xforward,
};
export type { AllowList } from './xclient';

/**
 * Extensions on by default, in EHLO order (MailHog's order first: PIPELINING, STARTTLS, AUTH).
 * STARTTLS and AUTH advertise themselves only when their hooks are set. REQUIRETLS and LIMITS are
 * opt-in: pass them in `extensions`.
 */
export const BUILT_IN_EXTENSIONS: readonly Extension[] = [
  pipelining,
  startTls,
  auth,
  size,
  eightBitMime,
  smtpUtf8,
  enhancedStatusCodes,
  chunking,
  binaryMime,
  dsn,
];
