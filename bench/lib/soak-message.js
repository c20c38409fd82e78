'use strict';
// Unique, reproducible test messages for bench/soak.js.
//
// A message is `size` bytes of content (what the server must store, byte for byte) plus its
// dot-stuffed wire form. Content: a few headers carrying a unique token (in Message-ID and
// Subject), then body lines of printable ASCII mixed with 8-bit UTF-8 (2, 3 and 4 byte
// sequences), CRLF line endings and no bare CR or LF, some empty lines, about one line in nine
// starting with a dot (including lines that are exactly "." and ".."), and about one line in 30
// between 1,000 and 8,000 bytes long. The content always ends with CRLF.
//
// Everything comes from a random stream keyed by (seed, phase, index): the same token always gives the
// same bytes, so a failing message can be rebuilt from the numbers in the report:
//
//   node bench/lib/soak-message.js SEED PHASE INDEX [MIN MAX] > msg.eml   # content
//   node bench/lib/soak-message.js SEED PHASE INDEX [MIN MAX] --wire      # as sent after the 354

const crypto = require('node:crypto');

const DOMAIN = 'soak.example';
// UTF-8 characters of 2, 3 and 4 bytes.
const WIDE = ['é', 'ß', 'ж', 'Ω', '€', '日', '本', '✓', '—', '😀', '𝄞', '🚀'].map((c) =>
  Buffer.from(c, 'utf8'),
);

/** Run id from the seed: `s<seed in base 36>`. */
function runOf(seed) {
  return `s${(seed >>> 0).toString(36)}`;
}

/** `<run>-<phase>-<index>`: what Message-ID (`<soak.TOKEN@soak.example>`) and Subject carry. */
function tokenOf(seed, phase, index) {
  return `${runOf(seed)}-${phase}-${index}`;
}

/** Finds the token in stored content (Message-ID header); null when absent. */
function parseToken(content) {
  let end = content.indexOf('\r\n\r\n');
  if (end < 0) end = Math.min(content.length, 4096);
  const head = content.subarray(0, end).toString('latin1');
  const id = /^Message-ID: <soak\.([A-Za-z0-9-]+)@soak\.example>/im.exec(head);
  const subject = /^Subject: soak ([A-Za-z0-9-]+) /im.exec(head);
  return { token: id ? id[1] : null, subjectToken: subject ? subject[1] : null };
}

const ZEROS = Buffer.alloc(16384);

/**
 * Deterministic random bytes: AES-128-CTR keyed by sha256(seed, phase, index). Much faster than
 * a JS PRNG per byte, and the same message comes out for the same (seed, phase, index).
 */
class Random {
  constructor(seed, phase, index) {
    const key = crypto
      .createHash('sha256')
      .update(`soak:${seed >>> 0}:${phase}:${index}`)
      .digest();
    this.cipher = crypto.createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
    this.buf = this.cipher.update(ZEROS);
    this.pos = 0;
  }

  byte() {
    if (this.pos >= this.buf.length) {
      this.buf = this.cipher.update(ZEROS);
      this.pos = 0;
    }
    return this.buf[this.pos++];
  }

  /** Uniform in [0, 1) with 24 bits. */
  float() {
    return ((this.byte() << 16) | (this.byte() << 8) | this.byte()) / 16777216;
  }

  /** Uniform integer in [0, n), n <= 2^24. */
  below(n) {
    return Math.floor(this.float() * n);
  }
}

/** Envelope for message `index`: 1–3 recipients. */
function envelopeFor(phase, index, rng) {
  const mailFrom = `sender-${phase}-${index}@${DOMAIN}`;
  const count = 1 + rng.below(3);
  const rcptTo = [];
  for (let k = 0; k < count; k++) rcptTo.push(`rcpt${k}-${phase}-${index}@${DOMAIN}`);
  return { mailFrom, rcptTo };
}

function headerText(token, size, envelope) {
  let head = `Message-ID: <soak.${token}@${DOMAIN}>\r\nSubject: soak ${token} héllo ✓\r\n`;
  // Small messages keep only what identifies them.
  if (size >= 320) head += `From: <${envelope.mailFrom}>\r\nTo: <${envelope.rcptTo[0]}>\r\n`;
  if (size >= 600) head += 'MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n';
  if (size >= 800) head += 'Content-Transfer-Encoding: 8bit\r\n';
  return Buffer.from(head + '\r\n', 'utf8');
}

