import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { SmallFileWriter } from '../../lib/catcher/file-writer';
import { storeMessage } from '../../lib/catcher/maildir';
import { MessageBody, type IncomingMessage } from '../../lib/index';
import { removeDir, tempDir } from './helpers';

let dir: string;
let writer: SmallFileWriter;
beforeEach(async () => {
  dir = await tempDir('file-writer-');
  writer = new SmallFileWriter();
});
afterEach(async () => {
  await writer.close();
  await removeDir(dir);
});

describe('SmallFileWriter', () => {
  it('writes both files byte for byte under their final names, with no temporary file left', async () => {
    const eml = Buffer.from([0x53, 0x3a, 0x20, 0x78, 13, 10, 13, 10, 0, 0xff, 0x80, 0x2e, 10]);
    const json = '{ "id": "héllo" }\n';
    await writer.write({ dir, id: 'ONE', eml, json, fsync: false });
    expect((await fs.readdir(dir)).sort()).toEqual(['ONE.eml', 'ONE.json']);
    expect((await fs.readFile(path.join(dir, 'ONE.eml'))).equals(eml)).toBe(true);
    expect(await fs.readFile(path.join(dir, 'ONE.json'), 'utf8')).toBe(json);
  });

  it('moves a copy of just the message bytes to the thread; the caller keeps its buffers whole', async () => {
    const slab = Buffer.alloc(256 * 1024, 0x61); // a 1 KB message cut from a big buffer, as the framer does
    const view = slab.subarray(1000, 2024);
    const parts = [Buffer.from('Subject: two\r\n'), slab.subarray(0, 10)];
    // What each hand-off carried, read before the move detaches it.
    const posted: Array<{ sizes: number[]; moved: number }> = [];
    const original = Worker.prototype.postMessage;
    const post = jest.spyOn(Worker.prototype, 'postMessage').mockImplementation(function (
      this: Worker,
      jobs: unknown,
      transfer?: readonly unknown[],
    ) {
      posted.push({
        sizes: (jobs as Array<{ eml: Uint8Array }>).map((job) => job.eml.buffer.byteLength),
        moved: transfer?.length ?? 0,
      });
      return original.call(this, jobs, transfer as ArrayBuffer[]);
    });
    try {
      await writer.write({ dir, id: 'VIEW', eml: view, json: '{}', fsync: false });
      await writer.write({ dir, id: 'PARTS', eml: parts, json: '{}', fsync: false });
    } finally {
      post.mockRestore();
    }
    expect(posted).toEqual([
      { sizes: [1024], moved: 1 },
      { sizes: [14 + 10], moved: 1 },
    ]);
    expect(slab.buffer.byteLength).toBe(256 * 1024); // not detached
    expect(view.every((byte) => byte === 0x61)).toBe(true);
    expect((await fs.readFile(path.join(dir, 'VIEW.eml'))).equals(view)).toBe(true);
    expect(await fs.readFile(path.join(dir, 'PARTS.eml'), 'latin1')).toBe('Subject: two\r\naaaaaaaaaa');
  });

  it('answers concurrent writes each with its own outcome', async () => {
    const ids = Array.from({ length: 50 }, (_, i) => `M${i}`);
    const results = await Promise.allSettled([
      ...ids.map((id) => writer.write({ dir, id, eml: Buffer.from(id), json: `"${id}"`, fsync: true })),
      writer.write({
        dir: path.join(dir, 'missing'),
        id: 'X',
        eml: Buffer.from('x'),
        json: '',
        fsync: false,
      }),
    ]);
    expect(results.slice(0, 50).every((r) => r.status === 'fulfilled')).toBe(true);
    const failed = results[50] as PromiseRejectedResult;
    expect(failed.status).toBe('rejected');
    expect((failed.reason as NodeJS.ErrnoException).code).toBe('ENOENT');
    for (const id of ids) expect(await fs.readFile(path.join(dir, `${id}.eml`), 'latin1')).toBe(id);
    expect(await fs.readdir(dir)).toHaveLength(100);
  });

  it('leaves nothing of a message whose files cannot all be written', async () => {
    // The .json temporary name is taken by a folder: the .eml temp is written, then removed.
    await fs.mkdir(path.join(dir, '.TAKEN.json.tmp'));
    const write = writer.write({ dir, id: 'TAKEN', eml: Buffer.from('x'), json: '{}', fsync: false });
    await expect(write).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await fs.readdir(dir)).toEqual(['.TAKEN.json.tmp']); // only the obstacle, no .eml of ours
  });

  it('close() lets the batch in hand finish, leaves no temporary file, then refuses writes', async () => {
    const inHand = writer.write({ dir, id: 'P', eml: Buffer.alloc(1 << 20, 0x61), json: '{}', fsync: true });
    await writer.close();
    await expect(inHand).resolves.toBeUndefined();
    expect((await fs.readdir(dir)).sort()).toEqual(['P.eml', 'P.json']);
    expect((await fs.stat(path.join(dir, 'P.eml'))).size).toBe(1 << 20);
    await expect(
      writer.write({ dir, id: 'Q', eml: Buffer.from('q'), json: '{}', fsync: false }),
    ).rejects.toThrow('file writer closed');
  });

  it('a thread that dies fails only its batch; the next write gets a new thread', async () => {
    const first = writer.write({ dir, id: 'A', eml: Buffer.from('a'), json: '{}', fsync: false });
    await first;
    // Kill the thread between batches (as a crash would), then write again.
    const thread = (writer as unknown as { worker: import('node:worker_threads').Worker }).worker;
    await thread.terminate();
    await writer.write({ dir, id: 'B', eml: Buffer.from('b'), json: '{}', fsync: false });
    expect((await fs.readdir(dir)).sort()).toEqual(['A.eml', 'A.json', 'B.eml', 'B.json']);
  });
});

