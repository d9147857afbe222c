/**
 * `storage.s3.redirect: true`: blob GETs answer 307 to a presigned s3rver URL that real clients
 * (curl -L, skopeo) follow, Range included; HEAD and small blobs are still answered locally.
 * The server runs with `logs.driver: blobstore` too (its wiring on S3).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killAllChildren, requireCommands, run } from './helpers/commands.js';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { readOciLayout, writeOciLayout } from './helpers/oci-layout.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function pushBlob(ts: TestServer, repository: string, data: Buffer<ArrayBuffer>): Promise<string> {
  const digest = sha256(data);
  const pushed = await fetch(`${ts.url}/v2/${repository}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(pushed.status, 201);
  return digest;
}

describe('registry on S3 with presigned redirects', { timeout: 240_000 }, () => {
  let s3: TestS3Server;
  let ts: TestServer;
  before(async () => {
    s3 = await startS3Server();
    ts = await startTestServer({ config: { storage: { driver: 's3', s3: s3.config('redirect/', { redirect: true, redirectExpiry: 60_000 }) }, logs: { driver: 'blobstore' } } });
  });
  after(async () => {
    killAllChildren();
    await ts?.close();
    await s3?.close();
  });

  test('GET answers 307 to s3rver; curl -L fetches whole and ranged; HEAD and small blobs stay local', { timeout: 60_000 }, async () => {
    await requireCommands({ curl: 'curl' });
    const data = randomBytes(1024 * 1024 + 7);
    const digest = await pushBlob(ts, 's3/redirect', data);
    const url = `${ts.url}/v2/s3/redirect/blobs/${digest}`;

    const redirected = await fetch(url, { redirect: 'manual' });
    assert.equal(redirected.status, 307);
    const location = redirected.headers.get('location')!;
    assert.ok(location.startsWith(`${s3.endpoint}/${s3.bucket}/redirect/blobs/sha256/`), location);
    assert.match(location, /X-Amz-Expires=60/);

    const head = await fetch(url, { method: 'HEAD', redirect: 'manual' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(data.length));

    const work = await tempDir('slipway-redirect-');
    try {
      const whole = path.join(work.path, 'whole');
      await run('curl', ['-sSfL', '-o', whole, url], { timeoutMs: 30_000 });
      assert.ok((await readFile(whole)).equals(data));
      const part = path.join(work.path, 'part');
      const ranged = await run('curl', ['-sSfL', '-r', '1000-1999', '-o', part, '-w', '%{http_code}', url], { timeoutMs: 30_000 });
      assert.equal(ranged.stdout, '206');
      assert.ok((await readFile(part)).equals(data.subarray(1000, 2000)));
    } finally {
      await work.remove();
    }

    const small = randomBytes(1000);
    const smallDigest = await pushBlob(ts, 's3/redirect', small);
    const local = await fetch(`${ts.url}/v2/s3/redirect/blobs/${smallDigest}`, { redirect: 'manual' });
    assert.equal(local.status, 200, 'small blobs are served from memory, not redirected');
    assert.ok(Buffer.from(await local.arrayBuffer()).equals(small));

    const unknown = await fetch(`${ts.url}/v2/s3/redirect/blobs/${sha256(Buffer.from('absent'))}`, { redirect: 'manual' });
    assert.equal(unknown.status, 404, 'no redirect for a blob the repository does not have');
  });

  test('skopeo pulls an image through the redirect', { timeout: 180_000 }, async () => {
    await requireCommands({ skopeo: 'skopeo', tar: 'tar' });
    const work = await tempDir('slipway-redirect-skopeo-');
    try {
      const source = await writeOciLayout(path.join(work.path, 'source'), { tag: 'v1', files: [{ path: 'data.bin', content: randomBytes(600 * 1024) }] });
      const ref = `docker://${ts.host}/s3/redirected:v1`;
      await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${source.dir}:v1`, ref], { timeoutMs: 120_000 });
      await run('skopeo', ['copy', '--src-tls-verify=false', ref, `oci:${path.join(work.path, 'back')}:v1`], { timeoutMs: 120_000 });
      const back = await readOciLayout(path.join(work.path, 'back'), 'v1');
      assert.equal(back.manifest.digest, source.manifest.digest);
    } finally {
      await work.remove();
    }
  });
});
