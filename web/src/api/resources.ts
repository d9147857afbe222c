/**
 * Calls and shapes of the parts whose operation lists (src/<part>/api.ts) are not published
 * yet. Every such call goes through `request` in http.ts; the types are declared here.
 * TODO: take from <part>/api.ts — pipelines, functions, builds, registry (catalog), events,
 * credentials, vault, artifacts — and replace each function with the typed client.
 */
import type { z } from 'zod';
import type { repositoryDetail, repositorySummary, tagEntry } from '@shared/registry/api.js';
import { request } from './http.js';

const ns = (namespace: string) => `/api/v1/namespaces/${encodeURIComponent(namespace)}`;
const seg = encodeURIComponent;

/** A list answer is either an array or an object holding one (`{builds: [...]}`). */
function listOf<T>(answer: unknown): T[] {
  if (Array.isArray(answer)) return answer as T[];
  const inner = answer && typeof answer === 'object' ? Object.values(answer).find(Array.isArray) : undefined;
  return (inner ?? []) as T[];
}

// TODO: take from events/api.ts
export interface DomainEvent { id: string; namespace: string; type: string; subject: string | null; data: Record<string, unknown>; createdAt: string }
export interface Webhook { id: string; url: string; events: string[]; active: boolean; secretHint?: string; createdAt?: string }
export interface Delivery { id: string; eventType?: string; type?: string; status: string; attempts?: unknown[]; createdAt?: string; event?: { type?: string } }

// From registry/api.ts (the same schemas the OpenAPI document shows).
export type RepositorySummary = z.output<typeof repositorySummary>;
export type TagEntry = z.output<typeof tagEntry>;
export type RepositoryDetail = z.output<typeof repositoryDetail>;

// TODO: take from pipelines/api.ts
export interface PipelineView { id: string; name: string; namespace: string; spec: Record<string, unknown> & { stages?: unknown[]; triggers?: Record<string, unknown> }; webhook: { path: string; secretSet: boolean }; lastRun: { number: number; status: string; createdAt: string } | null; createdAt: string; updatedAt: string }
export interface StageState { name: string; type?: string; status: string; group?: number; startedAt?: string | null; finishedAt?: string | null; error?: string | null; [key: string]: unknown }
export interface RunView { id: string; number: number; status: string; createdAt: string; startedAt?: string | null; finishedAt?: string | null; error?: string | null; trigger?: Record<string, unknown>; branch?: string | null; commit?: string | null; parameters?: Record<string, string>; stages?: StageState[]; artifacts?: unknown[]; [key: string]: unknown }

// TODO: take from functions/api.ts
export interface FunctionView { name: string; namespace: string; type: 'http' | 'event'; image: string; imageDigest: string | null; status: string; statusReason?: string; activeRevision: number | null; latestRevision: number; instances: number; access: string; url: string; createdAt: string; updatedAt: string; [key: string]: unknown }
export interface Revision { number: number; image: string; imageDigest: string | null; status: string; reason?: string; active: boolean; createdAt: string; readyAt?: string; [key: string]: unknown }
export interface FunctionMetrics { requests: number; errors: number; timeouts: number; coldStarts: number; inFlight: number; queued: number; instances: number; latencyMs: { p50: number; p99: number } }

// TODO: take from builds/api.ts
export interface BuildView { id: string; status: string; kind?: string; type?: string; component?: string; imageName?: string; image?: string; digest?: string | null; pullCommand?: string | null; createdAt?: string; startedAt?: string | null; finishedAt?: string | null; errorMessage?: string | null; [key: string]: unknown }

