/**
 * @module functions/routes
 * The function API under `/api/v1/namespaces/{ns}/functions` (resource, revisions, rollback,
 * invocations sync and async, logs, metrics, keys) and the HTTP gateway `ANY /fn/{ns}/{name}/*`.
 *
 * Bodies of the gateway and of invocations are not parsed by Fastify: the gateway streams the
 * caller's request to the instance as it arrives, invocations read it with their own limit.
 * Who may invoke: anyone for a public function; otherwise a key of the function
 * (`Authorization: Bearer slwfn_…`) or a contributor of the namespace.
 */
import type http from 'node:http';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/access.js';
import type { ApiGuard } from '../auth/api-guard.js';
import { ApiError, SlipwayError, toApiError } from '../http/errors.js';
import { parseBody, parseQuery } from '../http/validation.js';
import { requestIdOf } from '../http/request-id.js';
import type { FunctionService, InvokeResult } from './service.js';
import { functionInputSchema, functionPatchSchema } from './spec.js';
import { digestQuery, functionKeyBody, functionLogsQuery, rollbackBody } from './api.js';

export interface FunctionRoutesOptions {
  functions: FunctionService;
  /** Absent when access control is off. */
  guard?: ApiGuard;
}

function sendRaw(res: http.ServerResponse, error: SlipwayError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(error.toJSON());
  res.writeHead(error.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Reads a body up to `limit` bytes; PAYLOAD_TOO_LARGE beyond (by Content-Length or by count). */
async function readBody(request: FastifyRequest, limit: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length'] ?? NaN);
  if (declared > limit) throw new ApiError('PAYLOAD_TOO_LARGE', `request body over ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request.raw as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new ApiError('PAYLOAD_TOO_LARGE', `request body over ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * `/fn/{ns}/{name}[/{rest}][?query]` split into the function and the path to request on the
 * instance (`/{rest}[?query]`, as the caller sent it: not decoded); undefined for a URL of
 * another shape. `ns` and `name` are as sent too (still percent-encoded, if they were).
 */
export function gatewayUrl(url: string): { ns: string; name: string; path: string } | undefined {
  if (!url.startsWith('/fn/')) return undefined;
  const length = url.length;
  let nsEnd = 4;
  while (nsEnd < length && url.charCodeAt(nsEnd) !== 47 /* / */ && url.charCodeAt(nsEnd) !== 63 /* ? */) nsEnd++;
  if (nsEnd === 4 || nsEnd === length || url.charCodeAt(nsEnd) !== 47) return undefined;
  let nameEnd = nsEnd + 1;
  while (nameEnd < length && url.charCodeAt(nameEnd) !== 47 && url.charCodeAt(nameEnd) !== 63) nameEnd++;
  if (nameEnd === nsEnd + 1) return undefined;
  const path = nameEnd === length ? '/' : url.charCodeAt(nameEnd) === 63 ? `/${url.slice(nameEnd)}` : url.slice(nameEnd);
  return { ns: url.slice(4, nsEnd), name: url.slice(nsEnd + 1, nameEnd), path };
}

/** Runs one gateway request whose access was checked; failures before the answer become the API's JSON errors. */
async function serveGateway(functions: FunctionService, req: http.IncomingMessage, res: http.ServerResponse, ns: string, name: string, path: string,
  log: (error: unknown) => void): Promise<void> {
  try {
    await functions.invoke(ns, name, { req, res, method: req.method ?? 'GET', path });
  } catch (error) {
    const apiError = toApiError(error);
    if (apiError.status === 500) log(error);
    req.resume();
    sendRaw(res, apiError);
  }
}

export interface GatewayFastPathOptions {
  functions: FunctionService;
  /** Absent when access control is off. */
  guard?: ApiGuard;
  logger: Pick<FastifyBaseLogger, 'info' | 'error'>;
  /** One log line per request, as Fastify's request logging would. */
  logRequests: boolean;
}

/**
 * The gateway in front of Fastify's router, for the requests it can decide at once: an HTTP
 * function whose facts are cached (`FunctionService.described`) that is public, or called with
 * one of its keys verified moments ago. Returns false for everything else (other URLs, an
 * unknown or uncached function, event functions, callers who need the namespace check, keys not
 * in the cache); the Fastify route then does the full checks, answers errors and fills the
 * caches. Both paths forward the same way (`serveGateway`).
 */
export function gatewayFastPath(options: GatewayFastPathOptions): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  const { functions, guard, logger, logRequests } = options;
  return (req, res) => {
    const url = req.url;
    if (url === undefined || !url.startsWith('/fn/')) return false;
    const parts = gatewayUrl(url);
    // Percent-encoded names are decoded by Fastify's router: left to it.
    if (parts === undefined || parts.ns.includes('%') || parts.name.includes('%')) return false;
    const facts = functions.described(parts.ns, parts.name);
    if (facts === undefined || facts.type !== 'http') return false;
    if (guard && facts.access !== 'public' && functions.checkedKey(facts.id, req.headers.authorization) !== true) return false;
    // The same id Fastify would give it (http/request-id), in every line of this request.
    const reqId = requestIdOf(req);
    if (logRequests) {
      const started = performance.now();
      res.once('close', () => logger.info({ reqId, req: { method: req.method, url }, res: { statusCode: res.statusCode }, responseTime: performance.now() - started }, 'request completed'));
    }
    const logError = (error: unknown) => logger.error({ err: error, reqId }, 'gateway request failed');
    void serveGateway(functions, req, res, parts.ns, parts.name, parts.path, logError);
    return true;
  };
}

export async function functionRoutes(app: FastifyInstance, options: FunctionRoutesOptions): Promise<void> {
  const { functions, guard } = options;

  const params = (request: FastifyRequest) => request.params as { ns: string; name: string; id?: string };
  // Followed logs never end by themselves: a closing server ends them, so close() can finish.
  const followers = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...followers]) end();
  });

  /** The caller with at least `least` in the namespace; null when access control is off. */
  const member = async (request: FastifyRequest, least: 'reader' | 'contributor'): Promise<Principal | null> => {
    if (!guard) return null;
    const principal = await guard.authenticate(request);
    await guard.requireRole(principal, params(request).ns, least);
    return principal;
  };

  /** May this request invoke the function? Throws 401/403/404 otherwise. */
  const mayInvoke = async (request: FastifyRequest, id: string, access: 'private' | 'public'): Promise<void> => {
    if (!guard || access === 'public') return;
    if (await functions.checkKey(id, request.headers.authorization)) return;
    await member(request, 'contributor');
  };

  // ---- the resource ----

  app.post('/api/v1/namespaces/:ns/functions', async (request, reply) => {
    const principal = await member(request, 'contributor');
    const input = parseBody(functionInputSchema, request);
    const imageNs = functions.imageNamespace(input.image);
    if (guard && principal && imageNs && imageNs !== params(request).ns) await guard.requireRole(principal, imageNs, 'reader');
    let view = await functions.create(params(request).ns, input, principal?.name ?? null);
    if (wantsWait(request)) view = await waitFor(request, view.name);
    return reply.code(view.status === 'failed' ? 422 : 201).send(view);
  });

  app.get('/api/v1/namespaces/:ns/functions', async (request) => {
    await member(request, 'reader');
    return { functions: await functions.list(params(request).ns) };
  });

  app.get('/api/v1/namespaces/:ns/functions/:name', async (request) => {
    await member(request, 'reader');
    return functions.get(params(request).ns, params(request).name);
  });

  app.patch('/api/v1/namespaces/:ns/functions/:name', async (request, reply) => {
    const principal = await member(request, 'contributor');
    const patch = parseBody(functionPatchSchema, request);
    const imageNs = patch.image ? functions.imageNamespace(patch.image) : null;
    if (guard && principal && imageNs && imageNs !== params(request).ns) await guard.requireRole(principal, imageNs, 'reader');
    let view = await functions.update(params(request).ns, params(request).name, patch);
    if (wantsWait(request)) view = await waitFor(request, view.name);
    return reply.code(200).send(view);
  });

  app.delete('/api/v1/namespaces/:ns/functions/:name', async (request, reply) => {
    await member(request, 'contributor');
    await functions.remove(params(request).ns, params(request).name);
    return reply.code(204).send();
  });

  app.get('/api/v1/namespaces/:ns/functions/:name/revisions', async (request) => {
    await member(request, 'reader');
    return { revisions: await functions.revisions(params(request).ns, params(request).name) };
  });

  app.get('/api/v1/namespaces/:ns/function-revisions', async (request) => {
    await member(request, 'reader');
    const query = digestQuery.safeParse(request.query);
    if (!query.success) throw new ApiError('BAD_REQUEST', `digest: ${query.error.issues[0]?.message ?? 'required'}`);
    const { digest } = query.data;
    return { revisions: await functions.revisionsWithDigest(params(request).ns, digest) };
  });

  app.post('/api/v1/namespaces/:ns/functions/:name/rollback', async (request) => {
    await member(request, 'contributor');
    const { revision } = parseBody(rollbackBody, request);
    return functions.rollback(params(request).ns, params(request).name, revision, true);
  });

  app.get('/api/v1/namespaces/:ns/functions/:name/metrics', async (request) => {
    await member(request, 'reader');
    await functions.get(params(request).ns, params(request).name);
    return functions.metrics(params(request).ns, params(request).name);
  });

  app.get('/api/v1/namespaces/:ns/functions/:name/instances', async (request) => {
    await member(request, 'reader');
    await functions.get(params(request).ns, params(request).name);
    return { instances: functions.instances(params(request).ns, params(request).name) };
  });

  // ---- keys ----

  app.post('/api/v1/namespaces/:ns/functions/:name/keys', async (request, reply) => {
    await member(request, 'contributor');
    const { name } = parseBody(functionKeyBody, request);
    return reply.code(201).send(await functions.createKey(params(request).ns, params(request).name, name));
  });
  app.get('/api/v1/namespaces/:ns/functions/:name/keys', async (request) => {
    await member(request, 'contributor');
    return { keys: await functions.listKeys(params(request).ns, params(request).name) };
  });
  app.delete('/api/v1/namespaces/:ns/functions/:name/keys/:id', async (request, reply) => {
    await member(request, 'contributor');
    await functions.deleteKey(params(request).ns, params(request).name, params(request).id!);
    return reply.code(204).send();
  });

  // ---- logs: NDJSON, kept open with ?follow=true ----

  app.get('/api/v1/namespaces/:ns/functions/:name/logs', async (request, reply) => {
    await member(request, 'reader');
    const query = parseQuery(functionLogsQuery, request);
    const tail = query.tail ?? 1000;
    const { ns, name } = params(request);
    const lines = await functions.logsOf(ns, name, tail);
    const follow = ['true', '1', 'yes'].includes(query.follow ?? '');
    if (!follow) {
      return reply.type('application/x-ndjson').send(lines.map((l) => JSON.stringify(l) + '\n').join(''));
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
    for (const line of lines) res.write(JSON.stringify(line) + '\n');
    const stop = functions.followLogs(ns, name, (line) => res.write(JSON.stringify(line) + '\n'));
    const keepAlive = setInterval(() => res.write('\n'), 15_000);
    const end = () => {
      followers.delete(end);
      clearInterval(keepAlive);
      stop();
      if (!res.writableEnded) res.end();
    };
    followers.add(end);
    request.raw.once('close', end);
    res.once('close', end);
  });

  // ---- invocations (event functions) and the HTTP gateway: bodies unparsed ----

  await app.register(async (raw) => {
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

    raw.post('/api/v1/namespaces/:ns/functions/:name/invocations', async (request, reply) => {
      const { ns, name } = params(request);
      const fn = await functions.describe(ns, name);
      await mayInvoke(request, fn.id, fn.access);
      if (fn.type !== 'event') throw new ApiError('BAD_REQUEST', `"${name}" is an HTTP function: call it at /fn/${ns}/${name}/`);
      const mode = (request.query as { mode?: string }).mode ?? 'sync';
      if (mode !== 'sync' && mode !== 'async') throw new ApiError('BAD_REQUEST', 'mode is sync or async');
      const contentType = request.headers['content-type'] ?? 'application/json';
      if (mode === 'async') {
        const body = await readBody(request, functions.maxAsyncBodyBytes);
        const invocation = await functions.recordInvocation(ns, name, { body, contentType });
        const view = await functions.get(ns, name);
        await functions.enqueueInvocation(invocation.id, view.timeoutSeconds * 1000);
        return reply.code(202).header('location', `/api/v1/namespaces/${ns}/functions/${name}/invocations/${invocation.id}`).send(invocation);
      }
      const body = await readBody(request, functions.maxBodyBytes);
      const result = await functions.invoke(ns, name, { method: 'POST', path: '/invoke', body, headers: { 'content-type': contentType } }) as InvokeResult;
      reply.code(result.statusCode).header('x-slipway-revision', String(result.revision));
      for (const [k, v] of Object.entries(result.headers)) reply.header(k, v);
      return reply.send(result.body);
    });

    raw.get('/api/v1/namespaces/:ns/functions/:name/invocations/:id', async (request) => {
      await member(request, 'reader');
      const { ns, name, id } = params(request);
      return functions.invocation(ns, name, id!);
    });

    const gateway = async (request: FastifyRequest, reply: FastifyReply) => {
      const { ns, name } = params(request);
      // The path as sent (the router's `*` is decoded, which would change what the instance gets).
      const path = gatewayUrl(request.url)?.path ?? '/';
      let fn;
      try {
        fn = await functions.describe(ns, name);
        await mayInvoke(request, fn.id, fn.access);
        if (fn.type !== 'http') throw new ApiError('NOT_FOUND', `"${name}" is an event function: POST /api/v1/namespaces/${ns}/functions/${name}/invocations`);
      } catch (error) {
        const apiError = toApiError(error);
        return reply.code(apiError.status).send(apiError.toJSON());
      }
      reply.hijack();
      await serveGateway(functions, request.raw, reply.raw, ns, name, path, (error) => request.log.error({ err: error }, 'gateway request failed'));
    };
    raw.all('/fn/:ns/:name', gateway);
    raw.all('/fn/:ns/:name/*', gateway);
  });

  function wantsWait(request: FastifyRequest): boolean {
    return ['true', '1', 'yes'].includes(String((request.query as Record<string, unknown>).wait ?? ''));
  }

  async function waitFor(request: FastifyRequest, name: string) {
    const aborted = new AbortController();
    request.raw.once('close', () => aborted.abort());
    return functions.waitForDeploy(params(request).ns, name, aborted.signal);
  }
}
