/**
 * @module registry/policy-routes
 * `/api/v1/namespaces/:ns/registry-policy`, `…/registry-usage` and `…/retention-runs` (the
 * operations of registry/policy-api.ts): readers view, owners change and run retention.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ApiGuard } from '../auth/api-guard.js';
import type { AuditLog } from '../auth/audit.js';
import { ApiError } from '../http/errors.js';
import { parseBody } from '../http/validation.js';
import { policyBody, retentionQuery } from './policy-api.js';
import type { RegistryPolicies } from './policy-service.js';
import type { Retention, RetentionRun } from './retention.js';

export interface PolicyRoutesOptions {
  policies: RegistryPolicies;
  retention: Retention;
  guard: ApiGuard;
  audit?: AuditLog;
}

const iso = (ms: number) => new Date(ms).toISOString();
const runView = (run: RetentionRun) => ({ ...run, startedAt: iso(run.startedAt), finishedAt: iso(run.finishedAt) });

export async function policyRoutes(app: FastifyInstance, options: PolicyRoutesOptions): Promise<void> {
  const { policies, retention, guard, audit } = options;
  const ns = (request: FastifyRequest) => (request.params as { ns: string }).ns;

  app.get('/api/v1/namespaces/:ns/registry-policy', async (request) => {
    await guard.requireRole(await guard.authenticate(request), ns(request), 'reader');
    return { namespace: ns(request), ...(await policies.get(ns(request))) };
  });

  app.put('/api/v1/namespaces/:ns/registry-policy', async (request) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, ns(request), 'owner');
    const change = parseBody(policyBody, request);
    // An absent limit keeps its value; null clears it.
    const quota = change.quota ? Object.fromEntries(Object.entries(change.quota).filter(([, v]) => v !== undefined)) as Partial<Record<'maxBytes' | 'maxRepositories', number | null>> : undefined;
    const stored = await policies.set(ns(request), { immutableTags: change.immutableTags, quota, retention: change.retention, retentionSchedule: change.retentionSchedule }, me.name);
    await audit?.record({ actor: me.name, action: 'registry.policy', target: ns(request), outcome: 'ok', address: request.ip, detail: { ...stored } });
    return { namespace: ns(request), ...stored };
  });

  app.get('/api/v1/namespaces/:ns/registry-usage', async (request) => {
    await guard.requireRole(await guard.authenticate(request), ns(request), 'reader');
    const [used, policy] = await Promise.all([policies.usage(ns(request)), policies.get(ns(request))]);
    return { namespace: ns(request), ...used, quota: policy.quota };
  });

  app.post('/api/v1/namespaces/:ns/retention-runs', async (request, reply: FastifyReply) => {
    const me = await guard.authenticate(request);
    await guard.requireRole(me, ns(request), 'owner');
    const parsed = retentionQuery.safeParse(request.query ?? {});
    if (!parsed.success) throw new ApiError('BAD_REQUEST', parsed.error.issues.map((i) => `${i.path.join('.') || 'query'}: ${i.message}`).join('; '));
    const run = await retention.run(ns(request), { dryRun: parsed.data.dryRun === 'true', actor: me.name });
    if (!run.dryRun) await audit?.record({ actor: me.name, action: 'registry.retention', target: ns(request), outcome: 'ok', address: request.ip, detail: { id: run.id, removed: run.removed.length } });
    return reply.code(201).send(runView(run));
  });

  app.get('/api/v1/namespaces/:ns/retention-runs', async (request) => {
    await guard.requireRole(await guard.authenticate(request), ns(request), 'reader');
    return (await retention.runs(ns(request))).map(runView);
  });
}
