/**
 * @module functions/revisions
 * A function's revisions: listing them, rolling back to one, waiting for the latest to settle,
 * and a new revision of the same settings at a new image digest (a tag pushed again).
 */
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { FunctionTable } from '../db/schema.js';
import type { Deployer } from './deployer.js';
import { FunctionInputError, FunctionNotFoundError } from './errors.js';
import type { LiveFunctions } from './live.js';
import { findFunction, functionView, revisionRow, revisionView } from './records.js';
import type { FunctionView, RevisionView, StoredConfig } from './spec.js';

export interface RevisionsDeps {
  db: Database;
  live: LiveFunctions;
  deployer: Deployer;
  logger?: Pick<Logger, 'info'>;
}

export class Revisions {
  constructor(private readonly deps: RevisionsDeps) {}

  private get db() { return this.deps.db; }

  async list(namespace: string, name: string): Promise<RevisionView[]> {
    const row = await findFunction(this.db, namespace, name);
    const revisions = await this.db.kysely.selectFrom('function_revisions').selectAll().where('function_id', '=', row.id).orderBy('number', 'desc').execute();
    return revisions.map((r) => revisionView(r, row.active_revision));
  }

  /** Revisions of the namespace's functions that run the image `digest` (newest first): what an artefact became. */
  async withDigest(namespace: string, digest: string, limit = 100): Promise<Array<RevisionView & { function: string }>> {
    const rows = await this.db.kysely.selectFrom('function_revisions').innerJoin('functions', 'functions.id', 'function_revisions.function_id')
      .selectAll('function_revisions').select(['functions.name as function_name', 'functions.active_revision'])
      .where('functions.namespace', '=', namespace).where('function_revisions.image_digest', '=', digest)
      .orderBy('function_revisions.created_at', 'desc').limit(limit).execute();
    return rows.map(({ function_name, active_revision, ...r }) => ({ function: function_name, ...revisionView(r, active_revision) }));
  }

  /** Makes an earlier (or any) revision the active one again, after its start checks pass. */
  async rollback(namespace: string, name: string, number: number, wait: boolean): Promise<FunctionView> {
    const row = await findFunction(this.db, namespace, name);
    const revision = await this.db.kysely.selectFrom('function_revisions').selectAll().where('function_id', '=', row.id).where('number', '=', number).executeTakeFirst();
    if (!revision) throw new FunctionNotFoundError(`function "${name}" has no revision ${number}`);
    if (!revision.image_digest) throw new FunctionInputError(`revision ${number} never resolved its image: it cannot be rolled back to`);
    await this.db.write((trx) => trx.updateTable('functions').set({ config: revision.config, updated_at: Date.now() }).where('id', '=', row.id).execute());
    const deploy = this.deps.deployer.enqueue(this.deps.live.of(row), number, true);
    if (wait) await deploy;
    return functionView(this.db, this.deps.live, namespace, name);
  }

  /** Resolves when the latest revision is ready or failed (or `signal` aborts). */
  async waitForDeploy(namespace: string, name: string, signal?: AbortSignal): Promise<FunctionView> {
    for (;;) {
      const live = this.deps.live.get(namespace, name);
      if (live) await live.chain;
      const view = await functionView(this.db, this.deps.live, namespace, name);
      if (view.status !== 'deploying' || signal?.aborted) return view;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * A new revision with the same settings at `digest`, unless the latest already runs it (or
   * is still deploying). Idempotent across replicas: the check and the insert run under one
   * lock per function, so two replicas catching up the same tag push roll it once.
   */
  async rollToDigest(row: FunctionTable, digest: string): Promise<void> {
    let number = 0;
    await this.db.write(async (trx) => {
      number = 0;
      await this.db.lockKey(trx, `functions:roll:${row.id}`);
      const fresh = await trx.selectFrom('functions').select(['latest_revision', 'config']).where('id', '=', row.id).executeTakeFirst();
      if (!fresh) return;
      const latest = await trx.selectFrom('function_revisions').select(['image_digest', 'status'])
        .where('function_id', '=', row.id).where('number', '=', fresh.latest_revision).executeTakeFirst();
      if (latest?.image_digest === digest || latest?.status === 'deploying') return;
      number = fresh.latest_revision + 1;
      await trx.insertInto('function_revisions').values(revisionRow(row.id, number, JSON.parse(fresh.config) as StoredConfig, digest, Date.now())).execute();
      await trx.updateTable('functions').set({ latest_revision: number, updated_at: Date.now() }).where('id', '=', row.id).execute();
    });
    if (number) {
      this.deps.logger?.info({ function: `${row.namespace}/${row.name}`, revision: number, digest }, 'tag pushed again: rolling to a new revision');
      this.deps.deployer.enqueue(this.deps.live.of(row), number, false);
    }
  }
}
