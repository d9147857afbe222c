/**
 * @module bench/delivery
 * Delivery benchmark (issue 6): how long a commit takes to answer through the gateway, with a
 * warm layer cache, side by side in one run:
 *
 *   - Slipway: a signed GitHub push webhook for a commit that changes server.js starts the
 *     pipeline build → deliver → deploy (the build spec's step runs `docker build`, as in
 *     test/pipelines.test.ts); timed from sending the webhook until `GET /fn/<ns>/hello/…`,
 *     polled every 20 ms, answers with the new code. Split into the run's `phases` (queue,
 *     clone, build, push, deploy), first response (deploy stage end → first new answer) and
 *     the rest (total − all of those: webhook intake, stage hand-offs, saves).
 *   - peer: the same work glued by hand, as a team would without Slipway: `git clone --depth 1`,
 *     `buildah bud --layers` in the same buildah store as the server's builds (an equally warm
 *     cache), `buildah push` to Slipway's registry, `PATCH …/functions/<name>` with the pushed
 *     digest and a poll of `GET` (20 ms) until `activeRevision` moves, then the first new
 *     answer through the gateway, polled the same way. No queue.
 *
 * Both first run once untimed (creating their function), then once more untimed (warm-up),
 * then BENCH_RUNS timed commits each; every commit gets its own server.js so no build finds its
 * COPY layer cached. Slipway runs in this process (temp data folder, access control off,
 * functions on, one run at a time); the base image is the offline one the tests import.
 * Writes bench/results-delivery.md.
 *
 * Env: BENCH_RUNS (timed commits per side, default 5), BENCH_RESULTS (output path),
 * BENCH_TIMEOUT (whole benchmark, seconds, default 1200), BENCH_LOG=1 (print the last
 * Slipway run's log to stderr).
 */
import { spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { loadConfig } from '../src/config/config.js';
import { startServer, type RunningServer } from '../src/main.js';
import { tempDir, type TestServer } from '../test/helpers/harness.js';
import { buildWork, importBase, type BuildWork } from '../test/helpers/function-images.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const runs = Number(process.env.BENCH_RUNS ?? 5);
const benchTimeoutMs = Number(process.env.BENCH_TIMEOUT ?? 1200) * 1000;
/** One commit (either side) from its start until the new answer. */
const commitTimeoutMs = 240_000;
const pollMs = 20;
const targetMs = 15_000;
const ns = 'bench';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (message: string) => process.stderr.write(`[bench:delivery] ${message}\n`);

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function runCommand(command: string, args: string[], timeoutMs: number, options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd, env: options.env ?? process.env });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => { clearTimeout(timer); reject(error); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} ${args.join(' ')} exited ${code ?? signal}: ${out.slice(-2000)}`));
    });
  });
}

/** Rejects after `ms` with what was being waited for. */
function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const buildSpec = `version: 0.1
component: build
timeoutInSeconds: 600
shell: bash
env:
  exportedVariables:
    - BUILDRUN_HASH
steps:
  - type: Command
    name: Build image
    command: |
      export BUILDRUN_HASH=\${OCI_BUILD_RUN_ID: -7}
      docker build -t hello-fn:latest .
outputArtifacts:
  - name: hello-image
    type: DOCKER_IMAGE
    location: hello-fn:latest
