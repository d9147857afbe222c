/**
 * @module functions/api
 * The function operations of `/api/v1` (the resource, revisions, keys, logs, invocations;
 * not the `/fn` gateway), documented by http/openapi.ts and typed by http/api-client.ts.
 * The function's own input and patch schemas live in functions/spec.ts.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';
import { functionConfigSchema, functionInputSchema, functionPatchSchema } from './spec.js';

const time = z.string().describe('RFC 3339 UTC');

export const rollbackBody = z.object({ revision: z.number().int().min(1) }).strict();
export const functionKeyBody = z.object({ name: z.string().min(1).max(64) }).strict();
// Documentation of query strings the routes read themselves.
const waitQuery = z.object({ wait: z.enum(['true', '1', 'yes']).optional().describe('Answer once the deploy has ended') });
export const digestQuery = z.object({ digest: z.string().regex(/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/, 'an image digest such as sha256:…').describe('An image digest: `sha256:…`') });
/** Parsed by the logs route (functions/routes.ts). */
export const functionLogsQuery = z.object({
  tail: z.coerce.number().int().min(0).max(100_000).optional().describe('Lines from the end to start with (default 1000)'),
  follow: z.enum(['true', '1', 'yes', 'false', '0', 'no']).optional().describe('Keep the answer open for new lines'),
});
const invokeQuery = z.object({ mode: z.enum(['sync', 'async']).default('sync') });

export const functionView = z.object({
  ...functionConfigSchema.shape,
  namespace: z.string(), name: z.string(), access: z.enum(['private', 'public']),
  secretEnv: z.record(z.string(), z.string()).describe('Secret variables, values masked'),
  imageDigest: z.string().nullable(), status: z.enum(['deploying', 'ready', 'failed']), statusReason: z.string().optional(),
  activeRevision: z.number().nullable(), latestRevision: z.number(), instances: z.number(),
  url: z.string().describe('Where HTTP functions answer, and event functions take invocations'),
  createdAt: time, updatedAt: time,
});
export const revisionView = z.object({
  number: z.number(), image: z.string(), imageDigest: z.string().nullable(), status: z.enum(['deploying', 'ready', 'failed', 'retired']),
  reason: z.string().optional(), output: z.array(z.string()).optional(), active: z.boolean(), createdAt: time, readyAt: time.optional(),
});
export const digestRevisionView = revisionView.extend({ function: z.string().describe('The function the revision belongs to') });
export const invocationView = z.object({
  id: z.string(), function: z.string(), revision: z.number().nullable(), status: z.enum(['queued', 'running', 'succeeded', 'failed']),
  attempts: z.number(), createdAt: time, finishedAt: time.optional(),
  result: z.object({ statusCode: z.number(), headers: z.record(z.string(), z.string()), body: z.string(), isBase64Encoded: z.literal(true) }).optional(),
  error: z.string().optional(),
});
export const functionMetrics = z.object({
  requests: z.number(), errors: z.number(), timeouts: z.number(), coldStarts: z.number(), inFlight: z.number(), queued: z.number(), instances: z.number(),
  latencyMs: z.object({ p50: z.number(), p99: z.number() }),
});
export const instanceView = z.object({ id: z.string(), revision: z.number(), address: z.string(), inFlight: z.number(), served: z.number(), idleMs: z.number() });
export const functionKey = z.object({ id: z.string(), name: z.string(), createdAt: time, lastUsedAt: time.nullable() });
export const createdFunctionKey = z.object({ id: z.string(), name: z.string(), key: z.string().describe('The secret, shown once'), createdAt: time });

const fns = '/api/v1/namespaces/:ns/functions';

export const functionOperations = defineOperations({
  createFunction: { method: 'POST', path: fns, summary: 'Create a function and deploy its first revision (422 when `wait` and it failed)', access: 'contributor', query: waitQuery, body: functionInputSchema, answers: { 201: functionView, 422: functionView } },
  listFunctions: { method: 'GET', path: fns, summary: 'Functions of a namespace', access: 'reader', answers: { 200: z.object({ functions: z.array(functionView) }) } },
  getFunction: { method: 'GET', path: `${fns}/:name`, summary: 'One function', access: 'reader', answers: { 200: functionView } },
  updateFunction: { method: 'PATCH', path: `${fns}/:name`, summary: 'Change a function (a new revision when its config changes)', access: 'contributor', query: waitQuery, body: functionPatchSchema, answers: { 200: functionView } },
  deleteFunction: { method: 'DELETE', path: `${fns}/:name`, summary: 'Delete a function', access: 'contributor', answers: { 204: null } },
  listRevisions: { method: 'GET', path: `${fns}/:name/revisions`, summary: 'A function\'s revisions', access: 'reader', answers: { 200: z.object({ revisions: z.array(revisionView) }) } },
  listRevisionsByDigest: {
    method: 'GET', path: '/api/v1/namespaces/:ns/function-revisions', summary: 'Revisions of the namespace\'s functions that run an image digest, newest first (what a delivered artefact became)',
    access: 'reader', query: digestQuery, answers: { 200: z.object({ revisions: z.array(digestRevisionView) }) },
  },
  rollbackFunction: { method: 'POST', path: `${fns}/:name/rollback`, summary: 'Make an earlier revision active again', access: 'contributor', body: rollbackBody, answers: { 200: functionView } },
  functionMetrics: { method: 'GET', path: `${fns}/:name/metrics`, summary: 'Counters and latency of a function (this server)', access: 'reader', answers: { 200: functionMetrics } },
  listInstances: { method: 'GET', path: `${fns}/:name/instances`, summary: 'A function\'s running instances (this server)', access: 'reader', answers: { 200: z.object({ instances: z.array(instanceView) }) } },
  createFunctionKey: { method: 'POST', path: `${fns}/:name/keys`, summary: 'Create a key that may invoke the function (shown once)', access: 'contributor', body: functionKeyBody, answers: { 201: createdFunctionKey } },
  listFunctionKeys: { method: 'GET', path: `${fns}/:name/keys`, summary: 'A function\'s invocation keys (no secrets)', access: 'contributor', answers: { 200: z.object({ keys: z.array(functionKey) }) } },
  deleteFunctionKey: { method: 'DELETE', path: `${fns}/:name/keys/:id`, summary: 'Delete an invocation key', access: 'contributor', answers: { 204: null } },
  functionLogs: {
    method: 'GET', path: `${fns}/:name/logs`, summary: 'A function\'s log lines as NDJSON (`follow`: kept open)', access: 'reader', query: functionLogsQuery,
    answers: { 200: { raw: 'application/x-ndjson', description: 'One `{time, function, revision, instance, stream, line, tags}` per line' } },
  },
  invokeFunction: {
    method: 'POST', path: `${fns}/:name/invocations`, summary: 'Invoke an event function: its answer (sync), or a queued invocation (async, 202)',
    description: 'Private functions need a namespace member\'s credentials or one of the function\'s keys; public ones no credentials.',
    access: 'public', query: invokeQuery, rawBody: { raw: '*/*', description: 'Passed to the function as it is' },
    answers: { 200: { raw: '*/*', description: 'The function\'s own answer (any status), with `X-Slipway-Revision`' }, 202: invocationView },
  },
  getInvocation: { method: 'GET', path: `${fns}/:name/invocations/:id`, summary: 'An async invocation and its result', access: 'reader', answers: { 200: invocationView } },
});
