/**
 * @module functions/local-source
 * Reads images of Slipway's own registry in process for the ImageStore: the same manifests and
 * blobs a client would get over `/v2/`, without HTTP or tokens (who may run which image was
 * checked when the function was saved). Blobs are still verified by the ImageStore.
 */
import { Readable } from 'node:stream';
import type { BlobService } from '../registry/blob-service.js';
import { RegistryError } from '../registry/errors.js';
import type { ManifestService } from '../registry/manifest-service.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { ImageSource } from './image-store.js';

export interface OwnRegistry {
  manifests: ManifestService;
  blobs: BlobService;
  store: BlobStore;
}

export function localImageSource(registry: OwnRegistry, repository: string): ImageSource {
  return {
    async get(pathPart: string): Promise<Response> {
      const slash = pathPart.indexOf('/');
      const kind = pathPart.slice(0, slash);
      const reference = pathPart.slice(slash + 1);
      try {
        if (kind === 'manifests') {
          const info = await registry.manifests.info(repository, reference);
          const bytes = await registry.manifests.content(repository, info.digest);
          return new Response(new Uint8Array(bytes), { headers: { 'content-type': info.mediaType, 'docker-content-digest': info.digest } });
        }
        if (!(await registry.blobs.stat(repository, reference))) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest: reference });
        const stream = await registry.store.get(reference);
        return new Response(Readable.toWeb(stream) as ReadableStream);
      } catch (error) {
        if (error instanceof RegistryError) throw new Error(`${repository} ${reference}: ${error.code} ${error.message}`);
        throw error;
      }
    },
  };
}
