/**
 * @module bench/builds
 * Side-by-side build benchmark (issue 4): a small Node.js function image built and pushed
 * through Slipway (`POST /api/v1/namespaces/{ns}/images?wait=true`, what `slipway build` does)
 * and with plain `buildah bud` + `buildah push` of the same context, into the same registry.
 *
 * Slipway runs in this process (`startServer`: temp data folder, access control on with an
 * admin password, a buildah store of its own) on 127.0.0.1; the offline Node base image
 * (`assembleNodeRootfs` + `importBaseImage`) is imported into it once, untimed. The plain side
 * has a separate buildah store, so both start equally cold. Both sides log in with the same
 * kind of credential: one API key of the admin, made once (the Slipway request sends it as a
 * bearer, as the CLI does; plain buildah gets it as `--creds admin:<key>`, as Slipway's own
 * builds do), so neither pays scrypt password checks per request.
 *
 * Rows, per repetition: cold (both stores emptied with `buildah rm --all` + `rmi --all
 * --force`: nothing local, the base image is pulled from Slipway's registry by both),
 * unchanged rebuild (layer cache), one-file-changed rebuild (index.js edited). Slipway's time is
 * the wall clock of the HTTP request (upload, queueing, build, push, answer); the plain time
 * is bud + push. The order of Slipway and plain alternates per repetition. Prints a markdown
 * table (median of BENCH_REPEAT runs, all runs listed) with Slipway's phase split and where its
 * extra time goes, and writes it to bench/results-builds.md.
 *
 * Env: BENCH_REPEAT (runs per row and side, median kept; default 3), BENCH_RESULTS (markdown
 * output path, default bench/results-builds.md), BENCH_VERBOSE=1 (buildah's output and Slipway's
 * build logs to stderr).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadConfig } from '../src/config/config.js';
import { startServer, type RunningServer } from '../src/main.js';
import { BuildahDriver } from '../src/builds/buildah-driver.js';
import { assembleNodeRootfs, importBaseImage } from '../src/builds/base-image.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const repeat = Number(process.env.BENCH_REPEAT ?? 3);
const deadlineMs = 30 * 60_000;
const target = 0.10;
const adminPassword = 'bench-builds-Pa55word';
const namespace = 'bench';
const storageDriver = 'overlay';
const verbose = process.env.BENCH_VERBOSE === '1';

interface Side {
  name: 'Slipway' | 'buildah';
  root: string;
  runRoot: string;
}

/** One timed build; all times in ms. */
interface Run {
  wall: number;
  /** Slipway: `phases.build` (buildah bud); plain: the bud. */
  build: number;
  /** Slipway: `phases.push`; plain: the push. */
  push: number;
  /** Slipway only: the parts of the wall time outside bud and push. */
  parts?: Parts;
}

/** Slipway's time outside bud and push, from the build record's timestamps and phases. */
interface Parts {
  /** Request start → build recorded (upload, tar.gz extraction, auth, insert, enqueue). */
  submit: number;
  /** Recorded → a worker started it (queue claim). */
  queue: number;
  /** Started → driver called + driver returned → finished (per-build key, log, base resolution, status writes). */
  service: number;
  /** Inside `phases.total`, outside bud and push (FROM resolution, temp folder, auth file, registries.conf, `buildah containers`, clean-up). */
  driver: number;
  /** Finished → response received (wake-up of the waiting request, answer). */
  answer: number;
}

interface Row {
  label: string;
  slipway: Run[];
  plain: Run[];
}

// ---------------------------------------------------------------- processes and cleanup

const children = new Set<ChildProcess>();
let workDir: string | undefined;
let server: RunningServer | undefined;
const stores: Side[] = [];

