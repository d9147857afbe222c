/**
 * @module auth/routes
 * The token endpoint of registry token auth (`GET /auth/token` with HTTP basic or anonymous;
 * `POST /auth/token` with the OAuth2 password and refresh_token grants) and the access-control
 * part of the REST API under `/api/v1`: namespaces and members, users and service accounts,
 * API keys, repository visibility, the audit log.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../http/errors.js';
import { parseBody } from '../http/validation.js';
import { ApiGuard } from './api-guard.js';
import { namespaceOf, type AccessService, type Principal } from './access.js';
import type { AuditLog } from './audit.js';
import { TooManyAttemptsError, type Credentials } from './credentials.js';
import type { RegistryAuthorizer } from './registry-authorizer.js';
import type { AccessAction, AccessScope } from './scope.js';
import { TokenError, type TokenService } from './tokens.js';
import { parseDuration } from '../config/config.js';
import { auditQuery, createKeyBody, createNamespaceBody, createUserBody, passwordBody, sessionBody, setMemberBody, visibilityBody } from './api.js';
import { proxySettingsInput, viewProxySettings, type ProxySettingsStore } from '../registry/proxy-settings.js';

export interface AuthRoutesOptions {
  access: AccessService;
  credentials: Credentials;
  tokens: TokenService;
  audit: AuditLog;
  authorizer: RegistryAuthorizer;
  service: string;
  /** Pull-through cache settings of namespaces; absent: `proxy` is refused. */
  proxies?: ProxySettingsStore;
  /** Mirror mode: the proxy repository an unprefixed name stands for (registry/pull-through.ts), or null. */
  mirrorName?: (repository: string) => Promise<string | null>;
}

/** `repository:<name>:<actions>` as registry clients send it; unknown types are ignored. */
export function parseScope(text: string): AccessScope | null {
  const first = text.indexOf(':');
  const last = text.lastIndexOf(':');
  if (first < 0 || last === first) return null;
  const type = text.slice(0, first);
  if (type !== 'repository') return null;
  const actions = text.slice(last + 1).split(',').filter((a): a is AccessAction => ['pull', 'push', 'delete', '*'].includes(a));
  return { type, name: text.slice(first + 1, last), actions };
}

