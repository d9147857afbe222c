/**
 * @module auth/registry-authorizer
 * Access control for every `/v2` route, the way registry clients expect it: a bearer token from
 * the token endpoint (its `access` claim lists what was granted per repository), or HTTP basic
 * straight on `/v2` (password or API key). Anonymous callers may pull public repositories; a
 * missing grant is 401 with a `WWW-Authenticate: Bearer realm,service,scope` challenge for
 * anonymous callers and 403 DENIED for authenticated ones — the same for a private repository
 * that exists and one that does not, so nothing leaks.
 */
import type { FastifyRequest } from 'fastify';
import { RegistryError } from '../registry/errors.js';
import type { AccessService, Principal } from './access.js';
import type { AuditLog } from './audit.js';
import { TooManyAttemptsError, type Credentials } from './credentials.js';
import { formatScope, type AccessAction, type AccessScope, type Authorizer } from './scope.js';
import { TokenError, type TokenService } from './tokens.js';

export interface Caller {
  /** null for anonymous callers. */
  principal: Principal | null;
  /** Present when the caller came with a bearer token: exactly what it grants. */
  granted?: AccessScope[];
}

const callers = new WeakMap<FastifyRequest, Caller>();

export class RegistryAuthorizer implements Authorizer {
  constructor(private readonly deps: { access: AccessService; tokens: TokenService; credentials: Credentials; audit: AuditLog; service: string; realm?: string }) {}

  async authorize(request: FastifyRequest, scopes: AccessScope[]): Promise<void> {
    const caller = await this.caller(request);
    // `/v2/` (no scopes) tells a client whether to log in: anonymous callers are challenged.
    if (scopes.length === 0 && !caller.principal && !caller.granted) throw this.challenge(request, []);
    for (const scope of scopes) {
      if (await this.holds(caller, scope)) continue;
      if (!caller.principal && !caller.granted) throw this.challenge(request, scopes);
      if (caller.granted) throw this.challenge(request, scopes, 'insufficient_scope');
      throw new RegistryError('DENIED', `access to ${formatScope(scope)} is denied`);
    }
  }

  async permits(request: FastifyRequest, scope: AccessScope): Promise<boolean> {
    try {
      return await this.holds(await this.caller(request), scope);
    } catch {
      return false;
    }
  }

  private async holds(caller: Caller, scope: AccessScope): Promise<boolean> {
    if (scope.type !== 'repository') return false;
    if (caller.granted) {
      const entry = caller.granted.find((g) => g.type === 'repository' && g.name === scope.name);
      return scope.actions.every((action) => entry?.actions.includes(action) || entry?.actions.includes('*'));
    }
    const allowed = await this.allowedActions(caller.principal, scope.name, scope.actions.includes('push'));
    return scope.actions.every((action) => allowed.has(action));
  }

  /** What the principal may do; an admin's first push into a namespace creates it. */
  async allowedActions(principal: Principal | null, repository: string, creating: boolean): Promise<Set<AccessAction>> {
    if (principal?.admin && creating) await this.deps.access.ensureNamespaceForAdmin(repository, principal);
    return this.deps.access.actionsOn(principal, repository);
  }

  /** The caller behind the request's Authorization header, resolved once per request. */
  async caller(request: FastifyRequest): Promise<Caller> {
    const known = callers.get(request);
    if (known) return known;
    const header = request.headers.authorization;
    let caller: Caller = { principal: null };
    const bearer = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    if (bearer && this.deps.access.isKey(bearer)) {
      // The REST API's preferred form: an API key as the bearer value.
      caller = { principal: await this.checked(request, () => this.deps.credentials.check('', bearer, request.ip)) };
    } else if (header?.startsWith('Bearer ')) {
      try {
        const verified = await this.deps.tokens.verify(header.slice(7).trim(), 'access');
        const principal = verified.subject ? await this.deps.access.findByName(verified.subject) : null;
        caller = { principal, granted: verified.access };
      } catch (error) {
        if (!(error instanceof TokenError)) throw error;
        throw this.challenge(request, [], 'invalid_token', error.message);
      }
    } else if (header?.startsWith('Basic ')) {
      caller = { principal: await this.checked(request, () => this.deps.credentials.basic(header, request.ip)) };
    }
    callers.set(request, caller);
    return caller;
  }

  private async checked(request: FastifyRequest, check: () => Promise<Principal | null>): Promise<Principal> {
    let principal: Principal | null;
    try {
      principal = await check();
    } catch (error) {
      if (!(error instanceof TooManyAttemptsError)) throw error;
      throw new RegistryError('TOOMANYREQUESTS', error.message).withHeaders({ 'Retry-After': String(error.retryAfterSeconds) });
    }
    if (!principal) throw this.challenge(request, [], undefined, 'invalid username, password or API key');
    return principal;
  }

  private challenge(request: FastifyRequest, scopes: AccessScope[], error?: string, message?: string): RegistryError {
    const realm = this.deps.realm ?? `${request.protocol}://${request.host}/auth/token`;
    const parts = [`realm="${realm}"`, `service="${this.deps.service}"`];
    if (scopes.length > 0) parts.push(`scope="${scopes.map(formatScope).join(' ')}"`);
    if (error) parts.push(`error="${error}"`);
    return new RegistryError('UNAUTHORIZED', message ?? 'authentication required').withHeaders({ 'WWW-Authenticate': `Bearer ${parts.join(',')}` });
  }
}
