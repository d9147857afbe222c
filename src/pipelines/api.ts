/**
 * @module pipelines/api
 * The pipeline operations of `/api/v1` (the resource, runs, logs, approvals, the push
 * webhook), documented by http/openapi.ts and typed by http/api-client.ts. The definition's
 * own schema lives in pipelines/spec.ts.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';
import { pipelineInputSchema, runInputSchema } from './spec.js';

const time = z.string().describe('RFC 3339 UTC');
const runStatus = z.enum(['queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled']);

export const rerunBody = z.strictObject({ fromStage: z.string().min(1).max(64).optional() });
export const decisionBody = z.strictObject({ comment: z.string().max(2000).optional() });
// Documentation of query strings the routes read themselves.
const runsQuery = z.object({ limit: z.coerce.number().int().optional(), status: runStatus.optional() });
const runQuery = z.object({ wait: z.enum(['true', '1']).optional().describe('Answer once the run has ended (or waits for an approval)') });
const logsQuery = z.object({ follow: z.enum(['true', '1']).optional().describe('Server-Sent Events (also with `Accept: text/event-stream`)') });
const limitQuery = z.object({ limit: z.coerce.number().int().optional() });

export const pipelineView = z.object({
  id: z.string(), namespace: z.string(), name: z.string(), spec: pipelineInputSchema,
  webhook: z.object({ path: z.string(), secretSet: z.boolean() }),
  lastRun: z.object({ number: z.number(), status: runStatus, createdAt: time }).nullable(),
  createdBy: z.string().nullable(), createdAt: time, updatedAt: time,
});
const warnings = z.array(z.object({ path: z.string(), key: z.string(), message: z.string() })).describe('Unknown keys left out of the definition');
export const createdPipeline = pipelineView.extend({
  webhook: z.object({ path: z.string(), secretSet: z.boolean(), secret: z.string().nullable().optional().describe('Shown once') }),
  warnings,
});
export const replacedPipeline = pipelineView.extend({ warnings });
export const delivered = z.object({ artifact: z.string(), type: z.enum(['BINARY', 'DOCKER_IMAGE']), location: z.string(), digest: z.string(), reference: z.string() });
/** A stage of a run; the fields beside these depend on the stage's type (build, deliver, deploy, …). */
export const stageState = z.looseObject({
  name: z.string(), type: z.string(), group: z.number(),
  status: z.enum(['pending', 'running', 'waiting', 'succeeded', 'failed', 'skipped', 'cancelled']),
  startedAt: time.optional(), finishedAt: time.optional(), durationMs: z.number().optional(), message: z.string().optional(),
});
export const runView = z.object({
  id: z.string(), pipeline: z.string(), namespace: z.string(), number: z.number(), status: runStatus,
  trigger: z.looseObject({ type: z.enum(['manual', 'webhook', 'mirror', 'registry', 'pipeline', 'rerun', 'automation']) }),
  commit: z.string().nullable(), ref: z.string().nullable(), parameters: z.record(z.string(), z.string()),
  stages: z.array(stageState), exported: z.record(z.string(), z.string()), artifacts: z.array(delivered),
  phases: z.record(z.string(), z.number()), error: z.string().nullable(), rerunOf: z.string().nullable(),
  createdAt: time, startedAt: time.nullable(), finishedAt: time.nullable(), durationMs: z.number().nullable(),
});
/**
 * `data` of the `stage.*` events (events part): `stage.started`, `stage.waiting` (an approval
 * or a long wait), `stage.succeeded|failed`, and `stage.approved|rejected` when someone decides.
 * Run-level changes stay `run.*` with the whole run; these carry one stage, so a view can
 * follow a run without asking for it again.
 */
export const stageEventData = z.object({
  run: z.object({ id: z.string(), pipeline: z.string(), number: z.number() }),
  stage: z.object({
    name: z.string(), type: z.string(), group: z.number(), status: stageState.shape.status,
    startedAt: time.optional(), finishedAt: time.optional(), durationMs: z.number().optional(), message: z.string().optional(),
    approval: z.object({ decision: z.enum(['approved', 'rejected']), by: z.string().nullable(), comment: z.string().optional(), at: time }).optional(),
  }),
});
export const webhookOutcome = z.object({ status: z.enum(['started', 'duplicate', 'ignored', 'pong']), reason: z.string().optional(), run: runView.optional() });

