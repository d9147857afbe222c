/**
 * Quota maxBytes under concurrency, over plain HTTP against a real server on every dialect:
 * concurrent first pushes are admitted one at a time under the namespace's lock, each holding
 * its known length until it commits or goes, so together they never overshoot; the maintained
 * usage row follows commits, mounts, deletes and GC and always equals the exact sum the API
 * answers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { dialects, startTestServer, type TestServer } from './helpers/harness.js';
import { asBody, sha256 } from './helpers/oci.js';

const adminPassword = `admin-${randomBytes(8).toString('hex')}`;
const authorization = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;
const blobSize = 100 * 1024;

async function api(ts: TestServer, method: string, url: string, body?: unknown): Promise<{ status: number; json: any }> {
  const response = await fetch(`${ts.url}${url}`, { method, headers: { authorization, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : undefined };
}

/** A single-POST upload with its Content-Length (what the quota reserves before a byte is stored). */
async function pushMonolithic(ts: TestServer, repository: string, data: Buffer): Promise<{ status: number; message?: string }> {
  const response = await fetch(`${ts.url}/v2/${repository}/blobs/uploads/?digest=${sha256(data)}`, {
    method: 'POST', body: asBody(data), headers: { authorization, 'content-type': 'application/octet-stream' },
  });
  const text = await response.text();
  return { status: response.status, message: text ? (JSON.parse(text) as { errors: Array<{ message: string }> }).errors[0]?.message : undefined };
}

for (const dialect of dialects) {
  describe(`quota maxBytes under concurrency (${dialect.name})`, { timeout: 120_000 }, () => {
    let ts: TestServer;

    before(async () => {
      ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword }, registry: { deleteEnabled: true } } });
      assert.equal((await api(ts, 'POST', '/api/v1/namespaces', { name: 'q' })).status, 201);
      assert.equal((await api(ts, 'PUT', '/api/v1/namespaces/q/registry-policy', { quota: { maxBytes: 3 * blobSize + blobSize / 2 } })).status, 200);
    });

    after(async () => {
      await ts?.close();
    });

    /** The API's exact sum, checked against the maintained row quota checks read. */
    const usage = async (): Promise<{ bytes: number; blobs: number }> => {
      const answer = await api(ts, 'GET', '/api/v1/namespaces/q/registry-usage');
      assert.equal(answer.status, 200);
      const row = await ts.server.registry.db.kysely.selectFrom('registry_usage').select(['bytes', 'blobs']).where('namespace', '=', 'q').executeTakeFirst();
      if (row) assert.deepEqual({ bytes: Number(row.bytes), blobs: Number(row.blobs) }, { bytes: answer.json.bytes, blobs: answer.json.blobs }, 'the maintained usage equals the sum');
      return { bytes: answer.json.bytes, blobs: answer.json.blobs };
    };

    test('eight concurrent first pushes of 100 KiB into 350 KiB: exactly three are stored, the rest refused naming the quota', { timeout: 60_000 }, async () => {
      const blobs = Array.from({ length: 8 }, () => randomBytes(blobSize));
      const results = await Promise.all(blobs.map((data, i) => pushMonolithic(ts, `q/app${i % 2}`, data)));
      const stored = results.filter((r) => r.status === 201);
      const refused = results.filter((r) => r.status === 403);
      assert.equal(stored.length, 3, JSON.stringify(results));
      assert.equal(refused.length, 5);
      for (const r of refused) assert.match(r.message!, /quota maxBytes of namespace "q" is 358400 bytes/);
      assert.deepEqual(await usage(), { bytes: 3 * blobSize, blobs: 3 });
      const sessions = await ts.server.registry.db.kysely.selectFrom('uploads').select('reserved_bytes').where('repository', 'like', 'q/%').execute();
      assert.deepEqual(sessions, [], 'no session (and no reservation) is left');
    });

    test('an upload in progress holds its bytes until it is cancelled; mounts count a blob once; a DELETE and GC give bytes back', { timeout: 60_000 }, async () => {
      // A chunk with a known length reserves it: another push that would not fit beside it is refused.
      const start = await fetch(`${ts.url}/v2/q/app0/blobs/uploads/`, { method: 'POST', headers: { authorization } });
      assert.equal(start.status, 202);
      const session = new URL(start.headers.get('location')!, ts.url);
      const chunk = randomBytes(blobSize / 4);
      const patched = await fetch(session, { method: 'PATCH', body: asBody(chunk), headers: { authorization, 'content-type': 'application/octet-stream' } });
      assert.equal(patched.status, 202);
      const beside = await pushMonolithic(ts, 'q/app1', randomBytes(blobSize / 2));
      assert.equal(beside.status, 403);
      assert.match(beside.message!, /25600 are reserved by uploads in progress/);
      assert.equal((await fetch(session, { method: 'DELETE', headers: { authorization } })).status, 204);
      assert.equal((await pushMonolithic(ts, 'q/app1', randomBytes(blobSize / 2 - 1))).status, 201, 'the reservation went with the session');
      const afterSmall = await usage();
      assert.equal(afterSmall.bytes, 3 * blobSize + blobSize / 2 - 1);

      // A mount into another repository of the namespace costs nothing.
      const linked = await ts.server.registry.db.kysely.selectFrom('repository_blobs').select('digest').where('repository', '=', 'q/app0').execute();
      const digest = linked[0]!.digest;
      const mount = await fetch(`${ts.url}/v2/q/copy/blobs/uploads/?mount=${digest}&from=q/app0`, { method: 'POST', headers: { authorization } });
      assert.equal(mount.status, 201);
      assert.deepEqual(await usage(), afterSmall);

      // Unlinking from one repository keeps it counted; from the last one, it is given back.
      assert.equal((await fetch(`${ts.url}/v2/q/copy/blobs/${digest}`, { method: 'DELETE', headers: { authorization } })).status, 202);
      assert.deepEqual(await usage(), afterSmall);
      assert.equal((await fetch(`${ts.url}/v2/q/app0/blobs/${digest}`, { method: 'DELETE', headers: { authorization } })).status, 202);
      const size = (await ts.server.registry.db.kysely.selectFrom('blobs').select('size').where('digest', '=', digest).executeTakeFirstOrThrow()).size;
      assert.deepEqual(await usage(), { bytes: afterSmall.bytes - size, blobs: afterSmall.blobs - 1 });

      // GC unlinks what no manifest references (all of it here, once the grace period is past).
      await ts.server.registry.gc(Date.now() + 365 * 24 * 3600_000);
      assert.deepEqual(await usage(), { bytes: 0, blobs: 0 });
      assert.equal((await pushMonolithic(ts, 'q/app0', randomBytes(3 * blobSize))).status, 201);
      assert.deepEqual(await usage(), { bytes: 3 * blobSize, blobs: 1 });
    });
  });
}
