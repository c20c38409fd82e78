import {
  State,
  TRANSITIONS,
  UNIMPLEMENTED_VERBS,
  isIdentified,
  readsCommands,
  sequenceError,
} from '../../lib/protocol/state';
import type { Protocol } from '../../lib/protocol/protocol';
import { codes, envelope, finals, lines, make, parseReplies, plain, recorder, session } from './helpers';

const OK = '250 2.0.0 Ok';
const BYE = '221 2.0.0 Bye';
const UNKNOWN = '500 5.5.2 Error: command not recognized';
const NOT_IMPLEMENTED = '502 5.5.1 Error: command not implemented';
const VRFY = '252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery';
const HELP = '214 2.0.0 See RFC 5321 for details';
const HELO_FIRST = '503 5.5.1 Error: send HELO/EHLO first';
const NEED_MAIL = '503 5.5.1 Error: need MAIL command';
const NEED_RCPT = '503 5.5.1 Error: need RCPT command';
const NESTED = '503 5.5.1 Error: nested MAIL command';
const IN_TRANSACTION = '503 5.5.1 Error: MAIL transaction in progress';
const IN_BDAT = '503 5.5.1 Error: BDAT transaction in progress (send BDAT, or RSET to abandon it)';
const HELLO = '250 mx.test Hello c.test';
const EHLO = '250-mx.test Hello c.test'; // the first line of the multi-line reply
const SENDER_OK = '250 2.1.0 Sender a@x.test ok';
const RCPT_OK = '250 2.1.5 Recipient b@y.test ok';
const START_DATA = '354 End data with <CR><LF>.<CR><LF>';
const AUTH_OK = '235 2.7.0 Authentication successful';
const TLS_READY = '220 2.0.0 Ready to start TLS';
const QUEUED = '250 2.0.0 Ok: queued as Q1';

type Verb =
  | 'HELO'
  | 'EHLO'
  | 'MAIL'
  | 'RCPT'
  | 'DATA'
  | 'RSET'
  | 'NOOP'
  | 'QUIT'
  | 'HELP'
  | 'VRFY'
  | 'EXPN'
  | 'AUTH'
  | 'STARTTLS'
  | 'BDAT'
  | 'unknown'
  | 'empty';

const LINE: Record<Verb, string> = {
  HELO: 'HELO c.test',
  EHLO: 'EHLO c.test',
  MAIL: 'MAIL FROM:<a@x.test>',
  RCPT: 'RCPT TO:<b@y.test>',
  DATA: 'DATA',
  RSET: 'RSET',
  NOOP: 'NOOP',
  QUIT: 'QUIT',
  HELP: 'HELP',
  VRFY: 'VRFY someone',
  EXPN: 'EXPN staff',
  AUTH: `AUTH PLAIN ${plain('user', 'secret')}`,
  STARTTLS: 'STARTTLS',
  BDAT: 'BDAT 0 LAST',
  unknown: 'FROB x',
  empty: '',
};

type Start = 'ESTABLISH' | 'MAIL' | 'RCPT+rcpt' | 'RCPT-rcpt' | 'BDAT';

const PREFIX: Record<Start, string> = {
  ESTABLISH: '',
  MAIL: 'EHLO c.test\r\n',
  'RCPT+rcpt': envelope(),
  'RCPT-rcpt': 'EHLO c.test\r\nMAIL FROM:<a@x.test>\r\n',
  BDAT: `${envelope()}BDAT 3\r\nabc`,
};

const STATE_OF: Record<Start, State> = {
  ESTABLISH: State.Establish,
  MAIL: State.Mail,
  'RCPT+rcpt': State.Rcpt,
  'RCPT-rcpt': State.Rcpt,
  BDAT: State.Bdat,
};

/** [reply line (the last line of the reply), next state] */
type Cell = [string, State];

const E = State.Establish;
const M = State.Mail;
const R = State.Rcpt;
const B = State.Bdat;
const D = State.Done;

