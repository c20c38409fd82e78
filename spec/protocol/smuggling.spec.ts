/**
 * SMTP smuggling (CVE-2023-51764 Postfix, CVE-2023-51765 Sendmail, CVE-2023-51766 Exim): a sender
 * hides a second message after a non-standard end-of-data sequence, hoping the receiver ends the
 * first message there and runs the hidden commands. Only CRLF.CRLF may end DATA (RFC 5321 §4.1.1.4).
 */
import { bytes, codes, envelopeLines, open, parseReplies, referenceDotText, send } from './drive';

const VARIANTS: Array<[string, string]> = [
  ['<LF>.<LF>', '\n.\n'],
  ['<CR>.<CR>', '\r.\r'],
  ['<LF>.<CR><LF>', '\n.\r\n'],
  ['<CR><LF>.<LF>', '\r\n.\n'],
  ['<CR><LF>.<CR>', '\r\n.\r'],
  ['<CR>.<LF>', '\r.\n'],
  ['<LF>.<CR>', '\n.\r'],
];

const SMUGGLED = 'MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nFrom: ceo@bank\r\n\r\nSend money\r\n';

/** The text of the first message: a header, a body ending with the variant, then the smuggled commands. */
function text(variant: string): string {
  return `Subject: hello\r\n\r\nbody${variant}${SMUGGLED}`;
}

describe.each(VARIANTS)('SMTP smuggling with %s', (_name, variant) => {
  const input = `${envelopeLines('a@x.test', ['b@y.test'])}DATA\r\n${text(variant)}\r\n.\r\nQUIT\r\n`;
  const expected = referenceDotText(bytes(`${text(variant)}\r\n.\r\n`));

  it.each([
    ['whole', [input]],
    ['one byte per write', [...input]],
  ])('never ends the message or runs the smuggled commands (%s)', async (_how, pieces) => {
    const s = open();
    await send(s, ...pieces);
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 250, 221]);
    expect(s.delivered).toHaveLength(1);
    const [message] = s.delivered;
    expect(message.envelope.mailFrom.address).toBe('a@x.test');
    expect(message.envelope.rcptTo.map((r) => r.address)).toEqual(['b@y.test']);
    // The smuggled commands are message text, stored exactly as the reference model says.
    expect(message.bytes.equals(expected?.text as Buffer)).toBe(true);
    expect(message.bytes.toString('latin1')).toContain(
      'MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n',
    );
    expect(s.transcript).not.toContain('evil');
    expect(s.transcript).not.toContain('victim');
  });

  it("is refused with 554 5.6.0 after the real final dot with bareNewlines: 'reject'; the session goes on", async () => {
    const s = open({ bareNewlines: 'reject' });
    const second = `MAIL FROM:<c@x.test>\r\nRCPT TO:<d@y.test>\r\nDATA\r\nclean\r\n.\r\n`;
    const replies = await send(s, input.replace('QUIT\r\n', second + 'QUIT\r\n'));
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 554, 250, 250, 354, 250, 221]);
    expect(parseReplies(replies)[4].raw).toBe(
      '554 5.6.0 Error: message contains bare <CR> or <LF> characters',
    );
    expect(s.delivered).toHaveLength(1);
    expect(s.delivered[0].envelope.mailFrom.address).toBe('c@x.test');
    expect(s.delivered[0].bytes.toString('latin1')).toBe('clean\r\n');
    expect(s.bodyErrors).toHaveLength(1);
    expect(s.transcript).not.toContain('evil');
  });

  it("is refused the same way when every byte arrives on its own with bareNewlines: 'reject'", async () => {
    const s = open({ bareNewlines: 'reject' });
    await send(s, ...input);
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 554, 221]);
    expect(s.delivered).toHaveLength(0);
  });
});

describe('SMTP smuggling: CRLF-clean text is untouched by the reject policy', () => {
  it("accepts a message whose lines all end in CRLF with bareNewlines: 'reject'", async () => {
    const s = open({ bareNewlines: 'reject' });
    const body = 'Subject: x\r\n\r\n..dot\r\nline\r\n';
    await send(s, `${envelopeLines()}DATA\r\n${body}.\r\nQUIT\r\n`);
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 250, 221]);
    expect(s.delivered[0].bytes.toString('latin1')).toBe('Subject: x\r\n\r\n.dot\r\nline\r\n');
  });

  it('keeps a message hook that ignores the body from accepting a refused message', async () => {
    const s = open({ bareNewlines: 'reject', messageReceivedHandler: () => 'accepted-without-reading' });
    await send(s, `${envelopeLines()}DATA\r\nbare\nLF\r\n.\r\nQUIT\r\n`);
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 554, 221]);
  });
});

describe('Bare LF as a command terminator', () => {
  const session = 'EHLO c.test\nMAIL FROM:<a@x.test>\nRCPT TO:<b@y.test>\nDATA\nhi\r\n.\r\nQUIT\n';

  it('is accepted by default', async () => {
    const s = open();
    await send(s, session);
    expect(codes(s.transcript)).toEqual([220, 250, 250, 250, 354, 250, 221]);
    expect(s.delivered[0].bytes.toString('latin1')).toBe('hi\r\n');
  });

  it('is refused with 500 5.5.2 when allowBareLfInCommands is false; CRLF lines still work', async () => {
    const s = open({ allowBareLfInCommands: false });
    const replies = await send(s, 'EHLO c.test\nNOOP\r\nEHLO c.test\r\nMAIL FROM:<a@x.test>\nQUIT\r\n');
    expect(codes(replies)).toEqual([500, 250, 250, 500, 221]);
    expect(parseReplies(replies)[0].raw).toBe('500 5.5.2 Error: command line ended with a bare <LF>');
    expect(s.p.envelope).toBeUndefined();
  });

  it('still consumes the chunk of a BDAT line it refuses for its bare LF: those bytes are never commands', async () => {
    const s = open({ allowBareLfInCommands: false });
    const chunk = 'RSET\r\nMAIL FROM:<evil@x>\r\n';
    const replies = await send(
      s,
      `EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT ${chunk.length} LAST\n${chunk}NOOP\r\n`,
    );
    expect(
      parseReplies(replies)
        .map((r) => r.raw)
        .slice(3),
    ).toEqual(['500 5.5.2 Error: command line ended with a bare <LF>', '250 2.0.0 Ok']);
    expect(s.transcript).not.toContain('evil');
    // The refused BDAT ended the transaction (RFC 3030 §2); the chunk's MAIL never opened another.
    expect(s.p.envelope).toBeUndefined();
    expect(s.p.state).toBe('MAIL');
  });
});
