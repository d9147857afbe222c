/**
 * Artefact versions, automation rules and Score workloads: strict Score validation with
 * path-qualified errors, the Score → function mapping, recording versions (Humanitec's
 * validation rules) on both dialects, rules that deploy pinned images, run pipelines with
 * placeholders or deploy workloads, failures recorded without failing the record, and the HTTP
 * routes on a Fastify app of their own (no access control). Actions are recording fakes of
 * Slipway's own ArtefactActions interface; real deploys are covered by the lead's e2e test.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { parse as parseYaml } from 'yaml';
import type { Principal } from '../src/auth/access.js';
import type { ApiGuard } from '../src/auth/api-guard.js';
import { ApiError } from '../src/http/errors.js';
import { openDatabase, type Database } from '../src/db/db.js';
import { artifactRoutes } from '../src/artifacts/routes.js';
import { memoryToMiB, parseScore, scoreToFunction, type ScoreWorkload } from '../src/artifacts/score.js';
import {
  ArtefactConflictError, ArtefactInputError, ArtefactNotFoundError, ArtifactService, type ArtefactActions,
} from '../src/artifacts/service.js';
import { dialects, tempDir } from './helpers/harness.js';

const digest = `sha256:${'ab'.repeat(32)}`;
const digest2 = `sha256:${'cd'.repeat(32)}`;

const fullScore = `
apiVersion: score.dev/v1b1
metadata:
  name: example-workload-name123
  extra-key: extra-value
  annotations:
    prefix.com/Another-Key_Annotation.2: something else
service:
  ports:
    port-one:
      port: 1000
      protocol: TCP
      targetPort: 10000
containers:
  container-one1:
    image: localhost:4000/repo/my-image:tag
    command: ["/bin/sh", "-c"]
    args: ["hello", "world"]
    resources:
      requests: { cpu: 1000m, memory: 10Gi }
      limits: { cpu: "0.24", memory: 128M }
    variables:
      SOME_VAR: some content here
    files:
      /my/file: { mode: "0600", source: file.txt }
      /my/other/file: { content: "some content" }
    volumes:
      /mnt/something: { source: volume-name, path: /sub/path, readOnly: false }
    livenessProbe:
      httpGet: { port: 8080, path: /livez }
    readinessProbe:
      exec: { command: ["/bin/true"] }
  container-two2:
    image: .
resources:
  resource-one1:
    type: Resource-One
    class: default
    metadata: { annotations: { Default-Annotation: x }, extra-key: extra-value }
    params: { extra: { data: here } }
  resource-three:
    type: Type-Three
    id: shared-type-three
`;

function simpleScore(overrides: Record<string, unknown> = {}, container: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    apiVersion: 'score.dev/v1b1',
    metadata: { name: 'hello-fn', team: 'blue', nested: { key: 'deep' }, 'a.b': 'dot' },
    containers: { main: { image: '127.0.0.1:5000/team/hello:v1', ...container } },
    ...overrides,
  };
}

function throwsInput(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ArtefactInputError, `expected ArtefactInputError, got ${String(error)}`);
    for (const pattern of patterns) assert.match(error.message, pattern);
    return true;
  });
}

async function rejectsInput(promise: Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ArtefactInputError, `expected ArtefactInputError, got ${String(error)}`);
    for (const pattern of patterns) assert.match(error.message, pattern);
    return true;
  });
}

describe('Score workloads', () => {
  test('parses YAML, JSON text and objects; the full sample is valid', () => {
    const w = parseScore(fullScore);
    assert.equal(w.metadata.name, 'example-workload-name123');
    assert.equal(w.metadata['extra-key'], 'extra-value');
    assert.equal(Object.keys(w.containers).length, 2);
    assert.deepEqual(parseScore(JSON.stringify(simpleScore())), parseScore(simpleScore()));
    // The deprecated array forms of files and volumes are still valid Score.
    parseScore(simpleScore({}, { files: [{ target: '/a', content: 'x' }], volumes: [{ source: 'v', target: '/m' }] }));
  });

  test('errors name the path', () => {
    throwsInput(() => parseScore({ ...simpleScore(), extra: 1 }), /Unrecognized key.*extra|extra/);
    throwsInput(() => parseScore(simpleScore({ apiVersion: 'score.dev/v1b2' })), /apiVersion: apiVersion must be score.dev\/v1b1/);
    throwsInput(() => parseScore(simpleScore({ metadata: { name: 'Hello' } })), /metadata\.name: .*RFC1123/);
    throwsInput(() => parseScore(simpleScore({ metadata: { name: 'a' } })), /metadata\.name/);
    throwsInput(() => parseScore(simpleScore({ metadata: {} })), /metadata\.name/);
    throwsInput(() => parseScore(simpleScore({ containers: {} })), /containers: at least one container/);
    throwsInput(() => parseScore(simpleScore({}, { image: undefined })), /containers\.main\.image/);
    throwsInput(() => parseScore(simpleScore({}, { tty: true })), /containers\.main/);
    throwsInput(() => parseScore(simpleScore({}, { resources: { limits: { memory: '12X' } } })), /containers\.main\.resources\.limits\.memory: memory is a number of bytes/);
    throwsInput(() => parseScore(simpleScore({}, { resources: { limits: { cpu: 'lots' } } })), /containers\.main\.resources\.limits\.cpu/);
    throwsInput(() => parseScore(simpleScore({}, { livenessProbe: {} })), /containers\.main\.livenessProbe: a probe needs httpGet or exec/);
    throwsInput(() => parseScore(simpleScore({}, { livenessProbe: { httpGet: { path: '/' } } })), /containers\.main\.livenessProbe\.httpGet\.port/);
    throwsInput(() => parseScore(simpleScore({}, { files: { '/a': { content: 'x', source: 'y' } } })), /containers\.main\.files\.\/a: a file takes exactly one/);
    throwsInput(() => parseScore(simpleScore({}, { variables: { A: 1 } })), /containers\.main\.variables\.A/);
    throwsInput(() => parseScore(simpleScore({ service: { ports: { web: { port: 70000 } } } })), /service\.ports\.web\.port/);
    throwsInput(() => parseScore(simpleScore({ resources: { db: { class: 'x1' } } })), /resources\.db\.type/);
    throwsInput(() => parseScore(simpleScore({ containers: { Main_1: { image: 'x' } } })), /containers\.Main_1: invalid name: a container name must be an RFC1123 label/);
    throwsInput(() => parseScore(simpleScore({}, { variables: { 'A=B': 'x' } })), /containers\.main\.variables\.A=B: invalid name: variable names must not contain =/);
  });

  test('invalid YAML and non-objects are refused', () => {
    throwsInput(() => parseScore('apiVersion: [unclosed'), /workload: not valid YAML/);
    throwsInput(() => parseScore('- a\n- b'), /a Score workload is an object/);
    throwsInput(() => parseScore(null, 'spec'), /^spec: /);
  });

  test('memory quantities in MiB, rounded up', () => {
    assert.equal(memoryToMiB('128Mi'), 128);
    assert.equal(memoryToMiB('1Gi'), 1024);
    assert.equal(memoryToMiB('128M'), 123);
    assert.equal(memoryToMiB('1G'), 954);
    assert.equal(memoryToMiB('262144Ki'), 256);
    assert.equal(memoryToMiB('500K'), 1);
    assert.equal(memoryToMiB('134217728'), 128);
    assert.equal(memoryToMiB('0.5Gi'), 512);
  });

  test('maps one container onto a function config', () => {
    const w = parseScore(simpleScore({ service: { ports: { web: { port: 80, targetPort: 8000 } } } }, {
      command: ['/app/server'],
      args: ['--verbose'],
      variables: { DOTTED: '${metadata.a\\.b}', NAME: '${metadata.name}', TEAM: 'team-${metadata.team}', DEEP: '${metadata.nested.key}', LITERAL: '$${metadata.name} costs $$5 or $7', NESTED: '${metadata.nested}' },
      resources: { limits: { memory: '200M', cpu: '250m' } },
      readinessProbe: { httpGet: { path: '/ready', port: 8000 } },
    }));
    const { name, config, warnings } = scoreToFunction(w, {});
    assert.equal(name, 'hello-fn');
    assert.deepEqual(config, {
      image: '127.0.0.1:5000/team/hello:v1',
      command: ['/app/server'],
      args: ['--verbose'],
      env: { DOTTED: 'dot', NAME: 'hello-fn', TEAM: 'team-blue', DEEP: 'deep', LITERAL: '${metadata.name} costs $5 or $7', NESTED: '{"key":"deep"}' },
      memoryMB: 191,
    });
    assert.equal(warnings.length, 2);
    assert.match(warnings.join('\n'), /cpu is ignored/);
    assert.match(warnings.join('\n'), /readinessProbe: ignored/);
    assert.equal(scoreToFunction(w, { name: 'other' }).name, 'other');
    // Small memory is raised to the function minimum; requests are used without limits.
    assert.equal(scoreToFunction(parseScore(simpleScore({}, { resources: { requests: { memory: '10Mi' } } })), {}).config.memoryMB, 64);
    assert.equal(scoreToFunction(parseScore(simpleScore()), {}).config.memoryMB, undefined);
    // A port whose target defaults to `port`.
    scoreToFunction(parseScore(simpleScore({ service: { ports: { web: { port: 8000 } } } })), {});
  });

  test('"." takes the default image, which is then required', () => {
    const w = parseScore(simpleScore({}, { image: '.' }));
    assert.equal(scoreToFunction(w, { image: 'reg/app@' + digest }).config.image, 'reg/app@' + digest);
    throwsInput(() => scoreToFunction(w, {}), /containers\.main\.image: "\." means the image is supplied at deploy time/);
  });

  test('what a function cannot do is refused with the reason and path', () => {
    throwsInput(() => scoreToFunction(parseScore(fullScore), {}),
      /containers: a function runs exactly one container, the workload has 2/,
      /containers\.container-one1\.files: not supported/,
      /containers\.container-one1\.volumes: not supported/,
      /service\.ports\.port-one: the container must listen on port 8000 .*targetPort is 10000/,
      /resources: not supported; Slipway provisions no Score resources \(resource-one1, resource-three\)/);
    throwsInput(() => scoreToFunction(parseScore(simpleScore({}, { variables: { DB: 'postgres://${resources.db.host}:5432' } })), {}),
      /containers\.main\.variables\.DB: \$\{resources\.db\.host\} refers to a resource, and Slipway provisions no Score resources/);
    throwsInput(() => scoreToFunction(parseScore(simpleScore({}, { variables: { X: '${env.HOME}' } })), {}), /unknown reference root "env"/);
    throwsInput(() => scoreToFunction(parseScore(simpleScore({}, { variables: { X: '${metadata.missing}' } })), {}), /metadata has no key "missing"/);
    throwsInput(() => scoreToFunction(parseScore(simpleScore({}, { variables: { 'my-var': 'x' } })), {}), /containers\.main\.variables\.my-var: environment variable names/);
    throwsInput(() => scoreToFunction(parseScore(simpleScore({ service: { ports: { aa: { port: 8000 }, bb: { port: 9000 } } } })), {}), /service\.ports: a function serves one HTTP port \(8000\)/);
    throwsInput(() => scoreToFunction(parseScore(simpleScore({ service: { ports: { dns: { port: 8000, protocol: 'UDP' } } } })), {}), /service\.ports\.dns\.protocol: functions serve HTTP over TCP/);
    throwsInput(() => scoreToFunction(parseScore(simpleScore({}, { resources: { limits: { memory: '20Gi' } } })), {}), /resources\.limits\.memory: 20Gi is over the function maximum/);
    throwsInput(() => scoreToFunction(parseScore(simpleScore({ metadata: { name: '9lives' } })), {}), /metadata\.name: "9lives" is not a function name/);
  });
});

class FakeActions implements ArtefactActions {
  calls: Array<{ kind: string; namespace: string; target: string; payload: unknown; extra: unknown }> = [];
  failing = new Set<string>();

  private check(target: string): void {
    if (this.failing.has(target)) throw new Error(`${target} is broken`);
  }

  async deployFunction(namespace: string, functionName: string, image: string, cause: string): Promise<void> {
    this.check(functionName);
    this.calls.push({ kind: 'deployFunction', namespace, target: functionName, payload: image, extra: cause });
  }

  async deployWorkload(namespace: string, functionName: string, config: Record<string, unknown>, cause: string): Promise<void> {
    this.check(functionName);
    this.calls.push({ kind: 'deployWorkload', namespace, target: functionName, payload: config, extra: cause });
  }

  async runPipeline(namespace: string, pipeline: string, parameters: Record<string, string>, trigger: Record<string, unknown>): Promise<void> {
    this.check(pipeline);
    this.calls.push({ kind: 'runPipeline', namespace, target: pipeline, payload: parameters, extra: trigger });
  }
}

for (const dialect of dialects) {
  describe(`artefact service (${dialect.name})`, { timeout: 120_000 }, () => {
    let db: Database;
    let dir: { path: string; remove(): Promise<void> };
    let database: { url: string; drop(): Promise<void> };
    let actions: FakeActions;
    let published: Array<{ ns: string; type: string; data: Record<string, unknown>; subject?: string }>;
    let service: ArtifactService;
    let nsCounter = 0;
    /** Each test works in a namespace of its own. */
    const ns = () => `team${++nsCounter}`;

    before(async () => {
      dir = await tempDir();
      database = await dialect.create();
      db = await openDatabase({ url: database.url, dataDir: dir.path });
      published = [];
      actions = new FakeActions();
      service = new ArtifactService({ db, actions, publish: async (n, type, data, subject) => { published.push({ ns: n, type, data, subject }); } });
    });

    after(async () => {
      await db?.close();
      await database?.drop();
      await dir?.remove();
    });

    test('validation names the field', { timeout: 10_000 }, async () => {
      const n = ns();
      const base = { type: 'container', name: '127.0.0.1:5000/team/app' };
      await rejectsInput(service.record(n, { ...base, ref: 'main' }, { source: 'api', actor: null }), /^ref: a git ref starts with refs\//);
      await rejectsInput(service.record(n, { ...base, commit: 'XYZ' }, { source: 'api', actor: null }), /^commit: commit is 5–40 lowercase hex/);
      await rejectsInput(service.record(n, { ...base, commit: 'abc1' }, { source: 'api', actor: null }), /^commit/);
      await rejectsInput(service.record(n, { ...base, digest: 'sha256:abc' }, { source: 'api', actor: null }), /^digest: digest is sha256:/);
      await rejectsInput(service.record(n, { ...base, name: '' }, { source: 'api', actor: null }), /^name: name is required/);
      await rejectsInput(service.record(n, { type: 'container' }, { source: 'api', actor: null }), /^name: /);
      await rejectsInput(service.record(n, { ...base, type: 'image' }, { source: 'api', actor: null }), /^type: /);
      await rejectsInput(service.record(n, { ...base, name: 'team/app:v1' }, { source: 'api', actor: null }), /^name: a container name has no tag/);
      await rejectsInput(service.record(n, { ...base, name: `team/app@${digest}` }, { source: 'api', actor: null }), /^name: a container name has no digest/);
      await rejectsInput(service.record(n, { ...base, name: 'Team/App' }, { source: 'api', actor: null }), /^name: not an image name/);
      await rejectsInput(service.record(n, { ...base, version: '-bad' }, { source: 'api', actor: null }), /^version: /);
      await rejectsInput(service.record(n, { ...base, overrides: {} }, { source: 'api', actor: null }), /overrides/);
      await rejectsInput(service.record(n, { type: 'workload', name: 'w' }, { source: 'api', actor: null }), /^spec: a workload artefact needs its Score workload/);
      await rejectsInput(service.record(n, { type: 'workload', name: 'w', spec: simpleScore({ metadata: { name: 'X' } }) }, { source: 'api', actor: null }), /^spec\.metadata\.name: /);
      await rejectsInput(service.record(n, { type: 'workload', name: 'w', spec: simpleScore({}, { resources: { limits: { memory: 'lots' } } }) }, { source: 'api', actor: null }),
        /^spec\.containers\.main\.resources\.limits\.memory: /);
      await rejectsInput(service.record(n, { type: 'workload', name: 'w', digest, spec: simpleScore() }, { source: 'api', actor: null }), /^digest: only container artefacts/);
      assert.deepEqual(await service.list(n), []);
      // Names as registries write them are fine; an empty ref means none.
      for (const name of ['registry.humanitec.io/org/svc', 'localhost/app', 'app', 'docker.io/library/nginx', 'localhost:5000/a/b-c/d_e']) {
        service.validate({ type: 'container', name, ref: '' });
      }
    });

    test('record stores, publishes artefact.created and lists with filters', { timeout: 10_000 }, async () => {
      const n = ns();
      published.length = 0;
      const a = await service.record(n, { type: 'container', name: '127.0.0.1:5000/team/app', version: 'v1', ref: 'refs/heads/main', commit: 'abc12', digest }, { source: 'registry', actor: 'alice' });
      assert.match(a.id, /^av_/);
      assert.deepEqual({ ...a, id: undefined, createdAt: undefined }, {
        id: undefined, createdAt: undefined, namespace: n, type: 'container', name: '127.0.0.1:5000/team/app', version: 'v1', ref: 'refs/heads/main', commit: 'abc12',
        digest, image: null, source: 'registry', archived: false, createdBy: 'alice', automations: [],
      });
      assert.equal(published.length, 1);
      assert.equal(published[0]!.type, 'artefact.created');
      assert.equal(published[0]!.ns, n);
      assert.equal(published[0]!.data.id, a.id);
      assert.equal(published[0]!.subject, '127.0.0.1:5000/team/app');

      const b = await service.record(n, { type: 'container', name: '127.0.0.1:5000/team/app', version: 'v2', ref: 'refs/tags/v2' }, { source: 'pipeline', actor: null });
      const w = await service.record(n, { type: 'workload', name: 'hello', spec: simpleScore() }, { source: 'api', actor: 'bob' });
      assert.deepEqual((await service.list(n)).map((v) => v.id), [w.id, b.id, a.id]);
      assert.deepEqual((await service.list(n, { name: '127.0.0.1:5000/team/app' })).map((v) => v.id), [b.id, a.id]);
      assert.deepEqual((await service.list(n, { ref: 'refs/tags/v2' })).map((v) => v.id), [b.id]);
      assert.deepEqual((await service.list(n, { type: 'workload' })).map((v) => v.id), [w.id]);
      assert.deepEqual((await service.list(n, { limit: 1 })).map((v) => v.id), [w.id]);
      assert.deepEqual(await service.list(`${n}-other`), []);

      assert.deepEqual(await service.get(n, a.id), a);
      await assert.rejects(service.get(`${n}-other`, a.id), ArtefactNotFoundError);
      assert.deepEqual(await service.workloadSpec(n, w.id), parseScore(simpleScore()));
      await rejectsInput(service.workloadSpec(n, a.id), /not a workload/);

      const archived = await service.archive(n, a.id, true);
      assert.equal(archived.archived, true);
      assert.deepEqual((await service.list(n, { archived: true })).map((v) => v.id), [a.id]);
      assert.deepEqual((await service.list(n, { archived: false })).map((v) => v.id), [w.id, b.id]);
      assert.equal((await service.archive(n, a.id, false)).archived, false);
      await assert.rejects(service.archive(n, 'av_missing', true), ArtefactNotFoundError);
    });

    test('a matching rule deploys the pinned image; non-matching refs and names do nothing', { timeout: 10_000 }, async () => {
      const n = ns();
      actions.calls.length = 0;
      await service.createRule(n, { name: 'main-to-prod', match: { type: 'container', name: '127.0.0.1:*/team/app-*', ref: 'refs/heads/main', excludeName: '**/app-legacy' }, action: { deploy: { functions: ['prod', 'canary'] } } }, 'alice');
      await service.createRule(n, { name: 'any-main-image', match: { name: '**/app-main-image' }, action: { deploy: { functions: ['mainfn'] } } }, 'alice');

      const hit = await service.record(n, { type: 'container', name: '127.0.0.1:5000/team/app-api', version: 'v7', ref: 'refs/heads/main', digest }, { source: 'registry', actor: null });
      assert.deepEqual(actions.calls.map((c) => [c.kind, c.namespace, c.target, c.payload]), [
        ['deployFunction', n, 'prod', `127.0.0.1:5000/team/app-api@${digest}`],
        ['deployFunction', n, 'canary', `127.0.0.1:5000/team/app-api@${digest}`],
      ]);
      assert.match(String(actions.calls[0]!.extra), /main-to-prod/);
      assert.deepEqual(hit.automations, [
        { rule: 'main-to-prod', action: 'deploy prod', outcome: 'started' },
        { rule: 'main-to-prod', action: 'deploy canary', outcome: 'started' },
      ]);
      assert.deepEqual((await service.get(n, hit.id)).automations, hit.automations);

      actions.calls.length = 0;
      await service.record(n, { type: 'container', name: '127.0.0.1:5000/team/app-api', version: 'v8', ref: 'refs/heads/dev', digest: digest2 }, { source: 'registry', actor: null });
      await service.record(n, { type: 'container', name: '127.0.0.1:5000/team/app-api', version: 'v9' }, { source: 'registry', actor: null });
      await service.record(n, { type: 'container', name: '127.0.0.1:5000/other/app-api', ref: 'refs/heads/main' }, { source: 'registry', actor: null });
      await service.record(n, { type: 'container', name: '127.0.0.1:5000/team/app-legacy', ref: 'refs/heads/main' }, { source: 'registry', actor: null });
      await service.record(`${n}-other`, { type: 'container', name: '127.0.0.1:5000/team/app-api', ref: 'refs/heads/main' }, { source: 'registry', actor: null });
      assert.equal(actions.calls.length, 0);

      // `**` crosses slashes; without a digest the tag is deployed.
      await service.record(n, { type: 'container', name: 'reg.example.com:443/deep/path/app-main-image', version: '1.2.3' }, { source: 'registry', actor: null });
      await service.record(n, { type: 'container', name: 'app-main-image' }, { source: 'registry', actor: null });
      assert.deepEqual(actions.calls.map((c) => [c.target, c.payload]), [
        ['mainfn', 'reg.example.com:443/deep/path/app-main-image:1.2.3'],
        ['mainfn', 'app-main-image:latest'],
      ]);

      // An inactive rule does nothing.
      actions.calls.length = 0;
      await service.updateRule(n, 'any-main-image', { active: false });
      await service.record(n, { type: 'container', name: 'app-main-image', version: 'x' }, { source: 'registry', actor: null });
      assert.equal(actions.calls.length, 0);
    });

    test('tag globs and pipeline actions with placeholders', { timeout: 10_000 }, async () => {
      const n = ns();
      actions.calls.length = 0;
      await service.createRule(n, {
        name: 'release',
        match: { name: '**', ref: 'refs/tags/v*' },
        action: { pipeline: { name: 'promote', parameters: { IMAGE: '${artefact.name}@${artefact.digest}', TAG: '${artefact.version}', REF: '${artefact.ref}', SHA: '${artefact.commit}', KEEP: '${other}' } } },
      }, null);
      const v = await service.record(n, { type: 'container', name: 'reg.example.com/team/app', version: 'v1.0.0', ref: 'refs/tags/v1.0.0', commit: 'deadbeef', digest }, { source: 'pipeline', actor: null });
      await service.record(n, { type: 'container', name: 'reg.example.com/team/app', ref: 'refs/heads/v1' }, { source: 'pipeline', actor: null });
      assert.equal(actions.calls.length, 1);
      const call = actions.calls[0]!;
      assert.equal(call.kind, 'runPipeline');
      assert.equal(call.target, 'promote');
      assert.deepEqual(call.payload, { IMAGE: `reg.example.com/team/app@${digest}`, TAG: 'v1.0.0', REF: 'refs/tags/v1.0.0', SHA: 'deadbeef', KEEP: '${other}' });
      assert.equal((call.extra as Record<string, unknown>).type, 'artefact');
      assert.equal((call.extra as Record<string, unknown>).artefactId, v.id);
      assert.deepEqual(v.automations, [{ rule: 'release', action: 'pipeline promote', outcome: 'started' }]);
      // Unknown artefact fields are refused when the rule is made.
      await rejectsInput(service.createRule(n, { name: 'bad', match: { name: '*' }, action: { pipeline: { name: 'p', parameters: { A: '${artefact.tag}' } } } }, null),
        /action\.pipeline\.parameters\.A: placeholders are/);
    });

    test('a workload rule maps Score onto the function config', { timeout: 10_000 }, async () => {
      const n = ns();
      actions.calls.length = 0;
      await service.createRule(n, { name: 'workloads', match: { type: 'workload', name: 'svc-*' }, action: { deploy: { functions: [] } } }, null);
      await service.createRule(n, { name: 'copy', match: { type: 'workload', name: 'svc-a' }, action: { deploy: { functions: ['svc-copy'] } } }, null);
      const spec = simpleScore({ service: { ports: { web: { port: 80, targetPort: 8000 } } } }, {
        image: '.', variables: { WHO: '${metadata.name}' }, resources: { limits: { memory: '512Mi' } },
      });
      const v = await service.record(n, { type: 'workload', name: 'svc-a', image: `reg.example.com/team/hello@${digest}`, spec }, { source: 'api', actor: null });
      const config = { image: `reg.example.com/team/hello@${digest}`, env: { WHO: 'hello-fn' }, memoryMB: 512 };
      assert.deepEqual(actions.calls.map((c) => [c.kind, c.target, c.payload]), [
        ['deployWorkload', 'svc-copy', config], // rules run in name order: copy, workloads
        ['deployWorkload', 'hello-fn', config],
      ]);
      assert.deepEqual(v.automations?.map((a) => a.outcome), ['started', 'started']);
      // A workload that cannot be a function is recorded, with the failure.
      actions.calls.length = 0;
      const bad = await service.record(n, { type: 'workload', name: 'svc-b', spec: simpleScore({}, { image: '.' }) }, { source: 'api', actor: null });
      assert.equal(actions.calls.length, 0);
      assert.equal(bad.automations?.[0]?.outcome, 'failed');
      assert.match(bad.automations?.[0]?.error ?? '', /containers\.main\.image: "\." means the image is supplied at deploy time/);
      // A container never matches a workload rule.
      await service.record(n, { type: 'container', name: 'svc-a' }, { source: 'api', actor: null });
      assert.equal(actions.calls.length, 0);
    });

    test('an action that throws is recorded and the record still succeeds', { timeout: 10_000 }, async () => {
      const n = ns();
      actions.calls.length = 0;
      actions.failing.add('broken');
      try {
        await service.createRule(n, { name: 'both', match: { name: 'team/app' }, action: { deploy: { functions: ['broken', 'fine'] } } }, null);
        await service.createRule(n, { name: 'pipe', match: { name: 'team/app' }, action: { pipeline: { name: 'broken' } } }, null);
        const v = await service.record(n, { type: 'container', name: 'team/app', version: 'v1' }, { source: 'registry', actor: null });
        assert.deepEqual(v.automations, [
          { rule: 'both', action: 'deploy broken', outcome: 'failed', error: 'broken is broken' },
          { rule: 'both', action: 'deploy fine', outcome: 'started' },
          { rule: 'pipe', action: 'pipeline broken', outcome: 'failed', error: 'broken is broken' },
        ]);
        assert.deepEqual((await service.get(n, v.id)).automations, v.automations);
        assert.deepEqual(actions.calls.map((c) => c.target), ['fine']);
      } finally {
        actions.failing.clear();
      }
      // Without actions wired, matching rules fail (recorded) and publishing failures are logged only.
      const bare = new ArtifactService({ db, publish: async () => { throw new Error('bus down'); } });
      const v = await bare.record(n, { type: 'container', name: 'team/app', version: 'v2' }, { source: 'registry', actor: null });
      assert.deepEqual(v.automations?.map((a) => a.outcome), ['failed', 'failed', 'failed']);
      assert.match(v.automations?.[0]?.error ?? '', /not available/);
    });

    test('rules CRUD', { timeout: 10_000 }, async () => {
      const n = ns();
      const created = await service.createRule(n, { name: 'r1', match: { name: 'team/*' }, action: { deploy: { functions: ['f'] } } }, 'alice');
      assert.deepEqual({ ...created, id: undefined, createdAt: undefined, updatedAt: undefined }, {
        id: undefined, createdAt: undefined, updatedAt: undefined,
        namespace: n, name: 'r1', active: true, match: { name: 'team/*' }, action: { deploy: { functions: ['f'] } }, createdBy: 'alice',
      });
      await assert.rejects(service.createRule(n, { name: 'r1', match: { name: 'x' }, action: { deploy: { functions: ['f'] } } }, null), ArtefactConflictError);
      await rejectsInput(service.createRule(n, { name: 'r2', match: { name: 'x' }, action: { deploy: { functions: [] } } }, null), /action\.deploy\.functions: list at least one function/);
      await rejectsInput(service.createRule(n, { name: 'r2', match: { name: 'x' }, action: { deploy: { functions: ['9x'] } } }, null), /action\.deploy\.functions\.0/);
      await rejectsInput(service.createRule(n, { name: 'r2', match: { name: 'x' }, action: { restart: {} } }, null), /action/);
      await rejectsInput(service.createRule(n, { name: 'r2', match: { name: 'x', branch: 'main' }, action: { deploy: { functions: ['f'] } } }, null), /match/);
      await rejectsInput(service.createRule(n, { name: '-r', match: { name: 'x' }, action: { deploy: { functions: ['f'] } } }, null), /^name: /);
      await rejectsInput(service.createRule(n, { name: 'r2', match: {}, action: { deploy: { functions: ['f'] } } }, null), /match\.name/);
      await service.createRule(n, { name: 'r0', active: false, match: { name: '*' }, action: { pipeline: { name: 'p' } } }, null);
      assert.deepEqual((await service.listRules(n)).map((r) => [r.name, r.active]), [['r0', false], ['r1', true]]);
      const updated = await service.updateRule(n, 'r1', { match: { name: 'team/**', ref: 'refs/heads/*' } });
      assert.deepEqual(updated.match, { name: 'team/**', ref: 'refs/heads/*' });
      assert.deepEqual(updated.action, { deploy: { functions: ['f'] } });
      await rejectsInput(service.updateRule(n, 'r1', { action: { deploy: { functions: [] } } }), /action\.deploy\.functions/);
      await rejectsInput(service.updateRule(n, 'r1', { name: 'renamed' }), /name/);
      await assert.rejects(service.updateRule(n, 'nope', { active: false }), ArtefactNotFoundError);
      assert.equal((await service.getRule(n, 'r1')).match.ref, 'refs/heads/*');
      await service.deleteRule(n, 'r1');
      await assert.rejects(service.getRule(n, 'r1'), ArtefactNotFoundError);
      await assert.rejects(service.deleteRule(n, 'r1'), ArtefactNotFoundError);
    });
  });
}

