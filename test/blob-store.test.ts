/**
 * The filesystem and S3 BlobStore drivers run the BlobStore conformance suite (test/suites/blob-store.ts).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { FsBlobStore } from '../src/storage/fs-blob-store.js';
import { S3BlobStore } from '../src/storage/s3-blob-store.js';
import { tempDir } from './helpers/harness.js';
import { openS3BlobStoreUnderTest } from './helpers/s3-server.js';
import { blobStoreSuite, readAll } from './suites/blob-store.js';

async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(root, path.join(e.parentPath, e.name)));
}

blobStoreSuite('fs', async () => {
  const dir = await tempDir('slipway-blobs-');
  return { store: new FsBlobStore(dir.path), files: () => listFiles(dir.path), close: () => dir.remove() };
});

blobStoreSuite('s3 (s3rver)', openS3BlobStoreUnderTest);

/**
 * s3rver (like other S3-compatible servers that write objects in place) keeps what a writer
 * that died mid-PUT had sent: a 100,000-byte PUT killed after 10 bytes leaves a 10-byte object.
 * `dyingStore` is a second driver on the same bucket whose client does exactly that to the
 * upload-part PUT after `whole` of them went through, then fails as a killed process would.
 */
describe('S3 upload parts a dying writer left behind', () => {
  let s3: Awaited<ReturnType<typeof openS3BlobStoreUnderTest>>;
  before(async () => { s3 = await openS3BlobStoreUnderTest(); });
  after(async () => s3.close());

  function dyingStore(whole: number): S3BlobStore {
    const client = s3.store.client;
    let puts = 0;
    const send = async (command: unknown) => {
      if (command instanceof PutObjectCommand && command.input.Key?.includes('/uploads/') && (command.input.ContentLength ?? 0) > 0 && puts++ >= whole) {
        const body = command.input.Body as Buffer;
        await client.send(new PutObjectCommand({ ...command.input, Body: body.subarray(0, 10), ContentLength: 10 }));
        throw new Error('killed mid-PUT');
      }
      return client.send(command as PutObjectCommand);
    };
    return new S3BlobStore({ ...s3.store.options, client: Object.assign(Object.create(client) as S3Client, { send }) });
  }
  const sessionObjects = async (id: string) => (await s3.files()).filter((key) => key.includes(`/uploads/${id}/`));

  test('a tail rewrite cut short loses none of the acknowledged bytes, and the upload goes on', { timeout: 60_000 }, async () => {
    const { uploads } = s3.store;
    const first = randomBytes(100);
    const second = randomBytes(100);
    await uploads.create('cut-tail-1');
    assert.equal(await uploads.append('cut-tail-1', Readable.from([first]), 0), 100);
    await assert.rejects(dyingStore(0).uploads.append('cut-tail-1', Readable.from([second]), 100), /killed mid-PUT/);
    assert.equal(await uploads.size('cut-tail-1'), 100);
    assert.deepEqual(await readAll(await uploads.read('cut-tail-1')), first);
    assert.equal(await uploads.append('cut-tail-1', Readable.from([second]), 100), 200);
    const whole = Buffer.concat([first, second]);
    assert.deepEqual(await readAll(await uploads.read('cut-tail-1')), whole);
    assert.equal((await sessionObjects('cut-tail-1')).length, 1, 'the replaced tail and the remnant are gone');
    const digest = `sha256:${createHash('sha256').update(whole).digest('hex')}`;
    await uploads.commit('cut-tail-1', digest);
    assert.deepEqual(await readAll(await s3.store.get(digest)), whole);
    assert.deepEqual(await sessionObjects('cut-tail-1'), []);
  });

  test('a rewrite that stored its sealed part but died on the next: truncate returns to the acknowledged bytes', { timeout: 60_000 }, async () => {
    const { uploads } = s3.store;
    const partSize = s3.store.options.partSize;
    const data = randomBytes(partSize + 1000);
    await uploads.create('cut-sealed-1');
    assert.equal(await uploads.append('cut-sealed-1', Readable.from([data.subarray(0, 1000)]), 0), 1000);
    await assert.rejects(dyingStore(1).uploads.append('cut-sealed-1', Readable.from([data.subarray(1000)]), 1000), /killed mid-PUT/);
    assert.equal(await uploads.size('cut-sealed-1'), partSize, 'the complete sealed part counts, its cut-short successor not');
    // The registry acknowledged 1000 bytes: truncating there keeps the old tail and drops the rest.
    await uploads.truncate('cut-sealed-1', 1000);
    assert.equal(await uploads.size('cut-sealed-1'), 1000);
    assert.deepEqual(await readAll(await uploads.read('cut-sealed-1')), data.subarray(0, 1000));
    assert.equal((await sessionObjects('cut-sealed-1')).length, 1);
    assert.equal(await uploads.append('cut-sealed-1', Readable.from([data.subarray(1000)]), 1000), data.length);
    assert.deepEqual(await readAll(await uploads.read('cut-sealed-1')), data);
    await uploads.truncate('cut-sealed-1', 0);
    assert.equal(await uploads.size('cut-sealed-1'), 0);
    await uploads.abort('cut-sealed-1');
    assert.equal(await uploads.size('cut-sealed-1'), null);
  });

  test('sessions stored under the older offset-only part names still read, grow and commit', { timeout: 60_000 }, async () => {
    const { uploads } = s3.store;
    const first = randomBytes(300);
    await s3.store.client.send(new PutObjectCommand({ Bucket: s3.store.bucket, Key: `suite/uploads/legacy-1/${'0'.repeat(16)}`, Body: first, ContentLength: 300 }));
    assert.equal(await uploads.size('legacy-1'), 300);
    const more = randomBytes(50);
    assert.equal(await uploads.append('legacy-1', Readable.from([more]), 300), 350);
    assert.equal((await sessionObjects('legacy-1')).length, 1);
    assert.deepEqual(await readAll(await uploads.read('legacy-1')), Buffer.concat([first, more]));
    await uploads.abort('legacy-1');
  });
});