export const api = {
  events: (n: string, limit = 30) => request<{ events: DomainEvent[] }>('GET', `${ns(n)}/events?limit=${limit}`).then((a) => a.events),
  eventStreamPath: (n: string) => `${ns(n)}/events/stream`,
  webhooks: (n: string) => request<{ webhooks: Webhook[] }>('GET', `${ns(n)}/webhooks`).then((a) => a.webhooks),
  deliveries: (n: string, id: string) => request<{ deliveries: Delivery[] }>('GET', `${ns(n)}/webhooks/${seg(id)}/deliveries?limit=20`).then((a) => a.deliveries),
  redeliver: (n: string, id: string, delivery: string) => request('POST', `${ns(n)}/webhooks/${seg(id)}/deliveries/${seg(delivery)}/redeliver`),

  repositories: (n: string) => request<{ repositories: RepositorySummary[] }>('GET', `${ns(n)}/repositories`).then((a) => a.repositories),
  repository: (n: string, repo: string) => request<RepositoryDetail>('GET', `${ns(n)}/repositories/${repo.split('/').map(seg).join('/')}`),
  deleteTag: (n: string, repo: string, tag: string) => request('DELETE', `${ns(n)}/repositories/${repo.split('/').map(seg).join('/')}?tag=${seg(tag)}`),

  pipelines: (n: string) => request<{ pipelines: PipelineView[] }>('GET', `${ns(n)}/pipelines`).then((a) => a.pipelines),
  pipeline: (n: string, name: string) => request<PipelineView>('GET', `${ns(n)}/pipelines/${seg(name)}`),
  replacePipelineYaml: (n: string, name: string, yaml: string) => request<PipelineView>('PUT', `${ns(n)}/pipelines/${seg(name)}`, yaml, { raw: true, headers: { 'content-type': 'application/yaml' } }),
  deletePipeline: (n: string, name: string) => request('DELETE', `${ns(n)}/pipelines/${seg(name)}`),
  runs: (n: string, name: string, status?: string) => request<{ runs: RunView[] }>('GET', `${ns(n)}/pipelines/${seg(name)}/runs?limit=50${status ? `&status=${seg(status)}` : ''}`).then((a) => a.runs),
  run: (n: string, name: string, number: string | number) => request<RunView>('GET', `${ns(n)}/pipelines/${seg(name)}/runs/${number}`),
  startRun: (n: string, name: string, body: { parameters?: Record<string, string>; branch?: string }) => request<RunView>('POST', `${ns(n)}/pipelines/${seg(name)}/runs`, body),
  cancelRun: (n: string, name: string, number: number) => request<RunView>('POST', `${ns(n)}/pipelines/${seg(name)}/runs/${number}/cancel`),
  rerun: (n: string, name: string, number: number, body: Record<string, unknown>) => request<RunView>('POST', `${ns(n)}/pipelines/${seg(name)}/runs/${number}/rerun`, body),
  decide: (n: string, name: string, number: number, stage: string, decision: 'approve' | 'reject', comment?: string) => request<RunView>('POST', `${ns(n)}/pipelines/${seg(name)}/runs/${number}/stages/${seg(stage)}/${decision}`, comment ? { comment } : {}),
  runLogPath: (n: string, name: string, number: number | string) => `${ns(n)}/pipelines/${seg(name)}/runs/${number}/logs?follow=true`,

  functions: (n: string) => request<{ functions: FunctionView[] }>('GET', `${ns(n)}/functions`).then((a) => a.functions),
  function: (n: string, name: string) => request<FunctionView>('GET', `${ns(n)}/functions/${seg(name)}`),
  deleteFunction: (n: string, name: string) => request('DELETE', `${ns(n)}/functions/${seg(name)}`),
  revisions: (n: string, name: string) => request<{ revisions: Revision[] }>('GET', `${ns(n)}/functions/${seg(name)}/revisions`).then((a) => a.revisions),
  rollback: (n: string, name: string, revision: number) => request<FunctionView>('POST', `${ns(n)}/functions/${seg(name)}/rollback`, { revision }),
  instances: (n: string, name: string) => request<{ instances: Array<Record<string, unknown>> }>('GET', `${ns(n)}/functions/${seg(name)}/instances`).then((a) => a.instances),
  metrics: (n: string, name: string) => request<FunctionMetrics>('GET', `${ns(n)}/functions/${seg(name)}/metrics`),
  functionKeys: (n: string, name: string) => request<{ keys: Array<{ id: string; name: string; createdAt: string; lastUsedAt: string | null }> }>('GET', `${ns(n)}/functions/${seg(name)}/keys`).then((a) => a.keys),
  createFunctionKey: (n: string, name: string, keyName: string) => request<{ id: string; name: string; key: string }>('POST', `${ns(n)}/functions/${seg(name)}/keys`, { name: keyName }),
  deleteFunctionKey: (n: string, name: string, id: string) => request('DELETE', `${ns(n)}/functions/${seg(name)}/keys/${seg(id)}`),
  functionLogsPath: (n: string, name: string) => `${ns(n)}/functions/${seg(name)}/logs?tail=200&follow=true`,
  invocationPath: (n: string, name: string) => `${ns(n)}/functions/${seg(name)}/invocations`,
  gatewayPath: (n: string, name: string) => `/fn/${seg(n)}/${seg(name)}`,

  builds: (n: string) => request<unknown>('GET', `${ns(n)}/builds?limit=50`).then((a) => listOf<BuildView>(a)),
  build: (n: string, id: string) => request<BuildView>('GET', `${ns(n)}/builds/${seg(id)}`),
  buildLogPath: (n: string, id: string) => `${ns(n)}/builds/${seg(id)}/logs?follow=true`,

  artefacts: (n: string) => request<unknown>('GET', `${ns(n)}/artefact-versions?limit=100`).then((a) => listOf<Record<string, unknown>>(a)),
  registries: (n: string) => request<unknown>('GET', `${ns(n)}/registries`).then((a) => listOf<Record<string, unknown>>(a)),
  secrets: (n: string) => request<unknown>('GET', `${ns(n)}/secrets`).then((a) => listOf<Record<string, unknown> | string>(a)),
};
