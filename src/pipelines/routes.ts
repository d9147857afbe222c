/**
 * @module pipelines/routes
 * `/api/v1/namespaces/{ns}/pipelines`: the resource (JSON, or YAML with
 * `Content-Type: application/yaml`), runs (start, list, show, logs as text or live SSE,
 * cancel, re-run, approve/reject), the webhook secret, and the push webhook itself
 * (`POST …/pipelines/{name}/webhook`, authenticated by its signature or token, not by a user).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parse as parseYaml } from 'yaml';
import type { Principal } from '../auth/access.js';
import type { ApiGuard } from '../auth/api-guard.js';
import { ApiError } from '../http/errors.js';
import { parseBody } from '../http/validation.js';
import { finalRunStatuses } from './runs.js';
import type { PipelineService } from './service.js';
import { runInputSchema } from './spec.js';
import { WebhookError } from './webhooks.js';
import { decisionBody as decisionSchema, rerunBody as rerunSchema } from './api.js';

export interface PipelineRoutesOptions {
  pipelines: PipelineService;
  guard?: ApiGuard;
  /** Largest webhook body (GitHub sends up to 25 MB). */
  maxWebhookBytes?: number;
}


export async function pipelineRoutes(app: FastifyInstance, options: PipelineRoutesOptions): Promise<void> {
  const { pipelines, guard } = options;
  const base = '/api/v1/namespaces/:ns/pipelines';

  // Pipelines may be written in YAML, like build specs.
  app.addContentTypeParser(['application/yaml', 'application/x-yaml', 'text/yaml'], { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseYaml(body as string));
    } catch (error) {
      done(new ApiError('BAD_REQUEST', `the body is not valid YAML: ${(error as Error).message}`), undefined);
    }
  });

  const params = (request: FastifyRequest) => request.params as { ns: string; name: string; number?: string; stage?: string };
  const number = (request: FastifyRequest) => {
    const n = Number(params(request).number);
    if (!Number.isInteger(n) || n < 1) throw new ApiError('BAD_REQUEST', 'run numbers are positive integers');
    return n;
  };
  const member = async (request: FastifyRequest, least: 'reader' | 'contributor'): Promise<Principal | null> => {
    if (!guard) return null;
    const principal = await guard.authenticate(request);
    await guard.requireRole(principal, params(request).ns, least);
    return principal;
  };

  const followers = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...followers]) end();
  });

  // ---- the resource ----

  app.post(base, async (request, reply) => {
    const principal = await member(request, 'contributor');
    const { pipeline, webhookSecret, warnings } = await pipelines.create(params(request).ns, request.body, principal?.name ?? null);
    // `warnings`: unknown keys left out of the definition (`strict: true` refuses them instead).
    return reply.code(201).send({ ...pipeline, webhook: { ...pipeline.webhook, secret: webhookSecret }, warnings });
  });

  app.get(base, async (request) => {
    await member(request, 'reader');
    return { pipelines: await pipelines.list(params(request).ns) };
  });

  app.get(`${base}/:name`, async (request) => {
    await member(request, 'reader');
    return pipelines.get(params(request).ns, params(request).name);
  });

  app.put(`${base}/:name`, async (request) => {
    await member(request, 'contributor');
    return pipelines.replace(params(request).ns, params(request).name, request.body);
  });

  app.delete(`${base}/:name`, async (request, reply) => {
    await member(request, 'contributor');
    await pipelines.remove(params(request).ns, params(request).name);
    return reply.code(204).send();
  });

  app.post(`${base}/:name/webhook-secret`, async (request) => {
    await member(request, 'contributor');
    return { secret: await pipelines.rotateWebhookSecret(params(request).ns, params(request).name) };
  });

  app.get(`${base}/:name/webhook-deliveries`, async (request) => {
    await member(request, 'reader');
    const limit = Number((request.query as { limit?: string }).limit ?? 50) || 50;
    return { deliveries: await pipelines.webhookDeliveries(params(request).ns, params(request).name, limit) };
  });

  // ---- runs ----

  app.post(`${base}/:name/runs`, async (request, reply) => {
    const principal = await member(request, 'contributor');
    const input = parseBody(runInputSchema, request);
    const { run, duplicate } = await pipelines.trigger(params(request).ns, params(request).name, {
      parameters: input.parameters, branch: input.branch, commit: input.commit,
      trigger: { type: 'manual', by: principal?.name ?? null, receivedAt: Date.now() },
    });
    return reply.code(duplicate ? 200 : 201).send(run);
  });

  app.get(`${base}/:name/runs`, async (request) => {
    await member(request, 'reader');
    const query = request.query as { limit?: string; status?: string };
    return { runs: await pipelines.runs(params(request).ns, params(request).name, { limit: query.limit ? Number(query.limit) || 20 : 20, status: query.status }) };
  });

  app.get(`${base}/:name/runs/:number`, async (request) => {
    await member(request, 'reader');
    const query = request.query as { wait?: string };
    if (['true', '1'].includes(query.wait ?? '')) {
      const controller = new AbortController();
      request.raw.once('close', () => controller.abort());
      return pipelines.waitForRun(params(request).ns, params(request).name, number(request), controller.signal);
    }
    return pipelines.run(params(request).ns, params(request).name, number(request));
  });

  app.post(`${base}/:name/runs/:number/cancel`, async (request) => {
    const principal = await member(request, 'contributor');
    return pipelines.cancel(params(request).ns, params(request).name, number(request), principal?.name ?? 'api');
  });

  app.post(`${base}/:name/runs/:number/rerun`, async (request, reply) => {
    const principal = await member(request, 'contributor');
    const input = parseBody(rerunSchema, request);
    return reply.code(201).send(await pipelines.rerun(params(request).ns, params(request).name, number(request), input, principal?.name ?? null));
  });

  for (const decision of ['approve', 'reject'] as const) {
    app.post(`${base}/:name/runs/:number/stages/:stage/${decision}`, async (request) => {
      const principal = await member(request, 'contributor');
      const input = parseBody(decisionSchema, request);
      return pipelines.decide(params(request).ns, params(request).name, number(request), params(request).stage!, decision === 'approve' ? 'approved' : 'rejected', principal?.name ?? null, input.comment);
    });
  }

  app.get(`${base}/:name/runs/:number/logs`, async (request, reply) => {
    await member(request, 'reader');
    const { ns, name } = params(request);
    const run = await pipelines.run(ns, name, number(request));
    const follow = (request.headers.accept ?? '').includes('text/event-stream') || ['true', '1'].includes(String((request.query as Record<string, unknown>).follow ?? ''));
    if (!follow) return reply.type('text/plain; charset=utf-8').send(await pipelines.logText(run.id).catch(() => ''));
    streamLog(reply, pipelines, ns, name, run.number, run.id, followers);
  });

  // ---- the push webhook: raw bytes, checked by signature before anything is parsed ----

  await app.register(async (hook) => {
    hook.removeAllContentTypeParsers();
    hook.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: options.maxWebhookBytes ?? 25 * 1024 * 1024 }, (_request, body, done) => done(null, body));
    hook.post(`${base}/:name/webhook`, async (request, reply) => {
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      try {
        const outcome = await pipelines.receiveWebhook(params(request).ns, params(request).name, request.headers, body);
        return reply.code(outcome.status === 'started' ? 202 : 200).send(outcome);
      } catch (error) {
        // A signed event of another kind (issues, pull requests, …) is fine, just not ours.
        if (error instanceof WebhookError && error.code === 'EVENT_IGNORED') return reply.code(202).send({ status: 'ignored', reason: error.message });
        throw error;
      }
    });
  });
}

