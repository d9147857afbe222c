/**
 * The JobQueue conformance suite: every implementation of `JobQueueApi` runs it (the db queue
 * on SQLite and PostgreSQL now; test/job-queue.test.ts lists them, one line each). It checks
 * the contract: FIFO claims, no job claimed twice even by two handles claiming at once, leases
 * that hand a crashed worker's job to another worker, retries with back-off, cancellation,
 * timeouts, restart recovery, caller-chosen ids (unique; listed by prefix), getMany, purge, and
 * a JobWorker over the implementation (concurrency limit, retry hints, clean stop, two workers
 * running each job once). Lease and back-off timing runs on the implementation's injected
 * clock; the worker tests use real time with short limits.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openDatabase, type Database } from '../../src/db/db.js';
import { LeaseLostError, type Job, type JobQueueApi, type JobQueueOptions } from '../../src/db/job-queue.js';
import { JobAbortError, JobWorker } from '../../src/db/job-worker.js';
import { tempDir, type DialectUnderTest } from '../helpers/dialects.js';

export interface JobQueueUnderTest {
  name: string;
  /** Where the queue keeps its jobs: a fresh database per test. */
  dialect: DialectUnderTest;
  /**
   * A queue over `db`. Queues made on different handles of one database are different
   * processes; `options.now` must drive every time the queue reads (leases, back-off, run-after).
   */
  create(db: Database, options?: JobQueueOptions): JobQueueApi;
}

