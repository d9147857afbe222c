/**
 * @module artifacts/service
 * Artefact versions and delivery automation (Humanitec's shapes, formats.md §4).
 *
 * An artefact version records that something deployable exists: a `container` image (name
 * without tag + version/digest, usually from a registry push or a pipeline) or a `workload`
 * (a Score v1b1 spec, with an optional default image). Recording one publishes
 * `artefact.created`, then runs the namespace's active automation rules that match it:
 *
 * - `match`: `type` (optional), `name` (a glob on the artefact name; `*` stops at `/`, `**`
 *   crosses it), `excludeName` (glob), `ref` (glob on the git ref, e.g. `refs/tags/v*`; a rule
 *   with `ref` never matches an artefact without one).
 * - `action.deploy.functions`: a container is deployed as `name@digest` (pinned) when its
 *   digest is known, else `name:version` (`name:latest` without either); a workload is mapped
 *   with `scoreToFunction` and deployed to each listed function, or to `metadata.name` when the
 *   list is empty.
 * - `action.pipeline`: runs the named pipeline with `parameters`, where `${artefact.name}`,
 *   `${artefact.version}`, `${artefact.digest}`, `${artefact.ref}`, `${artefact.commit}` and
 *   `${artefact.id}` / `${artefact.type}` / `${artefact.image}` are replaced (empty when unknown).
 *
 * A failing action never fails the record: its outcome (`started` or `failed` + error) is
 * stored with the version and logged.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Database } from '../db/db.js';
import type { ArtefactVersionTable as ArtefactVersionColumns, AutomationRuleTable as AutomationRuleColumns } from '../db/schema.js';
import { isValidName, isValidTag } from '../registry/grammar.js';
import { ArtefactInputError, formatIssues, parseScore, scoreToFunction, type ScoreWorkload } from './score.js';
import {
  automationRuleInputSchema, automationRulePatchSchema, expandArtefactPlaceholders, needsFunctions, needsFunctionsIssue, ruleMatches,
  type AutomationRuleView, type RuleAction, type RuleMatch,
} from './automation-rules.js';
import { artefactVersionInputSchema, type ArtefactVersionInput } from './version-schema.js';

export { ArtefactInputError } from './score.js';
export { artefactVersionInputSchema, type ArtefactVersionInput } from './version-schema.js';
export {
  automationRuleInputSchema, automationRulePatchSchema, expandArtefactPlaceholders, ruleMatches,
  type AutomationRuleInput, type AutomationRulePatch, type AutomationRuleView, type RuleAction, type RuleMatch,
} from './automation-rules.js';

export class ArtefactNotFoundError extends SlipwayError {
  override name = 'ArtefactNotFoundError';
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

export class ArtefactConflictError extends SlipwayError {
  override name = 'ArtefactConflictError';
  constructor(message: string) {
    super('CONFLICT', message);
  }
}

type ArtefactVersionTable = Selectable<ArtefactVersionColumns>;
type AutomationRuleTable = Selectable<AutomationRuleColumns>;

// ---- artefact versions ----

/**
 * A container artefact's name: `[host[:port]/]path` with the path in the OCI name grammar, and
 * no tag or digest (those go into `version` and `digest`).
 */
export function containerNameProblem(name: string): string | null {
  if (name.includes('@')) return 'a container name has no digest: put it in digest';
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const hasHost = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost');
  const path = hasHost ? name.slice(slash + 1) : name;
  if (hasHost && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$/.test(first)) return `"${first}" is not a registry host[:port]`;
  if (path.includes(':')) return 'a container name has no tag: give the full image name without tag, and the tag as version';
  if (!isValidName(path)) return 'not an image name: lowercase path components of letters, digits and . _ - separated by /';
  return null;
}


export type ArtefactSource = 'registry' | 'pipeline' | 'api';

export interface AutomationOutcome {
  rule: string;
  /** `deploy <function>` or `pipeline <name>` */
  action: string;
  outcome: 'started' | 'failed';
  error?: string;
}

export interface ArtefactVersionView {
  id: string;
  namespace: string;
  type: 'container' | 'workload';
  name: string;
  version: string | null;
  ref: string | null;
  commit: string | null;
  digest: string | null;
  image: string | null;
  source: ArtefactSource;
  archived: boolean;
  createdBy: string | null;
  createdAt: string;
  /** What automation did with the version (absent while rules have not run). */
  automations?: AutomationOutcome[];
}

