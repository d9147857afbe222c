/**
 * The pipeline and artefact commands as a user runs them (`node bin/slipway.js …` in child
 * processes, killed in `after` whatever happens) against a server without access control
 * (SLIPWAY_SERVER and SLIPWAY_API_KEY, as CI would): `pipeline apply` from a YAML file (create,
 * then replace), `list`, `get`, an invalid file, `run --follow` of a pipeline with only a short
 * `wait` stage (no build), an unknown parameter, approve and reject of an `approval` stage,
 * cancel of a waiting run, `webhook-secret`, `rm`; `artefact create` and `list`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describeRun, parseDocument, parseParameters, runNumber, runSummary } from '../src/cli/pipeline-commands.js';
import { UsageError } from '../src/cli/errors.js';
import type { RunView } from '../src/pipelines/runs.js';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { cleanEnv, killAllChildren, run, slipwayBin, type CommandResult } from './helpers/commands.js';

const ns = 'team';

function describeResult(result: CommandResult): string {
  return `exit ${result.code ?? result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
}

const waiterYaml = (description: string) => `name: waiter
description: ${description}
parameters:
  - name: greeting
    defaultValue: hello
stages:
  - name: pause
    type: wait
    duration: 1s
`;

const gateYaml = `name: gate
stages:
  - name: sign-off
    type: approval
    timeout: 1h
  - name: settle
    type: wait
    duration: 1s
`;

describe('pipeline command helpers', () => {
  test('parameters, run numbers, documents, summaries', { timeout: 10_000 }, () => {
    assert.deepEqual(parseParameters(['a=1', 'b=x=y', 'c=']), { a: '1', b: 'x=y', c: '' });
    assert.throws(() => parseParameters(['novalue']), (e: unknown) => e instanceof UsageError && /NAME=VALUE/.test(e.message));
    assert.throws(() => parseParameters(['1a=x']), /not a parameter name/);
    assert.throws(() => parseParameters(['a=1', 'a=2']), /given twice/);
    assert.equal(runNumber('12'), 12);
    assert.throws(() => runNumber('0'), UsageError);
    assert.throws(() => runNumber('x'), UsageError);
    assert.deepEqual(parseDocument('name: a\nstages: []\n', 'p.yaml'), { name: 'a', stages: [] });
    assert.deepEqual(parseDocument('{"name":"a"}', 'p.json'), { name: 'a' });
    assert.throws(() => parseDocument('{"name":', 'p.json'), /not valid JSON/);
    assert.throws(() => parseDocument('a: [b\n', 'p.yaml'), /not valid YAML/);
    const view: RunView = {
      id: 'run_x', pipeline: 'p', namespace: ns, number: 3, status: 'failed', trigger: { type: 'manual', by: 'ann' }, commit: 'abcdef0123456789', ref: 'refs/heads/main',
      parameters: { greeting: 'hi' }, exported: { VERSION: '7' }, phases: { queue: 12, build: 61_000 }, error: 'stage "build" failed: step Test failed', rerunOf: null,
      createdAt: '2025-01-01T00:00:00.000Z', startedAt: '2025-01-01T00:00:01.000Z', finishedAt: '2025-01-01T00:01:02.000Z', durationMs: 61_000,
      stages: [
        { name: 'build', type: 'build', group: 0, status: 'failed', durationMs: 61_000, failedStep: 'Test', exitCode: 3, steps: [{ name: 'Compile', status: 'succeeded', exitCode: 0, durationMs: 900 }, { name: 'Test', status: 'failed', exitCode: 3 }], exported: { VERSION: '7' } },
        { name: 'ship', type: 'deliver', group: 1, status: 'skipped' },
      ],
      artifacts: [{ artifact: 'img', type: 'DOCKER_IMAGE', location: 'h:1/team/app:7', digest: `sha256:${'a'.repeat(64)}`, reference: `h:1/team/app@sha256:${'a'.repeat(64)}` }],
    };
    const summary = runSummary(view);
    assert.match(summary, /build\s+build\s+failed\s+1m01s/);
    assert.match(summary, /ship\s+deliver\s+skipped/);
    assert.match(summary, /phases: queue 12 ms, build 1m01s/);
    assert.match(summary, /run 3 failed in 1m01s: stage "build" failed/);
    const shown = describeRun(view);
    assert.match(shown, /Compile: succeeded exit 0/);
    assert.match(shown, /Test: failed exit 3/);
    assert.match(shown, /VERSION=7/);
    assert.match(shown, new RegExp(`h:1/team/app@sha256:${'a'.repeat(64)}`));
  });
});

describe('slipway pipeline and artefact', { timeout: 300_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  let env: Record<string, string>;

  const cli = (args: string[], options: { timeoutMs?: number; input?: string } = {}) =>
    run(process.execPath, [slipwayBin, ...args], { cwd: work.path, env: cleanEnv(env), input: options.input, timeoutMs: options.timeoutMs ?? 60_000, allowFailure: true });

  const ok = async (args: string[], options: { timeoutMs?: number; input?: string } = {}) => {
    const result = await cli(args, options);
    assert.equal(result.code, 0, `slipway ${args.join(' ')}\n${describeResult(result)}`);
    return result;
  };

  const getRun = async (pipeline: string, number: number): Promise<RunView> => {
    const response = await fetch(`${ts.url}/api/v1/namespaces/${ns}/pipelines/${pipeline}/runs/${number}`);
    assert.equal(response.status, 200);
    return (await response.json()) as RunView;
  };

  const waitForStatus = async (pipeline: string, number: number, wanted: string, timeoutMs = 30_000): Promise<RunView> => {
    const deadline = Date.now() + timeoutMs;
    let last: RunView | undefined;
    while (Date.now() < deadline) {
      last = await getRun(pipeline, number);
      if (last.status === wanted) return last;
      await sleep(150);
    }
    assert.fail(`run ${number} of ${pipeline} is ${last?.status}, not ${wanted}`);
  };

  const file = async (name: string, text: string) => {
    const at = path.join(work.path, name);
    await writeFile(at, text);
    return at;
  };

  before(async () => {
    work = await tempDir('slipway-cli-pipelines-');
    ts = await startTestServer();
    // Access control is off: any key passes; HOME and the credentials file stay in the temp folder.
    env = { SLIPWAY_SERVER: ts.url, SLIPWAY_API_KEY: 'slw_unused.unused', SLIPWAY_CLI_CONFIG: path.join(work.path, 'cli', 'credentials.json'), HOME: work.path, XDG_CONFIG_HOME: path.join(work.path, 'xdg') };
  });

  after(async () => {
    killAllChildren();
    await ts?.close();
    await work?.remove();
  });

  test('apply creates, then replaces; list, get, webhook-secret', { timeout: 120_000 }, async () => {
    const yamlFile = await file('waiter.yaml', waiterYaml('first'));
    const created = await ok(['pipeline', 'apply', '-f', yamlFile, '-n', ns]);
    assert.match(created.stdout, /Created pipeline waiter in team/);
    assert.ok(created.stdout.includes(`Webhook URL:    ${ts.url}/api/v1/namespaces/${ns}/pipelines/waiter/webhook`), created.stdout);
    const secret = /Webhook secret: (whsec_\S+)/.exec(created.stdout)?.[1];
    assert.ok(secret, created.stdout);
    assert.match(created.stdout, /shown only now/);

    await file('waiter.yaml', waiterYaml('second'));
    const replaced = await ok(['pipeline', 'apply', '-f', yamlFile, '-n', ns]);
    assert.match(replaced.stdout, /Updated pipeline waiter in team/);
    assert.doesNotMatch(replaced.stdout, /whsec_/);

    const list = await ok(['pipeline', 'list', '-n', ns]);
    assert.match(list.stdout, /^NAME\s+STAGES\s+LAST RUN/m);
    assert.match(list.stdout, /^waiter\s+1\s+-/m);

    const got = await ok(['pipeline', 'get', 'waiter', '-n', ns]);
    assert.match(got.stdout, /^description: second$/m);
    assert.match(got.stdout, /^# webhook: /m);
    assert.doesNotMatch(got.stdout, /whsec_/);
    // What get prints applies again as it is.
    const roundTrip = await file('roundtrip.yaml', got.stdout);
    assert.match((await ok(['pipeline', 'apply', '-f', roundTrip, '-n', ns])).stdout, /Updated pipeline waiter/);
    const json = JSON.parse((await ok(['pipeline', 'get', 'waiter', '-n', ns, '--json'])).stdout) as { spec: { description: string; stages: unknown[] }; webhook: Record<string, unknown> };
    assert.equal(json.spec.description, 'second');
    assert.equal(json.webhook.secretSet, true);
    assert.equal(json.webhook.secret, undefined);

    const rotated = await ok(['pipeline', 'webhook-secret', 'waiter', '-n', ns]);
    const next = rotated.stdout.trim();
    assert.match(next, /^whsec_\S+$/);
    assert.notEqual(next, secret);
    assert.match(rotated.stderr, /shown only now/);

    // JSON files apply too.
    const jsonFile = await file('json-pipe.json', JSON.stringify({ name: 'json-pipe', stages: [{ name: 'nap', type: 'wait', duration: 'PT1S' }] }));
    assert.match((await ok(['pipeline', 'apply', '-f', jsonFile, '-n', ns])).stdout, /Created pipeline json-pipe/);
    assert.match((await ok(['pipeline', 'rm', 'json-pipe', '-n', ns])).stdout, /Deleted pipeline json-pipe/);
    const gone = await cli(['pipeline', 'get', 'json-pipe', '-n', ns]);
    assert.equal(gone.code, 1, describeResult(gone));
    assert.match(gone.stderr, /slipway: no pipeline "json-pipe" in "team"/);
  });

  test('invalid pipeline files and flags are clear errors', { timeout: 120_000 }, async () => {
    const bad = await file('bad.yaml', 'name: broken\nstages:\n  - name: pause\n    type: wait\n    duration: soon\n');
    const invalid = await cli(['pipeline', 'apply', '-f', bad, '-n', ns]);
    assert.equal(invalid.code, 1, describeResult(invalid));
    assert.match(invalid.stderr, /stages\.0\.duration: a duration like/);
    assert.doesNotMatch(invalid.stderr, /http:\/\//, 'the message is the server\'s, not the request');

    const badType = await file('bad-type.yaml', 'name: broken\nstages:\n  - name: pause\n    type: sleep\n');
    const typeResult = await cli(['pipeline', 'apply', '-f', badType, '-n', ns]);
    assert.equal(typeResult.code, 1, describeResult(typeResult));
    assert.match(typeResult.stderr, /stages\.0/);

    const notYaml = await file('not.yaml', 'name: [broken\n');
    const yamlResult = await cli(['pipeline', 'apply', '-f', notYaml, '-n', ns]);
    assert.equal(yamlResult.code, 2, describeResult(yamlResult));
    assert.match(yamlResult.stderr, /not valid YAML/);

    const missing = await cli(['pipeline', 'apply', '-f', path.join(work.path, 'nope.yaml'), '-n', ns]);
    assert.equal(missing.code, 2, describeResult(missing));
    assert.match(missing.stderr, /cannot read .*nope\.yaml: no such file/);

    const noNamespace = await cli(['pipeline', 'list']);
    assert.equal(noNamespace.code, 2, describeResult(noNamespace));
    assert.match(noNamespace.stderr, /--namespace/);

    const badNumber = await cli(['pipeline', 'show', 'waiter', 'first', '-n', ns]);
    assert.equal(badNumber.code, 2, describeResult(badNumber));
    assert.match(badNumber.stderr, /run numbers are positive whole numbers/);

    const badCommit = await cli(['pipeline', 'run', 'waiter', '--commit', 'HEAD', '-n', ns]);
    assert.equal(badCommit.code, 2, describeResult(badCommit));
    assert.match(badCommit.stderr, /--commit takes a commit SHA/);
  });

  test('run --follow of a wait stage ends with a summary; runs, show, logs', { timeout: 120_000 }, async () => {
    const result = await ok(['pipeline', 'run', 'waiter', '-p', 'greeting=hi', '--follow', '-n', ns], { timeoutMs: 90_000 });
    assert.match(result.stdout, /\[pause\] waiting 1 s/);
    assert.match(result.stdout, /^STAGE\s+TYPE\s+STATUS\s+DURATION/m);
    assert.match(result.stdout, /^pause\s+wait\s+succeeded\s+\d/m);
    assert.match(result.stdout, /^run 1 succeeded in /m);
    assert.match(result.stdout, /^phases: queue /m);

    const runs = await ok(['pipeline', 'runs', 'waiter', '-n', ns]);
    assert.match(runs.stdout, /^1\s+succeeded\s+manual/m);
    const shown = await ok(['pipeline', 'show', 'waiter', '1', '-n', ns]);
    assert.match(shown.stdout, /status:\s+succeeded/);
    assert.match(shown.stdout, /greeting=hi/);
    assert.match(shown.stdout, /pause \(wait, group 0\): succeeded in /);
    const logs = await ok(['pipeline', 'logs', 'waiter', '1', '-n', ns]);
    assert.match(logs.stdout, /run succeeded/);
    // Following a run that has ended prints its log and its summary at once.
    const followed = await ok(['pipeline', 'logs', 'waiter', '1', '--follow', '-n', ns], { timeoutMs: 30_000 });
    assert.match(followed.stdout, /run 1 succeeded/);
    const list = await ok(['pipeline', 'list', '-n', ns]);
    assert.match(list.stdout, /^waiter\s+1\s+#1 succeeded/m);
  });

  test('a run with an unknown parameter is refused with the parameters named', { timeout: 60_000 }, async () => {
    const result = await cli(['pipeline', 'run', 'waiter', '-p', 'colour=red', '-n', ns]);
    assert.equal(result.code, 1, describeResult(result));
    assert.match(result.stderr, /unknown parameter "colour"/);
    assert.match(result.stderr, /parameters of waiter: greeting \(default "hello"\)/);
    const malformed = await cli(['pipeline', 'run', 'waiter', '-p', 'colour', '-n', ns]);
    assert.equal(malformed.code, 2, describeResult(malformed));
    assert.match(malformed.stderr, /NAME=VALUE/);
    const unknownPipeline = await cli(['pipeline', 'run', 'nothing-here', '-n', ns]);
    assert.equal(unknownPipeline.code, 1, describeResult(unknownPipeline));
    assert.match(unknownPipeline.stderr, /no pipeline "nothing-here"/);
  });

  test('approval: run, approve, it succeeds; reject fails the run', { timeout: 120_000 }, async () => {
    await ok(['pipeline', 'apply', '-f', await file('gate.yaml', gateYaml), '-n', ns]);
    const started = await ok(['pipeline', 'run', 'gate', '-n', ns]);
    assert.match(started.stdout, /Run 1 of gate/);
    await waitForStatus('gate', 1, 'waiting');
    const waiting = await ok(['pipeline', 'show', 'gate', '1', '-n', ns]);
    assert.match(waiting.stdout, /sign-off \(approval, group 0\): waiting/);

    const wrongStage = await cli(['pipeline', 'approve', 'gate', '1', 'settle', '-n', ns]);
    assert.equal(wrongStage.code, 1, describeResult(wrongStage));
    assert.match(wrongStage.stderr, /not an approval/);

    const approved = await ok(['pipeline', 'approve', 'gate', '1', 'sign-off', '-m', 'looks good', '-n', ns]);
    assert.match(approved.stdout, /Approved stage "sign-off" of run 1 of gate/);
    const followed = await ok(['pipeline', 'logs', 'gate', '1', '--follow', '-n', ns], { timeoutMs: 60_000 });
    assert.match(followed.stdout, /approved by .*looks good/);
    assert.match(followed.stdout, /^run 1 succeeded/m);
    const shown = await ok(['pipeline', 'show', 'gate', '1', '-n', ns]);
    assert.match(shown.stdout, /approved by .*: looks good/);

    const again = await cli(['pipeline', 'approve', 'gate', '1', 'sign-off', '-n', ns]);
    assert.equal(again.code, 1, describeResult(again));
    assert.match(again.stderr, /not waiting for a decision/);

    // Reject: the run fails, and following it exits 1.
    await ok(['pipeline', 'run', 'gate', '-n', ns]);
    await waitForStatus('gate', 2, 'waiting');
    await ok(['pipeline', 'reject', 'gate', '2', 'sign-off', '-m', 'not today', '-n', ns]);
    const rejected = await cli(['pipeline', 'logs', 'gate', '2', '--follow', '-n', ns], { timeoutMs: 60_000 });
    assert.equal(rejected.code, 1, describeResult(rejected));
    assert.match(rejected.stderr, /run 2 of gate failed: .*rejected/);
    assert.match(rejected.stdout, /sign-off\s+approval\s+failed/);
  });

  test('run --follow waits through an approval and tells how to approve', { timeout: 120_000 }, async () => {
    const following = cli(['pipeline', 'run', 'gate', '--follow', '-n', ns], { timeoutMs: 90_000 });
    const runs = async () => ((await (await fetch(`${ts.url}/api/v1/namespaces/${ns}/pipelines/gate/runs`)).json()) as { runs: RunView[] }).runs;
    let number = 0;
    for (let i = 0; i < 200 && !number; i++) {
      const waiting = (await runs()).find((r) => r.status === 'waiting');
      if (waiting) number = waiting.number;
      else await sleep(150);
    }
    assert.ok(number > 0, 'a run waits');
    await sleep(1500);
    await ok(['pipeline', 'approve', 'gate', String(number), 'sign-off', '-n', ns]);
    const result = await following;
    assert.equal(result.code, 0, describeResult(result));
    assert.match(result.stderr, new RegExp(`waits for an approval of stage "sign-off": slipway pipeline approve gate ${number} sign-off`));
    assert.match(result.stdout, new RegExp(`^run ${number} succeeded`, 'm'));
  });

  test('cancel of a waiting run; rerun', { timeout: 120_000 }, async () => {
    const started = await ok(['pipeline', 'run', 'gate', '--json', '-n', ns]);
    const number = (JSON.parse(started.stdout) as RunView).number;
    await waitForStatus('gate', number, 'waiting');
    const cancelled = await ok(['pipeline', 'cancel', 'gate', String(number), '-n', ns]);
    assert.match(cancelled.stdout, new RegExp(`Cancelled run ${number} of gate`));
    assert.equal((await getRun('gate', number)).status, 'cancelled');
    const again = await ok(['pipeline', 'cancel', 'gate', String(number), '-n', ns]);
    assert.match(again.stdout, /had already cancelled/);
    // Following a cancelled run ends (exit 1) rather than waiting for ever.
    const followed = await cli(['pipeline', 'logs', 'gate', String(number), '--follow', '-n', ns], { timeoutMs: 30_000 });
    assert.equal(followed.code, 1, describeResult(followed));
    assert.match(followed.stderr, new RegExp(`run ${number} of gate cancelled`));

    // Re-run the finished first run of waiter, with --follow.
    const rerun = await ok(['pipeline', 'rerun', 'waiter', '1', '--from-stage', 'pause', '--follow', '-n', ns], { timeoutMs: 60_000 });
    assert.match(rerun.stderr, /re-runs run 1/);
    assert.match(rerun.stdout, /succeeded/);
    const badStage = await cli(['pipeline', 'rerun', 'waiter', '1', '--from-stage', 'nope', '-n', ns]);
    assert.equal(badStage.code, 1, describeResult(badStage));
    assert.match(badStage.stderr, /has no stage "nope"/);
  });

  test('artefact create and list', { timeout: 120_000 }, async () => {
    const digest = `sha256:${'b'.repeat(64)}`;
    const created = await ok(['artefact', 'create', '--type', 'container', '--name', 'registry.example.com/team/api', '--version', '1.2.3',
      '--ref', 'refs/heads/main', '--commit', 'abcdef1234', '--digest', digest, '-n', ns]);
    assert.match(created.stdout, /Recorded container registry\.example\.com\/team\/api:1\.2\.3 as \S+/);

    const score = await file('score.yaml', `apiVersion: score.dev/v1b1
metadata:
  name: hello-workload
containers:
  main:
    image: .
`);
    const workload = await ok(['artefact', 'create', '--type', 'workload', '--name', 'hello-workload', '--version', 'v7', '--spec', score, '--image', 'registry.example.com/team/api:1.2.3', '--json', '-n', ns]);
    const view = JSON.parse(workload.stdout) as { type: string; name: string; image: string };
    assert.equal(view.type, 'workload');
    assert.equal(view.image, 'registry.example.com/team/api:1.2.3');

    const list = await ok(['artefact', 'list', '--name', 'registry.example.com/team/api', '-n', ns]);
    assert.match(list.stdout, /^ID\s+TYPE\s+NAME\s+VERSION\s+DIGEST/m);
    assert.match(list.stdout, /container\s+registry\.example\.com\/team\/api\s+1\.2\.3\s+sha256:bbbbbbbbbbbb…\s+abcdef1234\s+api/);
    assert.doesNotMatch(list.stdout, /hello-workload/);
    const all = JSON.parse((await ok(['artefact', 'list', '--json', '-n', ns])).stdout) as Array<{ name: string }>;
    assert.deepEqual(all.map((v) => v.name), ['hello-workload', 'registry.example.com/team/api']);

    const tagged = await cli(['artefact', 'create', '--type', 'container', '--name', 'registry.example.com/team/api:1.2.3', '-n', ns]);
    assert.equal(tagged.code, 1, describeResult(tagged));
    assert.match(tagged.stderr, /name: a container name has no tag/);
    const noSpec = await cli(['artefact', 'create', '--type', 'workload', '--name', 'w', '-n', ns]);
    assert.equal(noSpec.code, 2, describeResult(noSpec));
    assert.match(noSpec.stderr, /needs --spec/);
    const badType = await cli(['artefact', 'create', '--type', 'zip', '--name', 'w', '-n', ns]);
    assert.equal(badType.code, 2, describeResult(badType));
    const shortRef = await cli(['artefact', 'create', '--type', 'container', '--name', 'team/api', '--ref', 'main', '-n', ns]);
    assert.equal(shortRef.code, 2, describeResult(shortRef));
    assert.match(shortRef.stderr, /refs\/heads\/main/);
  });
});
