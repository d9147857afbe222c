/**
 * Keeping a run's view current from the event stream (no React here, so it is unit-tested):
 * `stage.*` events carry one stage and are merged in; `run.*` events ask for the run again.
 * A stage event and a run fetched a moment earlier can arrive in either order, so a stage never
 * moves back in its life (pending → running → waiting → ended).
 */
import type { RunView, StageState } from './api/resources.js';

/** What a `stage.*` event's `data` holds (pipelines/api.ts `stageEventData`). */
export interface StageEventData {
  run: { id: string; pipeline: string; number: number };
  stage: Partial<StageState> & { name: string; status: StageState['status'] };
}

/** What the stream's frame means for the run shown: merge a stage, fetch the run, or nothing. */
export type RunStreamAction = { kind: 'stage'; data: StageEventData } | { kind: 'refetch' } | { kind: 'none' };

const stageRank: Record<StageState['status'], number> = { pending: 0, running: 1, waiting: 2, succeeded: 3, failed: 3, skipped: 3, cancelled: 3 };

/** Reads one SSE frame of `…/events/stream?type=run.*,stage.*` for run `number` of `pipeline`. */
export function runStreamAction(frameData: string, pipeline: string, number: number | string): RunStreamAction {
  let event: { type?: string; data?: { run?: { pipeline?: string; number?: number }; stage?: { name?: string; status?: string } } };
  try { event = JSON.parse(frameData) as typeof event; } catch { return { kind: 'none' }; }
  const run = event.data?.run;
  if (!run || run.pipeline !== pipeline || String(run.number) !== String(number)) return { kind: 'none' };
  if (event.type?.startsWith('stage.') && event.data?.stage?.name && event.data.stage.status) return { kind: 'stage', data: event.data as StageEventData };
  if (event.type?.startsWith('run.')) return { kind: 'refetch' };
  return { kind: 'none' };
}

/** The run with one stage replaced by the event's (unless the run already knows a later state of it). */
export function mergeStage(run: RunView, data: StageEventData): RunView {
  const index = run.stages.findIndex((s) => s.name === data.stage.name);
  if (index < 0) return run;
  const old = run.stages[index]!;
  if (stageRank[data.stage.status] < stageRank[old.status]) return run;
  const stages = [...run.stages];
  stages[index] = { ...old, ...data.stage } as StageState;
  // A stage that starts means the run runs (its own `run.started` may still be on the way).
  const status = data.stage.status === 'running' && (run.status === 'queued' || run.status === 'waiting') ? 'running' : run.status;
  return { ...run, status, stages };
}

/** A freshly fetched run, keeping the stages the stream already moved further. */
export function mergeFetched(current: RunView | null, fetched: RunView): RunView {
  if (!current || current.id !== fetched.id) return fetched;
  const stages = fetched.stages.map((s) => {
    const known = current.stages.find((c) => c.name === s.name);
    return known && stageRank[known.status] > stageRank[s.status] ? known : s;
  });
  return { ...fetched, stages };
}