export interface ArtefactListFilter {
  name?: string;
  ref?: string;
  type?: 'container' | 'workload';
  archived?: boolean;
  /** Default 100, at most 1000; newest first. */
  limit?: number;
}

/** What automation does, implemented by the composition root with the real services. */
export interface ArtefactActions {
  /** Deploys `image` to the function (PATCH image); resolves when the revision is recorded (not ready). */
  deployFunction(namespace: string, functionName: string, image: string, cause: string): Promise<void>;
  /** Deploys a function from a Score workload (creates it when missing). */
  deployWorkload(namespace: string, functionName: string, config: Record<string, unknown>, cause: string): Promise<void>;
  runPipeline(namespace: string, pipeline: string, parameters: Record<string, string>, trigger: Record<string, unknown>): Promise<void>;
}

// ---- the service ----

const iso = (ms: number) => new Date(ms).toISOString();
let idSequence = 0;
/** Time-ordered opaque ids. */
function newId(prefix: string): string {
  idSequence = (idSequence + 1) % 36 ** 3;
  return `${prefix}_${Date.now().toString(36).padStart(9, '0')}${idSequence.toString(36).padStart(3, '0')}${randomBytes(6).toString('hex')}`;
}

function parse<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const parsed = schema.safeParse(input);
  if (!parsed.success) throw new ArtefactInputError(formatIssues(parsed.error.issues));
  return parsed.data;
}

/** The image a container artefact deploys: pinned by digest when known. */
export function deployImage(version: Pick<ArtefactVersionView, 'name' | 'version' | 'digest'>): string {
  if (version.digest) return `${version.name}@${version.digest}`;
  return `${version.name}:${version.version ?? 'latest'}`;
}

export interface ArtifactServiceDeps {
  db: Database;
  publish?: (ns: string, type: string, data: Record<string, unknown>, subject?: string) => Promise<unknown>;
  actions?: ArtefactActions;
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>;
}

interface ValidatedInput {
  type: 'container' | 'workload';
  name: string;
  version: string | null;
  ref: string | null;
  commit: string | null;
  digest: string | null;
  image: string | null;
  spec: ScoreWorkload | null;
}

export class ArtifactService {
  constructor(private readonly deps: ArtifactServiceDeps) {}

  /** Validates an artefact version without storing it (`dry_run`). Throws ArtefactInputError. */
  validate(input: unknown): ValidatedInput {
    const v = parse(artefactVersionInputSchema, input);
    const problems: string[] = [];
    if (v.type === 'container') {
      const nameProblem = containerNameProblem(v.name);
      if (nameProblem) problems.push(`name: ${nameProblem}`);
      if (v.version !== undefined && !isValidTag(v.version)) problems.push('version: a container version is its tag: 1–128 of letters, digits, _ . and -, not starting with . or -');
      if (v.spec !== undefined) problems.push('spec: only workload artefacts have a spec');
      if (v.image !== undefined) problems.push('image: only workload artefacts have a default image (a container artefact is the image)');
    } else {
      if (v.digest !== undefined) problems.push('digest: only container artefacts have a digest');
      if (v.spec === undefined || v.spec === null) problems.push('spec: a workload artefact needs its Score workload (apiVersion score.dev/v1b1)');
    }
    if (problems.length > 0) throw new ArtefactInputError(problems.join('; '));
    const spec = v.type === 'workload' ? parseScore(v.spec, 'spec') : null;
    return {
      type: v.type,
      name: v.name,
      version: v.version ?? null,
      ref: v.ref || null,
      commit: v.commit ?? null,
      digest: v.digest ?? null,
      image: v.image ?? null,
      spec,
    };
  }

  /**
   * Validates and stores a version, publishes `artefact.created`, then runs the matching active
   * rules. Action failures are recorded in `automations`, never thrown.
   */
  async record(namespace: string, input: ArtefactVersionInput | unknown, origin: { source: ArtefactSource; actor: string | null }): Promise<ArtefactVersionView> {
    const v = this.validate(input);
    const row: ArtefactVersionTable = {
      id: newId('av'),
      namespace,
      type: v.type,
      name: v.name,
      version: v.version,
      ref: v.ref,
      commit_sha: v.commit,
      digest: v.digest,
      image: v.image,
      spec: v.spec ? JSON.stringify(v.spec) : null,
      source: origin.source,
      archived: 0,
      automations: null,
      created_by: origin.actor,
      created_at: Date.now(),
    };
    await this.deps.db.write((trx) => trx.insertInto('artefact_versions').values(row).execute());
    const view = toView(row);
    if (this.deps.publish) {
      try {
        await this.deps.publish(namespace, 'artefact.created', { ...view }, v.name);
      } catch (error) {
        this.deps.logger?.error({ err: error, namespace, artefact: view.id }, 'could not publish artefact.created');
      }
    }
    const automations = await this.automate(namespace, view, v.spec);
    await this.deps.db.write((trx) => trx.updateTable('artefact_versions').set({ automations: JSON.stringify(automations) }).where('id', '=', row.id).execute());
    return { ...view, automations };
  }

