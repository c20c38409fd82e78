import fc from 'fast-check';
import {
  formatProxyV1,
  formatProxyV2,
  parseProxyHeader,
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_MAX_LENGTH,
  type ProxyHeader,
  type ProxyTlv,
} from '../../lib/protocol/proxy-header';

const SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const SMTP = Buffer.from('EHLO client.example\r\n');

function complete(input: Buffer, options?: { maxLength?: number }): { header: ProxyHeader; rest: Buffer } {
  const result = parseProxyHeader(input, options);
  if (result.status !== 'complete') throw new Error(`expected complete, got ${JSON.stringify(result)}`);
  return result;
}

function invalidReason(input: Buffer, options?: { maxLength?: number }): string {
  const result = parseProxyHeader(input, options);
  if (result.status !== 'invalid') throw new Error(`expected invalid, got ${result.status}`);
  return result.reason;
}

/** Hand-built v2 header, independent of formatProxyV2. */
function v2(verCmd: number, fam: number, body: Buffer | number[]): Buffer {
  const b = Buffer.from(body);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([SIG, Buffer.from([verCmd, fam]), len, b]);
}

function tlv(type: number, value: Buffer | string | number[]): Buffer {
  const v = typeof value === 'string' ? Buffer.from(value) : Buffer.from(value);
  return Buffer.concat([Buffer.from([type, v.length >> 8, v.length & 0xff]), v]);
}

const TCP4_BLOCK = [192, 168, 0, 1, 192, 168, 0, 11, 0xdc, 0x04, 0x01, 0xbb]; // 56324 → 443

/** Bit-at-a-time CRC32C, deliberately different from the library's table version. */
function crc32cBitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Feeds every prefix of header+rest: 'incomplete' strictly before the header ends, then 'complete'. */
function expectEveryBoundary(headerBytes: Buffer, rest: Buffer = SMTP): ProxyHeader {
  const wire = Buffer.concat([headerBytes, rest]);
  for (let i = 0; i < headerBytes.length; i++) {
    expect([i, parseProxyHeader(wire.subarray(0, i)).status]).toEqual([i, 'incomplete']);
  }
  let header: ProxyHeader | undefined;
  for (let i = headerBytes.length; i <= wire.length; i++) {
    const r = complete(wire.subarray(0, i));
    expect(r.header.headerLength).toBe(headerBytes.length);
    expect(r.rest.equals(wire.subarray(headerBytes.length, i))).toBe(true);
    header = r.header;
  }
  return header as ProxyHeader;
}

