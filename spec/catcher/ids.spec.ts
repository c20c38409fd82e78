import * as crypto from 'node:crypto';
import { nextMessageId } from '../../lib/catcher/ids';

// randomFillSync stays real unless a test says otherwise (node:crypto's exports cannot be spied on).
jest.mock('node:crypto', () => {
  const actual = jest.requireActual<typeof import('node:crypto')>('node:crypto');
  return { ...actual, randomFillSync: jest.fn(actual.randomFillSync) };
});

const CROCKFORD = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** The millisecond time of the first 10 characters. */
function timeOf(id: string): number {
  let t = 0;
  for (const c of id.slice(0, 10)) t = t * 32 + ALPHABET.indexOf(c);
  return t;
}

// The generator keeps its last time per process: each test uses times later than any before it.
let clock = Date.now() + 1000;
const later = (ms = 1000): number => (clock += ms);

describe('nextMessageId', () => {
  it('is 26 characters of Crockford base32 starting with the time', () => {
    const before = Date.now();
    const id = nextMessageId();
    expect(id).toMatch(CROCKFORD);
    expect(timeOf(id)).toBeGreaterThanOrEqual(before);
    expect(timeOf(id)).toBeLessThanOrEqual(Math.max(Date.now(), clock));
    const t = later();
    expect(timeOf(nextMessageId(t))).toBe(t);
  });

  it('sorts by time as text', () => {
    const ids = [later(1), later(1), later(50), later(86_400_000)].map((t) => nextMessageId(t));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids.map((id) => id.slice(10))).size).toBe(4); // fresh randomness per millisecond
  });

  it('is monotonic within one millisecond: the random part counts upward', () => {
    const t = later();
    const ids = Array.from({ length: 1000 }, () => nextMessageId(t));
    expect(ids.every((id) => timeOf(id) === t)).toBe(true);
    expect(ids.every((id, i) => i === 0 || id > ids[i - 1])).toBe(true);
  });

  it('stays monotonic when the clock goes back', () => {
    const t = later();
    const first = nextMessageId(t);
    const second = nextMessageId(t - 5000);
    expect(second > first).toBe(true);
    expect(timeOf(second)).toBe(t);
  });

  it('carries from one digit into the next', () => {
    // The last random digit at 31 (Z): the next id in the same millisecond carries.
    jest.mocked(crypto.randomFillSync).mockImplementationOnce(((digits: Uint8Array) => {
      digits.fill(0);
      digits[15] = 31;
      return digits;
    }) as never);
    const t = later();
    const first = nextMessageId(t);
    const second = nextMessageId(t);
    expect(first.slice(10)).toBe('000000000000000Z');
    expect(second.slice(10)).toBe('0000000000000010');
  });

  it('is unique across 100 000 calls', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 100_000; i++) ids.add(nextMessageId());
    expect(ids.size).toBe(100_000);
    const sorted = [...ids];
    // Generated in sorted order: insertion order equals text order.
    expect(sorted.every((id, i) => i === 0 || id > sorted[i - 1])).toBe(true);
  });
});
