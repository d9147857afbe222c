/**
 * @module bench/storage
 * Side-by-side storage benchmark: the same Slipway build with `storage.driver: fs` and with
 * `storage.driver: s3` over s3rver (the local S3-compatible server the tests use, its CLI as a
 * child process), and pulls once more with `storage.s3.redirect: true` (the client follows
 * the 307 to s3rver). All peers are child processes on 127.0.0.1 with their own temp folders;
 * auth is off (this measures storage, bench/registry.ts measures auth).
 *
 * Rows: blob push monolithic and chunked (PATCH of `--chunk-mib`), blob pull, manifest PUT and
 * manifest GET by digest (`--connections` concurrent node:http clients for `--seconds`). Each
 * row reports MB/s or req/s per peer, the s3/fs ratio, and CPU seconds of Slipway and s3rver
 * (utime+stime from /proc) so it shows where the time goes. `--cpu-prof` runs the Slipway peers
 * under `node --cpu-prof` and prints their top functions by self time.
 *
 *   node dist/bench/storage.js [--blob-mib 64] [--chunk-mib 8] [--seconds 5] [--connections 16]
 *                              [--repeat 1] [--cpu-prof] [--results bench/results-storage.md]
 */
import type { ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, freePort } from './host.js';
import { expect, imageManifest, imageManifestType, pushChunked as pushInChunks, pushMonolithic as pushWhole, request as send, sha256, type RequestOptions, type Response } from './blob-http.js';
import { startChild, startS3rver as startS3rverChild, stopChild, tempDir, waitFor } from './bench-processes.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values: flags } = parseArgs({
  options: {
    'blob-mib': { type: 'string', default: '64' },
    'chunk-mib': { type: 'string', default: '8' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '16' },
    repeat: { type: 'string', default: '1' },
    'cpu-prof': { type: 'boolean', default: false },
    results: { type: 'string', default: path.join(repoRoot, 'bench', 'results-storage.md') },
  },
});
const blobBytes = Number(flags['blob-mib']) * 1024 * 1024;
const chunkBytes = Number(flags['chunk-mib']) * 1024 * 1024;
const seconds = Number(flags.seconds);
const connections = Number(flags.connections);
const repeat = Number(flags.repeat);
const repo = 'bench/storage';
const manifestType = imageManifestType;
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
/** One request on this bench's keep-alive agent. */
const request = (method: string, url: string, options: Omit<RequestOptions, 'agent'> = {}): Promise<Response> => send(method, url, { ...options, agent });
const startS3rver = () => startS3rverChild(async (endpoint) => (await request('GET', `${endpoint}/`)).status > 0);

interface Peer {
  name: string;
  base: string;
  child: ChildProcess;
  s3?: ChildProcess;
  profileDir?: string;
}

// ---------------------------------------------------------------- processes and cleanup


