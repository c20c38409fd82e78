/**
 * Cuts the byte stream from the client into protocol units, with no I/O: command lines, message
 * text (DATA, dot-unstuffed, RFC 5321 §4.5.2) and BDAT chunks (RFC 3030, exact byte counts).
 * Shared by `Protocol.parse`, the stream and the fuzz tests.
 *
 * Hot paths scan with `Buffer.indexOf` and hand out `subarray` views of the received chunks; bytes
 * are copied only to join a command line that straddles chunks. A line that arrives a byte at a
 * time is still scanned once: the scan resumes where it stopped.
 */

export const enum FrameType {
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
  /** Held back: `.` CR at a line start. */
  DotCr,
}

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const CRLF_DOT = Buffer.from('\r\n.', 'latin1');
const EMPTY = Buffer.alloc(0);
const LONE_CR = Buffer.from('\r', 'latin1');

export interface FramerLimits {
  /** Longest command line kept, line ending excluded. Longer lines are dropped → LineTooLong. */
  maxLineLength: number;
  /** Bytes of one unterminated line after which the session is closed (Overflow). */
  hardLineCap: number;
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

  constructor(public limits: FramerLimits) {}

  /** Bytes received and not yet handed out. */
  get buffered(): number {
    return this.buf.length - this.pos;
  }

