/**
 * @module storage/fs-blob-store
 * The filesystem `BlobStore` driver. Layout of its folder:
 *
 *   <root>/
 *   ├── sha256/
 *   │   └── ab/
 *   │       └── abcdef0123…      verified, immutable content, named by its digest
 *   ├── sha512/…                 the same for sha512 digests
 *   ├── _uploads/
 *   │   └── <upload id>          sessions in progress: appended to, never served
 *   └── _objects/
 *       └── logs/builds/<id>/…   named objects (ObjectArea), e.g. log chunks
 *
 * Publishing is `fdatasync(file)` → `rename` into place → `fsync(dir)`, so a blob is either
 * complete and durable or absent.
 */
import { createReadStream, createWriteStream, constants as fsConstants } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, truncate, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BlobNotFoundError, UploadNotFoundError, UploadOffsetError, type BlobReader, type BlobStat, type BlobStore, type ByteRange, type ObjectArea, type UploadStore, checkObjectKey } from './blob-store.js';

const uploadIdPattern = /^[A-Za-z0-9_-]{8,128}$/;
const readHighWaterMark = 1024 * 1024;
const writeBatchBytes = 1024 * 1024;
const maxWritesInFlight = 3;
/** Written bytes after which an upload's file is flushed in the background (see startWriteback). */
const writebackBytes = 64 * 1024 * 1024;

export class FsBlobStore implements BlobStore {
  readonly uploads: UploadStore;
  readonly objects: ObjectArea;
  private readonly knownDirs = new Set<string>();

  constructor(readonly root: string) {
    this.uploads = new FsUploadStore(this, path.join(root, '_uploads'));
    this.objects = new FsObjectArea(path.join(root, '_objects'));
  }

  /** Path of a digest's file; digests are validated by the caller, checked again here. */
  blobPath(digest: string): string {
    const match = /^(sha256|sha512):([a-f0-9]{64,128})$/.exec(digest);
    if (!match) throw new Error(`not a storable digest: ${digest}`);
    return path.join(this.root, match[1]!, match[2]!.slice(0, 2), match[2]!);
  }

