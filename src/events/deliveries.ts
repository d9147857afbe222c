/**
 * @module events/deliveries
 * Webhook deliveries: one `webhook_deliveries` row per event and subscription (its status and
 * attempt log, what the API shows), sent by a job of the `webhook-deliveries` queue
 * (db/job-queue) with the same id. The queue's lease is what keeps two replicas from sending
 * one delivery at once; a sender that dies mid-send stops heartbeating, its lease runs out and
 * another worker sends again (at-least-once). The row and its job are written in the
 * publisher's transaction, so a stored event is delivered even if the process dies right after.
 *
 * An attempt is recorded only while the job is still this worker's (checked by a heartbeat
 * just before, and by the row's attempt count not having moved), so a stalled sender's late
 * answer never overwrites the new owner's. Failures (non-2xx, timeout, connection error)
 * retry with exponential backoff and jitter (`baseMs`·2^(n-1), at most `maxMs`, times
 * 0.75–1) until `attempts` attempts, then `failed`. A send cut short by a shutdown is handed
 * back due at once and not counted.
 *
 * Outgoing request, one per attempt:
 *
 *   POST <url>
 *   Content-Type: application/json
 *   User-Agent: Slipway-Hookshot/1
 *   X-Slipway-Event: <type>
 *   X-Slipway-Delivery: <delivery id>            (the same on every retry of it)
 *   X-Slipway-Timestamp: <unix seconds of this attempt>
 *   X-Slipway-Signature-256: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
 *
 *   {"id":…,"type":…,"namespace":…,"subject":…,"createdAt":…,"data":{…}}
 *
 * The signed string is the timestamp header's value, a dot, and the raw body bytes (see
 * `./signature.ts`, which also has `verifySignature` for receivers).
 */
import http from 'node:http';
import https from 'node:https';
import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { Job, JobQueueApi } from '../db/job-queue.js';
import { JobWorker } from '../db/job-worker.js';
import type { Tables } from '../db/schema.js';
import type { Vault } from '../vault/vault.js';
import { iso, newId } from './ids.js';
import { pingType, toEvent } from './outbox.js';
import { signPayload } from './signature.js';

export interface DeliveryAttempt {
  /** When the attempt started (RFC 3339). */
  at: string;
  /** The HTTP status, null when no response came. */
  status: number | null;
  /** Why it failed without a response (timeout, connection refused, …). */
  error: string | null;
  durationMs: number;
  /** The first 1 KiB of the response body. */
  responseBody: string | null;
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed';

export interface DeliveryView {
  id: string;
  webhookId: string;
  eventId: string;
  /** Null once the event was pruned. */
  eventType: string | null;
  status: DeliveryStatus;
  attempts: number;
  /** When the next attempt is due (pending only). */
  nextAttemptAt: string | null;
  lastStatus: number | null;
  lastError: string | null;
  createdAt: string;
  finishedAt: string | null;
  log: DeliveryAttempt[];
}

export interface DeliverySettings {
  /** Attempts in all, the first included. */
  attempts: number;
  /** Delay after the first failure. */
  baseMs: number;
  /** Longest delay. */
  maxMs: number;
  /** Whole-request limit of one attempt. */
  deliveryTimeoutMs: number;
  /** How often the worker looks for due deliveries (other replicas' too). */
  tickMs: number;
  /** Sends at once. */
  concurrency: number;
  /** How long close() waits for sends in flight before cutting them short. */
  closeTimeoutMs: number;
  /** Metrics (main.ts): one recorded attempt — delivered, to be retried, or failed for good. */
  onAttempt?: (outcome: 'delivered' | 'retried' | 'failed') => void;
}

/** The job queue the deliveries' jobs are in; a job's id is its delivery's. */
export const deliveryQueue = 'webhook-deliveries';

interface DeliveryJob {
  deliveryId: string;
}

/** Claims a delivery's job may use beyond its attempts, for sends cut short (shutdowns, lost workers). */
const interruptionAllowance = 10;
const maxLogEntries = 50;
const responseBodyLimit = 1024;
const finishedJob = new Set(['succeeded', 'failed', 'cancelled']);

type DeliveryRow = {
  id: string; subscription_id: string; event_id: string; status: string; attempts: number; next_attempt_at: number | null;
  last_status: number | null; last_error: string | null; log: string; created_at: number; finished_at: number | null;
};

interface AttemptOutcome {
  status: number | null;
  error: string | null;
  responseBody: string | null;
  durationMs: number;
}

/** The delivery being sent and the attempt count it was read with. */
interface Claim {
  id: string;
  attempts: number;
}

export function deliveryView(row: DeliveryRow & { event_type: string | null }): DeliveryView {
  return {
    id: row.id, webhookId: row.subscription_id, eventId: row.event_id, eventType: row.event_type, status: row.status as DeliveryStatus,
    attempts: row.attempts,
    nextAttemptAt: row.status === 'pending' && row.next_attempt_at !== null ? iso(row.next_attempt_at) : null,
    lastStatus: row.last_status, lastError: row.last_error, createdAt: iso(row.created_at),
    finishedAt: row.finished_at === null ? null : iso(row.finished_at), log: JSON.parse(row.log) as DeliveryAttempt[],
  };
}

export class WebhookDeliveries {
  private worker: JobWorker<DeliveryJob> | undefined;
  private closed = false;

