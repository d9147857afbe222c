/**
 * @module http/error-handler
 * The one error handler of `/api/…` (registered once, on the root server; the pipeline push
 * webhook's codes go through it too) and its artifact-storage variant for the build routes, both rendering `toApiError`. A 5xx answer is
 * logged and carries the request id in its detail, never the fault's own text.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, toApiError, type ErrorBody, type ErrorSurface } from './errors.js';

type Handler = (error: unknown, request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>;

function render(error: unknown, request: FastifyRequest, surfaces: readonly ErrorSurface[]): { status: number; body: ErrorBody } {
  let apiError = toApiError(error, surfaces);
  if (apiError.status >= 500) {
    // A function's own failure (502/504) is its answer, not a server fault.
    if (apiError.code !== 'FUNCTION_FAILED' && apiError.code !== 'FUNCTION_TIMEOUT') request.log.error({ err: error }, 'request failed');
    apiError = new ApiError(apiError.code, apiError.message, { ...(isRecord(apiError.detail) ? apiError.detail : {}), requestId: request.id });
  }
  return { status: apiError.status, body: apiError.toJSON() };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `{code, message, detail}` with the code's status. */
export const apiErrorHandler: Handler = async (error, request, reply) => {
  const { status, body } = render(error, request, ['api', 'webhook']);
  return reply.code(status).send(body);
};

/** The artifact-storage routes: the same, plus the seed's `{status: "error", errorMessage}`. */
export const artifactStorageErrorHandler: Handler = async (error, request, reply) => {
  const { status, body } = render(error, request, ['artifact-storage']);
  return reply.code(status).send({ ...body, status: 'error', errorMessage: body.message });
};
