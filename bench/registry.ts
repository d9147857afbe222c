/**
 * @module bench/registry
 * Side-by-side registry benchmark: Slipway against CNCF Distribution (Debian `docker-registry`),
 * both started here as child processes on 127.0.0.1 with their own temp data folders.
 *
 * Slipway runs with access control on, and every request carries credentials the way clients
 * send them: HTTP basic (user + password) on every request — the path curl scripts, CI jobs and
 * several registry clients take — and, side by side on the request rows, a bearer token from the
 * token endpoint. Distribution runs without auth (it pays nothing for it: the stricter peer).
 *
 * Throughput rows (1 GiB monolithic push, chunked push, pull) are driven by this process with
 * node:http and timed by wall clock; request rows (manifest GET by digest, manifest HEAD by
 * tag, 4 KiB blob GET) use wrk, or `ab -k -i` for HEAD, with 64 connections. Each registry's
 * CPU time (utime+stime from /proc/<pid>/stat) is read around every row. Prints a table and
 * writes it to bench/results.md. Env: BENCH_SECONDS (per request row, default 10),
 * BENCH_WARMUP (seconds, default 2), BENCH_BLOB_MIB (default 1024), BENCH_REPEAT (throughput runs per
 * registry, median kept; default 3), BENCH_PREWARM=0 (skip the page-cache pre-warm, see below),
 * BENCH_SLIPWAY_NODE_FLAGS (node flags for the Slipway process; when unset it runs bin/slipway.js
 * directly, as users do, with the flags of its #! line),
 * BENCH_RESULTS (markdown output path, default bench/results.md).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, freePort } from './host.js';
import { expect, nextUrl, pieces, request as send, sha256, type RequestOptions, type Response } from './blob-http.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const warmup = Number(process.env.BENCH_WARMUP ?? 2);
const blobBytes = Number(process.env.BENCH_BLOB_MIB ?? 1024) * 1024 * 1024;
const repeat = Number(process.env.BENCH_REPEAT ?? 3);
const prewarm = process.env.BENCH_PREWARM !== '0';
const chunkBytes = 16 * 1024 * 1024;
const connections = 64;
const deadlineMs = 6 * 60_000;
const repo = 'bench/app';
const manifestType = 'application/vnd.oci.image.manifest.v1+json';
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
/** One request on this bench's keep-alive agent. */
const request = (method: string, url: string, options: Omit<RequestOptions, 'agent'> = {}): Promise<Response> => send(method, url, { ...options, agent });

interface Registry {
  name: string;
  base: string;
  child: ChildProcess;
  /** `Authorization` header value sent with every request, if any. */
  auth?: string;
}

const benchUser = 'ci-bench';
const benchPassword = 'bench-Pa55word-for-ci';
const adminPassword = 'bench-admin-Pa55word';

interface Cell {
  /** MB/s or requests/s. */
  value: number;
  p50?: number;
  p99?: number;
  /** Registry CPU seconds per GiB or per request. */
  cpu: number;
  note?: string;
}

interface Row {
  label: string;
  unit: 'MB/s' | 'req/s';
  target: number;
  cells: Cell[];
}

// ---------------------------------------------------------------- processes and cleanup

const children: ChildProcess[] = [];
const tempDirs: string[] = [];

function cleanup(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.length = 0;
}

process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { cleanup(); process.exit(130); });

function startChild(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (data: Buffer) => { stderr = (stderr + data.toString()).slice(-4000); });
  child.on('exit', (code, signal) => {
    if (signal !== 'SIGKILL' && signal !== 'SIGTERM') process.stderr.write(`bench: ${command} exited (${code ?? signal}): ${stderr}\n`);
  });
  return child;
}

