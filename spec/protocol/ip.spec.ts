import { canonicalAddress, formatIPv6, isIPv4, isIPv6, parseIPv4, parseIPv6 } from '../../lib/protocol/ip';

describe('IP address text (RFC 4291 §2.2, RFC 5952)', () => {
  it.each<[string, string]>([
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'], // a dual-stack listener's view of an IPv4 peer
    ['::FFFF:c000:0201', '192.0.2.1'], // the same mapped address in hex groups
    ['2001:0DB8:0:0::1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of two equal zero runs
    ['::1', '::1'],
    ['mx.example', 'mx.example'],
    ['not:an:address', 'not:an:address'],
  ])('canonicalAddress(%j) = %j', (text, expected) => {
    expect(canonicalAddress(text)).toBe(expected);
  });

  it('parses to network-order bytes and formats back', () => {
    expect(Array.from(parseIPv4('192.0.2.1') ?? [])).toEqual([192, 0, 2, 1]);
    expect(parseIPv4('01.2.3.4')).toBeUndefined(); // a leading zero reads as octal elsewhere
    const v6 = parseIPv6('2001:db8::1.2.3.4') as Uint8Array;
    expect(Array.from(v6.subarray(12))).toEqual([1, 2, 3, 4]);
    expect(formatIPv6(v6)).toBe('2001:db8::102:304');
    expect(isIPv4('1.2.3')).toBe(false);
    expect(isIPv6('fe80::1%eth0')).toBe(false); // a zone index is no address
  });
});
