import { createHmac } from 'node:crypto';
import type { Command } from '../../lib/protocol/command';
import { Protocol } from '../../lib/protocol/protocol';
import { Reply } from '../../lib/protocol/reply';
import { State } from '../../lib/protocol/state';
import type { AuthCredentials, IncomingMessage, SessionInfo } from '../../lib/protocol/types';
import {
  b64,
  codes,
  drain,
  envelope,
  feed,
  finals,
  lines,
  make,
  plain,
  prng,
  recorder,
  session,
  sleep,
} from './helpers';

const LOCAL_ERROR = '451 4.3.0 Error: internal error, try again later';
const AUTH_OK = '235 2.7.0 Authentication successful';
const AUTH_FAILED = '535 5.7.8 Authentication credentials invalid';
const DATA_SCRIPT = `${envelope()}DATA\r\nSubject: s\r\n\r\nhello\r\n.\r\n`;

const fail = (): never => {
  throw new Error('hook broke');
};
const reject = (): Promise<never> => Promise.reject(new Error('hook broke'));

describe('logHandler', () => {
  test('gets the commands and replies with the state and session', async () => {
    const log: Array<[string, State, string | undefined]> = [];
    const p = make({ logHandler: (message, state, info) => log.push([message, state, info.helo]) });
    await session(p, 'EHLO c.test\r\nNOOP\r\n');
    expect(log).toContainEqual(['C: EHLO c.test', State.Establish, undefined]);
    expect(log).toContainEqual(['C: NOOP', State.Mail, 'c.test']);
    expect(log).toContainEqual(['S: 250 2.0.0 Ok', State.Mail, 'c.test']);
  });

  const SECRET = 'Tr0ub4dor&3';
  const secretForms = [SECRET, b64(SECRET), plain('jo', SECRET), b64(`jo ${SECRET}`)];
  const exchanges: Array<[string, string]> = [
    ['PLAIN initial response', `AUTH PLAIN ${plain('jo', SECRET)}\r\n`],
    ['PLAIN initial response after a tab', `AUTH PLAIN\t${plain('jo', SECRET)}\r\n`],
    ['PLAIN after 334', `AUTH PLAIN\r\n${plain('jo', SECRET)}\r\n`],
    ['LOGIN', `AUTH LOGIN\r\n${b64('jo')}\r\n${b64(SECRET)}\r\n`],
    ['LOGIN initial response', `AUTH LOGIN ${b64('jo')}\r\n${b64(SECRET)}\r\n`],
    ['XOAUTH2', `AUTH XOAUTH2 ${b64(`user=jo\x01auth=Bearer ${SECRET}\x01\x01`)}\r\n\r\n`],
    ['XOAUTH2 after 334', `AUTH XOAUTH2\r\n${b64(`user=jo\x01auth=Bearer ${SECRET}\x01\x01`)}\r\n\r\n`],
  ];

  test.each(exchanges)('never gets AUTH secrets: %s', async (_name, script) => {
    const log: string[] = [];
    const p = make({
      logHandler: (message) => log.push(message),
      validateAuthenticationHandler: () => false,
    });
    const out = await session(p, `EHLO c\r\n${script}`);
    expect(finals(out).pop()).toBe(AUTH_FAILED);
    expect(log.length).toBeGreaterThan(3);
    const text = log.join('\n');
    for (const form of secretForms) expect(text).not.toContain(form);
    expect(text).toContain('C: AUTH ');
  });
});

