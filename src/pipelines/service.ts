/**
 * @module pipelines/service
 * Pipelines as a resource and the ways a run starts: manual (API/CLI), a signed push webhook,
 * a polled mirror, a push to Slipway's registry, another pipeline, an automation rule. Runs
 * are durable jobs (`pipeline-runs` queue) that the runner advances stage by stage.
 *
 * Concurrency: a commit never runs the same pipeline twice at once (a second trigger gets the
 * run already under way); a newer commit of the same ref cancels queued runs of older ones
 * (`concurrency.cancelQueued`, and running ones with `cancelRunning`).
 */
import { randomBytes } from 'node:crypto';
import type { PipelineTable } from '../db/schema.js';
import type { LogFollower } from '../logs/log-store.js';
import {
  activeRunStatuses, finalRunStatuses, runView, type RunState, type RunStatus, type RunView, type StageState,
} from './runs.js';
import { flattenStages, primarySource, resolveParameters, type PipelineInput } from './spec.js';
import { parsePipelineInput, type PipelineWarning } from './definition-parse.js';
import { matchesPaths } from './path-filter.js';
import { verifyAndParse, WebhookError } from './webhooks.js';
import type { GitCredentials } from '../git/remote.js';
import { sourceCredentials } from './source-credentials.js';
import picomatch from 'picomatch';
import type { z } from 'zod';
import type { stageEventData } from './api.js';
import { PipelineInputError, PipelineNotFoundError, PipelineConflictError } from './errors.js';
import type { PipelineServiceDeps, PipelineView, TriggerRequest } from './service-types.js';
import { filterAndStart, type WebhookOutcome } from './webhook-intake.js';

export { PipelineInputError, PipelineNotFoundError, PipelineConflictError } from './errors.js';
export type { PipelineServiceDeps, PipelineView, TriggerRequest } from './service-types.js';
export type { WebhookOutcome } from './webhook-intake.js';
export { primarySource } from './spec.js';

const iso = (ms: number) => new Date(ms).toISOString();

export class PipelineService {
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly cancelListeners = new Set<(runId: string, message: string) => void>();

  constructor(private readonly deps: PipelineServiceDeps) {}

  private get db() {
    return this.deps.db;
  }

  /** Tells `listener` when a running run was cancelled (the runner aborts it if it advances here). */
  onRunCancelled(listener: (runId: string, message: string) => void): () => void {
    this.cancelListeners.add(listener);
    return () => this.cancelListeners.delete(listener);
  }

  private sourceCredentials(namespace: string, source: PipelineInput['sources'][number]): Promise<GitCredentials | undefined> {
    return sourceCredentials(this.deps.secrets, namespace, source);
  }

  // ---- the resource ---------------------------------------------------------------------

  /** The definition and the unknown keys left out of it (refused with `strict: true`). */
  parse(input: unknown): { spec: PipelineInput; warnings: PipelineWarning[] } {
    const parsed = parsePipelineInput(input);
    if (!parsed.ok) throw new PipelineInputError(parsed.errors.join('; '));
    return { spec: parsed.spec, warnings: parsed.warnings };
  }

  /** Creates a pipeline; the webhook secret is generated and returned this once. */
  async create(namespace: string, input: unknown, actor: string | null): Promise<{ pipeline: PipelineView; webhookSecret: string; warnings: PipelineWarning[] }> {
    const { spec, warnings } = this.parse(input);
    const id = `pl_${randomBytes(8).toString('hex')}`;
    const secret = `whsec_${randomBytes(24).toString('base64url')}`;
    const sealed = await this.deps.vault.seal(secret, `pipeline-webhook:${id}`);
    const now = Date.now();
    try {
      await this.db.write((trx) => trx.insertInto('pipelines').values({
        id, namespace, name: spec.name, spec: JSON.stringify(spec), webhook_secret: sealed, created_by: actor, created_at: now, updated_at: now,
      }).execute());
    } catch (error) {
      if (await this.find(namespace, spec.name).catch(() => null)) throw new PipelineConflictError(`pipeline "${spec.name}" already exists in "${namespace}"`);
      throw error;
    }
    return { pipeline: await this.get(namespace, spec.name), webhookSecret: secret, warnings };
  }

