/**
 * @module events/outbox
 * The durable outbox of domain events (`events`): `publish` stores an event and, in the same
 * transaction, one delivery per active subscription of the namespace whose patterns match
 * (./deliveries.ts), so a stored event is delivered at least once even if the process dies
 * right after. `list` pages a namespace's events by id (ids are time-ordered, see ./ids.ts).
 *
 * `ping` events go to one webhook only and are not part of the feed (list, streams,
 * listeners). Events and finished deliveries older than `maxAgeMs` (7 days) or beyond the
 * newest `maxEvents`/`maxDeliveries` are pruned; an event a pending delivery needs stays.
 */
import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { WebhookDeliveries } from './deliveries.js';
import { checkNamespace, checkTypes, EventInputError } from './errors.js';
import { eventIdFloor, idFloor, iso, newId } from './ids.js';
import { eventTypeProblem, likeOf, matchesAny } from './patterns.js';

export interface DomainEvent {
  id: string;
  namespace: string;
  type: string;
  subject: string | null;
  data: Record<string, unknown>;
  /** RFC 3339 UTC. */
  createdAt: string;
}

export interface EventListOptions {
  /** Only events after this id (exclusive), oldest first; without it the newest `limit` events, oldest first. */
  after?: string;
  /** Patterns; any match. */
  types?: string[];
  /** Default 100, at most 1000. */
  limit?: number;
}

export interface Retention {
  maxAgeMs: number;
  /** Newest events kept at most. */
  maxEvents: number;
  /** Newest finished deliveries kept at most. */
  maxDeliveries: number;
}

/** The type of webhook pings (reserved: not publishable, not in the feed). */
export const pingType = 'ping';
const cursorPattern = /^[A-Za-z0-9_-]{1,100}$/;

export function toEvent(row: { id: string; namespace: string; type: string; subject: string | null; data: string; created_at: number }): DomainEvent {
  return { id: row.id, namespace: row.namespace, type: row.type, subject: row.subject, data: JSON.parse(row.data) as Record<string, unknown>, createdAt: iso(row.created_at) };
}

export class Outbox {
  constructor(
    private readonly db: Database,
    private readonly deliveries: WebhookDeliveries,
    private readonly retention: Retention,
    private readonly logger?: Logger,
  ) {}

  /** Stores the event and its deliveries; `queued` is how many deliveries (the caller wakes the senders). */
  async publish(namespace: string, type: string, data: Record<string, unknown>, subject?: string): Promise<{ event: DomainEvent; queued: number }> {
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
      await this.deliveries.add(trx, matching.map((s) => s.id), event.id, now);
      return matching.length;
    });
    return { event, queued };
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
      const deliveryFloor = idFloor('whd', cutoff);
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
    // The finished deliveries' jobs go with the same age limit.
    await this.deliveries.purgeJobs(cutoff);
    if (events + deliveries > 0) this.logger?.info({ events, deliveries }, 'pruned old events and webhook deliveries');
    return { events, deliveries };
  }
}