async function waitReady(base: string, ready = [200]): Promise<void> {
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    try {
      if (ready.includes((await request('GET', `${base}/v2/`)).status)) return;
    } catch { /* not listening yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${base} did not become ready`);
}

async function startSlipway(dir: string): Promise<Registry> {
  const port = await freePort();
  const config = path.join(dir, 'slipway.yaml');
  writeFileSync(config, `log: {level: warn, requests: false}\nregistry: {gc: {interval: 0}}\nauth: {enabled: true, adminPassword: ${adminPassword}, tokenTtl: 1h}\n`);
  const bin = path.join(repoRoot, 'bin/slipway.js');
  const nodeFlags = process.env.BENCH_SLIPWAY_NODE_FLAGS?.split(/\s+/).filter(Boolean);
  const [command, ...prefix] = nodeFlags ? [process.execPath, ...nodeFlags, bin] : [bin];
  const child = startChild(command!, [...prefix, 'serve', '--listen', `127.0.0.1:${port}`, '--data-dir', path.join(dir, 'data'), '--config', config]);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(base, [200, 401]);
  // A namespace with a contributor, as a team's CI would push with.
  const admin = basicAuth('admin', adminPassword);
  const api = async (method: string, url: string, body: unknown) => {
    const json = Buffer.from(JSON.stringify(body));
    return request(method, `${base}${url}`, { headers: { Authorization: admin, 'Content-Type': 'application/json', 'Content-Length': json.length }, body: [json] });
  };
  expect(await api('POST', '/api/v1/namespaces', { name: repo.split('/')[0] }), 201, 'create namespace');
  expect(await api('POST', '/api/v1/users', { name: benchUser, password: benchPassword }), 201, 'create user');
  expect(await api('PUT', `/api/v1/namespaces/${repo.split('/')[0]}/members/${benchUser}`, { role: 'contributor' }), 200, 'add member');
  return { name: 'Slipway', base, child, auth: basicAuth(benchUser, benchPassword) };
}

function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** A bearer token for `repo` from Slipway's token endpoint (the flow docker, podman and skopeo use). */
async function bearerToken(base: string): Promise<string> {
  const scope = encodeURIComponent(`repository:${repo}:pull,push`);
  const response = expect(await request('GET', `${base}/auth/token?service=slipway&scope=${scope}`, { headers: { Authorization: basicAuth(benchUser, benchPassword) } }), 200, 'token');
  return `Bearer ${JSON.parse(response.body.toString()).token as string}`;
}

async function startDistribution(dir: string): Promise<Registry> {
  const port = await freePort();
  const config = path.join(dir, 'distribution.yaml');
  writeFileSync(config, [
    'version: 0.1',
    'log: {level: warn, accesslog: {disabled: true}}',
    `storage: {filesystem: {rootdirectory: ${JSON.stringify(path.join(dir, 'data'))}}, delete: {enabled: true}, cache: {blobdescriptor: inmemory}}`,
    `http: {addr: "127.0.0.1:${port}"}`,
    '',
  ].join('\n'));
  const child = startChild('/usr/bin/docker-registry', ['serve', config]);
  const base = `http://127.0.0.1:${port}`;
  await waitReady(base);
  return { name: 'Distribution', base, child };
}

// ---------------------------------------------------------------- HTTP client (bench/blob-http.ts)

/** The registry's credentials (if any) added to `headers`. */
function withAuth(r: Registry, headers: Record<string, string | number> = {}): Record<string, string | number> {
  return r.auth ? { ...headers, Authorization: r.auth } : headers;
}

async function pushMonolithic(r: Registry, data: Buffer, digest: string): Promise<void> {
  const started = expect(await request('POST', `${r.base}/v2/${repo}/blobs/uploads/`, { headers: withAuth(r, { 'Content-Length': 0 }) }), 202, 'POST upload');
  expect(await request('PUT', nextUrl(r.base, started, digest), {
    headers: withAuth(r, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length }),
    body: pieces(data),
  }), 201, 'PUT blob');
}

async function pushChunked(r: Registry, data: Buffer, digest: string): Promise<void> {
  let response = expect(await request('POST', `${r.base}/v2/${repo}/blobs/uploads/`, { headers: withAuth(r, { 'Content-Length': 0 }) }), 202, 'POST upload');
  for (let start = 0; start < data.length; start += chunkBytes) {
    const end = Math.min(start + chunkBytes, data.length);
    response = expect(await request('PATCH', nextUrl(r.base, response), {
      headers: withAuth(r, { 'Content-Type': 'application/octet-stream', 'Content-Length': end - start, 'Content-Range': `${start}-${end - 1}` }),
      body: pieces(data, start, end),
    }), 202, 'PATCH chunk');
  }
  expect(await request('PUT', nextUrl(r.base, response, digest), { headers: withAuth(r, { 'Content-Length': 0 }) }), 201, 'PUT upload');
}

async function pull(r: Registry, digest: string): Promise<number> {
  return expect(await request('GET', `${r.base}/v2/${repo}/blobs/${digest}`, { headers: withAuth(r), discard: true }), 200, 'GET blob').bytes;
}

// ---------------------------------------------------------------- load generators

function run(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
    children.push(child);
  });
}

