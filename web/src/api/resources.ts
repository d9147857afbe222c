/**
 * The dashboard's calls, with the shapes the parts publish in src/<part>/api.ts (the same
 * schemas the OpenAPI document shows), so the pages read what the server answers. Calls go
 * through `call` (the shared typed client) where the operation list is browser-safe;
 * pipelines/api.ts and artifacts/api.ts pull node-only modules in (pipelines/spec.ts →
 * builds/index.ts, artifacts/service.ts), so their types come by `import type` and their
 * calls stay on `request`.
 * TODO: move pipelines and artefacts onto `call` once their schemas live in browser-safe modules.
 */
import type { z } from 'zod';
import type { ApiResult } from '@shared/http/api-client.js';
import { buildOperations, type buildView, type listBuildsQuery } from '@shared/builds/api.js';
import { credentialOperations, type registryView } from '@shared/credentials/api.js';
import { eventOperations, type deliveryView, type domainEvent, type webhookView } from '@shared/events/api.js';
import { functionOperations, type functionKey, type functionMetrics, type functionView, type instanceView, type revisionView } from '@shared/functions/api.js';
import { catalogOperations, type repositoryDetail, type repositorySummary, type tagEntry } from '@shared/registry/api.js';
import { vaultOperations, type secretInfo } from '@shared/vault/api.js';
import type { artefactVersionView, artifactOperations } from '@shared/artifacts/api.js';
import type { pipelineOperations, pipelineView, runView, stageState } from '@shared/pipelines/api.js';
import { call, request } from './http.js';

const ns = (namespace: string) => `/api/v1/namespaces/${encodeURIComponent(namespace)}`;
const seg = encodeURIComponent;

export type DomainEvent = z.output<typeof domainEvent>;
export type Webhook = z.output<typeof webhookView>;
export type Delivery = z.output<typeof deliveryView>;

export type RepositorySummary = z.output<typeof repositorySummary>;
export type TagEntry = z.output<typeof tagEntry>;
export type RepositoryDetail = z.output<typeof repositoryDetail>;

export type PipelineView = z.output<typeof pipelineView>;
export type StageState = z.output<typeof stageState>;
export type RunView = z.output<typeof runView>;
type PipelineOps = typeof pipelineOperations;

export type FunctionView = z.output<typeof functionView>;
export type Revision = z.output<typeof revisionView>;
export type FunctionMetrics = z.output<typeof functionMetrics>;
export type FunctionInstance = z.output<typeof instanceView>;
export type FunctionKey = z.output<typeof functionKey>;

export type BuildView = z.output<typeof buildView>;
type BuildQuery = z.input<typeof listBuildsQuery>;
export type ArtefactVersion = z.output<typeof artefactVersionView>;
export type ExternalRegistry = z.output<typeof registryView>;
export type SecretInfo = z.output<typeof secretInfo>;

