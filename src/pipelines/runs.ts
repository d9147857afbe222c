/**
 * @module pipelines/runs
 * What a run records: its trigger, parameters, per-stage (and per-step) state, exported
 * variables and the artifacts it produced. The state is one JSON document per run (column
 * `pipeline_runs.state`), written after every change of a stage so a restart resumes from it.
 */
import type { PipelineRunTable } from '../db/schema.js';
import type { PipelineInput, Stage } from './spec.js';

export type RunStatus = 'queued' | 'running' | 'waiting' | 'succeeded' | 'failed' | 'cancelled';
export type StageStatus = 'pending' | 'running' | 'waiting' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';

export const activeRunStatuses: RunStatus[] = ['queued', 'running', 'waiting'];
export const finalRunStatuses = new Set<RunStatus>(['succeeded', 'failed', 'cancelled']);

/** A step and an output as the executor reports them. */
export type { StepRecord as StepState, StageOutput as BuildOutput } from './executor.js';
import type { StepRecord as StepState, StageOutput as BuildOutput } from './executor.js';

export interface Delivered {
  artifact: string;
  type: 'BINARY' | 'DOCKER_IMAGE';
  /** Where it went, as resolved: `host:port/repo:tag`. */
  location: string;
  digest: string;
  /** Pinned reference: `host:port/repo@digest`. */
  reference: string;
}

export interface StageState {
  name: string;
  type: Stage['type'];
  /** Stages of one `parallel` entry share a group; groups run in order. */
  group: number;
  status: StageStatus;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  message?: string;
  /** build */
  steps?: StepState[];
  failedStep?: string;
  exitCode?: number;
  exported?: Record<string, string>;
  outputs?: BuildOutput[];
  buildSpec?: string;
  /** deliver */
  delivered?: Delivered[];
  /** deploy */
  deployed?: Array<{ function: string; image: string; revision: number | null; status: string; reason?: string | null }>;
  /** trigger */
  triggered?: { pipeline: string; run: number; status: string };
  /** wait / approval: when the stage goes on by itself. */
  until?: string;
  approval?: { decision: 'approved' | 'rejected'; by: string | null; comment?: string; at: string };
  /** Taken over from the run this one re-runs. */
  reused?: boolean;
}

export interface TriggerInfo {
  type: 'manual' | 'webhook' | 'mirror' | 'registry' | 'pipeline' | 'rerun' | 'automation';
  /** The user, or what acted. */
  by?: string | null;
  provider?: string;
  deliveryId?: string;
  event?: string;
  message?: string | null;
  repository?: string;
  tag?: string;
  digest?: string;
  pipeline?: string;
  run?: number;
  /** Milliseconds since the epoch when the event reached Slipway (for the queue time). */
  receivedAt?: number;
}

export interface RunState {
  /** The pipeline as it was when the run started: later edits do not change a run. */
  spec: PipelineInput;
  stages: StageState[];
  exported: Record<string, string>;
  /** Commit and ref each source was built at. */
  sources: Record<string, { url: string; ref: string; commit: string }>;
  /** Milliseconds per phase: queue, clone, build, push, deploy. */
  phases: Record<string, number>;
}

export interface RunView {
  id: string;
  pipeline: string;
  namespace: string;
  number: number;
  status: RunStatus;
  trigger: TriggerInfo;
  commit: string | null;
  ref: string | null;
  parameters: Record<string, string>;
  stages: StageState[];
  exported: Record<string, string>;
  artifacts: Delivered[];
  phases: Record<string, number>;
  error: string | null;
  rerunOf: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function runView(row: PipelineRunTable, pipeline: string): RunView {
  const state = JSON.parse(row.state) as RunState;
  return {
    id: row.id, pipeline, namespace: row.namespace, number: row.number, status: row.status as RunStatus,
    trigger: JSON.parse(row.trigger) as TriggerInfo, commit: row.commit_sha, ref: row.ref,
    parameters: JSON.parse(row.parameters) as Record<string, string>,
    stages: state.stages, exported: state.exported,
    artifacts: state.stages.flatMap((s) => s.delivered ?? []),
    phases: state.phases, error: row.error, rerunOf: row.rerun_of,
    createdAt: iso(row.created_at)!, startedAt: iso(row.started_at), finishedAt: iso(row.finished_at),
    durationMs: row.started_at !== null && row.finished_at !== null ? row.finished_at - row.started_at : null,
  };
}
