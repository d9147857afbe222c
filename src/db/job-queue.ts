/**
 * @module db/job-queue
 * Durable jobs in the `jobs` table, on both dialects. A worker *claims* a job: it becomes
 * `running` under a lease (owner + expiry) that the worker keeps extending with heartbeats.
 * A worker that crashes stops heartbeating, its lease runs out and the next `claim` takes the
 * job again (or fails it when it is out of attempts), so no job is lost and none is run by two
 * live workers at once.
 *
 * Every mutation goes through `Database.write`: on SQLite that is BEGIN IMMEDIATE, which already
 * serialises claimers across processes; on PostgreSQL the claim selects with
 * `FOR UPDATE SKIP LOCKED`, so concurrent claimers take different rows instead of queueing on
 * one. Times are milliseconds since the epoch from `now()` (injectable for tests).
 *
 * `JobQueueApi` is the contract (test/suites/job-queue.ts checks it); `JobWorker`
 * (./job-worker.ts, re-exported here) is the consuming side. An enqueue wakes the workers of
 * its queue in every process on the database (PostgreSQL NOTIFY, sent on commit); workers
 * keep polling as the safety net. The `jobs` table belongs to this
 * module: other parts reach their jobs only through this API (ids they chose, an id prefix
 * for a group of jobs).
 */
import { SlipwayError } from '../http/error-catalog.js';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { sql, type Kysely, type Selectable } from 'kysely';
import type { Database } from './db.js';
import type { JobStatus, JobTable, Tables } from './schema.js';

export type { JobStatus };

/** A job as callers see it: JSON columns parsed, names in camelCase. */
export interface Job<P = unknown, R = unknown> {
  id: string;
  queue: string;
  payload: P;
  status: JobStatus;
  /** Claims so far (the running attempt included). */
  attempts: number;
  maxAttempts: number;
  /** 0: no limit. */
  timeoutMs: number;
  runAfter: number;
  leaseOwner: string | null;
  leaseExpiresAt: number | null;
  cancelRequested: boolean;
  result: R | null;
  error: string | null;
  createdAt: number;
  /** Start of the latest attempt. */
  startedAt: number | null;
  finishedAt: number | null;
}

export interface JobQueueOptions {
  /** Identifies this process's claims; default `<host>-<pid>-<random>`. */
  workerId?: string;
  /** How long a claim stays valid without a heartbeat; default 30 s. */
  leaseMs?: number;
  now?: () => number;
}

export interface EnqueueOptions {
  /** Default 10 minutes; 0 for no limit. */
  timeoutMs?: number;
  /** Default 1 (no retry). */
  maxAttempts?: number;
  /** Not claimed before this time (ms since epoch); default now. */
  runAfter?: number;
  /** Default: random, url-safe and time-ordered. A duplicate id is an error. */
  id?: string;
  /**
   * Insert inside the caller's transaction (e.g. together with a `builds` row). Workers are
   * notified at once; if the transaction has not committed yet they find the job on their
   * next poll.
   */
  trx?: Kysely<Tables>;
}

export interface FailOptions {
  /** Back to `queued` while attempts remain; else `failed`. */
  retry?: boolean;
  /** Default: exponential from 1 s, at most 5 min. */
  backoffMs?: number;
}

export interface ListOptions {
  status?: JobStatus | JobStatus[];
  /** Only jobs whose id starts with this (callers group their jobs by id, e.g. `<runId>-…`). */
  idPrefix?: string;
  /** Default 100. */
  limit?: number;
}

/**
 * The durable job queue's contract. A job is claimed by one worker at a time under a lease
 * that the worker extends with `heartbeat`; a lease that runs out makes the job claimable
 * again (or fails it when out of attempts). Terminal states (`succeeded`, `failed`,
 * `cancelled`) never change. Writes that name a `workerId` do nothing (and answer false)
 * once the job is no longer leased to that worker.
 */
