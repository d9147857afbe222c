/**
 * @module functions/gateway-facts
 * What the gateway must know of a function before a request (its id, type and access), cached
 * for a moment because it is asked on every request. Any change to a function (update, delete,
 * create, a revision becoming active) drops its entry at once, on every replica: the drop is
 * published on the db's notifications (PostgreSQL NOTIFY) and the TTL bounds a missed one.
 */
import type { Database } from '../db/db.js';
import type { LiveFunctions } from './live.js';
import { findFunction } from './records.js';
import type { StoredConfig } from './spec.js';

/** What the gateway needs to know of a function before a request. */
export interface FunctionFacts { id: string; type: 'http' | 'event'; access: 'private' | 'public' }

/** How long the gateway's facts of a function are kept without a change dropping them. */
const factsTtlMs = 2000;
const changesChannel = 'slipway_function_facts';

export class GatewayFacts {
  private readonly facts = new Map<string, { facts: FunctionFacts; until: number }>();
  private generation = 0;
  private readonly accessCache = new Map<string, { access: 'private' | 'public'; until: number }>();

  constructor(private readonly db: Database, private readonly live: LiveFunctions) {
    // Changes made through another replica: `<namespace>/<name>` plus ` <id>` when known.
    db.notifications.subscribe(changesChannel, (payload) => {
      if (payload === '*') return this.forgetAll();
      const [key, id] = payload.split(' ');
      const slash = key!.indexOf('/');
      this.drop(key!.slice(0, slash), key!.slice(slash + 1), id);
    });
  }

  /** Type, access and id of a function (cached: see `described`). */
  async describe(namespace: string, name: string): Promise<FunctionFacts> {
    const key = `${namespace}/${name}`;
    const cached = this.described(namespace, name);
    if (cached !== undefined) return cached;
    const generation = this.generation;
    let facts: FunctionFacts;
    const live = this.live.get(namespace, name);
    if (live?.active && !live.deleted) facts = { id: live.id, type: live.active.config.type, access: await this.accessOf(live.id) };
    else {
      const row = await findFunction(this.db, namespace, name);
      facts = { id: row.id, type: (JSON.parse(row.config) as StoredConfig).type, access: row.access as 'private' | 'public' };
    }
    // Not kept when a change happened while it was looked up (it may predate the change).
    if (generation === this.generation) this.facts.set(key, { facts, until: Date.now() + factsTtlMs });
    return facts;
  }

  /**
   * The facts of a function when `describe` looked them up in the last moments and nothing
   * changed since; undefined otherwise. Synchronous: the gateway's fast path decides on it.
   */
  described(namespace: string, name: string): FunctionFacts | undefined {
    const entry = this.facts.get(`${namespace}/${name}`);
    if (entry === undefined) return undefined;
    if (entry.until > Date.now()) return entry.facts;
    this.facts.delete(`${namespace}/${name}`);
    return undefined;
  }

  /** Drops the cached facts of a function (and its cached access), here and on every other replica. */
  forget(namespace: string, name: string, id?: string): void {
    this.drop(namespace, name, id);
    this.db.notifications.publish(changesChannel, id === undefined ? `${namespace}/${name}` : `${namespace}/${name} ${id}`)
      .catch(() => undefined); // the TTL still bounds how long another replica keeps it
  }

  private drop(namespace: string, name: string, id?: string): void {
    this.generation++;
    this.facts.delete(`${namespace}/${name}`);
    if (id !== undefined) this.accessCache.delete(id);
  }

  private forgetAll(): void {
    this.generation++;
    this.facts.clear();
    this.accessCache.clear();
  }

  private async accessOf(id: string): Promise<'private' | 'public'> {
    const cached = this.accessCache.get(id);
    if (cached && cached.until > Date.now()) return cached.access;
    const row = await this.db.kysely.selectFrom('functions').select('access').where('id', '=', id).executeTakeFirst();
    const access = (row?.access ?? 'private') as 'private' | 'public';
    this.accessCache.set(id, { access, until: Date.now() + 1000 });
    return access;
  }
}
