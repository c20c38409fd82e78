import type { Envelope, SessionInfo } from './types';

export interface ReceivedOptions {
  /** The queue id to name in the `id` clause. */
  id?: string;
  /** Defaults to now. */
  date?: Date;
  /** Name the recipient in a `for` clause when there is exactly one (RFC 5321 §4.4). Default true. */
  forRecipient?: boolean;
}

/**
 * A `Received:` trace header (RFC 5321 §4.4, RFC 5322 §3.6.7) for applications that relay a
 * message: `from <helo> (<rdns/ip>) by <us> with <protocol> id <id> for <rcpt>; <date>`, folded,
 * CRLF-terminated. The protocol keyword follows RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA, LMTP…).
 * The core never adds it: stored bytes stay exactly as received.
 */
export function buildReceivedHeader(
  session: SessionInfo,
  envelope: Envelope,
  options: ReceivedOptions = {},
): string {
  const helo = session.helo ?? 'unknown';
  // A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`: that is an IPv4 literal.
  const address = (session.remoteAddress ?? 'unknown').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  const literal = address.includes(':') ? `[IPv6:${sanitize(address)}]` : `[${sanitize(address)}]`;
  const clauses = [
    `from ${sanitize(helo)} (${literal})`,
    `by ${sanitize(session.hostname)}`,
    `with ${withKeyword(session, envelope)}`,
  ];
  if (session.tls?.protocol)
    clauses.push(`(${session.tls.protocol}${session.tls.cipher ? ` cipher=${session.tls.cipher}` : ''})`);
  if (options.id) clauses.push(`id ${sanitize(options.id)}`);
  if ((options.forRecipient ?? true) && envelope.rcptTo.length === 1)
    clauses.push(`for <${envelope.rcptTo[0].address}>`);
  return `Received: ${clauses.join('\r\n\t')};\r\n\t${rfc5322Date(options.date ?? new Date())}\r\n`;
}

function withKeyword(session: SessionInfo, envelope: Envelope): string {
  if (session.heloVerb === 'LHLO') return 'LMTP';
  if (session.heloVerb !== 'EHLO') return 'SMTP';
  const base = envelope.smtputf8 ? 'UTF8SMTP' : 'ESMTP';
  return `${base}${session.secure ? 'S' : ''}${session.user !== undefined ? 'A' : ''}`;
}

function sanitize(text: string): string {
  return text.replace(/[\s()\\;]/g, '_');
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 §3.3 date-time in UTC: `Wed, 25 Nov 2026 03:40:00 +0000`. */
export function rfc5322Date(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[date.getUTCDay()]}, ${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} +0000`;
}