export interface JobQueueApi {
  /** Identifies this queue handle's claims. */
  readonly workerId: string;
  /** How long a claim stays valid without a heartbeat. */
  readonly leaseMs: number;
  /** Stores a job (`queued`); returns its id. A duplicate id is an error. */
  enqueue<P>(queue: string, payload: P, options?: EnqueueOptions): Promise<string>;
  /** The oldest ready job of `queue`, now `running` under this handle's lease; null when none is ready. */
  claim<P = unknown>(queue: string): Promise<Job<P> | null>;
  /** Extends the lease; throws LeaseLostError when the job is no longer `workerId`'s. */
  heartbeat(id: string, workerId: string): Promise<{ cancelRequested: boolean }>;
  complete(id: string, workerId: string, result?: unknown): Promise<boolean>;
  fail(id: string, workerId: string, error: string, options?: FailOptions): Promise<boolean>;
  /** A queued job ends at once; a running one is flagged for its worker; finished ones stay. */
  cancel(id: string): Promise<'cancelled' | 'requested' | 'finished' | 'not-found'>;
  /** The worker stopped after seeing the cancel request. */
  markCancelled(id: string, workerId: string): Promise<boolean>;
  get<P = unknown, R = unknown>(id: string): Promise<Job<P, R> | null>;
  /** The jobs of these ids that exist, in no particular order. */
  getMany<P = unknown, R = unknown>(ids: readonly string[]): Promise<Job<P, R>[]>;
  /** Jobs of `queue`, oldest first. */
  list<P = unknown, R = unknown>(queue: string, options?: ListOptions): Promise<Job<P, R>[]>;
  /** For server start: jobs whose worker is gone go back to the queue (or fail when out of attempts). */
  recover(): Promise<{ requeued: number; failed: number; cancelled: number }>;
  /** Deletes finished jobs of `queue` that finished before `finishedBefore`; returns how many. */
  purge(queue: string, options: { finishedBefore: number }): Promise<number>;
  /** Wakes the workers of `queue` in this process. */
  notify(queue: string): void;
  /** Calls `listener` on every notify of `queue`; returns the unsubscribe function. */
  onNotify(queue: string, listener: () => void): () => void;
}

/** The lease on a job is gone: it finished, was cancelled, or another worker took it over. */
export class LeaseLostError extends SlipwayError {
  constructor(readonly jobId: string, readonly workerId: string) {
    super('LEASE_LOST', `job ${jobId} is no longer leased to ${workerId}`);
    this.name = 'LeaseLostError';
  }
}

export const defaultLeaseMs = 30_000;
export const defaultTimeoutMs = 10 * 60_000;

type JobRow = Selectable<JobTable>;

/**
 * In-process wake-ups, keyed by the Database handle so that any JobQueue on the same handle
 * reaches the workers of any other (enqueue → start is then immediate within one process).
 */
const listeners = new WeakMap<Database, Map<string, Set<() => void>>>();

/** The notification channel of enqueues; the payload is the queue name. */
const jobsChannel = 'slipway_jobs';

export class JobQueue implements JobQueueApi {
  readonly workerId: string;
  readonly leaseMs: number;
  private readonly now: () => number;

