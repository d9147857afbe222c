/**
 * @module functions/deployer
 * Turns revisions into running pools. A deploy has the RuntimeDriver pull the revision's image
 * (resolving a tag to the digest the revision then keeps), starts one instance and runs its
 * start checks; only then does traffic move to the new revision (the old one drains). A failed
 * start marks the revision failed with the reason and the instance's own output, and traffic
 * stays where it was. Deploys of one function run one after the other; a revision overtaken by
 * a newer one before its turn is retired unstarted.
 *
 * With several replicas the deploy runs on the one that was asked; its activation commit sends
 * `activated` on `revisionsChannel`, and every other replica `follow`s: it brings the db's
 * active revision up locally (no start checks: they passed; nothing written; no event) and
 * drains its own old pool.
 */
import type { FunctionObserver } from './invoker.js';
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { FunctionRevisionTable } from '../db/schema.js';
import type { Vault } from '../vault/vault.js';
import type { GatewayFacts } from './gateway-facts.js';
import type { ImageLocator } from './image-locator.js';
import type { InstanceLog } from './instance-log.js';
import type { Live, LiveFunctions } from './live.js';
import { RevisionPool, StartError, type InstanceTemplate } from './pool.js';
import { secretContext } from './records.js';
import type { ImageRequest, RuntimeDriver } from './runtime-driver.js';
import type { StoredConfig } from './spec.js';

/** A revision that became active (`succeeded`) or failed to start. */
export interface DeployEvent {
  namespace: string;
  name: string;
  revision: number;
  status: 'succeeded' | 'failed';
  reason?: string;
  digest?: string;
  image?: string;
  activeRevision: number | null;
}

/** Activations and deletes, `<namespace>/<name>`, for the other replicas' pools (see replica-sync.ts). */
export const revisionsChannel = 'slipway_function_revisions';

export interface DeployerDeps {
  db: Database;
  driver: RuntimeDriver;
  images: ImageLocator;
  live: LiveFunctions;
  facts: GatewayFacts;
  log: InstanceLog;
  vault?: Vault;
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Start checks (listening on 8000, `/init`) must pass within this. Default 30 s. */
  startTimeoutMs?: number;
  observer?: FunctionObserver;
}

export class Deployer {
  private closed = false;
  private readonly listeners = new Set<(event: DeployEvent) => void>();

  constructor(private readonly deps: DeployerDeps) {}

  private get db() { return this.deps.db; }

