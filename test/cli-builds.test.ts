/**
 * The build commands as a user runs them (`node bin/slipway.js …` in child processes, killed in
 * `after` whatever happens), against an auth-enabled server with real buildah builds, offline:
 * `base-image import --node` pushes the Node.js base first (as admin, through the stored CLI
 * login); then `build` of a folder, a failing Dockerfile, `builds list|get|logs|cancel`,
 * `component build|get` from a local git repository, and Ctrl-C on a followed build.
 * The server and the import each have a buildah store of their own in the temp folder; every
 * container, image and mount in them is removed in `after`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { setTimeout as sleep } from 'node:timers/promises';
import { BuildahDriver } from '../src/builds/buildah-driver.js';
import { parseBuildArgs, parseCommand } from '../src/cli/build-commands.js';
import { formatElapsed, phaseOf } from '../src/cli/build-progress.js';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { cleanEnv, killAllChildren, killTree, requireCommands, run, slipwayBin, spawnTracked, type CommandResult } from './helpers/commands.js';
import { createApiClient } from './helpers/api-client.js';

const adminPassword = 'cli-builds-admin-Pa55';
const admin = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;

function describeResult(result: CommandResult): string {
  return `exit ${result.code ?? result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
}

interface Build {
  id: string;
  status: string;
  kind: string;
  component: string;
  imageName: string;
  digest: string | null;
  errorMessage: string | null;
}

describe('build command helpers', () => {
  test('--build-arg, --cmd, log phases and elapsed times', { timeout: 300_000 }, () => {
    assert.deepEqual(parseBuildArgs(['A=1', 'B=x=y', 'C=', 'HOME'], { HOME: '/root' }), { A: '1', B: 'x=y', C: '', HOME: '/root' });
    assert.throws(() => parseBuildArgs(['MISSING'], {}), /not set in the environment/);
    assert.throws(() => parseBuildArgs(['1A=x'], {}), /NAME=value/);
    assert.deepEqual(parseCommand('["node", "app.js"]', '--cmd'), ['node', 'app.js']);
    assert.deepEqual(parseCommand('node app.js && echo ok', '--cmd'), ['/bin/sh', '-c', 'node app.js && echo ok']);
    assert.throws(() => parseCommand('[1]', '--cmd'), /JSON array of strings/);
    assert.equal(phaseOf('STEP 2/5: RUN npm ci'), 'step 2/5: RUN npm ci');
    assert.equal(phaseOf('[slipway] built sha256:x in 3 ms; pushing to h/r:t'), 'pushing');
    assert.equal(phaseOf('Copying blob sha256:x'), undefined);
    assert.equal(formatElapsed(1234), '1.2 s');
    assert.equal(formatElapsed(125_000), '2m05s');
    assert.equal(formatElapsed(3_725_000), '1h02m');
  });
});

describe('slipway build, component, builds and base-image import', { timeout: 1_800_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  let env: Record<string, string>;
  let host: string;
  const drivers: BuildahDriver[] = [];
  let importStorage: string[];

  const cli = (args: string[], options: { input?: string; env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}) =>
    run(process.execPath, [slipwayBin, ...args], { cwd: options.cwd ?? work.path, env: cleanEnv({ ...env, ...options.env }), input: options.input, timeoutMs: options.timeoutMs ?? 280_000, allowFailure: true });

  const api = <T = Record<string, unknown>>(method: string, url: string, body?: unknown) => createApiClient(ts.url, admin).request<T>(method, url, body);

  const waitForStatus = async (id: string, wanted: (status: string) => boolean, timeoutMs = 60_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    let status = '';
    while (Date.now() < deadline) {
      status = (await api<Build>('GET', `/api/v1/namespaces/team/builds/${id}`)).body.status;
      if (wanted(status)) return status;
      await sleep(200);
    }
    return status;
  };

  /** A folder with these files; a git work tree on `branch` when given. */
  const folder = async (name: string, files: Record<string, string>, branch?: string): Promise<string> => {
    const dir = path.join(work.path, name);
    await mkdir(dir, { recursive: true });
    for (const [file, content] of Object.entries(files)) await writeFile(path.join(dir, file), content);
    if (branch) await git(dir, 'init', '-q', '-b', branch);
    return dir;
  };

  const git = (dir: string, ...args: string[]) => run('git', ['-C', dir, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' } });

  before(async () => {
    await requireCommands({ buildah: 'buildah', git: 'git', tar: 'tar', busybox: 'busybox-static' });
    work = await tempDir('slipway-cli-builds-');
    const storage = { storageRoot: path.join(work.path, 'server-storage'), runRoot: path.join(work.path, 'server-runroot'), storageDriver: 'overlay' as const };
    importStorage = [path.join(work.path, 'import-storage'), path.join(work.path, 'import-runroot')];
    drivers.push(new BuildahDriver({ storage: { root: storage.storageRoot, runRoot: storage.runRoot, driver: 'overlay' } }));
    drivers.push(new BuildahDriver({ storage: { root: importStorage[0], runRoot: importStorage[1], driver: 'overlay' } }));
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword }, builds: { buildah: storage, maxContextBytes: 8 * 1024 * 1024, concurrency: 2 } } });
    host = new URL(ts.url).host;
    // HOME and XDG_CONFIG_HOME point into the temp folder too: nothing may land in the real home.
    env = { SLIPWAY_CLI_CONFIG: path.join(work.path, 'cli', 'credentials.json'), HOME: work.path, XDG_CONFIG_HOME: path.join(work.path, 'xdg') };
    assert.equal((await api('POST', '/api/v1/namespaces', { name: 'team' })).status, 201);
    const login = await cli(['login', ts.url, '--username', 'admin', '--password-stdin'], { input: `${adminPassword}\n` });
    assert.equal(login.code, 0, describeResult(login));
  });

  after(async () => {
    killAllChildren();
    await ts?.close();
    for (const driver of drivers) {
      await driver.exec(['rm', '--all'], { timeoutMs: 120_000 }).catch(() => undefined);
      await driver.exec(['rmi', '--all', '--force'], { timeoutMs: 120_000 }).catch(() => undefined);
    }
    if (work) {
      const mounts = await run('sh', ['-c', `grep -o ' ${work.path}[^ ]*' /proc/mounts || true`]).catch(() => ({ stdout: '' }));
      for (const point of mounts.stdout.trim().split('\n').filter(Boolean).reverse()) await run('umount', ['-l', point.trim()], { allowFailure: true });
      await work.remove();
    }
  });

  test('base-image import --node: pushed with the stored login of the server; nothing left in the local store; usage errors exit 2', { timeout: 300_000 }, async () => {
    const none = await cli(['base-image', 'import', '--destination', `${host}/slipway/x:1`]);
    assert.equal(none.code, 2, describeResult(none));
    assert.match(none.stderr, /exactly one of --rootfs DIR, --tarball FILE or --node/);
    const missing = await cli(['base-image', 'import', '--destination', `${host}/slipway/x:1`, '--tarball', path.join(work.path, 'nope.tar')]);
    assert.equal(missing.code, 2, describeResult(missing));
    assert.match(missing.stderr, /nope\.tar: no such file/);

    const imported = await cli(['base-image', 'import', '--destination', `${host}/slipway/node-base:latest`, '--node', '--storage-root', importStorage[0]!, '--run-root', importStorage[1]!, '--storage-driver', 'overlay']);
    assert.equal(imported.code, 0, describeResult(imported));
    const match = /^Pushed (\S+)\nDigest: (sha256:[0-9a-f]{64})\n$/.exec(imported.stdout);
    assert.ok(match, `stdout names the reference and digest: ${imported.stdout}`);
    assert.equal(match[1], `${host}/slipway/node-base:latest`);
    const manifest = await fetch(`${ts.url}/v2/slipway/node-base/manifests/latest`, { method: 'HEAD', headers: { authorization: admin, accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
    assert.equal(manifest.status, 200);
    assert.equal(manifest.headers.get('docker-content-digest'), match[2]);
    // The working container and the committed image are gone from the import's store.
    const images = await drivers[1]!.exec(['images', '--quiet'], { captureStdout: true, timeoutMs: 60_000 });
    assert.equal(images.stdout.trim(), '');
    const containers = await drivers[1]!.containers();
    assert.deepEqual(containers, []);
    // The temp root file system is removed.
    const leftovers = await run('sh', ['-c', 'ls -d /tmp/slipway-node-rootfs-* 2>/dev/null || true']);
    assert.equal(leftovers.stdout.trim(), '', 'the assembled root file system is removed');
  });

  test('slipway build: uploads the folder, follows the log, prints IMAGE@DIGEST; the branch comes from git; the image is found', { timeout: 300_000 }, async () => {
    const dir = await folder('app', {
      'app.js': 'console.log("hello from the CLI build")\n',
      Dockerfile: `FROM ${host}/slipway/node-base:latest\nARG GREETING=none\nCOPY app.js /app/\nRUN echo "greeting=$GREETING" > /app/greeting.txt && cat /app/greeting.txt\nCMD ["node", "/app/app.js"]\n`,
    }, 'feature/cli');
    const built = await cli(['build', dir, '-n', 'team', '--component', 'app', '--tag', '1.0', '--build-arg', 'GREETING=hi', '--build-arg', 'UNUSED']
      , { env: { UNUSED: 'from-env' } });
    assert.equal(built.code, 0, describeResult(built));
    const match = /^(\S+):1\.0@(sha256:[0-9a-f]{64})\n$/.exec(built.stdout);
    assert.ok(match, `stdout is the reference only: ${built.stdout}`);
    assert.equal(match[1], `${host}/team/app-feature-cli-image`);
    assert.match(built.stderr, /STEP \d\/\d: RUN echo/, 'the log is printed');
    assert.match(built.stderr, /greeting=hi/, 'the build argument reached the build');
    assert.match(built.stderr, /succeeded/);
    assert.doesNotMatch(built.stderr, /\x1b\[/, 'no terminal control codes when stderr is not a terminal');
    const found = await api<{ digest: string; status: string }>('GET', '/api/v1/namespaces/team/images?component=app&branch=feature/cli&architecture=linux/amd64');
    assert.equal(found.status, 200);
    assert.equal(found.body.status, 'succeeded');
    assert.equal(found.body.digest, match[2]);

    // Explicit branch, -f elsewhere, --json; usage errors exit 2.
    const other = path.join(work.path, 'Other.Dockerfile');
    await writeFile(other, `FROM ${host}/slipway/node-base:latest\nCOPY app.js /srv/\n`);
    const json = await cli(['build', '-n', 'team', '--component', 'app', '--branch', 'main', '-f', other, '--json'], { cwd: dir });
    assert.equal(json.code, 0, describeResult(json));
    const record = JSON.parse(json.stdout) as Build;
    assert.equal(record.status, 'succeeded');
    assert.equal(record.imageName, `${host}/team/app-main-image:latest`);
    const noDockerfile = await cli(['build', work.path, '-n', 'team', '--component', 'x']);
    assert.equal(noDockerfile.code, 2, describeResult(noDockerfile));
    assert.match(noDockerfile.stderr, /no Dockerfile in/);
    const badArg = await cli(['build', dir, '-n', 'team', '--component', 'x', '--build-arg', '1BAD=x']);
    assert.equal(badArg.code, 2, describeResult(badArg));
    const noComponent = await cli(['build', dir, '-n', 'team']);
    assert.equal(noComponent.code, 2, describeResult(noComponent));
    const badArch = await cli(['build', dir, '-n', 'team', '--component', 'x', '--architecture', 'sparc']);
    assert.equal(badArch.code, 1, describeResult(badArch));
    assert.match(badArch.stderr, /unknown architecture "sparc"; allowed: linux\/amd64/, 'the server\'s message is shown');
  });

  test('a failing Dockerfile: exit 1 with the reason; builds list, get and logs show it', { timeout: 300_000 }, async () => {
    const dir = await folder('broken', { Dockerfile: `FROM ${host}/slipway/node-base:latest\nRUN echo about to fail && exit 3\n` });
    const failed = await cli(['build', dir, '-n', 'team', '--component', 'broken']);
    assert.equal(failed.code, 1, describeResult(failed));
    assert.equal(failed.stdout, '');
    assert.match(failed.stderr, /about to fail/, 'the log is printed');
    assert.match(failed.stderr, /slipway: build b_\S+ failed: .*exit code 3/);
    const id = /build (b_\S+) failed/.exec(failed.stderr)![1]!;

    const table = await cli(['builds', 'list', '-n', 'team']);
    assert.equal(table.code, 0, describeResult(table));
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0]!, /^ID\s+KIND\s+COMPONENT\s+BRANCH\/TAG\s+ARCH\s+STATUS\s+CREATED\s+DURATION$/);
    assert.ok(lines.some((line) => line.startsWith(id) && /\bfailed\b/.test(line) && /\bbroken\b/.test(line)), table.stdout);
    assert.ok(lines.some((line) => /\bapp\b/.test(line) && /feature\/cli:1\.0/.test(line) && /\bsucceeded\b/.test(line)), table.stdout);
    const onlyFailed = JSON.parse((await cli(['builds', 'list', '-n', 'team', '--kind', 'image', '--status', 'failed', '--json'])).stdout) as Build[];
    assert.deepEqual(onlyFailed.map((b) => b.id), [id]);
    const byComponent = JSON.parse((await cli(['builds', 'ls', '-n', 'team', '--component', 'app', '--json'])).stdout) as Build[];
    assert.equal(byComponent.length, 2);
    const badStatus = await cli(['builds', 'list', '-n', 'team', '--status', 'done']);
    assert.equal(badStatus.code, 2, describeResult(badStatus));

    const shown = await cli(['builds', 'get', '-n', 'team', id]);
    assert.equal(shown.code, 0, describeResult(shown));
    assert.match(shown.stdout, /status:\s+failed/);
    assert.match(shown.stdout, /error:\s+.*exit code 3/);

    const logs = await cli(['builds', 'logs', '-n', 'team', id]);
    assert.equal(logs.code, 0, describeResult(logs));
    assert.match(logs.stdout, /about to fail/);
    assert.match(logs.stdout, /build failed/);
    const followed = await cli(['builds', 'logs', '-n', 'team', id, '--follow']);
    assert.equal(followed.code, 1, 'following a failed build exits 1');
    assert.match(followed.stdout, /about to fail/);
    assert.match(followed.stderr, /failed: .*exit code 3/);
    const ok = byComponent.find((b) => b.status === 'succeeded')!;
    const okFollowed = await cli(['builds', 'logs', '-n', 'team', ok.id, '-f']);
    assert.equal(okFollowed.code, 0, describeResult(okFollowed));
    assert.match(okFollowed.stdout, /build succeeded/);
    const unknown = await cli(['builds', 'logs', '-n', 'team', 'b_doesnotexist']);
    assert.equal(unknown.code, 1, describeResult(unknown));
    assert.match(unknown.stderr, /404/);
  });

  test('component build and component get from a local git repository: the tar.gz holds the output; a missing version is built first', { timeout: 300_000 }, async () => {
    const repo = await folder('component-repo', {
      'build_spec.yaml': [
        'version: 0.1', 'component: build', 'timeoutInSeconds: 300', 'shell: bash', 'steps:',
        '  - type: Command', '    name: compile', '    command: |', '      mkdir -p out && echo "hello component $(cat VERSION)" > out/hello.txt',
        'outputArtifacts:', '  - name: hello', '    type: BINARY', '    location: out/hello.txt', '',
      ].join('\n'),
    }, 'main');
    for (const version of ['v1', 'v2']) {
      await writeFile(path.join(repo, 'VERSION'), version);
      await git(repo, 'add', '.');
      await git(repo, 'commit', '-q', '-m', version);
      await git(repo, 'tag', version);
    }
    const url = `file://${repo}`;
    const built = await cli(['component', 'build', '-n', 'team', '--url', url, '--component', 'hello', '--tag', 'v1']);
    assert.equal(built.code, 0, describeResult(built));
    assert.match(built.stdout, new RegExp(`^${host.replace(/\./g, '\\.')}/team/components/hello:v1-linux-amd64@sha256:[0-9a-f]{64}\\n$`));
    assert.match(built.stderr, /cloned /);

    const file = path.join(work.path, 'hello-v1.tar.gz');
    const got = await cli(['component', 'get', '-n', 'team', '--component', 'hello', '--tag', 'v1', '-o', file]);
    assert.equal(got.code, 0, describeResult(got));
    assert.match(gunzipSync(await readFile(file)).toString('latin1'), /hello component v1/);
    // The default file name, in the current folder.
    const defaultName = await cli(['component', 'get', '-n', 'team', '--component', 'hello', '--tag', 'v1']);
    assert.equal(defaultName.code, 0, describeResult(defaultName));
    assert.ok((await stat(path.join(work.path, 'hello-v1.tar.gz'))).size > 0);
    const ref = await cli(['component', 'get', '-n', 'team', '--component', 'hello', '--tag', 'v1', '--ref']);
    assert.equal(ref.code, 0, describeResult(ref));
    assert.equal(ref.stdout, `${host}/team/components/hello:v1-linux-amd64\n`);

    // v2 does not exist: get builds it (from the repository the last build used), following its log.
    const v2 = path.join(work.path, 'hello-v2.tar.gz');
    const built2 = await cli(['component', 'get', '-n', 'team', '--component', 'hello', '--tag', 'v2', '-o', v2]);
    assert.equal(built2.code, 0, describeResult(built2));
    assert.match(built2.stderr, /does not exist yet: building it/);
    assert.match(gunzipSync(await readFile(v2)).toString('latin1'), /hello component v2/);

    const absent = await cli(['component', 'get', '-n', 'team', '--component', 'nothing', '--tag', 'v1']);
    assert.equal(absent.code, 1, describeResult(absent));
    assert.match(absent.stderr, /does not exist and no repository is known for it/);
    const missingTag = await cli(['component', 'build', '-n', 'team', '--url', url, '--component', 'hello', '--tag', 'v9']);
    assert.equal(missingTag.code, 1, describeResult(missingTag));
    assert.match(missingTag.stderr, /failed: .*v9/);
    const both = await cli(['component', 'get', '-n', 'team', '--component', 'hello', '--tag', 'v1', '--ref', '-o', 'x.tgz']);
    assert.equal(both.code, 2, describeResult(both));
  });

  test('builds cancel stops a running `RUN sleep 60` build', { timeout: 300_000 }, async () => {
    const dir = await folder('slow', { Dockerfile: `FROM ${host}/slipway/node-base:latest\nRUN sleep 60\n` });
    const submitted = await cli(['build', dir, '-n', 'team', '--component', 'slow', '--no-follow']);
    assert.equal(submitted.code, 0, describeResult(submitted));
    const id = submitted.stdout.trim();
    assert.match(id, /^b_\S+$/);
    assert.equal(await waitForStatus(id, (s) => s === 'running'), 'running');
    await sleep(1500);
    const started = Date.now();
    const cancelled = await cli(['builds', 'cancel', '-n', 'team', id]);
    assert.equal(cancelled.code, 0, describeResult(cancelled));
    assert.equal(cancelled.stdout, `Cancelled ${id}\n`);
    assert.ok(Date.now() - started < 50_000, 'it did not wait for the sleep to end');
    assert.equal((await api<Build>('GET', `/api/v1/namespaces/team/builds/${id}`)).body.status, 'cancelled');
    const again = await cli(['builds', 'cancel', '-n', 'team', id]);
    assert.equal(again.code, 0, describeResult(again));
    assert.match(again.stderr, /already ended \(cancelled\)/);
  });

  test('Ctrl-C on a followed build cancels it and exits 130', { timeout: 300_000 }, async () => {
    const dir = await folder('interrupted', { Dockerfile: `FROM ${host}/slipway/node-base:latest\nRUN echo sleeping now && sleep 60\n` });
    const child = spawnTracked(process.execPath, [slipwayBin, 'build', dir, '-n', 'team', '--component', 'interrupted'], { cwd: work.path, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 120_000;
      while (!/sleeping now/.test(stderr) && Date.now() < deadline) await sleep(100);
      assert.match(stderr, /sleeping now/, `the build ran: ${stderr}`);
      const id = /build (b_[A-Za-z0-9_-]+)/.exec(stderr)![1]!;
      await sleep(1000);
      child.kill('SIGINT');
      const code = await Promise.race([exited, sleep(30_000).then(() => 'timeout' as const)]);
      assert.equal(code, 130, `exit ${code}\nstdout: ${stdout}\nstderr: ${stderr}`);
      assert.match(stderr, new RegExp(`cancelling build ${id}`));
      assert.equal(stdout, '');
      assert.equal(await waitForStatus(id, (s) => ['cancelled', 'failed', 'succeeded'].includes(s)), 'cancelled');
    } finally {
      killTree(child);
    }
  });
});
