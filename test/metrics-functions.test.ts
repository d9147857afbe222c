/**
 * Metrics of builds and functions on a real server (buildah, runc): image builds by outcome,
 * function invocations with their status, cold starts and start time, instances by state,
 * and the gateway's fast-path requests counted like every other request.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './helpers/harness.js';
import { requireCommands } from './helpers/commands.js';
import { assertNoLeftovers, instancePrefix } from './helpers/functions.js';
import { createApiClient, type Requester } from './helpers/api-client.js';
import { buildFunctionImages, buildWork, type BuildWork, type FunctionImages } from './helpers/function-images.js';

const ns = 'mfn';

/** Sum of the samples of `name` whose labels include `labels`. */
async function scrape(url: string): Promise<(name: string, labels?: Record<string, string>) => number> {
  const response = await fetch(`${url}/metrics`);
  assert.equal(response.status, 200, 'access control off: anyone may scrape');
  const lines = (await response.text()).split('\n').filter((l) => l && !l.startsWith('#'));
  return (name, labels = {}) => lines
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('metrics of builds and functions', { timeout: 900_000 }, () => {
  let ts: TestServer;
  let call: Requester;
  let images: FunctionImages;
  let prefix: string;
  let work: BuildWork;

  before(async () => {
    await requireCommands({ runc: 'runc', ip: 'iproute2', buildah: 'buildah' });
    work = await buildWork();
    ts = await startTestServer({ config: { builds: work.builds, functions: { enabled: true, startTimeout: '10s' } } });
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

  test('builds, invocations, cold starts, instances and gateway requests', { timeout: 300_000 }, async () => {
    let metric = await scrape(ts.url);
    assert.equal(metric('slipway_builds_total', { outcome: 'succeeded' }), 2, 'the fixture and the example image');
    assert.equal(metric('slipway_build_duration_seconds_count', { outcome: 'succeeded' }), 2);
    assert.equal(metric('slipway_build_queue_wait_seconds_count'), 2);

    const event = await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, { name: 'echo', image: images.fixture });
    assert.equal(event.status, 201, event.text);
    const web = await call('POST', `/api/v1/namespaces/${ns}/functions?wait=true`, { name: 'web', type: 'http', image: images.fixture });
    assert.equal(web.status, 201, web.text);
    for (let i = 0; i < 3; i++) assert.equal((await call('POST', `/api/v1/namespaces/${ns}/functions/echo/invocations`, { i })).status, 200);
    // The first gateway request may go through Fastify, the others take the fast path: all count.
    const gatewayBefore = metric('slipway_http_requests_total', { part: 'gateway', code: '200' });
    for (let i = 0; i < 5; i++) {
      const hello = await fetch(`${ts.url}/fn/${ns}/web/hello`);
      assert.equal(hello.status, 200);
      await hello.text();
    }
    await new Promise((r) => setTimeout(r, 100));

    metric = await scrape(ts.url);
    assert.equal(metric('slipway_http_requests_total', { part: 'gateway', method: 'GET', code: '200' }) - gatewayBefore, 5);
    assert.equal(metric('slipway_http_request_duration_seconds_count', { part: 'gateway' }), 5);
    assert.equal(metric('slipway_http_requests_total', { part: 'functions', method: 'POST', code: '200' }), 3);
    assert.equal(metric('slipway_function_invocations_total', { namespace: ns, function: 'echo', code: '200' }), 3);
    assert.equal(metric('slipway_function_invocations_total', { namespace: ns, function: 'web', code: '200' }), 5);
    assert.equal(metric('slipway_function_invocation_duration_seconds_count', { namespace: ns, function: 'web' }), 5);
    // Each deploy's check start keeps its instance: no request waited for a start.
    assert.equal(metric('slipway_function_cold_starts_total'), 0);
    assert.ok(metric('slipway_function_cold_start_duration_seconds_count') >= 2, 'the deploys started instances');
    assert.equal(metric('slipway_function_instances', { state: 'ready' }), 2);
    assert.equal(metric('slipway_function_gateway_queue_depth'), 0);
    assert.equal(metric('slipway_job_queue_depth', { queue: 'builds', status: 'queued' }), 0);
  });
});
