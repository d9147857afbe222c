/** What differs between two revisions of a function (the revisions view's compare panel). */

/** Fields every revision has its own of, so they are no difference worth showing. */
const ownFields = new Set(['number', 'active', 'createdAt', 'readyAt', 'output']);

export interface FieldChange { key: string; a: string; b: string }

/** The fields whose values differ, as JSON text (a missing field is `undefined`), in a stable order. */
export function revisionDiff(left: object, right: object): FieldChange[] {
  const a = left as Record<string, unknown>;
  const b = right as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => !ownFields.has(k));
  return keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).map((key) => ({ key, a: JSON.stringify(a[key]) ?? 'undefined', b: JSON.stringify(b[key]) ?? 'undefined' }));
}
