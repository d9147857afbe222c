/**
 * The BlobStore conformance suite: every driver runs it (fs, s3) with one line in its
 * own test file. It also fails a driver that leaves files behind after aborts and deletes.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BlobNotFoundError, UploadNotFoundError, UploadOffsetError, type BlobStore } from '../../src/storage/blob-store.js';

export interface BlobStoreUnderTest {
  store: BlobStore;
  /** Every object the driver holds (files, keys), relative names; empty once everything is deleted. */
  files(): Promise<string[]>;
  close(): Promise<void>;
}

function digestOf(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A stream's bytes, whole. */
export async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function storeBlob(store: BlobStore, data: Buffer, id = randomBytes(8).toString('hex')): Promise<string> {
  await store.uploads.create(id);
  await store.uploads.append(id, Readable.from([data]), 0);
  const digest = digestOf(data);
  await store.uploads.commit(id, digest);
  return digest;
}

export function blobStoreSuite(name: string, open: () => Promise<BlobStoreUnderTest>): void {
  describe(`BlobStore conformance (${name})`, () => {
    let store: BlobStore;
    let files: () => Promise<string[]>;
    let close: () => Promise<void>;
    before(async () => ({ store, files, close } = await open()));
    after(async () => close());

    test('an upload is invisible until committed, then readable whole and by range', async () => {
      const data = randomBytes(100_000);
      const digest = digestOf(data);
      await store.uploads.create('upload-one');
      const seen: Buffer[] = [];
      assert.equal(await store.uploads.append('upload-one', Readable.from([data.subarray(0, 40_000)]), 0, (c) => seen.push(c)), 40_000);
      assert.equal(await store.stat(digest), null);
      await assert.rejects(store.get(digest), BlobNotFoundError);
      assert.equal(await store.uploads.append('upload-one', Readable.from([data.subarray(40_000)]), 40_000, (c) => seen.push(c)), 100_000);
      assert.deepEqual(Buffer.concat(seen), data, 'observe sees every byte in order');
      assert.deepEqual(await readAll(await store.uploads.read('upload-one')), data);
      await store.uploads.commit('upload-one', digest);
      assert.deepEqual(await store.stat(digest), { size: 100_000 });
      assert.deepEqual(await readAll(await store.get(digest)), data);
      assert.deepEqual(await readAll(await store.get(digest, { start: 10, end: 19 })), data.subarray(10, 20));
      assert.equal(await store.uploads.size('upload-one'), null, 'a committed session is gone');
    });

    test('append at the wrong offset is refused and changes nothing', async () => {
      await store.uploads.create('upload-offset');
      await store.uploads.append('upload-offset', Readable.from([Buffer.from('abc')]), 0);
      await assert.rejects(store.uploads.append('upload-offset', Readable.from([Buffer.from('x')]), 1), (error: unknown) => error instanceof UploadOffsetError && error.actual === 3);
      assert.equal(await store.uploads.size('upload-offset'), 3);
      await store.uploads.abort('upload-offset');
    });

    test('truncate drops bytes past the acknowledged size, and appends continue from there', async () => {
      await store.uploads.create('upload-truncate');
      await store.uploads.append('upload-truncate', Readable.from([Buffer.from('acked-and-leftover')]), 0);
      await store.uploads.truncate('upload-truncate', 5);
      assert.equal(await store.uploads.size('upload-truncate'), 5);
      await store.uploads.append('upload-truncate', Readable.from([Buffer.from('-more')]), 5);
      const chunks: Buffer[] = [];
      for await (const chunk of await store.uploads.read('upload-truncate')) chunks.push(chunk as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), 'acked-more');
      await store.uploads.abort('upload-truncate');
      await assert.rejects(store.uploads.truncate('upload-truncate', 0), UploadNotFoundError);
    });

    test('unknown sessions are UploadNotFoundError; unknown blobs BlobNotFoundError', async () => {
      await assert.rejects(store.uploads.append('no-such-upload', Readable.from([]), 0), UploadNotFoundError);
      await assert.rejects(store.uploads.commit('no-such-upload', digestOf(Buffer.from('x'))), UploadNotFoundError);
      await assert.rejects(store.uploads.read('no-such-upload'), UploadNotFoundError);
      await assert.rejects(store.uploads.append('../escape', Readable.from([]), 0), UploadNotFoundError);
      assert.equal(await store.uploads.size('no-such-upload'), null);
      await assert.rejects(store.get(digestOf(Buffer.from('never stored'))), BlobNotFoundError);
      assert.equal(await store.delete(digestOf(Buffer.from('never stored'))), false);
    });

    test('committing the same content twice keeps one blob', async () => {
      const data = Buffer.from('same bytes');
      const first = await storeBlob(store, data);
      const second = await storeBlob(store, data);
      assert.equal(first, second);
      assert.deepEqual(await readAll(await store.get(first)), data);
    });

    test('small and large appends across 5 MiB part boundaries, with a truncate inside one, read back whole', async () => {
      const mebibyte = 1024 * 1024;
      const data = randomBytes(13 * mebibyte + 12_345);
      const digest = digestOf(data);
      const id = 'upload-parts';
      await store.uploads.create(id);
      let size = 0;
      for (const end of [mebibyte, 2 * mebibyte, 3 * mebibyte - 1, 11 * mebibyte + 7]) {
        // Several chunks per append, as a socket delivers them.
        const chunks = [data.subarray(size, size + 100_000), data.subarray(size + 100_000, end)].filter((c) => c.length > 0);
        size = await store.uploads.append(id, Readable.from(chunks), size);
        assert.equal(size, end);
      }
      await store.uploads.truncate(id, 6 * mebibyte + 3);
      assert.equal(await store.uploads.size(id), 6 * mebibyte + 3);
      assert.equal(await store.uploads.append(id, Readable.from([data.subarray(6 * mebibyte + 3)]), 6 * mebibyte + 3), data.length);
      assert.ok((await readAll(await store.uploads.read(id))).equals(data), 'session bytes in order');
      await store.uploads.commit(id, digest);
      assert.deepEqual(await store.stat(digest), { size: data.length });
      assert.ok((await readAll(await store.get(digest))).equals(data), 'blob bytes');
      const across = { start: 5 * mebibyte - 10, end: 5 * mebibyte + 9 };
      assert.ok((await readAll(await store.get(digest, across))).equals(data.subarray(across.start, across.end + 1)), 'range across a part boundary');
      assert.equal(await store.uploads.size(id), null);
    });

    test('named objects (log chunks): put, overwrite, get, list by prefix, delete; never listed as blobs', async (t) => {
      const objects = store.objects;
      if (!objects) return t.skip('this driver has no object area');
      await objects.put('logs/builds/b1/0001', Buffer.from('first\n'));
      await objects.put('logs/builds/b1/0002', Buffer.from('second\n'));
      await objects.put('logs/builds/b10/0001', Buffer.from('other\n'));
      await objects.put('logs/builds/b1/0002', Buffer.from('second, again\n'));
      assert.equal((await objects.get('logs/builds/b1/0002'))?.toString(), 'second, again\n');
      assert.equal(await objects.get('logs/builds/b1/0003'), null);
      const keys: string[] = [];
      for await (const object of objects.list('logs/builds/b1/')) keys.push(object.key);
      assert.deepEqual(keys.sort(), ['logs/builds/b1/0001', 'logs/builds/b1/0002']);
      const before: string[] = [];
      for await (const digest of store.list()) before.push(digest);
      await assert.rejects(objects.put('logs/../escape', Buffer.from('x')));
      const all: string[] = [];
      for await (const object of objects.list('logs/')) all.push(object.key);
      await objects.delete([...all, 'logs/absent/0001']);
      const after: string[] = [];
      for await (const digest of store.list()) after.push(digest);
      assert.deepEqual(after.sort(), before.sort(), 'objects are not blobs');
      assert.deepEqual((await files()).filter((name) => name.includes('logs')), [], 'deleted objects leave no files');
    });

    test('streamed named objects: a multi-MiB put reads back whole, a failing source leaves nothing, absent is null', { timeout: 60_000 }, async (t) => {
      const objects = store.objects;
      if (!objects) return t.skip('this driver has no object area');
      const mebibyte = 1024 * 1024;
      // Past two 5 MiB parts: the s3 driver streams it as a multipart upload.
      const data = randomBytes(11 * mebibyte + 4321);
      const chunks = Array.from({ length: Math.ceil(data.length / 65_536) }, (_, i) => data.subarray(i * 65_536, (i + 1) * 65_536));
      await objects.putStream('build-contexts/stream-1.tar', Readable.from(chunks));
      const back = await objects.getStream('build-contexts/stream-1.tar');
      assert.ok(back, 'the streamed object is there');
      assert.ok((await readAll(back)).equals(data), 'read back whole, in order');
      assert.ok((await objects.get('build-contexts/stream-1.tar'))?.equals(data), 'get sees the same bytes');
      await objects.putStream('build-contexts/small.tar', Readable.from([Buffer.from('small')]));
      assert.equal((await readAll((await objects.getStream('build-contexts/small.tar'))!)).toString(), 'small');

      for (const [name, failAfter] of [['early', 100_000], ['past a part', 7 * mebibyte]] as const) {
        const failing = Readable.from((async function* () {
          for (let sent = 0; sent < failAfter; sent += 65_536) yield randomBytes(65_536);
          throw new Error(`source failed ${name}`);
        })());
        await assert.rejects(objects.putStream(`build-contexts/failed-${failAfter}.tar`, failing), new RegExp(`source failed ${name}`));
        assert.equal(await objects.getStream(`build-contexts/failed-${failAfter}.tar`), null, `no object after a source failed ${name}`);
      }
      assert.equal(await objects.getStream('build-contexts/never-written.tar'), null);
      assert.equal(await objects.get('build-contexts/never-written.tar'), null);
      await assert.rejects(objects.putStream('build-contexts/../escape', Readable.from([Buffer.from('x')])));
      await objects.delete(['build-contexts/stream-1.tar', 'build-contexts/small.tar']);
      assert.equal(await objects.getStream('build-contexts/stream-1.tar'), null);
      assert.deepEqual((await files()).filter((name) => name.includes('build-contexts') || name.includes('.tmp-')), [], 'no objects or temp files left');
    });

    test('list, delete and abort leave nothing behind', async () => {
      const digests = [await storeBlob(store, Buffer.from('one')), await storeBlob(store, Buffer.from('two'))];
      const listed: string[] = [];
      for await (const digest of store.list()) listed.push(digest);
      for (const digest of digests) assert.ok(listed.includes(digest));
      await store.uploads.create('upload-abort');
      await store.uploads.append('upload-abort', Readable.from([Buffer.from('partial')]), 0);
      const sessions: string[] = [];
      for await (const session of store.uploads.list()) sessions.push(session.id);
      assert.ok(sessions.includes('upload-abort'));
      await store.uploads.abort('upload-abort');
      for await (const digest of store.list()) assert.equal(await store.delete(digest), true);
      assert.deepEqual(await files(), []);
    });
  });
}
