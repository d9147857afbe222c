/**
 * @module vault
 * Secrets encrypted at rest, and the only place plaintext secrets are handled. Two layers of
 * AES-256-GCM keys:
 *
 *   master key (env or file, never in the db)
 *   └── wraps data keys         vault_data_keys: id, master_key_id, wrapped_key, active
 *       └── seal secrets        envelopes stored by other parts, e.g. external_registries.secret
 *
 * An envelope is `v1.<dataKeyId>.<iv>.<tag>.<ciphertext>` (base64url parts), sealed with a
 * random 12-byte IV and the caller's `context` (e.g. `external-registry:<id>`) as additional
 * authenticated data, so an envelope copied to another record does not open. Rotating the
 * master key re-wraps the data keys in one transaction and never touches an envelope;
 * rotating the data key only changes which key new seals use.
 *
 * Errors carry ids and fingerprints, never plaintext or key material. Nothing here logs.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/db.js';
import type { Tables } from '../db/schema.js';
import type { MasterKey } from './master-key.js';

export { loadMasterKeys, parseMasterKey, type MasterKey, type MasterKeys, type MasterKeySources } from './master-key.js';

export type VaultErrorCode =
  /** Not an envelope of a version this vault reads. */
  | 'ENVELOPE_INVALID'
  /** Tampered with, or sealed for another context (record). */
  | 'ENVELOPE_UNAUTHENTIC'
  /** The envelope names a data key the db does not have. */
  | 'DATA_KEY_UNKNOWN'
  /** The data key is wrapped by a master key this process was not given. */
  | 'MASTER_KEY_MISMATCH'
  /** The stored wrapping of a data key does not authenticate under its master key. */
  | 'DATA_KEY_DAMAGED'
  | 'CONTEXT_REQUIRED';

export class VaultError extends SlipwayError {
  override readonly name = 'VaultError';
  constructor(override readonly code: VaultErrorCode, message: string) {
    super(code, message);
  }
}

const version = 'v1';
const keyBytes = 32;
const ivBytes = 12;
const tagBytes = 16;
const dataKeyIdPattern = /^[A-Za-z0-9_-]{1,64}$/;

type StoredDataKey = { id: string; master_key_id: string; wrapped_key: string };

export class Vault {
  /** Every master key this process may unwrap with, by fingerprint. */
  private readonly masterKeys = new Map<string, MasterKey>();
  /** Unwrapped data keys; `loading` dedupes concurrent first uses of one key. */
  private readonly dataKeys = new Map<string, Buffer>();
  private readonly loading = new Map<string, Promise<Buffer>>();
  /** Serializes this process's key management, so a data key is never wrapped by a key being retired. */
  private keyWork: Promise<unknown> = Promise.resolve();

  private constructor(private readonly db: Database, private current: MasterKey, previous: MasterKey[], private activeId: string) {
    for (const key of [...previous, current]) this.masterKeys.set(key.id, key);
  }

  /**
   * Opens the vault, creating the first active data key on a fresh db. Unwrapping is lazy: a
   * wrong master key surfaces on the first `open`/`seal` that needs it, as a VaultError naming
   * the fingerprints, and never stops a start for data keys nobody uses.
   */
  static async open(db: Database, keys: { current: MasterKey; previous?: MasterKey[] }): Promise<Vault> {
    for (const key of [keys.current, ...(keys.previous ?? [])]) checkMasterKey(key);
    const existing = await readActiveId(db.kysely);
    const created = existing ? undefined : await db.write(async (trx): Promise<{ id: string; key?: Buffer }> => {
      await lockKeys(trx, db);
      // Another process may have created it between our read and the lock.
      const raced = await readActiveId(trx);
      if (raced) return { id: raced };
      const fresh = newDataKey();
      await insertDataKey(trx, fresh, keys.current);
      return fresh;
    });
    const vault = new Vault(db, keys.current, keys.previous ?? [], existing ?? created!.id);
    if (created?.key) vault.dataKeys.set(created.id, created.key);
    return vault;
  }

  /** Fingerprint of the master key new data keys are wrapped with. */
  get masterKeyId(): string {
    return this.current.id;
  }