/** Server-Sent Events of a run's log: lines as `data:`, then `event: end` with the final status. */
function streamLog(reply: FastifyReply, pipelines: PipelineService, ns: string, name: string, runNumber: number, runId: string, followers: Set<() => void>): void {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  let closed = false;
  let unsubscribe: (() => void) | undefined;
  const keepAlive = setInterval(() => { if (!closed) raw.write(': keep-alive\n\n'); }, 15_000);
  const end = () => {
    if (closed) return;
    closed = true;
    clearInterval(keepAlive);
    unsubscribe?.();
    followers.delete(end);
    void pipelines.run(ns, name, runNumber).then((run) => {
      raw.end(`event: end\ndata: ${JSON.stringify({ status: run.status, error: run.error })}\n\n`);
    }, () => raw.end());
  };
  followers.add(end);
  raw.once('close', () => {
    closed = true;
    clearInterval(keepAlive);
    unsubscribe?.();
    followers.delete(end);
  });
  void (async () => {
    // A queued run has no live log yet: wait for it to start (or end).
    for (let run = await pipelines.run(ns, name, runNumber); !closed && !pipelines.isLogLive(runId); run = await pipelines.run(ns, name, runNumber)) {
      if (finalRunStatuses.has(run.status) || run.status === 'waiting') {
        for (const line of (await pipelines.logText(runId).catch(() => '')).split('\n')) if (line) raw.write(`data: ${line}\n\n`);
        end();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    if (closed) return;
    unsubscribe = await pipelines.followLog(runId, {
      line: (text) => { if (!closed) raw.write(`data: ${text.replace(/\r?\n/g, ' ')}\n\n`); },
      end,
    });
  })().catch(() => end());
}
