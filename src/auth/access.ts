/**
 * @module auth/access
 * Who is who and who may do what: users and service accounts, API keys, namespaces with
 * per-namespace roles (owner, contributor, reader), public repositories, and the server admin
 * role above them. Every permission question in Slipway is answered by `actionsOn`.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Database } from '../db/db.js';
import type { AccessAction } from './scope.js';
import { decoyHash, hashPassword, verifyPassword } from './passwords.js';
import { proofOf } from './verified-logins.js';
import { keyScopes, roles, type KeyScope, type Role } from './roles.js';

export { keyScopes, roles, type KeyScope, type Role } from './roles.js';

/** What each role may do in its namespace's repositories. */
const roleActions: Record<Role, AccessAction[]> = {
  owner: ['pull', 'push', 'delete'],
  contributor: ['pull', 'push'],
  reader: ['pull'],
};

export interface Principal {
  id: string;
  name: string;
  kind: 'user' | 'service';
  admin: boolean;
  /** Set when the caller authenticated with an API key: the key's limits. */
  keyScopes?: KeyScope[];
  keyId?: string;
}

export interface CreatedKey {
  id: string;
  /** Shown once; only its hash is stored. */
  key: string;
  name: string;
  scopes: KeyScope[];
  expiresAt: string | null;
}

export class AccessError extends SlipwayError {
  constructor(override readonly code: 'BAD_REQUEST' | 'CONFLICT' | 'NOT_FOUND' | 'FORBIDDEN', message: string) {
    super(code, message);
  }
}

const principalName = /^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$/;
export const namespaceName = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const keyPattern = /^slw_([A-Za-z0-9]{12})\.([A-Za-z0-9_-]{43})$/;

export function namespaceOf(repository: string): string {
  return repository.split('/')[0]!;
}

export class AccessService {
  private readonly credentialChangeListeners: Array<(principalId: string) => void> = [];

  constructor(private readonly db: Database) {}

  /** Called with a principal's id when its password changes or it is deleted (caches drop what they hold). */
  onCredentialChange(listener: (principalId: string) => void): void {
    this.credentialChangeListeners.push(listener);
  }

  private credentialsChanged(principalId: string): void {
    for (const listener of this.credentialChangeListeners) listener(principalId);
  }

  /** First start: the `admin` user, with the given password or a generated one (returned once). */
  async bootstrapAdmin(password?: string): Promise<{ created: boolean; password?: string }> {
    const existing = await this.db.kysely.selectFrom('principals').select('id').where('name', '=', 'admin').executeTakeFirst();
    if (existing) return { created: false };
    const chosen = password ?? randomBytes(18).toString('base64url');
    try {
      await this.createUser('admin', chosen, true);
    } catch (error) {
      if (error instanceof AccessError && error.code === 'CONFLICT') return { created: false }; // another replica won
      throw error;
    }
    return { created: true, password: password ? undefined : chosen };
  }

  async createUser(name: string, password: string, admin = false): Promise<Principal> {
    if (password.length < 8) throw new AccessError('BAD_REQUEST', 'password must have at least 8 characters');
    return this.createPrincipal(name, 'user', await hashPassword(password), admin);
  }

  async createServiceAccount(name: string): Promise<Principal> {
    return this.createPrincipal(name, 'service', null, false);
  }