  /** Replaces the definition (runs under way keep the one they started with). */
  async replace(namespace: string, name: string, input: unknown): Promise<PipelineView & { warnings: PipelineWarning[] }> {
    const row = await this.find(namespace, name);
    const { spec, warnings } = this.parse(input);
    if (spec.name !== name) throw new PipelineInputError(`name: a pipeline cannot be renamed (${name} → ${spec.name})`);
    await this.db.write((trx) => trx.updateTable('pipelines').set({ spec: JSON.stringify(spec), updated_at: Date.now() }).where('id', '=', row.id).execute());
    return { ...(await this.get(namespace, name)), warnings };
  }

  async rotateWebhookSecret(namespace: string, name: string): Promise<string> {
    const row = await this.find(namespace, name);
    const secret = `whsec_${randomBytes(24).toString('base64url')}`;
    const sealed = await this.deps.vault.seal(secret, `pipeline-webhook:${row.id}`);
    await this.db.write((trx) => trx.updateTable('pipelines').set({ webhook_secret: sealed, updated_at: Date.now() }).where('id', '=', row.id).execute());
    return secret;
  }

  async remove(namespace: string, name: string): Promise<void> {
    const row = await this.find(namespace, name);
    const active = await this.db.kysely.selectFrom('pipeline_runs').select(['number']).where('pipeline_id', '=', row.id).where('status', 'in', activeRunStatuses).execute();
    for (const run of active) await this.cancel(namespace, name, run.number, 'pipeline deleted').catch(() => undefined);
    await this.db.write(async (trx) => {
      await trx.deleteFrom('pipeline_deliveries').where('pipeline_id', '=', row.id).execute();
      await trx.deleteFrom('pipeline_mirrors').where('pipeline_id', '=', row.id).execute();
      await trx.deleteFrom('pipeline_runs').where('pipeline_id', '=', row.id).execute();
      await trx.deleteFrom('pipelines').where('id', '=', row.id).execute();
    });
  }

  async list(namespace: string): Promise<PipelineView[]> {
    const rows = await this.db.kysely.selectFrom('pipelines').selectAll().where('namespace', '=', namespace).orderBy('name').execute();
    return Promise.all(rows.map((row) => this.view(row)));
  }

  async get(namespace: string, name: string): Promise<PipelineView> {
    return this.view(await this.find(namespace, name));
  }

  async find(namespace: string, name: string): Promise<PipelineTable> {
    const row = await this.db.kysely.selectFrom('pipelines').selectAll().where('namespace', '=', namespace).where('name', '=', name).executeTakeFirst();
    if (!row) throw new PipelineNotFoundError(`no pipeline "${name}" in "${namespace}"`);
    return row;
  }

  /** Every pipeline (of one namespace when given), parsed: for the triggers.*/
  async all(namespace?: string): Promise<Array<PipelineTable & { parsed: PipelineInput }>> {
    let query = this.db.kysely.selectFrom('pipelines').selectAll();
    if (namespace !== undefined) query = query.where('namespace', '=', namespace);
    const rows = await query.execute();
    return rows.map((row) => ({ ...row, parsed: JSON.parse(row.spec) as PipelineInput }));
  }

  private async view(row: PipelineTable): Promise<PipelineView> {
    const last = await this.db.kysely.selectFrom('pipeline_runs').select(['number', 'status', 'created_at'])
      .where('pipeline_id', '=', row.id).orderBy('number', 'desc').limit(1).executeTakeFirst();
    return {
      id: row.id, namespace: row.namespace, name: row.name, spec: JSON.parse(row.spec) as PipelineInput,
      webhook: { path: `/api/v1/namespaces/${row.namespace}/pipelines/${row.name}/webhook`, secretSet: row.webhook_secret !== null },
      lastRun: last ? { number: last.number, status: last.status as RunStatus, createdAt: iso(last.created_at) } : null,
      createdBy: row.created_by, createdAt: iso(row.created_at), updatedAt: iso(row.updated_at),
    };
  }

  // ---- starting runs ----------------------------------------------------------------------

