import * as fsSync from 'node:fs';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { startCatcher } from '../../lib/catcher/catcher';
import { envelopeRecord, storeMessage } from '../../lib/catcher/maildir';
import { MessageBody, type IncomingMessage, type SessionInfo } from '../../lib/index';
import { catcherOptions, crlf, listDir, portOf, RawClient, removeDir, tempDir } from './helpers';

const SESSION: SessionInfo = {
  hostname: 'mx.test',
  helo: 'client.test',
  heloVerb: 'EHLO',
  remoteAddress: '127.0.0.1',
  remotePort: 40000,
  localAddress: '127.0.0.1',
  localPort: 2525,
  secure: true,
  tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
  user: 'alice',
  transactionCount: 0,
  extra: {},
};

/** An incoming message whose body is `chunks`, ended (or failed with `failWith` after them). */
function incoming(chunks: Buffer[], failWith?: Error): IncomingMessage {
  const body = new MessageBody();
  for (const chunk of chunks) body.push(chunk);
  if (failWith === undefined) body.end();
  else setTimeout(() => body.fail(failWith), 5);
  return {
    envelope: {
      mailFrom: { address: 'a@example.com', params: { SIZE: '100', BODY: '8BITMIME' } },
      rcptTo: [
        { address: 'b@example.com', params: {} },
        { address: 'c@example.com', params: { NOTIFY: 'FAILURE' } },
      ],
      bodyType: '8BITMIME',
      smtputf8: false,
      requireTls: false,
      transfer: 'DATA',
    },
    session: SESSION,
    body,
    signal: new AbortController().signal,
  };
}

let dir: string;
beforeEach(async () => {
  dir = await tempDir('maildir-');
});
afterEach(async () => {
  jest.restoreAllMocks();
  await removeDir(dir);
});