const TABLE: Record<Start, Record<Verb, Cell>> = {
  ESTABLISH: {
    HELO: [HELLO, M],
    EHLO: [EHLO, M],
    MAIL: [HELO_FIRST, E],
    RCPT: [HELO_FIRST, E],
    DATA: [HELO_FIRST, E],
    RSET: [OK, E],
    NOOP: [OK, E],
    QUIT: [BYE, D],
    HELP: [HELP, E],
    VRFY: [VRFY, E],
    EXPN: [NOT_IMPLEMENTED, E],
    AUTH: [HELO_FIRST, E],
    STARTTLS: [TLS_READY, State.StartTls],
    BDAT: [HELO_FIRST, E],
    unknown: [UNKNOWN, E],
    empty: [UNKNOWN, E],
  },
  MAIL: {
    HELO: [HELLO, M],
    EHLO: [EHLO, M],
    MAIL: [SENDER_OK, R],
    RCPT: [NEED_MAIL, M],
    DATA: [NEED_MAIL, M],
    RSET: [OK, M],
    NOOP: [OK, M],
    QUIT: [BYE, D],
    HELP: [HELP, M],
    VRFY: [VRFY, M],
    EXPN: [NOT_IMPLEMENTED, M],
    AUTH: [AUTH_OK, M],
    STARTTLS: [TLS_READY, State.StartTls],
    BDAT: [NEED_MAIL, M],
    unknown: [UNKNOWN, M],
    empty: [UNKNOWN, M],
  },
  'RCPT+rcpt': {
    HELO: [HELLO, M],
    EHLO: [EHLO, M],
    MAIL: [NESTED, R],
    RCPT: [RCPT_OK, R],
    DATA: [START_DATA, State.Data],
    RSET: [OK, M],
    NOOP: [OK, R],
    QUIT: [BYE, D],
    HELP: [HELP, R],
    VRFY: [VRFY, R],
    EXPN: [NOT_IMPLEMENTED, R],
    AUTH: [IN_TRANSACTION, R],
    STARTTLS: [IN_TRANSACTION, R],
    BDAT: [QUEUED, M],
    unknown: [UNKNOWN, R],
    empty: [UNKNOWN, R],
  },
  'RCPT-rcpt': {
    HELO: [HELLO, M],
    EHLO: [EHLO, M],
    MAIL: [NESTED, R],
    RCPT: [RCPT_OK, R],
    DATA: [NEED_RCPT, R],
    RSET: [OK, M],
    NOOP: [OK, R],
    QUIT: [BYE, D],
    HELP: [HELP, R],
    VRFY: [VRFY, R],
    EXPN: [NOT_IMPLEMENTED, R],
    AUTH: [IN_TRANSACTION, R],
    STARTTLS: [IN_TRANSACTION, R],
    BDAT: [NEED_RCPT, M], // a refused BDAT fails the transaction (RFC 3030 §2)
    unknown: [UNKNOWN, R],
    empty: [UNKNOWN, R],
  },
  BDAT: {
    HELO: [HELLO, M],
    EHLO: [EHLO, M],
    MAIL: [IN_BDAT, B],
    RCPT: [IN_BDAT, B],
    DATA: [IN_BDAT, B],
    RSET: [OK, M],
    NOOP: [OK, B],
    QUIT: [BYE, D],
    HELP: [HELP, B],
    VRFY: [VRFY, B],
    EXPN: [NOT_IMPLEMENTED, B],
    AUTH: [IN_BDAT, B],
    STARTTLS: [IN_BDAT, B],
    BDAT: [QUEUED, M],
    unknown: [UNKNOWN, B],
    empty: [UNKNOWN, B],
  },
};

function newProtocol(): Protocol {
  return make({
    lookupPassword: (user) => (user === 'user' ? 'secret' : undefined),
    tlsHandler: () => true,
    messageReceivedHandler: () => 'Q1',
  });
}

