/**
 * @module pipelines/runner
 * Advances a run stage by stage; one call is one durable job of the `pipeline-runs` queue.
 * A run that must wait (an approval, a long `wait` stage) ends its job and is continued by a
 * later one (the decision, or a job scheduled for when the wait is over), so no worker is held.
 * A server stop leaves the running stage `running`: the job goes back to the queue and the
 * stage runs again from its start on the next server (its workspace is re-cloned at the same
 * commit when it is gone).
 *
 * Files: `<workDir>/runs/<runId>/workspace/<source>` (the clones) and `…/outputs/<stage>/<name>`
 * (BINARY outputs). A succeeded or cancelled run's folder and local images are removed at once;
 * a failed run's are kept for `keepFailed` so it can be re-run from the failed stage.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline as streamPipeline } from 'node:stream/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AccessService } from '../auth/access.js';
import type { Config } from '../config/config.js';
import type { ExternalRegistries } from '../credentials/service.js';
import type { Database } from '../db/db.js';
import type { JobQueue } from '../db/job-queue.js';
import type { FunctionService } from '../functions/service.js';
import type { ManifestService } from '../registry/manifest-service.js';
import type { UploadService } from '../registry/upload-service.js';
import type { NamespaceSecrets } from '../vault/secrets.js';
import type { BuildLogs } from '../builds/logs.js';
import type { RegistryAuth } from '../builds/build-driver.js';
import { resolveBaseImages } from '../builds/base-resolution.js';
import {
  BuildSpecError, loadBuildSpec, placeholderValues, predefinedVariables, resolveBuildSpec, substitutePlaceholders, type BuildSpec,
} from '../builds/build-spec.js';
import { cloneRepository } from '../builds/context.js';
import { pushComponent } from '../builds/component-artifact.js';
import { isValidName, isValidTag } from '../registry/grammar.js';
import { finalRunStatuses, runView, type BuildOutput, type Delivered, type RunState, type RunStatus, type StageState, type StepState, type TriggerInfo } from './runs.js';
import { parseStageDuration, type PipelineInput, type Stage } from './spec.js';
import { primarySource, type PipelineService } from './service.js';
import type { GitCredentials } from './git-remote.js';
import { sourceCredentials, SourceCredentialsError } from './source-credentials.js';
import type { StageExecutor, StageRequest } from './executor.js';

/** What the runner needs of the build-stage executor. */
export type BuildStageExecutor = Pick<StageExecutor, 'runStage' | 'pushImage' | 'removeRunImages'>;

export interface PipelineRunnerDeps {
  db: Database;
  service: PipelineService;
  queue: Pick<JobQueue, 'enqueue'>;
  executor: BuildStageExecutor;
  stepPaths(kind: 'shell' | 'container', workspaceDir: string, primarySourceName: string): { workspace: string; primarySource: string };
  logs: BuildLogs;
  workDir: string;
  config: Config['pipelines'];
  registryHost: () => string;
  insecureRegistries: string[];
  registry: { uploads: UploadService; manifests: ManifestService };
  access?: AccessService;
  secrets?: NamespaceSecrets;
  registries?: ExternalRegistries;
  functions?: FunctionService;
  /** Records an artefact version for each delivery. */
  recordArtefact?: (namespace: string, input: { type: 'container'; name: string; version: string; digest: string; commit?: string; ref?: string }, actor: string | null) => Promise<unknown>;
  logger?: Logger;
}

type Outcome = 'succeeded' | 'failed' | 'suspend';

class StageFailed extends Error {}

/** Everything one advance of a run works with. */
interface RunContext {
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

const shortWaitMs = 30_000;
const defaultApprovalMs = 7 * 86_400_000;

export class PipelineRunner {
  /** `repository:tag` pushes a run makes right now (the registry hook leaves their artefact versions to the run). */
  private readonly pushing = new Set<string>();
  private readonly keys = new Map<string, { id: string }>();
  /** Runs advancing in this process: a cancel reaches them at once, not at the job's next heartbeat. */
  private readonly running = new Map<string, AbortController>();