describe('messageReceivedHandler', () => {
  test('streams the body with for await, and its id is the queue id', async () => {
    const chunks: Buffer[] = [];
    const p = make({
      messageReceivedHandler: async (message) => {
        for await (const chunk of message.body) chunks.push(chunk);
        return 'ABC123';
      },
    });
    const body = Array.from({ length: 3000 }, (_, i) => `line ${i} ${'x'.repeat(60)}`).join('\r\n');
    const out = await session(p, [
      `${envelope()}DATA\r\n`,
      ...body.match(/[^]{1,7000}/g)!,
      '\r\n.\r\nNOOP\r\n',
    ]);
    expect(finals(out).slice(3)).toEqual([
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.0.0 Ok: queued as ABC123',
      '250 2.0.0 Ok',
    ]);
    expect(chunks.length).toBeGreaterThan(10);
    expect(Buffer.concat(chunks).toString()).toBe(`${body}\r\n`);
  });

  test('gets the envelope and the session', async () => {
    let seen: IncomingMessage | undefined;
    let helo: string | undefined;
    const p = make({
      messageReceivedHandler: (message) => {
        seen = message;
        helo = message.session.helo;
      },
    });
    await session(
      p,
      `EHLO c\r\nMAIL FROM:<a@x.test> BODY=8BITMIME SIZE=10\r\nRCPT TO:<b@y.test> NOTIFY=NEVER\r\nDATA\r\nx\r\n.\r\n`,
    );
    expect(seen?.envelope).toMatchObject({
      mailFrom: { address: 'a@x.test', params: { BODY: '8BITMIME', SIZE: '10' } },
      rcptTo: [{ address: 'b@y.test', params: { NOTIFY: 'NEVER' }, dsn: { notify: ['NEVER'] } }],
      bodyType: '8BITMIME',
      declaredSize: 10,
      transfer: 'DATA',
    });
    expect(helo).toBe('c');
    expect(seen?.signal.aborted).toBe(false);
  });

  test('the hook message: envelope, session and body are its own fields; signal and aborted follow the transaction', async () => {
    let seen: IncomingMessage | undefined;
    let abortedWhileOpen: boolean | undefined;
    const p = make({
      messageReceivedHandler: (message) => {
        seen = message;
        abortedWhileOpen = message.aborted;
        message.body.claim(); // keep the body open past the answer: the transaction is reset below
        return new Promise<never>(() => {});
      },
    });
    await session(p, `${envelope()}DATA\r\nx\r\n`);
    expect(Object.keys(seen ?? {})).toEqual(['envelope', 'session', 'body']); // what a spread copies
    expect(JSON.stringify(seen)).not.toContain('abort'); // no internal state in logs
    expect(abortedWhileOpen).toBe(false);
    p.abort(new Error('client went away'));
    expect(seen?.aborted).toBe(true);
    expect(seen?.signal.aborted).toBe(true); // made after the abort: born aborted
    expect(seen?.signal.reason).toEqual(new Error('client went away'));
  });

  test('a returned Reply is sent as it is', async () => {
    const p = make({ messageReceivedHandler: () => new Reply(550, 'spam', '5.7.1') });
    expect(finals(await session(p, DATA_SCRIPT))[4]).toBe('550 5.7.1 spam');
    expect(p.session.transactionCount).toBe(0);
  });

  test('returning nothing (sync or async) still queues under a generated id', async () => {
    const ids: string[] = [];
    for (const hook of [() => undefined, async () => undefined, () => '']) {
      const p = make({ messageReceivedHandler: hook, now: () => 36 ** 3 });
      const replies = finals(await session(p, DATA_SCRIPT + DATA_SCRIPT.slice(13)));
      expect(replies.slice(1)).toEqual([
        '250 2.1.0 Sender a@x.test ok',
        '250 2.1.5 Recipient b@y.test ok',
        '354 End data with <CR><LF>.<CR><LF>',
        expect.stringMatching(/^250 2\.0\.0 Ok: queued as 1000[0-9A-Z]+$/),
        '250 2.1.0 Sender a@x.test ok',
        '250 2.1.5 Recipient b@y.test ok',
        '354 End data with <CR><LF>.<CR><LF>',
        expect.stringMatching(/^250 2\.0\.0 Ok: queued as 1000[0-9A-Z]+$/),
      ]);
      ids.push(replies[4].slice(24), replies[8].slice(24));
      expect(p.session.transactionCount).toBe(2);
    }
    // The time (base 36, "1000" here) then a counter of the whole process: unique across sessions
    // even within one millisecond.
    expect(new Set(ids).size).toBe(ids.length);
  });

  test('without a hook, messages are read, discarded and accepted', async () => {
    const out = await session(make(), `${DATA_SCRIPT}QUIT\r\n`);
    expect(codes(out)).toEqual([250, 250, 250, 354, 250, 221]);
  });

  test.each([
    ['throws', fail],
    ['rejects', reject],
    ['rejects after reading', async (m: IncomingMessage) => (await m.body.buffer(), reject())],
  ])('a hook that %s → 451 4.3.0, and the session goes on', async (_name, hook) => {
    const p = make({ messageReceivedHandler: hook });
    const out = await session(p, `${DATA_SCRIPT}NOOP\r\nMAIL FROM:<a@x.test>\r\n`);
    expect(finals(out).slice(4)).toEqual([
      '451 4.3.0 Error: unable to store message, try again later',
      '250 2.0.0 Ok',
      '250 2.1.0 Sender a@x.test ok',
    ]);
  });

  test('a hook that never reads the body: a large message still completes', async () => {
    const p = make({
      messageReceivedHandler: async () => {
        await sleep(5);
        return 'lazy';
      },
    });
    const big = `${'y'.repeat(998)}\r\n`.repeat(400);
    const out = await session(p, [`${envelope()}DATA\r\n`, big, big, '.\r\nNOOP\r\n']);
    expect(finals(out).slice(4)).toEqual(['250 2.0.0 Ok: queued as lazy', '250 2.0.0 Ok']);
  });

  test('a hook that stops reading halfway: the rest is discarded, the session goes on', async () => {
    const p = make({
      bodyHighWaterMark: 1024,
      messageReceivedHandler: async (message) => {
        for await (const chunk of message.body) if (chunk.length > 0) break;
        return 'half';
      },
    });
    const big = `${'y'.repeat(500)}\r\n`.repeat(100);
    const out = await session(p, [`${envelope()}DATA\r\n`, big, big, '.\r\nNOOP\r\n']);
    expect(finals(out).slice(4)).toEqual(['250 2.0.0 Ok: queued as half', '250 2.0.0 Ok']);
  });

  test('backpressure: a slow reader holds input back, nothing is lost', async () => {
    const rec = recorder();
    const slow = async (message: IncomingMessage) => {
      await sleep(10);
      return rec.hook(message);
    };
    const p = make({ bodyHighWaterMark: 256, messageReceivedHandler: slow });
    const body = `${'b'.repeat(100)}\r\n`.repeat(50);
    p.receive(Buffer.from(`${envelope()}DATA\r\n${body}.\r\nNOOP\r\n`));
    const r = p.run();
    expect(r.pending).not.toBeNull();
    expect(p.busy).toBe(true);
    expect(p.bufferedInput).toBeGreaterThan(0);
    const out = r.output!.toString() + (await drain(p)).text;
    expect(finals(out).slice(4)).toEqual(['250 2.0.0 Ok: queued as Q1', '250 2.0.0 Ok']);
    expect(rec.messages[0].body.toString()).toBe(body);
  });

  test('an async hook that resolves late keeps pipelined commands in order', async () => {
    let n = 0;
    const p = make({
      messageReceivedHandler: async (message) => {
        const id = `M${++n}`;
        await message.body.buffer();
        await sleep(n === 1 ? 30 : 1);
        return id;
      },
    });
    const out = await session(
      p,
      `${DATA_SCRIPT}MAIL FROM:<c@x.test>\r\nRCPT TO:<d@y.test>\r\nDATA\r\nz\r\n.\r\nQUIT\r\n`,
    );
    expect(finals(out).slice(4)).toEqual([
      '250 2.0.0 Ok: queued as M1',
      '250 2.1.0 Sender c@x.test ok',
      '250 2.1.5 Recipient d@y.test ok',
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.0.0 Ok: queued as M2',
      '221 2.0.0 Bye',
    ]);
  });

  test('the body fails and the signal aborts when the message is too big', async () => {
    let error: unknown;
    let aborted = false;
    const p = make({
      maxMessageSize: 100,
      messageReceivedHandler: async (message) => {
        try {
          await message.body.buffer();
        } catch (e) {
          error = e;
          aborted = message.signal.aborted;
          throw e;
        }
      },
    });
    const out = await session(p, `${envelope()}DATA\r\n${'x'.repeat(300)}\r\n.\r\nNOOP\r\n`);
    expect(finals(out).slice(4)).toEqual([
      '552 5.3.4 Error: message size exceeds fixed maximum message size',
      '250 2.0.0 Ok',
    ]);
    expect(error).toBeInstanceOf(Error);
    expect(aborted).toBe(true);
  });

  test('bare newlines in the text can be refused after the final dot', async () => {
    const rec = recorder();
    const p = make({ bareNewlines: 'reject', messageReceivedHandler: rec.hook });
    const out = await session(p, `${envelope()}DATA\r\nok\r\nsmuggled\n.\nx\r\n.\r\nNOOP\r\n`);
    expect(finals(out).slice(4)).toEqual([
      '554 5.6.0 Error: message contains bare <CR> or <LF> characters',
      '250 2.0.0 Ok',
    ]);
    expect(rec.messages).toHaveLength(0);
  });
});

