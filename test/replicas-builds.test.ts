/**
 * Builds and pipeline runs across replicas: two `slipway serve` processes on one PostgreSQL
 * database, one S3 bucket (logs in it: `logs.driver: blobstore`) and one master key, nginx in
 * front (built images are named and pushed by its host, `builds.registryHost`).
 *   - an image build (buildah, from a git repository) queued through A is claimed by whichever
 *     replica's worker comes first, and its log is followed live from B to its end;
 *   - a pipeline run queued through B is claimed by either, and its live log, followed from both
 *     replicas while the step still prints, arrives line by line on each (the step prints its
 *     ancestors' pids, which name the replica that runs it).
 * Needs PostgreSQL (SLIPWAY_TEST_POSTGRES_URL), buildah and git.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod } from 'node:fs/promises';
import { after, describe, test } from 'node:test';
import { killAllChildren } from './helpers/commands.js';
import { dialects, tempDir } from './helpers/dialects.js';
import { buildWork, type BuildWork } from './helpers/function-images.js';
import { makeRepository } from './helpers/git-repository.js';
import { call, show } from './helpers/registry-client.js';
import { basic, freePort, startNginx, startReplica, stopReplica, type Nginx, type Replica } from './helpers/replicas.js';
import { startS3Server } from './helpers/s3-server.js';

const postgres = dialects.find((dialect) => dialect.name === 'postgres');
const shellUid = 1305;

after(() => killAllChildren());

const json = { authorization: basic, 'content-type': 'application/json' };

/** Follows a Server-Sent Events log: `data` lines (with the time each arrived) until `event: end`. */
async function followLog(url: string, timeoutMs: number): Promise<{ lines: Array<{ text: string; at: number }>; end: Record<string, unknown> }> {
  const response = await fetch(url, { headers: { authorization: basic, accept: 'text/event-stream' }, signal: AbortSignal.timeout(timeoutMs) });
  if (response.status !== 200) throw new Error(`following ${url}: ${response.status} ${await response.text()}`);
  const lines: Array<{ text: string; at: number }> = [];
  let buffer = '';
  let event = 'message';
  const decoder = new TextDecoder();
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 1);
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) {
        if (event === 'end') return { lines, end: JSON.parse(line.slice(6)) as Record<string, unknown> };
        lines.push({ text: line.slice(6), at: Date.now() });
      } else if (line === '') event = 'message';
    }
  }
  throw new Error(`the log ended without an end event after ${lines.length} lines`);
}

/** Which replica's process tree a set of log lines names (`ancestor <pid>` lines). */
function runner(lines: Array<{ text: string }>, replicas: Replica[]): Replica | undefined {
  const pids = new Set(lines.flatMap((line) => /ancestor (\d+)/.exec(line.text)?.[1] ?? []).map(Number));
  return replicas.find((replica) => pids.has(replica.child.pid!));
}

