/**
 * An SMTP reply as a value: a three-digit code, an optional RFC 3463 enhanced status code, one or
 * more text lines, and a stable `id` (an error-code string tests and users can match on).
 */
export class Reply {
  readonly code: number;
  readonly enhanced: string | undefined;
  readonly lines: readonly string[];
  readonly id: string;

  constructor(code: number, lines: string | readonly string[], enhanced?: string, id = 'Custom') {
    if (!Number.isInteger(code) || code < 200 || code > 599)
      throw new RangeError(`invalid SMTP reply code ${code}`);
    if (enhanced !== undefined && !VALID_ENHANCED.has(enhanced)) {
      if (!ENHANCED_CODE.test(enhanced)) throw new RangeError(`invalid enhanced status code ${enhanced}`);
      if (VALID_ENHANCED.size < 256) VALID_ENHANCED.add(enhanced); // the table's few codes, checked once
    }
    this.code = code;
    this.enhanced = enhanced;
    this.lines = typeof lines === 'string' ? [oneLine(lines)] : lines.length > 0 ? lines.map(oneLine) : [''];
    this.id = id;
  }

  private renderedPlain: string | undefined;
  private renderedEnhanced: string | undefined;

  /** 2xx or 3xx. */
  get positive(): boolean {
    return this.code < 400;
  }

  /** Wire form, RFC 5321 §4.2.1: `250-first`, …, `250 last`, each CRLF-terminated. */
  render(withEnhanced: boolean): string {
    // Replies are immutable and the shared ones are sent over and over: render each form once.
    if (withEnhanced && this.enhanced !== undefined) return (this.renderedEnhanced ??= this.build(true));
    return (this.renderedPlain ??= this.build(false));
  }

  private build(withEnhanced: boolean): string {
    const prefix = withEnhanced && this.enhanced !== undefined ? `${this.enhanced} ` : '';
    const last = this.lines.length - 1;
    let out = '';
    for (let i = 0; i <= last; i++) {
      const text = prefix + this.lines[i];
      out += `${this.code}${i === last ? ' ' : '-'}${text}\r\n`;
    }
    return out;
  }

  toString(): string {
    return this.render(true).trimEnd();
  }

  /** The same reply with other text (used by hooks that want a standard code with their own words). */
  withText(text: string | readonly string[]): Reply {
    return new Reply(this.code, text, this.enhanced, this.id);
  }
}

const ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3}$/;
const CR_LF = /[\r\n]/g;
const VALID_ENHANCED = new Set<string>();

/** A reply line never carries CR or LF: echoed client text must not forge extra reply lines. */
function oneLine(line: string): string {
  return line.includes('\r') || line.includes('\n') ? line.replace(CR_LF, ' ') : line;
}

export function isReply(value: unknown): value is Reply {
  return value instanceof Reply;
}
