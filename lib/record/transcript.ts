/**
 * Session transcripts: a line-oriented, diffable text format for recorded SMTP sessions.
 *
 * The format is specified in `FORMAT.md` next to this file. In short:
 *
 * ```text
 * # smtp-session-stream transcript 1
 * # started: 2024-05-01T12:00:00.000Z
 * # remote: 127.0.0.1:50312
 * # local: 127.0.0.1:2525
 * 0 S 220 mx.example ESMTP\r\n
 * 3 C EHLO client.example\r\n
 * ...
 * 120 E
 * ```
 *
 * Every record is `<ms since start> <dir> <escaped bytes>`; the escaping keeps every byte
 * value exact (see {@link escapeBytes}).
 */

/** The first line of every transcript. The trailing number is the format version. */
export const TRANSCRIPT_HEADER = '# smtp-session-stream transcript 1';
export const TRANSCRIPT_VERSION = 1;

/**
 * Record directions:
 * - `C` bytes sent by the client to the server,
 * - `S` bytes sent by the server to the client,
 * - `T` TLS established (payload: `<protocol> <cipher>`, `-` when unknown),
 * - `!` a client line whose credentials were redacted (payload: the redacted form),
 * - `E` end of the session (no payload).
 */
export type RecordDirection = 'C' | 'S' | 'T' | '!' | 'E';

export interface TranscriptRecord {
  /** Milliseconds since the session started (non-negative integer). */
  time: number;
  dir: RecordDirection;
  /** The payload, byte-exact. Empty for `E`. */
  data: Buffer;
}

export interface Transcript {
  version: number;
  /** `# key: value` lines in file order (`started`, `remote`, `local`, ...). */
  metadata: Record<string, string>;
  records: TranscriptRecord[];
}

const DIRECTIONS: ReadonlySet<string> = new Set(['C', 'S', 'T', '!', 'E']);
const METADATA_KEY = /^[A-Za-z][A-Za-z0-9_.-]*$/;

/** Lookup table: the escaped form of each byte value. */
const ESCAPE_TABLE: readonly string[] = Array.from({ length: 256 }, (_, byte) => {
  switch (byte) {
    case 0x0d:
      return '\\r';
    case 0x0a:
      return '\\n';
    case 0x00:
      return '\\0';
    case 0x5c:
      return '\\\\';
    default:
      if (byte >= 0x20 && byte <= 0x7e) return String.fromCharCode(byte);
      return '\\x' + byte.toString(16).padStart(2, '0');
  }
});

/**
 * Escapes arbitrary bytes into printable ASCII: `\r`, `\n`, `\0`, `\\`, `\xHH` (lower-case hex)
 * for every other byte outside 0x20–0x7E; printable ASCII other than backslash is kept as is.
 */
export function escapeBytes(data: Uint8Array): string {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let out = '';
  let run = 0; // start of the current run of bytes that stand for themselves
  for (let i = 0; i < buf.length; i++) {
    const byte = buf[i];
    if (byte >= 0x20 && byte <= 0x7e && byte !== 0x5c) continue;
    if (i > run) out += buf.toString('latin1', run, i);
    out += ESCAPE_TABLE[byte];
    run = i + 1;
  }
  if (buf.length > run) out += buf.toString('latin1', run);
  return out;
}

/** Printable ASCII without backslash: text that stands for exactly its own bytes. */
const PLAIN_TEXT = /^[\x20-\x5b\x5d-\x7e]*$/;

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x41 + 10;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  return -1;
}

/**
 * Inverse of {@link escapeBytes}. Accepts upper- or lower-case hex. Throws on anything
 * `escapeBytes` could not have produced: characters outside printable ASCII, unknown escapes,
 * a truncated `\x` escape or a trailing lone backslash.
 */
export function unescapeBytes(text: string): Buffer {
  if (PLAIN_TEXT.test(text)) return Buffer.from(text, 'latin1');
  const out = Buffer.allocUnsafe(text.length);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code > 0x7e) {
      throw new Error(`invalid character U+${code.toString(16).padStart(4, '0')} at column ${i + 1}`);
    }
    if (code !== 0x5c) {
      out[n++] = code;
      continue;
    }
    const next = text[i + 1];
    switch (next) {
      case 'r':
        out[n++] = 0x0d;
        i++;
        break;
      case 'n':
        out[n++] = 0x0a;
        i++;
        break;
      case '0':
        out[n++] = 0x00;
        i++;
        break;
      case '\\':
        out[n++] = 0x5c;
        i++;
        break;
      case 'x': {
        const hi = hexValue(text.charCodeAt(i + 2));
        const lo = hexValue(text.charCodeAt(i + 3));
        if (hi < 0 || lo < 0) throw new Error(`invalid \\x escape at column ${i + 1}`);
        out[n++] = hi * 16 + lo;
        i += 3;
        break;
      }
      case undefined:
        throw new Error(`lone backslash at end of payload (column ${i + 1})`);
      default:
        throw new Error(`unknown escape \\${next} at column ${i + 1}`);
    }
  }
  return Buffer.from(out.subarray(0, n));
}

/**
 * Formats one record as a transcript line (without the line terminator).
 *
 * A payload that ends with a space gets that last space written as `\x20` so that no line ends
 * in whitespace (editors and `git diff --check` like to strip or flag it); readers accept both.
 */
