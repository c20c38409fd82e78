import { randomFillSync } from 'node:crypto';

// Crockford base32: sortable as text, no ambiguous letters.
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const RANDOM_DIGITS = 16;

let lastTime = -1;
let timeText = '';
const randomDigits = new Uint8Array(RANDOM_DIGITS);

/**
 * A message id that sorts by arrival, also across processes: 10 characters of millisecond time,
 * then 16 random characters (80 bits) that count upward within one millisecond in this process
 * (the ULID layout). Unique across processes through the randomness.
 */
export function nextMessageId(now = Date.now()): string {
  if (now <= lastTime) {
    increment(randomDigits);
  } else {
    lastTime = now;
    timeText = renderTime(now); // once per millisecond, not per message
    randomFillSync(randomDigits);
    for (let i = 0; i < RANDOM_DIGITS; i++) randomDigits[i] &= 31;
  }
  let id = timeText;
  for (let i = 0; i < RANDOM_DIGITS; i++) id += ALPHABET[randomDigits[i]];
  return id;
}

function renderTime(time: number): string {
  let text = '';
  for (let i = 0; i < 10; i++) {
    text = ALPHABET[time % 32] + text;
    time = Math.floor(time / 32);
  }
  return text;
}

function increment(digits: Uint8Array): void {
  for (let i = digits.length - 1; i >= 0; i--) {
    if (digits[i] < 31) {
      digits[i]++;
      return;
    }
    digits[i] = 0;
  }
}
