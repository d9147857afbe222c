/**
 * @module artifacts/routes
 * The artefact API (Humanitec's shapes, namespace-scoped):
 *
 * - `POST /api/v1/namespaces/{ns}/artefact-versions` (JSON; `?dry_run=true` validates only → 204)
 * - `GET …/artefact-versions?name=&reference=&type=&archived=&limit=`, `GET …/{id}`,
 *   `PATCH …/{id}` (`{archived}`), `GET …/{id}/workload-spec` (JSON, or YAML with
 *   `Accept: application/x-yaml`)
 * - `POST …/artefact-versions/convert-score`: a Score workload (JSON `{spec, image?, name?}`,
 *   or the workload itself as YAML) → the function it maps to `{name, config, warnings}`
 * - `POST|GET /api/v1/namespaces/{ns}/automation-rules`, `GET|PATCH|DELETE …/{name}`
 *
 * Readers read, contributors write.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { stringify as toYaml } from 'yaml';
import { z } from 'zod';
import type { Principal } from '../auth/access.js';
import type { ApiGuard } from '../auth/api-guard.js';
import { ApiError } from '../http/errors.js';
import { parseBody } from '../http/validation.js';
import { parseScore, scoreToFunction } from './score.js';
import type { ArtifactService } from './service.js';
import { archiveBody, convertScoreBody as convertBody, createArtefactQuery as createQuery, listArtefactsQuery as listQuery } from './api.js';

export interface ArtifactRoutesOptions {
  artefacts: ArtifactService;
  /** Absent when access control is off. */
  guard?: ApiGuard;
}

const yamlTypes = ['application/x-yaml', 'application/yaml', 'text/yaml', 'text/x-yaml'];

function parseQuery<T extends z.ZodType>(schema: T, request: FastifyRequest): z.output<T> {
  const parsed = schema.safeParse(request.query ?? {});
  if (!parsed.success) throw new ApiError('BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '));
  return parsed.data;
}

export async function artifactRoutes(app: FastifyInstance, options: ArtifactRoutesOptions): Promise<void> {
  const { artefacts, guard } = options;

  // A Score workload may be posted as YAML to convert-score (this plugin's routes only).
  app.addContentTypeParser(yamlTypes, { parseAs: 'string', bodyLimit: 1024 * 1024 }, (_request, body, done) => done(null, body));

  const params = (request: FastifyRequest) => request.params as { ns: string; id?: string; name?: string };

  const member = async (request: FastifyRequest, least: 'reader' | 'contributor'): Promise<Principal | null> => {
    if (!guard) return null;
    const principal = await guard.authenticate(request);
    await guard.requireRole(principal, params(request).ns, least);
    return principal;
  };

  // ---- artefact versions ----

  app.post('/api/v1/namespaces/:ns/artefact-versions', async (request, reply) => {
    const principal = await member(request, 'contributor');
    const query = parseQuery(createQuery, request);
    if (typeof request.body !== 'object' || request.body === null) throw new ApiError('BAD_REQUEST', 'body: send the artefact version as a JSON object');
    if (query.dry_run) {
      artefacts.validate(request.body);
      return reply.code(204).send();
    }
    const view = await artefacts.record(params(request).ns, request.body, { source: 'api', actor: principal?.name ?? null });
    return reply.code(201).send(view);
  });

  app.get('/api/v1/namespaces/:ns/artefact-versions', async (request) => {
    await member(request, 'reader');
    const q = parseQuery(listQuery, request);
    const versions = await artefacts.list(params(request).ns, { name: q.name, ref: q.reference, type: q.type, archived: q.archived, limit: q.limit });
    return { artefactVersions: versions };
  });

  app.post('/api/v1/namespaces/:ns/artefact-versions/convert-score', async (request) => {
    await member(request, 'reader');
    let spec: unknown;
    let image: string | undefined;
    let name: string | undefined;
    if (typeof request.body === 'string') {
      spec = request.body;
      const q = request.query as { image?: string; name?: string };
      image = q.image || undefined;
      name = q.name || undefined;
    } else {
      const body = parseBody(convertBody, request);
      ({ spec, image, name } = body);
    }
    const workload = parseScore(spec, typeof request.body === 'string' ? '' : 'spec');
    return scoreToFunction(workload, { image, name });
  });

  app.get('/api/v1/namespaces/:ns/artefact-versions/:id', async (request) => {
    await member(request, 'reader');
    return artefacts.get(params(request).ns, params(request).id!);
  });

  app.patch('/api/v1/namespaces/:ns/artefact-versions/:id', async (request) => {
    await member(request, 'contributor');
    const { archived } = parseBody(archiveBody, request);
    return artefacts.archive(params(request).ns, params(request).id!, archived);
  });

  app.get('/api/v1/namespaces/:ns/artefact-versions/:id/workload-spec', async (request, reply) => {
    await member(request, 'reader');
    const spec = await artefacts.workloadSpec(params(request).ns, params(request).id!);
    const accept = String(request.headers.accept ?? '');
    const yamlType = yamlTypes.find((type) => accept.includes(type));
    if (yamlType) return reply.type(yamlType === 'application/x-yaml' ? 'application/x-yaml' : yamlType).send(toYaml(spec));
    return reply.send(spec);
  });

  // ---- automation rules ----

  app.post('/api/v1/namespaces/:ns/automation-rules', async (request, reply) => {
    const principal = await member(request, 'contributor');
    const rule = await artefacts.createRule(params(request).ns, request.body ?? {}, principal?.name ?? null);
    return reply.code(201).send(rule);
  });

  app.get('/api/v1/namespaces/:ns/automation-rules', async (request) => {
    await member(request, 'reader');
    return { rules: await artefacts.listRules(params(request).ns) };
  });

  app.get('/api/v1/namespaces/:ns/automation-rules/:name', async (request) => {
    await member(request, 'reader');
    return artefacts.getRule(params(request).ns, params(request).name!);
  });

  app.patch('/api/v1/namespaces/:ns/automation-rules/:name', async (request) => {
    await member(request, 'contributor');
    return artefacts.updateRule(params(request).ns, params(request).name!, request.body ?? {});
  });

  app.delete('/api/v1/namespaces/:ns/automation-rules/:name', async (request, reply) => {
    await member(request, 'contributor');
    await artefacts.deleteRule(params(request).ns, params(request).name!);
    return reply.code(204).send();
  });
}
