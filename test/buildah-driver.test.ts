/**
 * The buildah build driver with real buildah: first the shared BuildDriver suite, then what is
 * particular to buildah, offline: a minimal Node.js base image is assembled
 * from the host's node + static busybox and imported into a real Slipway registry (127.0.0.1,
 * plain HTTP, auth off), then Dockerfile builds and step runs use it. buildah runs with a store
 * of its own (--root/--runroot in a temp folder), removed afterwards; every test checks that no
 * container, mount, process or temp file is left behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { killAllChildren, requireCommands, run } from './helpers/commands.js';
import { withLoad } from './helpers/load.js';
import { sha256 } from './helpers/oci.js';
import { BuildError, type BuildRequest } from '../src/builds/build-driver.js';
import { BuildahDriver } from '../src/builds/buildah-driver.js';
import { assembleNodeRootfs, importBaseImage } from '../src/builds/base-image.js';
import { buildDriverSuite } from './suites/build-driver.js';

const manifestAccept = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

interface Manifest {
  config: { digest: string };
  layers: Array<{ digest: string; mediaType: string }>;
}

async function getManifest(ts: TestServer, name: string, reference: string): Promise<{ status: number; digest: string | null; body: Buffer }> {
  const response = await fetch(`${ts.url}/v2/${name}/manifests/${reference}`, { headers: { Accept: manifestAccept } });
  return { status: response.status, digest: response.headers.get('docker-content-digest'), body: Buffer.from(await response.arrayBuffer()) };
}

async function getBlob(ts: TestServer, name: string, digest: string): Promise<Buffer> {
  const response = await fetch(`${ts.url}/v2/${name}/blobs/${digest}`);
  assert.equal(response.status, 200, `blob ${digest} of ${name}`);
  return Buffer.from(await response.arrayBuffer());
}

/** The entries of a tar archive (ustar, pax `path`, GNU long names), later entries win. */
function readTar(data: Buffer): Map<string, Buffer> {
  const entries = new Map<string, Buffer>();
  let offset = 0;
  let nextName: string | undefined;
  const text = (start: number, length: number) => {
    const raw = data.subarray(start, start + length);
    const end = raw.indexOf(0);
    return raw.subarray(0, end < 0 ? length : end).toString('utf8');
  };
  while (offset + 512 <= data.length) {
    if (data.subarray(offset, offset + 512).every((byte) => byte === 0)) break;
    const size = parseInt(text(offset + 124, 12).trim() || '0', 8);
    const type = String.fromCharCode(data[offset + 156]!);
    const prefix = text(offset + 345, 155);
    let name = text(offset, 100);
    if (prefix) name = `${prefix}/${name}`;
    const body = data.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      const match = /\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
      if (match) nextName = match[1];
      continue;
    }
    if (type === 'L') {
      nextName = body.toString('utf8').replace(/\0+$/, '');
      continue;
    }
    if (type === 'g') continue;
    entries.set((nextName ?? name).replace(/^\.\//, '').replace(/\/$/, ''), Buffer.from(body));
    nextName = undefined;
  }
  return entries;
}

/** Mount points under a folder (overlay mounts of containers in the test's store). */
async function mountsUnder(dir: string): Promise<string[]> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n');
  return lines.map((line) => line.split(' ')[4] ?? '').filter((point) => point.startsWith(dir + '/')).sort();
}