/** Milliseconds from wrk's `1.23ms` / `456.00us` / `1.01s`. */
function wrkDuration(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (!match) throw new Error(`cannot parse wrk duration ${text}`);
  return Number(match[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[match[2] as 'us' | 'ms' | 's' | 'm'];
}

interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  note?: string;
}

async function wrk(url: string, headers: string[], duration: number): Promise<LoadResult> {
  const args = ['-t2', `-c${connections}`, `-d${duration}s`, '--latency', ...headers.flatMap((h) => ['-H', h]), url];
  const out = await run('wrk', args, (duration + 30) * 1000);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const total = /(\d+) requests in/.exec(out);
  const p50 = /^\s+50%\s+(\S+)/m.exec(out);
  const p99 = /^\s+99%\s+(\S+)/m.exec(out);
  if (!rps || !total || !p50 || !p99) throw new Error(`cannot parse wrk output:\n${out}`);
  const errors = [/Non-2xx or 3xx responses: (\d+)/.exec(out), /Socket errors: .*/.exec(out)].filter(Boolean).map((m) => m![0]);
  return { rps: Number(rps[1]), p50: wrkDuration(p50[1]!), p99: wrkDuration(p99[1]!), requests: Number(total[1]), note: errors.join('; ') || undefined };
}

async function ab(url: string, headers: string[], duration: number): Promise<LoadResult> {
  // -t before -n: time-bounded, with a request cap far above what fits in the time.
  const args = ['-k', '-i', '-q', '-c', String(connections), '-t', String(duration), '-n', '100000000', '-s', '10', ...headers.flatMap((h) => ['-H', h]), url];
  const out = await run('ab', args, (duration + 30) * 1000);
  const rps = /Requests per second:\s+([\d.]+)/.exec(out);
  const total = /Complete requests:\s+(\d+)/.exec(out);
  const p50 = /^\s+50%\s+(\d+)/m.exec(out);
  const p99 = /^\s+99%\s+(\d+)/m.exec(out);
  if (!rps || !total || !p50 || !p99) throw new Error(`cannot parse ab output:\n${out}`);
  const failed = Number(/Failed requests:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const keepAlive = Number(/Keep-Alive requests:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const notes = [failed && `${failed} failed`, non2xx && `${non2xx} non-2xx`, keepAlive < Number(total[1]) && `${keepAlive} keep-alive`].filter(Boolean);
  return { rps: Number(rps[1]), p50: Number(p50[1]), p99: Number(p99[1]), requests: Number(total[1]), note: notes.join('; ') || undefined };
}

// ---------------------------------------------------------------- rows

/**
 * Runs `op` `repeat` times per registry, alternating registries, and keeps the median run.
 * `prepare` runs untimed before each measurement.
 */
async function throughputRow(label: string, registries: Registry[], target: number, prepare: () => Promise<void> | void, op: (r: Registry) => Promise<number>): Promise<Row> {
  const runs: Cell[][] = registries.map(() => []);
  for (let i = 0; i < repeat; i++) {
    for (const [index, registry] of registries.entries()) {
      await prepare();
      const cpu0 = cpuSeconds(registry.child.pid!);
      const t0 = process.hrtime.bigint();
      const bytes = await op(registry);
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = cpuSeconds(registry.child.pid!) - cpu0;
      runs[index]!.push({ value: bytes / wall / 1e6, cpu: cpu / (bytes / 2 ** 30) });
      log(`${label} ${registry.name}: ${(bytes / wall / 1e6).toFixed(0)} MB/s, ${cpu.toFixed(2)} s CPU`);
    }
  }
  const cells = runs.map((list) => {
    const sorted = [...list].sort((a, b) => a.value - b.value);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    return { ...median, note: list.map((c) => c.value.toFixed(0)).join(', ') };
  });
  return { label, unit: 'MB/s', target, cells };
}

async function loadRow(label: string, registries: Registry[], target: number, op: (r: Registry, duration: number) => Promise<LoadResult>): Promise<Row> {
  const cells: Cell[] = [];
  for (const registry of registries) {
    if (warmup > 0) await op(registry, warmup);
    const cpu0 = cpuSeconds(registry.child.pid!);
    const result = await op(registry, seconds);
    const cpu = cpuSeconds(registry.child.pid!) - cpu0;
    cells.push({ value: result.rps, p50: result.p50, p99: result.p99, cpu: cpu / result.requests, note: result.note });
    log(`${label} ${registry.name}: ${result.rps.toFixed(0)} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms${result.note ? ` (${result.note})` : ''}`);
  }
  return { label, unit: 'req/s', target, cells };
}

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

// ---------------------------------------------------------------- report

function formatTable(rows: Row[], hashRate: number): string {
  const ms = (v: number) => (v >= 10 ? v.toFixed(0) : v.toFixed(2));
  const lines = [
    '| row | Slipway, basic auth | Slipway, bearer | Distribution, no auth | basic/Distribution | target | basic/bearer (≥0.5×) | Slipway CPU (basic) | Distribution CPU |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    // Throughput rows: [basic, Distribution]; request rows: [basic, bearer, Distribution].
    const s = row.cells[0]!;
    const b = row.cells.length === 3 ? row.cells[1]! : undefined;
    const d = row.cells[row.cells.length - 1]!;
    const ratio = s.value / d.value;
    const cpuUnit = row.unit === 'MB/s' ? 's/GiB' : 'µs/req';
    const cpu = (c: Cell) => (row.unit === 'MB/s' ? c.cpu.toFixed(2) : (c.cpu * 1e6).toFixed(1)) + ` ${cpuUnit}`;
    const met = ratio >= row.target && (s.p99 === undefined || s.p99 <= d.p99!);
    const target = `≥${row.target}×${s.p99 === undefined ? '' : ', p99 ≤'} ${met ? 'met' : '**missed**'}`;
    const versusBearer = b ? `${(s.value / b.value).toFixed(2)}× ${s.value / b.value >= 0.5 ? 'met' : '**missed**'}` : '—';
    lines.push(`| ${row.label} | ${s.value.toFixed(0)} ${row.unit} | ${b ? `${b.value.toFixed(0)} ${row.unit}` : '—'} | ${d.value.toFixed(0)} ${row.unit} | ${ratio.toFixed(2)}× | ${target} | ${versusBearer} | ${cpu(s)} | ${cpu(d)} |`);
    if (s.p50 === undefined) {
      lines.push(`| ↳ all runs (MB/s), median above | ${s.note} | | ${d.note} | | | | | |`);
    } else {
      const latency = (c: Cell) => `${ms(c.p50!)} / ${ms(c.p99!)}`;
      const notes = row.cells.map((c) => c.note).filter(Boolean).join('; ');
      lines.push(`| ↳ p50 / p99 (ms) | ${latency(s)} | ${b ? latency(b) : ''} | ${latency(d)} | p99 ${(s.p99! / Math.max(d.p99!, 0.001)).toFixed(2)}× | | ${b ? `bearer CPU ${cpu(b)}` : ''} | ${notes} | |`);
    }
  }
  const push = rows[0]!.cells[0]!.value;
  lines.push('', `Node single-core sha256 (in memory, 16 MiB updates): ${hashRate.toFixed(0)} MB/s; Slipway monolithic push = ${(100 * push / hashRate).toFixed(0)}% of it.`);
  if (prewarm) {
    lines.push('', 'Before each push the bench writes and deletes a scratch file of the blob\'s size, so the registry writes into page-cache memory ' +
      'the guest has just used: on this VM, writing 1 GiB into memory the guest has not touched recently (or has handed back to the host) costs ' +
      'about 2 s of kernel CPU instead of 0.2 s. This narrows, but does not remove, the run-to-run spread of the push rows. BENCH_PREWARM=0 turns it off.');
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const deadline = setTimeout(() => {
    log(`deadline of ${deadlineMs / 1000} s exceeded; stopping`);
    cleanup();
    process.exit(1);
  }, deadlineMs);
  deadline.unref();

  const dir = mkdtempSync(path.join(os.tmpdir(), 'slipway-bench-'));
  tempDirs.push(dir);
  const slipwayDir = path.join(dir, 'slipway');
  const distributionDir = path.join(dir, 'distribution');
  mkdirSync(slipwayDir);
  mkdirSync(distributionDir);
  const registries = [await startSlipway(slipwayDir), await startDistribution(distributionDir)];
  log(`Slipway on ${registries[0]!.base} (pid ${registries[0]!.child.pid}), Distribution on ${registries[1]!.base} (pid ${registries[1]!.child.pid})`);

  // One in-memory random blob (the pushes change its first bytes).
  const data = Buffer.allocUnsafe(blobBytes);
  for (let at = 0; at < data.length; at += 64 * 1024 * 1024) randomFillSync(data, at, Math.min(64 * 1024 * 1024, data.length - at));

  const hashStart = process.hrtime.bigint();
  const hash = createHash('sha256');
  for (let at = 0; at < data.length; at += chunkBytes) hash.update(data.subarray(at, at + chunkBytes));
  hash.digest();
  const hashRate = data.length / (Number(process.hrtime.bigint() - hashStart) / 1e9) / 1e6;
  log(`sha256 in memory: ${hashRate.toFixed(0)} MB/s`);

  // Every push stores new content (a counter in the first bytes). Before each push, a scratch
  // file of the blob's size is written and deleted so that both registries write into page-cache
  // memory the guest already holds (see the note printed with the table).
  let pushes = 0;
  let digest = '';
  const freshContent = (): void => {
    data.writeUInt32BE(++pushes, 0);
    digest = sha256(data);
  };
  const prepare = (): void => {
    freshContent();
    if (!prewarm) return;
    const scratch = path.join(dir, 'prewarm');
    writeFileSync(scratch, data);
    rmSync(scratch);
  };
  const size = `${blobBytes / 2 ** 20 >= 1024 ? `${blobBytes / 2 ** 30} GiB` : `${blobBytes / 2 ** 20} MiB`}`;
  const pullable = new Map<Registry, string>();
  const rows: Row[] = [];
  rows.push(await throughputRow(`blob push, monolithic ${size}`, registries, 2, prepare, async (r) => {
    await pushMonolithic(r, data, digest);
    pullable.set(r, digest);
    return data.length;
  }));
  rows.push(await throughputRow(`blob push, chunked (${chunkBytes / 2 ** 20} MiB PATCHes) ${size}`, registries, 2, prepare, async (r) => {
    await pushChunked(r, data, digest);
    return data.length;
  }));
  rows.push(await throughputRow(`blob pull ${size}`, registries, 1, () => undefined, (r) => pull(r, pullable.get(r)!)));

  // A small image: config + one 4 KiB layer, tagged `latest`.
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
  const layer = data.subarray(4096, 8192);
  const configDigest = sha256(config);
  const layerDigest = sha256(layer);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: manifestType,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length }],
  }));
  const manifestDigest = sha256(manifest);
  for (const r of registries) {
    await pushMonolithic(r, config, configDigest);
    await pushMonolithic(r, layer, layerDigest);
    expect(await request('PUT', `${r.base}/v2/${repo}/manifests/latest`, { headers: withAuth(r, { 'Content-Type': manifestType, 'Content-Length': manifest.length }), body: [manifest] }), 201, 'PUT manifest');
  }
  // The same Slipway process once more, with a bearer token instead of basic: the request rows
  // show both, so the cost of basic auth is visible as a ratio.
  const [slipway, distribution] = registries as [Registry, Registry];
  const bearer: Registry = { ...slipway, name: 'Slipway (bearer)', auth: await bearerToken(slipway.base) };
  const requestTargets = [slipway, bearer, distribution];
  agent.destroy();

  const headers = (r: Registry, extra: string[] = []) => (r.auth ? [...extra, `Authorization: ${r.auth}`] : extra);
  const accept = [`Accept: ${manifestType}`];
  rows.push(await loadRow('manifest GET by digest (wrk, 64 conns)', requestTargets, 1.5, (r, d) => wrk(`${r.base}/v2/${repo}/manifests/${manifestDigest}`, headers(r, accept), d)));
  rows.push(await loadRow('manifest HEAD by tag (ab -k, 64 conns)', requestTargets, 1.5, (r, d) => ab(`${r.base}/v2/${repo}/manifests/latest`, headers(r, accept), d)));
  rows.push(await loadRow('4 KiB blob GET (wrk, 64 conns)', requestTargets, 1.5, (r, d) => wrk(`${r.base}/v2/${repo}/blobs/${layerDigest}`, headers(r), d)));

  const table = formatTable(rows, hashRate);
  const header = `# Registry benchmark: Slipway (with credentials on every request) vs CNCF Distribution\n\n${new Date().toISOString()} · ${os.cpus().length} cores · node ${process.version} · ` +
    `request rows ${seconds} s each after ${warmup} s warm-up, ${connections} connections · MB = 10^6 bytes · CPU = registry process utime+stime` +
    `${process.env.BENCH_SLIPWAY_NODE_FLAGS ? ` · Slipway node flags: ${process.env.BENCH_SLIPWAY_NODE_FLAGS}` : ''}\n\n`;
  process.stdout.write(`\n${table}\n`);
  const results = process.env.BENCH_RESULTS ?? path.join(repoRoot, 'bench/results.md');
  writeFileSync(results, `${header}${table}\n`);
  log(`wrote ${results}`);
}

main().then(() => { cleanup(); process.exit(0); }, (error: unknown) => {
  log(`failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  cleanup();
  process.exit(1);
});
