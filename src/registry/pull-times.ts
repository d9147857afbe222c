/**
 * @module registry/pull-times
 * When each manifest was last pulled, for retention's "pulled within". Cheap by design: a pull
 * only sets a map entry in memory; the entries are written in one transaction every
 * `flushMs` (and before a retention run, and on close). A crash loses at most that window.
 */
import type { Database } from '../db/db.js';

export class PullTimes {
  private pending = new Map<string, { repository: string; digest: string; at: number }>();
  private timer?: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly db: Database, flushMs = 10_000) {
    if (flushMs > 0) {
      this.timer = setInterval(() => { void this.flush().catch(() => undefined); }, flushMs);
      this.timer.unref();
    }
  }

  record(repository: string, digest: string, at = Date.now()): void {
    this.pending.set(`${repository}@${digest}`, { repository, digest, at });
  }

  /** Writes what was recorded since the last flush. */
  async flush(): Promise<void> {
    const run = this.flushing.then(async () => {
      if (this.pending.size === 0) return;
      const batch = [...this.pending.values()];
      this.pending = new Map();
      await this.db.write(async (trx) => {
        for (let i = 0; i < batch.length; i += 200) {
          const rows = batch.slice(i, i + 200).map((p) => ({ repository: p.repository, digest: p.digest, pulled_at: p.at }));
          await trx.insertInto('manifest_pulls').values(rows)
            .onConflict((c) => c.columns(['repository', 'digest']).doUpdateSet((eb) => ({ pulled_at: eb.ref('excluded.pulled_at') }))).execute();
        }
      });
    });
    this.flushing = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }
}
