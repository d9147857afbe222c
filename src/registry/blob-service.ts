/**
 * @module registry/blob-service
 * Blobs as the registry sees them: global content rows, per-repository links (a blob is
 * readable in a repository only once it was pushed or mounted there), reads, mounts, deletes.
 *
 * The GC race lives here: a blob is "touched" whenever a client pushes it, mounts it or checks
 * it with HEAD/GET, and GC only collects links and blobs untouched for the grace period. A new
 * copy of a blob that GC is deleting waits for GC to finish and is then stored afresh.
 */
import type { Readable } from 'node:stream';
import type { Kysely } from 'kysely';
import type { Database } from '../db/db.js';
import type { Tables } from '../db/schema.js';
import { BlobNotFoundError, type BlobStore, type ByteRange } from '../storage/blob-store.js';
import { RegistryError } from './errors.js';
import { ensureRepository } from './repositories.js';
import { ByteLru } from './byte-lru.js';
import { heldInNamespace, linked, lockUsage, unlinked } from './namespace-usage.js';
import { namespaceOf } from '../auth/access.js';
import type { ReaderBody } from './send-blob.js';

export interface BlobServiceOptions {
  db: Database;
  store: BlobStore;
  gracePeriodMs: number;
  deleteEnabled: boolean;
  /** Blobs up to this size are kept in memory once read (content is immutable). */
  smallBlobBytes?: number;
  smallBlobCacheBytes?: number;
}

/** A GC that died holding a blob in `deleting` is taken over after this long. */
const staleDeletionMs = 30_000;

export class BlobService {
  private readonly db: Database;
  private readonly store: BlobStore;
  private readonly cache: ByteLru;
  private readonly smallBlobBytes: number;

  constructor(private readonly options: BlobServiceOptions) {
    this.db = options.db;
    this.store = options.store;
    this.smallBlobBytes = options.smallBlobBytes ?? 256 * 1024;
    this.cache = new ByteLru(options.smallBlobCacheBytes ?? 64 * 1024 * 1024);
  }

  /** Size of a blob linked to the repository, or null. Counts as a touch for GC. */
  async stat(repository: string, digest: string): Promise<{ size: number } | null> {
    const row = await this.db.kysely.selectFrom('repository_blobs as l')
      .innerJoin('blobs as b', 'b.digest', 'l.digest')
      .select(['b.size', 'l.touched_at', 'b.touched_at as blob_touched_at'])
      .where('l.repository', '=', repository).where('l.digest', '=', digest).where('b.deleting', '=', 0)
      .executeTakeFirst();
    if (!row) return null;
    // GC may have unlinked the blob since the select: only a touch that landed proves it is still here.
    if (!(await this.touchIfStale(repository, digest, Math.min(row.touched_at, row.blob_touched_at)))) return null;
    return { size: row.size };
  }

