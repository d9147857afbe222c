/**
 * @module bench/replicas
 * One replica vs two behind nginx, side by side in one run: `slipway serve` processes on one
 * PostgreSQL database (a fresh one per peer, made on the server `--database` names) and
 * s3rver, with Debian's nginx in front (round robin, bodies streamed). The clients only ever
 * talk to nginx, so the two peers differ only in the number of replicas behind it.
 *
 * Rows: blob push monolithic and chunked (the PATCHes spread over the replicas), blob pull,
 * manifest PUT and manifest GET by digest (`--connections` concurrent node:http clients for
 * `--seconds`). Each row reports MB/s or req/s per peer, the two/one ratio, and the CPU seconds
 * of the Slipway replicas together (utime+stime from /proc).
 *
 * Access control is on, as users run it, and every request carries credentials the way clients
 * send them: each row once per `--auth` mode — `basic` (the admin's password on every request,
 * as curl or a CI script does) and `bearer` (docker/skopeo: the 401's challenge names the token
 * realm, one token fetched there with Basic, sent until shortly before it expires).
 *
 *   node dist/bench/replicas.js --database postgres://… [--blob-mib 64] [--chunk-mib 8]
 *                               [--seconds 5] [--connections 16] [--repeat 1]
 *                               [--auth basic,bearer] [--results bench/results-replicas.md]
 * `--database` defaults to SLIPWAY_BENCH_POSTGRES_URL.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomFillSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { cpuSeconds, freePort } from './host.js';
import { expect, imageManifest, imageManifestType, pushChunked as pushInChunks, pushMonolithic as pushWhole, request as send, sha256, type RequestOptions, type Response, type Send } from './blob-http.js';
import { outputTail, startChild, startS3rver as startS3rverChild, stopChild, tempDir, waitFor } from './bench-processes.js';
import { startNginxProxy, type NginxProxy } from '../test/helpers/nginx-proxy.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values: flags } = parseArgs({
  options: {
    database: { type: 'string', default: process.env.SLIPWAY_BENCH_POSTGRES_URL ?? '' },
    'blob-mib': { type: 'string', default: '64' },
    'chunk-mib': { type: 'string', default: '8' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '16' },
    repeat: { type: 'string', default: '1' },
    auth: { type: 'string', default: 'basic,bearer' },
    results: { type: 'string', default: path.join(repoRoot, 'bench', 'results-replicas.md') },
  },
});
const blobBytes = Number(flags['blob-mib']) * 1024 * 1024;
const chunkBytes = Number(flags['chunk-mib']) * 1024 * 1024;
const seconds = Number(flags.seconds);
const connections = Number(flags.connections);
const repeat = Number(flags.repeat);
const credentialModes = flags.auth.split(',').map((mode) => mode.trim());
for (const mode of credentialModes) if (mode !== 'basic' && mode !== 'bearer') throw new Error(`--auth takes basic and/or bearer, not ${mode}`);
const repo = 'bench/replicas';
const adminPassword = 'bench-admin-password';
const basic = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;
const manifestType = imageManifestType;
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
const request = (method: string, url: string, options: Omit<RequestOptions, 'agent'> = {}): Promise<Response> => send(method, url, { ...options, agent });
const startS3rver = () => startS3rverChild(async (endpoint) => (await request('GET', `${endpoint}/`)).status > 0);

interface Peer {
  name: string;
  /** nginx in front of the replicas. */
  base: string;
  replicas: ChildProcess[];
  nginx: NginxProxy;
  database: string;
}

// ---------------------------------------------------------------- processes and cleanup

const databases: string[] = [];