  constructor(private readonly deps: PipelineRunnerDeps) {
    // A cancel reaches a run advancing here at once, not at its job's next heartbeat.
    deps.service.onRunCancelled((runId, message) => this.abortRun(runId, message));
  }

  isPipelinePush(repository: string, tag: string): boolean {
    return this.pushing.has(`${repository}:${tag}`);
  }

  runDir(runId: string): string {
    return path.join(this.deps.workDir, 'runs', runId);
  }

  /** Aborts a run advancing in this process (false when it runs elsewhere or not at all). */
  abortRun(runId: string, message: string): boolean {
    const controller = this.running.get(runId);
    if (!controller) return false;
    controller.abort({ kind: 'cancelled', message });
    return true;
  }

  /** The job handler: runs stages until the run ends or must wait. */
  async advance(runId: string, jobSignal: AbortSignal): Promise<void> {
    const local = new AbortController();
    this.running.set(runId, local);
    try {
      await this.advanceRun(runId, AbortSignal.any([jobSignal, local.signal]));
    } finally {
      if (this.running.get(runId) === local) this.running.delete(runId);
    }
  }

  private async advanceRun(runId: string, signal: AbortSignal): Promise<void> {
    const { db } = this.deps;
    const row = await db.kysely.selectFrom('pipeline_runs').selectAll().where('id', '=', runId).executeTakeFirst();
    if (!row || finalRunStatuses.has(row.status as RunStatus)) return;
    const pipeline = await db.kysely.selectFrom('pipelines').select(['id', 'name', 'created_by']).where('id', '=', row.pipeline_id).executeTakeFirst();
    if (!pipeline) return;
    const state = JSON.parse(row.state) as RunState;
    const write = await this.deps.logs.start(runId);
    const log = (line: string) => write(`${new Date().toISOString().slice(11, 23)} ${line}`);
    let saving = Promise.resolve();
    const ctx: RunContext = {
      runId, namespace: row.namespace, pipelineId: pipeline.id, pipelineName: pipeline.name, owner: pipeline.created_by, number: row.number,
      commit: row.commit_sha, ref: row.ref, trigger: JSON.parse(row.trigger) as TriggerInfo, parameters: JSON.parse(row.parameters) as Record<string, string>,
      state, spec: state.spec, dir: this.runDir(runId), signal, log,
      save: () => {
        saving = saving.then(() => db.write((trx) => trx.updateTable('pipeline_runs').set({ state: JSON.stringify(state), commit_sha: ctx.commit }).where('id', '=', runId).execute()).then(() => undefined));
        return saving;
      },
    };
    const now = Date.now();
    const firstStart = row.started_at === null;
    if (firstStart) state.phases.queue = now - (ctx.trigger.receivedAt ?? row.created_at);
    await db.write((trx) => trx.updateTable('pipeline_runs').set({ status: 'running', started_at: row.started_at ?? now, state: JSON.stringify(state) }).where('id', '=', runId).execute());
    if (firstStart) {
      log(`run ${row.number} of ${pipeline.name} started (${describeTrigger(ctx.trigger)}${ctx.commit ? `, commit ${ctx.commit}` : ''})`);
      await this.deps.service.publish(row.namespace, 'run.started', await this.view(runId, pipeline.name));
    } else {
      log(`run ${row.number} goes on`);
    }
    let final: { status: RunStatus; error: string | null } | undefined;
    try {
      const groups = [...new Set(state.stages.map((s) => s.group))].sort((a, b) => a - b);
      for (const group of groups) {
        const todo = state.stages.filter((s) => s.group === group && s.status !== 'succeeded' && s.status !== 'skipped');
        if (todo.length === 0) continue;
        const outcomes = await Promise.all(todo.map((stage) => this.runStage(ctx, stage)));
        const failed = todo.find((_, i) => outcomes[i] === 'failed');
        if (failed) {
          for (const stage of state.stages) if (stage.group > group && stage.status === 'pending') stage.status = 'skipped';
          final = { status: 'failed', error: `stage "${failed.name}" failed: ${failed.message ?? 'see the log'}` };
          break;
        }
        if (outcomes.includes('suspend')) {
          await ctx.save();
          await db.write((trx) => trx.updateTable('pipeline_runs').set({ status: 'waiting' }).where('id', '=', runId).execute());
          const waiting = todo.filter((_, i) => outcomes[i] === 'suspend').map((s) => s.name);
          log(`run waits (${waiting.join(', ')})`);
          // The log is closed while nothing runs: followers get their end, the next job reopens it.
          await this.deps.logs.finish(runId);
          this.deps.service.notify(runId);
          if (todo.some((s, i) => outcomes[i] === 'suspend' && s.type === 'approval')) await this.deps.service.publish(row.namespace, 'run.waiting', await this.view(runId, pipeline.name));
          return;
        }
      }
      final ??= { status: 'succeeded', error: null };
    } catch (error) {
      const reason = signal.aborted ? (signal.reason as { kind?: string; message?: string } | undefined) : undefined;
      if (reason?.kind === 'shutdown' || reason?.kind === 'lease-lost') {
        log(`run interrupted (${reason.kind}); it goes on at the next start`);
        await ctx.save();
        await db.write((trx) => trx.updateTable('pipeline_runs').set({ status: 'queued' }).where('id', '=', runId).execute());
        throw error;
      }
      if (reason?.kind === 'cancelled') {
        const fresh = await db.kysely.selectFrom('pipeline_runs').select('error').where('id', '=', runId).executeTakeFirst();
        final = { status: 'cancelled', error: fresh?.error ?? 'cancelled' };
      } else {
        this.deps.logger?.error({ err: error, run: runId }, 'pipeline run failed');
        final = { status: 'failed', error: `internal error: ${(error as Error).message}` };
      }
      for (const stage of state.stages) {
        if (stage.status === 'running' || stage.status === 'waiting') Object.assign(stage, { status: final.status === 'cancelled' ? 'cancelled' : 'failed', finishedAt: new Date().toISOString() });
        else if (stage.status === 'pending') stage.status = 'skipped';
      }
    }
    await this.finish(ctx, final.status, final.error);
  }

