/**
 * @module db/migrations
 * Versioned schema migrations, written once with the schema builder so they run on SQLite and
 * PostgreSQL alike. Each runs in its own transaction and is recorded in `schema_migrations`;
 * a migration is never edited after it shipped — add the next one.
 */
import { sql, type Kysely } from 'kysely';
import type { Dialect } from './db.js';

export interface Migration {
  version: number;
  name: string;
  up(db: Kysely<any>, dialect: Dialect): Promise<void>;
}

const bytes = (dialect: Dialect) => (dialect === 'postgres' ? 'bytea' : 'blob');

export const migrations: Migration[] = [
  {
    version: 1,
    name: 'registry',
    async up(db, dialect) {
      await db.schema.createTable('blobs')
        .addColumn('digest', 'text', (c) => c.primaryKey())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('touched_at', 'bigint', (c) => c.notNull())
        .addColumn('deleting', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createTable('repositories')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('repository_blobs')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('touched_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('repository_blobs_pk', ['repository', 'digest'])
        .execute();
      await db.schema.createIndex('repository_blobs_digest').on('repository_blobs').column('digest').execute();
      await db.schema.createTable('manifests')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('media_type', 'text', (c) => c.notNull())
        .addColumn('artifact_type', 'text')
        .addColumn('subject', 'text')
        .addColumn('annotations', 'text')
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('content', bytes(dialect), (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('touched_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('manifests_pk', ['repository', 'digest'])
        .execute();
      await db.schema.createIndex('manifests_subject').on('manifests').columns(['repository', 'subject']).execute();
      await db.schema.createTable('manifest_references')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('manifest_digest', 'text', (c) => c.notNull())
        .addColumn('target_digest', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('manifest_references_pk', ['repository', 'manifest_digest', 'target_digest'])
        .execute();
      await db.schema.createIndex('manifest_references_target').on('manifest_references').columns(['repository', 'target_digest']).execute();
      await db.schema.createIndex('manifest_references_blob').on('manifest_references').column('target_digest').execute();
      await db.schema.createTable('tags')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('manifest_digest', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('tags_pk', ['repository', 'name'])
        .execute();
      await db.schema.createIndex('tags_manifest').on('tags').columns(['repository', 'manifest_digest']).execute();
      await db.schema.createTable('uploads')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('algorithm', 'text', (c) => c.notNull())
        // Bytes acknowledged to the client; the file may hold more after a crash mid-PATCH.
        .addColumn('size', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
];

/** Applies every migration newer than the recorded version; safe to call on every start. */
export async function migrate(db: Kysely<any>, dialect: Dialect): Promise<number[]> {
  await db.schema.createTable('schema_migrations').ifNotExists()
    .addColumn('version', 'integer', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('applied_at', 'bigint', (c) => c.notNull())
    .execute();
  const applied: number[] = [];
  for (const migration of migrations) {
    const done = await db.transaction().execute(async (trx) => {
      if (dialect === 'postgres') await sql`LOCK TABLE schema_migrations IN EXCLUSIVE MODE`.execute(trx);
      const row = await trx.selectFrom('schema_migrations').select('version').where('version', '=', migration.version).executeTakeFirst();
      if (row) return false;
      await migration.up(trx, dialect);
      await trx.insertInto('schema_migrations').values({ version: migration.version, name: migration.name, applied_at: Date.now() }).execute();
      return true;
    });
    if (done) applied.push(migration.version);
  }
  return applied;
}