  get readingText(): boolean {
    return this.mode !== Mode.Lines;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.pos >= this.buf.length) {
      this.buf = chunk;
      this.pos = 0;
    } else {
      // Only the unconsumed tail is copied: a partial command line, bounded by the line cap.
      this.buf = Buffer.concat([this.buf.subarray(this.pos), chunk]);
      this.pos = 0;
    }
  }

  /** Drops everything buffered: used after STARTTLS (RFC 3207 §4.2, CVE-2011-0411). */
  clear(): number {
    const dropped = this.buffered;
    this.buf = EMPTY;
    this.pos = 0;
    this.scanned = 0;
    this.discarded = -1;
    return dropped;
  }

  /** The bytes not yet handed out, leaving the framer empty. */
  takeRest(): Buffer {
    const rest = this.buf.subarray(this.pos);
    this.clear();
    return rest;
  }

  /** Switch to DATA text: everything up to CRLF.CRLF, dot-unstuffed. */
  startDotData(): void {
    this.mode = Mode.DotData;
    this.dataState = DataState.LineStart;
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
      const pending = buf.length - pos;
      if (this.discarded >= 0 || pending > this.limits.maxLineLength + 1) {
        // Too long already: drop what we hold, remember how much, keep looking for the LF.
        this.discarded = Math.max(this.discarded, 0) + pending;
        this.buf = EMPTY;
        this.pos = 0;
        this.scanned = 0;
        if (this.discarded > this.limits.hardLineCap) {
          this.discarded = -1;
          return { type: FrameType.Overflow };
        }
        return undefined;
      }
      this.scanned = pending;
      return undefined;
    }
    this.pos = lf + 1;
    this.scanned = 0;
    // An empty line's CR, if any, sits right before the LF inside the unconsumed bytes too.
    const bareLf = lf === pos || buf[lf - 1] !== CR;
    const end = bareLf ? lf : lf - 1;
    if (this.discarded >= 0) {
      this.discarded = -1;
      return { type: FrameType.LineTooLong, bareLf };
    }
    if (end - pos > this.limits.maxLineLength) return { type: FrameType.LineTooLong, bareLf };
    return { type: FrameType.Line, line: buf.subarray(pos, end), bareLf };
  }

  private nextChunk(): Frame | undefined {
    if (this.chunkLeft === 0) {
      this.mode = Mode.Lines;
      return { type: FrameType.BodyEnd };
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
   */
  private nextText(): Frame | undefined {
    const { buf } = this;
    let p = this.pos;
    const end = buf.length;
    if (p >= end) return undefined;

    // Resolve a line start carried over from the previous chunk.
    switch (this.dataState) {
      case DataState.Cr:
        if (buf[p] !== LF) break;
        this.dataState = DataState.LineStart;
        // The LF is text: emit it together with what follows (below), starting the line after it.
        return this.textFromLineStart(p, p + 1);
      case DataState.LineStart:
        return this.textFromLineStart(p, p);
      case DataState.Dot:
        return this.afterHeldDot(p);
      case DataState.DotCr:
        if (buf[p] === LF) return this.finishText(p + 1);
        // Stuffed `.` followed by a lone CR: drop the dot, give back the CR.
        this.dataState = DataState.Mid;
        return { type: FrameType.Body, chunk: LONE_CR };
      default:
        break;
    }
    this.dataState = DataState.Mid;
    return this.scanText(p, p);
  }

  /** `emitFrom..lineStart` is text already decided; a line starts at `lineStart`. */
  private textFromLineStart(emitFrom: number, lineStart: number): Frame | undefined {
    const { buf } = this;
    if (lineStart >= buf.length) {
      this.pos = buf.length;
      this.dataState = DataState.LineStart;
      return emitFrom < lineStart ? this.body(emitFrom, lineStart) : undefined;
    }
    if (buf[lineStart] === DOT) {
      if (emitFrom < lineStart) {
        // Hand out the text before the dot first; the dot is looked at on the next call.
        this.pos = lineStart;
        this.dataState = DataState.LineStart;
        return this.body(emitFrom, lineStart);
      }
      return this.afterDot(lineStart);
    }
    this.dataState = DataState.Mid;
    return this.scanText(emitFrom, lineStart);
  }

  /** A dot at a line start at `dot` (not yet consumed). */
  private afterDot(dot: number): Frame | undefined {
    const { buf } = this;
    const a = dot + 1;
    if (a >= buf.length) {
      this.pos = buf.length;
      this.dataState = DataState.Dot;
      return undefined;
    }
    if (buf[a] === CR) {
      if (a + 1 >= buf.length) {
        this.pos = buf.length;
        this.dataState = DataState.DotCr;
        return undefined;
      }
      if (buf[a + 1] === LF) return this.finishText(a + 2);
    }
    // A stuffed dot: drop it, the rest of the line is text.
    this.dataState = DataState.Mid;
    return this.scanText(a, a);
  }

  /** The held `.` from the previous chunk; `p` is the first new byte. */
  private afterHeldDot(p: number): Frame | undefined {
    const { buf } = this;
    if (buf[p] === CR) {
      if (p + 1 >= buf.length) {
        this.pos = buf.length;
        this.dataState = DataState.DotCr;
        return undefined;
      }
      if (buf[p + 1] === LF) return this.finishText(p + 2);
    }
    this.dataState = DataState.Mid;
    return this.scanText(p, p);
  }

  /**
   * Inside a line from `from`; text starts at `emitFrom`. Finds the next `CRLF.`: everything before
   * its dot is text; the dot is decided by `afterDot`. Without one, the whole rest is text, and the
   * state records whether it ended at a line start or on a CR.
   */
  private scanText(emitFrom: number, from: number): Frame | undefined {
    const { buf } = this;
    const hit = buf.indexOf(CRLF_DOT, from);
    if (hit >= 0) {
      const dot = hit + 2;
      if (emitFrom < dot) {
        this.pos = dot;
        this.dataState = DataState.LineStart;
        return this.body(emitFrom, dot);
      }
      return this.afterDot(dot);
    }
    const end = buf.length;
    this.pos = end;
    // Bytes before `from` are never a text CR (a dropped dot, or a line start), so stop there.
    if (buf[end - 1] === LF && end - 2 >= from && buf[end - 2] === CR) this.dataState = DataState.LineStart;
    else if (buf[end - 1] === CR) this.dataState = DataState.Cr;
    else this.dataState = DataState.Mid;
    return emitFrom < end ? this.body(emitFrom, end) : undefined;
  }

  private finishText(consumedTo: number): Frame {
    this.pos = consumedTo;
    this.mode = Mode.Lines;
    this.dataState = DataState.LineStart;
    return { type: FrameType.BodyEnd };
  }

  private body(from: number, to: number): Frame {
    return { type: FrameType.Body, chunk: this.buf.subarray(from, to) };
  }
}