  /**
   * Starts a run (or returns the active run of the same commit). Parameters are checked here:
   * a bad override is a PipelineInputError before anything is queued.
   */
  async trigger(namespace: string, name: string, request: TriggerRequest): Promise<{ run: RunView; duplicate: boolean }> {
    const row = await this.find(namespace, name);
    const spec = JSON.parse(row.spec) as PipelineInput;
    let parameters: Record<string, string>;
    try {
      parameters = resolveParameters(spec.parameters, request.parameters ?? {});
    } catch (error) {
      throw new PipelineInputError((error as Error).message);
    }
    const primary = primarySource(spec);
    const ref = request.ref ?? (primary ? `refs/heads/${request.branch ?? primary.branch}` : null);
    const commit = request.commit ?? null;
    const now = Date.now();
    const id = `run_${randomBytes(9).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x')}`;
    const state: RunState = request.rerun?.state ?? {
      spec,
      stages: flattenStages(spec.stages).map(({ stage, group }): StageState => ({ name: stage.name, type: stage.type, group, status: 'pending' })),
      exported: {}, sources: {}, phases: {},
    };
    const cancelled: number[] = [];
    const result = await this.db.write(async (trx) => {
      if (commit && !request.rerun) {
        const same = await trx.selectFrom('pipeline_runs').selectAll().where('pipeline_id', '=', row.id).where('commit_sha', '=', commit)
          .where('status', 'in', activeRunStatuses).orderBy('number', 'desc').limit(1).executeTakeFirst();
        if (same) return { row: same, duplicate: true };
      }
      if (ref && (spec.concurrency.cancelQueued || spec.concurrency.cancelRunning)) {
        const statuses = spec.concurrency.cancelRunning ? activeRunStatuses : ['queued'];
        const older = await trx.selectFrom('pipeline_runs').select(['number']).where('pipeline_id', '=', row.id).where('ref', '=', ref)
          .where('status', 'in', statuses).execute();
        cancelled.push(...older.map((o) => o.number));
      }
      const last = await trx.selectFrom('pipeline_runs').select('number').where('pipeline_id', '=', row.id).orderBy('number', 'desc').limit(1).executeTakeFirst();
      const values = {
        id, pipeline_id: row.id, namespace, number: (last?.number ?? 0) + 1, status: 'queued', trigger: JSON.stringify(request.trigger),
        commit_sha: commit, ref, parameters: JSON.stringify(parameters), state: JSON.stringify(state), error: null,
        rerun_of: request.rerun?.of ?? null, created_at: now, started_at: null, finished_at: null,
      };
      await trx.insertInto('pipeline_runs').values(values).execute();
      await this.deps.queue.enqueue('pipeline-runs', { runId: id }, { id: `${id}-0`, timeoutMs: 0, maxAttempts: 3, trx });
      return { row: values, duplicate: false };
    });
    const run = runView(result.row, name);
    if (!result.duplicate) {
      for (const number of cancelled) await this.cancel(namespace, name, number, `superseded by run ${run.number} (${commit ?? 'newer'})`).catch(() => undefined);
      await this.publish(namespace, 'run.queued', run);
    }
    return { run, duplicate: result.duplicate };
  }

  /** A push webhook: verified, deduplicated by delivery id, filtered by branch/tag and paths. */
  async receiveWebhook(namespace: string, name: string, headers: Record<string, string | string[] | undefined>, rawBody: Buffer): Promise<WebhookOutcome> {
    const row = await this.find(namespace, name);
    if (!row.webhook_secret) throw new WebhookError('NO_SECRET', 'this pipeline has no webhook secret');
    const secret = await this.deps.vault.open(row.webhook_secret, `pipeline-webhook:${row.id}`);
    const event = verifyAndParse({ headers, rawBody, secret });
    if (event.kind === 'ping') return { status: 'pong' };
    const spec = JSON.parse(row.spec) as PipelineInput;
    const fresh = await this.db.write(async (trx) => {
      const seen = await trx.selectFrom('pipeline_deliveries').select('outcome').where('pipeline_id', '=', row.id)
        .where('provider', '=', event.provider).where('delivery_id', '=', event.deliveryId).executeTakeFirst();
      if (seen) return false;
      await trx.insertInto('pipeline_deliveries').values({ provider: event.provider, delivery_id: event.deliveryId, pipeline_id: row.id, received_at: Date.now(), outcome: 'received' }).execute();
      return true;
    });
    if (!fresh) return { status: 'duplicate', reason: `delivery ${event.deliveryId} was already received` };
    const outcome = await filterAndStart({
      cacheDir: this.deps.cacheDir,
      sourceCredentials: (ns, source) => this.sourceCredentials(ns, source),
      trigger: (ns, n, request) => this.trigger(ns, n, request),
    }, namespace, name, spec, event);
    await this.db.write((trx) => trx.updateTable('pipeline_deliveries').set({ outcome: outcome.status === 'started' ? `run ${outcome.run!.number}` : `${outcome.status}: ${outcome.reason ?? ''}`.slice(0, 500) })
      .where('pipeline_id', '=', row.id).where('provider', '=', event.provider).where('delivery_id', '=', event.deliveryId).execute());
    return outcome;
  }

