/**
 * ImageStore against an in-process Slipway registry with hand-made layers (no buildah):
 * pull, shared blob cache, unpack with whiteouts, corrupted cache detection, gc.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { imageManifest, pushBlob, putManifest, sha256, ociConfigType } from './helpers/oci.js';
import { ImageStore } from '../src/functions/image-store.js';

async function layerFrom(dir: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const stream = tar.c({ gzip: true, cwd: dir, portable: true }, ['.']);
  for await (const c of stream as unknown as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

describe('ImageStore', { timeout: 300_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  before(async () => { ts = await startTestServer(); work = await tempDir(); });
  after(async () => { await ts?.close(); await work?.remove(); });

  test('pull, shared layers, unpack with whiteouts, corruption, gc', { timeout: 300_000 }, async () => {
    const l1dir = path.join(work.path, 'l1');
    await mkdir(path.join(l1dir, 'usr/bin'), { recursive: true });
    await mkdir(path.join(l1dir, 'etc'), { recursive: true });
    await writeFile(path.join(l1dir, 'usr/bin/node'), '#!/bin/sh\n', { mode: 0o755 });
    await writeFile(path.join(l1dir, 'etc/gone'), 'x');
    const l2dir = path.join(work.path, 'l2');
    await mkdir(path.join(l2dir, 'etc'), { recursive: true });
    await writeFile(path.join(l2dir, 'etc/.wh.gone'), '');
    await writeFile(path.join(l2dir, 'etc/new'), 'n');
    const l1 = await layerFrom(l1dir);
    const l2 = await layerFrom(l2dir);
    const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { User: '1003:1003', Cmd: ['node'], Env: ['A=1'] }, rootfs: { type: 'layers', diff_ids: [] } }));
    for (const repo of ['t/base', 't/app']) {
      for (const b of [l1, l2, cfg]) assert.ok((await pushBlob(ts.url, repo, b)).ok);
    }
    const desc = (b: Buffer) => ({ digest: sha256(b), size: b.length });
    const mBase = imageManifest({ ...desc(cfg), mediaType: ociConfigType } as { digest: string; size: number }, [desc(l1)]);
    const mApp = imageManifest({ ...desc(cfg), mediaType: ociConfigType } as { digest: string; size: number }, [desc(l1), desc(l2)]);
    assert.ok((await putManifest(ts.url, 't/base', '1', mBase)).ok);
    assert.ok((await putManifest(ts.url, 't/app', '1', mApp)).ok);

    const store = new ImageStore(path.join(work.path, 'store'));
    const base = await store.pull(`${ts.host}/t/base:1`, { insecure: true });
    assert.equal(base.config.User, '1003:1003');
    const l1path = store.blobPath(sha256(l1));
    const before1 = (await lstat(l1path)).mtimeMs;
    const app = await store.pull(`${ts.host}/t/app:1`, { insecure: true });
    assert.equal((await lstat(l1path)).mtimeMs, before1, 'shared layer downloaded once');

    const [r1, r2] = await Promise.all([store.unpack(app.digest), store.unpack(app.digest)]);
    assert.equal(r1, r2);
    assert.ok((await lstat(path.join(r1, 'usr/bin/node'))).mode & 0o100);
    await assert.rejects(lstat(path.join(r1, 'etc/gone')));
    assert.equal(await readFile(path.join(r1, 'etc/new'), 'utf8'), 'n');
    const rb = await store.unpack(base.digest);
    assert.ok(await lstat(path.join(rb, 'etc/gone')));

    // corrupted cached blob is detected at unpack
    await store.remove(base.digest);
    await writeFile(l1path, 'garbage');
    await assert.rejects(store.unpack(base.digest), /ENOENT|corrupted/);
    await store.pull(`${ts.host}/t/base:1`, { insecure: true }).catch(() => undefined);
    const fresh = new ImageStore(path.join(work.path, 'store2'));
    const b2 = await fresh.pull(`${ts.host}/t/base:1`, { insecure: true });
    await writeFile(fresh.blobPath(sha256(l1)), 'garbage');
    await assert.rejects(fresh.unpack(b2.digest), /corrupted/);

    const res = await store.gc(new Set([app.digest]));
    assert.ok(!res.removedBlobs.includes(sha256(l1)));
  });

  test('pull from an auth-enabled registry via the bearer token flow', { timeout: 300_000 }, async () => {
    const adminPassword = 'admin-secret-Pa55word';
    const auth = { authorization: `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}` };
    const secured = await startTestServer({ config: { auth: { enabled: true, adminPassword } } });
    const dir = await tempDir();
    try {
      const layerDir = path.join(dir.path, 'l');
      await mkdir(layerDir, { recursive: true });
      await writeFile(path.join(layerDir, 'hello'), 'hi');
      const layer = await layerFrom(layerDir);
      const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['x'] }, rootfs: { type: 'layers', diff_ids: [] } }));
      for (const b of [layer, cfg]) assert.ok((await pushBlob(secured.url, 'admin/img', b, sha256(b), auth)).ok);
      const m = imageManifest({ digest: sha256(cfg), size: cfg.length }, [{ digest: sha256(layer), size: layer.length }]);
      const put = await putManifest(secured.url, 'admin/img', '1', m, auth);
      assert.ok(put.ok, `push manifest: ${put.status}`);
      const store = new ImageStore(path.join(dir.path, 'store'));
      await assert.rejects(store.pull(`${secured.host}/admin/img:1`, { insecure: true }));
      const pulled = await store.pull(`${secured.host}/admin/img:1`, { insecure: true, auth: { username: 'admin', password: adminPassword } });
      assert.deepEqual(pulled.config.Cmd, ['x']);
      const root = await store.unpack(pulled.digest);
      assert.equal(await readFile(path.join(root, 'hello'), 'utf8'), 'hi');
    } finally {
      await secured.close();
      await dir.remove();
    }
  });
});
