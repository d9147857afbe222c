/**
 * @module registry/retention
 * Retention rules of a namespace, applied on demand (a dry run lists what would go and why; a
 * real run removes it and both are recorded in `retention_runs`). Only top-level manifests are
 * judged — not children of an index, not referrers: those follow their parent or subject
 * through the normal GC, as do the blobs of removed manifests.
 *
 * A manifest goes when at least one rule covers it (its repository matches and it is untagged,
 * or one of its tags matches the rule's tag glob), every covering rule removes it, each of its
 * tags is covered, and none of its tags is immutable. Pull times come from registry/pull-times.ts.
 */
import { randomBytes } from 'node:crypto';
import type { Database } from '../db/db.js';
import { parseDuration } from '../config/config.js';
import type { RetentionRule } from './policy-api.js';
import { globMatcher, type RegistryPolicies } from './policy-service.js';
import type { PullTimes } from './pull-times.js';

export interface Removal {
  repository: string;
  digest: string;
  tags: string[];
  reason: string;
}

export interface RetentionRun {
  id: string;
  namespace: string;
  dryRun: boolean;
  removed: Removal[];
  kept: number;
  startedAt: number;
  finishedAt: number;
  startedBy: string | null;
}

interface Candidate {
  digest: string;
  tags: Array<{ name: string; updatedAt: number }>;
  pushedAt: number;
  pulledAt: number;
}

type Verdict = { covered: false } | { covered: true; keep: boolean; reason: string; coveredTags: string[] };

export class Retention {
  constructor(private readonly db: Database, private readonly policies: RegistryPolicies, private readonly pulls: PullTimes) {}

  async run(namespace: string, options: { dryRun: boolean; actor: string | null; now?: number }): Promise<RetentionRun> {
    const startedAt = options.now ?? Date.now();
    await this.pulls.flush();
    const policy = await this.policies.get(namespace);
    const immutable = policy.immutableTags.map(globMatcher);
    const rules = policy.retention.map((rule, index) => compile(rule, index));
    const removed: Removal[] = [];
    let kept = 0;
    const prefix = `${namespace}/`;
    const repositories = rules.length === 0 ? [] : (await this.db.kysely.selectFrom('repositories').select('name').execute())
      .map((r) => r.name).filter((name) => name.startsWith(prefix));
    for (const repository of repositories) {
      const covering = rules.filter((rule) => rule.repositories(repository));
      if (covering.length === 0) continue;
      const candidates = await this.candidates(repository);
      const verdicts = new Map<string, Verdict[]>();
      for (const rule of covering) {
        for (const [digest, verdict] of judge(rule, candidates, startedAt)) verdicts.set(digest, [...(verdicts.get(digest) ?? []), verdict]);
      }
      for (const candidate of candidates) {
        const all = (verdicts.get(candidate.digest) ?? []).filter((v): v is Extract<Verdict, { covered: true }> => v.covered);
        const tagNames = candidate.tags.map((t) => t.name);
        const covered = new Set(all.flatMap((v) => v.coveredTags));
        const goes = all.length > 0 && all.every((v) => !v.keep) && tagNames.every((t) => covered.has(t)) && !tagNames.some((t) => immutable.some((m) => m(t)));
        if (!goes) {
          kept++;
          continue;
        }
        const removal = { repository, digest: candidate.digest, tags: tagNames, reason: all.map((v) => v.reason).join('; ') };
        if (options.dryRun || (await this.remove(removal))) removed.push(removal);
        else kept++;
      }
    }
    const run: RetentionRun = { id: `ret_${randomBytes(9).toString('base64url')}`, namespace, dryRun: options.dryRun, removed, kept, startedAt, finishedAt: Date.now(), startedBy: options.actor };
    await this.db.write((trx) => trx.insertInto('retention_runs').values({
      id: run.id, namespace, dry_run: run.dryRun ? 1 : 0, removed: JSON.stringify(removed), kept, started_at: run.startedAt, finished_at: run.finishedAt, started_by: run.startedBy,
    }).execute());
    return run;
  }

  /**
   * Applies the rules of every namespace whose schedule is due (no real run within its
   * `retentionSchedule`); recorded with `startedBy: null`. Answers the runs made.
   */
  async runScheduled(now = Date.now()): Promise<RetentionRun[]> {
    const scheduled = await this.db.kysely.selectFrom('registry_policies').select(['namespace', 'retention_schedule'])
      .where('retention_schedule', 'is not', null).execute();
    const made: RetentionRun[] = [];
    for (const { namespace, retention_schedule: every } of scheduled) {
      const last = await this.db.kysely.selectFrom('retention_runs').select((eb) => eb.fn.max('started_at').as('at'))
        .where('namespace', '=', namespace).where('dry_run', '=', 0).executeTakeFirst();
      if (last?.at != null && now - Number(last.at) < parseDuration(every!)) continue;
      made.push(await this.run(namespace, { dryRun: false, actor: null, now }));
    }
    return made;
  }

  async runs(namespace: string, limit = 50): Promise<RetentionRun[]> {
    const rows = await this.db.kysely.selectFrom('retention_runs').selectAll().where('namespace', '=', namespace).orderBy('started_at', 'desc').limit(limit).execute();
    return rows.map((row) => ({
      id: row.id, namespace: row.namespace, dryRun: row.dry_run === 1, removed: JSON.parse(row.removed) as Removal[], kept: row.kept,
      startedAt: row.started_at, finishedAt: row.finished_at, startedBy: row.started_by,
    }));
  }

