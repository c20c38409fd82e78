/**
 * Optional checks over DATA text, carried across chunks: bare CR or LF (the SMTP smuggling
 * vectors, refused when the policy says so, as Postfix's smtpd_forbid_bare_newline and Sendmail
 * 8.18 do) and lines longer than a limit (RFC 5321 §4.5.3.1.6). Only runs when a policy needs it,
 * since it must look at every line.
 */
export type TextProblem = 'bare-newline' | 'long-line';

const LF = 0x0a;
const CR = 0x0d;

export class TextInspector {
  private lastWasCr = false;
  private lineLength = 0;

  constructor(
    private readonly rejectBareNewlines: boolean,
    private readonly maxLineLength: number,
  ) {}

  inspect(chunk: Buffer): TextProblem | undefined {
    let start = 0;
    for (;;) {
      const lf = chunk.indexOf(LF, start);
      const end = lf < 0 ? chunk.length : lf;
      if (this.rejectBareNewlines) {
        // A CR must be followed by LF; an LF must follow a CR.
        if (lf >= 0 && !(lf > 0 ? chunk[lf - 1] === CR : this.lastWasCr)) return 'bare-newline';
        // The CR just before the LF is the line end; a CR ending the chunk is judged with the next one.
        const crSearchEnd = end - 1;
        const cr = chunk.indexOf(CR, start);
        if (cr >= 0 && cr < crSearchEnd) return 'bare-newline';
        if (this.lastWasCr && start === 0 && chunk.length > 0 && chunk[0] !== LF) return 'bare-newline';
      }
      this.lineLength += end - start;
      if (lf < 0) {
        this.lastWasCr = chunk.length > 0 && chunk[chunk.length - 1] === CR;
        if (this.maxLineLength > 0 && this.lineLength - (this.lastWasCr ? 1 : 0) > this.maxLineLength)
          return 'long-line';
        return undefined;
      }
      const lineBytes = this.lineLength - (lf > 0 ? (chunk[lf - 1] === CR ? 1 : 0) : this.lastWasCr ? 1 : 0);
      if (this.maxLineLength > 0 && lineBytes > this.maxLineLength) return 'long-line';
      this.lineLength = 0;
      this.lastWasCr = false;
      start = lf + 1;
      if (start >= chunk.length) return undefined;
    }
  }
}
