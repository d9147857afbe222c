/**
 * @module registry/namespace-usage
 * A namespace's distinct blob bytes (what `quota.maxBytes` limits), kept in `registry_usage` so
 * that a quota check reads one row instead of summing the namespace's links on every upload
 * request. The contract for every write that adds or removes a blob link (upload commit, mount,
 * pull-through caching, blob DELETE, GC):
 *
 *   lockUsage (first, before any row lock) → the link write → linked / unlinked
 *
 * `lockUsage` is the namespace's PostgreSQL advisory lock (SQLite write transactions are
 * serialised already), so quota admissions (registry/policy-service.ts), which take it too,
 * see every committed change and no half-made one. A namespace without a row is summed once,
 * under the lock, and kept from then on.
 */
import type { Kysely } from 'kysely';
import { namespaceOf } from '../auth/access.js';
import type { Database } from '../db/db.js';
import type { Tables } from '../db/schema.js';

/** Takes the usage lock of `repository`'s namespace for the rest of the transaction. */
export function lockUsage(db: Pick<Database, 'lockKey'>, trx: Kysely<Tables>, repository: string): Promise<void> {
  return db.lockKey(trx, `registry-usage:${namespaceOf(repository)}`);
}

/** `<ns>/` matched with `substr` on both dialects (no LIKE escapes). */
export function namespacePrefix(namespace: string): { prefix: string; length: number } {
  const prefix = `${namespace}/`;
  return { prefix, length: prefix.length };
}

/** Whether any repository of `namespace` links `digest`. */
export async function heldInNamespace(trx: Kysely<Tables>, namespace: string, digest: string): Promise<boolean> {
  const { prefix, length } = namespacePrefix(namespace);
  const row = await trx.selectFrom('repository_blobs as l').select('l.digest').where('l.digest', '=', digest)
    .where((eb) => eb(eb.fn('substr', ['l.repository', eb.lit(1), eb.lit(length)]), '=', prefix)).executeTakeFirst();
  return row !== undefined;
}

/** After a new link of `digest` in `repository` (lock held; `wasHeld`: checked before the insert). */
export async function linked(trx: Kysely<Tables>, repository: string, digest: string, wasHeld: boolean): Promise<void> {
  if (wasHeld) return;
  await adjust(trx, namespaceOf(repository), digest, 1);
}

/** After a link of `digest` in `repository` was deleted (lock held). */
export async function unlinked(trx: Kysely<Tables>, repository: string, digest: string): Promise<void> {
  const namespace = namespaceOf(repository);
  if (await heldInNamespace(trx, namespace, digest)) return;
  await adjust(trx, namespace, digest, -1);
}

async function adjust(trx: Kysely<Tables>, namespace: string, digest: string, sign: 1 | -1): Promise<void> {
  const blob = await trx.selectFrom('blobs').select('size').where('digest', '=', digest).executeTakeFirst();
  const size = blob?.size ?? 0;
  await trx.updateTable('registry_usage')
    .set((eb) => ({ bytes: eb('bytes', '+', sign * size), blobs: eb('blobs', '+', sign) }))
    .where('namespace', '=', namespace).execute();
}

/** The exact sum over the namespace's links (each distinct blob once). */
export async function sumUsage(trx: Kysely<Tables>, namespace: string): Promise<{ bytes: number; blobs: number }> {
  const { prefix, length } = namespacePrefix(namespace);
  const row = await trx.selectFrom('blobs as b')
    .select((eb) => [eb.fn.coalesce(eb.fn.sum<number>('b.size'), eb.lit(0)).as('bytes'), eb.fn.countAll<number>().as('count')])
    .where(({ exists, selectFrom }) => exists(selectFrom('repository_blobs as l').select('l.digest')
      .whereRef('l.digest', '=', 'b.digest')
      .where((eb) => eb(eb.fn('substr', ['l.repository', eb.lit(1), eb.lit(length)]), '=', prefix))))
    .executeTakeFirstOrThrow();
  return { bytes: Number(row.bytes), blobs: Number(row.count) };
}

/** The maintained usage (lock held): the row, or the sum, stored as the row. */
export async function maintainedUsage(trx: Kysely<Tables>, namespace: string): Promise<{ bytes: number; blobs: number }> {
  const row = await trx.selectFrom('registry_usage').select(['bytes', 'blobs']).where('namespace', '=', namespace).executeTakeFirst();
  if (row) return { bytes: Number(row.bytes), blobs: Number(row.blobs) };
  const usage = await sumUsage(trx, namespace);
  await trx.insertInto('registry_usage').values({ namespace, ...usage })
    .onConflict((c) => c.column('namespace').doUpdateSet(usage)).execute();
  return usage;
}