  private async finish(ctx: RunContext, status: RunStatus, error: string | null): Promise<void> {
    await ctx.save();
    await this.deps.db.write((trx) => trx.updateTable('pipeline_runs').set({ status, error, finished_at: Date.now() }).where('id', '=', ctx.runId).execute());
    ctx.log(`run ${status}${error ? `: ${error}` : ''}`);
    await this.deps.logs.finish(ctx.runId);
    await this.revokeKey(ctx.runId);
    if (status !== 'failed') await this.cleanup(ctx.runId);
    this.deps.service.notify(ctx.runId);
    await this.deps.service.publish(ctx.namespace, `run.${status}`, await this.view(ctx.runId, ctx.pipelineName));
  }

  private async view(runId: string, pipeline: string) {
    const row = await this.deps.db.kysely.selectFrom('pipeline_runs').selectAll().where('id', '=', runId).executeTakeFirstOrThrow();
    return runView(row, pipeline);
  }

  /** Removes a run's folder and local images. */
  async cleanup(runId: string): Promise<void> {
    await rm(this.runDir(runId), { recursive: true, force: true }).catch(() => undefined);
    await this.deps.executor.removeRunImages(runId).catch((error) => this.deps.logger?.warn({ err: error, run: runId }, 'removing a run\'s images failed'));
  }

