/**
 * The filesystem and S3 BlobStore drivers run the BlobStore conformance suite (test/suites/blob-store.ts).
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { FsBlobStore } from '../src/storage/fs-blob-store.js';
import { tempDir } from './helpers/harness.js';
import { openS3BlobStoreUnderTest } from './helpers/s3-server.js';
import { blobStoreSuite } from './suites/blob-store.js';

async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(root, path.join(e.parentPath, e.name)));
}

blobStoreSuite('fs', async () => {
  const dir = await tempDir('slipway-blobs-');
  return { store: new FsBlobStore(dir.path), files: () => listFiles(dir.path), close: () => dir.remove() };
});

blobStoreSuite('s3 (s3rver)', openS3BlobStoreUnderTest);
