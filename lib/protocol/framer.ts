/**
 * Cuts the byte stream from the client into protocol units, with no I/O: command lines, message
 * text (DATA, dot-unstuffed, RFC 5321 §4.5.2) and BDAT chunks (RFC 3030, exact byte counts).
 * Shared by `Protocol.parse`, the stream and the fuzz tests.
 *
 * Hot paths scan with `Buffer.indexOf` and hand out `subarray` views of the received chunks; bytes
 * are copied only to join a command line that straddles chunks. A line that arrives a byte at a
 * time is still scanned once: the scan resumes where it stopped.
 */

export enum FrameType {
  /** A command line, without its line ending. */
  Line = 1,
  /** A command line longer than the limit: its bytes were dropped up to the line end. */
  LineTooLong = 2,
  /** The unterminated line passed the hard cap: the session must be closed. */
  Overflow = 3,
  /** Message text (after unstuffing) or BDAT chunk bytes: a view into the received data. */
  Body = 4,
  /** CRLF.CRLF seen (DATA) or the BDAT byte count reached. */
  BodyEnd = 5,
}

export type Frame =
  | { type: FrameType.Line; line: Buffer; bareLf: boolean }
  | { type: FrameType.LineTooLong; bareLf: boolean }
  | { type: FrameType.Overflow }
  | { type: FrameType.Body; chunk: Buffer }
  | { type: FrameType.BodyEnd };

const enum Mode {
  Lines,
  DotData,
  Chunk,
}

/** Where the DATA scanner stands relative to a line start, carried across chunks. */
const enum DataState {
  /** Inside a line. */
  Mid,
  /** The last byte seen was CR (not yet emitted logic-wise: it is part of the text either way). */
  Cr,
  /** At the start of a line (after CRLF, or the first byte of the message). */
  LineStart,
  /** Held back: a `.` at a line start. */
  Dot,
  /** Held back: `.` CR at a line start (the CR is not handed out until the next byte is known). */
  DotCr,
}

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const EMPTY = Buffer.alloc(0);
const LONE_CR = Buffer.from('\r', 'latin1');

export interface FramerLimits {
  /** Longest command line kept, line ending excluded. Longer lines are dropped → LineTooLong. */
  maxLineLength: number;
  /** Bytes of one unterminated line after which the session is closed (Overflow). */
  hardLineCap: number;
}

function lastByte(parts: Buffer[]): number | undefined {
  const last = parts[parts.length - 1];
  return last === undefined ? undefined : last[last.length - 1];
}

export class Framer {
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** Lines mode: offset (relative to `pos`) up to which `buf` was already searched for LF. */
  private scanned = 0;
  /** Lines mode: bytes of an overlong line dropped so far (-1 when not discarding). */
  private discarded = -1;
  private mode: Mode = Mode.Lines;
  private dataState: DataState = DataState.LineStart;
  private chunkLeft = 0;
  /** DATA: the end of text was found (and consumed) behind a Body frame not yet handed out. */
  private textEnded = false;
  /**
   * Lines mode: earlier pieces of a line still waiting for its LF (already scanned). Kept as a list
   * and joined once the LF arrives, so a line sent a byte at a time costs O(n), not O(n²) copying.
   */
  private parts: Buffer[] | undefined;
  private partsLength = 0;

  constructor(public limits: FramerLimits) {}

  /** Bytes received and not yet handed out. */
  get buffered(): number {
    return this.buf.length - this.pos + this.partsLength;
  }

