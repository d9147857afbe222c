/**
 * @module auth/audit
 * Append-only log of security-relevant actions (logins, failed logins, key changes, credential
 * hand-outs, permission changes, deletes). Rows are only ever inserted; `detail` never holds a
 * secret — callers pass names and ids, not values.
 */
import type { Database } from '../db/db.js';

export interface AuditEntry {
  actor: string | null;
  action: string;
  target?: string | null;
  outcome: 'ok' | 'denied' | 'failed';
  address?: string | null;
  detail?: Record<string, unknown>;
}

export interface AuditQuery {
  after?: number;
  limit?: number;
  action?: string;
  actor?: string;
}

export class AuditLog {
  constructor(private readonly db: Database) {}

  async record(entry: AuditEntry): Promise<void> {
    await this.db.write((trx) => trx.insertInto('audit_log').values({
      at: Date.now(),
      actor: entry.actor,
      action: entry.action,
      target: entry.target ?? null,
      outcome: entry.outcome,
      address: entry.address ?? null,
      detail: entry.detail ? JSON.stringify(entry.detail) : null,
    }).execute());
  }

  /** Oldest first from `after` (a sequence number), for paging with `?after=<last seq>`. */
  async list(query: AuditQuery = {}) {
    let select = this.db.kysely.selectFrom('audit_log').selectAll().where('seq', '>', query.after ?? 0);
    if (query.action) select = select.where('action', '=', query.action);
    if (query.actor) select = select.where('actor', '=', query.actor);
    const rows = await select.orderBy('seq').limit(Math.min(Math.max(query.limit ?? 100, 1), 1000)).execute();
    return rows.map((row) => ({
      seq: row.seq,
      at: new Date(row.at).toISOString(),
      actor: row.actor,
      action: row.action,
      target: row.target,
      outcome: row.outcome,
      address: row.address,
      detail: row.detail ? JSON.parse(row.detail) as unknown : null,
    }));
  }
}
