/**
 * @module db
 * One query-builder handle over two dialects: SQLite (embedded default, a file in the data
 * folder) and PostgreSQL (scale-out). Every query in Slipway is written once with Kysely and
 * runs on both. `write()` is the only way to run a read-modify-write transaction: it takes the
 * write lock up front on SQLite (BEGIN IMMEDIATE, so two processes never deadlock on upgrade)
 * and retries serialization failures and deadlocks on PostgreSQL.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { migrate } from './migrations.js';
import { localNotifications, postgresNotifications, type Notifications } from './notifications.js';
import type { Tables } from './schema.js';

export type Dialect = 'sqlite' | 'postgres';

export interface Database {
  readonly dialect: Dialect;
  /** For single statements and read-only work. */
  readonly kysely: Kysely<Tables>;
  /** Runs `fn` in a write transaction; retried as a whole on transient conflicts. */
  write<T>(fn: (trx: Kysely<Tables>) => Promise<T>): Promise<T>;
  /**
   * Inside `write`: no other transaction that locks the same `key` runs until this one ends,
   * so a check-then-insert on `key` is atomic. SQLite's write transactions are serialised
   * already (BEGIN IMMEDIATE); PostgreSQL takes a transaction-scoped advisory lock.
   */
  lockKey(trx: Kysely<Tables>, key: string): Promise<void>;
  /** Wake-ups to every process on this database (PostgreSQL NOTIFY; in-process on SQLite). */
  readonly notifications: Notifications;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** `sqlite` or a `postgres://` URL. */
  url: string;
  /** Folder for the SQLite file. */
  dataDir: string;
  /** Apply pending migrations on open (the server and CLI do; tests may too). */
  migrate?: boolean;
}

const int8Oid = 20;

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  const db = options.url === 'sqlite' ? openSqlite(options.dataDir) : openPostgres(options.url);
  if (options.migrate !== false) {
    try {
      await migrate(db.kysely, db.dialect);
    } catch (error) {
      await db.close();
      throw error;
    }
  }
  return db;
}

function openSqlite(dataDir: string): Database {
  mkdirSync(dataDir, { recursive: true });
  const file = new BetterSqlite3(path.join(dataDir, 'slipway.db'));
  file.pragma('journal_mode = WAL');
  // FULL: a commit is fsynced before it returns, so an acknowledged push survives power loss too.
  file.pragma('synchronous = FULL');
  // Short: better-sqlite3 waits synchronously, which would stall the whole event loop while
  // another process (`slipway gc`) holds the write lock. withRetry waits asynchronously instead.
  file.pragma('busy_timeout = 50');
  file.pragma('foreign_keys = ON');
  file.defaultSafeIntegers(false);
  const kysely = new Kysely<Tables>({ dialect: new SqliteDialect({ database: file }) });
  return {
    dialect: 'sqlite',
    kysely,
    write: (fn) => withRetry(() => kysely.connection().execute(async (connection) => {
      await sql`BEGIN IMMEDIATE`.execute(connection);
      try {
        const result = await fn(connection);
        await sql`COMMIT`.execute(connection);
        return result;
      } catch (error) {
        if (file.inTransaction) await sql`ROLLBACK`.execute(connection);
        throw error;
      }
    })),
    lockKey: async () => undefined, // BEGIN IMMEDIATE holds the one write lock already
    notifications: localNotifications(),
    close: () => kysely.destroy(),
  };
}

function openPostgres(url: string): Database {
  const pool = new pg.Pool({
    connectionString: url,
    max: 16,
    // Integers come back as numbers: our int8 columns hold milliseconds and byte sizes, far below 2^53.
    types: { getTypeParser: ((oid: number, format?: string) => (oid === int8Oid ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'))) as typeof pg.types.getTypeParser },
  });
  // An idle client whose connection drops (server restart, network) emits here; without a
  // listener that would crash the process. The pool replaces the client on next use.
  pool.on('error', (error) => { process.emitWarning(`postgres idle client error: ${error.message}`); });
  const kysely = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
  const notifications = postgresNotifications(pool, { connectionString: url });
  return {
    dialect: 'postgres',
    kysely,
    write: (fn) => withRetry(() => kysely.transaction().execute(fn)),
    lockKey: async (trx, key) => {
      await sql`SELECT pg_advisory_xact_lock(hashtextextended(${key}, 0))`.execute(trx);
    },
    notifications,
    close: async () => {
      await notifications.close();
      await kysely.destroy();
    },
  };
}

const transientCodes = new Set(['SQLITE_BUSY', 'SQLITE_BUSY_SNAPSHOT', '40001', '40P01']);

/** How long a write keeps retrying lock conflicts before the error reaches the caller. */
const retryBudgetMs = 15_000;

async function withRetry<T>(run: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + retryBudgetMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (!code || !transientCodes.has(code) || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.min(5 * attempt, 100) + Math.random() * 10));
    }
  }
}
