/**
 * Pipelines with access control on: vault variables come from the namespace's secrets and are
 * masked in the run log; deliveries push as the pipeline's owner through a short-lived key
 * (an image and a BINARY as an OCI artifact) and record artefact versions with commit and ref;
 * who may start runs; a missing secret and a delivery outside the namespace fail the stage with
 * a clear message.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { dialects, startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { requireCommands, run } from './helpers/commands.js';
import { buildWork, type BuildWork } from './helpers/function-images.js';
import { createApiClient } from './helpers/api-client.js';
import { assembleNodeRootfs, importBaseImage } from '../src/builds/base-image.js';

const adminPassword = 'pipelines-admin-Pa55';
const admin = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;
const secretValue = 'tok-s3cr3t-value-991';

const buildSpec = `version: 0.1
component: build
env:
  variables:
    GREETING: hi
  vaultVariables:
    API_TOKEN: api_token
  exportedVariables:
    - APP_VERSION
steps:
  - type: Command
    name: Use the secret
    command: |
      echo "token is $API_TOKEN"
      test "$API_TOKEN" = "${secretValue}"
      export APP_VERSION=1.\${OCI_BUILD_RUN_ID: -3}
  - type: Command
    name: Package
    command: |
      mkdir -p out && echo "$GREETING $APP_VERSION" > out/app.txt
      docker build -t app:local .
outputArtifacts:
  - name: app-image
    type: DOCKER_IMAGE
    location: app:local
  - name: app-text
    type: BINARY
    location: out/app.txt
`;

for (const dialect of dialects) describe(`pipelines with access control (${dialect.name})`, { timeout: 600_000 }, () => {
  let ts: TestServer;
  let work: BuildWork;
  let repo: { path: string; remove(): Promise<void> };

  const api = (method: string, url: string, body?: unknown, authorization: string | null = admin) => createApiClient(ts.url).request(method, url, body, { auth: authorization });

  const git = (...args: string[]) => run('git', ['-C', repo.path, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' } });

  const pipeline = (name: string, location: string, specFile?: string) => ({
    name,
    parameters: [{ name: 'V', defaultValue: '1' }],
    sources: [{ name: 'app', url: `file://${repo.path}`, branch: 'main' }],
    stages: [
      { name: 'build', type: 'build', ...(specFile ? { buildSpecFile: specFile } : {}) },
      { name: 'deliver', type: 'deliver', artifacts: [
        { artifact: 'app-image', location: `${location}:\${V}-\${APP_VERSION}` },
        { artifact: 'app-text', location: `${location}-text:\${V}` },
      ] },
    ],
  });

  const runToEnd = async (name: string, body: unknown = {}) => {
    const started = await api('POST', `/api/v1/namespaces/team/pipelines/${name}/runs`, body);
    assert.equal(started.status, 201, started.text);
    const final = await api('GET', `/api/v1/namespaces/team/pipelines/${name}/runs/${started.body.number}?wait=true`);
    const log = await api('GET', `/api/v1/namespaces/team/pipelines/${name}/runs/${started.body.number}/logs`);
    return { run: final.body, log: log.text };
  };

  before(async () => {
    await requireCommands({ buildah: 'buildah', git: 'git' });
    work = await buildWork();
    ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword }, builds: work.builds, pipelines: { shellUid: 1302, shellGid: 1302 } } });
    const rootfs = path.join(work.path, 'rootfs');
    await assembleNodeRootfs(rootfs);
    await importBaseImage({ source: { rootfsDir: rootfs }, destination: `${ts.host}/slipway/node-base:latest`, registryAuth: { username: 'admin', password: adminPassword }, insecureRegistries: [ts.host], driver: work.driver }, () => undefined);
    assert.equal((await api('POST', '/api/v1/namespaces', { name: 'team' })).status, 201);
    assert.equal((await api('POST', '/api/v1/namespaces', { name: 'other' })).status, 201);
    assert.equal((await api('PUT', '/api/v1/namespaces/team/secrets/api_token', { value: secretValue })).status, 201);
    repo = await tempDir('slipway-pipelines-auth-repo-');
    await run('git', ['init', '-q', '-b', 'main', repo.path]);
    await mkdir(path.join(repo.path, 'ci'), { recursive: true });
    await writeFile(path.join(repo.path, 'Dockerfile'), 'FROM slipway/node-base:latest\nCOPY out/app.txt /app.txt\n');
    await writeFile(path.join(repo.path, 'build_spec.yaml'), buildSpec);
    await writeFile(path.join(repo.path, 'ci', 'missing-secret.yaml'), buildSpec.replace('API_TOKEN: api_token', 'API_TOKEN: not_there'));
    await git('add', '-A');
    await git('commit', '-q', '-m', 'first');
  });

  after(async () => {
    await ts?.close();
    await work?.cleanup();
    await repo?.remove();
  });

  test('vault variables masked; image and binary delivered as the owner; artefact versions recorded', { timeout: 300_000 }, async () => {
    const created = await api('POST', '/api/v1/namespaces/team/pipelines', pipeline('app', 'team/app'));
    assert.equal(created.status, 201, created.text);
    const { run: finished, log } = await runToEnd('app', { parameters: { V: '7' } });
    assert.equal(finished.status, 'succeeded', `${JSON.stringify(finished, null, 1)}\n${log.slice(-3000)}`);
    assert.match(log, /token is \*\*\*\*/);
    assert.ok(!log.includes(secretValue), 'the secret never reaches the log');
    assert.ok(!JSON.stringify(finished).includes(secretValue), 'nor the run record');
    const version = finished.exported.APP_VERSION as string;
    assert.match(version, /^1\.[A-Za-z0-9]{3}$/);
    const [image, text] = finished.artifacts;
    assert.equal(image.location, `${ts.host}/team/app:7-${version}`);
    assert.equal(text.location, `${ts.host}/team/app-text:7`);
    assert.equal(text.type, 'BINARY');

    // Both are in the registry under the delivered tags, with the recorded digests.
    for (const [repository, tag, digest] of [['team/app', `7-${version}`, image.digest], ['team/app-text', '7', text.digest]]) {
      const response = await fetch(`${ts.url}/v2/${repository}/manifests/${tag}`, { method: 'HEAD', headers: { authorization: admin, accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
      assert.equal(response.status, 200, `${repository}:${tag}`);
      assert.equal(response.headers.get('docker-content-digest'), digest);
    }
    const manifest = await (await fetch(`${ts.url}/v2/team/app-text/manifests/7`, { headers: { authorization: admin, accept: 'application/vnd.oci.image.manifest.v1+json' } })).json() as { artifactType?: string; layers: Array<{ digest: string }> };
    assert.ok(manifest.artifactType, 'the binary is an OCI artifact');

    // Each delivery is an artefact version with the commit and ref of the run, recorded once.
    const versions = (await api('GET', `/api/v1/namespaces/team/artefact-versions?name=${encodeURIComponent(`${ts.host}/team/app`)}`)).body.artefactVersions;
    assert.equal(versions.length, 1, JSON.stringify(versions));
    assert.equal(versions[0].source, 'pipeline');
    assert.equal(versions[0].digest, image.digest);
    assert.equal(versions[0].commit, finished.commit);
    assert.equal(versions[0].ref, 'refs/heads/main');
  });

  test('who may run; a missing secret and a delivery outside the namespace fail clearly', { timeout: 300_000 }, async () => {
    assert.equal((await api('POST', '/api/v1/users', { name: 'rita', password: 'rita-Pa55word!' })).status, 201);
    assert.equal((await api('PUT', '/api/v1/namespaces/team/members/rita', { role: 'reader' })).status, 200);
    const rita = `Basic ${Buffer.from('rita:rita-Pa55word!').toString('base64')}`;
    assert.equal((await api('POST', '/api/v1/namespaces/team/pipelines/app/runs', {}, null)).status, 401);
    assert.equal((await api('POST', '/api/v1/namespaces/team/pipelines/app/runs', {}, rita)).status, 403);
    assert.equal((await api('GET', '/api/v1/namespaces/team/pipelines/app/runs', undefined, rita)).status, 200, 'readers see runs');
    assert.equal((await api('POST', '/api/v1/namespaces/team/pipelines', pipeline('sneaky', 'team/x'), rita)).status, 403);

    assert.equal((await api('POST', '/api/v1/namespaces/team/pipelines', pipeline('nosecret', 'team/app2', 'ci/missing-secret.yaml'))).status, 201);
    const missing = await runToEnd('nosecret');
    assert.equal(missing.run.status, 'failed');
    assert.match(missing.run.error, /secret "not_there"/);

    assert.equal((await api('POST', '/api/v1/namespaces/team/pipelines', pipeline('elsewhere', 'other/app'))).status, 201);
    const elsewhere = await runToEnd('elsewhere');
    assert.equal(elsewhere.run.status, 'failed');
    assert.match(elsewhere.run.error, /delivers only to repositories of its namespace/);
    const response = await fetch(`${ts.url}/v2/other/app/tags/list`, { headers: { authorization: admin } });
    assert.equal(response.status, 404, 'nothing was pushed to the other namespace');
  });
});
