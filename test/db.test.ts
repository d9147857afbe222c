/**
 * The db layer on both dialects: migrations are versioned and idempotent, and write
 * transactions from two handles on one database (two processes, e.g. `slipway gc` beside the
 * server) neither fail nor lose updates.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openDatabase } from '../src/db/db.js';
import { migrations } from '../src/db/migrations.js';
import { dialects, tempDir } from './helpers/harness.js';

for (const dialect of dialects) {
  describe(`db (${dialect.name})`, () => {
    test('migrations apply once and are recorded', { timeout: 60_000 }, async () => {
      const dir = await tempDir();
      const database = await dialect.create();
      try {
        const first = await openDatabase({ url: database.url, dataDir: dir.path });
        const second = await openDatabase({ url: database.url, dataDir: dir.path });
        const rows = await second.kysely.selectFrom('schema_migrations').selectAll().orderBy('version').execute();
        assert.deepEqual(rows.map((r) => r.version), migrations.map((m) => m.version));
        await first.close();
        await second.close();
      } finally {
        await database.drop();
        await dir.remove();
      }
    });

    test('concurrent read-modify-write transactions from two handles lose no update', { timeout: 60_000 }, async () => {
      const dir = await tempDir();
      const database = await dialect.create();
      const a = await openDatabase({ url: database.url, dataDir: dir.path });
      const b = await openDatabase({ url: database.url, dataDir: dir.path });
      try {
        await a.kysely.insertInto('repositories').values({ name: 'counter', created_at: 0 }).execute();
        const increment = (db: typeof a) => db.write(async (trx) => {
          let query = trx.selectFrom('repositories').select('created_at').where('name', '=', 'counter');
          if (db.dialect === 'postgres') query = query.forUpdate();
          const row = await query.executeTakeFirstOrThrow();
          await trx.updateTable('repositories').set({ created_at: row.created_at + 1 }).where('name', '=', 'counter').execute();
        });
        await Promise.all(Array.from({ length: 40 }, (_, i) => increment(i % 2 ? a : b)));
        const row = await a.kysely.selectFrom('repositories').select('created_at').where('name', '=', 'counter').executeTakeFirstOrThrow();
        assert.equal(row.created_at, 40);
      } finally {
        await a.close();
        await b.close();
        await database.drop();
        await dir.remove();
      }
    });

    test('a failing transaction rolls back entirely', { timeout: 60_000 }, async () => {
      const dir = await tempDir();
      const database = await dialect.create();
      const db = await openDatabase({ url: database.url, dataDir: dir.path });
      try {
        await assert.rejects(db.write(async (trx) => {
          await trx.insertInto('repositories').values({ name: 'half', created_at: 1 }).execute();
          throw new Error('boom');
        }), /boom/);
        assert.equal(await db.kysely.selectFrom('repositories').select('name').where('name', '=', 'half').executeTakeFirst(), undefined);
        await db.write((trx) => trx.insertInto('repositories').values({ name: 'after', created_at: 1 }).execute());
      } finally {
        await db.close();
        await database.drop();
        await dir.remove();
      }
    });
  });
}

test('a bad database URL fails with a clear error', { timeout: 30_000 }, async () => {
  const dir = await tempDir();
  try {
    await assert.rejects(openDatabase({ url: 'postgres://nobody@127.0.0.1:1/none', dataDir: dir.path }), /ECONNREFUSED|connect/);
  } finally {
    await dir.remove();
  }
});
