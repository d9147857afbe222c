/**
 * GET /metrics on a real server: counters move with the right labels after real registry and
 * API requests; who may scrape; docs/metrics.md and the Grafana example agree with what the
 * server exports; no label value carries a tag, digest or repository name.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config/config.js';
import { partOf } from '../src/metrics/http-metrics.js';
import { dialects, startTestServer, type TestServer } from './helpers/harness.js';
import { pushImage } from './helpers/oci.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const adminPassword = 'admin-secret-Pa55word';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const admin = basic('admin', adminPassword);
const tag = 'v9.8.7-metrics';

interface Sample { name: string; labels: Record<string, string>; value: number }

/** The samples and the `# TYPE` names of a text exposition. */
function parse(text: string): { samples: Sample[]; names: Set<string> } {
  const samples: Sample[] = [];
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type) names.add(type[1]!);
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[label[1]!] = label[2]!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return { samples, names };
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);
}

/** Metric names of docs/metrics.md's table (`slipway_process_*` rows are prefixes). */
async function documentedNames(): Promise<string[]> {
  const text = await readFile(path.join(repo, 'docs', 'metrics.md'), 'utf8');
  return [...text.matchAll(/^\| `(slipway_[a-z0-9_*]+)` \|/gm)].map((m) => m[1]!);
}

const covered = (name: string, documented: string[]) => documented.some((d) => (d.endsWith('*') ? name.startsWith(d.slice(0, -1)) : d === name));

test('the part label comes from the route pattern', () => {
  assert.equal(partOf('/v2/*'), 'registry');
  assert.equal(partOf('/v2/'), 'registry');
  assert.equal(partOf('/api/v1/namespaces/:ns/functions'), 'functions');
  assert.equal(partOf('/api/v1/namespaces/:ns/functions/:name/invoke'), 'functions');
  assert.equal(partOf('/fn/:ns/:name/*'), 'gateway');
  assert.equal(partOf('/api/v1/namespaces/:ns/builds/:id'), 'builds');
  assert.equal(partOf('/api/v1/keys'), 'auth');
  assert.equal(partOf('/metrics'), 'server');
  assert.equal(partOf(undefined), 'unmatched');
});

test('metrics.public: config key and SLIPWAY_METRICS_PUBLIC', () => {
  assert.equal(loadConfig({}).metrics.public, false);
  assert.equal(loadConfig({ env: { SLIPWAY_METRICS_PUBLIC: 'true' } }).metrics.public, true);
  assert.equal(loadConfig({ env: { SLIPWAY_METRICS_PUBLIC: 'off' } }).metrics.public, false);
  assert.throws(() => loadConfig({ flags: { metrics: { public: true, other: 1 } as never } }), /unknown key metrics.other/);
});

