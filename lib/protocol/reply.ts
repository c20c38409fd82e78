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
    if (enhanced !== undefined && !ENHANCED_CODE.test(enhanced)) {
      throw new RangeError(`invalid enhanced status code ${enhanced}`);
    }
    this.code = code;
    this.enhanced = enhanced;
    const list = typeof lines === 'string' ? [lines] : lines.length > 0 ? lines : [''];
    // A reply line never carries CR or LF: echoed client text must not forge extra reply lines.
    this.lines = list.map((line) =>
      line.includes('\r') || line.includes('\n') ? line.replace(CR_LF, ' ') : line,
    );
    this.id = id;
  }

  /** 2xx or 3xx. */
  get positive(): boolean {
    return this.code < 400;
  }

  /** Wire form, RFC 5321 §4.2.1: `250-first`, …, `250 last`, each CRLF-terminated. */
  render(withEnhanced: boolean): string {
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

export function isReply(value: unknown): value is Reply {
  return value instanceof Reply;
}
