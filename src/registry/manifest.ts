/**
 * @module registry/manifest
 * Parsing and validation of the manifest formats the registry accepts: OCI image manifest and
 * index, Docker v2 schema2 manifest and manifest list. Returns what the store must check and
 * record (referenced blobs, child manifests, subject, artifact type); never touches storage.
 */
import { checkDigest } from './grammar.js';
import { RegistryError } from './errors.js';

export const mediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

const imageManifestTypes = new Set<string>([mediaTypes.ociManifest, mediaTypes.dockerManifest]);
const indexTypes = new Set<string>([mediaTypes.ociIndex, mediaTypes.dockerList]);
export const manifestMediaTypes = new Set<string>([...imageManifestTypes, ...indexTypes]);

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ParsedManifest {
  mediaType: string;
  /** Config and layers: must be blobs of the repository. */
  blobs: Descriptor[];
  /** Children of an index: must be manifests of the repository. */
  manifests: Descriptor[];
  subject?: Descriptor;
  /** `artifactType`, else the config's media type (image manifests only). */
  artifactType?: string;
  annotations?: Record<string, string>;
}

function invalid(message: string, detail?: unknown): RegistryError {
  return new RegistryError('MANIFEST_INVALID', message, detail);
}

/** Strips parameters (`; charset=…`) and case from a Content-Type value. */
export function bareMediaType(contentType: string | undefined): string | undefined {
  const bare = contentType?.split(';')[0]?.trim().toLowerCase();
  return bare || undefined;
}

export function parseManifest(content: Buffer, contentType: string | undefined): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch (error) {
    throw invalid(`manifest is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(json)) throw invalid('manifest must be a JSON object');
  const declared = json.mediaType;
  if (declared !== undefined && typeof declared !== 'string') throw invalid('mediaType must be a string');
  const header = bareMediaType(contentType);
  const genericHeader = header === undefined || header === 'application/json' || header === 'application/octet-stream';
  const mediaType = genericHeader ? declared ?? inferMediaType(json) : header;
  if (!mediaType) throw invalid('cannot tell the manifest media type: set Content-Type or mediaType');
  if (!manifestMediaTypes.has(mediaType)) throw invalid(`unsupported manifest media type ${mediaType}`, { mediaType });
  if (declared !== undefined && declared !== mediaType) {
    throw invalid(`mediaType ${declared} in the manifest does not match Content-Type ${mediaType}`);
  }
  if (json.schemaVersion !== 2) throw invalid('schemaVersion must be 2');
  const annotations = optionalAnnotations(json.annotations, 'annotations');
  const subject = json.subject === undefined ? undefined : descriptor(json.subject, 'subject');
  if (json.artifactType !== undefined && typeof json.artifactType !== 'string') throw invalid('artifactType must be a string');

  if (imageManifestTypes.has(mediaType)) {
    if (json.config === undefined) throw invalid('config is required');
    const config = descriptor(json.config, 'config');
    if (!Array.isArray(json.layers)) throw invalid('layers must be an array');
    const layers = json.layers.map((layer, i) => descriptor(layer, `layers[${i}]`));
    // Non-distributable layers (with `urls`) live elsewhere and need not be in the repository.
    const blobs = [config, ...layers.filter((layer, i) => !hasUrls((json as { layers: unknown[] }).layers[i]))];
    return {
      mediaType,
      blobs,
      manifests: [],
      subject,
      artifactType: (json.artifactType as string | undefined) ?? config.mediaType,
      annotations,
    };
  }
  if (!Array.isArray(json.manifests)) throw invalid('manifests must be an array');
  const manifests = json.manifests.map((child, i) => descriptor(child, `manifests[${i}]`));
  return { mediaType, blobs: [], manifests, subject, artifactType: json.artifactType as string | undefined, annotations };
}

function inferMediaType(json: Record<string, unknown>): string | undefined {
  if (Array.isArray(json.manifests)) return mediaTypes.ociIndex;
  if (json.config !== undefined) return mediaTypes.ociManifest;
  return undefined;
}

function descriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw invalid(`${where} must be a descriptor object`);
  if (typeof value.mediaType !== 'string' || value.mediaType === '') throw invalid(`${where}.mediaType must be a non-empty string`);
  if (typeof value.digest !== 'string' || !checkDigest(value.digest).ok) throw invalid(`${where}.digest is not a valid digest`, { digest: value.digest });
  if (typeof value.size !== 'number' || !Number.isSafeInteger(value.size) || value.size < 0) throw invalid(`${where}.size must be a non-negative integer`);
  if (value.artifactType !== undefined && typeof value.artifactType !== 'string') throw invalid(`${where}.artifactType must be a string`);
  const result: Descriptor = { mediaType: value.mediaType, digest: value.digest, size: value.size };
  if (typeof value.artifactType === 'string') result.artifactType = value.artifactType;
  const annotations = optionalAnnotations(value.annotations, `${where}.annotations`);
  if (annotations) result.annotations = annotations;
  return result;
}

function optionalAnnotations(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || Object.values(value).some((v) => typeof v !== 'string')) throw invalid(`${where} must map strings to strings`);
  return value as Record<string, string>;
}

function hasUrls(value: unknown): boolean {
  return isObject(value) && Array.isArray(value.urls) && value.urls.length > 0;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