/** A fresh database on the server of `--database`; dropped at the end. */
async function createDatabase(): Promise<string> {
  const name = `bench_replicas_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: flags.database });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  databases.push(name);
  const url = new URL(flags.database);
  url.pathname = `/${name}`;
  return url.toString();
}

async function dropDatabases(): Promise<void> {
  const admin = new pg.Client({ connectionString: flags.database });
  await admin.connect();
  try {
    for (const name of databases.splice(0)) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
  } finally {
    await admin.end();
  }
}


/** Every replica started, so a failed run can show what their logs said. */
const startedReplicas: Array<{ child: ChildProcess; host: string }> = [];

/** A replica of a peer: its own data folder; database, bucket and vault master key shared. */
async function startReplica(dir: string, database: string, s3: string, masterKey: string): Promise<{ child: ChildProcess; host: string }> {
  const port = await freePort();
  const config = path.join(dir, 'slipway.yaml');
  const partSize = Math.max(5 * 1024 * 1024, chunkBytes);
  writeFileSync(config, `log: {level: warn, requests: false}\nregistry: {gc: {interval: 0}}\nauth: {enabled: true, adminPassword: ${adminPassword}}\nfunctions: {enabled: false}\n`
    + `vault: {masterKey: "${masterKey}"}\ndatabase: "${database}"\n`
    + `storage: {driver: s3, s3: {endpoint: "${s3}", bucket: bench, forcePathStyle: true, accessKeyId: S3RVER, secretAccessKey: S3RVER, partSize: ${partSize}}}\n`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('SLIPWAY_')));
  const child = startChild(process.execPath, [path.join(repoRoot, 'bin/slipway.js'), 'serve', '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'data'), '--config', config], env);
  await waitFor(async () => (await request('GET', `http://127.0.0.1:${port}/v2/`, { headers: { Authorization: basic } })).status === 200, `replica on ${port}`, 60_000);
  startedReplicas.push({ child, host: `127.0.0.1:${port}` });
  return { child, host: `127.0.0.1:${port}` };
}

/** nginx in front of the replicas: round robin, keep-alive to them, bodies streamed both ways. */
async function startNginx(upstreams: string[]): Promise<NginxProxy> {
  const nginx = await startNginxProxy({
    upstreams, workerConnections: 1024, upstreamKeepalive: 64, streamBodies: true, clientMaxBodySize: '0',
    parentDir: tempDir('bench-nginx-'), spawn: (command, args) => startChild(command, args),
  });
  await waitFor(async () => (await request('GET', `${nginx.url}/v2/`, { headers: { Authorization: basic } })).status === 200, 'nginx', 60_000);
  return nginx;
}

async function startPeer(name: string, count: number, s3: string): Promise<Peer> {
  const database = await createDatabase();
  const masterKey = randomBytes(32).toString('hex');
  const replicas: Array<{ child: ChildProcess; host: string }> = [];
  // One after the other: the first applies the migrations.
  for (let i = 0; i < count; i++) replicas.push(await startReplica(tempDir(`bench-replica-${i}-`), database, s3, masterKey));
  const nginx = await startNginx(replicas.map((replica) => replica.host));
  return { name, base: nginx.url, replicas: replicas.map((replica) => replica.child), nginx, database };
}

async function stop(peer: Peer): Promise<void> {
  await peer.nginx.stop();
  for (const child of peer.replicas) await stopChild(child);
}

// ---------------------------------------------------------------- credentials

/** `request` with an Authorization header on every request. */
function authorized(authorization: () => Promise<string>): Send {
  return async (method, url, options = {}) => request(method, url, { ...options, headers: { ...options.headers, Authorization: await authorization() } });
}

/**
 * A registry token as docker and skopeo get one: an anonymous GET /v2/, the realm and service
 * of its `WWW-Authenticate: Bearer` challenge, Basic credentials there; the token is reused
 * until 30 s before it expires (one fetch in flight at a time).
 */
