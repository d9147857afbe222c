/**
 * @module credentials/errors
 * The one error the credentials part throws for login material, with its catalog code.
 * Messages never carry secret material: `redact` scrubs any secret that a vendor's error text
 * might echo back.
 */
import { SlipwayError } from '../http/error-catalog.js';

export type CredentialErrorCode =
  /** The stored material is malformed (missing field, unparsable key file). */
  | 'CREDENTIAL_INVALID'
  /** The vendor refused the material (bad key, revoked, no permission). */
  | 'CREDENTIAL_REJECTED'
  /** The vendor could not be reached or answered something unusable. */
  | 'CREDENTIAL_EXCHANGE_FAILED'
  /** The record does not hand credentials to CI (`enable_ci` is off). */
  | 'CREDENTIAL_HAND_OUT_DISABLED';

export class CredentialError extends SlipwayError {
  override readonly name = 'CredentialError';
  constructor(override readonly code: CredentialErrorCode, message: string) {
    super(code, message);
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
