/**
 * @module credentials/service
 * A namespace's external registries: where a team pushes and pulls outside Slipway (Docker Hub,
 * Harbor, ECR, GAR, SWR …). The login material is sealed in the vault (context = the record's
 * id, so an envelope cannot be moved to another record); only a non-secret identity is kept in
 * the clear. Which record applies to an image is decided by the longest matching prefix.
 * CI hand-out turns material into a login (exchanging it with the vendor where needed), only
 * where `enable_ci` is on, and every hand-out is audited.
 */
import { isUniqueViolation } from '../db/errors.js';
import { SlipwayError } from '../http/error-catalog.js';
import { randomBytes } from 'node:crypto';
import type { Updateable } from 'kysely';
import type { AuditLog } from '../auth/audit.js';
import type { Database } from '../db/db.js';
import type { ExternalRegistryTable } from '../db/schema.js';
import type { Vault } from '../vault/vault.js';
import { CredentialError } from './errors.js';
import { exchangeCredential, TokenCache, type ExchangeOptions } from './exchange.js';
import { storedCredentialSchema, type CredentialType, type RegistryLogin, type StoredCredential } from './material.js';
import { matchRegistry, normalisePrefix } from './reference.js';

export interface RegistryView {
  id: string;
  namespace: string;
  prefix: string;
  type: CredentialType;
  /** The non-secret identity: user name, access key id, client id or e-mail. */
  username: string | null;
  region: string | null;
  enable_ci: boolean;
  /** Which credential fields are set; values are never returned. */
  credentials: Record<string, '****'>;
  created_at: string;
  updated_at: string;
}

export interface RegistryInput {
  prefix: string;
  type: CredentialType;
  credentials: Record<string, unknown>;
  enable_ci?: boolean;
}

/** Bad input about an external registry (prefix, type, credentials). */
export class ExternalRegistryInputError extends SlipwayError {
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}
export class ExternalRegistryNotFoundError extends SlipwayError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}
export class ExternalRegistryConflictError extends SlipwayError {
  constructor(message: string) {
    super('CONFLICT', message);
  }
}

type Row = ExternalRegistryTable & { enable_ci: number };

export class ExternalRegistries {
  private readonly cache = new TokenCache();

  constructor(private readonly deps: { db: Database; vault: Vault; audit: AuditLog; exchange?: ExchangeOptions }) {
    // Changes made through another replica drop this replica's exchanged login too.
    deps.db.notifications.subscribe(changesChannel, (id) => {
      if (id === '*') this.cache.clear();
      else this.cache.invalidate(id);
    });
  }

  /** Drops the cached login of `id` here and on every other replica. */
  private invalidate(id: string): void {
    this.cache.invalidate(id);
    this.deps.db.notifications.publish(changesChannel, id).catch(() => undefined); // the login's own expiry still bounds it
  }

