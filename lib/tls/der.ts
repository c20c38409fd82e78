/**
 * Minimal DER (X.690) encoder: just enough ASN.1 to build an X.509 v3 certificate.
 *
 * Every function returns a complete TLV as a Buffer so that structures compose by nesting calls.
 * Only the definite-length, minimal encodings required by DER are produced.
 */

/** Universal tag numbers (X.690 / X.680 §8.4) used by RFC 5280 certificates. */
const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30, // constructed bit set
  SET: 0x31, // constructed bit set
} as const;

/** Encodes a length in definite form; DER requires the shortest form (X.690 §10.1). */
function encodeLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Wraps `content` in a tag-length-value triple. `tag` is the full identifier octet. */
export function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(content.length), content]);
}

export function sequence(...items: Buffer[]): Buffer {
  return tlv(TAG.SEQUENCE, Buffer.concat(items));
}

/** SET OF: DER requires the elements to be sorted by their encodings (X.690 §11.6). */
export function set(...items: Buffer[]): Buffer {
  return tlv(TAG.SET, Buffer.concat([...items].sort(Buffer.compare)));
}

/** BOOLEAN: DER TRUE is exactly 0xff (X.690 §11.1). */
export function boolean(value: boolean): Buffer {
  return tlv(TAG.BOOLEAN, Buffer.from([value ? 0xff : 0x00]));
}

/**
 * INTEGER from a non-negative number, bigint or unsigned big-endian byte string.
 * Two's complement, minimal octets: strip redundant leading zeros, then add one back if the
 * high bit is set so the value stays positive (X.690 §8.3.2).
 */
export function integer(value: number | bigint | Buffer): Buffer {
  let bytes: Buffer;
  if (Buffer.isBuffer(value)) {
    bytes = value;
  } else {
    let n = BigInt(value);
    if (n < 0n) throw new RangeError('der.integer: negative values are not supported');
    const out: number[] = [];
    do {
      out.unshift(Number(n & 0xffn));
      n >>= 8n;
    } while (n > 0n);
    bytes = Buffer.from(out);
  }
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  bytes = bytes.subarray(start);
  if (bytes.length === 0) bytes = Buffer.from([0]);
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(TAG.INTEGER, bytes);
}

/** OBJECT IDENTIFIER from dotted form; arcs are base-128 with continuation bits (X.690 §8.19). */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((arc) => {
    if (!/^\d+$/.test(arc)) throw new SyntaxError(`der.oid: invalid OID ${dotted}`);
    return BigInt(arc);
  });
  if (arcs.length < 2 || arcs[0] > 2n || (arcs[0] < 2n && arcs[1] > 39n)) {
    throw new SyntaxError(`der.oid: invalid OID ${dotted}`);
  }
  const out: number[] = [];
  const push = (arc: bigint): void => {
    const chunk: number[] = [Number(arc & 0x7fn)];
    for (let n = arc >> 7n; n > 0n; n >>= 7n) chunk.unshift(Number(n & 0x7fn) | 0x80);
    out.push(...chunk);
  };
  // The first two arcs share one subidentifier: 40 * X + Y (X.690 §8.19.4).
  push(arcs[0] * 40n + arcs[1]);
  for (const arc of arcs.slice(2)) push(arc);
  return tlv(TAG.OID, Buffer.from(out));
}

export function nullValue(): Buffer {
  return tlv(TAG.NULL, Buffer.alloc(0));
}

export function utf8String(value: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(value, 'utf8'));
}

export function printableString(value: string): Buffer {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(value)) {
    throw new RangeError(`der.printableString: not a PrintableString: ${JSON.stringify(value)}`);
  }
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(value, 'latin1'));
}

export function ia5String(value: string): Buffer {
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(value)) throw new RangeError('der.ia5String: non-ASCII characters');
  return tlv(TAG.IA5_STRING, Buffer.from(value, 'latin1'));
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** `YYMMDDHHMMSS` / `YYYYMMDDHHMMSS` in UTC, always with seconds and without fractions. */
function timeDigits(date: Date, fourDigitYear: boolean): string {
  const year = date.getUTCFullYear();
  return (
    (fourDigitYear ? String(year).padStart(4, '0') : pad2(year % 100)) +
    pad2(date.getUTCMonth() + 1) +
    pad2(date.getUTCDate()) +
    pad2(date.getUTCHours()) +
    pad2(date.getUTCMinutes()) +
    pad2(date.getUTCSeconds())
  );
}

/** UTCTime, `YYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5.1). */
export function utcTime(date: Date): Buffer {
  return tlv(TAG.UTC_TIME, Buffer.from(`${timeDigits(date, false)}Z`, 'latin1'));
}

/** GeneralizedTime, `YYYYMMDDHHMMSSZ` with no fractional seconds (RFC 5280 §4.1.2.5.2). */
export function generalizedTime(date: Date): Buffer {
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(`${timeDigits(date, true)}Z`, 'latin1'));
}

/**
 * X.509 `Time`: RFC 5280 §4.1.2.5 mandates UTCTime for years 1950-2049 and GeneralizedTime
 * from 2050 on (and, by extension, before 1950).
 */
export function x509Time(date: Date): Buffer {
  if (Number.isNaN(date.getTime())) throw new RangeError('der.x509Time: invalid date');
  const year = date.getUTCFullYear();
  return year >= 1950 && year <= 2049 ? utcTime(date) : generalizedTime(date);
}

/** BIT STRING: first content octet counts the unused trailing bits of the last octet (X.690 §8.6). */
export function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  if (unusedBits < 0 || unusedBits > 7 || (bytes.length === 0 && unusedBits !== 0)) {
    throw new RangeError('der.bitString: invalid unused bit count');
  }
  return tlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/**
 * BIT STRING for a NamedBitList (e.g. KeyUsage): bit 0 is the MSB of the first octet, and DER
 * drops trailing zero bits (X.690 §11.2.2), so the length depends on the highest set bit.
 */
export function namedBits(bits: number[]): Buffer {
  if (bits.length === 0) return bitString(Buffer.alloc(0));
  const highest = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(highest / 8) + 1);
  for (const bit of bits) bytes[bit >> 3] |= 0x80 >> (bit & 7);
  return bitString(bytes, 7 - (highest & 7));
}

export function octetString(bytes: Buffer): Buffer {
  return tlv(TAG.OCTET_STRING, bytes);
}

/** `[n] EXPLICIT`: constructed context-specific tag wrapping a complete inner TLV. */
export function explicit(tagNumber: number, inner: Buffer): Buffer {
  if (tagNumber < 0 || tagNumber > 30) throw new RangeError('der.explicit: tag number out of range');
  return tlv(0xa0 | tagNumber, inner);
}

/** `[n] IMPLICIT` on a primitive type: context-specific tag replacing the universal one. */
export function implicitPrimitive(tagNumber: number, content: Buffer): Buffer {
  if (tagNumber < 0 || tagNumber > 30) throw new RangeError('der.implicitPrimitive: tag number out of range');
  return tlv(0x80 | tagNumber, content);
}