  /** Top-level manifests of a repository with their tags, push and pull times. */
  private async candidates(repository: string): Promise<Candidate[]> {
    const db = this.db.kysely;
    const manifests = await db.selectFrom('manifests').select(['digest', 'created_at', 'subject']).where('repository', '=', repository).execute();
    const children = new Set((await db.selectFrom('manifest_references').select('target_digest').where('repository', '=', repository).where('kind', '=', 'manifest').execute()).map((r) => r.target_digest));
    const tags = await db.selectFrom('tags').select(['name', 'manifest_digest', 'updated_at']).where('repository', '=', repository).execute();
    const pulls = new Map((await db.selectFrom('manifest_pulls').select(['digest', 'pulled_at']).where('repository', '=', repository).execute()).map((p) => [p.digest, p.pulled_at]));
    return manifests.filter((m) => m.subject === null && !children.has(m.digest)).map((m) => {
      const own = tags.filter((t) => t.manifest_digest === m.digest).map((t) => ({ name: t.name, updatedAt: t.updated_at }));
      return { digest: m.digest, tags: own, pushedAt: Math.max(m.created_at, ...own.map((t) => t.updatedAt)), pulledAt: pulls.get(m.digest) ?? 0 };
    });
  }

  /** Removes the manifest and its tags unless they changed since they were judged. */
  private async remove(removal: Removal): Promise<boolean> {
    return this.db.write(async (trx) => {
      const now = (await trx.selectFrom('tags').select('name').where('repository', '=', removal.repository).where('manifest_digest', '=', removal.digest).execute()).map((t) => t.name).sort();
      if (now.join('\n') !== [...removal.tags].sort().join('\n')) return false;
      await trx.deleteFrom('tags').where('repository', '=', removal.repository).where('manifest_digest', '=', removal.digest).execute();
      const result = await trx.deleteFrom('manifests').where('repository', '=', removal.repository).where('digest', '=', removal.digest).executeTakeFirst();
      await trx.deleteFrom('manifest_references').where('repository', '=', removal.repository).where('manifest_digest', '=', removal.digest).execute();
      return Number(result.numDeletedRows) > 0;
    });
  }
}

interface CompiledRule {
  index: number;
  rule: RetentionRule;
  repositories: (name: string) => boolean;
  tags: (name: string) => boolean;
  alwaysKeep?: (name: string) => boolean;
  withinMs?: number;
}

function compile(rule: RetentionRule, index: number): CompiledRule {
  return {
    index, rule,
    repositories: globMatcher(rule.repositories),
    tags: globMatcher(rule.tags),
    alwaysKeep: rule.alwaysKeep ? globMatcher(rule.alwaysKeep) : undefined,
    withinMs: rule.keepWithin ? parseDuration(rule.keepWithin) : undefined,
  };
}

/** One rule's verdict on each candidate of a repository. */
function judge(compiled: CompiledRule, candidates: Candidate[], now: number): Map<string, Verdict> {
  const { rule, index } = compiled;
  const name = `rule ${index + 1}`;
  const out = new Map<string, Verdict>();
  const recent = (c: Candidate) => compiled.withinMs !== undefined && (now - c.pushedAt <= compiled.withinMs || now - c.pulledAt <= compiled.withinMs);
  // The tagged manifests in scope, newest push first, for keepLast.
  const tagged = candidates.filter((c) => c.tags.some((t) => compiled.tags(t.name))).sort((a, b) => b.pushedAt - a.pushedAt);
  const rank = new Map(tagged.map((c, i) => [c.digest, i]));
  for (const c of candidates) {
    if (c.tags.length === 0) {
      if (!rule.dropUntagged) out.set(c.digest, { covered: true, keep: true, reason: `${name} keeps untagged manifests`, coveredTags: [] });
      else if (recent(c)) out.set(c.digest, { covered: true, keep: true, reason: `${name}: pushed or pulled within ${rule.keepWithin}`, coveredTags: [] });
      else out.set(c.digest, { covered: true, keep: false, reason: `${name}: untagged`, coveredTags: [] });
      continue;
    }
    const inScope = c.tags.map((t) => t.name).filter((t) => compiled.tags(t));
    if (inScope.length === 0) {
      out.set(c.digest, { covered: false });
      continue;
    }
    const verdict = (keep: boolean, reason: string): Verdict => ({ covered: true, keep, reason: `${name}: ${reason}`, coveredTags: inScope });
    if (compiled.alwaysKeep && inScope.some((t) => compiled.alwaysKeep!(t))) out.set(c.digest, verdict(true, `tag matches ${rule.alwaysKeep}`));
    else if (rule.keepLast === undefined && compiled.withinMs === undefined) out.set(c.digest, verdict(true, 'no keepLast or keepWithin'));
    else if (rule.keepLast !== undefined && rank.get(c.digest)! < rule.keepLast) out.set(c.digest, verdict(true, `among the last ${rule.keepLast} pushed`));
    else if (recent(c)) out.set(c.digest, verdict(true, `pushed or pulled within ${rule.keepWithin}`));
    else {
      const why = [rule.keepLast !== undefined ? `not among the last ${rule.keepLast} pushed` : undefined, compiled.withinMs !== undefined ? `not pushed or pulled within ${rule.keepWithin}` : undefined].filter(Boolean).join(', ');
      out.set(c.digest, verdict(false, why));
    }
  }
  return out;
}

/**
 * Checks every `tickMs` for namespaces whose retention is due (one check at a time);
 * `shouldRun` false skips a tick (another replica holds the housekeeping lease).
 */
export function scheduleRetention(retention: Retention, tickMs: number, onError: (error: unknown) => void, shouldRun: () => boolean = () => true): { stop(): Promise<void> } {
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (running || !shouldRun()) return;
    running = retention.runScheduled().catch(onError).finally(() => { running = undefined; });
  }, tickMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
