/**
 * Small SMTP line helpers shared by the recorder and the replay client (internal).
 */

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
      /** `AUTH MECH` as written, without the initial response. */ prefix: string;
      initialResponse: boolean;
    }
  | { kind: 'data' }
  | { kind: 'bdat'; size: number; last: boolean }
  | { kind: 'starttls' }
  | { kind: 'other' };

const AUTH_LINE = /^(AUTH[ \t]+([^ \t\r\n]+))(?:([ \t]+)([^\r\n]*))?\r?\n?$/i;
const BDAT_LINE = /^BDAT[ \t]+([0-9]{1,15})(?:[ \t]+(LAST))?[ \t]*\r?\n?$/i;

/** Classifies a client command line (given with or without its terminator). */
export function classifyCommand(line: string): CommandInfo {
  const auth = AUTH_LINE.exec(line);
  if (auth) {
    return {
      kind: 'auth',
      prefix: auth[1],
      mechanism: auth[2].toUpperCase(),
      initialResponse: auth[3] !== undefined,
    };
  }
  const bare = stripTerminator(line).trim().toUpperCase();
  if (bare === 'DATA') return { kind: 'data' };
  if (bare === 'STARTTLS') return { kind: 'starttls' };
  const bdat = BDAT_LINE.exec(line);
  if (bdat) return { kind: 'bdat', size: Number(bdat[1]), last: bdat[2] !== undefined };
  return { kind: 'other' };
}

/**
 * For a command line that is still incomplete: could it turn out to be an `AUTH <mech> <initial
 * response>` line? `'no'` once it cannot; `'ir'` as soon as an initial response has begun (the
 * whitespace after the mechanism is enough); `'maybe'` while undecided.
 */
export function authPrefixState(head: string): 'no' | 'maybe' | 'ir' {
  const upper = head.slice(0, 4).toUpperCase();
  if (!'AUTH'.startsWith(upper)) return 'no';
  if (head.length <= 4) return 'maybe';
  if (!/^AUTH[ \t]/i.test(head)) return 'no';
  return /^AUTH[ \t]+[^ \t\r\n]+[ \t]/i.test(head) ? 'ir' : 'maybe';
}

/** The `AUTH MECH` part of a line known to be (or to start like) an AUTH command. */
export function authPrefixOf(head: string): string {
  const m = /^(AUTH)[ \t]+([^ \t\r\n]*)/i.exec(head);
  return m && m[2] ? `${m[1]} ${m[2]}` : head.slice(0, 4);
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