/** Fills buf[pos, pos+len) with one line's text (no CR/LF): printable ASCII and UTF-8. */
function fillLine(buf, pos, len, rng) {
  const end = pos + len;
  while (pos < end) {
    const b = rng.byte();
    if (b < 31) {
      // about 12 %: a UTF-8 character of 2-4 bytes, when it fits
      const wide = WIDE[b % WIDE.length];
      if (pos + wide.length <= end) {
        for (let i = 0; i < wide.length; i++) buf[pos++] = wide[i];
        continue;
      }
    }
    buf[pos++] = 0x20 + (b % 95); // printable ASCII 0x20..0x7e
  }
}

/**
 * Body of exactly `size` bytes (size >= 2), ending with CRLF. Returns how many lines start with a
 * dot, are exactly "." and are 1,000 bytes or longer (for the record).
 */
function fillBody(buf, start, size, rng) {
  let pos = start;
  const end = start + size;
  let dotLines = 0;
  let loneDots = 0;
  let longLines = 0;
  while (pos < end) {
    const room = end - pos - 2; // bytes of text this line may take
    const r = rng.float();
    let len;
    if (r < 0.033) {
      len = 1000 + rng.below(7000);
      longLines++;
    } else if (r < 0.07) len = 0;
    else len = rng.below(78);
    if (len > room) len = room;
    // Never leave a single byte after this line: it could not hold the next CRLF.
    if (room - len === 1) len = room;
    fillLine(buf, pos, len, rng);
    if (len > 0 && rng.float() < 0.11) {
      // ".", "..", ".text", "..text": stuffed on the wire. A line of length 1 becomes exactly ".".
      const dots = len >= 2 && rng.float() < 0.25 ? 2 : 1;
      buf.fill(0x2e, pos, pos + dots);
      // A multibyte character cut by the dots would be invalid UTF-8: replace its tail with ASCII.
      for (let k = pos + dots; k < pos + len && (buf[k] & 0xc0) === 0x80; k++) buf[k] = 0x78;
      dotLines++;
      if (len === 1) loneDots++;
    }
    buf[pos + len] = 0x0d;
    buf[pos + len + 1] = 0x0a;
    pos += len + 2;
  }
  return { dotLines, loneDots, longLines };
}

/** Content with leading dots doubled, then the ".\r\n" terminator. */
function dotStuff(content) {
  const starts = content[0] === 0x2e ? [0] : [];
  for (let i = content.indexOf('\n.'); i >= 0; i = content.indexOf('\n.', i + 1)) starts.push(i + 1);
  const wire = Buffer.allocUnsafe(content.length + starts.length + 3);
  let w = 0;
  let from = 0;
  for (const at of starts) {
    w += content.copy(wire, w, from, at);
    wire[w++] = 0x2e;
    from = at;
  }
  w += content.copy(wire, w, from);
  wire.write('.\r\n', w, 'latin1');
  return wire;
}

/**
 * Message `index` of `phase` in the run of `seed`: { token, size, content, wire, sha256, mailFrom, rcptTo }.
 * size is uniform in [minSize, maxSize].
 */
function buildSoakMessage({ seed, phase, index, minSize = 200, maxSize = 20480 }) {
  const rng = new Random(seed, phase, index);
  const size = minSize + rng.below(maxSize - minSize + 1);
  const envelope = envelopeFor(phase, index, rng);
  const token = tokenOf(seed, phase, index);
  const head = headerText(token, size, envelope);
  if (head.length + 2 > size) throw new Error(`message size ${size} is smaller than its headers`);
  const content = Buffer.allocUnsafe(size);
  head.copy(content, 0);
  const stats = fillBody(content, head.length, size - head.length, rng);
  const wire = dotStuff(content);
  const sha256 = crypto.createHash('sha256').update(content).digest('hex');
  return { token, size, content, wire, sha256, ...envelope, ...stats };
}

module.exports = { buildSoakMessage, parseToken, tokenOf, runOf, dotStuff, DOMAIN };

if (require.main === module) {
  const [seed, phase, index, min, max] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  if (index === undefined) {
    process.stderr.write('usage: node bench/lib/soak-message.js SEED PHASE INDEX [MIN MAX] [--wire]\n');
    process.exit(2);
  }
  const m = buildSoakMessage({
    seed: Number(seed) >>> 0,
    phase,
    index: Number(index),
    minSize: min ? Number(min) : undefined,
    maxSize: max ? Number(max) : undefined,
  });
  process.stdout.write(process.argv.includes('--wire') ? m.wire : m.content);
}
