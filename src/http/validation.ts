/**
 * @module http/validation
 * Request-body validation for the JSON API: a zod schema in, the parsed value out, or a 400
 * naming each bad field (zod's messages never repeat the submitted values).
 */
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { ApiError } from './errors.js';

export function parseBody<T extends z.ZodType>(schema: T, request: FastifyRequest): z.output<T> {
  const parsed = schema.safeParse(request.body ?? {});
  if (!parsed.success) throw new ApiError('BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
  return parsed.data;
}

/**
 * A query string checked with its operation's documented schema (`<part>/api.ts`): the parsed
 * value, or a 400 naming each bad parameter (`limit: …`), the same shape as a bad body.
 */
export function parseQuery<T extends z.ZodType>(schema: T, request: FastifyRequest): z.output<T> {
  const parsed = schema.safeParse(request.query ?? {});
  if (!parsed.success) throw new ApiError('BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '));
  return parsed.data;
}
