/**
 * Builds and pipeline runs across replicas: two `slipway serve` processes on one PostgreSQL
 * database, one S3 bucket (logs in it: `logs.driver: blobstore`) and one master key, nginx in
 * front (built images are named and pushed by its host, `builds.registryHost`).
 *   - an image build (buildah, from a git repository) queued through A is claimed by whichever
 *     replica's worker comes first, and its log is followed live from B to its end;
 *   - a pipeline run queued through B is claimed by either, and its live log, followed from both
 *     replicas while the step still prints, arrives line by line on each (the step prints its
 *     ancestors' pids, which name the replica that runs it);
 *   - image builds with uploaded inputs (a context tar.gz; a git build's own Dockerfile) received
 *     by A are run by B: B is stopped while A's only build worker takes a build that hangs in its
 *     clone (a git server that never answers), the uploads are then posted to A, and B, started
 *     again, is the only free worker. B fetches the inputs from the bucket, builds and pushes;
 *     afterwards no folder or object of them is left.
 * Needs PostgreSQL (SLIPWAY_TEST_POSTGRES_URL), buildah and git.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { create as packTar, Parser } from 'tar';
import { createS3BlobStore } from '../src/storage/s3-blob-store.js';
import { killAllChildren } from './helpers/commands.js';
import { dialects, tempDir } from './helpers/dialects.js';
import { buildWork, type BuildWork } from './helpers/function-images.js';
import { makeRepository } from './helpers/git-repository.js';
import { call, show, sleep } from './helpers/registry-client.js';
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

/** Paths in a (gzipped) layer blob. */
function layerPaths(gzipped: Buffer): string[] {
  const paths: string[] = [];
  const parser = new Parser({ onReadEntry: (entry) => { paths.push(entry.path); entry.resume(); } });
  parser.end(gunzipSync(gzipped));
  return paths;
}