function log(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return text.split('\n').map((line) => unescape(line.split(' ')[4] ?? ''))
    .filter((point) => point === dir || point.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}

function buildahSync(side: Side, args: string[]): void {
  spawnSync('buildah', [...globalArgs(side), ...args], { stdio: 'ignore', timeout: 120_000 });
}

/** Synchronous, idempotent: kills our children, empties both stores, unmounts and removes the temp folder. */
function cleanupSync(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null && child.pid) {
    try { process.kill(-child.pid, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
  }
  children.clear();
  for (const side of stores.splice(0)) {
    buildahSync(side, ['rm', '--all']);
    buildahSync(side, ['rmi', '--all', '--force']);
  }
  if (!workDir) return;
  for (const point of mountsUnder(workDir)) spawnSync('umount', ['-l', point], { stdio: 'ignore', timeout: 30_000 });
  if (mountsUnder(workDir).length === 0) rmSync(workDir, { recursive: true, force: true });
  else log(`could not unmount everything under ${workDir}; left in place`);
  workDir = undefined;
}

async function cleanup(): Promise<void> {
  const running = server;
  server = undefined;
  if (running) {
    await Promise.race([running.close(), new Promise((resolve) => setTimeout(resolve, 30_000).unref())]).catch((error: unknown) => log(`server close: ${String(error)}`));
  }
  cleanupSync();
}

process.on('exit', cleanupSync);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { void cleanup().finally(() => process.exit(130)); });

function globalArgs(side: Side): string[] {
  return ['--root', side.root, '--runroot', side.runRoot, '--storage-driver', storageDriver];
}

/** Runs a command; its output is read (and dropped but for the tail, for errors). Resolves with the time it took. */
function run(command: string, args: string[], options: { timeoutMs?: number; capture?: boolean } = {}): Promise<{ ms: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.add(child);
    let tail = '';
    let stdout = '';
    child.stdout!.on('data', (data: Buffer) => {
      if (options.capture) stdout += data.toString();
      else tail = (tail + data.toString()).slice(-4000);
      if (verbose && !options.capture) process.stderr.write(data);
    });
    child.stderr!.on('data', (data: Buffer) => {
      tail = (tail + data.toString()).slice(-4000);
      if (verbose) process.stderr.write(data);
    });
    const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, options.timeoutMs ?? 10 * 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code === 0) resolve({ ms, stdout });
      else reject(new Error(`${command} ${args.join(' ')} failed (${code ?? signal}):\n${tail}`));
    });
  });
}

// ---------------------------------------------------------------- the function

const dockerfile = (host: string) => [
  `FROM ${host}/slipway/node-base:latest`,
  'WORKDIR /app',
  'COPY package.json .',
  // Deterministic work standing in for `npm install` (~1 s): a sha256 chain written as a dependency.
  `RUN node -e "const c=require('crypto'),fs=require('fs');let h=Buffer.alloc(32);for(let i=0;i<400000;i++)h=c.createHash('sha256').update(h).digest();fs.mkdirSync('node_modules/dep',{recursive:true});fs.writeFileSync('node_modules/dep/index.js','module.exports='+JSON.stringify(h.toString('hex')))"`,
  'COPY . .',
  'CMD ["node","index.js"]',
  '',
].join('\n');

const packageJson = JSON.stringify({ name: 'bench-fn', version: '1.0.0', private: true, main: 'index.js' }, null, 2) + '\n';

const indexJs = (version: string) => [
  "'use strict';",
  "const http = require('node:http');",
  "const dep = require('dep');",
  `const version = ${JSON.stringify(version)};`,
  'http.createServer((req, res) => {',
  "  if (req.method !== 'POST' || req.url !== '/invoke') { res.writeHead(404).end(); return; }",
  '  const chunks = [];',
  "  req.on('data', (c) => chunks.push(c));",
  "  req.on('end', () => {",
  "    res.writeHead(200, { 'content-type': 'application/json' });",
  '    res.end(JSON.stringify({ version, dep, echo: Buffer.concat(chunks).toString() }));',
  '  });',
  "}).listen(8000, '0.0.0.0');",
  '',
].join('\n');

// ---------------------------------------------------------------- API

interface BuildBody {
  status?: string;
  id?: string;
  errorMessage?: string;
  phases?: Record<string, number>;
  createdAt?: string;
  startedAt?: string | null;
  finishedAt?: string | null;
}

