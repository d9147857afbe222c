/**
 * Functions across replicas: two `slipway serve` processes (own data folders, own runc
 * instances) on one PostgreSQL database, one S3 bucket and one master key, nginx in front.
 *   - a function deployed through A answers through nginx from both replicas (each starts its
 *     own instance on its first request);
 *   - a new revision deployed through A reaches B: the time until B answers with it is
 *     measured, and after the deploy was acknowledged plus a one-second window no request to
 *     either replica gets the old revision;
 *   - a scale change through B pre-warms A to the new minimum, a rollback through B reaches A;
 *   - a push of the function's tag through B rolls it once, and A serves the new image;
 *   - a delete through B stops A's instances; nothing is left behind (containers, namespaces).
 * Needs PostgreSQL (SLIPWAY_TEST_POSTGRES_URL), nginx and runc.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { killAllChildren } from './helpers/commands.js';
import { dialects, tempDir } from './helpers/dialects.js';
import { assertNoLeftovers, eventually, instancePrefix, leftovers } from './helpers/functions.js';
import { nodeLayer, pushNodeImage } from './helpers/node-image.js';
import { call, show, sleep } from './helpers/registry-client.js';
import { basic, startNginx, startReplica, stopReplica, type Nginx, type Replica } from './helpers/replicas.js';
import { startS3Server } from './helpers/s3-server.js';

const postgres = dialects.find((dialect) => dialect.name === 'postgres');

after(() => killAllChildren());

/** Answers which revision and image it is, and the variable V the test changes. */
const server = (image: string) => `require('http').createServer((q, s) => {
  if (q.url === '/init') { s.statusCode = 404; return s.end(); }
  s.setHeader('content-type', 'application/json');
  s.end(JSON.stringify({ revision: Number(process.env.RUNTIME_FUNC_VERSION), v: process.env.V || '', image: ${JSON.stringify(image)} }));
}).listen(8000);`;

interface Answer { revision: number; v: string; image: string }

const json = { authorization: basic, 'content-type': 'application/json' };

