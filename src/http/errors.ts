/**
 * @module http/errors
 * The API's side of the one error model (codes and statuses: `error-catalog.ts`): `ApiError`
 * for errors the routes throw themselves, and `toApiError`, which turns anything thrown into
 * what an `/api/…` caller may see.
 */
import { errorCatalog, SlipwayError, type ErrorCode, type ErrorSurface } from './error-catalog.js';

export { errorCatalog, SlipwayError, type ErrorBody, type ErrorCode, type ErrorSurface } from './error-catalog.js';

/** @deprecated name kept for imports: every code of the catalog. */
export type ApiErrorCode = ErrorCode;

/** An error a route throws itself (bad query, missing resource) with an API code. */
export class ApiError extends SlipwayError {
  override name = 'ApiError';
}

/**
 * Anything thrown → what a caller of `surfaces` may see: a SlipwayError one of them sends as it
 * is; Fastify's own client errors by their status code (validation → BAD_REQUEST with detail,
 * 413 → PAYLOAD_TOO_LARGE); everything else INTERNAL, its text never shown.
 */
export function toApiError(error: unknown, surfaces: readonly ErrorSurface[] = ['api', 'webhook']): SlipwayError {
  if (error instanceof SlipwayError && surfaces.some((surface) => error.sentOn(surface))) return error;
  if (error instanceof SlipwayError) return new ApiError('INTERNAL', 'internal error');
  const fastifyError = error as { statusCode?: number; message?: string; code?: string; validation?: unknown };
  if (fastifyError.statusCode === 413) return new ApiError('PAYLOAD_TOO_LARGE', fastifyError.message ?? 'body too large');
  if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return new ApiError('BAD_REQUEST', fastifyError.message ?? 'bad request', { code: fastifyError.code });
  }
  return new ApiError('INTERNAL', 'internal error');
}

/** The catalog status of a code (for answers built without an error, e.g. a 404 lookup). */
export function statusOf(code: ErrorCode): number {
  return errorCatalog[code].status;
}