  /** Encrypts `plaintext` for the record named by `context`; returns the envelope to store. */
  async seal(plaintext: string, context: string): Promise<string> {
    checkContext(context);
    // The active id is this process's: another replica's rotateDataKey takes effect here at
    // the next start, so a replica that lacks a newer master key keeps sealing meanwhile.
    const id = this.activeId;
    const key = await this.dataKey(id);
    const iv = randomBytes(ivBytes);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: tagBytes });
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [version, id, iv, cipher.getAuthTag(), ciphertext].map((part) => (typeof part === 'string' ? part : part.toString('base64url'))).join('.');
  }

  /** Decrypts an envelope sealed for the same `context`; a VaultError for anything else. */
  async open(envelope: string, context: string): Promise<string> {
    checkContext(context);
    const parts = envelope.split('.');
    if (parts.length !== 5 || parts[0] !== version) throw new VaultError('ENVELOPE_INVALID', `not a ${version} vault envelope`);
    const [, id, ivText, tagText, ciphertextText] = parts as [string, string, string, string, string];
    const iv = decodePart(ivText);
    const tag = decodePart(tagText);
    const ciphertext = decodePart(ciphertextText);
    if (!dataKeyIdPattern.test(id) || iv?.length !== ivBytes || tag?.length !== tagBytes || !ciphertext) {
      throw new VaultError('ENVELOPE_INVALID', `not a ${version} vault envelope`);
    }
    const key = await this.dataKey(id);
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: tagBytes });
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    } catch {
      throw new VaultError('ENVELOPE_UNAUTHENTIC', `envelope sealed with data key ${id} failed authentication: it was altered or sealed for another record`);
    }
  }

  /** For display: `****` plus the last 2 characters of secrets of 12 characters or more. */
  mask(plaintext: string): string {
    return mask(plaintext);
  }

  /**
   * Re-wraps every data key under `next` in one write transaction and makes it current;
   * returns how many were re-wrapped. Envelopes are untouched, and `next` is accepted for
   * unwrapping before the commit, so opens keep working throughout. The old key stays
   * accepted in this process (other replicas may still wrap with it until they restart).
   */
  async rotateMasterKey(next: MasterKey): Promise<number> {
    checkMasterKey(next);
    return this.exclusive(async () => {
      const wasKnown = this.masterKeys.has(next.id);
      // Known before the commit: from that moment readers see rows wrapped by `next`.
      this.masterKeys.set(next.id, next);
      let count: number;
      try {
        count = await this.db.write(async (trx) => {
          await lockKeys(trx, this.db);
          const rows = await trx.selectFrom('vault_data_keys').selectAll().execute();
          let rewrapped = 0;
          for (const row of rows) {
            if (row.master_key_id === next.id) continue;
            // Only an already unwrapped key from memory: awaiting a load here could wait on
            // the connection this transaction holds (SQLite).
            const key = this.dataKeys.get(row.id) ?? this.unwrap(row);
            await trx.updateTable('vault_data_keys').set({ master_key_id: next.id, wrapped_key: wrap(next, row.id, key) }).where('id', '=', row.id).execute();
            rewrapped++;
          }
          return rewrapped;
        });
      } catch (error) {
        if (!wasKnown) this.masterKeys.delete(next.id);
        throw error;
      }
      this.current = next;
      return count;
    });
  }

  /** Makes a fresh active data key for new seals; envelopes under older ones still open. */
  async rotateDataKey(): Promise<string> {
    return this.exclusive(async () => {
      const fresh = newDataKey();
      const current = this.current;
      await this.db.write(async (trx) => {
        await lockKeys(trx, this.db);
        await trx.updateTable('vault_data_keys').set({ active: 0 }).where('active', '=', 1).execute();
        await insertDataKey(trx, fresh, current);
      });
      this.dataKeys.set(fresh.id, fresh.key);
      this.activeId = fresh.id;
      return fresh.id;
    });
  }

  private async dataKey(id: string): Promise<Buffer> {
    const known = this.dataKeys.get(id);
    if (known) return known;
    let pending = this.loading.get(id);
    if (!pending) {
      pending = (async () => {
        const row = await this.db.kysely.selectFrom('vault_data_keys').selectAll().where('id', '=', id).executeTakeFirst();
        if (!row) throw new VaultError('DATA_KEY_UNKNOWN', `data key ${id} does not exist in this vault`);
        const key = this.unwrap(row);
        this.dataKeys.set(id, key);
        return key;
      })().finally(() => this.loading.delete(id));
      this.loading.set(id, pending);
    }
    return pending;
  }

  private unwrap(row: StoredDataKey): Buffer {
    const master = this.masterKeys.get(row.master_key_id);
    if (!master) {
      throw new VaultError('MASTER_KEY_MISMATCH', `master key ${this.current.id} does not match data key ${row.id}, which is wrapped by master key ${row.master_key_id}; set the previous key (the one with that fingerprint) so it can be unwrapped`);
    }
    const parts = row.wrapped_key.split('.').map(decodePart);
    const [iv, tag, ciphertext] = parts;
    const damaged = new VaultError('DATA_KEY_DAMAGED', `data key ${row.id} does not unwrap under master key ${master.id}: its stored wrapping is damaged`);
    if (parts.length !== 3 || iv?.length !== ivBytes || tag?.length !== tagBytes || !ciphertext) throw damaged;
    const decipher = createDecipheriv('aes-256-gcm', master.key, iv, { authTagLength: tagBytes });
    decipher.setAAD(Buffer.from(row.id, 'utf8'));
    decipher.setAuthTag(tag);
    let key: Buffer;
    try {
      key = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch {
      throw damaged;
    }
    if (key.length !== keyBytes) throw damaged;
    return key;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.keyWork.then(fn, fn);
    this.keyWork = run.catch(() => undefined);
    return run;
  }
}