  async list(namespace: string, filter: ArtefactListFilter = {}): Promise<ArtefactVersionView[]> {
    let query = this.deps.db.kysely.selectFrom('artefact_versions').selectAll().where('namespace', '=', namespace);
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    if (filter.ref !== undefined) query = query.where('ref', '=', filter.ref);
    if (filter.type !== undefined) query = query.where('type', '=', filter.type);
    if (filter.archived !== undefined) query = query.where('archived', '=', filter.archived ? 1 : 0);
    const limit = Math.min(Math.max(Math.trunc(filter.limit ?? 100), 1), 1000);
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return rows.map(toView);
  }

  async get(namespace: string, id: string): Promise<ArtefactVersionView> {
    return toView(await this.row(namespace, id));
  }

  /** The Score workload of a workload artefact. */
  async workloadSpec(namespace: string, id: string): Promise<ScoreWorkload> {
    const row = await this.row(namespace, id);
    if (row.type !== 'workload' || row.spec === null) throw new ArtefactInputError(`artefact version "${id}" is a ${row.type}, not a workload: it has no workload spec`);
    return JSON.parse(row.spec) as ScoreWorkload;
  }

  async archive(namespace: string, id: string, archived: boolean): Promise<ArtefactVersionView> {
    await this.row(namespace, id);
    await this.deps.db.write((trx) => trx.updateTable('artefact_versions').set({ archived: archived ? 1 : 0 })
      .where('namespace', '=', namespace).where('id', '=', id).execute());
    return this.get(namespace, id);
  }

  private async row(namespace: string, id: string): Promise<ArtefactVersionTable> {
    const row = await this.deps.db.kysely.selectFrom('artefact_versions').selectAll()
      .where('namespace', '=', namespace).where('id', '=', id).executeTakeFirst();
    if (!row) throw new ArtefactNotFoundError(`no artefact version "${id}" in "${namespace}"`);
    return row;
  }

  // ---- automation ----

  private async automate(namespace: string, view: ArtefactVersionView, spec: ScoreWorkload | null): Promise<AutomationOutcome[]> {
    const rules = (await this.listRules(namespace)).filter((rule) => rule.active && ruleMatches(rule.match, view));
    const outcomes: AutomationOutcome[] = [];
    const actions = this.deps.actions;
    for (const rule of rules) {
      const attempt = async (action: string, run: () => Promise<void>) => {
        try {
          if (!actions) throw new Error('automation actions are not available on this server');
          await run();
          outcomes.push({ rule: rule.name, action, outcome: 'started' });
          this.deps.logger?.info({ namespace, artefact: view.id, rule: rule.name, action }, 'automation started');
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          outcomes.push({ rule: rule.name, action, outcome: 'failed', error: message });
          this.deps.logger?.warn({ namespace, artefact: view.id, rule: rule.name, action, err: error }, 'automation failed');
        }
      };
      const cause = `artefact ${view.type} ${view.name}${view.version ? `:${view.version}` : ''}${view.digest ? `@${view.digest}` : ''} (rule ${rule.name})`;
      if ('deploy' in rule.action) {
        if (view.type === 'container') {
          const image = deployImage(view);
          for (const fn of rule.action.deploy.functions) await attempt(`deploy ${fn}`, () => actions!.deployFunction(namespace, fn, image, cause));
        } else {
          const targets = rule.action.deploy.functions.length > 0 ? rule.action.deploy.functions : [spec!.metadata.name];
          for (const fn of targets) {
            await attempt(`deploy ${fn}`, async () => {
              const converted = scoreToFunction(spec!, { image: view.image ?? undefined, name: fn });
              await actions!.deployWorkload(namespace, converted.name, { ...converted.config }, cause);
            });
          }
        }
      } else {
        const { name, parameters } = rule.action.pipeline;
        const expanded = Object.fromEntries(Object.entries(parameters).map(([k, value]) => [k, expandArtefactPlaceholders(value, view)]));
        await attempt(`pipeline ${name}`, () => actions!.runPipeline(namespace, name, expanded, {
          type: 'artefact', rule: rule.name, artefactId: view.id, artefactType: view.type, name: view.name,
          version: view.version, digest: view.digest, ref: view.ref, commit: view.commit,
        }));
      }
    }
    return outcomes;
  }

