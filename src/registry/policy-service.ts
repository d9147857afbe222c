/**
 * @module registry/policy-service
 * A namespace's registry policy: immutable tags (tag globs under which a pushed tag can be
 * neither moved nor deleted) and quotas (bytes of distinct blobs, number of repositories),
 * stored as one row of `registry_policies`, plus the checks the push paths call:
 *
 *   manifest PUT / DELETE  → `beforeTagWrite` / `beforeRemove`, inside the manifest's own
 *                            transaction (so a concurrent move cannot slip between check and write)
 *   upload start, mount    → `admitRepository` (maxRepositories)
 *   chunk or whole body    → `admitBytes` before storing when the length is known, and again
 *                            with the digest at commit (a blob already in the namespace is free)
 *
 * A refusal is the registry's DENIED (403) with a message naming the rule or quota.
 */
import type { Kysely } from 'kysely';
import picomatch from 'picomatch';
import { namespaceOf } from '../auth/access.js';
import type { Database } from '../db/db.js';
import type { Tables } from '../db/schema.js';
import { RegistryError } from './errors.js';
import { isDigest } from './grammar.js';
import { heldInNamespace, lockUsage, maintainedUsage, namespacePrefix, sumUsage } from './namespace-usage.js';
import type { RetentionRule } from './policy-api.js';

export interface RegistryQuota {
  maxBytes: number | null;
  maxRepositories: number | null;
}

export interface RegistryPolicy {
  immutableTags: string[];
  quota: RegistryQuota;
  retention: RetentionRule[];
  /** How often the server applies `retention` (a duration); null: only on demand. */
  retentionSchedule: string | null;
}

export interface RegistryUsage {
  /** Bytes of the distinct blobs linked in any repository of the namespace (each counted once). */
  bytes: number;
  blobs: number;
  repositories: number;
}

export const emptyPolicy: RegistryPolicy = { immutableTags: [], quota: { maxBytes: null, maxRepositories: null }, retention: [], retentionSchedule: null };

/** `glob` as a matcher of one name: `*` and `?` do not cross `/`, `**` does. */
export function globMatcher(glob: string): (name: string) => boolean {
  return picomatch(glob, { dot: true, nobrace: false });
}


export class RegistryPolicies {
  constructor(private readonly db: Database) {}

  async get(namespace: string, trx: Kysely<Tables> = this.db.kysely): Promise<RegistryPolicy> {
    const row = await trx.selectFrom('registry_policies').selectAll().where('namespace', '=', namespace).executeTakeFirst();
    if (!row) return emptyPolicy;
    return {
      immutableTags: JSON.parse(row.immutable_tags) as string[],
      quota: { maxBytes: row.max_bytes, maxRepositories: row.max_repositories },
      retention: JSON.parse(row.retention) as RetentionRule[],
      retentionSchedule: row.retention_schedule,
    };
  }

  /** Replaces the parts given; answers the whole policy as stored. */
  async set(namespace: string, change: { immutableTags?: string[]; quota?: Partial<RegistryQuota>; retention?: RetentionRule[]; retentionSchedule?: string | null }, actor: string | null): Promise<RegistryPolicy> {
    return this.db.write(async (trx) => {
      const current = await this.get(namespace, trx);
      const next: RegistryPolicy = {
        immutableTags: change.immutableTags ?? current.immutableTags,
        quota: change.quota ? { ...current.quota, ...change.quota } : current.quota,
        retention: change.retention ?? current.retention,
        retentionSchedule: change.retentionSchedule === undefined ? current.retentionSchedule : change.retentionSchedule,
      };
      const values = {
        immutable_tags: JSON.stringify(next.immutableTags),
        max_bytes: next.quota.maxBytes,
        max_repositories: next.quota.maxRepositories,
        retention: JSON.stringify(next.retention),
        retention_schedule: next.retentionSchedule,
        updated_at: Date.now(),
        updated_by: actor,
      };
      await trx.insertInto('registry_policies').values({ namespace, ...values })
        .onConflict((c) => c.column('namespace').doUpdateSet(values)).execute();
      return next;
    });
  }

  /** The exact usage (the API's answer), summed from the links; quota checks read the maintained row instead. */
  async usage(namespace: string, trx: Kysely<Tables> = this.db.kysely): Promise<RegistryUsage> {
    const { bytes, blobs } = await sumUsage(trx, namespace);
    return { bytes, blobs, repositories: await this.repositoryCount(trx, namespace) };
  }

  private async repositoryCount(trx: Kysely<Tables>, namespace: string): Promise<number> {
    const { prefix, length } = namespacePrefix(namespace);
    const repositories = await trx.selectFrom('repositories').select((eb) => eb.fn.countAll<number>().as('count'))
      .where((eb) => eb(eb.fn('substr', ['name', eb.lit(1), eb.lit(length)]), '=', prefix))
      .executeTakeFirstOrThrow();
    return Number(repositories.count);
  }

