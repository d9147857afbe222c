/**
 * @module registry/catalog-routes
 * The registry as the dashboard reads it, under `/api/v1/namespaces/{ns}/repositories`
 * (the `/v2` catalog speaks registry tokens and names only):
 *
 *   GET    /repositories               reader  { repositories: [{name, tags, updatedAt}] }
 *   GET    /repositories/{repo}        reader  { name, tags: [{name, digest, mediaType, size, pushedAt, platforms, referrers}], usedBy }
 *   DELETE /repositories/{repo}?tag=   owner   204 (the registry's `delete` right is the owner's)
 *
 * `{repo}` is the full name (`ns/app`, slashes allowed). `usedBy`: the namespace's functions
 * whose image is in the repository and pipelines whose definition names it.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiGuard } from '../auth/api-guard.js';
import type { Database } from '../db/db.js';
import { SlipwayError } from '../http/error-catalog.js';
import type { ManifestService } from './manifest-service.js';
import { RegistryError } from './errors.js';

export interface CatalogRoutesOptions {
  db: Database;
  manifests: ManifestService;
  /** Absent when access control is off. */
  guard?: ApiGuard;
}

const indexTypes = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);

/** `os/arch[/variant]` of each manifest an index lists. */
function platformsOf(mediaType: string, content: Buffer): string[] {
  if (!indexTypes.has(mediaType)) return [];
  try {
    const index = JSON.parse(content.toString('utf8')) as { manifests?: Array<{ platform?: { os?: string; architecture?: string; variant?: string } }> };
    return (index.manifests ?? []).map((m) => m.platform).filter((p) => p?.os && p.architecture)
      .map((p) => [p!.os, p!.architecture, p!.variant].filter(Boolean).join('/'));
  } catch {
    return [];
  }
}

export async function catalogRoutes(app: FastifyInstance, options: CatalogRoutesOptions): Promise<void> {
  const { db, manifests, guard } = options;
  const kysely = db.kysely;
  const base = '/api/v1/namespaces/:ns/repositories';
  const params = (request: FastifyRequest) => request.params as { ns: string; '*'?: string };

  const member = async (request: FastifyRequest, least: 'reader' | 'owner') => {
    if (!guard) return;
    await guard.requireRole(await guard.authenticate(request), params(request).ns, least);
  };
  /** The repository named in the path, which must be inside the namespace. */
  const repositoryOf = (request: FastifyRequest): string => {
    const { ns } = params(request);
    const name = (params(request)['*'] ?? '').replace(/\/+$/, '');
    if (!name.startsWith(`${ns}/`)) throw new SlipwayError('NOT_FOUND', `no repository "${name}" in "${ns}"`);
    return name;
  };

  app.get(base, async (request) => {
    await member(request, 'reader');
    const ns = params(request).ns;
    const repos = await kysely.selectFrom('repositories').select('name').where('name', 'like', `${ns.replace(/[%_\\]/g, '\\$&')}/%`).orderBy('name').execute();
    const tags = await kysely.selectFrom('tags').select(['repository', 'updated_at']).where('repository', 'in', repos.length ? repos.map((r) => r.name) : ['']).execute();
    return {
      repositories: repos.map((r) => {
        const own = tags.filter((t) => t.repository === r.name);
        const newest = Math.max(0, ...own.map((t) => Number(t.updated_at)));
        return { name: r.name, tags: own.length, updatedAt: newest ? new Date(newest).toISOString() : null };
      }),
    };
  });

  app.get(`${base}/*`, async (request) => {
    await member(request, 'reader');
    const ns = params(request).ns;
    const name = repositoryOf(request);
    const exists = await kysely.selectFrom('repositories').select('name').where('name', '=', name).executeTakeFirst();
    if (!exists) throw new SlipwayError('NOT_FOUND', `no repository "${name}"`);
    const rows = await kysely.selectFrom('tags').innerJoin('manifests', (join) => join.onRef('manifests.repository', '=', 'tags.repository').onRef('manifests.digest', '=', 'tags.manifest_digest'))
      .select(['tags.name as tag', 'tags.updated_at as pushedAt', 'manifests.digest as digest', 'manifests.media_type as mediaType', 'manifests.size as size', 'manifests.content as content'])
      .where('tags.repository', '=', name).orderBy('tags.updated_at', 'desc').execute();
    const referrers = await kysely.selectFrom('manifests').select(['digest', 'subject', 'artifact_type', 'size'])
      .where('repository', '=', name).where('subject', 'is not', null).execute();
    const functions = await kysely.selectFrom('function_revisions').innerJoin('functions', 'functions.id', 'function_revisions.function_id')
      .select('functions.name').distinct().where('functions.namespace', '=', ns)
      .where((eb) => eb.or([eb('function_revisions.image', 'like', `%/${name}:%`), eb('function_revisions.image', 'like', `%/${name}@%`), eb('function_revisions.image', '=', name), eb('function_revisions.image', 'like', `${name}:%`)]))
      .execute();
    const pipelines = (await kysely.selectFrom('pipelines').select(['name', 'spec']).where('namespace', '=', ns).execute()).filter((p) => p.spec.includes(name));
    return {
      name,
      tags: rows.map((r) => ({
        name: r.tag, digest: r.digest, mediaType: r.mediaType, size: Number(r.size), pushedAt: new Date(Number(r.pushedAt)).toISOString(),
        platforms: platformsOf(r.mediaType, Buffer.from(r.content)),
        referrers: referrers.filter((x) => x.subject === r.digest).map((x) => ({ digest: x.digest, artifactType: x.artifact_type, size: Number(x.size) })),
      })),
      usedBy: { functions: functions.map((f) => f.name), pipelines: pipelines.map((p) => p.name) },
    };
  });

  app.delete(`${base}/*`, async (request, reply) => {
    await member(request, 'owner');
    const name = repositoryOf(request);
    const tag = (request.query as { tag?: string }).tag;
    if (!tag) throw new SlipwayError('BAD_REQUEST', 'tag: required');
    try {
      await manifests.delete(name, tag);
    } catch (error) {
      // Registry codes in /api words: deletes switched off → CONFLICT, a policy refusal (an
      // immutable tag) → FORBIDDEN, an unknown tag or repository → NOT_FOUND.
      if (error instanceof RegistryError) throw new SlipwayError(error.code === 'UNSUPPORTED' ? 'CONFLICT' : error.code === 'DENIED' ? 'FORBIDDEN' : 'NOT_FOUND', error.message);
      throw error;
    }
    return reply.code(204).send();
  });
}