describe('parseProxyHeader: detection', () => {
  it.each([
    ['empty', ''],
    ['v1 first byte', 'P'],
    ['v1 signature minus space', 'PROXY'],
    ['v2 first bytes', '\r\n\r\n'],
    ['v2 up to the NUL', '\r\n\r\n\0'],
    ['whole v2 signature', '\r\n\r\n\0\r\nQUIT\n'],
    ['v2 signature + version/command', '\r\n\r\n\0\r\nQUIT\n\x21'],
    ['v2 up to the length', '\r\n\r\n\0\r\nQUIT\n\x21\x11\x00'],
  ])('%s → incomplete', (_name, text) => {
    expect(parseProxyHeader(Buffer.from(text, 'latin1'))).toEqual({ status: 'incomplete' });
  });

  it.each([
    ['EHLO', 'EHLO x\r\n'],
    ['HTTP', 'GET / HTTP/1.1'],
    ['HTTP with CRLF', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['lowercase proxy', 'proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n'],
    ['PROXY without space', 'PROXYTCP4'],
    ['near-miss v1', 'PROXX'],
    ['near-miss v2', '\r\n\r\nX'],
    ['CRLF then text', '\r\nQUIT\r\n'],
    ['TLS ClientHello', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03'],
    ['leading space', ' PROXY TCP4'],
  ])('%s → invalid at once', (_name, text) => {
    expect(invalidReason(Buffer.from(text, 'latin1'))).toMatch(/not a PROXY/);
  });

  it('exports the spec limits', () => {
    expect(PROXY_V1_MAX_LENGTH).toBe(107);
    expect(PROXY_V2_MAX_LENGTH).toBe(65551);
  });

  it('rejects a bad maxLength option', () => {
    expect(() => parseProxyHeader(Buffer.alloc(0), { maxLength: 1.5 })).toThrow(RangeError);
    expect(() => parseProxyHeader(Buffer.alloc(0), { maxLength: 15 })).toThrow(RangeError);
  });
});

describe('parseProxyHeader: v1', () => {
  const worstCase = `PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`;

  it.each<[string, string, Partial<ProxyHeader>]>([
    [
      'spec example',
      'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n',
      {
        family: 'TCP4',
        sourceAddress: '192.168.0.1',
        destinationAddress: '192.168.0.11',
        sourcePort: 56324,
        destinationPort: 443,
      },
    ],
    [
      'IPv4 maxima',
      'PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n',
      { sourceAddress: '255.255.255.255', sourcePort: 65535, destinationPort: 65535 },
    ],
    [
      'zeros',
      'PROXY TCP4 0.0.0.0 10.0.0.0 0 0\r\n',
      { sourceAddress: '0.0.0.0', destinationAddress: '10.0.0.0', sourcePort: 0, destinationPort: 0 },
    ],
    [
      'TCP6 compressed',
      'PROXY TCP6 2001:db8::1 2001:db8::2 1234 25\r\n',
      {
        family: 'TCP6',
        sourceAddress: '2001:db8::1',
        destinationAddress: '2001:db8::2',
        destinationPort: 25,
      },
    ],
    [
      'TCP6 full uppercase form is normalised',
      'PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 FE80:0:0:0:0:0:0:AB 1 2\r\n',
      { sourceAddress: '2001:db8::1', destinationAddress: 'fe80::ab' },
    ],
    [
      'TCP6 loopback and any',
      'PROXY TCP6 ::1 :: 1 2\r\n',
      { sourceAddress: '::1', destinationAddress: '::' },
    ],
    [
      'TCP6 embedded IPv4',
      'PROXY TCP6 ::ffff:192.0.2.1 64:ff9b::198.51.100.7 1 2\r\n',
      { sourceAddress: '::ffff:192.0.2.1', destinationAddress: '64:ff9b::c633:6407' },
    ],
    [
      'TCP6 eight groups',
      `PROXY TCP6 ${'ffff:'.repeat(7)}ffff 1:2:3:4:5:6:7:8 65535 65535\r\n`,
      { sourceAddress: `${'ffff:'.repeat(7)}ffff`, destinationAddress: '1:2:3:4:5:6:7:8' },
    ],
    ['UNKNOWN short form', 'PROXY UNKNOWN\r\n', { family: 'UNKNOWN' }],
    ['UNKNOWN with junk', 'PROXY UNKNOWN whatever  goes\there!\r\n', { family: 'UNKNOWN' }],
    ['UNKNOWN worst case (107 bytes)', worstCase, { family: 'UNKNOWN' }],
  ])('%s', (_name, line, expected) => {
    const { header, rest } = complete(Buffer.from(line + 'EHLO x\r\n', 'latin1'));
    expect(header).toMatchObject({
      version: 1,
      command: 'PROXY',
      tlvs: [],
      headerLength: line.length,
      ...expected,
    });
    expect(rest.toString()).toBe('EHLO x\r\n');
    if (header.family === 'UNKNOWN') {
      expect(header).not.toHaveProperty('sourceAddress');
      expect(header).not.toHaveProperty('sourcePort');
    }
  });

  it('the worst case line is exactly the maximum', () => {
    expect(worstCase.length).toBe(PROXY_V1_MAX_LENGTH);
  });

  it.each([
    ['leading zero in octet', 'PROXY TCP4 192.168.0.01 192.168.0.11 1 2\r\n', /address/],
    ['octet > 255', 'PROXY TCP4 256.0.0.1 1.1.1.1 1 2\r\n', /address/],
    ['three octets', 'PROXY TCP4 1.2.3 1.1.1.1 1 2\r\n', /address/],
    ['five octets', 'PROXY TCP4 1.2.3.4.5 1.1.1.1 1 2\r\n', /address/],
    ['empty octet', 'PROXY TCP4 1..3.4 1.1.1.1 1 2\r\n', /address/],
    ['hex octet', 'PROXY TCP4 0x1.2.3.4 1.1.1.1 1 2\r\n', /address/],
    ['IPv6 in TCP4', 'PROXY TCP4 ::1 1.1.1.1 1 2\r\n', /address/],
    ['IPv4 in TCP6', 'PROXY TCP6 1.2.3.4 ::1 1 2\r\n', /address/],
    ['IPv6 two ::', 'PROXY TCP6 1::2::3 ::1 1 2\r\n', /address/],
    ['IPv6 nine groups', 'PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n', /address/],
    ['IPv6 seven groups', 'PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n', /address/],
    [':: standing for no group', 'PROXY TCP6 1:2:3:4::5:6:7:8 ::1 1 2\r\n', /address/],
    ['IPv6 five hex digits', 'PROXY TCP6 12345::1 ::1 1 2\r\n', /address/],
    ['IPv6 zone id', 'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', /address/],
    ['IPv6 leading single colon', 'PROXY TCP6 :1::2 ::1 1 2\r\n', /address/],
    ['IPv6 trailing single colon', 'PROXY TCP6 1::2: ::1 1 2\r\n', /address/],
    ['IPv6 bad embedded IPv4', 'PROXY TCP6 ::ffff:1.2.3.256 ::1 1 2\r\n', /address/],
    ['IPv6 brackets', 'PROXY TCP6 [::1] ::1 1 2\r\n', /address/],
    ['port > 65535', 'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n', /port/],
    ['port leading zero', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n', /port/],
    ['negative port', 'PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n', /port/],
    ['port with sign', 'PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n', /port/],
    ['double space', 'PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', /too many/],
    ['empty field', 'PROXY TCP4 1.2.3.4  5.6.7.8 1\r\n', /address/],
    ['trailing space', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', /too many/],
    ['missing port', 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', /too few/],
    ['extra field', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n', /too many/],
    ['tab separator', 'PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n', /protocol/],
    ['no protocol', 'PROXY \r\n', /protocol/],
    ['bare TCP4', 'PROXY TCP4\r\n', /too few/],
    ['TCP5', 'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n', /protocol/],
    ['lowercase tcp4', 'PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol/],
    ['UDP4 is not v1', 'PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol/],
    ['UNKNOWN suffix', 'PROXY UNKNOWNX\r\n', /protocol/],
    ['double space before protocol', 'PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol/],
    ['LF only', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nQUIT\r\n', /port/],
    ['CR only', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rQUIT\r\n', /port/],
    ['non-ASCII digit', 'PROXY TCP4 1.2.3.\u0664 5.6.7.8 1 2\r\n', /address/],
    ['NUL inside', 'PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n', /address/],
  ])('rejects %s', (_name, line, reason) => {
    expect(invalidReason(Buffer.from(line, 'utf8'))).toMatch(reason);
  });

  it.each([
    ['TCP4 line with no CRLF', `PROXY TCP4 ${'1'.repeat(200)}`],
    ['UNKNOWN line with no CRLF', `PROXY UNKNOWN ${'x'.repeat(PROXY_V1_MAX_LENGTH - 14)}`],
    ['UNKNOWN line of 108 bytes', `PROXY UNKNOWN ${'x'.repeat(PROXY_V1_MAX_LENGTH - 15)}\r\n`],
    ['CRLF just past 107 bytes', `PROXY UNKNOWN ${'x'.repeat(PROXY_V1_MAX_LENGTH - 15)}\r\nEHLO x\r\n`],
  ])('rejects an oversized line: %s', (_name, text) => {
    expect(invalidReason(Buffer.from(text, 'latin1'))).toMatch(/107/);
  });

  it('never answers incomplete once 107 bytes are buffered', () => {
    const unknown = Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`);
    for (let n = PROXY_V1_MAX_LENGTH; n <= unknown.length; n++) {
      expect(parseProxyHeader(unknown.subarray(0, n)).status).toBe('invalid');
    }
    expect(parseProxyHeader(unknown.subarray(0, PROXY_V1_MAX_LENGTH - 1)).status).toBe('incomplete');
  });

  it.each([
    ['bad protocol', 'PROXY FOO'],
    ['bad protocol prefix', 'PROXY TCP7'],
    ['bad IPv4 octet', 'PROXY TCP4 300'],
    ['leading zero', 'PROXY TCP4 1.02'],
    ['IPv6 characters in TCP4', 'PROXY TCP4 fe80'],
    ['non-hex in TCP6', 'PROXY TCP6 fe80::g'],
    ['complete bad address', 'PROXY TCP4 1.2.3 '],
    ['port too large', 'PROXY TCP4 1.2.3.4 5.6.7.8 99999'],
    ['port leading zero', 'PROXY TCP4 1.2.3.4 5.6.7.8 01'],
    ['seventh field', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 '],
    ['bare LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'],
    ['CR not followed by LF', 'PROXY TCP4 1.2.3.4\rx'],
  ])('rejects early, before the CRLF: %s', (_name, text) => {
    expect(parseProxyHeader(Buffer.from(text, 'latin1')).status).toBe('invalid');
  });

  it.each([
    'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n',
    'PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n',
    'PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 65535\r\n',
    `PROXY TCP6 ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`,
    'PROXY UNKNOWN\r\n',
    'PROXY UNKNOWN \r\r\n',
  ])('is incomplete on every strict prefix of %j', (line) => {
    expectEveryBoundary(Buffer.from(line, 'latin1'));
  });

  it('stops at the first CRLF and returns the rest untouched', () => {
    const rest = Buffer.from([0x0d, 0x0a, 0x00, 0xff, 0x50, 0x52, 0x4f, 0x58, 0x59]);
    const line = Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n');
    const r = complete(Buffer.concat([line, rest]));
    expect(r.rest.equals(rest)).toBe(true);
    expect(complete(line).rest.length).toBe(0);
  });
});

describe('parseProxyHeader: v2 addresses', () => {
  it('TCP4 matches the layout in §2.2', () => {
    const { header, rest } = complete(Buffer.concat([v2(0x21, 0x11, TCP4_BLOCK), SMTP]));
    expect(header).toEqual({
      version: 2,
      command: 'PROXY',
      family: 'TCP4',
      sourceAddress: '192.168.0.1',
      destinationAddress: '192.168.0.11',
      sourcePort: 56324,
      destinationPort: 443,
      tlvs: [],
      headerLength: 28,
    });
    expect(rest.equals(SMTP)).toBe(true);
  });

  it('UDP4 and UDP6', () => {
    expect(complete(v2(0x21, 0x12, TCP4_BLOCK)).header).toMatchObject({ family: 'UDP4', sourcePort: 56324 });
    const block = Buffer.alloc(36);
    block[15] = 1;
    block[31] = 2;
    block.writeUInt16BE(53, 32);
    block.writeUInt16BE(5353, 34);
    expect(complete(v2(0x21, 0x22, block)).header).toMatchObject({
      family: 'UDP6',
      sourceAddress: '::1',
      destinationAddress: '::2',
      sourcePort: 53,
      destinationPort: 5353,
    });
  });

  it.each([
    ['20010db8000000000000000000000001', '2001:db8::1'],
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['00010000000000000000000000000000', '1::'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'], // RFC 5952 §4.2.3: first of equal runs
    ['20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'], // §4.2.2: one zero group stays
    ['00000000000100000000000000010000', '0:0:1::1:0'], // longest run wins
    ['20010DB8ABCDEF0000000000000000FF', '2001:db8:abcd:ef00::ff'], // lowercase, no leading zeros
    ['00000000000000000000ffffc0000201', '::ffff:192.0.2.1'], // §5 IPv4-mapped
    ['00000000000000000000fffec0000201', '::fffe:c000:201'], // not mapped
    ['ffffffffffffffffffffffffffffffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  ])('TCP6 renders %s as %s', (hex, text) => {
    const block = Buffer.concat([
      Buffer.from(hex, 'hex'),
      Buffer.from(hex, 'hex'),
      Buffer.from([0, 1, 0, 2]),
    ]);
    const { header } = complete(v2(0x21, 0x21, block));
    expect(header).toMatchObject({ family: 'TCP6', sourceAddress: text, destinationAddress: text });
    expect([header.sourcePort, header.destinationPort]).toEqual([1, 2]);
  });

  it.each([0x31, 0x32])('UNIX (0x%s) paths are NUL-trimmed', (fam) => {
    const block = Buffer.alloc(216);
    block.write('/var/run/haproxy.sock', 0);
    block.write('/run/smtp.sock', 108);
    block.write('junk after the terminator', 150);
    const { header } = complete(v2(0x21, fam, block));
    expect(header).toEqual({
      version: 2,
      command: 'PROXY',
      family: 'UNIX',
      sourceAddress: '/var/run/haproxy.sock',
      destinationAddress: '/run/smtp.sock',
      tlvs: [],
      headerLength: 232,
    });
  });

  it('UNIX path filling all 108 bytes', () => {
    const block = Buffer.alloc(216, 'a');
    expect(complete(v2(0x21, 0x31, block)).header.sourceAddress).toBe('a'.repeat(108));
  });

  it('LOCAL with an address block ignores the addresses but keeps the TLVs', () => {
    const { header, rest } = complete(
      Buffer.concat([v2(0x20, 0x11, [...TCP4_BLOCK, ...tlv(0x02, 'mx.example')]), SMTP]),
    );
    expect(header).toEqual({
      version: 2,
      command: 'LOCAL',
      family: 'TCP4',
      tlvs: [{ type: 0x02, value: Buffer.from('mx.example') }],
      authority: 'mx.example',
      headerLength: 16 + 12 + 13,
    });
    expect(rest.equals(SMTP)).toBe(true);
  });

  it('LOCAL/UNSPEC with no body (HAProxy health check)', () => {
    expect(complete(v2(0x20, 0x00, [])).header).toEqual({
      version: 2,
      command: 'LOCAL',
      family: 'UNKNOWN',
      tlvs: [],
      headerLength: 16,
    });
  });

  it('LOCAL skips the block even for an unknown family byte (§2.2: the family is ignored)', () => {
    const { header, rest } = complete(Buffer.concat([v2(0x20, 0x7f, [1, 2, 3]), SMTP]));
    expect(header).toEqual({ version: 2, command: 'LOCAL', family: 'UNKNOWN', tlvs: [], headerLength: 19 });
    expect(rest.equals(SMTP)).toBe(true);
  });

  it.each<[string, Buffer]>([
    ['a block too short for its family', v2(0x20, 0x11, [1, 2, 3, 4])],
    ['no block at all for TCP4', v2(0x20, 0x11, [])],
    ['padding that is no TLV', v2(0x20, 0x11, [...TCP4_BLOCK, 0xff, 0xff])],
    ['a wrong CRC32C', v2(0x20, 0x11, [...TCP4_BLOCK, ...tlv(0x03, [0, 0, 0, 0])])],
  ])('LOCAL is accepted with %s: the block is discarded (§2.2 "must accept")', (_name, bytes) => {
    const { header, rest } = complete(Buffer.concat([bytes, SMTP]));
    expect(header).toEqual({
      version: 2,
      command: 'LOCAL',
      family: 'TCP4',
      tlvs: [],
      headerLength: bytes.length,
    });
    expect(rest.equals(SMTP)).toBe(true);
  });

  it('PROXY with UNSPEC has no addresses; the body is TLVs', () => {
    expect(complete(v2(0x21, 0x00, tlv(0x04, [0, 0]))).header).toEqual({
      version: 2,
      command: 'PROXY',
      family: 'UNKNOWN',
      tlvs: [{ type: 0x04, value: Buffer.from([0, 0]) }],
      headerLength: 21,
    });
  });

  it.each<[string, Buffer, RegExp]>([
    ['version 1', v2(0x11, 0x11, TCP4_BLOCK), /version 1/],
    ['version 3', v2(0x31, 0x11, TCP4_BLOCK), /version 3/],
    ['version 0', v2(0x01, 0x11, TCP4_BLOCK), /version 0/],
    ['command 2', v2(0x22, 0x11, TCP4_BLOCK), /command 2/],
    ['command 15', v2(0x2f, 0x11, TCP4_BLOCK), /command 15/],
    ['family 4', v2(0x21, 0x41, TCP4_BLOCK), /0x41/],
    ['protocol 3', v2(0x21, 0x13, TCP4_BLOCK), /0x13/],
    ['UNSPEC family with STREAM', v2(0x21, 0x01, TCP4_BLOCK), /0x01/],
    ['INET with UNSPEC protocol', v2(0x21, 0x10, TCP4_BLOCK), /0x10/],
    ['TCP4 length 11', v2(0x21, 0x11, TCP4_BLOCK.slice(0, 11)), /too short for TCP4/],
    ['TCP4 length 0', v2(0x21, 0x11, []), /too short for TCP4/],
    ['TCP6 with a TCP4 block', v2(0x21, 0x21, TCP4_BLOCK), /too short for TCP6/],
    ['UNIX length 200', v2(0x21, 0x31, Buffer.alloc(200)), /too short for UNIX/],
  ])('rejects %s', (_name, bytes, reason) => {
    expect(invalidReason(bytes)).toMatch(reason);
  });

  it('rejects a bad version or family as soon as that byte arrives', () => {
    expect(invalidReason(Buffer.concat([SIG, Buffer.from([0x11])]))).toMatch(/version/);
    expect(invalidReason(Buffer.concat([SIG, Buffer.from([0x21, 0x99])]))).toMatch(/family/);
  });
});

describe('parseProxyHeader: v2 TLVs', () => {
  it('reads ALPN, authority, unique id, NOOP, NETNS and custom TLVs in order', () => {
    const uid = Buffer.from('0123456789abcdef', 'hex');
    const body = Buffer.concat([
      Buffer.from(TCP4_BLOCK),
      tlv(0x01, 'smtp'),
      tlv(0x02, 'mx.exämple.org'),
      tlv(0x04, []),
      tlv(0x05, uid),
      tlv(0x30, 'blue'),
      tlv(0xe0, [1, 2, 3]),
    ]);
    const { header } = complete(v2(0x21, 0x11, body));
    expect(header.alpn).toBe('smtp');
    expect(header.authority).toBe('mx.exämple.org');
    expect(header.uniqueId?.equals(uid)).toBe(true);
    expect(header.ssl).toBeUndefined();
    expect(header.tlvs.map((t) => t.type)).toEqual([0x01, 0x02, 0x04, 0x05, 0x30, 0xe0]);
    expect(header.tlvs[4].value.toString()).toBe('blue');
    expect(header.tlvs[5].value).toEqual(Buffer.from([1, 2, 3]));
  });

  it('first occurrence of a repeated TLV wins', () => {
    const body = Buffer.concat([Buffer.from(TCP4_BLOCK), tlv(0x02, 'first'), tlv(0x02, 'second')]);
    const { header } = complete(v2(0x21, 0x11, body));
    expect(header.authority).toBe('first');
    expect(header.tlvs).toHaveLength(2);
  });

  it('TLV values are copies, not views of the input', () => {
    const bytes = v2(0x21, 0x11, Buffer.concat([Buffer.from(TCP4_BLOCK), tlv(0x05, 'abc')]));
    const { header } = complete(bytes);
    bytes.fill(0);
    expect(header.uniqueId?.toString()).toBe('abc');
  });

  it('decodes the SSL TLV and its sub-TLVs (§2.2.6)', () => {
    const verify = Buffer.alloc(4);
    verify.writeUInt32BE(0x01020304);
    const ssl = Buffer.concat([
      Buffer.from([0x07]),
      verify,
      tlv(0x21, 'TLSv1.3'),
      tlv(0x22, 'Client Ünïcode'),
      tlv(0x23, 'TLS_AES_256_GCM_SHA384'),
      tlv(0x24, 'RSA-SHA256'),
      tlv(0x25, 'RSA2048'),
    ]);
    const { header } = complete(v2(0x21, 0x11, Buffer.concat([Buffer.from(TCP4_BLOCK), tlv(0x20, ssl)])));
    expect(header.ssl).toEqual({
      client: 7,
      verify: 0x01020304,
      version: 'TLSv1.3',
      commonName: 'Client Ünïcode',
      cipher: 'TLS_AES_256_GCM_SHA384',
    });
    expect(header.tlvs).toEqual([{ type: 0x20, value: ssl }]);
  });

  it('SSL TLV without sub-TLVs', () => {
    const body = Buffer.concat([Buffer.from(TCP4_BLOCK), tlv(0x20, [0, 0, 0, 0, 0])]);
    expect(complete(v2(0x21, 0x11, body)).header.ssl).toEqual({ client: 0, verify: 0 });
  });

  it.each<[string, Buffer, RegExp]>([
    ['one stray byte', Buffer.from([0x01]), /truncated TLV/],
    ['two stray bytes', Buffer.from([0x01, 0x00]), /truncated TLV/],
    ['value longer than the header', Buffer.from([0x01, 0x00, 0x05, 0x61, 0x62]), /overruns/],
    ['value length 0xffff', Buffer.from([0x02, 0xff, 0xff, 0x61]), /overruns/],
    ['good TLV then junk', Buffer.concat([tlv(0x01, 'h2'), Buffer.from([0x02, 0x00])]), /truncated TLV/],
    ['SSL shorter than 5 bytes', tlv(0x20, [1, 0, 0, 0]), /SSL TLV shorter/],
    ['SSL with a truncated sub-TLV', tlv(0x20, [1, 0, 0, 0, 0, 0x21, 0x00]), /SSL TLV: truncated/],
    ['SSL sub-TLV overrun', tlv(0x20, [1, 0, 0, 0, 0, 0x21, 0x00, 0x09, 0x41]), /SSL TLV: .*overruns/],
    ['unique id of 129 bytes', tlv(0x05, Buffer.alloc(129)), /UNIQUE_ID/],
    ['CRC32C of 3 bytes', tlv(0x03, [0, 0, 0]), /CRC32C TLV must be 4 bytes/],
  ])('rejects %s', (_name, tlvs, reason) => {
    expect(invalidReason(v2(0x21, 0x11, Buffer.concat([Buffer.from(TCP4_BLOCK), tlvs])))).toMatch(reason);
  });

  it('accepts a unique id of exactly 128 bytes', () => {
    const body = Buffer.concat([Buffer.from(TCP4_BLOCK), tlv(0x05, Buffer.alloc(128, 7))]);
    expect(complete(v2(0x21, 0x11, body)).header.uniqueId).toHaveLength(128);
  });
});

describe('CRC32C (§2.2.3)', () => {
  it('the reference implementation used below matches the standard check value', () => {
    expect(crc32cBitwise(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('a hand-built header with a correct checksum is accepted', () => {
    const bytes = v2(0x21, 0x11, Buffer.concat([Buffer.from(TCP4_BLOCK), tlv(0x03, [0, 0, 0, 0])]));
    bytes.writeUInt32BE(crc32cBitwise(bytes), bytes.length - 4);
    expect(complete(bytes).header.tlvs[0].type).toBe(0x03);
  });

  it('formatProxyV2 fills in the checksum, computed over the header with the field zeroed', () => {
    const bytes = formatProxyV2({
      family: 'TCP6',
      sourceAddress: '2001:db8::1',
      destinationAddress: '2001:db8::25',
      sourcePort: 40000,
      destinationPort: 25,
      tlvs: [
        { type: 0x02, value: Buffer.from('mx.example') },
        { type: 0x03, value: Buffer.from('ignored') },
        { type: 0x04, value: Buffer.alloc(3) },
      ],
    });
    const crcAt = 16 + 36 + 13 + 3;
    expect(bytes[crcAt - 3]).toBe(0x03);
    const zeroed = Buffer.from(bytes);
    zeroed.fill(0, crcAt, crcAt + 4);
    expect(bytes.readUInt32BE(crcAt)).toBe(crc32cBitwise(zeroed));
    expect(complete(bytes).header.tlvs.map((t) => t.type)).toEqual([0x02, 0x03, 0x04]);
  });

  it('any flipped bit in a checksummed header is rejected', () => {
    const bytes = formatProxyV2({
      family: 'TCP4',
      sourceAddress: '10.1.2.3',
      destinationAddress: '10.3.2.1',
      sourcePort: 1025,
      destinationPort: 587,
      tlvs: [
        { type: 0x03, value: Buffer.alloc(4) },
        { type: 0x05, value: Buffer.from('id-1') },
      ],
    });
    // Layout: 16 fixed, 12 address, CRC TLV header 28-30, value 31-34, UNIQUE_ID header 35-37, value 38-41.
    // Flip bits where the header stays well-formed, so only the checksum can catch it.
    const covered = [...Array(12).keys()].map((i) => 16 + i).concat([31, 32, 33, 34, 38, 39, 40, 41]);
    expect(bytes.length).toBe(42);
    for (const i of covered) {
      for (const bit of [0x01, 0x80]) {
        const corrupted = Buffer.from(bytes);
        corrupted[i] ^= bit;
        expect([i, invalidReason(corrupted)]).toEqual([i, 'CRC32C checksum mismatch']);
      }
    }
  });

  it('rejects two CRC32C TLVs', () => {
    const body = Buffer.concat([Buffer.from(TCP4_BLOCK), tlv(0x03, [0, 0, 0, 0]), tlv(0x03, [0, 0, 0, 0])]);
    expect(invalidReason(v2(0x21, 0x11, body))).toMatch(/more than one CRC32C/);
  });
});

describe('size limits', () => {
  const big = formatProxyV2({
    family: 'TCP4',
    sourceAddress: '1.2.3.4',
    destinationAddress: '5.6.7.8',
    sourcePort: 1,
    destinationPort: 2,
    tlvs: [{ type: 0x04, value: Buffer.alloc(5000) }],
  });

  it('rejects a v2 header over the default 4096-byte cap from its first 16 bytes', () => {
    expect(big.length).toBe(16 + 12 + 3 + 5000);
    expect(invalidReason(big.subarray(0, 16))).toMatch(/exceeds the 4096-byte limit/);
    expect(invalidReason(big)).toMatch(/exceeds/);
  });

  it('honours a larger maxLength', () => {
    expect(parseProxyHeader(big.subarray(0, 4000), { maxLength: 8192 }).status).toBe('incomplete');
    expect(complete(big, { maxLength: 8192 }).header.headerLength).toBe(big.length);
  });

  it('honours a smaller maxLength and accepts a header of exactly maxLength', () => {
    const small = formatProxyV2({
      family: 'TCP4',
      sourceAddress: '1.2.3.4',
      destinationAddress: '5.6.7.8',
      sourcePort: 1,
      destinationPort: 2,
    });
    expect(complete(small, { maxLength: 28 }).header.headerLength).toBe(28);
    expect(invalidReason(small, { maxLength: 27 })).toMatch(/exceeds the 27-byte limit/);
  });

  it('accepts the largest possible v2 header when allowed', () => {
    const largest = formatProxyV2({
      command: 'LOCAL',
      family: 'UNKNOWN',
      tlvs: [{ type: 0x04, value: Buffer.alloc(65535 - 3) }],
    });
    expect(largest.length).toBe(PROXY_V2_MAX_LENGTH);
    expect(complete(largest, { maxLength: PROXY_V2_MAX_LENGTH }).header.tlvs[0].value).toHaveLength(65532);
  });
});

describe('formatProxyV1', () => {
  it('builds the spec example', () => {
    const line = formatProxyV1({
      family: 'TCP4',
      sourceAddress: '192.168.0.1',
      destinationAddress: '192.168.0.11',
      sourcePort: 56324,
      destinationPort: 443,
    });
    expect(line.toString('latin1')).toBe('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n');
  });

  it('normalises IPv6 so even a long spelling fits in 107 bytes', () => {
    const longest = '0000:0000:0000:0000:0000:ffff:255.255.255.255';
    const line = formatProxyV1({
      family: 'TCP6',
      sourceAddress: longest,
      destinationAddress: 'FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF',
      sourcePort: 65535,
      destinationPort: 65535,
    });
    expect(line.toString()).toBe(
      'PROXY TCP6 ::ffff:255.255.255.255 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n',
    );
    expect(line.length).toBeLessThanOrEqual(PROXY_V1_MAX_LENGTH);
  });

  it.each([
    [{ family: 'TCP4', sourceAddress: '::1' }, TypeError],
    [{ family: 'TCP6', sourceAddress: '1.2.3.4' }, TypeError],
    [{ family: 'TCP4', destinationAddress: '1.2.3.04' }, TypeError],
    [{ family: 'UNIX' }, TypeError],
    [{ sourcePort: 65536 }, RangeError],
    [{ destinationPort: -1 }, RangeError],
    [{ sourcePort: 1.5 }, RangeError],
  ])('rejects %j', (override, error) => {
    const base = {
      family: 'TCP4',
      sourceAddress: '1.2.3.4',
      destinationAddress: '5.6.7.8',
      sourcePort: 1,
      destinationPort: 2,
    };
    expect(() => formatProxyV1({ ...base, ...override } as Parameters<typeof formatProxyV1>[0])).toThrow(
      error,
    );
  });
});

describe('formatProxyV2', () => {
  it('produces the §2.2 layout byte for byte', () => {
    const bytes = formatProxyV2({
      family: 'TCP4',
      sourceAddress: '192.168.0.1',
      destinationAddress: '192.168.0.11',
      sourcePort: 56324,
      destinationPort: 443,
    });
    expect(bytes.equals(v2(0x21, 0x11, TCP4_BLOCK))).toBe(true);
  });

  it('LOCAL/UNKNOWN is the bare 16-byte header', () => {
    expect(formatProxyV2({ command: 'LOCAL', family: 'UNKNOWN' }).equals(v2(0x20, 0x00, []))).toBe(true);
  });

  it('UNIX paths are NUL-padded to 108 bytes each', () => {
    const bytes = formatProxyV2({ family: 'UNIX', sourceAddress: '/a', destinationAddress: '/b' });
    const block = Buffer.alloc(216);
    block.write('/a', 0);
    block.write('/b', 108);
    expect(bytes.equals(v2(0x21, 0x31, block))).toBe(true);
  });

  it.each([
    [{ sourceAddress: '1.2.3.256' }, TypeError],
    [{ sourceAddress: undefined }, TypeError],
    [{ family: 'TCP6' }, TypeError],
    [{ family: 'IPX' }, TypeError],
    [{ command: 'RELAY' }, TypeError],
    [{ sourcePort: undefined }, RangeError],
    [{ destinationPort: 70000 }, RangeError],
    [{ family: 'UNIX', sourceAddress: 'x'.repeat(109), destinationAddress: '/b' }, TypeError],
    [{ family: 'UNIX', sourceAddress: 'a\0b', destinationAddress: '/b' }, TypeError],
    [{ tlvs: [{ type: 256, value: Buffer.alloc(0) }] }, RangeError],
    [{ tlvs: [{ type: 1, value: Buffer.alloc(65536) }] }, RangeError],
    [
      {
        tlvs: [
          { type: 4, value: Buffer.alloc(40000) },
          { type: 4, value: Buffer.alloc(40000) },
        ],
      },
      RangeError,
    ],
    [
      {
        tlvs: [
          { type: 3, value: Buffer.alloc(4) },
          { type: 3, value: Buffer.alloc(4) },
        ],
      },
      TypeError,
    ],
  ])('rejects %p', (override, error) => {
    const base = {
      family: 'TCP4',
      sourceAddress: '1.2.3.4',
      destinationAddress: '5.6.7.8',
      sourcePort: 1,
      destinationPort: 2,
    };
    expect(() => formatProxyV2({ ...base, ...override } as Parameters<typeof formatProxyV2>[0])).toThrow(
      error,
    );
  });
});

describe('round trips and fragmentation', () => {
  const tlvs: ProxyTlv[] = [
    { type: 0x01, value: Buffer.from('smtp') },
    { type: 0x02, value: Buffer.from('mx.example.net') },
    { type: 0x03, value: Buffer.alloc(4) },
    { type: 0x05, value: Buffer.from('conn-42') },
    { type: 0x20, value: Buffer.concat([Buffer.from([1, 0, 0, 0, 0]), tlv(0x21, 'TLSv1.2')]) },
  ];

  it.each<[string, Parameters<typeof formatProxyV2>[0], Partial<ProxyHeader>]>([
    [
      'TCP4',
      {
        family: 'TCP4',
        sourceAddress: '203.0.113.9',
        destinationAddress: '198.51.100.1',
        sourcePort: 50123,
        destinationPort: 25,
      },
      { sourceAddress: '203.0.113.9', destinationPort: 25 },
    ],
    [
      'TCP6 + TLVs',
      {
        family: 'TCP6',
        sourceAddress: '2001:DB8:0:0:0:0:0:9',
        destinationAddress: '::1',
        sourcePort: 1,
        destinationPort: 465,
        tlvs,
      },
      {
        sourceAddress: '2001:db8::9',
        destinationAddress: '::1',
        alpn: 'smtp',
        authority: 'mx.example.net',
        uniqueId: Buffer.from('conn-42'),
        ssl: { client: 1, verify: 0, version: 'TLSv1.2' },
      },
    ],
    [
      'UNIX',
      { family: 'UNIX', sourceAddress: '/tmp/in.sock', destinationAddress: '' },
      { destinationAddress: '' },
    ],
    ['LOCAL', { command: 'LOCAL', family: 'UNKNOWN', tlvs: [{ type: 0x03, value: Buffer.alloc(4) }] }, {}],
    [
      'LOCAL with addresses',
      {
        command: 'LOCAL',
        family: 'TCP4',
        sourceAddress: '1.1.1.1',
        destinationAddress: '2.2.2.2',
        sourcePort: 1,
        destinationPort: 2,
      },
      {},
    ],
    ['PROXY UNSPEC', { family: 'UNKNOWN' }, {}],
  ])('v2 %s parses back at every byte boundary', (_name, input, expected) => {
    const bytes = formatProxyV2(input);
    const header = expectEveryBoundary(bytes);
    expect(header).toMatchObject({
      version: 2,
      command: input.command ?? 'PROXY',
      family: input.family,
      ...expected,
    });
    if (header.command === 'LOCAL') expect(header.sourceAddress).toBeUndefined();
  });

  it('v1 and v2 report the same addresses for the same connection', () => {
    const conn = {
      family: 'TCP6' as const,
      sourceAddress: '2001:0db8::0001',
      destinationAddress: '::ffff:10.0.0.1',
      sourcePort: 12345,
      destinationPort: 25,
    };
    const a = complete(formatProxyV1(conn)).header;
    const b = complete(formatProxyV2(conn)).header;
    for (const key of [
      'family',
      'sourceAddress',
      'destinationAddress',
      'sourcePort',
      'destinationPort',
    ] as const) {
      expect(a[key]).toBe(b[key]);
    }
    expect(a.sourceAddress).toBe('2001:db8::1');
  });

  const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
  const ipv6Bytes = fc.uint8Array({ minLength: 16, maxLength: 16 });
  // Bias toward zero groups so "::" compression gets exercised.
  const ipv6Groups = fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
    minLength: 8,
    maxLength: 8,
  });
  const port = fc.integer({ min: 0, max: 65535 });
  const anyTlv = fc.record({
    type: fc.integer({ min: 0, max: 255 }).filter((t) => ![0x03, 0x05, 0x20].includes(t)),
    value: fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)),
  });

  it('v1 TCP4/TCP6 round trip (property)', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        ipv4,
        ipv4,
        ipv6Groups,
        ipv6Groups,
        port,
        port,
        (six, a4, b4, a6, b6, sp, dp) => {
          const hex = (g: number[]): string => g.map((n) => n.toString(16)).join(':');
          const h = six
            ? {
                family: 'TCP6' as const,
                sourceAddress: hex(a6),
                destinationAddress: hex(b6),
                sourcePort: sp,
                destinationPort: dp,
              }
            : {
                family: 'TCP4' as const,
                sourceAddress: a4,
                destinationAddress: b4,
                sourcePort: sp,
                destinationPort: dp,
              };
          const bytes = formatProxyV1(h);
          expect(bytes.length).toBeLessThanOrEqual(PROXY_V1_MAX_LENGTH);
          const { header } = complete(Buffer.concat([bytes, SMTP]));
          expect(header.family).toBe(h.family);
          expect([header.sourcePort, header.destinationPort]).toEqual([sp, dp]);
          // The rendered form re-parses to itself (canonical text is a fixed point).
          const again = complete(
            formatProxyV1({ ...h, sourceAddress: header.sourceAddress as string }),
          ).header;
          expect(again.sourceAddress).toBe(header.sourceAddress);
          if (!six) expect(header.sourceAddress).toBe(a4);
        },
      ),
    );
  });

  it('v2 round trip with random addresses and TLVs (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('TCP4', 'UDP4', 'TCP6', 'UDP6'),
        ipv4,
        ipv6Bytes,
        port,
        port,
        fc.array(anyTlv, { maxLength: 5 }),
        fc.boolean(),
        (family, a4, a6, sp, dp, extra, withCrc) => {
          const v6 = Buffer.from(a6).toString('hex').match(/.{4}/g)?.join(':') as string;
          const address = family.endsWith('4') ? a4 : v6;
          const list = withCrc ? [...extra, { type: 0x03, value: Buffer.alloc(4) }] : extra;
          const bytes = formatProxyV2({
            family,
            sourceAddress: address,
            destinationAddress: address,
            sourcePort: sp,
            destinationPort: dp,
            tlvs: list,
          });
          const { header, rest } = complete(Buffer.concat([bytes, SMTP]));
          expect(rest.equals(SMTP)).toBe(true);
          expect(header.family).toBe(family);
          expect([header.sourcePort, header.destinationPort]).toEqual([sp, dp]);
          expect(header.tlvs.map((t) => t.type)).toEqual(list.map((t) => t.type));
          extra.forEach((t, i) => expect(header.tlvs[i].value.equals(t.value)).toBe(true));
          // Re-encoding the rendered address gives the same bytes back.
          const again = formatProxyV2({ ...header, command: 'PROXY', tlvs: list });
          expect(again.equals(bytes)).toBe(true);
        },
      ),
    );
  });

  it('random bytes never throw and never stay incomplete past the limits (property)', () => {
    const prefixes = fc.constantFrom(Buffer.alloc(0), Buffer.from('PROXY '), Buffer.from('PROXY TCP4 '), SIG);
    fc.assert(
      fc.property(prefixes, fc.uint8Array({ maxLength: 300 }), (prefix, tail) => {
        const input = Buffer.concat([prefix, tail]);
        const r = parseProxyHeader(input, { maxLength: 256 });
        expect(['complete', 'incomplete', 'invalid']).toContain(r.status);
        if (r.status === 'incomplete') expect(input.length).toBeLessThan(256);
        if (r.status === 'complete') expect(r.header.headerLength + r.rest.length).toBe(input.length);
      }),
    );
  });
});
