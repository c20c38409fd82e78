/**
 * The MAIL FROM / RCPT TO argument: `FROM:<path> [SP parameters]`, RFC 5321 §4.1.2 and §3.3, with
 * RFC 6531 UTF-8 addresses. Pure string work; no reply is built here.
 */

import { isIPv4, isIPv6 } from './ip';

export { isIPv4, isIPv6 };

export interface ParsedPath {
  /** `local@domain` as sent (quoted local parts keep their quotes); `''` for the null path `<>`. */
  address: string;
  localPart: string;
  domain: string;
  /** Holds UTF-8 (RFC 6531). */
  nonAscii: boolean;
}

export type PathProblem =
  | 'command' // not `KEYWORD:` followed by something: the command itself is malformed
  | 'syntax' // a malformed path
  | 'null-not-allowed' // `<>` in RCPT
  | 'too-long' // RFC 5321 §4.5.3.1: local part 64, domain 255, path 256 octets
  | 'non-ascii'; // UTF-8 without SMTPUTF8 (RFC 6531 §3.3)

export type PathArgument =
  { ok: true; path: ParsedPath; parameters: string } | { ok: false; problem: PathProblem };

export interface PathOptions {
  /** `FROM` or `TO`. */
  keyword: 'FROM' | 'TO';
  /** Strict syntax: exactly `KEYWORD:<path>`; lenient (the default) allows blanks around `:` and a bare address. */
  strict: boolean;
  /** UTF-8 is allowed in the address (SMTPUTF8 in force). */
  utf8: boolean;
}

/** Parses the arguments of MAIL or RCPT. */
export function parsePathArgument(args: string, options: PathOptions): PathArgument {
  const keywordLength = options.keyword.length;
  if (!startsWithKeyword(args, options.keyword)) return { ok: false, problem: 'command' };
  let i = keywordLength;
  if (!options.strict) while (isBlank(args.charCodeAt(i))) i++;
  if (args.charCodeAt(i) !== 0x3a /* : */) return { ok: false, problem: 'command' };
  i++;
  if (!options.strict) while (isBlank(args.charCodeAt(i))) i++;

  let inner: string;
  let after: number;
  if (args.charCodeAt(i) === 0x3c /* < */) {
    const close = findClosingBracket(args, i + 1);
    if (close < 0) return { ok: false, problem: 'syntax' };
    inner = args.slice(i + 1, close);
    after = close + 1;
  } else {
    // A bare address (`MAIL FROM: a@b`), as Postfix accepts unless strict_rfc821_envelopes.
    if (options.strict) return { ok: false, problem: 'syntax' };
    let end = i;
    while (end < args.length && !isBlank(args.charCodeAt(end))) end++;
    inner = args.slice(i, end);
    if (inner === '') return { ok: false, problem: 'command' }; // `MAIL FROM:` and nothing
    after = end;
  }
  if (after < args.length && !isBlank(args.charCodeAt(after))) return { ok: false, problem: 'syntax' };
  const parameters = args.slice(after).trim();

  if (inner === '') {
    if (options.keyword === 'TO') return { ok: false, problem: 'null-not-allowed' };
    return { ok: true, path: { address: '', localPart: '', domain: '', nonAscii: false }, parameters };
  }
  const mailbox = parseMailbox(stripSourceRoute(inner), options.keyword === 'TO');
  if (typeof mailbox === 'string') return { ok: false, problem: mailbox };
  if (mailbox.nonAscii && !options.utf8) return { ok: false, problem: 'non-ascii' };
  return { ok: true, path: mailbox, parameters };
}

/** `args` starts with the upper-case ASCII `keyword`, in any case (no slice, no toUpperCase). */
function startsWithKeyword(args: string, keyword: string): boolean {
  if (args.length < keyword.length) return false;
  for (let i = 0; i < keyword.length; i++) {
    const c = args.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a ? c - 0x20 : c) !== keyword.charCodeAt(i)) return false;
  }
  return true;
}

/** Index of the `>` that closes a path, skipping quoted strings; -1 if none. */
function findClosingBracket(s: string, from: number): number {
  let quoted = false;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (quoted) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22) quoted = false;
    } else if (c === 0x22) quoted = true;
    else if (c === 0x3e /* > */) return i;
    else if (c === 0x3c) return -1;
  }
  return -1;
}

/** A source route (`@a,@b:user@d`) is accepted and dropped, RFC 5321 §4.1.2 and Appendix C. */
function stripSourceRoute(path: string): string {
  if (path.charCodeAt(0) !== 0x40 /* @ */) return path;
  const colon = path.indexOf(':');
  if (colon < 0) return path; // not a route; the mailbox check refuses it
  const hops = path.slice(0, colon).split(',');
  for (const hop of hops) if (!hop.startsWith('@') || !isDomain(hop.slice(1), true)) return '';
  return path.slice(colon + 1);
}

