/**
 * Logs drivers: the LogStore suite (test/suites/log-store.ts) over `fs` and over `blobstore`
 * on the fs and s3 (s3rver) blob stores; function logs in the object area read and followed
 * across two writers ("replicas").
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { FunctionLogs } from '../src/functions/logs.js';
import { ObjectLogBackend } from '../src/functions/log-chunks.js';
import type { LogLine } from '../src/functions/spec.js';
import { ChunkedLogStore } from '../src/logs/chunked-log-store.js';
import { FsLogStore } from '../src/logs/log-store.js';
import { FsBlobStore } from '../src/storage/fs-blob-store.js';
import { tempDir } from './helpers/harness.js';
import { openS3BlobStoreUnderTest } from './helpers/s3-server.js';
import { logStoreSuite } from './suites/log-store.js';

const fast = { flushIntervalMs: 100, pollMs: 100, heartbeatMs: 1000 };

logStoreSuite('fs', async () => {
  const dir = await tempDir('slipway-logs-');
  const store = new FsLogStore(path.join(dir.path, 'builds'));
  return { store, other: store, sharesLiveLogs: false, close: () => dir.remove() };
});

logStoreSuite('blobstore on fs', async () => {
  const dir = await tempDir('slipway-logs-');
  const blobs = new FsBlobStore(dir.path);
  const store = new ChunkedLogStore(blobs.objects, 'builds', fast);
  const other = new ChunkedLogStore(new FsBlobStore(dir.path).objects, 'builds', fast);
  return { store, other, sharesLiveLogs: true, close: async () => { await store.close(); await dir.remove(); } };
});

logStoreSuite('blobstore on s3 (s3rver)', async () => {
  const s3 = await openS3BlobStoreUnderTest();
  const store = new ChunkedLogStore(s3.store.objects, 'builds', fast);
  const other = new ChunkedLogStore(s3.store.objects, 'builds', fast);
  return {
    store, other, sharesLiveLogs: true,
    close: async () => {
      await store.close();
      assert.ok((await s3.files()).every((key) => !key.endsWith('/live')), 'no heartbeat left after finish');
      await s3.close();
    },
  };
});

describe('function logs in the object area (s3rver)', { timeout: 60_000 }, () => {
  const line = (fn: string, text: string, instance: string): LogLine => ({ time: new Date().toISOString(), function: fn, revision: 1, instance, stream: 'stdout', line: text, tags: {} });

  test('two writers: each reads both, tail, follow sees the other replica\'s lines, remove, pruning', async () => {
    const s3 = await openS3BlobStoreUnderTest();
    const one = new FunctionLogs(new ObjectLogBackend(s3.store.objects, { batchMs: 50, pollMs: 100, writer: 'one', maxBytes: 4000 }));
    const two = new FunctionLogs(new ObjectLogBackend(s3.store.objects, { batchMs: 50, pollMs: 100, writer: 'two', maxBytes: 4000 }));
    try {
      one.append('team', line('hello', 'from one', 'a'));
      await one.flush();
      two.append('team', line('hello', 'from two', 'b'));
      await two.flush();
      assert.deepEqual((await one.read('team', 'hello')).map((l) => l.line), ['from one', 'from two']);
      assert.deepEqual((await two.read('team', 'hello', 1)).map((l) => l.line), ['from two']);

      const seen: string[] = [];
      const stop = one.follow('team', 'hello', (l) => seen.push(l.line));
      await new Promise((resolve) => setTimeout(resolve, 250));
      two.append('team', line('hello', 'live from two', 'b'));
      one.append('team', line('hello', 'live from one', 'a'));
      for (const started = Date.now(); !seen.includes('live from two'); await new Promise((resolve) => setTimeout(resolve, 50))) {
        assert.ok(Date.now() - started < 10_000, 'the other replica\'s line arrives');
      }
      stop();
      assert.deepEqual(seen.filter((text) => text === 'live from one'), ['live from one'], 'own lines once, not again from the store');

      for (let index = 0; index < 60; index++) {
        one.append('team', line('hello', `bulk ${index} ${'x'.repeat(100)}`, 'a'));
        await one.flush();
      }
      const kept = await one.read('team', 'hello');
      assert.ok(kept.length < 60, `old chunks pruned past maxBytes (kept ${kept.length})`);
      assert.equal(kept.at(-1)?.line.startsWith('bulk 59'), true);

      await one.remove('team', 'hello');
      assert.deepEqual(await two.read('team', 'hello'), []);
    } finally {
      await one.close();
      await two.close();
      await s3.close();
    }
  });
});
