import { MessageBody } from '../../lib/protocol/body';
import { bytes } from './drive';

/** Lets pending promise callbacks run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Whether `promise` has settled after the microtask queue ran. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await tick();
  return done;
}

describe('MessageBody', () => {
  it('hands out pushed chunks in order, null while empty, undefined at the end', () => {
    const body = new MessageBody();
    expect(body.read()).toBeNull();
    body.push(bytes('one'));
    body.push(bytes('two'));
    expect(body.read()?.toString()).toBe('one');
    expect(body.read()?.toString()).toBe('two');
    expect(body.read()).toBeNull();
    body.end();
    expect(body.read()).toBeUndefined();
    expect(body.bytesReceived).toBe(6);
  });

  it('keeps queued chunks readable after end()', () => {
    const body = new MessageBody();
    body.push(bytes('last'));
    body.end();
    body.end();
    expect(body.read()?.toString()).toBe('last');
    expect(body.read()).toBeUndefined();
  });

  it('push returns false from the high-water mark on; whenDrained settles once reads bring it below', async () => {
    const body = new MessageBody(10);
    expect(body.push(Buffer.alloc(6))).toBe(true);
    expect(await settled(body.whenDrained())).toBe(true);
    expect(body.push(Buffer.alloc(6))).toBe(false);
    const drained = body.whenDrained();
    expect(body.whenDrained()).toBe(drained);
    expect(body.isDraining).toBe(true);
    expect(await settled(drained)).toBe(false);
    body.read();
    expect(await settled(drained)).toBe(true);
    expect(body.isDraining).toBe(false);
  });

  it('stays full while the queue is at or above the mark', async () => {
    const body = new MessageBody(4);
    body.push(Buffer.alloc(4));
    body.push(Buffer.alloc(4));
    const drained = body.whenDrained();
    body.read();
    expect(await settled(drained)).toBe(false);
    body.read();
    expect(await settled(drained)).toBe(true);
  });

  it('fail(): readers throw the error, the queue is dropped, a waiting producer is released', async () => {
    const body = new MessageBody(4);
    body.push(Buffer.alloc(8));
    const drained = body.whenDrained();
    const error = new Error('too big');
    body.fail(error);
    expect(body.failed).toBe(error);
    expect(await settled(drained)).toBe(true);
    expect(() => body.read()).toThrow(error);
    await expect(body.buffer()).rejects.toBe(error);
    expect(body.push(Buffer.alloc(8))).toBe(true);
    expect(body.bytesReceived).toBe(16);
  });

  it('fail() wakes a reader that is waiting for data', async () => {
    const body = new MessageBody();
    const reading = body.buffer();
    await tick();
    body.fail(new Error('gone'));
    await expect(reading).rejects.toThrow('gone');
  });

  it('fail() after end() changes nothing', async () => {
    const body = new MessageBody();
    body.push(bytes('ok'));
    body.end();
    body.fail(new Error('late'));
    expect(body.failed).toBeUndefined();
    expect((await body.buffer()).toString()).toBe('ok');
  });

  it('discard(): queued and future chunks are dropped and the producer never waits', async () => {
    const body = new MessageBody(4);
    body.push(Buffer.alloc(8));
    const drained = body.whenDrained();
    body.discard();
    expect(body.discarded).toBe(true);
    expect(await settled(drained)).toBe(true);
    for (let i = 0; i < 10; i++) expect(body.push(Buffer.alloc(100))).toBe(true);
    expect(await settled(body.whenDrained())).toBe(true);
    expect(body.read()).toBeNull();
    expect(body.bytesReceived).toBe(1008);
  });

  it('async iteration yields chunks as they arrive and ends with end()', async () => {
    const body = new MessageBody();
    const seen: string[] = [];
    const consumer = (async () => {
      for await (const chunk of body) seen.push(chunk.toString());
    })();
    await tick();
    body.push(bytes('a'));
    await tick();
    body.push(bytes('b'));
    body.push(bytes('c'));
    await tick();
    body.end();
    await consumer;
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it('breaking out of the iteration discards the rest and releases the producer', async () => {
    const body = new MessageBody(4);
    body.push(bytes('first'));
    body.push(bytes('second'));
    expect(body.push(bytes('third'))).toBe(false);
    const drained = body.whenDrained();
    for await (const chunk of body) {
      expect(chunk.toString()).toBe('first');
      break;
    }
    expect(body.discarded).toBe(true);
    expect(await settled(drained)).toBe(true);
    expect(body.push(bytes('more'))).toBe(true);
    expect(body.read()).toBeNull();
  });

  it('a consumer that finished normally does not turn the body into discard mode', async () => {
    const body = new MessageBody();
    body.push(bytes('x'));
    body.end();
    for await (const chunk of body) expect(chunk.toString()).toBe('x');
    expect(body.discarded).toBe(false);
  });

  it('the iterator is itself iterable, and next() calls made while waiting are answered in order', async () => {
    const body = new MessageBody();
    const iterator = body[Symbol.asyncIterator]();
    expect(iterator[Symbol.asyncIterator]()).toBe(iterator);
    const first = iterator.next();
    const second = iterator.next();
    const third = iterator.next();
    await tick();
    body.push(bytes('a'));
    await tick();
    body.push(bytes('b'));
    body.end();
    expect(await Promise.all([first, second, third])).toEqual([
      { done: false, value: bytes('a') },
      { done: false, value: bytes('b') },
      { done: true, value: undefined },
    ]);
    const seen: string[] = [];
    const other = new MessageBody();
    other.push(bytes('x'));
    other.end();
    for await (const chunk of other[Symbol.asyncIterator]()) seen.push(chunk.toString());
    expect(seen).toEqual(['x']);
  });

  it('a failure reaches the waiting consumer as a rejection', async () => {
    const body = new MessageBody();
    const reading = (async () => {
      for await (const chunk of body) void chunk;
    })();
    await tick();
    body.fail(new Error('too big'));
    await expect(reading).rejects.toThrow('too big');
  });

  it('a next() made right after text woke an earlier one still waits its turn', async () => {
    const body = new MessageBody();
    const iterator = body[Symbol.asyncIterator]();
    const first = iterator.next();
    const second = iterator.next();
    body.push(bytes('c1')); // answers `first` at once
    const third = iterator.next(); // same tick: must come after `second`
    body.push(bytes('c2'));
    body.push(bytes('c3'));
    body.end();
    const values = (await Promise.all([first, second, third])).map((r) => r.value?.toString());
    expect(values).toEqual(['c1', 'c2', 'c3']);
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
  });

  it('next() calls queued behind one that is rejected end the iteration instead of rejecting too', async () => {
    const body = new MessageBody();
    const iterator = body[Symbol.asyncIterator]();
    const first = iterator.next();
    const second = iterator.next();
    body.fail(new Error('client gone'));
    await expect(first).rejects.toThrow('client gone');
    await expect(second).resolves.toEqual({ done: true, value: undefined });
  });

  it('buffer() joins every chunk byte for byte', async () => {
    const body = new MessageBody();
    const all = Buffer.from([...Array(256).keys()]);
    const reading = body.buffer();
    for (let i = 0; i < all.length; i += 10) {
      body.push(all.subarray(i, i + 10));
      await tick();
    }
    body.end();
    expect((await reading).equals(all)).toBe(true);
  });

  it('onReadable fires once per registration, at once when something is already there', () => {
    const body = new MessageBody();
    const calls: string[] = [];
    body.onReadable(() => calls.push('first'));
    body.push(bytes('a'));
    body.push(bytes('b'));
    expect(calls).toEqual(['first']);
    body.onReadable(() => calls.push('queued'));
    expect(calls).toEqual(['first', 'queued']);
    body.read();
    body.read();
    body.onReadable(() => calls.push('end'));
    body.end();
    expect(calls).toEqual(['first', 'queued', 'end']);
  });

  it('ignores pushes after end() but still counts them', () => {
    const body = new MessageBody();
    body.end();
    expect(body.push(bytes('late'))).toBe(true);
    expect(body.read()).toBeUndefined();
    expect(body.bytesReceived).toBe(4);
  });

  it('defaults to a 64 KiB high-water mark', () => {
    const body = new MessageBody();
    expect(body.highWaterMark).toBe(64 * 1024);
    expect(body.push(Buffer.alloc(64 * 1024 - 1))).toBe(true);
    expect(body.push(Buffer.alloc(1))).toBe(false);
  });
});
