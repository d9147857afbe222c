/**
 * @module registry/content-reader
 * Reading manifests and blobs in process (functions' image pulls, builds' FROM checks) by the
 * same path as a `/v2` GET: in a pull-through namespace through registry/pull-through.ts
 * (fetched from the upstream on first use, verified and stored, tags re-checked after the ttl,
 * the cached copy served while the upstream is down), elsewhere from the registry's own rows.
 * Callers check access themselves (who may run which image is decided when it is named).
 */
import type { Readable } from 'node:stream';
import type { BlobStore } from '../storage/blob-store.js';
import { BlobNotFoundError } from '../storage/blob-store.js';
import type { BlobService } from './blob-service.js';
import { RegistryError } from './errors.js';
import type { ManifestInfo, ManifestService } from './manifest-service.js';
import type { PullThrough } from './pull-through.js';

export interface ContentReaderOptions {
  manifests: ManifestService;
  blobs: BlobService;
  store: BlobStore;
  pullThrough?: PullThrough;
}

export class ContentReader {
  constructor(private readonly options: ContentReaderOptions) {}

  /** The manifest a pull of `repository:reference` gets; MANIFEST_UNKNOWN, UPSTREAM_UNAVAILABLE … otherwise. */
  async manifest(repository: string, reference: string): Promise<ManifestInfo> {
    return (await this.options.pullThrough?.manifest(repository, reference)) ?? this.options.manifests.info(repository, reference);
  }

  /** The manifest and its exact bytes. */
  async manifestContent(repository: string, reference: string): Promise<{ info: ManifestInfo; bytes: Buffer }> {
    const info = await this.manifest(repository, reference);
    return { info, bytes: await this.options.manifests.content(repository, info.digest) };
  }

  /**
   * A blob's bytes. In a proxy namespace an uncached blob streams from the upstream while it is
   * stored (a wrong digest cuts the stream and stores nothing); the caller verifies the digest.
   */
  async blob(repository: string, digest: string): Promise<{ size?: number; body: Readable }> {
    const fetched = await this.options.pullThrough?.blob(repository, digest, 'GET');
    if (fetched?.body) return { size: fetched.size, body: fetched.body };
    const found = await this.options.blobs.stat(repository, digest);
    if (!found) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest });
    try {
      return { size: found.size, body: await this.options.store.get(digest) };
    } catch (error) {
      if (error instanceof BlobNotFoundError) throw new RegistryError('BLOB_UNKNOWN', 'blob content is missing from storage', { digest });
      throw error;
    }
  }
}
