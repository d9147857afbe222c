/**
 * Where uploaded build contexts wait for their worker (src/builds/context-store.ts): the
 * `shared` kind over the S3 driver (s3rver), two stores with their own work folders standing in
 * for two replicas — what one publishes the other fetches, with the upload's checks; a missing
 * object is a clear error; removal leaves no objects; a git build's uploaded Dockerfile crosses
 * over. The `local` kind keeps today's folder-only behaviour. Whole builds across two replica
 * processes: test/replicas-builds.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ContextGoneError, createLocalContextStore, createSharedContextStore, type BuildContextStore } from '../src/builds/context-store.js';
import { ContextError } from '../src/builds/context-tarball.js';
import { tempDir } from './helpers/harness.js';
import { openS3BlobStoreUnderTest } from './helpers/s3-server.js';

const timeout = 60_000;
const mebibyte = 1024 * 1024;

async function exists(file: string): Promise<boolean> {
  return stat(file).then(() => true, () => false);
}

describe('shared build contexts (s3rver)', () => {
  let s3: Awaited<ReturnType<typeof openS3BlobStoreUnderTest>>;
  let work: Awaited<ReturnType<typeof tempDir>>;
  let a: BuildContextStore;
  let b: BuildContextStore;
  const contextObjects = async () => (await s3.files()).filter((key) => key.includes('build-contexts/'));

  before(async () => {
    s3 = await openS3BlobStoreUnderTest();
    work = await tempDir('slipway-context-store-');
    a = createSharedContextStore({ workDir: path.join(work.path, 'a'), maxContextBytes: 64 * mebibyte }, s3.store.objects);
    b = createSharedContextStore({ workDir: path.join(work.path, 'b'), maxContextBytes: 64 * mebibyte }, s3.store.objects);
  });
  after(async () => {
    await s3.close();
    await work.remove();
  });

  test('published on one side, fetched whole on the other (links and modes kept); removal leaves no objects', { timeout }, async () => {
    const id = 'b_upload1';
    const dir = a.dir(id);
    await mkdir(path.join(dir, 'src', 'deep'), { recursive: true });
    const big = randomBytes(6 * mebibyte); // past one 5 MiB part: a multipart upload
    await writeFile(path.join(dir, '.slipway.Dockerfile'), 'FROM scratch\nCOPY . /\n');
    await writeFile(path.join(dir, 'src', 'deep', 'big.bin'), big);
    await writeFile(path.join(dir, 'run.sh'), '#!/bin/sh\necho hi\n');
    await chmod(path.join(dir, 'run.sh'), 0o755);
    await symlink('src/deep/big.bin', path.join(dir, 'link'));
    await a.publish(id);
    assert.equal(await exists(dir), false, 'the receiving side keeps no copy another replica would never remove');
    assert.deepEqual(await contextObjects(), ['suite/objects/build-contexts/b_upload1.tar']);

    const fetched = await b.prepare(id);
    assert.equal(fetched, b.dir(id));
    assert.equal(await readFile(path.join(fetched, '.slipway.Dockerfile'), 'utf8'), 'FROM scratch\nCOPY . /\n');
    assert.ok((await readFile(path.join(fetched, 'src', 'deep', 'big.bin'))).equals(big));
    assert.equal((await stat(path.join(fetched, 'run.sh'))).mode & 0o777, 0o755);
    assert.equal(await readlink(path.join(fetched, 'link')), 'src/deep/big.bin');
    assert.equal(await b.prepare(id), fetched, 'a folder already here is used as it is');
    assert.deepEqual((await readdir(path.dirname(fetched))).filter((name) => name.startsWith('.fetch-')), [], 'no fetch leftovers');

    await b.remove(id);
    assert.equal(await exists(fetched), false);
    assert.deepEqual(await contextObjects(), []);
    await assert.rejects(b.prepare(id), ContextGoneError, 'after the build ended, the context is gone everywhere');
  });

  test('a context that is nowhere fails with a clear message', { timeout }, async () => {
    await assert.rejects(b.prepare('b_never'), (error: unknown) => error instanceof ContextGoneError
      && /the uploaded build context is gone/.test(error.message));
    assert.equal(await b.uploadedDockerfile('b_never'), undefined);
  });

  test('a git build\'s uploaded Dockerfile reaches the other side; there is no context to pack', { timeout }, async () => {
    const id = 'b_git1';
    await mkdir(a.dir(id), { recursive: true });
    await writeFile(`${a.dir(id)}.dockerfile`, 'FROM scratch\nCOPY hello.txt /\n');
    await a.publish(id);
    assert.deepEqual(await contextObjects(), ['suite/objects/build-contexts/b_git1.dockerfile']);
    assert.equal(await exists(`${a.dir(id)}.dockerfile`), false);
    assert.equal((await b.uploadedDockerfile(id))?.toString(), 'FROM scratch\nCOPY hello.txt /\n');
    await b.remove(id);
    assert.deepEqual(await contextObjects(), []);
    assert.equal(await b.uploadedDockerfile(id), undefined);
  });

  test('a fetched context passes the upload\'s checks: over the limit it is refused and nothing is left', { timeout }, async () => {
    const small = createSharedContextStore({ workDir: path.join(work.path, 'small'), maxContextBytes: 10 }, s3.store.objects);
    const id = 'b_oversize';
    await mkdir(a.dir(id), { recursive: true });
    await writeFile(path.join(a.dir(id), 'big.bin'), randomBytes(mebibyte + 100)); // over 10 bytes + the Dockerfile allowance
    await a.publish(id);
    await assert.rejects(small.prepare(id), (error: unknown) => error instanceof ContextError && error.reason === 'too-large');
    assert.equal(await exists(small.dir(id)), false);
    assert.deepEqual((await readdir(path.join(work.path, 'small', 'contexts'))), [], 'no half-extracted folder');
    await a.remove(id);
    assert.deepEqual(await contextObjects(), []);
  });

  test('requeued: the working copy goes (it is fetched again), the objects stay; at start leftovers go', { timeout }, async () => {
    const id = 'b_requeue';
    await mkdir(a.dir(id), { recursive: true });
    await writeFile(path.join(a.dir(id), 'Dockerfile'), 'FROM scratch\n');
    await a.publish(id);
    await b.prepare(id);
    await b.release(id);
    assert.equal(await exists(b.dir(id)), false);
    assert.equal(await readFile(path.join(await b.prepare(id), 'Dockerfile'), 'utf8'), 'FROM scratch\n');
    await b.recover();
    assert.equal(await exists(b.dir(id)), false, 'a crash\'s working copies are dropped at start');
    assert.equal(await readFile(path.join(await b.prepare(id), 'Dockerfile'), 'utf8'), 'FROM scratch\n');
    await b.remove(id);
    assert.deepEqual(await contextObjects(), []);
  });
});

describe('local build contexts (one server)', () => {
  test('the folder is all there is: kept when published or requeued, gone when removed', { timeout }, async () => {
    const work = await tempDir('slipway-context-local-');
    try {
      const local = createLocalContextStore({ workDir: work.path, maxContextBytes: mebibyte });
      const id = 'b_local1';
      await mkdir(local.dir(id), { recursive: true });
      await writeFile(path.join(local.dir(id), 'Dockerfile'), 'FROM scratch\n');
      await writeFile(`${local.dir(id)}.dockerfile`, 'FROM scratch\n');
      await local.publish(id);
      await local.release(id);
      await local.recover();
      assert.equal(await local.prepare(id), local.dir(id));
      assert.equal((await local.uploadedDockerfile(id))?.toString(), 'FROM scratch\n');
      await local.remove(id);
      assert.equal(await exists(local.dir(id)), false);
      assert.equal(await exists(`${local.dir(id)}.dockerfile`), false);
      await assert.rejects(local.prepare(id), ContextGoneError);
    } finally {
      await work.remove();
    }
  });
});