const pipelines = '/api/v1/namespaces/:ns/pipelines';
const yamlBody = 'JSON, or YAML with `Content-Type: application/yaml`.';

export const pipelineOperations = defineOperations({
  createPipeline: { method: 'POST', path: pipelines, summary: 'Create a pipeline (its webhook secret is shown once)', description: yamlBody, access: 'contributor', body: pipelineInputSchema, answers: { 201: createdPipeline } },
  listPipelines: { method: 'GET', path: pipelines, summary: 'Pipelines of a namespace', access: 'reader', answers: { 200: z.object({ pipelines: z.array(pipelineView) }) } },
  getPipeline: { method: 'GET', path: `${pipelines}/:name`, summary: 'One pipeline', access: 'reader', answers: { 200: pipelineView } },
  replacePipeline: { method: 'PUT', path: `${pipelines}/:name`, summary: 'Replace a pipeline\'s definition', description: yamlBody, access: 'contributor', body: pipelineInputSchema, answers: { 200: replacedPipeline } },
  deletePipeline: { method: 'DELETE', path: `${pipelines}/:name`, summary: 'Delete a pipeline', access: 'contributor', answers: { 204: null } },
  rotateWebhookSecret: { method: 'POST', path: `${pipelines}/:name/webhook-secret`, summary: 'A new push-webhook secret (shown once)', access: 'contributor', answers: { 200: z.object({ secret: z.string() }) } },
  listWebhookDeliveries: {
    method: 'GET', path: `${pipelines}/:name/webhook-deliveries`, summary: 'Push webhooks received, newest first', access: 'reader', query: limitQuery,
    answers: { 200: z.object({ deliveries: z.array(z.object({ provider: z.string(), deliveryId: z.string(), receivedAt: time, outcome: z.string() })) }) },
  },
  startRun: { method: 'POST', path: `${pipelines}/:name/runs`, summary: 'Start a run (200 with the existing run when it is a duplicate)', access: 'contributor', body: runInputSchema, answers: { 201: runView, 200: runView } },
  listRuns: { method: 'GET', path: `${pipelines}/:name/runs`, summary: 'A pipeline\'s runs, newest first', access: 'reader', query: runsQuery, answers: { 200: z.object({ runs: z.array(runView) }) } },
  getRun: { method: 'GET', path: `${pipelines}/:name/runs/:number`, summary: 'One run', access: 'reader', query: runQuery, answers: { 200: runView } },
  cancelRun: { method: 'POST', path: `${pipelines}/:name/runs/:number/cancel`, summary: 'Cancel a run', access: 'contributor', answers: { 200: runView } },
  rerun: { method: 'POST', path: `${pipelines}/:name/runs/:number/rerun`, summary: 'Run again (optionally from a stage, reusing the earlier ones)', access: 'contributor', body: rerunBody, answers: { 201: runView } },
  approveStage: { method: 'POST', path: `${pipelines}/:name/runs/:number/stages/:stage/approve`, summary: 'Approve a waiting approval stage', access: 'contributor', body: decisionBody, answers: { 200: runView } },
  rejectStage: { method: 'POST', path: `${pipelines}/:name/runs/:number/stages/:stage/reject`, summary: 'Reject a waiting approval stage', access: 'contributor', body: decisionBody, answers: { 200: runView } },
  runLogs: {
    method: 'GET', path: `${pipelines}/:name/runs/:number/logs`, summary: 'A run\'s log as text, or live as Server-Sent Events (ending with an `end` event)', access: 'reader',
    query: logsQuery, answers: { 200: { raw: 'text/plain', description: 'The log; `text/event-stream` when followed' } },
  },
  receivePushWebhook: {
    method: 'POST', path: `${pipelines}/:name/webhook`, summary: 'The push webhook of a git host (GitHub, GitLab, Gitea, …)',
    description: 'Authenticated by the webhook\'s signature or token, not by a user.', access: 'public',
    rawBody: { raw: '*/*', description: 'The git host\'s event, checked against its signature before it is parsed' },
    answers: { 202: webhookOutcome, 200: webhookOutcome },
  },
});
