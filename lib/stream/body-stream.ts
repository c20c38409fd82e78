import { Readable } from 'readable-stream';
import type { MessageBody } from '../protocol/body';

/**
 * The core's message channel as a Readable: reading pulls chunks out of the channel, so a slow
 * consumer holds the session (backpressure reaches the client). Destroying the stream early
 * discards the rest of the text; the session still reads it to the final dot.
 */
export class MessageBodyStream extends Readable {
  constructor(private readonly source: MessageBody) {
    super({ highWaterMark: source.highWaterMark });
  }

  override _read(): void {
    for (;;) {
      let chunk: Buffer | null | undefined;
      try {
        chunk = this.source.read();
      } catch (error) {
        this.destroy(error as Error);
        return;
      }
      if (chunk === undefined) {
        this.push(null);
        return;
      }
      if (chunk === null) {
        this.source.onReadable(() => this._read());
        return;
      }
      if (!this.push(chunk)) return;
    }
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    this.source.discard();
    callback(error);
  }
}
