/**
 * @module pipelines/runner
 * Advances a run stage by stage; one call is one durable job of the `pipeline-runs` queue.
 * A run that must wait (an approval, a long `wait` stage) ends its job and is continued by a
 * later one (the decision, or a job scheduled for when the wait is over), so no worker is held.
 * A server stop leaves the running stage `running`: the job goes back to the queue and the
 * stage runs again from its start on the next server (its workspace is re-cloned at the same
 * commit when it is gone).
 *
 * This module is the run's state machine (groups in order, parallel stages within one,
 * suspend, finish, cleanup); each stage kind is a module of its own: ./stage-build.ts,
 * ./stage-deliver.ts, ./stage-deploy.ts, ./stage-flow.ts (trigger, wait, approval), sharing
 * ./stage-context.ts.
 *
 * Files: `<workDir>/runs/<runId>/workspace/<source>` (the clones) and `…/outputs/<stage>/<name>`
 * (BINARY outputs). A succeeded or cancelled run's folder and local images are removed at once;
 * a failed run's are kept for `keepFailed` so it can be re-run from the failed stage.
 */
import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AccessService } from '../auth/access.js';
import type { Config } from '../config/config.js';
import type { ExternalRegistries } from '../credentials/service.js';
import type { Database } from '../db/db.js';
import type { JobQueueApi } from '../db/job-queue.js';
import type { FunctionService } from '../functions/service.js';
import type { ContentReader } from '../registry/content-reader.js';
import type { ManifestService } from '../registry/manifest-service.js';
import type { UploadService } from '../registry/upload-service.js';
import type { NamespaceSecrets } from '../vault/secrets.js';
import type { LogStore } from '../logs/log-store.js';
import { type RegistryAuth, BuildSpecError } from '../builds/index.js';
import { finalRunStatuses, runView, type RunState, type RunStatus, type StageState, type TriggerInfo } from './runs.js';
import type { PipelineInput } from './spec.js';
import type { PipelineService } from './service.js';
import type { GitCredentials } from '../git/remote.js';
import type { StageExecutor } from './executor.js';
import { findStage, StageFailed, type Outcome, type RunContext, type StageTools } from './stage-context.js';
import { buildStage, sourceCredentials } from './stage-build.js';
import { deliverStage } from './stage-deliver.js';
import { deployStage } from './stage-deploy.js';
import { approvalStage, triggerStage, waitStage } from './stage-flow.js';

/** What the runner needs of the build-stage executor. */
export type BuildStageExecutor = Pick<StageExecutor, 'runStage' | 'pushImage' | 'removeRunImages'>;

export interface PipelineRunnerDeps {
  db: Database;
  service: PipelineService;
  queue: Pick<JobQueueApi, 'enqueue'>;
  executor: BuildStageExecutor;
  stepPaths(kind: 'shell' | 'container', workspaceDir: string, primarySourceName: string): { workspace: string; primarySource: string };
  logs: LogStore;
  workDir: string;
  config: Config['pipelines'];
  registryHost: () => string;
  insecureRegistries: string[];
  /** `reads`: the registry's read path with pull-through, so `FROM <proxy ns>/…` fetches on first use. */
  registry: { uploads: UploadService; manifests: ManifestService; reads?: Pick<ContentReader, 'manifest'> };
  access?: AccessService;
  secrets?: NamespaceSecrets;
  registries?: ExternalRegistries;
  functions?: FunctionService;
  /** Records an artefact version for each delivery. */
  recordArtefact?: (namespace: string, input: { type: 'container'; name: string; version: string; digest: string; commit?: string; ref?: string }, actor: string | null) => Promise<unknown>;
  logger?: Logger;
  observer?: PipelineObserver;
}

/** Optional metrics callbacks (wired in main.ts). */
export interface PipelineObserver {
  /** A run's first stage starts, `waitSeconds` after its trigger. */
  runStarted?(waitSeconds: number): void;
  runFinished?(outcome: RunStatus): void;
  /** A stage ended (a waiting stage ends when it is resumed). */
  stageFinished?(type: string, outcome: string, seconds: number): void;
}

