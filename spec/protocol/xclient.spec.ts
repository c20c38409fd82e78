import { Protocol, type ProtocolOptions } from '../../lib/protocol/protocol';
import { xclient, xforward } from '../../lib/protocol/extensions';

async function talk(options: ProtocolOptions, input: string): Promise<string[]> {
  const p = new Protocol({ hostname: 'mx.test', ...options });
  const lines = [p.start().render(true)];
  p.receive(Buffer.from(input));
  let r = p.run();
  for (;;) {
    if (r.output) lines.push(r.output.toString());
    if (!r.pending) break;
    await r.pending;
    r = p.run();
  }
  return lines.join('').split('\r\n').filter(Boolean);
}

describe('XCLIENT / XFORWARD (Postfix), opt-in and allow-listed', () => {
  it('lets an allow-listed proxy set the client address and login, then greets again', async () => {
    let seen: { remoteAddress?: string; user?: string; helo?: string } = {};
    const out = await talk(
      {
        remoteAddress: '10.0.0.5',
        extensions: [xclient(['10.0.0.5'])],
        validateSenderHandler: (_from, session) => {
          seen = { remoteAddress: session.remoteAddress, user: session.user, helo: session.helo };
          return true;
        },
      },
      'EHLO proxy\r\nXCLIENT ADDR=192.0.2.9 LOGIN=ann NAME=[UNAVAILABLE]\r\nMAIL FROM:<a@b.c>\r\nEHLO real\r\nMAIL FROM:<a@b.c>\r\n',
    );
    expect(out).toContain('250 XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT');
    expect(out.filter((l) => l.startsWith('220 '))).toHaveLength(2); // the greeting, then XCLIENT's
    // After XCLIENT the session starts over: MAIL needs a new EHLO.
    expect(out.filter((l) => l.startsWith('503'))).toHaveLength(1);
    expect(seen).toEqual({ remoteAddress: '192.0.2.9', user: 'ann', helo: 'real' });
  });

  it('refuses malformed values with 501 5.5.4 and keeps the session as it was (Postfix)', async () => {
    const bad = [
      'ADDR=not-an-ip',
      'ADDR=1.2.3.4+0D+0AX-Injected:+20yes',
      'ADDR=IPV6:1::2::3',
      'PORT=abc',
      'PORT=99999',
      'PORT=-1',
      'PORT=0x10',
      'DESTPORT=1e3',
      'PROTO=FOO',
      'NAME=a+0Db',
      'HELO=x+00y',
    ];
    let seen: string | undefined;
    const out = await talk(
      {
        remoteAddress: '10.0.0.5',
        extensions: [xclient(['10.0.0.5']), xforward(['10.0.0.5'])],
        validateSenderHandler: (_from, session) => ((seen = session.remoteAddress), true),
      },
      `EHLO p\r\n${bad.map((attr) => `XCLIENT ${attr}\r\n`).join('')}XFORWARD SOURCE=ELSEWHERE\r\nMAIL FROM:<a@b.c>\r\n`,
    );
    const name = (attr: string): string => attr.slice(0, attr.indexOf('='));
    expect(out.filter((l) => l.startsWith('501'))).toEqual([
      ...bad.map((attr) => `501 5.5.4 Bad ${name(attr)} parameter value`),
      '501 5.5.4 Bad SOURCE parameter value',
    ]);
    expect(seen).toBe('10.0.0.5');
  });

  it('accepts the address forms Postfix sends: IPv4, IPV6:-prefixed IPv6, ports 0-65535', async () => {
    let seen: unknown;
    await talk(
      {
        remoteAddress: '10.0.0.5',
        extensions: [xclient(['10.0.0.5'])],
        validateSenderHandler: (_f, s) => (
          (seen = [s.remoteAddress, s.remotePort, s.localAddress, s.localPort]),
          true
        ),
      },
      'EHLO p\r\nXCLIENT ADDR=IPV6:2001:db8::9 PORT=65535 DESTADDR=192.0.2.1 DESTPORT=0 PROTO=esmtp\r\nEHLO c\r\nMAIL FROM:<a@b.c>\r\n',
    );
    expect(seen).toEqual(['2001:db8::9', 65535, '192.0.2.1', 0]);
  });

  it('XCLIENT without LOGIN leaves the client unauthenticated: it never inherits the proxy’s AUTH', async () => {
    let user: string | undefined = 'not called';
    const out = await talk(
      {
        remoteAddress: '10.0.0.5',
        extensions: [xclient(['10.0.0.5'])],
        lookupPassword: () => 'pw',
        requireAuth: true,
        validateSenderHandler: (_f, s) => ((user = s.user), true),
      },
      'EHLO p\r\nAUTH PLAIN AHByb3h5AHB3\r\nXCLIENT ADDR=192.0.2.9\r\nEHLO c\r\nMAIL FROM:<a@b.c>\r\n',
    );
    expect(out).toContain('235 2.7.0 Authentication successful');
    expect(out).toContain('530 5.7.0 Authentication required');
    expect(user).toBe('not called');
  });

  it('merges attributes sent over several XCLIENT commands (XCLIENT_README note 1)', async () => {
    let attrs: unknown;
    await talk(
      {
        remoteAddress: '10.0.0.5',
        extensions: [xclient(['10.0.0.5'])],
        validateSenderHandler: (_f, s) => ((attrs = s.extra.xclient), true),
      },
      'EHLO p\r\nXCLIENT NAME=client.example HELO=c\r\nXCLIENT ADDR=192.0.2.9 PORT=4000\r\nEHLO c\r\nMAIL FROM:<a@b.c>\r\n',
    );
    expect(attrs).toEqual({ NAME: 'client.example', HELO: 'c', ADDR: '192.0.2.9', PORT: '4000' });
  });

  it('matches an allow list whatever form the peer address takes (IPv4-mapped, IPv6 case)', async () => {
    for (const [peer, list] of [
      ['::ffff:10.0.0.5', ['10.0.0.5']],
      ['10.0.0.5', ['::FFFF:10.0.0.5']],
      ['2001:DB8::5', ['2001:db8::5']],
    ] as const) {
      const out = await talk(
        { remoteAddress: peer, extensions: [xclient([...list])] },
        'EHLO p\r\nXCLIENT ADDR=192.0.2.9\r\n',
      );
      // The greeting, then XCLIENT's own 220 (a refusal would be 550).
      expect(out.filter((l) => l.startsWith('220 '))).toHaveLength(2);
    }
  });

  it('refuses other peers and does not advertise to them', async () => {
    const out = await talk(
      { remoteAddress: '198.51.100.1', extensions: [xclient(['10.0.0.5']), xforward(() => false)] },
      'EHLO x\r\nXCLIENT ADDR=192.0.2.9\r\nXFORWARD ADDR=192.0.2.9\r\n',
    );
    expect(out.some((l) => l.includes('XCLIENT') && l.startsWith('250'))).toBe(false);
    expect(out.filter((l) => l.startsWith('550 5.7.0 Error: insufficient authorization'))).toHaveLength(2);
  });

  it('records XFORWARD attributes for the next message and refuses bad syntax', async () => {
    let forwarded: unknown;
    const out = await talk(
      {
        remoteAddress: '10.0.0.5',
        extensions: [xforward(['10.0.0.5'])],
        validateSenderHandler: (_f, session) => {
          forwarded = session.extra.xforward;
          return true;
        },
      },
      'EHLO x\r\nXFORWARD ADDR=192.0.2.9 HELO=client+2Eexample\r\nXFORWARD BOGUS=1\r\nMAIL FROM:<a@b.c>\r\n',
    );
    expect(out).toContain('250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE');
    expect(out).toContain('250 2.0.0 Ok');
    expect(out.some((l) => l.startsWith('501 5.5.4'))).toBe(true);
    expect(forwarded).toEqual({ ADDR: '192.0.2.9', HELO: 'client.example' });
  });
});

