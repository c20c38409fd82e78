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
    expect(out).toContain('220 mx.test ESMTP smtp-session-stream');
    // After XCLIENT the session starts over: MAIL needs a new EHLO.
    expect(out.filter((l) => l.startsWith('503'))).toHaveLength(1);
    expect(seen).toEqual({ remoteAddress: '192.0.2.9', user: 'ann', helo: 'real' });
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
