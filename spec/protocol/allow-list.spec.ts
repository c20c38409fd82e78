import { isAllowed } from '../../lib/protocol/allow-list';

describe('isAllowed (XCLIENT, XFORWARD and PROXY allow lists)', () => {
  it.each<[string, string[], boolean]>([
    ['192.0.2.1', ['192.0.2.1'], true],
    ['::ffff:192.0.2.1', ['192.0.2.1'], true], // a dual-stack listener's view of an IPv4 peer
    ['192.0.2.1', ['::FFFF:192.0.2.1'], true],
    ['2001:DB8::1', ['2001:db8::1'], true],
    ['2001:0db8:0::1', ['2001:db8::1'], true], // however the IPv6 address is written
    ['192.0.2.2', ['192.0.2.1'], false],
    ['::ffff:192.0.2.2', ['192.0.2.1'], false],
    ['::1', ['127.0.0.1'], false], // loopback in IPv6 is another address, not a mapped one
  ])('%s against %j → %s', (address, list, expected) => {
    expect(isAllowed(list, address)).toBe(expected);
  });

  it('an unknown peer is never on a list; a predicate sees the address as reported', () => {
    expect(isAllowed(['192.0.2.1'], undefined)).toBe(false);
    const seen: Array<string | undefined> = [];
    expect(isAllowed((address) => (seen.push(address), true), '::ffff:192.0.2.1')).toBe(true);
    expect(seen).toEqual(['::ffff:192.0.2.1']);
  });
});
