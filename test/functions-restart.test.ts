/**
 * Functions across server restarts, and who may invoke them. A server deploys functions and
 * stops: nothing is left running. The next start on the same data folder (now with access
 * control on) brings them back (minimum instances started again), and removes instances a
 * crashed process left behind. Private functions answer 401 to strangers, and work with a
 * function key or a member's credentials; public ones work for anyone. Runs on PostgreSQL when
 * the suite has one (functions.test.ts covers SQLite).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadConfig, type ConfigInput } from '../src/config/config.js';
import { startServer, type RunningServer } from '../src/main.js';
import { RuncDriver } from '../src/functions/runc-driver.js';
import { ImageStore } from '../src/functions/image-store.js';
import { cleanEnv, repoRoot, requireCommands, run, slipwayBin } from './helpers/commands.js';
import { dialects, tempDir, type TestServer } from './helpers/harness.js';
import { assertNoLeftovers, eventually, instancePrefix, leftovers } from './helpers/functions.js';
import { createApiClient } from './helpers/api-client.js';
import { buildFunctionImages, buildWork, type BuildWork, type FunctionImages } from './helpers/function-images.js';
import { pino } from 'pino';

const ns = 'fns';
const adminPassword = 'restart-Adm1n-pass';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe(`functions across restarts, and access (${dialects[dialects.length - 1]!.name})`, { timeout: 600_000 }, () => {
  let work: BuildWork;
  let dataDir: { path: string; remove(): Promise<void> };
  let server: RunningServer | undefined;
  let images: FunctionImages;
  let prefix: string;
  const dialect = dialects[dialects.length - 1]!;
  let database: { url: string; drop(): Promise<void> };

  const start = async (extra: ConfigInput = {}): Promise<RunningServer> => {
    const config = loadConfig({
      flags: {
        listen: '127.0.0.1:0', dataDir: dataDir.path, database: database.url, log: { level: 'warn', requests: false },
        builds: work.builds, registry: { gc: { interval: 0 } }, functions: { enabled: true, startTimeout: '10s' },
        auth: { enabled: false }, ...extra,
      },
    });
    server = await startServer(config, { logger: pino({ level: 'silent' }) });
    return server;
  };

  before(async () => {
    await requireCommands({ runc: 'runc', ip: 'iproute2', buildah: 'buildah' });
    work = await buildWork();
    dataDir = await tempDir('slipway-fn-restart-');
    database = await dialect.create();
    prefix = await instancePrefix(dataDir.path);
  });

  after(async () => {
    try {
      await server?.close();
      if (dataDir) await assertNoLeftovers(dataDir.path, prefix);
    } finally {
      await work?.cleanup();
      await dataDir?.remove();
      await database?.drop();
    }
  });

  test('deployed functions come back after a restart; a stopped server leaves nothing running', { timeout: 300_000 }, async () => {
    const first = await start();
    const ts = { url: first.url, host: first.url.replace('http://', '') } as TestServer;
    images = await buildFunctionImages(ts, work, { namespace: ns });
    const call = createApiClient(first.url).request;
    const keeper = await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, { name: 'keeper', type: 'http', image: images.hello, minInstances: 1 });
    assert.equal(keeper.body.status, 'ready', keeper.text);
    const hello = await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, { name: 'hello', image: images.hello });
    assert.equal(hello.body.status, 'ready', hello.text);
    const answer = await call('POST', `/api/v1/namespaces/${ns}/functions/hello/invocations`, { name: 'Slipway' });
    assert.equal(answer.status, 200);
    assert.equal(answer.body.hello, 'Slipway');
    assert.equal((await leftovers(dataDir.path, prefix)).containers.length, 2);
    await first.close();
    server = undefined;
    await assertNoLeftovers(dataDir.path, prefix);

    // A crashed process's instance (same prefix, same runc root) is found and removed at start.
    // It runs the hello image from the server's image store (pulled there by its digest).
    const functionsDir = path.join(dataDir.path, 'functions');
    const orphanDriver = new RuncDriver({ images: new ImageStore(path.join(functionsDir, 'images')), stateDir: path.join(functionsDir, 'bundles'), runcRoot: path.join(functionsDir, 'runc'), prefix });
    const orphanImage = { reference: images.hello, digest: hello.body.imageDigest as string };
    await orphanDriver.start({ id: 'orphan', image: orphanImage, command: ['node', '-e', 'setInterval(() => {}, 1000)'], env: [] }, () => undefined);
    assert.deepEqual((await leftovers(dataDir.path, prefix)).containers, [`${prefix}orphan`]);

    const second = await start({ auth: { enabled: true, adminPassword } });
    const admin = createApiClient(second.url, basic('admin', adminPassword)).request;
    assert.equal((await admin('POST', '/api/v1/namespaces', { name: ns })).status, 201);
    const restored = await eventually(async () => {
      const r = await admin('GET', `/api/v1/namespaces/${ns}/functions/keeper`);
      return r.body?.status === 'ready' && r.body.instances === 1 ? r.body : undefined;
    }, 30_000, 'keeper restored with its minimum instance');
    assert.equal(restored.activeRevision, 1);
    const left = await leftovers(dataDir.path, prefix);
    assert.ok(!left.containers.includes(`${prefix}orphan`), 'the orphan was removed');
    assert.equal(left.containers.length, 1);
    const again = await admin('POST', `/api/v1/namespaces/${ns}/functions/hello/invocations`, { name: 'again' });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.hello, 'again');
  });

  test('private functions need a function key or a member; public ones answer anyone', { timeout: 120_000 }, async () => {
    assert.ok(server, 'the server of the previous test runs');
    const admin = createApiClient(server.url, basic('admin', adminPassword)).request;
    const anonymous = createApiClient(server.url).request;
    assert.equal((await anonymous('POST', `/api/v1/namespaces/${ns}/functions/hello/invocations`, {})).status, 401);
    assert.equal((await fetch(`${server.url}/fn/${ns}/keeper/`)).status, 401);
    const key = await admin('POST', `/api/v1/namespaces/${ns}/functions/hello/keys`, { name: 'ci' });
    assert.equal(key.status, 201, key.text);
    assert.match(key.body.key, /^slwfn_/);
    const withKey = createApiClient(server.url, `Bearer ${key.body.key}`).request;
    assert.equal((await withKey('POST', `/api/v1/namespaces/${ns}/functions/hello/invocations`, {})).status, 200);
    assert.equal((await withKey('GET', `/api/v1/namespaces/${ns}/functions/hello`)).status, 401, 'a function key only invokes');
    assert.equal((await fetch(`${server.url}/fn/${ns}/keeper/`, { headers: { authorization: `Bearer ${key.body.key}` } })).status, 401, 'a key of one function does not open another');
    const forged = createApiClient(server.url, `Bearer ${key.body.key.slice(0, -2)}xx`).request;
    assert.equal((await forged('POST', `/api/v1/namespaces/${ns}/functions/hello/invocations`, {})).status, 401);
    const keys = await admin('GET', `/api/v1/namespaces/${ns}/functions/hello/keys`);
    assert.equal(keys.body.keys.length, 1);
    assert.ok(!keys.text.includes(key.body.key.split('.')[1]), 'the secret is shown once');
    assert.equal((await admin('DELETE', `/api/v1/namespaces/${ns}/functions/hello/keys/${key.body.id}`)).status, 204);
    assert.equal((await withKey('POST', `/api/v1/namespaces/${ns}/functions/hello/invocations`, {})).status, 401, 'a revoked key stops working');

    const opened = await admin('PATCH', `/api/v1/namespaces/${ns}/functions/keeper`, { access: 'public' });
    assert.equal(opened.body.access, 'public');
    assert.equal(opened.body.latestRevision, 1, 'access is not a revision');
    await eventually(async () => (await fetch(`${server!.url}/fn/${ns}/keeper/anything`)).status === 200, 5000, 'public access');
    assert.equal(await (await fetch(`${server.url}/fn/${ns}/keeper/anything`)).text(), 'hello from /anything\n');
  });

  test('the gateway\'s cached access checks follow access changes, key revocation and deletion at once', { timeout: 120_000 }, async () => {
    assert.ok(server, 'the server of the previous tests runs');
    const admin = createApiClient(server.url, basic('admin', adminPassword)).request;
    const fnPath = `/api/v1/namespaces/${ns}/functions/keeper`;
    const url = `${server.url}/fn/${ns}/keeper/cached?q=1`;
    const status = async (authorization?: string) => {
      const r = await fetch(url, authorization ? { headers: { authorization } } : {});
      await r.arrayBuffer();
      return r.status;
    };
    // keeper is public (previous test): the first request fills the cache, the next ones are
    // answered in front of the router.
    for (let i = 0; i < 3; i++) assert.equal(await status(), 200);
    const answer = await fetch(url);
    assert.equal(await answer.text(), 'hello from /cached?q=1\n');
    const encoded = await fetch(`${server.url}/fn/${ns}/keeper/a%20b/c%2Fd`);
    assert.equal(await encoded.text(), 'hello from /a%20b/c%2Fd\n', 'the path reaches the instance as sent');

    // Made private: refused at once, not after the cache's lifetime.
    assert.equal((await admin('PATCH', fnPath, { access: 'private' })).status, 200);
    assert.equal(await status(), 401);
    assert.equal(await status(), 401, 'still refused once the facts are cached again');

    const key = await admin('POST', `${fnPath}/keys`, { name: 'gateway' });
    assert.equal(key.status, 201, key.text);
    for (let i = 0; i < 3; i++) assert.equal(await status(`Bearer ${key.body.key}`), 200, 'a key of the function (checked, then cached)');
    assert.equal(await status(`Bearer ${key.body.key.slice(0, -2)}xx`), 401, 'a forged key');
    assert.equal(await status(basic('admin', adminPassword)), 200, 'a member of the namespace');
    assert.equal((await admin('DELETE', `${fnPath}/keys/${key.body.id}`)).status, 204);
    assert.equal(await status(`Bearer ${key.body.key}`), 401, 'a revoked key stops working at once');

    assert.equal((await admin('PATCH', fnPath, { access: 'public' })).status, 200);
    assert.equal(await status(), 200, 'public again at once');
    assert.equal(await status(), 200);
    assert.equal((await admin('DELETE', fnPath)).status, 204);
    assert.equal(await status(), 404, 'a deleted function is gone at once');
  });

  test('slipway fn: deploy (with a secret from the environment), list, invoke, logs, revisions, rm', { timeout: 120_000 }, async () => {
    assert.ok(server, 'the server of the first test runs');
    const admin = createApiClient(server.url, basic('admin', adminPassword)).request;
    const key = await admin('POST', '/api/v1/keys', { name: 'cli', scopes: ['*'] });
    assert.equal(key.status, 201, key.text);
    const env = { ...cleanEnv(), SLIPWAY_SERVER: server.url, SLIPWAY_API_KEY: key.body.key, TOKEN: 'cli-secret-value-42' };
    const slipway = (args: string[]) => run(process.execPath, [slipwayBin, ...args], { cwd: repoRoot, env, timeoutMs: 60_000, allowFailure: true });

    const deployed = await slipway(['fn', 'deploy', 'clifn', '-n', ns, '--image', `${ns}/hello-main-image:latest`, '--env', 'A=1', '--secret-env', 'TOKEN', '--tag', 'team=cli']);
    assert.equal(deployed.code, 0, deployed.stderr);
    assert.match(deployed.stdout, /status: +ready/);
    assert.ok(!deployed.stdout.includes('cli-secret-value-42'));
    const listed = await slipway(['fn', 'list', '-n', ns]);
    assert.match(listed.stdout, /^clifn +event +ready +1 /m);
    const invoked = await slipway(['fn', 'invoke', 'clifn', '-n', ns, '-d', '{"name":"cli"}']);
    assert.equal(invoked.code, 0, invoked.stderr);
    assert.equal(JSON.parse(invoked.stdout).hello, 'cli');
    const changed = await slipway(['fn', 'deploy', 'clifn', '-n', ns, '--image', `${ns}/hello-main-image:latest`, '--memory', '128']);
    assert.equal(changed.code, 0, changed.stderr);
    assert.match(changed.stdout, /revision: +2 active, 2 latest/);
    const revisions = await slipway(['fn', 'revisions', 'clifn', '-n', ns]);
    assert.match(revisions.stdout, /^2 +ready +\*/m);
    assert.match(revisions.stdout, /^1 +retired/m);
    const logs = await slipway(['fn', 'logs', 'clifn', '-n', ns]);
    assert.match(logs.stdout, /revision 2 is active/);
    const missing = await slipway(['fn', 'deploy', 'nope', '-n', ns, '--image', `${ns}/nothing:1`]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /not in this registry/);
    const noSecret = await slipway(['fn', 'deploy', 'x', '-n', ns, '--image', `${ns}/nothing:1`, '--secret-env', 'UNSET_VAR']);
    assert.notEqual(noSecret.code, 0);
    assert.match(noSecret.stderr, /set UNSET_VAR in the environment/);
    const removed = await slipway(['fn', 'rm', 'clifn', '-n', ns]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal((await admin('GET', `/api/v1/namespaces/${ns}/functions/clifn`)).status, 404);
  });
});
