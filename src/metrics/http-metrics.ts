/**
 * @module metrics/http-metrics
 * HTTP request metrics: the part of the server a request went to (from its route pattern,
 * never its path), its method and status. Label children are resolved once per
 * (route, method, status) and cached, so a request costs a few map lookups and no allocation.
 */
import type { ServerResponse } from 'node:http';
import type { Counter, Histogram } from 'prom-client';
import { methodLabel, type SlipwayMetrics } from './registry.js';

/** `/api/v1/<segment>` and `/api/v1/namespaces/:ns/<segment>` → part. */
const apiParts: Record<string, string> = {
  functions: 'functions', builds: 'builds', images: 'builds', components: 'builds',
  pipelines: 'pipelines', runs: 'pipelines', 'artefact-versions': 'artifacts', 'automation-rules': 'artifacts',
  webhooks: 'events', events: 'events', secrets: 'vault', registries: 'credentials',
  keys: 'auth', users: 'auth', namespaces: 'auth', members: 'auth', me: 'auth', audit: 'auth', sessions: 'auth', settings: 'auth', repositories: 'auth',
};

/** The part a route pattern belongs to; `unmatched` when no route matched (404s). */
export function partOf(route: string | undefined): string {
  if (!route) return 'unmatched';
  if (route === '/v2' || route.startsWith('/v2/')) return 'registry';
  if (route.startsWith('/fn/')) return 'gateway';
  if (route.startsWith('/auth/')) return 'auth';
  if (route === '/metrics' || route === '/healthz' || route === '/readyz') return 'server';
  const api = /^\/api\/v1\/(?:namespaces\/:[^/]+\/)?([a-z-]+)/.exec(route);
  if (api) return apiParts[api[1]!] ?? 'api';
  if (route.startsWith('/api/')) return 'api';
  return 'web';
}

/** The gateway's Fastify route, which fast-path requests are counted under. */
const gatewayRoute = '/fn/:ns/:name/*';

interface PartChildren {
  part: string;
  duration: ReturnType<Histogram<'part'>['labels']>;
  /** method → status → counter child. */
  counts: Map<string, Map<number, ReturnType<Counter<'part' | 'method' | 'code'>['labels']>>>;
}

export class HttpMetrics {
  private readonly byRoute = new Map<string, PartChildren>();
  private readonly byPart = new Map<string, PartChildren>();

  constructor(private readonly metrics: SlipwayMetrics) {}

  /** One answered request of `route` (a route pattern; undefined: none matched). */
  observe(route: string | undefined, method: string | undefined, status: number, seconds: number): void {
    const children = this.forRoute(route);
    children.duration.observe(seconds);
    let byMethod = children.counts.get(method ?? '');
    if (!byMethod) {
      byMethod = new Map();
      children.counts.set(method ?? '', byMethod);
    }
    let counter = byMethod.get(status);
    if (!counter) {
      counter = this.metrics.httpRequests.labels(children.part, methodLabel(method), String(status));
      byMethod.set(status, counter);
    }
    counter.inc();
  }

  /** Bytes of /v2 answers, from the Content-Length the registry sets on blobs and manifests. */
  observeSent(bytes: number): void {
    if (bytes > 0) this.metrics.registryBytesSent.inc(bytes);
  }

  /**
   * A request answered outside Fastify (the gateway fast path): observed when the response
   * ends, as the gateway's route.
   */
  watch(method: string | undefined, res: ServerResponse): void {
    const started = performance.now();
    res.once('close', () => this.observe(gatewayRoute, method, res.statusCode, (performance.now() - started) / 1000));
  }

  private forRoute(route: string | undefined): PartChildren {
    const key = route ?? '';
    let children = this.byRoute.get(key);
    if (!children) {
      const part = partOf(route);
      children = this.byPart.get(part);
      if (!children) {
        children = { part, duration: this.metrics.httpDuration.labels(part), counts: new Map() };
        this.byPart.set(part, children);
      }
      this.byRoute.set(key, children);
    }
    return children;
  }
}
