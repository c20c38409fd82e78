'use strict';
// Deterministic test messages. A message is `size` bytes of RFC 5322 content
// (CRLF line endings, lines <= 78 octets, about one line in 12 starting with a
// dot). `wire` is what a client sends after the 354: the content with leading
// dots doubled (dot-stuffing) followed by the terminating ".\r\n".

const { mulberry32 } = require('./util');

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?-_=+/()<>@#%&*';

function headers(size, id) {
  return (
    'From: Bench Sender <sender@bench.example>\r\n' +
    'To: Bench Recipient <rcpt@bench.example>\r\n' +
    `Subject: benchmark message of ${size} bytes\r\n` +
    `Message-ID: <bench-${size}-${id}@bench.example>\r\n` +
    'Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n' +
    'MIME-Version: 1.0\r\n' +
    'Content-Type: text/plain; charset=us-ascii\r\n' +
    '\r\n'
  );
}

/**
 * Body lines totalling exactly `size` bytes of content (size >= 2), ending
 * with CRLF. Returns the dot-stuffed wire text (without the terminator).
 */
function bodyText(size, rng) {
  if (size < 2) throw new Error(`body of ${size} bytes cannot end with CRLF`);
  const parts = [];
  let remaining = size;
  while (remaining > 0) {
    // Keep at least 2 bytes for the last line's CRLF.
    const len = remaining <= 80 ? remaining - 2 : Math.floor(rng() * 77);
    let line = '';
    for (let i = 0; i < len; i++) line += ALPHABET[Math.floor(rng() * ALPHABET.length)];
    if (len > 0 && rng() < 1 / 12) line = '.' + line.slice(1);
    parts.push(line.startsWith('.') ? '.' + line : line, '\r\n');
    remaining -= len + 2;
  }
  return parts.join('');
}

/** A whole message: { size, wire } with wire = stuffed content + ".\r\n". */
function buildMessage(size, seed = 1) {
  const rng = mulberry32(seed);
  const head = headers(size, seed);
  if (size < head.length + 2) throw new Error(`message size ${size} is smaller than its headers`);
  const wire = Buffer.from(head + bodyText(size - head.length, rng) + '.\r\n', 'latin1');
  return { size, wire };
}

/**
 * Parts for streaming a huge message without holding it in memory:
 * head, then `pattern` written `repeat` times, then `tail` (which already
 * ends with the ".\r\n" terminator). Content is exactly `size` bytes.
 */
function streamedMessageParts(size, seed = 1, patternSize = 1 << 20) {
  const rng = mulberry32(seed);
  const head = Buffer.from(headers(size, seed), 'latin1');
  const pattern = Buffer.from(bodyText(patternSize, rng), 'latin1');
  const room = size - head.length - 4096;
  if (room < 0) throw new Error(`message size ${size} too small to stream`);
  const repeat = Math.floor(room / patternSize);
  const tailSize = size - head.length - repeat * patternSize;
  const tail = Buffer.from(bodyText(tailSize, rng) + '.\r\n', 'latin1');
  return { size, head, pattern, repeat, tail };
}

module.exports = { buildMessage, streamedMessageParts };