describe('storeMessage', () => {
  it('writes exactly the bytes received as <id>.eml and the envelope as <id>.json', async () => {
    // Binary, CR/LF oddities, a line that starts with a dot (already unstuffed), no final CRLF.
    const chunks = [Buffer.from('Subject: x\r\n\r\n.dot\r\nbare\nlf'), Buffer.from([0, 0xff, 0x80, 13, 10])];
    const expected = Buffer.concat(chunks);
    const before = Date.now();
    const record = await storeMessage(dir, incoming(chunks));
    expect(await listDir(dir)).toEqual([`${record.id}.eml`, `${record.id}.json`]);
    expect(await fs.readFile(path.join(dir, `${record.id}.eml`))).toEqual(expected);

    const json = JSON.parse(await fs.readFile(path.join(dir, `${record.id}.json`), 'utf8'));
    expect(json).toEqual(record);
    expect(json).toMatchObject({
      id: record.id,
      helo: 'client.test',
      mailFrom: 'a@example.com',
      rcptTo: ['b@example.com', 'c@example.com'],
      mailParams: { SIZE: '100', BODY: '8BITMIME' },
      rcptParams: [{}, { NOTIFY: 'FAILURE' }],
      bodyType: '8BITMIME',
      remoteAddress: '127.0.0.1',
      remotePort: 40000,
      secure: true,
      tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
      user: 'alice',
      size: expected.length,
      transfer: 'DATA',
    });
    expect(record.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(Date.parse(json.receivedAt)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(json.receivedAt)).toBeLessThanOrEqual(Date.now());
  });

  it('stores an empty message, and nulls for what the session does not know', async () => {
    const message = incoming([]);
    message.session = { ...SESSION, helo: undefined, remoteAddress: undefined, remotePort: undefined };
    message.session.secure = false;
    message.session.tls = undefined;
    message.session.user = undefined;
    const record = await storeMessage(dir, message);
    expect(record).toMatchObject({
      helo: null,
      remoteAddress: null,
      remotePort: null,
      secure: false,
      tls: null,
      user: null,
      dsn: null,
      size: 0,
    });
    expect((await fs.readFile(path.join(dir, `${record.id}.eml`))).length).toBe(0);
  });

  it('streams large messages in batches, byte-exact', async () => {
    const chunks = Array.from({ length: 700 }, (_, i) => Buffer.alloc(1000, i % 251));
    const record = await storeMessage(dir, incoming(chunks));
    expect(record.size).toBe(700_000);
    const stored = await fs.readFile(path.join(dir, `${record.id}.eml`));
    expect(stored.equals(Buffer.concat(chunks))).toBe(true); // toEqual walks Buffers byte by byte: slow
  });

  it('syncs the files and the folder with fsync', async () => {
    const handle = await fs.open(path.join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(handle) as { sync: () => Promise<void> };
    await handle.close();
    await fs.rm(path.join(dir, 'probe'));
    const sync = jest.spyOn(proto, 'sync').mockResolvedValue(undefined); // the calls, not the disk's speed
    const record = await storeMessage(dir, incoming([Buffer.from('x')]), { fsync: true });
    expect(sync).toHaveBeenCalledTimes(3); // .eml, .json, the folder
    expect(await listDir(dir)).toEqual([`${record.id}.eml`, `${record.id}.json`]);
  });

  it('finishes short writes (writev writing only part of a batch)', async () => {
    const handle = await fs.open(path.join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(handle) as { writev: (buffers: Buffer[]) => Promise<unknown> };
    await handle.close();
    await fs.rm(path.join(dir, 'probe'));
    const writev = proto.writev;
    // At most 7 bytes per call, from whatever is left.
    jest.spyOn(proto, 'writev').mockImplementation(function (this: unknown, buffers: Buffer[]) {
      return writev.call(this, [Buffer.concat(buffers).subarray(0, 7)]);
    });
    const chunks = [
      Buffer.from('0123456789'),
      Buffer.from('abc'),
      Buffer.from(''),
      Buffer.from('ABCDEFGHIJKLM'),
    ];
    const record = await storeMessage(dir, incoming(chunks));
    expect(await fs.readFile(path.join(dir, `${record.id}.eml`), 'latin1')).toBe(
      '0123456789abcABCDEFGHIJKLM',
    );
  });

  it('renames temporary files into place, .eml before .json, each complete', async () => {
    const rename = fs.rename;
    const seen: string[] = [];
    jest.spyOn(fs, 'rename').mockImplementation(async (from, to) => {
      const name = path.basename(String(to));
      expect(path.basename(String(from))).toBe(`.${name}.tmp`);
      // Whoever sees the final name sees the whole file: the temporary one is already complete.
      const size = (await fs.stat(from)).size;
      seen.push(`${name.slice(26)}:${size > 0}:${(await listDir(dir)).join(',').includes('.json.tmp')}`);
      return rename(from, to);
    });
    await storeMessage(dir, incoming([Buffer.from('Subject: hi\r\n\r\nbody\r\n')]));
    expect(seen).toEqual(['.eml:true:true', '.json:true:true']);
    expect((await listDir(dir)).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('leaves no file when the body fails mid-way (size limit, client gone)', async () => {
    const failure = new Error('message size exceeds fixed maximum message size');
    const message = incoming([Buffer.alloc(100_000, 65)], failure);
    await expect(storeMessage(dir, message)).rejects.toBe(failure);
    expect(await listDir(dir)).toEqual([]);
  });

  it('leaves no file when a write fails mid-way', async () => {
    const handle = await fs.open(path.join(dir, 'probe'), 'w');
    const proto = Object.getPrototypeOf(handle) as { writev: (buffers: Buffer[]) => Promise<unknown> };
    await handle.close();
    await fs.rm(path.join(dir, 'probe'));
    const writev = proto.writev;
    let calls = 0;
    jest.spyOn(proto, 'writev').mockImplementation(function (this: unknown, buffers: Buffer[]) {
      if (++calls === 2)
        return Promise.reject(Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' }));
      return writev.call(this, buffers);
    });
    const chunks = Array.from({ length: 600 }, () => Buffer.alloc(1000, 66));
    await expect(storeMessage(dir, incoming(chunks))).rejects.toThrow('ENOSPC');
    expect(calls).toBe(2);
    expect(await listDir(dir)).toEqual([]);
  });

  it('leaves no file when the envelope cannot be written', async () => {
    const open = fs.open.bind(fs);
    jest
      .spyOn(fs, 'open')
      .mockImplementation((file, ...rest) =>
        String(file).endsWith('.json.tmp')
          ? Promise.reject(new Error('EIO: i/o error'))
          : open(file, ...rest),
      );
    await expect(storeMessage(dir, incoming([Buffer.from('x')]))).rejects.toThrow('EIO');
    expect(await listDir(dir)).toEqual([]);
  });

  it('removes the renamed .eml when the .json rename fails', async () => {
    const rename = fs.rename;
    let calls = 0;
    jest.spyOn(fs, 'rename').mockImplementation((from, to) => {
      if (++calls === 2) return Promise.reject(new Error('EIO: rename failed'));
      return rename(from, to);
    });
    await expect(storeMessage(dir, incoming([Buffer.from('x')]))).rejects.toThrow('rename failed');
    expect(await listDir(dir)).toEqual([]);
  });

  it('rejects with the cause when the folder is not a folder', async () => {
    const file = path.join(dir, 'not-a-dir');
    await fs.writeFile(file, 'x');
    const message = incoming([Buffer.from('x')]);
    // The open's error, not one from the cleanup that follows it.
    await expect(storeMessage(file, message)).rejects.toMatchObject({ code: 'ENOTDIR', syscall: 'open' });
    expect(await listDir(dir)).toEqual(['not-a-dir']);
  });
});

describe('envelopeRecord', () => {
  it('names the envelope with the given id and size', () => {
    const message = incoming([]);
    message.envelope.dsn = { ret: 'HDRS', envid: 'e1' };
    const record = envelopeRecord('ID1', message, 42);
    expect(record).toMatchObject({ id: 'ID1', size: 42, dsn: { ret: 'HDRS', envid: 'e1' } });
  });
});

describe('the catcher when storing fails', () => {
  it('answers 451 and leaves nothing half-written when the maildir became a file', async () => {
    const maildir = path.join(dir, 'mail');
    const catcher = await startCatcher(catcherOptions(maildir));
    try {
      await fs.rm(maildir, { recursive: true });
      await fs.writeFile(maildir, 'not a folder');
      const { client } = await RawClient.connect(portOf(catcher.url));
      const replies = await client.sendMail(
        'a@example.com',
        ['b@example.com'],
        crlf('Subject: x', '', 'body'),
      );
      expect(replies.map((r) => r.code)).toEqual([250, 250, 250, 354, 451]);
      expect(replies[4].lines[0]).toMatch(/^451 4\.3\.0 /);
      // The session goes on: the next transaction is possible once the folder is back.
      await fs.rm(maildir);
      await fs.mkdir(maildir);
      expect((await client.send('MAIL FROM:<a@example.com>')).code).toBe(250);
      await client.quit();
      expect(await listDir(dir)).toEqual(['mail']);
      expect(await listDir(maildir)).toEqual([]);
      expect(fsSync.statSync(maildir).isDirectory()).toBe(true);
    } finally {
      await catcher.close();
    }
  });
});