  constructor(
    private readonly db: Database,
    private readonly vault: Vault,
    private readonly jobs: JobQueueApi,
    private readonly settings: DeliverySettings,
    private readonly logger?: Logger,
  ) {}

  /**
   * Stores one delivery of `eventId` per subscription, and its job, inside the caller's
   * transaction; call `notify` once it has committed. Returns the rows.
   */
  async add(trx: Kysely<Tables>, subscriptionIds: readonly string[], eventId: string, now: number): Promise<DeliveryRow[]> {
    if (subscriptionIds.length === 0) return [];
    const rows: DeliveryRow[] = subscriptionIds.map((subscriptionId) => ({
      id: newId('whd', now), subscription_id: subscriptionId, event_id: eventId, status: 'pending', attempts: 0,
      next_attempt_at: now, last_status: null, last_error: null, log: '[]', created_at: now, finished_at: null,
    }));
    await trx.insertInto('webhook_deliveries').values(rows).execute();
    for (const row of rows) await this.enqueue(row.id, trx);
    return rows;
  }

  /** Wakes this process's senders (after a commit that added deliveries). */
  notify(): void {
    this.jobs.notify(deliveryQueue);
  }

  start(): void {
    if (this.worker || this.closed) return;
    this.worker = new JobWorker<DeliveryJob>(this.jobs, {
      queue: deliveryQueue,
      concurrency: this.settings.concurrency,
      pollMs: this.settings.tickMs,
      graceMs: this.settings.closeTimeoutMs,
      handler: (job, signal, heartbeat) => this.deliver(job, signal, heartbeat),
      onError: (error) => this.logger?.warn({ err: error }, 'webhook delivery worker'),
    }).start();
  }

  /** Stops sending: sends in flight get `closeTimeoutMs`, then are cut short and handed back. */
  async close(): Promise<void> {
    this.closed = true;
    await this.worker?.stop();
  }

  /**
   * Pending deliveries whose job is missing (stored before deliveries had jobs, or purged) get
   * one again; those whose job ended without them (it ran out of claims) end failed.
   */
  async reconcile(): Promise<{ requeued: number; failed: number }> {
    const counts = { requeued: 0, failed: 0 };
    const page = 500;
    let cursor = '';
    for (;;) {
      const rows = await this.db.kysely.selectFrom('webhook_deliveries').select(['id', 'attempts'])
        .where('status', '=', 'pending').where('id', '>', cursor).orderBy('id').limit(page).execute();
      const jobs = new Map((await this.jobs.getMany(rows.map((row) => row.id))).map((job) => [job.id, job]));
      for (const row of rows) {
        const job = jobs.get(row.id);
        if (!job) {
          // Another replica may have done it a moment ago: a duplicate id is then refused.
          if (await this.enqueue(row.id).then(() => true, () => false)) counts.requeued++;
        } else if (finishedJob.has(job.status)) {
          if (await this.end({ id: row.id, attempts: row.attempts }, `its job ended: ${job.error ?? job.status}`)) counts.failed++;
        }
      }
      if (rows.length < page) break;
      cursor = rows[rows.length - 1]!.id;
    }
    if (counts.requeued > 0) this.notify();
    if (counts.requeued + counts.failed > 0) this.logger?.warn(counts, 'webhook deliveries reconciled with their jobs');
    return counts;
  }

