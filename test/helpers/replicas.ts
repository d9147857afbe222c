/**
 * Several `slipway serve` replicas for the replica tests: each with its own data folder, all on
 * one PostgreSQL database, one S3 bucket (s3rver) and one vault master key, and Debian's nginx
 * in front of them (round robin, bodies streamed both ways).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { cleanEnv, killTree, repoRoot, slipwayBin, spawnTracked } from './commands.js';
import type { TestS3Server } from './s3-server.js';
import { sleep } from './registry-client.js';
import { watchDataFolder } from './leak-guard.js';

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

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listened on ${port} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

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

export interface Nginx { url: string; stop(): Promise<void> }

/** nginx in the foreground from a temp prefix: round robin over the replicas, bodies streamed. */
export async function startNginx(root: string, upstreams: string[]): Promise<Nginx> {
  const prefix = path.join(root, 'nginx');
  await mkdir(path.join(prefix, 'logs'), { recursive: true });
  const port = await freePort();
  await writeFile(path.join(prefix, 'nginx.conf'), `
worker_processes 1;
error_log ${prefix}/logs/error.log warn;
pid ${prefix}/nginx.pid;
events { worker_connections 256; }
http {
  access_log ${prefix}/logs/access.log;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  upstream slipway { ${upstreams.map((u) => `server ${u} max_fails=1 fail_timeout=30s;`).join(' ')} }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location / {
      proxy_pass http://slipway;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 60s;
    }
  }
}
`);
  const child = spawnTracked('nginx', ['-p', prefix, '-c', path.join(prefix, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await waitForPort(port, 10_000);
  return {
    url: `http://127.0.0.1:${port}`,
    async stop() {
      killTree(child, 'SIGTERM');
      await Promise.race([exited, sleep(5000)]);
      killTree(child);
    },
  };
}

/** Stops a replica: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopReplica(replica: Replica, graceMs = 10_000): Promise<void> {
  killTree(replica.child, 'SIGTERM');
  await Promise.race([replica.exited, sleep(graceMs)]);
  killTree(replica.child);
}