export const api = {
  events: (n: string, limit = 30, type?: string) => call((c) => c.call(eventOperations.listEvents, { params: { ns: n }, query: { limit, type } })).then((a) => a.events),
  eventStreamPath: (n: string) => `${ns(n)}/events/stream`,
  webhooks: (n: string) => call((c) => c.call(eventOperations.listWebhooks, { params: { ns: n } })).then((a) => a.webhooks),
  deliveries: (n: string, id: string) => call((c) => c.call(eventOperations.listDeliveries, { params: { ns: n, id }, query: { limit: 20 } })).then((a) => a.deliveries),
  redeliver: (n: string, id: string, delivery: string) => call((c) => c.call(eventOperations.redeliver, { params: { ns: n, id, deliveryId: delivery } })),

  repositories: (n: string) => call((c) => c.call(catalogOperations.listRepositories, { params: { ns: n } })).then((a) => a.repositories),
  repository: (n: string, repo: string) => call((c) => c.call(catalogOperations.getRepository, { params: { ns: n, '*': repo } })),
  deleteTag: (n: string, repo: string, tag: string) => call((c) => c.call(catalogOperations.deleteRepositoryTag, { params: { ns: n, '*': repo }, query: { tag } })),

  pipelines: (n: string) => request<ApiResult<PipelineOps['listPipelines']>>('GET', `${ns(n)}/pipelines`).then((a) => a.pipelines),
  pipeline: (n: string, name: string) => request<ApiResult<PipelineOps['getPipeline']>>('GET', `${ns(n)}/pipelines/${seg(name)}`),
  // YAML as it is: the typed client sends JSON bodies only.
  replacePipelineYaml: (n: string, name: string, yaml: string) => request<ApiResult<PipelineOps['replacePipeline']>>('PUT', `${ns(n)}/pipelines/${seg(name)}`, yaml, { raw: true, headers: { 'content-type': 'application/yaml' } }),
  deletePipeline: (n: string, name: string) => request<ApiResult<PipelineOps['deletePipeline']>>('DELETE', `${ns(n)}/pipelines/${seg(name)}`),
  runs: (n: string, name: string, status?: string) => request<ApiResult<PipelineOps['listRuns']>>('GET', `${ns(n)}/pipelines/${seg(name)}/runs?limit=50${status ? `&status=${seg(status)}` : ''}`).then((a) => a.runs),
  run: (n: string, name: string, number: string | number) => request<ApiResult<PipelineOps['getRun']>>('GET', `${ns(n)}/pipelines/${seg(name)}/runs/${number}`),
  startRun: (n: string, name: string, body: z.input<PipelineOps['startRun']['body']>) => request<ApiResult<PipelineOps['startRun']>>('POST', `${ns(n)}/pipelines/${seg(name)}/runs`, body),
  cancelRun: (n: string, name: string, number: number) => request<ApiResult<PipelineOps['cancelRun']>>('POST', `${ns(n)}/pipelines/${seg(name)}/runs/${number}/cancel`),
  rerun: (n: string, name: string, number: number, body: z.input<PipelineOps['rerun']['body']>) => request<ApiResult<PipelineOps['rerun']>>('POST', `${ns(n)}/pipelines/${seg(name)}/runs/${number}/rerun`, body),
  decide: (n: string, name: string, number: number, stage: string, decision: 'approve' | 'reject', comment?: string) => request<ApiResult<PipelineOps['approveStage']>>('POST', `${ns(n)}/pipelines/${seg(name)}/runs/${number}/stages/${seg(stage)}/${decision}`, comment ? { comment } : {}),
  runLogPath: (n: string, name: string, number: number | string) => `${ns(n)}/pipelines/${seg(name)}/runs/${number}/logs?follow=true`,

  functions: (n: string) => call((c) => c.call(functionOperations.listFunctions, { params: { ns: n } })).then((a) => a.functions),
  function: (n: string, name: string) => call((c) => c.call(functionOperations.getFunction, { params: { ns: n, name } })),
  deleteFunction: (n: string, name: string) => call((c) => c.call(functionOperations.deleteFunction, { params: { ns: n, name } })),
  revisions: (n: string, name: string) => call((c) => c.call(functionOperations.listRevisions, { params: { ns: n, name } })).then((a) => a.revisions),
  revisionsWithDigest: (n: string, digest: string) => call((c) => c.call(functionOperations.listRevisionsByDigest, { params: { ns: n }, query: { digest } })).then((a) => a.revisions),
  rollback: (n: string, name: string, revision: number) => call((c) => c.call(functionOperations.rollbackFunction, { params: { ns: n, name }, body: { revision } })),
  instances: (n: string, name: string) => call((c) => c.call(functionOperations.listInstances, { params: { ns: n, name } })).then((a) => a.instances),
  metrics: (n: string, name: string) => call((c) => c.call(functionOperations.functionMetrics, { params: { ns: n, name } })),
  functionKeys: (n: string, name: string) => call((c) => c.call(functionOperations.listFunctionKeys, { params: { ns: n, name } })).then((a) => a.keys),
  createFunctionKey: (n: string, name: string, keyName: string) => call((c) => c.call(functionOperations.createFunctionKey, { params: { ns: n, name }, body: { name: keyName } })),
  deleteFunctionKey: (n: string, name: string, id: string) => call((c) => c.call(functionOperations.deleteFunctionKey, { params: { ns: n, name, id } })),
  functionLogsPath: (n: string, name: string) => `${ns(n)}/functions/${seg(name)}/logs?tail=200&follow=true`,
  invocationPath: (n: string, name: string) => `${ns(n)}/functions/${seg(name)}/invocations`,
  gatewayPath: (n: string, name: string) => `/fn/${seg(n)}/${seg(name)}`,

  builds: (n: string, filters: { status?: string; repository?: string; source?: string; kind?: string } = {}) => call((c) => c.call(buildOperations.listBuilds, {
    params: { ns: n },
    query: {
      limit: 50, status: (filters.status || undefined) as BuildQuery['status'], kind: (filters.kind || undefined) as BuildQuery['kind'],
      source: (filters.source || undefined) as BuildQuery['source'], repository: filters.repository || undefined,
    },
  })),
  build: (n: string, id: string) => call((c) => c.call(buildOperations.getBuild, { params: { ns: n, id } })),
  buildLogPath: (n: string, id: string) => `${ns(n)}/builds/${seg(id)}/logs?follow=true`,

  artefacts: (n: string) => request<ApiResult<typeof artifactOperations.listArtefactVersions>>('GET', `${ns(n)}/artefact-versions?limit=100`).then((a) => a.artefactVersions),
  registries: (n: string) => call((c) => c.call(credentialOperations.listRegistries, { params: { ns: n } })),
  secrets: (n: string) => call((c) => c.call(vaultOperations.listSecrets, { params: { ns: n } })),
};
