/**
 * @module credentials/routes
 * `/api/v1/namespaces/{ns}/registries`: owners manage a namespace's external registries;
 * members see them (credentials masked); contributors fetch a login for CI (`…/creds`) where
 * `enable_ci` is on; `…/registries/match?image=` tells which record applies to an image.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiGuard } from '../auth/api-guard.js';
import { ApiError } from '../http/errors.js';
import { parseBody } from '../http/validation.js';
import { createRegistryBody, patchRegistryBody } from './api.js';
import type { ExternalRegistries } from './service.js';

export interface CredentialRoutesOptions {
  registries: ExternalRegistries;
  guard: ApiGuard;
}

export async function credentialRoutes(app: FastifyInstance, options: CredentialRoutesOptions): Promise<void> {
  const { registries, guard } = options;

  const params = (request: FastifyRequest) => request.params as { ns: string; id: string };
  const base = '/api/v1/namespaces/:ns/registries';

  app.get(base, async (request) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, params(request).ns, 'reader');
    return registries.list(params(request).ns);
  });

  app.post(base, async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, params(request).ns, 'owner');
    const input = parseBody(createRegistryBody, request);
    return reply.code(201).send(await registries.create(params(request).ns, input, me.name));
  });

  app.get(`${base}/match`, async (request) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, params(request).ns, 'reader');
    const image = (request.query as { image?: string }).image;
    if (!image) throw new ApiError('BAD_REQUEST', 'image: required, e.g. ?image=registry.example.com/team/app:1.0');
    const found = await registries.match(params(request).ns, image);
    if (!found) throw new ApiError('NOT_FOUND', `no registry of "${params(request).ns}" matches ${image}`);
    return found;
  });

  app.get(`${base}/:id`, async (request) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, params(request).ns, 'reader');
    return registries.get(params(request).ns, params(request).id);
  });

  app.patch(`${base}/:id`, async (request) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, params(request).ns, 'owner');
    return registries.update(params(request).ns, params(request).id, parseBody(patchRegistryBody, request), me.name);
  });

  app.delete(`${base}/:id`, async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, params(request).ns, 'owner');
    await registries.delete(params(request).ns, params(request).id, me.name);
    return reply.code(204).send();
  });

  app.get(`${base}/:id/creds`, async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await guard.authenticate(request);
    try {
      await guard.requireRole(me, params(request).ns, 'contributor');
    } catch (error) {
      // Refusals are audited like hand-outs (a 404 for an outsider stays unaudited: nothing to name).
      if (error instanceof ApiError && error.code === 'FORBIDDEN') await registries.auditRefusedHandOut(params(request).ns, params(request).id, me.name, request.ip, error.message);
      throw error;
    }
    const login = await registries.handOut(params(request).ns, params(request).id, me.name, request.ip);
    // A secret in a response: never cached by anything in between.
    reply.header('Cache-Control', 'no-store');
    return { username: login.username, password: login.password, expires_at: login.expiresAt ? new Date(login.expiresAt).toISOString() : null };
  });
}
