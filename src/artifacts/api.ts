/**
 * @module artifacts/api
 * The artefact-version and automation-rule operations of `/api/v1` (Humanitec's shapes),
 * documented by http/openapi.ts and typed by http/api-client.ts. Bodies of versions and
 * rules are validated by the service with the schemas of version-schema.ts / automation-rules.ts.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';
import { automationRuleInputSchema, automationRulePatchSchema, ruleActionSchema, ruleMatchSchema } from './automation-rules.js';
import { artefactVersionInputSchema } from './version-schema.js';

const time = z.string().describe('RFC 3339 UTC');
const flag = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

export const listArtefactsQuery = z.object({
  name: z.string().min(1).optional(),
  reference: z.string().min(1).optional(),
  type: z.enum(['container', 'workload']).optional(),
  archived: flag.optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
}).strict();
export const createArtefactQuery = z.object({ dry_run: flag.optional(), vcs: z.literal('git').optional() }).strict();
export const convertScoreBody = z.object({
  spec: z.unknown(),
  image: z.string().min(1).max(1024).optional(),
  name: z.string().min(1).max(60).optional(),
}).strict();
export const archiveBody = z.object({ archived: z.boolean() }).strict();

export const artefactVersionView = z.object({
  id: z.string(), namespace: z.string(), type: z.enum(['container', 'workload']), name: z.string(),
  version: z.string().nullable(), ref: z.string().nullable(), commit: z.string().nullable(), digest: z.string().nullable(), image: z.string().nullable(),
  source: z.enum(['registry', 'pipeline', 'api']), archived: z.boolean(), createdBy: z.string().nullable(), createdAt: time,
  automations: z.array(z.object({ rule: z.string(), action: z.string(), outcome: z.enum(['started', 'failed']), error: z.string().optional() })).optional()
    .describe('What automation did with the version (absent while rules have not run)'),
});
export const scoreConversion = z.object({
  name: z.string(),
  config: z.object({ image: z.string(), command: z.array(z.string()).optional(), args: z.array(z.string()).optional(), env: z.record(z.string(), z.string()), memoryMB: z.number().optional() }),
  warnings: z.array(z.string()),
});
export const automationRuleView = z.object({
  id: z.string(), namespace: z.string(), name: z.string(), active: z.boolean(),
  match: ruleMatchSchema, action: ruleActionSchema, createdBy: z.string().nullable(), createdAt: time, updatedAt: time,
});

const versions = '/api/v1/namespaces/:ns/artefact-versions';
const rules = '/api/v1/namespaces/:ns/automation-rules';

export const artifactOperations = defineOperations({
  createArtefactVersion: {
    method: 'POST', path: versions, summary: 'Record an artefact version (runs the automation rules); `?dry_run=true` validates only',
    access: 'contributor', query: createArtefactQuery, body: artefactVersionInputSchema, answers: { 201: artefactVersionView, 204: null },
  },
  listArtefactVersions: { method: 'GET', path: versions, summary: 'Artefact versions, newest first', access: 'reader', query: listArtefactsQuery, answers: { 200: z.object({ artefactVersions: z.array(artefactVersionView) }) } },
  convertScore: {
    method: 'POST', path: `${versions}/convert-score`, summary: 'The function a Score workload maps to',
    description: 'JSON `{spec, image?, name?}`, or the workload itself as YAML (`?image=&name=` then).',
    access: 'reader', body: convertScoreBody, answers: { 200: scoreConversion },
  },
  getArtefactVersion: { method: 'GET', path: `${versions}/:id`, summary: 'One artefact version', access: 'reader', answers: { 200: artefactVersionView } },
  archiveArtefactVersion: { method: 'PATCH', path: `${versions}/:id`, summary: 'Archive or unarchive an artefact version', access: 'contributor', body: archiveBody, answers: { 200: artefactVersionView } },
  getWorkloadSpec: {
    method: 'GET', path: `${versions}/:id/workload-spec`, summary: 'A workload version\'s Score spec (YAML with `Accept: application/x-yaml`)',
    access: 'reader', answers: { 200: z.record(z.string(), z.unknown()) },
  },
  createAutomationRule: { method: 'POST', path: rules, summary: 'Add an automation rule', access: 'contributor', body: automationRuleInputSchema, answers: { 201: automationRuleView } },
  listAutomationRules: { method: 'GET', path: rules, summary: 'Automation rules of a namespace', access: 'reader', answers: { 200: z.object({ rules: z.array(automationRuleView) }) } },
  getAutomationRule: { method: 'GET', path: `${rules}/:name`, summary: 'One automation rule', access: 'reader', answers: { 200: automationRuleView } },
  updateAutomationRule: { method: 'PATCH', path: `${rules}/:name`, summary: 'Change an automation rule', access: 'contributor', body: automationRulePatchSchema, answers: { 200: automationRuleView } },
  deleteAutomationRule: { method: 'DELETE', path: `${rules}/:name`, summary: 'Remove an automation rule', access: 'contributor', answers: { 204: null } },
});
