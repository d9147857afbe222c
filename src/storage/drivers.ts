/**
 * @module storage/drivers
 * The BlobStore drivers by their `storage.driver` name. Test suite: test/suites/blob-store.ts.
 */
import path from 'node:path';
import { ConfigError, type S3StorageConfig, type StorageDriverName } from '../config/config.js';
import type { BlobStore } from './blob-store.js';
import { FsBlobStore } from './fs-blob-store.js';
import { createS3BlobStore } from './s3-blob-store.js';

export interface StorageDriverContext {
  /** The data folder: the `fs` driver keeps its blobs in `<dataDir>/blobs`. */
  dataDir: string;
  /** `storage.s3`, the `s3` driver's slice. */
  s3?: S3StorageConfig;
}

export type StorageDriverFactory = (context: StorageDriverContext) => BlobStore;

export const storageDrivers: Record<StorageDriverName, StorageDriverFactory> = {
  fs: ({ dataDir }) => new FsBlobStore(path.join(dataDir, 'blobs')),
  s3: ({ s3 }) => {
    if (!s3) throw new ConfigError('invalid configuration: storage.s3: required when storage.driver is s3');
    return createS3BlobStore(s3);
  },
};
