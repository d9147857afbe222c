/**
 * Pipelines end to end on one server: a local git repository with a Node.js function and its
 * build spec; a pipeline build → deliver → deploy; signed GitHub webhooks for new commits. The
 * function answers with the new code; a commit outside the path filter runs nothing; a broken
 * commit fails at its step (with the step's output in the run) and the function keeps serving
 * the previous revision. Builds run with real buildah, functions with runc.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { dialects, startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { repoRoot, requireCommands, run } from './helpers/commands.js';
import { assertNoLeftovers, instancePrefix } from './helpers/functions.js';
import { createApiClient, type Requester } from './helpers/api-client.js';
import { buildWork, importBase, type BuildWork } from './helpers/function-images.js';

const ns = 'e2e';

const buildSpec = `version: 0.1
component: build
timeoutInSeconds: 600
shell: bash
env:
  variables:
    APP_NAME: hello
  exportedVariables:
    - BUILDRUN_HASH
steps:
  - type: Command
    name: Check
    failImmediatelyOnError: true
    command: |
      echo "checking \${APP_NAME} at \${OCI_PRIMARY_SOURCE_COMMIT_HASH}"
      node --check server.js
  - type: Command
    name: Version
    command: |
      export BUILDRUN_HASH=\${OCI_BUILD_RUN_ID: -7}
      echo "hash \${BUILDRUN_HASH}"
  - type: Command
    name: Build image
    command: docker build -t hello-fn:latest .
outputArtifacts:
  - name: hello-image
    type: DOCKER_IMAGE
    location: hello-fn:latest
`;

async function git(dir: string, ...args: string[]): Promise<string> {
  const result = await run('git', ['-C', dir, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } });
  return result.stdout.trim();
}

for (const dialect of dialects) describe(`pipelines end to end (${dialect.name})`, { timeout: 900_000 }, () => {
  let ts: TestServer;
  let call: Requester;
  let work: BuildWork;
  let repo: { path: string; remove(): Promise<void> };
  let prefix: string;
  let secret: string;
  let serverJs: string;

  const commit = async (files: Record<string, string>, message: string) => {
    for (const [name, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(repo.path, name)), { recursive: true });
      await writeFile(path.join(repo.path, name), content);
    }
    const before = await git(repo.path, 'rev-parse', 'HEAD').catch(() => '0'.repeat(40));
    await git(repo.path, 'add', '-A');
    await git(repo.path, 'commit', '-q', '-m', message);
    return { before, after: await git(repo.path, 'rev-parse', 'HEAD'), files: Object.keys(files) };
  };

  /** A GitHub push webhook for a commit, signed with the pipeline's secret. */
  const pushWebhook = async (change: { before: string; after: string; files: string[] }, options: { delivery?: string; key?: string } = {}) => {
    const body = JSON.stringify({
      ref: 'refs/heads/main', before: change.before, after: change.after, created: false, deleted: false, forced: false,
      commits: [{ id: change.after, message: 'change', timestamp: new Date().toISOString(), added: [], removed: [], modified: change.files, distinct: true }],
      head_commit: { id: change.after, message: 'change', added: [], removed: [], modified: change.files },
      repository: { clone_url: `file://${repo.path}`, full_name: 'team/hello', default_branch: 'main' },
      pusher: { name: 'ada', email: 'ada@example.com' },
    });
    const signature = `sha256=${createHmac('sha256', options.key ?? secret).update(body).digest('hex')}`;
    const response = await fetch(`${ts.url}/api/v1/namespaces/${ns}/pipelines/hello/webhook`, {
      method: 'POST', body,
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': options.delivery ?? randomUUID(), 'x-hub-signature-256': signature, 'user-agent': 'GitHub-Hookshot/test' },
    });
    return { status: response.status, body: await response.json() as { status: string; reason?: string; run?: { number: number } } };
  };

  const waitRun = async (number: number) => {
    const response = await call('GET', `/api/v1/namespaces/${ns}/pipelines/hello/runs/${number}?wait=true`);
    assert.equal(response.status, 200, response.text);
    return response.body;
  };

  const answer = async () => {
    const response = await fetch(`${ts.url}/fn/${ns}/hello/greeting`);
    return `${response.status} ${await response.text()}`;
  };

  before(async () => {
    await requireCommands({ runc: 'runc', ip: 'iproute2', buildah: 'buildah', git: 'git' });
    work = await buildWork();
    ts = await startTestServer({ dialect, config: { builds: work.builds, functions: { enabled: true, startTimeout: '10s' }, pipelines: { concurrency: 1, shellUid: 1301, shellGid: 1301 } } });
    call = createApiClient(ts.url).request;
    prefix = await instancePrefix(ts.dataDir);
    await importBase(ts, work);
    repo = await tempDir('slipway-e2e-repo-');
    await run('git', ['init', '-q', '-b', 'main', repo.path]);
    serverJs = await readFile(path.join(repoRoot, 'examples/hello-fn/server.js'), 'utf8');
    await commit({
      'server.js': serverJs.replace('hello from ${req.url}', 'v1 ${req.url}'),
      Dockerfile: await readFile(path.join(repoRoot, 'examples/hello-fn/Dockerfile'), 'utf8'),
      'package.json': '{"type":"commonjs"}\n',
      'build_spec.yaml': buildSpec,
      'README.md': '# hello\n',
      'docs/notes.md': 'notes\n',
    }, 'first');
  });

  after(async () => {
    try {
      if (ts) {
        await ts.server.close();
        await assertNoLeftovers(ts.dataDir, prefix);
      }
    } finally {
      await ts?.close();
      await work?.cleanup();
      await repo?.remove();
    }
  });

  test('build → deliver → deploy from webhooks; path filter; a broken commit keeps the previous revision', { timeout: 600_000 }, async () => {
    const created = await call('POST', `/api/v1/namespaces/${ns}/pipelines`, {
      name: 'hello',
      parameters: [{ name: 'channel', defaultValue: 'main', description: 'tag prefix' }],
      sources: [{ name: 'app', url: `file://${repo.path}`, branch: 'main' }],
      triggers: { webhook: { paths: { exclude: ['docs/**', '**/*.md'] } } },
      stages: [
        { name: 'build', type: 'build' },
        { name: 'deliver', type: 'deliver', artifacts: [{ artifact: 'hello-image', location: `${ns}/hello-fn:\${channel}-\${BUILDRUN_HASH}` }] },
        { name: 'deploy', type: 'deploy', functions: [{ name: 'hello', type: 'http' }] },
      ],
    });
    assert.equal(created.status, 201, created.text);
    secret = created.body.webhook.secret;
    assert.match(secret, /^whsec_/);
    assert.equal((await call('GET', `/api/v1/namespaces/${ns}/pipelines/hello`)).text.includes(secret), false, 'the secret is shown once');

    // A manual run builds the first commit and creates the function.
    const manual = await call('POST', `/api/v1/namespaces/${ns}/pipelines/hello/runs`, { parameters: { channel: 'first' } });
    assert.equal(manual.status, 201, manual.text);
    const first = await waitRun(manual.body.number);
    const log1 = (await call('GET', `/api/v1/namespaces/${ns}/pipelines/hello/runs/${first.number}/logs`)).text;
    assert.equal(first.status, 'succeeded', `${JSON.stringify(first, null, 1)}\n${log1.slice(-4000)}`);
    assert.deepEqual(first.stages.map((s: { name: string; status: string }) => `${s.name}:${s.status}`), ['build:succeeded', 'deliver:succeeded', 'deploy:succeeded']);
    assert.match(first.exported.BUILDRUN_HASH, /^[A-Za-z0-9]{7}$/);
    assert.equal(first.artifacts.length, 1);
    assert.equal(first.artifacts[0].location, `${ts.host}/${ns}/hello-fn:first-${first.exported.BUILDRUN_HASH}`);
    assert.match(first.artifacts[0].digest, /^sha256:[0-9a-f]{64}$/);
    assert.ok(first.commit && first.commit.length === 40);
    assert.match(log1, /checking hello at [0-9a-f]{40}/);
    assert.equal(await answer(), '200 v1 /greeting\n');

    // A signed push webhook with new code: the function answers with it.
    const v2 = await commit({ 'server.js': serverJs.replace('hello from ${req.url}', 'v2 ${req.url}') }, 'v2');
    const delivery = randomUUID();
    const hook = await pushWebhook(v2, { delivery });
    assert.equal(hook.status, 202, JSON.stringify(hook.body));
    assert.equal(hook.body.status, 'started');
    const second = await waitRun(hook.body.run!.number);
    assert.equal(second.status, 'succeeded', JSON.stringify(second, null, 1));
    assert.equal(second.commit, v2.after);
    assert.equal(second.trigger.type, 'webhook');
    assert.equal(second.trigger.provider, 'github');
    assert.equal(await answer(), '200 v2 /greeting\n');
    for (const phase of ['queue', 'clone', 'build', 'push', 'deploy']) assert.equal(typeof second.phases[phase], 'number', `phase ${phase}`);

    // The same delivery again is a replay; a wrong signature is refused.
    const replay = await pushWebhook(v2, { delivery });
    assert.equal(replay.status, 200);
    assert.equal(replay.body.status, 'duplicate');
    const forged = await pushWebhook(v2, { key: 'not-the-secret' });
    assert.equal(forged.status, 401);
    const received = (await call('GET', `/api/v1/namespaces/${ns}/pipelines/hello/webhook-deliveries`)).body.deliveries;
    assert.deepEqual(received.map((d: { deliveryId: string; outcome: string }) => [d.deliveryId, d.outcome]), [[delivery, `run ${second.number}`]], 'a replay and a forged call record nothing new');

    // Only files outside the path filter changed: nothing runs.
    const runsBefore = (await call('GET', `/api/v1/namespaces/${ns}/pipelines/hello/runs`)).body.runs.length;
    const docs = await commit({ 'docs/notes.md': 'more notes\n', 'README.md': '# hello v2\n' }, 'docs');
    const ignored = await pushWebhook(docs);
    assert.equal(ignored.status, 200, JSON.stringify(ignored.body));
    assert.equal(ignored.body.status, 'ignored');
    assert.match(ignored.body.reason ?? '', /path filter/);
    assert.equal((await call('GET', `/api/v1/namespaces/${ns}/pipelines/hello/runs`)).body.runs.length, runsBefore);

    // A commit that breaks the build: the run fails at its step, the function keeps serving v2.
    const broken = await commit({ 'server.js': 'const = broken;\n' }, 'broken');
    const failedHook = await pushWebhook(broken);
    assert.equal(failedHook.status, 202, JSON.stringify(failedHook.body));
    const third = await waitRun(failedHook.body.run!.number);
    assert.equal(third.status, 'failed');
    const build = third.stages.find((s: { name: string }) => s.name === 'build');
    assert.equal(build.status, 'failed');
    assert.equal(build.failedStep, 'Check');
    assert.notEqual(build.exitCode, 0);
    assert.deepEqual(build.steps.map((s: { name: string; status: string }) => `${s.name}:${s.status}`), ['Check:failed', 'Version:skipped', 'Build image:skipped']);
    assert.deepEqual(third.stages.slice(1).map((s: { status: string }) => s.status), ['skipped', 'skipped']);
    assert.match(third.error, /Check/);
    const log3 = (await call('GET', `/api/v1/namespaces/${ns}/pipelines/hello/runs/${third.number}/logs`)).text;
    assert.match(log3, /SyntaxError/);
    assert.equal(await answer(), '200 v2 /greeting\n');
    const fn = (await call('GET', `/api/v1/namespaces/${ns}/functions/hello`)).body;
    assert.equal(fn.activeRevision, 2);
  });
});
