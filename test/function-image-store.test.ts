/**
 * ImageStore against an in-process Slipway registry with hand-made layers (no buildah):
 * pull, shared blob cache, unpack with whiteouts, corrupted cache detection, gc; and the layer
 * cache (each layer extracted once and shared through hardlinks, whiteouts and opaque folders,
 * a corrupted blob refused, a crashed extraction recovered, no mounts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { imageManifest, pushBlob, putManifest, sha256, ociConfigType } from './helpers/oci.js';
import { ImageStore, type ImageSource } from '../src/functions/image-store.js';

async function layerFrom(dir: string, entries = ['.']): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const stream = tar.c({ gzip: true, cwd: dir, portable: true }, entries);
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

  /** An in-memory source: blobs by digest, manifests by tag (no registry needed). */
  function memorySource(): ImageSource & { add(tag: string, layers: Buffer[]): void } {
    const blobs = new Map<string, Buffer>();
    const manifests = new Map<string, Buffer>();
    const cfg = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['x'] }, rootfs: { type: 'layers', diff_ids: [] } }));
    blobs.set(sha256(cfg), cfg);
    return {
      add(tag, layers) {
        for (const l of layers) blobs.set(sha256(l), l);
        manifests.set(tag, imageManifest({ digest: sha256(cfg), size: cfg.length }, layers.map((l) => ({ digest: sha256(l), size: l.length }))).body);
      },
      async get(part) {
        const [kind, ref] = part.split('/') as [string, string];
        const body = kind === 'manifests' ? manifests.get(ref) : blobs.get(ref);
        if (!body) throw new Error(`not found: ${part}`);
        return new Response(new Uint8Array(body), { headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
      },
    };
  }

  async function mountsUnder(dir: string): Promise<string[]> {
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    return info.split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(dir));
  }

  test('layers: extracted once and shared, whiteouts and opaque folders, corruption refused, crash recovered', { timeout: 120_000 }, async () => {
    const dir = await tempDir();
    try {
      const outside = path.join(dir.path, 'outside');
      await mkdir(outside);
      await writeFile(path.join(outside, 'victim'), 'must survive');
      // base: files, a folder that gets an opaque whiteout, a folder removed whole, a symlink out of the root
      const b = path.join(dir.path, 'base');
      for (const d of ['etc', 'opt/a/sub', 'var/lib', 'bin']) await mkdir(path.join(b, d), { recursive: true });
      await writeFile(path.join(b, 'bin/tool'), '#!/bin/sh\n', { mode: 0o755 });
      await writeFile(path.join(b, 'etc/gone'), 'g');
      await writeFile(path.join(b, 'etc/keep'), 'k');
      await writeFile(path.join(b, 'opt/a/x'), 'x');
      await writeFile(path.join(b, 'opt/a/sub/y'), 'y');
      await writeFile(path.join(b, 'var/lib/z'), 'z');
      await writeFile(path.join(b, 'was-file'), 'f');
      await symlink(outside, path.join(b, 'esc'));
      const base = await layerFrom(b);
      // app 1: whiteouts, an opaque folder with new content, a file replaced by a folder, a
      // whiteout through the symlink (must not leave the root)
      const a1 = path.join(dir.path, 'app1');
      for (const d of ['etc', 'opt/a', 'was-file', 'esc']) await mkdir(path.join(a1, d), { recursive: true });
      await writeFile(path.join(a1, 'etc/.wh.gone'), '');
      await writeFile(path.join(a1, '.wh.var'), '');
      await writeFile(path.join(a1, 'opt/a/.wh..wh..opq'), '');
      await writeFile(path.join(a1, 'opt/a/new'), 'n');
      await writeFile(path.join(a1, 'was-file/inside'), 'i');
      await writeFile(path.join(a1, 'esc/.wh.victim'), '');
      await writeFile(path.join(a1, 'server.js'), 'v1');
      const app1 = await layerFrom(a1, ['etc/.wh.gone', '.wh.var', 'opt/a', 'was-file', 'esc/.wh.victim', 'server.js']);
      const a2 = path.join(dir.path, 'app2');
      await mkdir(a2);
      await writeFile(path.join(a2, 'server.js'), 'v2');
      const app2 = await layerFrom(a2, ['server.js']);

      const src = memorySource();
      src.add('base', [base]);
      src.add('one', [base, app1]);
      src.add('two', [base, app2]);
      const storeDir = path.join(dir.path, 'store');
      const store = new ImageStore(storeDir);
      const one = await store.pull('local/t/app:one', { source: src });
      const two = await store.pull('local/t/app:two', { source: src });
      const [r1, r2] = await Promise.all([store.unpack(one.digest), store.unpack(two.digest)]);
      assert.equal(store.layersExtracted, 3, 'base, app1 and app2 layers, the shared base once');
      const baseLayer = store.layerPath(sha256(base));
      const baseIno = (await lstat(baseLayer)).ino;
      const tool = await lstat(path.join(baseLayer, 'tree/bin/tool'));
      assert.equal((await lstat(path.join(r1, 'bin/tool'))).ino, tool.ino, 'image one links the base layer file');
      assert.equal((await lstat(path.join(r2, 'bin/tool'))).ino, tool.ino, 'image two links the same file');
      assert.ok((await lstat(path.join(r2, 'bin/tool'))).mode & 0o100);
      assert.equal(await readFile(path.join(r1, 'server.js'), 'utf8'), 'v1');
      assert.equal(await readFile(path.join(r2, 'server.js'), 'utf8'), 'v2');

      // whiteouts and opaque folders (image one); the base image is untouched
      await assert.rejects(lstat(path.join(r1, 'etc/gone')));
      assert.equal(await readFile(path.join(r1, 'etc/keep'), 'utf8'), 'k');
      await assert.rejects(lstat(path.join(r1, 'var')));
      assert.deepEqual((await readdir(path.join(r1, 'opt/a'))).sort(), ['new']);
      assert.equal(await readFile(path.join(r1, 'was-file/inside'), 'utf8'), 'i');
      assert.ok((await lstat(path.join(r1, 'esc'))).isSymbolicLink());
      assert.equal(await readFile(path.join(outside, 'victim'), 'utf8'), 'must survive', 'a whiteout never follows a symlink out of the root');
      assert.deepEqual(await readdir(path.join(store.layerPath(sha256(app1)), 'tree/opt/a')), ['new'], 'no whiteout files in the layer tree');
      const rb = await store.unpack((await store.pull('local/t/app:base', { source: src })).digest);
      assert.equal(store.layersExtracted, 3, 'the base image reuses its layer');
      assert.equal(await readFile(path.join(rb, 'etc/gone'), 'utf8'), 'g');
      assert.equal(await readFile(path.join(rb, 'var/lib/z'), 'utf8'), 'z');
      assert.deepEqual((await readdir(path.join(rb, 'opt/a'))).sort(), ['sub', 'x']);
      assert.equal((await lstat(baseLayer)).ino, baseIno, 'the base layer folder was not remade');

      // a new store on the same folder (a restart) reuses the layers
      const again = new ImageStore(storeDir);
      await again.remove(two.digest);
      const two2 = await again.pull('local/t/app:two', { source: src });
      await again.unpack(two2.digest);
      assert.equal(again.layersExtracted, 0);

      // a corrupted blob is refused and leaves no layer, whether gunzip notices or only the hash does
      const bad = new ImageStore(path.join(dir.path, 'bad'));
      const badOne = await bad.pull('local/t/app:one', { source: src });
      await writeFile(bad.blobPath(sha256(app1)), 'garbage');
      await assert.rejects(bad.unpack(badOne.digest), /corrupted/);
      await writeFile(bad.blobPath(sha256(app1)), app2); // a valid layer, but not this digest
      await assert.rejects(bad.unpack(badOne.digest), /corrupted/);
      const layerNames = await readdir(path.join(dir.path, 'bad', 'layers'));
      assert.ok(!layerNames.some((n) => n.startsWith(sha256(app1).slice(7))), `no folder for the refused layer: ${layerNames.join(', ')}`);
      await assert.rejects(lstat(bad.rootfsPath(badOne.digest)));
      assert.deepEqual(await readdir(path.join(dir.path, 'bad', 'rootfs')).catch(() => []), []);

      // a crash mid-extraction leaves temp folders: the next store removes them and extracts again
      const crashDir = path.join(dir.path, 'crash');
      const crashed = new ImageStore(crashDir);
      const c1 = await crashed.pull('local/t/app:one', { source: src });
      const partial = `${crashed.layerPath(sha256(base))}.tmp-deadbeef0001`;
      await mkdir(path.join(partial, 'tree/bin'), { recursive: true });
      await writeFile(path.join(partial, 'tree/bin/tool'), 'half');
      const partialRoot = `${crashed.rootfsPath(c1.digest)}.tmp-deadbeef0002`;
      await mkdir(partialRoot, { recursive: true });
      const restarted = new ImageStore(crashDir);
      const rc = await restarted.unpack(c1.digest);
      assert.equal(restarted.layersExtracted, 2);
      assert.equal(await readFile(path.join(rc, 'bin/tool'), 'utf8'), '#!/bin/sh\n');
      assert.deepEqual((await readdir(path.join(crashDir, 'layers'))).filter((n) => n.includes('.tmp-')), []);
      assert.deepEqual((await readdir(path.join(crashDir, 'rootfs'))).filter((n) => n.includes('.tmp-')), []);

      // gc drops the layers of images no longer kept
      const res = await store.gc(new Set([one.digest]));
      assert.ok(res.removedBlobs.includes(sha256(app2)));
      await assert.rejects(lstat(store.layerPath(sha256(app2))));
      assert.ok(await lstat(store.layerPath(sha256(base))));
      assert.deepEqual(await mountsUnder(dir.path), [], 'image roots are plain folders: no mounts');
    } finally {
      await dir.remove();
    }
  });
});
