/**
 * Keeping a run's view current from the event stream (no React here, so it is unit-tested):
 * `stage.*` events carry one stage and are merged in; `run.*` events ask for the run again.
 * A stage event and a run fetched a moment earlier can arrive in either order, so a stage never
 * moves back in its life (pending → running → waiting → ended).
 */

type StageStatus = 'pending' | 'running' | 'waiting' | 'succeeded' | 'failed' | 'skipped' | 'cancelled';
/** What this module reads of a stage and a run (resources.ts `StageState`, `RunView`): no imports, so Node's tests load it as it is. */
interface StageLike { name: string; status: StageStatus }
interface RunLike<S extends StageLike> { id: string; status: string; stages: S[] }

/** What a `stage.*` event's `data` holds (pipelines/api.ts `stageEventData`). */
export interface StageEventData {
  run: { id: string; pipeline: string; number: number };
  stage: { name: string; status: StageStatus } & Record<string, unknown>;
}

/** What the stream's frame means for the run shown: merge a stage, fetch the run, or nothing. */
export type RunStreamAction = { kind: 'stage'; data: StageEventData } | { kind: 'refetch' } | { kind: 'none' };

const stageRank: Record<StageStatus, number> = { pending: 0, running: 1, waiting: 2, succeeded: 3, failed: 3, skipped: 3, cancelled: 3 };

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
export function mergeStage<S extends StageLike, R extends RunLike<S>>(run: R, data: StageEventData): R {
  const index = run.stages.findIndex((s) => s.name === data.stage.name);
  if (index < 0) return run;
  const old = run.stages[index]!;
  if (stageRank[data.stage.status] < stageRank[old.status]) return run;
  const stages = [...run.stages];
  stages[index] = { ...old, ...data.stage } as S;
  // A stage that starts means the run runs (its own `run.started` may still be on the way).
  const status = data.stage.status === 'running' && (run.status === 'queued' || run.status === 'waiting') ? 'running' : run.status;
  return { ...run, status, stages };
}

/** A freshly fetched run, keeping the stages the stream already moved further. */
export function mergeFetched<S extends StageLike, R extends RunLike<S>>(current: R | null, fetched: R): R {
  if (!current || current.id !== fetched.id) return fetched;
  const stages = fetched.stages.map((s) => {
    const known = current.stages.find((c) => c.name === s.name);
    return known && stageRank[known.status] > stageRank[s.status] ? known : s;
  });
  return { ...fetched, stages };
}
