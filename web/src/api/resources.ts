/**
 * The dashboard's calls, with the shapes the parts publish in src/<part>/api.ts (the same
 * schemas the OpenAPI document shows), so the pages read what the server answers. Every call
 * goes through `call` (the shared typed client): each api.ts is browser-safe (no node or
 * server imports; checked by the api-browser-safe rule of .dependency-cruiser.cjs).
 */
import type { z } from 'zod';
import { buildOperations, type buildView, type listBuildsQuery } from '@shared/builds/api.js';
import { credentialOperations, type registryView } from '@shared/credentials/api.js';
import { eventOperations, type deliveryView, type domainEvent, type webhookView } from '@shared/events/api.js';
import { functionOperations, type functionKey, type functionMetrics, type functionView, type instanceView, type revisionView } from '@shared/functions/api.js';
import { catalogOperations, type repositoryDetail, type repositorySummary, type tagEntry } from '@shared/registry/api.js';
import { vaultOperations, type secretInfo } from '@shared/vault/api.js';
import { artifactOperations, type artefactVersionView } from '@shared/artifacts/api.js';
import { pipelineOperations, type pipelineView, type runView, type stageState } from '@shared/pipelines/api.js';
import { call } from './http.js';

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
type RunStatus = RunView['status'];

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

  pipelines: (n: string) => call((c) => c.call(pipelineOperations.listPipelines, { params: { ns: n } })).then((a) => a.pipelines),
  pipeline: (n: string, name: string) => call((c) => c.call(pipelineOperations.getPipeline, { params: { ns: n, name } })),
  // YAML as it is (the route takes JSON or YAML).
  replacePipelineYaml: (n: string, name: string, yaml: string) => call((c) => c.call(pipelineOperations.replacePipeline, { params: { ns: n, name }, raw: { contentType: 'application/yaml', text: yaml } })),
  deletePipeline: (n: string, name: string) => call((c) => c.call(pipelineOperations.deletePipeline, { params: { ns: n, name } })),
  runs: (n: string, name: string, status?: string) => call((c) => c.call(pipelineOperations.listRuns, { params: { ns: n, name }, query: { limit: 50, status: status as RunStatus | undefined } })).then((a) => a.runs),
  run: (n: string, name: string, number: string | number) => call((c) => c.call(pipelineOperations.getRun, { params: { ns: n, name, number: String(number) } })),
  startRun: (n: string, name: string, body: z.input<PipelineOps['startRun']['body']>) => call((c) => c.call(pipelineOperations.startRun, { params: { ns: n, name }, body })),
  cancelRun: (n: string, name: string, number: number) => call((c) => c.call(pipelineOperations.cancelRun, { params: { ns: n, name, number: String(number) } })),
  rerun: (n: string, name: string, number: number, body: z.input<PipelineOps['rerun']['body']>) => call((c) => c.call(pipelineOperations.rerun, { params: { ns: n, name, number: String(number) }, body })),
  decide: (n: string, name: string, number: number, stage: string, decision: 'approve' | 'reject', comment?: string) =>
    call((c) => c.call(decision === 'approve' ? pipelineOperations.approveStage : pipelineOperations.rejectStage, { params: { ns: n, name, number: String(number), stage }, body: comment ? { comment } : {} })),
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

  artefacts: (n: string) => call((c) => c.call(artifactOperations.listArtefactVersions, { params: { ns: n }, query: { limit: 100 } })).then((a) => a.artefactVersions),
  registries: (n: string) => call((c) => c.call(credentialOperations.listRegistries, { params: { ns: n } })),
  secrets: (n: string) => call((c) => c.call(vaultOperations.listSecrets, { params: { ns: n } })),
};
