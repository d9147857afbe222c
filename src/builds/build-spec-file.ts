/**
 * @module builds/build-spec-file
 * Finding a repository's build-spec file (never outside the checkout) and reading it, size
 * limited, into readBuildSpec.
 */
import { lstat, open, realpath } from 'node:fs/promises';
import path from 'node:path';
import { BuildSpecError, buildSpecFileNames, maxBuildSpecBytes, readBuildSpec, type ParsedBuildSpec } from './build-spec.js';

function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative !== '' && !relative.startsWith(`..${path.sep}`) && relative !== '..' && !path.isAbsolute(relative);
}

/**
 * The build spec of a checked-out repository: `customPath` (a stage's `buildSpecFile`, relative
 * to `dir`) when given, else the first of `build_spec.yaml`, `build_spec.yml`,
 * `.slipway/build_spec.yaml`. Returns its absolute path, or null when there is none. A path (or a
 * symbolic link) that leads outside `dir` is a BuildSpecError.
 */
export async function findBuildSpec(dir: string, customPath?: string): Promise<string | null> {
  const root = await realpath(dir);
  const candidates = customPath !== undefined ? [customPath] : [...buildSpecFileNames];
  for (const candidate of candidates) {
    if (customPath !== undefined && (path.isAbsolute(candidate) || candidate.split(/[\\/]/).includes('..'))) {
      throw new BuildSpecError(`the build spec path ${JSON.stringify(candidate)} must be relative to the repository and stay inside it`);
    }
    const full = path.join(root, candidate);
    let real: string;
    try {
      await lstat(full);
      real = await realpath(full);
    } catch {
      continue;
    }
    if (!isInside(root, real)) throw new BuildSpecError(`the build spec ${JSON.stringify(candidate)} is a link to outside the repository`);
    try {
      if (!(await lstat(real)).isFile()) continue;
    } catch {
      continue;
    }
    return full;
  }
  return null;
}

/** Finds (see findBuildSpec) and parses a repository's build spec; a missing file is a BuildSpecError. */
export async function loadBuildSpec(dir: string, customPath?: string, options: { strict?: boolean } = {}): Promise<{ path: string } & ParsedBuildSpec> {
  const file = await findBuildSpec(dir, customPath);
  if (file === null) {
    const names = customPath !== undefined ? JSON.stringify(customPath) : buildSpecFileNames.join(', ');
    throw new BuildSpecError(`no build spec found in the repository (looked for ${names})`);
  }
  const handle = await open(file, 'r');
  let text: string;
  try {
    const buffer = Buffer.alloc(maxBuildSpecBytes + 1);
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBuildSpecBytes) throw new BuildSpecError(`${path.relative(dir, file)} is larger than ${maxBuildSpecBytes} bytes`);
    text = buffer.subarray(0, length).toString('utf8');
  } finally {
    await handle.close();
  }
  return { path: file, ...readBuildSpec(text, { fileName: path.relative(await realpath(dir), file), strict: options.strict }) };
}
