/**
 * @module registry/manifest-service
 * Manifests, tags, referrers and the catalog. A manifest is stored as its exact bytes under
 * its digest in one repository; a PUT checks (and touches, for GC) every blob and child
 * manifest it references in the same transaction that records it, so GC can never collect
 * content between the check and the record.
 */
import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../db/db.js';
import type { Tables } from '../db/schema.js';
import { ByteLru } from './byte-lru.js';
import { RegistryError } from './errors.js';
import { checkDigest, isDigest, isValidReference, type DigestAlgorithm } from './grammar.js';
import { mediaTypes, parseManifest, type Descriptor } from './manifest.js';
import { ensureRepository, repositoryExists } from './repositories.js';

export interface ManifestServiceOptions {
  db: Database;
  deleteEnabled: boolean;
  maxManifestBytes: number;
  /** Namespace rules on tags (immutable tags: registry/policy-service.ts), checked in the writing transaction. */
  tagGuard?: TagGuard;
  /** Refuses pushes into pull-through namespaces (registry/proxy-settings.ts): every push path, in process too. */
  writeGuard?: WriteGuard;
}

/** Throws (DENIED) when nothing may be pushed into `repository`. */
export interface WriteGuard {
  refuseWrite(repository: string): Promise<void>;
}

/** Throws (DENIED) inside the transaction that would move or remove a tag the namespace protects. */
export interface TagGuard {
  beforeTagWrite(trx: Kysely<Tables>, repository: string, tag: string, digest: string): Promise<void>;
  /** `reference`: a tag, or a digest whose tags would go with it. */
  beforeRemove(trx: Kysely<Tables>, repository: string, reference: string): Promise<void>;
}

export interface ManifestInfo {
  digest: string;
  mediaType: string;
  size: number;
  subject: string | null;
}

export interface Page<T> {
  items: T[];
  /** The last item when more follow (for the `Link` header). */
  next?: string;
}

export interface TagPushed {
  repository: string;
  tag: string;
  digest: string;
}

export class ManifestService {
  private readonly db: Database;
  private readonly contentCache = new ByteLru(64 * 1024 * 1024);
  private readonly tagListeners = new Set<(event: TagPushed) => void>();

  constructor(private readonly options: ManifestServiceOptions) {
    this.db = options.db;
  }

  /**
   * Looks a manifest up by tag or digest; MANIFEST_UNKNOWN (or NAME_UNKNOWN) when absent. A
   * reference no manifest could be stored under (a malformed tag or digest) is simply absent:
   * the spec answers a pull of a missing manifest with 404, and clients probe with such names.
   */
  async info(repository: string, reference: string): Promise<ManifestInfo> {
    const row = !isValidReference(reference) ? undefined : isDigest(reference)
      ? await this.db.kysely.selectFrom('manifests').select(['digest', 'media_type', 'size', 'subject'])
        .where('repository', '=', repository).where('digest', '=', reference).executeTakeFirst()
      : await this.db.kysely.selectFrom('tags as t')
        .innerJoin('manifests as m', (join) => join.onRef('m.repository', '=', 't.repository').onRef('m.digest', '=', 't.manifest_digest'))
        .select(['m.digest', 'm.media_type', 'm.size', 'm.subject'])
        .where('t.repository', '=', repository).where('t.name', '=', reference).executeTakeFirst();
    if (!row) {
      if (!(await repositoryExists(this.db.kysely, repository))) throw new RegistryError('NAME_UNKNOWN', undefined, { name: repository });
      throw new RegistryError('MANIFEST_UNKNOWN', undefined, { reference });
    }
    return { digest: row.digest, mediaType: row.media_type, size: row.size, subject: row.subject };
  }

  /** The manifest's exact bytes (immutable per digest, so cached by digest). */
  async content(repository: string, digest: string): Promise<Buffer> {
    const cached = this.contentCache.get(digest);
    if (cached) return cached;
    const row = await this.db.kysely.selectFrom('manifests').select('content').where('repository', '=', repository).where('digest', '=', digest).executeTakeFirst();
    if (!row) throw new RegistryError('MANIFEST_UNKNOWN', undefined, { reference: digest });
    const bytes = Buffer.from(row.content);
    this.contentCache.set(digest, bytes);
    return bytes;
  }

  /**
   * DENIED when `repository` takes no pushes (a pull-through namespace). For callers that push
   * later (builds, pipeline deliveries) to refuse before any work is done; `put` checks again.
   */
  async assertWritable(repository: string): Promise<void> {
    await this.options.writeGuard?.refuseWrite(repository);
  }

