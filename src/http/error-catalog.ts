/**
 * @module http/error-catalog
 * Every error code Slipway answers or throws, once, with its HTTP status, the surfaces that
 * send it and a one-line meaning (`docs/errors.md` lists the same; a test keeps them equal).
 * `SlipwayError` is the base of every part's domain errors. This file imports nothing, so every
 * part may import it.
 *
 * Surfaces: `api` — `/api/…` and the server's own endpoints, `{code, message, detail}`;
 * `artifact-storage` — the build routes, the same plus the seed's `{status, errorMessage}`;
 * `registry` — `/v2`, the OCI envelope `{errors: [{code, message, detail}]}`;
 * `webhook` — a git host's push delivery, `{code, message}`; `internal` — never sent as such:
 * a handler that meets one answers INTERNAL (or UNKNOWN on `/v2`) and logs it.
 */

export type ErrorSurface = 'api' | 'artifact-storage' | 'registry' | 'webhook' | 'internal';

interface CatalogEntry {
  status: number;
  surfaces: readonly ErrorSurface[];
  meaning: string;
}

const api = ['api', 'artifact-storage'] as const;

export const errorCatalog = {
  // ---- the REST API (and the artifact-storage routes) ----
  BAD_REQUEST: { status: 400, surfaces: api, meaning: 'the request is malformed or fails validation; detail names the problem' },
  UNAUTHORIZED: { status: 401, surfaces: [...api, 'registry'], meaning: 'authentication required or the credentials are wrong' },
  FORBIDDEN: { status: 403, surfaces: api, meaning: 'authenticated, but the role or key scope does not allow this' },
  NOT_FOUND: { status: 404, surfaces: api, meaning: 'no such resource (or not visible to the caller)' },
  CONFLICT: { status: 409, surfaces: api, meaning: 'the resource exists already or is in a state that forbids this' },
  PAYLOAD_TOO_LARGE: { status: 413, surfaces: [...api, 'webhook'], meaning: 'the body is larger than the configured limit' },
  TOO_MANY_REQUESTS: { status: 429, surfaces: api, meaning: 'too many failed logins; retry later' },
  INTERNAL: { status: 500, surfaces: api, meaning: 'an unexpected server fault; detail carries the request id for the logs' },
  FUNCTION_FAILED: { status: 502, surfaces: ['api'], meaning: 'the function could not answer (crashed, failing to start)' },
  UNAVAILABLE: { status: 503, surfaces: [...api, 'registry'], meaning: 'a dependency or feature is not available right now' },
  FUNCTION_TIMEOUT: { status: 504, surfaces: ['api'], meaning: 'no function instance answered in time' },
  CREDENTIAL_INVALID: { status: 400, surfaces: ['api'], meaning: 'the external registry login material is malformed' },
  CREDENTIAL_REJECTED: { status: 503, surfaces: ['api'], meaning: 'the external registry vendor refused the login material' },
  CREDENTIAL_EXCHANGE_FAILED: { status: 503, surfaces: ['api'], meaning: 'the external registry vendor could not be reached or answered nonsense' },
  CREDENTIAL_HAND_OUT_DISABLED: { status: 403, surfaces: ['api'], meaning: 'the external registry does not hand credentials to CI (enable_ci is off)' },

  // ---- the push webhook of a pipeline (git hosts read these) ----
  UNKNOWN_PROVIDER: { status: 400, surfaces: ['webhook'], meaning: 'the delivery is from no git host Slipway knows' },
  SIGNATURE_MISSING: { status: 401, surfaces: ['webhook'], meaning: 'the delivery carries no signature or token' },
  SIGNATURE_MISMATCH: { status: 401, surfaces: ['webhook'], meaning: 'the signature or token does not match the secret' },
  SECRET_NOT_SET: { status: 401, surfaces: ['webhook'], meaning: 'no secret to check the delivery against' },
  NO_SECRET: { status: 403, surfaces: ['webhook'], meaning: 'the pipeline has no webhook secret' },
  EVENT_MISSING: { status: 400, surfaces: ['webhook'], meaning: 'the delivery names no event' },
  EVENT_IGNORED: { status: 422, surfaces: ['webhook'], meaning: 'an event other than a push of a branch or tag (answered 202 "ignored")' },
  DELIVERY_ID_MISSING: { status: 400, surfaces: ['webhook'], meaning: 'the delivery has no delivery id' },
  DELIVERY_ID_INVALID: { status: 400, surfaces: ['webhook'], meaning: 'the delivery id is malformed' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, surfaces: ['webhook'], meaning: 'the body is neither JSON nor form-encoded' },
  INVALID_JSON: { status: 400, surfaces: ['webhook'], meaning: 'the body is not valid JSON' },
  INVALID_PAYLOAD: { status: 422, surfaces: ['webhook'], meaning: 'the JSON lacks the push fields (400 for a form body without "payload")' },

  // ---- the registry (/v2), as the OCI distribution spec and CNCF Distribution define them ----
  BLOB_UNKNOWN: { status: 404, surfaces: ['registry'], meaning: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, surfaces: ['registry'], meaning: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, surfaces: ['registry'], meaning: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, surfaces: ['registry'], meaning: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 400, surfaces: ['registry'], meaning: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, surfaces: ['registry'], meaning: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, surfaces: ['registry'], meaning: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, surfaces: ['registry'], meaning: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, surfaces: ['registry'], meaning: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, surfaces: ['registry'], meaning: 'provided length did not match content length' },
  TAG_INVALID: { status: 400, surfaces: ['registry'], meaning: 'manifest tag did not match URI' },
  DENIED: { status: 403, surfaces: ['registry'], meaning: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, surfaces: ['registry'], meaning: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, surfaces: ['registry'], meaning: 'too many requests' },
  RANGE_INVALID: { status: 416, surfaces: ['registry'], meaning: 'invalid content range' },
  PAGINATION_NUMBER_INVALID: { status: 400, surfaces: ['registry'], meaning: 'invalid number of results requested' },
  UNKNOWN: { status: 500, surfaces: ['registry'], meaning: 'unknown error' },
  UPSTREAM_UNAVAILABLE: { status: 503, surfaces: ['registry'], meaning: "a pull-through namespace's upstream cannot be reached (or answers 5xx) and nothing is cached" },
  UPSTREAM_DIGEST_MISMATCH: { status: 502, surfaces: ['registry'], meaning: 'the upstream sent content whose digest is not the one asked for or announced; refused, nothing stored' },

  // ---- thrown inside the server, never sent as such ----
  BUILD_SPEC_INVALID: { status: 400, surfaces: ['internal'], meaning: 'a build spec (slipway.yaml) does not parse or validate; recorded on the build or run' },
  BUILD_FAILED: { status: 500, surfaces: ['internal'], meaning: 'a build step failed; recorded on the build' },
  GIT_FAILED: { status: 500, surfaces: ['internal'], meaning: 'a git operation failed; the reason says why' },
  ENVELOPE_INVALID: { status: 500, surfaces: ['internal'], meaning: 'not a vault envelope of a version this vault reads' },
  ENVELOPE_UNAUTHENTIC: { status: 500, surfaces: ['internal'], meaning: 'a vault envelope was tampered with or sealed for another record' },
  DATA_KEY_UNKNOWN: { status: 500, surfaces: ['internal'], meaning: 'a vault envelope names a data key the database does not have' },
  MASTER_KEY_MISMATCH: { status: 500, surfaces: ['internal'], meaning: 'a data key is wrapped by a master key this process was not given' },
  DATA_KEY_DAMAGED: { status: 500, surfaces: ['internal'], meaning: 'the stored wrapping of a data key does not authenticate' },
  CONTEXT_REQUIRED: { status: 500, surfaces: ['internal'], meaning: 'a vault seal or open was called without a record context' },
  TOKEN_INVALID: { status: 401, surfaces: ['internal'], meaning: 'a registry bearer token is malformed, expired or not ours' },
  SOURCE_CREDENTIALS_UNAVAILABLE: { status: 500, surfaces: ['internal'], meaning: "a pipeline source's credentials cannot be had; the stage fails" },
  LOCAL_NAME_INVALID: { status: 400, surfaces: ['internal'], meaning: 'a local image name in a pipeline step is not one docker accepts' },
  STAGE_REQUEST_INVALID: { status: 500, surfaces: ['internal'], meaning: 'a stage was asked to run with invalid arguments (a caller bug)' },
  CONFIG_INVALID: { status: 500, surfaces: ['internal'], meaning: 'the configuration does not validate; the server does not start' },
  JOB_ABORTED: { status: 500, surfaces: ['internal'], meaning: 'a background job was aborted (shutdown or lost lease)' },
  LEASE_LOST: { status: 500, surfaces: ['internal'], meaning: "a background job's lease went to another worker" },
  STORAGE_NOT_FOUND: { status: 404, surfaces: ['internal'], meaning: 'a blob or upload session is not in the blob store (the registry answers its own code)' },
  UPLOAD_OFFSET_MISMATCH: { status: 416, surfaces: ['internal'], meaning: 'an upload chunk does not start where the session ends' },
  RUNTIME_UNAVAILABLE: { status: 503, surfaces: ['internal'], meaning: 'the function runtime cannot run on this host; functions are off' },
  INSTANCE_SPEC_INVALID: { status: 400, surfaces: ['internal'], meaning: 'an image cannot run as asked (no command)' },
  INSTANCE_EXITED: { status: 502, surfaces: ['internal'], meaning: 'a function instance exited before it listened' },
  INSTANCE_START_FAILED: { status: 502, surfaces: ['internal'], meaning: 'a function instance did not start; reported as FUNCTION_FAILED' },
  POOL_UNAVAILABLE: { status: 503, surfaces: ['internal'], meaning: 'a function revision cannot serve (failing or stopped)' },
  QUEUE_TIMEOUT: { status: 504, surfaces: ['internal'], meaning: 'a request waited too long for a function instance' },
} as const satisfies Record<string, CatalogEntry>;

export type ErrorCode = keyof typeof errorCatalog;

export interface ErrorBody {
  code: string;
  message: string;
  detail?: unknown;
}

/**
 * The base of every domain error: a catalog code, the code's status and an optional `detail`
 * (safe to show the caller). `status` overrides the catalog's only where a protocol asks for
 * another one at one place (a 413 for a too-large manifest, a 400 form-body webhook).
 */
export class SlipwayError extends Error {
  override name = 'SlipwayError';
  readonly status: number;

  constructor(readonly code: ErrorCode, message?: string, readonly detail?: unknown, status?: number) {
    super(message ?? errorCatalog[code].meaning);
    this.status = status ?? errorCatalog[code].status;
  }

  /** May the error be shown to a caller of `surface` as it is? */
  sentOn(surface: ErrorSurface): boolean {
    return (errorCatalog[this.code].surfaces as readonly ErrorSurface[]).includes(surface);
  }

  toJSON(): ErrorBody {
    return this.detail === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, detail: this.detail };
  }
}
