/**
 * @module artifacts/registry-pushes
 * Every tag pushed to Slipway's registry records a `container` artefact version
 * (`<registry host>/<repository>`, the tag as version, its digest) and so runs the namespace's
 * automation rules. Pushes a pipeline run makes are left to the run, which records them with
 * their commit and ref.
 */
import type { Logger } from 'pino';
import type { ManifestService } from '../registry/manifest-service.js';
import type { ArtifactService } from './service.js';

export interface RegistryPushesOptions {
  manifests: Pick<ManifestService, 'onTagPushed'>;
  artefacts: Pick<ArtifactService, 'record'>;
  /** `host:port` artefact names carry (known once the server listens). */
  registryHost: () => string;
  /** Pushes recorded by someone else (a pipeline run's own). */
  recordedElsewhere?: (repository: string, tag: string) => boolean;
  logger?: Pick<Logger, 'warn'>;
}

/** Records an artefact version for each tag pushed from now on; returns the unsubscribe. */
export function recordRegistryPushes(options: RegistryPushesOptions): () => void {
  return options.manifests.onTagPushed((event) => {
    if (options.recordedElsewhere?.(event.repository, event.tag)) return;
    const namespace = event.repository.split('/')[0]!;
    void options.artefacts.record(namespace, { type: 'container', name: `${options.registryHost()}/${event.repository}`, version: event.tag, digest: event.digest }, { source: 'registry', actor: null })
      .catch((error) => options.logger?.warn({ err: error }, 'recording an artefact version'));
  });
}
