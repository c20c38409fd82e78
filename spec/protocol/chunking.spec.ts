import { reply } from '../../lib/protocol/replies';
import type { IncomingMessage } from '../../lib/protocol/types';
import { bytes, codes, envelopeLines, open, parseReplies, send } from './drive';

const HEAD = envelopeLines();
const raw = (text: string) => parseReplies(text).map((r) => r.raw);

describe('CHUNKING (RFC 3030): BDAT', () => {
  it('is advertised', async () => {
    const s = open();
    expect(await send(s, 'EHLO c.test\r\n')).toContain('250-CHUNKING\r\n');
  });

  it('takes a single LAST chunk and answers with the queue id', async () => {
    const s = open();
    await send(s, HEAD);
    expect(raw(await send(s, 'BDAT 5 LAST\r\nhello'))).toEqual(['250 2.0.0 Ok: queued as ID1']);
    expect(s.delivered).toHaveLength(1);
    expect(s.delivered[0].bytes.toString()).toBe('hello');
    expect(s.delivered[0].envelope.transfer).toBe('BDAT');
    expect(s.p.bufferedInput).toBe(0);
  });

  it('takes several chunks pipelined in one write, answering each', async () => {
    const s = open();
    const replies = await send(s, `${HEAD}BDAT 3\r\nabcBDAT 4\r\ndefgBDAT 2 LAST\r\nhiQUIT\r\n`);
    expect(raw(replies).slice(3)).toEqual([
      '250 2.0.0 3 octets received',
      '250 2.0.0 4 octets received',
      '250 2.0.0 Ok: queued as ID1',
      '221 2.0.0 Bye',
    ]);
    expect(s.delivered[0].bytes.toString()).toBe('abcdefghi');
  });

  it('takes BDAT 0 LAST, alone or after other chunks', async () => {
    const s = open();
    await send(s, `${HEAD}BDAT 0 LAST\r\n`);
    expect(codes(s.transcript).slice(-1)).toEqual([250]);
    expect(s.delivered[0].bytes.length).toBe(0);
    await send(s, 'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 2\r\nokBDAT 0 last\r\n');
    expect(codes(s.transcript).slice(-4)).toEqual([250, 250, 250, 250]);
    expect(s.delivered[1].bytes.toString()).toBe('ok');
  });

  it('keeps binary content byte for byte, CRLF.CRLF and leading dots included, however it is split', async () => {
    const content = Buffer.concat([
      Buffer.from([...Array(256).keys()]),
      bytes('\r\n.\r\n..\r\n.\n\r.\rQUIT\r\n'),
      Buffer.from([...Array(256).keys()].reverse()),
    ]);
    const input = Buffer.concat([
      bytes(
        `EHLO c.test\r\nMAIL FROM:<a@x.test> BODY=BINARYMIME\r\nRCPT TO:<b@y.test>\r\nBDAT ${content.length} LAST\r\n`,
      ),
      content,
      bytes('NOOP\r\n'),
    ]);
    for (const step of [input.length, 97, 7, 1]) {
      const s = open();
      const pieces: Buffer[] = [];
      for (let at = 0; at < input.length; at += step) pieces.push(input.subarray(at, at + step));
      await send(s, ...pieces);
      expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 250, 250]);
      expect(s.delivered[0].bytes.equals(content)).toBe(true);
      expect(s.delivered[0].envelope.bodyType).toBe('BINARYMIME');
    }
  });

  it('refuses BDAT without a recipient (503) and still consumes its bytes', async () => {
    const s = open();
    const replies = await send(
      s,
      'EHLO c.test\r\nBDAT 6\r\nNOOP\r\nMAIL FROM:<a@x.test>\r\nBDAT 10 LAST\r\nRSET\r\nQUITNOOP\r\n',
    );
    expect(raw(replies).slice(1)).toEqual([
      '503 5.5.1 Error: need MAIL command',
      '250 2.1.0 Sender a@x.test ok',
      '503 5.5.1 Error: need RCPT command',
      '250 2.0.0 Ok',
    ]);
    expect(s.delivered).toHaveLength(0);
    // A refused BDAT fails the transaction (RFC 3030 §2): the client starts over with MAIL.
    expect(s.p.envelope).toBeUndefined();
    const again = 'RCPT TO:<b@y.test>\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 1 LAST\r\nz';
    expect(codes(await send(s, again))).toEqual([503, 250, 250, 250]);
    expect(s.delivered[0].bytes.toString()).toBe('z');
  });

  it('a BDAT refused as the first chunk fails the transaction: a later chunk never starts a message with a hole', async () => {
    const s = open({
      smtpVerbFilter: (command) => (command.orig === 'BDAT 3' ? reply('LocalError') : undefined),
    });
    // RFC 3030 §2: chunks already pipelined after a failed BDAT are accepted and discarded.
    const replies = await send(s, `${HEAD}BDAT 3\r\nabcBDAT 3 LAST\r\ndefNOOP\r\n`);
    expect(raw(replies).slice(3)).toEqual([
      '451 4.3.0 Error: internal error, try again later',
      '503 5.5.1 Error: need MAIL command',
      '250 2.0.0 Ok',
    ]);
    expect(s.delivered).toHaveLength(0);
  });

  it('after a refused BDAT LAST the next message goes through (the transaction ended with it)', async () => {
    const s = open({
      smtpVerbFilter: (command) => (command.orig === 'BDAT 3 LAST' ? reply('LocalError') : undefined),
    });
    const replies = await send(
      s,
      `${HEAD}BDAT 3\r\nabcBDAT 3 LAST\r\ndefMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 2 LAST\r\ngh`,
    );
    expect(raw(replies).slice(3)).toEqual([
      '250 2.0.0 3 octets received',
      '451 4.3.0 Error: internal error, try again later',
      '250 2.1.0 Sender a@x.test ok',
      '250 2.1.5 Recipient b@y.test ok',
      '250 2.0.0 Ok: queued as ID1',
    ]);
    expect(s.delivered.map((m) => m.bytes.toString())).toEqual(['gh']);
  });

  it('answers BDAT after only refused recipients as DATA: 554 no valid recipients', async () => {
    const s = open({ validateRecipientHandler: () => false });
    const replies = await send(s, `${HEAD}BDAT 3 LAST\r\nxyzNOOP\r\n`);
    expect(raw(replies).slice(2)).toEqual([
      '550 5.1.1 Invalid recipient b@y.test',
      '554 5.5.1 Error: no valid recipients',
      '250 2.0.0 Ok',
    ]);
  });

  it('consumes the bytes of a BDAT refused before EHLO', async () => {
    const s = open();
    const replies = await send(s, 'BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n');
    expect(raw(replies)).toEqual(['503 5.5.1 Error: send HELO/EHLO first', '250 2.0.0 Ok']);
  });

  it('consumes the bytes of a BDAT refused because TLS is required', async () => {
    const s = open({ requireTls: true });
    const replies = await send(s, 'EHLO c.test\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n');
    expect(raw(replies).slice(1)).toEqual(['530 5.7.0 Must issue a STARTTLS command first', '250 2.0.0 Ok']);
  });

  it('consumes the bytes of a BDAT refused by an async verb filter, and keeps the rest in order', async () => {
    const s = open({
      smtpVerbFilter: async (command) => {
        await new Promise((resolve) => setImmediate(resolve));
        return command.verb === 'BDAT' && command.args.startsWith('6') ? reply('NotImplemented') : undefined;
      },
    });
    const replies = await send(s, `${HEAD}BDAT 6 LAST\r\nQUIT\r\nBDAT 2 LAST\r\nokNOOP\r\n`);
    // The refused chunk ended the transaction: the pipelined chunk behind it is consumed, refused.
    expect(raw(replies).slice(3)).toEqual([
      '502 5.5.1 Error: command not implemented',
      '503 5.5.1 Error: need MAIL command',
      '250 2.0.0 Ok',
    ]);
    expect(s.delivered).toHaveLength(0);
  });

  it('never accepts a message with a hole: a chunk refused mid-transaction fails the message', async () => {
    const s = open({
      smtpVerbFilter: (command) => (command.orig === 'BDAT 3' ? reply('NotImplemented') : undefined),
    });
    const replies = await send(s, `${HEAD}BDAT 2\r\nabBDAT 3\r\ncdeBDAT 2 LAST\r\nfgNOOP\r\n`);
    expect(raw(replies).slice(3)).toEqual([
      '250 2.0.0 2 octets received',
      '502 5.5.1 Error: command not implemented',
      '503 5.5.1 Error: need MAIL command',
      '250 2.0.0 Ok',
    ]);
    expect(s.delivered).toHaveLength(0);
    expect(s.p.envelope).toBeUndefined();
  });

  it('fails the message when a chunk line is too long but its bytes were claimed', async () => {
    const s = open();
    const replies = await send(s, `${HEAD}BDAT 1\r\naBDAT 1${' '.repeat(600)}\r\nbBDAT 1 LAST\r\nc`);
    expect(raw(replies).slice(3)).toEqual([
      '250 2.0.0 1 octets received',
      '500 5.5.2 Error: line too long',
      '503 5.5.1 Error: need MAIL command',
    ]);
    expect(s.delivered).toHaveLength(0);
  });

  it.each(['BDAT', 'BDAT x', 'BDAT 3 NOTLAST', 'BDAT -1'])(
    'refuses malformed %j without claiming any bytes, and fails the transaction',
    async (command) => {
      const s = open();
      await send(s, HEAD);
      const replies = await send(s, `${command}\r\nNOOP\r\n`);
      expect(raw(replies)).toEqual(['501 5.5.4 Syntax error (BDAT size [LAST])', '250 2.0.0 Ok']);
      expect(s.p.envelope).toBeUndefined();
    },
  );

  it('a malformed BDAT between chunks: the message with its hole is never accepted', async () => {
    const s = open();
    const replies = await send(s, `${HEAD}BDAT 2\r\nabBDAT x\r\nBDAT 2 LAST\r\ncd`);
    expect(raw(replies).slice(3)).toEqual([
      '250 2.0.0 2 octets received',
      '501 5.5.4 Syntax error (BDAT size [LAST])',
      '503 5.5.1 Error: need MAIL command',
    ]);
    expect(s.delivered).toHaveLength(0);
  });

  it('refuses DATA and MAIL between chunks; NOOP is fine', async () => {
    const s = open();
    await send(s, `${HEAD}BDAT 2\r\nab`);
    const replies = await send(s, 'DATA\r\nMAIL FROM:<c@x.test>\r\nNOOP\r\nBDAT 2 LAST\r\ncd');
    const inBdat = '503 5.5.1 Error: BDAT transaction in progress (send BDAT, or RSET to abandon it)';
    expect(raw(replies)).toEqual([inBdat, inBdat, '250 2.0.0 Ok', '250 2.0.0 Ok: queued as ID1']);
    expect(s.delivered[0].bytes.toString()).toBe('abcd');
  });

  it('refuses the chunk that crosses the size limit with 552 and ends the transaction', async () => {
    const s = open({ maxMessageSize: 10 });
    await send(s, HEAD);
    const replies = await send(s, 'BDAT 6\r\n123456BDAT 6\r\n789012BDAT 2 LAST\r\nxxNOOP\r\n');
    expect(raw(replies)).toEqual([
      '250 2.0.0 6 octets received',
      '552 5.3.4 Error: message size exceeds fixed maximum message size',
      '503 5.5.1 Error: need MAIL command',
      '250 2.0.0 Ok',
    ]);
    expect(s.delivered).toHaveLength(0);
    // The 552 went out without waiting for the hook; its reader fails as soon as it runs again.
    await new Promise((resolve) => setImmediate(resolve));
    expect(s.bodyErrors).toHaveLength(1);
    expect(
      codes(await send(s, 'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 10 LAST\r\n0123456789')),
    ).toEqual([250, 250, 250]);
    expect(s.delivered[0].bytes.toString()).toBe('0123456789');
  });

  it('refuses a LAST chunk over the limit with 552', async () => {
    const s = open({ maxMessageSize: 4 });
    await send(s, HEAD);
    expect(raw(await send(s, 'BDAT 5 LAST\r\n12345'))).toEqual([
      '552 5.3.4 Error: message size exceeds fixed maximum message size',
    ]);
    expect(s.p.envelope).toBeUndefined();
  });

  it('aborts the message on RSET between chunks: the hook sees an error and an aborted signal', async () => {
    let signal: AbortSignal | undefined;
    let failure: unknown;
    const s = open({
      messageReceivedHandler: async (message: IncomingMessage) => {
        signal = message.signal;
        try {
          await message.body.buffer();
        } catch (error) {
          failure = error;
          throw error;
        }
        return 'X';
      },
    });
    await send(s, `${HEAD}BDAT 3\r\nabc`);
    expect(signal?.aborted).toBe(false);
    expect(raw(await send(s, 'RSET\r\n'))).toEqual(['250 2.0.0 Ok']);
    await new Promise((resolve) => setImmediate(resolve));
    expect(signal?.aborted).toBe(true);
    expect(String(failure)).toContain('transaction reset');
    expect(s.p.envelope).toBeUndefined();
    // A new transaction goes through.
    s.p.messageReceivedHandler = async (message) => (await message.body.buffer()).toString();
    expect(
      raw(await send(s, 'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT 4 LAST\r\nnext')).slice(-1),
    ).toEqual(['250 2.0.0 Ok: queued as next']);
  });

  it('waits for a slow consumer (backpressure) and still delivers every byte', async () => {
    const received: Buffer[] = [];
    const s = open({
      bodyHighWaterMark: 16,
      messageReceivedHandler: async (message: IncomingMessage) => {
        for await (const chunk of message.body) {
          received.push(Buffer.from(chunk));
          await new Promise((resolve) => setImmediate(resolve));
        }
        return 'SLOW';
      },
    });
    const content = Buffer.alloc(1000);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7) & 0xff;
    await send(s, HEAD, bytes('BDAT 1000 LAST\r\n'));
    for (let i = 0; i < content.length; i += 10) await send(s, content.subarray(i, i + 10));
    expect(s.transcript).toContain('250 2.0.0 Ok: queued as SLOW');
    expect(Buffer.concat(received).equals(content)).toBe(true);
  });

  it('answers 451 after LAST when the message hook fails, and the session goes on', async () => {
    const s = open({
      messageReceivedHandler: async (message: IncomingMessage) => {
        await message.body.buffer();
        throw new Error('disk full');
      },
    });
    const replies = await send(s, `${HEAD}BDAT 2\r\nabBDAT 1 LAST\r\ncNOOP\r\n`);
    expect(raw(replies).slice(3)).toEqual([
      '250 2.0.0 2 octets received',
      '451 4.3.0 Error: unable to store message, try again later',
      '250 2.0.0 Ok',
    ]);
  });

  it('accepts and discards the text when there is no message hook', async () => {
    const s = open({ messageReceivedHandler: null });
    const replies = await send(s, `${HEAD}BDAT 3\r\nabcBDAT 3 LAST\r\ndef`);
    expect(codes(replies)).toEqual([250, 250, 250, 250, 250]);
    expect(parseReplies(replies)[4].raw).toMatch(/^250 2\.0\.0 Ok: queued as \w+$/);
    expect(s.p.session.transactionCount).toBe(1);
  });
});