  get readingText(): boolean {
    return this.mode !== Mode.Lines;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.pos >= this.buf.length) {
      this.buf = chunk;
      this.pos = 0;
      this.scanned = 0;
    } else if (this.mode === Mode.Lines && this.scanned === this.buf.length - this.pos) {
      // The held bytes are a line start already searched for LF: set them aside, copy nothing.
      (this.parts ??= []).push(this.buf.subarray(this.pos));
      this.partsLength += this.buf.length - this.pos;
      this.buf = chunk;
      this.pos = 0;
      this.scanned = 0;
    } else {
      // Only the unconsumed tail is copied (rare: input pushed before the last unit was taken).
      const scanned = this.scanned;
      this.buf = Buffer.concat([this.buf.subarray(this.pos), chunk]);
      this.pos = 0;
      this.scanned = scanned;
    }
  }

  /** Drops everything buffered: used after STARTTLS (RFC 3207 §4.2, CVE-2011-0411). */
  clear(): number {
    const dropped = this.buffered;
    this.buf = EMPTY;
    this.pos = 0;
    this.scanned = 0;
    this.discarded = -1;
    this.textEnded = false;
    this.parts = undefined;
    this.partsLength = 0;
    return dropped;
  }

  /** The bytes not yet handed out, leaving the framer empty. */
  takeRest(): Buffer {
    const tail = this.buf.subarray(this.pos);
    const rest = this.parts === undefined ? tail : Buffer.concat([...this.parts, tail]);
    const { discarded, textEnded } = this;
    this.clear();
    this.discarded = discarded; // still inside an overlong line: its tail must not become a command
    this.textEnded = textEnded; // the final dot was seen: what follows it is commands, not text
    return rest;
  }

  /** Switch to DATA text: everything up to CRLF.CRLF, dot-unstuffed. */
  startDotData(): void {
    this.mode = Mode.DotData;
    this.dataState = DataState.LineStart;
    this.textEnded = false;
  }

  /** Switch to reading exactly `size` bytes (BDAT). */
  startChunk(size: number): void {
    this.mode = Mode.Chunk;
    this.chunkLeft = size;
  }

  /** The next unit, or undefined when more bytes are needed. */
  next(): Frame | undefined {
    switch (this.mode) {
      case Mode.Lines:
        return this.nextLine();
      case Mode.DotData:
        return this.nextText();
      case Mode.Chunk:
        return this.nextChunk();
    }
  }

  private nextLine(): Frame | undefined {
    const { buf, pos } = this;
    const lf = buf.indexOf(LF, pos + this.scanned);
    if (lf < 0) {
      const pending = this.partsLength + buf.length - pos;
      if (this.discarded >= 0 || pending > this.limits.maxLineLength + 1) {
        // Too long already: drop what we hold, remember how much, keep looking for the LF.
        this.discarded = Math.max(this.discarded, 0) + pending;
        this.buf = EMPTY;
        this.pos = 0;
        this.scanned = 0;
        this.parts = undefined;
        this.partsLength = 0;
        if (this.discarded > this.limits.hardLineCap) {
          this.discarded = -1;
          return OVERFLOW;
        }
        return undefined;
      }
      this.scanned = buf.length - pos;
      return undefined;
    }
    this.pos = lf + 1;
    this.scanned = 0;
    let line = buf.subarray(pos, lf);
    // The byte before the LF may sit in an earlier piece of the line.
    const parts = this.parts;
    const before = lf > pos ? buf[lf - 1] : parts !== undefined ? lastByte(parts) : undefined;
    if (parts !== undefined) {
      parts.push(line);
      line = Buffer.concat(parts);
      this.parts = undefined;
      this.partsLength = 0;
    }
    const bareLf = before !== CR;
    if (this.discarded >= 0) {
      this.discarded = -1;
      return { type: FrameType.LineTooLong, bareLf };
    }
    const end = bareLf ? line.length : line.length - 1;
    if (end > this.limits.maxLineLength) return { type: FrameType.LineTooLong, bareLf };
    return { type: FrameType.Line, line: line.subarray(0, end), bareLf };
  }

  private nextChunk(): Frame | undefined {
    if (this.chunkLeft === 0) {
      this.mode = Mode.Lines;
      return BODY_END;
    }
    const available = this.buf.length - this.pos;
    if (available === 0) return undefined;
    const take = Math.min(available, this.chunkLeft);
    const chunk = this.buf.subarray(this.pos, this.pos + take);
    this.pos += take;
    this.chunkLeft -= take;
    return { type: FrameType.Body, chunk };
  }

  /**
   * DATA text. Only `CRLF . CRLF` ends it (so `LF.LF`, `CR.CR` and the other SMTP-smuggling
   * variants stay text). The CRLF before the final dot belongs to the last line and is kept (D7);
   * a leading dot is removed from every line, the first one included (D5, D6).
   *
   * One call consumes everything buffered (or up to the end of the text) and hands it out as one
   * frame: a view when no dot was removed, one joined copy otherwise, so a message full of
   * dot-stuffed lines costs one frame per received chunk, not one per line.
   */
  private nextText(): Frame | undefined {
    if (this.textEnded) {
      // `pos` already stands after the final dot (a `push` since may have rebased `buf`).
      this.textEnded = false;
      return this.finishText(this.pos);
    }
    const { buf } = this;
    const end = buf.length;
    let p = this.pos;
    if (p >= end) return undefined;
    let emitFrom = p;
    // Text kept as [from, to) pairs of `buf`; joined once at the end (no view per line). The scratch
    // is shared and emptied per chunk. (Keeping its storage between chunks was no faster and, with
    // less garbage per chunk, V8 collected dead slabs later: a 1 GiB stream's RSS grew 8 → 11 MB.)
    const cuts = CUTS; // nextText runs to completion before anyone else can use it
    cuts.length = 0;
    let ncuts = 0;
    // `.` CR at a line start, then not LF: a stuffed dot; the held CR is text again.
    const heldCr = this.dataState === DataState.DotCr && buf[p] !== LF;
    let finished = -1;
    scan: while (p < end) {
      switch (this.dataState) {
        case DataState.Cr:
          this.dataState = buf[p] === LF ? DataState.LineStart : DataState.Mid;
          if (this.dataState === DataState.LineStart) p++;
          break;
        case DataState.LineStart:
          if (buf[p] === DOT) {
            if (emitFrom < p) {
              cuts[ncuts++] = emitFrom;
              cuts[ncuts++] = p;
            }
            p++;
            emitFrom = p; // the dot itself is never text
            this.dataState = DataState.Dot;
          } else this.dataState = DataState.Mid;
          break;
        case DataState.Dot:
          if (buf[p] === CR) {
            p++;
            this.dataState = DataState.DotCr;
          } else this.dataState = DataState.Mid; // stuffed: the line goes on without its dot
          break;
        case DataState.DotCr:
          if (buf[p] === LF) {
            finished = p + 1;
            break scan;
          }
          this.dataState = DataState.Mid; // stuffed dot before a lone CR (kept, see above)
          break;
        case DataState.Mid: {
          // Next line-start dot: a one-byte search (memchr) beats the three-byte needle, even
          // stopping at every dot inside lines. The CRLF must lie at or after p (we are mid-line).
          let hit = buf.indexOf(DOT, p + 2);
          while (hit >= 0 && (buf[hit - 1] !== LF || buf[hit - 2] !== CR)) hit = buf.indexOf(DOT, hit + 1);
          if (hit >= 0) {
            p = hit;
            this.dataState = DataState.LineStart;
            break;
          }
          // No `CRLF.` in what we hold: note where the buffer ends relative to a line start.
          if (buf[end - 1] === LF && end - 2 >= p && buf[end - 2] === CR)
            this.dataState = DataState.LineStart;
          else if (buf[end - 1] === CR) this.dataState = DataState.Cr;
          p = end;
          break;
        }
      }
    }
    if (finished >= 0) {
      // emitFrom..dot was already kept; the dot, CR and LF end the text.
      this.pos = finished;
    } else {
      const held = this.dataState === DataState.DotCr ? 1 : 0; // the CR after a line-start dot waits
      if (emitFrom < end - held) {
        cuts[ncuts++] = emitFrom;
        cuts[ncuts++] = end - held;
      }
      this.pos = end;
    }
    const chunk = joinCuts(buf, cuts, ncuts, heldCr);
    if (finished >= 0) {
      if (chunk === undefined) return this.finishText(finished);
      this.textEnded = true;
    }
    return chunk === undefined ? undefined : { type: FrameType.Body, chunk };
  }

  private finishText(consumedTo: number): Frame {
    this.pos = consumedTo;
    this.mode = Mode.Lines;
    this.dataState = DataState.LineStart;
    return BODY_END;
  }
}