  constructor(private readonly db: Database, options: JobQueueOptions = {}) {
    this.workerId = options.workerId ?? `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.leaseMs = options.leaseMs ?? defaultLeaseMs;
    this.now = options.now ?? Date.now;
    if (!(this.leaseMs > 0)) throw new RangeError('leaseMs must be positive');
  }

  async enqueue<P>(queue: string, payload: P, options: EnqueueOptions = {}): Promise<string> {
    const maxAttempts = options.maxAttempts ?? 1;
    const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new RangeError('maxAttempts must be an integer ≥ 1');
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) throw new RangeError('timeoutMs must be ≥ 0');
    const now = this.now();
    const id = options.id ?? newJobId(now);
    const row = {
      id, queue, payload: JSON.stringify(payload ?? null), status: 'queued' as const, attempts: 0,
      max_attempts: maxAttempts, timeout_ms: Math.round(timeoutMs), run_after: options.runAfter ?? now, created_at: now,
    };
    // The wake-up to other replicas is sent with the insert's commit (NOTIFY is transactional).
    const insert = async (trx: Kysely<Tables>) => {
      await trx.insertInto('jobs').values(row).execute();
      await this.db.notifications.publishIn(trx, jobsChannel, queue);
    };
    if (options.trx) await insert(options.trx);
    else await this.db.write(insert);
    this.notify(queue);
    return id;
  }

  /** Takes the oldest ready job of `queue` for this worker, or null when none is ready. */
  async claim<P = unknown>(queue: string): Promise<Job<P> | null> {
    const row = await this.db.write(async (trx) => {
      // A loop because an expired job that is out of attempts is failed here, and then the
      // next candidate is looked at in the same transaction.
      for (;;) {
        const now = this.now();
        let query = trx.selectFrom('jobs').selectAll()
          .where('queue', '=', queue)
          .where((eb) => eb.or([
            eb.and([eb('status', '=', 'queued'), eb('run_after', '<=', now)]),
            eb.and([eb('status', '=', 'running'), eb('lease_expires_at', '<', now)]),
          ]))
          .orderBy('created_at').orderBy('id').limit(1);
        if (this.db.dialect === 'postgres') query = query.forUpdate().skipLocked();
        const found = await query.executeTakeFirst();
        if (!found) return null;
        let error = found.error;
        if (found.status === 'running') {
          // The worker holding it is gone (crashed, hung or partitioned away).
          if (found.cancel_requested) {
            await finish(trx, found.id, now, 'cancelled', 'cancelled (its worker was lost)');
            continue;
          }
          if (found.attempts >= found.max_attempts) {
            await finish(trx, found.id, now, 'failed', `worker lost (lease expired) after ${found.attempts} attempts`);
            continue;
          }
          error = `worker lost (lease expired) on attempt ${found.attempts}`;
        }
        const claimed: JobRow = {
          ...found, status: 'running', attempts: found.attempts + 1, lease_owner: this.workerId,
          lease_expires_at: now + this.leaseMs, started_at: now, error,
        };
        await trx.updateTable('jobs').set({
          status: claimed.status, attempts: claimed.attempts, lease_owner: claimed.lease_owner,
          lease_expires_at: claimed.lease_expires_at, started_at: claimed.started_at, error,
        }).where('id', '=', found.id).execute();
        return claimed;
      }
    });
    return row ? toJob<P>(row) : null;
  }

  /** Extends the lease. Throws LeaseLostError when the job is no longer this worker's. */
  async heartbeat(id: string, workerId: string): Promise<{ cancelRequested: boolean }> {
    const cancelRequested = await this.db.write(async (trx) => {
      const row = await this.owned(trx, id, workerId);
      if (!row) return null;
      await trx.updateTable('jobs').set({ lease_expires_at: this.now() + this.leaseMs }).where('id', '=', id).execute();
      return row.cancel_requested !== 0;
    });
    if (cancelRequested === null) throw new LeaseLostError(id, workerId);
    return { cancelRequested };
  }

  /** Records success. False when the job is no longer this worker's (cancelled, taken over, done). */
  async complete(id: string, workerId: string, result?: unknown): Promise<boolean> {
    return this.db.write(async (trx) => {
      if (!(await this.owned(trx, id, workerId))) return false;
      await trx.updateTable('jobs').set({
        status: 'succeeded', result: result === undefined ? null : JSON.stringify(result), error: null,
        lease_expires_at: null, finished_at: this.now(),
      }).where('id', '=', id).execute();
      return true;
    });
  }

  /**
   * Records a failed attempt. With `retry` the job goes back to the queue after a back-off
   * while attempts remain. A job whose cancellation was requested is cancelled instead of
   * retried. False when the job is no longer this worker's.
   */
  async fail(id: string, workerId: string, error: string, options: FailOptions = {}): Promise<boolean> {
    return this.db.write(async (trx) => {
      const row = await this.owned(trx, id, workerId);
      if (!row) return false;
      const now = this.now();
      if (row.cancel_requested) {
        await finish(trx, id, now, 'cancelled', error);
      } else if (options.retry && row.attempts < row.max_attempts) {
        const backoff = options.backoffMs ?? Math.min(1000 * 2 ** (row.attempts - 1), 5 * 60_000);
        await trx.updateTable('jobs').set({
          status: 'queued', run_after: now + backoff, lease_owner: null, lease_expires_at: null, error,
        }).where('id', '=', id).execute();
      } else {
        await finish(trx, id, now, 'failed', error);
      }
      return true;
    });
  }

  /**
   * A queued job is cancelled at once; a running one is flagged, and its worker sees the flag
   * on its next heartbeat and stops. Finished jobs are left as they are.
   */
  async cancel(id: string): Promise<'cancelled' | 'requested' | 'finished' | 'not-found'> {
    const outcome = await this.db.write(async (trx) => {
      const row = await lock(trx, this.db, id);
      if (!row) return 'not-found' as const;
      if (row.status === 'queued') {
        await finish(trx, id, this.now(), 'cancelled', null);
        return 'cancelled' as const;
      }
      if (row.status === 'running') {
        await trx.updateTable('jobs').set({ cancel_requested: 1 }).where('id', '=', id).execute();
        return 'requested' as const;
      }
      return 'finished' as const;
    });
    return outcome;
  }

  /** The worker stopped a job after seeing its cancel request. */
  async markCancelled(id: string, workerId: string): Promise<boolean> {
    return this.db.write(async (trx) => {
      if (!(await this.owned(trx, id, workerId))) return false;
      await finish(trx, id, this.now(), 'cancelled', null);
      return true;
    });
  }

  async get<P = unknown, R = unknown>(id: string): Promise<Job<P, R> | null> {
    const row = await this.db.kysely.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toJob<P, R>(row) : null;
  }

  async getMany<P = unknown, R = unknown>(ids: readonly string[]): Promise<Job<P, R>[]> {
    const out: Job<P, R>[] = [];
    // In slices: SQLite limits the number of bound parameters.
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await this.db.kysely.selectFrom('jobs').selectAll().where('id', 'in', ids.slice(i, i + 500)).execute();
      for (const row of rows) out.push(toJob<P, R>(row));
    }
    return out;
  }

  /** Oldest first; default limit 100. */
  async list<P = unknown, R = unknown>(queue: string, options: ListOptions = {}): Promise<Job<P, R>[]> {
    let query = this.db.kysely.selectFrom('jobs').selectAll().where('queue', '=', queue);
    if (options.status !== undefined) {
      query = query.where('status', 'in', Array.isArray(options.status) ? options.status : [options.status]);
    }
    if (options.idPrefix !== undefined) {
      const pattern = `${options.idPrefix.replace(/[\\%_]/g, '\\$&')}%`;
      query = query.where(sql<boolean>`id LIKE ${pattern} ESCAPE '\\'`);
    }
    const rows = await query.orderBy('created_at').orderBy('id').limit(options.limit ?? 100).execute();
    return rows.map((row) => toJob<P, R>(row));
  }

  async purge(queue: string, options: { finishedBefore: number }): Promise<number> {
    const deleted = await this.db.write((trx) => trx.deleteFrom('jobs').where('queue', '=', queue)
      .where('status', 'in', ['succeeded', 'failed', 'cancelled']).where('finished_at', '<', options.finishedBefore).executeTakeFirst());
    return Number(deleted.numDeletedRows);
  }

  /**
   * For server start: running jobs whose lease has expired (their worker died with the
   * previous process) go back to the queue while attempts remain, else fail. Jobs with a live
   * lease belong to another replica and are left alone.
   */
  async recover(): Promise<{ requeued: number; failed: number; cancelled: number }> {
    return this.db.write(async (trx) => {
      const now = this.now();
      let query = trx.selectFrom('jobs').selectAll().where('status', '=', 'running');
      if (this.db.dialect === 'postgres') query = query.forUpdate().skipLocked();
      const counts = { requeued: 0, failed: 0, cancelled: 0 };
      // Expired leases, and leases of a process on this host that is gone (a kill -9 and a
      // restart need not wait for the lease to run out).
      const lost = (await query.execute()).filter((row) => (row.lease_expires_at ?? 0) < now || ownerIsDeadHere(row.lease_owner));
      for (const row of lost) {
        const error = 'interrupted by a restart';
        if (row.cancel_requested) {
          await finish(trx, row.id, now, 'cancelled', error);
          counts.cancelled++;
        } else if (row.attempts < row.max_attempts) {
          await trx.updateTable('jobs').set({
            status: 'queued', run_after: now, lease_owner: null, lease_expires_at: null, error,
          }).where('id', '=', row.id).execute();
          counts.requeued++;
        } else {
          await finish(trx, row.id, now, 'failed', error);
          counts.failed++;
        }
      }
      return counts;
    });
  }

  /** Wakes the workers of `queue` in this process (on the same Database handle). */
  notify(queue: string): void {
    for (const listener of listeners.get(this.db)?.get(queue) ?? []) listener();
  }

  /**
   * Calls `listener` on every notify of `queue`, and on every enqueue to it by any process on
   * this database (`*`: a reconnect may have missed some); returns the unsubscribe function.
   */
  onNotify(queue: string, listener: () => void): () => void {
    let byQueue = listeners.get(this.db);
    if (!byQueue) listeners.set(this.db, byQueue = new Map());
    let set = byQueue.get(queue);
    if (!set) byQueue.set(queue, set = new Set());
    set.add(listener);
    // Enqueues by other processes (this one's arrive through `notify`).
    const unsubscribe = this.db.notifications.subscribe(jobsChannel, (payload) => {
      if (payload === queue || payload === '*') listener();
    });
    return () => {
      set.delete(listener);
      unsubscribe();
    };
  }

  /** The job row if it is running under `workerId`'s lease (locked on PostgreSQL). */
  private async owned(trx: Kysely<Tables>, id: string, workerId: string): Promise<JobRow | undefined> {
    const row = await lock(trx, this.db, id);
    return row && row.status === 'running' && row.lease_owner === workerId ? row : undefined;
  }
}

/** Reads a job for update: SQLite's write transaction holds the lock already. */
function lock(trx: Kysely<Tables>, db: Database, id: string): Promise<JobRow | undefined> {
  let query = trx.selectFrom('jobs').selectAll().where('id', '=', id);
  if (db.dialect === 'postgres') query = query.forUpdate();
  return query.executeTakeFirst();
}

/** Terminal states never change again: every write above requires `queued` or `running`. */
async function finish(trx: Kysely<Tables>, id: string, now: number, status: 'succeeded' | 'failed' | 'cancelled', error: string | null): Promise<void> {
  await trx.updateTable('jobs').set({ status, error, lease_expires_at: null, finished_at: now })
    .where('id', '=', id).execute();
}

function toJob<P, R = unknown>(row: JobRow): Job<P, R> {
  return {
    id: row.id,
    queue: row.queue,
    payload: JSON.parse(row.payload) as P,
    status: row.status,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    timeoutMs: row.timeout_ms,
    runAfter: row.run_after,
    leaseOwner: row.lease_owner,
    leaseExpiresAt: row.lease_expires_at,
    cancelRequested: row.cancel_requested !== 0,
    result: row.result === null ? null : JSON.parse(row.result) as R,
    error: row.error,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

let lastIdTime = -1;
let idSequence = 0;

/**
 * Time, then a per-process sequence, then randomness: ids enqueued in the same millisecond by
 * this process sort in enqueue order, which keeps `ORDER BY created_at, id` FIFO.
 */
function newJobId(now: number): string {
  if (now === lastIdTime) idSequence++;
  else { lastIdTime = now; idSequence = 0; }
  const time = Math.max(0, Math.floor(now)).toString(36).padStart(9, '0');
  return `${time}${idSequence.toString(36).padStart(4, '0')}${randomBytes(9).toString('base64url')}`;
}

/** Whether a worker id (`<host>-<pid>-<random>`) belongs to a process of this host that no longer runs. */
export function ownerIsDeadHere(owner: string | null): boolean {
  const prefix = `${hostname()}-`;
  if (!owner?.startsWith(prefix)) return false;
  const pid = Number(owner.slice(prefix.length).split('-')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
