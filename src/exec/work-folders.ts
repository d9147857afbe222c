/**
 * @module exec/work-folders
 * Destination folders that a clone or an archive extraction fills: created when missing,
 * refused when they already hold something, emptied (not removed) when the work failed.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';

/** Creates `dir` when missing; false when it already has content (the caller refuses it). */
export async function ensureEmptyDir(dir: string): Promise<boolean> {
  await mkdir(dir, { recursive: true });
  return (await readdir(dir)).length === 0;
}

/** Removes everything inside `dir`, keeping the folder itself. */
export async function emptyDir(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(names.map((name) => rm(path.join(dir, name), { recursive: true, force: true, maxRetries: 2 })));
}