export async function authRoutes(app: FastifyInstance, options: AuthRoutesOptions): Promise<void> {
  const { access, credentials, tokens, audit, authorizer, service } = options;

  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  const login = async (request: FastifyRequest, username: string, secret: string): Promise<Principal> => {
    try {
      const principal = await credentials.check(username, secret, request.ip);
      if (!principal) throw new ApiError('UNAUTHORIZED', 'invalid username, password or API key');
      await audit.record({ actor: principal.name, action: 'login', outcome: 'ok', address: request.ip, detail: { method: principal.keyId ? 'api-key' : 'password', keyId: principal.keyId } });
      return principal;
    } catch (error) {
      if (error instanceof TooManyAttemptsError) throw new ApiError('TOO_MANY_REQUESTS', error.message);
      throw error;
    }
  };

  /** Grants the requested actions the principal holds; entries with nothing granted are left out. */
  const grant = async (principal: Principal | null, scopes: AccessScope[]): Promise<AccessScope[]> => {
    const granted: AccessScope[] = [];
    for (const scope of scopes) {
      const allowed = await authorizer.allowedActions(principal, scope.name, scope.actions.includes('push') || scope.actions.includes('*'));
      const actions = scope.actions.includes('*') ? [...allowed] : scope.actions.filter((a) => allowed.has(a));
      if (actions.length > 0) granted.push({ type: 'repository', name: scope.name, actions });
      // A mirror client names the upstream's path; the registry serves it from the proxy
      // repository, so the token must cover that name too (pull only: mirrors are read-only).
      const mirrored = await options.mirrorName?.(scope.name);
      if (mirrored && (scope.actions.includes('pull') || scope.actions.includes('*')) && (await authorizer.allowedActions(principal, mirrored, false)).has('pull')) {
        granted.push({ type: 'repository', name: mirrored, actions: ['pull'] });
      }
    }
    return granted;
  };

  const issue = async (principal: Principal | null, scopeParam: unknown, refresh: boolean) => {
    const requested = (Array.isArray(scopeParam) ? scopeParam : scopeParam ? [scopeParam] : [])
      .flatMap((s) => String(s).split(' ')).map(parseScope).filter((s): s is AccessScope => s !== null);
    const granted = await grant(principal, requested);
    const issued = await tokens.issueAccess({ subject: principal?.name ?? '', access: granted });
    const body: Record<string, unknown> = { token: issued.token, access_token: issued.token, expires_in: issued.expiresIn, issued_at: issued.issuedAt };
    if (refresh && principal) body.refresh_token = await tokens.issueRefresh(principal.name);
    return body;
  };

  app.get('/auth/token', async (request) => {
    const query = request.query as Record<string, unknown>;
    const header = request.headers.authorization;
    let principal: Principal | null = null;
    if (header?.startsWith('Basic ')) {
      const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      principal = await login(request, decoded.slice(0, colon), decoded.slice(colon + 1));
    }
    return issue(principal, query.scope, query.offline_token === 'true');
  });

  app.post('/auth/token', async (request) => {
    const form = (request.body ?? {}) as Record<string, string>;
    let principal: Principal;
    if (form.grant_type === 'password') {
      if (!form.username || !form.password) throw new ApiError('BAD_REQUEST', 'username and password are required');
      principal = await login(request, form.username, form.password);
    } else if (form.grant_type === 'refresh_token') {
      try {
        const verified = await tokens.verify(form.refresh_token ?? '', 'refresh');
        const found = await access.findByName(verified.subject);
        if (!found) throw new TokenError('unknown subject');
        principal = found;
      } catch (error) {
        if (error instanceof TokenError) throw new ApiError('UNAUTHORIZED', 'invalid refresh token');
        throw error;
      }
    } else {
      throw new ApiError('BAD_REQUEST', 'grant_type must be password or refresh_token');
    }
    return issue(principal, form.scope, form.grant_type === 'password' && form.access_type === 'offline' ? true : form.grant_type === 'refresh_token');
  });

  // ---- REST API ----
  const guard = new ApiGuard(access, authorizer);
  const authenticated = (request: FastifyRequest) => guard.authenticate(request);
  const requireAdmin = (principal: Principal) => guard.requireAdmin(principal);
  const requireRole = (principal: Principal, namespace: string, least: 'owner' | 'reader') => guard.requireRole(principal, namespace, least);
  const body = parseBody;
  app.get('/api/v1/me', async (request: FastifyRequest) => {
    const me = await authenticated(request);
    return { name: me.name, kind: me.kind, admin: me.admin, namespaces: await access.listNamespaces(me) };
  });

  app.get('/api/v1/namespaces', async (request: FastifyRequest) => access.listNamespaces(await authenticated(request)));

  app.post('/api/v1/namespaces', async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await authenticated(request);
    const { name, proxy } = body(createNamespaceBody, request);
    if (proxy && !options.proxies) throw new ApiError('UNAVAILABLE', 'pull-through namespaces are not available on this server');
    await access.createNamespace(name, me);
    if (proxy) await options.proxies!.set(name, proxy);
    await audit.record({ actor: me.name, action: 'namespace.create', target: name, outcome: 'ok', address: request.ip, detail: proxy ? { proxy: proxy.url } : undefined });
    return reply.code(201).send({ name, role: 'owner' });
  });

  app.get('/api/v1/namespaces/:ns/proxy', async (request: FastifyRequest) => {
    const me = await authenticated(request);
    const { ns } = request.params as { ns: string };
    await requireRole(me, ns, 'reader');
    const settings = await options.proxies?.get(ns);
    if (!settings) throw new ApiError('NOT_FOUND', `namespace "${ns}" is not a pull-through cache`);
    return viewProxySettings(settings);
  });

  app.put('/api/v1/namespaces/:ns/proxy', async (request: FastifyRequest) => {
    const me = await authenticated(request);
    const { ns } = request.params as { ns: string };
    await requireRole(me, ns, 'owner');
    const input = body(proxySettingsInput, request);
    if (!options.proxies) throw new ApiError('UNAVAILABLE', 'pull-through namespaces are not available on this server');
    const settings = await options.proxies.set(ns, input);
    await audit.record({ actor: me.name, action: 'namespace.proxy', target: ns, outcome: 'ok', address: request.ip, detail: { url: settings.url } });
    return viewProxySettings(settings);
  });

  app.get('/api/v1/namespaces/:ns/members', async (request: FastifyRequest) => {
    const me = await authenticated(request);
    const { ns } = request.params as { ns: string };
    await requireRole(me, ns, 'reader');
    return access.members(ns);
  });

  app.put('/api/v1/namespaces/:ns/members/:member', async (request: FastifyRequest) => {
    const me = await authenticated(request);
    const { ns, member } = request.params as { ns: string; member: string };
    await requireRole(me, ns, 'owner');
    const { role } = body(setMemberBody, request);
    const target = await access.findByName(member);
    if (!target) throw new ApiError('NOT_FOUND', `no user or service account "${member}"`);
    await access.setMember(ns, target.id, role as 'owner');
    await audit.record({ actor: me.name, action: 'member.set', target: `${ns}/${member}`, outcome: 'ok', address: request.ip, detail: { role } });
    return { namespace: ns, member, role };
  });

  app.delete('/api/v1/namespaces/:ns/members/:member', async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await authenticated(request);
    const { ns, member } = request.params as { ns: string; member: string };
    await requireRole(me, ns, 'owner');
    const target = await access.findByName(member);
    if (!target || !(await access.removeMember(ns, target.id))) throw new ApiError('NOT_FOUND', `"${member}" is not a member of "${ns}"`);
    await audit.record({ actor: me.name, action: 'member.remove', target: `${ns}/${member}`, outcome: 'ok', address: request.ip });
    return reply.code(204).send();
  });

  app.put('/api/v1/repositories/*', async (request: FastifyRequest) => {
    const me = await authenticated(request);
    const path = (request.params as { '*': string })['*'];
    const match = /^(.+)\/visibility$/.exec(path);
    if (!match) throw new ApiError('NOT_FOUND', `no route PUT /api/v1/repositories/${path}`);
    const repository = match[1]!;
    await requireRole(me, namespaceOf(repository), 'owner');
    const { public: isPublic } = body(visibilityBody, request);
    await access.setPublic(repository, isPublic);
    await audit.record({ actor: me.name, action: 'repository.visibility', target: repository, outcome: 'ok', address: request.ip, detail: { public: isPublic } });
    return { repository, public: isPublic };
  });

  app.post('/api/v1/users', async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await authenticated(request);
    requireAdmin(me);
    const input = body(createUserBody, request);
    if (input.kind === 'user' && !input.password) throw new ApiError('BAD_REQUEST', 'password: required for a user');
    const created = input.kind === 'service' ? await access.createServiceAccount(input.name) : await access.createUser(input.name, input.password!, input.admin);
    await audit.record({ actor: me.name, action: 'principal.create', target: created.name, outcome: 'ok', address: request.ip, detail: { kind: created.kind, admin: created.admin } });
    return reply.code(201).send({ name: created.name, kind: created.kind, admin: created.admin });
  });

  app.get('/api/v1/users', async (request: FastifyRequest) => {
    requireAdmin(await authenticated(request));
    return (await access.listPrincipals()).map(({ name, kind, admin }) => ({ name, kind, admin }));
  });

  app.put('/api/v1/users/:name/password', async (request: FastifyRequest) => {
    const me = await authenticated(request);
    const { name } = request.params as { name: string };
    if (name !== me.name) requireAdmin(me);
    const target = await access.findByName(name);
    if (!target || target.kind !== 'user') throw new ApiError('NOT_FOUND', `no user "${name}"`);
    const input = body(passwordBody, request);
    await access.setPassword(target.id, input.password);
    await audit.record({ actor: me.name, action: 'principal.password', target: name, outcome: 'ok', address: request.ip });
    return { name, changed: true };
  });

  app.delete('/api/v1/users/:name', async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await authenticated(request);
    requireAdmin(me);
    const { name } = request.params as { name: string };
    if (name === me.name) throw new ApiError('CONFLICT', 'you cannot delete yourself');
    const target = await access.findByName(name);
    if (!target) throw new ApiError('NOT_FOUND', `no user or service account "${name}"`);
    await access.deletePrincipal(target.id);
    await audit.record({ actor: me.name, action: 'principal.delete', target: name, outcome: 'ok', address: request.ip });
    return reply.code(204).send();
  });

  app.post('/api/v1/keys', async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await authenticated(request);
    const input = body(createKeyBody, request);
    let owner = me;
    if (input.for && input.for !== me.name) {
      const target = await access.findByName(input.for);
      if (!target || (!me.admin && target.kind !== 'service')) throw new ApiError('NOT_FOUND', `no service account "${input.for}"`);
      if (!me.admin) {
        const shared = (await access.listNamespaces(target)).map((n) => n.name);
        const mine = (await access.listNamespaces(me)).filter((n) => n.role === 'owner').map((n) => n.name);
        if (!shared.some((n) => mine.includes(n))) throw new ApiError('FORBIDDEN', `you own no namespace "${input.for}" belongs to`);
      }
      owner = target;
    }
    let expiresInMs: number | undefined;
    try {
      expiresInMs = input.expiresIn ? parseDuration(input.expiresIn) : undefined;
    } catch {
      throw new ApiError('BAD_REQUEST', 'expiresIn: a duration such as 30d or 12h');
    }
    const created = await access.createKey(owner === me ? me : owner, input.name, input.scopes, expiresInMs);
    await audit.record({ actor: me.name, action: 'key.create', target: `${owner.name}/${created.id}`, outcome: 'ok', address: request.ip, detail: { scopes: created.scopes, expiresAt: created.expiresAt } });
    return reply.code(201).send({ ...created, owner: owner.name });
  });

  // Dashboard sign-in: the browser trades a user name and password (throttled like every
  // login) for a short-lived API key it keeps in sessionStorage; sign-out revokes that key.
  app.post('/api/v1/sessions', async (request: FastifyRequest, reply: FastifyReply) => {
    const input = body(sessionBody, request);
    const principal = await login(request, input.username, input.password);
    const created = await access.createKey(principal, 'dashboard session', ['*'], 12 * 3600_000);
    await audit.record({ actor: principal.name, action: 'session.create', target: `${principal.name}/${created.id}`, outcome: 'ok', address: request.ip });
    return reply.code(201).send({ token: created.key, keyId: created.id, expiresAt: created.expiresAt, name: principal.name, admin: principal.admin });
  });

  app.delete('/api/v1/sessions/current', async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await authenticated(request);
    if (me.keyId) await access.revokeKey(me.keyId, me.id);
    return reply.code(204).send();
  });

  app.get('/api/v1/keys', async (request: FastifyRequest) => access.listKeys((await authenticated(request)).id));

  app.delete('/api/v1/keys/:id', async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await authenticated(request);
    const { id } = request.params as { id: string };
    if (!(await access.revokeKey(id, me.admin ? null : me.id))) throw new ApiError('NOT_FOUND', `no active key "${id}"`);
    await audit.record({ actor: me.name, action: 'key.revoke', target: id, outcome: 'ok', address: request.ip });
    return reply.code(204).send();
  });

  app.get('/api/v1/audit', async (request: FastifyRequest) => {
    requireAdmin(await authenticated(request));
    const query = auditQuery.safeParse(request.query);
    if (!query.success) throw new ApiError('BAD_REQUEST', query.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    return audit.list(query.data);
  });

  void service;
}
