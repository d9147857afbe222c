/**
 * Request ids (issue 12.3): every answer carries X-Request-Id — the caller's when sane, a fresh
 * UUID otherwise — on /v2, /api, /fn and the server's own endpoints, and the request's log
 * lines carry the same id.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from './helpers/harness.js';

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('X-Request-Id', { timeout: 120_000 }, () => {
  let server: TestServer;
  const logs: string[] = [];

  before(async () => {
    server = await startTestServer({ config: { log: { level: 'info', requests: true }, functions: { enabled: true } }, logSink: logs, logLevel: 'info' });
  });
  after(async () => server?.close());

  const get = (path: string, id?: string) => fetch(`${server.url}${path}`, { headers: id === undefined ? {} : { 'x-request-id': id } });

  it('echoes a sane id the caller sent, on every surface', async () => {
    for (const path of ['/v2/', '/api/v1/namespaces', '/fn/nobody/nothing/', '/healthz', '/no/such/route']) {
      const id = `trace-${path.length}:abc.DEF_1`;
      const answer = await get(path, id);
      await answer.arrayBuffer();
      assert.equal(answer.headers.get('x-request-id'), id, path);
    }
  });

  it('generates a UUID when none is sent, a new one per request', async () => {
    const first = await get('/v2/');
    const second = await get('/v2/');
    await first.arrayBuffer();
    await second.arrayBuffer();
    assert.match(first.headers.get('x-request-id') ?? '', uuid);
    assert.match(second.headers.get('x-request-id') ?? '', uuid);
    assert.notEqual(first.headers.get('x-request-id'), second.headers.get('x-request-id'));
  });

  it('replaces an id that is too long or has characters outside [A-Za-z0-9._:-]', async () => {
    for (const offered of ['x'.repeat(129), 'has space', 'semi;colon', 'quote"d', 'ünïcode']) {
      const answer = await fetch(`${server.url}/api/v1/namespaces`, { headers: { 'x-request-id': encodeURIComponent(offered) === offered ? offered : offered.replace(/[^\x20-\x7e]/g, '?') } });
      await answer.arrayBuffer();
      const id = answer.headers.get('x-request-id') ?? '';
      assert.match(id, uuid, `offered ${JSON.stringify(offered)}`);
    }
  });

  it("puts the id in the request's log lines", async () => {
    const id = 'log-correlation-42';
    const answer = await get('/api/v1/namespaces', id);
    await answer.arrayBuffer();
    const lines = logs.map((line) => JSON.parse(line) as { reqId?: string; msg?: string }).filter((line) => line.reqId === id);
    assert.ok(lines.length >= 2, `request and response lines carry reqId ${id}: ${JSON.stringify(lines)}`);
  });
});