const ROWS = (Object.keys(TABLE) as Start[]).flatMap((start) =>
  (Object.keys(TABLE[start]) as Verb[]).map((verb) => [start, verb, ...TABLE[start][verb]] as const),
);

describe('state table: every verb in every reachable state', () => {
  test.each(ROWS)('%s + %s → %s, state %s', async (start, verb, expected, next) => {
    const p = newProtocol();
    const setup = await session(p, PREFIX[start]);
    expect(codes(setup).every((code) => code < 400)).toBe(true);
    expect(p.state).toBe(STATE_OF[start]);
    const out = await session(p, `${LINE[verb]}\r\n`);
    const replies = parseReplies(out);
    expect(replies).toHaveLength(1);
    // EHLO: the first line; everything else is one line.
    expect(verb === 'EHLO' ? replies[0].lines[0] : replies[0].lines.at(-1)).toBe(expected);
    expect(p.state).toBe(next);
  });

  test('HELP lists the verbs on its first line', async () => {
    const out = await session(newProtocol(), 'HELP\r\n');
    expect(lines(out)).toEqual([
      '214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY AUTH STARTTLS',
      HELP,
    ]);
  });

  test('HELP lists only what this session offers now', async () => {
    const helpLine = async (p: Protocol, before = ''): Promise<string> =>
      lines(await session(p, `${before}HELP\r\n`)).at(-2) ?? '';
    // No TLS hook, no way to check passwords: no STARTTLS, no AUTH.
    expect(await helpLine(make())).toBe(
      '214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY',
    );
    // Without CHUNKING, or with BDAT or VRFY switched off, those go too.
    expect(await helpLine(make({ disabledExtensions: ['CHUNKING'] }))).not.toContain('BDAT');
    const trimmed = await helpLine(make({ disabledCommands: ['BDAT', 'VRFY'] }));
    expect(trimmed).toBe('214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP');
    // Under TLS, STARTTLS is no longer offered; AUTH still is.
    const secure = newProtocol();
    await session(secure, 'EHLO c\r\nSTARTTLS\r\n');
    secure.tlsStarted();
    expect(await helpLine(secure)).toBe(
      '214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY AUTH',
    );
    // LMTP: LHLO instead of HELO and EHLO.
    expect(await helpLine(make({ lmtp: true }))).toMatch(/^214-2\.0\.0 Commands: LHLO MAIL RCPT DATA /);
  });

  test('the table module agrees with the protocol: HELO/EHLO from every open state', () => {
    expect(TRANSITIONS.HELO.from).toEqual([State.Establish, State.Mail, State.Rcpt, State.Bdat]);
    expect(TRANSITIONS.MAIL).toEqual({ from: [State.Mail], to: State.Rcpt });
    expect(TRANSITIONS.AUTH.from).toEqual([State.Mail]);
    expect(UNIMPLEMENTED_VERBS.has('EXPN')).toBe(true);
    expect(UNIMPLEMENTED_VERBS.has('TURN')).toBe(true);
    expect(readsCommands(State.Data)).toBe(false);
    expect(readsCommands(State.Auth)).toBe(false);
    expect(readsCommands(State.Bdat)).toBe(true);
    expect(isIdentified(State.Establish)).toBe(false);
    expect(isIdentified(State.Rcpt)).toBe(true);
    expect(sequenceError('DATA', State.Mail)).toBe('need-mail');
    expect(sequenceError('DATA', State.Rcpt)).toBe('need-rcpt');
    expect(sequenceError('BDAT', State.Mail)).toBe('need-mail');
    expect(sequenceError('MAIL', State.Bdat)).toBe('in-bdat');
  });
});