/**
 * The kept ranges of `buf` as one Buffer: a view when there is one range, else one joined copy,
 * each range set in through a view. (Copying the whole span once and sliding the ranges together
 * with copyWithin was ~10 % faster in-process but, allocating almost no JS objects, let V8 run its
 * young-generation GC so rarely that dead 64 KB copies piled up: +14 MB of RSS instead of +7
 * while a 512 MiB message streamed to disk.)
 */
function joinCuts(buf: Buffer, cuts: number[], used: number, heldCr: boolean): Buffer | undefined {
  if (used === 0) return heldCr ? LONE_CR : undefined;
  if (used === 2 && !heldCr) return buf.subarray(cuts[0], cuts[1]);
  let total = heldCr ? 1 : 0;
  for (let i = 0; i < used; i += 2) total += cuts[i + 1] - cuts[i];
  const out = fromSlab(total);
  let at = 0;
  if (heldCr) out[at++] = CR;
  // Views of a plain Uint8Array: its built-in subarray is cheaper than Buffer's (a JS wrapper).
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  for (let i = 0; i < used; i += 2) {
    out.set(bytes.subarray(cuts[i], cuts[i + 1]), at);
    at += cuts[i + 1] - cuts[i];
  }
  return out;
}

/** Scratch for nextText: kept ranges as flat [from, to, from, to…] pairs, shared by all framers. */
const CUTS: number[] = [];

// Frames without data are shared (one object fewer per message).
const BODY_END: Frame = Object.freeze({ type: FrameType.BodyEnd });
const OVERFLOW: Frame = Object.freeze({ type: FrameType.Overflow });

/**
 * Joined text comes out of shared 256 KB slabs, as Node's own pool does for small Buffers: one
 * ArrayBuffer per slab instead of one per received chunk (less allocation and GC per chunk; a
 * slab is freed once every chunk cut from it is). Bigger joins get their own Buffer.
 */
const SLAB_SIZE = 256 * 1024;
let slab: Buffer | undefined;
let slabUsed = 0;

function fromSlab(size: number): Buffer {
  if (size > SLAB_SIZE / 4) return Buffer.allocUnsafe(size);
  if (slab === undefined || slabUsed + size > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + size);
  slabUsed += (size + 7) & ~7;
  return out;
}
