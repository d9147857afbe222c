/**
 * @module credentials/errors
 * The one error the credentials part throws for login material, with a code for the HTTP layer
 * to map. Messages never carry secret material: `redact` scrubs any secret that a vendor's
 * error text might echo back.
 */

export type CredentialErrorCode =
  /** The stored material is malformed (missing field, unparsable key file). */
  | 'CREDENTIAL_INVALID'
  /** The vendor refused the material (bad key, revoked, no permission). */
  | 'CREDENTIAL_REJECTED'
  /** The vendor could not be reached or answered something unusable. */
  | 'CREDENTIAL_EXCHANGE_FAILED';

export class CredentialError extends Error {
  override readonly name = 'CredentialError';
  constructor(readonly code: CredentialErrorCode, message: string) {
    super(message);
  }
}

/** Replaces every occurrence of each secret (4+ characters) in `message` with `***`. */
export function redact(message: string, secrets: Array<string | undefined>): string {
  let out = message;
  for (const secret of secrets) {
    if (secret && secret.length >= 4) out = out.split(secret).join('***');
  }
  return out;
}
