/**
 * Several `slipway serve` replicas for the replica tests: each with its own data folder, all on
 * one PostgreSQL database, one S3 bucket (s3rver) and one vault master key, and Debian's nginx
 * in front of them (round robin, bodies streamed both ways).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { cleanEnv, killTree, repoRoot, slipwayBin, spawnTracked } from './commands.js';
import type { TestS3Server } from './s3-server.js';
import { sleep } from './registry-client.js';
import { watchDataFolder } from './leak-guard.js';
import { startNginxProxy, type NginxProxy } from './nginx-proxy.js';

export const adminPassword = 'replicas-admin-pw-1234';
export const basic = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;

export interface ReplicaShared { database: string; s3: TestS3Server; masterKey: string }

export interface Replica {
  name: string;
  child: ChildProcess;
  url: string;
  dataDir: string;
  output(): string;
  exited: Promise<unknown>;
}

export { freePort } from './nginx-proxy.js';

/**
 * `slipway serve` with its own data folder; shared: db, bucket, master key. `extra` adds to (or
 * overrides) the config's top-level sections, `env` to its environment (e.g.
 * `SLIPWAY_FUNCTIONS_ENABLED`, off by default in tests).
 */
export async function startReplica(name: string, root: string, shared: ReplicaShared, extra: Record<string, unknown> = {}, extraEnv: Record<string, string> = {}): Promise<Replica> {
  const dataDir = path.join(root, name);
  await mkdir(dataDir, { recursive: true });
  watchDataFolder(dataDir);
  const s3 = shared.s3.config('replicas/');
  const configFile = path.join(root, `${name}.yaml`);
  await writeFile(configFile, JSON.stringify({
    listen: '127.0.0.1:0', dataDir, database: shared.database,
    log: { level: 'info', requests: true },
    storage: { driver: 's3', s3: { endpoint: s3.endpoint, bucket: s3.bucket, region: s3.region, forcePathStyle: true, prefix: s3.prefix } },
    ...extra,
  }));
  const env = cleanEnv({
    SLIPWAY_AUTH_ENABLED: 'true', SLIPWAY_ADMIN_PASSWORD: adminPassword, SLIPWAY_MASTER_KEY: shared.masterKey,
    SLIPWAY_S3_ACCESS_KEY_ID: s3.accessKeyId!, SLIPWAY_S3_SECRET_ACCESS_KEY: s3.secretAccessKey!, ...extraEnv,
  });
  const child = spawnTracked(process.execPath, [slipwayBin, 'serve', '--config', configFile], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  const output = () => Buffer.concat(chunks).toString('utf8');
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { killTree(child); reject(new Error(`${name} did not start within 30 s:\n${output()}`)); }, 30_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const match = /Slipway listening on (http:\/\/[^\s]+)/.exec(output());
      if (match) { clearTimeout(timer); resolve(match[1]!); }
    });
    child.stderr!.on('data', (chunk: Buffer) => chunks.push(chunk));
    void exited.then(() => { clearTimeout(timer); reject(new Error(`${name} exited before listening:\n${output()}`)); });
  });
  return { name, child, url, dataDir, output, exited };
}

export type Nginx = NginxProxy;

/**
 * nginx in front of the replicas: round robin, bodies streamed both ways (blobs of any size),
 * a replica that fails once skipped for 30 s (the kill -9 test), its log in `<root>/…/logs`.
 */
export function startNginx(root: string, upstreams: string[]): Promise<Nginx> {
  return startNginxProxy({
    upstreams, parentDir: root, workerConnections: 256, streamBodies: true, clientMaxBodySize: '0',
    readTimeout: '60s', failover: { maxFails: 1, failTimeout: '30s' }, accessLog: true,
  });
}

/** Stops a replica: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopReplica(replica: Replica, graceMs = 10_000): Promise<void> {
  killTree(replica.child, 'SIGTERM');
  await Promise.race([replica.exited, sleep(graceMs)]);
  killTree(replica.child);
}
