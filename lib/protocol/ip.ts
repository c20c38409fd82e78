/**
 * IP address text (RFC 4291 §2.2, RFC 5952), parsed and formatted without node:net (the core is
 * sans-I/O): what PROXY headers, address literals, XCLIENT, allow lists and certificates share.
 */

/** Exactly four decimal octets 0-255, no leading zeros (they would read as octal). */
export function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(parts[i])) return undefined;
    const n = Number(parts[i]);
    if (n > 255) return undefined;
    bytes[i] = n;
  }
  return bytes;
}

/**
 * RFC 4291 §2.2 text forms: 8 hex groups, one optional "::" standing for one or more zero groups, and an
 * optional dotted-quad tail. Zone indices ("%eth0") are not addresses and are rejected.
 */
export function parseIPv6(text: string): Uint8Array | undefined {
  const groups: number[] = [];
  let head = text;
  const lastColon = text.lastIndexOf(':');
  if (lastColon === -1) return undefined;
  if (text.includes('.', lastColon)) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    // Keep "::" intact when it sits right before the dotted quad ("::1.2.3.4", "1::1.2.3.4").
    head = text[lastColon - 1] === ':' ? text.slice(0, lastColon + 1) : text.slice(0, lastColon);
    groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
  }
  const budget = 8 - groups.length;
  const hexGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const halves = head.split('::');
  let leading: number[];
  if (halves.length === 1) {
    const all = head === '' ? undefined : hexGroups(head);
    if (all === undefined || all.length !== budget) return undefined;
    leading = all;
  } else if (halves.length === 2) {
    const left = hexGroups(halves[0]);
    const right = hexGroups(halves[1]);
    if (left === undefined || right === undefined || left.length + right.length > budget - 1)
      return undefined;
    leading = [...left, ...new Array<number>(budget - left.length - right.length).fill(0), ...right];
  } else {
    return undefined;
  }
  const all = [...leading, ...groups];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/** RFC 5952 text: lowercase, no leading zeros, longest (first on a tie) run of 2+ zero groups as "::". */
export function formatIPv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  // RFC 5952 §5: IPv4-mapped addresses keep the dotted tail (also what Node reports for dual-stack peers).
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  // RFC 5952 §4.2.2: a single zero group is not shortened.
  if (bestLength < 2) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

export function isIPv4(text: string): boolean {
  return parseIPv4(text) !== undefined;
}

export function isIPv6(text: string): boolean {
  return parseIPv6(text) !== undefined;
}

/**
 * One text per address, for comparing and counting: IPv6 in RFC 5952 form, an IPv4-mapped IPv6
 * address (`::ffff:192.0.2.1`, how a dual-stack listener reports an IPv4 peer) as its IPv4 form;
 * anything that is no IP address is only lower-cased.
 */
export function canonicalAddress(text: string): string {
  if (!text.includes(':')) return text;
  const bytes = parseIPv6(text);
  if (bytes === undefined) return text.toLowerCase();
  const formatted = formatIPv6(bytes);
  return formatted.startsWith('::ffff:') && formatted.includes('.') ? formatted.slice(7) : formatted;
}