/** `****`, plus the last 2 characters when the secret has at least 12 (so little is revealed). */
export function mask(plaintext: string): string {
  const chars = Array.from(plaintext);
  return chars.length >= 12 ? `****${chars.slice(-2).join('')}` : '****';
}

function newDataKey(): { id: string; key: Buffer } {
  return { id: `dk-${randomBytes(8).toString('hex')}`, key: randomBytes(keyBytes) };
}

async function insertDataKey(trx: Kysely<Tables>, dataKey: { id: string; key: Buffer }, master: MasterKey): Promise<void> {
  await trx.insertInto('vault_data_keys').values({
    id: dataKey.id,
    master_key_id: master.id,
    wrapped_key: wrap(master, dataKey.id, dataKey.key),
    active: 1,
    created_at: Date.now(),
  }).execute();
}

/** `iv.tag.ciphertext` of a data key under a master key; the data key's id is the AAD, so wrappings cannot be swapped between rows. */
function wrap(master: MasterKey, id: string, key: Buffer): string {
  const iv = randomBytes(ivBytes);
  const cipher = createCipheriv('aes-256-gcm', master.key, iv, { authTagLength: tagBytes });
  cipher.setAAD(Buffer.from(id, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(key), cipher.final()]);
  return [iv, cipher.getAuthTag(), ciphertext].map((part) => part.toString('base64url')).join('.');
}

async function readActiveId(db: Kysely<Tables>): Promise<string | undefined> {
  const row = await db.selectFrom('vault_data_keys').select('id').where('active', '=', 1)
    .orderBy('created_at', 'desc').orderBy('id', 'desc').limit(1).executeTakeFirst();
  return row?.id;
}

/**
 * Key-management writes from several processes queue here. SQLite's BEGIN IMMEDIATE already
 * serializes writers; PostgreSQL needs the lock (reads of the table are not blocked).
 */
async function lockKeys(trx: Kysely<Tables>, db: Database): Promise<void> {
  if (db.dialect === 'postgres') await sql`LOCK TABLE vault_data_keys IN EXCLUSIVE MODE`.execute(trx);
}

/** Strict base64url: Node's decoder skips stray characters, which would let an edit go unnoticed. */
function decodePart(text: string): Buffer | undefined {
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

function checkContext(context: string): void {
  if (typeof context !== 'string' || context === '') throw new VaultError('CONTEXT_REQUIRED', 'a vault context (the record the secret belongs to) is required');
}

function checkMasterKey(key: MasterKey): void {
  if (!Buffer.isBuffer(key.key) || key.key.length !== keyBytes) throw new Error(`master key ${key.id} must be ${keyBytes} bytes`);
}
