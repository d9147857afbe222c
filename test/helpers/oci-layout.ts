/**
 * Writes and reads OCI image layouts on disk (oci-layout, index.json, blobs/sha256/…), so that
 * tests can make images offline and hand them to real clients (`skopeo copy oci:DIR:TAG …`).
 * Layers are real tar archives made by `tar`, gzip-compressed with node:zlib.
 */
import { chmod, copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { tempDir } from './harness.js';
import { run } from './commands.js';
import { ociConfigType, ociIndexType, ociLayerType, ociManifestType, sha256 } from './oci.js';

export interface LayerFile {
  /** Path inside the image, relative, e.g. `bin/busybox`. */
  path: string;
  /** Content, or `source`: a file on this machine to copy in. */
  content?: Buffer | string;
  source?: string;
  mode?: number;
}

export interface LayoutBlob {
  digest: string;
  data: Buffer;
}

export interface LayoutImage {
  dir: string;
  tag: string;
  manifest: LayoutBlob;
  config: LayoutBlob;
  /** Compressed layer blobs, in manifest order. */
  layers: LayoutBlob[];
}

/** The Go architecture name of this machine, as image configs spell it. */
export function goArch(): string {
  const names: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' };
  return names[process.arch] ?? process.arch;
}

/** Makes a gzip-compressed tar layer of `files`; returns it with its uncompressed digest (diff ID). */
export async function makeLayer(files: LayerFile[]): Promise<{ data: Buffer; digest: string; diffId: string }> {
  const staging = await tempDir('slipway-layer-');
  try {
    const root = path.join(staging.path, 'root');
    await mkdir(root);
    for (const file of files) {
      const target = path.join(root, file.path);
      await mkdir(path.dirname(target), { recursive: true });
      if (file.source) await copyFile(file.source, target);
      else await writeFile(target, file.content ?? '');
      await chmod(target, file.mode ?? 0o644);
    }
    const archive = path.join(staging.path, 'layer.tar');
    const entries = (await readdir(root)).sort();
    await run('tar', ['--create', '--file', archive, '--directory', root, '--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', ...entries], { timeoutMs: 30_000 });
    const tar = await readFile(archive);
    const data = gzipSync(tar);
    return { data, digest: sha256(data), diffId: sha256(tar) };
  } finally {
    await staging.remove();
  }
}

/** Writes a one-layer image under `tag` into a new OCI layout at `dir`. */
export async function writeOciLayout(dir: string, options: { tag: string; files: LayerFile[]; cmd?: string[]; labels?: Record<string, string> }): Promise<LayoutImage> {
  const layer = await makeLayer(options.files);
  const config = Buffer.from(JSON.stringify({
    created: new Date().toISOString(),
    architecture: goArch(),
    os: 'linux',
    config: { Cmd: options.cmd ?? ['/bin/sh'], Labels: options.labels ?? {} },
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    history: [{ created: new Date().toISOString(), created_by: 'slipway test' }],
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: ociManifestType,
    config: { mediaType: ociConfigType, digest: sha256(config), size: config.length },
    layers: [{ mediaType: ociLayerType, digest: layer.digest, size: layer.data.length }],
  }));
  const blobs = [
    { digest: sha256(config), data: config },
    { digest: layer.digest, data: layer.data },
    { digest: sha256(manifest), data: manifest },
  ];
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const blob of blobs) await writeFile(layoutBlobPath(dir, blob.digest), blob.data);
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    mediaType: ociIndexType,
    manifests: [{ mediaType: ociManifestType, digest: sha256(manifest), size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': options.tag } }],
  }));
  return { dir, tag: options.tag, manifest: blobs[2]!, config: blobs[0]!, layers: [blobs[1]!] };
}

/** Reads the image tagged `tag` back from an OCI layout (as `skopeo copy … oci:DIR:TAG` wrote it). */
export async function readOciLayout(dir: string, tag: string): Promise<LayoutImage & { manifestMediaType: string }> {
  const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; mediaType: string; annotations?: Record<string, string> }> };
  const entry = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!entry) throw new Error(`no manifest tagged ${tag} in ${dir}/index.json: ${JSON.stringify(index)}`);
  const manifestData = await readFile(layoutBlobPath(dir, entry.digest));
  const manifest = JSON.parse(manifestData.toString('utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
  const read = async (digest: string): Promise<LayoutBlob> => ({ digest, data: await readFile(layoutBlobPath(dir, digest)) });
  return {
    dir,
    tag,
    manifestMediaType: entry.mediaType,
    manifest: { digest: entry.digest, data: manifestData },
    config: await read(manifest.config.digest),
    layers: await Promise.all(manifest.layers.map((layer) => read(layer.digest))),
  };
}

export function layoutBlobPath(dir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  return path.join(dir, 'blobs', algorithm!, hex!);
}
