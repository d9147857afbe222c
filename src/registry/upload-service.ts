/**
 * @module registry/upload-service
 * Blob upload sessions: monolithic (POST+PUT or a single POST), chunked (PATCH …), status,
 * cancel. A session's state is its `uploads` row (acknowledged size) and its bytes in the blob
 * store, so any replica continues a session another one started. The running hash lives in
 * memory as a shortcut (completion costs no second read); a replica that did not see every
 * chunk hashes the stored bytes again instead. Content
 * is verified against the client's digest before it becomes a blob; a mismatch deletes the
 * session and leaves nothing behind.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Database } from '../db/db.js';
import { UploadNotFoundError, UploadOffsetError, type BlobStore } from '../storage/blob-store.js';
import type { BlobService } from './blob-service.js';
import { RegistryError } from './errors.js';
import { checkDigest, type DigestAlgorithm } from './grammar.js';

export interface UploadServiceOptions {
  db: Database;
  store: BlobStore;
  blobs: BlobService;
  /** Sessions untouched for this long are removed by `expire()`. */
  expiryMs: number;
  /** Namespace quotas (registry/policy-service.ts); a refusal removes the session. */
  admission?: UploadAdmission;
  /** Refuses pushes into pull-through namespaces (registry/proxy-settings.ts), in process too. */
  writeGuard?: { refuseWrite(repository: string): Promise<void> };
  /** Metrics (main.ts): bytes a write added to a session. */
  onBytesReceived?: (bytes: number) => void;
}

/** Throws (DENIED) when a namespace may not take a new repository, or `size` more bytes of a blob. */
export interface UploadAdmission {
  admitRepository(repository: string): Promise<void>;
  /**
   * `digest`, when known: a blob the namespace holds already costs nothing. `uploadId`: the
   * admitted bytes stay reserved for that upload until its row is deleted (commit or removal).
   */
  admitBytes(repository: string, size: number, digest?: string, uploadId?: string): Promise<void>;
}

/** `Content-Range: <start>-<end>` of a PATCH (inclusive). */
export interface ChunkRange {
  start: number;
  end: number;
}

interface Session {
  repository: string;
  algorithm: DigestAlgorithm;
  /** Acknowledged bytes. */
  size: number;
}

interface HashState {
  algorithm: DigestAlgorithm;
  hash: Hash;
  offset: number;
}

export class UploadService {
  private readonly hashes = new Map<string, HashState>();
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(private readonly options: UploadServiceOptions) {}

  async start(repository: string, algorithm: DigestAlgorithm = 'sha256'): Promise<string> {
    await this.options.writeGuard?.refuseWrite(repository);
    await this.options.admission?.admitRepository(repository);
    const id = randomBytes(16).toString('hex');
    const now = Date.now();
    await this.options.store.uploads.create(id);
    await this.options.db.write((trx) => trx.insertInto('uploads').values({ id, repository, algorithm, created_at: now, updated_at: now }).execute());
    this.hashes.set(id, { algorithm, hash: createHash(algorithm), offset: 0 });
    return id;
  }

