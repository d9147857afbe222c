/**
 * The distribution-spec grammar for names, tags and digests, table-driven.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkDigest, isValidName, isValidReference, isValidTag } from '../src/registry/grammar.js';
import { parseByteRange } from '../src/registry/byte-range.js';

test('repository names follow the spec grammar', () => {
  const valid = ['a', 'library/alpine', 'a0/b.c/d_e/f__g/h-i/j---k', 'x'.repeat(255), 'ns/sub/deep/er'];
  const invalid = ['', 'A', 'a/', '/a', 'a//b', 'a_', 'a..b', 'a___b', '-a', 'a/-b', 'a b', 'a:b', 'x'.repeat(256), 'a/B'];
  for (const name of valid) assert.equal(isValidName(name), true, name);
  for (const name of invalid) assert.equal(isValidName(name), false, name);
});

test('tags follow the spec grammar', () => {
  for (const tag of ['latest', 'v1.0.0', '_hidden', 'A-b_c.d', 'x'.repeat(128)]) assert.equal(isValidTag(tag), true, tag);
  for (const tag of ['', '.start', '-start', 'a/b', 'a:b', 'x'.repeat(129), 'a b']) assert.equal(isValidTag(tag), false, tag);
});

test('digests: sha256 and sha512 with exact lengths; other algorithms are unsupported', () => {
  assert.deepEqual(checkDigest(`sha256:${'a'.repeat(64)}`), { ok: true, algorithm: 'sha256', hex: 'a'.repeat(64) });
  assert.equal(checkDigest(`sha512:${'0'.repeat(128)}`).ok, true);
  assert.deepEqual(checkDigest(`sha256:${'a'.repeat(63)}`), { ok: false, reason: 'syntax' });
  assert.deepEqual(checkDigest(`sha256:${'A'.repeat(64)}`), { ok: false, reason: 'syntax' });
  assert.deepEqual(checkDigest(`sha384:${'a'.repeat(96)}`), { ok: false, reason: 'unsupported' });
  assert.deepEqual(checkDigest('multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8'), { ok: false, reason: 'unsupported' });
  assert.deepEqual(checkDigest('sha256'), { ok: false, reason: 'syntax' });
  assert.deepEqual(checkDigest(':abc'), { ok: false, reason: 'syntax' });
});

test('manifest references: a valid tag or a supported, well-formed digest', () => {
  for (const reference of ['latest', 'x'.repeat(128), `sha256:${'a'.repeat(64)}`, `sha512:${'0'.repeat(128)}`]) assert.equal(isValidReference(reference), true, reference);
  for (const reference of ['', '.INVALID_MANIFEST_NAME', 'x'.repeat(129), 'sha256:zz', `sha256:${'A'.repeat(64)}`, `sha384:${'a'.repeat(96)}`, 'a:b', 'a/b']) assert.equal(isValidReference(reference), false, reference);
});

test('byte ranges: single ranges served, multiple ignored, impossible ones unsatisfiable', () => {
  assert.deepEqual(parseByteRange('bytes=0-0', 10), { start: 0, end: 0 });
  assert.deepEqual(parseByteRange('bytes=5-100', 10), { start: 5, end: 9 });
  assert.deepEqual(parseByteRange('bytes=-4', 10), { start: 6, end: 9 });
  assert.deepEqual(parseByteRange('bytes=-40', 10), { start: 0, end: 9 });
  assert.equal(parseByteRange('bytes=0-1,3-4', 10), 'ignore');
  assert.equal(parseByteRange('items=0-1', 10), 'ignore');
  assert.equal(parseByteRange('bytes=10-', 10), 'unsatisfiable');
  assert.equal(parseByteRange('bytes=4-2', 10), 'unsatisfiable');
  assert.equal(parseByteRange('bytes=-0', 10), 'unsatisfiable');
  assert.equal(parseByteRange('bytes=x-y', 10), 'unsatisfiable');
});
