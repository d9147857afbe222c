/**
 * @module functions/local-source
 * Reads images of Slipway's own registry in process for the ImageStore: the same manifests and
 * blobs a client would get over `/v2/` (registry/content-reader.ts: a pull-through namespace
 * fetches from its upstream on first use), without HTTP or tokens (who may run which image was
 * checked when the function was saved). Blobs are still verified by the ImageStore.
 */
import { Readable } from 'node:stream';
import type { BlobService } from '../registry/blob-service.js';
import { ContentReader } from '../registry/content-reader.js';
import { RegistryError } from '../registry/errors.js';
import type { ManifestService } from '../registry/manifest-service.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { ImageSource } from './image-store.js';

export interface OwnRegistry {
  manifests: ManifestService;
  blobs: BlobService;
  store: BlobStore;
  /** The registry's in-process read path (with pull-through); without it, own content only. */
  reads?: ContentReader;
}

/** The read path of `registry`: its own, or one over its services (no pull-through). */
export function contentReader(registry: OwnRegistry): ContentReader {
  return registry.reads ?? new ContentReader(registry);
}

export function localImageSource(registry: OwnRegistry, repository: string): ImageSource {
  const reads = contentReader(registry);
  return {
    async get(pathPart: string): Promise<Response> {
      const slash = pathPart.indexOf('/');
      const kind = pathPart.slice(0, slash);
      const reference = pathPart.slice(slash + 1);
      try {
        if (kind === 'manifests') {
          const { info, bytes } = await reads.manifestContent(repository, reference);
          return new Response(new Uint8Array(bytes), { headers: { 'content-type': info.mediaType, 'docker-content-digest': info.digest } });
        }
        const { body } = await reads.blob(repository, reference);
        return new Response(Readable.toWeb(body) as ReadableStream);
      } catch (error) {
        if (error instanceof RegistryError) throw new Error(`${repository} ${reference}: ${error.code} ${error.message}`);
        throw error;
      }
    },
  };
}
