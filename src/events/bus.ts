/**
 * @module events/bus
 * Domain events: a durable outbox, live listeners in this process, and outgoing webhooks.
 *
 * `publish` stores the event in `events` and one `webhook_deliveries` row per active
 * subscription of the namespace whose patterns match, in ONE transaction: an event that is
 * stored is delivered, at least once, even if the process dies right after. Then it tells
 * this process's listeners (the SSE streams) and wakes the delivery loop.
 *
 * The delivery loop (`start`) sends due `pending` deliveries. A delivery is *claimed* by a
 * conditional update of its `next_attempt_at` (the due time it was read with) to a lease
 * expiry, so of two replicas reading the same row only one claims it; a replica that dies
 * mid-send leaves a lease that runs out, and the delivery is due again (at-least-once). The
 * attempt is recorded only while the lease is still ours (`next_attempt_at` = our expiry).
 * Failures (non-2xx, timeout, connection error) retry with exponential backoff and jitter
 * (`baseMs`·2^(n-1), at most `maxMs`, times 0.75–1) until `attempts` attempts, then `failed`.
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
 * `./signature.ts`, which also has `verifySignature` for receivers). Secrets are sealed by the
 * vault (context `webhook:<id>`) and never shown after creation, only a hint (last 4 chars).
 *
 * `ping` events go to one webhook only and are not part of the event feed (list, streams,
 * listeners). Events and finished deliveries older than `retention.maxAgeMs` (7 days) or
 * beyond the newest `maxEvents`/`maxDeliveries` are pruned hourly by the loop.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { Tables } from '../db/schema.js';
import type { Vault } from '../vault/vault.js';
import { eventTypeProblem, likeOf, matchesAny, patternProblem, webhookUrlProblem } from './patterns.js';
import { signPayload } from './signature.js';

export interface DomainEvent {
  id: string;
  namespace: string;
  type: string;
  subject: string | null;
  data: Record<string, unknown>;
  /** RFC 3339 UTC. */
  createdAt: string;
}

export interface WebhookInput {
  url: string;
  /** Patterns: `run.*`, `deploy.succeeded`, `*`. */
  events: string[];
  /** Generated (and returned once) when absent. */
  secret?: string;
  /** Default true. */
  active?: boolean;
}

export interface WebhookPatch {
  url?: string;
  events?: string[];
  /** Replaces the secret (not echoed). */
  secret?: string;
  /** Generates a new secret, returned once in the answer. */
  rotateSecret?: boolean;
  active?: boolean;
}

