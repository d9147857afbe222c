/**
 * @module registry/errors
 * The registry's wire errors: one catalog where each code carries its HTTP status, as the OCI
 * distribution spec and CNCF Distribution define them. Services throw `RegistryError`; the
 * `/v2` error handler renders the spec's envelope `{ "errors": [...] }`.
 */

export const registryErrorCatalog = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 400, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  TAG_INVALID: { status: 400, message: 'manifest tag did not match URI' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  RANGE_INVALID: { status: 416, message: 'invalid content range' },
  PAGINATION_NUMBER_INVALID: { status: 400, message: 'invalid number of results requested' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
  UNKNOWN: { status: 500, message: 'unknown error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type RegistryErrorCode = keyof typeof registryErrorCatalog;

export class RegistryError extends Error {
  override name = 'RegistryError';
  readonly status: number;
  /** Extra headers for the error response (e.g. `Range` on a 416). */
  headers?: Record<string, string>;

  /** `status` overrides the catalog's only where the spec asks for another (413 for a too-large manifest). */
  constructor(readonly code: RegistryErrorCode, message?: string, readonly detail?: unknown, status?: number) {
    super(message ?? registryErrorCatalog[code].message);
    this.status = status ?? registryErrorCatalog[code].status;
  }

  withHeaders(headers: Record<string, string>): this {
    this.headers = headers;
    return this;
  }

  toEnvelope(): { errors: Array<{ code: string; message: string; detail?: unknown }> } {
    const entry: { code: string; message: string; detail?: unknown } = { code: this.code, message: this.message };
    if (this.detail !== undefined) entry.detail = this.detail;
    return { errors: [entry] };
  }
}
