/**
 * Runs the JobQueue conformance suite (test/suites/job-queue.ts) for every implementation:
 * the db queue on each dialect. A next implementation adds one line here.
 */
import { JobQueue } from '../src/db/job-queue.js';
import { dialects } from './helpers/dialects.js';
import { jobQueueSuite } from './suites/job-queue.js';

for (const dialect of dialects) {
  jobQueueSuite({ name: `db queue, ${dialect.name}`, dialect, create: (db, options) => new JobQueue(db, options) });
}