  /** Drops the jobs of deliveries that finished before `before` (the rows keep what the API shows). */
  async purgeJobs(before: number): Promise<number> {
    return this.jobs.purge(deliveryQueue, { finishedBefore: before });
  }

  private enqueue(id: string, trx?: Kysely<Tables>): Promise<string> {
    return this.jobs.enqueue<DeliveryJob>(deliveryQueue, { deliveryId: id }, {
      id, trx, maxAttempts: this.settings.attempts + interruptionAllowance,
      // The send has its own limit; this one only catches a sender stuck elsewhere (e.g. the db).
      timeoutMs: this.settings.deliveryTimeoutMs + 60_000,
    });
  }

  /** The job handler: one attempt. Throws to have the queue retry it (or to fail the job with the delivery). */
  private async deliver(job: Job<DeliveryJob>, signal: AbortSignal, heartbeat: () => Promise<void>): Promise<void> {
    const row = await this.db.kysely.selectFrom('webhook_deliveries as d')
      .leftJoin('events as e', 'e.id', 'd.event_id')
      .leftJoin('webhook_subscriptions as s', 's.id', 'd.subscription_id')
      .select(['d.id', 'd.subscription_id', 'd.status', 'd.attempts', 'e.id as event_id', 'e.namespace', 'e.type', 'e.subject', 'e.data', 'e.created_at',
        's.url', 's.secret', 's.active'])
      .where('d.id', '=', job.payload.deliveryId).executeTakeFirst();
    // Removed with its webhook, or already ended.
    if (!row || row.status !== 'pending') return;
    const claim: Claim = { id: row.id, attempts: row.attempts };
    if (row.event_id === null || row.url === null || row.secret === null) return this.endWithout(claim, 'the event or the webhook no longer exists');
    if (row.active !== 1 && row.type !== pingType) return this.endWithout(claim, 'the webhook is inactive');
    const event = toEvent({ id: row.event_id, namespace: row.namespace!, type: row.type!, subject: row.subject ?? null, data: row.data!, created_at: row.created_at! });
    const body = JSON.stringify({ id: event.id, type: event.type, namespace: event.namespace, subject: event.subject, createdAt: event.createdAt, data: event.data });
    let secret: string;
    try {
      secret = await this.vault.open(row.secret, `webhook:${row.subscription_id}`);
    } catch (error) {
      // Counted as a failed attempt, so a secret that cannot be opened ends the delivery in time.
      return this.record(claim, Date.now(), { status: null, error: `cannot open the webhook secret: ${(error as Error).message}`, responseBody: null, durationMs: 0 }, signal, heartbeat);
    }
    const started = Date.now();
    const timestamp = Math.floor(started / 1000);
    const outcome = await send(row.url, {
      'content-type': 'application/json',
      'user-agent': 'Slipway-Hookshot/1',
      'x-slipway-event': event.type,
      'x-slipway-delivery': claim.id,
      'x-slipway-timestamp': String(timestamp),
      'x-slipway-signature-256': signPayload(secret, timestamp, body),
    }, body, this.settings.deliveryTimeoutMs, signal);
    await this.record(claim, started, outcome, signal, heartbeat);
  }

