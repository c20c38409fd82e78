import { isUtf8 } from 'node:buffer';

/** One command line, split into an upper-cased verb and the rest (MailHog's `Command`). */
export interface Command {
  /** First token, upper-cased (`MAIL`). Empty for an empty line. */
  readonly verb: string;
  /** Everything after the verb and the whitespace that follows it, trailing whitespace removed. */
  readonly args: string;
  /** The whole line without its line ending. */
  readonly orig: string;
}

/**
 * Splits a command line (RFC 5321 §4.1.1: verb, SP, arguments). Unlike MailHog, leading and
 * trailing white space and tabs between the verb and its arguments are tolerated (D12).
 */
export function parseCommand(line: string): Command {
  const orig = line;
  let start = 0;
  let end = line.length;
  while (start < end && isBlank(line.charCodeAt(start))) start++;
  while (end > start && isBlank(line.charCodeAt(end - 1))) end--;
  let verbEnd = start;
  while (verbEnd < end && !isBlank(line.charCodeAt(verbEnd))) verbEnd++;
  let argsStart = verbEnd;
  while (argsStart < end && isBlank(line.charCodeAt(argsStart))) argsStart++;
  return { verb: upperAscii(line.slice(start, verbEnd)), args: line.slice(argsStart, end), orig };
}

/** `text.toUpperCase()`, skipped when there is no lower-case ASCII letter (verbs usually are upper case). */
export function upperAscii(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c >= 0x61 && c <= 0x7a) || c > 0x7f) return text.toUpperCase();
  }
  return text;
}

function isBlank(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

export type LineProblem = 'nul' | 'control' | 'bad-utf8';

/** A decoded command line, or why its bytes are not acceptable as one. */
export type DecodedLine = { text: string; nonAscii: boolean } | { problem: LineProblem };

/**
 * Turns the bytes of one command line (line ending already removed) into text, once per line.
 * NUL, bare CR and other control characters are refused (D17); bytes above 0x7F must be valid
 * UTF-8 (RFC 6531 permits UTF-8 only there), and are flagged so that the caller can allow them
 * only where SMTPUTF8 applies.
 */
export function decodeLine(bytes: Buffer): DecodedLine {
  const latin1 = bytes.toString('latin1');
  if (!UNUSUAL_BYTE.test(latin1)) return { text: latin1, nonAscii: false };
  let nonAscii = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if ((c >= 0x20 && c < 0x7f) || c === 0x09) continue;
    if (c === 0) return { problem: 'nul' };
    if (c < 0x20 || c === 0x7f) return { problem: 'control' };
    nonAscii = true;
  }
  if (!isUtf8(bytes)) return { problem: 'bad-utf8' };
  return { text: bytes.toString('utf8'), nonAscii };
}

// Anything but printable ASCII and tab: the rare case, checked byte by byte only when present.
// eslint-disable-next-line no-control-regex
const UNUSUAL_BYTE = /[\x00-\x08\x0a-\x1f\x7f-\xff]/;

/** Looks like the first line of an HTTP request: a cross-protocol attempt (Postfix, smtp-server). */
export function isHttpRequestLine(verb: string, args: string): boolean {
  return args.length >= 7 && HTTP_VERBS.has(verb) && / HTTP\/\d(\.\d)?$/i.test(args);
}

const HTTP_VERBS = new Set(['GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'CONNECT', 'PATCH', 'TRACE']);