describe('sequencing (RFC 5321 §3.3, §4.1.4)', () => {
  test('MAIL before HELO → 503', async () => {
    expect(finals(await session(make(), 'MAIL FROM:<a@x.test>\r\n'))).toEqual([HELO_FIRST]);
  });

  test('RCPT before MAIL → 503', async () => {
    expect(finals(await session(make(), 'HELO c.test\r\nRCPT TO:<b@y.test>\r\n'))).toEqual([
      HELLO,
      NEED_MAIL,
    ]);
  });

  test('DATA before RCPT → 503, DATA before MAIL → 503', async () => {
    const out = await session(make(), 'HELO c.test\r\nDATA\r\nMAIL FROM:<a@x.test>\r\nDATA\r\n');
    expect(finals(out)).toEqual([HELLO, NEED_MAIL, SENDER_OK, NEED_RCPT]);
  });

  test('nested MAIL → 503 and the first sender stays', async () => {
    const p = make();
    const out = await session(p, 'EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nMAIL FROM:<z@x.test>\r\n');
    expect(finals(out).slice(1)).toEqual([SENDER_OK, NESTED]);
    expect(p.envelope?.mailFrom.address).toBe('a@x.test');
  });

  test('DATA after every RCPT was refused → 554', async () => {
    const p = make({ validateRecipientHandler: () => false });
    const out = await session(p, `${envelope()}RCPT TO:<c@y.test>\r\nDATA\r\n`);
    expect(finals(out).slice(2)).toEqual([
      '550 5.1.1 Invalid recipient b@y.test',
      '550 5.1.1 Invalid recipient c@y.test',
      '554 5.5.1 Error: no valid recipients',
    ]);
    expect(p.state).toBe(State.Rcpt);
  });

  test('DATA after a syntactically bad RCPT → 554 (the attempt counts)', async () => {
    const out = await session(make(), 'EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<bad>\r\nDATA\r\n');
    expect(codes(out)).toEqual([250, 250, 501, 554]);
  });

  test('unknown verbs → 500; EXPN and TURN → 502; VRFY → 252; HELP → 214', async () => {
    const out = await session(make(), 'XYZZY\r\nTURN\r\nEXPN list\r\nETRN x\r\nVRFY u\r\nHELP\r\n');
    expect(codes(out)).toEqual([500, 502, 502, 502, 252, 214]);
    expect(finals(out)[1]).toBe(NOT_IMPLEMENTED);
  });

  test('VRFY without an argument → 501', async () => {
    expect(finals(await session(make(), 'VRFY\r\n'))).toEqual([
      '501 5.5.4 Syntax error (VRFY needs an argument)',
    ]);
  });

  test('NOOP with arguments → 250', async () => {
    expect(finals(await session(make(), 'NOOP hello there\r\n'))).toEqual([OK]);
  });

  test('RSET with arguments → 501 and nothing is reset', async () => {
    const p = make();
    const out = await session(p, `${envelope()}RSET now\r\n`);
    expect(finals(out)[3]).toBe('501 5.5.4 Syntax error (RSET takes no arguments)');
    expect(p.envelope?.rcptTo).toHaveLength(1);
  });

  test('DATA with arguments → 501', async () => {
    const out = await session(make(), `${envelope()}DATA now\r\n`);
    expect(finals(out)[3]).toBe('501 5.5.4 Syntax error (DATA takes no arguments)');
  });

  test.each(['ESTABLISH', 'MAIL', 'RCPT+rcpt', 'BDAT'] as Start[])(
    'QUIT → 221 from %s, then close',
    async (start) => {
      const p = newProtocol();
      await session(p, PREFIX[start]);
      p.receive(Buffer.from('QUIT extra args\r\n'));
      const r = p.run();
      expect(r.output?.toString()).toBe('221 2.0.0 Bye\r\n');
      expect(r.action).toBe('close');
      expect(p.state).toBe(State.Done);
    },
  );

  test('EHLO/HELO without a domain → 501', async () => {
    const out = await session(make(), 'EHLO\r\nHELO   \r\n');
    // No enhanced code on a reply to HELO/EHLO (RFC 2034 §3), as Postfix answers.
    expect(finals(out)).toEqual(['501 Syntax: EHLO hostname', '501 Syntax: HELO hostname']);
  });

  test('verbs are case-insensitive', async () => {
    const p = make();
    const out = await session(
      p,
      'ehlo c.test\r\nMail From:<a@x.test>\r\nrcpt to:<b@y.test>\r\nnoop\r\nrSeT\r\n',
    );
    expect(codes(out)).toEqual([250, 250, 250, 250, 250]);
    expect(p.state).toBe(State.Mail);
  });

  test('tabs and extra spaces are tolerated', async () => {
    const p = make();
    const out = await session(
      p,
      '  HELO\t c.test  \r\nMAIL\tFROM:<a@x.test>\r\nRCPT   TO:<b@y.test>  \r\n\tNOOP\r\n',
    );
    expect(finals(out)).toEqual([HELLO, SENDER_OK, RCPT_OK, OK]);
  });

  test('LHLO is unknown outside LMTP', async () => {
    expect(finals(await session(make(), 'LHLO c.test\r\n'))).toEqual([UNKNOWN]);
  });
});

