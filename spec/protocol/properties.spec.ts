import fc from 'fast-check';
import { Reply } from '../../lib/protocol/reply';
import type { IncomingMessage, MessageResult } from '../../lib/protocol/types';
import { bytes, open, parseReplies, referenceDotText, send, type Session } from './drive';

/** Cuts `input` into pieces whose sizes cycle through `sizes`. */
function cut(input: Buffer, sizes: number[]): Buffer[] {
  const pieces: Buffer[] = [];
  let i = 0;
  for (let at = 0; at < input.length; i++) {
    const size = sizes.length === 0 ? input.length : sizes[i % sizes.length];
    pieces.push(input.subarray(at, at + size));
    at += size;
  }
  return pieces;
}

/** Dot-stuffing as a client does it (RFC 5321 §4.5.2): a dot is added to every line starting with one. */
function stuff(text: Buffer): Buffer {
  const s = text.toString('latin1');
  return bytes((s.startsWith('.') ? '.' : '') + s.replace(/\r\n\./g, '\r\n..'));
}

// ---- Arbitraries ---------------------------------------------------------------------------------

/** A line of message text: random bytes, often starting with dots, sometimes with bare CR or LF. */
const lineArb = fc
  .tuple(
    fc.constantFrom('', '', '.', '..', '.\r', '\n.'),
    fc.uint8Array({ maxLength: 40 }),
    fc.constantFrom('', '\r', '.', '\n'),
  )
  .map(([head, body, tail]) => Buffer.concat([bytes(head), Buffer.from(body), bytes(tail)]));

const addressArb = fc
  .tuple(fc.stringMatching(/^[a-z0-9]{1,8}$/), fc.constantFrom('x.test', 'y.example', 'z.test'))
  .map(([local, domain]) => `${local}@${domain}`);

interface MessageSpec {
  from: string;
  to: string[];
  /** The text as the hook must receive it. */
  text: Buffer;
  /** DATA, or BDAT with these chunk sizes. */
  transfer: 'DATA' | number[];
  before: 'none' | 'NOOP' | 'RSET';
}

const messageArb: fc.Arbitrary<MessageSpec> = fc.record({
  from: fc.oneof(addressArb, fc.constant('')),
  to: fc.array(addressArb, { minLength: 1, maxLength: 3 }),
  text: fc
    .array(lineArb, { maxLength: 8 })
    .map((lines) =>
      lines.length === 0 ? Buffer.alloc(0) : Buffer.concat(lines.flatMap((l) => [l, bytes('\r\n')])),
    ),
  transfer: fc.oneof(
    fc.constant('DATA' as const),
    fc.array(fc.integer({ min: 0, max: 60 }), { maxLength: 4 }),
  ),
  before: fc.constantFrom('none' as const, 'NOOP' as const, 'RSET' as const),
});

/** The client's bytes for a session delivering `messages`. */
function sessionBytes(messages: MessageSpec[]): Buffer {
  const parts: Buffer[] = [bytes('EHLO client.test\r\n')];
  for (const m of messages) {
    if (m.before !== 'none') parts.push(bytes(`${m.before}\r\n`));
    parts.push(bytes(`MAIL FROM:<${m.from}>\r\n${m.to.map((t) => `RCPT TO:<${t}>\r\n`).join('')}`));
    if (m.transfer === 'DATA') {
      parts.push(bytes('DATA\r\n'), stuff(m.text), bytes('.\r\n'));
      continue;
    }
    // BDAT: the text cut into chunks of the given sizes (the last one takes what is left, LAST).
    let at = 0;
    for (const size of m.transfer) {
      const chunk = m.text.subarray(at, at + size);
      at += chunk.length;
      parts.push(bytes(`BDAT ${chunk.length}\r\n`), chunk);
    }
    const rest = m.text.subarray(at);
    parts.push(bytes(`BDAT ${rest.length} LAST\r\n`), rest);
  }
  parts.push(bytes('QUIT\r\n'));
  return Buffer.concat(parts);
}

const sizesArb = fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 });

// ---- Properties ----------------------------------------------------------------------------------

