/**
 * @module functions/runc-runtime
 * The server's factory for the runc driver: checks that runc is installed, lays out
 * `<dataDir>/functions/` and derives the instance prefix from the data folder.
 */
import { mkdir, realpath } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { runProcess } from '../exec/process.js';
import { ImageStore } from './image-store.js';
import { RuncDriver } from './runc-driver.js';
import { RuntimeUnavailableError } from './runtime-driver.js';

/** What the server's runc runtime is made from (`functions.*` of the config). */
export interface RuncRuntimeSettings {
  /** The data folder: `functions/{images,bundles,runc}` live in it. */
  dataDir: string;
  /** Addresses of instances: one /30 per instance. */
  addressPool: string;
}

/**
 * The server's runc driver. Its container ids, namespaces and bundles carry a prefix derived from
 * the data folder, so two servers on one host never clean up each other's instances. Throws
 * RuntimeUnavailableError when runc is not installed.
 */
export async function createRuncRuntime(settings: RuncRuntimeSettings): Promise<RuncDriver> {
  const runc = await runProcess('runc', ['--version'], { captureStdout: true, timeoutMs: 10_000, graceMs: 500 }).catch(() => null);
  if (!runc || runc.code !== 0) throw new RuntimeUnavailableError('runc is not installed (apt-get install runc)');
  const dir = path.join(settings.dataDir, 'functions');
  await mkdir(path.join(dir, 'bundles'), { recursive: true });
  const prefix = `slw-${createHash('sha256').update(await realpath(settings.dataDir)).digest('hex').slice(0, 6)}-`;
  return new RuncDriver({
    images: new ImageStore(path.join(dir, 'images')),
    stateDir: path.join(dir, 'bundles'), runcRoot: path.join(dir, 'runc'), pool: settings.addressPool, prefix, spareNetworks: 2,
  });
}
