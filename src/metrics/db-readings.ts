/**
 * @module metrics/db-readings
 * Gauges read from the database at scrape time: they hold for every replica at once (the
 * queue and the upload sessions live in the shared db), at the cost of two small queries.
 */
import type { Database } from '../db/db.js';
import type { MetricSources } from './registry.js';

export function dbReadings(db: Database): Required<Pick<MetricSources, 'uploadsInProgress' | 'jobQueueDepth'>> {
  return {
    async uploadsInProgress() {
      const row = await db.kysely.selectFrom('uploads').select((eb) => eb.fn.countAll<number | string>().as('n')).executeTakeFirst();
      return Number(row?.n ?? 0);
    },
    async jobQueueDepth() {
      const rows = await db.kysely.selectFrom('jobs').select(['queue', 'status', (eb) => eb.fn.countAll<number | string>().as('n')])
        .where('status', 'in', ['queued', 'running']).groupBy(['queue', 'status']).execute();
      return rows.map((row) => ({ queue: row.queue, status: row.status, count: Number(row.n) }));
    },
  };
}
