/**
 * Shared drivers for the protocol specs: feed bytes to a sans-I/O `Protocol` the way a stream does
 * (`receive`, then `run()` until nothing is pending) and pick the replies apart.
 */
import { Protocol, type ProtocolOptions } from '../../lib/protocol/protocol';
import type { Envelope, IncomingMessage, MessageResult, SessionInfo } from '../../lib/protocol/types';

export const HOST = 'mx.test';

/** A started Protocol for `mx.test`; the greeting is not part of any output below. */
export function make(options: ProtocolOptions = {}): Protocol {
  const p = new Protocol({ hostname: HOST, ...options });
  p.start();
  return p;
}

export type Input = string | Buffer | Array<string | Buffer>;

export interface Outcome {
  /** Everything sent, in order. */
  text: string;
  /** The actions `run()` returned, in order. */
  actions: Array<'starttls' | 'close'>;
}

/** Runs until no hook is pending; returns the output and actions of that stretch. */
export async function drain(p: Protocol): Promise<Outcome> {
  let text = '';
  const actions: Outcome['actions'] = [];
  for (let rounds = 0; ; rounds++) {
    if (rounds > 100000) throw new Error('run() never settles');
    const r = p.run();
    if (r.output !== null) text += r.output.toString('utf8');
    if (r.action !== null) actions.push(r.action);
    if (r.pending === null) return { text, actions };
    await r.pending;
  }
}

/** Feeds each chunk (`receive` then `run` until settled) and collects output and actions. */
export async function feed(p: Protocol, input: Input): Promise<Outcome> {
  const chunks = Array.isArray(input) ? input : [input];
  const out: Outcome = { text: '', actions: [] };
  for (const chunk of chunks) {
    p.receive(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
    const step = await drain(p);
    out.text += step.text;
    out.actions.push(...step.actions);
  }
  return out;
}

/** All output text produced by `input`. */
export async function session(p: Protocol, input: Input): Promise<string> {
  return (await feed(p, input)).text;
}

export interface ParsedReply {
  code: number;
  /** Each line as sent, without CRLF. */
  lines: string[];
}

/** Splits output into replies (multi-line replies kept together); throws on a malformed line. */
export function parseReplies(text: string): ParsedReply[] {
  if (text !== '' && !text.endsWith('\r\n'))
    throw new Error(`output not CRLF-terminated: ${JSON.stringify(text)}`);
  const out: ParsedReply[] = [];
  let lines: string[] = [];
  for (const line of text.split('\r\n').slice(0, -1)) {
    const match = /^([2-5]\d\d)([ -])/.exec(line);
    if (match === null || /[\r\n]/.test(line))
      throw new Error(`malformed reply line ${JSON.stringify(line)}`);
    if (lines.length > 0 && !lines[0].startsWith(match[1])) throw new Error(`code changed inside ${line}`);
    lines.push(line);
    if (match[2] === ' ') {
      out.push({ code: Number(match[1]), lines });
      lines = [];
    }
  }
  if (lines.length > 0) throw new Error(`unterminated multi-line reply ${JSON.stringify(lines)}`);
  return out;
}

/** Reply codes of `text`, one per reply. */
export function codes(text: string): number[] {
  return parseReplies(text).map((r) => r.code);
}

/** The last line of each reply (a one-line reply is the whole reply). */
export function finals(text: string): string[] {
  return parseReplies(text).map((r) => r.lines[r.lines.length - 1]);
}

/** The output as lines without CRLF. */
export function lines(text: string): string[] {
  return text.split('\r\n').slice(0, -1);
}

export const b64 = (text: string | Buffer): string =>
  (typeof text === 'string' ? Buffer.from(text, 'utf8') : text).toString('base64');

/** The base64 PLAIN message `authzid NUL user NUL password`. */
export const plain = (user: string, password: string, authzid = ''): string =>
  b64(`${authzid}\0${user}\0${password}`);

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** EHLO, MAIL and RCPT lines of an ordinary transaction. */
export function envelope(from = 'a@x.test', to: string[] = ['b@y.test'], hello = 'EHLO c.test'): string {
  return `${hello}\r\nMAIL FROM:<${from}>\r\n${to.map((t) => `RCPT TO:<${t}>\r\n`).join('')}`;
}

export interface Received {
  envelope: Envelope;
  body: Buffer;
  /** Copied when the hook ran: the live session object changes afterwards. */
  session: Pick<SessionInfo, 'helo' | 'heloVerb' | 'user' | 'secure' | 'transactionCount'>;
}

/** A message hook that reads the whole body and records it, answering `Q<n>`. */
export function recorder(answer?: (n: number) => MessageResult): {
  messages: Received[];
  hook: (message: IncomingMessage) => Promise<MessageResult>;
} {
  const messages: Received[] = [];
  const hook = async (message: IncomingMessage): Promise<MessageResult> => {
    const { helo, heloVerb, user, secure, transactionCount } = message.session;
    const env = JSON.parse(JSON.stringify(message.envelope)) as Envelope;
    const body = await message.body.buffer();
    messages.push({ envelope: env, body, session: { helo, heloVerb, user, secure, transactionCount } });
    return answer ? answer(messages.length) : `Q${messages.length}`;
  };
  return { messages, hook };
}

/** Deterministic PRNG (mulberry32) for reproducible "random" delays and splits. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