async function api(base: string, auth: string, method: string, url: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${base}${url}`, {
    method,
    headers: { authorization: auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json: Record<string, unknown>;
  try { json = JSON.parse(text) as Record<string, unknown>; } catch { json = { text }; }
  return { status: response.status, body: json };
}

// ---------------------------------------------------------------- statistics and report

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** The run whose wall time is the median one. */
function medianRun(runs: Run[]): Run {
  const sorted = [...runs].sort((a, b) => a.wall - b.wall);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const s = (ms: number) => (ms / 1000).toFixed(2);
const signedMs = (ms: number) => `${ms >= 0 ? '+' : '−'}${Math.abs(ms).toFixed(0)}`;

function formatTable(rows: Row[]): string {
  const lines = [
    '| row | Slipway (s) | buildah (s) | Slipway/buildah | overhead | target |',
    '|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const sm = medianRun(row.slipway);
    const pm = medianRun(row.plain);
    const ratio = sm.wall / pm.wall;
    const overhead = ratio - 1;
    const met = overhead <= target;
    lines.push(`| ${row.label} | ${s(sm.wall)} | ${s(pm.wall)} | ${ratio.toFixed(2)}× | ${overhead >= 0 ? '+' : '−'}${Math.abs(overhead * 100).toFixed(1)} % | ≤ ${target * 100} % ${met ? 'met' : '**missed**'} |`);
    lines.push(`| ↳ all runs (s), median above | ${row.slipway.map((r) => s(r.wall)).join(', ')} | ${row.plain.map((r) => s(r.wall)).join(', ')} | | | |`);
    lines.push(`| ↳ split (s): bud / push / rest | ${s(sm.build)} / ${s(sm.push)} / ${s(sm.wall - sm.build - sm.push)} | ${s(pm.build)} / ${s(pm.push)} / ${s(pm.wall - pm.build - pm.push)} | | | |`);
  }

  lines.push('', '**Where Slipway\'s extra time goes** (median over all runs of each part, ms; Δ = Slipway − buildah, per run pair of the same repetition):', '',
    '| row | submit (upload, extract, enqueue) | queue claim | service (key, log, status writes) | setup/clean-up inside phases.total | answer | Δ bud | Δ push | Δ total |',
    '|---|---|---|---|---|---|---|---|---|');
  for (const row of rows) {
    const parts = row.slipway.map((r) => r.parts!);
    const pick = (key: keyof Parts) => median(parts.map((p) => p[key])).toFixed(0);
    const delta = (key: 'build' | 'push' | 'wall') => signedMs(median(row.slipway.map((r, i) => r[key] - row.plain[i]![key])));
    lines.push(`| ${row.label} | ${pick('submit')} | ${pick('queue')} | ${pick('service')} | ${pick('driver')} | ${pick('answer')} | ${delta('build')} | ${delta('push')} | ${delta('wall')} |`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const deadline = setTimeout(() => {
    log(`deadline of ${deadlineMs / 1000} s exceeded; stopping`);
    void cleanup().finally(() => process.exit(1));
  }, deadlineMs);
  deadline.unref();

  const buildahVersion = (await run('buildah', ['--version'], { capture: true })).stdout.trim();
  workDir = mkdtempSync(path.join(os.tmpdir(), 'slipway-bench-builds-'));
  const dir = workDir;
  const slipwaySide: Side = { name: 'Slipway', root: path.join(dir, 'slipway/storage'), runRoot: path.join(dir, 'slipway/runroot') };
  const plainSide: Side = { name: 'buildah', root: path.join(dir, 'plain/storage'), runRoot: path.join(dir, 'plain/runroot') };
  stores.push(slipwaySide, plainSide);
  for (const side of stores) mkdirSync(side.root, { recursive: true });

  // Slipway in this process, with access control and a buildah store of its own.
  const config = loadConfig({
    flags: {
      listen: '127.0.0.1:0',
      dataDir: path.join(dir, 'slipway/data'),
      log: { level: 'warn', requests: false },
      auth: { enabled: true, adminPassword },
      registry: { gc: { interval: 0 } },
      builds: { concurrency: 1, buildah: { storageRoot: slipwaySide.root, runRoot: slipwaySide.runRoot, storageDriver } },
    },
  });
  server = await startServer(config, { logger: pino({ level: 'warn' }, pino.destination(2)) });
  const base = server.url;
  const host = new URL(base).host;
  log(`Slipway on ${base}; ${buildahVersion}; storage driver ${storageDriver}; ${repeat} repetitions`);

  const basic = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;
  const ns = await api(base, basic, 'POST', '/api/v1/namespaces', { name: namespace });
  if (ns.status !== 201) throw new Error(`creating namespace ${namespace}: HTTP ${ns.status} ${JSON.stringify(ns.body)}`);
  const keyAnswer = await api(base, basic, 'POST', '/api/v1/keys', { name: 'bench-builds', scopes: ['*'] });
  if (keyAnswer.status !== 201) throw new Error(`creating an API key: HTTP ${keyAnswer.status} ${JSON.stringify(keyAnswer.body)}`);
  const apiKey = keyAnswer.body.key as string;
  const bearer = `Bearer ${apiKey}`;

  // The offline Node base image, once, untimed.
  const slipwayDriver = new BuildahDriver({ storage: { root: slipwaySide.root, runRoot: slipwaySide.runRoot, driver: storageDriver }, tmpDir: path.join(dir, 'tmp') });
  const rootfs = path.join(dir, 'rootfs');
  await assembleNodeRootfs(rootfs);
  const importStarted = Date.now();
  const imported = await importBaseImage({
    source: { rootfsDir: rootfs }, destination: `${host}/slipway/node-base:latest`,
    registryAuth: { username: 'admin', password: apiKey }, insecureRegistries: [host], driver: slipwayDriver,
  }, () => undefined);
  rmSync(rootfs, { recursive: true, force: true });
  log(`imported ${host}/slipway/node-base:latest ${imported.digest} in ${Date.now() - importStarted} ms`);

  // The function's context (the Dockerfile stays outside it, so both contexts hold the same files).
  const context = path.join(dir, 'context');
  mkdirSync(context);
  const dockerfilePath = path.join(dir, 'Dockerfile');
  writeFileSync(dockerfilePath, dockerfile(host));
  writeFileSync(path.join(context, 'package.json'), packageJson);
  const archive = path.join(dir, 'context.tar.gz');
  const setIndex = (version: string) => writeFileSync(path.join(context, 'index.js'), indexJs(version));

  const plainImage = `${host}/${namespace}/plain-fn:latest`;
  const creds = `admin:${apiKey}`;

  const slipwayBuild = async (): Promise<Run> => {
    // What `slipway build` sends: the Dockerfile and a tar.gz of the context (packed before the clock starts).
    await run('tar', ['-czf', archive, '-C', context, '.']);
    const form = new FormData();
    form.set('component', 'fn');
    form.set('branch', 'main');
    form.set('architecture', 'linux/amd64');
    form.set('tag', 'latest');
    form.set('dockerfile', new Blob([readFileSync(dockerfilePath)]), 'Dockerfile');
    form.set('context', new Blob([readFileSync(archive)]), 'context.tar.gz');
    const t0 = Date.now();
    const started = process.hrtime.bigint();
    const response = await fetch(`${base}/api/v1/namespaces/${namespace}/images?wait=true`, { method: 'POST', headers: { authorization: bearer }, body: form });
    const body = await response.json() as BuildBody;
    const wall = Number(process.hrtime.bigint() - started) / 1e6;
    const t1 = Date.now();
    if (response.status !== 200 || body.status !== 'succeeded') {
      let logText = '';
      if (body.id) logText = await (await fetch(`${base}/api/v1/namespaces/${namespace}/builds/${body.id}/logs`, { headers: { authorization: bearer } })).text();
      throw new Error(`Slipway build: HTTP ${response.status} ${JSON.stringify(body)}\n${logText.slice(-3000)}`);
    }
    if (verbose) process.stderr.write(await (await fetch(`${base}/api/v1/namespaces/${namespace}/builds/${body.id}/logs`, { headers: { authorization: bearer } })).text());
    const phases = body.phases ?? {};
    const build = phases.build ?? 0;
    const push = phases.push ?? 0;
    const total = phases.total ?? build + push;
    const created = Date.parse(body.createdAt!);
    const startedAt = Date.parse(body.startedAt!);
    const finished = Date.parse(body.finishedAt!);
    const parts: Parts = {
      submit: created - t0,
      queue: startedAt - created,
      service: finished - startedAt - total,
      driver: total - build - push,
      answer: t1 - finished,
    };
    return { wall, build, push, parts };
  };

  const plainBuild = async (): Promise<Run> => {
    const started = process.hrtime.bigint();
    const bud = await run('buildah', [...globalArgs(plainSide), 'bud', '--isolation', 'chroot', '--layers', '--tls-verify=false', '--creds', creds, '-f', dockerfilePath, '-t', plainImage, context]);
    const push = await run('buildah', [...globalArgs(plainSide), 'push', '--tls-verify=false', '--creds', creds, plainImage, `docker://${plainImage}`]);
    const wall = Number(process.hrtime.bigint() - started) / 1e6;
    return { wall, build: bud.ms, push: push.ms };
  };

  const resetStores = async () => {
    for (const side of [slipwaySide, plainSide]) {
      await run('buildah', [...globalArgs(side), 'rm', '--all']);
      await run('buildah', [...globalArgs(side), 'rmi', '--all', '--force']);
      const left = (await run('buildah', [...globalArgs(side), 'images', '--all', '--quiet'], { capture: true })).stdout.trim();
      if (left) throw new Error(`the ${side.name} store still holds images after rmi --all: ${left.split('\n').length}`);
    }
  };

  const rows: Row[] = [
    { label: 'cold build (empty stores, base pulled by both)', slipway: [], plain: [] },
    { label: 'unchanged rebuild (layer cache)', slipway: [], plain: [] },
    { label: 'one-file-changed rebuild (index.js)', slipway: [], plain: [] },
  ];
  for (let i = 0; i < repeat; i++) {
    const order = i % 2 === 0 ? ['Slipway', 'buildah'] as const : ['buildah', 'Slipway'] as const;
    await resetStores();
    setIndex('v0');
    for (const [index, row] of rows.entries()) {
      if (index === 2) setIndex(`v${i + 1}`);
      for (const who of order) {
        const result = who === 'Slipway' ? await slipwayBuild() : await plainBuild();
        (who === 'Slipway' ? row.slipway : row.plain).push(result);
        const parts = result.parts ? `; submit ${result.parts.submit.toFixed(0)}, queue ${result.parts.queue.toFixed(0)}, service ${result.parts.service.toFixed(0)}, driver ${result.parts.driver.toFixed(0)}, answer ${result.parts.answer.toFixed(0)} ms` : '';
        log(`#${i + 1} ${row.label} ${who}: ${s(result.wall)} s (bud ${s(result.build)} s, push ${s(result.push)} s${parts})`);
      }
    }
  }

  // The cost of one buildah process on this host: Slipway's driver runs `buildah containers
  // --all --json` before every bud (to find leftovers of a killed build), outside bud and push.
  const listing: number[] = [];
  for (let i = 0; i < 7; i++) listing.push((await run('buildah', [...globalArgs(slipwaySide), 'containers', '--all', '--json'], { capture: true })).ms);
  log(`buildah containers --all --json: ${listing.map((ms) => ms.toFixed(0)).join(', ')} ms`);

  const table = formatTable(rows);
  const notes = [
    '',
    `One \`buildah containers --all --json\` on Slipway's store (which its driver runs before every bud) takes ${median(listing).toFixed(0)} ms here (median of 7: ${listing.map((ms) => ms.toFixed(0)).join(', ')}).`,
    '',
    `Slipway: \`POST /api/v1/namespaces/${namespace}/images?wait=true\` (Dockerfile + context tar.gz, bearer API key), wall clock from the request's start to the parsed answer; "bud"/"push" are the build's recorded \`phases\`, "rest" is everything else in the wall time. ` +
      `buildah: \`buildah bud --isolation chroot --layers --tls-verify=false --creds admin:<key> -f Dockerfile -t ${namespace}/plain-fn:latest <context>\` then \`buildah push --tls-verify=false --creds admin:<key>\` into the same Slipway registry, with its own store. ` +
      `Both stores are emptied (\`buildah rm --all\`, \`rmi --all --force\`) before each cold row, so both pull the base image (${host.replace(/:\d+$/, ':<port>')}/slipway/node-base, the host's node + busybox) from Slipway's registry; the registry itself keeps what earlier runs pushed, for both sides alike. ` +
      `Order alternates per repetition (#1 Slipway first). The host-wide containers/image blob-info cache (/var/lib/containers/cache) is shared by both sides.`,
  ].join('\n');
  const header = `# Build benchmark: \`slipway build\` vs plain buildah\n\n${new Date().toISOString()} · ${os.cpus().length} cores · node ${process.version} · ${buildahVersion} · storage driver ${storageDriver} · ` +
    `${repeat} runs per row and side, median shown · function: package.json + index.js, Dockerfile FROM node-base / WORKDIR / COPY package.json / RUN node -e (~1 s) / COPY . . / CMD\n\n`;
  process.stdout.write(`\n${table}\n${notes}\n`);
  const results = process.env.BENCH_RESULTS ?? path.join(repoRoot, 'bench/results-builds.md');
  writeFileSync(results, `${header}${table}\n${notes}\n`);
  log(`wrote ${results}`);
}

main().then(async () => { await cleanup(); process.exit(0); }, async (error: unknown) => {
  log(`failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  await cleanup();
  process.exit(1);
});
