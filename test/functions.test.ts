/**
 * Functions end to end on one server: images built by Slipway from the offline base image,
 * deployed as functions and run with runc. Event invocations (context headers, envelope,
 * async), HTTP functions through the gateway (streaming, limits, identity, read-only root),
 * the failure paths (crashing image, no server on 8000, /init failing, timeout, oversize body,
 * crash mid-request), scaling up and down, logs, a tag re-push rolling a function with no
 * failed request, rollback, delete while serving, and nothing left behind.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { dialects, startTestServer, type TestServer } from './helpers/harness.js';
import { requireCommands } from './helpers/commands.js';
import { assertNoLeftovers, eventually, instancePrefix, leftovers, sleep } from './helpers/functions.js';
import { createApiClient, type Requester } from './helpers/api-client.js';
import { buildFixtureVersion, buildFunctionImages, buildWork, type BuildWork, type FunctionImages } from './helpers/function-images.js';

const ns = 'fns';

// Both dialects: deploys, revisions, instances and the durable async queue live in the db.
for (const dialect of dialects) describe(`functions (${dialect.name})`, { timeout: 900_000 }, () => {
  let ts: TestServer;
  let call: Requester;
  let images: FunctionImages;
  let prefix: string;
  let work: BuildWork;

  before(async () => {
    await requireCommands({ runc: 'runc', ip: 'iproute2', buildah: 'buildah' });
    work = await buildWork();
    ts = await startTestServer({ dialect, config: { builds: work.builds, functions: { enabled: true, startTimeout: '4s', maxBodyBytes: 1024 * 1024, maxAsyncBodyBytes: 64 * 1024 } } });
    call = createApiClient(ts.url).request;
    prefix = await instancePrefix(ts.dataDir);
    images = await buildFunctionImages(ts, work, { namespace: ns });
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
    }
  });

  const deploy = async (body: Record<string, unknown>) => {
    const created = await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, body);
    return created;
  };
  const invoke = (name: string, event: unknown, query = '') => call('POST', `/api/v1/namespaces/${ns}/functions/${name}/invocations${query}`, event);

  test('an event function: context headers, environment, secrets masked, init once, envelope decoded', { timeout: 120_000 }, async () => {
    const created = await deploy({
      name: 'echo', image: images.fixture, env: { GREETING: 'hi' }, secretEnv: { SECRET_TOKEN: 's3cr3t-value-123456' },
      logTags: { team: 'core' }, timeoutSeconds: 10,
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.status, 'ready');
    assert.equal(created.body.type, 'event');
    assert.equal(created.body.activeRevision, 1);
    assert.match(created.body.imageDigest, /^sha256:[a-f0-9]{64}$/);
    assert.deepEqual(created.body.secretEnv, { SECRET_TOKEN: '****' });
    assert.ok(!created.text.includes('s3cr3t-value-123456'), 'secret value never in a response');

    const first = await invoke('echo', { name: 'ada' });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get('x-slipway-revision'), '1');
    const echoed = first.body;
    assert.equal(JSON.parse(echoed.body).name, 'ada');
    assert.match(echoed.headers['x-cff-request-id'], /^[0-9a-f-]{36}$/);
    assert.equal(echoed.headers['x-cff-func-name'], 'echo');
    assert.equal(echoed.headers['x-cff-func-version'], '1');
    assert.equal(echoed.headers['x-cff-memory'], '256');
    assert.equal(echoed.headers['x-cff-timeout'], '10');
    assert.equal(echoed.headers['x-cff-invoke-type'], 'sync');
    assert.ok(Date.parse(echoed.headers['x-slipway-deadline']) > Date.now());
    assert.equal(echoed.uid, 1003);
    assert.deepEqual(echoed.env, { GREETING: 'hi', SECRET_TOKEN: 's3cr3t-value-123456' });
    assert.equal(echoed.initCalls, 1);
    const second = await invoke('echo', { n: 2 });
    assert.equal(second.body.initCalls, 1, '/init runs once per instance');
    assert.equal(second.body.hostname, echoed.hostname, 'the warm instance is reused');

    const envelope = await invoke('echo', { envelope: { statusCode: 201, headers: { 'x-made-by': 'fn', 'content-type': 'text/plain' }, body: Buffer.from('decoded!').toString('base64'), isBase64Encoded: true } });
    assert.equal(envelope.status, 201);
    assert.equal(envelope.headers.get('x-made-by'), 'fn');
    assert.equal(envelope.text, 'decoded!');
    const plain = await invoke('echo', { envelope: { statusCode: 404, body: 'nope' } });
    assert.equal(plain.status, 404);
    assert.equal(plain.text, 'nope');

    const got = await call('GET', `/api/v1/namespaces/${ns}/functions/echo`);
    assert.equal(got.status, 200);
    assert.equal(got.body.instances, 1);
    const instances = (await call('GET', `/api/v1/namespaces/${ns}/functions/echo/instances`)).body.instances;
    assert.equal(instances.length, 1);
    assert.match(instances[0].address, /^10\.203\.\d+\.\d+:8000$/);
    assert.ok(instances[0].served >= 4);
    const metrics = await call('GET', `/api/v1/namespaces/${ns}/functions/echo/metrics`);
    assert.ok(metrics.body.requests >= 4);
    assert.equal(metrics.body.errors, 0);
  });

  test('logs carry instance, revision and tags; --follow streams new lines', { timeout: 60_000 }, async () => {
    const marker = `marker-${randomBytes(4).toString('hex')}`;
    const controller = new AbortController();
    const followed: string[] = [];
    const follow = fetch(`${ts.url}/api/v1/namespaces/${ns}/functions/echo/logs?follow=true&tail=0`, { signal: controller.signal }).then(async (response) => {
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        followed.push(decoder.decode(value));
      }
    }).catch(() => undefined);
    await sleep(200);
    assert.equal((await invoke('echo', { log: marker })).status, 200);
    const lines = await eventually(async () => {
      const response = await call('GET', `/api/v1/namespaces/${ns}/functions/echo/logs?tail=200`);
      const parsed = response.text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      return parsed.filter((l: any) => l.line.includes(marker)).length >= 2 ? parsed : undefined;
    }, 10_000, 'log lines');
    const out = lines.find((l: any) => l.line === marker);
    const err = lines.find((l: any) => l.line === `err:${marker}`);
    assert.equal(out.stream, 'stdout');
    assert.equal(err.stream, 'stderr');
    assert.equal(out.revision, 1);
    assert.deepEqual(out.tags, { team: 'core' });
    assert.ok(out.instance.startsWith('fn_') === false && out.instance.length > 4);
    assert.ok(!Number.isNaN(Date.parse(out.time)));
    await eventually(async () => followed.join('').includes(marker), 5000, 'followed line');
    controller.abort();
    await follow;
  });

  test('an HTTP function: method, path, query and body through the gateway, streaming, identity, read-only root', { timeout: 120_000 }, async () => {
    const created = await deploy({ name: 'web', type: 'http', image: images.fixture, env: { VERSION: 'v1' }, uid: 2000, gid: 2001 });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.url, `/fn/${ns}/web/`);
    const hello = await fetch(`${ts.url}/fn/${ns}/web/hello`);
    assert.equal(hello.status, 200);
    assert.equal(await hello.text(), 'hello v1');
    const who = await (await fetch(`${ts.url}/fn/${ns}/web/whoami`)).json() as { uid: number; gid: number };
    assert.deepEqual([who.uid, who.gid], [2000, 2001]);
    const fsCheck = await (await fetch(`${ts.url}/fn/${ns}/web/tmp-write`)).json() as { tmp: string; root: string };
    assert.equal(fsCheck.tmp, 'ok');
    assert.equal(fsCheck.root, 'EROFS');

    // Streaming: the first chunk arrives before the function finished its answer.
    const streamed = await new Promise<{ firstAt: number; endAt: number; text: string }>((resolve, reject) => {
      const started = Date.now();
      http.get(`${ts.url}/fn/${ns}/web/stream`, (response) => {
        let firstAt = 0;
        let text = '';
        response.on('data', (chunk: Buffer) => { if (!firstAt) firstAt = Date.now() - started; text += chunk.toString(); });
        response.on('end', () => resolve({ firstAt, endAt: Date.now() - started, text }));
      }).on('error', reject);
    });
    assert.equal(streamed.text, 'first\nsecond\n');
    assert.ok(streamed.endAt - streamed.firstAt >= 200, `first chunk streamed ahead (${streamed.firstAt} ms vs ${streamed.endAt} ms)`);

    const body = randomBytes(900 * 1024);
    const echoed = await fetch(`${ts.url}/fn/${ns}/web/echo?x=1`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(echoed.status, 200);
    assert.equal(createHash('sha256').update(Buffer.from(await echoed.arrayBuffer())).digest('hex'), createHash('sha256').update(body).digest('hex'));

    const tooBig = await fetch(`${ts.url}/fn/${ns}/web/echo`, { method: 'POST', body: randomBytes(1024 * 1024 + 10) });
    assert.equal(tooBig.status, 413);
    assert.equal(((await tooBig.json()) as { code: string }).code, 'PAYLOAD_TOO_LARGE');
    const eventTooBig = await call('POST', `/api/v1/namespaces/${ns}/functions/echo/invocations`, randomBytes(1024 * 1024 + 10));
    assert.equal(eventTooBig.status, 413);

    // A caller that goes away frees the instance at once (the upstream request is aborted).
    const aborted = http.get(`${ts.url}/fn/${ns}/web/slow?ms=5000`);
    aborted.on('error', () => undefined);
    await eventually(async () => (await call('GET', `/api/v1/namespaces/${ns}/functions/web/instances`)).body.instances[0]?.inFlight === 1, 3000, 'the slow request in flight');
    const abortedAt = Date.now();
    aborted.destroy();
    await eventually(async () => (await call('GET', `/api/v1/namespaces/${ns}/functions/web/instances`)).body.instances[0]?.inFlight === 0, 3000, 'the lease released');
    assert.ok(Date.now() - abortedAt < 2500, 'released long before the function would have answered');

    const wrongKind = await fetch(`${ts.url}/fn/${ns}/echo/`);
    assert.equal(wrongKind.status, 404, 'event functions are not on the HTTP gateway');
    const unknown = await fetch(`${ts.url}/fn/${ns}/nothing/`);
    assert.equal(unknown.status, 404);
  });

  test('a crashing image, an image without a server, a failing /init: the revision fails with the reason and the output', { timeout: 180_000 }, async () => {
    const crash = await deploy({ name: 'crashy', image: images.fixture, env: { MODE: 'crash' } });
    assert.equal(crash.status, 422, crash.text);
    assert.equal(crash.body.status, 'failed');
    const revisions = await call('GET', `/api/v1/namespaces/${ns}/functions/crashy/revisions`);
    const [revision] = revisions.body.revisions;
    assert.equal(revision.status, 'failed');
    assert.match(revision.reason, /exited before it listened on port 8000/);
    assert.ok(revision.output.some((l: string) => l.includes('boom: crashing on purpose')), JSON.stringify(revision.output));
    const call502 = await invoke('crashy', {});
    assert.equal(call502.status, 502);
    assert.equal(call502.body.code, 'FUNCTION_FAILED');
    assert.match(call502.body.message, /exited before it listened/);

    const silent = await deploy({ name: 'silent', image: images.fixture, env: { MODE: 'no-server' } });
    assert.equal(silent.body.status, 'failed');
    const [silentRevision] = (await call('GET', `/api/v1/namespaces/${ns}/functions/silent/revisions`)).body.revisions;
    assert.match(silentRevision.reason, /did not listen on port 8000 within 4 s/);
    assert.ok(silentRevision.output.some((l: string) => l.includes('no server here')));

    const wrongPort = await deploy({ name: 'wrongport', image: images.fixture, env: { MODE: 'wrong-port' } });
    assert.equal(wrongPort.body.status, 'failed');

    const badInit = await deploy({ name: 'badinit', image: images.fixture, env: { MODE: 'init-fails' } });
    assert.equal(badInit.body.status, 'failed');
    assert.match(badInit.body.statusReason, /POST \/init answered 500: init failed: bad config/);

    const noInit = await deploy({ name: 'noinit', image: images.fixture, env: { MODE: 'init-404' } });
    assert.equal(noInit.body.status, 'ready', 'a 404 from /init means the image has none');

    // A failed update keeps the previous revision serving.
    const patched = await call('PATCH', `/api/v1/namespaces/${ns}/functions/noinit?wait=true`, { env: { MODE: 'crash' } });
    assert.equal(patched.body.status, 'ready');
    assert.equal(patched.body.activeRevision, 1);
    assert.equal(patched.body.latestRevision, 2);
    assert.match(patched.body.statusReason, /revision 2 failed/);
    assert.equal((await invoke('noinit', {})).status, 200);
  });

  test('a timeout is a 504 with a clear body; a crash mid-request is a 502 and the next request gets a new instance', { timeout: 120_000 }, async () => {
    assert.equal((await deploy({ name: 'slowpoke', image: images.fixture, timeoutSeconds: 1 })).body.status, 'ready');
    const slow = await invoke('slowpoke', { sleepMs: 3000 });
    assert.equal(slow.status, 504);
    assert.equal(slow.body.code, 'FUNCTION_TIMEOUT');
    assert.match(slow.body.message, /within 1 s/);

    // The crash half on a function with room for the replacement's cold start: its 1 s
    // deadline includes waiting for an instance, which a loaded host can exceed.
    assert.equal((await deploy({ name: 'midcrash', image: images.fixture, timeoutSeconds: 30 })).body.status, 'ready');
    const before = await invoke('midcrash', {});
    const crashed = await invoke('midcrash', { crash: true });
    assert.equal(crashed.status, 502);
    assert.equal(crashed.body.code, 'FUNCTION_FAILED');
    const after = await invoke('midcrash', {});
    assert.equal(after.status, 200, after.text);
    assert.notEqual(after.body.hostname, before.body.hostname, 'a new instance replaced the crashed one');
    assert.equal(after.body.initCalls, 1);
    const logs = await call('GET', `/api/v1/namespaces/${ns}/functions/midcrash/logs`);
    assert.match(logs.text, /instance exited on its own \(code 3\)/);
  });

  test('invalid input is a 400 naming the field; duplicates are 409; unknown images are refused', { timeout: 30_000 }, async () => {
    const badName = await call('POST', `/api/v1/namespaces/${ns}/functions`, { name: '9lives', image: images.fixture });
    assert.equal(badName.status, 400);
    assert.match(badName.body.message, /name/);
    const badType = await call('POST', `/api/v1/namespaces/${ns}/functions`, { name: 'ok', image: images.fixture, type: 'cron' });
    assert.equal(badType.status, 400);
    assert.match(badType.body.message, /type/);
    const unknownKey = await call('POST', `/api/v1/namespaces/${ns}/functions`, { name: 'ok', image: images.fixture, memory: 5 });
    assert.equal(unknownKey.status, 400);
    const minMax = await call('POST', `/api/v1/namespaces/${ns}/functions`, { name: 'ok', image: images.fixture, minInstances: 3, maxInstances: 2 });
    assert.equal(minMax.status, 400);
    const missing = await call('POST', `/api/v1/namespaces/${ns}/functions`, { name: 'ok', image: `${ts.host}/${ns}/nothing:here` });
    assert.equal(missing.status, 400);
    assert.match(missing.body.message, /not in this registry/);
    const dup = await call('POST', `/api/v1/namespaces/${ns}/functions`, { name: 'echo', image: images.fixture });
    assert.equal(dup.status, 409);
    assert.equal((await call('GET', `/api/v1/namespaces/${ns}/functions/ok`)).status, 404);
  });

  test('scaling: a burst against a function at zero is served without failures, then idle instances stop', { timeout: 180_000 }, async () => {
    const created = await deploy({ name: 'burst', type: 'http', image: images.fixture, concurrency: 2, maxInstances: 4, idleSeconds: 2, env: { VERSION: 'b' } });
    assert.equal(created.body.status, 'ready');
    await eventually(async () => (await call('GET', `/api/v1/namespaces/${ns}/functions/burst`)).body.instances === 0, 15_000, 'scale to zero after deploy');
    const results = await Promise.all(Array.from({ length: 40 }, () => fetch(`${ts.url}/fn/${ns}/burst/slow?ms=300`).then(async (r) => ({ status: r.status, text: await r.text() }))));
    assert.deepEqual(results.filter((r) => r.status !== 200), [], 'no failed request');
    const metrics = (await call('GET', `/api/v1/namespaces/${ns}/functions/burst/metrics`)).body;
    assert.ok(metrics.coldStarts >= 1);
    const peak = (await call('GET', `/api/v1/namespaces/${ns}/functions/burst`)).body.instances;
    assert.ok(peak >= 2 && peak <= 4, `scaled out within maxInstances (${peak})`);
    await eventually(async () => (await call('GET', `/api/v1/namespaces/${ns}/functions/burst`)).body.instances === 0, 20_000, 'scale down to zero');

    const warm = await call('PATCH', `/api/v1/namespaces/${ns}/functions/burst?wait=true`, { minInstances: 1 });
    assert.equal(warm.body.activeRevision, 2);
    await sleep(3500);
    assert.equal((await call('GET', `/api/v1/namespaces/${ns}/functions/burst`)).body.instances, 1, 'minInstances stay warm');
  });

  test('a tag pushed again rolls the function with no failed request; rollback is one call', { timeout: 300_000 }, async () => {
    const v1 = await buildFixtureVersion(ts, work, { namespace: ns, tag: 'rolling', version: 'r1' });
    const created = await deploy({ name: 'roller', type: 'http', image: v1.reference, minInstances: 1 });
    assert.equal(created.body.status, 'ready', created.text);
    assert.equal(await (await fetch(`${ts.url}/fn/${ns}/roller/hello`)).text(), 'hello r1');

    let stop = false;
    const seen = new Map<string, number>();
    const failures: string[] = [];
    const load = (async () => {
      while (!stop) {
        const response = await fetch(`${ts.url}/fn/${ns}/roller/hello`).catch((e: Error) => ({ status: 0, text: async () => e.message }));
        const text = await response.text();
        if (response.status !== 200) failures.push(`${response.status} ${text}`);
        else seen.set(text, (seen.get(text) ?? 0) + 1);
      }
    })();
    const v2 = await buildFixtureVersion(ts, work, { namespace: ns, tag: 'rolling', version: 'r2' });
    assert.notEqual(v2.digest, v1.digest);
    await eventually(async () => seen.has('hello r2'), 60_000, 'the new revision to serve');
    await sleep(500);
    stop = true;
    await load;
    assert.deepEqual(failures, [], 'zero failed requests during the roll');
    const fn = (await call('GET', `/api/v1/namespaces/${ns}/functions/roller`)).body;
    assert.equal(fn.activeRevision, 2);
    assert.equal(fn.imageDigest, v2.digest);

    const rolledBack = await call('POST', `/api/v1/namespaces/${ns}/functions/roller/rollback`, { revision: 1 });
    assert.equal(rolledBack.status, 200, rolledBack.text);
    assert.equal(rolledBack.body.activeRevision, 1);
    assert.equal(rolledBack.body.imageDigest, v1.digest);
    assert.equal(await (await fetch(`${ts.url}/fn/${ns}/roller/hello`)).text(), 'hello r1');
    const revisions = (await call('GET', `/api/v1/namespaces/${ns}/functions/roller/revisions`)).body.revisions;
    assert.deepEqual(revisions.map((r: any) => [r.number, r.active]), [[2, false], [1, true]]);
    assert.equal((await call('POST', `/api/v1/namespaces/${ns}/functions/roller/rollback`, { revision: 9 })).status, 404);
  });

  test('async invocations are queued durably, retried, and their results kept', { timeout: 120_000 }, async () => {
    const queued = await invoke('echo', { name: 'later' }, '?mode=async');
    assert.equal(queued.status, 202, queued.text);
    assert.match(queued.body.id, /^inv_/);
    const done = await eventually(async () => {
      const r = await call('GET', `/api/v1/namespaces/${ns}/functions/echo/invocations/${queued.body.id}`);
      return r.body.status === 'succeeded' ? r.body : undefined;
    }, 30_000, 'async invocation');
    const body = JSON.parse(Buffer.from(done.result.body, 'base64').toString('utf8'));
    assert.equal(JSON.parse(body.body).name, 'later');
    assert.equal(body.headers['x-cff-invoke-type'], 'async');
    assert.equal(body.headers['x-cff-request-id'], queued.body.id);

    const failing = await invoke('echo', { envelope: { statusCode: 500, body: 'always broken' } }, '?mode=async');
    const failed = await eventually(async () => {
      const r = await call('GET', `/api/v1/namespaces/${ns}/functions/echo/invocations/${failing.body.id}`);
      return r.body.status === 'failed' ? r.body : undefined;
    }, 60_000, 'async failure after retries');
    assert.equal(failed.attempts, 3);
    assert.match(failed.error, /500/);
    const big = await invoke('echo', randomBytes(65 * 1024), '?mode=async');
    assert.equal(big.status, 413);
  });

  test('deleting a function while it serves: the running request ends cleanly, nothing is left behind', { timeout: 120_000 }, async () => {
    assert.equal((await deploy({ name: 'doomed', type: 'http', image: images.fixture, minInstances: 1 })).body.status, 'ready');
    const before = await leftovers(ts.dataDir, prefix);
    const inFlight = fetch(`${ts.url}/fn/${ns}/doomed/slow?ms=1500`).then(async (r) => ({ status: r.status, text: await r.text() }), (e: Error) => ({ status: 0, text: e.message }));
    await sleep(300);
    const removed = await call('DELETE', `/api/v1/namespaces/${ns}/functions/doomed`);
    assert.equal(removed.status, 204);
    const result = await inFlight;
    assert.equal(result.status, 200, `the running request finished: ${result.text}`);
    assert.equal((await fetch(`${ts.url}/fn/${ns}/doomed/hello`)).status, 404);
    assert.equal((await call('GET', `/api/v1/namespaces/${ns}/functions/doomed`)).status, 404);
    const afterDelete = await leftovers(ts.dataDir, prefix);
    assert.equal(afterDelete.containers.length, before.containers.length - 1, 'its instance is gone');
    assert.equal(afterDelete.namespaces.length, before.namespaces.length - 1, 'its network namespace is gone');
  });
});
