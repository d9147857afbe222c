/**
 * Failure paths through a fault-injecting wrapper around the real fs driver: storage errors
 * become the spec's error envelope (never a crash), lose nothing acknowledged and leave no
 * visible half-written content; clients that vanish mid-upload leave the registry healthy.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { BlobStore } from '../src/storage/blob-store.js';
import { startTestServer, type TestServer } from './helpers/harness.js';
import { errorCode, pushBlob, pushImage, randomBlob } from './helpers/oci.js';

/** Faults armed by the test: each fires once for the named operation. */
class Faults {
  readonly armed = new Map<string, Error>();
  arm(operation: string, error: Error) { this.armed.set(operation, error); }
  fire(operation: string) {
    const error = this.armed.get(operation);
    if (error) {
      this.armed.delete(operation);
      throw error;
    }
  }
}

function withFaults(store: BlobStore, faults: Faults): BlobStore {
  const uploads = store.uploads;
  return {
    stat: (digest) => store.stat(digest),
    get: async (digest, range) => { faults.fire('get'); return store.get(digest, range); },
    delete: (digest) => store.delete(digest),
    list: () => store.list(),
    uploads: {
      create: async (id) => { faults.fire('create'); return uploads.create(id); },
      append: async (id, source, offset, observe) => { faults.fire('append'); return uploads.append(id, source, offset, observe); },
      truncate: (id, size) => uploads.truncate(id, size),
      size: (id) => uploads.size(id),
      read: (id) => uploads.read(id),
      commit: async (id, digest) => { faults.fire('commit'); return uploads.commit(id, digest); },
      abort: (id) => uploads.abort(id),
      list: () => uploads.list(),
    },
  };
}

function errno(code: string): Error {
  return Object.assign(new Error(`${code}: injected fault`), { code });
}

describe('registry under storage faults', { timeout: 120_000 }, () => {
  const faults = new Faults();
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ wrapStore: (store) => withFaults(store, faults) });
  });
  after(async () => server?.close());

  test('a failed commit (disk full) is a 500 envelope; nothing becomes visible; a retry succeeds', { timeout: 30_000 }, async () => {
    const blob = randomBlob(10_000);
    faults.arm('commit', errno('ENOSPC'));
    const failed = await pushBlob(server.url, 'faults/commit', blob.data);
    assert.equal(failed.status, 500);
    assert.equal(await errorCode(failed), 'UNKNOWN');
    assert.equal((await fetch(`${server.url}/v2/faults/commit/blobs/${blob.digest}`, { method: 'HEAD' })).status, 404);
    const retry = await pushBlob(server.url, 'faults/commit', blob.data);
    assert.equal(retry.status, 201);
    const get = await fetch(`${server.url}/v2/faults/commit/blobs/${blob.digest}`);
    assert.deepEqual(Buffer.from(await get.arrayBuffer()), blob.data);
    assert.deepEqual((await server.server.registry.fsck()).problems, []);
  });

  test('a failed write during PATCH is a 500 envelope and the session can still be read', { timeout: 30_000 }, async () => {
    const start = await fetch(`${server.url}/v2/faults/append/blobs/uploads/`, { method: 'POST' });
    const location = new URL(start.headers.get('location')!, server.url);
    faults.arm('append', errno('EIO'));
    const patch = await fetch(location, { method: 'PATCH', body: 'abc' });
    assert.equal(patch.status, 500);
    assert.equal(await errorCode(patch), 'UNKNOWN');
    const status = await fetch(location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-0');
  });

  test('a failed read is a 500 envelope, not a dropped connection', { timeout: 30_000 }, async () => {
    const blob = randomBlob(500_000);
    await pushBlob(server.url, 'faults/read', blob.data);
    faults.arm('get', errno('EIO'));
    const failed = await fetch(`${server.url}/v2/faults/read/blobs/${blob.digest}`);
    assert.equal(failed.status, 500);
    assert.equal(await errorCode(failed), 'UNKNOWN');
    const ok = await fetch(`${server.url}/v2/faults/read/blobs/${blob.digest}`);
    assert.deepEqual(Buffer.from(await ok.arrayBuffer()), blob.data);
  });

  test('a client that disconnects mid-upload leaves no blob and a usable registry', { timeout: 30_000 }, async () => {
    const data = randomBytes(2 * 1024 * 1024);
    const start = await fetch(`${server.url}/v2/faults/vanish/blobs/uploads/`, { method: 'POST' });
    const location = new URL(start.headers.get('location')!, server.url);
    await new Promise<void>((resolve) => {
      const req = request(location, { method: 'PATCH', headers: { 'Content-Length': String(data.length) } });
      req.on('error', () => resolve());
      req.write(data.subarray(0, 512 * 1024), () => setTimeout(() => { req.destroy(); resolve(); }, 100));
    });
    const status = await fetch(location);
    assert.equal(status.status, 204);
    const received = Number(status.headers.get('range')!.split('-')[1]) + 1;
    assert.ok(received <= 512 * 1024, `at most what was sent is kept (${received})`);
    // The client resumes from what the registry has.
    const rest = data.subarray(received === 1 && status.headers.get('range') === '0-0' ? 0 : received);
    const offset = data.length - rest.length;
    const resume = await fetch(location, { method: 'PATCH', body: new Uint8Array(rest), headers: { 'Content-Range': `${offset}-${data.length - 1}` } });
    assert.equal(resume.status, 202);
    const finish = new URL(location);
    const digest = `sha256:${(await import('node:crypto')).createHash('sha256').update(data).digest('hex')}`;
    finish.searchParams.set('digest', digest);
    assert.equal((await fetch(finish, { method: 'PUT' })).status, 201);
    assert.equal((await fetch(`${server.url}/v2/faults/vanish/blobs/${digest}`, { method: 'HEAD' })).headers.get('content-length'), String(data.length));
  });

  test('a manifest body cut short is not stored', { timeout: 30_000 }, async () => {
    const { manifest } = await pushImage(server.url, 'faults/manifest', 'v1', 1, 10);
    await new Promise<void>((resolve) => {
      const req = request(new URL(`/v2/faults/manifest/manifests/v2`, server.url), {
        method: 'PUT', headers: { 'Content-Type': manifest.mediaType, 'Content-Length': String(manifest.body.length) },
      });
      req.on('error', () => resolve());
      req.write(manifest.body.subarray(0, 20), () => setTimeout(() => { req.destroy(); resolve(); }, 100));
    });
    const get = await fetch(`${server.url}/v2/faults/manifest/manifests/v2`);
    assert.equal(get.status, 404);
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
  });
});
