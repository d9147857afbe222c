/**
 * @module vault/secrets
 * A namespace's named secrets (build secrets, later pipeline vault variables): values sealed by
 * the vault, bound to their namespace and name, write-only over the API. Only the build and
 * pipeline runners read values back, in memory, for the run that needs them.
 */
import { SlipwayError } from '../http/error-catalog.js';
import type { Database } from '../db/db.js';
import type { Vault } from './vault.js';

export const secretName = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;

export class SecretNotFoundError extends SlipwayError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}
export class SecretInputError extends SlipwayError {
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}

export interface SecretInfo {
  name: string;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

export class NamespaceSecrets {
  constructor(private readonly db: Database, private readonly vault: Vault) {}

  async put(namespace: string, name: string, value: string, actor: string | null): Promise<{ created: boolean }> {
    if (!secretName.test(name)) throw new SecretInputError(`invalid secret name "${name}": letters, digits, '_', '.', '-'; starting with a letter or '_'`);
    if (value.length === 0 || value.length > 64 * 1024) throw new SecretInputError('value: 1 byte to 64 KiB');
    const envelope = await this.vault.seal(value, context(namespace, name));
    const now = Date.now();
    return this.db.write(async (trx) => {
      const updated = await trx.updateTable('namespace_secrets').set({ secret: envelope, updated_at: now })
        .where('namespace', '=', namespace).where('name', '=', name).executeTakeFirst();
      if (Number(updated.numUpdatedRows) > 0) return { created: false };
      await trx.insertInto('namespace_secrets').values({ namespace, name, secret: envelope, created_by: actor, created_at: now, updated_at: now }).execute();
      return { created: true };
    });
  }

  async list(namespace: string): Promise<SecretInfo[]> {
    const rows = await this.db.kysely.selectFrom('namespace_secrets').select(['name', 'created_by', 'created_at', 'updated_at'])
      .where('namespace', '=', namespace).orderBy('name').execute();
    return rows.map((row) => ({ name: row.name, createdBy: row.created_by, createdAt: new Date(row.created_at).toISOString(), updatedAt: new Date(row.updated_at).toISOString() }));
  }

  async delete(namespace: string, name: string): Promise<void> {
    const result = await this.db.write((trx) => trx.deleteFrom('namespace_secrets').where('namespace', '=', namespace).where('name', '=', name).executeTakeFirst());
    if (Number(result.numDeletedRows) === 0) throw new SecretNotFoundError(`no secret "${name}" in "${namespace}"`);
  }

  /** Plaintext values for a run; a missing name is an error naming it. */
  async reveal(namespace: string, names: string[]): Promise<Array<{ name: string; value: string }>> {
    const out: Array<{ name: string; value: string }> = [];
    for (const name of names) {
      const row = await this.db.kysely.selectFrom('namespace_secrets').select('secret').where('namespace', '=', namespace).where('name', '=', name).executeTakeFirst();
      if (!row) throw new SecretNotFoundError(`the build needs the secret "${name}", which namespace "${namespace}" does not have`);
      out.push({ name, value: await this.vault.open(row.secret, context(namespace, name)) });
    }
    return out;
  }
}

function context(namespace: string, name: string): string {
  return `namespace-secret:${namespace}/${name}`;
}
