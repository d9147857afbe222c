/**
 * @module builds/unknown-keys
 * Unknown keys as warnings. Build specs and pipeline definitions are validated with zod's strict
 * objects; OCI DevOps ignores keys it does not know (real build specs carry `image` on a step,
 * `registryId` on an output), so by default an unknown key is taken out and reported instead of
 * refusing the file. Wrong types and missing fields stay errors; `strict` callers keep refusing.
 */
import type { z } from 'zod';

export type KeyPath = Array<string | number>;

export interface UnknownKey {
  /** The map that holds the key. */
  parent: KeyPath;
  key: string;
}

/** Zod's issues split into unknown keys (one entry per key) and every other problem. */
export function splitUnknownKeys(issues: readonly z.core.$ZodIssue[]): { unknown: UnknownKey[]; others: z.core.$ZodIssue[] } {
  const unknown: UnknownKey[] = [];
  const others: z.core.$ZodIssue[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') for (const key of issue.keys) unknown.push({ parent: issue.path as KeyPath, key });
    else others.push(issue);
  }
  return { unknown, others };
}

/** Deletes the keys from `data` in place (a parsed document that is not shared). */
export function dropKeys(data: unknown, keys: readonly UnknownKey[]): void {
  for (const { parent, key } of keys) {
    let node: unknown = data;
    for (const segment of parent) node = node !== null && typeof node === 'object' ? (node as Record<string | number, unknown>)[segment] : undefined;
    if (node !== null && typeof node === 'object' && !Array.isArray(node)) delete (node as Record<string, unknown>)[key];
  }
}
