/**
 * @module functions/invoker
 * Runs requests on a function's active revision: a request leases an instance from the
 * revision's pool and goes through the InstanceProxy. HTTP functions are streamed both ways;
 * event functions get `POST /invoke` with the FunctionGraph context headers and may answer with
 * the gateway envelope, which is decoded here. Request metrics are recorded per function.
 */
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { FunctionFailedError, FunctionInputError, FunctionNotFoundError, FunctionTimeoutError } from './errors.js';
import type { Live, LiveFunctions } from './live.js';
import { PoolUnavailableError, QueueTimeoutError } from './pool.js';
import type { ForwardResult, InstanceProxy } from './proxy.js';
import type { FunctionMetrics, FunctionView, StoredConfig } from './spec.js';

export interface InvokeRequest {
  /** For HTTP functions: the caller's request streamed through (with `res`). */
  req?: http.IncomingMessage;
  res?: http.ServerResponse;
  method: string;
  path: string;
  body?: Buffer;
  headers?: Record<string, string>;
  invokeType?: 'sync' | 'async';
  requestId?: string;
  /** Set on the one retry after an instance refused the connection. */
  retried?: boolean;
}

export interface InvokeResult {
  statusCode: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
  revision: number;
}

/** Optional callbacks for metrics (wired in main.ts); they must be cheap, they run per request. */
export interface FunctionObserver {
  /** One request finished: the status sent (504 timeout, 503 no instance, 499 client left). */
  invoked?(namespace: string, name: string, code: number, seconds: number, cold: boolean): void;
  /** An instance passed its start checks, `seconds` after its start began. */
  instanceStarted?(seconds: number): void;
  /** One attempt of an asynchronous invocation ended. */
  asyncAttempt?(outcome: 'succeeded' | 'retried' | 'failed'): void;
}

export interface InvokerDeps {
  observer?: FunctionObserver;
  live: LiveFunctions;
  proxy: InstanceProxy;
  /** The function's view, for the reason a function without a ready revision gives. */
  view(namespace: string, name: string): Promise<FunctionView>;
  maxBodyBytes: number;
}

export class Invoker {
  constructor(private readonly deps: InvokerDeps) {}

  private get maxBodyBytes() { return this.deps.maxBodyBytes; }

  /**
   * Runs one request on the active revision. HTTP functions (with `req`/`res`) are streamed
   * and answered by the proxy; event functions get `POST /invoke` and the answer is returned.
   */
  async invoke(namespace: string, name: string, request: InvokeRequest): Promise<InvokeResult | ForwardResult> {
    const started = performance.now();
    const live = this.deps.live.get(namespace, name);
    if (!live || live.deleted) throw new FunctionNotFoundError(`no function "${name}" in "${namespace}"`);
    const waitMs = (live.active?.config.timeoutSeconds ?? 30) * 1000;
    const deadline = Date.now() + waitMs;
    let active = live.active;
    if (!active) {
      // Created moments ago: wait for its first deploy (bounded by the request's deadline).
      await Promise.race([live.firstDeploy ?? live.chain, new Promise((r) => setTimeout(r, waitMs).unref())]);
      active = live.active as Live['active'];
      if (!active) {
        const view = await this.deps.view(namespace, name).catch(() => null);
        if (view?.status === 'deploying') throw new FunctionTimeoutError(`the function was still deploying after ${waitMs / 1000} s`);
        throw new FunctionFailedError(view?.statusReason ?? 'the function has no ready revision');
      }
    }
    let lease;
    try {
      lease = await active.pool.acquire(deadline);
    } catch (error) {
      const ms = performance.now() - started;
      live.metrics.record(ms, error instanceof QueueTimeoutError ? 'timeout' : 'error', false);
      this.deps.observer?.invoked?.(namespace, name, error instanceof QueueTimeoutError ? 504 : 503, ms / 1000, false);
      if (error instanceof QueueTimeoutError) throw new FunctionTimeoutError(`the function did not answer within ${active.config.timeoutSeconds} s (no instance became free)`);
      if (error instanceof PoolUnavailableError && error.kind === 'failing') throw new FunctionFailedError(`the function is failing: ${error.message}`);
      if (error instanceof PoolUnavailableError) return this.invoke(namespace, name, request); // revision switched meanwhile
      throw error;
    }
    let result: ForwardResult;
    try {
      const headers = active.config.type === 'event' || request.body ? this.contextHeaders(live, active.number, active.config, deadline, request) : request.headers;
      result = await this.deps.proxy.forward(request.req ?? null, request.res ?? null, lease.instance.endpoint, {
        path: request.path, method: request.method, timeoutMs: Math.max(1, deadline - Date.now()),
        maxBodyBytes: this.maxBodyBytes, extraHeaders: headers, body: request.body, collect: !request.res, maxResponseBytes: this.maxBodyBytes,
      });
    } finally {
      lease.release();
    }
    if (result.outcome === 'upstream-error' && result.status === 502) {
      active.pool.markBroken(lease.instance);
      this.deps.proxy.forget(lease.instance.endpoint);
      // Nothing reached the instance (refused): a buffered request is safe to send elsewhere.
      if (!request.res && /ECONNREFUSED/.test(result.error ?? '') && !request.retried) return this.invoke(namespace, name, { ...request, retried: true });
    }
    const outcome = result.outcome === 'timeout' ? 'timeout' : result.outcome === 'ok' || result.outcome === 'client-aborted' || result.outcome === 'too-large' ? 'ok' : 'error';
    const ms = performance.now() - started;
    live.metrics.record(ms, outcome, lease.cold);
    this.deps.observer?.invoked?.(namespace, name, result.outcome === 'timeout' ? 504 : result.status, ms / 1000, lease.cold);
    if (request.res) return result;
    if (result.outcome === 'timeout') throw new FunctionTimeoutError(`the function did not answer within ${active.config.timeoutSeconds} s`);
    if (result.outcome === 'upstream-error') throw new FunctionFailedError(`the function failed: ${result.error ?? 'instance error'}`);
    if (result.outcome === 'too-large') throw new FunctionInputError(`the function's answer is over ${this.maxBodyBytes} bytes`);
    return decodeEnvelope(result.status, result.headers ?? {}, result.body ?? Buffer.alloc(0), active.number);
  }

