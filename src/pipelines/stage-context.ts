/**
 * @module pipelines/stage-context
 * What a stage kind works with while a run advances (./runner.ts): the run's context (state,
 * log, save), the tools the runner lends its stages (push keys, the registry lookup, a later
 * continuation), how a stage fails, and the lookups stages share (placeholders, outputs).
 */
import { type RegistryAuth, substitutePlaceholders } from '../builds/index.js';
import type { BuildOutput, RunState, StageState, TriggerInfo } from './runs.js';
import type { PipelineInput, Stage } from './spec.js';
import type { PipelineRunnerDeps } from './runner.js';

/** `suspend`: the run waits (an approval, a long wait) and a later job continues it. */
export type Outcome = 'succeeded' | 'failed' | 'suspend';

/** The stage failed for a reason of its own: its message goes to the stage and the run goes on failing. */
export class StageFailed extends Error {}

/** Everything one advance of a run works with. */
export interface RunContext {
  runId: string;
  namespace: string;
  pipelineId: string;
  pipelineName: string;
  owner: string | null;
  number: number;
  commit: string | null;
  ref: string | null;
  trigger: TriggerInfo;
  parameters: Record<string, string>;
  state: RunState;
  spec: PipelineInput;
  dir: string;
  signal: AbortSignal;
  log: (line: string) => void;
  save: () => Promise<void>;
  pushKey?: Promise<RegistryAuth | undefined>;
}

export type StageLog = (line: string) => void;

/** What the runner lends every stage kind. */
export interface StageTools {
  deps: PipelineRunnerDeps;
  /** `repository:tag` pushes a run makes right now (the registry hook leaves their artefact versions to the run). */
  pushing: Set<string>;
  /** A short-lived push/pull key of the pipeline's owner for Slipway's registry (access control on), one per run. */
  pushAuth(ctx: RunContext): Promise<RegistryAuth | undefined>;
  /** Whether `repository:reference` is in Slipway's registry (images resolve there first). */
  existsHere(repository: string, reference: string): Promise<boolean>;
  /** A job that continues the run at `when` (a wait that is over, an approval that timed out). */
  continueAt(runId: string, when: number): Promise<void>;
}

/** Placeholders of a stage: parameters, then exported variables over them. */
export function substitute(ctx: RunContext, text: string, where: string): string {
  try {
    return substitutePlaceholders(text, { ...ctx.parameters, ...ctx.state.exported }, { strict: true, where });
  } catch (error) {
    throw new StageFailed((error as Error).message);
  }
}

/** The newest output of that name among stages before `before` (or all). */
export function findOutput(ctx: RunContext, name: string, before?: StageState): BuildOutput | undefined {
  let found: BuildOutput | undefined;
  for (const stage of ctx.state.stages) {
    if (before && stage.group >= before.group) break;
    for (const output of stage.outputs ?? []) if (output.name === name) found = output;
  }
  return found;
}

export function findStage(spec: PipelineInput, name: string): Stage {
  for (const entry of spec.stages) {
    if ('parallel' in entry) {
      const found = entry.parallel.find((s) => s.name === name);
      if (found) return found;
    } else if ((entry as Stage).name === name) return entry as Stage;
  }
  throw new Error(`stage ${name} is not in the pipeline`);
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