  /** Removes what failed runs kept once `keepFailed` is over (and folders of runs that no longer exist). */
  async sweep(now = Date.now()): Promise<number> {
    const dir = path.join(this.deps.workDir, 'runs');
    const entries = await readdir(dir).catch(() => [] as string[]);
    let removed = 0;
    for (const runId of entries) {
      const row = await this.deps.db.kysely.selectFrom('pipeline_runs').select(['status', 'finished_at']).where('id', '=', runId).executeTakeFirst();
      const expired = !row || (finalRunStatuses.has(row.status as RunStatus) && (row.status !== 'failed' || (row.finished_at ?? 0) + this.deps.config.keepFailed < now));
      if (!expired) continue;
      await this.cleanup(runId);
      removed++;
    }
    return removed;
  }

  // ---- stages -----------------------------------------------------------------------------

  private async runStage(ctx: RunContext, st: StageState): Promise<Outcome> {
    const stage = findStage(ctx.spec, st.name);
    const resumed = st.status === 'running';
    if (st.status === 'pending' || st.status === 'running' || st.status === 'cancelled' || st.status === 'failed') {
      Object.assign(st, { status: 'running', startedAt: new Date().toISOString(), finishedAt: undefined, durationMs: undefined, message: undefined });
    }
    await ctx.save();
    const log = (line: string) => ctx.log(`[${st.name}] ${line}`);
    if (resumed) log('stage runs again from its start (the server stopped while it ran)');
    const started = Date.parse(st.startedAt ?? new Date().toISOString());
    try {
      let outcome: Outcome;
      switch (stage.type) {
        case 'build': outcome = await this.build(ctx, stage, st, log); break;
        case 'deliver': outcome = await this.deliver(ctx, stage, st, log); break;
        case 'deploy': outcome = await this.deploy(ctx, stage, st, log); break;
        case 'trigger': outcome = await this.triggerStage(ctx, stage, st, log); break;
        case 'wait': outcome = await this.waitStage(ctx, stage, st, log); break;
        case 'approval': outcome = await this.approval(ctx, stage, st, log); break;
      }
      if (outcome === 'suspend') {
        st.status = 'waiting';
      } else {
        Object.assign(st, { status: outcome, finishedAt: new Date().toISOString(), durationMs: Date.now() - started });
        log(`stage ${outcome} in ${Date.now() - started} ms`);
      }
      await ctx.save();
      return outcome;
    } catch (error) {
      if (error instanceof StageFailed || error instanceof BuildSpecError) {
        Object.assign(st, { status: 'failed', message: error.message, finishedAt: new Date().toISOString(), durationMs: Date.now() - started });
        log(`stage failed: ${error.message}`);
        if (error instanceof BuildSpecError) for (const issue of error.issues) log(`  ${issue.path}${issue.line ? ` (line ${issue.line})` : ''}: ${issue.message}`);
        await ctx.save();
        return 'failed';
      }
      throw error;
    }
  }

  /** Placeholder values of a stage: parameters, then exported variables over them. */
  private values(ctx: RunContext): Record<string, string> {
    return { ...ctx.parameters, ...ctx.state.exported };
  }

  private sub(ctx: RunContext, text: string, where: string): string {
    try {
      return substitutePlaceholders(text, this.values(ctx), { strict: true, where });
    } catch (error) {
      throw new StageFailed((error as Error).message);
    }
  }

