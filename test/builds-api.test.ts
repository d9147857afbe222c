/**
 * The artifact-storage API end to end with real buildah builds and real git clones, offline:
 * a Node.js base image is assembled from the host and imported first; then images are built
 * from an uploaded Dockerfile + context, components from a local git repository's build spec.
 * Access control is on: builds push with the requester's rights.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { dialects, startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { killAllChildren, requireCommands, run } from './helpers/commands.js';
import { createApiClient } from './helpers/api-client.js';
import { BuildahDriver } from '../src/builds/buildah-driver.js';
import { assembleNodeRootfs, importBaseImage } from '../src/builds/base-image.js';

const adminPassword = 'builds-admin-Pa55';
const admin = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;

for (const dialect of dialects) describe(`artifact-storage API with real builds (${dialect.name})`, { timeout: 900_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  let host: string;
  let driver: BuildahDriver;
  let external: TestServer;

  const api = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) => createApiClient(ts.url, admin).request<Record<string, any>>(method, url, body, { headers });

  /** tar.gz of `files` made with the tar CLI. */
  const contextTarball = async (name: string, files: Record<string, string>): Promise<Blob> => {
    const dir = path.join(work.path, `ctx-${name}`);
    await mkdir(dir, { recursive: true });
    for (const [file, content] of Object.entries(files)) await writeFile(path.join(dir, file), content);
    const archive = path.join(work.path, `${name}.tar.gz`);
    await run('tar', ['-czf', archive, '-C', dir, '.']);
    const { readFile } = await import('node:fs/promises');
    return new Blob([await readFile(archive)]);
  };

  const imageForm = (fields: Record<string, string>, dockerfile: string, context?: Blob) => {
    const form = new FormData();
    for (const [key, value] of Object.entries(fields)) form.set(key, value);
    form.set('dockerfile', new Blob([dockerfile]), 'Dockerfile');
    if (context) form.set('context', context, 'context.tar.gz');
    return form;
  };

  before(async () => {
    await requireCommands({ buildah: 'buildah', git: 'git', tar: 'tar' });
    work = await tempDir('slipway-builds-api-');
    const storage = { storageRoot: path.join(work.path, 'storage'), runRoot: path.join(work.path, 'runroot'), storageDriver: 'overlay' as const };
    // A second registry (another Slipway with auth) stands in for an external one.
    external = await startTestServer({ config: { auth: { enabled: true, adminPassword: 'external-Pa55word' } } });
    ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword }, builds: { buildah: storage, maxContextBytes: 4 * 1024 * 1024, concurrency: 2, insecureRegistries: [new URL(external.url).host] } } });
    host = new URL(ts.url).host;
    driver = new BuildahDriver({ storage: { root: storage.storageRoot, runRoot: storage.runRoot, driver: 'overlay' }, tmpDir: work.path });
    const rootfs = path.join(work.path, 'rootfs');
    await assembleNodeRootfs(rootfs);
    await importBaseImage({ source: { rootfsDir: rootfs }, destination: `${host}/slipway/node-base:latest`, registryAuth: { username: 'admin', password: adminPassword }, insecureRegistries: [host], driver }, () => undefined);
    assert.equal((await api('POST', '/api/v1/namespaces', { name: 'team' })).status, 201);
  });

  after(async () => {
    killAllChildren();
    await ts?.close();
    await external?.close();
    if (driver) {
      await driver.exec(['rm', '--all'], { timeoutMs: 120_000 }).catch(() => undefined);
      await driver.exec(['rmi', '--all', '--force'], { timeoutMs: 120_000 }).catch(() => undefined);
    }
    const mounts = await run('sh', ['-c', `grep -o ' ${work?.path}[^ ]*' /proc/mounts || true`]).catch(() => ({ stdout: '' }));
    for (const point of mounts.stdout.trim().split('\n').filter(Boolean).reverse()) await run('umount', ['-l', point.trim()], { allowFailure: true });
    await work?.remove();
  });

  test('an image from a Dockerfile and an uploaded context: built, pushed, found, pullable; logs kept and streamed', { timeout: 300_000 }, async () => {
    const context = await contextTarball('app', { 'app.js': 'console.log("hello from the built image")\n', 'secret.txt': 'not for the image', '.dockerignore': 'secret.txt\n' });
    const dockerfile = `FROM ${host}/slipway/node-base:latest\nARG GREETING=none\nCOPY . /app/\nRUN echo "greeting=$GREETING" > /app/greeting.txt\nCMD ["node", "/app/app.js"]\n`;
    const submitted = await api('POST', '/api/v1/namespaces/team/images', imageForm({ component: 'app', branch: 'Feature/One', architecture: 'linux/amd64', tag: '1.0', buildArgs: 'GREETING=hi' }, dockerfile, context), { linux_username: 'jdoe', github_username: 'jdoe-gh' });
    assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
    assert.equal(submitted.body.status, 'queued');
    const id = submitted.body.id as string;
    // Follow the log live until the end event.
    const sse = await fetch(`${ts.url}/api/v1/namespaces/team/builds/${id}/logs`, { headers: { authorization: admin, accept: 'text/event-stream' } });
    assert.equal(sse.headers.get('content-type'), 'text/event-stream');
    const events = await sse.text();
    assert.match(events, /event: end\ndata: \{"status":"succeeded"/);
    const build = await api('GET', `/api/v1/namespaces/team/builds/${id}`);
    assert.equal(build.body.status, 'succeeded', JSON.stringify(build.body));
    assert.equal(build.body.imageName, `${host}/team/app-feature-one-image:1.0`);
    assert.equal(build.body.linuxUsername, 'jdoe');
    assert.equal(build.body.githubUsername, 'jdoe-gh');
    assert.ok((build.body.phases as Record<string, number>).build! > 0);
    const found = await api('GET', '/api/v1/namespaces/team/images?component=app&branch=Feature/One&architecture=linux/amd64');
    assert.equal(found.status, 200);
    assert.equal(found.body.digest, build.body.digest);
    assert.match(found.body.pullCommand as string, /pull/);
    // The image is really there: run it with the builder's steps runner.
    const output = path.join(work.path, 'out');
    await mkdir(output, { recursive: true });
    const lines: string[] = [];
    await driver.runSteps({ baseImage: build.body.imageName as string, contextDir: output, steps: [{ name: 'run', command: 'node /app/app.js; cat /app/greeting.txt; ls /app' }], outputs: [], outputDir: output, registryAuth: { username: 'admin', password: adminPassword }, insecureRegistries: [host] }, (line) => lines.push(line));
    const log = lines.join('\n');
    assert.match(log, /hello from the built image/);
    assert.match(log, /greeting=hi/);
    assert.doesNotMatch(log, /secret\.txt/);
    const stored = await fetch(`${ts.url}/api/v1/namespaces/team/builds/${id}/logs`, { headers: { authorization: admin } });
    assert.match(await stored.text(), /build succeeded/);
  });

  test('FROM resolves against Slipway\'s registry first; an external registry is pulled from with the namespace\'s credentials', { timeout: 300_000 }, async () => {
    // Unqualified: found in Slipway's own registry.
    const local = await api('POST', '/api/v1/namespaces/team/images?wait=true', imageForm({ component: 'short', branch: 'main', architecture: 'linux/amd64' }, 'FROM slipway/node-base:latest\nRUN node -e "require(\'fs\').writeFileSync(\'/tmp/ok\', \'1\')"\n'));
    assert.equal(local.body.status, 'succeeded', JSON.stringify(local.body));
    // External: a second registry (another Slipway with auth) holding the base image; the build
    // can pull it only with the credentials stored for its prefix.
    {
      const otherHost = new URL(external.url).host;
      await run('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', '--src-creds', `admin:${adminPassword}`, '--dest-creds', 'admin:external-Pa55word',
        `docker://${host}/slipway/node-base:latest`, `docker://${otherHost}/vendor/base:1`]);
      const dockerfile = `FROM ${otherHost}/vendor/base:1\nRUN echo built-on-vendor-base > /tmp/marker\n`;
      const denied = await api('POST', '/api/v1/namespaces/team/images?wait=true', imageForm({ component: 'vendored', branch: 'main', architecture: 'linux/amd64' }, dockerfile));
      assert.equal(denied.body.status, 'failed', 'without credentials the external base cannot be pulled');
      const stored = await api('POST', '/api/v1/namespaces/team/registries', { prefix: `${otherHost}/vendor`, type: 'basic', credentials: { username: 'admin', password: 'external-Pa55word' } });
      assert.equal(stored.status, 201);
      const built = await api('POST', '/api/v1/namespaces/team/images?wait=true', imageForm({ component: 'vendored', branch: 'main', architecture: 'linux/amd64' }, dockerfile));
      assert.equal(built.body.status, 'succeeded', JSON.stringify(built.body));
      const log = await (await fetch(`${ts.url}/api/v1/namespaces/team/builds/${built.body.id as string}/logs`, { headers: { authorization: admin } })).text();
      assert.match(log, /using the namespace's credentials/);
      assert.doesNotMatch(log, /external-Pa55word/);
    }
  });

  test('a failing Dockerfile: failed with the reason, nothing stored; bad input is a 400 naming what is allowed', { timeout: 300_000 }, async () => {
    const failed = await api('POST', '/api/v1/namespaces/team/images?wait=true', imageForm({ component: 'broken', branch: 'main', architecture: 'linux/amd64' }, `FROM ${host}/slipway/node-base:latest\nRUN exit 3\n`));
    assert.equal(failed.status, 422);
    assert.equal(failed.body.status, 'failed');
    assert.match(failed.body.errorMessage as string, /exit code 3/);
    const lookup = await api('GET', '/api/v1/namespaces/team/images?component=broken&branch=main&architecture=linux/amd64');
    assert.equal(lookup.body.status, 'failed');
    assert.ok(lookup.body.errorMessage);
    const manifest = await fetch(`${ts.url}/v2/team/broken-main-image/manifests/latest`, { headers: { authorization: admin } });
    assert.equal(manifest.status, 404);
    const arch = await api('POST', '/api/v1/namespaces/team/images', imageForm({ component: 'x', branch: 'main', architecture: 'sparc' }, 'FROM scratch\n'));
    assert.equal(arch.status, 400);
    assert.match(arch.body.errorMessage as string, /linux\/amd64/);
    const missing = await api('GET', '/api/v1/namespaces/team/images?component=nothing&branch=main&architecture=linux/amd64');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.status, 'not_found');
    const big = new Blob([Buffer.alloc(6 * 1024 * 1024, 1)]);
    const oversize = await api('POST', '/api/v1/namespaces/team/images', imageForm({ component: 'big', branch: 'main', architecture: 'linux/amd64' }, 'FROM scratch\n', big));
    assert.ok([400, 413].includes(oversize.status), `oversize upload answered ${oversize.status}`);
    assert.equal((await api('GET', '/api/v1/namespaces/team/builds?component=big')).body.length ?? 0, 0);
    const reader = await fetch(`${ts.url}/api/v1/namespaces/team/images?component=app&branch=main&architecture=linux/amd64`);
    assert.equal(reader.status, 401);
  });

  test('an image from a git repository at a tag, with the repository\'s own Dockerfile; a missing tag fails with the reason', { timeout: 300_000 }, async () => {
    const repo = path.join(work.path, 'image-repo');
    await mkdir(repo, { recursive: true });
    const git = (...args: string[]) => run('git', ['-C', repo, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' } });
    await git('init', '-q', '-b', 'main');
    await writeFile(path.join(repo, 'Dockerfile'), 'FROM slipway/node-base:latest\nCOPY hello.txt /hello.txt\n');
    await writeFile(path.join(repo, 'hello.txt'), 'tagged v1');
    await git('add', '.');
    await git('commit', '-q', '-m', 'v1');
    await git('tag', 'v1');
    await writeFile(path.join(repo, 'hello.txt'), 'newer');
    await git('commit', '-q', '-am', 'newer');
    const form = new FormData();
    for (const [key, value] of Object.entries({ component: 'fromgit', branch: 'main', architecture: 'linux/amd64', tag: 'v1', gitUrl: `file://${repo}`, gitRef: 'v1' })) form.set(key, value);
    const built = await api('POST', '/api/v1/namespaces/team/images?wait=true', form);
    assert.equal(built.body.status, 'succeeded', JSON.stringify(built.body));
    assert.ok((built.body.phases as Record<string, number>).clone! >= 0);
    const output = path.join(work.path, 'out-git');
    await mkdir(output, { recursive: true });
    const lines: string[] = [];
    await driver.runSteps({ baseImage: built.body.imageName as string, contextDir: output, steps: [{ name: 'show', command: 'cat /hello.txt' }], outputs: [], outputDir: output, registryAuth: { username: 'admin', password: adminPassword }, insecureRegistries: [host] }, (line) => lines.push(line));
    assert.match(lines.join('\n'), /tagged v1/);
    form.set('gitRef', 'v404');
    form.set('tag', 'v404');
    const missing = await api('POST', '/api/v1/namespaces/team/images?wait=true', form);
    assert.equal(missing.body.status, 'failed');
    assert.match(missing.body.errorMessage as string, /v404/);
  });

  test('build secrets come from the namespace\'s vault and never reach the log; the naming template is per namespace', { timeout: 300_000 }, async () => {
    const value = 'S3cr3t-build-value-93817';
    assert.equal((await api('PUT', '/api/v1/namespaces/team/secrets/npm_token', { value })).status, 201);
    const listed = await api('GET', '/api/v1/namespaces/team/secrets');
    assert.ok(!JSON.stringify(listed.body).includes(value));
    assert.match(JSON.stringify(listed.body), /npm_token/);
    const dockerfile = `FROM slipway/node-base:latest\nRUN --mount=type=secret,id=npm_token sh -c 'test "$(cat /run/secrets/npm_token)" = "${value}" && echo secret-ok && cat /run/secrets/npm_token'\n`;
    const missing = await api('POST', '/api/v1/namespaces/team/images', imageForm({ component: 'sec', branch: 'main', architecture: 'linux/amd64', secrets: 'nope' }, dockerfile));
    assert.equal(missing.status, 400);
    assert.match(missing.body.errorMessage as string, /nope/);
    assert.equal((await api('PUT', '/api/v1/namespaces/team/settings/builds', { imageNameTemplate: 'apps/{component}/{branch}' })).status, 200);
    const built = await api('POST', '/api/v1/namespaces/team/images?wait=true', imageForm({ component: 'sec', branch: 'main', architecture: 'linux/amd64', secrets: 'npm_token' }, dockerfile));
    assert.equal(built.body.status, 'succeeded', JSON.stringify(built.body));
    assert.equal(built.body.imageName, `${host}/team/apps/sec/main:latest`);
    const log = await (await fetch(`${ts.url}/api/v1/namespaces/team/builds/${built.body.id as string}/logs`, { headers: { authorization: admin } })).text();
    assert.match(log, /secret-ok/);
    assert.ok(!log.includes(value), 'the secret value is in the build log');
    assert.equal((await api('PUT', '/api/v1/namespaces/team/settings/builds', { imageNameTemplate: null })).status, 200);
    assert.equal((await api('PUT', '/api/v1/namespaces/team/settings/builds', { imageNameTemplate: 'Bad Template' })).status, 400);
  });

  test('a running build can be cancelled', { timeout: 300_000 }, async () => {
    const submitted = await api('POST', '/api/v1/namespaces/team/images', imageForm({ component: 'slow', branch: 'main', architecture: 'linux/amd64' }, `FROM ${host}/slipway/node-base:latest\nRUN sleep 60\n`));
    const id = submitted.body.id as string;
    for (let i = 0; i < 100; i++) {
      if ((await api('GET', `/api/v1/namespaces/team/builds/${id}`)).body.status === 'running') break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal((await api('POST', `/api/v1/namespaces/team/builds/${id}/cancel`)).status, 200);
    let status = '';
    for (let i = 0; i < 150 && !['cancelled', 'failed', 'succeeded'].includes(status); i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      status = (await api('GET', `/api/v1/namespaces/team/builds/${id}`)).body.status as string;
    }
    assert.equal(status, 'cancelled');
  });

  test('components: built from a git repository build spec, stored as an OCI artifact, fetched as tar.gz or reference; parallel requests build once', { timeout: 300_000 }, async () => {
    const repo = path.join(work.path, 'component-repo');
    await mkdir(repo, { recursive: true });
    const git = (...args: string[]) => run('git', ['-C', repo, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' } });
    await git('init', '-q', '-b', 'main');
    await writeFile(path.join(repo, 'build_spec.yaml'), [
      'version: 0.1', 'component: build', 'timeoutInSeconds: 300', 'shell: bash', 'steps:',
      '  - type: Command', '    name: compile', '    command: |', '      mkdir -p out && echo "hello component $(cat VERSION)" > out/hello.txt',
      'outputArtifacts:', '  - name: hello', '    type: BINARY', '    location: out/hello.txt', '',
    ].join('\n'));
    for (const version of ['v1', 'v2']) {
      await writeFile(path.join(repo, 'VERSION'), version);
      await git('add', '.');
      await git('commit', '-q', '-m', version);
      await git('tag', version);
    }
    const url = `file://${repo}`;
    const built = await api('POST', '/api/v1/namespaces/team/components?wait=true', { url, component: 'hello', tag: 'v1', architecture: 'linux/amd64' });
    assert.equal(built.status, 200, JSON.stringify(built.body));
    assert.equal(built.body.status, 'succeeded');
    const ref = await api('GET', '/api/v1/namespaces/team/components?component=hello&tag=v1&architecture=linux/amd64&format=ref');
    assert.equal(ref.status, 200);
    assert.match(ref.body.reference as string, /team\/components\/hello:v1-linux-amd64$/);
    const tarball = await fetch(`${ts.url}/api/v1/namespaces/team/components?component=hello&tag=v1&architecture=linux/amd64`, { headers: { authorization: admin } });
    assert.equal(tarball.headers.get('content-type'), 'application/gzip');
    const tar = gunzipSync(Buffer.from(await tarball.arrayBuffer())).toString('latin1');
    assert.match(tar, /hello component v1/);
    // v2 is missing: three requests at once build it once.
    const fetches = await Promise.all([1, 2, 3].map(() => fetch(`${ts.url}/api/v1/namespaces/team/components?component=hello&tag=v2&architecture=linux/amd64&format=ref`, { headers: { authorization: admin } })));
    assert.deepEqual(fetches.map((r) => r.status), [200, 200, 200]);
    const builds = (await api('GET', '/api/v1/namespaces/team/builds?kind=component&component=hello')).body as unknown as Array<{ tag: string }>;
    assert.equal(builds.filter((b) => b.tag === 'v2').length, 1);
    const missingTag = await api('POST', '/api/v1/namespaces/team/components?wait=true', { url, component: 'hello', tag: 'v9', architecture: 'linux/amd64' });
    assert.equal(missingTag.body.status, 'failed');
    assert.match(missingTag.body.errorMessage as string, /v9/);
    assert.ok((await readdir(path.join(ts.dataDir, 'builds', 'contexts')).catch(() => [])).length === 0, 'contexts are removed after builds');
  });
});