  async stat(digest: string): Promise<BlobStat | null> {
    try {
      const info = await stat(this.blobPath(digest));
      return { size: info.size };
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async get(digest: string, range?: ByteRange): Promise<Readable> {
    let handle;
    try {
      handle = await open(this.blobPath(digest), fsConstants.O_RDONLY);
    } catch (error) {
      if (isMissing(error)) throw new BlobNotFoundError(digest);
      throw error;
    }
    return handle.createReadStream({ start: range?.start, end: range?.end, highWaterMark: readHighWaterMark, autoClose: true });
  }

  async openReader(digest: string): Promise<BlobReader> {
    let handle: FileHandle;
    try {
      handle = await open(this.blobPath(digest), fsConstants.O_RDONLY);
    } catch (error) {
      if (isMissing(error)) throw new BlobNotFoundError(digest);
      throw error;
    }
    try {
      const { size } = await handle.stat();
      return {
        size,
        read: async (buffer, length, position) => (await handle.read(buffer, 0, length, position)).bytesRead,
        close: () => handle.close(),
      };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async delete(digest: string): Promise<boolean> {
    try {
      await unlink(this.blobPath(digest));
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  async *list(): AsyncIterable<string> {
    for (const algorithm of ['sha256', 'sha512']) {
      for (const prefix of await readdirOrEmpty(path.join(this.root, algorithm))) {
        for (const name of await readdirOrEmpty(path.join(this.root, algorithm, prefix))) {
          if (!name.startsWith('.')) yield `${algorithm}:${name}`;
        }
      }
    }
  }

  /** Moves a finished, flushed file into place under its digest, durably. */
  async publish(file: string, digest: string): Promise<void> {
    const target = this.blobPath(digest);
    const dir = path.dirname(target);
    if (!this.knownDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      await fsyncPath(path.dirname(dir));
      this.knownDirs.add(dir);
    }
    await rename(file, target);
    await fsyncPath(dir);
  }
}

/** `ObjectArea` as files: written to a temp name and renamed, so a reader sees old or new, never half. */
class FsObjectArea implements ObjectArea {
  constructor(private readonly dir: string) {}

  private file(key: string): string {
    return path.join(this.dir, ...checkObjectKey(key).split('/'));
  }

  async put(key: string, body: Buffer): Promise<void> {
    const file = this.file(key);
    await mkdir(path.dirname(file), { recursive: true });
    const temp = `${path.dirname(file)}/.tmp-${randomBytes(6).toString('hex')}`;
    await writeFile(temp, body);
    await rename(temp, file);
  }

  async putStream(key: string, source: Readable): Promise<void> {
    const file = this.file(key);
    await mkdir(path.dirname(file), { recursive: true });
    const temp = `${path.dirname(file)}/.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await pipeline(source, createWriteStream(temp, { flags: 'wx' }));
      await rename(temp, file);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  async get(key: string): Promise<Buffer | null> {
    try {
      return await readFile(this.file(key));
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
  }

  async getStream(key: string): Promise<Readable | null> {
    let handle;
    try {
      handle = await open(this.file(key), fsConstants.O_RDONLY);
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
    return handle.createReadStream({ highWaterMark: readHighWaterMark, autoClose: true });
  }

  async *list(prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt: number }> {
    // Walk from the deepest folder the prefix names; filter the rest by name.
    const folder = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const base = folder ? path.join(this.dir, ...checkObjectKey(folder).split('/')) : this.dir;
    let entries;
    try {
      entries = await readdir(base, { recursive: true, withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return;
      throw error;
    }
    for (const entry of entries) {
      if (!entry.isFile() || entry.name.startsWith('.')) continue;
      const key = path.relative(this.dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/');
      if (!key.startsWith(prefix)) continue;
      const info = await stat(path.join(entry.parentPath, entry.name)).catch(() => undefined);
      if (info) yield { key, size: info.size, modifiedAt: info.mtimeMs };
    }
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) await rm(this.file(key), { force: true });
  }
}

class FsUploadStore implements UploadStore {
  private dirReady = false;
  /** Background flushes in flight, and bytes written since the last one, per session. */
  private readonly writeback = new Map<string, Promise<void>>();
  private readonly unflushed = new Map<string, number>();

  constructor(private readonly store: FsBlobStore, private readonly dir: string) {}

  private file(id: string): string {
    if (!uploadIdPattern.test(id)) throw new UploadNotFoundError(id);
    return path.join(this.dir, id);
  }

  async create(id: string): Promise<void> {
    if (!this.dirReady) {
      await mkdir(this.dir, { recursive: true });
      this.dirReady = true;
    }
    const handle = await open(this.file(id), 'wx');
    await handle.close();
  }

  async append(id: string, source: AsyncIterable<Buffer>, offset: number, observe?: (chunk: Buffer) => void): Promise<number> {
    let handle;
    try {
      handle = await open(this.file(id), 'r+');
    } catch (error) {
      if (isMissing(error)) throw new UploadNotFoundError(id);
      throw error;
    }
    try {
      const { size } = await handle.stat();
      if (size !== offset) throw new UploadOffsetError(id, offset, size);
      let position = size;
      // Chunks (about 64 KiB each off a socket) are gathered into ~1 MiB batches and written
      // with one positional writev each, at most four in flight: hashing (main thread) overlaps
      // with disk writes (thread pool) without many threads contending for the file's lock.
      const pending: Promise<unknown>[] = [];
      let batch: Buffer[] = [];
      let batchBytes = 0;
      const flush = (): void => {
        const expected = batchBytes;
        const write = handle.writev(batch, position).then(({ bytesWritten }) => {
          if (bytesWritten !== expected) throw new Error(`short write to upload ${id}: ${bytesWritten} of ${expected} bytes`);
        });
        write.catch(() => undefined); // observed when awaited below; never an unhandled rejection meanwhile
        pending.push(write);
        position += batchBytes;
        this.noteWritten(id, batchBytes);
        batch = [];
        batchBytes = 0;
      };
      try {
        for await (const chunk of source) {
          observe?.(chunk);
          batch.push(chunk);
          batchBytes += chunk.length;
          if (batchBytes >= writeBatchBytes || batch.length >= 1024) {
            flush();
            if (pending.length >= maxWritesInFlight) await pending.shift();
          }
        }
        if (batchBytes > 0) flush();
      } finally {
        // Also when the source failed (client gone): no write may outlive the file handle.
        const results = await Promise.allSettled(pending);
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      }
      return position;
    } finally {
      await handle.close();
    }
  }

  /**
   * The commit must make every byte durable; flushing as the upload goes, on a thread of its
   * own, overlaps that disk work with receiving instead of paying it all at the end (~0.8 s
   * per GiB here). Only an optimisation: commit still syncs, so errors here are ignored.
   */
  private noteWritten(id: string, bytes: number): void {
    const total = (this.unflushed.get(id) ?? 0) + bytes;
    if (total < writebackBytes || this.writeback.has(id)) {
      this.unflushed.set(id, total);
      return;
    }
    this.unflushed.set(id, 0);
    const file = this.file(id);
    const flush = (async () => {
      const handle = await open(file, fsConstants.O_RDONLY);
      try {
        await handle.datasync();
      } finally {
        await handle.close();
      }
    })().catch(() => undefined).finally(() => this.writeback.delete(id));
    this.writeback.set(id, flush);
  }

  async truncate(id: string, size: number): Promise<void> {
    try {
      await truncate(this.file(id), size);
    } catch (error) {
      if (isMissing(error)) throw new UploadNotFoundError(id);
      throw error;
    }
  }

  async size(id: string): Promise<number | null> {
    try {
      return (await stat(this.file(id))).size;
    } catch (error) {
      if (isMissing(error) || error instanceof UploadNotFoundError) return null;
      throw error;
    }
  }

  async read(id: string): Promise<Readable> {
    const file = this.file(id);
    if ((await this.size(id)) === null) throw new UploadNotFoundError(id);
    return createReadStream(file, { highWaterMark: readHighWaterMark });
  }

  async commit(id: string, digest: string): Promise<void> {
    const file = this.file(id);
    let handle;
    try {
      handle = await open(file, 'r+');
    } catch (error) {
      if (isMissing(error)) throw new UploadNotFoundError(id);
      throw error;
    }
    try {
      await this.writeback.get(id);
      this.unflushed.delete(id);
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await this.store.publish(file, digest);
  }

  async abort(id: string): Promise<void> {
    this.unflushed.delete(id);
    await rm(this.file(id), { force: true });
  }

  async *list(): AsyncIterable<{ id: string; modifiedAt: number }> {
    for (const name of await readdirOrEmpty(this.dir)) {
      try {
        const info = await stat(path.join(this.dir, name));
        yield { id: name, modifiedAt: info.mtimeMs };
      } catch (error) {
        if (!isMissing(error)) throw error;
      }
    }
  }
}

async function fsyncPath(target: string): Promise<void> {
  const handle = await open(target, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
}

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'ENOENT';
}