async function startSlipway(name: string, storage: string, s3?: ChildProcess): Promise<Peer> {
  const dir = tempDir('bench-storage-');
  const port = await freePort();
  const config = path.join(dir, 'slipway.yaml');
  writeFileSync(config, `log: {level: warn, requests: false}\nregistry: {gc: {interval: 0}}\nauth: {enabled: false}\nfunctions: {enabled: false}\n${storage}\n`);
  const profileDir = flags['cpu-prof'] ? path.join(dir, 'profile') : undefined;
  const nodeFlags = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const child = startChild(process.execPath, [...nodeFlags, path.join(repoRoot, 'bin/slipway.js'), 'serve', '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'data'), '--config', config]);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await request('GET', `${base}/v2/`)).status === 200, name);
  return { name, base, child, s3, profileDir };
}

async function stop(peer: Peer): Promise<void> {
  await stopChild(peer.child);
}

// ---------------------------------------------------------------- HTTP client (bench/blob-http.ts)

const pushMonolithic = (peer: Peer, data: Buffer) => pushWhole(request, peer.base, repo, data);
const pushChunked = (peer: Peer, data: Buffer) => pushInChunks(request, peer.base, repo, data, chunkBytes);

/** GET, following one redirect (to the object store) as registry clients do. */
async function pull(peer: Peer, digest: string): Promise<number> {
  const response = await request('GET', `${peer.base}/v2/${repo}/blobs/${digest}`, { discard: true });
  if (response.status === 307) return expect(await request('GET', String(response.headers.location), { discard: true }), 200, 'GET redirected blob').bytes;
  return expect(response, 200, 'GET blob').bytes;
}

// ---------------------------------------------------------------- rows

interface Cell {
  value: number;
  /** CPU seconds of Slipway and of s3rver during the row. */
  cpu: number;
  s3Cpu?: number;
}

function measureCpu(peer: Peer): () => { cpu: number; s3Cpu?: number } {
  const cpu = cpuSeconds(peer.child.pid!);
  const s3Cpu = peer.s3 ? cpuSeconds(peer.s3.pid!) : 0;
  return () => ({ cpu: cpuSeconds(peer.child.pid!) - cpu, s3Cpu: peer.s3 ? cpuSeconds(peer.s3.pid!) - s3Cpu : undefined });
}

/** Median of `repeat` runs of a timed transfer, in MB/s. */
async function throughput(peer: Peer, bytes: number, once: () => Promise<void>): Promise<Cell> {
  const runs: Array<Cell> = [];
  for (let index = 0; index < repeat; index++) {
    const cpu = measureCpu(peer);
    const started = process.hrtime.bigint();
    await once();
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    runs.push({ value: bytes / 1e6 / elapsed, ...cpu() });
  }
  runs.sort((a, b) => a.value - b.value);
  return runs[Math.floor(runs.length / 2)]!;
}

/** `connections` loops of `once` for `seconds`; requests per second. */
async function rate(peer: Peer, once: (index: number) => Promise<void>): Promise<Cell> {
  let count = 0;
  const cpu = measureCpu(peer);
  const started = Date.now();
  const until = started + seconds * 1000;
  await Promise.all(Array.from({ length: connections }, async () => {
    while (Date.now() < until) await once(count++);
  }));
  const elapsed = (Date.now() - started) / 1000;
  const used = cpu();
  return { value: count / elapsed, cpu: used.cpu / count, s3Cpu: used.s3Cpu === undefined ? undefined : used.s3Cpu / count };
}

const manifest = imageManifest;

interface Row {
  label: string;
  unit: 'MB/s' | 'req/s';
  cells: Map<string, Cell>;
}

async function benchPeer(peer: Peer, data: Buffer, rows: Row[], options: { pushes: boolean }): Promise<void> {
  const row = (label: string, unit: Row['unit']) => {
    let found = rows.find((r) => r.label === label);
    if (!found) rows.push(found = { label, unit, cells: new Map() });
    return found;
  };
  const mib = `${flags['blob-mib']} MiB`;
  if (options.pushes) {
    // A fresh blob per push: content-addressed stores skip a blob they already hold.
    row(`blob push, monolithic ${mib}`, 'MB/s').cells.set(peer.name, await throughput(peer, data.length, async () => {
      data.writeUInt32BE(Math.floor(Math.random() * 2 ** 32), 0);
      await pushMonolithic(peer, data);
    }));
    row(`blob push, chunked (${flags['chunk-mib']} MiB PATCHes) ${mib}`, 'MB/s').cells.set(peer.name, await throughput(peer, data.length, async () => {
      data.writeUInt32BE(Math.floor(Math.random() * 2 ** 32), 0);
      await pushChunked(peer, data);
    }));
  } else {
    await pushMonolithic(peer, data);
  }
  const digest = sha256(data);
  row(`blob pull ${mib}`, 'MB/s').cells.set(peer.name, await throughput(peer, data.length, async () => {
    if ((await pull(peer, digest)) !== data.length) throw new Error('short pull');
  }));
  if (!options.pushes) return;
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  const layer = Buffer.alloc(4096, 7);
  await pushMonolithic(peer, config);
  await pushMonolithic(peer, layer);
  const refs = { config: { digest: sha256(config), size: config.length }, layer: { digest: sha256(layer), size: layer.length } };
  row(`manifest PUT (${connections} clients)`, 'req/s').cells.set(peer.name, await rate(peer, async (index) => {
    const body = manifest(refs.config, refs.layer, index);
    expect(await request('PUT', `${peer.base}/v2/${repo}/manifests/t${index % 50}`, { headers: { 'Content-Type': manifestType, 'Content-Length': body.length }, body: [body] }), 201, 'manifest PUT');
  }));
  const body = manifest(refs.config, refs.layer, -1);
  expect(await request('PUT', `${peer.base}/v2/${repo}/manifests/${sha256(body)}`, { headers: { 'Content-Type': manifestType, 'Content-Length': body.length }, body: [body] }), 201, 'manifest PUT');
  row(`manifest GET by digest (${connections} clients)`, 'req/s').cells.set(peer.name, await rate(peer, async () => {
    expect(await request('GET', `${peer.base}/v2/${repo}/manifests/${sha256(body)}`, { headers: { Accept: manifestType }, discard: true }), 200, 'manifest GET');
  }));
}

// ---------------------------------------------------------------- CPU profile summary

/** Top functions by self time in the peer's .cpuprofile (V8's format: nodes with callFrame, samples, timeDeltas). */
function topFunctions(dir: string, count = 8): string[] {
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
  if (!file) return ['(no profile written)'];
  const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as {
    nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
    samples: number[]; timeDeltas: number[];
  };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    total += delta;
    const frame = byId.get(id)!.callFrame;
    const where = frame.url ? `${frame.url.replace(/^.*\/(node_modules\/)?/, (m) => (m.includes('node_modules') ? 'node_modules/' : ''))}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + delta);
  });
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, count).map(([key, micros]) => `${((micros / total) * 100).toFixed(1)}% ${key}`);
}

// ---------------------------------------------------------------- main

function format(cell: Cell | undefined, unit: Row['unit']): string {
  if (!cell) return '—';
  return unit === 'MB/s' ? `${cell.value.toFixed(0)} MB/s` : `${cell.value.toFixed(0)} req/s`;
}

function cpuText(cell: Cell | undefined, unit: Row['unit'], bytes: number): string {
  if (!cell) return '—';
  const scale = unit === 'MB/s' ? (1024 ** 3 / bytes) : 1e6;
  const suffix = unit === 'MB/s' ? 's/GiB' : 'µs/req';
  const slipway = `${(cell.cpu * scale).toFixed(unit === 'MB/s' ? 2 : 0)}`;
  return cell.s3Cpu === undefined ? `${slipway} ${suffix}` : `${slipway} + s3rver ${(cell.s3Cpu * scale).toFixed(unit === 'MB/s' ? 2 : 0)} ${suffix}`;
}

async function main(): Promise<void> {
  const data = randomFillSync(Buffer.allocUnsafe(blobBytes));
  const rows: Row[] = [];
  const profiles: Array<{ name: string; top: string[] }> = [];
  const run = async (peer: Peer, pushes: boolean) => {
    process.stderr.write(`bench: ${peer.name}\n`);
    await benchPeer(peer, data, rows, { pushes });
    await stop(peer);
    if (peer.s3) peer.s3.kill('SIGKILL');
    if (peer.profileDir) profiles.push({ name: peer.name, top: topFunctions(peer.profileDir) });
  };
  // One peer at a time: the host has few cores, and each peer gets all of them.
  await run(await startSlipway('fs', 'storage: {driver: fs}'), true);
  const s3 = await startS3rver();
  // partSize: S3's 5 MiB minimum or the chunk size, whichever is larger.
  const partSize = Math.max(5 * 1024 * 1024, chunkBytes);
  const s3Storage = (endpoint: string, redirect: boolean) => `storage: {driver: s3, s3: {endpoint: "${endpoint}", bucket: bench, forcePathStyle: true, accessKeyId: S3RVER, secretAccessKey: S3RVER, partSize: ${partSize}, redirect: ${redirect}}}`;
  await run(await startSlipway('s3', s3Storage(s3.endpoint, false), s3.child), true);
  const s3again = await startS3rver();
  await run(await startSlipway('s3, redirect', s3Storage(s3again.endpoint, true), s3again.child), false);

  const lines = [
    '# Storage benchmark: Slipway on fs vs on S3 (s3rver)',
    '',
    `${new Date().toISOString()} · ${os.cpus().length} cores · node ${process.version} · blob ${flags['blob-mib']} MiB, chunks ${flags['chunk-mib']} MiB, ${repeat} run(s) per transfer (median) · request rows ${seconds} s, ${connections} clients · MB = 10^6 bytes · CPU = process utime+stime`,
    '',
    '| row | fs | s3 | s3, redirect | s3/fs | s3 redirect/fs | CPU fs | CPU s3 (Slipway + s3rver) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const [fs, s3Cell, redirect] = ['fs', 's3', 's3, redirect'].map((name) => row.cells.get(name));
    const ratio = (cell?: Cell) => (cell && fs ? `${(cell.value / fs.value).toFixed(2)}×` : '—');
    lines.push(`| ${row.label} | ${format(fs, row.unit)} | ${format(s3Cell, row.unit)} | ${format(redirect, row.unit)} | ${ratio(s3Cell)} | ${ratio(redirect)} | ${cpuText(fs, row.unit, blobBytes)} | ${cpuText(s3Cell, row.unit, blobBytes)} |`);
  }
  for (const { name, top } of profiles) lines.push('', `Slipway (${name}) top self time (--cpu-prof):`, '', ...top.map((entry) => `- ${entry}`));
  const text = `${lines.join('\n')}\n`;
  process.stdout.write(text);
  writeFileSync(flags.results, text);
}

// process.exit runs bench-processes' exit hook: children killed, temp folders removed.
main().then(() => process.exit(0), (error) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
