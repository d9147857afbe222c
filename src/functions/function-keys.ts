/**
 * @module functions/function-keys
 * Per-function keys (`Authorization: Bearer slwfn_<id>.<secret>`): only a hash of the secret
 * is stored; verified keys are cached for a few seconds because the check is on the gateway's
 * hot path, and a deleted key leaves the cache at once.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from '../db/db.js';
import { FunctionNotFoundError } from './errors.js';
import { findFunction, iso } from './records.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const keyPrefix = 'slwfn_';

export class FunctionKeys {
  private readonly keyCache = new Map<string, { functionId: string; until: number }>();

  constructor(private readonly db: Database) {}

  async create(namespace: string, name: string, keyName: string): Promise<{ id: string; name: string; key: string; createdAt: string }> {
    const fn = await findFunction(this.db, namespace, name);
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const now = Date.now();
    await this.db.write((trx) => trx.insertInto('function_keys').values({ id, function_id: fn.id, name: keyName, secret_hash: sha256(secret), created_at: now, last_used_at: null }).execute());
    return { id, name: keyName, key: `${keyPrefix}${id}.${secret}`, createdAt: iso(now) };
  }

  async list(namespace: string, name: string): Promise<Array<{ id: string; name: string; createdAt: string; lastUsedAt: string | null }>> {
    const fn = await findFunction(this.db, namespace, name);
    const rows = await this.db.kysely.selectFrom('function_keys').selectAll().where('function_id', '=', fn.id).orderBy('created_at').execute();
    return rows.map((r) => ({ id: r.id, name: r.name, createdAt: iso(r.created_at), lastUsedAt: r.last_used_at ? iso(r.last_used_at) : null }));
  }

  async remove(namespace: string, name: string, id: string): Promise<void> {
    const fn = await findFunction(this.db, namespace, name);
    const result = await this.db.write((trx) => trx.deleteFrom('function_keys').where('id', '=', id).where('function_id', '=', fn.id).executeTakeFirst());
    if (Number(result.numDeletedRows) === 0) throw new FunctionNotFoundError(`no key "${id}" on "${name}"`);
    for (const [k, v] of this.keyCache) if (v.functionId === fn.id) this.keyCache.delete(k);
  }

  /**
   * `check` from its cache only: true or false when this token was verified in the last
   * moments (and not revoked since), undefined when it would need the database.
   */
  checked(functionId: string, authorization: string | undefined): boolean | undefined {
    if (!authorization?.startsWith(`Bearer ${keyPrefix}`)) return false;
    const cached = this.keyCache.get(authorization.slice(7 + keyPrefix.length));
    return cached && cached.until > Date.now() ? cached.functionId === functionId : undefined;
  }

  /** Whether `authorization` carries a key of this function (cached briefly: it is on the hot path). */
  async check(functionId: string, authorization: string | undefined): Promise<boolean> {
    if (!authorization?.startsWith(`Bearer ${keyPrefix}`)) return false;
    const token = authorization.slice(7 + keyPrefix.length);
    const cached = this.keyCache.get(token);
    if (cached && cached.until > Date.now()) return cached.functionId === functionId;
    const dot = token.indexOf('.');
    if (dot < 0) return false;
    const row = await this.db.kysely.selectFrom('function_keys').select(['id', 'function_id', 'secret_hash']).where('id', '=', token.slice(0, dot)).executeTakeFirst();
    if (!row) return false;
    const ok = timingSafeEqual(Buffer.from(row.secret_hash, 'hex'), Buffer.from(sha256(token.slice(dot + 1)), 'hex'));
    if (!ok) return false;
    this.keyCache.set(token, { functionId: row.function_id, until: Date.now() + 10_000 });
    void this.db.write((trx) => trx.updateTable('function_keys').set({ last_used_at: Date.now() }).where('id', '=', row.id).execute()).catch(() => undefined);
    return row.function_id === functionId;
  }
}