  /** Clones every source into the run's workspace once (again at the same commits after a restart). */
  private async ensureSources(ctx: RunContext, log: (line: string) => void): Promise<string> {
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
      const credentials = await this.sourceCredentials(ctx.namespace, source);
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

  private async sourceCredentials(namespace: string, source: PipelineInput['sources'][number]): Promise<GitCredentials | undefined> {
    return sourceCredentials(this.deps.secrets, namespace, source).catch((error: unknown) => {
      throw error instanceof SourceCredentialsError ? new StageFailed(error.message) : error;
    });
  }

  /** A short-lived push/pull key of the pipeline's owner for Slipway's registry (access control on). */
  private async pushAuth(ctx: RunContext): Promise<RegistryAuth | undefined> {
    ctx.pushKey ??= (async () => {
      const { access } = this.deps;
      if (!access) return undefined;
      const owner = ctx.owner ? await access.findByName(ctx.owner) : null;
      if (!owner) throw new StageFailed(`the pipeline's owner "${ctx.owner ?? '?'}" no longer exists: nobody to push as`);
      const key = await access.createKey(owner, `pipeline run ${ctx.runId}`, ['pull', 'push'], 6 * 3_600_000);
      this.keys.set(ctx.runId, { id: key.id });
      return { username: owner.name, password: key.key };
    })();
    return ctx.pushKey;
  }

  private async revokeKey(runId: string): Promise<void> {
    const key = this.keys.get(runId);
    if (!key) return;
    this.keys.delete(runId);
    await this.deps.access?.revokeKey(key.id, null).catch(() => undefined);
  }

  private async build(ctx: RunContext, stage: Extract<Stage, { type: 'build' }>, st: StageState, log: (line: string) => void): Promise<Outcome> {
    const workspace = await this.ensureSources(ctx, log);
    const primary = stage.primarySource ? ctx.spec.sources.find((s) => s.name === stage.primarySource)! : primarySource(ctx.spec)!;
    const primaryDir = path.join(workspace, primary.name);
    const loaded = await loadBuildSpec(primaryDir, stage.buildSpecFile);
    st.buildSpec = path.relative(primaryDir, loaded.path);
    const kind = stage.executor ?? this.deps.config.executor;
    const paths = this.deps.stepPaths(kind, workspace, primary.name);
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
      if (!this.deps.secrets) throw new StageFailed('vault variables need access control (and its vault) turned on');
      const revealed = await this.deps.secrets.reveal(ctx.namespace, vaultVariables.map(([, secret]) => secret)).catch((error: Error) => { throw new StageFailed(`vault variables: ${error.message}`); });
      const byName = new Map(revealed.map((s) => [s.name, s.value]));
      for (const [variable, secret] of vaultVariables) {
        const value = byName.get(secret);
        if (value === undefined) throw new StageFailed(`vault variable ${variable}: namespace "${ctx.namespace}" has no secret "${secret}"`);
        secrets[variable] = value;
      }
    }
    const inputFiles = await this.inputFiles(ctx, spec, st, log);
    const timeouts = [this.deps.config.stageTimeout, stage.timeoutSeconds ? stage.timeoutSeconds * 1000 : Infinity, spec.timeoutInSeconds ? spec.timeoutInSeconds * 1000 : Infinity];
    const registryHost = this.deps.registryHost();
    const auth = await this.pushAuth(ctx);
    let executor: StageRequest['executor'] = { kind: 'shell' };
    if (kind === 'container') {
      const wanted = stage.image ? this.sub(ctx, stage.image, `stages.${st.name}.image`) : this.deps.config.builderImage;
      const image = (await resolveBaseImages(`FROM ${wanted}`, registryHost, (repository, reference) => this.existsHere(repository, reference))).text.slice('FROM '.length);
      const own = image.startsWith(`${registryHost}/`);
      const external = own ? null : await this.deps.registries?.loginForImage(ctx.namespace, image).catch(() => null);
      executor = { kind: 'container', image, auth: own ? auth : external ? { username: external.username, password: external.password } : undefined, insecure: own || this.deps.insecureRegistries.includes(image.split('/')[0]!) };
    }
    log(`build spec ${st.buildSpec} (${spec.steps.length} steps, ${kind} executor)`);
    const started = Date.now();
    const result = await this.deps.executor.runStage({
      runId: ctx.runId, stageName: st.name, spec, workspaceDir: workspace, primarySourceName: primary.name, env, secrets, inputFiles, executor,
      images: {
        registryHost, registryAuth: auth, insecureRegistries: [registryHost, ...this.deps.insecureRegistries],
        resolveDockerfile: async (text) => {
          const resolved = await resolveBaseImages(text, registryHost, (repository, reference) => this.existsHere(repository, reference));
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

  private async inputFiles(ctx: RunContext, spec: BuildSpec, st: StageState, log: (line: string) => void): Promise<Array<{ name: string; location: string; file: string }>> {
    const out: Array<{ name: string; location: string; file: string }> = [];
    for (const input of spec.inputArtifacts) {
      if (input.type === 'STAGE_ARTIFACT') {
        const found = this.findOutput(ctx, input.name, st);
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

  /** The newest output of that name among stages before `before` (or all). */
  private findOutput(ctx: RunContext, name: string, before?: StageState): BuildOutput | undefined {
    let found: BuildOutput | undefined;
    for (const stage of ctx.state.stages) {
      if (before && stage.group >= before.group) break;
      for (const output of stage.outputs ?? []) if (output.name === name) found = output;
    }
    return found;
  }

  private async deliver(ctx: RunContext, stage: Extract<Stage, { type: 'deliver' }>, st: StageState, log: (line: string) => void): Promise<Outcome> {
    const registryHost = this.deps.registryHost();
    const delivered: Delivered[] = [];
    const started = Date.now();
    for (const item of stage.artifacts) {
      const output = this.findOutput(ctx, item.artifact, st);
      if (!output) {
        const known = ctx.state.stages.flatMap((s) => (s.outputs ?? []).map((o) => o.name));
        throw new StageFailed(`no output artifact "${item.artifact}" from an earlier build stage (outputs: ${known.join(', ') || 'none'})`);
      }
      const location = this.sub(ctx, item.location, `stages.${st.name}.artifacts.${item.artifact}.location`);
      const target = parseLocation(location, registryHost);
      if (!target) throw new StageFailed(`location ${location}: not a repository:tag (e.g. team/app:1.0)`);
      const destination = `${target.host}/${target.repository}:${target.tag}`;
      if (target.own && target.repository.split('/')[0] !== ctx.namespace) throw new StageFailed(`location ${location}: a pipeline of "${ctx.namespace}" delivers only to repositories of its namespace (${ctx.namespace}/…)`);
      let digest: string;
      const key = `${target.repository}:${target.tag}`;
      if (target.own) this.pushing.add(key);
      try {
        if (output.type === 'DOCKER_IMAGE') {
          let auth: RegistryAuth | undefined;
          if (target.own) auth = await this.pushAuth(ctx);
          else {
            const login = await this.deps.registries?.loginForImage(ctx.namespace, destination).catch(() => null);
            if (login) auth = { username: login.username, password: login.password };
          }
          log(`pushing ${output.name} (${output.image}) to ${destination}`);
          try {
            ({ digest } = await this.deps.executor.pushImage(ctx.runId, output.image, destination, {
              auth, insecure: target.own || this.deps.insecureRegistries.includes(target.host), log, signal: ctx.signal,
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
          const pushed = await pushComponent(this.deps.registry, target.repository, target.tag, path.dirname(output.file), [path.basename(output.file)], {
            component: item.artifact, tag: target.tag, architecture: 'any', source: primarySource(ctx.spec)?.url, revision: ctx.commit ?? undefined,
          });
          digest = pushed.digest;
        }
        delivered.push({ artifact: item.artifact, type: output.type, location: destination, digest, reference: `${target.host}/${target.repository}@${digest}` });
        log(`delivered ${item.artifact} → ${destination} ${digest}`);
        await this.deps.recordArtefact?.(ctx.namespace, {
          type: 'container', name: `${target.host}/${target.repository}`, version: target.tag, digest,
          commit: ctx.commit && /^[0-9a-f]{5,40}$/.test(ctx.commit) ? ctx.commit : undefined, ref: ctx.ref ?? undefined,
        }, ctx.owner).catch((error) => log(`recording the artefact version failed: ${(error as Error).message}`));
      } finally {
        this.pushing.delete(key);
      }
    }
    st.delivered = delivered;
    ctx.state.phases.push = (ctx.state.phases.push ?? 0) + (Date.now() - started);
    return 'succeeded';
  }

  private async deploy(ctx: RunContext, stage: Extract<Stage, { type: 'deploy' }>, st: StageState, log: (line: string) => void): Promise<Outcome> {
    const functions = this.deps.functions;
    if (!functions) throw new StageFailed('functions are turned off on this server');
    const started = Date.now();
    const delivered = ctx.state.stages.flatMap((s) => s.delivered ?? []);
    st.deployed = [];
    const problems: string[] = [];
    const targets = stage.functions.map((f) => {
      let image: string;
      if (f.image) image = this.sub(ctx, f.image, `stages.${st.name}.functions.${f.name}.image`);
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
        for (const [key, value] of Object.entries(target.spec.env ?? {})) env[key] = this.sub(ctx, value, `stages.${st.name}.functions.${name}.env.${key}`);
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

  private async triggerStage(ctx: RunContext, stage: Extract<Stage, { type: 'trigger' }>, st: StageState, log: (line: string) => void): Promise<Outcome> {
    const service = this.deps.service;
    const target = await service.get(ctx.namespace, stage.pipeline).catch(() => { throw new StageFailed(`no pipeline "${stage.pipeline}" in "${ctx.namespace}"`); });
    const declared = new Set(target.spec.parameters.map((p) => p.name));
    const parameters: Record<string, string> = {};
    if (stage.passAllParameters) for (const [k, v] of Object.entries({ ...ctx.parameters, ...ctx.state.exported })) if (declared.has(k)) parameters[k] = v;
    for (const [k, v] of Object.entries(stage.parameters)) parameters[k] = this.sub(ctx, v, `stages.${st.name}.parameters.${k}`);
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

  private async waitStage(ctx: RunContext, stage: Extract<Stage, { type: 'wait' }>, st: StageState, log: (line: string) => void): Promise<Outcome> {
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
    await this.continueAt(ctx.runId, Date.parse(st.until));
    return 'suspend';
  }

  private async approval(ctx: RunContext, stage: Extract<Stage, { type: 'approval' }>, st: StageState, log: (line: string) => void): Promise<Outcome> {
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
    await this.continueAt(ctx.runId, Date.parse(st.until) + 1000);
    return 'suspend';
  }

  /** A job that continues the run at `when` (a wait that is over, an approval that timed out). */
  private async continueAt(runId: string, when: number): Promise<void> {
    await this.deps.queue.enqueue('pipeline-runs', { runId }, { id: `${runId}-${randomBytes(4).toString('hex')}`, runAfter: when, timeoutMs: 0, maxAttempts: 3 });
  }

  private async existsHere(repository: string, reference: string): Promise<boolean> {
    try {
      await this.deps.registry.manifests.info(repository, reference);
      return true;
    } catch {
      return false;
    }
  }
}

function findStage(spec: PipelineInput, name: string): Stage {
  for (const entry of spec.stages) {
    if ('parallel' in entry) {
      const found = entry.parallel.find((s) => s.name === name);
      if (found) return found;
    } else if ((entry as Stage).name === name) return entry as Stage;
  }
  throw new Error(`stage ${name} is not in the pipeline`);
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

function describeTrigger(trigger: TriggerInfo): string {
  switch (trigger.type) {
    case 'webhook': return `${trigger.provider ?? 'git'} webhook ${trigger.deliveryId ?? ''}${trigger.by ? ` by ${trigger.by}` : ''}`.trim();
    case 'registry': return `push of ${trigger.repository}:${trigger.tag}`;
    case 'pipeline': return `pipeline ${trigger.pipeline} run ${trigger.run}`;
    case 'rerun': return `re-run of run ${trigger.run}${trigger.by ? ` by ${trigger.by}` : ''}`;
    default: return `${trigger.type}${trigger.by ? ` by ${trigger.by}` : ''}`;
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
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