export function formatRecord(record: TranscriptRecord): string {
  const { time, dir } = record;
  if (!Number.isSafeInteger(time) || time < 0) throw new RangeError(`invalid record time: ${time}`);
  if (!DIRECTIONS.has(dir)) throw new RangeError(`invalid record direction: ${String(dir)}`);
  if (record.data.length === 0) return `${time} ${dir}`;
  return `${time} ${dir} ${escapeForLine(record.data)}`;
}

/** {@link escapeBytes}, with a final space written as `\x20` so the line does not end in whitespace. */
function escapeForLine(data: Uint8Array): string {
  const escaped = escapeBytes(data);
  return escaped.endsWith(' ') ? escaped.slice(0, -1) + '\\x20' : escaped;
}

/** Formats a `# key: value` metadata line; the value is escaped like a payload. */
export function formatMetadataLine(key: string, value: string): string {
  if (!METADATA_KEY.test(key)) throw new RangeError(`invalid metadata key: ${JSON.stringify(key)}`);
  return value === '' ? `# ${key}:` : `# ${key}: ${escapeForLine(Buffer.from(value, 'utf8'))}`;
}

/** The header block: the version line followed by one line per metadata entry. */
export function formatHeader(metadata: Record<string, string> = {}): string[] {
  return [TRANSCRIPT_HEADER, ...Object.entries(metadata).map(([k, v]) => formatMetadataLine(k, v))];
}

/** Formats a whole transcript; the result ends with a newline. */
export function formatTranscript(transcript: Pick<Transcript, 'metadata' | 'records'>): string {
  const lines = formatHeader(transcript.metadata);
  for (const record of transcript.records) lines.push(formatRecord(record));
  return lines.join('\n') + '\n';
}

/** The `T` payload: `<protocol> <cipher>`, each `-` when unknown. */
export function formatTlsPayload(info: { protocol?: string | null; cipher?: string | null }): Buffer {
  const field = (v: string | null | undefined) => (v ? v.replace(/\s+/g, '_') : '-');
  return Buffer.from(`${field(info.protocol)} ${field(info.cipher)}`, 'latin1');
}

/** Reads a `T` payload back; unknown fields come back as `null`. */
export function parseTlsPayload(data: Buffer): { protocol: string | null; cipher: string | null } {
  const [protocol = '-', cipher = '-'] = data.toString('latin1').split(' ');
  return { protocol: protocol === '-' ? null : protocol, cipher: cipher === '-' ? null : cipher };
}

const RECORD_LINE = /^(0|[1-9][0-9]*) (\S)(?: (.*))?$/s;
const METADATA_LINE = /^# ([^:\s]+): ?(.*)$/s;

/**
 * Parses a transcript. Payloads come back as Buffers, byte-exact. File lines may end in LF or
 * CRLF; blank lines are ignored, `#` lines other than metadata are comments. Metadata lines are
 * only allowed before the first record, and nothing but blank lines and comments may follow an
 * `E` record. Anything malformed throws an Error naming the (1-based) line number.
 */
export function parseTranscript(text: string): Transcript {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const fail = (lineNo: number, message: string): never => {
    throw new Error(`transcript line ${lineNo}: ${message}`);
  };

  const first = (lines[0] ?? '').replace(/\r$/, '');
  const header = /^# smtp-session-stream transcript (\d+)$/.exec(first);
  if (!header) fail(1, `expected header "${TRANSCRIPT_HEADER}"`);
  const version = Number(header![1]);
  if (version !== TRANSCRIPT_VERSION) fail(1, `unsupported transcript version ${version}`);

  const metadata: Record<string, string> = {};
  const records: TranscriptRecord[] = [];
  let ended = false;
  for (let i = 1; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (line === '') continue;
    if (line.startsWith('#')) {
      const meta = METADATA_LINE.exec(line);
      if (meta && METADATA_KEY.test(meta[1])) {
        if (records.length > 0) fail(lineNo, 'metadata line after the first record');
        if (Object.prototype.hasOwnProperty.call(metadata, meta[1])) {
          fail(lineNo, `duplicate metadata key "${meta[1]}"`);
        }
        try {
          metadata[meta[1]] = unescapeBytes(meta[2]).toString('utf8');
        } catch (err) {
          fail(lineNo, (err as Error).message);
        }
      }
      continue;
    }
    if (ended) fail(lineNo, 'record after the end (E) record');
    const match = RECORD_LINE.exec(line);
    if (!match) fail(lineNo, 'expected "<ms> <dir> <payload>"');
    const [, ms, dir, payload = ''] = match!;
    const time = Number(ms);
    if (!Number.isSafeInteger(time)) fail(lineNo, `time out of range: ${ms}`);
    if (!DIRECTIONS.has(dir)) fail(lineNo, `unknown direction "${dir}" (expected C, S, T, ! or E)`);
    let data: Buffer;
    try {
      data = unescapeBytes(payload);
    } catch (err) {
      return fail(lineNo, (err as Error).message);
    }
    if (dir === 'E') {
      if (data.length > 0) fail(lineNo, 'the E record takes no payload');
      ended = true;
    }
    records.push({ time, dir: dir as RecordDirection, data });
  }
  return { version, metadata, records };
}