  /** Refuses a tag move (PUT of another digest) under an immutable-tag rule; a same-digest re-push passes. */
  async beforeTagWrite(trx: Kysely<Tables>, repository: string, tag: string, digest: string): Promise<void> {
    const current = await trx.selectFrom('tags').select('manifest_digest').where('repository', '=', repository).where('name', '=', tag).executeTakeFirst();
    if (!current || current.manifest_digest === digest) return;
    const rule = await this.immutableRule(trx, repository, tag);
    if (rule) throw denied(`tag ${repository}:${tag} is immutable (rule "${rule}" of namespace "${namespaceOf(repository)}"): it points at ${current.manifest_digest} and cannot be moved`, { tag, rule });
  }

  /** Refuses deleting an immutable tag, or a manifest (by digest) that carries one. */
  async beforeRemove(trx: Kysely<Tables>, repository: string, reference: string): Promise<void> {
    const tags = isDigest(reference)
      ? (await trx.selectFrom('tags').select('name').where('repository', '=', repository).where('manifest_digest', '=', reference).execute()).map((t) => t.name)
      : (await trx.selectFrom('tags').select('name').where('repository', '=', repository).where('name', '=', reference).execute()).map((t) => t.name);
    for (const tag of tags) {
      const rule = await this.immutableRule(trx, repository, tag);
      if (rule) throw denied(`tag ${repository}:${tag} is immutable (rule "${rule}" of namespace "${namespaceOf(repository)}") and cannot be deleted`, { tag, rule });
    }
  }

  /** The first immutable-tag glob of the repository's namespace that `tag` matches. */
  async immutableRule(trx: Kysely<Tables>, repository: string, tag: string): Promise<string | undefined> {
    const { immutableTags } = await this.get(namespaceOf(repository), trx);
    return immutableTags.find((glob) => globMatcher(glob)(tag));
  }

  /** Refuses creating a repository beyond the namespace's maxRepositories (an existing one always passes). */
  async admitRepository(repository: string): Promise<void> {
    const namespace = namespaceOf(repository);
    const { quota } = await this.get(namespace);
    if (quota.maxRepositories === null) return;
    const exists = await this.db.kysely.selectFrom('repositories').select('name').where('name', '=', repository).executeTakeFirst();
    if (exists) return;
    const repositories = await this.repositoryCount(this.db.kysely, namespace);
    if (repositories >= quota.maxRepositories) {
      throw denied(`quota maxRepositories of namespace "${namespace}" is ${quota.maxRepositories} and reached: cannot create repository ${repository}`, { quota: 'maxRepositories', limit: quota.maxRepositories, used: repositories });
    }
  }

  /** A cross-repository mount: the target repository and the blob must both fit. */
  async admitMount(repository: string, digest: string): Promise<void> {
    await this.admitRepository(repository);
    const blob = await this.db.kysely.selectFrom('blobs').select('size').where('digest', '=', digest).executeTakeFirst();
    if (blob) await this.admitBytes(repository, blob.size, digest);
  }

  /**
   * Refuses a blob of `size` bytes that would take the namespace past maxBytes, counting the
   * bytes other uploads in progress have reserved. With `digest` (known at commit), a blob the
   * namespace holds already costs nothing. With `uploadId`, an admitted upload reserves `size`
   * (its total so far, replacing what it held) until it is committed or removed. Runs under the
   * namespace's usage lock (registry/namespace-usage.ts), so concurrent admissions are serialised
   * and cannot together overshoot the quota.
   */
  async admitBytes(repository: string, size: number, digest?: string, uploadId?: string): Promise<void> {
    const namespace = namespaceOf(repository);
    const { quota } = await this.get(namespace);
    if (quota.maxBytes === null) return;
    const maxBytes = quota.maxBytes;
    await this.db.write(async (trx) => {
      await lockUsage(this.db, trx, repository);
      const reserve = async (bytes: number) => {
        if (uploadId !== undefined) await trx.updateTable('uploads').set({ reserved_bytes: bytes }).where('id', '=', uploadId).execute();
      };
      if (digest !== undefined && (await heldInNamespace(trx, namespace, digest))) return reserve(0);
      const { bytes } = await maintainedUsage(trx, namespace);
      const { prefix, length } = namespacePrefix(namespace);
      let others = trx.selectFrom('uploads').select((eb) => eb.fn.coalesce(eb.fn.sum<number>('reserved_bytes'), eb.lit(0)).as('bytes'))
        .where((eb) => eb(eb.fn('substr', ['repository', eb.lit(1), eb.lit(length)]), '=', prefix));
      if (uploadId !== undefined) others = others.where('id', '!=', uploadId);
      const reserved = Number((await others.executeTakeFirstOrThrow()).bytes);
      if (bytes + reserved + size > maxBytes) {
        const held = reserved > 0 ? `, ${reserved} are reserved by uploads in progress,` : '';
        throw denied(`quota maxBytes of namespace "${namespace}" is ${maxBytes} bytes; ${bytes} are used${held} and this blob needs ${size} more`, { quota: 'maxBytes', limit: maxBytes, used: bytes, reserved, requested: size });
      }
      await reserve(size);
    });
  }
}

function denied(message: string, detail: Record<string, unknown>): RegistryError {
  return new RegistryError('DENIED', message, detail);
}