describe('validateSenderHandler / validateRecipientHandler', () => {
  test('false → 550 with the address; sync and async', async () => {
    for (const no of [() => false, async () => false]) {
      const out = await session(make({ validateSenderHandler: no }), 'EHLO c\r\nMAIL FROM:<a@x.test>\r\n');
      expect(finals(out)[1]).toBe('550 5.1.0 Invalid sender a@x.test');
      const out2 = await session(make({ validateRecipientHandler: no }), envelope());
      expect(finals(out2)[2]).toBe('550 5.1.1 Invalid recipient b@y.test');
    }
  });

  test('a custom refusal Reply is sent as it is', async () => {
    const p = make({
      validateSenderHandler: () => new Reply(421, 'go away', '4.7.0'),
      validateRecipientHandler: async () => new Reply(550, 'no such user', '5.1.1'),
    });
    const out = await session(p, 'EHLO c\r\nMAIL FROM:<a@x.test>\r\n');
    expect(finals(out)[1]).toBe('421 4.7.0 go away');
    const p2 = make({ validateRecipientHandler: async () => new Reply(550, 'no such user', '5.1.1') });
    expect(finals(await session(p2, envelope()))[2]).toBe('550 5.1.1 no such user');
  });

  test('a hook’s 421 closes the session like the core’s own (RFC 5321 §3.8), sync or async', async () => {
    for (const goAway of [
      () => new Reply(421, 'go away', '4.3.2'),
      async () => new Reply(421, 'go away', '4.3.2'),
    ]) {
      const p = make({ validateRecipientHandler: goAway });
      const out = await feed(p, `${envelope()}NOOP\r\n`);
      expect(finals(out.text).slice(1)).toEqual(['250 2.1.0 Sender a@x.test ok', '421 4.3.2 go away']);
      expect(out.actions).toEqual(['close']);
      expect(p.state).toBe(State.Done);
    }
  });

  test('a hook answering with a 3xx is a broken hook: 451, nothing accepted', async () => {
    const p = make({
      validateSenderHandler: () => new Reply(354, 'go ahead'),
      validateRecipientHandler: () => new Reply(334, 'what?'),
    });
    const out = await session(p, `${envelope()}RCPT TO:<c@y.test>\r\n`);
    expect(finals(out).slice(1)).toEqual([
      LOCAL_ERROR,
      '503 5.5.1 Error: need MAIL command',
      '503 5.5.1 Error: need MAIL command',
    ]);
    expect(p.envelope).toBeUndefined();
  });

  test('a synchronous hook that shuts the session down gets no answer sent after the 421', async () => {
    const p: Protocol = make({
      validateSenderHandler: () => {
        p.shutdown();
        return true;
      },
    });
    const out = await feed(p, 'EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n');
    expect(finals(out.text).slice(1)).toEqual(['421 4.3.2 mx.test Service shutting down']);
    expect(out.actions).toEqual(['close']);
    expect(p.state).toBe(State.Done);
  });

  test('a hook that calls run() from inside cannot make later commands overtake its own', async () => {
    const inner: string[] = [];
    const p: Protocol = make({
      validateSenderHandler: () => {
        const nested = p.runText();
        if (nested.output !== null) inner.push(nested.output);
        return true;
      },
    });
    const out = await session(p, 'EHLO c\r\nMAIL FROM:<a@x.test>\r\nNOOP\r\n');
    // The nested run() only hands out what was already answered (the EHLO), never the NOOP's reply.
    expect(codes(inner.join('') + out)).toEqual([250, 250, 250]);
    expect(finals(inner.join('') + out).slice(1)).toEqual(['250 2.1.0 Sender a@x.test ok', '250 2.0.0 Ok']);
  });

  test('a positive Reply accepts with the hook’s words, and observers see that reply', async () => {
    const observed: string[] = [];
    const p = make({
      validateSenderHandler: () => new Reply(250, 'sender fine', '2.1.0'),
      validateRecipientHandler: async () => new Reply(251, 'will forward', '2.1.5'),
      onReply: (answer) => observed.push(answer.toString()),
    });
    const out = await session(p, envelope());
    expect(finals(out).slice(1)).toEqual(['250 2.1.0 sender fine', '251 2.1.5 will forward']);
    expect(p.state).toBe(State.Rcpt);
    expect(p.envelope?.rcptTo).toHaveLength(1);
    expect(observed.slice(-2)).toEqual(['250 2.1.0 sender fine', '251 2.1.5 will forward']);
    expect(observed.join('\n')).not.toContain('Sender a@x.test ok');
  });

  test('true, undefined and a Promise of true accept', async () => {
    for (const yes of [() => true, () => undefined, async () => true]) {
      expect(
        codes(await session(make({ validateSenderHandler: yes, validateRecipientHandler: yes }), envelope())),
      ).toEqual([250, 250, 250]);
    }
  });

  test('the hooks get the address with its parameters, the session and the envelope', async () => {
    const calls: unknown[] = [];
    const p = make({
      validateSenderHandler: (from, info) => void calls.push(['from', from, info.helo]),
      validateRecipientHandler: (to, info, env) =>
        void calls.push(['to', to, env.mailFrom.address, env.rcptTo.length]),
    });
    await session(p, 'EHLO c\r\nMAIL FROM:<a@x.test> SIZE=5\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\n');
    expect(calls).toEqual([
      ['from', { address: 'a@x.test', params: { SIZE: '5' } }, 'c'],
      ['to', { address: 'b@y.test', params: {} }, 'a@x.test', 0],
      ['to', { address: 'c@y.test', params: {} }, 'a@x.test', 1],
    ]);
  });

  test.each([
    ['throws', fail],
    ['rejects', reject],
  ])('a hook that %s → 451 4.3.0; state and recipients kept', async (_name, broken) => {
    const p = make({ validateSenderHandler: broken });
    const out = await session(p, 'EHLO c\r\nMAIL FROM:<a@x.test>\r\nNOOP\r\n');
    expect(finals(out).slice(1)).toEqual([LOCAL_ERROR, '250 2.0.0 Ok']);
    expect(p.state).toBe(State.Mail);
    let calls = 0;
    const p2 = make({ validateRecipientHandler: () => (++calls === 2 ? broken() : true) });
    const out2 = await session(p2, `${envelope()}RCPT TO:<c@y.test>\r\nRCPT TO:<d@y.test>\r\n`);
    expect(codes(out2)).toEqual([250, 250, 250, 451, 250]);
    expect(p2.envelope?.rcptTo.map((r) => r.address)).toEqual(['b@y.test', 'd@y.test']);
  });

  test('pipelined MAIL / RCPT / RCPT / DATA with random hook delays still answers in order', async () => {
    const random = prng(7);
    for (let round = 0; round < 5; round++) {
      const order: string[] = [];
      const rec = recorder();
      const p = make({
        messageReceivedHandler: rec.hook,
        validateSenderHandler: async () => {
          await sleep(Math.floor(random() * 4));
          order.push('from');
          return true;
        },
        validateRecipientHandler: async (to) => {
          await sleep(Math.floor(random() * 6));
          order.push(to.address);
          return to.address !== 'no@y.test';
        },
      });
      const out = await session(
        p,
        'EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<r1@y.test>\r\nRCPT TO:<no@y.test>\r\nRCPT TO:<r3@y.test>\r\nDATA\r\nt\r\n.\r\nQUIT\r\n',
      );
      expect(finals(out).slice(1)).toEqual([
        '250 2.1.0 Sender a@x.test ok',
        '250 2.1.5 Recipient r1@y.test ok',
        '550 5.1.1 Invalid recipient no@y.test',
        '250 2.1.5 Recipient r3@y.test ok',
        '354 End data with <CR><LF>.<CR><LF>',
        '250 2.0.0 Ok: queued as Q1',
        '221 2.0.0 Bye',
      ]);
      expect(order).toEqual(['from', 'r1@y.test', 'no@y.test', 'r3@y.test']);
      expect(rec.messages[0].envelope.rcptTo.map((r) => r.address)).toEqual(['r1@y.test', 'r3@y.test']);
    }
  });
});

