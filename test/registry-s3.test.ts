/**
 * The registry end to end over the S3 driver (s3rver in this process): a chunked push across
 * the 5 MiB part size, a monolithic push, ranged pulls, skopeo copy in and out, then fsck and GC.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { killAllChildren, requireCommands, run } from './helpers/commands.js';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { readOciLayout, writeOciLayout } from './helpers/oci-layout.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

describe('registry on S3 storage', { timeout: 300_000 }, () => {
  let s3: TestS3Server;
  let ts: TestServer;
  before(async () => {
    s3 = await startS3Server();
    ts = await startTestServer({ config: { storage: { driver: 's3', s3: s3.config('registry/') } } });
  });
  after(async () => {
    killAllChildren();
    await ts?.close();
    await s3?.close();
  });

  test('chunked push across part boundaries, monolithic push, ranged pull', { timeout: 120_000 }, async () => {
    const data = randomBytes(7 * 1024 * 1024 + 99);
    const digest = sha256(data);
    const started = await fetch(`${ts.url}/v2/s3/chunked/blobs/uploads/`, { method: 'POST' });
    assert.equal(started.status, 202);
    let location = new URL(started.headers.get('location')!, ts.url).toString();
    for (const [start, end] of [[0, 3 * 1024 * 1024], [3 * 1024 * 1024, data.length]] as const) {
      const patched = await fetch(location, { method: 'PATCH', body: data.subarray(start, end), headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${end - 1}` } });
      assert.equal(patched.status, 202);
      location = new URL(patched.headers.get('location')!, ts.url).toString();
    }
    const done = await fetch(`${location}${location.includes('?') ? '&' : '?'}digest=${digest}`, { method: 'PUT' });
    assert.equal(done.status, 201);
    const pulled = Buffer.from(await (await fetch(`${ts.url}/v2/s3/chunked/blobs/${digest}`)).arrayBuffer());
    assert.ok(pulled.equals(data));
    const ranged = await fetch(`${ts.url}/v2/s3/chunked/blobs/${digest}`, { headers: { range: 'bytes=5242870-5242889' } });
    assert.equal(ranged.status, 206);
    assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(5242870, 5242890)));

    const small = randomBytes(1000);
    const mono = await fetch(`${ts.url}/v2/s3/mono/blobs/uploads/?digest=${sha256(small)}`, { method: 'POST', body: small, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(mono.status, 201);
    assert.ok(Buffer.from(await (await fetch(`${ts.url}/v2/s3/mono/blobs/${sha256(small)}`)).arrayBuffer()).equals(small));
  });

  test('skopeo copies an image in and back out; fsck is clean and GC runs', { timeout: 180_000 }, async () => {
    await requireCommands({ skopeo: 'skopeo', tar: 'tar' });
    const work = await tempDir('slipway-s3-skopeo-');
    try {
      const source = await writeOciLayout(path.join(work.path, 'source'), { tag: 'v1', files: [{ path: 'data.bin', content: randomBytes(300 * 1024) }] });
      const ref = `docker://${ts.host}/s3/skopeo:v1`;
      await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${source.dir}:v1`, ref], { timeoutMs: 120_000 });
      await run('skopeo', ['copy', '--src-tls-verify=false', ref, `oci:${path.join(work.path, 'back')}:v1`], { timeoutMs: 120_000 });
      const back = await readOciLayout(path.join(work.path, 'back'), 'v1');
      assert.equal(back.manifest.digest, source.manifest.digest);
      const report = await ts.server.registry.fsck();
      assert.deepEqual(report.problems, []);
      await ts.server.registry.gc();
    } finally {
      await work.remove();
    }
  });
});