export interface WebhookView {
  id: string;
  namespace: string;
  url: string;
  events: string[];
  active: boolean;
  /** `****` and the secret's last 4 characters. */
  secretHint: string;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

/** The answer to a create (or a rotation): the only time the secret is shown. */
export interface WebhookWithSecret extends WebhookView {
  secret: string;
}

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

export interface EventListOptions {
  /** Only events after this id (exclusive), oldest first; without it the newest `limit` events, oldest first. */
  after?: string;
  /** Patterns; any match. */
  types?: string[];
  /** Default 100, at most 1000. */
  limit?: number;
}

export interface EventBusOptions {
  db: Database;
  vault: Vault;
  logger?: Logger;
  retry?: {
    /** Attempts in all, the first included; default 6. */
    attempts?: number;
    /** Delay after the first failure; default 2 s. */
    baseMs?: number;
    /** Longest delay; default 10 min. */
    maxMs?: number;
  };
  /** Whole-request limit of one attempt; default 10 s. */
  deliveryTimeoutMs?: number;
  /** How often the loop looks for due deliveries (other replicas' too); default 1 s. */
  tickMs?: number;
  /** Sends at once; default 16. */
  concurrency?: number;
  /** How long close() waits for sends in flight before abandoning them (they are sent again later); default 5 s. */
  closeTimeoutMs?: number;
  retention?: {
    /** Default 7 days. */
    maxAgeMs?: number;
    /** Newest events kept at most; default 100 000. */
    maxEvents?: number;
    /** Newest finished deliveries kept at most; default 100 000. */
    maxDeliveries?: number;
  };
}

/** Bad input; the message starts with the field: `url: must be …`. */
export class EventInputError extends Error {
  override readonly name = 'EventInputError';
}
export class EventNotFoundError extends Error {
  override readonly name = 'EventNotFoundError';
}
export class EventConflictError extends Error {
  override readonly name = 'EventConflictError';
}

const pingType = 'ping';
const maxWebhooksPerNamespace = 100;
const maxPatterns = 50;
const maxLogEntries = 50;
const responseBodyLimit = 1024;
const pruneEveryMs = 60 * 60 * 1000;
const namespacePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const cursorPattern = /^[A-Za-z0-9_-]{1,100}$/;

// ---------------------------------------------------------------------------------------------
// ids: `<prefix>_<9 base36 ms><4 base36 sequence><random>`, so they sort by creation time.

let lastIdTime = 0;
let idSequence = 0;

function time36(ms: number): string {
  return Math.max(0, Math.floor(ms)).toString(36).padStart(9, '0');
}

function newId(prefix: string, now: number): string {
  if (now === lastIdTime) idSequence++;
  else { lastIdTime = now; idSequence = 0; }
  return `${prefix}_${time36(now)}${idSequence.toString(36).padStart(4, '0')}${randomBytes(8).toString('base64url')}`;
}

/** Below every id made at or after `ms`. */
export function eventIdFloor(ms: number): string {
  return `ev_${time36(ms)}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function generateSecret(): string {
  return `whsec_${randomBytes(24).toString('base64url')}`;
}

function secretProblem(secret: unknown): string | null {
  if (typeof secret !== 'string') return 'must be a string';
  if (secret.length < 16 || secret.length > 256) return 'must be 16 to 256 characters';
  if (!/^[\x21-\x7e]+$/.test(secret)) return 'must be printable ASCII without spaces';
  return null;
}

/** Validates webhook fields; throws EventInputError naming the first bad one. */
function checkWebhookFields(input: { url?: unknown; events?: unknown; secret?: unknown; active?: unknown }): void {
  if (input.url !== undefined) {
    const problem = webhookUrlProblem(input.url);
    if (problem) throw new EventInputError(`url: ${problem}`);
  }
  if (input.events !== undefined) {
    if (!Array.isArray(input.events) || input.events.length === 0) throw new EventInputError('events: must be a non-empty array of patterns');
    if (input.events.length > maxPatterns) throw new EventInputError(`events: at most ${maxPatterns} patterns`);
    input.events.forEach((pattern, i) => {
      const problem = patternProblem(pattern);
      if (problem) throw new EventInputError(`events.${i}: ${problem}`);
    });
  }
  if (input.secret !== undefined) {
    const problem = secretProblem(input.secret);
    if (problem) throw new EventInputError(`secret: ${problem}`);
  }
  if (input.active !== undefined && typeof input.active !== 'boolean') throw new EventInputError('active: must be a boolean');
}

function checkNamespace(namespace: string): void {
  if (!namespacePattern.test(namespace)) throw new EventInputError('namespace: not a namespace name');
}

function checkTypes(types: readonly string[] | undefined, field = 'type'): void {
  for (const pattern of types ?? []) {
    const problem = patternProblem(pattern);
    if (problem) throw new EventInputError(`${field}: ${problem}`);
  }
}

function toEvent(row: { id: string; namespace: string; type: string; subject: string | null; data: string; created_at: number }): DomainEvent {
  return { id: row.id, namespace: row.namespace, type: row.type, subject: row.subject, data: JSON.parse(row.data) as Record<string, unknown>, createdAt: iso(row.created_at) };
}

interface Claim {
  id: string;
  attempts: number;
  /** Our lease: `next_attempt_at` while we hold the delivery. */
  leaseUntil: number;
}

interface AttemptOutcome {
  status: number | null;
  error: string | null;
  responseBody: string | null;
  durationMs: number;
}

// ---------------------------------------------------------------------------------------------

export class EventBus {
  /** Webhook subscriptions of a namespace: CRUD, delivery log, redeliver, ping. */
  readonly webhooks: WebhookSubscriptions;

  private readonly db: Database;
  private readonly vault: Vault;
  private readonly logger: Logger | undefined;
  private readonly listeners = new Set<(event: DomainEvent) => void>();
  private readonly attempts: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly deliveryTimeoutMs: number;
  private readonly tickMs: number;
  private readonly concurrency: number;
  private readonly closeTimeoutMs: number;
  private readonly leaseMs: number;
  private readonly retention: { maxAgeMs: number; maxEvents: number; maxDeliveries: number };

  private running = false;
  private closing = false;
  private closed: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = Infinity;
  private passing: Promise<void> | undefined;
  private wakeRequested = false;
  private lastPrune = 0;
  /** Sends in flight: delivery id → its abort controller and settle promise. */
  private readonly inFlight = new Map<string, { abort: AbortController; done: Promise<void> }>();

  constructor(deps: EventBusOptions) {
    this.db = deps.db;
    this.vault = deps.vault;
    this.logger = deps.logger;
    this.attempts = Math.max(1, Math.floor(deps.retry?.attempts ?? 6));
    this.baseMs = Math.max(1, deps.retry?.baseMs ?? 2000);
    this.maxMs = Math.max(this.baseMs, deps.retry?.maxMs ?? 10 * 60_000);
    this.deliveryTimeoutMs = Math.max(1, deps.deliveryTimeoutMs ?? 10_000);
    this.tickMs = Math.max(5, deps.tickMs ?? 1000);
    this.concurrency = Math.max(1, deps.concurrency ?? 16);
    this.closeTimeoutMs = Math.max(0, deps.closeTimeoutMs ?? 5000);
    this.leaseMs = this.deliveryTimeoutMs + 60_000;
    this.retention = {
      maxAgeMs: deps.retention?.maxAgeMs ?? 7 * 24 * 60 * 60 * 1000,
      maxEvents: deps.retention?.maxEvents ?? 100_000,
      maxDeliveries: deps.retention?.maxDeliveries ?? 100_000,
    };
    this.webhooks = new WebhookSubscriptions(this.db, this.vault, () => this.wake());
  }

  // ---- events ----

  async publish(namespace: string, type: string, data: Record<string, unknown>, subject?: string): Promise<DomainEvent> {
    checkNamespace(namespace);
    const problem = eventTypeProblem(type);
    if (problem) throw new EventInputError(`type: ${problem}`);
    if (type === pingType) throw new EventInputError('type: "ping" is reserved for webhook pings');
    if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new EventInputError('data: must be a JSON object');
    const now = Date.now();
    const event: DomainEvent = { id: newId('ev', now), namespace, type, subject: subject ?? null, data, createdAt: iso(now) };
    const json = JSON.stringify(data);
    const queued = await this.db.write(async (trx) => {
      await trx.insertInto('events').values({ id: event.id, namespace, type, subject: event.subject, data: json, created_at: now }).execute();
      const subscriptions = await trx.selectFrom('webhook_subscriptions').select(['id', 'events'])
        .where('namespace', '=', namespace).where('active', '=', 1).execute();
      const matching = subscriptions.filter((s) => matchesAny(JSON.parse(s.events) as string[], type));
      if (matching.length > 0) {
        await trx.insertInto('webhook_deliveries').values(matching.map((s) => newDeliveryRow(s.id, event.id, now))).execute();
      }
      return matching.length;
    });
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (error) {
        this.logger?.warn({ err: error, eventType: type }, 'event listener failed');
      }
    }
    if (queued > 0) this.wake();
    return event;
  }

  /** Calls `listener` with every event this process publishes (after it is stored); returns the unsubscribe. */
  listen(listener: (event: DomainEvent) => void): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  /** Stored events of a namespace, oldest first (pings excluded). */
  async list(namespace: string, options: EventListOptions = {}): Promise<DomainEvent[]> {
    checkNamespace(namespace);
    if (options.after !== undefined && !cursorPattern.test(options.after)) throw new EventInputError('after: not an event id');
    checkTypes(options.types);
    const limit = Math.max(1, Math.min(1000, Math.floor(options.limit ?? 100)));
    let query = this.db.kysely.selectFrom('events').selectAll().where('namespace', '=', namespace).where('type', '<>', pingType);
    const types = options.types ?? [];
    if (types.length > 0 && !types.includes('*')) {
      query = query.where((eb) => eb.or(types.map((pattern) => (pattern.includes('*')
        ? sql<boolean>`${eb.ref('type')} LIKE ${likeOf(pattern)} ESCAPE '\\'`
        : eb('type', '=', pattern)))));
    }
    if (options.after !== undefined) {
      const rows = await query.where('id', '>', options.after).orderBy('id', 'asc').limit(limit).execute();
      return rows.map(toEvent);
    }
    const rows = await query.orderBy('id', 'desc').limit(limit).execute();
    return rows.reverse().map(toEvent);
  }

  // ---- the delivery loop ----

  start(): void {
    if (this.running || this.closing) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops the loop and waits (at most `closeTimeoutMs`) for sends in flight; the rest are abandoned and sent again later. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.closing = true;
      this.running = false;
      clearTimeout(this.timer);
      this.timer = undefined;
      await this.passing;
      const pending = [...this.inFlight.values()];
      if (pending.length > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.all(pending.map((p) => p.done)),
          new Promise((resolve) => { timer = setTimeout(resolve, this.closeTimeoutMs); }),
        ]);
        clearTimeout(timer);
        for (const p of this.inFlight.values()) p.abort.abort();
        await Promise.all([...this.inFlight.values()].map((p) => p.done));
      }
      this.listeners.clear();
    })();
    return this.closed;
  }

  /** Looks for due deliveries now (this process). */
  private wake(): void {
    if (!this.running || this.closing) return;
    if (this.passing) {
      this.wakeRequested = true;
      return;
    }
    this.schedule(0);
  }

  /** Runs a pass in `delayMs` unless one is due sooner. */
  private schedule(delayMs: number): void {
    if (!this.running || this.closing) return;
    const due = Date.now() + Math.max(0, delayMs);
    if (this.timer && this.timerDue <= due) return;
    clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerDue = Infinity;
      if (this.passing) {
        this.wakeRequested = true;
        return;
      }
      this.passing = this.pass().finally(() => {
        this.passing = undefined;
        if (this.wakeRequested) this.schedule(0);
        else this.schedule(this.tickMs);
        this.wakeRequested = false;
      });
    }, Math.max(0, delayMs));
    this.timer.unref?.();
  }

  private async pass(): Promise<void> {
    this.wakeRequested = false;
    try {
      if (Date.now() - this.lastPrune >= pruneEveryMs) {
        this.lastPrune = Date.now();
        await this.prune();
      }
      while (this.running && !this.closing) {
        const free = this.concurrency - this.inFlight.size;
        if (free <= 0) break;
        const claims = await this.claim(free);
        for (const claim of claims) this.launch(claim);
        if (claims.length < free) break;
      }
    } catch (error) {
      this.logger?.warn({ err: error }, 'webhook delivery pass failed');
    }
  }

  /** Claims up to `max` due deliveries by moving their due time to our lease expiry. */
  private async claim(max: number): Promise<Claim[]> {
    const now = Date.now();
    const leaseUntil = now + this.leaseMs;
    return this.db.write(async (trx) => {
      let query = trx.selectFrom('webhook_deliveries').select(['id', 'attempts', 'next_attempt_at'])
        .where('status', '=', 'pending').where('next_attempt_at', '<=', now)
        .orderBy('next_attempt_at').limit(max);
      if (this.db.dialect === 'postgres') query = query.forUpdate().skipLocked();
      const rows = await query.execute();
      const claims: Claim[] = [];
      for (const row of rows) {
        if (this.inFlight.has(row.id)) continue;
        const updated = await trx.updateTable('webhook_deliveries').set({ next_attempt_at: leaseUntil })
          .where('id', '=', row.id).where('status', '=', 'pending').where('next_attempt_at', '=', row.next_attempt_at)
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) === 1) claims.push({ id: row.id, attempts: row.attempts, leaseUntil });
      }
      return claims;
    });
  }

  private launch(claim: Claim): void {
    const abort = new AbortController();
    const done = this.deliver(claim, abort.signal)
      .catch((error) => { this.logger?.warn({ err: error, delivery: claim.id }, 'webhook delivery failed to record'); })
      .finally(() => {
        this.inFlight.delete(claim.id);
        this.wake();
      });
    this.inFlight.set(claim.id, { abort, done });
  }

  private async deliver(claim: Claim, signal: AbortSignal): Promise<void> {
    const row = await this.db.kysely.selectFrom('webhook_deliveries as d')
      .leftJoin('events as e', 'e.id', 'd.event_id')
      .leftJoin('webhook_subscriptions as s', 's.id', 'd.subscription_id')
      .select(['d.id', 'd.subscription_id', 'e.id as event_id', 'e.namespace', 'e.type', 'e.subject', 'e.data', 'e.created_at',
        's.url', 's.secret', 's.active'])
      .where('d.id', '=', claim.id).executeTakeFirst();
    if (!row) return;
    if (row.event_id === null || row.url === null || row.secret === null) {
      await this.finishWithout(claim, 'the event or the webhook no longer exists');
      return;
    }
    if (row.active !== 1 && row.type !== pingType) {
      await this.finishWithout(claim, 'the webhook is inactive');
      return;
    }
    const event = toEvent({ id: row.event_id, namespace: row.namespace!, type: row.type!, subject: row.subject ?? null, data: row.data!, created_at: row.created_at! });
    const body = JSON.stringify({ id: event.id, type: event.type, namespace: event.namespace, subject: event.subject, createdAt: event.createdAt, data: event.data });
    let secret: string;
    try {
      secret = await this.vault.open(row.secret, `webhook:${row.subscription_id}`);
    } catch (error) {
      // Counted as a failed attempt, so a secret that cannot be opened ends the delivery in time.
      await this.record(claim, Date.now(), { status: null, error: `cannot open the webhook secret: ${(error as Error).message}`, responseBody: null, durationMs: 0 });
      return;
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
    }, body, this.deliveryTimeoutMs, signal);
    if (signal.aborted) {
      // Shutting down: give the delivery back, due now, for the next start or another replica.
      await this.db.write((trx) => trx.updateTable('webhook_deliveries').set({ next_attempt_at: Date.now() })
        .where('id', '=', claim.id).where('status', '=', 'pending').where('next_attempt_at', '=', claim.leaseUntil).execute());
      return;
    }
    await this.record(claim, started, outcome);
  }

  private async record(claim: Claim, started: number, outcome: AttemptOutcome): Promise<void> {
    const now = Date.now();
    const ok = outcome.status !== null && outcome.status >= 200 && outcome.status < 300;
    const attempts = claim.attempts + 1;
    const attempt: DeliveryAttempt = { at: iso(started), ...outcome };
    let nextAt: number | null = null;
    let status: DeliveryStatus;
    if (ok) status = 'succeeded';
    else if (attempts >= this.attempts) status = 'failed';
    else {
      status = 'pending';
      nextAt = now + this.backoff(attempts);
    }
    const lastError = ok ? null : outcome.error ?? `HTTP ${outcome.status}`;
    const recorded = await this.db.write(async (trx) => {
      const current = await trx.selectFrom('webhook_deliveries').select(['log'])
        .where('id', '=', claim.id).where('status', '=', 'pending').where('next_attempt_at', '=', claim.leaseUntil).executeTakeFirst();
      if (!current) return false;
      const log = [...(JSON.parse(current.log) as DeliveryAttempt[]), attempt].slice(-maxLogEntries);
      await trx.updateTable('webhook_deliveries').set({
        status, attempts, next_attempt_at: nextAt, last_status: outcome.status, last_error: lastError,
        log: JSON.stringify(log), finished_at: status === 'pending' ? null : now,
      }).where('id', '=', claim.id).execute();
      return true;
    });
    if (!recorded) {
      this.logger?.warn({ delivery: claim.id }, 'webhook delivery lease lost before the attempt was recorded');
      return;
    }
    if (nextAt !== null) this.schedule(nextAt - Date.now());
    if (status === 'failed') this.logger?.warn({ delivery: claim.id, attempts, error: lastError }, 'webhook delivery failed for good');
  }

  /** Ends a claimed delivery as failed without sending. */
  private async finishWithout(claim: Claim, error: string): Promise<void> {
    const now = Date.now();
    await this.db.write((trx) => trx.updateTable('webhook_deliveries').set({ status: 'failed', next_attempt_at: null, last_error: error, finished_at: now })
      .where('id', '=', claim.id).where('status', '=', 'pending').where('next_attempt_at', '=', claim.leaseUntil).execute());
  }

  /** Delay after the `n`-th failed attempt: exponential, capped, times 0.75–1 (so it never shrinks between attempts). */
  private backoff(n: number): number {
    const full = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(n - 1, 40));
    return Math.round(full * (0.75 + Math.random() * 0.25));
  }

  /** Drops old events and finished deliveries (by age, then by count); events a pending delivery needs stay. */
  async prune(): Promise<{ events: number; deliveries: number }> {
    const cutoff = Date.now() - this.retention.maxAgeMs;
    let deliveries = 0;
    let events = 0;
    const { maxEvents, maxDeliveries } = this.retention;
    const deliveryCap = await this.db.kysely.selectFrom('webhook_deliveries').select('id')
      .orderBy('id', 'desc').offset(maxDeliveries).limit(1).executeTakeFirst();
    const eventCap = await this.db.kysely.selectFrom('events').select('id')
      .orderBy('id', 'desc').offset(maxEvents).limit(1).executeTakeFirst();
    await this.db.write(async (trx) => {
      const deliveryFloor = `whd_${time36(cutoff)}`;
      const d = await trx.deleteFrom('webhook_deliveries').where('status', '<>', 'pending')
        .where((eb) => (deliveryCap ? eb.or([eb('id', '<', deliveryFloor), eb('id', '<=', deliveryCap.id)]) : eb('id', '<', deliveryFloor)))
        .executeTakeFirst();
      deliveries = Number(d.numDeletedRows);
      const e = await trx.deleteFrom('events')
        .where((eb) => (eventCap ? eb.or([eb('id', '<', eventIdFloor(cutoff)), eb('id', '<=', eventCap.id)]) : eb('id', '<', eventIdFloor(cutoff))))
        .where((eb) => eb.not(eb.exists(eb.selectFrom('webhook_deliveries as p').select('p.id')
          .where('p.status', '=', 'pending').whereRef('p.event_id', '=', 'events.id'))))
        .executeTakeFirst();
      events = Number(e.numDeletedRows);
    });
    if (events + deliveries > 0) this.logger?.info({ events, deliveries }, 'pruned old events and webhook deliveries');
    return { events, deliveries };
  }
}

function newDeliveryRow(subscriptionId: string, eventId: string, now: number) {
  return {
    id: newId('whd', now), subscription_id: subscriptionId, event_id: eventId, status: 'pending', attempts: 0,
    next_attempt_at: now, last_status: null, last_error: null, log: '[]', created_at: now, finished_at: null,
  };
}

// ---------------------------------------------------------------------------------------------

type SubscriptionRow = { id: string; namespace: string; url: string; events: string; secret: string; active: number; created_by: string | null; created_at: number; updated_at: number };

/** `bus.webhooks`: subscriptions of a namespace. */
export class WebhookSubscriptions {
  constructor(private readonly db: Database, private readonly vault: Vault, private readonly wake: () => void) {}

  async create(namespace: string, input: WebhookInput, actor: string | null): Promise<WebhookWithSecret> {
    checkNamespace(namespace);
    checkWebhookFields(input);
    if (input.url === undefined) throw new EventInputError('url: required');
    if (input.events === undefined) throw new EventInputError('events: required');
    const now = Date.now();
    const id = newId('wh', now);
    const secret = input.secret ?? generateSecret();
    const sealed = await this.vault.seal(secret, `webhook:${id}`);
    const events = [...new Set(input.events)];
    const row: SubscriptionRow = {
      id, namespace, url: input.url, events: JSON.stringify(events), secret: sealed, active: input.active === false ? 0 : 1,
      created_by: actor, created_at: now, updated_at: now,
    };
    await this.db.write(async (trx) => {
      const count = await trx.selectFrom('webhook_subscriptions').select((eb) => eb.fn.countAll<number>().as('n')).where('namespace', '=', namespace).executeTakeFirstOrThrow();
      if (Number(count.n) >= maxWebhooksPerNamespace) throw new EventConflictError(`namespace "${namespace}" has ${maxWebhooksPerNamespace} webhooks already`);
      await trx.insertInto('webhook_subscriptions').values(row).execute();
    });
    return { ...view(row, secret), secret };
  }

  async list(namespace: string): Promise<WebhookView[]> {
    checkNamespace(namespace);
    const rows = await this.db.kysely.selectFrom('webhook_subscriptions').selectAll().where('namespace', '=', namespace).orderBy('id').execute();
    return Promise.all(rows.map(async (row) => view(row, await this.openSecret(row))));
  }

  async get(namespace: string, id: string): Promise<WebhookView> {
    const row = await this.row(this.db.kysely, namespace, id);
    return view(row, await this.openSecret(row));
  }

  async update(namespace: string, id: string, patch: WebhookPatch): Promise<WebhookView | WebhookWithSecret> {
    checkWebhookFields(patch);
    if (patch.rotateSecret !== undefined && typeof patch.rotateSecret !== 'boolean') throw new EventInputError('rotateSecret: must be a boolean');
    if (patch.rotateSecret && patch.secret !== undefined) throw new EventInputError('secret: give a secret or rotateSecret, not both');
    const generated = patch.rotateSecret ? generateSecret() : undefined;
    const secret = generated ?? patch.secret;
    const sealed = secret === undefined ? undefined : await this.vault.seal(secret, `webhook:${id}`);
    const row = await this.db.write(async (trx) => {
      const current = await this.row(trx, namespace, id);
      const updates: Partial<SubscriptionRow> = { updated_at: Date.now() };
      if (patch.url !== undefined) updates.url = patch.url;
      if (patch.events !== undefined) updates.events = JSON.stringify([...new Set(patch.events)]);
      if (patch.active !== undefined) updates.active = patch.active ? 1 : 0;
      if (sealed !== undefined) updates.secret = sealed;
      await trx.updateTable('webhook_subscriptions').set(updates).where('id', '=', id).execute();
      return { ...current, ...updates } as SubscriptionRow;
    });
    const shown = view(row, secret ?? await this.openSecret(row));
    return generated ? { ...shown, secret: generated } : shown;
  }

  /** Removes the webhook and its delivery log; pending deliveries are dropped. */
  async remove(namespace: string, id: string): Promise<void> {
    await this.db.write(async (trx) => {
      await this.row(trx, namespace, id);
      await trx.deleteFrom('webhook_deliveries').where('subscription_id', '=', id).execute();
      await trx.deleteFrom('webhook_subscriptions').where('id', '=', id).execute();
    });
  }

  /** The newest deliveries of a webhook first, with their attempt logs. */
  async deliveries(namespace: string, id: string, options: { limit?: number; status?: DeliveryStatus } = {}): Promise<DeliveryView[]> {
    await this.row(this.db.kysely, namespace, id);
    const limit = Math.max(1, Math.min(500, Math.floor(options.limit ?? 50)));
    let query = this.db.kysely.selectFrom('webhook_deliveries as d').leftJoin('events as e', 'e.id', 'd.event_id')
      .selectAll('d').select('e.type as event_type').where('d.subscription_id', '=', id);
    if (options.status) query = query.where('d.status', '=', options.status);
    const rows = await query.orderBy('d.id', 'desc').limit(limit).execute();
    return rows.map(deliveryView);
  }

  /** One delivery of a webhook. */
  async delivery(namespace: string, id: string, deliveryId: string): Promise<DeliveryView> {
    await this.row(this.db.kysely, namespace, id);
    const row = await this.db.kysely.selectFrom('webhook_deliveries as d').leftJoin('events as e', 'e.id', 'd.event_id')
      .selectAll('d').select('e.type as event_type').where('d.id', '=', deliveryId).where('d.subscription_id', '=', id).executeTakeFirst();
    if (!row) throw new EventNotFoundError(`no delivery "${deliveryId}" of webhook "${id}"`);
    return deliveryView(row);
  }

  /**
   * Sends a delivery's event again as a new delivery (with its own attempts); the old one and
   * its log stay. `webhookId`, when given, must be the delivery's webhook.
   */
  async redeliver(namespace: string, deliveryId: string, webhookId?: string): Promise<DeliveryView> {
    const now = Date.now();
    const row = await this.db.write(async (trx) => {
      const old = await trx.selectFrom('webhook_deliveries').select(['subscription_id', 'event_id']).where('id', '=', deliveryId).executeTakeFirst();
      if (!old || (webhookId !== undefined && old.subscription_id !== webhookId)) throw new EventNotFoundError(`no delivery "${deliveryId}"${webhookId ? ` of webhook "${webhookId}"` : ''}`);
      const subscription = await trx.selectFrom('webhook_subscriptions').selectAll()
        .where('id', '=', old.subscription_id).where('namespace', '=', namespace).executeTakeFirst();
      if (!subscription) throw new EventNotFoundError(`no delivery "${deliveryId}"`);
      if (subscription.active !== 1) throw new EventConflictError(`webhook "${subscription.id}" is inactive: activate it first`);
      const event = await trx.selectFrom('events').select(['id']).where('id', '=', old.event_id).executeTakeFirst();
      if (!event) throw new EventConflictError(`the event of delivery "${deliveryId}" was pruned`);
      const fresh = newDeliveryRow(old.subscription_id, old.event_id, now);
      await trx.insertInto('webhook_deliveries').values(fresh).execute();
      return fresh;
    });
    this.wake();
    return this.delivery(namespace, row.subscription_id, row.id);
  }

  /** Queues a `ping` event to this webhook only (even an inactive one); returns its delivery. */
  async ping(namespace: string, id: string): Promise<DeliveryView> {
    const now = Date.now();
    const delivery = await this.db.write(async (trx) => {
      const subscription = await this.row(trx, namespace, id);
      const eventId = newId('ev', now);
      const data = { webhook: { id: subscription.id, url: subscription.url, events: JSON.parse(subscription.events) as string[] }, zen: 'Hooks away.' };
      await trx.insertInto('events').values({ id: eventId, namespace, type: pingType, subject: subscription.id, data: JSON.stringify(data), created_at: now }).execute();
      const fresh = newDeliveryRow(subscription.id, eventId, now);
      await trx.insertInto('webhook_deliveries').values(fresh).execute();
      return fresh;
    });
    this.wake();
    return this.delivery(namespace, id, delivery.id);
  }

  private async row(db: Kysely<Tables>, namespace: string, id: string): Promise<SubscriptionRow> {
    const row = await db.selectFrom('webhook_subscriptions').selectAll().where('id', '=', id).where('namespace', '=', namespace).executeTakeFirst();
    if (!row) throw new EventNotFoundError(`no webhook "${id}" in namespace "${namespace}"`);
    return row;
  }

  private async openSecret(row: SubscriptionRow): Promise<string | null> {
    try {
      return await this.vault.open(row.secret, `webhook:${row.id}`);
    } catch {
      return null;
    }
  }
}

function view(row: SubscriptionRow, secret: string | null): WebhookView {
  return {
    id: row.id, namespace: row.namespace, url: row.url, events: JSON.parse(row.events) as string[], active: row.active === 1,
    secretHint: secret === null ? '****' : `****${secret.slice(-4)}`,
    createdBy: row.created_by, createdAt: iso(row.created_at), updatedAt: iso(row.updated_at),
  };
}

type DeliveryRow = {
  id: string; subscription_id: string; event_id: string; status: string; attempts: number; next_attempt_at: number | null;
  last_status: number | null; last_error: string | null; log: string; created_at: number; finished_at: number | null; event_type: string | null;
};

function deliveryView(row: DeliveryRow): DeliveryView {
  return {
    id: row.id, webhookId: row.subscription_id, eventId: row.event_id, eventType: row.event_type, status: row.status as DeliveryStatus,
    attempts: row.attempts,
    // While a send is in flight next_attempt_at holds the claim's lease expiry (when another replica may retry).
    nextAttemptAt: row.status === 'pending' && row.next_attempt_at !== null ? iso(row.next_attempt_at) : null,
    lastStatus: row.last_status, lastError: row.last_error, createdAt: iso(row.created_at),
    finishedAt: row.finished_at === null ? null : iso(row.finished_at), log: JSON.parse(row.log) as DeliveryAttempt[],
  };
}

// ---------------------------------------------------------------------------------------------

/** One POST; never throws: the outcome says what happened. Redirects are not followed (a 3xx is a failure). */
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
