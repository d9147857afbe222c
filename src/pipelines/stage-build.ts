/**
 * @module pipelines/stage-build
 * The `build` stage: the run's sources cloned into its workspace once (again at the same
 * commits after a restart), the build spec loaded and resolved, input artifacts fetched, the
 * steps run by the stage executor, and its outputs kept in the run's folder (BINARY files
 * under `outputs/<stage>/`, images as the executor left them).
 */
import { copyFile, mkdir, rm, stat } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import path from 'node:path';
import { resolveBaseImages, formatBuildSpecWarning, loadBuildSpec, placeholderValues, predefinedVariables, resolveBuildSpec, type BuildSpec } from '../builds/index.js';
import { cloneRepository } from '../git/clone.js';
import type { StageRequest } from './executor.js';
import type { GitCredentials } from '../git/remote.js';
import type { PipelineRunnerDeps } from './runner.js';
import type { BuildOutput, StageState } from './runs.js';
import { primarySource } from './service.js';
import { sourceCredentials as loadSourceCredentials, SourceCredentialsError } from './source-credentials.js';
import type { PipelineInput, Stage } from './spec.js';
import { findOutput, StageFailed, substitute, type Outcome, type RunContext, type StageLog, type StageTools } from './stage-context.js';

export async function buildStage(tools: StageTools, ctx: RunContext, stage: Extract<Stage, { type: 'build' }>, st: StageState, log: StageLog): Promise<Outcome> {
  const workspace = await ensureSources(tools, ctx, log);
  const primary = stage.primarySource ? ctx.spec.sources.find((s) => s.name === stage.primarySource)! : primarySource(ctx.spec)!;
  const primaryDir = path.join(workspace, primary.name);
  const loaded = await loadBuildSpec(primaryDir, stage.buildSpecFile, { strict: ctx.spec.strict });
  for (const warning of loaded.warnings) log(formatBuildSpecWarning(warning));
  st.buildSpec = path.relative(primaryDir, loaded.path);
  const kind = stage.executor ?? tools.deps.config.executor;
  const paths = tools.deps.stepPaths(kind, workspace, primary.name);
  const source = ctx.state.sources[primary.name];
  const predefined = predefinedVariables({
    buildRunId: ctx.runId, pipelineId: ctx.pipelineId, stageId: `${ctx.runId}:${st.name}`, stageName: st.name,
    workspaceDir: paths.workspace, primarySourceName: primary.name, primarySourceDir: paths.primarySource,
    source: { commit: source?.commit, branch: source?.ref.replace(/^refs\/(heads|tags)\//, ''), url: primary.url },
    trigger: { commit: ctx.commit ?? undefined, branch: ctx.ref?.replace(/^refs\/(heads|tags)\//, ''), url: primarySource(ctx.spec)?.url, eventType: ctx.trigger.event ?? ctx.trigger.type },
  });
  const values = placeholderValues(predefined, ctx.parameters, ctx.state.exported);
  const spec = resolveBuildSpec(loaded.spec, values, { strict: true });
  // Step environment: the spec's variables, then parameters, exported variables and the predefined ones over them.
  const env = { ...spec.env.variables, ...ctx.parameters, ...ctx.state.exported, ...predefined };
  const secrets: Record<string, string> = {};
  const vaultVariables = Object.entries(spec.env.vaultVariables);
  if (vaultVariables.length > 0) {
    if (!tools.deps.secrets) throw new StageFailed('vault variables need access control (and its vault) turned on');
    const revealed = await tools.deps.secrets.reveal(ctx.namespace, vaultVariables.map(([, secret]) => secret)).catch((error: Error) => { throw new StageFailed(`vault variables: ${error.message}`); });
    const byName = new Map(revealed.map((s) => [s.name, s.value]));
    for (const [variable, secret] of vaultVariables) {
      const value = byName.get(secret);
      if (value === undefined) throw new StageFailed(`vault variable ${variable}: namespace "${ctx.namespace}" has no secret "${secret}"`);
      secrets[variable] = value;
    }
  }
  const inputs = await inputFiles(tools, ctx, spec, st, log);
  const timeouts = [tools.deps.config.stageTimeout, stage.timeoutSeconds ? stage.timeoutSeconds * 1000 : Infinity, spec.timeoutInSeconds ? spec.timeoutInSeconds * 1000 : Infinity];
  const registryHost = tools.deps.registryHost();
  const auth = await tools.pushAuth(ctx);
  let executor: StageRequest['executor'] = { kind: 'shell' };
  if (kind === 'container') {
    const wanted = stage.image ? substitute(ctx, stage.image, `stages.${st.name}.image`) : tools.deps.config.builderImage;
    const image = (await resolveBaseImages(`FROM ${wanted}`, registryHost, (repository, reference) => tools.existsHere(repository, reference))).text.slice('FROM '.length);
    const own = image.startsWith(`${registryHost}/`);
    const external = own ? null : await tools.deps.registries?.loginForImage(ctx.namespace, image).catch(() => null);
    executor = { kind: 'container', image, auth: own ? auth : external ? { username: external.username, password: external.password } : undefined, insecure: own || tools.deps.insecureRegistries.includes(image.split('/')[0]!) };
  }
  log(`build spec ${st.buildSpec} (${spec.steps.length} steps, ${kind} executor)`);
  const started = Date.now();
  const result = await tools.deps.executor.runStage({
    runId: ctx.runId, stageName: st.name, spec, workspaceDir: workspace, primarySourceName: primary.name, env, secrets, inputFiles: inputs, executor,
    images: {
      registryHost, registryAuth: auth, insecureRegistries: [registryHost, ...tools.deps.insecureRegistries],
      resolveDockerfile: async (text) => {
        const resolved = await resolveBaseImages(text, registryHost, (repository, reference) => tools.existsHere(repository, reference));
        return { text: resolved.text, external: resolved.external };
      },
    },
    timeoutMs: Math.min(...timeouts), signal: ctx.signal, log,
    onStep: (steps) => {
      st.steps = steps;
      void ctx.save();
    },
  });
  ctx.state.phases.build = (ctx.state.phases.build ?? 0) + (Date.now() - started);
  st.steps = result.steps;
  if (result.status === 'cancelled' && ctx.signal.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('aborted');
  if (result.status !== 'succeeded') {
    st.failedStep = result.failedStep;
    st.exitCode = result.exitCode;
    throw new StageFailed(result.message ?? (result.failedStep ? `step "${result.failedStep}" failed${result.exitCode !== undefined ? ` with exit code ${result.exitCode}` : ''}` : result.status));
  }
  // BINARY outputs move into the run's folder (the executor's own space is temporary).
  const outputs: BuildOutput[] = [];
  for (const output of result.outputs) {
    if (output.type === 'BINARY') {
      const file = path.join(ctx.dir, 'outputs', st.name, output.name);
      await mkdir(path.dirname(file), { recursive: true });
      await copyFile(output.file, file);
      outputs.push({ ...output, file });
    } else {
      outputs.push(output);
    }
    log(`output ${output.name} (${output.type}) ${output.type === 'BINARY' ? output.digest : output.image}`);
  }
  st.outputs = outputs;
  st.exported = result.exported;
  Object.assign(ctx.state.exported, result.exported);
  return 'succeeded';
}

/** Clones every source into the run's workspace once (again at the same commits after a restart). */
async function ensureSources(tools: StageTools, ctx: RunContext, log: StageLog): Promise<string> {
  const workspace = path.join(ctx.dir, 'workspace');
  const primary = primarySource(ctx.spec);
  let cloneMs = 0;
  for (const source of ctx.spec.sources) {
    const dest = path.join(workspace, source.name);
    if (await stat(path.join(dest, '.git')).then(() => true, () => false)) continue;
    const known = ctx.state.sources[source.name];
    const isPrimary = source.name === primary?.name;
    const ref = isPrimary && ctx.ref ? ctx.ref : `refs/heads/${source.branch}`;
    const commit = known?.commit ?? (isPrimary ? ctx.commit ?? undefined : undefined);
    const credentials = await sourceCredentials(tools.deps, ctx.namespace, source);
    const startedAt = Date.now();
    await mkdir(workspace, { recursive: true });
    try {
      const cloned = await cloneRepository({ url: source.url, ref, commit, destDir: dest, credentials, signal: ctx.signal }, log);
      ctx.state.sources[source.name] = { url: source.url, ref: cloned.ref, commit: cloned.commit };
      if (isPrimary && !ctx.commit) ctx.commit = cloned.commit;
      log(`cloned ${source.name} (${source.url}) at ${cloned.ref} ${cloned.commit}`);
    } catch (error) {
      await rm(dest, { recursive: true, force: true });
      if (ctx.signal.aborted) throw error;
      throw new StageFailed(`cloning ${source.name} (${source.url}) failed: ${(error as Error).message}`);
    }
    cloneMs += Date.now() - startedAt;
  }
  if (cloneMs > 0) ctx.state.phases.clone = (ctx.state.phases.clone ?? 0) + cloneMs;
  await ctx.save();
  return workspace;
}

/** A source's git credentials; one that cannot be had fails the stage with the reason. */
export async function sourceCredentials(deps: Pick<PipelineRunnerDeps, 'secrets'>, namespace: string, source: PipelineInput['sources'][number]): Promise<GitCredentials | undefined> {
  return loadSourceCredentials(deps.secrets, namespace, source).catch((error: unknown) => {
    throw error instanceof SourceCredentialsError ? new StageFailed(error.message) : error;
  });
}

async function inputFiles(tools: StageTools, ctx: RunContext, spec: BuildSpec, st: StageState, log: StageLog): Promise<Array<{ name: string; location: string; file: string }>> {
  const out: Array<{ name: string; location: string; file: string }> = [];
  for (const input of spec.inputArtifacts) {
    if (input.type === 'STAGE_ARTIFACT') {
      const found = findOutput(ctx, input.name, st);
      if (!found || found.type !== 'BINARY') throw new StageFailed(`input artifact ${input.name}: no BINARY output of that name in an earlier build stage`);
      out.push({ name: input.name, location: input.location, file: found.file });
    } else if (input.type === 'URL') {
      const file = path.join(ctx.dir, 'inputs', st.name, input.name.replace(/[^A-Za-z0-9_.-]/g, '_'));
      await mkdir(path.dirname(file), { recursive: true });
      log(`downloading input artifact ${input.name} from ${input.url}`);
      const response = await fetch(input.url, { signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(600_000)]) }).catch((error: Error) => { throw new StageFailed(`input artifact ${input.name}: ${input.url}: ${error.message}`); });
      if (!response.ok || !response.body) throw new StageFailed(`input artifact ${input.name}: ${input.url} answered ${response.status}`);
      await streamPipeline(Readable.fromWeb(response.body as never), createWriteStream(file));
      out.push({ name: input.name, location: input.location, file });
    } else {
      throw new StageFailed(`input artifact ${input.name}: GENERIC_ARTIFACT inputs are not supported yet (use STAGE_ARTIFACT or URL)`);
    }
  }
  return out;
}
