/**
 * @module builds/component-artifact
 * A built component as an OCI artifact in Slipway's own registry: its output files packed in
 * one tar.gz layer under an artifact manifest (`artifactType`
 * `application/vnd.slipway.component.v1`, empty config), tagged `<tag>-<architecture>` in
 * `<ns>/components/<component>`. Pushed in-process through the registry services, so the same
 * verification, GC and access control apply as to any push.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { create as createTar } from 'tar';
import type { ManifestService } from '../registry/manifest-service.js';
import type { UploadService } from '../registry/upload-service.js';

export const componentArtifactType = 'application/vnd.slipway.component.v1';
export const componentLayerType = 'application/vnd.slipway.component.layer.v1.tar+gzip';
const emptyConfigType = 'application/vnd.oci.empty.v1+json';
const emptyConfig = Buffer.from('{}');

export interface ComponentMetadata {
  component: string;
  tag: string;
  architecture: string;
  source?: string;
  revision?: string;
}

export interface PushedComponent {
  digest: string;
  layerDigest: string;
  layerSize: number;
}

/** Packs `files` (relative to `dir`) and pushes them as the component artifact `repository:reference`. */
export async function pushComponent(
  registry: { uploads: UploadService; manifests: ManifestService },
  repository: string, reference: string, dir: string, files: string[], meta: ComponentMetadata,
): Promise<PushedComponent> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'slipway-component-'));
  try {
    const archive = path.join(work, 'component.tar.gz');
    // portable + fixed mtime: the same outputs give the same digest.
    await pipeline(createTar({ gzip: true, cwd: dir, portable: true, mtime: new Date(0) }, files), createWriteStream(archive));
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(archive)) hash.update(chunk as Buffer);
    const layerDigest = `sha256:${hash.digest('hex')}`;
    const { size: layerSize } = await stat(archive);
    await registry.uploads.monolithic(repository, layerDigest, createReadStream(archive), layerSize);
    const configDigest = `sha256:${createHash('sha256').update(emptyConfig).digest('hex')}`;
    await registry.uploads.monolithic(repository, configDigest, Readable.from([emptyConfig]), emptyConfig.length);
    const annotations: Record<string, string> = {
      'org.opencontainers.image.created': new Date().toISOString(),
      'org.opencontainers.image.version': meta.tag,
      'dev.slipway.component': meta.component,
      'dev.slipway.architecture': meta.architecture,
    };
    if (meta.source) annotations['org.opencontainers.image.source'] = meta.source;
    if (meta.revision) annotations['org.opencontainers.image.revision'] = meta.revision;
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: componentArtifactType,
      config: { mediaType: emptyConfigType, digest: configDigest, size: emptyConfig.length },
      layers: [{ mediaType: componentLayerType, digest: layerDigest, size: layerSize, annotations: { 'org.opencontainers.image.title': `${meta.component}-${reference}.tar.gz` } }],
      annotations,
    }));
    const info = await registry.manifests.put(repository, reference, manifest, 'application/vnd.oci.image.manifest.v1+json');
    return { digest: info.digest, layerDigest, layerSize };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The layer (the tar.gz) of a component artifact manifest, or null when it is not one. */
export function componentLayer(manifest: Buffer): { digest: string; size: number } | null {
  try {
    const json = JSON.parse(manifest.toString('utf8')) as { artifactType?: string; layers?: Array<{ mediaType: string; digest: string; size: number }> };
    const layer = json.artifactType === componentArtifactType ? json.layers?.find((l) => l.mediaType === componentLayerType) : undefined;
    return layer ? { digest: layer.digest, size: layer.size } : null;
  } catch {
    return null;
  }
}
