/**
 * @module storage/blob-store
 * The `BlobStore` contract: content-addressed bytes that every part stores through — registry
 * layers, build logs, component archives. Drivers: `fs` (embedded default) and `s3`
 * (scale-out, same contract; `s3-blob-store.ts`). A driver knows nothing of repositories or auth: it stores bytes
 * under digests and keeps upload sessions until they are committed or aborted.
 */
import { SlipwayError } from '../http/error-catalog.js';
import type { Readable } from 'node:stream';

/** Inclusive byte range, as HTTP writes it. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface BlobStat {
  size: number;
}

/** Positional reads of one blob into buffers the caller owns and reuses. */
export interface BlobReader {
  readonly size: number;
  /** Reads up to `length` bytes at `position` into `buffer`; returns how many were read (0 at the end). */
  read(buffer: Buffer, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface BlobStore {
  stat(digest: string): Promise<BlobStat | null>;
  /**
   * Optional fast path for large reads: no allocation per chunk (on this host, 1 GiB served
   * through fresh 1 MiB Buffers costs ~1.5x the CPU of reusing two). Drivers that cannot
   * read positionally (object stores) leave it out and `get` is used.
   */
  openReader?(digest: string): Promise<BlobReader>;
  /** Opens the blob for reading; throws `BlobNotFoundError` before any byte is sent if absent. */
  get(digest: string, range?: ByteRange): Promise<Readable>;
  /** Deletes the blob; false when it was not there. */
  delete(digest: string): Promise<boolean>;
  /** Every stored digest, in no particular order. */
  list(): AsyncIterable<string>;
  /**
   * Optional: a URL the client may fetch the blob from directly (a presigned object-store GET,
   * valid briefly), so the bytes bypass this server; undefined when the driver serves them
   * itself (fs, or s3 with `redirect` off). The caller has checked access and existence.
   */
  redirectUrl?(digest: string): Promise<string | undefined>;
  /** Optional: small named objects beside the blobs (log chunks); see `ObjectArea`. */
  readonly objects?: ObjectArea;
  readonly uploads: UploadStore;
  /** Releases connections (object-store clients); the store is not used afterwards. */
  close?(): Promise<void>;
}

/**
 * Named objects, written whole and never appended (as S3 objects are), e.g. log chunks under
 * `logs/...`. Keys are `/`-separated segments of `[A-Za-z0-9._-]`; a written object is readable
 * by every process sharing the store. Not content-addressed: GC and fsck ignore them.
 */
export interface ObjectArea {
  put(key: string, body: Buffer): Promise<void>;
  /**
   * Writes the object from a stream of any size (a packed build context). Atomic like `put`:
   * readable only once the whole stream is stored; a source that fails leaves no object under
   * `key` (and no temporary files), and the promise rejects with the source's error.
   */
  putStream(key: string, source: Readable): Promise<void>;
  /** The object's bytes, or null when absent. */
  get(key: string): Promise<Buffer | null>;
  /** The object as a stream, or null when absent (decided before any byte is read). */
  getStream(key: string): Promise<Readable | null>;
  /** Objects whose key starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt: number }>;
  /** Deletes the keys (absent ones are no error). */
  delete(keys: string[]): Promise<void>;
}

const objectKeyPattern = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** Throws on keys outside the `ObjectArea` grammar (no `..`, no empty segments). */
export function checkObjectKey(key: string): string {
  if (!objectKeyPattern.test(key) || key.split('/').some((segment) => segment === '.' || segment === '..')) throw new Error(`invalid object key ${key}`);
  return key;
}

/**
 * Resumable upload sessions. Content is invisible to `get` until `commit`: a commit makes the
 * bytes durable (flushed to stable storage) and then publishes them atomically under the digest,
 * so a crash at any point leaves either the whole verified blob or nothing.
 */
export interface UploadStore {
  create(id: string): Promise<void>;
  /**
   * Appends `source` at `offset`, which must equal the session's current size (else
   * `UploadOffsetError`). `observe` sees every chunk in order (the caller hashes with it).
   * Returns the new size.
   */
  append(id: string, source: AsyncIterable<Buffer>, offset: number, observe?: (chunk: Buffer) => void): Promise<number>;
  /**
   * Drops bytes past `size`: what an append interrupted by a crash may have left beyond the
   * last acknowledged chunk (possibly with holes, as writes land out of order).
   */
  truncate(id: string, size: number): Promise<void>;
  /** Current size, or null when the session does not exist. */
  size(id: string): Promise<number | null>;
  /** Reads the session's bytes so far (to re-hash after a restart). */
  read(id: string): Promise<Readable>;
  /** Publishes the session's bytes as `digest`; the caller has verified them. */
  commit(id: string, digest: string): Promise<void>;
  abort(id: string): Promise<void>;
  /** Every session with its last modification time (ms), for expiry. */
  list(): AsyncIterable<{ id: string; modifiedAt: number }>;
}

export class BlobNotFoundError extends SlipwayError {
  override name = 'BlobNotFoundError';
  constructor(readonly digest: string) {
    super('STORAGE_NOT_FOUND', `blob ${digest} not found`);
  }
}

export class UploadNotFoundError extends SlipwayError {
  override name = 'UploadNotFoundError';
  constructor(readonly id: string) {
    super('STORAGE_NOT_FOUND', `upload ${id} not found`);
  }
}

export class UploadOffsetError extends SlipwayError {
  override name = 'UploadOffsetError';
  constructor(readonly id: string, readonly expected: number, readonly actual: number) {
    super('UPLOAD_OFFSET_MISMATCH', `upload ${id} is at offset ${actual}, not ${expected}`);
  }
}
