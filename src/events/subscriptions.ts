/**
 * @module events/subscriptions
 * Outgoing webhook subscriptions of a namespace (`webhook_subscriptions`): create, list, get,
 * update, remove, their delivery log, redeliver and ping. Secrets are sealed by the vault
 * (context `webhook:<id>`) and never shown after creation, only a hint (last 4 chars).
 */
import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../db/db.js';
import type { Tables } from '../db/schema.js';
import type { Vault } from '../vault/vault.js';
import { deliveryView, type DeliveryStatus, type DeliveryView, type WebhookDeliveries } from './deliveries.js';
import { checkNamespace, EventConflictError, EventInputError, EventNotFoundError } from './errors.js';
import { iso, newId } from './ids.js';
import { pingType } from './outbox.js';
import { patternProblem, webhookUrlProblem } from './patterns.js';

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

const maxWebhooksPerNamespace = 100;
const maxPatterns = 50;

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

type SubscriptionRow = { id: string; namespace: string; url: string; events: string; secret: string; active: number; created_by: string | null; created_at: number; updated_at: number };

/** `bus.webhooks`: subscriptions of a namespace. */
export class WebhookSubscriptions {
  constructor(private readonly db: Database, private readonly vault: Vault, private readonly sender: WebhookDeliveries) {}

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
      const [fresh] = await this.sender.add(trx, [old.subscription_id], old.event_id, now);
      return fresh!;
    });
    this.sender.notify();
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
      const [fresh] = await this.sender.add(trx, [subscription.id], eventId, now);
      return fresh!;
    });
    this.sender.notify();
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