  /**
   * Where a client may fetch a linked blob directly (the store's presigned URL), or undefined to
   * serve it here: when the store does not redirect, and for small blobs (served from memory,
   * cheaper than the client's extra round trip). Counts as a touch for GC, like `stat`.
   */
  async redirectUrl(repository: string, digest: string): Promise<string | undefined> {
    const location = await this.store.redirectUrl?.(digest);
    if (!location) return undefined;
    const found = await this.stat(repository, digest);
    if (!found) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest });
    return found.size > this.smallBlobBytes ? location : undefined;
  }

  /** Opens a linked blob; small blobs come from memory after the first read. */
  async open(repository: string, digest: string, range?: ByteRange): Promise<{ size: number; body: Readable | Buffer | ReaderBody }> {
    const found = await this.stat(repository, digest);
    if (!found) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest });
    if (found.size <= this.smallBlobBytes) {
      let bytes = this.cache.get(digest);
      if (!bytes) {
        bytes = await this.readWhole(digest);
        this.cache.set(digest, bytes);
      }
      return { size: found.size, body: range ? bytes.subarray(range.start, range.end + 1) : bytes };
    }
    try {
      if (this.store.openReader) {
        const reader = await this.store.openReader(digest);
        const start = range?.start ?? 0;
        return { size: found.size, body: { reader, start, length: (range ? range.end + 1 : reader.size) - start } };
      }
      return { size: found.size, body: await this.store.get(digest, range) };
    } catch (error) {
      if (error instanceof BlobNotFoundError) throw new RegistryError('BLOB_UNKNOWN', 'blob content is missing from storage', { digest });
      throw error;
    }
  }

  private async readWhole(digest: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of await this.store.get(digest)) chunks.push(chunk as Buffer);
    } catch (error) {
      if (error instanceof BlobNotFoundError) throw new RegistryError('BLOB_UNKNOWN', 'blob content is missing from storage', { digest });
      throw error;
    }
    return Buffer.concat(chunks);
  }

  /**
   * Refreshes touched_at when it is older than an eighth of the grace period (not on every
   * read: GC only collects what is untouched for the whole grace period, so the slack is safe).
   * False when the link or blob vanished meanwhile.
   */
  private async touchIfStale(repository: string, digest: string, touchedAt: number): Promise<boolean> {
    const now = Date.now();
    if (now - touchedAt < this.options.gracePeriodMs / 8) return true;
    return this.db.write(async (trx) => {
      const link = await trx.updateTable('repository_blobs').set({ touched_at: now }).where('repository', '=', repository).where('digest', '=', digest).executeTakeFirst();
      if (Number(link.numUpdatedRows) === 0) return false;
      const blob = await trx.updateTable('blobs').set({ touched_at: now }).where('digest', '=', digest).where('deleting', '=', 0).executeTakeFirst();
      return Number(blob.numUpdatedRows) > 0;
    });
  }

  /**
   * Records verified content as a blob of `repository`. `publish` makes the bytes durable and
   * visible under the digest; `discard` drops them when an identical blob is already stored.
   * Order matters for crash safety: claim the row (touched, so GC keeps off) → publish the
   * file → link it to the repository. A crash between steps leaves an unlinked row that GC
   * removes, never a link without content.
   */
  async adopt(repository: string, digest: string, size: number, publish: () => Promise<void>, discard: () => Promise<void>, inLinkTransaction?: (trx: Kysely<Tables>) => Promise<void>): Promise<void> {
    await this.claim(digest, size);
    if (await this.store.stat(digest)) await discard();
    else await publish();
    await this.db.write(async (trx) => {
      await lockUsage(this.db, trx, repository);
      await ensureRepository(trx, repository);
      await linkBlob(trx, repository, digest);
      await inLinkTransaction?.(trx);
    });
  }

  private async claim(digest: string, size: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.db.write(async (trx) => {
        const now = Date.now();
        let query = trx.selectFrom('blobs').select(['deleting', 'touched_at']).where('digest', '=', digest);
        if (this.db.dialect === 'postgres') query = query.forUpdate();
        const row = await query.executeTakeFirst();
        if (row && row.deleting) {
          if (now - row.touched_at < staleDeletionMs) return 'wait' as const;
          await trx.deleteFrom('blobs').where('digest', '=', digest).execute();
        } else if (row) {
          await trx.updateTable('blobs').set({ touched_at: now }).where('digest', '=', digest).execute();
          return 'claimed' as const;
        }
        // Two first pushes of one blob may race to insert (PostgreSQL's row lock cannot cover a
        // row that does not exist yet): the loser goes round again and finds the winner's row.
        const inserted = await trx.insertInto('blobs').values({ digest, size, created_at: now, touched_at: now, deleting: 0 })
          .onConflict((c) => c.column('digest').doNothing()).executeTakeFirst();
        return Number(inserted.numInsertedOrUpdatedRows ?? 0) > 0 ? 'claimed' as const : 'again' as const;
      });
      if (outcome === 'claimed') return;
      if (outcome === 'again') continue;
      if (attempt > 4000) throw new RegistryError('UNAVAILABLE', 'blob is being garbage-collected; retry');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Cross-repository mount: links a blob readable in `from` into `repository`. False when it cannot. */
  async mount(repository: string, from: string, digest: string): Promise<boolean> {
    return this.db.write(async (trx) => {
      await lockUsage(this.db, trx, repository);
      const now = Date.now();
      const source = await trx.updateTable('repository_blobs').set({ touched_at: now })
        .where('repository', '=', from).where('digest', '=', digest).executeTakeFirst();
      if (Number(source.numUpdatedRows) === 0) return false;
      const blob = await trx.updateTable('blobs').set({ touched_at: now }).where('digest', '=', digest).where('deleting', '=', 0).executeTakeFirst();
      if (Number(blob.numUpdatedRows) === 0) return false;
      await ensureRepository(trx, repository);
      await linkBlob(trx, repository, digest);
      return true;
    });
  }

  /** Unlinks a blob from a repository; the content itself goes when GC finds it unreferenced. */
  async delete(repository: string, digest: string): Promise<void> {
    if (!this.options.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletes are disabled on this registry');
    const deleted = await this.db.write(async (trx) => {
      await lockUsage(this.db, trx, repository);
      const result = await trx.deleteFrom('repository_blobs').where('repository', '=', repository).where('digest', '=', digest).executeTakeFirst();
      if (Number(result.numDeletedRows) > 0) await unlinked(trx, repository, digest);
      return Number(result.numDeletedRows);
    });
    if (deleted === 0) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest });
  }
}

/** Links `digest` into `repository`; the caller holds the namespace's usage lock (registry/namespace-usage.ts). */
export async function linkBlob(trx: Kysely<Tables>, repository: string, digest: string): Promise<void> {
  const now = Date.now();
  const wasHeld = await heldInNamespace(trx, namespaceOf(repository), digest);
  await trx.insertInto('repository_blobs').values({ repository, digest, touched_at: now })
    .onConflict((c) => c.columns(['repository', 'digest']).doUpdateSet({ touched_at: now }))
    .execute();
  await linked(trx, repository, digest, wasHeld);
}
