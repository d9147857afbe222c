/**
 * @module vault/routes
 * `/api/v1/namespaces/{ns}/secrets`: owners set and delete named secrets (the value is
 * write-only: never returned), members list their names.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiGuard } from '../auth/api-guard.js';
import type { AuditLog } from '../auth/audit.js';
import { parseBody } from '../http/validation.js';
import type { NamespaceSecrets } from './secrets.js';
import { putSecretBody } from './api.js';

export interface SecretRoutesOptions {
  secrets: NamespaceSecrets;
  guard: ApiGuard;
  audit: AuditLog;
}

export async function secretRoutes(app: FastifyInstance, options: SecretRoutesOptions): Promise<void> {
  const { secrets, guard, audit } = options;
  const params = (request: FastifyRequest) => request.params as { ns: string; name: string };

  app.get('/api/v1/namespaces/:ns/secrets', async (request) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, params(request).ns, 'contributor');
    return secrets.list(params(request).ns);
  });

  app.put('/api/v1/namespaces/:ns/secrets/:name', async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, params(request).ns, 'owner');
    const { value } = parseBody(putSecretBody, request);
    const { created } = await secrets.put(params(request).ns, params(request).name, value, me.name);
    await audit.record({ actor: me.name, action: created ? 'secret.create' : 'secret.update', target: `${params(request).ns}/${params(request).name}`, outcome: 'ok', address: request.ip });
    return reply.code(created ? 201 : 200).send({ name: params(request).name, value: '****' });
  });

  app.delete('/api/v1/namespaces/:ns/secrets/:name', async (request: FastifyRequest, reply: FastifyReply) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, params(request).ns, 'owner');
    await secrets.delete(params(request).ns, params(request).name);
    await audit.record({ actor: me.name, action: 'secret.delete', target: `${params(request).ns}/${params(request).name}`, outcome: 'ok', address: request.ip });
    return reply.code(204).send();
  });
}
