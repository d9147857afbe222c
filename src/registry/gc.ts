/**
 * @module registry/gc
 * Online garbage collection: runs while the registry serves pushes and pulls.
 *
 * Alive: tagged manifests, children of alive indexes, referrers whose subject is alive, and
 * anything touched (pushed, mounted, referenced, checked) within the grace period. Dead
 * manifests go first, then repository links no manifest references, then blobs no repository
 * links, then the files of those blobs. Every delete re-checks its condition inside its own
 * transaction, and every writer that starts to reference something touches it in the same
 * transaction, so a concurrent push either sees the content kept or sees it gone and is told
 * so (MANIFEST_BLOB_UNKNOWN) — never a 201 over lost content.
 */
import { lockUsage, unlinked } from './namespace-usage.js';
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { UploadService } from './upload-service.js';

export interface GcOptions {
  db: Database;
  store: BlobStore;
  uploads: UploadService;
  gracePeriodMs: number;
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Metrics (main.ts): a run ended, with its report (undefined: it failed). */
  onRun?: (report: GcReport | undefined) => void;
}

export interface GcReport {
  manifestsDeleted: number;
  linksDeleted: number;
  blobsDeleted: number;
  bytesFreed: number;
  uploadsExpired: number;
  durationMs: number;
}

export async function collectGarbage(options: GcOptions, now = Date.now()): Promise<GcReport> {
  let report: GcReport | undefined;
  try {
    report = await collect(options, now);
    return report;
  } finally {
    options.onRun?.(report);
  }
}

async function collect(options: GcOptions, now: number): Promise<GcReport> {
  const started = Date.now();
  const cutoff = now - options.gracePeriodMs;
  const report: GcReport = { manifestsDeleted: 0, linksDeleted: 0, blobsDeleted: 0, bytesFreed: 0, uploadsExpired: 0, durationMs: 0 };
  const { db } = options;

  const repositories = (await db.kysely.selectFrom('repositories').select('name').execute()).map((r) => r.name);
  for (const repository of repositories) {
    report.manifestsDeleted += await collectManifests(db, repository, cutoff);
    report.linksDeleted += await collectLinks(db, repository, cutoff);
  }
  const blobs = await collectBlobs(options, cutoff);
  report.blobsDeleted = blobs.count;
  report.bytesFreed = blobs.bytes;
  report.uploadsExpired = await options.uploads.expire(now);
  report.durationMs = Date.now() - started;
  options.logger?.info({ gc: report }, 'garbage collection finished');
  return report;
}

/** Deletes unreachable manifests of one repository; repeats while a deletion exposes more. */
async function collectManifests(db: Database, repository: string, cutoff: number): Promise<number> {
  let deleted = 0;
  for (;;) {
    const manifests = await db.kysely.selectFrom('manifests').select(['digest', 'subject', 'touched_at']).where('repository', '=', repository).execute();
    if (manifests.length === 0) return deleted;
    const tags = await db.kysely.selectFrom('tags').select('manifest_digest').where('repository', '=', repository).execute();
    const children = await db.kysely.selectFrom('manifest_references').select(['manifest_digest', 'target_digest'])
      .where('repository', '=', repository).where('kind', '=', 'manifest').execute();
    const alive = reachable(manifests, tags.map((t) => t.manifest_digest), children, cutoff);
    const dead = manifests.filter((m) => !alive.has(m.digest));
    let progress = 0;
    for (const manifest of dead) {
      const removed = await db.write(async (trx) => {
        // Re-checked under the transaction: a concurrent tag or index PUT touched the row.
        const result = await trx.deleteFrom('manifests')
          .where('repository', '=', repository).where('digest', '=', manifest.digest).where('touched_at', '<', cutoff)
          .where(({ not, exists, selectFrom }) => not(exists(selectFrom('tags').select('name').where('tags.repository', '=', repository).where('tags.manifest_digest', '=', manifest.digest))))
          // …or its subject came back to life since the snapshot (re-pushed with a tag).
          .where(({ not, exists, selectFrom }) => not(exists(selectFrom('manifests as s').select('s.digest')
            .where('s.repository', '=', repository).where('s.digest', '=', manifest.subject ?? '')
            .where((inner) => inner.or([
              inner('s.touched_at', '>=', cutoff),
              inner.exists(inner.selectFrom('tags as st').select('st.name').where('st.repository', '=', repository).whereRef('st.manifest_digest', '=', 's.digest')),
            ])))))
          .executeTakeFirst();
        if (Number(result.numDeletedRows) === 0) return false;
        await trx.deleteFrom('manifest_references').where('repository', '=', repository).where('manifest_digest', '=', manifest.digest).execute();
        return true;
      });
      if (removed) progress++;
    }
    deleted += progress;
    if (progress === 0) return deleted;
  }
}