  /**
   * `pullThrough`: a manifest cached from an upstream (registry/pull-through.ts); its blobs and
   * child manifests arrive later, when a client asks for them, so they are not required here,
   * and it is not announced as a push.
   */
  async put(repository: string, reference: string, body: Buffer, contentType: string | undefined, options: { pullThrough?: boolean } = {}): Promise<ManifestInfo> {
    if (body.length > this.options.maxManifestBytes) {
      throw new RegistryError('MANIFEST_INVALID', `manifest is ${body.length} bytes, over the ${this.options.maxManifestBytes}-byte limit`, undefined, 413);
    }
    if (!options.pullThrough) await this.assertWritable(repository);
    const parsed = parseManifest(body, contentType);
    let algorithm: DigestAlgorithm = 'sha256';
    if (isDigest(reference)) {
      const check = checkDigest(reference);
      if (!check.ok) throw new RegistryError('DIGEST_INVALID', `invalid digest ${reference}`, { digest: reference });
      algorithm = check.algorithm;
    }
    const digest = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`;
    if (isDigest(reference) && reference !== digest) {
      throw new RegistryError('DIGEST_INVALID', `manifest digest is ${digest}, not ${reference}`, { digest: reference });
    }
    const tag = isDigest(reference) ? undefined : reference;
    await this.db.write(async (trx) => {
      const now = Date.now();
      if (tag) await this.options.tagGuard?.beforeTagWrite(trx, repository, tag, digest);
      await ensureRepository(trx, repository);
      if (!options.pullThrough) {
        await touchAll(trx, 'repository_blobs', repository, parsed.blobs, now, 'MANIFEST_BLOB_UNKNOWN');
        await touchAll(trx, 'manifests', repository, parsed.manifests, now, 'MANIFEST_UNKNOWN');
      }
      await trx.insertInto('manifests').values({
        repository,
        digest,
        media_type: parsed.mediaType,
        artifact_type: parsed.artifactType ?? null,
        subject: parsed.subject?.digest ?? null,
        annotations: parsed.annotations ? JSON.stringify(parsed.annotations) : null,
        size: body.length,
        content: body,
        created_at: now,
        touched_at: now,
      }).onConflict((c) => c.columns(['repository', 'digest']).doUpdateSet({ touched_at: now })).execute();
      // A re-pushed subject keeps the referrers still here: touching (and so locking) them
      // orders this PUT against a GC that judged them by an older, untagged state of it.
      await trx.updateTable('manifests').set({ touched_at: now }).where('repository', '=', repository).where('subject', '=', digest).execute();
      const references = [
        ...parsed.blobs.map((d) => ({ repository, manifest_digest: digest, target_digest: d.digest, kind: 'blob' as const })),
        ...parsed.manifests.map((d) => ({ repository, manifest_digest: digest, target_digest: d.digest, kind: 'manifest' as const })),
      ];
      const unique = [...new Map(references.map((r) => [`${r.kind}:${r.target_digest}`, r])).values()];
      for (let i = 0; i < unique.length; i += 200) {
        await trx.insertInto('manifest_references').values(unique.slice(i, i + 200))
          .onConflict((c) => c.columns(['repository', 'manifest_digest', 'target_digest']).doNothing()).execute();
      }
      if (tag) {
        await trx.insertInto('tags').values({ repository, name: tag, manifest_digest: digest, updated_at: now })
          .onConflict((c) => c.columns(['repository', 'name']).doUpdateSet({ manifest_digest: digest, updated_at: now })).execute();
      }
    });
    this.contentCache.set(digest, body);
    if (tag && !options.pullThrough) for (const listener of this.tagListeners) listener({ repository, tag, digest });
    return { digest, mediaType: parsed.mediaType, size: body.length, subject: parsed.subject?.digest ?? null };
  }

  /** Calls `listener` after every committed manifest PUT by tag (e.g. to follow tags); returns the unsubscribe. */
  onTagPushed(listener: (event: TagPushed) => void): () => void {
    this.tagListeners.add(listener);
    return () => this.tagListeners.delete(listener);
  }

  /** By digest: the manifest and every tag on it. By tag: only the tag. */
  async delete(repository: string, reference: string): Promise<void> {
    if (!this.options.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletes are disabled on this registry');
    const deleted = await this.db.write(async (trx) => {
      await this.options.tagGuard?.beforeRemove(trx, repository, reference);
      if (!isDigest(reference)) {
        const result = await trx.deleteFrom('tags').where('repository', '=', repository).where('name', '=', reference).executeTakeFirst();
        return Number(result.numDeletedRows);
      }
      const result = await trx.deleteFrom('manifests').where('repository', '=', repository).where('digest', '=', reference).executeTakeFirst();
      await trx.deleteFrom('tags').where('repository', '=', repository).where('manifest_digest', '=', reference).execute();
      await trx.deleteFrom('manifest_references').where('repository', '=', repository).where('manifest_digest', '=', reference).execute();
      return Number(result.numDeletedRows);
    });
    if (deleted === 0) {
      if (!(await repositoryExists(this.db.kysely, repository))) throw new RegistryError('NAME_UNKNOWN', undefined, { name: repository });
      throw new RegistryError('MANIFEST_UNKNOWN', undefined, { reference });
    }
  }

  /** Tags in lexical (byte) order after `last`, at most `limit` (all when undefined). */
  async tags(repository: string, limit?: number, last?: string): Promise<Page<string>> {
    if (!(await repositoryExists(this.db.kysely, repository))) throw new RegistryError('NAME_UNKNOWN', undefined, { name: repository });
    let query = this.db.kysely.selectFrom('tags').select('name').where('repository', '=', repository);
    if (last !== undefined) query = query.where(this.byteOrder('name'), '>', last);
    query = query.orderBy(this.byteOrder('name'));
    if (limit !== undefined) query = query.limit(limit + 1);
    const names = (await query.execute()).map((row) => row.name);
    return paginate(names, limit);
  }

  async repositories(limit?: number, last?: string): Promise<Page<string>> {
    let query = this.db.kysely.selectFrom('repositories').select('name');
    if (last !== undefined) query = query.where(this.byteOrder('name'), '>', last);
    query = query.orderBy(this.byteOrder('name'));
    if (limit !== undefined) query = query.limit(limit + 1);
    return paginate((await query.execute()).map((row) => row.name), limit);
  }

  /** The referrers index for `digest`: same-repository manifests whose subject is it. */
  async referrers(repository: string, digest: string, artifactType?: string): Promise<{ index: object; filtered: boolean }> {
    let query = this.db.kysely.selectFrom('manifests').select(['digest', 'media_type', 'size', 'artifact_type', 'annotations'])
      .where('repository', '=', repository).where('subject', '=', digest);
    if (artifactType !== undefined) query = query.where('artifact_type', '=', artifactType);
    const rows = await query.orderBy('digest').execute();
    const manifests: Descriptor[] = rows.map((row) => {
      const descriptor: Descriptor = { mediaType: row.media_type, digest: row.digest, size: row.size };
      if (row.artifact_type) descriptor.artifactType = row.artifact_type;
      if (row.annotations) descriptor.annotations = JSON.parse(row.annotations) as Record<string, string>;
      return descriptor;
    });
    return { index: { schemaVersion: 2, mediaType: mediaTypes.ociIndex, manifests }, filtered: artifactType !== undefined };
  }

  /** PostgreSQL sorts text by locale; tags and names must sort by bytes as the spec does. */
  private byteOrder(column: 'name') {
    return this.db.dialect === 'postgres' ? sql<string>`${sql.ref(column)} collate "C"` : sql<string>`${sql.ref(column)}`;
  }
}

function paginate(names: string[], limit?: number): Page<string> {
  if (limit === undefined || names.length <= limit) return { items: names };
  const items = names.slice(0, limit);
  return { items, next: items[items.length - 1] };
}

/**
 * Touches every referenced row (which also locks it against a concurrent GC on PostgreSQL) and
 * fails with `code` naming the first one that is not in the repository.
 */
async function touchAll(trx: Kysely<Tables>, table: 'repository_blobs' | 'manifests', repository: string, descriptors: Descriptor[], now: number, code: 'MANIFEST_BLOB_UNKNOWN' | 'MANIFEST_UNKNOWN'): Promise<void> {
  const digests = [...new Set(descriptors.map((d) => d.digest))];
  for (let i = 0; i < digests.length; i += 200) {
    const batch = digests.slice(i, i + 200);
    const result = await trx.updateTable(table).set({ touched_at: now }).where('repository', '=', repository).where('digest', 'in', batch).executeTakeFirst();
    if (Number(result.numUpdatedRows) === batch.length) continue;
    const present = new Set((await trx.selectFrom(table).select('digest').where('repository', '=', repository).where('digest', 'in', batch).execute()).map((r) => r.digest));
    const missing = batch.find((d) => !present.has(d));
    throw new RegistryError(code, `${code === 'MANIFEST_UNKNOWN' ? 'child manifest' : 'blob'} ${missing} is not in repository ${repository}`, { digest: missing });
  }
}