  /** Bytes of the session acknowledged so far (what a client resumes from). */
  async status(repository: string, id: string): Promise<number> {
    const session = await this.session(repository, id);
    const stored = await this.options.store.uploads.size(id);
    if (stored === null) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { id });
    return Math.min(session.size, stored);
  }

  /** Appends a chunk; an out-of-order `range` is RANGE_INVALID (416) carrying the current `Range`. */
  async append(repository: string, id: string, body: Readable, range?: ChunkRange, contentLength?: number): Promise<number> {
    return this.locked(id, async () => {
      const session = await this.session(repository, id);
      return this.write(id, session, body, range, contentLength);
    });
  }

  /** Appends the last chunk (if any), verifies the digest, and stores the blob. */
  async complete(repository: string, id: string, digest: string | undefined, body?: Readable, range?: ChunkRange, contentLength?: number): Promise<string> {
    return this.locked(id, async () => {
      const session = await this.session(repository, id);
      const expected = parseDigestParameter(digest);
      const size = body && (range || (contentLength ?? 1) > 0)
        ? await this.write(id, session, body, range, contentLength, digest)
        : await this.acknowledged(id, session.size);
      const actual = await this.digestOf(id, expected.algorithm, size);
      if (actual !== digest) {
        await this.remove(id);
        throw new RegistryError('DIGEST_INVALID', `provided digest ${digest} does not match the uploaded content (${actual})`, { digest });
      }
      await this.admitted(id, () => this.options.admission?.admitBytes(repository, size, actual, id));
      // The session row (and with it the quota reservation) goes in the transaction that links the blob.
      await this.options.blobs.adopt(repository, actual, size,
        () => this.options.store.uploads.commit(id, actual),
        () => this.options.store.uploads.abort(id),
        async (trx) => { await trx.deleteFrom('uploads').where('id', '=', id).execute(); });
      await this.forget(id);
      return actual;
    });
  }

  /** A whole blob in one request (single POST, or POST then PUT). Nothing remains on failure. */
  async monolithic(repository: string, digest: string, body: Readable, contentLength?: number): Promise<string> {
    const expected = parseDigestParameter(digest);
    const id = await this.start(repository, expected.algorithm);
    try {
      return await this.complete(repository, id, digest, body, undefined, contentLength ?? 0);
    } catch (error) {
      await this.remove(id).catch(() => undefined);
      throw error;
    }
  }

  async cancel(repository: string, id: string): Promise<void> {
    await this.locked(id, async () => {
      await this.session(repository, id);
      await this.remove(id);
    });
  }

  /** Removes sessions untouched for the expiry period (and stray files with no session row). */
  async expire(now = Date.now()): Promise<number> {
    const cutoff = now - this.options.expiryMs;
    const stale = await this.options.db.kysely.selectFrom('uploads').select('id').where('updated_at', '<', cutoff).execute();
    for (const { id } of stale) await this.locked(id, () => this.remove(id));
    let strays = 0;
    for await (const file of this.options.store.uploads.list()) {
      if (file.modifiedAt >= cutoff) continue;
      const row = await this.options.db.kysely.selectFrom('uploads').select('id').where('id', '=', file.id).executeTakeFirst();
      if (!row) {
        await this.options.store.uploads.abort(file.id);
        strays++;
      }
    }
    return stale.length + strays;
  }

  /**
   * The acknowledged size, with storage brought in line: bytes past it (a PATCH cut short by a
   * crash, possibly with holes) are dropped, so a resumed upload hashes only what the client
   * was told was stored.
   */
  private async acknowledged(id: string, recorded: number): Promise<number> {
    const uploads = this.options.store.uploads;
    const stored = await uploads.size(id);
    if (stored === null) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { id });
    if (stored > recorded) {
      this.hashes.delete(id);
      await uploads.truncate(id, recorded);
    }
    // Fewer bytes than recorded only after losing page cache (power loss): resume from what is there.
    return Math.min(stored, recorded);
  }

  /** Runs a quota check; a refusal removes the session (and its stored bytes) first. */
  private async admitted(id: string, check: () => Promise<void> | undefined): Promise<void> {
    try {
      await check();
    } catch (error) {
      await this.remove(id);
      throw error;
    }
  }

  private async write(id: string, session: Session, body: Readable, range?: ChunkRange, contentLength?: number, claimedDigest?: string): Promise<number> {
    const uploads = this.options.store.uploads;
    const { algorithm } = session;
    const current = await this.acknowledged(id, session.size);
    if (range) {
      if (range.start !== current || range.end < range.start - 1) {
        body.resume();
        throw rangeError(current, `chunk starts at ${range.start}, the upload is at ${current}`);
      }
      if (contentLength !== undefined && contentLength !== range.end - range.start + 1) {
        body.resume();
        throw rangeError(current, `Content-Length ${contentLength} does not match Content-Range ${range.start}-${range.end}`);
      }
    }
    if (this.options.admission && contentLength !== undefined && contentLength > 0) {
      // Refused before a byte is stored when the length is known (the digest is only a claim
      // here; the commit checks the real one).
      await this.admitted(id, () => this.options.admission!.admitBytes(session.repository, current + contentLength, claimedDigest, id))
        .catch((error: unknown) => { body.resume(); throw error; });
    }
    let state = this.hashes.get(id);
    if (!state || state.offset !== current || state.algorithm !== algorithm) {
      // Lost or out of step (restart, another replica): re-hash from storage at completion.
      this.hashes.delete(id);
      state = undefined;
    }
    const hashing = state;
    try {
      const size = await uploads.append(id, body, current, hashing ? (chunk) => hashing.hash.update(chunk) : undefined);
      if (hashing) hashing.offset = size;
      if (size > current) this.options.onBytesReceived?.(size - current);
      // Recorded before the 202: after a crash, status and resume start from here. Only from
      // the offset this append started at: `locked` serialises one process, this check the
      // replicas (a racing append to the same session on another replica loses with a 416).
      const recorded = await this.options.db.write((trx) => trx.updateTable('uploads').set({ size, updated_at: Date.now() })
        .where('id', '=', id).where('size', '=', session.size).executeTakeFirst());
      if (Number(recorded.numUpdatedRows) !== 1) {
        this.hashes.delete(id);
        const now = await this.options.db.kysely.selectFrom('uploads').select('size').where('id', '=', id).executeTakeFirst();
        if (!now) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { id });
        throw rangeError(now.size, 'the upload was changed concurrently (by another replica)');
      }
      return size;
    } catch (error) {
      this.hashes.delete(id);
      if (error instanceof UploadOffsetError) throw rangeError(error.actual, error.message);
      if (error instanceof UploadNotFoundError) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { id });
      throw error;
    }
  }

  private async digestOf(id: string, algorithm: DigestAlgorithm, size: number): Promise<string> {
    const state = this.hashes.get(id);
    if (state && state.algorithm === algorithm && state.offset === size) {
      this.hashes.delete(id);
      return `${algorithm}:${state.hash.digest('hex')}`;
    }
    const hash = createHash(algorithm);
    for await (const chunk of await this.options.store.uploads.read(id)) hash.update(chunk as Buffer);
    return `${algorithm}:${hash.digest('hex')}`;
  }

  private async session(repository: string, id: string): Promise<Session> {
    const row = await this.options.db.kysely.selectFrom('uploads').select(['repository', 'algorithm', 'size']).where('id', '=', id).executeTakeFirst();
    if (!row || row.repository !== repository) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { id });
    return { repository: row.repository, algorithm: row.algorithm as DigestAlgorithm, size: row.size };
  }

  private async remove(id: string): Promise<void> {
    await this.options.store.uploads.abort(id);
    await this.forget(id);
  }

  private async forget(id: string): Promise<void> {
    this.hashes.delete(id);
    await this.options.db.write((trx) => trx.deleteFrom('uploads').where('id', '=', id).execute());
  }

  /** Serialises operations on one session within this process. */
  private async locked<T>(id: string, run: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(run);
    this.locks.set(id, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(id) === next) this.locks.delete(id);
    }
  }
}

function rangeError(size: number, message: string): RegistryError {
  return new RegistryError('RANGE_INVALID', message, { size }).withHeaders({ Range: `0-${Math.max(size - 1, 0)}` });
}

/** The `digest` query parameter of a completing PUT or single POST. */
export function parseDigestParameter(digest: string | undefined): { algorithm: DigestAlgorithm } {
  if (!digest) throw new RegistryError('DIGEST_INVALID', 'the digest query parameter is required');
  const check = checkDigest(digest);
  if (!check.ok) {
    throw new RegistryError('DIGEST_INVALID', check.reason === 'unsupported' ? `unsupported digest algorithm in ${digest}` : `invalid digest ${digest}`, { digest });
  }
  return { algorithm: check.algorithm };
}