  async create(namespace: string, input: RegistryInput, actor: string): Promise<RegistryView> {
    const prefix = this.prefix(input.prefix);
    const material = this.material(input.type, input.credentials);
    const id = `reg_${randomBytes(9).toString('base64url')}`;
    const now = Date.now();
    const secret = await this.deps.vault.seal(JSON.stringify(material), context(id));
    const inserted = await this.deps.db.write((trx) => trx.insertInto('external_registries').values({
      id, namespace, prefix, type: material.type, ...identity(material), secret, enable_ci: input.enable_ci ? 1 : 0, created_at: now, updated_at: now,
    }).onConflict((c) => c.columns(['namespace', 'prefix']).doNothing()).executeTakeFirst());
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) throw new ExternalRegistryConflictError(`namespace "${namespace}" already has a registry for prefix ${prefix}`);
    await this.deps.audit.record({ actor, action: 'registry.create', target: `${namespace}/${id}`, outcome: 'ok', detail: { prefix, type: material.type } });
    return this.get(namespace, id);
  }

  async list(namespace: string): Promise<RegistryView[]> {
    const rows = await this.deps.db.kysely.selectFrom('external_registries').selectAll().where('namespace', '=', namespace).orderBy('prefix').execute();
    return Promise.all(rows.map((row) => this.view(row as Row)));
  }

  async get(namespace: string, id: string): Promise<RegistryView> {
    return this.view(await this.row(namespace, id));
  }

  async update(namespace: string, id: string, patch: Partial<RegistryInput>, actor: string): Promise<RegistryView> {
    const row = await this.row(namespace, id);
    const changes: Updateable<ExternalRegistryTable> = { updated_at: Date.now() };
    if (patch.prefix !== undefined) changes.prefix = this.prefix(patch.prefix);
    if (patch.enable_ci !== undefined) changes.enable_ci = patch.enable_ci ? 1 : 0;
    if (patch.credentials !== undefined || (patch.type !== undefined && patch.type !== row.type)) {
      if (patch.credentials === undefined) throw new ExternalRegistryInputError('credentials: required when the type changes');
      const material = this.material(patch.type ?? row.type, patch.credentials);
      Object.assign(changes, { type: material.type, ...identity(material), secret: await this.deps.vault.seal(JSON.stringify(material), context(id)) });
    }
    try {
      await this.deps.db.write((trx) => trx.updateTable('external_registries').set(changes).where('id', '=', id).where('namespace', '=', namespace).execute());
    } catch (error) {
      if (isUniqueViolation(error)) throw new ExternalRegistryConflictError(`namespace "${namespace}" already has a registry for prefix ${changes.prefix}`);
      throw error;
    }
    this.invalidate(id);
    await this.deps.audit.record({ actor, action: 'registry.update', target: `${namespace}/${id}`, outcome: 'ok', detail: { fields: Object.keys(patch) } });
    return this.get(namespace, id);
  }

  async delete(namespace: string, id: string, actor: string): Promise<void> {
    const result = await this.deps.db.write((trx) => trx.deleteFrom('external_registries').where('id', '=', id).where('namespace', '=', namespace).executeTakeFirst());
    if (Number(result.numDeletedRows) === 0) throw new ExternalRegistryNotFoundError(`no registry "${id}" in "${namespace}"`);
    this.invalidate(id);
    await this.deps.audit.record({ actor, action: 'registry.delete', target: `${namespace}/${id}`, outcome: 'ok' });
  }

  /** The registry record that applies to an image reference: longest matching prefix. */
  async match(namespace: string, image: string): Promise<RegistryView | null> {
    const rows = await this.deps.db.kysely.selectFrom('external_registries').selectAll().where('namespace', '=', namespace).execute();
    let found: Row | undefined;
    try {
      found = matchRegistry(image, rows as Row[]);
    } catch (error) {
      throw new ExternalRegistryInputError((error as Error).message);
    }
    return found ? this.view(found) : null;
  }

  /** CI hand-out: a login for the record, only where `enable_ci` is on; audited either way. */
  async handOut(namespace: string, id: string, actor: string, address?: string): Promise<RegistryLogin> {
    const row = await this.row(namespace, id);
    if (!row.enable_ci) {
      await this.deps.audit.record({ actor, action: 'registry.creds', target: `${namespace}/${id}`, outcome: 'denied', address, detail: { reason: 'enable_ci is off' } });
      throw new CredentialError('CREDENTIAL_HAND_OUT_DISABLED', `registry "${id}" does not hand credentials to CI (enable_ci is off)`);
    }
    try {
      const login = await this.login(row);
      await this.deps.audit.record({ actor, action: 'registry.creds', target: `${namespace}/${id}`, outcome: 'ok', address, detail: { prefix: row.prefix, type: row.type } });
      return login;
    } catch (error) {
      await this.deps.audit.record({ actor, action: 'registry.creds', target: `${namespace}/${id}`, outcome: 'failed', address, detail: { error: (error as CredentialError).code ?? 'exchange failed' } });
      throw error;
    }
  }

  /** Records a hand-out refused before it reached the record (e.g. the caller's role). */
  async auditRefusedHandOut(namespace: string, id: string, actor: string, address: string | undefined, reason: string): Promise<void> {
    await this.deps.audit.record({ actor, action: 'registry.creds', target: `${namespace}/${id}`, outcome: 'denied', address, detail: { reason } });
  }

  /** A login for Slipway's own use (pulling a base image, pushing a build): no enable_ci check. */
  async loginForImage(namespace: string, image: string): Promise<RegistryLogin | null> {
    const view = await this.match(namespace, image);
    return view ? this.login(await this.row(namespace, view.id)) : null;
  }

  /** A login from one named record, for Slipway's own use (a pull-through namespace's upstream). */
  async loginById(namespace: string, id: string): Promise<RegistryLogin> {
    return this.login(await this.row(namespace, id));
  }

  private async login(row: Row): Promise<RegistryLogin> {
    const material = storedCredentialSchema.parse(JSON.parse(await this.deps.vault.open(row.secret, context(row.id))));
    return this.cache.get(row.id, () => exchangeCredential(material, this.deps.exchange));
  }

  private async row(namespace: string, id: string): Promise<Row> {
    const row = await this.deps.db.kysely.selectFrom('external_registries').selectAll().where('id', '=', id).where('namespace', '=', namespace).executeTakeFirst();
    if (!row) throw new ExternalRegistryNotFoundError(`no registry "${id}" in "${namespace}"`);
    return row as Row;
  }

  private prefix(prefix: string): string {
    try {
      return normalisePrefix(prefix);
    } catch (error) {
      throw new ExternalRegistryInputError(`prefix: ${(error as Error).message}`);
    }
  }

  private material(type: CredentialType, credentials: Record<string, unknown>): StoredCredential {
    const parsed = storedCredentialSchema.safeParse({ ...credentials, type });
    if (!parsed.success) {
      throw new ExternalRegistryInputError(parsed.error.issues.map((i) => `credentials.${i.path.join('.') || type}: ${i.message}`).join('; '));
    }
    return parsed.data;
  }

  private async view(row: Row): Promise<RegistryView> {
    const fields = secretFields[row.type] ?? [];
    return {
      id: row.id, namespace: row.namespace, prefix: row.prefix, type: row.type, username: row.username, region: row.region,
      enable_ci: row.enable_ci === 1,
      credentials: Object.fromEntries(fields.map((f) => [f, '****'])) as Record<string, '****'>,
      created_at: new Date(row.created_at).toISOString(), updated_at: new Date(row.updated_at).toISOString(),
    };
  }
}

