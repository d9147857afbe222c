/**
 * Helpers to make OCI content in tests: random blobs, image manifests, and raw registry calls.
 */
import { createHash, randomBytes } from 'node:crypto';

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function randomBlob(size = 1024): { data: Buffer; digest: string } {
  const data = randomBytes(size);
  return { data, digest: sha256(data) };
}

export const ociManifestType = 'application/vnd.oci.image.manifest.v1+json';
export const ociIndexType = 'application/vnd.oci.image.index.v1+json';
export const ociConfigType = 'application/vnd.oci.image.config.v1+json';
export const ociLayerType = 'application/vnd.oci.image.layer.v1.tar+gzip';

export interface BuiltManifest {
  body: Buffer;
  digest: string;
  mediaType: string;
}

export function imageManifest(config: { digest: string; size: number }, layers: Array<{ digest: string; size: number }>, extra: Record<string, unknown> = {}): BuiltManifest {
  const body = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: ociManifestType,
    config: { mediaType: ociConfigType, digest: config.digest, size: config.size },
    layers: layers.map((layer) => ({ mediaType: ociLayerType, digest: layer.digest, size: layer.size })),
    ...extra,
  }));
  return { body, digest: sha256(body), mediaType: ociManifestType };
}

export function imageIndex(children: BuiltManifest[], extra: Record<string, unknown> = {}): BuiltManifest {
  const body = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: ociIndexType,
    manifests: children.map((child) => ({ mediaType: child.mediaType, digest: child.digest, size: child.body.length, platform: { os: 'linux', architecture: 'amd64' } })),
    ...extra,
  }));
  return { body, digest: sha256(body), mediaType: ociIndexType };
}

/** Monolithic push of one blob (POST then PUT). Returns the response of the PUT. */
export async function pushBlob(base: string, name: string, data: Buffer, digest = sha256(data), headers: Record<string, string> = {}): Promise<Response> {
  const start = await fetch(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST', headers });
  if (start.status !== 202) throw new Error(`POST upload: ${start.status} ${await start.text()}`);
  const location = new URL(start.headers.get('location')!, base);
  location.searchParams.set('digest', digest);
  return fetch(location, { method: 'PUT', body: asBody(data), headers: { ...headers, 'Content-Type': 'application/octet-stream' } });
}

/** Pushes config + layers and the manifest under `reference` (with `headers`, e.g. credentials, on every request). */
export async function pushImage(base: string, name: string, reference: string, layerCount = 2, layerSize = 2048, headers: Record<string, string> = {}): Promise<{ manifest: BuiltManifest; blobs: Array<{ data: Buffer; digest: string }> }> {
  const config = { data: Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') })), digest: '' };
  config.digest = sha256(config.data);
  const layers = Array.from({ length: layerCount }, () => randomBlob(layerSize));
  for (const blob of [config, ...layers]) {
    const response = await pushBlob(base, name, blob.data, blob.digest, headers);
    if (response.status !== 201) throw new Error(`blob push: ${response.status} ${await response.text()}`);
  }
  const manifest = imageManifest({ digest: config.digest, size: config.data.length }, layers.map((l) => ({ digest: l.digest, size: l.data.length })));
  const put = await putManifest(base, name, reference, manifest, headers);
  if (put.status !== 201) throw new Error(`manifest push: ${put.status} ${await put.text()}`);
  return { manifest, blobs: [config, ...layers] };
}

export function putManifest(base: string, name: string, reference: string, manifest: BuiltManifest, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}/v2/${name}/manifests/${reference}`, { method: 'PUT', body: asBody(manifest.body), headers: { ...headers, 'Content-Type': manifest.mediaType } });
}

/** The first error code of an OCI error envelope. */
export async function errorCode(response: Response): Promise<string | undefined> {
  const body = (await response.json()) as { errors?: Array<{ code: string }> };
  return body.errors?.[0]?.code;
}

/** A Buffer as a fetch body (fetch's types want a plain ArrayBuffer view). */
export function asBody(data: Buffer): BodyInit {
  return new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.length);
}
