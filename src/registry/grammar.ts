/**
 * @module registry/grammar
 * The OCI distribution-spec grammar for repository names, tags and digests, exactly as the spec
 * writes it, and the digest algorithms Slipway can verify.
 */

/** `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*` */
export const namePattern = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
export const tagPattern = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** algorithm ":" encoded — the general form; only the algorithms below are supported. */
export const digestPattern = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** Host + `/` + name must stay within 255 characters; we keep a margin for the host. */
export const maxNameLength = 255;

export type DigestAlgorithm = 'sha256' | 'sha512';
export const digestHexLength: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 };

export function isValidName(name: string): boolean {
  return name.length <= maxNameLength && namePattern.test(name);
}

export function isValidTag(tag: string): boolean {
  return tagPattern.test(tag);
}

export type DigestCheck =
  | { ok: true; algorithm: DigestAlgorithm; hex: string }
  | { ok: false; reason: 'syntax' | 'unsupported' };

/** Checks a digest string: the general grammar, then a supported algorithm with its exact hex length. */
export function checkDigest(digest: string): DigestCheck {
  if (!digestPattern.test(digest)) return { ok: false, reason: 'syntax' };
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return { ok: false, reason: 'unsupported' };
  if (hex.length !== digestHexLength[algorithm] || !/^[a-f0-9]+$/.test(hex)) return { ok: false, reason: 'syntax' };
  return { ok: true, algorithm, hex };
}

export function isDigest(reference: string): boolean {
  return reference.includes(':');
}

/** A manifest reference that could name a stored manifest: a valid tag or a supported, well-formed digest. */
export function isValidReference(reference: string): boolean {
  return isDigest(reference) ? checkDigest(reference).ok : isValidTag(reference);
}
