/**
 * Test harness: temp folders, per-test databases on both dialects, and real Slipway servers on
 * port 0 that dispose of themselves. Every resource made here is removed by its `close`.
 */
import { pino } from 'pino';
import { loadConfig, type Config, type ConfigInput } from '../../src/config/config.js';
import { startServer, type RunningServer, type StartOptions } from '../../src/main.js';

export { dialects, tempDir, type DialectUnderTest } from './dialects.js';
import { tempDir, dialects, type DialectUnderTest } from './dialects.js';

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
