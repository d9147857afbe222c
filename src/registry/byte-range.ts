/**
 * @module registry/byte-range
 * `Range: bytes=…` of a blob GET (RFC 9110): one range is served as 206; several ranges or an
 * unknown unit are ignored (the whole blob, 200); a range outside the blob is unsatisfiable (416).
 */
import type { ByteRange } from '../storage/blob-store.js';

export function parseByteRange(header: string, size: number): ByteRange | 'unsatisfiable' | 'ignore' {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return header.includes(',') || !header.trim().startsWith('bytes=') ? 'ignore' : 'unsatisfiable';
  const [, first, last] = match;
  if (first === '' && last === '') return 'unsatisfiable';
  if (first === '') {
    // Suffix range: the last N bytes.
    const length = Number(last);
    if (length === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(size - length, 0), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (start >= size || (last !== '' && Number(last) < start)) return 'unsatisfiable';
  return { start, end };
}
