/**
 * @module auth/api-guard
 * The REST API's access checks, shared by every part's `/api/v1` routes: who is calling
 * (API key as Bearer, or basic), whether they are a server admin, and whether they hold at
 * least a given role in a namespace. A namespace the caller cannot see answers exactly like
 * one that does not exist.
 */
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../http/errors.js';
import { RegistryError } from '../registry/errors.js';
import type { AccessService, Principal, Role } from './access.js';
import type { RegistryAuthorizer } from './registry-authorizer.js';

const rank: Record<Role, number> = { reader: 1, contributor: 2, owner: 3 };

export class ApiGuard {
  constructor(private readonly access: AccessService, private readonly authorizer: RegistryAuthorizer) {}

  async authenticate(request: FastifyRequest): Promise<Principal> {
    const principal = await this.principal(request);
    if (!this.access.mayUseApi(principal)) throw new ApiError('FORBIDDEN', 'this API key is limited to registry scopes');
    return principal;
  }

  /**
   * Who may read `GET /metrics` (it names every namespace and function): server admins only,
   * by password or with a key scoped `metrics` or `*`; a key with other scopes is refused.
   */
  async authenticateMetrics(request: FastifyRequest): Promise<Principal> {
    const principal = await this.principal(request);
    const scoped = !principal.keyScopes || principal.keyScopes.includes('*') || principal.keyScopes.includes('metrics');
    if (!principal.admin || !scoped) throw new ApiError('FORBIDDEN', 'metrics are for server admins (a password, or a key with the metrics scope)');
    return principal;
  }

  private async principal(request: FastifyRequest): Promise<Principal> {
    let caller;
    try {
      caller = await this.authorizer.caller(request);
    } catch (error) {
      if (error instanceof RegistryError && error.code === 'TOOMANYREQUESTS') throw new ApiError('TOO_MANY_REQUESTS', error.message);
      if (error instanceof RegistryError) throw new ApiError('UNAUTHORIZED', error.message);
      throw error;
    }
    if (!caller.principal || caller.granted) throw new ApiError('UNAUTHORIZED', 'send an API key as Authorization: Bearer <key>, or a user name and password as basic auth');
    return caller.principal;
  }

  requireAdmin(principal: Principal): void {
    if (!principal.admin) throw new ApiError('FORBIDDEN', 'server admins only');
  }

  /** Resolves to the caller's role (admins count as owners everywhere). */
  async requireRole(principal: Principal, namespace: string, least: Role): Promise<Role> {
    if (principal.admin) {
      if (!(await this.access.namespaceExists(namespace))) throw new ApiError('NOT_FOUND', `no namespace "${namespace}"`);
      return 'owner';
    }
    const held = await this.access.roleIn(namespace, principal.id);
    if (!held) throw new ApiError('NOT_FOUND', `no namespace "${namespace}"`);
    if (rank[held] < rank[least]) throw new ApiError('FORBIDDEN', `needs the ${least} role in "${namespace}"`);
    return held;
  }
}
