/**
 * @module db/lease
 * Named leases in the `leases` table, so that singleton work (GC, the mirror poller, event
 * upkeep) runs on one replica at a time. A holder keeps its lease by renewing it before it
 * expires; a replica that dies (kill -9) stops renewing, and after `ttlMs` any other replica
 * takes the lease over. Taking and renewing are one check-then-write under `Database.lockKey`,
 * so two replicas never both hold a live lease.
 *
 * A holder learns it lost its lease at its next renewal at the latest (a db it cannot reach
 * counts as lost once the lease's own expiry has passed), so work guarded by `held` may
 * overlap another holder's by at most one renewal period: singleton work must stay safe to
 * repeat (it is: GC marks rows in transactions, mirror polls record heads).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Database } from './db.js';
import { ownerIsDeadHere } from './job-queue.js';

export interface LeaseOptions {
  /** Who holds it; default `<host>-<pid>-<random>`. */
  holder?: string;
  /** How long a lease lasts without renewal; default 15 s. */
  ttlMs?: number;
  now?: () => number;
}

/** Takes or renews `name` for `holder` when free, expired or already `holder`'s; true when held afterwards. */
export async function acquireLease(db: Database, name: string, holder: string, ttlMs: number, now = Date.now()): Promise<boolean> {
  return db.write(async (trx) => {
    await db.lockKey(trx, `lease:${name}`);
    const row = await trx.selectFrom('leases').selectAll().where('name', '=', name).executeTakeFirst();
    const expiresAt = now + ttlMs;
    if (!row) {
      await trx.insertInto('leases').values({ name, holder, expires_at: expiresAt }).execute();
      return true;
    }
    // A holder that is a dead process of this host (kill -9, then a restart) need not expire.
    if (row.holder !== holder && row.expires_at > now && !ownerIsDeadHere(row.holder)) return false;
    await trx.updateTable('leases').set({ holder, expires_at: expiresAt }).where('name', '=', name).execute();
    return true;
  });
}

/** Gives `name` up if `holder` has it, so another replica need not wait for the expiry. */
export async function releaseLease(db: Database, name: string, holder: string): Promise<void> {
  await db.write((trx) => trx.deleteFrom('leases').where('name', '=', name).where('holder', '=', holder).execute());
}

/** Who holds `name` now (null when free or expired). */
export async function leaseHolder(db: Database, name: string, now = Date.now()): Promise<string | null> {
  const row = await db.kysely.selectFrom('leases').selectAll().where('name', '=', name).executeTakeFirst();
  return row && row.expires_at > now ? row.holder : null;
}

/**
 * Keeps trying to hold one named lease: renews it every third of its ttl while held, and
 * tries to take it at the same pace while another replica has it. `held` answers whether
 * this process may do the singleton work right now.
 */
export class Lease {
  readonly holder: string;
  readonly ttlMs: number;
  private readonly now: () => number;
  private heldUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private attempt: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly db: Database, readonly name: string, options: LeaseOptions = {}) {
    this.holder = options.holder ?? `${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
    this.ttlMs = options.ttlMs ?? 15_000;
    this.now = options.now ?? Date.now;
    if (!(this.ttlMs > 0)) throw new RangeError('ttlMs must be positive');
  }

  /** True while this process holds the lease (and its expiry has not passed). */
  get held(): boolean {
    return !this.stopped && this.heldUntil > this.now();
  }

  /** Starts renewing; resolves after the first attempt (so `held` is known). */
  async start(onError?: (error: unknown) => void): Promise<this> {
    if (this.timer || this.stopped) return this;
    const tick = () => {
      this.attempt ??= this.renew().then(() => undefined, (error: unknown) => onError?.(error)).finally(() => { this.attempt = undefined; });
      return this.attempt;
    };
    this.timer = setInterval(() => void tick(), Math.max(1, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
    await tick();
    return this;
  }

  /** One take-or-renew now. */
  async renew(): Promise<boolean> {
    if (this.stopped) return false;
    const started = this.now();
    const ok = await acquireLease(this.db, this.name, this.holder, this.ttlMs, started);
    // Counted from before the write: the db's expiry is never earlier than ours.
    this.heldUntil = ok ? started + this.ttlMs : 0;
    return ok;
  }

  /** Stops renewing and releases the lease if held. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    await this.attempt;
    const wasHeld = this.heldUntil > this.now();
    this.heldUntil = 0;
    if (wasHeld) await releaseLease(this.db, this.name, this.holder).catch(() => undefined);
  }
}
