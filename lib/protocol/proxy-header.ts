/**
 * Sans-I/O parser and formatter for the HAProxy PROXY protocol, versions 1 (text) and 2 (binary).
 *
 * Section numbers refer to https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt.
 * This module only looks at bytes: the caller reads from the socket, feeds everything received so far
 * and, once the result is 'complete', hands `rest` to the SMTP session. Per §2 the caller must only
 * enable this on listeners that sit behind a trusted proxy and must not guess whether a header is present.
 */

import { formatIPv6, parseIPv4, parseIPv6 } from './ip';

export interface ProxyTlv {
  type: number;
  value: Buffer;
}

export interface ProxyHeader {
  version: 1 | 2;
  command: 'PROXY' | 'LOCAL';
  family: 'TCP4' | 'TCP6' | 'UDP4' | 'UDP6' | 'UNIX' | 'UNKNOWN';
  sourceAddress?: string;
  sourcePort?: number;
  destinationAddress?: string;
  destinationPort?: number;
  tlvs: ProxyTlv[];
  authority?: string;
  alpn?: string;
  uniqueId?: Buffer;
  ssl?: { client: number; verify: number; version?: string; cipher?: string; commonName?: string };
  headerLength: number;
}

export type ProxyParseResult =
  | { status: 'complete'; header: ProxyHeader; rest: Buffer }
  | { status: 'incomplete' }
  | { status: 'invalid'; reason: string };

/** §2.1: worst case "PROXY UNKNOWN <39> <39> 65535 65535\r\n". */
export const PROXY_V1_MAX_LENGTH = 107;
/** §2.2: 16-byte fixed part plus a 16-bit length. */
export const PROXY_V2_MAX_LENGTH = 16 + 65535;

const DEFAULT_MAX_LENGTH = 4096;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_LENGTH = 16;

const CMD_LOCAL = 0x0;
const CMD_PROXY = 0x1;

// §2.2.
const PP2_TYPE_ALPN = 0x01;
const PP2_TYPE_AUTHORITY = 0x02;
const PP2_TYPE_CRC32C = 0x03;
const PP2_TYPE_UNIQUE_ID = 0x05;
const PP2_TYPE_SSL = 0x20;
const PP2_SUBTYPE_SSL_VERSION = 0x21;
const PP2_SUBTYPE_SSL_CN = 0x22;
const PP2_SUBTYPE_SSL_CIPHER = 0x23;
/** §2.2.5: "up to 128 bytes". */
const UNIQUE_ID_MAX_LENGTH = 128;
/** §2.2: sun_path is 108 bytes on the wire. */
const UNIX_PATH_LENGTH = 108;

type V2Family = ProxyHeader['family'];

/** §2.2 "In practice, the following protocol bytes are expected"; anything else is rejected. */
const V2_FAMILIES = new Map<number, { family: V2Family; addressLength: number }>([
  [0x00, { family: 'UNKNOWN', addressLength: 0 }],
  [0x11, { family: 'TCP4', addressLength: 12 }],
  [0x12, { family: 'UDP4', addressLength: 12 }],
  [0x21, { family: 'TCP6', addressLength: 36 }],
  [0x22, { family: 'UDP6', addressLength: 36 }],
  [0x31, { family: 'UNIX', addressLength: 2 * UNIX_PATH_LENGTH }],
  [0x32, { family: 'UNIX', addressLength: 2 * UNIX_PATH_LENGTH }],
]);

const FAMILY_BYTES: Record<V2Family, number> = {
  UNKNOWN: 0x00,
  TCP4: 0x11,
  UDP4: 0x12,
  TCP6: 0x21,
  UDP6: 0x22,
  UNIX: 0x31, // a UNIX family alone cannot say dgram; stream is the common case
};

const INCOMPLETE: ProxyParseResult = Object.freeze({ status: 'incomplete' });

function invalid(reason: string): ProxyParseResult {
  return { status: 'invalid', reason };
}

/**
 * Parses a PROXY v1 or v2 header at the start of `input` (all bytes received so far).
 * Never throws on any input; throws RangeError only for a bad `maxLength` option.
 */
