/**
 * @module metrics/routes
 * `GET /metrics` (Prometheus text format) and the hook that counts every request Fastify
 * answers. Who may scrape: anyone when `metrics.public` is set or access control is off;
 * otherwise a server admin, by password (basic auth) or by an API key scoped `metrics` or `*`
 * (see auth/api-guard `authenticateMetrics`).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import type { HttpMetrics } from './http-metrics.js';
import type { SlipwayMetrics } from './registry.js';

export interface MetricsRoutesOptions {
  metrics: SlipwayMetrics;
  http: HttpMetrics;
  /** `metrics.public`: anyone may scrape. */
  public: boolean;
  /** Absent when access control is off (then anyone may scrape). Throws 401/403. */
  guard?: { authenticateMetrics(request: FastifyRequest): Promise<unknown> };
}

async function metricsPlugin(app: FastifyInstance, options: MetricsRoutesOptions): Promise<void> {
  const { metrics, http, guard } = options;
  // Registered on the root (fastify-plugin): the hook sees every route of every part.
  // A callback hook, not an async one: no promise per request on the benchmarked paths.
  app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const route = request.routeOptions.url;
    http.observe(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
    if (request.method === 'GET' && route !== undefined && route.startsWith('/v2')) {
      const length = Number(reply.getHeader('content-length'));
      if (length > 0) http.observeSent(length);
    }
    done();
  });

  app.get('/metrics', async (request, reply) => {
    if (!options.public && guard) {
      try {
        await guard.authenticateMetrics(request);
      } catch (error) {
        if ((error as { code?: string }).code === 'UNAUTHORIZED') reply.header('www-authenticate', 'Basic realm="slipway metrics"');
        throw error;
      }
    }
    const text = await metrics.text();
    return reply.header('content-type', metrics.registry.contentType).header('cache-control', 'no-store').send(text);
  });
}

export const metricsRoutes = fastifyPlugin(metricsPlugin, { name: 'slipway-metrics' });
