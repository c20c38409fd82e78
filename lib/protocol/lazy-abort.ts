/**
 * An AbortController made only when someone asks for its signal: creating one costs more than
 * the rest of a small message's bookkeeping, and most hooks never look at it.
 */
export class LazyAbort {
  private controller: AbortController | undefined;
  private reason: unknown;
  private abortedFlag = false;

  /** The signal's `aborted`, without making the signal. */
  get aborted(): boolean {
    return this.abortedFlag;
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.abortedFlag) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.abortedFlag) return;
    this.abortedFlag = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}
