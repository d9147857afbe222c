/**
 * @module pipelines/run-images
 * Names of a pipeline run's local images. Steps write names as they would for docker (`app`,
 * `app:1`, `team/app:1`, `registry.example.com:5000/team/app:1`); the build driver's store holds
 * them under `localhost/slipway-run-<run>/…`, so concurrent runs never see each other's images
 * and a run's images are found (and removed at run end) by that prefix. Builds without a name get
 * one in `localhost/slipway-run-<run>-untagged`.
 */
import { SlipwayError } from '../http/error-catalog.js';
import type { LocalImage } from '../builds/index.js';

const componentPattern = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** The run id as one lower-case repository path component. */
export function runKey(runId: string): string {
  const key = runId.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  if (key === '' || key.length > 100) throw new Error(`run id ${JSON.stringify(runId)} cannot name images`);
  return key;
}

/** `localhost/slipway-run-<run>/`: the prefix of every image name of a run. */
export function runImagePrefix(runId: string): string {
  return `localhost/slipway-run-${runKey(runId)}/`;
}

/** Names of builds without `-t` (still removed at run end; not listed by `docker images`). */
export function untaggedRepository(runId: string): string {
  return `localhost/slipway-run-${runKey(runId)}-untagged`;
}

export class LocalNameError extends SlipwayError {
  override name = 'LocalNameError';
  constructor(message: string) {
    super('LOCAL_NAME_INVALID', message);
  }
}

/**
 * The run-scoped name of a local image name as steps write it (`app`, `app:1`, `team/app:1`,
 * `registry.example.com:5000/team/app:1`): `localhost/slipway-run-<run>/<repository>:<tag>`
 * (a registry port `:5000` becomes `_5000`). Throws a LocalNameError for names docker rejects.
 */
export function scopedImageName(runId: string, name: string): string {
  const prefix = runImagePrefix(runId);
  if (name.startsWith(prefix)) return name.includes(':', name.lastIndexOf('/')) ? name : `${name}:latest`;
  if (name.includes('@')) throw new LocalNameError(`${name}: digests are not supported for local image names`);
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  const repository = colon > slash ? name.slice(0, colon) : name;
  const tag = colon > slash ? name.slice(colon + 1) : 'latest';
  if (!tagPattern.test(tag)) throw new LocalNameError(`invalid tag ${JSON.stringify(tag)} in ${name}`);
  const parts = repository.split('/');
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    const host = /^([a-z0-9.-]+)(?::(\d{1,5}))?$/.exec(first.toLowerCase());
    if (!host) throw new LocalNameError(`invalid registry host in ${name}`);
    parts[0] = host[2] ? `${host[1]}_${host[2]}` : host[1]!;
  }
  for (const part of parts) if (!componentPattern.test(part)) throw new LocalNameError(`invalid reference format: ${JSON.stringify(name)} (repository names are lower-case letters, digits and separators)`);
  return `${prefix}${parts.join('/')}:${tag}`;
}

/** The name a step wrote for a run-scoped name (the inverse of scopedImageName). */
export function unscopedImageName(runId: string, scoped: string): string {
  const prefix = runImagePrefix(runId);
  if (!scoped.startsWith(prefix)) return scoped;
  const parts = scoped.slice(prefix.length).split('/');
  if (parts.length > 1) parts[0] = parts[0]!.replace(/^([a-z0-9.-]*\.[a-z0-9.-]*|localhost)_(\d{1,5})$/, '$1:$2');
  return parts.join('/');
}

/** Replaces run-scoped names in a line of the build tool's output by the names the step wrote. */
export function unscopeText(runId: string, line: string): string {
  const prefix = runImagePrefix(runId);
  if (!line.includes(prefix)) return line;
  return line.replace(new RegExp(`${prefix.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}[^\\s"']*`, 'g'), (name) => unscopedImageName(runId, name));
}

/** The images with a name of the run (its tagged and untagged builds). */
export function runImagesOf(images: LocalImage[], runId: string): LocalImage[] {
  const prefix = runImagePrefix(runId);
  const untagged = `${untaggedRepository(runId)}:`;
  return images.filter((image) => image.names.some((name) => name.startsWith(prefix) || name.startsWith(untagged)));
}

/** Every name of a run (including untagged builds) among `images`. */
export function runImageNames(images: LocalImage[], runId: string): string[] {
  const prefix = runImagePrefix(runId);
  const untagged = `${untaggedRepository(runId)}:`;
  return runImagesOf(images, runId).flatMap((image) => image.names.filter((name) => name.startsWith(prefix) || name.startsWith(untagged)));
}
