/**
 * @module storage/drivers
 * The BlobStore drivers by their `storage.driver` name. Test suite: test/suites/blob-store.ts.
 */
import path from 'node:path';
import type { StorageDriverName } from '../config/config.js';
import type { BlobStore } from './blob-store.js';
import { FsBlobStore } from './fs-blob-store.js';

export interface StorageDriverContext {
  /** The data folder: the `fs` driver keeps its blobs in `<dataDir>/blobs`. */
  dataDir: string;
}

export type StorageDriverFactory = (context: StorageDriverContext) => BlobStore;

export const storageDrivers: Record<StorageDriverName, StorageDriverFactory> = {
  fs: ({ dataDir }) => new FsBlobStore(path.join(dataDir, 'blobs')),
};
