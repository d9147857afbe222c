/**
 * @module db/job-worker
 * The consuming side of a JobQueue: polls `claim` with a concurrency limit (and wakes at once
 * on an in-process enqueue), heartbeats the lease, enforces the job's timeout and cancellation
 * through an AbortSignal, records the outcome, and stops cleanly.
 *
 * A handler's thrown error fails the attempt; it is retried while attempts remain unless the
 * error says `retryable: false`, after `retryAfterMs` when the error gives one (else the
 * worker's `backoffMs`, else the queue's exponential default); a retry with a known back-off
 * wakes the worker when it falls due instead of waiting for the next poll.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { LeaseLostError, type Job, type JobQueueApi } from './job-queue.js';

export type JobAbortKind = 'cancelled' | 'timeout' | 'lease-lost' | 'shutdown';

/** The reason on the handler's AbortSignal. */
export class JobAbortError extends SlipwayError {
  constructor(readonly kind: JobAbortKind, message: string) {
    super('JOB_ABORTED', message);
    this.name = 'JobAbortError';
  }
}

/**
 * Does the work of one job. It should stop soon after `signal` aborts (`signal.reason` is a
 * JobAbortError); `heartbeat` extends the lease on demand (the worker also does it on a timer).
 * A thrown error fails the attempt (retried while attempts remain).
 */
export type JobHandler<P = unknown, R = unknown> = (job: Job<P>, signal: AbortSignal, heartbeat: () => Promise<void>) => Promise<R>;

export interface JobWorkerOptions<P, R> {
  queue: string;
  handler: JobHandler<P, R>;
  /** Jobs run at once; default 1. */
  concurrency?: number;
  /** How often to look for work when not notified; default 200 ms. */
  pollMs?: number;
  /** stop(): how long running handlers may finish before they are aborted; default 10 s. */
  graceMs?: number;
  /** Back-off before a failed job is retried; default: JobQueue.fail's exponential one. */
  backoffMs?: number;
  /** Infrastructure errors (db unreachable, …); default: a process warning. */
  onError?: (error: unknown) => void;
}

interface Run {
  done: Promise<void>;
  abort(kind: JobAbortKind, message: string): void;
  /** Stop heartbeating and give up on the job: its lease runs out and another worker takes it. */
  abandon(): void;
}

