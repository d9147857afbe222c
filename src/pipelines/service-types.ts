/**
 * @module pipelines/service-types
 * The shapes PipelineService works with: a pipeline's API view, a request to start a run, and
 * the service's dependencies. Re-exported by service.ts.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { JobQueueApi } from '../db/job-queue.js';
import type { Vault } from '../vault/vault.js';
import type { NamespaceSecrets } from '../vault/secrets.js';
import type { LogStore } from '../logs/log-store.js';
import type { RunState, RunStatus, TriggerInfo } from './runs.js';
import type { PipelineInput } from './spec.js';

export interface PipelineView {
  id: string;
  namespace: string;
  name: string;
  spec: PipelineInput;
  webhook: { path: string; secretSet: boolean };
  lastRun: { number: number; status: RunStatus; createdAt: string } | null;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface TriggerRequest {
  parameters?: Record<string, string>;
  branch?: string;
  commit?: string;
  ref?: string;
  trigger: TriggerInfo;
  /** For re-runs: the run whose finished stages are taken over, and the stage to start from. */
  rerun?: { of: string; state: RunState };
}

export interface PipelineServiceDeps {
  db: Database;
  /** Each run's jobs have ids `<runId>-<suffix>` in the `pipeline-runs` queue. */
  queue: Pick<JobQueueApi, 'enqueue' | 'cancel' | 'list'>;
  logs: LogStore;
  vault: Vault;
  /** Passwords of sources' git credentials; absent when access control is off. */
  secrets?: Pick<NamespaceSecrets, 'reveal'>;
  publish?: (namespace: string, type: string, data: Record<string, unknown>, subject?: string) => Promise<unknown>;
  /** Folder for git caches (changed files of truncated webhook payloads). */
  cacheDir: string;
  stageTimeoutMs: number;
  logger?: Logger;
}