/** Polls a build until `until` holds (or the time is up). */
async function waitForBuild(url: string, until: (build: { status: string }) => boolean, timeoutMs: number): Promise<{ status: string; errorMessage?: string; digest?: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const fetched = await call(url, { headers: { authorization: basic } });
    const build = JSON.parse(fetched.body.toString('utf8')) as { status: string };
    if (until(build)) return build;
    if (Date.now() > deadline) throw new Error(`build at ${url} is still ${build.status} after ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** Which replica's process tree a set of log lines names (`ancestor <pid>` lines). */
function runner(lines: Array<{ text: string }>, replicas: Replica[]): Replica | undefined {
  const pids = new Set(lines.flatMap((line) => /ancestor (\d+)/.exec(line.text)?.[1] ?? []).map(Number));
  return replicas.find((replica) => pids.has(replica.child.pid!));
}

describe('builds and pipeline runs on two replicas', { timeout: 640_000, skip: postgres ? false : 'needs SLIPWAY_TEST_POSTGRES_URL' }, () => {
  test('queued through one replica, claimed by whichever, the live log followed from the other', { timeout: 620_000 }, async () => {
    const work = await tempDir('slipway-replicas-builds-');
    const database = await postgres!.create();
    const s3 = await startS3Server();
    const shared = { database: database.url, s3, masterKey: randomBytes(32).toString('base64') };
    const replicas: Replica[] = [];
    const buildah: BuildWork[] = [];
    let nginx: Nginx | undefined;
    let hangingGit: net.Server | undefined;
    const held = new Set<net.Socket>();
    const objectsView = createS3BlobStore(s3.config('replicas/'));
    const figures: Record<string, unknown> = {};
    try {
      buildah.push(await buildWork(), await buildWork());
      // Replicas name built images by the load balancer's host (whoever builds pushes there), so
      // nginx comes first, in front of the ports the replicas will listen on.
      const ports = [await freePort(), await freePort()];
      nginx = await startNginx(work.path, ports.map((port) => `127.0.0.1:${port}`));
      const registryHost = new URL(nginx.url).host;
      // One build at a time on each (the default, said here because the uploads part relies on it).
      const settings = (i: number) => ({
        listen: `127.0.0.1:${ports[i]}`, log: { level: 'info' }, logs: { driver: 'blobstore' },
        builds: { ...buildah[i]!.builds, registryHost, insecureRegistries: [registryHost], concurrency: 1 },
        pipelines: { concurrency: 1, shellUid, shellGid: shellUid },
      });
      replicas.push(...await Promise.all(['a', 'b'].map((name, i) => startReplica(name, work.path, shared, settings(i)))));
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
      // ---- uploaded inputs received by A, built by B ----
      await stopReplica(b);
      // A git server that takes the connection and never answers: the clone waits (until cancelled).
      hangingGit = net.createServer((socket) => { held.add(socket); socket.on('close', () => held.delete(socket)); });
      await new Promise<void>((resolve) => hangingGit!.listen(0, '127.0.0.1', resolve));
      const hangingUrl = `http://127.0.0.1:${(hangingGit.address() as net.AddressInfo).port}/blocker.git`;
      const blockerForm = new FormData();
      for (const [key, value] of Object.entries({ component: 'blocker', branch: 'main', architecture: 'linux/amd64', gitUrl: hangingUrl })) blockerForm.set(key, value);
      const blocker = await (await fetch(`${a.url}/api/v1/namespaces/team/images`, { method: 'POST', body: blockerForm, headers: { authorization: basic } })).json() as { id: string };
      await waitForBuild(`${a.url}/api/v1/namespaces/team/builds/${blocker.id}`, (one) => one.status === 'running', 60_000);

      const contextDir = path.join(work.path, 'upload-context');
      await mkdir(path.join(contextDir, 'docs'), { recursive: true });
      await writeFile(path.join(contextDir, 'greeting.txt'), 'uploaded to A, built on B\n');
      await writeFile(path.join(contextDir, 'docs', 'notes.md'), '# notes\n');
      const contextTgz = Buffer.concat(await Readable.from(packTar({ cwd: contextDir, gzip: true, portable: true }, ['greeting.txt', 'docs'])).toArray() as Buffer[]);
      const uploadForm = new FormData();
      for (const [key, value] of Object.entries({ component: 'ctx', branch: 'main', architecture: 'linux/amd64', tag: 'v1' })) uploadForm.set(key, value);
      uploadForm.set('dockerfile', new Blob(['FROM scratch\nCOPY greeting.txt /ctx/greeting.txt\nCOPY docs /ctx/docs\n']), 'Dockerfile');
      uploadForm.set('context', new Blob([contextTgz]), 'context.tar.gz');
      const uploaded = await fetch(`${a.url}/api/v1/namespaces/team/images`, { method: 'POST', body: uploadForm, headers: { authorization: basic } });
      const uploadBuild = await uploaded.json() as { id: string; status: string };
      assert.equal(uploaded.status, 202, JSON.stringify(uploadBuild));
      // A git build whose Dockerfile is uploaded beside it (the repository's own one is different).
      const gitForm = new FormData();
      for (const [key, value] of Object.entries({ component: 'gitdf', branch: 'main', architecture: 'linux/amd64', tag: 'v1', gitUrl: repo.url })) gitForm.set(key, value);
      gitForm.set('dockerfile', new Blob(['FROM scratch\nCOPY hello.txt /uploaded-dockerfile/hello.txt\n']), 'Dockerfile');
      const gitQueued = await fetch(`${a.url}/api/v1/namespaces/team/images`, { method: 'POST', body: gitForm, headers: { authorization: basic } });
      const gitBuild = await gitQueued.json() as { id: string; status: string };
      assert.equal(gitQueued.status, 202, JSON.stringify(gitBuild));
      // Durable in the bucket before the 202, and not kept on A (whose copy nobody would remove).
      const contextObjects = async () => {
        const keys: string[] = [];
        for await (const object of objectsView.objects.list('build-contexts/')) keys.push(object.key);
        return keys.sort();
      };
      assert.deepEqual(await contextObjects(), [`build-contexts/${gitBuild.id}.dockerfile`, `build-contexts/${uploadBuild.id}.tar`].sort());
      const aContexts = await readdir(path.join(a.dataDir, 'builds', 'contexts')).catch(() => [] as string[]);
      assert.deepEqual(aContexts.filter((name) => name.startsWith(uploadBuild.id) || name.startsWith(gitBuild.id)), []);
      assert.equal((await waitForBuild(`${a.url}/api/v1/namespaces/team/builds/${uploadBuild.id}`, () => true, 1000)).status, 'queued', 'A\'s only worker is busy');

      const b2 = await startReplica('b', work.path, shared, settings(1));
      replicas[1] = b2;
      for (const [name, queuedBuild, repository, expected] of [
        ['upload', uploadBuild, 'team/ctx-main-image', ['ctx/greeting.txt', 'ctx/docs/notes.md']],
        ['git with an uploaded Dockerfile', gitBuild, 'team/gitdf-main-image', ['uploaded-dockerfile/hello.txt']],
      ] as const) {
        const log = await followLog(`${b2.url}/api/v1/namespaces/team/builds/${queuedBuild.id}/logs?follow=true`, 240_000);
        assert.equal(log.end.status, 'succeeded', `${name}: ${JSON.stringify(log.end)}\n${log.lines.map((l) => l.text).join('\n').slice(-3000)}`);
        const manifest = await call(`${b2.url}/v2/${repository}/manifests/v1`, {
          headers: { authorization: basic, accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
        });
        assert.equal(manifest.status, 200, show(manifest));
        assert.equal(manifest.headers.get('docker-content-digest'), log.end.digest, `${name}: the pushed image is the build's`);
        const layers = (JSON.parse(manifest.body.toString('utf8')) as { layers: Array<{ digest: string }> }).layers;
        const paths = [];
        for (const layer of layers) {
          const blob = await call(`${b2.url}/v2/${repository}/blobs/${layer.digest}`, { headers: { authorization: basic } });
          assert.equal(blob.status, 200, show(blob));
          paths.push(...layerPaths(blob.body));
        }
        for (const file of expected) assert.ok(paths.some((entry) => entry.replace(/^\.?\//, '') === file), `${name}: ${file} is in the image (${paths.join(', ')})`);
      }
      // Built while A's worker still waited on its clone: B ran both.
      assert.equal((await waitForBuild(`${a.url}/api/v1/namespaces/team/builds/${blocker.id}`, () => true, 1000)).status, 'running');
      assert.deepEqual(await contextObjects(), [], 'the ended builds\' objects are removed');
      const bContexts = await readdir(path.join(b2.dataDir, 'builds', 'contexts')).catch(() => [] as string[]);
      assert.deepEqual(bContexts, [], 'and so are the working copies on B');
      assert.equal((await call(`${a.url}/api/v1/namespaces/team/builds/${blocker.id}/cancel`, { method: 'POST', headers: { authorization: basic } })).status, 200);
      assert.equal((await waitForBuild(`${a.url}/api/v1/namespaces/team/builds/${blocker.id}`, (one) => !['queued', 'running'].includes(one.status), 60_000)).status, 'cancelled');
      for (const socket of held) socket.destroy();
      figures.uploadsBuiltBy = 'b';

      process.stdout.write(`# replica builds figures: ${JSON.stringify(figures)}\n`);
    } finally {
      for (const replica of replicas) await stopReplica(replica);
      await nginx?.stop();
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => (hangingGit ? hangingGit.close(resolve) : resolve(undefined)));
      await objectsView.close();
      for (const one of buildah) await one.cleanup();
      await s3.close();
      await database.drop();
      await work.remove();
    }
  });
});
