/**
 * @module functions/replica-sync
 * Keeps this replica's pools in step with what other replicas did to a function. A revision
 * activated or a function deleted through any replica is announced on `revisionsChannel`
 * (PostgreSQL NOTIFY, sent with the commit); here each announcement makes the deployer `follow`
 * the db: the active revision's pool comes up (pre-warmed to `minInstances`, otherwise instances
 * start on the first request), the old one drains, a deleted function's instances stop.
 *
 * Notifications are best-effort, so a poll of every function's active revision is the safety
 * net (`pollMs`), and a request for a function this replica has never seen looks it up at once
 * (`ensure`): any replica's gateway serves any function.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import { revisionsChannel, type Deployer } from './deployer.js';
import type { Live, LiveFunctions } from './live.js';

export interface ReplicaSyncDeps {
  db: Database;
  live: LiveFunctions;
  deployer: Deployer;
  logger?: Pick<Logger, 'warn'>;
  /** How often every function's active revision is compared with this replica's; default 5 s. */
  pollMs?: number;
}

export class ReplicaSync {
  private unsubscribe?: () => void;
  private timer?: NodeJS.Timeout;
  private polling?: Promise<void>;
  /** Wakes `ensure` calls waiting for a first activation elsewhere. */
  private readonly waiting = new Set<() => void>();

  constructor(private readonly deps: ReplicaSyncDeps) {}

  private get db() { return this.deps.db; }

  start(): void {
    this.unsubscribe = this.db.notifications.subscribe(revisionsChannel, (payload) => {
      // `*`: the listener reconnected and may have missed some.
      const done = payload === '*' ? this.poll() : this.reconcile(...split(payload));
      void done.catch((error: Error) => this.deps.logger?.warn({ err: error, function: payload }, 'following another replica failed'));
      for (const wake of [...this.waiting]) wake();
    });
    this.timer = setInterval(() => void this.poll(), this.deps.pollMs ?? 5000);
    this.timer.unref();
  }

  /** Announces a change made here (a delete) to the other replicas. */
  async announce(namespace: string, name: string): Promise<void> {
    await this.db.notifications.publish(revisionsChannel, `${namespace}/${name}`).catch(() => undefined); // the poll covers a lost one
  }

  close(): void {
    this.unsubscribe?.();
    clearInterval(this.timer);
    for (const wake of [...this.waiting]) wake();
  }

  /**
   * This replica's state of a function, brought in line with the db first when it has no active
   * revision here: waits (up to `waitMs`) while its first deploy runs on another replica.
   */
  async ensure(namespace: string, name: string, waitMs: number): Promise<void> {
    const until = Date.now() + waitMs;
    for (;;) {
      const live = await this.reconcile(namespace, name);
      if (!live || live.active || Date.now() >= until) return;
      const deploying = await this.db.kysely.selectFrom('function_revisions').select('number')
        .where('function_id', '=', live.id).where('status', '=', 'deploying').executeTakeFirst();
      if (!deploying) return;
      await new Promise<void>((resolve) => {
        const wake = () => { this.waiting.delete(wake); clearTimeout(timer); resolve(); };
        const timer = setTimeout(wake, Math.min(250, Math.max(0, until - Date.now())));
        this.waiting.add(wake);
      });
    }
  }

  /** Follows the db for one function; the live state afterwards (undefined when it is gone). */
  private async reconcile(namespace: string, name: string): Promise<Live | undefined> {
    const row = await this.db.kysely.selectFrom('functions').select(['id', 'namespace', 'name', 'active_revision'])
      .where('namespace', '=', namespace).where('name', '=', name).executeTakeFirst();
    const known = this.deps.live.get(namespace, name);
    if (known && known.id !== row?.id) await this.deps.deployer.follow(known); // deleted (or deleted and made again)
    if (!row) return undefined;
    const live = this.deps.live.of(row);
    if (row.active_revision === null || live.active?.number === row.active_revision) return live;
    return this.deps.deployer.follow(live);
  }

  /** The safety net: every function whose active revision here differs from the db's. */
  private poll(): Promise<void> {
    this.polling ??= (async () => {
      const rows = await this.db.kysely.selectFrom('functions').select(['id', 'namespace', 'name', 'active_revision']).execute();
      const ids = new Set(rows.map((row) => row.id));
      for (const live of this.deps.live.all()) if (!ids.has(live.id)) await this.deps.deployer.follow(live);
      for (const row of rows) {
        const live = this.deps.live.get(row.namespace, row.name);
        if (row.active_revision !== null && live?.active?.number !== row.active_revision) await this.deps.deployer.follow(this.deps.live.of(row));
      }
    })().catch((error: Error) => this.deps.logger?.warn({ err: error }, 'comparing functions with the db failed')).finally(() => { this.polling = undefined; });
    return this.polling;
  }
}

function split(payload: string): [string, string] {
  const slash = payload.indexOf('/');
  return [payload.slice(0, slash), payload.slice(slash + 1)];
}
