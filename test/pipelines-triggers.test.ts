/**
 * Pipeline triggers and run control through the HTTP API of one server (functions and buildah
 * on), then a restart on the same data folder and database:
 *
 * - API failure paths: invalid pipelines (400 naming the field), duplicates (409), bad run
 *   parameters (400, nothing queued), renames, unknown pipelines, approvals that are not
 *   waiting, webhooks that are unsigned, for branches outside the filter (GitLab, Gitea), of
 *   another event kind (GitHub `issues`) or to a pipeline without a webhook trigger.
 * - Unknown keys: warnings in the apply answer (definition) and the build stage's log (build
 *   spec, with file, line and key); `strict: true` refuses both.
 * - The mirror trigger on a local repository (file://): the first poll records the heads, a new
 *   commit runs the pipeline once.
 * - A push to Slipway's registry: an artefact version (source `registry`, the digest), a
 *   pipeline with a matching registry trigger, and an automation rule that deploys the pinned
 *   digest to a function that then answers.
 * - Outgoing webhooks of a run (`run.*`), signed as src/events/signature.ts says, in the
 *   delivery log.
 * - Cancel of a running build step (its process of the step user is gone), a re-run from the
 *   failed stage that reuses the build stage.
 * - A restart while a build step runs (the stage runs again from its start and the run
 *   succeeds) and while a run waits for an approval (approved afterwards).
 *
 * The independent cases run at the same time (the whole file takes about a minute and a half);
 * the restart runs last, alone.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { loadConfig, type Config } from '../src/config/config.js';
import { startServer, type RunningServer } from '../src/main.js';
import { dialects, tempDir, type TestServer } from './helpers/harness.js';
import { repoRoot, requireCommands, run } from './helpers/commands.js';
import { assertNoLeftovers, eventually, instancePrefix, sleep } from './helpers/functions.js';
import { createApiClient } from './helpers/api-client.js';
import { buildWork, importBase, type BuildWork } from './helpers/function-images.js';

const shellUid = 1004;

const quickSpec = (command: string, extra = '') => `version: 0.1
component: build
timeoutInSeconds: 900
shell: bash
${extra}steps:
  - type: Command
    name: Work
    command: |
${command.split('\n').map((line) => `      ${line}`).join('\n')}
`;

async function git(dir: string, ...args: string[]): Promise<string> {
  const result = await run('git', ['-C', dir, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' } });
  return result.stdout.trim();
}

interface Repo {
  path: string;
  url: string;
  commit(files: Record<string, string>, message?: string): Promise<string>;
}

/** Pids of processes of `uid` whose environment holds `needle` (e.g. `OCI_BUILD_RUN_ID=<run>`). */
async function processesWith(uid: number, needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = await readFile(`/proc/${entry}/status`, 'utf8');
      const uids = /^Uid:\s+(\d+)/m.exec(status);
      if (!uids || Number(uids[1]) !== uid) continue;
      const environ = await readFile(`/proc/${entry}/environ`);
      if (environ.includes(Buffer.from(`${needle}\0`)) || environ.subarray(environ.length - needle.length).equals(Buffer.from(needle))) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

for (const dialect of dialects) describe(`pipeline triggers, run control and restarts (${dialect.name})`, { timeout: 240_000 }, () => {
  let work: BuildWork;
  let dataDir: { path: string; remove(): Promise<void> };
  let database: { url: string; drop(): Promise<void> } | undefined;
  let config: Config;
  let server: RunningServer | undefined;
  let prefix: string;
  const cleanups: Array<() => Promise<unknown>> = [];

  const url = () => server!.url;
  const host = () => server!.url.replace(/^http:\/\//, '');
  const call = createApiClient(url).request;

  const start = async () => {
    server = await startServer(config, { logger: pino({ level: process.env.SLIPWAY_TEST_LOG ?? 'silent' }) });
    return server;
  };

  const makeRepo = async (files: Record<string, string>): Promise<Repo> => {
    const dir = await tempDir('slipway-trig-repo-');
    cleanups.push(() => dir.remove());
    await run('git', ['init', '-q', '-b', 'main', dir.path]);
    const repo: Repo = {
      path: dir.path,
      url: `file://${dir.path}`,
      async commit(changes, message = 'change') {
        for (const [name, content] of Object.entries(changes)) {
          await mkdir(path.dirname(path.join(dir.path, name)), { recursive: true });
          await writeFile(path.join(dir.path, name), content);
        }
        await git(dir.path, 'add', '-A');
        await git(dir.path, 'commit', '-q', '-m', message);
        return git(dir.path, 'rev-parse', 'HEAD');
      },
    };
    await repo.commit(files, 'first');
    return repo;
  };

  const createPipeline = async (ns: string, spec: Record<string, unknown>) => {
    const created = await call('POST', `/api/v1/namespaces/${ns}/pipelines`, spec);
    assert.equal(created.status, 201, created.text);
    return created.body as { id: string; webhook: { secret: string } };
  };

  const startRun = async (ns: string, name: string, body: unknown = {}) => {
    const started = await call('POST', `/api/v1/namespaces/${ns}/pipelines/${name}/runs`, body);
    assert.equal(started.status, 201, started.text);
    return started.body as { number: number; id: string };
  };

  const getRun = async (ns: string, name: string, number: number) => {
    const got = await call('GET', `/api/v1/namespaces/${ns}/pipelines/${name}/runs/${number}`);
    assert.equal(got.status, 200, got.text);
    return got.body;
  };

  const waitRun = async (ns: string, name: string, number: number) => {
    const waited = await call('GET', `/api/v1/namespaces/${ns}/pipelines/${name}/runs/${number}?wait=true`);
    assert.equal(waited.status, 200, waited.text);
    return waited.body;
  };

  const runLog = async (ns: string, name: string, number: number) => (await call('GET', `/api/v1/namespaces/${ns}/pipelines/${name}/runs/${number}/logs`)).text;

  const runsOf = async (ns: string, name: string) => {
    const listed = await call('GET', `/api/v1/namespaces/${ns}/pipelines/${name}/runs`);
    assert.equal(listed.status, 200, listed.text);
    return listed.body.runs as Array<{ number: number; status: string; trigger: Record<string, unknown>; commit: string | null }>;
  };

  const stageStates = (view: { stages: Array<{ name: string; status: string }> }) => view.stages.map((s) => `${s.name}:${s.status}`);

  before(async () => {
    await requireCommands({ runc: 'runc', ip: 'iproute2', buildah: 'buildah', git: 'git', skopeo: 'skopeo' });
    work = await buildWork();
    dataDir = await tempDir('slipway-trig-data-');
    prefix = await instancePrefix(dataDir.path);
    database = await dialect.create();
    config = loadConfig({
      flags: {
        listen: '127.0.0.1:0', dataDir: dataDir.path, database: database.url, log: { level: 'warn', requests: false },
        builds: work.builds, registry: { gc: { interval: 0 } }, functions: { enabled: true, startTimeout: '10s' },
        auth: { enabled: false }, pipelines: { concurrency: 8 },
      },
    });
    await start();
  });

  after(async () => {
    try {
      await server?.close();
      if (dataDir) await assertNoLeftovers(dataDir.path, prefix);
    } finally {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
      await work?.cleanup();
      await dataDir?.remove();
      await database?.drop();
    }
  });

  describe('on one server', { concurrency: true }, () => {
    test('API failure paths: invalid pipelines, bad parameters, renames, approvals, webhooks', { timeout: 60_000 }, async () => {
      const ns = 'api';
      const repo = await makeRepo({ 'build_spec.yaml': quickSpec('echo hi') });
      const base = `/api/v1/namespaces/${ns}/pipelines`;
      const valid = {
        name: 'ok', parameters: [{ name: 'who' }, { name: 'level', defaultValue: 'low' }],
        sources: [{ name: 'app', url: repo.url }],
        triggers: { webhook: { branches: ['main'] } },
        stages: [{ name: 'pause', type: 'wait', duration: '1s' }, { name: 'gate', type: 'approval' }],
      };
      const refused = async (spec: unknown, field: RegExp, what: string) => {
        const response = await call('POST', base, spec);
        assert.equal(response.status, 400, `${what}: ${response.text}`);
        assert.match(response.body.message, field, what);
      };
      await refused({ ...valid, stages: [{ name: 'x', type: 'compile' }] }, /stages\.0/, 'bad stage type');
      await refused({ ...valid, stages: [{ name: 'ship', type: 'deliver', artifacts: [{ artifact: 'img', location: 'api/x:1' }] }, { name: 'b', type: 'build' }] }, /stages\.0: a deliver stage needs a build stage before it/, 'deliver before any build');
      await refused({ ...valid, primarySource: 'nope' }, /primarySource: no source "nope"/, 'unknown primary source');
      await refused({ ...valid, stages: [{ name: 'b', type: 'build', primarySource: 'nope' }] }, /stages\.0\.primarySource: no source "nope"/, 'unknown source of a stage');
      await refused({ ...valid, triggers: { webhook: { branches: ['[unclosed'] } } }, /triggers\.webhook\.branches\.0/, 'bad glob');
      await refused({ ...valid, triggers: { webhook: { branches: ['!main'] } } }, /triggers\.webhook\.branches\.0.*negation/, 'negated glob');
      await refused({ ...valid, stages: [{ name: 'same', type: 'wait', duration: '1s' }, { name: 'same', type: 'wait', duration: '1s' }] }, /stages\.1: stage "same" is used twice/, 'duplicate stage name');
      await refused({ ...valid, stages: [{ name: 'w', type: 'wait', duration: 'soon' }] }, /stages\.0\.duration/, 'bad duration');
      await refused({ ...valid, stages: [{ name: 'b', type: 'build' }], sources: [] }, /sources: build stages/, 'build without a source');
      assert.equal((await call('GET', base)).body.pipelines.length, 0, 'nothing was created');

      const created = await createPipeline(ns, valid);
      const secret = created.webhook.secret;
      const duplicate = await call('POST', base, valid);
      assert.equal(duplicate.status, 409, duplicate.text);

      // Run parameters: unknown or missing ones are refused before anything is queued.
      const unknown = await call('POST', `${base}/ok/runs`, { parameters: { who: 'ada', color: 'red' } });
      assert.equal(unknown.status, 400, unknown.text);
      assert.match(unknown.body.message, /unknown parameter "color"/);
      const missing = await call('POST', `${base}/ok/runs`, { parameters: { level: 'high' } });
      assert.equal(missing.status, 400, missing.text);
      assert.match(missing.body.message, /"who" need a value/);
      const badBody = await call('POST', `${base}/ok/runs`, { parameters: { who: 'ada' }, commit: 'not-a-sha' });
      assert.equal(badBody.status, 400, badBody.text);
      assert.match(badBody.text, /commit/);
      assert.equal((await runsOf(ns, 'ok')).length, 0, 'nothing queued');
      const jobs = await server!.registry.db.kysely.selectFrom('pipeline_runs').select('id').where('namespace', '=', ns).execute();
      assert.equal(jobs.length, 0);

      // PUT with another name, runs of unknown pipelines.
      const renamed = await call('PUT', `${base}/ok`, { ...valid, name: 'other' });
      assert.equal(renamed.status, 400, renamed.text);
      assert.match(renamed.body.message, /^name: /);
      assert.equal((await call('PUT', `${base}/ghost`, { ...valid, name: 'ghost' })).status, 404);
      const ghost = await call('POST', `${base}/ghost/runs`, {});
      assert.equal(ghost.status, 404, ghost.text);
      assert.equal((await call('GET', `${base}/ok/runs/99`)).status, 404);
      assert.equal((await call('GET', `${base}/ok/runs/0`)).status, 400);

      // Approvals: only a waiting approval stage can be decided.
      const started = await startRun(ns, 'ok', { parameters: { who: 'ada' } });
      const early = await call('POST', `${base}/ok/runs/${started.number}/stages/gate/approve`, {});
      assert.equal(early.status, 409, early.text);
      assert.match(early.body.message, /not waiting/);
      const wrongType = await call('POST', `${base}/ok/runs/${started.number}/stages/pause/approve`, {});
      assert.equal(wrongType.status, 400, wrongType.text);
      assert.equal((await call('POST', `${base}/ok/runs/${started.number}/stages/nope/approve`, {})).status, 404);
      await eventually(async () => (await getRun(ns, 'ok', started.number)).status === 'waiting', 20_000, 'the run to wait for its approval');
      const rerunActive = await call('POST', `${base}/ok/runs/${started.number}/rerun`, {});
      assert.equal(rerunActive.status, 409, rerunActive.text);
      const approved = await call('POST', `${base}/ok/runs/${started.number}/stages/gate/approve`, { comment: 'fine' });
      assert.equal(approved.status, 200, approved.text);
      const again = await call('POST', `${base}/ok/runs/${started.number}/stages/gate/approve`, {});
      assert.equal(again.status, 409, again.text);
      const done = await waitRun(ns, 'ok', started.number);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      assert.equal(done.parameters.level, 'low');
      const late = await call('POST', `${base}/ok/runs/${started.number}/stages/gate/reject`, {});
      assert.equal(late.status, 409, late.text);

      // Webhooks.
      const hook = (name: string, body: string, headers: Record<string, string>) => fetch(`${url()}${base}/${name}/webhook`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } })
        .then(async (r) => ({ status: r.status, body: await r.json() as { status?: string; reason?: string; code?: string } }));
      const head = await git(repo.path, 'rev-parse', 'HEAD');
      const githubPush = (ref: string) => JSON.stringify({
        ref, before: '1'.repeat(40), after: head, commits: [{ id: head, message: 'x', added: [], removed: [], modified: ['a'] }],
        repository: { clone_url: repo.url, full_name: 't/r' }, pusher: { name: 'ada' },
      });
      const sign = (key: string, body: string) => createHmac('sha256', key).update(body).digest('hex');

      const unsigned = await hook('ok', githubPush('refs/heads/main'), { 'x-github-event': 'push', 'x-github-delivery': randomUUID() });
      assert.equal(unsigned.status, 401, JSON.stringify(unsigned.body));
      const forged = await hook('ok', githubPush('refs/heads/main'), { 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': `sha256=${sign('wrong', githubPush('refs/heads/main'))}` });
      assert.equal(forged.status, 401);

      const issues = JSON.stringify({ action: 'opened', issue: { number: 1 }, repository: { full_name: 't/r' } });
      const issue = await hook('ok', issues, { 'x-github-event': 'issues', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': `sha256=${sign(secret, issues)}` });
      assert.equal(issue.status, 202, JSON.stringify(issue.body));
      assert.equal(issue.body.status, 'ignored');

      const gitlabBody = JSON.stringify({
        object_kind: 'push', ref: 'refs/heads/feature/x', before: '1'.repeat(40), after: head, user_username: 'ada', total_commits_count: 1,
        commits: [{ id: head, message: 'x', added: ['a'], removed: [], modified: [] }], project: { git_http_url: repo.url, path_with_namespace: 't/r' },
      });
      const gitlab = await hook('ok', gitlabBody, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': secret, 'x-gitlab-event-uuid': randomUUID() });
      assert.equal(gitlab.status, 200, JSON.stringify(gitlab.body));
      assert.equal(gitlab.body.status, 'ignored');
      assert.match(gitlab.body.reason ?? '', /branch feature\/x matches no branch filter/);
      const gitlabWrong = await hook('ok', gitlabBody, { 'x-gitlab-event': 'Push Hook', 'x-gitlab-token': 'nope', 'x-gitlab-event-uuid': randomUUID() });
      assert.equal(gitlabWrong.status, 401);

      const giteaBody = JSON.stringify({
        ref: 'refs/heads/dev', before: '1'.repeat(40), after: head, total_commits: 1,
        commits: [{ id: head, message: 'x', added: [], removed: [], modified: ['a'] }], repository: { clone_url: repo.url, full_name: 't/r' }, pusher: { login: 'ada' },
      });
      const gitea = await hook('ok', giteaBody, { 'x-gitea-event': 'push', 'x-gitea-delivery': randomUUID(), 'x-gitea-signature': sign(secret, giteaBody) });
      assert.equal(gitea.status, 200, JSON.stringify(gitea.body));
      assert.equal(gitea.body.status, 'ignored');
      assert.match(gitea.body.reason ?? '', /branch dev matches no branch filter/);

      // A pipeline without a webhook trigger ignores even a signed push of its branch.
      const quiet = await createPipeline(ns, { name: 'quiet', sources: [{ name: 'app', url: repo.url }], stages: [{ name: 'w', type: 'wait', duration: '1s' }] });
      const quietBody = githubPush('refs/heads/main');
      const ignored = await hook('quiet', quietBody, { 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': `sha256=${sign(quiet.webhook.secret, quietBody)}` });
      assert.equal(ignored.status, 200, JSON.stringify(ignored.body));
      assert.equal(ignored.body.status, 'ignored');
      assert.match(ignored.body.reason ?? '', /no webhook trigger/);
      assert.equal((await runsOf(ns, 'quiet')).length, 0);
      assert.equal((await runsOf(ns, 'ok')).length, 1, 'no webhook started a run');
      const nobody = await hook('ghost', quietBody, { 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': 'sha256=00' });
      assert.equal(nobody.status, 404);
    });

    test('unknown keys: warnings in the apply answer and the build stage log; strict: true refuses them', { timeout: 60_000 }, async () => {
      const ns = 'lenient';
      const base = `/api/v1/namespaces/${ns}/pipelines`;
      // A URL input to fetch.
      const tool = createServer((_request, response) => response.end('fetched tool\n'));
      await new Promise<void>((resolve) => tool.listen(0, '127.0.0.1', resolve));
      cleanups.push(() => new Promise((resolve) => tool.close(resolve)));
      const toolUrl = `http://127.0.0.1:${(tool.address() as { port: number }).port}/tool`;
      // Keys OCI DevOps ignores: `image` on a step, `registryId` on an output; a url input with no type.
      const repo = await makeRepo({
        'build_spec.yaml': `version: 0.1
component: build
shell: bash
inputArtifacts:
  - name: tool
    url: ${toolUrl}
    location: \${OCI_PRIMARY_SOURCE_DIR}/tool.bin
steps:
  - type: Command
    name: Work
    image: OL7_X86_64_STANDARD_10
    command: cat tool.bin > out.txt
outputArtifacts:
  - name: out
    type: BINARY
    location: out.txt
    registryId: ocid1.artifactrepository.oc1..example
`,
      });
      const spec = {
        name: 'warned', sources: [{ name: 'app', url: repo.url }],
        stages: [{ name: 'build', type: 'build', colour: 'blue' }],
        owner: 'team',
      };
      const created = await call('POST', base, spec);
      assert.equal(created.status, 201, created.text);
      assert.deepEqual(created.body.warnings, [
        { path: 'stages.0.colour', key: 'colour', message: 'unknown key "colour" in stages.0 (ignored)' },
        { path: 'owner', key: 'owner', message: 'unknown key "owner" (ignored)' },
      ]);
      assert.equal(created.body.spec.owner, undefined, 'unknown keys are not stored');
      assert.equal(created.body.spec.stages[0].colour, undefined);

      const strictCreate = await call('POST', base, { ...spec, name: 'strict', strict: true });
      assert.equal(strictCreate.status, 400, strictCreate.text);
      assert.match(strictCreate.body.message, /stages\.0: Unrecognized key: "colour"/);
      assert.match(strictCreate.body.message, /\(pipeline\): Unrecognized key: "owner"/);
      // Wrong types are refused with or without strict.
      const wrongType = await call('POST', base, { ...spec, name: 'typed', stages: [{ name: 'build', type: 'build', timeoutSeconds: 'soon' }] });
      assert.equal(wrongType.status, 400, wrongType.text);
      assert.match(wrongType.body.message, /stages\.0/);

      // The build spec's unknown keys: warnings with file, line and key in the run's log.
      const first = await startRun(ns, 'warned', { parameters: {} });
      const done = await waitRun(ns, 'warned', first.number);
      const log = await runLog(ns, 'warned', first.number);
      assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${log}`);
      assert.match(log, /warning: build_spec\.yaml line 5: inputArtifacts\[0\]\.type: no type; taken as URL/);
      assert.match(log, /warning: build_spec\.yaml line 11: steps\[0\]\.image: unknown key in steps\[0\] "image" \(ignored\)/);
      assert.match(log, /warning: build_spec\.yaml line 17: outputArtifacts\[0\]\.registryId: unknown key in outputArtifacts\[0\] "registryId" \(ignored\)/);

      // strict: true on the pipeline refuses them before any step runs.
      const replaced = await call('PUT', `${base}/warned`, { name: 'warned', strict: true, sources: spec.sources, stages: [{ name: 'build', type: 'build' }] });
      assert.equal(replaced.status, 200, replaced.text);
      assert.deepEqual(replaced.body.warnings, []);
      assert.equal(replaced.body.spec.strict, true);
      const second = await startRun(ns, 'warned', { parameters: {} });
      const refused = await waitRun(ns, 'warned', second.number);
      const strictLog = await runLog(ns, 'warned', second.number);
      assert.equal(refused.status, 'failed', strictLog);
      assert.match(strictLog, /steps\[0\]\.image \(line 11\): unknown key in steps\[0\] "image"/);
      assert.doesNotMatch(strictLog, /downloading input artifact/);
    });

    test('mirror trigger: the first poll records the heads, a new commit runs the pipeline once', { timeout: 60_000 }, async () => {
      const ns = 'mirror';
      const repo = await makeRepo({ 'README.md': 'one\n' });
      const created = await createPipeline(ns, {
        name: 'poll', sources: [{ name: 'app', url: repo.url }], triggers: { mirror: { interval: '1s' } },
        stages: [{ name: 'pause', type: 'wait', duration: '1s' }],
      });
      const db = server!.registry.db;
      const mirrorState = () => db.kysely.selectFrom('pipeline_mirrors').selectAll().where('pipeline_id', '=', created.id).executeTakeFirst();
      // The poller ticks every 10 s: the first poll of a new pipeline comes within one tick.
      const first = await eventually(async () => {
        const row = await mirrorState();
        return row && row.heads !== null && row.heads !== 'null' ? row : undefined;
      }, 25_000, 'the first poll');
      assert.equal(first.last_error, null);
      assert.equal(JSON.parse(first.heads!).main, await git(repo.path, 'rev-parse', 'HEAD'));
      assert.equal((await runsOf(ns, 'poll')).length, 0, 'the first poll only records the heads');

      const commit = await repo.commit({ 'README.md': 'two\n' }, 'second');
      const runs = await eventually(async () => {
        const list = await runsOf(ns, 'poll');
        return list.length > 0 ? list : undefined;
      }, 25_000, 'a run of the new commit');
      assert.equal(runs.length, 1);
      assert.equal(runs[0]!.trigger.type, 'mirror');
      assert.equal(runs[0]!.commit, commit);
      const done = await waitRun(ns, 'poll', runs[0]!.number);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      assert.equal(done.ref, 'refs/heads/main');
      // One more poll sees nothing new: still one run.
      const polledAt = Number((await mirrorState())!.last_polled_at);
      await eventually(async () => Number((await mirrorState())!.last_polled_at) > polledAt, 25_000, 'another poll');
      assert.equal((await runsOf(ns, 'poll')).length, 1, 'exactly one run');
      assert.equal(JSON.parse((await mirrorState())!.heads!).main, commit);
    });

    test('registry push: artefact version, registry trigger, automation rule deploying the digest', { timeout: 150_000 }, async () => {
      const ns = 'reg';
      const ts = { url: url(), host: host() } as TestServer;
      await importBase(ts, work);
      // The example function, built by Slipway.
      const dir = path.join(repoRoot, 'examples/hello-fn');
      const context = path.join(work.path, 'ctx-hello.tar.gz');
      await run('tar', ['-czf', context, '-C', dir, '.']);
      const form = new FormData();
      form.set('component', 'hello');
      form.set('branch', 'main');
      form.set('architecture', 'linux/amd64');
      form.set('tag', 'latest');
      form.set('dockerfile', new Blob([await readFile(path.join(dir, 'Dockerfile'))]), 'Dockerfile');
      form.set('context', new Blob([await readFile(context)]), 'context.tar.gz');
      const built = await (await fetch(`${url()}/api/v1/namespaces/${ns}/images?wait=true`, { method: 'POST', body: form })).json() as { status: string; imageName: string; digest: string };
      assert.equal(built.status, 'succeeded', JSON.stringify(built));

      const fn = await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, { name: 'hello', type: 'http', image: built.imageName });
      assert.equal(fn.body.status, 'ready', fn.text);
      assert.equal(fn.body.activeRevision, 1);

      await createPipeline(ns, { name: 'on-base', triggers: { registry: [{ repository: `${ns}/base-*`, tag: '*' }] }, stages: [{ name: 'pause', type: 'wait', duration: '1s' }] });
      const rule = await call('POST', `/api/v1/namespaces/${ns}/automation-rules`, { name: 'ship-base', match: { name: '**/base-hello' }, action: { deploy: { functions: ['hello'] } } });
      assert.equal(rule.status, 201, rule.text);

      // A tag pushed to Slipway's registry by an ordinary client.
      const copied = await run('skopeo', ['copy', '--insecure-policy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${built.imageName}`, `docker://${host()}/${ns}/base-hello:v2`], { timeoutMs: 120_000, allowFailure: true });
      assert.equal(copied.code, 0, copied.stderr);
      const headed = await fetch(`${url()}/v2/${ns}/base-hello/manifests/v2`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } });
      assert.equal(headed.status, 200);
      const digest = headed.headers.get('docker-content-digest')!;
      assert.match(digest, /^sha256:[0-9a-f]{64}$/);

      // (a) the artefact version, with what automation did.
      const name = `${host()}/${ns}/base-hello`;
      const version = await eventually(async () => {
        const listed = await call('GET', `/api/v1/namespaces/${ns}/artefact-versions?name=${encodeURIComponent(name)}`);
        return listed.body.artefactVersions.find((v: { automations?: unknown[] }) => v.automations);
      }, 20_000, 'the artefact version of the push');
      assert.equal(version.source, 'registry');
      assert.equal(version.type, 'container');
      assert.equal(version.version, 'v2');
      assert.equal(version.digest, digest);
      assert.deepEqual(version.automations, [{ rule: 'ship-base', action: 'deploy hello', outcome: 'started' }]);
      const all = (await call('GET', `/api/v1/namespaces/${ns}/artefact-versions?name=${encodeURIComponent(name)}`)).body.artefactVersions;
      assert.equal(all.length, 1, 'one version per push');

      // (b) the pipeline with a matching registry trigger ran.
      const runs = await eventually(async () => {
        const list = await runsOf(ns, 'on-base');
        return list.length > 0 ? list : undefined;
      }, 20_000, 'a run of the registry trigger');
      assert.equal(runs.length, 1);
      assert.deepEqual({ ...runs[0]!.trigger, receivedAt: undefined }, { type: 'registry', repository: `${ns}/base-hello`, tag: 'v2', digest, receivedAt: undefined });
      const done = await waitRun(ns, 'on-base', runs[0]!.number);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));

      // (c) the rule deployed the pinned digest; the function answers with it.
      const deployed = await eventually(async () => {
        const got = (await call('GET', `/api/v1/namespaces/${ns}/functions/hello`)).body;
        return got.image === `${name}@${digest}` && got.activeRevision === 2 && got.status === 'ready' ? got : undefined;
      }, 60_000, 'the function to serve the pushed digest');
      assert.equal(deployed.latestRevision, 2);
      const answer = await fetch(`${url()}/fn/${ns}/hello/pinned`);
      assert.equal(`${answer.status} ${await answer.text()}`, '200 hello from /pinned\n');

      // A push to a repository outside the trigger's glob runs nothing and deploys nothing.
      const other = await run('skopeo', ['copy', '--insecure-policy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${built.imageName}`, `docker://${host()}/${ns}/app-hello:v3`], { timeoutMs: 120_000, allowFailure: true });
      assert.equal(other.code, 0, other.stderr);
      await eventually(async () => (await call('GET', `/api/v1/namespaces/${ns}/artefact-versions?name=${encodeURIComponent(`${host()}/${ns}/app-hello`)}`)).body.artefactVersions.find((v: { automations?: unknown[] }) => v.automations), 20_000, 'the second artefact version');
      assert.equal((await runsOf(ns, 'on-base')).length, 1);
      assert.equal((await call('GET', `/api/v1/namespaces/${ns}/functions/hello`)).body.latestRevision, 2);
    });

    test('outgoing webhooks: run.queued, run.started and run.succeeded, signed, in the delivery log', { timeout: 60_000 }, async () => {
      const ns = 'hooks';
      const received: Array<{ headers: Record<string, string | string[] | undefined>; body: Buffer }> = [];
      const receiver: Server = createServer((request, response) => {
        const chunks: Buffer[] = [];
        request.on('data', (chunk: Buffer) => chunks.push(chunk));
        request.on('end', () => {
          received.push({ headers: request.headers, body: Buffer.concat(chunks) });
          response.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      cleanups.push(() => new Promise((resolve) => { receiver.closeAllConnections(); receiver.close(resolve); }));
      const port = (receiver.address() as { port: number }).port;
      const secret = `whsec-test-${randomBytes(12).toString('hex')}`;
      const hook = await call('POST', `/api/v1/namespaces/${ns}/webhooks`, { url: `http://127.0.0.1:${port}/hook`, events: ['run.*'], secret });
      assert.equal(hook.status, 201, hook.text);

      await createPipeline(ns, { name: 'tick', stages: [{ name: 'pause', type: 'wait', duration: '1s' }] });
      const started = await startRun(ns, 'tick');
      const done = await waitRun(ns, 'tick', started.number);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));

      await eventually(async () => received.length >= 3, 20_000, 'three deliveries');
      await sleep(300);
      assert.equal(received.length, 3, 'only run events');
      const types: string[] = [];
      for (const { headers, body } of received) {
        const timestamp = String(headers['x-slipway-timestamp']);
        assert.match(timestamp, /^\d+$/);
        assert.ok(Math.abs(Number(timestamp) - Date.now() / 1000) < 300, 'a current timestamp');
        const expected = `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;
        assert.equal(headers['x-slipway-signature-256'], expected, 'signed over "<timestamp>.<raw body>"');
        const event = JSON.parse(body.toString('utf8'));
        assert.equal(headers['x-slipway-event'], event.type);
        assert.equal(event.namespace, ns);
        assert.equal(event.subject, `tick#${started.number}`);
        assert.equal(event.data.run.number, started.number);
        assert.equal(event.data.run.id, started.id);
        assert.ok(typeof headers['x-slipway-delivery'] === 'string');
        types.push(event.type);
      }
      assert.deepEqual([...types].sort(), ['run.queued', 'run.started', 'run.succeeded']);
      const final = received.map((r) => JSON.parse(r.body.toString('utf8'))).find((e) => e.type === 'run.succeeded');
      assert.equal(final.data.run.status, 'succeeded');

      const deliveries = await eventually(async () => {
        const listed = (await call('GET', `/api/v1/namespaces/${ns}/webhooks/${hook.body.id}/deliveries`)).body.deliveries as Array<{ eventType: string; status: string; attempts: number; lastStatus: number; id: string }>;
        return listed.length === 3 && listed.every((d) => d.status === 'succeeded') ? listed : undefined;
      }, 20_000, 'three succeeded deliveries in the log');
      assert.deepEqual(deliveries.map((d) => d.eventType).sort(), ['run.queued', 'run.started', 'run.succeeded']);
      for (const delivery of deliveries) {
        assert.equal(delivery.attempts, 1);
        assert.equal(delivery.lastStatus, 204);
      }
      assert.deepEqual(new Set(deliveries.map((d) => d.id)), new Set(received.map((r) => r.headers['x-slipway-delivery'])));
    });

    test('cancel of a running build stage kills its step; later stages are skipped', { timeout: 60_000 }, async (t) => {
      const ns = 'cancel';
      const repo = await makeRepo({ 'build_spec.yaml': quickSpec('echo "sleeping"\nsleep 600\necho never') });
      await createPipeline(ns, {
        name: 'long', sources: [{ name: 'app', url: repo.url }],
        stages: [{ name: 'build', type: 'build', executor: 'shell' }, { name: 'after', type: 'wait', duration: '1s' }],
      });
      const started = await startRun(ns, 'long');
      const marker = `OCI_BUILD_RUN_ID=${started.id}`;
      await eventually(async () => (await processesWith(shellUid, marker)).length > 0, 30_000, 'the step to run as the step user');
      await eventually(async () => /sleeping/.test(await runLog(ns, 'long', started.number)), 10_000, 'the step output');
      const cancelledAt = Date.now();
      const cancelled = await call('POST', `/api/v1/namespaces/${ns}/pipelines/long/runs/${started.number}/cancel`, {});
      assert.equal(cancelled.status, 200, cancelled.text);
      const done = await waitRun(ns, 'long', started.number);
      // A running run hears of the cancel at its job's next heartbeat (a third of the 30 s lease).
      const tookMs = Date.now() - cancelledAt;
      t.diagnostic(`cancel → cancelled in ${tookMs} ms`);
      assert.ok(tookMs < 20_000, `the cancel took ${tookMs} ms`);
      assert.equal(done.status, 'cancelled', JSON.stringify(done));
      assert.match(done.error ?? '', /cancelled/);
      assert.deepEqual(stageStates(done), ['build:cancelled', 'after:skipped']);
      assert.deepEqual(await processesWith(shellUid, marker), [], 'no process of the step user is left');
      assert.doesNotMatch(await runLog(ns, 'long', started.number), /never/);
      // A cancel of a finished run changes nothing.
      const again = await call('POST', `/api/v1/namespaces/${ns}/pipelines/long/runs/${started.number}/cancel`, {});
      assert.equal(again.status, 200);
      assert.equal(again.body.status, 'cancelled');
    });

    test('re-run from the failed stage reuses the build stage and its exported variables', { timeout: 90_000 }, async () => {
      const ns = 'rerun';
      const repo = await makeRepo({
        'build_spec.yaml': quickSpec('export APP_VERSION="v-$(git rev-parse --short HEAD 2>/dev/null || echo x)-$RANDOM"\necho "version $APP_VERSION"', 'env:\n  exportedVariables:\n    - APP_VERSION\n'),
        'failing.yaml': quickSpec('echo "downstream breaks"\nexit 3'),
      });
      // The downstream pipeline fails at first (its build step exits 3).
      await createPipeline(ns, {
        name: 'downstream', parameters: [{ name: 'version' }], sources: [{ name: 'app', url: repo.url }],
        stages: [{ name: 'check', type: 'build', buildSpecFile: 'failing.yaml', executor: 'shell' }],
      });
      await createPipeline(ns, {
        name: 'app', sources: [{ name: 'app', url: repo.url }],
        stages: [
          { name: 'build', type: 'build', executor: 'shell' },
          { name: 'promote', type: 'trigger', pipeline: 'downstream', parameters: { version: '${APP_VERSION}' }, wait: true },
        ],
      });
      const first = await startRun(ns, 'app');
      const failed = await waitRun(ns, 'app', first.number);
      assert.equal(failed.status, 'failed', JSON.stringify(failed));
      assert.deepEqual(stageStates(failed), ['build:succeeded', 'promote:failed']);
      assert.match(failed.error, /downstream run 1 failed/);
      const version = failed.exported.APP_VERSION;
      assert.match(version, /^v-/);
      assert.equal((await getRun(ns, 'downstream', 1)).parameters.version, version);

      // Fix the cause: downstream now succeeds.
      const fixed = await call('PUT', `/api/v1/namespaces/${ns}/pipelines/downstream`, { name: 'downstream', parameters: [{ name: 'version' }], stages: [{ name: 'pause', type: 'wait', duration: '1s' }] });
      assert.equal(fixed.status, 200, fixed.text);
      const rerun = await call('POST', `/api/v1/namespaces/${ns}/pipelines/app/runs/${first.number}/rerun`, {});
      assert.equal(rerun.status, 201, rerun.text);
      assert.equal(rerun.body.rerunOf, first.id);
      assert.equal(rerun.body.trigger.type, 'rerun');
      const second = await waitRun(ns, 'app', rerun.body.number);
      assert.equal(second.status, 'succeeded', `${JSON.stringify(second)}\n${await runLog(ns, 'app', rerun.body.number)}`);
      assert.equal(second.commit, failed.commit);
      const build = second.stages.find((s: { name: string }) => s.name === 'build');
      assert.equal(build.reused, true);
      assert.equal(build.status, 'succeeded');
      assert.equal(second.stages.find((s: { name: string }) => s.name === 'promote').status, 'succeeded');
      assert.equal(second.exported.APP_VERSION, version, 'the reused stage\'s exported variables');
      const downstream = await getRun(ns, 'downstream', 2);
      assert.equal(downstream.status, 'succeeded');
      assert.equal(downstream.parameters.version, version);
      assert.doesNotMatch(await runLog(ns, 'app', rerun.body.number), /\[build\] build spec/, 'the build stage did not run again');
      // A re-run of a stage the run does not have is refused.
      const bad = await call('POST', `/api/v1/namespaces/${ns}/pipelines/app/runs/${first.number}/rerun`, { fromStage: 'nope' });
      assert.equal(bad.status, 400, bad.text);
    });
  });

  describe('across a restart', () => {
    test('a running build stage runs again from its start; a waiting approval can be approved afterwards', { timeout: 90_000 }, async () => {
      const ns = 'restart';
      const flag = path.join('/tmp', `slipway-restart-${randomBytes(6).toString('hex')}`);
      cleanups.push(() => rm(flag, { force: true }));
      // The first attempt sleeps longer than the shutdown grace (10 s): the server stops it.
      const repo = await makeRepo({
        'build_spec.yaml': quickSpec(`if [ -e ${flag} ]; then echo "second attempt"; sleep 1; else touch ${flag}; echo "first attempt"; sleep 30; fi\necho built > result.txt\necho "wrote $(cat result.txt)"`),
      });
      await createPipeline(ns, { name: 'slow', sources: [{ name: 'app', url: repo.url }], stages: [{ name: 'build', type: 'build', executor: 'shell' }, { name: 'after', type: 'wait', duration: '1s' }] });
      await createPipeline(ns, { name: 'gate', stages: [{ name: 'ok', type: 'approval', timeout: '1h' }, { name: 'after', type: 'wait', duration: '1s' }] });
      const waiting = await startRun(ns, 'gate');
      await eventually(async () => (await getRun(ns, 'gate', waiting.number)).status === 'waiting', 20_000, 'the approval to wait');
      const slow = await startRun(ns, 'slow');
      const marker = `OCI_BUILD_RUN_ID=${slow.id}`;
      await eventually(async () => /first attempt/.test(await runLog(ns, 'slow', slow.number)), 30_000, 'the first attempt to run');

      const stopping = Date.now();
      await server!.close();
      server = undefined;
      assert.deepEqual(await processesWith(shellUid, marker), [], 'the stopped server left no step process');
      const stopped = Date.now() - stopping;
      await start();

      const done = await waitRun(ns, 'slow', slow.number);
      const log = await runLog(ns, 'slow', slow.number);
      assert.equal(done.status, 'succeeded', `${JSON.stringify(done)}\n${log}`);
      assert.deepEqual(stageStates(done), ['build:succeeded', 'after:succeeded']);
      assert.match(log, /run interrupted \(shutdown\)/);
      assert.match(log, new RegExp(`run ${slow.number} goes on`));
      assert.match(log, /stage runs again from its start/);
      assert.match(log, /second attempt/);
      assert.match(log, /wrote built/);
      assert.ok(stopped < 30_000, `the close took ${stopped} ms`);

      // The approval survived the restart.
      assert.equal((await getRun(ns, 'gate', waiting.number)).status, 'waiting');
      const approved = await call('POST', `/api/v1/namespaces/${ns}/pipelines/gate/runs/${waiting.number}/stages/ok/approve`, { comment: 'after the restart' });
      assert.equal(approved.status, 200, approved.text);
      const gate = await waitRun(ns, 'gate', waiting.number);
      assert.equal(gate.status, 'succeeded', JSON.stringify(gate));
      assert.equal(gate.stages[0].approval.comment, 'after the restart');
    });
  });
});