describe('a failed command never destroys the transaction', () => {
  test('a bad RCPT keeps the earlier recipients', async () => {
    const rec = recorder();
    const p = make({ messageReceivedHandler: rec.hook });
    const out = await session(
      p,
      `${envelope('a@x.test', ['b@y.test'])}RCPT TO:<not an address>\r\nRCPT TO:<c@y.test>\r\nDATA\r\nhi\r\n.\r\n`,
    );
    expect(codes(out)).toEqual([250, 250, 250, 501, 250, 354, 250]);
    expect(rec.messages[0].envelope.rcptTo.map((r) => r.address)).toEqual(['b@y.test', 'c@y.test']);
  });

  test('550 from the recipient hook keeps the state and the other recipients', async () => {
    const p = make({ validateRecipientHandler: (to) => to.address !== 'no@y.test' });
    await session(p, envelope());
    expect(finals(await session(p, 'RCPT TO:<no@y.test>\r\n'))).toEqual([
      '550 5.1.1 Invalid recipient no@y.test',
    ]);
    expect(p.state).toBe(State.Rcpt);
    expect(p.envelope?.rcptTo.map((r) => r.address)).toEqual(['b@y.test']);
  });

  test('550 from the sender hook keeps the MAIL state; a later MAIL works', async () => {
    const p = make({ validateSenderHandler: (from) => from.address !== 'no@x.test' });
    const out = await session(p, 'EHLO c\r\nMAIL FROM:<no@x.test>\r\nMAIL FROM:<a@x.test>\r\n');
    expect(finals(out).slice(1)).toEqual(['550 5.1.0 Invalid sender no@x.test', SENDER_OK]);
    expect(p.state).toBe(State.Rcpt);
  });

  test('unknown commands, bad syntax and sequence errors inside a transaction keep it', async () => {
    const p = make();
    await session(p, envelope());
    const out = await session(p, 'FROB\r\nMAIL FROM:<z@x.test>\r\nRCPT TO:\r\nAUTH PLAIN\r\nSTARTTLS\r\n');
    expect(codes(out)).toEqual([500, 503, 501, 503, 503]);
    expect(p.state).toBe(State.Rcpt);
    expect(p.envelope?.mailFrom.address).toBe('a@x.test');
    expect(p.envelope?.rcptTo).toHaveLength(1);
  });

  test('RSET ends the transaction but keeps the identity', async () => {
    const p = make();
    await session(p, envelope());
    expect(finals(await session(p, 'RSET\r\n'))).toEqual([OK]);
    expect(p.envelope).toBeUndefined();
    expect(p.session.helo).toBe('c.test');
    expect(p.state).toBe(State.Mail);
  });
});
