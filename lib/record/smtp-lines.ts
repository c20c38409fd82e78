/**
 * Small SMTP line helpers shared by the recorder and the replay client (internal).
 */
import { parseCommand } from '../protocol/command';

/** The redaction marker written in place of secrets. */
export const REDACTED = '<redacted>';

/** Final reply line: `250 text`, `250` alone. Continuation: `250-text`. */
const REPLY_LINE = /^([0-9]{3})(?:([ -])(.*))?$/s;
const ENHANCED_CODE = /^([245]\.[0-9]{1,3}\.[0-9]{1,3})(?=\s|$)/;

export interface ReplyLine {
  /** The reply code, or -1 when the line is not a well-formed reply line. */
  code: number;
  /** True for the last line of a reply (`250 ` as opposed to `250-`). Malformed lines are final. */
  final: boolean;
  /** The line without its terminator. */
  text: string;
}

/** Strips one trailing LF and one CR before it. */
export function stripTerminator(line: string): string {
  if (line.endsWith('\r\n')) return line.slice(0, -2);
  if (line.endsWith('\n')) return line.slice(0, -1);
  return line;
}

/** The terminator the line ended with: `'\r\n'`, `'\n'` or `''`. */
export function terminatorOf(line: Buffer): string {
  const n = line.length;
  if (n > 0 && line[n - 1] === 0x0a) return n > 1 && line[n - 2] === 0x0d ? '\r\n' : '\n';
  return '';
}

export function parseReplyLine(line: string): ReplyLine {
  const text = stripTerminator(line);
  const m = REPLY_LINE.exec(text);
  if (!m) return { code: -1, final: true, text };
  return { code: Number(m[1]), final: m[2] !== '-', text };
}

/** A complete (possibly multi-line) reply. */
export interface Reply {
  code: number;
  /** Lines without terminators, e.g. `['250-mx.example', '250 PIPELINING']`. */
  lines: string[];
}

/** The enhanced status code (RFC 3463) of a reply, from its first line that has one. */
export function enhancedCodeOf(reply: Reply): string | null {
  for (const line of reply.lines) {
    const m = ENHANCED_CODE.exec(line.slice(4));
    if (m) return m[1];
  }
  return null;
}

/** Splits a byte stream into lines (split after LF) and groups reply lines into replies. */
export class ReplyAssembler {
  private partial = '';
  private lines: string[] = [];

  /** Feeds bytes; returns the replies completed by them. */
  push(chunk: Buffer): Reply[] {
    const replies: Reply[] = [];
    let text = this.partial + chunk.toString('latin1');
    let nl: number;
    while ((nl = text.indexOf('\n')) !== -1) {
      const parsed = parseReplyLine(text.slice(0, nl + 1));
      text = text.slice(nl + 1);
      this.lines.push(parsed.text);
      if (parsed.final) {
        replies.push({ code: parsed.code, lines: this.lines });
        this.lines = [];
      }
    }
    this.partial = text;
    return replies;
  }

  /** True when bytes of an unfinished reply are buffered. */
  get pending(): boolean {
    return this.partial.length > 0 || this.lines.length > 0;
  }
}

/** What a complete client command line means for session tracking. */
export type CommandInfo =
  | {
      kind: 'auth';
      mechanism: string;
      /** `AUTH MECH` as written, without leading blanks and the initial response, one space between. */
      prefix: string;
      initialResponse: boolean;
    }
  | { kind: 'data' }
  | { kind: 'bdat'; size: number; last: boolean }
  | { kind: 'starttls' }
  | { kind: 'other' };

/** BDAT's arguments as CHUNKING reads them (lib/protocol/extensions/chunking.ts). */
const BDAT_ARGS = /^([0-9]{1,15})(?:[ \t]+(LAST))?$/i;

/**
 * Classifies a client command line (given with or without its terminator). The line is split as
 * the server splits it (`parseCommand`, lib/protocol/command.ts): blanks (space, tab) around the
 * line are skipped, so ` AUTH PLAIN …` and `auth\tplain …` are AUTH commands too.
 */
export function classifyCommand(line: string): CommandInfo {
  const { verb, args } = parseCommand(stripTerminator(line));
  switch (verb) {
    case 'AUTH': {
      // As the AUTH extension reads its arguments: mechanism, then an optional initial response.
      const [mechanism = '', initial] = args.split(/[ \t]+/);
      if (mechanism === '') return { kind: 'other' };
      const written = /^[ \t]*([^ \t]+)/.exec(line)![1];
      return {
        kind: 'auth',
        prefix: `${written} ${mechanism}`,
        mechanism: mechanism.toUpperCase(),
        initialResponse: initial !== undefined,
      };
    }
    case 'DATA':
      return args === '' ? { kind: 'data' } : { kind: 'other' };
    case 'STARTTLS':
      return args === '' ? { kind: 'starttls' } : { kind: 'other' };
    case 'BDAT': {
      const bdat = BDAT_ARGS.exec(args);
      if (bdat) return { kind: 'bdat', size: Number(bdat[1]), last: bdat[2] !== undefined };
      return { kind: 'other' };
    }
    default:
      return { kind: 'other' };
  }
}

/**
 * `AUTH <mechanism>` and the blanks after it, at the start of a line (leading blanks allowed, as
 * the server skips them), followed by what decides the line: a character that starts an initial
 * response (`ir`), or nothing yet.
 */
const AUTH_HEAD = /^[ \t]*(AUTH)[ \t]+([^ \t\r\n]+)(?:[ \t]+([^ \t\r\n]|\r(?!\n|$))?)?/i;

/**
 * For a command line that is still incomplete: could it turn out to be an `AUTH <mech> <initial
 * response>` line? `'no'` once it cannot; `'ir'` as soon as a character of an initial response has
 * arrived (a CR counts unless an LF follows it); `'maybe'` while undecided. Blanks are not secret: `AUTH PLAIN ` stays undecided until
 * what follows the blank arrives (the server ignores trailing blanks, so `AUTH PLAIN \r\n` has no
 * initial response).
 */
export function authPrefixState(head: string): 'no' | 'maybe' | 'ir' {
  let verbAt = 0;
  while (verbAt < head.length && isBlank(head.charCodeAt(verbAt))) verbAt++;
  const verb = head.slice(verbAt, verbAt + 4);
  if (!'AUTH'.startsWith(verb.toUpperCase())) return 'no';
  if (head.length <= verbAt + 4) return 'maybe';
  if (!isBlank(head.charCodeAt(verbAt + 4))) return 'no';
  return AUTH_HEAD.exec(head)?.[3] !== undefined ? 'ir' : 'maybe';
}

/**
 * The `AUTH MECH` part of a line known to be (or to start like) an AUTH command, leading blanks
 * dropped and one space between the words; `''` when not even `AUTH` has arrived.
 */
export function authPrefixOf(head: string): string {
  const m = AUTH_HEAD.exec(head);
  if (m) return `${m[1]} ${m[2]}`;
  return head.replace(/^[ \t]+/, '').slice(0, 4);
}

function isBlank(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

/** True for `.` + CRLF or LF: the end of a DATA body (lenient about a bare LF). */
export function isBodyTerminator(line: Buffer): boolean {
  return (
    (line.length === 2 && line[0] === 0x2e && line[1] === 0x0a) ||
    (line.length === 3 && line[0] === 0x2e && line[1] === 0x0d && line[2] === 0x0a)
  );
}

/** True for `*` + optional CR + LF: the client cancelling a SASL exchange (not a secret). */
export function isSaslCancel(line: Buffer): boolean {
  const s = line.toString('latin1');
  return s === '*\r\n' || s === '*\n' || s === '*';
}
