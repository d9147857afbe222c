/**
 * @module metrics/registry
 * Every Prometheus metric Slipway exports, in one prom-client Registry per server (never the
 * global default registry: tests run many servers in one process). Parts do not import
 * prom-client: the composition root hands them the small observer callbacks below.
 * Names follow Distribution/zot: `slipway_<area>_<what>`, `_total` counters, `_seconds`
 * histograms, base units; labels only take bounded values (no tag, digest, commit, path).
 * docs/metrics.md lists them all (test/metrics.test.ts keeps the two in step).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

interface FunctionChildren {
  byCode: Map<number, { inc(): void }>;
  duration: { observe(value: number): void };
  coldStarts: { inc(): void };
}

/** Buckets per kind of duration: requests are fast, builds and stages are slow. */
const buckets = {
  request: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  start: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60],
  build: [1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600],
  wait: [0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800],
  gc: [0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
};

/** Methods as a bounded label: anything unusual is `other`. */
const methods = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
export function methodLabel(method: string | undefined): string {
  return method && methods.has(method) ? method : 'other';
}

export type BuildOutcome = 'succeeded' | 'failed' | 'cancelled';

/** Scrape-time readings the composition root supplies (db counts, live pool state). */
export interface MetricSources {
  uploadsInProgress?: () => Promise<number>;
  /** Jobs by queue (`builds`, `invocations`, `pipeline-runs`) and status. */
  jobQueueDepth?: () => Promise<Array<{ queue: string; status: string; count: number }>>;
  /** Function instances by state and requests waiting for an instance. */
  functionInstances?: () => { instances: Record<string, number>; queued: number };
}

export class SlipwayMetrics {
  readonly registry = new Registry();
  private sources: MetricSources = {};

  readonly httpRequests = new Counter({ name: 'slipway_http_requests_total', help: 'HTTP requests answered, by part of the server, method and status code.', labelNames: ['part', 'method', 'code'] as const, registers: [this.registry] });
  readonly httpDuration = new Histogram({ name: 'slipway_http_request_duration_seconds', help: 'Time from request to response, by part of the server.', labelNames: ['part'] as const, buckets: buckets.request, registers: [this.registry] });

  readonly registryBytesReceived = new Counter({ name: 'slipway_registry_bytes_received_total', help: 'Blob bytes stored by registry uploads (including builds\' and pipelines\' own pushes).', registers: [this.registry] });
  readonly registryBytesSent = new Counter({ name: 'slipway_registry_bytes_sent_total', help: 'Bytes of blob and manifest responses of the /v2 API (Content-Length).', registers: [this.registry] });
  readonly gcRuns = new Counter({ name: 'slipway_registry_gc_runs_total', help: 'Garbage collection runs, by outcome (ok, failed).', labelNames: ['outcome'] as const, registers: [this.registry] });
  readonly gcDeletedBlobs = new Counter({ name: 'slipway_registry_gc_deleted_blobs_total', help: 'Blobs deleted by garbage collection.', registers: [this.registry] });
  readonly gcDeletedManifests = new Counter({ name: 'slipway_registry_gc_deleted_manifests_total', help: 'Unreachable manifests deleted by garbage collection.', registers: [this.registry] });
  readonly gcFreedBytes = new Counter({ name: 'slipway_registry_gc_freed_bytes_total', help: 'Bytes of blobs freed by garbage collection.', registers: [this.registry] });
  readonly gcDuration = new Histogram({ name: 'slipway_registry_gc_duration_seconds', help: 'Duration of garbage collection runs.', buckets: buckets.gc, registers: [this.registry] });

  readonly builds = new Counter({ name: 'slipway_builds_total', help: 'Builds finished, by outcome (succeeded, failed, cancelled).', labelNames: ['outcome'] as const, registers: [this.registry] });
  readonly buildDuration = new Histogram({ name: 'slipway_build_duration_seconds', help: 'Build run time (start to finish, queue wait excluded), by outcome.', labelNames: ['outcome'] as const, buckets: buckets.build, registers: [this.registry] });
  readonly buildQueueWait = new Histogram({ name: 'slipway_build_queue_wait_seconds', help: 'Time a build waited in the queue before it started.', buckets: buckets.wait, registers: [this.registry] });

  readonly pipelineRuns = new Counter({ name: 'slipway_pipeline_runs_total', help: 'Pipeline runs finished, by outcome (succeeded, failed, cancelled).', labelNames: ['outcome'] as const, registers: [this.registry] });
  readonly pipelineStageDuration = new Histogram({ name: 'slipway_pipeline_stage_duration_seconds', help: 'Run time of pipeline stages, by stage type and outcome.', labelNames: ['type', 'outcome'] as const, buckets: buckets.build, registers: [this.registry] });
  readonly pipelineQueueWait = new Histogram({ name: 'slipway_pipeline_queue_wait_seconds', help: 'Time a pipeline run waited from its trigger to its first stage.', buckets: buckets.wait, registers: [this.registry] });

