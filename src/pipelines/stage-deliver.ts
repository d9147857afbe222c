/**
 * @module pipelines/stage-deliver
 * The `deliver` stage: earlier build stages' outputs pushed to their locations — images to
 * Slipway's registry (as the pipeline's owner, into its namespace only) or an external one
 * (with the namespace's credentials), BINARY files to Slipway's registry as OCI artifacts —
 * each recorded as an artefact version.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { type RegistryAuth, pushComponent } from '../builds/index.js';
import { isValidName, isValidTag } from '../registry/grammar.js';
import type { Delivered, StageState } from './runs.js';
import { primarySource } from './service.js';
import type { Stage } from './spec.js';
import { findOutput, StageFailed, substitute, type Outcome, type RunContext, type StageLog, type StageTools } from './stage-context.js';

export async function deliverStage(tools: StageTools, ctx: RunContext, stage: Extract<Stage, { type: 'deliver' }>, st: StageState, log: StageLog): Promise<Outcome> {
  const registryHost = tools.deps.registryHost();
  const delivered: Delivered[] = [];
  const started = Date.now();
  for (const item of stage.artifacts) {
    const output = findOutput(ctx, item.artifact, st);
    if (!output) {
      const known = ctx.state.stages.flatMap((s) => (s.outputs ?? []).map((o) => o.name));
      throw new StageFailed(`no output artifact "${item.artifact}" from an earlier build stage (outputs: ${known.join(', ') || 'none'})`);
    }
    const location = substitute(ctx, item.location, `stages.${st.name}.artifacts.${item.artifact}.location`);
    const target = parseLocation(location, registryHost);
    if (!target) throw new StageFailed(`location ${location}: not a repository:tag (e.g. team/app:1.0)`);
    const destination = `${target.host}/${target.repository}:${target.tag}`;
    if (target.own && target.repository.split('/')[0] !== ctx.namespace) throw new StageFailed(`location ${location}: a pipeline of "${ctx.namespace}" delivers only to repositories of its namespace (${ctx.namespace}/…)`);
    // A pull-through namespace takes no pushes: refused before the push starts (the push would be too).
    if (target.own) await tools.deps.registry.manifests.assertWritable(target.repository).catch((error: Error) => { throw new StageFailed(`location ${location}: ${error.message}`); });
    let digest: string;
    const key = `${target.repository}:${target.tag}`;
    if (target.own) tools.pushing.add(key);
    try {
      if (output.type === 'DOCKER_IMAGE') {
        let auth: RegistryAuth | undefined;
        if (target.own) auth = await tools.pushAuth(ctx);
        else {
          const login = await tools.deps.registries?.loginForImage(ctx.namespace, destination).catch(() => null);
          if (login) auth = { username: login.username, password: login.password };
        }
        log(`pushing ${output.name} (${output.image}) to ${destination}`);
        try {
          ({ digest } = await tools.deps.executor.pushImage(ctx.runId, output.image, destination, {
            auth, insecure: target.own || tools.deps.insecureRegistries.includes(target.host), log, signal: ctx.signal,
          }));
        } catch (error) {
          if (ctx.signal.aborted) throw error;
          throw new StageFailed(`pushing ${output.name} to ${destination} failed: ${(error as Error).message}`);
        }
      } else {
        if (!target.own) throw new StageFailed(`location ${location}: BINARY artifacts are delivered to Slipway's registry only`);
        const exists = await stat(output.file).then(() => true, () => false);
        if (!exists) throw new StageFailed(`output ${output.name} is gone (its run's files were cleaned up); run the pipeline again from its start`);
        log(`pushing ${output.name} (${output.size} bytes) to ${destination} as an OCI artifact`);
        const pushed = await pushComponent(tools.deps.registry, target.repository, target.tag, path.dirname(output.file), [path.basename(output.file)], {
          component: item.artifact, tag: target.tag, architecture: 'any', source: primarySource(ctx.spec)?.url, revision: ctx.commit ?? undefined,
        });
        digest = pushed.digest;
      }
      delivered.push({ artifact: item.artifact, type: output.type, location: destination, digest, reference: `${target.host}/${target.repository}@${digest}` });
      log(`delivered ${item.artifact} → ${destination} ${digest}`);
      await tools.deps.recordArtefact?.(ctx.namespace, {
        type: 'container', name: `${target.host}/${target.repository}`, version: target.tag, digest,
        commit: ctx.commit && /^[0-9a-f]{5,40}$/.test(ctx.commit) ? ctx.commit : undefined, ref: ctx.ref ?? undefined,
      }, ctx.owner).catch((error) => log(`recording the artefact version failed: ${(error as Error).message}`));
    } finally {
      tools.pushing.delete(key);
    }
  }
  st.delivered = delivered;
  ctx.state.phases.push = (ctx.state.phases.push ?? 0) + (Date.now() - started);
  return 'succeeded';
}

/** `team/app:1` (Slipway's registry) or `host[:port]/team/app:1`; null when not repository:tag. */
export function parseLocation(location: string, registryHost: string): { host: string; repository: string; tag: string; own: boolean } | null {
  const colon = location.lastIndexOf(':');
  const slash = location.lastIndexOf('/');
  if (colon < 0 || colon < slash) return null;
  let name = location.slice(0, colon);
  const tag = location.slice(colon + 1);
  let host = registryHost;
  const first = name.split('/')[0]!;
  if (name.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    host = first;
    name = name.slice(first.length + 1);
  }
  if (!isValidName(name) || !isValidTag(tag)) return null;
  return { host, repository: name, tag, own: host === registryHost };
}