  private async createPrincipal(name: string, kind: 'user' | 'service', passwordHash: string | null, admin: boolean): Promise<Principal> {
    if (!principalName.test(name)) throw new AccessError('BAD_REQUEST', `invalid name "${name}": lowercase letters, digits, '.', '_' and '-', 1–64 characters`);
    const id = `p_${randomBytes(9).toString('base64url')}`;
    const inserted = await this.db.write((trx) => trx.insertInto('principals')
      .values({ id, name, kind, password_hash: passwordHash, admin: admin ? 1 : 0, created_at: Date.now() })
      .onConflict((c) => c.column('name').doNothing()).executeTakeFirst());
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) throw new AccessError('CONFLICT', `"${name}" already exists`);
    return { id, name, kind, admin };
  }

  async setPassword(principalId: string, password: string): Promise<void> {
    if (password.length < 8) throw new AccessError('BAD_REQUEST', 'password must have at least 8 characters');
    const hash = await hashPassword(password);
    await this.db.write((trx) => trx.updateTable('principals').set({ password_hash: hash }).where('id', '=', principalId).where('kind', '=', 'user').execute());
    this.credentialsChanged(principalId);
  }

  /** Deletes a user or service account with its keys and memberships; refused while it is a namespace's only owner. */
  async deletePrincipal(principalId: string): Promise<void> {
    await this.db.write(async (trx) => {
      const owned = await trx.selectFrom('memberships').select('namespace').where('principal_id', '=', principalId).where('role', '=', 'owner').execute();
      for (const { namespace } of owned) {
        const others = await trx.selectFrom('memberships').select('principal_id').where('namespace', '=', namespace).where('role', '=', 'owner')
          .where('principal_id', '!=', principalId).executeTakeFirst();
        if (!others) throw new AccessError('CONFLICT', `it is the only owner of namespace "${namespace}": make someone else owner first`);
      }
      await trx.deleteFrom('memberships').where('principal_id', '=', principalId).execute();
      await trx.updateTable('api_keys').set({ revoked_at: Date.now() }).where('principal_id', '=', principalId).where('revoked_at', 'is', null).execute();
      await trx.deleteFrom('principals').where('id', '=', principalId).execute();
    });
    this.credentialsChanged(principalId);
  }

  async findByName(name: string): Promise<Principal | null> {
    const row = await this.db.kysely.selectFrom('principals').select(['id', 'name', 'kind', 'admin']).where('name', '=', name).executeTakeFirst();
    return row ? { id: row.id, name: row.name, kind: row.kind, admin: row.admin === 1 } : null;
  }

  async listPrincipals(): Promise<Principal[]> {
    const rows = await this.db.kysely.selectFrom('principals').select(['id', 'name', 'kind', 'admin']).orderBy('name').execute();
    return rows.map((row) => ({ id: row.id, name: row.name, kind: row.kind, admin: row.admin === 1 }));
  }

  /** A user's password login; null on any mismatch (unknown users take as long as known ones). */
  async checkPassword(name: string, password: string): Promise<Principal | null> {
    return (await this.verifyPasswordOf(name, password))?.principal ?? null;
  }

  /** Like `checkPassword`, with the stored hash the password matched (what a login cache keys its proof on). */
  async verifyPasswordOf(name: string, password: string): Promise<{ principal: Principal; storedHash: string } | null> {
    const row = await this.db.kysely.selectFrom('principals').selectAll().where('name', '=', name).executeTakeFirst();
    const ok = await verifyPassword(password, row?.password_hash ?? decoyHash);
    if (!row || !row.password_hash || !ok) return null;
    return { principal: { id: row.id, name: row.name, kind: row.kind, admin: row.admin === 1 }, storedHash: row.password_hash };
  }

  /**
   * The principal as it is now, if its stored password hash still matches `proof` (from an
   * earlier successful check); null when the password changed or the principal is gone.
   * One point select: this is what a remembered login costs.
   */
  async confirmVerified(principalId: string, proof: string): Promise<Principal | null> {
    const row = await this.db.kysely.selectFrom('principals').select(['id', 'name', 'kind', 'admin', 'password_hash'])
      .where('id', '=', principalId).executeTakeFirst();
    if (!row?.password_hash || proofOf(row.password_hash) !== proof) return null;
    return { id: row.id, name: row.name, kind: row.kind, admin: row.admin === 1 };
  }

  async createKey(owner: Principal, name: string, scopes: KeyScope[] = ['*'], expiresInMs?: number): Promise<CreatedKey> {
    const unknown = scopes.filter((s) => !keyScopes.includes(s));
    if (unknown.length > 0 || scopes.length === 0) throw new AccessError('BAD_REQUEST', `unknown key scopes ${JSON.stringify(unknown)}; use ${keyScopes.join(', ')}`);
    if (!name || name.length > 100) throw new AccessError('BAD_REQUEST', 'a key needs a name of 1–100 characters');
    if (scopes.includes('metrics') && !owner.admin) throw new AccessError('FORBIDDEN', 'only server admins may create keys with the metrics scope');
    // A key never carries more than the key it was made with.
    const limited = owner.keyScopes && !owner.keyScopes.includes('*') ? scopes.filter((s) => s !== '*' && owner.keyScopes!.includes(s)) : scopes;
    if (limited.length === 0) throw new AccessError('FORBIDDEN', 'this key cannot create a key with those scopes');
    const id = randomBytes(9).toString('base64').replace(/[^A-Za-z0-9]/g, 'x').slice(0, 12);
    const secret = randomBytes(32).toString('base64url');
    const now = Date.now();
    const expiresAt = expiresInMs ? now + expiresInMs : null;
    await this.db.write((trx) => trx.insertInto('api_keys').values({
      id, principal_id: owner.id, name, secret_hash: sha256(secret), scopes: JSON.stringify(limited),
      expires_at: expiresAt, last_used_at: null, revoked_at: null, created_at: now,
    }).execute());
    return { id, key: `slw_${id}.${secret}`, name, scopes: limited, expiresAt: expiresAt ? new Date(expiresAt).toISOString() : null };
  }

  /** True when the string has the shape of an API key (so a password is not tried against it). */
  isKey(candidate: string): boolean {
    return keyPattern.test(candidate);
  }

  async checkKey(key: string): Promise<Principal | null> {
    const match = keyPattern.exec(key);
    if (!match) return null;
    const row = await this.db.kysely.selectFrom('api_keys as k').innerJoin('principals as p', 'p.id', 'k.principal_id')
      .select(['k.id', 'k.secret_hash', 'k.scopes', 'k.expires_at', 'k.revoked_at', 'k.last_used_at', 'p.id as pid', 'p.name', 'p.kind', 'p.admin'])
      .where('k.id', '=', match[1]!).executeTakeFirst();
    if (!row) return null;
    const given = Buffer.from(sha256(match[2]!));
    if (!timingSafeEqual(given, Buffer.from(row.secret_hash))) return null;
    const now = Date.now();
    if (row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= now)) return null;
    // last-used is informative: refreshed at most once a minute to keep logins off the write lock.
    if (row.last_used_at === null || now - row.last_used_at > 60_000) {
      await this.db.write((trx) => trx.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', row.id).execute());
    }
    return { id: row.pid, name: row.name, kind: row.kind, admin: row.admin === 1, keyScopes: JSON.parse(row.scopes) as KeyScope[], keyId: row.id };
  }

  async listKeys(ownerId: string) {
    const rows = await this.db.kysely.selectFrom('api_keys').selectAll().where('principal_id', '=', ownerId).orderBy('created_at').execute();
    return rows.map((row) => ({
      id: row.id, name: row.name, scopes: JSON.parse(row.scopes) as KeyScope[],
      createdAt: iso(row.created_at), expiresAt: iso(row.expires_at), lastUsedAt: iso(row.last_used_at), revokedAt: iso(row.revoked_at),
    }));
  }

  /** Revokes a key of `ownerId` (or of anyone, for an admin). */
  async revokeKey(keyId: string, ownerId: string | null): Promise<boolean> {
    let update = this.db.kysely.updateTable('api_keys').set({ revoked_at: Date.now() }).where('id', '=', keyId).where('revoked_at', 'is', null);
    if (ownerId) update = update.where('principal_id', '=', ownerId);
    const result = await this.db.write((trx) => trx.executeQuery(update.compile()));
    return Number(result.numAffectedRows ?? 0) > 0;
  }

  async createNamespace(name: string, creator: Principal): Promise<void> {
    if (!namespaceName.test(name) || name.length > 64) throw new AccessError('BAD_REQUEST', `invalid namespace "${name}": lowercase letters and digits, separated by '.', '_' or '-'`);
    await this.db.write(async (trx) => {
      const inserted = await trx.insertInto('namespaces').values({ name, created_by: creator.id, created_at: Date.now() })
        .onConflict((c) => c.column('name').doNothing()).executeTakeFirst();
      if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 0) throw new AccessError('CONFLICT', `namespace "${name}" already exists`);
      await trx.insertInto('memberships').values({ namespace: name, principal_id: creator.id, role: 'owner', updated_at: Date.now() }).execute();
    });
  }

  /** An admin pushing into a namespace that does not exist yet creates it (plain-registry use). */
  async ensureNamespaceForAdmin(repository: string, admin: Principal): Promise<void> {
    const namespace = namespaceOf(repository);
    if (!admin.admin || !namespaceName.test(namespace) || (await this.namespaceExists(namespace))) return;
    try {
      await this.createNamespace(namespace, admin);
    } catch (error) {
      if (!(error instanceof AccessError && error.code === 'CONFLICT')) throw error;
    }
  }

  async namespaceExists(name: string): Promise<boolean> {
    return !!(await this.db.kysely.selectFrom('namespaces').select('name').where('name', '=', name).executeTakeFirst());
  }

  /** Namespaces the principal belongs to (all of them for an admin), with its role. */
  async listNamespaces(principal: Principal) {
    if (principal.admin) {
      const rows = await this.db.kysely.selectFrom('namespaces').select(['name', 'created_at']).orderBy('name').execute();
      return rows.map((row) => ({ name: row.name, role: 'admin' as const, createdAt: iso(row.created_at) }));
    }
    const rows = await this.db.kysely.selectFrom('memberships as m').innerJoin('namespaces as n', 'n.name', 'm.namespace')
      .select(['n.name', 'n.created_at', 'm.role']).where('m.principal_id', '=', principal.id).orderBy('n.name').execute();
    return rows.map((row) => ({ name: row.name, role: row.role, createdAt: iso(row.created_at) }));
  }

  async roleIn(namespace: string, principalId: string): Promise<Role | null> {
    const row = await this.db.kysely.selectFrom('memberships').select('role').where('namespace', '=', namespace).where('principal_id', '=', principalId).executeTakeFirst();
    return row?.role ?? null;
  }

  async members(namespace: string) {
    return this.db.kysely.selectFrom('memberships as m').innerJoin('principals as p', 'p.id', 'm.principal_id')
      .select(['p.name', 'p.kind', 'm.role']).where('m.namespace', '=', namespace).orderBy('p.name').execute();
  }

  async setMember(namespace: string, principalId: string, role: Role): Promise<void> {
    if (!roles.includes(role)) throw new AccessError('BAD_REQUEST', `unknown role "${role}"; use ${roles.join(', ')}`);
    await this.db.write(async (trx) => {
      const now = Date.now();
      await trx.insertInto('memberships').values({ namespace, principal_id: principalId, role, updated_at: now })
        .onConflict((c) => c.columns(['namespace', 'principal_id']).doUpdateSet({ role, updated_at: now })).execute();
      await assertOwnerLeft(trx, namespace);
    });
  }

  async removeMember(namespace: string, principalId: string): Promise<boolean> {
    return this.db.write(async (trx) => {
      const result = await trx.deleteFrom('memberships').where('namespace', '=', namespace).where('principal_id', '=', principalId).executeTakeFirst();
      await assertOwnerLeft(trx, namespace);
      return Number(result.numDeletedRows) > 0;
    });
  }

  async setPublic(repository: string, isPublic: boolean): Promise<void> {
    await this.db.write(async (trx) => {
      if (!isPublic) {
        await trx.deleteFrom('public_repositories').where('repository', '=', repository).execute();
        return;
      }
      const now = Date.now();
      await trx.insertInto('public_repositories').values({ repository, updated_at: now })
        .onConflict((c) => c.column('repository').doUpdateSet({ updated_at: now })).execute();
    });
  }

  async isPublic(repository: string): Promise<boolean> {
    return !!(await this.db.kysely.selectFrom('public_repositories').select('repository').where('repository', '=', repository).executeTakeFirst());
  }

  /** Everything `principal` (null: anonymous) may do on `repository`. */
  async actionsOn(principal: Principal | null, repository: string): Promise<Set<AccessAction>> {
    const actions = new Set<AccessAction>();
    if (await this.isPublic(repository)) actions.add('pull');
    if (principal) {
      const role = principal.admin ? 'owner' : await this.roleIn(namespaceOf(repository), principal.id);
      for (const action of role ? roleActions[role] : []) actions.add(action);
    }
    if (principal?.keyScopes && !principal.keyScopes.includes('*')) {
      for (const action of [...actions]) if (!principal.keyScopes.includes(action as KeyScope)) actions.delete(action);
    }
    return actions;
  }

  /** Whether the principal may use the management API at all (keys limited to registry scopes may not). */
  mayUseApi(principal: Principal): boolean {
    return !principal.keyScopes || principal.keyScopes.includes('*') || principal.keyScopes.includes('api');
  }
}

async function assertOwnerLeft(trx: Parameters<Parameters<Database['write']>[0]>[0], namespace: string): Promise<void> {
  const owner = await trx.selectFrom('memberships').select('principal_id').where('namespace', '=', namespace).where('role', '=', 'owner').executeTakeFirst();
  if (!owner) throw new AccessError('CONFLICT', `namespace "${namespace}" must keep at least one owner`);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