  private async record(claim: Claim, started: number, outcome: AttemptOutcome, signal: AbortSignal, heartbeat: () => Promise<void>): Promise<void> {
    // Still ours? A stalled sender whose lease ran out drops its result for the new owner's.
    if (!signal.aborted) await heartbeat();
    if (signal.aborted) {
      const kind = (signal.reason as { kind?: string } | undefined)?.kind;
      if (kind === 'lease-lost') this.logger?.warn({ delivery: claim.id }, 'webhook delivery lease lost before the attempt was recorded');
      // Shutting down: the queue hands the job back due at once, and the attempt is not counted.
      throw signal.reason;
    }
    const now = Date.now();
    const ok = outcome.status !== null && outcome.status >= 200 && outcome.status < 300;
    const attempts = claim.attempts + 1;
    const attempt: DeliveryAttempt = { at: iso(started), ...outcome };
    let status: DeliveryStatus;
    let backoff = 0;
    if (ok) status = 'succeeded';
    else if (attempts >= this.settings.attempts) status = 'failed';
    else {
      status = 'pending';
      backoff = this.backoff(attempts);
    }
    const lastError = ok ? null : outcome.error ?? `HTTP ${outcome.status}`;
    const recorded = await this.db.write(async (trx) => {
      const current = await trx.selectFrom('webhook_deliveries').select(['log'])
        .where('id', '=', claim.id).where('status', '=', 'pending').where('attempts', '=', claim.attempts).executeTakeFirst();
      if (!current) return false;
      const log = [...(JSON.parse(current.log) as DeliveryAttempt[]), attempt].slice(-maxLogEntries);
      await trx.updateTable('webhook_deliveries').set({
        status, attempts, next_attempt_at: status === 'pending' ? now + backoff : null, last_status: outcome.status, last_error: lastError,
        log: JSON.stringify(log), finished_at: status === 'pending' ? null : now,
      }).where('id', '=', claim.id).execute();
      return true;
    });
    if (!recorded) {
      this.logger?.warn({ delivery: claim.id }, 'webhook delivery recorded by another sender meanwhile');
      return;
    }
    this.settings.onAttempt?.(status === 'succeeded' ? 'delivered' : status === 'pending' ? 'retried' : 'failed');
    if (status === 'pending') throw Object.assign(new Error(lastError ?? 'failed'), { retryAfterMs: backoff });
    if (status === 'failed') {
      this.logger?.warn({ delivery: claim.id, attempts, error: lastError }, 'webhook delivery failed for good');
      throw Object.assign(new Error(lastError ?? 'failed'), { retryable: false });
    }
  }

  /** Ends a delivery as failed without sending (its job fails with it). */
  private async endWithout(claim: Claim, error: string): Promise<void> {
    await this.end(claim, error);
    throw Object.assign(new Error(error), { retryable: false });
  }

  /** Marks a pending delivery failed unless it moved on meanwhile; true when it did. */
  private async end(claim: Claim, error: string): Promise<boolean> {
    const now = Date.now();
    const updated = await this.db.write((trx) => trx.updateTable('webhook_deliveries').set({ status: 'failed', next_attempt_at: null, last_error: error, finished_at: now })
      .where('id', '=', claim.id).where('status', '=', 'pending').where('attempts', '=', claim.attempts).executeTakeFirst());
    return Number(updated.numUpdatedRows) === 1;
  }

  /** Delay after the `n`-th failed attempt: exponential, capped, times 0.75–1 (so it never shrinks between attempts). */
  private backoff(n: number): number {
    const full = Math.min(this.settings.maxMs, this.settings.baseMs * 2 ** Math.min(n - 1, 40));
    return Math.round(full * (0.75 + Math.random() * 0.25));
  }
}

function send(url: string, headers: Record<string, string>, body: string, timeoutMs: number, signal: AbortSignal): Promise<AttemptOutcome> {
  const started = Date.now();
  const payload = Buffer.from(body, 'utf8');
  return new Promise((resolve) => {
    let settled = false;
    const finish = (outcome: Omit<AttemptOutcome, 'durationMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve({ ...outcome, durationMs: Date.now() - started });
    };
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      resolve({ status: null, error: 'invalid URL', responseBody: null, durationMs: 0 });
      return;
    }
    const client = target.protocol === 'https:' ? https : http;
    const request = client.request({
      method: 'POST',
      protocol: target.protocol,
      hostname: target.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: target.port || undefined,
      path: `${target.pathname}${target.search}`,
      headers: { ...headers, 'content-length': String(payload.length) },
      agent: false,
    });
    const timer = setTimeout(() => {
      request.destroy(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onAbort = () => request.destroy(new Error('abandoned: the server is shutting down'));
    signal.addEventListener('abort', onAbort, { once: true });
    request.on('error', (error) => finish({ status: null, error: error.message || String(error), responseBody: null }));
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = () => finish({ status: response.statusCode ?? null, error: null, responseBody: Buffer.concat(chunks).subarray(0, responseBodyLimit).toString('utf8') });
      response.on('data', (chunk: Buffer) => {
        if (size < responseBodyLimit) chunks.push(chunk);
        size += chunk.length;
        if (size >= responseBodyLimit) {
          done();
          response.destroy();
        }
      });
      response.on('end', done);
      response.on('error', () => done());
      response.on('close', done);
    });
    request.end(payload);
  });
}
