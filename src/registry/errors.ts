/**
 * @module registry/errors
 * The registry's wire errors: the OCI codes of the one catalog (`http/error-catalog.ts`), each
 * with its HTTP status, as the OCI distribution spec and CNCF Distribution define them.
 * Services throw `RegistryError`; the `/v2` error handler renders the spec's envelope
 * `{ "errors": [...] }`.
 */
import { SlipwayError, type ErrorCode } from '../http/error-catalog.js';

export type RegistryErrorCode = Extract<ErrorCode,
  | 'BLOB_UNKNOWN' | 'BLOB_UPLOAD_INVALID' | 'BLOB_UPLOAD_UNKNOWN' | 'DIGEST_INVALID' | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID' | 'MANIFEST_UNKNOWN' | 'NAME_INVALID' | 'NAME_UNKNOWN' | 'SIZE_INVALID' | 'TAG_INVALID'
  | 'UNAUTHORIZED' | 'DENIED' | 'UNSUPPORTED' | 'TOOMANYREQUESTS' | 'RANGE_INVALID' | 'PAGINATION_NUMBER_INVALID'
  | 'UNAVAILABLE' | 'UNKNOWN' | 'UPSTREAM_UNAVAILABLE' | 'UPSTREAM_DIGEST_MISMATCH'>;

export class RegistryError extends SlipwayError {
  override name = 'RegistryError';
  /** Extra headers for the error response (e.g. `Range` on a 416). */
  headers?: Record<string, string>;

  /** `status` overrides the catalog's only where the spec asks for another (413 for a too-large manifest). */
  constructor(override readonly code: RegistryErrorCode, message?: string, detail?: unknown, status?: number) {
    super(code, message, detail, status);
  }

  withHeaders(headers: Record<string, string>): this {
    this.headers = headers;
    return this;
  }

  toEnvelope(): { errors: Array<{ code: string; message: string; detail?: unknown }> } {
    return { errors: [this.toJSON()] };
  }
}
