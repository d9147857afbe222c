/**
 * @module auth/api
 * The access-control operations of `/api/v1` (namespaces, members, users, API keys,
 * repository visibility, audit): the zod schemas the routes validate with and the shapes
 * they answer. Documented by http/openapi.ts, typed for clients by http/api-client.ts.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';
import { keyScopes, roles } from './roles.js';
import { proxySettingsInput, proxySettingsView } from '../registry/proxy-settings-schema.js';

const time = z.string().describe('RFC 3339 UTC');
const principalKind = z.enum(['user', 'service']);
const role = z.enum(roles as ['owner', 'contributor', 'reader']);

export const createNamespaceBody = z.strictObject({
  name: z.string(),
  /** Makes the namespace a pull-through cache of an upstream registry (docs/registry-proxy.md). */
  proxy: proxySettingsInput.optional(),
});
export const setMemberBody = z.strictObject({ role: z.enum(roles as [string, ...string[]]) });
export const visibilityBody = z.strictObject({ public: z.boolean() });
export const createUserBody = z.strictObject({ name: z.string(), password: z.string().optional(), admin: z.boolean().default(false), kind: z.enum(['user', 'service']).default('user') });
export const passwordBody = z.strictObject({ password: z.string().min(8, 'at least 8 characters') });
export const createKeyBody = z.strictObject({
  name: z.string().min(1).max(100),
  scopes: z.array(z.enum(keyScopes)).min(1).default(['*']),
  expiresIn: z.string().optional(),
  /** Admins, and owners of a namespace the service account belongs to, may make keys for a service account. */
  for: z.string().optional(),
});
export const sessionBody = z.strictObject({ username: z.string().min(1, 'required'), password: z.string().min(1, 'required') });
export const auditQuery = z.object({
  after: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  action: z.string().optional(),
  actor: z.string().optional(),
});

export const namespaceEntry = z.object({ name: z.string(), role: z.enum(['admin', ...roles] as ['admin', 'owner', 'contributor', 'reader']), createdAt: time.nullable() });
export const me = z.object({ name: z.string(), kind: principalKind, admin: z.boolean(), namespaces: z.array(namespaceEntry) });
export const member = z.object({ name: z.string(), kind: principalKind, role });
export const principal = z.object({ name: z.string(), kind: principalKind, admin: z.boolean() });
export const apiKey = z.object({ id: z.string(), name: z.string(), scopes: z.array(z.enum(keyScopes)), createdAt: time.nullable(), expiresAt: time.nullable(), lastUsedAt: time.nullable(), revokedAt: time.nullable() });
export const createdKey = z.object({ id: z.string(), key: z.string().describe('The secret, shown once'), name: z.string(), scopes: z.array(z.enum(keyScopes)), expiresAt: time.nullable(), owner: z.string() });
export const session = z.object({ token: z.string().describe('A short-lived API key, used as a bearer key'), keyId: z.string(), expiresAt: time.nullable(), name: z.string(), admin: z.boolean() });
export const auditRecord = z.object({
  seq: z.number(), at: time, actor: z.string().nullable(), action: z.string(), target: z.string().nullable(),
  outcome: z.enum(['ok', 'denied', 'failed']), address: z.string().nullable(), detail: z.unknown(),
});

export const authOperations = defineOperations({
  getMe: { method: 'GET', path: '/api/v1/me', summary: 'Who the caller is, and their namespaces', access: 'signed-in', answers: { 200: me } },
  listNamespaces: { method: 'GET', path: '/api/v1/namespaces', summary: 'The caller\'s namespaces (all of them for an admin)', access: 'signed-in', answers: { 200: z.array(namespaceEntry) } },
  createNamespace: { method: 'POST', path: '/api/v1/namespaces', summary: 'Create a namespace; the caller becomes its owner', access: 'signed-in', body: createNamespaceBody, answers: { 201: z.object({ name: z.string(), role: z.literal('owner') }) } },
  getNamespaceProxy: { method: 'GET', path: '/api/v1/namespaces/:ns/proxy', summary: 'The namespace\'s pull-through cache settings (404 when it is no proxy)', access: 'reader', answers: { 200: proxySettingsView } },
  setNamespaceProxy: { method: 'PUT', path: '/api/v1/namespaces/:ns/proxy', summary: 'Make the namespace a pull-through cache, or change its upstream settings', access: 'owner', body: proxySettingsInput, answers: { 200: proxySettingsView } },
  listMembers: { method: 'GET', path: '/api/v1/namespaces/:ns/members', summary: 'Members of a namespace', access: 'reader', answers: { 200: z.array(member) } },
  setMember: { method: 'PUT', path: '/api/v1/namespaces/:ns/members/:member', summary: 'Add a member or change their role', access: 'owner', body: setMemberBody, answers: { 200: z.object({ namespace: z.string(), member: z.string(), role: z.string() }) } },
  removeMember: { method: 'DELETE', path: '/api/v1/namespaces/:ns/members/:member', summary: 'Remove a member', access: 'owner', answers: { 204: null } },
  setRepositoryVisibility: {
    method: 'PUT', path: '/api/v1/repositories/*', summary: 'Make a repository public or private',
    description: 'The path is `/api/v1/repositories/{repository}/visibility`; the repository name may contain slashes.',
    access: 'owner', body: visibilityBody, answers: { 200: z.object({ repository: z.string(), public: z.boolean() }) },
  },
  createUser: { method: 'POST', path: '/api/v1/users', summary: 'Create a user or service account', access: 'admin', body: createUserBody, answers: { 201: principal } },
  listUsers: { method: 'GET', path: '/api/v1/users', summary: 'Users and service accounts', access: 'admin', answers: { 200: z.array(principal) } },
  setPassword: { method: 'PUT', path: '/api/v1/users/:name/password', summary: 'Change a user\'s password', access: 'self-or-admin', body: passwordBody, answers: { 200: z.object({ name: z.string(), changed: z.literal(true) }) } },
  deleteUser: { method: 'DELETE', path: '/api/v1/users/:name', summary: 'Delete a user or service account', access: 'admin', answers: { 204: null } },
  createKey: { method: 'POST', path: '/api/v1/keys', summary: 'Create an API key (shown once)', access: 'signed-in', body: createKeyBody, answers: { 201: createdKey } },
  createSession: { method: 'POST', path: '/api/v1/sessions', summary: 'Dashboard sign-in: trade a user name and password for a 12-hour API key', access: 'public', body: sessionBody, answers: { 201: session } },
  deleteSession: { method: 'DELETE', path: '/api/v1/sessions/current', summary: 'Sign out: revoke the API key the call is made with (if it is one)', access: 'signed-in', answers: { 204: null } },
  listKeys: { method: 'GET', path: '/api/v1/keys', summary: 'The caller\'s API keys (no secrets)', access: 'signed-in', answers: { 200: z.array(apiKey) } },
  revokeKey: { method: 'DELETE', path: '/api/v1/keys/:id', summary: 'Revoke an API key (the caller\'s own; any for an admin)', access: 'signed-in', answers: { 204: null } },
  listAudit: { method: 'GET', path: '/api/v1/audit', summary: 'The audit log', access: 'admin', query: auditQuery, answers: { 200: z.array(auditRecord) } },
});
