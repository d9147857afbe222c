/**
 * @module events/routes
 * Outgoing webhooks and the event feed of a namespace, under `/api/v1/namespaces/{ns}`:
 *
 *   POST   /webhooks                          contributor  { url, events: [pattern], secret?, active? } → 201, the secret shown once
 *   GET    /webhooks                          reader       { webhooks: [...] } (secretHint only)
 *   GET    /webhooks/{id}                     reader
 *   PATCH  /webhooks/{id}                     contributor  { url?, events?, secret?, rotateSecret?, active? }
 *   DELETE /webhooks/{id}                     contributor  204
 *   GET    /webhooks/{id}/deliveries          reader       ?limit=&status= → { deliveries: [...] } newest first, each with its attempt log
 *   POST   /webhooks/{id}/deliveries/{d}/redeliver  contributor  202, the new delivery
 *   POST   /webhooks/{id}/ping                contributor  202, the delivery of a `ping` event
 *   GET    /events                            reader       ?after=&type=&limit= → { events: [...] } oldest first
 *                                                          (without `after`: the newest `limit`, default 100, at most 1000)
 *   GET    /events/stream                     reader       Server-Sent Events
 *
 * Patterns (`events`, `type`): dot-separated segments, `*` matching anything: `run.*`,
 * `*.failed`, `deploy.succeeded`, `*`. `type` may repeat or be comma-separated.
 *
 * Verifying a delivery (receivers): every request has `X-Slipway-Timestamp: <unix seconds>`
 * and `X-Slipway-Signature-256: sha256=<hex>`, the lowercase hex HMAC-SHA256 keyed with the
 * webhook's secret over the exact string `<X-Slipway-Timestamp>.<raw request body>`. Compare
 * in constant time, reject timestamps more than 5 minutes off (replays), and use
 * `X-Slipway-Delivery` (stable across retries) to drop repeats. Answer 2xx within 10 s;
 * anything else is retried with exponential backoff, 6 attempts in all.
 *
 * The stream: `id:`/`event:`/`data:` frames (`data` is the event as JSON on one line), a
 * `: keep-alive` comment every 15 s. With `Last-Event-ID` (or `?after=<id>`) it first
 * replays the stored events after that id, then continues live. Events published by other
 * replicas arrive through a poll of the outbox (every 2 s, reaching 10 s back for late
 * commits). Delivery is at-least-once within a connection (dedupe by `id` across
 * reconnects); event ids are time-ordered, so an event committed by another replica more than
 * a moment after a later-id one may be missed by a resume. The stream ends when the server
 * closes; a client that falls 1 MiB behind is disconnected (it resumes with Last-Event-ID).
 * A guarded stream needs the `Authorization` header, so browsers read it with fetch, not
 * EventSource.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/access.js';
import type { ApiGuard } from '../auth/api-guard.js';
import { ApiError } from '../http/errors.js';
import { parseBody, parseQuery } from '../http/validation.js';
import type { EventBus } from './bus.js';
import { LiveStreams } from './live-stream.js';
import { patternProblem } from './patterns.js';
import { createWebhookBody, deliveriesQuery, eventsQuery, patchWebhookBody, streamQuery } from './api.js';

export interface EventRoutesOptions {
  bus: EventBus;
  /** Absent when access control is off. */
  guard?: ApiGuard;
  /** Stream keep-alive comment interval; default 15 s. */
  heartbeatMs?: number;
  /** How often a stream polls the outbox for other replicas' events; default 2 s, 0 = never. */
  pollMs?: number;
}

/** `type` as given in a query: repeated and/or comma-separated patterns. */
function typesOf(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const list = (Array.isArray(value) ? value : [value]).flatMap((v) => String(v).split(',')).map((v) => v.trim()).filter((v) => v.length > 0);
  list.forEach((pattern) => {
    const problem = patternProblem(pattern);
    if (problem) throw new ApiError('BAD_REQUEST', `type: ${problem}`);
  });
  return list.length > 0 ? list : undefined;
}