async function api(base: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const response = await call(`${base}/api/v1${path}`, { method, headers: body === undefined ? { authorization: basic } : json, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = response.body.toString('utf8');
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function invoke(base: string, probe: string): Promise<Answer> {
  const response = await call(`${base}/fn/fns/echo/?probe=${probe}`);
  assert.equal(response.status, 200, show(response));
  return JSON.parse(response.body.toString('utf8')) as Answer;
}

async function instances(replica: Replica): Promise<Array<{ revision: number; served: number }>> {
  const listed = await api(replica.url, 'GET', '/namespaces/fns/functions/echo/instances');
  assert.equal(listed.status, 200, JSON.stringify(listed.body));
  return listed.body.instances;
}

/** Invokes `base` until `done(answer)`; the milliseconds it took. */
async function until(base: string, done: (answer: Answer) => boolean, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  for (let i = 0; ; i++) {
    const answer = await invoke(base, `wait-${i}`).catch(() => undefined);
    if (answer && done(answer)) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(answer)})`);
    await sleep(10);
  }
}

describe('functions on two replicas behind nginx', { timeout: 400_000, skip: postgres ? false : 'needs SLIPWAY_TEST_POSTGRES_URL' }, () => {
  test('deploys, rollbacks, scale changes, tag rolls and deletes reach every replica\'s pool', { timeout: 380_000 }, async () => {
    const work = await tempDir('slipway-replicas-fn-');
    const database = await postgres!.create();
    const s3 = await startS3Server();
    const shared = { database: database.url, s3, masterKey: randomBytes(32).toString('base64') };
    const replicas: Replica[] = [];
    let nginx: Nginx | undefined;
    const figures: Record<string, unknown> = {};
    try {
      replicas.push(...await Promise.all(['a', 'b'].map((name) => startReplica(name, work.path, shared, { log: { level: 'info', requests: true }, logs: { driver: 'blobstore' }, functions: { enabled: true, startTimeout: '10s' } }, { SLIPWAY_FUNCTIONS_ENABLED: 'true' }))));
      const [a, b] = replicas as [Replica, Replica];
      nginx = await startNginx(work.path, replicas.map((replica) => new URL(replica.url).host));
      assert.equal((await api(a.url, 'POST', '/namespaces', { name: 'fns' })).status, 201);
      const layer = await nodeLayer(work.path);
      await pushNodeImage({ url: a.url, host: new URL(a.url).host }, 'fns/echo', '1', layer, { Cmd: ['node', '-e', server('first')] }, { authorization: basic });

      // ---- deployed through A, served by both through nginx ----
      const created = await api(a.url, 'POST', '/namespaces/fns/functions?wait=true', { name: 'echo', type: 'http', image: 'fns/echo:1', access: 'public', env: { V: 'one' }, idleSeconds: 600 });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      assert.equal(created.body.status, 'ready', JSON.stringify(created.body));
      for (let i = 0; i < 6; i++) assert.deepEqual(await invoke(nginx.url, `first-${i}`), { revision: 1, v: 'one', image: 'first' });
      const servedBy = replicas.map((replica) => (replica.output().match(/probe=first-/g) ?? []).length);
      figures.firstRequestsPerReplica = servedBy;
      assert.ok(servedBy.every((count) => count > 0), `both replicas answered (${servedBy.join(', ')})`);
      for (const replica of replicas) assert.ok((await instances(replica)).some((instance) => instance.revision === 1 && instance.served > 0), `${replica.name} runs its own instance`);

      // ---- a new revision through A reaches B ----
      const deployStarted = Date.now();
      const patched = await api(a.url, 'PATCH', '/namespaces/fns/functions/echo?wait=true', { env: { V: 'two' } });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      assert.equal(patched.body.activeRevision, 2, JSON.stringify(patched.body));
      const acknowledged = Date.now();
      figures.deployThroughAMs = acknowledged - deployStarted;
      figures.newRevisionOnBAfterAckMs = await until(b.url, (answer) => answer.v === 'two', 5000, 'B to answer with revision 2');
      await sleep(Math.max(0, acknowledged + 1000 - Date.now()));
      for (let i = 0; i < 10; i++) {
        for (const base of [a.url, b.url, nginx.url]) assert.deepEqual(await invoke(base, `second-${i}`), { revision: 2, v: 'two', image: 'first' }, 'no old revision answers after the window');
      }
      await eventually(async () => (await instances(b)).every((instance) => instance.revision === 2), 5000, 'B to drain revision 1');

      // ---- a scale change through B pre-warms A; a rollback through B reaches A ----
      const scaled = await api(b.url, 'PATCH', '/namespaces/fns/functions/echo?wait=true', { minInstances: 2 });
      assert.equal(scaled.status, 200, JSON.stringify(scaled.body));
      const scaledAt = Date.now();
      await eventually(async () => (await instances(a)).filter((instance) => instance.revision === 3).length >= 2 || undefined, 10_000, 'A to pre-warm two instances of revision 3');
      figures.prewarmOnAAfterAckMs = Date.now() - scaledAt;
      const rolledBack = await api(b.url, 'POST', '/namespaces/fns/functions/echo/rollback', { revision: 1 });
      assert.equal(rolledBack.status, 200, JSON.stringify(rolledBack.body));
      figures.rollbackOnAAfterAckMs = await until(a.url, (answer) => answer.revision === 1 && answer.v === 'one', 5000, 'A to answer with revision 1 again');

      // ---- a push of the tag through B rolls the function once; A serves the new image ----
      const revisionsBefore = (await api(a.url, 'GET', '/namespaces/fns/functions/echo/revisions')).body.revisions.length as number;
      const pushedAt = Date.now();
      await pushNodeImage({ url: b.url, host: new URL(b.url).host }, 'fns/echo', '1', layer, { Cmd: ['node', '-e', server('second')] }, { authorization: basic });
      figures.tagRollOnAAfterPushMs = await until(a.url, (answer) => answer.image === 'second', 30_000, 'A to serve the pushed image');
      await sleep(1500); // a second roll (by the other replica) would show up meanwhile
      const revisionsAfter = (await api(a.url, 'GET', '/namespaces/fns/functions/echo/revisions')).body.revisions as Array<{ number: number }>;
      assert.equal(revisionsAfter.length, revisionsBefore + 1, `one new revision per push: ${JSON.stringify(revisionsAfter.map((r) => r.number))}`);
      for (const base of [a.url, b.url]) assert.equal((await invoke(base, 'after-push')).image, 'second');

      // ---- a delete through B stops A's instances ----
      const prefixes = await Promise.all(replicas.map((replica) => instancePrefix(replica.dataDir)));
      assert.ok((await leftovers(a.dataDir, prefixes[0]!)).containers.length > 0, 'A runs instances before the delete');
      const deletedAt = Date.now();
      assert.equal((await api(b.url, 'DELETE', '/namespaces/fns/functions/echo')).status, 204);
      await eventually(async () => (await leftovers(a.dataDir, prefixes[0]!)).containers.length === 0, 10_000, 'A to stop its instances');
      figures.deleteStoppedAMs = Date.now() - deletedAt;
      assert.equal((await call(`${a.url}/fn/fns/echo/`)).status, 404);
      process.stdout.write(`# replica functions figures: ${JSON.stringify(figures)}\n`);
    } finally {
      try {
        await nginx?.stop();
        // Function replicas drain their instances on SIGTERM: give them time before a SIGKILL
        // (which would leave their spare network namespaces behind).
        for (const replica of replicas) await stopReplica(replica, 45_000);
        for (const replica of replicas) {
          assert.notEqual(replica.child.signalCode, 'SIGKILL', `${replica.name} stopped on SIGTERM`);
          await assertNoLeftovers(replica.dataDir, await instancePrefix(replica.dataDir));
        }
      } finally {
        await s3.close();
        await database.drop();
        await work.remove();
      }
    }
  });
});