export function parseProxyHeader(input: Buffer, options?: { maxLength?: number }): ProxyParseResult {
  const maxLength = options?.maxLength ?? DEFAULT_MAX_LENGTH;
  if (!Number.isInteger(maxLength) || maxLength < V2_FIXED_LENGTH) {
    throw new RangeError(`maxLength must be an integer >= ${V2_FIXED_LENGTH}, got ${String(maxLength)}`);
  }
  if (input.length === 0) return INCOMPLETE;
  // The two signatures differ in their first byte ('\r' vs 'P'), so one byte picks the version.
  if (startsLike(input, V2_SIGNATURE)) return parseV2(input, maxLength);
  if (startsLike(input, V1_PREFIX)) return parseV1(input);
  return invalid('not a PROXY protocol header');
}

/** True when `input` and `prefix` agree on their common length. */
function startsLike(input: Buffer, prefix: Buffer): boolean {
  const n = Math.min(input.length, prefix.length);
  return input.subarray(0, n).equals(prefix.subarray(0, n));
}

// ---------------------------------------------------------------------------------------------------------
// Version 1 (§2.1)

function parseV1(input: Buffer): ProxyParseResult {
  if (input.length < V1_PREFIX.length) return INCOMPLETE;
  const window = input.subarray(0, Math.min(input.length, PROXY_V1_MAX_LENGTH));
  const crlf = window.indexOf('\r\n', 0, 'latin1');
  if (crlf === -1) {
    // §2.1: "If the CRLF sequence is not found in the first 107 characters ... declare the line invalid".
    if (input.length >= PROXY_V1_MAX_LENGTH) return invalid('PROXY v1 line has no CRLF within 107 bytes');
    // Reject early (§2.1 "abort ... as soon as possible") when no valid line can start this way.
    // A trailing CR may be the first half of the CRLF.
    const end = window[window.length - 1] === 0x0d ? window.length - 1 : window.length;
    const reason = v1LineError(window.toString('latin1', 0, end), false);
    return reason === undefined ? INCOMPLETE : invalid(reason);
  }
  const line = window.toString('latin1', 0, crlf);
  const reason = v1LineError(line, true);
  if (reason !== undefined) return invalid(reason);
  const headerLength = crlf + 2;
  return {
    status: 'complete',
    header: { version: 1, command: 'PROXY', ...v1Fields(line), tlvs: [], headerLength },
    rest: input.subarray(headerLength),
  };
}

/**
 * Checks a v1 line without its CRLF. With `complete` false the line is still arriving: every field but
 * the last must be valid and the last only has to be a possible start of a valid field.
 * Returns why the line is (or can only become) invalid, or undefined.
 */
function v1LineError(line: string, complete: boolean): string | undefined {
  // §2.1: fields are separated by exactly one space, so an empty field means a doubled/trailing space.
  const fields = line.split(' ');
  const last = fields.length - 1;
  const isWhole = (i: number): boolean => complete || i < last;
  const protocol = fields[1];
  if (!isWhole(1)) {
    if (['TCP4', 'TCP6', 'UNKNOWN'].some((p) => p.startsWith(protocol))) return undefined;
    return `unknown PROXY v1 protocol "${protocol}"`;
  }
  // §2.1: for UNKNOWN "the receiver must ignore anything presented before the CRLF".
  if (protocol === 'UNKNOWN') return undefined;
  if (protocol !== 'TCP4' && protocol !== 'TCP6') return `unknown PROXY v1 protocol "${protocol}"`;
  if (fields.length > 6) return 'PROXY v1 line has too many fields';
  if (complete && fields.length < 6) return 'PROXY v1 line has too few fields';

  const parseAddress = protocol === 'TCP4' ? parseIPv4 : parseIPv6;
  const couldBeAddress = protocol === 'TCP4' ? couldBeIPv4 : couldBeIPv6;
  for (let i = 2; i <= last; i++) {
    const field = fields[i];
    if (i < 4) {
      const ok = isWhole(i) ? parseAddress(field) !== undefined : couldBeAddress(field);
      if (!ok) return `invalid ${protocol} address "${field}"`;
    } else {
      // A prefix of a valid port is itself a valid port (or empty), so one check serves both cases.
      const ok = parsePort(field) !== undefined || (!isWhole(i) && field === '');
      if (!ok) return `invalid port "${field}"`;
    }
  }
  return undefined;
}

