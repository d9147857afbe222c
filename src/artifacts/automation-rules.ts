/**
 * @module artifacts/automation-rules
 * The automation rules' shapes: the rule input/patch schemas (match globs, deploy/pipeline
 * actions, `${artefact.<field>}` placeholders), and the pure helpers that decide whether a
 * rule matches an artefact version and expand its pipeline parameters. Storing rules and
 * running their actions stay with ArtifactService (service.ts).
 */
import picomatch from 'picomatch';
import { z } from 'zod';
import type { ArtefactVersionView } from './service.js';

const ruleNamePattern = /^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/;
const functionNamePattern = /^[A-Za-z](?:[A-Za-z0-9_-]{0,58}[A-Za-z0-9])?$/;
const artefactPlaceholder = /\$\{artefact\.([A-Za-z0-9_]+)\}/g;
const artefactFields = ['id', 'type', 'name', 'version', 'digest', 'ref', 'commit', 'image'] as const;

const glob = (what: string) => z.string().min(1).max(512).refine((pattern) => {
  try {
    picomatch.makeRe(pattern);
    return true;
  } catch {
    return false;
  }
}, `${what} is not a valid glob`);

export const ruleMatchSchema = z.object({
  type: z.enum(['container', 'workload']).optional(),
  name: glob('name'),
  ref: glob('ref').optional(),
  excludeName: glob('excludeName').optional(),
}).strict();

const parameterValue = z.string().max(4096).refine((value) => {
  for (const m of value.matchAll(artefactPlaceholder)) if (!(artefactFields as readonly string[]).includes(m[1]!)) return false;
  return true;
}, `placeholders are \${artefact.<field>} with field one of ${artefactFields.join(', ')}`);

export const ruleActionSchema = z.union([
  z.object({
    deploy: z.object({
      functions: z.array(z.string().regex(functionNamePattern, 'function names: 1–60 of letters, digits, - and _, starting with a letter')).max(50).default([]),
    }).strict(),
  }).strict(),
  z.object({
    pipeline: z.object({
      name: z.string().min(1).max(128),
      parameters: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'parameter names are letters, digits and _'), parameterValue).default({}),
    }).strict(),
  }).strict(),
], { error: 'action is either {deploy: {functions: [...]}} or {pipeline: {name, parameters?}}' });

/** A container artefact needs a function to go to; a workload may name its own. */
export const needsFunctions = (rule: { match: { type?: string }; action: RuleAction }) => !('deploy' in rule.action) || rule.action.deploy.functions.length > 0 || rule.match.type === 'workload';
export const needsFunctionsIssue = { message: 'list at least one function (only a rule with match.type "workload" may deploy to the workload\'s own name)', path: ['action', 'deploy', 'functions'] };

export const automationRuleInputSchema = z.object({
  name: z.string().regex(ruleNamePattern, 'rule names: 1–63 of letters, digits, - and _, starting and ending with a letter or digit'),
  active: z.boolean().default(true),
  match: ruleMatchSchema,
  action: ruleActionSchema,
}).strict().refine(needsFunctions, needsFunctionsIssue);

export const automationRulePatchSchema = z.object({
  active: z.boolean().optional(),
  match: ruleMatchSchema.optional(),
  action: ruleActionSchema.optional(),
}).strict();

export type RuleMatch = z.output<typeof ruleMatchSchema>;
export type RuleAction = z.output<typeof ruleActionSchema>;
export type AutomationRuleInput = z.input<typeof automationRuleInputSchema>;
export type AutomationRulePatch = z.input<typeof automationRulePatchSchema>;

export interface AutomationRuleView {
  id: string;
  namespace: string;
  name: string;
  active: boolean;
  match: RuleMatch;
  action: RuleAction;
  createdBy: string | null;
  createdAt: string;
  updatedAt: string;
}

/** Does the rule's match select this artefact version? */
export function ruleMatches(match: RuleMatch, version: Pick<ArtefactVersionView, 'type' | 'name' | 'ref'>): boolean {
  if (match.type && match.type !== version.type) return false;
  if (!picomatch.isMatch(version.name, match.name, { dot: true })) return false;
  if (match.excludeName && picomatch.isMatch(version.name, match.excludeName, { dot: true })) return false;
  if (match.ref !== undefined && (!version.ref || !picomatch.isMatch(version.ref, match.ref, { dot: true }))) return false;
  return true;
}

/** Replaces `${artefact.<field>}` in a pipeline parameter. */
export function expandArtefactPlaceholders(value: string, version: ArtefactVersionView): string {
  return value.replace(artefactPlaceholder, (whole, field: string) => {
    if (!(artefactFields as readonly string[]).includes(field)) return whole;
    const v = version[field as (typeof artefactFields)[number]];
    return v === null || v === undefined ? '' : String(v);
  });
}
