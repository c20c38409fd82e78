import { Transform, type TransformCallback } from 'node:stream';

/** Passes bytes on at most `bytesPerSecond`, in small slices: a slow link for tests. */
export class Throttle extends Transform {
  private readonly sliceBytes: number;
  private readonly sliceMs: number;

  constructor(private readonly bytesPerSecond: number) {
    super();
    // Ten slices a second, at least one byte each.
    this.sliceBytes = Math.max(1, Math.floor(bytesPerSecond / 10));
    this.sliceMs = (1000 * this.sliceBytes) / bytesPerSecond;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let offset = 0;
    const next = (): void => {
      if (this.destroyed) return callback();
      if (offset >= chunk.length) return callback();
      this.push(chunk.subarray(offset, offset + this.sliceBytes));
      offset += this.sliceBytes;
      setTimeout(next, this.sliceMs);
    };
    next();
  }
}