describe('properties', () => {
  it('a valid session gives the same replies and stored bytes whole or cut into random pieces', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(messageArb, { minLength: 1, maxLength: 3 }),
        sizesArb,
        async (messages, sizes) => {
          const input = sessionBytes(messages);
          const whole = open({ now: () => 0 });
          await send(whole, input);
          const split = open({ now: () => 0 });
          await send(split, ...cut(input, sizes));

          expect(split.transcript).toBe(whole.transcript);
          expect(split.delivered.map((d) => d.bytes.toString('latin1'))).toEqual(
            whole.delivered.map((d) => d.bytes.toString('latin1')),
          );
          // And both are right: every message stored byte for byte, with its envelope.
          expect(whole.delivered).toHaveLength(messages.length);
          messages.forEach((m, i) => {
            const got = whole.delivered[i];
            expect(got.bytes.equals(m.text)).toBe(true);
            expect(got.envelope.mailFrom.address).toBe(m.from);
            expect(got.envelope.rcptTo.map((r) => r.address)).toEqual(m.to);
            expect(got.envelope.transfer).toBe(m.transfer === 'DATA' ? 'DATA' : 'BDAT');
          });
          const replies = parseReplies(whole.transcript);
          expect(replies.filter((r) => r.code >= 400)).toEqual([]);
          expect(replies[replies.length - 1].raw).toBe('221 2.0.0 Bye');
          expect(whole.actions).toEqual(['close']);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('dot-stuffed text round-trips through the reference model', () => {
    fc.assert(
      fc.property(fc.array(lineArb, { maxLength: 10 }), (lines) => {
        const text = Buffer.concat(lines.flatMap((l) => [l, bytes('\r\n')]));
        const ref = referenceDotText(Buffer.concat([stuff(text), bytes('.\r\n')]));
        expect(ref?.text.equals(text)).toBe(true);
        expect(ref?.rest.length).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  /** Tokens that walk the protocol into every state, mixed with raw bytes. */
  const tokenArb = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.constantFrom(
        'EHLO c.test\r\n',
        'HELO c.test\r\n',
        'MAIL FROM:<a@x.test>\r\n',
        'MAIL FROM:<a@x.test> BODY=BINARYMIME SIZE=10\r\n',
        'RCPT TO:<b@y.test>\r\n',
        'DATA\r\n',
        '\r\n.\r\n',
        '.\r\n',
        '..\r\n',
        '\r\n',
        '\n',
        '\r',
        'BDAT 3\r\n',
        'BDAT 0 LAST\r\n',
        'BDAT 5 LAST\r\n',
        'RSET\r\n',
        'NOOP\r\n',
        'AUTH PLAIN\r\n',
        'AUTH LOGIN\r\n',
        'AUTH PLAIN AHUAcA==\r\n',
        'dXNlcg==\r\n',
        '*\r\n',
        'STARTTLS\r\n',
        'VRFY x\r\n',
        'HELP\r\n',
        'GET / HTTP/1.1\r\n',
        'QUIT\r\n',
      ),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b).toString('latin1')) },
  );
  /** Now and then a line longer than the command limit, or than the AUTH limit. */
  const inputArb = fc
    .tuple(
      fc.boolean(),
      fc.array(tokenArb, { maxLength: 40 }),
      fc.option(fc.constantFrom(600, 12289, 20000), { freq: 4 }),
      fc.nat(),
    )
    .map(([hello, tokens, long, at]) => {
      if (long !== null) tokens.splice(at % (tokens.length + 1), 0, 'A'.repeat(long));
      return (hello ? 'EHLO c.test\r\n' : '') + tokens.join('');
    });

  it('random input never throws, keeps its buffer bounded, and leaves the session answering or closed', async () => {
    const bound = 12288 + 2; // the framer's longest kept line (AUTH lines) and its line ending
    await fc.assert(
      fc.asyncProperty(
        inputArb,
        fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        async (input, sizes, withHook) => {
          const s = open({
            maxErrors: 0,
            maxAuthFailures: 0,
            maxMessageSize: 1000,
            lookupPassword: () => 'p',
            tlsHandler: () => false,
            messageReceivedHandler: withHook ? undefined : null,
          });
          for (const piece of cut(bytes(input), sizes)) {
            await send(s, piece);
            expect(s.p.bufferedInput).toBeLessThanOrEqual(bound);
          }
          // Whatever state the input left: end any text, cancel any SASL exchange, then QUIT.
          await send(s, '\r\n.\r\n*\r\n\r\n\r\n\r\nQUIT\r\n');
          expect(s.p.state).toBe('DONE');
          expect(s.actions[s.actions.length - 1]).toBe('close');
          expect(() => parseReplies(s.transcript)).not.toThrow();
        },
      ),
      { numRuns: 150 },
    );
  });

  type Outcome =
    'true' | 'false' | 'async-true' | 'async-false' | 'throw' | 'reject' | 'reply-ok' | 'reply-no' | 'void';
  const outcomeArb = fc.constantFrom<Outcome>(
    'true',
    'false',
    'async-true',
    'async-false',
    'throw',
    'reject',
    'reply-ok',
    'reply-no',
    'void',
  );
  type Verb = 'MAIL' | 'RCPT' | 'NOOP' | 'RSET' | 'DATA';
  const verbArb = fc.constantFrom<Verb>('MAIL', 'RCPT', 'RCPT', 'NOOP', 'RSET', 'DATA');

  it('sync, async and failing hooks keep replies in order, one per command', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(verbArb, { minLength: 1, maxLength: 25 }),
        fc.array(outcomeArb, { minLength: 1, maxLength: 10 }),
        sizesArb,
        async (verbs, outcomes, sizes) => {
          let calls = 0;
          const next = (): Outcome => outcomes[calls++ % outcomes.length];
          /** Runs one hook outcome; `k` tags custom replies so that their order can be checked. */
          const decide = (): Promise<boolean | Reply | void> | boolean | Reply | void => {
            const k = calls;
            const outcome = next();
            const later = <T>(value: T) => new Promise<T>((resolve) => setImmediate(() => resolve(value)));
            switch (outcome) {
              case 'true':
                return true;
              case 'false':
                return false;
              case 'async-true':
                return later(true);
              case 'async-false':
                return later(false);
              case 'throw':
                throw new Error('hook bug');
              case 'reject':
                return later(undefined).then(() => Promise.reject(new Error('hook down')));
              case 'reply-ok':
                return later(new Reply(250, `custom ok ${k}`, '2.1.0'));
              case 'reply-no':
                return new Reply(450, `custom no ${k}`, '4.2.0');
              case 'void':
                return undefined;
            }
          };
          const messageHook = async (message: IncomingMessage): Promise<MessageResult> => {
            await message.body.buffer();
            const k = calls;
            const outcome = next();
            if (outcome === 'throw' || outcome === 'reject') throw new Error('store down');
            if (outcome === 'false' || outcome === 'reply-no')
              return new Reply(554, `custom no ${k}`, '5.7.1');
            return `Q${k}`;
          };
          const s: Session = open({
            maxErrors: 0,
            validateSenderHandler: decide,
            validateRecipientHandler: decide,
            messageReceivedHandler: messageHook,
          });

          // The model: which reply each command must get, in order.
          const expected: string[] = ['220', '250'];
          let inTransaction = false;
          let recipients = 0;
          let attempts = 0;
          let modelCalls = 0;
          const modelHook = (): { accepted: boolean; reply: string } => {
            const k = modelCalls;
            const outcome = outcomes[modelCalls++ % outcomes.length];
            switch (outcome) {
              case 'true':
              case 'async-true':
              case 'void':
                return { accepted: true, reply: '250' };
              case 'false':
              case 'async-false':
                return { accepted: false, reply: '550' };
              case 'throw':
              case 'reject':
                return { accepted: false, reply: '451' };
              case 'reply-ok':
                return { accepted: true, reply: `250 2.1.0 custom ok ${k}` };
              case 'reply-no':
                return { accepted: false, reply: `450 4.2.0 custom no ${k}` };
            }
          };
          let input = 'EHLO c.test\r\n';
          for (const verb of verbs) {
            switch (verb) {
              case 'MAIL': {
                input += 'MAIL FROM:<a@x.test>\r\n';
                if (inTransaction) {
                  expected.push('503');
                  break;
                }
                const { accepted, reply } = modelHook();
                expected.push(reply);
                if (accepted) {
                  inTransaction = true;
                  recipients = 0;
                  attempts = 0;
                }
                break;
              }
              case 'RCPT': {
                input += 'RCPT TO:<b@y.test>\r\n';
                if (!inTransaction) {
                  expected.push('503');
                  break;
                }
                attempts++;
                const { accepted, reply } = modelHook();
                expected.push(reply);
                if (accepted) recipients++;
                break;
              }
              case 'NOOP':
              case 'RSET':
                input += `${verb}\r\n`;
                expected.push('250');
                if (verb === 'RSET') inTransaction = false;
                break;
              case 'DATA': {
                if (!inTransaction || recipients === 0) {
                  // Refused: the text lines are then read as commands.
                  input += 'DATA\r\n';
                  expected.push(!inTransaction ? '503' : attempts === 0 ? '503' : '554');
                  break;
                }
                input += 'DATA\r\nx\r\n..y\r\n.\r\n';
                expected.push('354');
                const k = modelCalls;
                const outcome = outcomes[modelCalls++ % outcomes.length];
                if (outcome === 'throw' || outcome === 'reject') expected.push('451');
                else if (outcome === 'false' || outcome === 'reply-no')
                  expected.push(`554 5.7.1 custom no ${k}`);
                else expected.push(`250 2.0.0 Ok: queued as Q${k}`);
                inTransaction = false;
                break;
              }
            }
          }
          await send(s, ...cut(bytes(input), sizes));
          const got = parseReplies(s.transcript).map((r) => r.raw);
          expect(got).toHaveLength(expected.length);
          expect(got.map((raw, i) => (expected[i].length === 3 ? raw.slice(0, 3) : raw))).toEqual(expected);
          expect(calls).toBe(modelCalls);
        },
      ),
      { numRuns: 150 },
    );
  });
});