  /** Tells `listener` when a revision became active or failed to start (for `deploy.*` events). */
  onDeploy(listener: (event: DeployEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: DeployEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // a listener's problem is not the deploy's
      }
    }
  }

  /**
   * Brings every function back after a start: active revisions get their minimum instances
   * (without start checks: they passed them before; nothing is written, as another replica may
   * have moved on meanwhile), interrupted deploys run again.
   */
  async restore(): Promise<Live[]> {
    const rows = await this.db.kysely.selectFrom('functions').selectAll().execute();
    const restored: Live[] = [];
    for (const row of rows) {
      const live = this.deps.live.of(row);
      const deploying = await this.db.kysely.selectFrom('function_revisions').select('number')
        .where('function_id', '=', row.id).where('status', '=', 'deploying').orderBy('number').execute();
      if (row.active_revision !== null) {
        const active = row.active_revision;
        live.chain = live.chain.then(() => this.activate(live, active, { check: false, record: false })).catch((error: Error) => {
          this.deps.logger?.warn({ function: `${row.namespace}/${row.name}`, err: error }, 'could not restore function');
        });
      }
      for (const { number } of deploying) this.enqueue(live, number, false);
      restored.push(live);
    }
    return restored;
  }

  /** Stops every pool (in-flight requests get `graceMs`) and the driver. */
  async close(): Promise<void> {
    this.closed = true;
    const pools = this.deps.live.all().flatMap((live) => [...live.pools.values()]);
    await Promise.all(pools.map((pool) => pool.close(10_000)));
    await this.deps.driver.close();
  }

  /** Stops the pools of a deleted function. */
  async retire(live: Live): Promise<void> {
    this.deps.live.delete(live);
    await Promise.all([...live.pools.values()].map((pool) => pool.close(5000)));
    live.pools.clear();
  }

  /**
   * Brings this replica in line with the db after another replica activated a revision or
   * deleted the function (queued after this function's own deploys): the active revision's
   * pool comes up here without start checks and without writing, the old one drains. Resolves
   * with the function's state here, undefined when it is gone.
   */
  follow(live: Live): Promise<Live | undefined> {
    const run = live.chain.then(async () => {
      if (live.deleted || this.closed) return undefined;
      const row = await this.db.kysely.selectFrom('functions').select(['id', 'active_revision']).where('id', '=', live.id).executeTakeFirst();
      if (!row) {
        await this.retire(live);
        return undefined;
      }
      if (row.active_revision !== null && live.active?.number !== row.active_revision) {
        await this.activate(live, row.active_revision, { check: false, record: false });
      }
      return live;
    });
    live.chain = run.catch(() => undefined);
    return run;
  }

  /** Queues a deploy of revision `number` after the function's earlier ones; resolves when it is done either way. */
  enqueue(live: Live, number: number, rollback: boolean): Promise<unknown> {
    const run = live.chain.then(() => this.deploy(live, number, rollback));
    live.chain = run.catch(() => undefined);
    return live.chain;
  }

  private async deploy(live: Live, number: number, rollback: boolean): Promise<void> {
    if (live.deleted || this.closed) return;
    const fn = await this.db.kysely.selectFrom('functions').select(['active_revision', 'latest_revision']).where('id', '=', live.id).executeTakeFirst();
    if (!fn) return;
    // A newer revision already queued makes this one moot (unless it is an explicit rollback).
    if (!rollback && number < fn.latest_revision) {
      await this.setRevision(live, number, { status: 'retired', reason: `superseded by revision ${fn.latest_revision} before it was deployed` });
      return;
    }
    if (!rollback && fn.active_revision !== null && number < fn.active_revision) return;
    await this.db.write((trx) => trx.updateTable('function_revisions').set({ status: 'deploying', reason: null, output: null })
      .where('function_id', '=', live.id).where('number', '=', number).execute());
    try {
      await this.activate(live, number, { check: true, record: true });
    } catch (error) {
      const output = error instanceof StartError ? error.output : [];
      const reason = (error as Error).message;
      this.deps.log.write(live, number, 'control', 'system', `revision ${number} failed: ${reason}`);
      await this.setRevision(live, number, { status: 'failed', reason, output: JSON.stringify(output.slice(-20)) });
      this.emit({ namespace: live.namespace, name: live.name, revision: number, status: 'failed', reason, activeRevision: live.active?.number ?? null });
    }
  }

  /**
   * Builds the revision's pool; with `check`, one instance must pass its start checks first.
   * Then the revision becomes the active one and the previous pool drains. With `record` the
   * activation is written (and announced to the other replicas, on commit) and emitted; without
   * it only this replica's pools change.
   */
  private async activate(live: Live, number: number, options: { check: boolean; record: boolean }): Promise<void> {
    const revision = await this.db.kysely.selectFrom('function_revisions').selectAll().where('function_id', '=', live.id).where('number', '=', number).executeTakeFirstOrThrow();
    const config = JSON.parse(revision.config) as StoredConfig;
    const request = this.deps.images.request(live.namespace, revision.image, revision.image_digest);
    const image = await this.deps.driver.pull(request);
    if (!revision.image_digest && options.record) {
      await this.db.write((trx) => trx.updateTable('function_revisions').set({ image_digest: image.digest }).where('function_id', '=', live.id).where('number', '=', number).execute());
    }
    const template = await this.template(live, number, config, { ...request, digest: image.digest });
    const label = `${live.id.slice(3, 11)}-r${number}`;
    let pool = live.pools.get(number);
    if (!pool) {
      pool = new RevisionPool(label, this.deps.driver, template, poolSettings(config, this.deps.startTimeoutMs), {
        log: (instance, stream, line) => this.deps.log.write(live, number, instance, stream, line),
        started: this.deps.observer?.instanceStarted,
      });
      live.pools.set(number, pool);
    }
    if (options.check) {
      try {
        await pool.startInstance();
      } catch (error) {
        if (live.active?.pool !== pool) {
          live.pools.delete(number);
          await pool.close(0);
        }
        throw error;
      }
    }
    if (live.deleted || this.closed) {
      live.pools.delete(number);
      await pool.close(0);
      return;
    }
    const previous = live.active;
    live.active = { number, pool, config, digest: image.digest };
    pool.open();
    if (!options.record) {
      if (previous && previous.pool !== pool) {
        live.pools.delete(previous.number);
        void previous.pool.close();
      }
      return;
    }
    this.deps.facts.forget(live.namespace, live.name);
    const now = Date.now();
    await this.db.write(async (trx) => {
      await trx.updateTable('function_revisions').set({ status: 'ready', reason: null, output: null, ready_at: now }).where('function_id', '=', live.id).where('number', '=', number).execute();
      if (previous && previous.number !== number) {
        await trx.updateTable('function_revisions').set({ status: 'retired' }).where('function_id', '=', live.id).where('number', '=', previous.number).where('status', '=', 'ready').execute();
      }
      await trx.updateTable('functions').set({ active_revision: number, updated_at: now }).where('id', '=', live.id).execute();
      await this.db.notifications.publishIn(trx, revisionsChannel, `${live.namespace}/${live.name}`);
    });
    this.deps.log.write(live, number, 'control', 'system', `revision ${number} is active (${image.digest})`);
    this.emit({ namespace: live.namespace, name: live.name, revision: number, status: 'succeeded', digest: image.digest, image: revision.image, activeRevision: number });
    if (previous && previous.pool !== pool) {
      live.pools.delete(previous.number);
      void previous.pool.close();
    }
  }

  private async setRevision(live: Live, number: number, changes: Partial<FunctionRevisionTable>): Promise<void> {
    await this.db.write((trx) => trx.updateTable('function_revisions').set(changes).where('function_id', '=', live.id).where('number', '=', number).execute());
  }

  /** The instances of a revision: its image, the function's overrides and the runtime variables, secrets opened. */
  private async template(live: Live, number: number, config: StoredConfig, image: ImageRequest): Promise<InstanceTemplate> {
    const runtime: Record<string, string> = {
      RUNTIME_FUNC_NAME: live.name, RUNTIME_FUNC_VERSION: String(number), RUNTIME_PACKAGE: live.namespace,
      RUNTIME_PROJECT_ID: live.namespace, RUNTIME_MEMORY: String(config.memoryMB), RUNTIME_TIMEOUT: String(config.timeoutSeconds),
    };
    const env = Object.entries({ ...runtime, ...config.env }).map(([k, v]) => `${k}=${v}`);
    for (const [k, envelope] of Object.entries(config.secretEnv)) {
      if (!this.deps.vault) throw new StartError('secret environment variables need the vault', []);
      env.push(`${k}=${await this.deps.vault.open(envelope, secretContext(live.id, k))}`);
    }
    return {
      image, command: config.command, args: config.args, env,
      workingDir: config.workingDir, uid: config.uid, gid: config.gid, memoryMB: config.memoryMB, pids: 1024,
    };
  }
}

function poolSettings(config: StoredConfig, startTimeoutMs = 30_000) {
  return {
    minInstances: config.minInstances, maxInstances: config.maxInstances, concurrency: config.concurrency,
    idleMs: config.idleSeconds * 1000, startTimeoutMs,
  };
}
