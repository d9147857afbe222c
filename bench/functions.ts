/**
 * @module bench/functions
 * Function platform benchmark (issue 5), side by side in one run:
 *
 *   - cold start, image cached: a request to an HTTP function at zero instances until its
 *     answer (start, port 8000, /init, proxied request), median and p99 of BENCH_COLD runs; the
 *     peer is the floor on this host: the same image's root started with the same runc driver
 *     in a fresh network namespace, timed to its first answer, with no gateway or pool.
 *   - cold start, image not yet pulled: the function is created and called at once; the call
 *     waits for pull + verify + unpack + start (the image cache is emptied before each run).
 *   - warm overhead: wrk (32 connections) through the gateway vs straight at the instance, and
 *     p50/p99 latency at a steady 1,000 requests/s (a paced client in its own process).
 *   - scale-out: 500 concurrent requests against a function at zero: failures and drain time.
 *   - the gateway against a real reverse proxy: nginx (proxy_pass, upstream keepalive) to the
 *     same instance, wrk throughput, added p50/p99 at 1,000 req/s and CPU µs per proxied request
 *     (Slipway: this process's CPU time; nginx: master + workers from /proc). nginx runs with one
 *     worker (one event loop, like Slipway's gateway) and with one per core.
 *
 * Slipway runs in this process (temp data folder, access control off, functions on); the
 * example function (examples/hello-fn) is built by Slipway from the offline base image. Load
 * generators run in their own processes. Writes bench/results-functions.md.
 *
 * Env: BENCH_COLD (runs per cold row, default 20), BENCH_SECONDS (wrk seconds, default 10),
 * BENCH_RESULTS (output path), BENCH_PROFILE (a .cpuprofile path: this process's CPU profile
 * of the gateway's wrk window only, for Chrome DevTools or `node --cpu-prof`-style reading), BENCH_ROWS (comma list of cold,gateway,uncached,burst; default all).
 */
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadConfig } from '../src/config/config.js';
import { startServer, type RunningServer } from '../src/main.js';
import { RuncDriver } from '../src/functions/runc-driver.js';
import { ImageStore } from '../src/functions/image-store.js';
import { tempDir, type TestServer } from '../test/helpers/harness.js';
import { startNginxPeer } from './nginx-peer.js';
import { wrk as runWrk } from './wrk.js';
import { Session } from 'node:inspector/promises';
import { buildFunctionImages, buildWork } from '../test/helpers/function-images.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const coldRuns = Number(process.env.BENCH_COLD ?? 20);
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const ns = 'bench';
const rows = new Set((process.env.BENCH_ROWS ?? 'cold,gateway,uncached,burst').split(',').map((row) => row.trim()));
const cores = (await import('node:os')).cpus().length;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (message: string) => process.stderr.write(`[bench:functions] ${message}\n`);

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function runCommand(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} exited ${code}: ${out}`));
    });
  });
}

/** wrk with this bench's settings (2 threads, 32 connections, BENCH_SECONDS). */
const wrk = (url: string) => runWrk(url, { seconds });

/** A paced client in its own process: `rate` requests/s for `secondsOf` s over keep-alive; p50/p99 in ms. */
async function paced(url: string, rate: number, secondsOf: number): Promise<{ p50: number; p99: number; failed: number }> {
  const script = `
    const http = require('node:http');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    const url = new URL(${JSON.stringify(url)});
    const lat = []; let failed = 0; let sent = 0; const total = ${rate * secondsOf};
    const start = process.hrtime.bigint();
    function one() {
      const t = process.hrtime.bigint();
      const req = http.get({ host: url.hostname, port: url.port, path: url.pathname, agent }, (res) => {
        res.resume(); res.on('end', () => { if (res.statusCode !== 200) failed++; lat.push(Number(process.hrtime.bigint() - t) / 1e6); done(); });
      });
      req.on('error', () => { failed++; done(); });
    }
    let finished = 0;
    function done() { if (++finished === total) { lat.sort((a, b) => a - b); console.log(JSON.stringify({ p50: lat[Math.floor(lat.length * 0.5)], p99: lat[Math.floor(lat.length * 0.99)], failed })); process.exit(0); } }
    function tick() {
      const due = Math.min(total, Math.floor(Number(process.hrtime.bigint() - start) / 1e6 * ${rate} / 1000));
      while (sent < due) { sent++; one(); }
      if (sent < total) setTimeout(tick, 1);
    }
    tick();`;
  const out = await runCommand(process.execPath, ['-e', script], (secondsOf + 60) * 1000);
  return JSON.parse(out.trim().split('\n').pop()!) as { p50: number; p99: number; failed: number };
}

async function main(): Promise<void> {
  const work = await buildWork();
  const data = await tempDir('slipway-bench-fn-');
  let server: RunningServer | undefined;
  const lines: string[] = [];
  try {
    const config = loadConfig({
      flags: {
        listen: '127.0.0.1:0', dataDir: data.path, log: { level: 'warn', requests: false },
        builds: work.builds, registry: { gc: { interval: 0 } }, auth: { enabled: false }, functions: { enabled: true },
      },
    });
    server = await startServer(config, { logger: pino({ level: 'warn' }) });
    const base = server.url;
    const ts = { url: base, host: base.replace('http://', '') } as TestServer;
    log('building the example function with Slipway (offline base image)…');
    const images = await buildFunctionImages(ts, work, { namespace: ns });
    const call = async (method: string, url: string, body?: unknown) => {
      const r = await fetch(`${base}${url}`, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
      const text = await r.text();
      if (r.status >= 400) throw new Error(`${method} ${url}: ${r.status} ${text}`);
      return text ? JSON.parse(text) : undefined;
    };
    const fnPath = (name: string) => `/api/v1/namespaces/${ns}/functions/${name}`;
    const instances = async (name: string) => ((await call('GET', `${fnPath(name)}/instances`)).instances as Array<{ address: string }>);

    const f = (n: number) => (Number.isFinite(n) ? n.toFixed(n < 10 ? 2 : 0) : '-');
    const table: string[] = [];
    const notes: string[] = [];
    let coldNote = '';

    if (rows.has('cold')) {
      // ---- cold start, image cached ----
      await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, { name: 'cold', type: 'http', image: images.hello, idleSeconds: 1, access: 'public' });
      const cold: number[] = [];
      for (let i = 0; i < coldRuns; i++) {
        while ((await instances('cold')).length > 0) await sleep(100);
        await sleep(200);
        const t = performance.now();
        const r = await fetch(`${base}/fn/${ns}/cold/`);
        await r.text();
        if (r.status !== 200) throw new Error(`cold start answered ${r.status}`);
        cold.push(performance.now() - t);
      }
      log(`cold (cached): p50 ${quantile(cold, 0.5).toFixed(0)} ms`);

      // ---- the floor: the same root, the same driver, no gateway or pool ----
      const store = new ImageStore(path.join(data.path, 'functions', 'images'));
      const digest = (await call('GET', fnPath('cold'))).imageDigest as string;
      const floorDriver = new RuncDriver({ images: store, stateDir: path.join(work.path, 'floor-bundles'), runcRoot: path.join(work.path, 'floor-runc'), prefix: 'slw-benchfl-' });
      await floorDriver.pull({ reference: images.hello, digest });
      const floor: number[] = [];
      for (let i = 0; i < coldRuns; i++) {
        const t = performance.now();
        const ep = await floorDriver.start({ id: `f${i}`, image: { reference: images.hello, digest }, command: ['node', '/app/server.js'], env: [], uid: 1003, gid: 1003 }, () => undefined);
        await floorDriver.waitForPort(ep.address, 8000, 10_000);
        const r = await fetch(`http://${ep.address}:8000/`);
        await r.text();
        floor.push(performance.now() - t);
        await floorDriver.stop(ep.id, { graceMs: 200 });
      }
      await floorDriver.cleanupOrphans();
      await call('DELETE', fnPath('cold'));
      log(`cold floor (bare runc + netns): p50 ${quantile(floor, 0.5).toFixed(0)} ms`);
      table.push(`| cold start, image cached, p50 / p99 (ms) | ${f(quantile(cold, 0.5))} / ${f(quantile(cold, 0.99))} | bare runc + netns: ${f(quantile(floor, 0.5))} / ${f(quantile(floor, 0.99))} | ${(quantile(cold, 0.5) / quantile(floor, 0.5)).toFixed(2)}× | p50 ≤ 150 ms |`);
    }

    if (rows.has('gateway')) {
      // ---- warm: gateway vs direct vs nginx to the same instance ----
      await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, { name: 'web', type: 'http', image: images.hello, minInstances: 1, maxInstances: 1, concurrency: 1000, access: 'public' });
      const [instance] = await instances('web');
      const direct = `http://${instance!.address}/`;
      const gateway = `${base}/fn/${ns}/web/`;
      const nginxOne = await startNginxPeer(instance!.address, 1);
      const nginxAll = await startNginxPeer(instance!.address, cores);
      try {
        // CPU per proxied request: the proxy's own CPU time over the requests wrk completed.
        const measured = async (url: string, cpu: () => number) => {
          const before = cpu();
          const result = await wrk(url);
          const used = cpu() - before;
          return { ...result, cpuUs: (used * 1e6) / (result.rps * seconds) };
        };
        const slipwayCpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
        await wrk(gateway); // warm-up
        await wrk(`${nginxOne.url}/`);
        const wrkDirect = await wrk(direct);
        const profile = process.env.BENCH_PROFILE ? new Session() : undefined;
        if (profile) {
          profile.connect();
          await profile.post('Profiler.enable');
          await profile.post('Profiler.start');
        }
        const usageBefore = process.cpuUsage();
        const wrkGateway = await measured(gateway, slipwayCpu);
        const usage = process.cpuUsage(usageBefore);
        const gatewayRequests = wrkGateway.rps * seconds;
        if (profile) {
          const { profile: taken } = await profile.post('Profiler.stop');
          writeFileSync(process.env.BENCH_PROFILE!, JSON.stringify(taken));
          profile.disconnect();
        }
        const wrkNginx = await measured(`${nginxOne.url}/`, nginxOne.cpuSeconds);
        const wrkNginxAll = await measured(`${nginxAll.url}/`, nginxAll.cpuSeconds);
        const pacedDirect = await paced(direct, 1000, 5);
        const pacedGateway = await paced(gateway, 1000, 5);
        const pacedNginx = await paced(`${nginxOne.url}/`, 1000, 5);
        log(`wrk: gateway ${wrkGateway.rps.toFixed(0)} rps, nginx ${wrkNginx.rps.toFixed(0)} rps (${cores} workers: ${wrkNginxAll.rps.toFixed(0)}), direct ${wrkDirect.rps.toFixed(0)} rps`);
        log(`cpu/request: gateway ${wrkGateway.cpuUs.toFixed(1)} µs (user ${(usage.user / gatewayRequests).toFixed(1)}, system ${(usage.system / gatewayRequests).toFixed(1)}), nginx ${wrkNginx.cpuUs.toFixed(1)} µs`);
        table.push(
          `| throughput, 32 conns (req/s) | gateway ${f(wrkGateway.rps)} | nginx (1 worker) ${f(wrkNginx.rps)} | ${(wrkGateway.rps / wrkNginx.rps).toFixed(2)}× | ≥ 0.80× |`,
          `| ↳ other peers (req/s) | — | nginx (${cores} workers) ${f(wrkNginxAll.rps)}; direct to the instance ${f(wrkDirect.rps)} | gateway/direct ${(wrkGateway.rps / wrkDirect.rps).toFixed(2)}× | — |`,
          `| CPU per proxied request (µs) | ${f(wrkGateway.cpuUs)} | nginx (1 worker) ${f(wrkNginx.cpuUs)}; (${cores} workers) ${f(wrkNginxAll.cpuUs)} | ${(wrkGateway.cpuUs / wrkNginx.cpuUs).toFixed(2)}× | ≤ 1.5× |`,
          `| wrk latency p50 / p99 (ms) | ${f(wrkGateway.p50)} / ${f(wrkGateway.p99)} | nginx ${f(wrkNginx.p50)} / ${f(wrkNginx.p99)}; direct ${f(wrkDirect.p50)} / ${f(wrkDirect.p99)} | — | — |`,
          `| latency at 1,000 req/s, p50 / p99 (ms) | ${f(pacedGateway.p50)} / ${f(pacedGateway.p99)} | nginx ${f(pacedNginx.p50)} / ${f(pacedNginx.p99)}; direct ${f(pacedDirect.p50)} / ${f(pacedDirect.p99)} | added p50: gateway +${f(pacedGateway.p50 - pacedDirect.p50)} ms, nginx +${f(pacedNginx.p50 - pacedDirect.p50)} ms; added p99: gateway +${f(pacedGateway.p99 - pacedDirect.p99)}, nginx +${f(pacedNginx.p99 - pacedDirect.p99)} | ≤ +0.5 ms p50 |`,
        );
        notes.push(`Errors seen by wrk: gateway ${wrkGateway.errors || 'none'}; nginx ${wrkNginx.errors || 'none'}; direct ${wrkDirect.errors || 'none'}. Paced failures: gateway ${pacedGateway.failed}, nginx ${pacedNginx.failed}, direct ${pacedDirect.failed}.`);
      } finally {
        await nginxOne.stop();
        await nginxAll.stop();
      }
      await call('DELETE', fnPath('web'));
    }

    if (rows.has('uncached')) {
      // ---- cold start, image not pulled ----
      const uncached: number[] = [];
      const uncachedRuns = Math.min(coldRuns, 10);
      for (let i = 0; i < uncachedRuns; i++) {
        rmSync(path.join(data.path, 'functions', 'images'), { recursive: true, force: true });
        const t = performance.now();
        await call('POST', `/api/v1/namespaces/${ns}/functions`, { name: `fresh${i}`, type: 'http', image: images.hello, access: 'public' });
        const r = await fetch(`${base}/fn/${ns}/fresh${i}/`);
        await r.text();
        if (r.status !== 200) throw new Error(`uncached cold start answered ${r.status}`);
        uncached.push(performance.now() - t);
        await call('DELETE', fnPath(`fresh${i}`));
      }
      log(`cold (not pulled): p50 ${quantile(uncached, 0.5).toFixed(0)} ms`);
      coldNote = ` (not pulled: ${uncachedRuns})`;
      table.push(`| cold start, image not pulled, p50 / p99 (ms) | ${f(quantile(uncached, 0.5))} / ${f(quantile(uncached, 0.99))} | — | — | — |`);
    }

    if (rows.has('burst')) {
      // ---- burst of 500 against zero ----
      await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, { name: 'burst', type: 'http', image: images.hello, concurrency: 10, maxInstances: 10, idleSeconds: 1, access: 'public' });
      while ((await instances('burst')).length > 0) await sleep(100);
      const burstScript = `
        const http = require('node:http');
        const agent = new http.Agent({ keepAlive: true, maxSockets: 500 });
        let failed = 0, done = 0; const t = Date.now();
        for (let i = 0; i < 500; i++) {
          http.get(${JSON.stringify(`${base}/fn/${ns}/burst/`)}, { agent }, (res) => { res.resume(); res.on('end', () => { if (res.statusCode !== 200) failed++; if (++done === 500) { console.log(JSON.stringify({ failed, ms: Date.now() - t })); process.exit(0); } }); })
            .on('error', () => { failed++; if (++done === 500) { console.log(JSON.stringify({ failed, ms: Date.now() - t })); process.exit(0); } });
        }`;
      const burst = JSON.parse((await runCommand(process.execPath, ['-e', burstScript], 120_000)).trim().split('\n').pop()!) as { failed: number; ms: number };
      const peak = (await call('GET', `${fnPath('burst')}/metrics`)) as { coldStarts: number };
      log(`burst: ${burst.failed} failed, ${burst.ms} ms`);
      table.push(`| burst of 500 at zero: failed, drain (ms) | ${burst.failed} failed, ${burst.ms} ms (${peak.coldStarts} requests waited for a start) | — | — | 0 failed |`);
    }

    lines.push(
      `# Functions benchmark (${new Date().toISOString().slice(0, 10)})`,
      '',
      `Host: ${cores} cores; Slipway, nginx, the instance and the load generators share them. Cold rows: ${coldRuns} runs${coldNote}; wrk: ${seconds} s, 32 connections, 2 threads.`,
      '',
      '| measure | Slipway | peer | ratio (Slipway/peer) | target |',
      '|---|---|---|---|---|',
      ...table,
      '',
      ...notes,
      '',
    );
  } finally {
    await server?.close();
    await work.cleanup();
    await data.remove();
  }
  const out = lines.join('\n');
  process.stdout.write(out);
  writeFileSync(process.env.BENCH_RESULTS ?? path.join(repoRoot, 'bench', 'results-functions.md'), out);
}

main().then(() => process.exit(0), (error) => {
  console.error(error);
  process.exit(1);
});
