/**
 * The pipeline build-stage executor with real buildah and runc, offline: shell steps on the host
 * as an unprivileged uid (environment shared between steps, exported variables, fail-fast, onFailure,
 * timeouts, masking, a clean environment, outputs), the `docker` shim building with buildah and
 * the image pushed to a real Slipway registry, and the container executor running steps in the
 * imported base image. Each test checks that nothing is left behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseBuildSpec } from '../src/builds/build-spec.js';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { buildWork, importBase, type BuildWork } from './helpers/function-images.js';
import { killAllChildren } from './helpers/commands.js';
import { StageExecutor, stepPaths, type StageRequest, type StageResult, type StepRecord } from '../src/pipelines/executor.js';
import { processesOf } from '../src/pipelines/executor-shell.js';

// Its own uid: other test files run shell steps as the default 1004 at the same time.
const shellUid = 1303;

async function mountsWith(needle: string): Promise<string[]> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n');
  return lines.map((line) => line.split(' ')[4] ?? '').filter((point) => point.includes(needle));
}

describe('pipeline stage executor', { timeout: 600_000 }, () => {
  let work: BuildWork;
  let root: { path: string; remove(): Promise<void> };
  let executor: StageExecutor;
  let ts: TestServer | undefined;
  let baseImage: string | undefined;

  before(async () => {
    work = await buildWork();
    root = await tempDir('slipway-executor-');
    await chmod(root.path, 0o711);
    executor = new StageExecutor({ driver: work.driver, workRoot: path.join(root.path, 'work'), graceMs: 1_000, shellUid, shellGid: shellUid });
  });

  after(async () => {
    killAllChildren();
    try {
      await ts?.close().catch(() => undefined);
      await work.cleanup().catch(() => undefined);
    } finally {
      await root.remove();
    }
  });

  /** A workspace with the primary source `src` holding `files`. */
  async function workspace(files: Record<string, string> = {}): Promise<string> {
    const dir = path.join(root.path, `ws-${randomBytes(4).toString('hex')}`);
    await mkdir(path.join(dir, 'src'), { recursive: true });
    for (const [name, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, 'src', name)), { recursive: true });
      await writeFile(path.join(dir, 'src', name), content);
    }
    return dir;
  }

  async function runStage(specText: string, overrides: Partial<StageRequest> & { files?: Record<string, string> } = {}): Promise<{ result: StageResult; log: string; lines: string[]; snapshots: StepRecord[][]; workspaceDir: string }> {
    const { files, ...rest } = overrides;
    const workspaceDir = rest.workspaceDir ?? await workspace(files);
    const lines: string[] = [];
    const snapshots: StepRecord[][] = [];
    const kind = rest.executor?.kind ?? 'shell';
    const paths = stepPaths(kind, workspaceDir, 'src');
    const result = await executor.runStage({
      runId: 'run-' + randomBytes(4).toString('hex'),
      stageName: 'build',
      spec: parseBuildSpec(specText),
      workspaceDir,
      primarySourceName: 'src',
      env: { OCI_WORKSPACE_DIR: paths.workspace, OCI_PRIMARY_SOURCE_DIR: paths.primarySource, OCI_BUILD_RUN_ID: 'ocid1.buildrun.abcdef1234567' },
      secrets: {},
      executor: { kind: 'shell' },
      images: { registryHost: ts?.host ?? '127.0.0.1:1', insecureRegistries: ts ? [ts.host] : [] },
      log: (line) => lines.push(line),
      onStep: (steps) => snapshots.push(steps),
      ...rest,
    });
    return { result, log: lines.join('\n'), lines, snapshots, workspaceDir };
  }

  async function processesWith(needle: string): Promise<number[]> {
    const found: number[] = [];
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const cmdline = await readFile(`/proc/${entry}/cmdline`).catch(() => Buffer.alloc(0));
      if (cmdline.toString('utf8').replace(/\0/g, ' ').includes(needle)) found.push(Number(entry));
    }
    return found;
  }

  async function assertNothingLeft(what: string): Promise<void> {
    assert.deepEqual(await processesOf(shellUid), [], `${what}: no processes of uid ${shellUid}`);
    assert.deepEqual(await work.driver.containers(), [], `${what}: no buildah containers`);
    assert.deepEqual(await mountsWith('slipway-stage-'), [], `${what}: no container mounts`);
    assert.deepEqual(await readdir(path.join(root.path, 'work', 'stages')).catch(() => []), [], `${what}: no stage folders`);
  }

  test('steps share one clean environment; exported variables; the step uid in the primary source', { timeout: 60_000 }, async () => {
    process.env.SLIPWAY_TEST_SERVER_MARKER = 'server-secret-env';
    try {
      const { result, log, workspaceDir, snapshots } = await runStage(`
version: 0.1
component: build
env:
  variables:
    GREETING: hello
  exportedVariables: [BUILDRUN_HASH, PLAIN, MISSING_ONE]
steps:
  - type: Command
    name: first
    command: |
      export BUILDRUN_HASH=\${OCI_BUILD_RUN_ID: -7}
      PLAIN=not-exported-by-the-step
      echo "uid=$(id -u) gid=$(id -g) cwd=$(pwd)"
      echo "marker=\${SLIPWAY_TEST_SERVER_MARKER:-unset} lang=$LANG"
      echo "home=$HOME"
      touch "$HOME/written" && echo home-writable
      exit 0
  - type: Command
    name: second
    shell: sh
    command: |
      echo "hash=$BUILDRUN_HASH greeting=\${GREETING:-none}"
      export BUILDRUN_HASH="\${BUILDRUN_HASH}-2"
`, { env: { GREETING: 'hello', OCI_BUILD_RUN_ID: 'ocid1.buildrun.abcdef1234567' } });
      assert.equal(result.status, 'succeeded', log);
      assert.match(log, /\[slipway\] step first/);
      assert.match(log, new RegExp(`uid=${shellUid} gid=${shellUid} cwd=${path.join(workspaceDir, 'src')}`));
      assert.match(log, /marker=unset lang=C\.UTF-8/);
      assert.doesNotMatch(log, /server-secret-env/);
      assert.match(log, /home-writable/);
      assert.doesNotMatch(log, new RegExp(`home=${workspaceDir}`), 'HOME is not in the workspace');
      assert.match(log, /hash=1234567 greeting=hello/);
      assert.deepEqual(result.exported, { BUILDRUN_HASH: '1234567-2', PLAIN: 'not-exported-by-the-step' });
      assert.match(log, /exported variable MISSING_ONE is not set/);
      assert.deepEqual(result.steps.map((s) => s.status), ['succeeded', 'succeeded']);
      assert.equal(result.steps[0]!.exitCode, 0);
      assert.ok(result.steps[0]!.durationMs! >= 0 && result.steps[0]!.startedAt && result.steps[0]!.finishedAt);
      assert.ok(snapshots.some((s) => s[0]!.status === 'running' && s[1]!.status === 'pending'), 'a snapshot while the first step runs');
      assert.equal((await stat(path.join(workspaceDir, 'src'))).uid, shellUid, 'the workspace belongs to the step user');
    } finally {
      delete process.env.SLIPWAY_TEST_SERVER_MARKER;
    }
    await assertNothingLeft('env');
  });

  test('fail-fast stops at the failing command; onFailure runs; later steps are skipped', { timeout: 60_000 }, async () => {
    const { result, log } = await runStage(`
version: 0.1
failImmediatelyOnError: true
steps:
  - type: Command
    name: lenient
    failImmediatelyOnError: false
    command: |
      false
      echo lenient-continued
  - type: Command
    name: breaks
    command: |
      export WHY=broken
      echo before-failure
      sh -c 'exit 3'
      echo after-failure
    onFailure:
      - type: Command
        name: cleanup
        command: echo "cleanup ran why=$WHY"
      - type: Command
        name: cleanup-fails-too
        command: exit 9
  - type: Command
    name: never
    command: echo never-runs
`);
    assert.equal(result.status, 'failed');
    assert.equal(result.failedStep, 'breaks');
    assert.equal(result.exitCode, 3);
    assert.match(result.message!, /step "breaks" failed with exit code 3/);
    assert.match(log, /lenient-continued/);
    assert.match(log, /before-failure/);
    assert.doesNotMatch(log, /after-failure/);
    assert.match(log, /cleanup ran why=broken/);
    assert.doesNotMatch(log, /never-runs/);
    assert.deepEqual(result.steps.map((s) => s.status), ['succeeded', 'failed', 'skipped']);
    assert.deepEqual(result.steps[1]!.onFailure!.map((s) => [s.status, s.exitCode]), [['succeeded', 0], ['failed', 9]]);
    assert.deepEqual(result.exported, {});
    await assertNothingLeft('fail-fast');
  });

  test('a step over its time limit is killed with its whole process group; a cancelled stage stops', { timeout: 60_000 }, async () => {
    const started = Date.now();
    const { result, log } = await runStage(`
version: 0.1
steps:
  - type: Command
    name: slow
    timeoutInSeconds: 1
    command: |
      sleep 600 &
      echo sleeping
      sleep 601
  - type: Command
    name: after
    command: echo after
`);
    assert.equal(result.status, 'failed');
    assert.equal(result.failedStep, 'slow');
    assert.match(result.message!, /timed out after 1 s/);
    assert.match(log, /sleeping/);
    assert.ok(Date.now() - started < 15_000, 'killed promptly');
    assert.deepEqual(result.steps.map((s) => s.status), ['failed', 'skipped']);
    await assertNothingLeft('step timeout');

    const controller = new AbortController();
    setTimeout(() => controller.abort(), 800);
    const cancelled = await runStage('version: 0.1\nsteps:\n  - type: Command\n    name: long\n    command: setsid sleep 602 & sleep 603\n', { signal: controller.signal });
    assert.equal(cancelled.result.status, 'cancelled');
    assert.equal(cancelled.result.steps[0]!.status, 'failed');
    await assertNothingLeft('cancel');

    const timedOut = await runStage('version: 0.1\ntimeoutInSeconds: 1\nsteps:\n  - type: Command\n    name: long\n    command: sleep 604\n');
    assert.equal(timedOut.result.status, 'timeout');
    assert.match(timedOut.result.message!, /timed out/);
    await assertNothingLeft('stage timeout');
  });

  test('vault secrets reach the steps and are masked in every line', { timeout: 60_000 }, async () => {
    const { result, log } = await runStage(`
version: 0.1
env:
  vaultVariables:
    DB_PASSWORD: ocid1.vaultsecret.x
steps:
  - type: Command
    name: leak
    command: |
      echo "pw=$DB_PASSWORD"
      echo "again $DB_PASSWORD" >&2
`, { secrets: { DB_PASSWORD: 'sup3r-s3cret-value' } });
    assert.equal(result.status, 'succeeded', log);
    assert.match(log, /pw=\*\*\*\*/);
    assert.match(log, /again \*\*\*\*/);
    assert.doesNotMatch(log, /sup3r-s3cret-value/);
  });

  test('BINARY outputs are copied with size and digest; a missing output fails the stage; runAs root is refused on the shell executor', { timeout: 60_000 }, async () => {
    const { result, log } = await runStage(`
version: 0.1
steps:
  - type: Command
    name: make
    command: |
      mkdir -p out && printf 'binary-content' > out/app.bin
      ln -s /etc/shadow out/sneaky
outputArtifacts:
  - name: app
    type: BINARY
    location: out/app.bin
`);
    assert.equal(result.status, 'succeeded', log);
    const output = result.outputs[0]!;
    assert.equal(output.type, 'BINARY');
    if (output.type !== 'BINARY') return;
    assert.equal(output.size, 14);
    assert.equal(output.digest, `sha256:${createHash('sha256').update('binary-content').digest('hex')}`);
    assert.equal(await readFile(output.file, 'utf8'), 'binary-content');
    assert.ok(!output.file.includes('/ws-'), 'copied out of the workspace');

    const missing = await runStage(`
version: 0.1
steps:
  - type: Command
    name: make
    command: ln -s /etc/shadow sneaky
outputArtifacts:
  - name: app
    type: BINARY
    location: out/none.bin
  - name: sneaky
    type: BINARY
    location: sneaky
`);
    assert.equal(missing.result.status, 'failed');
    assert.match(missing.result.message!, /output artifact app: out\/none\.bin is not a file/);
    const sneaky = await runStage('version: 0.1\nsteps:\n  - type: Command\n    name: make\n    command: ln -s /etc/shadow sneaky\noutputArtifacts:\n  - name: sneaky\n    type: BINARY\n    location: sneaky\n');
    assert.equal(sneaky.result.status, 'failed', 'a link out of the workspace is not collected');

    const refused = await runStage('version: 0.1\nsteps:\n  - type: Command\n    name: privileged\n    runAs: root\n    command: echo ran\n');
    assert.equal(refused.result.status, 'failed');
    assert.match(refused.result.message!, /runAs: root.*shell executor/);
    assert.deepEqual(refused.result.steps.map((s) => s.status), ['skipped']);
    assert.doesNotMatch(refused.log, /\[slipway\] step|^ran$/m);

    await assertNothingLeft('outputs');
  });

  test('input artifacts are copied into the workspace; invalid requests are errors', { timeout: 60_000 }, async () => {
    const input = path.join(root.path, 'input-lib.txt');
    await writeFile(input, 'library v2\n');
    const { result, log } = await runStage('version: 0.1\nsteps:\n  - type: Command\n    name: use\n    command: cat deps/lib.txt && cat /tmp/never 2>/dev/null; ls -l deps | tail -1\n', {
      inputFiles: [{ name: 'lib', location: 'deps/lib.txt', file: input }],
    });
    assert.equal(result.status, 'succeeded', log);
    assert.match(log, /library v2/);
    assert.match(log, /\[slipway\] input artifact lib -> deps\/lib\.txt/);

    const evil = await workspace({ 'README': 'x' });
    const { symlink } = await import('node:fs/promises');
    await symlink(root.path, path.join(evil, 'src', 'escape'));
    const planted = await runStage('version: 0.1\nsteps:\n  - type: Command\n    name: x\n    command: echo x\n', { workspaceDir: evil, inputFiles: [{ name: 'lib', location: 'escape/planted.txt', file: input }] });
    assert.equal(planted.result.status, 'failed');
    assert.match(planted.result.message!, /input artifact lib: escape\/planted\.txt leads outside the workspace/);
    assert.deepEqual(planted.result.steps.map((s) => s.status), ['skipped']);
    await assert.rejects(stat(path.join(root.path, 'planted.txt')));
    await assert.rejects(
      runStage('version: 0.1\nsteps:\n  - type: Command\n    name: x\n    command: echo x\n', { workspaceDir: path.join(root.path, 'missing') }),
      (error: Error) => error.name === 'StageRequestError' && /does not exist/.test(error.message),
    );
    await assertNothingLeft('inputs');
  });

  test('docker build in a step gives a DOCKER_IMAGE output that pushImage delivers; names are scoped to the run', { timeout: 180_000 }, async () => {
    ts = await startTestServer();
    await importBase(ts, work);
    baseImage = `${ts.host}/slipway/node-base:latest`;
    const host = ts.host;
    const images = {
      registryHost: host,
      insecureRegistries: [host],
      // Slipway's registry first (a stand-in for the server's base-resolution).
      resolveDockerfile: async (text: string) => ({ text: text.replace(/^FROM slipway\//m, `FROM ${host}/slipway/`), external: [] }),
    };
    const spec = `
version: 0.1
steps:
  - type: Command
    name: build
    command: |
      docker --version
      docker build -t app:1 --build-arg GREETING=hi .
      docker tag app:1 team/app:extra
      docker images
      echo "id=$(docker image inspect --format '{{.Id}}' app:1)"
      docker push app:1 || echo push-refused
      docker build -t escape:1 / || echo outside-refused
outputArtifacts:
  - name: image
    type: DOCKER_IMAGE
    location: app:1
`;
    const files = { Dockerfile: 'FROM slipway/node-base:latest\nARG GREETING\nRUN echo "$GREETING" > /greeting\nCOPY app.txt /app.txt\n', 'app.txt': 'v1\n' };
    const runId = `RUN-${randomBytes(3).toString('hex')}`;
    const { result, log } = await runStage(spec, { files, images, runId });
    assert.equal(result.status, 'succeeded', log);
    assert.match(log, /Docker version/);
    assert.match(log, /team\/app\s+extra/);
    assert.match(log, /^app\s+1\s+[0-9a-f]{12}/m);
    assert.match(log, /push-refused/);
    assert.match(log, /docker push: not supported/);
    assert.match(log, /outside-refused/);
    const output = result.outputs[0]!;
    assert.equal(output.type, 'DOCKER_IMAGE');
    if (output.type !== 'DOCKER_IMAGE') return;
    assert.equal(output.image, `localhost/slipway-run-${runId.toLowerCase()}/app:1`);
    assert.match(log, new RegExp(`id=sha256:${output.imageId}`));

    const pushLines: string[] = [];
    const pushed = await executor.pushImage(runId, output.image, `${host}/team/app:1`, { insecure: true, log: (l) => pushLines.push(l) });
    assert.match(pushed.digest, /^sha256:[0-9a-f]{64}$/);
    const manifest = await fetch(`${ts.url}/v2/team/app/manifests/1`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
    assert.equal(manifest.status, 200);
    assert.equal(manifest.headers.get('docker-content-digest'), pushed.digest);

    // Another run: its names do not see this run's; an unchanged rebuild uses the layer cache.
    const other = await runStage('version: 0.1\nsteps:\n  - type: Command\n    name: b\n    command: |\n      docker images -q | wc -l\n      docker build -t app:1 --build-arg GREETING=hi .\n      docker image inspect team/app:extra || echo not-visible\n', { files, images });
    assert.equal(other.result.status, 'succeeded', other.log);
    assert.match(other.log, /^0$/m);
    assert.match(other.log, /not-visible/);
    assert.match(other.log, /Using cache/);

    // A step killed mid-build stops the build: no build container or RUN process stays.
    const slowFiles = { Dockerfile: 'FROM slipway/node-base:latest\nRUN echo started-slow && sleep 605\n' };
    const slow = await runStage('version: 0.1\nsteps:\n  - type: Command\n    name: slow-build\n    timeoutInSeconds: 4\n    command: docker build -t slow:1 .\n', { files: slowFiles, images });
    assert.equal(slow.result.status, 'failed', slow.log);
    assert.match(slow.log, /started-slow/);
    assert.match(slow.result.message!, /timed out/);
    assert.deepEqual(await processesWith('sleep 605'), [], 'the RUN process is gone');

    await executor.removeRunImages(runId);
    const left = await work.driver.exec(['images', '--json'], { captureStdout: true });
    assert.doesNotMatch(left.stdout, new RegExp(`slipway-run-${runId.toLowerCase()}/`));
    await assertNothingLeft('docker');
  });

  test('container executor: steps run as root in the image with /workspace; files and env carry over; docker works inside', { timeout: 180_000 }, async () => {
    assert.ok(ts && baseImage, 'runs after the docker test (needs the registry and base image)');
    const host = ts.host;
    const { result, log, workspaceDir } = await runStage(`
version: 0.1
runAs: root
env:
  exportedVariables: [FROM_CONTAINER]
steps:
  - type: Command
    name: inside
    command: |
      echo "uid=$(id -u) pwd=$(pwd) ws=$OCI_WORKSPACE_DIR src=$OCI_PRIMARY_SOURCE_DIR"
      cat hello.txt
      mkdir -p /opt/made && echo persisted > /opt/made/file
      echo from-container > result.txt
      export FROM_CONTAINER=yes
  - type: Command
    name: next
    command: |
      cat /opt/made/file
      echo "carried=$FROM_CONTAINER path=$PATH"
      docker --version
      docker build -t inner:1 .
outputArtifacts:
  - name: result
    type: BINARY
    location: result.txt
  - name: made
    type: BINARY
    location: /opt/made/file
  - name: inner
    type: DOCKER_IMAGE
    location: inner:1
`, {
      files: { 'hello.txt': 'hello from the workspace\n', Dockerfile: `FROM ${host}/slipway/node-base:latest\nRUN echo inner > /inner\n` },
      executor: { kind: 'container', image: baseImage!, insecure: true },
      images: { registryHost: host, insecureRegistries: [host] },
    });
    assert.equal(result.status, 'succeeded', log);
    assert.match(log, /uid=0 pwd=\/workspace\/src ws=\/workspace src=\/workspace\/src/);
    assert.match(log, /hello from the workspace/);
    assert.match(log, /^persisted$/m);
    assert.match(log, /carried=yes path=\/\.slipway\/bin:/);
    assert.match(log, /Docker version/);
    assert.deepEqual(result.exported, { FROM_CONTAINER: 'yes' });
    assert.equal(await readFile(path.join(workspaceDir, 'src', 'result.txt'), 'utf8'), 'from-container\n');
    const byName = Object.fromEntries(result.outputs.map((o) => [o.name, o]));
    assert.equal(byName.result?.type === 'BINARY' && byName.result.size, 15);
    assert.equal(byName.made?.type === 'BINARY' && await readFile(byName.made.file, 'utf8'), 'persisted\n');
    assert.equal(byName.inner?.type, 'DOCKER_IMAGE');
    const runc = await readdir('/run/runc').catch(() => []);
    assert.ok(!runc.some((id) => id.startsWith('slipway-stage-')), 'no runc containers in the default root');
    await assertNothingLeft('container');
  });
});
