import { buildReceivedHeader, rfc5322Date } from '../../lib/protocol/received';
import type { Envelope, SessionInfo } from '../../lib/protocol/types';

function session(overrides: Partial<SessionInfo> = {}): SessionInfo {
  return {
    hostname: 'mx.test',
    helo: 'client.example',
    heloVerb: 'EHLO',
    remoteAddress: '192.0.2.7',
    remotePort: 40000,
    localAddress: '192.0.2.1',
    localPort: 25,
    secure: false,
    tls: undefined,
    user: undefined,
    transactionCount: 0,
    extra: {},
    ...overrides,
  };
}

const envelope: Envelope = {
  mailFrom: { address: 'a@example.org', params: {} },
  rcptTo: [{ address: 'b@example.com', params: {} }],
  bodyType: '7BIT',
  smtputf8: false,
  requireTls: false,
  transfer: 'DATA',
};

describe('buildReceivedHeader (RFC 5321 §4.4)', () => {
  const date = new Date(Date.UTC(2026, 10, 25, 3, 4, 5));

  it('names the client, the server, the protocol, the id, the recipient and the date', () => {
    const header = buildReceivedHeader(session(), envelope, { id: 'Q1', date });
    expect(header).toBe(
      'Received: from client.example ([192.0.2.7])\r\n\tby mx.test\r\n\twith ESMTP\r\n\tid Q1\r\n\tfor <b@example.com>;\r\n\tWed, 25 Nov 2026 03:04:05 +0000\r\n',
    );
  });

  it('uses the RFC 3848 keywords for TLS, AUTH, LMTP and HELO', () => {
    expect(buildReceivedHeader(session({ secure: true, user: 'u' }), envelope, { date })).toContain(
      'with ESMTPSA',
    );
    expect(buildReceivedHeader(session({ secure: true }), envelope, { date })).toContain('with ESMTPS');
    expect(buildReceivedHeader(session({ heloVerb: 'LHLO' }), envelope, { date })).toContain('with LMTP');
    expect(buildReceivedHeader(session({ heloVerb: 'HELO' }), envelope, { date })).toContain('with SMTP');
    expect(buildReceivedHeader(session(), { ...envelope, smtputf8: true }, { date })).toContain(
      'with UTF8SMTP',
    );
  });

  it('writes IPv6 clients as address literals and leaves out "for" with several recipients', () => {
    const two = { ...envelope, rcptTo: [...envelope.rcptTo, { address: 'c@example.com', params: {} }] };
    const header = buildReceivedHeader(session({ remoteAddress: '2001:db8::1' }), two, { date });
    expect(header).toContain('([IPv6:2001:db8::1])');
    expect(header).not.toContain('for <');
  });

  it('writes an IPv4-mapped peer (a dual-stack listener) as the IPv4 literal it is', () => {
    const header = buildReceivedHeader(session({ remoteAddress: '::ffff:192.0.2.8' }), envelope, { date });
    expect(header.split('\r\n')[0]).toBe('Received: from client.example ([192.0.2.8])');
  });

  it('cannot be broken by a hostile HELO', () => {
    const header = buildReceivedHeader(session({ helo: 'evil\r\nBcc: x; (y)' }), envelope, { date });
    expect(header.split('\r\n')[0]).toBe('Received: from evil__Bcc:_x___y_ ([192.0.2.7])');
  });

  it('formats RFC 5322 dates in UTC', () => {
    expect(rfc5322Date(new Date(Date.UTC(2024, 1, 29, 23, 59, 0)))).toBe('Thu, 29 Feb 2024 23:59:00 +0000');
  });
});