async function bearerToken(base: string): Promise<() => Promise<string>> {
  const challenge = expect(await request('GET', `${base}/v2/`), 401, 'anonymous GET /v2/');
  const header = String(challenge.headers['www-authenticate'] ?? '');
  const params = Object.fromEntries([...header.matchAll(/(\w+)="([^"]*)"/g)].map((match) => [match[1]!, match[2]!]));
  if (!header.startsWith('Bearer ') || !params.realm) throw new Error(`no Bearer challenge from ${base}/v2/: ${header}`);
  const realm = new URL(params.realm);
  if (params.service) realm.searchParams.set('service', params.service);
  realm.searchParams.set('scope', `repository:${repo}:pull,push`);
  let token: Promise<string> | undefined;
  let renewAt = 0;
  const fetchToken = async () => {
    const issued = JSON.parse(expect(await request('GET', realm.toString(), { headers: { Authorization: basic } }), 200, 'token').body.toString('utf8')) as { token: string; expires_in: number };
    renewAt = Date.now() + Math.max(issued.expires_in - 30, 1) * 1000;
    return `Bearer ${issued.token}`;
  };
  return () => {
    if (!token || Date.now() >= renewAt) {
      renewAt = Infinity; // until this fetch answers
      token = fetchToken();
    }
    return token;
  };
}

async function credentials(mode: string, peer: Peer): Promise<Send> {
  if (mode === 'basic') return authorized(async () => basic);
  return authorized(await bearerToken(peer.base));
}

// ---------------------------------------------------------------- the client (bench/blob-http.ts)

const pushMonolithic = (send: Send, peer: Peer, data: Buffer) => pushWhole(send, peer.base, repo, data);
const pushChunked = (send: Send, peer: Peer, data: Buffer) => pushInChunks(send, peer.base, repo, data, chunkBytes);

// ---------------------------------------------------------------- rows

interface Cell {
  value: number;
  /** CPU seconds of all the peer's replicas during the row (per request for req/s rows). */
  cpu: number;
}

function measureCpu(peer: Peer): () => number {
  const total = () => peer.replicas.reduce((sum, child) => sum + cpuSeconds(child.pid!), 0);
  const before = total();
  return () => total() - before;
}

/** Median of `repeat` timed transfers of `connections` parallel clients each, in MB/s. */
async function throughput(peer: Peer, bytes: number, once: (client: number) => Promise<void>): Promise<Cell> {
  const runs: Cell[] = [];
  for (let index = 0; index < repeat; index++) {
    const cpu = measureCpu(peer);
    const started = process.hrtime.bigint();
    // Parallel clients: one replica serves one stream at a time as well as two do.
    const parallel = Math.min(connections, 4);
    await Promise.all(Array.from({ length: parallel }, (_, client) => once(client)));
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    runs.push({ value: (bytes * parallel) / 1e6 / elapsed, cpu: cpu() });
  }
  runs.sort((a, b) => a.value - b.value);
  return runs[Math.floor(runs.length / 2)]!;
}

async function rate(peer: Peer, once: (index: number) => Promise<void>): Promise<Cell> {
  let count = 0;
  const cpu = measureCpu(peer);
  const started = Date.now();
  const until = started + seconds * 1000;
  await Promise.all(Array.from({ length: connections }, async () => {
    while (Date.now() < until) await once(count++);
  }));
  const elapsed = (Date.now() - started) / 1000;
  return { value: count / elapsed, cpu: cpu() / count };
}

const manifest = imageManifest;

interface Row { label: string; unit: 'MB/s' | 'req/s'; cells: Map<string, Cell> }

/** The rows against one peer, every request with `mode`'s credentials. */
async function benchPeer(peer: Peer, mode: string, blobs: Buffer[], rows: Row[]): Promise<void> {
  const call = await credentials(mode, peer);
  const row = (label: string, unit: Row['unit']) => {
    label = `${mode === 'basic' ? 'Basic' : 'Bearer'} · ${label}`;
    let found = rows.find((r) => r.label === label);
    if (!found) rows.push(found = { label, unit, cells: new Map() });
    return found;
  };
  const mib = `${flags['blob-mib']} MiB × ${blobs.length} clients`;
  // A fresh blob per push: content-addressed stores skip a blob they already hold.
  const fresh = (client: number) => { blobs[client]!.writeUInt32BE(Math.floor(Math.random() * 2 ** 32), 0); return blobs[client]!; };
  row(`blob push, monolithic ${mib}`, 'MB/s').cells.set(peer.name, await throughput(peer, blobBytes, (client) => pushMonolithic(call, peer, fresh(client))));
  row(`blob push, chunked (${flags['chunk-mib']} MiB PATCHes) ${mib}`, 'MB/s').cells.set(peer.name, await throughput(peer, blobBytes, (client) => pushChunked(call, peer, fresh(client))));
  const digests = blobs.map((blob) => sha256(blob));
  row(`blob pull ${mib}`, 'MB/s').cells.set(peer.name, await throughput(peer, blobBytes, async (client) => {
    const pulled = expect(await call('GET', `${peer.base}/v2/${repo}/blobs/${digests[client]}`, { discard: true }), 200, 'GET blob');
    if (pulled.bytes !== blobBytes) throw new Error('short pull');
  }));
  const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
  const layer = Buffer.alloc(4096, 7);
  await pushMonolithic(call, peer, config);
  await pushMonolithic(call, peer, layer);
  const refs = { config: { digest: sha256(config), size: config.length }, layer: { digest: sha256(layer), size: layer.length } };
  row(`manifest PUT (${connections} clients)`, 'req/s').cells.set(peer.name, await rate(peer, async (index) => {
    const body = manifest(refs.config, refs.layer, index);
    expect(await call('PUT', `${peer.base}/v2/${repo}/manifests/t${index % 50}`, { headers: { 'Content-Type': manifestType, 'Content-Length': body.length }, body: [body] }), 201, 'manifest PUT');
  }));
  const body = manifest(refs.config, refs.layer, -1);
  expect(await call('PUT', `${peer.base}/v2/${repo}/manifests/${sha256(body)}`, { headers: { 'Content-Type': manifestType, 'Content-Length': body.length }, body: [body] }), 201, 'manifest PUT');
  row(`manifest GET by digest (${connections} clients)`, 'req/s').cells.set(peer.name, await rate(peer, async () => {
    expect(await call('GET', `${peer.base}/v2/${repo}/manifests/${sha256(body)}`, { headers: { Accept: manifestType }, discard: true }), 200, 'manifest GET');
  }));
}

// ---------------------------------------------------------------- main

function format(cell: Cell | undefined, unit: Row['unit']): string {
  if (!cell) return '—';
  return `${cell.value.toFixed(0)} ${unit}`;
}

function cpuText(cell: Cell | undefined, unit: Row['unit'], bytes: number): string {
  if (!cell) return '—';
  return unit === 'MB/s' ? `${(cell.cpu * (1024 ** 3 / bytes)).toFixed(2)} s/GiB` : `${(cell.cpu * 1e6).toFixed(0)} µs/req`;
}

async function main(): Promise<void> {
  if (!flags.database) throw new Error('--database postgres://… (or SLIPWAY_BENCH_POSTGRES_URL) is required: replicas share PostgreSQL');
  const parallel = Math.min(connections, 4);
  const blobs = Array.from({ length: parallel }, () => randomFillSync(Buffer.allocUnsafe(blobBytes)));
  const rows: Row[] = [];
  const s3 = await startS3rver();
  try {
    // One peer at a time, each on a fresh database, the same s3rver (repositories are apart by digest anyway).
    for (const [name, count] of [['one replica', 1], ['two replicas', 2]] as const) {
      process.stderr.write(`bench: ${name}\n`);
      const peer = await startPeer(name, count, s3.endpoint);
      try {
        for (const mode of credentialModes) await benchPeer(peer, mode, blobs, rows);
      } finally {
        await stop(peer);
      }
    }
  } finally {
    s3.child.kill('SIGKILL');
    await dropDatabases();
  }
  const bytes = blobBytes * parallel; // what one timed transfer row moved
  const lines = [
    '# Replicas benchmark: one Slipway replica vs two, behind nginx, on PostgreSQL and S3 (s3rver)',
    '',
    `${new Date().toISOString()} · ${os.cpus().length} cores · node ${process.version} · blob ${flags['blob-mib']} MiB, chunks ${flags['chunk-mib']} MiB, ${parallel} parallel transfers, ${repeat} run(s) (median) · request rows ${seconds} s, ${connections} clients · access control on, credentials on every request: Basic = the admin's password, Bearer = a registry token from the realm of the 401 challenge · MB = 10^6 bytes · CPU = utime+stime of all replicas`,
    '',
    '| row | one replica | two replicas | two/one | CPU one | CPU two |',
    '|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const one = row.cells.get('one replica');
    const two = row.cells.get('two replicas');
    const ratio = one && two ? `${(two.value / one.value).toFixed(2)}×` : '—';
    lines.push(`| ${row.label} | ${format(one, row.unit)} | ${format(two, row.unit)} | ${ratio} | ${cpuText(one, row.unit, bytes)} | ${cpuText(two, row.unit, bytes)} |`);
  }
  const text = `${lines.join('\n')}\n`;
  process.stdout.write(text);
  writeFileSync(flags.results, text);
}

// process.exit runs bench-processes' exit hook: children killed, temp folders removed.
main().then(() => process.exit(0), (error) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`);
  // A 500 carries only a request id: the replicas' warn/error lines say what happened.
  for (const replica of startedReplicas) {
    const lines = outputTail(replica.child).split('\n').filter((line) => /"level":(40|50|60)/.test(line));
    if (lines.length > 0) process.stderr.write(`replica ${replica.host}:\n${lines.slice(-5).join('\n')}\n`);
  }
  process.exit(1);
});
