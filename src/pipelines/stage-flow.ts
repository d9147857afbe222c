/**
 * @module pipelines/stage-flow
 * The stages that steer a run rather than build: `trigger` (start another pipeline, and with
 * `wait` follow it), `wait` (a short one sleeps, a long one suspends the run until a job
 * continues it) and `approval` (the run suspends until a decision or the timeout).
 */
import { parseStageDuration, type Stage } from './spec.js';
import type { StageState } from './runs.js';
import { abortableSleep, StageFailed, substitute, type Outcome, type RunContext, type StageLog, type StageTools } from './stage-context.js';

/** Waits up to this long hold the worker; longer ones suspend the run. */
const shortWaitMs = 30_000;
const defaultApprovalMs = 7 * 86_400_000;

export async function triggerStage(tools: StageTools, ctx: RunContext, stage: Extract<Stage, { type: 'trigger' }>, st: StageState, log: StageLog): Promise<Outcome> {
  const service = tools.deps.service;
  const target = await service.get(ctx.namespace, stage.pipeline).catch(() => { throw new StageFailed(`no pipeline "${stage.pipeline}" in "${ctx.namespace}"`); });
  const declared = new Set(target.spec.parameters.map((p) => p.name));
  const parameters: Record<string, string> = {};
  if (stage.passAllParameters) for (const [k, v] of Object.entries({ ...ctx.parameters, ...ctx.state.exported })) if (declared.has(k)) parameters[k] = v;
  for (const [k, v] of Object.entries(stage.parameters)) parameters[k] = substitute(ctx, v, `stages.${st.name}.parameters.${k}`);
  let run = st.triggered ? await service.run(ctx.namespace, stage.pipeline, st.triggered.run).catch(() => undefined) : undefined;
  if (!run) {
    try {
      ({ run } = await service.trigger(ctx.namespace, stage.pipeline, { parameters, trigger: { type: 'pipeline', pipeline: ctx.pipelineName, run: ctx.number, by: ctx.owner, receivedAt: Date.now() } }));
    } catch (error) {
      throw new StageFailed(`starting ${stage.pipeline}: ${(error as Error).message}`);
    }
    log(`started ${stage.pipeline} run ${run.number}`);
  }
  st.triggered = { pipeline: stage.pipeline, run: run.number, status: run.status };
  await ctx.save();
  if (!stage.wait) return 'succeeded';
  const final = await service.waitForRun(ctx.namespace, stage.pipeline, run.number, ctx.signal);
  if (ctx.signal.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('aborted');
  st.triggered.status = final.status;
  if (final.status !== 'succeeded') throw new StageFailed(`${stage.pipeline} run ${final.number} ${final.status}${final.error ? `: ${final.error}` : ''}`);
  return 'succeeded';
}

export async function waitStage(tools: StageTools, ctx: RunContext, stage: Extract<Stage, { type: 'wait' }>, st: StageState, log: StageLog): Promise<Outcome> {
  const ms = parseStageDuration(stage.duration)!;
  st.until ??= new Date(Date.now() + ms).toISOString();
  const left = Date.parse(st.until) - Date.now();
  if (left <= 0) return 'succeeded';
  if (left <= shortWaitMs) {
    log(`waiting ${Math.round(left / 1000)} s`);
    await abortableSleep(left, ctx.signal);
    return 'succeeded';
  }
  log(`waiting until ${st.until}`);
  await tools.continueAt(ctx.runId, Date.parse(st.until));
  return 'suspend';
}

export async function approvalStage(tools: StageTools, ctx: RunContext, stage: Extract<Stage, { type: 'approval' }>, st: StageState, log: StageLog): Promise<Outcome> {
  if (st.approval) {
    if (st.approval.decision === 'approved') {
      log(`approved by ${st.approval.by ?? 'someone'}${st.approval.comment ? `: ${st.approval.comment}` : ''}`);
      return 'succeeded';
    }
    throw new StageFailed(`rejected by ${st.approval.by ?? 'someone'}${st.approval.comment ? `: ${st.approval.comment}` : ''}`);
  }
  const ms = stage.timeout ? parseStageDuration(stage.timeout)! : defaultApprovalMs;
  st.until ??= new Date(Date.now() + ms).toISOString();
  if (Date.parse(st.until) <= Date.now()) throw new StageFailed(`no decision before ${st.until}`);
  log(`waiting for an approval (until ${st.until}): POST …/runs/${ctx.number}/stages/${encodeURIComponent(st.name)}/approve or /reject`);
  await tools.continueAt(ctx.runId, Date.parse(st.until) + 1000);
  return 'suspend';
}