function cursorOf(value: unknown, field: string): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{1,100}$/.test(value)) throw new ApiError('BAD_REQUEST', `${field}: not an event id`);
  return value;
}

export async function eventRoutes(app: FastifyInstance, options: EventRoutesOptions): Promise<void> {
  const { bus, guard } = options;
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const pollMs = options.pollMs ?? 2000;

  type Params = { ns: string; id: string; deliveryId: string };
  const params = (request: FastifyRequest) => request.params as Params;

  const live = new LiveStreams(bus, { heartbeatMs, pollMs });
  // Streams never end by themselves: a closing server ends them, so close() can finish.
  app.addHook('preClose', async () => live.endAll());

  const member = async (request: FastifyRequest, least: 'reader' | 'contributor'): Promise<Principal | null> => {
    if (!guard) return null;
    const principal = await guard.authenticate(request);
    await guard.requireRole(principal, params(request).ns, least);
    return principal;
  };

  const base = '/api/v1/namespaces/:ns';

  // ---- webhooks ----

  app.post(`${base}/webhooks`, async (request, reply) => {
    const principal = await member(request, 'contributor');
    const input = parseBody(createWebhookBody, request);
    return reply.code(201).send(await bus.webhooks.create(params(request).ns, input, principal?.name ?? null));
  });

  app.get(`${base}/webhooks`, async (request) => {
    await member(request, 'reader');
    return { webhooks: await bus.webhooks.list(params(request).ns) };
  });

  app.get(`${base}/webhooks/:id`, async (request) => {
    await member(request, 'reader');
    return bus.webhooks.get(params(request).ns, params(request).id);
  });

  app.patch(`${base}/webhooks/:id`, async (request) => {
    await member(request, 'contributor');
    const patch = parseBody(patchWebhookBody, request);
    return bus.webhooks.update(params(request).ns, params(request).id, patch);
  });

  app.delete(`${base}/webhooks/:id`, async (request, reply) => {
    await member(request, 'contributor');
    await bus.webhooks.remove(params(request).ns, params(request).id);
    return reply.code(204).send();
  });

  app.get(`${base}/webhooks/:id/deliveries`, async (request) => {
    await member(request, 'reader');
    const { limit, status } = parseQuery(deliveriesQuery, request);
    return { deliveries: await bus.webhooks.deliveries(params(request).ns, params(request).id, { limit, status }) };
  });

  app.get(`${base}/webhooks/:id/deliveries/:deliveryId`, async (request) => {
    await member(request, 'reader');
    const { ns, id, deliveryId } = params(request);
    return bus.webhooks.delivery(ns, id, deliveryId);
  });

  app.post(`${base}/webhooks/:id/deliveries/:deliveryId/redeliver`, async (request, reply) => {
    await member(request, 'contributor');
    const { ns, id, deliveryId } = params(request);
    return reply.code(202).send(await bus.webhooks.redeliver(ns, deliveryId, id));
  });

  app.post(`${base}/webhooks/:id/ping`, async (request, reply) => {
    await member(request, 'contributor');
    return reply.code(202).send(await bus.webhooks.ping(params(request).ns, params(request).id));
  });

  // ---- the event feed ----

  app.get(`${base}/events`, async (request) => {
    await member(request, 'reader');
    const q = parseQuery(eventsQuery, request);
    const events = await bus.list(params(request).ns, { after: cursorOf(q.after, 'after'), types: typesOf(q.type), limit: q.limit });
    return { events };
  });

  app.get(`${base}/events/stream`, async (request, reply) => {
    await member(request, 'reader');
    const ns = params(request).ns;
    const q = parseQuery(streamQuery, request);
    const types = typesOf(q.type);
    const lastEventId = request.headers['last-event-id'];
    const resumeFrom = cursorOf(typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : q.after, typeof lastEventId === 'string' && lastEventId !== '' ? 'Last-Event-ID' : 'after');
    await live.serve(request, reply, { namespace: ns, types, resumeFrom });
  });
}