  readonly invocations = new Counter({ name: 'slipway_function_invocations_total', help: 'Function requests (gateway and invoke API), by namespace, function and status code.', labelNames: ['namespace', 'function', 'code'] as const, registers: [this.registry] });
  readonly invocationDuration = new Histogram({ name: 'slipway_function_invocation_duration_seconds', help: 'Function request duration (queueing for an instance included), by namespace and function.', labelNames: ['namespace', 'function'] as const, buckets: buckets.request, registers: [this.registry] });
  readonly coldStarts = new Counter({ name: 'slipway_function_cold_starts_total', help: 'Requests that waited for an instance to start, by namespace and function.', labelNames: ['namespace', 'function'] as const, registers: [this.registry] });
  readonly coldStartDuration = new Histogram({ name: 'slipway_function_cold_start_duration_seconds', help: 'Time to start an instance (container start and init).', buckets: buckets.start, registers: [this.registry] });
  readonly asyncAttempts = new Counter({ name: 'slipway_function_async_attempts_total', help: 'Attempts of asynchronous invocations, by outcome (succeeded, retried, failed).', labelNames: ['outcome'] as const, registers: [this.registry] });

  readonly webhookDeliveries = new Counter({ name: 'slipway_event_webhook_deliveries_total', help: 'Outgoing webhook delivery attempts, by outcome (delivered, retried, failed).', labelNames: ['outcome'] as const, registers: [this.registry] });

  constructor(options: { processMetrics?: boolean } = {}) {
    const sources = () => this.sources;
    new Gauge({
      name: 'slipway_registry_uploads_in_progress', help: 'Open blob upload sessions (all replicas: read from the database).', registers: [this.registry],
      async collect() { this.set(await sources().uploadsInProgress?.() ?? 0); },
    });
    new Gauge({
      name: 'slipway_job_queue_depth', help: 'Jobs in the durable queue by queue and status (queued, running).', labelNames: ['queue', 'status'] as const, registers: [this.registry],
      async collect() {
        this.reset();
        for (const row of await sources().jobQueueDepth?.() ?? []) this.set({ queue: row.queue, status: row.status }, row.count);
      },
    });
    new Gauge({
      name: 'slipway_function_instances', help: 'Function instances of this server by state (starting, ready, stopping).', labelNames: ['state'] as const, registers: [this.registry],
      collect() {
        this.reset();
        for (const state of ['starting', 'ready', 'stopping']) this.set({ state }, sources().functionInstances?.().instances[state] ?? 0);
      },
    });
    new Gauge({
      name: 'slipway_function_gateway_queue_depth', help: 'Requests of this server waiting for a free function instance.', registers: [this.registry],
      collect() { this.set(sources().functionInstances?.().queued ?? 0); },
    });
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'slipway_' });
  }

  /** Scrape-time readings; set once the parts they read exist. */
  setSources(sources: MetricSources): void {
    this.sources = { ...this.sources, ...sources };
  }

  // ---- the observers handed to the parts (plain callbacks, no prom-client types) ----

  gcFinished(report: { blobsDeleted: number; manifestsDeleted: number; bytesFreed: number; durationMs: number } | undefined): void {
    if (!report) {
      this.gcRuns.inc({ outcome: 'failed' });
      return;
    }
    this.gcRuns.inc({ outcome: 'ok' });
    this.gcDeletedBlobs.inc(report.blobsDeleted);
    this.gcDeletedManifests.inc(report.manifestsDeleted);
    this.gcFreedBytes.inc(report.bytesFreed);
    this.gcDuration.observe(report.durationMs / 1000);
  }

  buildFinished(outcome: BuildOutcome, runSeconds: number | undefined, waitSeconds: number | undefined): void {
    this.builds.inc({ outcome });
    if (runSeconds !== undefined) this.buildDuration.observe({ outcome }, runSeconds);
    if (waitSeconds !== undefined) this.buildQueueWait.observe(waitSeconds);
  }

  invoked(namespace: string, name: string, code: number, seconds: number, cold: boolean): void {
    const children = this.functionChildren(namespace, name);
    let counter = children.byCode.get(code);
    if (!counter) {
      counter = this.invocations.labels(namespace, name, String(code));
      children.byCode.set(code, counter);
    }
    counter.inc();
    children.duration.observe(seconds);
    if (cold) children.coldStarts.inc();
  }

  // The gateway calls invoked() on every request: label children are looked up once per function
  // (prom-client would hash a fresh label object each time). Only existing functions get here.
  private readonly byFunction = new Map<string, FunctionChildren>();
  private functionChildren(namespace: string, name: string): FunctionChildren {
    const key = `${namespace}/${name}`;
    let children = this.byFunction.get(key);
    if (!children) {
      children = {
        byCode: new Map(),
        duration: this.invocationDuration.labels(namespace, name),
        coldStarts: this.coldStarts.labels(namespace, name),
      };
      this.byFunction.set(key, children);
    }
    return children;
  }

  /** The functions part's observer (functions/invoker FunctionObserver). */
  functionObserver() {
    return {
      invoked: (namespace: string, name: string, code: number, seconds: number, cold: boolean) => this.invoked(namespace, name, code, seconds, cold),
      instanceStarted: (seconds: number) => this.coldStartDuration.observe(seconds),
      asyncAttempt: (outcome: 'succeeded' | 'retried' | 'failed') => this.asyncAttempts.inc({ outcome }),
    };
  }

  /** The pipelines part's observer (pipelines/runner PipelineObserver). */
  pipelineObserver() {
    return {
      runStarted: (waitSeconds: number) => this.pipelineQueueWait.observe(waitSeconds),
      runFinished: (outcome: string) => this.pipelineRuns.inc({ outcome }),
      stageFinished: (type: string, outcome: string, seconds: number) => this.pipelineStageDuration.observe({ type, outcome }, seconds),
    };
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
