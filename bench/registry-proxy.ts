/**
 * Pull-through cache benchmark (issue 15): a blob pulled through a Slipway proxy namespace the
 * first time (fetched from the upstream, stored and verified while streamed), pulled again
 * (served from Slipway's cache), and pulled straight from the upstream (CNCF Distribution from
 * Debian) — side by side in one run, with Slipway's credentials on every request.
 *
 *   npm run bench:proxy                     # 64 MiB blobs, 3 rounds
 *   BENCH_BLOB_MIB=256 BENCH_ROUNDS=5 npm run bench:proxy
 *
 * Each round pushes a fresh random blob to the upstream, so every "first pull" is a real miss.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, freePort } from './host.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const blobBytes = Number(process.env.BENCH_BLOB_MIB ?? 64) * 1024 * 1024;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const adminPassword = 'bench-admin-password';
const auth = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;

const children: ChildProcess[] = [];
const dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-bench-proxy-'));
const cleanup = () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { cleanup(); process.exit(130); });

const log = (message: string) => process.stderr.write(`[bench:proxy] ${message}\n`);

function start(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

async function waitReady(base: string): Promise<void> {
  for (const until = Date.now() + 30_000; Date.now() < until;) {
    try {
      if ([200, 401].includes((await fetch(`${base}/v2/`)).status)) return;
    } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${base} did not become ready`);
}

function expectStatus(response: Response, status: number, what: string): Response {
  if (response.status !== status) throw new Error(`${what}: HTTP ${response.status}`);
  return response;
}

/** Pulls a blob, draining it; resolves with the bytes read. */
async function pull(url: string, headers: Record<string, string> = {}): Promise<number> {
  const response = expectStatus(await fetch(url, { headers }), 200, `GET ${url}`);
  let bytes = 0;
  for await (const chunk of response.body!) bytes += (chunk as Uint8Array).length;
  return bytes;
}

async function timed(pid: number, op: () => Promise<number>): Promise<Cell> {
  const cpu0 = cpuSeconds(pid);
  const t0 = process.hrtime.bigint();
  const bytes = await op();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (bytes !== blobBytes) throw new Error(`read ${bytes} of ${blobBytes} bytes`);
  return { mbps: bytes / 1e6 / seconds, cpuPerGiB: ((cpuSeconds(pid) - cpu0) / bytes) * 1024 ** 3 };
}

interface Cell {
  mbps: number;
  cpuPerGiB: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  const upstreamPort = await freePort();
  writeFileSync(path.join(dir, 'distribution.yaml'), [
    'version: 0.1', 'log: {level: warn, accesslog: {disabled: true}}',
    `storage: {filesystem: {rootdirectory: ${JSON.stringify(path.join(dir, 'upstream'))}}}`,
    `http: {addr: "127.0.0.1:${upstreamPort}"}`, '',
  ].join('\n'));
  const upstreamChild = start('/usr/bin/docker-registry', ['serve', path.join(dir, 'distribution.yaml')]);
  const upstream = `http://127.0.0.1:${upstreamPort}`;

  const port = await freePort();
  writeFileSync(path.join(dir, 'slipway.yaml'), `log: {level: warn, requests: false}\nregistry: {gc: {interval: 0}}\nauth: {enabled: true, adminPassword: ${adminPassword}}\n`);
  const slipwayChild = start(path.join(repoRoot, 'bin/slipway.js'), ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'data'), '--config', path.join(dir, 'slipway.yaml')]);
  const slipway = `http://127.0.0.1:${port}`;
  await Promise.all([waitReady(upstream), waitReady(slipway)]);
  expectStatus(await fetch(`${slipway}/api/v1/namespaces`, {
    method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'hub', proxy: { url: upstream, ttl: '24h' } }),
  }), 201, 'create the proxy namespace');

  const results: Record<'first' | 'cached' | 'direct', Cell[]> = { first: [], cached: [], direct: [] };
  for (let round = 1; round <= rounds; round++) {
    const data = randomBytes(blobBytes);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const upload = expectStatus(await fetch(`${upstream}/v2/lib/data/blobs/uploads/`, { method: 'POST' }), 202, 'start an upstream upload');
    const location = new URL(upload.headers.get('location')!, upstream);
    location.searchParams.set('digest', digest);
    expectStatus(await fetch(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } }), 201, 'push to the upstream');
    const through = `${slipway}/v2/hub/lib/data/blobs/${digest}`;
    results.first.push(await timed(slipwayChild.pid!, () => pull(through, { authorization: auth })));
    results.cached.push(await timed(slipwayChild.pid!, () => pull(through, { authorization: auth })));
    results.direct.push(await timed(upstreamChild.pid!, () => pull(`${upstream}/v2/lib/data/blobs/${digest}`)));
    log(`round ${round}: first ${results.first.at(-1)!.mbps.toFixed(0)} MB/s, cached ${results.cached.at(-1)!.mbps.toFixed(0)} MB/s, direct ${results.direct.at(-1)!.mbps.toFixed(0)} MB/s`);
  }

  const row = (name: string, cells: Cell[], cpuOf: string) =>
    `| ${name} | ${median(cells.map((c) => c.mbps)).toFixed(0)} MB/s (${cells.map((c) => c.mbps.toFixed(0)).join(', ')}) | ${median(cells.map((c) => c.cpuPerGiB)).toFixed(2)} s/GiB (${cpuOf}) |`;
  const ratio = (a: Cell[], b: Cell[]) => (median(a.map((c) => c.mbps)) / median(b.map((c) => c.mbps))).toFixed(2);
  process.stdout.write([
    `Blob pulls of ${blobBytes / 1024 / 1024} MiB, ${rounds} rounds (median, all runs in brackets), ${os.cpus().length} cores`,
    '',
    '| pull | throughput | CPU |',
    '|---|---|---|',
    row('through Slipway, first (upstream → store + client)', results.first, 'Slipway'),
    row('through Slipway, cached', results.cached, 'Slipway'),
    row('straight from the upstream (Distribution)', results.direct, 'Distribution'),
    '',
    `cached / upstream direct: ${ratio(results.cached, results.direct)}×; cached / first: ${ratio(results.cached, results.first)}×; first / upstream direct: ${ratio(results.first, results.direct)}×`,
    '',
  ].join('\n'));
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`bench:proxy failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
