/**
 * A local S3-compatible server for tests: s3rver (a Koa app storing objects as files) in this
 * process on 127.0.0.1, port 0, over a temp folder, with one bucket. s3rver's limits that
 * matter here: no UploadPartCopy (the driver streams multi-part commits instead), no
 * AbortMultipartUpload, no minimum part size, no conditional writes, and objects are written
 * to its files in place (not atomically, unlike S3). Credentials are its fixed `S3RVER` pair.
 */
import S3rver from 's3rver';
import type { S3StorageConfig } from '../../src/config/config.js';
import { createS3BlobStore, type S3BlobStore } from '../../src/storage/s3-blob-store.js';
import { tempDir } from './dialects.js';

export interface TestS3Server {
  endpoint: string;
  bucket: string;
  /** A `storage.s3` slice pointing at this server (partSize: S3's 5 MiB minimum). */
  config(prefix?: string, overrides?: Partial<S3StorageConfig>): S3StorageConfig;
  close(): Promise<void>;
}

const startTimeoutMs = 10_000;

export async function startS3Server(bucket = 'slipway'): Promise<TestS3Server> {
  const dir = await tempDir('slipway-s3-');
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory: dir.path, silent: true, configureBuckets: [{ name: bucket }] });
  let timer: NodeJS.Timeout | undefined;
  try {
    const address = await Promise.race([
      server.run(),
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('s3rver did not start in time')), startTimeoutMs); }),
    ]);
    const endpoint = `http://127.0.0.1:${address.port}`;
    // A test that fails before close() must not keep its process (and so the whole run) alive.
    server.httpServer?.unref();
    return {
      endpoint,
      bucket,
      config: (prefix = '', overrides = {}) => ({
        endpoint, bucket, region: 'us-east-1', forcePathStyle: true, prefix,
        accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', partSize: 5 * 1024 * 1024,
        redirect: false, redirectExpiry: 5 * 60_000, ...overrides,
      }),
      async close() {
        server.httpServer?.closeAllConnections();
        await server.close();
        await dir.remove();
      },
    };
  } catch (error) {
    server.httpServer?.closeAllConnections();
    await server.close().catch(() => undefined);
    await dir.remove();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** The S3 driver over a fresh s3rver, for the BlobStore conformance suite. */
export async function openS3BlobStoreUnderTest(): Promise<{ store: S3BlobStore; files(): Promise<string[]>; close(): Promise<void> }> {
  const s3 = await startS3Server();
  const store = createS3BlobStore(s3.config('suite/'));
  const files = async () => {
    const keys: string[] = [];
    for await (const object of store.listObjects('')) keys.push(object.key);
    return keys;
  };
  return { store, files, close: async () => { await store.close(); await s3.close(); } };
}