describe('validateAuthenticationHandler and lookupPassword', () => {
  test('PLAIN asking to act as someone else: refused with lookupPassword alone (RFC 4616 §2)', async () => {
    const p = make({ lookupPassword: (user) => (user === 'jo' ? 'pw' : undefined) });
    const out = await session(p, `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw', 'admin')}\r\n`);
    expect(finals(out)[1]).toBe('535 5.7.8 Authentication credentials invalid');
    expect(p.session.user).toBeUndefined();
    // The same identity named twice asks for nothing more.
    const same = make({ lookupPassword: () => 'pw' });
    expect(finals(await session(same, `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw', 'jo')}\r\n`))[1]).toBe(
      AUTH_OK,
    );
  });

  test('a validate hook sees the authzid only when it differs from the username', async () => {
    const seen: Array<string | undefined> = [];
    const hook = (credentials: AuthCredentials) => (seen.push(credentials.authzid), true);
    await session(
      make({ validateAuthenticationHandler: hook }),
      `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw', 'jo')}\r\n`,
    );
    await session(
      make({ validateAuthenticationHandler: hook }),
      `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw', 'ann')}\r\n`,
    );
    expect(seen).toEqual([undefined, 'ann']);
  });

  test('PLAIN credentials that are not UTF-8 are malformed, never decoded into U+FFFD', async () => {
    const p = make({ lookupPassword: () => '\uFFFD' });
    const message = Buffer.concat([Buffer.from('\0jo\0'), Buffer.from([0xff])]);
    const out = await session(p, `EHLO c\r\nAUTH PLAIN ${message.toString('base64')}\r\n`);
    expect(finals(out)[1]).toBe('501 5.5.4 Syntax error (PLAIN credentials must be UTF-8)');
    expect(p.session.user).toBeUndefined();
  });

  test('LOGIN checks the password octets the client sent, whatever their charset', async () => {
    // 0xFF is no UTF-8: decoded, it reads U+FFFD, but it is not the password U+FFFD (EF BF BD).
    const lossy = make({ lookupPassword: () => '\uFFFD' });
    const sent = `EHLO c\r\nAUTH LOGIN\r\n${b64('jo')}\r\n${Buffer.from([0xff]).toString('base64')}\r\n`;
    expect(finals(await session(lossy, sent)).at(-1)).toBe('535 5.7.8 Authentication credentials invalid');
    const utf8 = make({ lookupPassword: () => 'pé' });
    expect(
      finals(await session(utf8, `EHLO c\r\nAUTH LOGIN\r\n${b64('jo')}\r\n${b64('pé')}\r\n`)).at(-1),
    ).toBe(AUTH_OK);
  });

  const users: Record<string, string> = { jo: 'pw1', 'ann@x.test': 'päss' };
  const lookup = (user: string) => users[user];

  test('PLAIN with an initial response; the user is recorded', async () => {
    const p = make({ lookupPassword: lookup });
    const out = await session(p, `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw1')}\r\n`);
    expect(finals(out)[1]).toBe(AUTH_OK);
    expect(p.session.user).toBe('jo');
  });

  test('PLAIN via an empty 334', async () => {
    const p = make({ lookupPassword: async (user) => lookup(user) });
    const out = await session(p, `EHLO c\r\nAUTH PLAIN\r\n${plain('ann@x.test', 'päss')}\r\n`);
    expect(lines(out).slice(-2)).toEqual(['334 ', AUTH_OK]);
    expect(p.session.user).toBe('ann@x.test');
  });

  test('LOGIN with and without an initial response', async () => {
    const p1 = make({ lookupPassword: lookup });
    expect(
      finals(await session(p1, `EHLO c\r\nAUTH LOGIN\r\n${b64('jo')}\r\n${b64('pw1')}\r\n`)).slice(1),
    ).toEqual(['334 VXNlcm5hbWU6', '334 UGFzc3dvcmQ6', AUTH_OK]);
    const p2 = make({ lookupPassword: lookup });
    expect(
      finals(await session(p2, `EHLO c\r\nAUTH LOGIN ${b64('jo')}\r\n${b64('pw1')}\r\n`)).slice(1),
    ).toEqual(['334 UGFzc3dvcmQ6', AUTH_OK]);
  });

  test('CRAM-MD5 computed against the live challenge (lookupPassword and validate hook)', async () => {
    for (const options of [
      { lookupPassword: lookup },
      { validateAuthenticationHandler: (c: AuthCredentials) => c.validatePassword(users[c.username] ?? '') },
    ]) {
      const p = make(options);
      const challengeLine = finals(await session(p, 'EHLO c\r\nAUTH CRAM-MD5\r\n'))[1];
      expect(challengeLine).toMatch(/^334 [A-Za-z0-9+/]+=*$/);
      const challenge = Buffer.from(challengeLine.slice(4), 'base64');
      const digest = createHmac('md5', 'pw1').update(challenge).digest('hex');
      expect(finals(await session(p, `${b64(`jo ${digest}`)}\r\n`))).toEqual([AUTH_OK]);
      expect(p.session.user).toBe('jo');
    }
  });

  test('CRAM-MD5 with a wrong digest → 535; malformed answer → 501; initial response → 501', async () => {
    const p = make({ lookupPassword: lookup });
    await session(p, 'EHLO c\r\nAUTH CRAM-MD5\r\n');
    expect(finals(await session(p, `${b64(`jo ${'0'.repeat(32)}`)}\r\n`))).toEqual([AUTH_FAILED]);
    await session(p, 'AUTH CRAM-MD5\r\n');
    expect(finals(await session(p, `${b64('jo')}\r\n`))).toEqual([
      '501 5.5.4 Syntax error (CRAM-MD5 wants user SP digest)',
    ]);
    expect(finals(await session(p, `AUTH CRAM-MD5 ${b64('x')}\r\n`))).toEqual([
      '501 5.5.4 Syntax error (CRAM-MD5 takes no initial response)',
    ]);
  });

  test('XOAUTH2 success: the hook sees the token', async () => {
    const seen: AuthCredentials[] = [];
    const p = make({
      validateAuthenticationHandler: (c) => {
        seen.push(c);
        return c.accessToken === 'tok' ? { user: 'jo@x.test' } : false;
      },
    });
    const ehlo = await session(p, 'EHLO c\r\n');
    expect(lines(ehlo)).toContain('250-AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2');
    const out = await session(p, `AUTH XOAUTH2 ${b64('user=jo\x01auth=Bearer tok\x01\x01')}\r\n`);
    expect(finals(out)).toEqual([AUTH_OK]);
    expect(seen[0]).toMatchObject({ method: 'XOAUTH2', username: 'jo', accessToken: 'tok' });
    expect(seen[0].validatePassword('tok')).toBe(false);
    expect(p.session.user).toBe('jo@x.test');
  });

  test('XOAUTH2 failure: a JSON 334, the client answers empty, then 535', async () => {
    const p = make({ validateAuthenticationHandler: () => false });
    await session(p, 'EHLO c\r\n');
    const challenge = finals(
      await session(p, `AUTH XOAUTH2 ${b64('user=jo\x01auth=Bearer bad\x01\x01')}\r\n`),
    )[0];
    expect(challenge.startsWith('334 ')).toBe(true);
    expect(JSON.parse(Buffer.from(challenge.slice(4), 'base64').toString())).toEqual({
      status: '401',
      schemes: 'bearer',
      scope: 'https://mail.google.com/',
    });
    expect(finals(await session(p, '\r\n'))).toEqual([AUTH_FAILED]);
    expect(p.state).toBe(State.Mail);
    expect(finals(await session(p, `AUTH XOAUTH2 ${b64('user=jo\x01nothing\x01\x01')}\r\n`))).toEqual([
      '501 5.5.4 Syntax error (XOAUTH2 wants user=…^Aauth=Bearer …^A^A)',
    ]);
  });

  test('XOAUTH2 is not offered with lookupPassword alone', async () => {
    const out = await session(
      make({ lookupPassword: lookup }),
      `EHLO c\r\nAUTH XOAUTH2 ${b64('user=a\x01auth=Bearer t\x01\x01')}\r\n`,
    );
    expect(lines(out)).toContain('250-AUTH PLAIN LOGIN CRAM-MD5');
    expect(finals(out)[1]).toBe('504 5.5.4 Unrecognized authentication type');
  });

  test('`*` → 501 (as a response, and as an initial response); bad base64 → 501', async () => {
    const p = make({ lookupPassword: lookup });
    const out = await session(
      p,
      `EHLO c\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN *\r\nAUTH LOGIN\r\nnot base64!\r\nAUTH PLAIN abc\r\n`,
    );
    expect(finals(out).slice(1)).toEqual([
      '334 ',
      '501 5.7.0 Authentication cancelled',
      '501 5.5.2 Error: cannot decode response',
      '334 VXNlcm5hbWU6',
      '501 5.5.2 Error: cannot decode response',
      '501 5.5.2 Error: cannot decode response',
    ]);
    expect(p.session.user).toBeUndefined();
  });

  test('AUTH syntax: no mechanism, extra arguments, unknown mechanism', async () => {
    const out = await session(
      make({ lookupPassword: lookup }),
      'EHLO c\r\nAUTH\r\nAUTH PLAIN a b\r\nAUTH GSSAPI\r\n',
    );
    expect(finals(out).slice(1)).toEqual([
      '501 5.5.4 Syntax error (AUTH mechanism [initial-response])',
      '501 5.5.4 Syntax error (AUTH mechanism [initial-response])',
      '504 5.5.4 Unrecognized authentication type',
    ]);
  });

  test('PLAIN with an empty user or a missing part → 501', async () => {
    const out = await session(
      make({ lookupPassword: lookup }),
      `EHLO c\r\nAUTH PLAIN ${plain('', 'pw')}\r\nAUTH PLAIN ${b64('jo\0pw')}\r\n`,
    );
    expect(codes(out)).toEqual([250, 501, 501]);
  });

  test('wrong password, unknown user → 535 5.7.8; three failures → 421 and close', async () => {
    const p = make({ lookupPassword: lookup });
    const out = await feed(
      p,
      `EHLO c\r\nAUTH PLAIN ${plain('jo', 'nope')}\r\nAUTH PLAIN ${plain('who', 'pw1')}\r\nAUTH LOGIN\r\n${b64('jo')}\r\n${b64('x')}\r\nNOOP\r\n`,
    );
    expect(finals(out.text).slice(1)).toEqual([
      AUTH_FAILED,
      AUTH_FAILED,
      '334 VXNlcm5hbWU6',
      '334 UGFzc3dvcmQ6',
      AUTH_FAILED,
      '421 4.7.0 mx.test Error: too many failed authentication attempts',
    ]);
    expect(out.actions).toEqual(['close']);
    expect(p.state).toBe(State.Done);
  });

  test('AUTH twice → 503; AUTH in a transaction → 503', async () => {
    const p = make({ lookupPassword: lookup });
    const out = await session(
      p,
      `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw1')}\r\nAUTH PLAIN ${plain('jo', 'pw1')}\r\n`,
    );
    expect(finals(out).slice(2)).toEqual(['503 5.5.1 Error: already authenticated']);
    const p2 = make({ lookupPassword: lookup });
    const out2 = await session(p2, `EHLO c\r\nMAIL FROM:<a@x.test>\r\nAUTH PLAIN ${plain('jo', 'pw1')}\r\n`);
    expect(finals(out2)[2]).toBe('503 5.5.1 Error: MAIL transaction in progress');
    expect(p2.session.user).toBeUndefined();
  });

  test('without any auth hook: AUTH not advertised, and 503', async () => {
    const out = await session(make(), `EHLO c\r\nAUTH LOGIN\r\n`);
    expect(lines(out).filter((l) => l.includes('AUTH'))).toEqual([]);
    expect(finals(out)[1]).toBe('503 5.5.1 Error: authentication not enabled');
  });

  test('the hook may answer with a Reply or an identity', async () => {
    const p = make({ validateAuthenticationHandler: () => new Reply(454, 'try later', '4.7.0') });
    expect(finals(await session(p, `EHLO c\r\nAUTH PLAIN ${plain('jo', 'x')}\r\n`))[1]).toBe(
      '454 4.7.0 try later',
    );
    expect(p.session.user).toBeUndefined();
    const p2 = make({ validateAuthenticationHandler: async () => new Reply(235, 'welcome', '2.7.0') });
    expect(finals(await session(p2, `EHLO c\r\nAUTH PLAIN ${plain('jo', 'x')}\r\n`))[1]).toBe(
      '235 2.7.0 welcome',
    );
    expect(p2.session.user).toBe('jo');
  });

  test.each([
    ['throws', { validateAuthenticationHandler: fail }],
    ['rejects', { validateAuthenticationHandler: reject }],
    ['lookup throws', { lookupPassword: fail }],
    ['lookup rejects', { lookupPassword: reject }],
  ])('a hook that %s → 451 4.3.0, out of the SASL exchange', async (_name, options) => {
    const p = make(options);
    const out = await session(p, `EHLO c\r\nAUTH LOGIN\r\n${b64('jo')}\r\n${b64('pw')}\r\nNOOP\r\n`);
    expect(finals(out).slice(3)).toEqual([LOCAL_ERROR, '250 2.0.0 Ok']);
    expect(p.state).toBe(State.Mail);
  });

  test('the authenticated user reaches the message hook', async () => {
    const rec = recorder();
    const p = make({ lookupPassword: lookup, messageReceivedHandler: rec.hook });
    await session(p, `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw1')}\r\n${DATA_SCRIPT.slice(13)}`);
    expect(rec.messages[0].session.user).toBe('jo');
  });
});