/** Notifications of changed external registries; the payload is the registry id. */
const changesChannel = 'slipway_external_registries';

const secretFields: Record<string, string[]> = {
  basic: ['password'], swr: ['secretKey'], ecr: ['secretAccessKey'], gcr: ['serviceAccountKey'], gar: ['serviceAccountKey'], acr: ['clientSecret'], ocir: ['authToken'],
};

function context(id: string): string {
  return `external-registry:${id}`;
}

/** The part of the material that is not secret, kept in the clear for display and audit. */
function identity(material: StoredCredential): { username: string | null; region: string | null } {
  switch (material.type) {
    case 'basic': return { username: material.username, region: null };
    case 'swr': return { username: material.accessKey, region: material.region };
    case 'ecr': return { username: material.accessKeyId, region: material.region };
    case 'gcr':
    case 'gar': {
      const key = typeof material.serviceAccountKey === 'string' ? safeEmail(material.serviceAccountKey) : material.serviceAccountKey.client_email;
      return { username: key, region: null };
    }
    case 'acr': return { username: material.clientId, region: null };
    case 'ocir': return { username: `${material.tenancyNamespace}/${material.username}`, region: null };
  }
}

function safeEmail(keyJson: string): string | null {
  try {
    return (JSON.parse(keyJson) as { client_email?: string }).client_email ?? null;
  } catch {
    return null;
  }
}