describe('artefact routes', { timeout: 60_000 }, () => {
  let app: FastifyInstance;
  let db: Database;
  let dir: { path: string; remove(): Promise<void> };
  const actions = new FakeActions();
  const base = '/api/v1/namespaces/team/artefact-versions';

  before(async () => {
    dir = await tempDir();
    db = await openDatabase({ url: 'sqlite', dataDir: dir.path });
    app = Fastify({ logger: false });
    await app.register(artifactRoutes, { artefacts: new ArtifactService({ db, actions }) });
    await app.ready();
  });

  after(async () => {
    await app?.close();
    await db?.close();
    await dir?.remove();
  });

  test('create, dry_run, get, list, archive', { timeout: 10_000 }, async () => {
    const dry = await app.inject({ method: 'POST', url: `${base}?dry_run=true`, payload: { type: 'container', name: 'team/app', version: 'v1' } });
    assert.equal(dry.statusCode, 204);
    assert.equal(JSON.parse((await app.inject({ method: 'GET', url: base })).body).artefactVersions.length, 0);

    const badDry = await app.inject({ method: 'POST', url: `${base}?dry_run=true`, payload: { type: 'container', name: 'team/app', commit: 'nothex' } });
    assert.equal(badDry.statusCode, 400);
    assert.equal(badDry.json().code, 'BAD_REQUEST');
    assert.match(badDry.json().message, /^commit: /);

    const bad = await app.inject({ method: 'POST', url: base, payload: { type: 'workload', name: 'w', spec: { apiVersion: 'score.dev/v1b1', metadata: { name: 'w1' }, containers: { main: {} } } } });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json().message, /spec\.containers\.main\.image/);

    const created = await app.inject({ method: 'POST', url: base, payload: { type: 'container', name: 'team/app', version: 'v1', ref: 'refs/heads/main', digest } });
    assert.equal(created.statusCode, 201);
    const view = created.json();
    assert.equal(view.source, 'api');
    assert.equal(view.createdBy, null);
    await app.inject({ method: 'POST', url: base, payload: { type: 'container', name: 'team/app', version: 'v2', ref: 'refs/heads/dev' } });

    assert.equal((await app.inject({ method: 'GET', url: `${base}/${view.id}` })).json().digest, digest);
    assert.equal((await app.inject({ method: 'GET', url: `${base}/av_nope` })).statusCode, 404);
    const byRef = (await app.inject({ method: 'GET', url: `${base}?reference=refs%2Fheads%2Fmain&name=team%2Fapp&type=container` })).json();
    assert.deepEqual(byRef.artefactVersions.map((v: { id: string }) => v.id), [view.id]);
    assert.equal((await app.inject({ method: 'GET', url: `${base}?type=image` })).statusCode, 400);
    assert.equal((await app.inject({ method: 'GET', url: `${base}?colour=red` })).statusCode, 400);

    const patched = await app.inject({ method: 'PATCH', url: `${base}/${view.id}`, payload: { archived: true } });
    assert.equal(patched.statusCode, 200);
    assert.equal(patched.json().archived, true);
    assert.deepEqual((await app.inject({ method: 'GET', url: `${base}?archived=true` })).json().artefactVersions.map((v: { id: string }) => v.id), [view.id]);
    assert.equal((await app.inject({ method: 'GET', url: `${base}?archived=false` })).json().artefactVersions.length, 1);
    assert.equal((await app.inject({ method: 'PATCH', url: `${base}/${view.id}`, payload: { archived: 'yes' } })).statusCode, 400);
  });

  test('workload spec as JSON or YAML, and convert-score', { timeout: 10_000 }, async () => {
    const spec = simpleScore({}, { variables: { WHO: '${metadata.name}' } });
    const created = await app.inject({ method: 'POST', url: base, payload: { type: 'workload', name: 'hello', spec } });
    assert.equal(created.statusCode, 201);
    const id = created.json().id;
    const json = await app.inject({ method: 'GET', url: `${base}/${id}/workload-spec` });
    assert.equal(json.statusCode, 200);
    assert.deepEqual(json.json(), spec);
    const yaml = await app.inject({ method: 'GET', url: `${base}/${id}/workload-spec`, headers: { accept: 'application/x-yaml' } });
    assert.equal(yaml.statusCode, 200);
    assert.match(String(yaml.headers['content-type']), /^application\/x-yaml/);
    assert.deepEqual(parseYaml(yaml.body), spec);
    const container = (await app.inject({ method: 'GET', url: base })).json().artefactVersions.find((v: { type: string }) => v.type === 'container');
    assert.equal((await app.inject({ method: 'GET', url: `${base}/${container.id}/workload-spec` })).statusCode, 400);

    const converted = await app.inject({ method: 'POST', url: `${base}/convert-score`, payload: { spec, name: 'greeter' } });
    assert.equal(converted.statusCode, 200);
    assert.deepEqual(converted.json(), { name: 'greeter', config: { image: '127.0.0.1:5000/team/hello:v1', env: { WHO: 'hello-fn' } }, warnings: [] });
    const fromYaml = await app.inject({
      method: 'POST', url: `${base}/convert-score?image=reg%2Fapp%3Av3`, headers: { 'content-type': 'application/x-yaml' },
      payload: 'apiVersion: score.dev/v1b1\nmetadata: {name: from-yaml}\ncontainers:\n  main: {image: ".", args: [serve]}\n',
    });
    assert.equal(fromYaml.statusCode, 200);
    assert.deepEqual(fromYaml.json(), { name: 'from-yaml', config: { image: 'reg/app:v3', args: ['serve'], env: {} }, warnings: [] });
    const refused = await app.inject({ method: 'POST', url: `${base}/convert-score`, payload: { spec: simpleScore({ resources: { db: { type: 'postgres' } } }) } });
    assert.equal(refused.statusCode, 400);
    assert.match(refused.json().message, /resources: not supported/);
    const invalid = await app.inject({ method: 'POST', url: `${base}/convert-score`, payload: { spec: { apiVersion: 'score.dev/v1b1' } } });
    assert.equal(invalid.statusCode, 400);
    assert.match(invalid.json().message, /spec\.metadata/);
  });

  test('automation rules over HTTP trigger on create', { timeout: 10_000 }, async () => {
    const rules = '/api/v1/namespaces/team/automation-rules';
    const rule = { name: 'main', match: { type: 'container', name: 'team/svc', ref: 'refs/heads/main' }, action: { deploy: { functions: ['svc'] } } };
    const created = await app.inject({ method: 'POST', url: rules, payload: rule });
    assert.equal(created.statusCode, 201);
    assert.equal(created.json().active, true);
    assert.equal((await app.inject({ method: 'POST', url: rules, payload: rule })).statusCode, 409);
    const invalid = await app.inject({ method: 'POST', url: rules, payload: { ...rule, name: 'x', match: { name: 'team/svc', ref: 42 } } });
    assert.equal(invalid.statusCode, 400);
    assert.match(invalid.json().message, /match\.ref/);
    assert.deepEqual((await app.inject({ method: 'GET', url: rules })).json().rules.map((r: { name: string }) => r.name), ['main']);
    assert.equal((await app.inject({ method: 'GET', url: `${rules}/main` })).json().match.ref, 'refs/heads/main');
    assert.equal((await app.inject({ method: 'GET', url: `${rules}/nope` })).statusCode, 404);

    actions.calls.length = 0;
    const v = await app.inject({ method: 'POST', url: base, payload: { type: 'container', name: 'team/svc', version: 'v1', ref: 'refs/heads/main', digest } });
    assert.equal(v.statusCode, 201);
    assert.deepEqual(v.json().automations, [{ rule: 'main', action: 'deploy svc', outcome: 'started' }]);
    assert.deepEqual(actions.calls.map((c) => [c.target, c.payload]), [['svc', `team/svc@${digest}`]]);

    const patched = await app.inject({ method: 'PATCH', url: `${rules}/main`, payload: { active: false } });
    assert.equal(patched.statusCode, 200);
    assert.equal(patched.json().active, false);
    actions.calls.length = 0;
    await app.inject({ method: 'POST', url: base, payload: { type: 'container', name: 'team/svc', version: 'v2', ref: 'refs/heads/main' } });
    assert.equal(actions.calls.length, 0);
    assert.equal((await app.inject({ method: 'DELETE', url: `${rules}/main` })).statusCode, 204);
    assert.equal((await app.inject({ method: 'DELETE', url: `${rules}/main` })).statusCode, 404);
  });
});