export class PipelineRunner {
  /** `repository:tag` pushes a run makes right now (the registry hook leaves their artefact versions to the run). */
  private readonly pushing = new Set<string>();
  private readonly keys = new Map<string, { id: string }>();
  /** Runs advancing in this process: a cancel reaches them at once, not at the job's next heartbeat. */
  private readonly running = new Map<string, AbortController>();

  /** What the stage kinds get of the runner. */
  private readonly tools: StageTools;

  constructor(private readonly deps: PipelineRunnerDeps) {
    this.tools = {
      deps,
      pushing: this.pushing,
      pushAuth: (ctx) => this.pushAuth(ctx),
      existsHere: (repository, reference) => this.existsHere(repository, reference),
      continueAt: (runId, when) => this.continueAt(runId, when),
    };
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
    if (firstStart) {
      state.phases.queue = now - (ctx.trigger.receivedAt ?? row.created_at);
      this.deps.observer?.runStarted?.(Math.max(0, state.phases.queue) / 1000);
    }
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
    this.deps.observer?.runFinished?.(status);
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
    if (st.status === 'running') await this.publishStage(ctx, 'started', st);
    const log = (line: string) => ctx.log(`[${st.name}] ${line}`);
    if (resumed) log('stage runs again from its start (the server stopped while it ran)');
    const started = Date.parse(st.startedAt ?? new Date().toISOString());
    try {
      let outcome: Outcome;
      switch (stage.type) {
        case 'build': outcome = await buildStage(this.tools, ctx, stage, st, log); break;
        case 'deliver': outcome = await deliverStage(this.tools, ctx, stage, st, log); break;
        case 'deploy': outcome = await deployStage(this.tools, ctx, stage, st, log); break;
        case 'trigger': outcome = await triggerStage(this.tools, ctx, stage, st, log); break;
        case 'wait': outcome = await waitStage(this.tools, ctx, stage, st, log); break;
        case 'approval': outcome = await approvalStage(this.tools, ctx, stage, st, log); break;
      }
      if (outcome === 'suspend') {
        st.status = 'waiting';
      } else {
        Object.assign(st, { status: outcome, finishedAt: new Date().toISOString(), durationMs: Date.now() - started });
        log(`stage ${outcome} in ${Date.now() - started} ms`);
        this.deps.observer?.stageFinished?.(stage.type, outcome, (Date.now() - started) / 1000);
      }
      await ctx.save();
      await this.publishStage(ctx, outcome === 'suspend' ? 'waiting' : outcome, st);
      return outcome;
    } catch (error) {
      if (error instanceof StageFailed || error instanceof BuildSpecError) {
        Object.assign(st, { status: 'failed', message: error.message, finishedAt: new Date().toISOString(), durationMs: Date.now() - started });
        log(`stage failed: ${error.message}`);
        this.deps.observer?.stageFinished?.(stage.type, 'failed', (Date.now() - started) / 1000);
        if (error instanceof BuildSpecError) for (const issue of error.issues) log(`  ${issue.path}${issue.line ? ` (line ${issue.line})` : ''}: ${issue.message}`);
        await ctx.save();
        await this.publishStage(ctx, 'failed', st);
        return 'failed';
      }
      throw error;
    }
  }

  private publishStage(ctx: RunContext, kind: 'started' | 'waiting' | 'succeeded' | 'failed', st: StageState): Promise<void> {
    return this.deps.service.publishStage(ctx.namespace, kind, { id: ctx.runId, pipeline: ctx.pipelineName, number: ctx.number }, st);
  }

  /** Git credentials of a source (its password from the namespace's secrets). */
  sourceCredentials(namespace: string, source: PipelineInput['sources'][number]): Promise<GitCredentials | undefined> {
    return sourceCredentials(this.deps, namespace, source);
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

  /** A job that continues the run at `when` (a wait that is over, an approval that timed out). */
  private async continueAt(runId: string, when: number): Promise<void> {
    await this.deps.queue.enqueue('pipeline-runs', { runId }, { id: `${runId}-${randomBytes(4).toString('hex')}`, runAfter: when, timeoutMs: 0, maxAttempts: 3 });
  }

  private async existsHere(repository: string, reference: string): Promise<boolean> {
    try {
      const { reads, manifests } = this.deps.registry;
      if (reads) await reads.manifest(repository, reference);
      else await manifests.info(repository, reference);
      return true;
    } catch {
      return false;
    }
  }
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
