/**
 * The databases db-facing tests run against, and temp folders — without loading the server
 * (tests of single parts import this instead of the harness).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { watchDataFolder } from './leak-guard.js';

export interface DialectUnderTest {
  name: 'sqlite' | 'postgres';
  /** Creates a fresh, empty database; `drop` removes it. */
  create(): Promise<{ url: string; drop(): Promise<void> }>;
}

const postgresUrl = process.env.SLIPWAY_TEST_POSTGRES_URL;
if (!postgresUrl && process.env.CI) throw new Error('SLIPWAY_TEST_POSTGRES_URL is required in CI: run the suite with `npm test`');

/** SQLite always; PostgreSQL when the suite was started by scripts/test.sh (as `npm test` does). */
export const dialects: DialectUnderTest[] = [
  { name: 'sqlite', create: async () => ({ url: 'sqlite', drop: async () => undefined }) },
  ...(postgresUrl ? [{ name: 'postgres' as const, create: () => createPostgresDatabase(postgresUrl) }] : []),
];

async function createPostgresDatabase(baseUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `slipway_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: baseUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

export async function tempDir(prefix = 'slipway-test-'): Promise<{ path: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  watchDataFolder(dir);
  return { path: dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