describe('smtpVerbFilter', () => {
  test('can require AUTH by answering 530', async () => {
    const filter = (command: Command, info: SessionInfo) =>
      info.user === undefined && ['MAIL', 'RCPT', 'DATA'].includes(command.verb)
        ? new Reply(530, 'Authentication required', '5.7.0')
        : undefined;
    const p = make({ smtpVerbFilter: filter, lookupPassword: () => 'pw' });
    const out = await session(
      p,
      `EHLO c\r\nMAIL FROM:<a@x.test>\r\nAUTH PLAIN ${plain('jo', 'pw')}\r\nMAIL FROM:<a@x.test>\r\n`,
    );
    expect(finals(out).slice(1)).toEqual([
      '530 5.7.0 Authentication required',
      AUTH_OK,
      '250 2.1.0 Sender a@x.test ok',
    ]);
  });

  test('an async filter keeps the order of pipelined commands', async () => {
    const random = prng(3);
    const p = make({
      smtpVerbFilter: async (command) => {
        await sleep(Math.floor(random() * 5));
        return command.verb === 'VRFY' ? new Reply(502, 'no VRFY here', '5.5.1') : undefined;
      },
    });
    const out = await session(p, `${envelope()}VRFY x\r\nNOOP\r\nRSET\r\n`);
    expect(finals(out).slice(1)).toEqual([
      '250 2.1.0 Sender a@x.test ok',
      '250 2.1.5 Recipient b@y.test ok',
      '502 5.5.1 no VRFY here',
      '250 2.0.0 Ok',
      '250 2.0.0 Ok',
    ]);
  });

  test('a filter that rejects → 451 4.3.0, session continues', async () => {
    let first = true;
    const p = make({ smtpVerbFilter: () => (first ? ((first = false), reject()) : undefined) });
    expect(finals(await session(p, 'NOOP\r\nNOOP\r\n'))).toEqual([LOCAL_ERROR, '250 2.0.0 Ok']);
  });
});

