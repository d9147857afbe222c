/**
 * @module http/errors
 * The JSON error shape of the REST API (`/api/v1/…`) and of the server's own endpoints:
 * `{ "code": "...", "message": "...", "detail": ... }` with the status kept beside the code.
 */
export const apiErrorCatalog = {
  BAD_REQUEST: { status: 400 },
  UNAUTHORIZED: { status: 401 },
  FORBIDDEN: { status: 403 },
  TOO_MANY_REQUESTS: { status: 429 },
  NOT_FOUND: { status: 404 },
  CONFLICT: { status: 409 },
  PAYLOAD_TOO_LARGE: { status: 413 },
  UNAVAILABLE: { status: 503 },
  /** A function could not answer (crashed, failing to start): the reason is in the message. */
  FUNCTION_FAILED: { status: 502 },
  FUNCTION_TIMEOUT: { status: 504 },
  INTERNAL: { status: 500 },
} as const satisfies Record<string, { status: number }>;

export type ApiErrorCode = keyof typeof apiErrorCatalog;

export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number;

  constructor(readonly code: ApiErrorCode, message: string, readonly detail?: unknown) {
    super(message);
    this.status = apiErrorCatalog[code].status;
  }

  toJSON(): { code: string; message: string; detail?: unknown } {
    return this.detail === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, detail: this.detail };
  }
}

/** Maps anything thrown to an ApiError; unknown errors become INTERNAL without leaking internals. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  const fastifyError = error as { statusCode?: number; message?: string; code?: string };
  if (fastifyError.statusCode === 413) return new ApiError('PAYLOAD_TOO_LARGE', fastifyError.message ?? 'body too large');
  if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return new ApiError('BAD_REQUEST', fastifyError.message ?? 'bad request', { code: fastifyError.code });
  }
  return new ApiError('INTERNAL', 'internal error');
}
