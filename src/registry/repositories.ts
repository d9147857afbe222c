/**
 * @module registry/repositories
 * Repository rows: created on first content, listed by the catalog.
 */
import type { Kysely } from 'kysely';
import type { Tables } from '../db/schema.js';

export async function ensureRepository(trx: Kysely<Tables>, name: string): Promise<void> {
  await trx.insertInto('repositories').values({ name, created_at: Date.now() })
    .onConflict((c) => c.column('name').doNothing())
    .execute();
}

export async function repositoryExists(db: Kysely<Tables>, name: string): Promise<boolean> {
  return (await db.selectFrom('repositories').select('name').where('name', '=', name).executeTakeFirst()) !== undefined;
}