describe('storeMessage with a writer', () => {
  function incoming(chunks: Buffer[], signal = new AbortController().signal): IncomingMessage {
    const body = new MessageBody();
    setTimeout(() => {
      for (const chunk of chunks) body.push(chunk);
      body.end();
    }, 1);
    return {
      envelope: {
        mailFrom: { address: 'a@example.com', params: {} },
        rcptTo: [{ address: 'b@example.com', params: {} }],
        bodyType: '7BIT',
        smtputf8: false,
        requireTls: false,
        transfer: 'DATA',
      },
      session: {
        hostname: 'mx.test',
        helo: 'c.test',
        heloVerb: 'EHLO',
        secure: false,
        transactionCount: 0,
        extra: {},
      } as IncomingMessage['session'],
      body,
      signal,
    };
  }

  it('stores a small message through the thread: the text joined exactly, the record returned', async () => {
    const chunks = [Buffer.from('Subject: a\r\n'), Buffer.from('\r\n'), Buffer.from('body\r\n')];
    const record = await storeMessage(dir, incoming(chunks), { writer });
    expect(record.size).toBe(20);
    expect(await fs.readFile(path.join(dir, `${record.id}.eml`), 'latin1')).toBe(
      'Subject: a\r\n\r\nbody\r\n',
    );
    expect(JSON.parse(await fs.readFile(path.join(dir, `${record.id}.json`), 'utf8'))).toEqual(record);
  });

  it('streams a message larger than memory batching to its file on the main thread, same result', async () => {
    const big = Buffer.alloc(600 * 1024, 0x61);
    const record = await storeMessage(dir, incoming([big.subarray(0, 300_000), big.subarray(300_000)]), {
      writer,
    });
    expect((await fs.readFile(path.join(dir, `${record.id}.eml`))).equals(big)).toBe(true);
    expect((await fs.readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('keeps nothing when the client leaves while the thread writes', async () => {
    const controller = new AbortController();
    const write = writer.write.bind(writer);
    jest.spyOn(writer, 'write').mockImplementation((files) => {
      const written = write(files);
      controller.abort(new Error('client gone meanwhile'));
      return written;
    });
    await expect(
      storeMessage(dir, incoming([Buffer.from('x\r\n')], controller.signal), { writer }),
    ).rejects.toThrow('client gone meanwhile');
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('keeps nothing when the client left before the files were written', async () => {
    const controller = new AbortController();
    controller.abort(new Error('client gone'));
    await expect(
      storeMessage(dir, incoming([Buffer.from('x\r\n')], controller.signal), { writer }),
    ).rejects.toThrow('client gone');
    expect(await fs.readdir(dir)).toEqual([]);
  });
});
