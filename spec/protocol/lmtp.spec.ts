import { Reply } from '../../lib/protocol/reply';
import type { IncomingMessage, MessageResult } from '../../lib/protocol/types';
import { codes, ehloKeywords, open, parseReplies, send } from './drive';

const raw = (text: string) => parseReplies(text).map((r) => r.raw);

/** An LMTP session whose hook reads the text and answers with `answer`. */
function lmtp(answer: (message: IncomingMessage) => MessageResult, options: Parameters<typeof open>[0] = {}) {
  const texts: string[] = [];
  const s = open({
    lmtp: true,
    ...options,
    messageReceivedHandler: async (message: IncomingMessage) => {
      texts.push((await message.body.buffer()).toString('latin1'));
      return answer(message);
    },
  });
  return { s, texts };
}

const THREE =
  'LHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nRCPT TO:<d@y.test>\r\n';

describe('LMTP (RFC 2033)', () => {
  it('greets as LMTP and answers LHLO with the extensions', async () => {
    const s = open({ lmtp: true });
    expect(s.transcript).toBe('220 mx.test LMTP smtp-session-stream\r\n');
    const reply = await send(s, 'LHLO c.test\r\n');
    expect(reply.startsWith('250-mx.test Hello c.test\r\n')).toBe(true);
    expect(ehloKeywords(reply)).toEqual(expect.arrayContaining(['PIPELINING', 'ENHANCEDSTATUSCODES']));
    expect(s.p.session.heloVerb).toBe('LHLO');
  });

  it('refuses HELO and EHLO with 500, and LHLO in SMTP', async () => {
    const s = open({ lmtp: true });
    expect(raw(await send(s, 'HELO c.test\r\nEHLO c.test\r\nMAIL FROM:<a@x.test>\r\n'))).toEqual([
      '500 5.5.2 Error: command not recognized',
      '500 5.5.2 Error: command not recognized',
      '503 5.5.1 Error: send LHLO first',
    ]);
    const smtp = open();
    expect(raw(await send(smtp, 'LHLO c.test\r\n'))).toEqual(['500 5.5.2 Error: command not recognized']);
  });

  it('answers once per accepted recipient after the final dot, with the hook’s ids and Replies', async () => {
    const full = new Reply(452, 'Mailbox full', '4.2.2');
    const { s, texts } = lmtp(() => ['id-b', full], {
      validateRecipientHandler: (to) => to.address !== 'c@y.test',
    });
    const replies = await send(s, `${THREE}DATA\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n`);
    expect(raw(replies).slice(-6)).toEqual([
      '550 5.1.1 Invalid recipient c@y.test',
      '250 2.1.5 Recipient d@y.test ok',
      '354 End data with <CR><LF>.<CR><LF>',
      '250 2.1.5 <b@y.test> Ok: queued as id-b',
      '452 4.2.2 Mailbox full',
      '221 2.0.0 Bye',
    ]);
    expect(texts).toEqual(['hello\r\n.dot\r\n']);
    expect(s.p.session.transactionCount).toBe(1);
  });

  it('names each recipient in its own reply when the hook gives one id for all', async () => {
    const { s } = lmtp(() => 'Q1');
    const replies = await send(s, `${THREE}DATA\r\nx\r\n.\r\n`);
    expect(raw(replies).slice(-3)).toEqual([
      '250 2.1.5 <b@y.test> Ok: queued as Q1',
      '250 2.1.5 <c@y.test> Ok: queued as Q1',
      '250 2.1.5 <d@y.test> Ok: queued as Q1',
    ]);
  });

  it('gives every recipient the same generated id when the hook returns nothing', async () => {
    const { s } = lmtp(() => undefined, { now: () => 0 });
    const replies = parseReplies(await send(s, `${THREE}DATA\r\nx\r\n.\r\n`)).slice(-3);
    const ids = replies.map((r) => /queued as (\S+)$/.exec(r.lines[0])?.[1]);
    expect(ids[0]).toBeDefined();
    expect(new Set(ids).size).toBe(1);
    expect(replies.map((r) => /<([^>]+)>/.exec(r.lines[0])?.[1])).toEqual([
      'b@y.test',
      'c@y.test',
      'd@y.test',
    ]);
  });

  it('repeats a refusal for every recipient', async () => {
    const { s } = lmtp(() => new Reply(554, 'Rejected by policy', '5.7.1'));
    const replies = await send(s, `${THREE}DATA\r\nx\r\n.\r\n`);
    expect(codes(replies).slice(-3)).toEqual([554, 554, 554]);
    expect(s.p.session.transactionCount).toBe(0);
  });

  it('answers 552 per recipient when the text is too big, and 451 per recipient when the hook fails', async () => {
    const big = lmtp(() => 'never', { maxMessageSize: 5 });
    expect(codes(await send(big.s, `${THREE}DATA\r\n123456789\r\n.\r\n`)).slice(-3)).toEqual([552, 552, 552]);
    const failing = lmtp(() => {
      throw new Error('store down');
    });
    expect(codes(await send(failing.s, `${THREE}DATA\r\nx\r\n.\r\n`)).slice(-3)).toEqual([451, 451, 451]);
  });

  it('answers per recipient after BDAT LAST too', async () => {
    const { s, texts } = lmtp(() => ['A', 'B', 'C']);
    const replies = await send(s, `${THREE}BDAT 3\r\nabcBDAT 2 LAST\r\nde`);
    expect(raw(replies).slice(-4)).toEqual([
      '250 2.0.0 3 octets received',
      '250 2.1.5 <b@y.test> Ok: queued as A',
      '250 2.1.5 <c@y.test> Ok: queued as B',
      '250 2.1.5 <d@y.test> Ok: queued as C',
    ]);
    expect(texts).toEqual(['abcde']);
  });

  it('answers a failing chunk that is not the LAST once, not once per recipient', async () => {
    const { s } = lmtp(() => 'never', { maxMessageSize: 3 });
    const replies = await send(s, `${THREE}BDAT 2\r\nabBDAT 2\r\ncdNOOP\r\n`);
    // Per-recipient replies answer a whole message (RFC 2033 §4.2); a chunk gets one (RFC 3030 §2).
    expect(raw(replies).slice(-3)).toEqual([
      '250 2.0.0 2 octets received',
      '552 5.3.4 Error: message size exceeds fixed maximum message size',
      '250 2.0.0 Ok',
    ]);
    expect(s.p.envelope).toBeUndefined();
  });

  it('DATA or BDAT with every recipient refused gets 503, as RFC 2033 §4.2 requires', async () => {
    const refuseAll = { validateRecipientHandler: () => false };
    for (const command of ['DATA\r\n', 'BDAT 1 LAST\r\nx']) {
      const { s } = lmtp(() => 'never', refuseAll);
      const replies = await send(s, `${THREE}${command}NOOP\r\n`);
      expect(raw(replies).slice(-2)).toEqual(['503 5.5.1 Error: need RCPT command', '250 2.0.0 Ok']);
    }
  });

  it('in SMTP sends only the first answer of a list', async () => {
    const s = open({ messageReceivedHandler: () => ['first', 'second'] });
    const replies = await send(
      s,
      'EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\nx\r\n.\r\n',
    );
    expect(raw(replies).slice(-1)).toEqual(['250 2.0.0 Ok: queued as first']);
  });
});
