/**
 * The message text of one transaction as it arrives: the core pushes unstuffed chunks in, the
 * message hook reads them out (async iteration, or `read()` + `onReadable` for stream adapters).
 * Backpressure: `push` returns false once `highWaterMark` bytes wait unread, and the core stops
 * reading input until `whenDrained()` settles. The whole message is never held unless a consumer
 * asks for it (`buffer()`).
 */
export class MessageBody implements AsyncIterable<Buffer> {
  /** Bytes of text received so far (after unstuffing), counted even when they are discarded. */
  bytesReceived = 0;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private endSeen = false;
  private failure: Error | undefined;
  private discarding = false;
  private claimedByConsumer = false;
  private readableListener: (() => void) | undefined;
  private drainWaiter: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(readonly highWaterMark = 64 * 1024) {}

  // Producer side (the core).

  /** Queues a chunk; false means the consumer is behind and the producer should wait. */
  push(chunk: Buffer): boolean {
    this.bytesReceived += chunk.length;
    if (this.discarding || this.endSeen) return true;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.notify();
    return this.queuedBytes < this.highWaterMark;
  }

  /** Settles when the queue has fallen below the high-water mark (or the consumer gave up). */
  whenDrained(): Promise<void> {
    if (this.queuedBytes < this.highWaterMark || this.discarding) return Promise.resolve();
    if (this.drainWaiter === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.drainWaiter = { promise, resolve };
    }
    return this.drainWaiter.promise;
  }

  get isDraining(): boolean {
    return this.drainWaiter !== undefined;
  }

  /** The text is complete. */
  end(): void {
    if (this.endSeen) return;
    this.endSeen = true;
    this.notify();
  }

  /** The text will not be complete (size limit, policy, client gone): readers get `error`. */
  fail(error: Error): void {
    if (this.endSeen) return;
    this.failure = error;
    this.endSeen = true;
    this.queue = [];
    this.queuedBytes = 0;
    this.release();
    this.notify();
  }

  /** `end()` or `fail()` was called: no more text will come. */
  get ended(): boolean {
    return this.endSeen;
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  // Consumer side.

  /** The next queued chunk; `null` when none is queued now, `undefined` at the end. Throws after `fail`. */
  read(): Buffer | null | undefined {
    if (this.failure !== undefined) throw this.failure;
    const chunk = this.queue.shift();
    if (chunk !== undefined) {
      this.queuedBytes -= chunk.length;
      if (this.queuedBytes < this.highWaterMark) this.release();
      return chunk;
    }
    return this.endSeen ? undefined : null;
  }

  /** Called (once per registration) when `read()` has something new to say. */
  onReadable(listener: () => void): void {
    this.readableListener = listener;
    if (this.queue.length > 0 || this.endSeen) this.notify();
  }

  /**
   * A consumer is reading (e.g. a stream piped somewhere) and will go on after the hook has
   * answered: the text is not drained when the answer comes first.
   */
  claim(): void {
    this.claimedByConsumer = true;
  }

  get claimed(): boolean {
    return this.claimedByConsumer;
  }

  /** The consumer does not want the rest: queued and future chunks are dropped, the producer never waits. */
  discard(): void {
    this.discarding = true;
    this.queue = [];
    this.queuedBytes = 0;
    this.release();
  }

  get discarded(): boolean {
    return this.discarding;
  }

  /**
   * Chunk by chunk with `for await`. Hand-written rather than an async generator: a queued chunk
   * costs one resolved Promise, not a generator resumption. A consumer that stops early (break,
   * throw) lets the rest of the text be discarded.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    return new BodyIterator(this);
  }

  /** Convenience for small messages: the whole text as one Buffer. */
  async buffer(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  private notify(): void {
    const listener = this.readableListener;
    if (listener === undefined) return;
    this.readableListener = undefined;
    listener();
  }

  private release(): void {
    const waiter = this.drainWaiter;
    if (waiter === undefined) return;
    this.drainWaiter = undefined;
    waiter.resolve();
  }
}

const ITERATION_DONE: IteratorResult<Buffer> = Object.freeze({ done: true, value: undefined });

/**
 * `for await` over a MessageBody. `next()` calls are answered in the order they were made, also
 * when several wait for text at once. One wake-up function per iterator, not a closure per wait.
 */
class BodyIterator implements AsyncIterableIterator<Buffer> {
  private finished = false;
  /** `next()` calls not answered yet, oldest first. */
  private readonly waiters: Array<{
    resolve: (result: IteratorResult<Buffer>) => void;
    reject: (error: unknown) => void;
  }> = [];
  private listening = false;
  private readonly wake = (): void => {
    this.listening = false;
    this.answerWaiters();
  };

  constructor(private readonly body: MessageBody) {}

  [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    return this;
  }

  next(): Promise<IteratorResult<Buffer>> {
    if (this.waiters.length === 0) {
      let answer: IteratorResult<Buffer> | null;
      try {
        answer = this.poll();
      } catch (error) {
        return Promise.reject(error as Error);
      }
      if (answer !== null) return Promise.resolve(answer);
    }
    const answer = new Promise<IteratorResult<Buffer>>((resolve, reject) =>
      this.waiters.push({ resolve, reject }),
    );
    this.listen();
    return answer;
  }

  return(): Promise<IteratorResult<Buffer>> {
    if (!this.finished) {
      this.finished = true;
      if (!this.body.ended) this.body.discard();
    }
    return Promise.resolve(ITERATION_DONE);
  }

  /** Answers waiting calls, oldest first, as far as the body has something to say. */
  private answerWaiters(): void {
    const { waiters } = this;
    while (waiters.length > 0) {
      let answer: IteratorResult<Buffer> | null;
      try {
        answer = this.poll();
      } catch (error) {
        waiters.shift()?.reject(error); // the calls behind it then see the end
        continue;
      }
      if (answer === null) return this.listen();
      waiters.shift()?.resolve(answer);
    }
  }

  private listen(): void {
    if (this.listening) return;
    this.listening = true;
    this.body.onReadable(this.wake); // at once if something is already there
  }

  /** What is queued now; null when the body has nothing to say yet. Throws the body's failure once. */
  private poll(): IteratorResult<Buffer> | null {
    if (this.finished) return ITERATION_DONE;
    let chunk: Buffer | null | undefined;
    try {
      chunk = this.body.read();
    } catch (error) {
      this.finished = true;
      throw error;
    }
    if (chunk === null) return null;
    if (chunk === undefined) {
      this.finished = true;
      return ITERATION_DONE;
    }
    return { done: false, value: chunk };
  }
}