/** Extracts the fields of a line that v1LineError accepted as complete. */
function v1Fields(
  line: string,
): Pick<ProxyHeader, 'family' | 'sourceAddress' | 'destinationAddress' | 'sourcePort' | 'destinationPort'> {
  const [, protocol, source, destination, sourcePort, destinationPort] = line.split(' ');
  if (protocol !== 'TCP4' && protocol !== 'TCP6') return { family: 'UNKNOWN' };
  // IPv6 is normalised to RFC 5952 so v1 and v2 report the same text for the same peer.
  const render = (text: string): string =>
    protocol === 'TCP4' ? text : formatIPv6(parseIPv6(text) as Uint8Array);
  return {
    family: protocol,
    sourceAddress: render(source),
    destinationAddress: render(destination),
    sourcePort: Number(sourcePort),
    destinationPort: Number(destinationPort),
  };
}

/** §2.1: decimal 0-65535, no leading zeros. */
function parsePort(text: string): number | undefined {
  if (!/^(?:0|[1-9][0-9]{0,4})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Address text handling (no node:net, per the library's sans-I/O rule)

/** Whether `text` is the start of some valid dotted quad (used while a v1 line is still arriving). */
function couldBeIPv4(text: string): boolean {
  const parts = text.split('.');
  if (parts.length > 4) return false;
  return parts.every(
    (p, i) => (i === parts.length - 1 && p === '') || (/^(?:0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255),
  );
}

/** Loose on purpose: only rules out characters that can never appear in IPv6 text. */
function couldBeIPv6(text: string): boolean {
  return text.length <= 45 && /^[0-9A-Fa-f:.]*$/.test(text);
}

// ---------------------------------------------------------------------------------------------------------
// Version 2 (§2.2)

function parseV2(input: Buffer, maxLength: number): ProxyParseResult {
  if (input.length <= V2_SIGNATURE.length) return INCOMPLETE;
  // Byte 13: high nibble version (must be 2), low nibble command (§2.2).
  const verCmd = input[12];
  if (verCmd >> 4 !== 2) return invalid(`unsupported PROXY v2 version ${verCmd >> 4}`);
  const command = verCmd & 0x0f;
  if (command !== CMD_LOCAL && command !== CMD_PROXY) return invalid(`unknown PROXY v2 command ${command}`);
  if (input.length < 14) return INCOMPLETE;
  const famByte = input[13];
  const fam = V2_FAMILIES.get(famByte);
  // §2.2: LOCAL "discard[s] the protocol block including the family which is ignored".
  if (fam === undefined && command === CMD_PROXY) {
    return invalid(`unsupported PROXY v2 family/protocol 0x${famByte.toString(16).padStart(2, '0')}`);
  }
  if (input.length < V2_FIXED_LENGTH) return INCOMPLETE;
  const total = V2_FIXED_LENGTH + input.readUInt16BE(14);
  // Decided from the length field alone so an oversized header is rejected before it is buffered.
  if (total > maxLength)
    return invalid(`PROXY v2 header of ${total} bytes exceeds the ${maxLength}-byte limit`);
  if (input.length < total) return INCOMPLETE;

  const headerBytes = input.subarray(0, total);
  const rest = input.subarray(total);
  const base = {
    version: 2 as const,
    command: command === CMD_PROXY ? ('PROXY' as const) : ('LOCAL' as const),
  };
  if (fam === undefined) {
    // LOCAL with a family we cannot size: the whole block is skipped (§2.2 "must always consider this field").
    return {
      status: 'complete',
      header: { ...base, family: 'UNKNOWN', tlvs: [], headerLength: total },
      rest,
    };
  }
  const header: ProxyHeader = { ...base, family: fam.family, tlvs: [], headerLength: total };
  const problem = readV2Block(header, headerBytes, fam);
  if (problem === undefined) return { status: 'complete', header, rest };
  // §2.2: LOCAL "must accept this connection as valid" and discards the block: a short or padded
  // one is skipped whole (its TLVs, if any, are not reported), never a reason to refuse.
  if (command === CMD_LOCAL) return { status: 'complete', header: { ...header, tlvs: [] }, rest };
  return invalid(problem);
}

/** Reads the addresses (PROXY only) and TLVs of a v2 block into `header`; returns what is wrong. */
function readV2Block(
  header: ProxyHeader,
  headerBytes: Buffer,
  fam: { family: V2Family; addressLength: number },
): string | undefined {
  const total = headerBytes.length;
  if (total - V2_FIXED_LENGTH < fam.addressLength) {
    return `PROXY v2 length ${total - V2_FIXED_LENGTH} is too short for ${fam.family} addresses`;
  }
  // §2.2: LOCAL means "use the real connection endpoints", so addresses are not reported.
  if (header.command === 'PROXY') Object.assign(header, readV2Addresses(headerBytes, fam.family));
  const entries = readTlvs(headerBytes, V2_FIXED_LENGTH + fam.addressLength, total);
  if (typeof entries === 'string') return entries;
  return applyTlvs(header, entries, headerBytes);
}

function readV2Addresses(buf: Buffer, family: V2Family): Partial<ProxyHeader> {
  const at = V2_FIXED_LENGTH;
  switch (family) {
    case 'TCP4':
    case 'UDP4':
      return {
        sourceAddress: Array.from(buf.subarray(at, at + 4)).join('.'),
        destinationAddress: Array.from(buf.subarray(at + 4, at + 8)).join('.'),
        sourcePort: buf.readUInt16BE(at + 8),
        destinationPort: buf.readUInt16BE(at + 10),
      };
    case 'TCP6':
    case 'UDP6':
      return {
        sourceAddress: formatIPv6(buf.subarray(at, at + 16)),
        destinationAddress: formatIPv6(buf.subarray(at + 16, at + 32)),
        sourcePort: buf.readUInt16BE(at + 32),
        destinationPort: buf.readUInt16BE(at + 34),
      };
    case 'UNIX':
      return {
        sourceAddress: unixPath(buf.subarray(at, at + UNIX_PATH_LENGTH)),
        destinationAddress: unixPath(buf.subarray(at + UNIX_PATH_LENGTH, at + 2 * UNIX_PATH_LENGTH)),
      };
    default:
      // §2.2 AF_UNSPEC: "The receiver should ignore address information."
      return {};
  }
}

/** sun_path is a C string: stop at the first NUL (or the field end if there is none). */
function unixPath(field: Buffer): string {
  const nul = field.indexOf(0);
  return field.toString('utf8', 0, nul === -1 ? field.length : nul);
}

interface TlvEntry {
  type: number;
  valueOffset: number;
  value: Buffer;
}

/** §2.2 TLV vectors (type, 16-bit length, value) that must exactly fill [start, end). */
function readTlvs(buf: Buffer, start: number, end: number): TlvEntry[] | string {
  const out: TlvEntry[] = [];
  let offset = start;
  while (offset < end) {
    if (end - offset < 3) return `truncated TLV header at offset ${offset}`;
    const type = buf[offset];
    const length = buf.readUInt16BE(offset + 1);
    const valueOffset = offset + 3;
    if (valueOffset + length > end)
      return `TLV 0x${type.toString(16)} overruns the header at offset ${offset}`;
    // Copied so the header does not pin (or see later writes to) the caller's receive buffer.
    out.push({ type, valueOffset, value: Buffer.from(buf.subarray(valueOffset, valueOffset + length)) });
    offset = valueOffset + length;
  }
  return out;
}

/** Fills the typed fields from the TLVs (first occurrence wins) and verifies a CRC32C. */
function applyTlvs(header: ProxyHeader, entries: TlvEntry[], headerBytes: Buffer): string | undefined {
  header.tlvs = entries.map(({ type, value }) => ({ type, value }));
  const crcs = entries.filter((e) => e.type === PP2_TYPE_CRC32C);
  if (crcs.length > 1) return 'more than one CRC32C TLV';
  if (crcs.length === 1) {
    const crc = crcs[0];
    if (crc.value.length !== 4) return `CRC32C TLV must be 4 bytes, got ${crc.value.length}`;
    // §2.2.3: checksum of the whole header with the checksum field zeroed.
    const zeroed = Buffer.from(headerBytes);
    zeroed.fill(0, crc.valueOffset, crc.valueOffset + 4);
    if (crc32c(zeroed) !== crc.value.readUInt32BE(0)) return 'CRC32C checksum mismatch';
  }
  for (const { type, value } of entries) {
    switch (type) {
      case PP2_TYPE_ALPN:
        // §2.2.1: a byte sequence; latin1 keeps it lossless.
        header.alpn ??= value.toString('latin1');
        break;
      case PP2_TYPE_AUTHORITY:
        // §2.2.2: UTF-8 host name.
        header.authority ??= value.toString('utf8');
        break;
      case PP2_TYPE_UNIQUE_ID:
        if (value.length > UNIQUE_ID_MAX_LENGTH)
          return `UNIQUE_ID TLV longer than ${UNIQUE_ID_MAX_LENGTH} bytes`;
        header.uniqueId ??= value;
        break;
      case PP2_TYPE_SSL: {
        const ssl = parseSslTlv(value);
        if (typeof ssl === 'string') return ssl;
        header.ssl ??= ssl;
        break;
      }
    }
  }
  return undefined;
}

/** §2.2.6: struct pp2_tlv_ssl { uint8 client; uint32 verify; sub-TLVs }. */
function parseSslTlv(value: Buffer): NonNullable<ProxyHeader['ssl']> | string {
  if (value.length < 5) return 'SSL TLV shorter than 5 bytes';
  const ssl: NonNullable<ProxyHeader['ssl']> = { client: value[0], verify: value.readUInt32BE(1) };
  const subs = readTlvs(value, 5, value.length);
  if (typeof subs === 'string') return `SSL TLV: ${subs}`;
  for (const { type, value: v } of subs) {
    if (type === PP2_SUBTYPE_SSL_VERSION) ssl.version ??= v.toString('latin1');
    else if (type === PP2_SUBTYPE_SSL_CIPHER) ssl.cipher ??= v.toString('latin1');
    else if (type === PP2_SUBTYPE_SSL_CN) ssl.commonName ??= v.toString('utf8');
  }
  return ssl;
}

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as referenced by §2.2.3 (RFC 4960 Appendix B).
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------------------------------------------------
// Formatting (for clients and tests)

function checkPort(name: string, port: number | undefined): number {
  if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`${name} must be an integer 0-65535, got ${String(port)}`);
  }
  return port;
}

function requireAddress<T>(name: string, text: string | undefined, parse: (s: string) => T | undefined): T {
  const parsed = text === undefined ? undefined : parse(text);
  if (parsed === undefined) throw new TypeError(`invalid ${name}: ${String(text)}`);
  return parsed;
}

/**
 * Builds a v1 line. IPv6 addresses are written in RFC 5952 form, which keeps the line within 107 bytes
 * whatever spelling the caller used.
 */
export function formatProxyV1(h: {
  family: 'TCP4' | 'TCP6';
  sourceAddress: string;
  destinationAddress: string;
  sourcePort: number;
  destinationPort: number;
}): Buffer {
  let render: (text: string, name: string) => string;
  if (h.family === 'TCP4') {
    render = (text, name) => requireAddress(name, text, parseIPv4).join('.');
  } else if (h.family === 'TCP6') {
    render = (text, name) => formatIPv6(requireAddress(name, text, parseIPv6));
  } else {
    throw new TypeError(`PROXY v1 family must be TCP4 or TCP6, got ${String(h.family)}`);
  }
  const line =
    `PROXY ${h.family} ${render(h.sourceAddress, 'sourceAddress')} ` +
    `${render(h.destinationAddress, 'destinationAddress')} ` +
    `${checkPort('sourcePort', h.sourcePort)} ${checkPort('destinationPort', h.destinationPort)}\r\n`;
  return Buffer.from(line, 'latin1');
}

/**
 * Builds a v2 header. The address block is written for every family except UNKNOWN (so a spec-style
 * health check is `{ command: 'LOCAL', family: 'UNKNOWN' }`). UNIX is sent as stream (0x31). A CRC32C TLV
 * (type 0x03) in `tlvs` is always written with the computed checksum; its given value is ignored.
 */
export function formatProxyV2(h: {
  command?: 'PROXY' | 'LOCAL';
  family: ProxyHeader['family'];
  sourceAddress?: string;
  destinationAddress?: string;
  sourcePort?: number;
  destinationPort?: number;
  tlvs?: ProxyTlv[];
}): Buffer {
  const command = h.command ?? 'PROXY';
  if (command !== 'PROXY' && command !== 'LOCAL') throw new TypeError(`unknown command ${String(command)}`);
  if (!Object.prototype.hasOwnProperty.call(FAMILY_BYTES, h.family)) {
    throw new TypeError(`unknown family ${String(h.family)}`);
  }

  let addresses: Buffer;
  switch (h.family) {
    case 'TCP4':
    case 'UDP4':
    case 'TCP6':
    case 'UDP6': {
      const parse = h.family.endsWith('4') ? parseIPv4 : parseIPv6;
      addresses = Buffer.concat([
        requireAddress('sourceAddress', h.sourceAddress, parse),
        requireAddress('destinationAddress', h.destinationAddress, parse),
        Buffer.alloc(4),
      ]);
      addresses.writeUInt16BE(checkPort('sourcePort', h.sourcePort), addresses.length - 4);
      addresses.writeUInt16BE(checkPort('destinationPort', h.destinationPort), addresses.length - 2);
      break;
    }
    case 'UNIX':
      addresses = Buffer.alloc(2 * UNIX_PATH_LENGTH);
      requireAddress('sourceAddress', h.sourceAddress, unixPathBytes).copy(addresses, 0);
      requireAddress('destinationAddress', h.destinationAddress, unixPathBytes).copy(
        addresses,
        UNIX_PATH_LENGTH,
      );
      break;
    default:
      addresses = Buffer.alloc(0);
  }

  const tlvParts: Buffer[] = [];
  let crcOffset = -1;
  let offset = V2_FIXED_LENGTH + addresses.length;
  for (const tlv of h.tlvs ?? []) {
    if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 0xff) {
      throw new RangeError(`TLV type must be 0-255, got ${String(tlv.type)}`);
    }
    const isCrc = tlv.type === PP2_TYPE_CRC32C;
    if (isCrc && crcOffset !== -1) throw new TypeError('at most one CRC32C TLV');
    const value = isCrc ? Buffer.alloc(4) : tlv.value;
    if (value.length > 0xffff)
      throw new RangeError(`TLV 0x${tlv.type.toString(16)} value exceeds 65535 bytes`);
    const head = Buffer.from([tlv.type, value.length >> 8, value.length & 0xff]);
    if (isCrc) crcOffset = offset + 3;
    tlvParts.push(head, value);
    offset += 3 + value.length;
  }

  const bodyLength = offset - V2_FIXED_LENGTH;
  if (bodyLength > 0xffff) throw new RangeError(`PROXY v2 header body of ${bodyLength} bytes exceeds 65535`);
  const fixed = Buffer.alloc(4);
  fixed[0] = 0x20 | (command === 'PROXY' ? CMD_PROXY : CMD_LOCAL);
  fixed[1] = FAMILY_BYTES[h.family];
  fixed.writeUInt16BE(bodyLength, 2);
  const out = Buffer.concat([V2_SIGNATURE, fixed, addresses, ...tlvParts]);
  if (crcOffset !== -1) out.writeUInt32BE(crc32c(out), crcOffset); // field is still zero here (§2.2.3)
  return out;
}

function unixPathBytes(path: string): Buffer | undefined {
  const bytes = Buffer.from(path, 'utf8');
  return bytes.length <= UNIX_PATH_LENGTH && !bytes.includes(0) ? bytes : undefined;
}