describe('builds and pipeline runs on two replicas', { timeout: 400_000, skip: postgres ? false : 'needs SLIPWAY_TEST_POSTGRES_URL' }, () => {
  test('queued through one replica, claimed by whichever, the live log followed from the other', { timeout: 380_000 }, async () => {
    const work = await tempDir('slipway-replicas-builds-');
    const database = await postgres!.create();
    const s3 = await startS3Server();
    const shared = { database: database.url, s3, masterKey: randomBytes(32).toString('base64') };
    const replicas: Replica[] = [];
    const buildah: BuildWork[] = [];
    let nginx: Nginx | undefined;
    const figures: Record<string, unknown> = {};
    try {
      buildah.push(await buildWork(), await buildWork());
      // Replicas name built images by the load balancer's host (whoever builds pushes there), so
      // nginx comes first, in front of the ports the replicas will listen on.
      const ports = [await freePort(), await freePort()];
      nginx = await startNginx(work.path, ports.map((port) => `127.0.0.1:${port}`));
      const registryHost = new URL(nginx.url).host;
      replicas.push(...await Promise.all(['a', 'b'].map((name, i) => startReplica(name, work.path, shared, {
        listen: `127.0.0.1:${ports[i]}`, log: { level: 'info' }, logs: { driver: 'blobstore' },
        builds: { ...buildah[i]!.builds, registryHost, insecureRegistries: [registryHost] },
        pipelines: { concurrency: 1, shellUid, shellGid: shellUid },
      }))));
      const [a, b] = replicas as [Replica, Replica];
      assert.equal((await call(`${a.url}/api/v1/namespaces`, { method: 'POST', headers: json, body: JSON.stringify({ name: 'team' }) })).status, 201);
      const repo = await makeRepository(work.path);
      await repo.commit({
        Dockerfile: 'FROM scratch\nCOPY hello.txt /hello.txt\nCOPY README.md /README.md\n',
        'hello.txt': 'hello from a replica build\n',
        'build_spec.yaml': `version: 0.1
component: build
timeoutInSeconds: 300
shell: bash
steps:
  - type: Command
    name: Work
    command: |
      p=$$
      while [ "$p" -gt 1 ]; do echo "ancestor $p"; p=$(awk '/^PPid/ {print $2}' /proc/$p/status); done
      for i in 1 2 3 4 5; do echo "tick $i"; sleep 1; done
`,
      }, 'build files');
      // The shell user reads the clone; the temp folder is private to root otherwise.
      await chmod(work.path, 0o755);

      // ---- an image build queued through A, its log followed from B ----
      const form = new FormData();
      for (const [key, value] of Object.entries({ component: 'hello', branch: 'main', architecture: 'linux/amd64', tag: 'v1', gitUrl: repo.url })) form.set(key, value);
      const queued = await fetch(`${a.url}/api/v1/namespaces/team/images`, { method: 'POST', body: form, headers: { authorization: basic } });
      const build = await queued.json() as { id: string; status: string };
      assert.ok(queued.status === 201 || queued.status === 202, JSON.stringify(build));
      const buildLogs = await Promise.all(replicas.map((replica) => followLog(`${replica.url}/api/v1/namespaces/team/builds/${build.id}/logs?follow=true`, 300_000)));
      for (const [i, buildLog] of buildLogs.entries()) {
        assert.equal(buildLog.end.status, 'succeeded', `${JSON.stringify(buildLog.end)}\n${buildLog.lines.map((l) => l.text).join('\n').slice(-3000)}`);
        assert.ok(buildLog.lines.some((line) => /COPY hello\.txt/.test(line.text)), `${replicas[i]!.name} streams the build's own output`);
      }
      // The worker clones into its own data folder: the log names it.
      const builtIn = replicas.find((replica) => buildLogs[0]!.lines.some((line) => line.text.includes(`${replica.dataDir}/builds/`)));
      assert.ok(builtIn, 'the clone went into one replica\'s data folder');
      figures.buildClaimedBy = builtIn.name;
      figures.buildLogLines = buildLogs.map((log) => log.lines.length);
      const built = await call(`${b.url}/api/v1/namespaces/team/builds/${build.id}`, { headers: { authorization: basic } });
      assert.equal(built.status, 200, show(built));

      // ---- a pipeline run queued through B, its live log followed from A ----
      const created = await call(`${b.url}/api/v1/namespaces/team/pipelines`, {
        method: 'POST', headers: json,
        body: JSON.stringify({ name: 'ticks', sources: [{ name: 'app', url: repo.url, branch: 'main' }], stages: [{ name: 'build', type: 'build' }] }),
      });
      assert.equal(created.status, 201, show(created));
      const started = await call(`${b.url}/api/v1/namespaces/team/pipelines/ticks/runs`, { method: 'POST', headers: json, body: '{}' });
      assert.equal(started.status, 201, show(started));
      const number = (JSON.parse(started.body.toString('utf8')) as { number: number }).number;
      // Followed from both replicas at once: one of them is not the one running it.
      const runLogs = await Promise.all(replicas.map((replica) => followLog(`${replica.url}/api/v1/namespaces/team/pipelines/ticks/runs/${number}/logs?follow=true`, 300_000)));
      const ranOn = runner(runLogs[0]!.lines, replicas);
      assert.ok(ranOn, `the step ran under one of the replicas:\n${runLogs[0]!.lines.map((line) => line.text).join('\n').slice(0, 2000)}`);
      figures.runClaimedBy = ranOn.name;
      figures.ticksSpreadMs = {};
      for (const [i, runLog] of runLogs.entries()) {
        const text = runLog.lines.map((line) => line.text).join('\n');
        assert.equal(runLog.end.status, 'succeeded', `${JSON.stringify(runLog.end)}\n${text.slice(-3000)}`);
        const ticks = runLog.lines.filter((line) => /tick \d/.test(line.text));
        assert.equal(ticks.length, 5, text.slice(-3000));
        // Live, not replayed at the end: the ticks arrived about a second apart.
        const spread = ticks.at(-1)!.at - ticks[0]!.at;
        (figures.ticksSpreadMs as Record<string, number>)[replicas[i]!.name] = spread;
        const timeline = runLog.lines.map((line) => `+${line.at - runLog.lines[0]!.at} ${line.text}`).join('\n');
        assert.ok(spread >= 2500, `${replicas[i]!.name} (the run is on ${ranOn.name}) got the ticks as they were printed (${spread} ms apart):\n${timeline}`);
      }
      process.stdout.write(`# replica builds figures: ${JSON.stringify(figures)}\n`);
    } finally {
      for (const replica of replicas) await stopReplica(replica);
      await nginx?.stop();
      for (const one of buildah) await one.cleanup();
      await s3.close();
      await database.drop();
      await work.remove();
    }
  });
});
