/**
 * @module vault/api
 * The namespace-secret operations of `/api/v1` (values are write-only), documented by
 * http/openapi.ts and typed for clients by http/api-client.ts.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';

const time = z.string().describe('RFC 3339 UTC');

export const putSecretBody = z.strictObject({ value: z.string() });
export const secretInfo = z.object({ name: z.string(), createdBy: z.string().nullable(), createdAt: time, updatedAt: time });

export const vaultOperations = defineOperations({
  listSecrets: { method: 'GET', path: '/api/v1/namespaces/:ns/secrets', summary: 'Names of a namespace\'s secrets (never their values)', access: 'contributor', answers: { 200: z.array(secretInfo) } },
  putSecret: {
    method: 'PUT', path: '/api/v1/namespaces/:ns/secrets/:name', summary: 'Create or replace a secret (1 byte to 64 KiB)', access: 'owner', body: putSecretBody,
    answers: { 200: z.object({ name: z.string(), value: z.literal('****') }), 201: z.object({ name: z.string(), value: z.literal('****') }) },
  },
  deleteSecret: { method: 'DELETE', path: '/api/v1/namespaces/:ns/secrets/:name', summary: 'Delete a secret', access: 'owner', answers: { 204: null } },
});