describe('disabledCommands (commands switched off per session)', () => {
  const lookupPassword = () => 'pw';
  it('hides AUTH from EHLO and answers 502 for clients outside the network', async () => {
    const options: ProtocolOptions = {
      lookupPassword,
      disabledCommands: (session) => (session.remoteAddress?.startsWith('10.') ? [] : ['AUTH']),
    };
    const outside = await talk(
      { ...options, remoteAddress: '198.51.100.1' },
      'EHLO x\r\nAUTH PLAIN AHUAcHc=\r\n',
    );
    expect(outside.some((l) => l.includes('AUTH PLAIN'))).toBe(false);
    expect(outside).toContain('502 5.5.1 Error: command not implemented');
    const inside = await talk({ ...options, remoteAddress: '10.1.2.3' }, 'EHLO x\r\nAUTH PLAIN AHUAcHc=\r\n');
    expect(inside.some((l) => l.startsWith('250-AUTH PLAIN'))).toBe(true);
    expect(inside).toContain('235 2.7.0 Authentication successful');
  });

  it('takes a plain list too', async () => {
    const out = await talk({ disabledCommands: ['bdat', 'VRFY'] }, 'EHLO x\r\nVRFY a\r\n');
    expect(out.some((l) => l.includes('CHUNKING'))).toBe(false);
    expect(out).toContain('502 5.5.1 Error: command not implemented');
  });
});