/** Processes whose command line contains `needle` (to prove a killed build left none running). */
async function processesWith(needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`)).toString('utf8').replace(/\0/g, ' ');
      if (cmdline.includes(needle)) found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

/** buildah run bundles in the default temp folder that mention `needle` (a killed build must not leave one). */
async function bundlesInVarTmpWith(needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir('/var/tmp').catch(() => [] as string[])) {
    if (!entry.startsWith('buildah')) continue;
    const config = await readFile(path.join('/var/tmp', entry, 'config.json'), 'utf8').catch(() => '');
    if (config.includes(needle)) found.push(entry);
  }
  return found;
}

buildDriverSuite('buildah', async (workDir) => {
  const storageRoot = path.join(workDir, 'suite-storage');
  const tmpDir = path.join(workDir, 'suite-tmp');
  await mkdir(tmpDir, { recursive: true });
  const driver = new BuildahDriver({ storage: { root: storageRoot, runRoot: path.join(workDir, 'suite-runroot'), driver: 'overlay' }, tmpDir, graceMs: 5_000 });
  const baseMounts = await mountsUnder(storageRoot);
  return {
    driver,
    async leftovers() {
      const mounts = (await mountsUnder(storageRoot)).filter((point) => !baseMounts.includes(point));
      return [...(await driver.containers()).map((c) => `container ${c.name}`), ...mounts, ...await readdir(tmpDir)];
    },
    async close() {
      await driver.exec(['rm', '--all'], { timeoutMs: 120_000 }).catch(() => undefined);
      await driver.exec(['rmi', '--all', '--force'], { timeoutMs: 120_000 }).catch(() => undefined);
      for (const point of (await mountsUnder(storageRoot)).reverse()) await run('umount', ['-l', point], { allowFailure: true }).catch(() => undefined);
    },
  };
});

describe('BuildahDriver with real buildah', { timeout: 1_800_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  let driver: BuildahDriver;
  let storageRoot: string;
  let tmpRoot: string;
  let baseImage: string;
  let baseMounts: string[] = [];

  /** A build log kept in memory. */
  const collect = () => {
    const lines: string[] = [];
    return { lines, sink: (line: string) => lines.push(line), text: () => lines.join('\n') };
  };

  /** What every test ends with: no container, mount or temp file of ours is left. */
  async function assertClean(what: string): Promise<void> {
    assert.deepEqual(await driver.containers(), [], `${what}: no buildah containers left`);
    assert.deepEqual(await mountsUnder(storageRoot), baseMounts, `${what}: no mounts left in the store`);
    assert.deepEqual(await readdir(tmpRoot), [], `${what}: no temp files left`);
  }

  async function context(files: Record<string, string | Buffer>): Promise<string> {
    const dir = path.join(work.path, `ctx-${randomBytes(4).toString('hex')}`);
    for (const [name, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), content);
    }
    return dir;
  }

  before(async () => {
    await requireCommands({ buildah: 'buildah', tar: 'tar', ldd: 'libc-bin' });
    ts = await startTestServer();
    work = await tempDir('slipway-buildah-driver-');
    storageRoot = path.join(work.path, 'storage');
    tmpRoot = path.join(work.path, 'tmp');
    await mkdir(tmpRoot, { recursive: true });
    driver = new BuildahDriver({ storage: { root: storageRoot, runRoot: path.join(work.path, 'runroot'), driver: 'overlay' }, tmpDir: tmpRoot, graceMs: 5_000 });
    baseMounts = await mountsUnder(storageRoot);
    const rootfs = path.join(work.path, 'rootfs');
    await assembleNodeRootfs(rootfs);
    baseImage = `${ts.host}/base/node:1`;
    const log = collect();
    await importBaseImage({ source: { rootfsDir: rootfs }, destination: baseImage, insecureRegistries: [ts.host], driver, cmd: ['/usr/bin/node'] }, log.sink);
  }, { timeout: 300_000 });

  after(async () => {
    killAllChildren();
    if (driver) {
      await driver.exec(['rm', '--all'], { timeoutMs: 120_000 }).catch(() => undefined);
      await driver.exec(['rmi', '--all', '--force'], { timeoutMs: 120_000 }).catch(() => undefined);
    }
    // Anything buildah still has mounted in the test's store goes before the folder does.
    if (storageRoot) for (const point of (await mountsUnder(storageRoot)).reverse()) await run('umount', ['-l', point], { allowFailure: true }).catch(() => undefined);
    await ts?.close();
    await work?.remove();
  });

  test('runSteps: node runs in the imported base image; env reaches steps; a binary output is copied out', { timeout: 300_000 }, async () => {
    const ctx = await context({ 'input.txt': 'from the context\n' });
    const outputDir = path.join(work.path, 'out-steps');
    const seed = `seed-${randomBytes(4).toString('hex')}`;
    const log = collect();
    const result = await driver.runSteps({
      baseImage,
      contextDir: ctx,
      insecureRegistries: [ts.host],
      env: { SEED: seed },
      steps: [
        { name: 'hello', command: "node -e 'console.log(1+1)'" },
        {
          name: 'binary',
          command: `mkdir -p out && node -e "const c=require('crypto');const parts=[];for(let i=0;i<2048;i++)parts.push(c.createHash('sha256').update(process.env.SEED+i).digest());require('fs').writeFileSync('out/data.bin',Buffer.concat(parts))"`,
        },
        // An absolute symlink is resolved inside the container, never on the host.
        { name: 'link', command: 'ln -s /etc/passwd out/passwd-link && cat input.txt' },
      ],
      outputs: [
        { name: 'data.bin', path: 'out/data.bin' },
        { name: 'passwd', path: 'out/passwd-link' },
      ],
      outputDir,
    }, log.sink);

    assert.ok(log.lines.includes('2'), `node printed 2:\n${log.text()}`);
    assert.ok(log.lines.includes('from the context'), 'the context is in /workspace');
    const expected = Buffer.concat(Array.from({ length: 2048 }, (_, i) => createHash('sha256').update(seed + i).digest()));
    const data = await readFile(path.join(outputDir, 'data.bin'));
    assert.equal(data.length, 65_536);
    assert.ok(data.equals(expected), 'the binary output is byte for byte what the step wrote');
    assert.deepEqual(result.outputs.map((o) => [o.name, o.size]), [['data.bin', 65_536], ['passwd', (await readFile(path.join(outputDir, 'passwd'))).length]]);
    assert.match(await readFile(path.join(outputDir, 'passwd'), 'utf8'), /^app:x:1003:1003:/m, 'the container\'s /etc/passwd, not the host\'s');
    for (const phase of ['prepare', 'step:hello', 'step:binary', 'step:link', 'outputs']) assert.equal(typeof result.phases[phase], 'number', phase);
    await assertClean('runSteps');
  });

  test('runSteps: a failing step and a step over its time limit give a BuildError naming the step', { timeout: 300_000 }, async () => {
    const ctx = await context({ 'a.txt': 'a' });
    const failing = collect();
    await assert.rejects(
      driver.runSteps({
        baseImage, contextDir: ctx, insecureRegistries: [ts.host], outputs: [], outputDir: path.join(work.path, 'out-fail'),
        steps: [{ name: 'fine', command: 'echo fine' }, { name: 'breaks', command: 'echo about to fail >&2; exit 3' }, { name: 'never', command: 'echo never' }],
      }, failing.sink),
      (error: unknown) => {
        assert.ok(error instanceof BuildError);
        assert.equal(error.reason, 'failed');
        assert.equal(error.step, 'breaks');
        assert.equal(error.exitCode, 3);
        assert.match(error.message, /step "breaks" failed with exit code 3/);
        return true;
      },
    );
    assert.ok(failing.lines.includes('about to fail'), 'the step\'s output is in the log');
    assert.ok(!failing.lines.includes('never'), 'later steps do not run');

    const slow = collect();
    const started = Date.now();
    await assert.rejects(
      driver.runSteps({
        baseImage, contextDir: ctx, insecureRegistries: [ts.host], outputs: [], outputDir: path.join(work.path, 'out-slow'),
        steps: [{ name: 'slow', command: 'echo sleeping; sleep 617', timeoutMs: 2_000 }],
      }, slow.sink),
      (error: unknown) => error instanceof BuildError && error.reason === 'timeout' && error.step === 'slow' && /step "slow" timed out/.test(error.message),
    );
    assert.ok(Date.now() - started < 60_000, 'the time limit ended the step');
    assert.deepEqual(await processesWith('sleep 617'), [], 'the step\'s processes are gone');
    await assertClean('failed steps');
  });

  test('runSteps under load: 20 steps in a row, the last one failing; every line each step printed is in the log', { timeout: 300_000 }, async () => {
    const ctx = await context({ 'a.txt': 'a' });
    const log = collect();
    const steps = Array.from({ length: 20 }, (_, i) => ({
      name: `s${i}`,
      // The last line goes out right before the step ends (a failing one: right before its exit).
      command: i === 19 ? `echo out ${i}; echo about to fail ${i} >&2; exit 3` : `echo out ${i}; echo last ${i} >&2`,
    }));
    await withLoad(() => assert.rejects(
      driver.runSteps({ baseImage, contextDir: ctx, insecureRegistries: [ts.host], outputs: [], outputDir: path.join(work.path, 'out-load'), steps }, log.sink),
      (error: unknown) => error instanceof BuildError && error.step === 's19' && error.exitCode === 3,
    ));
    const missing = steps.flatMap((_, i) => (i === 19 ? [`out ${i}`, `about to fail ${i}`] : [`out ${i}`, `last ${i}`])).filter((line) => !log.lines.includes(line));
    assert.deepEqual(missing, [], 'every line of every step is in the log');
    const failed = log.lines.indexOf('[slipway] step s19 failed with exit code 3');
    assert.ok(failed > log.lines.indexOf('about to fail 19'), 'the failing step\'s last line comes before its failure');
    await assertClean('runSteps under load');
  });

  test('local images for pipeline stages: buildLocal, list, tag, inspect, push, mountImage, remove', { timeout: 300_000 }, async () => {
    const ctx = await context({ Dockerfile: `FROM ${baseImage}\nENV GREETING=hi\nRUN echo built > /built.txt\n` });
    const output: Array<[string, string]> = [];
    const name = 'localhost/slipway-test/local:1';
    const { imageId } = await driver.buildLocal({ contextDir: ctx, dockerfile: path.join(ctx, 'Dockerfile'), tags: [name], labels: ['team=a'], insecureRegistries: [ts.host] }, (line, stream) => output.push([stream, line]));
    assert.match(imageId, /^[0-9a-f]{64}$/);
    assert.ok(output.some(([stream, line]) => stream === 'stdout' && /^STEP \d+\/\d+: RUN echo built/.test(line)), 'the build tool\'s output came through, stdout and stderr apart');
    assert.ok(!output.some(([, line]) => line.includes('SLIPWAY_INTERNAL_BUILD_MARKER')), 'the cleanup marker is not shown');

    await driver.tagImage(imageId, 'localhost/slipway-test/local:2');
    const listed = (await driver.listImages()).find((image) => image.id === imageId);
    assert.deepEqual(listed?.names.sort(), [name, 'localhost/slipway-test/local:2']);
    const details = await driver.inspectImage(imageId);
    assert.ok((details?.config.Env as string[] | undefined)?.includes('GREETING=hi'));
    assert.equal((details?.config.Labels as Record<string, string> | undefined)?.team, 'a');
    assert.equal(await driver.inspectImage('localhost/slipway-test/none:1'), null);

    const log = collect();
    const pushed = await driver.pushImage({ image: name, destination: `${ts.host}/team/local:1`, insecure: true }, log.sink);
    assert.equal((await getManifest(ts, 'team/local', '1')).digest, pushed.digest);
    assert.ok(log.lines.includes(`[slipway] pushed ${ts.host}/team/local:1 ${pushed.digest}`));

    const root = await driver.mountImage({ name: `slipway-test-${randomBytes(4).toString('hex')}`, image: `${ts.host}/team/local:1`, insecure: true }, log.sink);
    assert.equal(await readFile(path.join(root.rootfs, 'built.txt'), 'utf8'), 'built\n');
    assert.equal(root.env.GREETING, 'hi');
    await root.release();
    await root.release();

    await driver.removeImage(name);
    await driver.removeImage('localhost/slipway-test/local:2');
    await assert.rejects(driver.removeImage(name), (error: unknown) => error instanceof BuildError && error.reason === 'not-found');
    const broken = await context({ Dockerfile: `FROM ${baseImage}\nRUN echo broken >&2; exit 7\n` });
    await assert.rejects(
      driver.buildLocal({ contextDir: broken, dockerfile: path.join(broken, 'Dockerfile'), tags: ['localhost/slipway-test/broken:1'], insecureRegistries: [ts.host] }, () => undefined),
      (error: unknown) => error instanceof BuildError && error.reason === 'failed',
    );
    await assertClean('local images');
  });

  const secret = `tok-${randomBytes(16).toString('hex')}`;
  const greeting = `bonjour-${randomBytes(4).toString('hex')}`;
  let buildRequest: BuildRequest;
  let coldMs = 0;
  let coldDigest = '';

  test('build: RUN, COPY, build arg, target stage, .dockerignore, secret mount; the secret is in no log line and no layer', { timeout: 300_000 }, async () => {
    const ctx = await context({
      'docker/app.Dockerfile': [
        `FROM ${baseImage} AS builder`,
        'ARG GREETING=hello',
        'WORKDIR /app',
        'COPY app/ /app/',
        'RUN echo "$GREETING from the builder" > /app/greeting.txt',
        'RUN --mount=type=secret,id=api_token echo "token is $(cat /run/secrets/api_token)" && node -e "process.stdout.write(require(\'crypto\').createHash(\'sha256\').update(require(\'fs\').readFileSync(\'/run/secrets/api_token\')).digest(\'hex\'))" > /app/token.sha256',
        '',
        'FROM builder AS release',
        'RUN node /app/main.js > /app/ran.txt',
        '',
        // Past the target: never built.
        'FROM release AS broken',
        'RUN exit 9',
        '',
      ].join('\n'),
      'app/main.js': "console.log('main ran')\n",
      'app/ignored.txt': 'this file is excluded by .dockerignore\n',
      'app/debug.log': 'so is this one\n',
      '.dockerignore': 'app/ignored.txt\n**/*.log\n',
    });
    buildRequest = {
      contextDir: ctx,
      dockerfile: 'docker/app.Dockerfile',
      buildArgs: { GREETING: greeting },
      target: 'release',
      platform: 'linux/amd64',
      secrets: [{ id: 'api_token', value: secret }],
      destination: `${ts.host}/team/app-main-image:1`,
      insecureRegistries: [ts.host],
    };
    const log = collect();
    const started = Date.now();
    const result = await driver.build(buildRequest, log.sink);
    coldMs = Date.now() - started;
    coldDigest = result.digest;
    console.log(`cold build: ${coldMs} ms (phases ${JSON.stringify(result.phases)})`);

    // The secret was used (its hash is in the image) but the log shows it masked.
    assert.ok(!log.text().includes(secret), 'the secret is not in the log');
    assert.ok(log.lines.includes('token is ****'), `the RUN that printed the secret is masked:\n${log.text()}`);
    assert.ok(!log.text().includes('exit 9'), 'the stage past the target did not run');
    assert.ok(!log.text().includes('SLIPWAY_INTERNAL_BUILD_MARKER'), 'the driver\'s marker argument stays out of the log');

    // What the registry holds is what the build reported.
    const manifest = await getManifest(ts, 'team/app-main-image', '1');
    assert.equal(manifest.status, 200);
    assert.equal(manifest.digest, result.digest);
    assert.equal(sha256(manifest.body), result.digest);
    assert.equal(result.imageRef, `${ts.host}/team/app-main-image@${result.digest}`);
    assert.ok(!manifest.body.includes(secret));
    const parsed = JSON.parse(manifest.body.toString('utf8')) as Manifest;
    const config = await getBlob(ts, 'team/app-main-image', parsed.config.digest);
    assert.ok(!config.includes(secret), 'the secret is not in the image config (history, env)');

    // Every layer, decompressed: no secret anywhere; the files are what the Dockerfile made.
    const files = new Map<string, Buffer>();
    for (const layer of parsed.layers) {
      const blob = await getBlob(ts, 'team/app-main-image', layer.digest);
      const tar = layer.mediaType.endsWith('gzip') ? gunzipSync(blob) : blob;
      assert.ok(!blob.includes(secret) && !tar.includes(secret), `layer ${layer.digest} does not contain the secret`);
      for (const [name, content] of readTar(tar)) files.set(name, content);
    }
    assert.equal(files.get('app/main.js')?.toString(), "console.log('main ran')\n");
    assert.equal(files.get('app/greeting.txt')?.toString(), `${greeting} from the builder\n`, 'the build arg reached RUN');
    assert.equal(files.get('app/token.sha256')?.toString(), createHash('sha256').update(secret).digest('hex'), 'RUN read the secret');
    assert.equal(files.get('app/ran.txt')?.toString(), 'main ran\n', 'the target stage ran');
    assert.ok(!files.has('app/ignored.txt'), '.dockerignore: ignored.txt is not in the image');
    assert.ok(!files.has('app/debug.log'), '.dockerignore: *.log is not in the image');
    assert.ok(!files.has('run/secrets/api_token'), 'the secret file is not in a layer');
    assert.ok(files.has('usr/bin/node'), 'the base layer is there');

    // The image runs: a step container made from it sees the same files.
    const check = collect();
    await driver.runSteps({
      baseImage: result.imageRef,
      contextDir: ctx, insecureRegistries: [ts.host], outputs: [], outputDir: path.join(work.path, 'out-check'),
      steps: [{ name: 'check', command: 'node /app/main.js && cat /app/greeting.txt && test ! -e /app/ignored.txt && echo no-ignored' }],
    }, check.sink);
    assert.ok(check.lines.includes('main ran') && check.lines.includes(`${greeting} from the builder`) && check.lines.includes('no-ignored'), check.text());
    await assertClean('build');
  });

  test('build: an unchanged rebuild uses the layer cache', { timeout: 300_000 }, async () => {
    assert.ok(buildRequest, 'runs after the build test');
    const log = collect();
    const started = Date.now();
    const result = await driver.build(buildRequest, log.sink);
    const cachedMs = Date.now() - started;
    console.log(`cached rebuild: ${cachedMs} ms (phases ${JSON.stringify(result.phases)}); cold build was ${coldMs} ms; digest ${result.digest === coldDigest ? 'unchanged' : 'changed'}`);
    const cacheHits = log.lines.filter((line) => /Using cache/.test(line)).length;
    assert.ok(cacheHits >= 3, `every RUN came from the cache (${cacheHits} hits):\n${log.text()}`);
    assert.ok(!log.text().includes(secret), 'the secret is not in the log');
    assert.equal((await getManifest(ts, 'team/app-main-image', '1')).digest, result.digest);
    await assertClean('cached build');
  });

  test('build: a buildah that ignores SIGTERM is killed with its group; the container it left is removed', { timeout: 300_000 }, async () => {
    // The container is found by the build's marker.
    const wrapper = path.join(work.path, 'stubborn-buildah.sh');
    await writeFile(wrapper, '#!/bin/sh\ntrap "" TERM\nbuildah "$@"\n');
    await chmod(wrapper, 0o755);
    const stubborn = new BuildahDriver({ command: wrapper, storage: { root: storageRoot, runRoot: path.join(work.path, 'runroot'), driver: 'overlay' }, tmpDir: tmpRoot, graceMs: 1_000 });
    const killCtx = await context({ Dockerfile: `FROM ${baseImage}\nRUN echo started-kill && sleep 633\n` });
    const killController = new AbortController();
    const killLog = collect();
    await assert.rejects(
      stubborn.build({ contextDir: killCtx, destination: `${ts.host}/team/killed:1`, insecureRegistries: [ts.host], signal: killController.signal }, (line) => {
        killLog.sink(line);
        if (line === 'started-kill') killController.abort();
      }),
      (error: unknown) => error instanceof BuildError && error.reason === 'aborted',
    );
    assert.ok(killLog.lines.some((line) => /removed container .* left by the build/.test(line)), `the left container was removed:\n${killLog.text()}`);
    assert.deepEqual(await processesWith('sleep 633'), []);
    assert.deepEqual(await bundlesInVarTmpWith('sleep 633'), [], 'buildah\'s run bundle went with the build\'s temp folder');
    await assertClean('killed build');
  });

  test('build: cacheRepository shares layers between two stores through the registry', { timeout: 300_000 }, async () => {
    const ctx = await context({ Dockerfile: `FROM ${baseImage}\nRUN echo computing && sleep 2 && node -e 'console.log(Date.now())' > /stamp\n` });
    // A second, empty store: it must pull the base image (plain HTTP, through the build's registries.conf).
    const otherRoot = path.join(work.path, 'storage-2');
    const other = new BuildahDriver({ storage: { root: otherRoot, runRoot: path.join(work.path, 'runroot-2'), driver: 'overlay' }, tmpDir: tmpRoot });
    const request: BuildRequest = { contextDir: ctx, destination: `${ts.host}/team/cached:1`, insecureRegistries: [ts.host], cacheRepository: `${ts.host}/team/build-cache` };
    try {
      const first = collect();
      const one = await driver.build(request, first.sink);
      assert.ok(first.lines.includes('computing'), 'the first build ran the RUN');
      assert.ok(first.lines.some((line) => /Pushing cache/.test(line)), `the layer went to the cache repository:\n${first.text()}`);
      const second = collect();
      const two = await other.build(request, second.sink);
      assert.ok(second.lines.some((line) => /Trying to pull .*base\/node:1/.test(line)), `the second store pulled the base:\n${second.text()}`);
      assert.ok(second.lines.some((line) => /Cache pulled from remote/.test(line)), `the second store used the registry cache:\n${second.text()}`);
      assert.ok(!second.lines.includes('computing'), 'the RUN did not run again');
      assert.equal(two.digest, one.digest, 'the same image');
      assert.deepEqual(await other.containers(), []);
    } finally {
      await other.exec(['rmi', '--all', '--force'], { timeoutMs: 120_000 }).catch(() => undefined);
      for (const point of (await mountsUnder(otherRoot)).reverse()) await run('umount', ['-l', point], { allowFailure: true }).catch(() => undefined);
    }
    await assertClean('cached-through-registry build');
  });
});
