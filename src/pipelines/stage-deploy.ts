/**
 * @module pipelines/stage-deploy
 * The `deploy` stage: functions created or updated with a delivered image (or a named one),
 * and, with `wait`, followed until the new revision serves or fails (the previous one keeps
 * serving then).
 */
import type { StageState } from './runs.js';
import type { Stage } from './spec.js';
import { StageFailed, substitute, type Outcome, type RunContext, type StageLog, type StageTools } from './stage-context.js';

export async function deployStage(tools: StageTools, ctx: RunContext, stage: Extract<Stage, { type: 'deploy' }>, st: StageState, log: StageLog): Promise<Outcome> {
  const functions = tools.deps.functions;
  if (!functions) throw new StageFailed('functions are turned off on this server');
  const started = Date.now();
  const delivered = ctx.state.stages.flatMap((s) => s.delivered ?? []);
  st.deployed = [];
  const problems: string[] = [];
  const targets = stage.functions.map((f) => {
    let image: string;
    if (f.image) image = substitute(ctx, f.image, `stages.${st.name}.functions.${f.name}.image`);
    else {
      const candidates = delivered.filter((d) => d.type === 'DOCKER_IMAGE' && (!f.artifact || d.artifact === f.artifact));
      const chosen = f.artifact ? candidates[candidates.length - 1] : candidates.length === 1 || new Set(candidates.map((c) => c.artifact)).size === 1 ? candidates[candidates.length - 1] : undefined;
      if (!chosen) throw new StageFailed(`function ${f.name}: ${f.artifact ? `no delivered image "${f.artifact}"` : `name the artifact to deploy (delivered images: ${candidates.map((c) => c.artifact).join(', ') || 'none'})`}`);
      image = chosen.reference;
    }
    return { spec: f, image };
  });
  for (const target of targets) {
    const name = target.spec.name;
    try {
      const env: Record<string, string> = {};
      for (const [key, value] of Object.entries(target.spec.env ?? {})) env[key] = substitute(ctx, value, `stages.${st.name}.functions.${name}.env.${key}`);
      // The stage's variables are added to the function's own.
      const { function: updated, created } = await functions.upsert(ctx.namespace, name, target.spec.env ? { image: target.image, env } : { image: target.image }, {
        actor: ctx.owner, mergeEnv: true, typeIfCreated: target.spec.type ?? 'http',
      });
      log(created ? `created function ${name} with ${target.image}` : `deploying ${target.image} to function ${name}`);
      const record = { function: name, image: target.image, revision: updated.latestRevision, status: updated.status as string, reason: null as string | null };
      st.deployed.push(record);
      await ctx.save();
      if (!stage.wait) continue;
      const settled = await functions.waitForDeploy(ctx.namespace, name, ctx.signal);
      if (ctx.signal.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('aborted');
      const ok = settled.activeRevision === settled.latestRevision && settled.status === 'ready';
      record.status = ok ? 'ready' : 'failed';
      record.reason = ok ? null : settled.statusReason ?? 'the new revision did not start';
      if (ok) log(`function ${name} serves revision ${settled.activeRevision}`);
      else {
        const revisions = await functions.revisions(ctx.namespace, name).catch(() => []);
        const failed = revisions.find((r) => r.number === settled.latestRevision);
        for (const line of failed?.output ?? []) log(`  ${name}: ${line}`);
        problems.push(`function ${name}: ${record.reason}${settled.activeRevision ? `; revision ${settled.activeRevision} keeps serving` : ''}`);
      }
    } catch (error) {
      if (ctx.signal.aborted || !(error instanceof Error)) throw error;
      if (error instanceof StageFailed) throw error;
      problems.push(`function ${name}: ${error.message}`);
      st.deployed.push({ function: name, image: target.image, revision: null, status: 'failed', reason: error.message });
    }
  }
  ctx.state.phases.deploy = (ctx.state.phases.deploy ?? 0) + (Date.now() - started);
  if (problems.length > 0) throw new StageFailed(problems.join('; '));
  return 'succeeded';
}