  /** A push to Slipway's registry: runs every pipeline whose registry trigger matches. */
  async onTagPushed(event: { repository: string; tag: string; digest: string }): Promise<void> {
    const namespace = event.repository.split('/')[0]!;
    for (const pipeline of await this.all(namespace)) {
      const match = (pipeline.parsed.triggers.registry ?? []).some((t) => picomatch.isMatch(event.repository, t.repository) && picomatch.isMatch(event.tag, t.tag));
      if (!match) continue;
      await this.trigger(pipeline.namespace, pipeline.name, {
        trigger: { type: 'registry', repository: event.repository, tag: event.tag, digest: event.digest, receivedAt: Date.now() },
      }).catch((error) => this.deps.logger?.warn({ err: error, pipeline: pipeline.name }, 'registry trigger failed'));
    }
  }

  /** A new commit found by the mirror poller. */
  async onMirrorCommit(pipelineId: string, change: { branch: string; before: string | null; after: string; changedFiles: string[] | null }): Promise<void> {
    const row = await this.db.kysely.selectFrom('pipelines').selectAll().where('id', '=', pipelineId).executeTakeFirst();
    if (!row) return;
    const spec = JSON.parse(row.spec) as PipelineInput;
    const paths = spec.triggers.webhook?.paths;
    if (paths && change.changedFiles !== null && !matchesPaths(paths, change.changedFiles)) return;
    await this.trigger(row.namespace, row.name, {
      commit: change.after, ref: `refs/heads/${change.branch}`, branch: change.branch,
      trigger: { type: 'mirror', by: 'mirror', receivedAt: Date.now() },
    });
  }

  /** Pipelines with a mirror trigger, for the poller. */
  async mirrors(defaultIntervalMs: number, parseDuration: (text: string) => number | null): Promise<Array<{ pipelineId: string; url: string; branches: string[]; intervalMs: number; credentials: () => Promise<GitCredentials | undefined> }>> {
    const out = [];
    for (const pipeline of await this.all()) {
      const mirror = pipeline.parsed.triggers.mirror;
      const primary = primarySource(pipeline.parsed);
      if (!mirror || !primary) continue;
      out.push({
        pipelineId: pipeline.id, url: primary.url, branches: mirror.branches ?? [primary.branch],
        intervalMs: mirror.interval ? parseDuration(mirror.interval) ?? defaultIntervalMs : defaultIntervalMs,
        credentials: () => this.sourceCredentials(pipeline.namespace, primary),
      });
    }
    return out;
  }

  /** The push webhooks received for a pipeline, newest first, with what became of each. */
  async webhookDeliveries(namespace: string, name: string, limit = 50): Promise<Array<{ provider: string; deliveryId: string; receivedAt: string; outcome: string }>> {
    const row = await this.find(namespace, name);
    const rows = await this.db.kysely.selectFrom('pipeline_deliveries').selectAll().where('pipeline_id', '=', row.id)
      .orderBy('received_at', 'desc').limit(Math.min(Math.max(limit, 1), 500)).execute();
    return rows.map((r) => ({ provider: r.provider, deliveryId: r.delivery_id, receivedAt: iso(r.received_at), outcome: r.outcome }));
  }

  // ---- runs -------------------------------------------------------------------------------

  async runs(namespace: string, name: string, options: { limit?: number; status?: string } = {}): Promise<RunView[]> {
    const row = await this.find(namespace, name);
    let query = this.db.kysely.selectFrom('pipeline_runs').selectAll().where('pipeline_id', '=', row.id);
    if (options.status) query = query.where('status', '=', options.status);
    const rows = await query.orderBy('number', 'desc').limit(Math.min(options.limit ?? 20, 200)).execute();
    return rows.map((r) => runView(r, name));
  }

  async run(namespace: string, name: string, number: number): Promise<RunView> {
    const pipeline = await this.find(namespace, name);
    const row = await this.db.kysely.selectFrom('pipeline_runs').selectAll().where('pipeline_id', '=', pipeline.id).where('number', '=', number).executeTakeFirst();
    if (!row) throw new PipelineNotFoundError(`pipeline "${name}" has no run ${number}`);
    return runView(row, name);
  }

