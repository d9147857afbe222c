/**
 * @module credentials/api
 * The external-registry operations of `/api/v1` (credentials are write-only; CI fetches a
 * login through `…/creds`), documented by http/openapi.ts and typed by http/api-client.ts.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';
import { credentialTypes } from './material.js';

const time = z.string().describe('RFC 3339 UTC');

export const createRegistryBody = z.strictObject({
  prefix: z.string().min(1),
  type: z.enum(credentialTypes),
  credentials: z.record(z.string(), z.unknown()),
  enable_ci: z.boolean().default(false),
});
export const patchRegistryBody = z.strictObject({
  prefix: z.string().min(1).optional(),
  type: z.enum(credentialTypes).optional(),
  credentials: z.record(z.string(), z.unknown()).optional(),
  enable_ci: z.boolean().optional(),
});
/** Documentation of `?image=`; the route checks it itself (its own message). */
export const matchRegistryQuery = z.object({ image: z.string().describe('An image reference, e.g. registry.example.com/team/app:1.0') });

export const registryView = z.object({
  id: z.string(),
  namespace: z.string(),
  prefix: z.string(),
  type: z.enum(credentialTypes),
  username: z.string().nullable().describe('The non-secret identity: user name, access key id, client id or e-mail'),
  region: z.string().nullable(),
  enable_ci: z.boolean(),
  credentials: z.record(z.string(), z.literal('****')).describe('Which credential fields are set; values are never returned'),
  created_at: time,
  updated_at: time,
});
export const registryLogin = z.object({ username: z.string(), password: z.string(), expires_at: time.nullable() });

export const credentialOperations = defineOperations({
  listRegistries: { method: 'GET', path: '/api/v1/namespaces/:ns/registries', summary: 'External registries of a namespace (credentials masked)', access: 'reader', answers: { 200: z.array(registryView) } },
  createRegistry: { method: 'POST', path: '/api/v1/namespaces/:ns/registries', summary: 'Add an external registry with its credentials', access: 'owner', body: createRegistryBody, answers: { 201: registryView } },
  matchRegistry: { method: 'GET', path: '/api/v1/namespaces/:ns/registries/match', summary: 'Which external registry applies to an image', access: 'reader', query: matchRegistryQuery, answers: { 200: registryView } },
  getRegistry: { method: 'GET', path: '/api/v1/namespaces/:ns/registries/:id', summary: 'One external registry (credentials masked)', access: 'reader', answers: { 200: registryView } },
  updateRegistry: { method: 'PATCH', path: '/api/v1/namespaces/:ns/registries/:id', summary: 'Change an external registry', access: 'owner', body: patchRegistryBody, answers: { 200: registryView } },
  deleteRegistry: { method: 'DELETE', path: '/api/v1/namespaces/:ns/registries/:id', summary: 'Remove an external registry', access: 'owner', answers: { 204: null } },
  getRegistryLogin: {
    method: 'GET', path: '/api/v1/namespaces/:ns/registries/:id/creds', summary: 'A login for CI (only where enable_ci is on; audited)', access: 'contributor',
    answers: { 200: registryLogin },
  },
});
