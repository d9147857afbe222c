/**
 * Node.js images for runtime tests without buildah: the offline root (busybox + the host's
 * node, see `assembleNodeRootfs`) as one gzip layer, pushed with an image config of the test's
 * choice to a registry (a Slipway test server, plain HTTP). The layer is made once per root.
 */
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';
import { assembleNodeRootfs } from '../../src/builds/base-image.js';
import type { ImageConfig } from '../../src/functions/image-store.js';
import { imageManifest, pushBlob, putManifest, sha256 } from './oci.js';

export interface NodeLayer {
  /** The gzip-compressed layer. */
  data: Buffer;
  digest: string;
  /** Digest of the uncompressed archive, as image configs list it. */
  diffId: string;
}

export interface PushedImage {
  /** `host:port/repository:tag` */
  reference: string;
  digest: string;
}

/** Assembles the root in `<dir>/rootfs` and packs it (fast gzip: the layer is big and short-lived). */
export async function nodeLayer(dir: string): Promise<NodeLayer> {
  const rootfs = path.join(dir, 'rootfs');
  await assembleNodeRootfs(rootfs);
  const chunks: Buffer[] = [];
  const stream = tar.c({ cwd: rootfs, portable: false }, ['.']);
  for await (const chunk of stream as unknown as AsyncIterable<Buffer>) chunks.push(Buffer.from(chunk));
  const archive = Buffer.concat(chunks);
  const data = gzipSync(archive, { level: 1 });
  return { data, digest: sha256(data), diffId: sha256(archive) };
}

/** Pushes `layer` with `config` as `<repository>:<tag>` to the registry at `registry.url` (`headers`: e.g. its `authorization`). */
export async function pushNodeImage(registry: { url: string; host: string }, repository: string, tag: string, layer: NodeLayer, config: ImageConfig, headers: Record<string, string> = {}): Promise<PushedImage> {
  // Build tools check the history against the layers: one entry for the one layer.
  const created = new Date().toISOString();
  const configBlob = Buffer.from(JSON.stringify({
    created, architecture: 'amd64', os: 'linux', config,
    rootfs: { type: 'layers', diff_ids: [layer.diffId] }, history: [{ created, created_by: 'slipway test: node root' }],
  }));
  for (const blob of [layer.data, configBlob]) {
    const response = await pushBlob(registry.url, repository, blob, undefined, headers);
    if (response.status !== 201) throw new Error(`blob push to ${repository}: ${response.status} ${await response.text()}`);
  }
  const manifest = imageManifest({ digest: sha256(configBlob), size: configBlob.length }, [{ digest: layer.digest, size: layer.data.length }]);
  const put = await putManifest(registry.url, repository, tag, manifest, headers);
  if (put.status !== 201) throw new Error(`manifest push to ${repository}:${tag}: ${put.status} ${await put.text()}`);
  return { reference: `${registry.host}/${repository}:${tag}`, digest: manifest.digest };
}
