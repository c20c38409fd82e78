/**
 * Drives a sans-I/O `Protocol` the way a stream would: bytes in, `run()` until nothing is pending,
 * replies out. Records every delivered message byte for byte, so specs can check what was stored,
 * not only the reply codes.
 */
import { Protocol, type ProtocolOptions } from '../../lib/protocol/protocol';
import type { Envelope, IncomingMessage, MessageResult } from '../../lib/protocol/types';
import { parseReplies as parseSentReplies } from './helpers';

export interface Delivered {
  envelope: Envelope;
  bytes: Buffer;
}

export interface ParsedReply {
  code: number;
  /** Text of each line after `NNN-` / `NNN `. */
  lines: string[];
  /** The reply as sent, lines joined with CRLF (no final CRLF). */
  raw: string;
}

export interface Session {
  p: Protocol;
  /** Everything the server sent, greeting included. */
  transcript: string;
  /** Messages handed to the message hook whose text was read to the end without error. */
  delivered: Delivered[];
  /** Errors the message hook saw while reading text (size limit, bare newline, reset…). */
  bodyErrors: unknown[];
  /** Actions returned by `run()` (starttls/close), in order. */
  actions: Array<'starttls' | 'close'>;
}

export type Hook = (message: IncomingMessage) => Promise<MessageResult> | MessageResult;

/**
 * A session with `hostname: 'mx.test'` whose message hook reads the whole body and records it
 * (unless `options.messageReceivedHandler` is given; pass `null` for no hook at all).
 */
export function open(
  options: Omit<ProtocolOptions, 'messageReceivedHandler'> & { messageReceivedHandler?: Hook | null } = {},
): Session {
  const { messageReceivedHandler, ...rest } = options;
  const session: Session = {
    p: undefined as unknown as Protocol,
    transcript: '',
    delivered: [],
    bodyErrors: [],
    actions: [],
  };
  const hook: Hook | undefined =
    messageReceivedHandler === null
      ? undefined
      : (messageReceivedHandler ??
        (async (message) => {
          try {
            const bytes = await message.body.buffer();
            session.delivered.push({ envelope: clone(message.envelope), bytes });
          } catch (error) {
            session.bodyErrors.push(error);
            throw error;
          }
          return `ID${session.delivered.length}`;
        }));
  session.p = new Protocol({ hostname: 'mx.test', ...rest, messageReceivedHandler: hook });
  session.transcript += session.p.start().render(session.p.enhancedStatusCodes);
  return session;
}

/** Runs the protocol until nothing is pending; returns what it sent. */
export async function pump(session: Session): Promise<string> {
  let text = '';
  for (;;) {
    const result = session.p.run();
    if (result.output !== null) text += result.output.toString('utf8');
    if (result.action !== null) session.actions.push(result.action);
    if (result.pending === null) break;
    await result.pending;
  }
  session.transcript += text;
  return text;
}

/** Feeds each piece (one `receive` per piece, `run` after each) and returns the replies they produced. */
export async function send(session: Session, ...pieces: Array<string | Buffer>): Promise<string> {
  let text = '';
  for (const piece of pieces) {
    session.p.receive(typeof piece === 'string' ? Buffer.from(piece, 'latin1') : piece);
    text += await pump(session);
  }
  return text;
}

/** helpers.ts's strict reply parser, with each line's text after `NNN-` / `NNN ` and the raw reply. */
export function parseReplies(text: string): ParsedReply[] {
  return parseSentReplies(text).map(({ code, lines }) => ({
    code,
    lines: lines.map((line) => line.slice(4)),
    raw: lines.join('\r\n'),
  }));
}

/** Reply codes of `text`, in order. */
export function codes(text: string): number[] {
  return parseReplies(text).map((r) => r.code);
}

/** EHLO keywords (the lines after the first) from an EHLO reply. */
export function ehloKeywords(text: string): string[] {
  const ehlo = parseReplies(text).find((r) => r.code === 250 && r.lines.length > 0);
  return ehlo === undefined ? [] : ehlo.lines.slice(1);
}

/** The hello, MAIL and RCPT lines of an ordinary transaction (shared with helpers.ts). */
export { envelope as envelopeLines, prng } from './helpers';

/** Bytes of a latin1 string (one byte per char, so 8-bit and binary content stays exact). */
export function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** A Buffer that owns its memory (not from the shared pool), for zero-copy checks. */
export function ownBuffer(text: string | Buffer): Buffer {
  const source = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
  const own = Buffer.alloc(source.length);
  source.copy(own);
  return own;
}

/**
 * Reference model of DATA text (RFC 5321 §4.5.2), written as plainly as possible: lines end with
 * CRLF only; a line that is exactly "." ends the text; a leading dot is removed from every other
 * line. Returns the text and the bytes after the final dot, or undefined while incomplete.
 */
export function referenceDotText(input: Buffer): { text: Buffer; rest: Buffer } | undefined {
  const s = input.toString('latin1');
  let out = '';
  let i = 0;
  while (i < s.length) {
    if (s.startsWith('.\r\n', i))
      return { text: Buffer.from(out, 'latin1'), rest: Buffer.from(s.slice(i + 3), 'latin1') };
    if (s[i] === '.') i++;
    const eol = s.indexOf('\r\n', i);
    if (eol < 0) return undefined;
    out += s.slice(i, eol + 2);
    i = eol + 2;
  }
  return undefined;
}

function clone(envelope: Envelope): Envelope {
  return JSON.parse(JSON.stringify(envelope)) as Envelope;
}