  async cancel(namespace: string, name: string, number: number, actor: string | null): Promise<RunView> {
    const run = await this.run(namespace, name, number);
    if (finalRunStatuses.has(run.status)) return run;
    const message = `cancelled${actor ? ` (${actor})` : ''}`;
    // Queued or waiting runs hold no worker: they end here. A running one is told through its job.
    const ended = await this.db.write(async (trx) => {
      const fresh = await trx.selectFrom('pipeline_runs').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow();
      if (fresh.status === 'running') {
        await trx.updateTable('pipeline_runs').set({ error: message }).where('id', '=', run.id).execute();
        return false;
      }
      if (finalRunStatuses.has(fresh.status as RunStatus)) return false;
      const state = JSON.parse(fresh.state) as RunState;
      for (const stage of state.stages) if (!['succeeded', 'failed', 'skipped'].includes(stage.status)) stage.status = 'cancelled';
      await trx.updateTable('pipeline_runs').set({ status: 'cancelled', error: message, state: JSON.stringify(state), finished_at: Date.now() }).where('id', '=', run.id).execute();
      return true;
    });
    for (const job of await this.openJobs(run.id)) await this.deps.queue.cancel(job.id);
    // Here: at once. On another replica: at its job's next heartbeat.
    if (!ended) for (const listener of this.cancelListeners) listener(run.id, message);
    const view = await this.run(namespace, name, number);
    if (ended) {
      const write = await this.deps.logs.start(run.id);
      write(`${new Date().toISOString().slice(11, 23)} run ${message}`);
      await this.deps.logs.finish(run.id);
      this.notify(run.id);
      await this.publish(namespace, 'run.cancelled', view);
    }
    return view;
  }

  /** A new run of the same commit and parameters; `fromStage` (default the first failed one) and later run again, earlier ones are taken over. */
  async rerun(namespace: string, name: string, number: number, options: { fromStage?: string }, actor: string | null): Promise<RunView> {
    const run = await this.run(namespace, name, number);
    if (!finalRunStatuses.has(run.status)) throw new PipelineConflictError(`run ${number} is still ${run.status}`);
    const row = await this.db.kysely.selectFrom('pipeline_runs').select('state').where('id', '=', run.id).executeTakeFirstOrThrow();
    const old = JSON.parse(row.state) as RunState;
    let from = 0;
    if (options.fromStage) {
      const found = old.stages.find((s) => s.name === options.fromStage);
      if (!found) throw new PipelineInputError(`run ${number} has no stage "${options.fromStage}"`);
      from = found.group;
    } else {
      const failed = old.stages.find((s) => s.status === 'failed' || s.status === 'cancelled');
      from = failed ? failed.group : 0;
    }
    const state: RunState = {
      spec: old.spec, sources: from > 0 ? old.sources : {}, phases: {},
      exported: {},
      stages: old.stages.map((s) => (s.group < from && s.status === 'succeeded'
        ? { ...s, reused: true }
        : { name: s.name, type: s.type, group: s.group, status: 'pending' })),
    };
    for (const stage of state.stages) if (stage.reused) Object.assign(state.exported, stage.exported ?? {});
    const { run: started } = await this.trigger(namespace, name, {
      parameters: run.parameters, commit: run.commit ?? undefined, ref: run.ref ?? undefined,
      trigger: { type: 'rerun', by: actor, run: number, receivedAt: Date.now() }, rerun: { of: run.id, state },
    });
    return started;
  }

  /** Decides a waiting approval stage; the run goes on (or fails) in the background. */
  async decide(namespace: string, name: string, number: number, stageName: string, decision: 'approved' | 'rejected', actor: string | null, comment?: string): Promise<RunView> {
    const run = await this.run(namespace, name, number);
    const decided = await this.db.write(async (trx) => {
      const fresh = await trx.selectFrom('pipeline_runs').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow();
      const state = JSON.parse(fresh.state) as RunState;
      const stage = state.stages.find((s) => s.name === stageName);
      if (!stage) throw new PipelineNotFoundError(`run ${number} has no stage "${stageName}"`);
      if (stage.type !== 'approval') throw new PipelineInputError(`stage "${stageName}" is a ${stage.type} stage, not an approval`);
      if (stage.status !== 'waiting' || fresh.status !== 'waiting') throw new PipelineConflictError(`stage "${stageName}" is ${stage.status}, not waiting for a decision`);
      stage.approval = { decision, by: actor, comment, at: new Date().toISOString() };
      await trx.updateTable('pipeline_runs').set({ state: JSON.stringify(state), status: 'queued' }).where('id', '=', run.id).execute();
      await this.deps.queue.enqueue('pipeline-runs', { runId: run.id }, { id: `${run.id}-${randomBytes(4).toString('hex')}`, timeoutMs: 0, maxAttempts: 3, trx });
      return stage;
    });
    await this.publishStage(namespace, decision, run, decided);
    return this.run(namespace, name, number);
  }

