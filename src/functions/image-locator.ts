/**
 * @module functions/image-locator
 * Where a function's image is: Slipway's own registry (`ns/repo:tag`, or with this server's
 * host) or an external one. Checks a reference before a function is saved, and turns it into
 * the ImageRequest a RuntimeDriver pulls: own images with an in-process reader of the registry,
 * external ones with the namespace's login for that registry.
 */
import type { ExternalRegistries } from '../credentials/service.js';
import { RegistryError } from '../registry/errors.js';
import { FunctionInputError } from './errors.js';
import { parseImageRef } from './image-store.js';
import { contentReader, localImageSource, type OwnRegistry } from './local-source.js';
import type { ImageRequest } from './runtime-driver.js';

export interface ImageLocatorDeps {
  registry: OwnRegistry;
  /** `host:port` clients use for Slipway's registry (image references may carry it). */
  registryHost: () => string;
  insecureRegistries: string[];
  registries?: ExternalRegistries;
}

export type ImageLocation = { own: true; repository: string; reference: string } | { own: false; ref: string };

export class ImageLocator {
  constructor(private readonly deps: ImageLocatorDeps) {}

  /** Own registry: `ns/repo:tag`, or with this server's host. Others: external. */
  locate(image: string): ImageLocation {
    const first = image.split('/')[0] ?? '';
    const hasHost = image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
    if (!hasHost || first === this.deps.registryHost()) {
      const ref = hasHost ? image : `local/${image}`;
      const parsed = parseImageRef(ref);
      return { own: true, repository: parsed.repository, reference: parsed.reference };
    }
    return { own: false, ref: image };
  }

  /**
   * Clear errors before anything is saved: a malformed reference or an unknown own image. An
   * image of a pull-through namespace is fetched from its upstream here (first use), so an
   * upstream that is down or lacks it is named now, not at the first start.
   */
  async check(image: string): Promise<void> {
    const where = this.locate(image);
    if (!where.own) {
      if (!/^[^/]+\/.+/.test(image)) throw new FunctionInputError(`image "${image}" is not a valid reference`);
      return;
    }
    if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)+$/.test(where.repository)) throw new FunctionInputError(`image "${image}": "${where.repository}" is not a repository name`);
    try {
      await contentReader(this.deps.registry).manifest(where.repository, where.reference);
    } catch (error) {
      if (error instanceof RegistryError && (error.code.startsWith('UPSTREAM_') || error.code === 'DENIED')) throw new FunctionInputError(`image "${image}": ${error.message} (${error.code})`);
      if (error instanceof RegistryError) throw new FunctionInputError(`image "${image}" is not in this registry (${error.code})`);
      throw error;
    }
  }

  /** The namespace an own-registry image belongs to (for the caller's pull permission), else null. */
  namespaceOf(image: string): string | null {
    const where = this.locate(image);
    return where.own ? where.repository.split('/')[0]! : null;
  }

  /** What a runtime driver needs to pull `image` for a function of `namespace` (pinned to `digest` when known). */
  request(namespace: string, image: string, digest: string | null): ImageRequest {
    const where = this.locate(image);
    const pin = digest ? { digest } : {};
    if (where.own) {
      const separator = where.reference.includes(':') ? '@' : ':';
      return { reference: `${this.deps.registryHost() || 'local'}/${where.repository}${separator}${where.reference}`, ...pin, source: localImageSource(this.deps.registry, where.repository) };
    }
    const { registries } = this.deps;
    const host = image.split('/')[0]!;
    return {
      reference: image, ...pin,
      login: async () => {
        const login = await registries?.loginForImage(namespace, image);
        return login ? { username: login.username, password: login.password } : undefined;
      },
      insecure: this.deps.insecureRegistries.includes(host),
    };
  }
}
