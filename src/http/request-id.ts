/**
 * @module http/request-id
 * The id of each request: the caller's `X-Request-Id` when it is sane (1–128 characters of
 * letters, digits and `._:-`), otherwise a fresh UUID. Fastify's `genReqId` and the function
 * gateway's fast path both ask here, so one request keeps one id in its answer and its logs.
 */
import { randomUUID } from 'node:crypto';
import type http from 'node:http';

export const requestIdHeader = 'x-request-id';

const sane = /^[A-Za-z0-9._:-]{1,128}$/;

/** Remembered per request object: the fast path may decline and hand the request to Fastify. */
const assigned = new WeakMap<http.IncomingMessage, string>();

export function isSaneRequestId(value: unknown): value is string {
  return typeof value === 'string' && sane.test(value);
}

/** The request's id, chosen once. */
export function requestIdOf(req: http.IncomingMessage): string {
  let id = assigned.get(req);
  if (id === undefined) {
    const offered = req.headers[requestIdHeader];
    id = isSaneRequestId(offered) ? offered : randomUUID();
    assigned.set(req, id);
  }
  return id;
}