export class JobWorker<P = unknown, R = unknown> {
  private readonly runs = new Set<Run>();
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** A notify arrived while not sleeping (e.g. during a claim): the next sleep returns at once. */
  private woken = false;
  private unsubscribe: (() => void) | undefined;
  /** Wake-ups for retries that fall due between polls. */
  private readonly wakeTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly jobs: JobQueueApi, private readonly options: JobWorkerOptions<P, R>) {
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError('concurrency must be an integer ≥ 1');
  }

  start(): this {
    if (this.loopDone || this.stopping) return this;
    this.unsubscribe = this.jobs.onNotify(this.options.queue, () => this.notify());
    this.loopDone = this.loop();
    return this;
  }

  /** Handlers running now. */
  get active(): number {
    return this.runs.size;
  }

  /** Look for work now instead of at the next poll. */
  notify(): void {
    this.woken = true;
    this.wake?.();
  }

  /**
   * Takes no new jobs, waits up to `graceMs` for running handlers, then aborts them (reason
   * `shutdown`) and waits up to `graceMs` again. A handler that still has not returned is
   * abandoned: its lease runs out and another worker (or `recover()`) takes the job.
   */
  async stop(graceMs = this.options.graceMs ?? 10_000): Promise<void> {
    this.stopping = true;
    this.unsubscribe?.();
    for (const timer of this.wakeTimers) clearTimeout(timer);
    this.wakeTimers.clear();
    this.notify();
    await this.loopDone;
    const allDone = () => Promise.all([...this.runs].map((run) => run.done));
    if (await within(allDone(), graceMs)) return;
    for (const run of this.runs) run.abort('shutdown', 'the worker is stopping');
    if (await within(allDone(), graceMs)) return;
    for (const run of this.runs) run.abandon();
  }

  private async loop(): Promise<void> {
    const concurrency = this.options.concurrency ?? 1;
    const pollMs = this.options.pollMs ?? 200;
    while (!this.stopping) {
      if (this.runs.size >= concurrency) {
        await this.sleep(Infinity); // a finishing run wakes us
        continue;
      }
      let job: Job<P> | null;
      try {
        job = await this.jobs.claim<P>(this.options.queue);
      } catch (error) {
        this.report(error);
        await this.sleep(pollMs);
        continue;
      }
      // Claimed even if stop() began meanwhile: it is tracked now, so stop() waits for it.
      if (job) this.run(job);
      else await this.sleep(pollMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    if (this.woken || this.stopping) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(() => this.wake?.(), ms) : undefined;
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        this.woken = false;
        resolve();
      };
    });
  }

  private run(job: Job<P>): void {
    const { jobs } = this;
    const workerId = jobs.workerId;
    const controller = new AbortController();
    let settled = false; // the outcome is recorded (or deliberately left to the lease)
    let heartbeatTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;
    const writes: Promise<unknown>[] = [];

    const abort = (kind: JobAbortKind, message: string) => {
      if (!controller.signal.aborted) controller.abort(new JobAbortError(kind, message));
    };
    // Only the first outcome counts: e.g. a result returned after the timeout is discarded.
    const record = (write: () => Promise<unknown>) => {
      if (settled) return;
      settled = true;
      clearTimeout(heartbeatTimer);
      clearTimeout(timeoutTimer);
      writes.push(write().catch((error) => this.report(error)));
    };

    const heartbeat = async () => {
      if (settled) return;
      try {
        const { cancelRequested } = await jobs.heartbeat(job.id, workerId);
        if (cancelRequested) {
          abort('cancelled', 'the job was cancelled');
          record(() => jobs.markCancelled(job.id, workerId));
        }
      } catch (error) {
        if (error instanceof LeaseLostError) {
          abort('lease-lost', 'the job was taken over by another worker');
          record(async () => undefined);
        } else {
          this.report(error); // transient: the lease still has time, try again next beat
        }
      }
    };
    const beatEvery = Math.max(1, Math.floor(jobs.leaseMs / 3));
    const scheduleBeat = () => {
      heartbeatTimer = setTimeout(() => { void heartbeat().then(() => { if (!settled) scheduleBeat(); }); }, beatEvery);
    };
    scheduleBeat();

    if (job.timeoutMs > 0) {
      // Enforced here, not only by the handler: a handler that ignores the signal still ends
      // up failed, and its slot stays taken until it returns.
      timeoutTimer = setTimeout(() => {
        const message = `timed out after ${job.timeoutMs / 1000} s`;
        abort('timeout', message);
        record(() => jobs.fail(job.id, workerId, message));
      }, job.timeoutMs);
    }

    const run: Run = {
      done: Promise.resolve(),
      abort,
      abandon: () => record(async () => undefined),
    };
    run.done = (async () => {
      try {
        const result = await this.options.handler(job, controller.signal, heartbeat);
        record(() => jobs.complete(job.id, workerId, result));
      } catch (error) {
        const reason: unknown = controller.signal.reason;
        const message = reason instanceof JobAbortError && reason.kind === 'shutdown'
          ? 'interrupted by worker shutdown'
          : error instanceof Error ? error.message : String(error);
        const hints = error as { retryable?: boolean; retryAfterMs?: number } | undefined;
        // A handler marks failures that would fail again the same way (`retryable: false`).
        const retry = hints?.retryable !== false;
        const backoffMs = reason instanceof JobAbortError && reason.kind === 'shutdown' ? 0 : hints?.retryAfterMs ?? this.options.backoffMs;
        record(async () => {
          const recorded = await jobs.fail(job.id, workerId, message, { retry, backoffMs });
          // A retry of this worker's is taken when it is due, not at a later poll.
          if (recorded && retry && backoffMs !== undefined && backoffMs > 0) this.wakeIn(backoffMs);
        });
      }
      await Promise.all(writes);
    })().finally(() => {
      clearTimeout(heartbeatTimer);
      clearTimeout(timeoutTimer);
      this.runs.delete(run);
      this.notify();
    });
    this.runs.add(run);
  }

  private wakeIn(ms: number): void {
    if (this.stopping) return;
    const timer = setTimeout(() => {
      this.wakeTimers.delete(timer);
      this.notify();
    }, ms);
    timer.unref();
    this.wakeTimers.add(timer);
  }

  private report(error: unknown): void {
    if (this.options.onError) this.options.onError(error);
    else process.emitWarning(`job worker (${this.options.queue}): ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** True when `promise` settled within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
