/**
 * Test harness: temp folders, per-test databases on both dialects, and real Slipway servers on
 * port 0 that dispose of themselves. Every resource made here is removed by its `close`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig, type Config, type ConfigInput } from '../../src/config/config.js';
import { startServer, type RunningServer, type StartOptions } from '../../src/main.js';

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
  return { path: dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface TestServer {
  url: string;
  /** `127.0.0.1:port`, for clients that take a registry host. */
  host: string;
  server: RunningServer;
  config: Config;
  dataDir: string;
  close(): Promise<void>;
}

export interface TestServerOptions {
  dialect?: DialectUnderTest;
  config?: ConfigInput;
  wrapStore?: StartOptions['wrapStore'];
  /**
   * When given, the server's pino logger writes its JSON lines here (one string per line,
   * in memory) instead of being silent, at `logLevel` (default `trace`: everything the server
   * could ever log). Request lines also need `config.log.requests: true`.
   */
  logSink?: string[];
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
}

/** Starts a real server on 127.0.0.1:0 with a fresh data folder and database. */
export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dir = await tempDir();
  const database = await (options.dialect ?? dialects[0]!).create();
  const config = loadConfig({
    flags: {
      listen: '127.0.0.1:0',
      dataDir: dir.path,
      database: database.url,
      log: { level: 'warn', requests: false },
      ...options.config,
      // Registry protocol tests run without access control; auth tests turn it on.
      auth: { enabled: false, ...options.config?.auth },
      // Functions (runc instances) only where a test asks for them.
      functions: { enabled: false, ...options.config?.functions },
      registry: { ...options.config?.registry, gc: { interval: 0, ...options.config?.registry?.gc } },
    },
  });
  let server: RunningServer;
  try {
    const sink = options.logSink;
    const logger = sink
      ? pino({ level: options.logLevel ?? 'trace' }, { write: (line: string) => { sink.push(line); } })
      : pino({ level: process.env.SLIPWAY_TEST_LOG ?? 'silent' });
    server = await startServer(config, { logger, wrapStore: options.wrapStore });
  } catch (error) {
    await database.drop();
    await dir.remove();
    throw error;
  }
  return {
    url: server.url,
    host: server.url.replace(/^http:\/\//, ''),
    server,
    config,
    dataDir: dir.path,
    async close() {
      await server.close();
      await database.drop();
      await dir.remove();
    },
  };
}