function parseMailbox(text: string, allowPostmaster: boolean): ParsedPath | PathProblem {
  if (text === '') return 'syntax';
  const nonAscii = NON_ASCII.test(text);
  if (octets(text, nonAscii) > 256 - 2) return 'too-long';
  if (allowPostmaster && text.length === 10 && text.toLowerCase() === 'postmaster') {
    return { address: text, localPart: text, domain: '', nonAscii: false };
  }
  let at = text.length - 1; // the last '@' (a quoted local part may hold others)
  while (at >= 0 && text.charCodeAt(at) !== 0x40) at--;
  if (at <= 0) return 'syntax';
  const localPart = text.slice(0, at);
  const domain = text.slice(at + 1);
  if (!isLocalPart(localPart) || !(isDomain(domain, nonAscii) || isAddressLiteral(domain))) return 'syntax';
  if (octets(localPart, nonAscii) > 64 || octets(domain, nonAscii) > 255) return 'too-long';
  return { address: text, localPart, domain, nonAscii };
}

/** Length in octets; ASCII text has one per character (no byteLength scan needed). */
function octets(text: string, nonAscii: boolean): number {
  return nonAscii ? Buffer.byteLength(text) : text.length;
}

// atext of RFC 5322 §3.2.3, plus UTF-8 (RFC 6531 §3.3). Dot-string: atoms joined by single dots.
const DOT_STRING =
  /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\uffff]+(\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\uffff]+)*$/;
// Quoted-string of RFC 5321 §4.1.2: qtextSMTP or a backslash pair.
const QUOTED_STRING = /^"([\x20\x21\x23-\x5b\x5d-\x7e\u0080-\uffff]|\\[\x20-\x7e])*"$/;
// A hostname label: letter or digit first and last, hyphens inside; U-labels when UTF-8 is in use.
const LABEL = /^[A-Za-z0-9_\u0080-\uffff]([A-Za-z0-9_\-\u0080-\uffff]*[A-Za-z0-9_\u0080-\uffff])?$/;
// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

function isLocalPart(s: string): boolean {
  return DOT_STRING.test(s) || QUOTED_STRING.test(s);
}

// The same rule as LABEL for a whole dotted ASCII name (labels of at most 63), tested at once.
const ASCII_DOMAIN =
  /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

function isDomain(s: string, utf8: boolean): boolean {
  if (s === '' || s.length > 255) return false;
  if (ASCII_DOMAIN.test(s)) return true; // the common case, without splitting into labels
  if (!utf8 && NON_ASCII.test(s)) return false;
  const labels = s.split('.');
  if (labels[labels.length - 1] === '') labels.pop(); // a trailing root dot is tolerated
  return labels.length > 0 && labels.every((label) => label.length <= 63 && LABEL.test(label));
}

/** `[192.0.2.1]`, `[IPv6:2001:db8::1]` or a general literal `[tag:content]`, RFC 5321 §4.1.3. */
function isAddressLiteral(s: string): boolean {
  if (!s.startsWith('[') || !s.endsWith(']')) return false;
  const body = s.slice(1, -1);
  if (isIPv4(body)) return true;
  const colon = body.indexOf(':');
  if (colon <= 0) return false;
  const tag = body.slice(0, colon);
  const content = body.slice(colon + 1);
  if (tag.toUpperCase() === 'IPV6') return isIPv6(content);
  return /^[A-Za-z0-9-]*[A-Za-z0-9]$/.test(tag) && /^[\x21-\x5a\x5e-\x7e]+$/.test(content);
}

/**
 * The ESMTP parameters after a path (RFC 5321 §4.1.2 `Mail-parameters`): `KEY[=VALUE]` separated by
 * spaces. Keys are returned upper-cased. Returns the keyword at fault for a malformed or repeated one.
 */
export function parseParameters(
  text: string,
): { ok: true; params: Map<string, string | true> } | { ok: false; keyword: string } {
  const params = new Map<string, string | true>();
  if (text === '') return { ok: true, params };
  for (const token of text.split(/[ \t]+/)) {
    const eq = token.indexOf('=');
    const key = (eq < 0 ? token : token.slice(0, eq)).toUpperCase();
    if (!/^[A-Z0-9][A-Z0-9-]*$/.test(key) || params.has(key)) return { ok: false, keyword: key || token };
    if (eq < 0) {
      params.set(key, true);
      continue;
    }
    const value = token.slice(eq + 1);
    // esmtp-value: printable US-ASCII except "=" and SP (RFC 5321), or UTF-8 (RFC 6531 §3.3).
    if (!/^[\x21-\x3c\x3e-\x7e\u0080-\uffff]+$/.test(value)) return { ok: false, keyword: key };
    params.set(key, value);
  }
  return { ok: true, params };
}

function isBlank(c: number): boolean {
  return c === 0x20 || c === 0x09;
}