describe('artefact routes with access control', { timeout: 60_000 }, () => {
  let app: FastifyInstance;
  let db: Database;
  let dir: { path: string; remove(): Promise<void> };
  /** A stand-in for ApiGuard's two checks: the caller from a header, roles from a table. */
  const roles: Record<string, 'reader' | 'contributor'> = { rita: 'reader', carl: 'contributor' };
  const guard = {
    async authenticate(request: { headers: Record<string, unknown> }): Promise<Principal> {
      const user = request.headers['x-user'];
      if (typeof user !== 'string') throw new ApiError('UNAUTHORIZED', 'who are you');
      return { id: user, name: user, kind: 'user', admin: false };
    },
    async requireRole(principal: Principal, namespace: string, least: 'reader' | 'contributor') {
      const held = namespace === 'team' ? roles[principal.name] : undefined;
      if (!held) throw new ApiError('NOT_FOUND', `no namespace "${namespace}"`);
      if (least === 'contributor' && held !== 'contributor') throw new ApiError('FORBIDDEN', `needs the ${least} role`);
      return held;
    },
  } as unknown as ApiGuard;

  before(async () => {
    dir = await tempDir();
    db = await openDatabase({ url: 'sqlite', dataDir: dir.path });
    app = Fastify({ logger: false });
    await app.register(artifactRoutes, { artefacts: new ArtifactService({ db }), guard });
    await app.ready();
  });

  after(async () => {
    await app?.close();
    await db?.close();
    await dir?.remove();
  });

  test('readers read, contributors write; the creator is recorded', { timeout: 10_000 }, async () => {
    const url = '/api/v1/namespaces/team/artefact-versions';
    const body = { type: 'container', name: 'team/app', version: 'v1' };
    assert.equal((await app.inject({ method: 'GET', url })).statusCode, 401);
    assert.equal((await app.inject({ method: 'POST', url, payload: body, headers: { 'x-user': 'rita' } })).statusCode, 403);
    assert.equal((await app.inject({ method: 'POST', url: '/api/v1/namespaces/team/automation-rules', payload: {}, headers: { 'x-user': 'rita' } })).statusCode, 403);
    assert.equal((await app.inject({ method: 'GET', url: '/api/v1/namespaces/other/artefact-versions', headers: { 'x-user': 'carl' } })).statusCode, 404);
    const created = await app.inject({ method: 'POST', url, payload: body, headers: { 'x-user': 'carl' } });
    assert.equal(created.statusCode, 201);
    assert.equal(created.json().createdBy, 'carl');
    assert.equal((await app.inject({ method: 'PATCH', url: `${url}/${created.json().id}`, payload: { archived: true }, headers: { 'x-user': 'rita' } })).statusCode, 403);
    const listed = await app.inject({ method: 'GET', url, headers: { 'x-user': 'rita' } });
    assert.equal(listed.statusCode, 200);
    assert.equal(listed.json().artefactVersions.length, 1);
  });
});

// Type-level check that the exported Score type is what parseScore returns.
const _typed: (w: ScoreWorkload) => string = (w) => w.metadata.name;
void _typed;
