/**
 * @module events/api
 * The outgoing-webhook and event-feed operations of `/api/v1` (see events/routes.ts for
 * signatures and the stream's framing), documented by http/openapi.ts and typed by
 * http/api-client.ts.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';
import { patternProblem, webhookUrlProblem } from './patterns.js';

const time = z.string().describe('RFC 3339 UTC');

const urlSchema = z.string().superRefine((value, ctx) => {
  const problem = webhookUrlProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});
const patternSchema = z.string().superRefine((value, ctx) => {
  const problem = patternProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
}).describe('Dot-separated segments, `*` matching anything: `run.*`, `*.failed`, `*`');
const eventsSchema = z.array(patternSchema).min(1).max(50);
const secretSchema = z.string().min(16).max(256).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces');

export const createWebhookBody = z.object({
  url: urlSchema,
  events: eventsSchema,
  secret: secretSchema.optional(),
  active: z.boolean().optional(),
}).strict();

export const patchWebhookBody = z.object({
  url: urlSchema.optional(),
  events: eventsSchema.optional(),
  secret: secretSchema.optional(),
  rotateSecret: z.boolean().optional(),
  active: z.boolean().optional(),
}).strict().refine((patch) => Object.keys(patch).length > 0, { message: 'nothing to change' });

// The query strings, parsed by the routes with these (http/validation's parseQuery); `after`
// and the `type` patterns are checked further by the routes.
export const deliveriesQuery = z.object({ limit: z.coerce.number().int().min(1).max(500).optional(), status: z.enum(['pending', 'succeeded', 'failed']).optional() });
export const eventsQuery = z.object({
  after: z.string().optional().describe('An event id: only events after it'),
  type: z.union([z.string(), z.array(z.string())]).optional().describe('Patterns, repeated and/or comma-separated'),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});
export const streamQuery = eventsQuery.omit({ limit: true });

export const webhookView = z.object({
  id: z.string(), namespace: z.string(), url: z.string(), events: z.array(z.string()), active: z.boolean(),
  secretHint: z.string().describe('`****` and the secret\'s last 4 characters'),
  createdBy: z.string().nullable(), createdAt: time, updatedAt: time,
});
export const webhookWithSecret = webhookView.extend({ secret: z.string().describe('Shown only on create and rotation') });
export const deliveryAttempt = z.object({ at: time, status: z.number().nullable(), error: z.string().nullable(), durationMs: z.number(), responseBody: z.string().nullable() });
export const deliveryView = z.object({
  id: z.string(), webhookId: z.string(), eventId: z.string(), eventType: z.string().nullable(),
  status: z.enum(['pending', 'succeeded', 'failed']), attempts: z.number(), nextAttemptAt: time.nullable(),
  lastStatus: z.number().nullable(), lastError: z.string().nullable(), createdAt: time, finishedAt: time.nullable(),
  log: z.array(deliveryAttempt),
});
export const domainEvent = z.object({ id: z.string(), namespace: z.string(), type: z.string(), subject: z.string().nullable(), data: z.record(z.string(), z.unknown()), createdAt: time });

const hooks = '/api/v1/namespaces/:ns/webhooks';

export const eventOperations = defineOperations({
  createWebhook: { method: 'POST', path: hooks, summary: 'Add an outgoing webhook (its secret is shown once)', access: 'contributor', body: createWebhookBody, answers: { 201: webhookWithSecret } },
  listWebhooks: { method: 'GET', path: hooks, summary: 'Outgoing webhooks of a namespace', access: 'reader', answers: { 200: z.object({ webhooks: z.array(webhookView) }) } },
  getWebhook: { method: 'GET', path: `${hooks}/:id`, summary: 'One webhook', access: 'reader', answers: { 200: webhookView } },
  updateWebhook: {
    method: 'PATCH', path: `${hooks}/:id`, summary: 'Change a webhook (rotateSecret: a new secret, shown once)', access: 'contributor', body: patchWebhookBody,
    answers: { 200: webhookView.extend({ secret: z.string().optional() }) },
  },
  deleteWebhook: { method: 'DELETE', path: `${hooks}/:id`, summary: 'Remove a webhook', access: 'contributor', answers: { 204: null } },
  listDeliveries: { method: 'GET', path: `${hooks}/:id/deliveries`, summary: 'A webhook\'s deliveries, newest first, with their attempt logs', access: 'reader', query: deliveriesQuery, answers: { 200: z.object({ deliveries: z.array(deliveryView) }) } },
  getDelivery: { method: 'GET', path: `${hooks}/:id/deliveries/:deliveryId`, summary: 'One delivery', access: 'reader', answers: { 200: deliveryView } },
  redeliver: { method: 'POST', path: `${hooks}/:id/deliveries/:deliveryId/redeliver`, summary: 'Deliver an event again (a new delivery)', access: 'contributor', answers: { 202: deliveryView } },
  pingWebhook: { method: 'POST', path: `${hooks}/:id/ping`, summary: 'Deliver a `ping` event', access: 'contributor', answers: { 202: deliveryView } },
  listEvents: {
    method: 'GET', path: '/api/v1/namespaces/:ns/events', summary: 'The namespace\'s events, oldest first (without `after`: the newest `limit`, default 100)',
    access: 'reader', query: eventsQuery, answers: { 200: z.object({ events: z.array(domainEvent) }) },
  },
  streamEvents: {
    method: 'GET', path: '/api/v1/namespaces/:ns/events/stream', summary: 'The events as Server-Sent Events, live (resumes after Last-Event-ID or `after`)',
    access: 'reader', query: streamQuery, answers: { 200: { raw: 'text/event-stream', description: '`id:`/`event:`/`data:` frames, `data` being the event as JSON' } },
  },
});
