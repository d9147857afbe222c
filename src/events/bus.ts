/**
 * @module events/bus
 * The events part's service: domain events into the durable outbox (./outbox.ts), live
 * listeners in this process (the SSE streams of ./live-stream.ts), outgoing webhooks
 * (subscriptions in ./subscriptions.ts, sending in ./deliveries.ts on the job queue).
 *
 * `publish` stores the event and its deliveries in one transaction, then tells this process's
 * listeners and wakes the senders. `start` runs the senders and, at once and then hourly,
 * upkeep: deliveries reconciled with their jobs, old events and deliveries pruned.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import { JobQueue, type JobQueueApi } from '../db/job-queue.js';
import type { Vault } from '../vault/vault.js';
import { WebhookDeliveries } from './deliveries.js';
import { Outbox, type DomainEvent, type EventListOptions } from './outbox.js';
import { WebhookSubscriptions } from './subscriptions.js';

export { EventConflictError, EventInputError, EventNotFoundError } from './errors.js';
export { eventIdFloor } from './ids.js';
export type { DomainEvent, EventListOptions } from './outbox.js';
export type { DeliveryAttempt, DeliveryStatus, DeliveryView } from './deliveries.js';
export type { WebhookInput, WebhookPatch, WebhookView, WebhookWithSecret } from './subscriptions.js';

export interface EventBusOptions {
  db: Database;
  vault: Vault;
  logger?: Logger;
  /** Where deliveries are queued; default a JobQueue on `db`. */
  jobs?: JobQueueApi;
  /** Metrics (main.ts): each recorded webhook delivery attempt. */
  onDeliveryAttempt?: (outcome: 'delivered' | 'retried' | 'failed') => void;
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
  /** How often the senders look for due deliveries (other replicas' too); default 1 s. */
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

const upkeepEveryMs = 60 * 60 * 1000;

export class EventBus {
  /** Webhook subscriptions of a namespace: CRUD, delivery log, redeliver, ping. */
  readonly webhooks: WebhookSubscriptions;

  private readonly logger: Logger | undefined;
  private readonly outbox: Outbox;
  private readonly deliveries: WebhookDeliveries;
  private readonly listeners = new Set<(event: DomainEvent) => void>();
  private running = false;
  private closing = false;
  private closed: Promise<void> | undefined;
  private upkeepTimer: NodeJS.Timeout | undefined;
  private upkeeping: Promise<void> | undefined;

  constructor(deps: EventBusOptions) {
    this.logger = deps.logger;
    const baseMs = Math.max(1, deps.retry?.baseMs ?? 2000);
    this.deliveries = new WebhookDeliveries(deps.db, deps.vault, deps.jobs ?? new JobQueue(deps.db), {
      attempts: Math.max(1, Math.floor(deps.retry?.attempts ?? 6)),
      baseMs,
      maxMs: Math.max(baseMs, deps.retry?.maxMs ?? 10 * 60_000),
      deliveryTimeoutMs: Math.max(1, deps.deliveryTimeoutMs ?? 10_000),
      tickMs: Math.max(5, deps.tickMs ?? 1000),
      concurrency: Math.max(1, deps.concurrency ?? 16),
      closeTimeoutMs: Math.max(0, deps.closeTimeoutMs ?? 5000),
      onAttempt: deps.onDeliveryAttempt,
    }, deps.logger);
    this.outbox = new Outbox(deps.db, this.deliveries, {
      maxAgeMs: deps.retention?.maxAgeMs ?? 7 * 24 * 60 * 60 * 1000,
      maxEvents: deps.retention?.maxEvents ?? 100_000,
      maxDeliveries: deps.retention?.maxDeliveries ?? 100_000,
    }, deps.logger);
    this.webhooks = new WebhookSubscriptions(deps.db, deps.vault, this.deliveries);
  }

  async publish(namespace: string, type: string, data: Record<string, unknown>, subject?: string): Promise<DomainEvent> {
    const { event, queued } = await this.outbox.publish(namespace, type, data, subject);
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (error) {
        this.logger?.warn({ err: error, eventType: type }, 'event listener failed');
      }
    }
    if (queued > 0) this.deliveries.notify();
    return event;
  }

  /** Calls `listener` with every event this process publishes (after it is stored); returns the unsubscribe. */
  listen(listener: (event: DomainEvent) => void): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  /** Stored events of a namespace, oldest first (pings excluded). */
  list(namespace: string, options: EventListOptions = {}): Promise<DomainEvent[]> {
    return this.outbox.list(namespace, options);
  }

  /** Drops old events and finished deliveries (by age, then by count); events a pending delivery needs stay. */
  prune(): Promise<{ events: number; deliveries: number }> {
    return this.outbox.prune();
  }

  /** Starts sending webhooks, and the hourly upkeep (its first run at once). */
  start(): void {
    if (this.running || this.closing) return;
    this.running = true;
    this.deliveries.start();
    const upkeep = () => {
      this.upkeeping ??= (async () => {
        try {
          await this.deliveries.reconcile();
          await this.outbox.prune();
        } catch (error) {
          this.logger?.warn({ err: error }, 'event upkeep failed');
        }
      })().finally(() => { this.upkeeping = undefined; });
    };
    upkeep();
    this.upkeepTimer = setInterval(upkeep, upkeepEveryMs);
    this.upkeepTimer.unref();
  }

  /** Stops sending and waits (at most `closeTimeoutMs`) for sends in flight; the rest are abandoned and sent again later. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      this.closing = true;
      this.running = false;
      clearInterval(this.upkeepTimer);
      await this.upkeeping;
      await this.deliveries.close();
      this.listeners.clear();
    })();
    return this.closed;
  }
}