function reachable(
  manifests: Array<{ digest: string; subject: string | null; touched_at: number }>,
  tagged: string[],
  children: Array<{ manifest_digest: string; target_digest: string }>,
  cutoff: number,
): Set<string> {
  const alive = new Set<string>();
  const queue: string[] = [];
  const mark = (digest: string) => {
    if (!alive.has(digest)) {
      alive.add(digest);
      queue.push(digest);
    }
  };
  for (const digest of tagged) mark(digest);
  for (const m of manifests) if (m.touched_at >= cutoff) mark(m.digest);
  const childrenOf = new Map<string, string[]>();
  for (const edge of children) childrenOf.set(edge.manifest_digest, [...(childrenOf.get(edge.manifest_digest) ?? []), edge.target_digest]);
  const referrersOf = new Map<string, string[]>();
  for (const m of manifests) if (m.subject) referrersOf.set(m.subject, [...(referrersOf.get(m.subject) ?? []), m.digest]);
  while (queue.length > 0) {
    const digest = queue.pop()!;
    for (const child of childrenOf.get(digest) ?? []) mark(child);
    for (const referrer of referrersOf.get(digest) ?? []) mark(referrer);
  }
  return alive;
}

/** Unlinks blobs from a repository when no manifest there references them any more. */
async function collectLinks(db: Database, repository: string, cutoff: number): Promise<number> {
  const candidates = await db.kysely.selectFrom('repository_blobs as l').select('l.digest')
    .where('l.repository', '=', repository).where('l.touched_at', '<', cutoff)
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('manifest_references as r').select('r.target_digest')
      .whereRef('r.repository', '=', 'l.repository').whereRef('r.target_digest', '=', 'l.digest'))))
    .execute();
  let deleted = 0;
  for (const { digest } of candidates) {
    deleted += await db.write(async (trx) => {
      await lockUsage(db, trx, repository);
      const result = await trx.deleteFrom('repository_blobs')
        .where('repository', '=', repository).where('digest', '=', digest).where('touched_at', '<', cutoff)
        .where(({ not, exists, selectFrom }) => not(exists(selectFrom('manifest_references').select('target_digest')
          .where('manifest_references.repository', '=', repository).where('manifest_references.target_digest', '=', digest))))
        .executeTakeFirst();
      if (Number(result.numDeletedRows) > 0) await unlinked(trx, repository, digest);
      return Number(result.numDeletedRows);
    });
  }
  return deleted;
}

/**
 * Deletes blobs no repository links: mark (deleting = 1, under the same re-checked condition)
 * → remove the file → drop the row. A writer that finds the mark waits for the row to go.
 */
async function collectBlobs(options: GcOptions, cutoff: number): Promise<{ count: number; bytes: number }> {
  const { db, store } = options;
  const candidates = await db.kysely.selectFrom('blobs as b').select(['b.digest', 'b.size'])
    .where('b.touched_at', '<', cutoff)
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('repository_blobs as l').select('l.digest').whereRef('l.digest', '=', 'b.digest'))))
    .execute();
  let count = 0;
  let bytes = 0;
  for (const blob of candidates) {
    const marked = await db.write(async (trx) => {
      const result = await trx.updateTable('blobs').set({ deleting: 1, touched_at: Date.now() })
        .where('digest', '=', blob.digest).where('touched_at', '<', cutoff)
        .where(({ not, exists, selectFrom }) => not(exists(selectFrom('repository_blobs').select('digest').where('repository_blobs.digest', '=', blob.digest))))
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    });
    if (!marked) continue;
    try {
      await store.delete(blob.digest);
    } finally {
      await db.write((trx) => trx.deleteFrom('blobs').where('digest', '=', blob.digest).where('deleting', '=', 1).execute());
    }
    count++;
    bytes += blob.size;
  }
  return { count, bytes };
}

/**
 * Runs GC every `intervalMs` in the server; never two at once. With `when`, a tick runs only
 * while it answers true (several replicas: only the holder of the GC lease collects).
 */
export function scheduleGarbageCollection(options: GcOptions, intervalMs: number, when?: () => boolean): { stop(): Promise<void> } {
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (running || (when && !when())) return;
    running = collectGarbage(options)
      .catch((error) => options.logger?.error({ err: error }, 'garbage collection failed'))
      .finally(() => { running = undefined; });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
