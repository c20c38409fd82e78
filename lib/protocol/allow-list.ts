import { canonicalAddress } from './ip';

/**
 * Who may use a privileged feature (XCLIENT, XFORWARD, a PROXY header): a list of addresses, or a
 * predicate over the connecting peer's address as the connection reports it.
 */
export type AllowList = string[] | ((address: string | undefined) => boolean);

/**
 * Whether `address` is allowed. A list matches the address in any of its usual text forms: an
 * IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack listener reports for an IPv4
 * peer) matches its IPv4 form, and IPv6 matches however it is written (case, zeros, `::`).
 */
export function isAllowed(allow: AllowList, address: string | undefined): boolean {
  if (typeof allow === 'function') return allow(address);
  if (address === undefined) return false;
  const peer = canonicalAddress(address);
  return allow.some((entry) => canonicalAddress(entry) === peer);
}