  /** Resolves when the run ends (or `signal` aborts). */
  async waitForRun(namespace: string, name: string, number: number, signal?: AbortSignal): Promise<RunView> {
    for (;;) {
      const run = await this.run(namespace, name, number);
      if (finalRunStatuses.has(run.status) || signal?.aborted) return run;
      await new Promise<void>((resolve) => {
        const set = this.waiters.get(run.id) ?? new Set();
        this.waiters.set(run.id, set);
        const done = () => {
          clearTimeout(timer);
          set.delete(done);
          if (set.size === 0) this.waiters.delete(run.id);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, 1000);
        set.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  notify(runId: string): void {
    for (const wake of this.waiters.get(runId) ?? []) wake();
  }

  logText(runId: string): Promise<string> {
    return this.deps.logs.read(runId);
  }

  isLogLive(runId: string): boolean {
    return this.deps.logs.isLive(runId);
  }

  followLog(runId: string, follower: LogFollower): Promise<() => void> {
    return this.deps.logs.follow(runId, follower);
  }

  async publish(namespace: string, type: string, run: RunView): Promise<void> {
    if (!this.deps.publish) return;
    await this.deps.publish(namespace, type, { run: { id: run.id, pipeline: run.pipeline, number: run.number, status: run.status, commit: run.commit, ref: run.ref, trigger: run.trigger, error: run.error, artifacts: run.artifacts, stages: run.stages.map((s) => ({ name: s.name, type: s.type, status: s.status, message: s.message })) } }, `${run.pipeline}#${run.number}`)
      .catch((error) => this.deps.logger?.warn({ err: error }, 'publishing a run event failed'));
  }

  /** A `stage.<kind>` event (pipelines/api.ts `stageEventData`): one stage of a run changed. */
  async publishStage(namespace: string, kind: 'started' | 'waiting' | 'succeeded' | 'failed' | 'approved' | 'rejected', run: { id: string; pipeline: string; number: number }, stage: StageState): Promise<void> {
    if (!this.deps.publish) return;
    const data: z.input<typeof stageEventData> = {
      run: { id: run.id, pipeline: run.pipeline, number: run.number },
      stage: { name: stage.name, type: stage.type, group: stage.group, status: stage.status, startedAt: stage.startedAt, finishedAt: stage.finishedAt, durationMs: stage.durationMs, message: stage.message, approval: stage.approval },
    };
    await this.deps.publish(namespace, `stage.${kind}`, data, `${run.pipeline}#${run.number}`)
      .catch((error) => this.deps.logger?.warn({ err: error }, 'publishing a stage event failed'));
  }

  /** The run's jobs still queued or running. */
  private openJobs(runId: string, limit?: number) {
    return this.deps.queue.list('pipeline-runs', { idPrefix: `${runId}-`, status: ['queued', 'running'], limit });
  }

  /** Runs left queued/running by a crash whose job is gone or ended get failed (never stuck). */
  async reconcile(): Promise<number> {
    const open = await this.db.kysely.selectFrom('pipeline_runs').select(['id', 'namespace', 'pipeline_id', 'number', 'status']).where('status', 'in', ['queued', 'running']).execute();
    let failed = 0;
    for (const run of open) {
      if ((await this.openJobs(run.id, 1)).length > 0) continue;
      failed++;
      await this.db.write(async (trx) => {
        const fresh = await trx.selectFrom('pipeline_runs').selectAll().where('id', '=', run.id).executeTakeFirstOrThrow();
        const state = JSON.parse(fresh.state) as RunState;
        for (const stage of state.stages) if (stage.status === 'running') Object.assign(stage, { status: 'failed', message: 'interrupted by a server stop' });
        await trx.updateTable('pipeline_runs').set({ status: 'failed', error: 'interrupted by a server stop and could not be resumed', state: JSON.stringify(state), finished_at: Date.now() })
          .where('id', '=', run.id).execute();
      });
    }
    return failed;
  }
}