  private contextHeaders(live: Live, number: number, config: StoredConfig, deadline: number, request: InvokeRequest): Record<string, string> {
    return {
      ...(request.headers ?? {}),
      'x-cff-request-id': request.requestId ?? randomUUID(),
      'x-cff-func-name': live.name,
      'x-cff-func-version': String(number),
      'x-cff-memory': String(config.memoryMB),
      'x-cff-timeout': String(config.timeoutSeconds),
      'x-cff-invoke-type': request.invokeType ?? 'sync',
      'x-cff-project-id': live.namespace,
      'x-cff-package': live.namespace,
      'x-cff-region': 'local',
      'x-slipway-deadline': new Date(deadline).toISOString(),
      'x-slipway-deadline-ms': String(deadline),
    };
  }

  instances(namespace: string, name: string): Array<{ id: string; revision: number; address: string; inFlight: number; served: number; idleMs: number }> {
    const live = this.deps.live.get(namespace, name);
    if (!live) throw new FunctionNotFoundError(`no function "${name}" in "${namespace}"`);
    return [...live.pools].flatMap(([revision, pool]) => pool.list().map((i) => ({ ...i, revision })));
  }

  metrics(namespace: string, name: string): FunctionMetrics {
    const live = this.deps.live.get(namespace, name);
    if (!live) throw new FunctionNotFoundError(`no function "${name}" in "${namespace}"`);
    const pool = live.active?.pool;
    return live.metrics.view({ inFlight: pool?.inFlight ?? 0, queued: pool?.pending ?? 0, instances: pool?.size ?? 0 });
  }
}

/** An answer in the gateway envelope becomes a real HTTP response; anything else passes as is. */
export function decodeEnvelope(status: number, headers: Record<string, string | string[]>, body: Buffer, revision: number): InvokeResult {
  const type = String(headers['content-type'] ?? '');
  if (status === 200 && (type.includes('json') || type === '') && body.length > 0 && body[0] === 0x7b) {
    try {
      const parsed = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      if (typeof parsed.statusCode === 'number' && Number.isInteger(parsed.statusCode) && parsed.statusCode >= 100 && parsed.statusCode <= 599 && 'body' in parsed) {
        const out: Record<string, string | string[]> = {};
        if (parsed.headers && typeof parsed.headers === 'object') {
          for (const [k, v] of Object.entries(parsed.headers as Record<string, unknown>)) {
            if (Array.isArray(v)) out[k.toLowerCase()] = v.map(String);
            else if (v !== undefined && v !== null) out[k.toLowerCase()] = String(v);
          }
        }
        const raw = parsed.body;
        const text = typeof raw === 'string' ? raw : raw === undefined || raw === null ? '' : JSON.stringify(raw);
        const bytes = parsed.isBase64Encoded === true ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8');
        return { statusCode: parsed.statusCode, headers: out, body: bytes, revision };
      }
    } catch {
      // Not JSON after all: passed through.
    }
  }
  const passed: Record<string, string | string[]> = {};
  for (const name of ['content-type', 'cache-control', 'set-cookie', 'location', 'etag', 'last-modified']) {
    const v = headers[name];
    if (v !== undefined) passed[name] = v;
  }
  return { statusCode: status, headers: passed, body, revision };
}
