import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { IncomingMessage } from '../index';
import type { SmallFileWriter } from './file-writer';
import { nextMessageId } from './ids';

/** The envelope file written beside each message: `<id>.json`. A public contract: keep the names. */
export interface EnvelopeRecord {
  id: string;
  helo: string | null;
  mailFrom: string;
  rcptTo: string[];
  mailParams: Record<string, string | true>;
  rcptParams: Array<Record<string, string | true>>;
  bodyType: string;
  smtputf8: boolean;
  dsn: unknown;
  remoteAddress: string | null;
  remotePort: number | null;
  secure: boolean;
  tls: { protocol: string | null; cipher: string | null } | null;
  user: string | null;
  size: number;
  transfer: string;
  receivedAt: string;
}

export interface StoreOptions {
  /** fsync each file before the rename (and the folder after): survives a power cut, costs speed. */
  fsync?: boolean;
  /** Writes messages that fit in memory from a worker thread (see file-writer.ts). */
  writer?: SmallFileWriter;
}

const BATCH = 256 * 1024;

/**
 * Writes `<dir>/<id>.eml` (exactly the bytes received, after dot-unstuffing) and `<dir>/<id>.json`
 * (the envelope). Both go to temporary names first and are renamed only when complete, `.eml`
 * before `.json`, so a watcher that waits for the `.json` always finds the whole message. On any
 * failure nothing is left behind and the error goes up (the session answers 451).
 */
export async function storeMessage(
  dir: string,
  message: IncomingMessage,
  options: StoreOptions = {},
): Promise<EnvelopeRecord> {
  const id = nextMessageId();
  const emlTemp = `${dir}${path.sep}.${id}.eml.tmp`;
  const jsonTemp = `${dir}${path.sep}.${id}.json.tmp`;
  try {
    // Small messages (most mail) are gathered in memory, so both files can be written at once;
    // a message that outgrows BATCH is streamed to its file from then on.
    const { size, head, file } = await gather(message, emlTemp);
    const record = envelopeRecord(id, message, size);
    const json = JSON.stringify(record, null, 2) + '\n';
    if (file === undefined && options.writer !== undefined) {
      // The client left before it could be told 250: keep nothing, so its retry is no duplicate
      // (checked before and after the thread wrote; the catch below removes what it wrote).
      const gone = (): boolean => message.aborted ?? message.signal.aborted;
      if (gone()) message.signal.throwIfAborted();
      await options.writer.write({ dir, id, eml: head, json, fsync: options.fsync === true });
      if (gone()) message.signal.throwIfAborted();
      return record;
    }
    await Promise.all([
      file === undefined ? writeNew(emlTemp, head, options.fsync) : finish(file, options.fsync),
      writeNew(jsonTemp, [Buffer.from(json)], options.fsync),
    ]);
    // The client left before it could be told 250: keep nothing, so its retry is no duplicate.
    message.signal.throwIfAborted();
    await fs.rename(emlTemp, path.join(dir, `${id}.eml`));
    await fs.rename(jsonTemp, path.join(dir, `${id}.json`));
    if (options.fsync) await syncFile(dir);
    return record;
  } catch (error) {
    // Best effort: a failing cleanup (e.g. ENOTDIR) must not hide the cause nor stop the next removal.
    const remove = (file: string) => fs.rm(file, { force: true }).catch(() => undefined);
    const written = [emlTemp, jsonTemp, path.join(dir, `${id}.eml`), path.join(dir, `${id}.json`)];
    await Promise.all(written.map(remove));
    throw error;
  }
}

/** Reads the body: kept in memory up to BATCH bytes, then streamed into `emlTemp`. */
async function gather(
  message: IncomingMessage,
  emlTemp: string,
): Promise<{ size: number; head: Buffer[]; file: fs.FileHandle | undefined }> {
  let size = 0;
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let file: fs.FileHandle | undefined;
  const { body } = message;
  try {
    // read() until the queue is empty, then wait: cheaper than async iteration's promise per chunk.
    for (;;) {
      const chunk = body.read();
      if (chunk === undefined) break;
      if (chunk === null) {
        await new Promise<void>((resolve) => body.onReadable(resolve));
        continue;
      }
      batch.push(chunk);
      batchBytes += chunk.length;
      size += chunk.length;
      if (batchBytes >= BATCH) {
        file ??= await fs.open(emlTemp, 'wx');
        await writeAll(file, batch);
        batch = [];
        batchBytes = 0;
      }
    }
    if (file !== undefined && batch.length > 0) await writeAll(file, batch);
  } catch (error) {
    body.discard(); // the rest of the text is not wanted
    await file?.close();
    throw error;
  }
  return { size, head: file === undefined ? batch : [], file };
}

async function writeNew(target: string, chunks: Buffer[], fsync = false): Promise<void> {
  const file = await fs.open(target, 'wx');
  try {
    if (chunks.length > 0) await writeAll(file, chunks);
    if (fsync) await file.sync();
  } finally {
    await file.close();
  }
}

async function finish(file: fs.FileHandle, fsync = false): Promise<void> {
  try {
    if (fsync) await file.sync();
  } finally {
    await file.close();
  }
}

async function writeAll(file: fs.FileHandle, chunks: Buffer[]): Promise<void> {
  let pending = chunks;
  while (pending.length > 0) {
    const { bytesWritten } = await file.writev(pending);
    pending = skipBytes(pending, bytesWritten);
  }
}

function skipBytes(chunks: Buffer[], count: number): Buffer[] {
  let left = count;
  const rest: Buffer[] = [];
  for (const chunk of chunks) {
    if (left >= chunk.length) {
      left -= chunk.length;
      continue;
    }
    rest.push(left > 0 ? chunk.subarray(left) : chunk);
    left = 0;
  }
  return rest;
}

async function syncFile(file: string): Promise<void> {
  const handle = await fs.open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function envelopeRecord(id: string, message: IncomingMessage, size: number): EnvelopeRecord {
  const { envelope, session } = message;
  return {
    id,
    helo: session.helo ?? null,
    mailFrom: envelope.mailFrom.address,
    rcptTo: envelope.rcptTo.map((recipient) => recipient.address),
    mailParams: envelope.mailFrom.params,
    rcptParams: envelope.rcptTo.map((recipient) => recipient.params),
    bodyType: envelope.bodyType,
    smtputf8: envelope.smtputf8,
    dsn: envelope.dsn ?? null,
    remoteAddress: session.remoteAddress ?? null,
    remotePort: session.remotePort ?? null,
    secure: session.secure,
    tls: session.tls ? { protocol: session.tls.protocol ?? null, cipher: session.tls.cipher ?? null } : null,
    user: session.user ?? null,
    size,
    transfer: envelope.transfer,
    receivedAt: new Date().toISOString(),
  };
}
