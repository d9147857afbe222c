/**
 * @module builds/base-resolution
 * `FROM` lines resolve against Slipway's own registry first: an unqualified reference
 * (`team/base:1`, `node:20`) that exists in this registry is rewritten to it; anything else is
 * left for buildah to resolve (Docker Hub and the host's search registries). Also lists every
 * external image a Dockerfile pulls, so the build gets those registries' logins.
 */
import { normaliseReference } from '../credentials/reference.js';

const fromLine = /^(\s*FROM\s+)((?:--[a-z-]+=\S+\s+)*)(\S+)(.*)$/i;

export interface ResolvedDockerfile {
  text: string;
  /** Images pulled from elsewhere than Slipway's registry, as written (after rewriting). */
  external: string[];
}

/** Whether the reference names a registry host (first component with '.' or ':' or `localhost`). */
function hasHost(reference: string): boolean {
  const first = reference.split('/')[0]!;
  return reference.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
}

export async function resolveBaseImages(dockerfile: string, ownHost: string, existsHere: (repository: string, reference: string) => Promise<boolean>): Promise<ResolvedDockerfile> {
  const stages = new Set<string>();
  const external: string[] = [];
  const lines = dockerfile.split('\n');
  for (const [index, line] of lines.entries()) {
    const match = fromLine.exec(line);
    if (!match) continue;
    const [, head, flags, image, rest] = match as unknown as [string, string, string, string, string];
    const alias = /\s+AS\s+(\S+)/i.exec(rest)?.[1];
    const isStage = stages.has(image.toLowerCase());
    if (alias) stages.add(alias.toLowerCase());
    if (isStage || image.toLowerCase() === 'scratch' || image.includes('$')) continue;
    if (hasHost(image)) {
      if (!image.startsWith(`${ownHost}/`)) external.push(image);
      continue;
    }
    const at = image.indexOf('@');
    const colon = image.lastIndexOf(':');
    const repository = at >= 0 ? image.slice(0, at) : colon > image.lastIndexOf('/') ? image.slice(0, colon) : image;
    const reference = at >= 0 ? image.slice(at + 1) : colon > image.lastIndexOf('/') ? image.slice(colon + 1) : 'latest';
    if (await existsHere(repository, reference)) {
      lines[index] = `${head}${flags}${ownHost}/${image}${rest}`;
    } else {
      external.push(image);
    }
  }
  return { text: lines.join('\n'), external };
}

/** The registry host an image reference pulls from, Docker Hub normalised (`docker.io`). */
export function registryHostOfImage(image: string): string | null {
  try {
    return normaliseReference(image).registry;
  } catch {
    return null;
  }
}