/** Opens `handles` Database handles on one fresh database; everything is removed afterwards. */
async function withDatabase(subject: JobQueueUnderTest, run: (...dbs: Database[]) => Promise<void>, handles = 1): Promise<void> {
  const dir = await tempDir();
  const database = await subject.dialect.create();
  const dbs: Database[] = [];
  try {
    for (let i = 0; i < handles; i++) dbs.push(await openDatabase({ url: database.url, dataDir: dir.path }));
    await run(...dbs);
  } finally {
    for (const db of dbs) await db.close();
    await database.drop();
    await dir.remove();
  }
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined | null | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const statusIs = (jobs: JobQueueApi, id: string, status: Job['status']) => async () => {
  const job = await jobs.get(id);
  return job?.status === status ? job : undefined;
};

export function jobQueueSuite(subject: JobQueueUnderTest): void {
  describe(`JobQueue conformance (${subject.name})`, () => {
    test('enqueue, claim, complete', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const jobs = subject.create(db!, { workerId: 'w1' });
      const id = await jobs.enqueue('builds', { repo: 'team/app', n: 1 });
      assert.match(id, /^[A-Za-z0-9_-]+$/);
      assert.equal((await jobs.get(id))?.status, 'queued');

      const job = await jobs.claim<{ repo: string; n: number }>('builds');
      assert.ok(job);
      assert.equal(job.id, id);
      assert.deepEqual(job.payload, { repo: 'team/app', n: 1 });
      assert.equal(job.status, 'running');
      assert.equal(job.attempts, 1);
      assert.equal(job.leaseOwner, 'w1');
      assert.ok(job.leaseExpiresAt! > Date.now());
      assert.equal(await jobs.claim('builds'), null, 'a running job with a live lease is not claimed again');
      assert.equal(await jobs.claim('other'), null, 'queues are separate');

      assert.equal(await jobs.complete(id, 'someone-else', 1), false);
      assert.equal(await jobs.complete(id, 'w1', { digest: 'sha256:abc' }), true);
      const done = await jobs.get(id);
      assert.equal(done?.status, 'succeeded');
      assert.deepEqual(done?.result, { digest: 'sha256:abc' });
      assert.ok(done?.finishedAt);
      assert.equal(await jobs.complete(id, 'w1', 'again'), false, 'terminal states never change');
      assert.equal(await jobs.fail(id, 'w1', 'late'), false);
      assert.equal(await jobs.cancel(id), 'finished');
      assert.equal((await jobs.get(id))?.status, 'succeeded');
      assert.deepEqual((await jobs.list('builds', { status: 'succeeded' })).map((j) => j.id), [id]);
      assert.deepEqual(await jobs.list('builds', { status: ['queued', 'running'] }), []);

      const custom = await jobs.enqueue('builds', null, { id: 'build-42' });
      assert.equal(custom, 'build-42');
      await assert.rejects(jobs.enqueue('builds', null, { id: 'build-42' }));
      await assert.rejects(jobs.enqueue('builds', null, { maxAttempts: 0 }), RangeError);
    }));

    test('claims are FIFO and respect run_after', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const clock = { now: 1_700_000_000_000 };
      const jobs = subject.create(db!, { now: () => clock.now });
      // All in the same millisecond: order must still be kept.
      const later = await jobs.enqueue('q', 'later', { runAfter: clock.now + 1000 });
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push(await jobs.enqueue('q', i));
      const claimed: string[] = [];
      for (let i = 0; i < 6; i++) claimed.push((await jobs.claim('q'))!.id);
      assert.deepEqual(claimed, ids);
      assert.equal(await jobs.claim('q'), null, 'not before run_after');
      clock.now += 1000;
      assert.equal((await jobs.claim('q'))?.id, later);
      assert.deepEqual((await jobs.list('q', { limit: 3 })).map((j) => j.id), [later, ...ids.slice(0, 2)]);
    }));

    test('no job is claimed twice by 20 concurrent claims from two handles', { timeout: 60_000 }, () => withDatabase(subject, async (a, b) => {
      const queueA = subject.create(a!, { workerId: 'worker-a' });
      const queueB = subject.create(b!, { workerId: 'worker-b' });
      const ids = new Set<string>();
      for (let i = 0; i < 15; i++) ids.add(await queueA.enqueue('race', i));
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? queueA : queueB).claim('race')));
      const claimed = results.filter((job): job is Job => job !== null);
      assert.equal(claimed.length, 15);
      assert.equal(new Set(claimed.map((job) => job.id)).size, 15, 'every claim got a different job');
      assert.deepEqual(new Set(claimed.map((job) => job.id)), ids);
      const rows = await queueA.list('race');
      assert.ok(rows.every((job) => job.status === 'running' && job.attempts === 1));
      // Each row's owner is the worker whose claim returned it.
      for (const job of claimed) assert.equal(rows.find((row) => row.id === job.id)?.leaseOwner, job.leaseOwner);
      assert.ok(claimed.some((job) => job.leaseOwner === 'worker-a') && claimed.some((job) => job.leaseOwner === 'worker-b'));

      // Again with more jobs than claims: 20 distinct jobs, 5 left queued.
      for (let i = 0; i < 25; i++) await queueB.enqueue('race2', i);
      const second = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? queueA : queueB).claim('race2')));
      assert.equal(new Set(second.map((job) => job?.id)).size, 20);
      assert.ok(second.every((job) => job !== null));
      assert.equal((await queueA.list('race2', { status: 'queued' })).length, 5);
    }, 2));

    test('an expired lease hands the job to another worker, until attempts run out', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const clock = { now: 1_700_000_000_000 };
      const a = subject.create(db!, { workerId: 'a', leaseMs: 30_000, now: () => clock.now });
      const b = subject.create(db!, { workerId: 'b', leaseMs: 30_000, now: () => clock.now });
      const id = await a.enqueue('q', 'x', { maxAttempts: 2 });
      assert.equal((await a.claim('q'))?.attempts, 1);

      // Heartbeats keep the lease alive past the original expiry.
      clock.now += 20_000;
      assert.deepEqual(await a.heartbeat(id, 'a'), { cancelRequested: false });
      clock.now += 20_000;
      assert.equal(await b.claim('q'), null);

      // Worker a "crashes": no more heartbeats.
      clock.now += 30_001;
      const taken = await b.claim('q');
      assert.equal(taken?.id, id);
      assert.equal(taken?.attempts, 2);
      assert.equal(taken?.leaseOwner, 'b');
      await assert.rejects(a.heartbeat(id, 'a'), LeaseLostError);
      assert.equal(await a.complete(id, 'a', 'stale'), false, 'the old worker can no longer finish it');

      // b crashes too: out of attempts, the next claim fails it instead of running it again.
      clock.now += 30_001;
      assert.equal(await a.claim('q'), null);
      const failed = await a.get(id);
      assert.equal(failed?.status, 'failed');
      assert.equal(failed?.error, 'worker lost (lease expired) after 2 attempts');
      assert.equal(failed?.attempts, 2);

      // A failed-over job is skipped and the next ready one is claimed in the same call.
      const one = await a.enqueue('q2', 1);
      const two = await a.enqueue('q2', 2);
      await a.claim('q2');
      clock.now += 30_001;
      assert.equal((await b.claim('q2'))?.id, two);
      assert.equal((await b.get(one))?.status, 'failed');
    }));

    test('fail with retry re-queues after the back-off while attempts remain', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const clock = { now: 1_700_000_000_000 };
      const jobs = subject.create(db!, { workerId: 'w', now: () => clock.now });
      const id = await jobs.enqueue('q', 'x', { maxAttempts: 3 });
      await jobs.claim('q');
      assert.equal(await jobs.fail(id, 'w', 'boom 1', { retry: true, backoffMs: 5_000 }), true);
      let job = await jobs.get(id);
      assert.equal(job?.status, 'queued');
      assert.equal(job?.runAfter, clock.now + 5_000);
      assert.equal(job?.error, 'boom 1');
      assert.equal(job?.leaseOwner, null);
      assert.equal(await jobs.claim('q'), null, 'not during the back-off');
      clock.now += 5_000;
      assert.equal((await jobs.claim('q'))?.attempts, 2);

      // Default back-off: exponential, 2 s after the second attempt.
      await jobs.fail(id, 'w', 'boom 2', { retry: true });
      assert.equal((await jobs.get(id))?.runAfter, clock.now + 2_000);
      clock.now += 2_000;
      assert.equal((await jobs.claim('q'))?.attempts, 3);
      await jobs.fail(id, 'w', 'boom 3', { retry: true, backoffMs: 0 });
      job = await jobs.get(id);
      assert.equal(job?.status, 'failed', 'out of attempts');
      assert.equal(job?.error, 'boom 3');
      assert.equal(await jobs.claim('q'), null);

      // Without retry a failure is final even with attempts left.
      const other = await jobs.enqueue('q', 'y', { maxAttempts: 5 });
      await jobs.claim('q');
      await jobs.fail(other, 'w', 'bad input');
      assert.equal((await jobs.get(other))?.status, 'failed');
    }));

    test('cancel: a queued job at once, a running one through its heartbeat', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const jobs = subject.create(db!, { workerId: 'w', leaseMs: 300 });
      const queued = await jobs.enqueue('q', 'x');
      assert.equal(await jobs.cancel(queued), 'cancelled');
      assert.equal((await jobs.get(queued))?.status, 'cancelled');
      assert.equal(await jobs.claim('q'), null);
      assert.equal(await jobs.cancel('nope'), 'not-found');

      // Low level: the flag shows on heartbeat; the worker then marks it cancelled.
      const manual = await jobs.enqueue('q', 'y');
      await jobs.claim('q');
      assert.equal(await jobs.cancel(manual), 'requested');
      assert.deepEqual(await jobs.heartbeat(manual, 'w'), { cancelRequested: true });
      assert.equal(await jobs.markCancelled(manual, 'w'), true);
      assert.equal((await jobs.get(manual))?.status, 'cancelled');
      assert.equal(await jobs.complete(manual, 'w', 'late'), false, 'complete on a cancelled job is a no-op');
      assert.equal((await jobs.get(manual))?.status, 'cancelled');

      // Through a worker: the handler's signal aborts with reason "cancelled".
      let seen: unknown;
      const worker = new JobWorker(jobs, {
        queue: 'q',
        handler: async (_job, signal) => {
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          seen = signal.reason;
          return 'ignored';
        },
      }).start();
      try {
        const running = await jobs.enqueue('q', 'z');
        await waitFor('the job to start', statusIs(jobs, running, 'running'));
        assert.equal(await jobs.cancel(running), 'requested');
        const job = await waitFor('the job to be cancelled', statusIs(jobs, running, 'cancelled'));
        assert.equal(job.result, null);
        await waitFor('the handler to see the abort', async () => seen);
        assert.ok(seen instanceof JobAbortError);
        assert.equal(seen.kind, 'cancelled');
        await waitFor('the slot to free', async () => worker.active === 0);
      } finally {
        await worker.stop();
      }
    }));

    test('a timeout aborts the handler and fails the job naming the limit', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const jobs = subject.create(db!, { leaseMs: 3_000 });
      let seen: unknown;
      const worker = new JobWorker(jobs, {
        queue: 'q',
        handler: async (_job, signal) => {
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          seen = signal.reason;
          throw signal.reason;
        },
      }).start();
      try {
        const started = Date.now();
        const id = await jobs.enqueue('q', 'slow', { timeoutMs: 500, maxAttempts: 3 });
        const job = await waitFor('the job to fail', statusIs(jobs, id, 'failed'));
        assert.ok(Date.now() - started >= 500);
        assert.equal(job.error, 'timed out after 0.5 s');
        assert.equal(job.attempts, 1, 'a timeout is not retried');
        assert.ok(seen instanceof JobAbortError);
        assert.equal(seen.kind, 'timeout');
      } finally {
        await worker.stop();
      }
    }));

    test('recover() re-queues or fails jobs left running by a crashed process', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const clock = { now: 1_700_000_000_000 };
      const crashed = subject.create(db!, { workerId: 'old', now: () => clock.now });
      const once = await crashed.enqueue('q', 1);
      const twice = await crashed.enqueue('q', 2, { maxAttempts: 2 });
      const cancelled = await crashed.enqueue('q', 3, { maxAttempts: 2 });
      await crashed.claim('q');
      await crashed.claim('q');
      await crashed.claim('q');
      await crashed.cancel(cancelled);
      // Another replica's job, still heartbeating: not touched.
      const live = await crashed.enqueue('other', 4);
      clock.now += 31_000;
      const replica = subject.create(db!, { workerId: 'replica', now: () => clock.now });
      await replica.claim('other');

      const restarted = subject.create(db!, { workerId: 'new', now: () => clock.now });
      assert.deepEqual(await restarted.recover(), { requeued: 1, failed: 1, cancelled: 1 });
      assert.equal((await restarted.get(once))?.status, 'failed');
      assert.equal((await restarted.get(once))?.error, 'interrupted by a restart');
      assert.equal((await restarted.get(twice))?.status, 'queued');
      assert.equal((await restarted.get(cancelled))?.status, 'cancelled');
      assert.equal((await restarted.get(live))?.status, 'running');
      assert.equal((await restarted.get(live))?.leaseOwner, 'replica');
      const again = await restarted.claim('q');
      assert.equal(again?.id, twice);
      assert.equal(again?.attempts, 2);
      assert.deepEqual(await restarted.recover(), { requeued: 0, failed: 0, cancelled: 0 });
    }));

    test('a worker runs at most `concurrency` handlers, retries failures, and starts on notify', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const jobs = subject.create(db!);
      let running = 0;
      let peak = 0;
      const failedOnce = new Set<number>();
      const worker = new JobWorker<number, number>(jobs, {
        queue: 'q',
        concurrency: 2,
        backoffMs: 0,
        handler: async (job) => {
          running++;
          peak = Math.max(peak, running);
          try {
            await sleep(50);
            if (job.payload === 3 && !failedOnce.has(3)) {
              failedOnce.add(3);
              throw new Error('flaky');
            }
            return job.payload * 10;
          } finally {
            running--;
          }
        },
      }).start();
      try {
        const ids = [];
        for (let i = 0; i < 8; i++) ids.push(await jobs.enqueue('q', i, { maxAttempts: 2 }));
        await waitFor('all jobs to succeed', async () => (await jobs.list('q', { status: 'succeeded' })).length === 8);
        assert.equal(peak, 2);
        for (const [i, id] of ids.entries()) assert.equal((await jobs.get(id))?.result, i * 10);
        assert.equal((await jobs.get(ids[3]!))?.attempts, 2);
      } finally {
        await worker.stop();
      }

      // With a long poll interval, an enqueue in this process still starts the job at once.
      const started: number[] = [];
      const other = subject.create(db!);
      const lazy = new JobWorker(other, { queue: 'lazy', pollMs: 60_000, handler: async () => { started.push(Date.now()); } }).start();
      try {
        await sleep(100); // the worker is now asleep for a minute
        const at = Date.now();
        const id = await jobs.enqueue('lazy', null);
        await waitFor('the job to succeed', statusIs(jobs, id, 'succeeded'), 5_000);
        assert.ok(started[0]! - at < 1_000, `started after ${started[0]! - at} ms`);
      } finally {
        await lazy.stop();
      }
    }));

    test('stop() waits for running handlers, and aborts them after the grace period', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const jobs = subject.create(db!, { leaseMs: 600 });
      let finished = false;
      const worker = new JobWorker(jobs, {
        queue: 'q',
        handler: async () => {
          await sleep(800); // longer than the lease: heartbeats must keep it
          finished = true;
          return 'ok';
        },
      }).start();
      const id = await jobs.enqueue('q', null);
      await waitFor('the job to start', statusIs(jobs, id, 'running'));
      await worker.stop(5_000);
      assert.equal(finished, true);
      assert.equal(worker.active, 0);
      assert.equal((await jobs.get(id))?.status, 'succeeded');
      assert.equal((await jobs.get(id))?.attempts, 1);
      const after = await jobs.enqueue('q', null);
      await sleep(300);
      assert.equal((await jobs.get(after))?.status, 'queued', 'a stopped worker takes no new job');
      await jobs.cancel(after);

      // A handler that outlives the grace period sees "shutdown"; the job goes back to the queue.
      let reason: unknown;
      const stubborn = new JobWorker(jobs, {
        queue: 'q2',
        handler: async (_job, signal) => {
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
          reason = signal.reason;
          throw signal.reason;
        },
      }).start();
      const id2 = await jobs.enqueue('q2', null, { maxAttempts: 2 });
      await waitFor('the job to start', statusIs(jobs, id2, 'running'));
      const stopping = Date.now();
      await stubborn.stop(200);
      assert.ok(Date.now() - stopping >= 200);
      assert.ok(reason instanceof JobAbortError);
      assert.equal(reason.kind, 'shutdown');
      const requeued = await jobs.get(id2);
      assert.equal(requeued?.status, 'queued');
      assert.equal(requeued?.error, 'interrupted by worker shutdown');
    }));

    test('caller-chosen ids group jobs: list by id prefix (LIKE characters literal), getMany, purge of finished jobs', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const clock = { now: 1_700_000_000_000 };
      const jobs = subject.create(db!, { workerId: 'w', now: () => clock.now });
      // A millisecond apart: FIFO order is by enqueue time, then by id.
      for (const [queue, n, id] of [['runs', 1, 'run_a-0'], ['runs', 2, 'run_a-1'], ['runs', 3, 'runxa-0'], ['runs', 4, 'run_a%-0'], ['other', 5, 'run_a-9']] as const) {
        await jobs.enqueue(queue, n, { id });
        clock.now += 1;
      }
      const ids = (list: Job[]) => list.map((job) => job.id);
      assert.deepEqual(ids(await jobs.list('runs', { idPrefix: 'run_a-' })), ['run_a-0', 'run_a-1'], '_ is no wildcard; other queues are not listed');
      assert.deepEqual(ids(await jobs.list('runs', { idPrefix: 'run_a%' })), ['run_a%-0'], '% is no wildcard');
      assert.deepEqual(ids(await jobs.list('runs', { idPrefix: 'run_a-', limit: 1 })), ['run_a-0']);
      assert.equal((await jobs.claim('runs'))?.id, 'run_a-0');
      assert.equal(await jobs.complete('run_a-0', 'w'), true);
      assert.deepEqual(ids(await jobs.list('runs', { idPrefix: 'run_a-', status: ['queued', 'running'] })), ['run_a-1']);

      // getMany answers the ids that exist, also past 500 ids (bound-parameter limits).
      const many = [...Array.from({ length: 510 }, (_, i) => `missing-${i}`), 'run_a-1', 'runxa-0', 'run_a-9'];
      assert.deepEqual(ids(await jobs.getMany(many)).sort(), ['run_a-1', 'run_a-9', 'runxa-0']);
      assert.deepEqual(await jobs.getMany([]), []);
      assert.deepEqual((await jobs.getMany<number>(['run_a-1']))[0]?.payload, 2);

      // purge: finished jobs of that queue that finished before the cut-off; queued ones never.
      clock.now += 1_000;
      assert.equal(await jobs.cancel('runxa-0'), 'cancelled');
      assert.equal(await jobs.purge('runs', { finishedBefore: clock.now }), 1);
      assert.equal(await jobs.get('run_a-0'), null);
      assert.equal((await jobs.get('runxa-0'))?.status, 'cancelled');
      assert.equal(await jobs.purge('runs', { finishedBefore: clock.now + 60_000 }), 1);
      assert.deepEqual(ids(await jobs.list('runs')), ['run_a-1', 'run_a%-0']);
      assert.equal((await jobs.get('run_a-9'))?.status, 'queued');
      await jobs.enqueue('runs', 6, { id: 'run_a-0' });
      assert.equal((await jobs.get('run_a-0'))?.status, 'queued', 'a purged id can be used again');
    }));

    test('a handler error steers the retry: retryAfterMs is the back-off, retryable: false fails at once', { timeout: 60_000 }, () => withDatabase(subject, async (db) => {
      const jobs = subject.create(db!);
      const calls = new Map<string, number[]>();
      const worker = new JobWorker<string, string>(jobs, {
        queue: 'q',
        pollMs: 20,
        handler: async (job) => {
          calls.set(job.payload, [...(calls.get(job.payload) ?? []), Date.now()]);
          if (job.payload === 'later' && job.attempts === 1) throw Object.assign(new Error('try later'), { retryAfterMs: 400 });
          if (job.payload === 'never') throw Object.assign(new Error('bad input'), { retryable: false });
          return 'ok';
        },
      }).start();
      try {
        const later = await jobs.enqueue('q', 'later', { maxAttempts: 3 });
        const never = await jobs.enqueue('q', 'never', { maxAttempts: 3 });
        const failed = await waitFor('the non-retryable job to fail', statusIs(jobs, never, 'failed'));
        assert.equal(failed.attempts, 1);
        assert.equal(failed.error, 'bad input');
        const done = await waitFor('the retried job to succeed', statusIs(jobs, later, 'succeeded'));
        assert.equal(done.attempts, 2);
        assert.equal(done.result, 'ok');
        const [first, second] = calls.get('later')!;
        assert.ok(second! - first! >= 400, `retried after ${second! - first!} ms`);
      } finally {
        await worker.stop();
      }
    }));

    test('two workers on two handles run each job exactly once', { timeout: 60_000 }, () => withDatabase(subject, async (a, b) => {
      const queues = [subject.create(a!), subject.create(b!)];
      const runs = new Map<number, number>();
      const workers = queues.map((queue) => new JobWorker<number>(queue, {
        queue: 'q',
        concurrency: 3,
        pollMs: 10,
        handler: async (job) => {
          runs.set(job.payload, (runs.get(job.payload) ?? 0) + 1);
          await sleep(5);
        },
      }).start());
      try {
        for (let i = 0; i < 40; i++) await queues[i % 2]!.enqueue('q', i);
        const done = await waitFor('all jobs to succeed', async () => {
          const list = await queues[0]!.list('q', { status: 'succeeded' });
          return list.length === 40 && list;
        }, 30_000);
        assert.equal(runs.size, 40);
        assert.ok([...runs.values()].every((n) => n === 1), 'no job ran twice');
        assert.ok(done.every((job) => job.attempts === 1));
      } finally {
        await Promise.all(workers.map((worker) => worker.stop()));
      }
    }, 2));
  });
}
