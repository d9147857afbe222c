/**
 * @module registry/policy-api
 * The registry-policy operations of `/api/v1` (immutable tags, quotas, usage, retention rules,
 * retention runs): the zod schemas the routes (registry/policy-routes.ts) validate with and the
 * shapes they answer. Documented by http/openapi.ts, typed for clients by http/api-client.ts.
 * No node-only imports: the CLI and the dashboard use these too.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';

const time = z.string().describe('RFC 3339 UTC');
/** The durations config takes (`30d`, `12h`, `90m`). */
const duration = z.string().regex(/^\d+(ms|s|m|h|d)$/, 'a duration such as 30d, 12h or 90m');
const glob = z.string().min(1, 'a glob must not be empty').max(200)
  .refine((g) => !/[\s\x00-\x1f]/.test(g), 'a glob has no spaces or control characters');
const limit = z.number().int('a whole number').min(0, 'zero or more').nullable();

export const retentionRule = z.strictObject({
  repositories: glob.default('**').describe('Repository names this rule covers, e.g. `team/app-*`; `**` crosses `/`'),
  tags: glob.default('*').describe('Tags this rule covers'),
  keepLast: z.number().int().min(0).optional().describe('Keep the N most recently pushed tagged manifests of each repository'),
  keepWithin: duration.optional().describe('Keep manifests pushed or pulled within this long'),
  alwaysKeep: glob.optional().describe('Tags matching this glob are never removed by this rule'),
  dropUntagged: z.boolean().default(false).describe('Remove untagged manifests (those not kept by keepWithin)'),
});
export type RetentionRule = z.output<typeof retentionRule>;

export const policyBody = z.strictObject({
  immutableTags: z.array(glob).max(100).optional().describe('Tag globs; a tag matching one cannot be moved or deleted once pushed'),
  quota: z.strictObject({
    maxBytes: limit.optional().describe('Bytes of distinct blobs in the namespace; null: no limit'),
    maxRepositories: limit.optional().describe('Repositories in the namespace; null: no limit'),
  }).optional(),
  retention: z.array(retentionRule).max(100).optional(),
  retentionSchedule: duration.nullable().optional().describe('Apply the rules this often (e.g. 1d); null: only on demand'),
});

export const policy = z.object({
  namespace: z.string(),
  immutableTags: z.array(z.string()),
  quota: z.object({ maxBytes: z.number().nullable(), maxRepositories: z.number().nullable() }),
  retention: z.array(retentionRule),
  retentionSchedule: z.string().nullable(),
});

export const usage = z.object({
  namespace: z.string(),
  bytes: z.number().describe('Each distinct blob counted once, however many repositories link it'),
  blobs: z.number(),
  repositories: z.number(),
  quota: z.object({ maxBytes: z.number().nullable(), maxRepositories: z.number().nullable() }),
});

export const retentionQuery = z.object({ dryRun: z.enum(['true', 'false']).default('true').describe('true (default): only list what would go') });

const removal = z.object({ repository: z.string(), digest: z.string(), tags: z.array(z.string()), reason: z.string() });
export const retentionRun = z.object({
  id: z.string(), namespace: z.string(), dryRun: z.boolean(), removed: z.array(removal), kept: z.number(),
  startedAt: time, finishedAt: time, startedBy: z.string().nullable().describe('null: the schedule'),
});

export const policyOperations = defineOperations({
  getRegistryPolicy: { method: 'GET', path: '/api/v1/namespaces/:ns/registry-policy', summary: 'The namespace\'s immutable tags, quota and retention rules', access: 'reader', answers: { 200: policy } },
  setRegistryPolicy: {
    method: 'PUT', path: '/api/v1/namespaces/:ns/registry-policy', summary: 'Change immutable tags, quota or retention rules',
    description: 'Fields left out keep their value; `null` clears a quota limit. A lower quota does not remove content: later pushes are refused.',
    access: 'owner', body: policyBody, answers: { 200: policy },
  },
  getRegistryUsage: { method: 'GET', path: '/api/v1/namespaces/:ns/registry-usage', summary: 'Bytes, blobs and repositories the namespace uses, with its quota', access: 'reader', answers: { 200: usage } },
  runRetention: {
    method: 'POST', path: '/api/v1/namespaces/:ns/retention-runs', summary: 'Apply the retention rules now (a dry run unless dryRun=false)',
    description: 'Removed manifests lose their tags at once; their blobs go with the next garbage collection.',
    access: 'owner', query: retentionQuery, answers: { 201: retentionRun },
  },
  listRetentionRuns: { method: 'GET', path: '/api/v1/namespaces/:ns/retention-runs', summary: 'Recent retention runs, newest first', access: 'reader', answers: { 200: z.array(retentionRun) } },
});