`;

const gitEnv = { ...process.env, GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@example.com', GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@example.com' };
const git = async (dir: string, ...args: string[]) => (await runCommand('git', ['-C', dir, ...args], 60_000, { env: gitEnv })).trim();

/** Phases of one commit, ms; `queue` and `other` are absent for the peer. */
type Timing = Record<'queue' | 'clone' | 'build' | 'push' | 'deploy' | 'first' | 'other' | 'total', number>;
const rows: Array<{ key: keyof Timing; label: string }> = [
  { key: 'queue', label: 'queue (webhook received → run starts)' },
  { key: 'clone', label: 'clone' },
  { key: 'build', label: 'build (`docker build` / `buildah bud --layers`)' },
  { key: 'push', label: 'push to the registry' },
  { key: 'deploy', label: 'deploy (PATCH → new revision active)' },
  { key: 'first', label: 'first response (deploy end → first new answer)' },
  { key: 'other', label: 'rest (total − the above: webhook intake, stage hand-offs)' },
  { key: 'total', label: '**total (push of the commit → new code answers)**' },
];

async function main(): Promise<void> {
  let server: RunningServer | undefined;
  let work: BuildWork | undefined;
  const folders: Array<{ remove(): Promise<void> }> = [];
  let cleaning: Promise<void> | undefined;
  const cleanup = () => {
    cleaning ??= (async () => {
      await server?.close().catch((error) => log(`closing the server: ${(error as Error).message}`));
      await work?.cleanup().catch((error) => log(`removing the build store: ${(error as Error).message}`));
      for (const folder of folders.reverse()) await folder.remove().catch(() => undefined);
    })();
    return cleaning;
  };
  const onSignal = (signal: string) => {
    log(`${signal}: cleaning up`);
    void withTimeout(cleanup(), 120_000, 'cleanup').finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const watchdog = setTimeout(() => {
    log(`the benchmark took longer than ${benchTimeoutMs / 1000} s: cleaning up and giving up`);
    void withTimeout(cleanup(), 120_000, 'cleanup').finally(() => process.exit(1));
  }, benchTimeoutMs);
  watchdog.unref();

  let out = '';
  try {
    work = await buildWork();
    const data = await tempDir('slipway-bench-delivery-');
    folders.push(data);
    const repo = await tempDir('slipway-bench-delivery-repo-');
    folders.push(repo);
    const peerDir = await tempDir('slipway-bench-delivery-peer-');
    folders.push(peerDir);

    const config = loadConfig({
      flags: {
        listen: '127.0.0.1:0', dataDir: data.path, log: { level: 'warn', requests: false },
        builds: work.builds, registry: { gc: { interval: 0 } }, auth: { enabled: false },
        functions: { enabled: true, startTimeout: '10s' },
        // A step user of its own: tests running meanwhile kill leftover processes of the default uid 1004.
        pipelines: { concurrency: 1, shellUid: 1206, shellGid: 1206 },
      },
    });
    server = await startServer(config, { logger: pino({ level: 'warn' }) });
    const base = server.url;
    const host = base.replace('http://', '');
    log('importing the offline base image…');
    await importBase({ url: base, host } as TestServer, work);

    const call = async (method: string, url: string, body?: unknown) => {
      const r = await fetch(`${base}${url}`, {
        method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(commitTimeoutMs),
      });
      const text = await r.text();
      if (r.status >= 400) throw new Error(`${method} ${url}: ${r.status} ${text}`);
      return text ? JSON.parse(text) : undefined;
    };
    const fnPath = (name: string) => `/api/v1/namespaces/${ns}/functions/${name}`;
    const runPath = (number: number) => `/api/v1/namespaces/${ns}/pipelines/hello/runs/${number}`;

    // ---- the repository ----
    const serverJs = await readFile(path.join(repoRoot, 'examples/hello-fn/server.js'), 'utf8');
    const dockerfile = await readFile(path.join(repoRoot, 'examples/hello-fn/Dockerfile'), 'utf8');
    const withMarker = (marker: string) => serverJs.replace('hello from ${req.url}', `${marker} \${req.url}`);
    await runCommand('git', ['init', '-q', '-b', 'main', repo.path], 30_000);
    const commit = async (marker: string) => {
      const before = await git(repo.path, 'rev-parse', 'HEAD').catch(() => '0'.repeat(40));
      await writeFile(path.join(repo.path, 'server.js'), withMarker(marker));
      await git(repo.path, 'add', '-A');
      await git(repo.path, 'commit', '-q', '-m', `server.js: ${marker}`);
      return { before, after: await git(repo.path, 'rev-parse', 'HEAD') };
    };
    await writeFile(path.join(repo.path, 'Dockerfile'), dockerfile);
    await writeFile(path.join(repo.path, 'package.json'), '{"type":"commonjs"}\n');
    await writeFile(path.join(repo.path, 'build_spec.yaml'), buildSpec);
    await writeFile(path.join(repo.path, 'README.md'), '# hello\n');
    await commit('s0');

    /** Polls the function through the gateway every 20 ms until it answers with `marker`; Date.now() of that answer. */
    const firstAnswer = async (fn: string, marker: string, deadline: number, stop: { stopped: boolean }): Promise<number> => {
      let last = '';
      while (!stop.stopped) {
        const started = Date.now();
        if (started > deadline) throw new Error(`${fn} did not answer with ${marker} in time (last answer: ${last})`);
        try {
          const r = await fetch(`${base}/fn/${ns}/${fn}/greeting`, { signal: AbortSignal.timeout(10_000) });
          const text = await r.text();
          if (r.status === 200 && text.startsWith(`${marker} `)) return Date.now();
          last = `${r.status} ${text.slice(0, 200)}`;
        } catch (error) {
          last = (error as Error).message;
        }
        await sleep(Math.max(0, pollMs - (Date.now() - started)));
      }
      throw new Error('stopped');
    };

    // ---- Slipway: pipeline + webhook ----
    const created = await call('POST', `/api/v1/namespaces/${ns}/pipelines`, {
      name: 'hello',
      sources: [{ name: 'app', url: `file://${repo.path}`, branch: 'main' }],
      triggers: { webhook: { paths: { exclude: ['docs/**', '**/*.md'] } } },
      stages: [
        { name: 'build', type: 'build' },
        { name: 'deliver', type: 'deliver', artifacts: [{ artifact: 'hello-image', location: `${ns}/hello-fn:main-\${BUILDRUN_HASH}` }] },
        { name: 'deploy', type: 'deploy', functions: [{ name: 'hello', type: 'http' }] },
      ],
    });
    const secret = created.webhook.secret as string;
    const pushWebhook = async (change: { before: string; after: string }) => {
      const body = JSON.stringify({
        ref: 'refs/heads/main', before: change.before, after: change.after, created: false, deleted: false, forced: false,
        commits: [{ id: change.after, message: 'change', timestamp: new Date().toISOString(), added: [], removed: [], modified: ['server.js'], distinct: true }],
        head_commit: { id: change.after, message: 'change', added: [], removed: [], modified: ['server.js'] },
        repository: { clone_url: `file://${repo.path}`, full_name: 'team/hello', default_branch: 'main' },
        pusher: { name: 'ada', email: 'ada@example.com' },
      });
      const signature = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
      const response = await fetch(`${base}/api/v1/namespaces/${ns}/pipelines/hello/webhook`, {
        method: 'POST', body, signal: AbortSignal.timeout(30_000),
        headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': signature, 'user-agent': 'GitHub-Hookshot/bench' },
      });
      const json = await response.json() as { status: string; reason?: string; run?: { number: number } };
      if (response.status !== 202 || json.status !== 'started' || !json.run) throw new Error(`webhook: ${response.status} ${JSON.stringify(json)}`);
      return json.run.number;
    };
    type RunJson = { number: number; status: string; error: string | null; phases: Record<string, number>; stages: Array<{ name: string; finishedAt?: string }> };
    const waitRun = async (number: number): Promise<RunJson> => {
      const run = await call('GET', `${runPath(number)}?wait=true`) as RunJson;
      if (run.status !== 'succeeded') {
        const logs = await fetch(`${base}${runPath(number)}/logs`).then((r) => r.text()).catch(() => '');
        throw new Error(`run ${number} ${run.status}: ${run.error}\n${logs.slice(-3000)}`);
      }
      return run;
    };

    log('Slipway: first run (creates the function)…');
    const firstRun = await call('POST', `/api/v1/namespaces/${ns}/pipelines/hello/runs`, {});
    await withTimeout(waitRun(firstRun.number), commitTimeoutMs, 'first pipeline run');

    let lastRun = 0;
    const slipwayCommit = async (marker: string): Promise<Timing> => {
      const change = await commit(marker);
      const stop = { stopped: false };
      const t0 = Date.now();
      const answered = firstAnswer('hello', marker, t0 + commitTimeoutMs, stop);
      answered.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
      try {
        const number = await pushWebhook(change);
        lastRun = number;
        const [answeredAt, run] = await withTimeout(Promise.all([answered, waitRun(number)]), commitTimeoutMs, `Slipway commit ${marker}`);
        const p = run.phases;
        const deployEnd = Date.parse(run.stages.find((s) => s.name === 'deploy')?.finishedAt ?? '');
        const total = answeredAt - t0;
        const timing = { queue: p.queue ?? NaN, clone: p.clone ?? NaN, build: p.build ?? NaN, push: p.push ?? NaN, deploy: p.deploy ?? NaN, first: answeredAt - deployEnd, other: 0, total };
        timing.other = total - (timing.queue + timing.clone + timing.build + timing.push + timing.deploy + timing.first);
        return timing;
      } finally {
        stop.stopped = true;
        await answered.catch(() => undefined);
      }
    };

    // ---- the peer: the same work by hand ----
    const buildahArgs = work.driver.globalArgs();
    let peerCount = 0;
    /** Clone, build, push, deploy of the repository's head (committed before the clock starts). */
    const peerDeliver = async (deploy: (image: string) => Promise<void>) => {
      const clone = path.join(peerDir.path, `clone-${++peerCount}`);
      const image = `localhost/peer/hello-fn:${peerCount}`;
      const t: number[] = [performance.now()];
      await runCommand('git', ['clone', '-q', '--depth', '1', '--branch', 'main', `file://${repo.path}`, clone], 60_000);
      t.push(performance.now());
      // Slipway resolves `FROM slipway/node-base` to its registry; by hand the FROM line is spelled out.
      const text = (await readFile(path.join(clone, 'Dockerfile'), 'utf8')).replace(/^FROM slipway\//m, `FROM ${host}/slipway/`);
      await writeFile(path.join(clone, 'Dockerfile.peer'), text);
      await runCommand('buildah', [...buildahArgs, 'bud', '--isolation', 'chroot', '--layers', '--tls-verify=false', '-f', path.join(clone, 'Dockerfile.peer'), '-t', image, clone], 180_000,
        { env: { ...process.env, TMPDIR: peerDir.path } });
      t.push(performance.now());
      const digestFile = path.join(peerDir.path, `digest-${peerCount}`);
      await runCommand('buildah', [...buildahArgs, 'push', '--tls-verify=false', '--digestfile', digestFile, image, `docker://${host}/${ns}/hello-fn:peer-${peerCount}`], 120_000,
        { env: { ...process.env, TMPDIR: peerDir.path } });
      const digest = (await readFile(digestFile, 'utf8')).trim();
      t.push(performance.now());
      await deploy(`${host}/${ns}/hello-fn@${digest}`);
      t.push(performance.now());
      // As Slipway removes a run's images and folder afterwards (outside the timed part).
      const after = async () => {
        await runCommand('buildah', [...buildahArgs, 'rmi', image], 60_000).catch((error) => log(`peer rmi: ${(error as Error).message}`));
        await runCommand('rm', ['-rf', clone], 60_000);
      };
      return { clone: t[1]! - t[0]!, build: t[2]! - t[1]!, push: t[3]! - t[2]!, deploy: t[4]! - t[3]!, deployedAt: Date.now(), after };
    };
    const patchAndWait = async (image: string) => {
      const before = await call('GET', fnPath('hello-peer')) as { latestRevision: number };
      const patched = await call('PATCH', fnPath('hello-peer'), { image }) as { latestRevision: number };
      if (patched.latestRevision === before.latestRevision) throw new Error('PATCH made no new revision');
      for (;;) {
        const view = await call('GET', fnPath('hello-peer')) as { activeRevision: number | null; latestRevision: number; status: string; statusReason?: string };
        if (view.activeRevision === patched.latestRevision && view.status === 'ready') return;
        if (view.latestRevision !== patched.latestRevision || (view.status !== 'deploying' && view.activeRevision !== patched.latestRevision)) {
          throw new Error(`peer deploy: revision ${patched.latestRevision} did not become active: ${JSON.stringify(view)}`);
        }
        await sleep(pollMs);
      }
    };

    log('peer: first delivery (creates the function)…');
    await commit('p0');
    const peerFirst = await withTimeout(peerDeliver(async (image) => {
      await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, { name: 'hello-peer', type: 'http', image });
    }), commitTimeoutMs, 'first peer delivery');
    await peerFirst.after();

    const peerCommit = async (marker: string): Promise<Timing> => {
      await commit(marker);
      const stop = { stopped: false };
      const t0 = Date.now();
      const answered = firstAnswer('hello-peer', marker, t0 + commitTimeoutMs, stop);
      answered.catch(() => undefined); // awaited below; never an unhandled rejection meanwhile
      try {
        const delivered = await withTimeout(peerDeliver(patchAndWait), commitTimeoutMs, `peer commit ${marker}`);
        const answeredAt = await answered;
        await delivered.after();
        const total = answeredAt - t0;
        return { queue: NaN, clone: delivered.clone, build: delivered.build, push: delivered.push, deploy: delivered.deploy, first: answeredAt - delivered.deployedAt, other: NaN, total };
      } finally {
        stop.stopped = true;
        await answered.catch(() => undefined);
      }
    };

    log('warm-up (untimed): one commit each…');
    await slipwayCommit('s-warm');
    await peerCommit('p-warm');

    const slipway: Timing[] = [];
    const peer: Timing[] = [];
    for (let i = 1; i <= runs; i++) {
      // Alternate who goes first so neither always follows the other's cleanup.
      const order = i % 2 === 1 ? ['s', 'p'] : ['p', 's'];
      for (const side of order) {
        if (side === 's') {
          const t = await slipwayCommit(`s${i}`);
          slipway.push(t);
          log(`Slipway ${i}/${runs}: ${t.total} ms (queue ${t.queue}, clone ${t.clone}, build ${t.build}, push ${t.push}, deploy ${t.deploy}, first ${t.first}, rest ${t.other})`);
        } else {
          const t = await peerCommit(`p${i}`);
          peer.push(t);
          log(`peer ${i}/${runs}: ${t.total.toFixed(0)} ms (clone ${t.clone.toFixed(0)}, build ${t.build.toFixed(0)}, push ${t.push.toFixed(0)}, deploy ${t.deploy.toFixed(0)}, first ${t.first.toFixed(0)})`);
        }
      }
    }

    if (process.env.BENCH_LOG === '1' && lastRun > 0) {
      const text = await fetch(`${base}${runPath(lastRun)}/logs`).then((r) => r.text()).catch((error: Error) => error.message);
      process.stderr.write(`---- log of run ${lastRun} ----\n${text}\n----\n`);
    }

    // ---- the report ----
    const f = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '—');
    const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '—');
    const stat = (list: Timing[], key: keyof Timing, q: number) => quantile(list.map((t) => t[key]), q);
    const cpus = os.cpus();
    const buildahVersion = (await runCommand('buildah', ['--version'], 10_000).catch(() => 'buildah ?')).trim();
    const slipwayP50 = stat(slipway, 'total', 0.5);
    const slipwayMax = stat(slipway, 'total', 1);
    const lines = [
      `# Delivery benchmark (${new Date().toISOString().slice(0, 10)})`,
      '',
      `Host: ${cpus.length} × ${cpus[0]?.model.trim() ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${os.release()}, Node ${process.version}, ${buildahVersion}, ${(await runCommand('git', ['--version'], 10_000)).trim()}. Slipway runs in the benchmark's process (SQLite, access control off, one pipeline run at a time); builds and the peer share one buildah store (overlay).`,
      '',
      `What is timed: ${runs} commits per side, each changing examples/hello-fn's server.js, after one untimed warm-up commit per side (the layer cache and the functions are warm). Total = from sending the signed GitHub push webhook (Slipway) or starting the clone (peer) until \`GET /fn/${ns}/<function>/greeting\`, polled every ${pollMs} ms from the start, answers with the new code. Slipway's phases are the run's \`phases\`; first response is from the deploy stage's \`finishedAt\` to the first new answer; rest = total − all of those (measured, not assumed). The peer is the same work glued by hand: \`git clone --depth 1\`, \`buildah bud --layers\` (same store), \`buildah push\` to Slipway's registry, \`PATCH …/functions/hello-peer\` with the pushed digest then \`GET\` every ${pollMs} ms until \`activeRevision\` moves, then the first new answer. Sides alternate who goes first.`,
      '',
      '| phase (ms) | Slipway p50 | Slipway max | peer p50 | peer max | Slipway/peer p50 | Slipway/peer max |',
      '|---|---|---|---|---|---|---|',
      ...rows.map(({ key, label }) => {
        const [sp, sm, pp, pm] = [stat(slipway, key, 0.5), stat(slipway, key, 1), stat(peer, key, 0.5), stat(peer, key, 1)];
        return `| ${label} | ${f(sp)} | ${f(sm)} | ${f(pp)} | ${f(pm)} | ${ratio(sp, pp)} | ${ratio(sm, pm)} |`;
      }),
      '',
      `Target: total < ${targetMs / 1000} s. Slipway p50 ${(slipwayP50 / 1000).toFixed(1)} s, max ${(slipwayMax / 1000).toFixed(1)} s: ${slipwayMax < targetMs ? 'met' : slipwayP50 < targetMs ? 'met at p50, not at max' : 'not met'}.`,
      '',
      'Each commit (ms):',
      '',
      '| # | Slipway: queue / clone / build / push / deploy / first / rest = total | peer: clone / build / push / deploy / first = total |',
      '|---|---|---|',
      ...slipway.map((s, i) => {
        const p = peer[i]!;
        return `| ${i + 1} | ${[s.queue, s.clone, s.build, s.push, s.deploy, s.first, s.other].map(f).join(' / ')} = ${f(s.total)} | ${[p.clone, p.build, p.push, p.deploy, p.first].map(f).join(' / ')} = ${f(p.total)} |`;
      }),
      '',
      `Run: \`npm run bench:delivery\` (or \`npm run build && node dist/bench/delivery.js\`); needs root, buildah, runc, git. Env: BENCH_RUNS (default 5), BENCH_RESULTS, BENCH_TIMEOUT (s), BENCH_LOG=1.`,
      '',
    ];
    out = lines.join('\n');
  } finally {
    clearTimeout(watchdog);
    await withTimeout(cleanup(), 180_000, 'cleanup').catch((error) => log((error as Error).message));
  }
  process.stdout.write(out);
  writeFileSync(process.env.BENCH_RESULTS ?? path.join(repoRoot, 'bench', 'results-delivery.md'), out);
}

main().then(() => process.exit(0), (error) => {
  console.error(error);
  process.exit(1);
});