  // ---- rules ----

  async createRule(namespace: string, input: unknown, actor: string | null): Promise<AutomationRuleView> {
    const rule = parse(automationRuleInputSchema, input);
    const now = Date.now();
    const row: AutomationRuleTable = {
      id: newId('ar'), namespace, name: rule.name, rule: JSON.stringify({ match: rule.match, action: rule.action }),
      active: rule.active ? 1 : 0, created_by: actor, created_at: now, updated_at: now,
    };
    try {
      await this.deps.db.write(async (trx) => {
        const existing = await trx.selectFrom('automation_rules').select('id').where('namespace', '=', namespace).where('name', '=', rule.name).executeTakeFirst();
        if (existing) throw new ArtefactConflictError(`automation rule "${rule.name}" already exists in "${namespace}"`);
        await trx.insertInto('automation_rules').values(row).execute();
      });
    } catch (error) {
      if (!(error instanceof ArtefactConflictError) && await this.findRule(namespace, rule.name)) {
        throw new ArtefactConflictError(`automation rule "${rule.name}" already exists in "${namespace}"`);
      }
      throw error;
    }
    return ruleView(row);
  }

  async listRules(namespace: string): Promise<AutomationRuleView[]> {
    const rows = await this.deps.db.kysely.selectFrom('automation_rules').selectAll().where('namespace', '=', namespace).orderBy('name').execute();
    return rows.map(ruleView);
  }

  async getRule(namespace: string, name: string): Promise<AutomationRuleView> {
    const row = await this.findRule(namespace, name);
    if (!row) throw new ArtefactNotFoundError(`no automation rule "${name}" in "${namespace}"`);
    return ruleView(row);
  }

  async updateRule(namespace: string, name: string, patch: unknown): Promise<AutomationRuleView> {
    const p = parse(automationRulePatchSchema, patch);
    const current = await this.getRule(namespace, name);
    const next = { match: p.match ?? current.match, action: p.action ?? current.action };
    if (!needsFunctions(next)) throw new ArtefactInputError(`${needsFunctionsIssue.path.join('.')}: ${needsFunctionsIssue.message}`);
    const active = p.active ?? current.active;
    await this.deps.db.write((trx) => trx.updateTable('automation_rules')
      .set({ rule: JSON.stringify(next), active: active ? 1 : 0, updated_at: Date.now() })
      .where('namespace', '=', namespace).where('name', '=', name).execute());
    return this.getRule(namespace, name);
  }

  async deleteRule(namespace: string, name: string): Promise<void> {
    const result = await this.deps.db.write((trx) => trx.deleteFrom('automation_rules').where('namespace', '=', namespace).where('name', '=', name).executeTakeFirst());
    if (Number(result.numDeletedRows) === 0) throw new ArtefactNotFoundError(`no automation rule "${name}" in "${namespace}"`);
  }

  private findRule(namespace: string, name: string): Promise<AutomationRuleTable | undefined> {
    return this.deps.db.kysely.selectFrom('automation_rules').selectAll().where('namespace', '=', namespace).where('name', '=', name).executeTakeFirst();
  }
}

function toView(row: ArtefactVersionTable): ArtefactVersionView {
  const view: ArtefactVersionView = {
    id: row.id,
    namespace: row.namespace,
    type: row.type as ArtefactVersionView['type'],
    name: row.name,
    version: row.version,
    ref: row.ref,
    commit: row.commit_sha,
    digest: row.digest,
    image: row.image,
    source: row.source as ArtefactSource,
    archived: Number(row.archived) === 1,
    createdBy: row.created_by,
    createdAt: iso(Number(row.created_at)),
  };
  if (row.automations !== null) view.automations = JSON.parse(row.automations) as AutomationOutcome[];
  return view;
}

function ruleView(row: AutomationRuleTable): AutomationRuleView {
  const { match, action } = JSON.parse(row.rule) as { match: RuleMatch; action: RuleAction };
  return {
    id: row.id,
    namespace: row.namespace,
    name: row.name,
    active: Number(row.active) === 1,
    match,
    action,
    createdBy: row.created_by,
    createdAt: iso(Number(row.created_at)),
    updatedAt: iso(Number(row.updated_at)),
  };
}