describe('tlsHandler', () => {
  test('true → 220 and action starttls; EHLO offers STARTTLS only before TLS', async () => {
    const infos: SessionInfo[] = [];
    const p = make({ tlsHandler: (info) => (infos.push(info), true) });
    const before = await session(p, 'EHLO c\r\n');
    expect(lines(before)).toContain('250-STARTTLS');
    const r = await feed(p, 'STARTTLS\r\n');
    expect(r.text).toBe('220 2.0.0 Ready to start TLS\r\n');
    expect(r.actions).toEqual(['starttls']);
    expect(infos[0].helo).toBe('c');
    p.tlsStarted({ protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' });
    expect(p.session.tls).toEqual({ protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' });
    const after = await session(p, 'EHLO c\r\n');
    expect(lines(after)).not.toContain('250-STARTTLS');
    expect(p.run().action).toBeNull();
  });

  test('a Promise of true works the same', async () => {
    const p = make({ tlsHandler: async () => (await sleep(2), true) });
    const r = await feed(p, 'EHLO c\r\nSTARTTLS\r\n');
    expect(finals(r.text)[1]).toBe('220 2.0.0 Ready to start TLS');
    expect(r.actions).toEqual(['starttls']);
  });

  test('a Reply refuses with that reply; false → 454', async () => {
    const p = make({ tlsHandler: () => new Reply(554, 'no TLS for you', '5.7.0') });
    expect(finals(await session(p, 'EHLO c\r\nSTARTTLS\r\n'))[1]).toBe('554 5.7.0 no TLS for you');
    expect(p.state).toBe(State.Mail);
    const p2 = make({ tlsHandler: async () => false });
    const r = await feed(p2, 'EHLO c\r\nSTARTTLS\r\nNOOP\r\n');
    expect(finals(r.text).slice(1)).toEqual([
      '454 4.7.0 TLS not available due to temporary reason',
      '250 2.0.0 Ok',
    ]);
    expect(r.actions).toEqual([]);
  });

  test('without the hook STARTTLS is neither offered nor accepted', async () => {
    const out = await session(make(), 'EHLO c\r\nSTARTTLS\r\n');
    expect(lines(out)).not.toContain('250-STARTTLS');
    expect(finals(out)[1]).toBe('502 5.5.1 Error: command not implemented');
  });

  test('implicit TLS: STARTTLS is not offered', async () => {
    const p = make({ secure: true, tlsHandler: () => true });
    p.setTlsInfo({ protocol: 'TLSv1.3' });
    const out = await session(p, 'EHLO c\r\nSTARTTLS\r\n');
    expect(lines(out)).not.toContain('250-STARTTLS');
    expect(finals(out)[1]).toBe('503 5.5.1 Error: TLS already active');
    expect(p.session.tls).toEqual({ protocol: 'TLSv1.3' });
  });

  test('STARTTLS forgets the AUTH identity and the HELO name', async () => {
    const p = make({ tlsHandler: () => true, lookupPassword: () => 'pw' });
    await feed(p, `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw')}\r\nSTARTTLS\r\n`);
    expect(p.session.user).toBe('jo');
    p.tlsStarted();
    expect(p.session.user).toBeUndefined();
    expect(p.session.helo).toBeUndefined();
    expect(p.session.heloVerb).toBeUndefined();
  });
});

describe('getAuthenticationMechanismsHandler', () => {
  test('chooses what is offered; unknown names are dropped; names are upper-cased', async () => {
    const p = make({
      lookupPassword: () => 'pw',
      getAuthenticationMechanismsHandler: (info) =>
        info.secure ? ['plain', 'login'] : ['login', 'SCRAM-SHA-1'],
    });
    const out = await session(p, `EHLO c\r\nAUTH PLAIN ${plain('jo', 'pw')}\r\n`);
    expect(lines(out)).toContain('250-AUTH LOGIN');
    expect(finals(out)[1]).toBe('504 5.5.4 Unrecognized authentication type');
  });

  test('an empty list means no AUTH', async () => {
    const out = await session(
      make({ lookupPassword: () => 'pw', getAuthenticationMechanismsHandler: () => [] }),
      'EHLO c\r\nAUTH PLAIN\r\n',
    );
    expect(lines(out).filter((l) => l.includes('AUTH'))).toEqual([]);
    expect(finals(out)[1]).toBe('503 5.5.1 Error: authentication not enabled');
  });

  test('only mechanisms the auth hooks can verify are offered, whatever the list says', async () => {
    // No validate hook and no password lookup: AUTH stays off (nothing could ever succeed).
    const none = await session(
      make({ getAuthenticationMechanismsHandler: () => ['PLAIN'] }),
      'EHLO c\r\nAUTH PLAIN\r\n',
    );
    expect(lines(none).filter((l) => l.includes('AUTH'))).toEqual([]);
    expect(finals(none)[1]).toBe('503 5.5.1 Error: authentication not enabled');
    // XOAUTH2 needs the validate hook: a password lookup cannot check a bearer token.
    const lookupOnly = await session(
      make({ lookupPassword: () => 'pw', getAuthenticationMechanismsHandler: () => ['XOAUTH2', 'LOGIN'] }),
      'EHLO c\r\n',
    );
    expect(lines(lookupOnly)).toContain('250-AUTH LOGIN');
  });

  test('a hook that throws → 451 4.3.0 for EHLO and AUTH; the session goes on', async () => {
    const p = make({ lookupPassword: () => 'pw', getAuthenticationMechanismsHandler: fail });
    const out = await session(p, 'EHLO c\r\nHELO c\r\nAUTH PLAIN\r\nNOOP\r\n');
    expect(finals(out)).toEqual([LOCAL_ERROR, '250 mx.test Hello c', LOCAL_ERROR, '250 2.0.0 Ok']);
  });

  test('an EHLO whose hook fails changes nothing: transaction and identity stay (RFC 5321 §4.1.4)', async () => {
    let calls = 0;
    const p = make({
      lookupPassword: () => 'pw',
      getAuthenticationMechanismsHandler: () => {
        if (++calls === 2) throw new Error('directory down');
        return ['PLAIN'];
      },
    });
    const out = await session(p, 'EHLO c\r\nMAIL FROM:<a@x.test>\r\nEHLO d\r\nRCPT TO:<b@x.test>\r\n');
    expect(finals(out).slice(1)).toEqual([
      '250 2.1.0 Sender a@x.test ok',
      LOCAL_ERROR,
      '250 2.1.5 Recipient b@x.test ok',
    ]);
    expect(p.session.helo).toBe('c');
    expect(p.state).toBe(State.Rcpt);
  });
});

describe('observers that throw', () => {
  test('onCommand, onReply and logHandler throwing change nothing; the failure reaches the log', async () => {
    const logged: string[] = [];
    const boom = (): never => {
      throw new Error('observer bug');
    };
    const p = make({
      onCommand: boom,
      onReply: boom,
      logHandler: (message) => {
        logged.push(message);
        if (message.startsWith('C: NOOP')) throw new Error('log bug');
      },
    });
    const out = await session(p, `${envelope()}NOOP\r\nQUIT\r\n`);
    expect(codes(out)).toEqual([250, 250, 250, 250, 221]);
    expect(logged).toContain('onCommand threw: observer bug');
    expect(logged).toContain('onReply threw: observer bug');
    expect(p.state).toBe(State.Done);
  });

  test('a disabledCommands function that throws is a failing hook: 451, and the session goes on', async () => {
    let down = false;
    const p = make({
      disabledCommands: () => {
        if (down) throw new Error('policy down');
        return [];
      },
    });
    expect(codes(await session(p, 'EHLO c\r\n'))).toEqual([250]);
    down = true;
    const out = await session(p, 'NOOP\r\nHELP\r\nEHLO d\r\n');
    expect(finals(out)).toEqual([LOCAL_ERROR, LOCAL_ERROR, LOCAL_ERROR]);
    down = false;
    expect(finals(await session(p, 'MAIL FROM:<a@x.test>\r\n'))).toEqual(['250 2.1.0 Sender a@x.test ok']);
    expect(p.session.helo).toBe('c'); // the failed EHLO changed nothing
  });

  test('the hooks behind EHLO keywords see the identity that EHLO gives', async () => {
    const seen: Array<string | undefined> = [];
    const p = make({
      lookupPassword: () => 'pw',
      getAuthenticationMechanismsHandler: (s) => (
        seen.push(s.helo),
        s.helo === 'legacy.example' ? [] : ['PLAIN']
      ),
    });
    const first = await session(p, 'EHLO modern.example\r\n');
    const second = await session(p, 'EHLO legacy.example\r\n');
    expect(seen.slice(0, 2)).toEqual(['modern.example', 'legacy.example']);
    expect(lines(first)).toContain('250-AUTH PLAIN');
    expect(lines(second).some((line) => line.includes('AUTH'))).toBe(false);
  });

  test('parse() and run() from inside a hook take nothing and reorder nothing', async () => {
    let nested: { rest: string; replies: number } | undefined;
    let inner: ReturnType<Protocol['run']> | undefined;
    const p: Protocol = make({
      validateSenderHandler: () => {
        const r = p.parse('NOOP\r\n');
        nested = { rest: r.rest, replies: r.replies.length };
        inner = p.run(1);
        return true;
      },
    });
    p.receive(Buffer.from('EHLO c\r\nMAIL FROM:<a@x.test>\r\nNOOP\r\nNOOP\r\nNOOP\r\n'));
    const outer = p.run(3);
    expect(nested).toEqual({ rest: 'NOOP\r\n', replies: 0 });
    expect(inner).toMatchObject({ output: null, more: false }); // the queued replies stay the outer run's
    // The outer run keeps its own budget: three replies, in order, then `more`.
    expect(finals(outer.output?.toString() ?? '')).toEqual([
      '250 DSN', // the last line of the EHLO reply
      '250 2.1.0 Sender a@x.test ok',
      '250 2.0.0 Ok',
    ]);
    expect(outer.more).toBe(true);
  });
});

describe('onCommand / onReply', () => {
  test('see every command line and every reply, SASL responses excepted', async () => {
    const commands: string[] = [];
    const replies: number[] = [];
    const p = new Protocol({
      hostname: 'mx.test',
      lookupPassword: () => 'pw',
      onCommand: (command) => commands.push(command.verb),
      onReply: (answer) => replies.push(answer.code),
    });
    p.start();
    const out = await session(p, `EHLO c\r\nAUTH LOGIN\r\n${b64('jo')}\r\n${b64('pw')}\r\nQUIT\r\n`);
    expect(commands).toEqual(['EHLO', 'AUTH', 'QUIT']);
    expect(replies).toEqual([220, ...codes(out)]);
  });

  test('onReply sees the 421 that closes a session after too many errors', async () => {
    const replies: number[] = [];
    const p = make({ maxErrors: 2, onReply: (answer) => replies.push(answer.code) });
    const out = await session(p, 'FOO\r\nBAR\r\n');
    expect(codes(out)).toEqual([500, 500, 421]);
    expect(replies).toEqual([220, 500, 500, 421]);
  });
});