for (const dialect of dialects) {
  describe(`GET /metrics (${dialect.name})`, { timeout: 120_000 }, () => {
    let ts: TestServer;
    const scrape = async (auth?: string) => {
      const response = await fetch(`${ts.url}/metrics`, { headers: auth ? { authorization: auth } : {} });
      assert.equal(response.status, 200, await response.clone().text());
      return parse(await response.text());
    };

    before(async () => {
      ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword } } });
      const created = await fetch(`${ts.url}/api/v1/namespaces`, { method: 'POST', headers: { authorization: admin, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'team' }) });
      assert.equal(created.status, 201);
    });
    after(async () => {
      await ts?.close();
    });

    test('registry pushes and pulls, API calls and 404s move the counters with bounded labels', { timeout: 60_000 }, async () => {
      const before = (await scrape(admin)).samples;
      const { blobs } = await pushImage(ts.url, 'team/app', tag, 2, 4096, { authorization: admin });
      const pulled = await fetch(`${ts.url}/v2/team/app/blobs/${blobs[1]!.digest}`, { headers: { authorization: admin } });
      assert.equal(pulled.status, 200);
      assert.equal((await pulled.arrayBuffer()).byteLength, 4096);
      assert.equal((await fetch(`${ts.url}/api/v1/namespaces`, { headers: { authorization: admin } })).status, 200);
      assert.equal((await fetch(`${ts.url}/api/v1/no-such-thing`, { headers: { authorization: admin } })).status, 404);
      await ts.server.registry.gc();

      const { samples } = await scrape(admin);
      const moved = (name: string, labels: Record<string, string> = {}) => value(samples, name, labels) - value(before, name, labels);
      assert.equal(moved('slipway_http_requests_total', { part: 'registry', method: 'PUT', code: '201' }), 4, 'three blobs and a manifest');
      assert.equal(moved('slipway_http_requests_total', { part: 'registry', method: 'POST', code: '202' }), 3);
      assert.equal(moved('slipway_http_requests_total', { part: 'registry', method: 'GET', code: '200' }), 1);
      assert.equal(moved('slipway_http_requests_total', { part: 'auth', method: 'GET', code: '200' }), 1);
      assert.equal(moved('slipway_http_requests_total', { part: 'unmatched', method: 'GET', code: '404' }), 1);
      assert.ok(moved('slipway_http_request_duration_seconds_count', { part: 'registry' }) >= 8);
      const pushed = blobs.reduce((sum, b) => sum + b.data.length, 0);
      assert.equal(moved('slipway_registry_bytes_received_total'), pushed);
      assert.equal(moved('slipway_registry_bytes_sent_total'), 4096);
      assert.equal(moved('slipway_registry_gc_runs_total', { outcome: 'ok' }), 1);
      assert.equal(moved('slipway_registry_gc_duration_seconds_count'), 1);
      assert.equal(value(samples, 'slipway_registry_uploads_in_progress'), 0);
      assert.ok(samples.some((s) => s.name === 'slipway_process_cpu_seconds_total'));
      // No label value names what users push: a tag, a digest, a repository, a path.
      for (const sample of samples) {
        for (const [label, text] of Object.entries(sample.labels)) {
          assert.doesNotMatch(text, /sha256|[0-9a-f]{32}|team\/app|\/v2\/|v9\.8\.7/, `${sample.name}{${label}="${text}"}`);
        }
      }
    });

    test('upload sessions in progress and the job queue are read at scrape time', { timeout: 30_000 }, async () => {
      const start = await fetch(`${ts.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: { authorization: admin } });
      assert.equal(start.status, 202);
      const { samples, names } = await scrape(admin);
      assert.equal(value(samples, 'slipway_registry_uploads_in_progress'), 1);
      assert.ok(names.has('slipway_job_queue_depth'));
      assert.equal((await fetch(new URL(start.headers.get('location')!, ts.url), { method: 'DELETE', headers: { authorization: admin } })).status, 204);
    });

    test('who may scrape: admins by password or a metrics key; not anonymous, not other keys', { timeout: 30_000 }, async () => {
      const anonymous = await fetch(`${ts.url}/metrics`);
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic /);
      const key = async (auth: string, scopes: string[]) => fetch(`${ts.url}/api/v1/keys`, { method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: `k-${scopes.join('-')}`, scopes }) });
      const metricsKey = (await (await key(admin, ['metrics'])).json()) as { key: string };
      const pullKey = (await (await key(admin, ['pull'])).json()) as { key: string };
      assert.equal((await scrape(`Bearer ${metricsKey.key}`)).names.has('slipway_http_requests_total'), true);
      assert.equal((await fetch(`${ts.url}/metrics`, { headers: { authorization: `Bearer ${pullKey.key}` } })).status, 403);
      // A metrics key opens neither the API nor the registry.
      assert.equal((await fetch(`${ts.url}/api/v1/namespaces`, { headers: { authorization: `Bearer ${metricsKey.key}` } })).status, 403);
      // Users who are not admins neither scrape nor make metrics keys.
      const user = await fetch(`${ts.url}/api/v1/users`, { method: 'POST', headers: { authorization: admin, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'dave', password: 'dave-password-1' }) });
      assert.equal(user.status, 201);
      const dave = basic('dave', 'dave-password-1');
      assert.equal((await fetch(`${ts.url}/metrics`, { headers: { authorization: dave } })).status, 403);
      assert.equal((await key(dave, ['metrics'])).status, 403);
      assert.equal((await fetch(`${ts.url}/metrics`, { headers: { authorization: basic('admin', 'wrong-password') } })).status, 401);
    });

    test('webhook deliveries are counted by outcome', { timeout: 30_000 }, async () => {
      const receiver = http.createServer((req, res) => {
        req.resume();
        req.on('end', () => res.writeHead(204).end());
      });
      await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
      try {
        const port = (receiver.address() as AddressInfo).port;
        const json = { authorization: admin, 'content-type': 'application/json' };
        const hook = await fetch(`${ts.url}/api/v1/namespaces/team/webhooks`, { method: 'POST', headers: json, body: JSON.stringify({ url: `http://127.0.0.1:${port}/hook`, events: ['*'] }) });
        assert.equal(hook.status, 201, await hook.clone().text());
        const { id } = (await hook.json()) as { id: string };
        const before = value((await scrape(admin)).samples, 'slipway_event_webhook_deliveries_total', { outcome: 'delivered' });
        assert.equal((await fetch(`${ts.url}/api/v1/namespaces/team/webhooks/${id}/ping`, { method: 'POST', headers: { authorization: admin } })).status, 202);
        const until = Date.now() + 20_000;
        let delivered = before;
        while (delivered === before && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 100));
          delivered = value((await scrape(admin)).samples, 'slipway_event_webhook_deliveries_total', { outcome: 'delivered' });
        }
        assert.equal(delivered - before, 1);
        assert.ok(value((await scrape(admin)).samples, 'slipway_http_requests_total', { part: 'events', method: 'POST', code: '202' }) >= 1);
      } finally {
        await new Promise((resolve) => receiver.close(resolve));
      }
    });

    test('pipeline runs, their stages and queue wait', { timeout: 30_000 }, async () => {
      const json = { authorization: admin, 'content-type': 'application/json' };
      const base = `${ts.url}/api/v1/namespaces/team/pipelines`;
      const created = await fetch(base, { method: 'POST', headers: json, body: JSON.stringify({ name: 'pause', stages: [{ name: 'nap', type: 'wait', duration: '1s' }] }) });
      assert.equal(created.status, 201, await created.clone().text());
      const run = await fetch(`${base}/pause/runs`, { method: 'POST', headers: json, body: '{}' });
      assert.equal(run.status, 201, await run.clone().text());
      const { number } = (await run.json()) as { number: number };
      const until = Date.now() + 20_000;
      let status = '';
      while (status !== 'succeeded' && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 200));
        status = ((await (await fetch(`${base}/pause/runs/${number}`, { headers: { authorization: admin } })).json()) as { status: string }).status;
      }
      assert.equal(status, 'succeeded');
      const { samples } = await scrape(admin);
      assert.equal(value(samples, 'slipway_pipeline_runs_total', { outcome: 'succeeded' }), 1);
      assert.equal(value(samples, 'slipway_pipeline_stage_duration_seconds_count', { type: 'wait', outcome: 'succeeded' }), 1);
      assert.ok(value(samples, 'slipway_pipeline_stage_duration_seconds_sum', { type: 'wait' }) >= 0.9);
      assert.equal(value(samples, 'slipway_pipeline_queue_wait_seconds_count'), 1);
      assert.ok(value(samples, 'slipway_http_requests_total', { part: 'pipelines', method: 'POST', code: '201' }) >= 2);
    });

    test('docs/metrics.md lists exactly the metrics the server exports', { timeout: 30_000 }, async () => {
      const { names } = await scrape(admin);
      const documented = await documentedNames();
      const undocumented = [...names].filter((name) => !covered(name, documented));
      assert.deepEqual(undocumented, [], 'exported but missing from docs/metrics.md');
      const missing = documented.filter((d) => (d.endsWith('*') ? ![...names].some((n) => n.startsWith(d.slice(0, -1))) : !names.has(d)));
      assert.deepEqual(missing, [], 'in docs/metrics.md but not exported');
    });

    test('the Grafana example only queries exported metrics', { timeout: 30_000 }, async () => {
      const { names } = await scrape(admin);
      const dashboard = JSON.parse(await readFile(path.join(repo, 'examples', 'grafana', 'slipway.json'), 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
      const used = new Set<string>();
      for (const panel of dashboard.panels) for (const target of panel.targets) for (const m of target.expr.matchAll(/\bslipway_\w+/g)) used.add(m[0]);
      assert.ok(used.size >= 20);
      const unknown = [...used].filter((n) => !names.has(n) && !names.has(n.replace(/_(bucket|sum|count)$/, '')));
      assert.deepEqual(unknown, []);
    });
  });
}

describe('GET /metrics with metrics.public', { timeout: 60_000 }, () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword }, metrics: { public: true } } });
  });
  after(async () => {
    await ts?.close();
  });

  test('anyone may scrape', { timeout: 30_000 }, async () => {
    const response = await fetch(`${ts.url}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(await response.text(), /^# HELP slipway_/m);
  });
});
