/**
 * @module http/server
 * Builds the Fastify server from already-constructed services: health endpoints, the `/v2`
 * registry plugin and the `/api` plugin, each encapsulated with its own error shape.
 */
import http from 'node:http';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Authorizer } from '../auth/scope.js';
import type { Database } from '../db/db.js';
import { catalogRoutes, policyRoutes, registryRoutes, type PolicyRoutesOptions, type RegistryRoutesOptions } from '../registry/routes.js';
import { authRoutes, type AuthRoutesOptions } from '../auth/routes.js';
import { credentialRoutes, type CredentialRoutesOptions } from '../credentials/routes.js';
import { secretRoutes, type SecretRoutesOptions } from '../vault/routes.js';
import { buildRoutes, type BuildRoutesOptions } from '../builds/routes.js';
import { functionRoutes, gatewayFastPath, type FunctionRoutesOptions } from '../functions/routes.js';
import { pipelineRoutes, type PipelineRoutesOptions } from '../pipelines/routes.js';
import { artifactRoutes, type ArtifactRoutesOptions } from '../artifacts/routes.js';
import { eventRoutes, type EventRoutesOptions } from '../events/routes.js';
import { metricsRoutes, type MetricsRoutesOptions } from '../metrics/routes.js';
import { apiErrorHandler } from './error-handler.js';
import { requestIdHeader, requestIdOf } from './request-id.js';
import { ApiError } from './errors.js';
import { defaultWebRoot, mountWebApp, type AppShell } from './web-app.js';
import { apiOperations } from './api-operations.js';
import { registerOpenApi } from './openapi.js';

export interface ServerDependencies {
  logger: FastifyBaseLogger;
  logRequests: boolean;
  db: Database;
  authorizer: Authorizer;
  registry: Omit<RegistryRoutesOptions, 'authorizer'>;
  /** Immutable tags, quotas and retention of namespaces; needs auth. */
  registryPolicies?: PolicyRoutesOptions;
  /** Token endpoint and access-control API; absent when auth is off. */
  auth?: AuthRoutesOptions;
  /** External registry credentials API; needs auth. */
  credentials?: CredentialRoutesOptions;
  /** Named secrets of namespaces (vault); needs auth. */
  secrets?: SecretRoutesOptions;
  /** The artifact-storage API (builds of images and components). */
  builds?: BuildRoutesOptions;
  /** Functions: the resource API and the gateway. */
  functions?: FunctionRoutesOptions;
  /** Pipelines, runs and their push webhooks. */
  pipelines?: PipelineRoutesOptions;
  /** Artefact versions and automation rules. */
  artifacts?: ArtifactRoutesOptions;
  /** Outgoing webhooks, the event list and its live stream. */
  events?: EventRoutesOptions;
  /** GET /metrics and the request counters (Prometheus). */
  metrics?: MetricsRoutesOptions;
  /** The built dashboard (default: `web/dist` of the package). */
  webRoot?: string;
  /** Extra readiness checks (storage reachable, …). */
  readinessChecks?: Array<() => Promise<void>>;
}

const keepAliveTimeout = 65_000;

export async function buildServer(deps: ServerDependencies): Promise<FastifyInstance> {
  // The function gateway's requests it can decide from its caches skip Fastify's routing and
  // hooks (see gatewayFastPath); the rest, and everything while closing, go through Fastify.
  const fastPath = deps.functions
    ? gatewayFastPath({ functions: deps.functions.functions, guard: deps.functions.guard, logger: deps.logger, logRequests: deps.logRequests })
    : undefined;
  const app = Fastify({
    // Every answer carries X-Request-Id (set on the raw response first, so streamed, hijacked
    // and fast-path answers have it too); Fastify's request.id, and so every log line of the
    // request and the detail of 5xx answers, is the same id.
    genReqId: (req) => requestIdOf(req),
    serverFactory: (handler) => {
      const server: http.Server = http.createServer((req, res) => {
        res.setHeader(requestIdHeader, requestIdOf(req));
        if (!fastPath || !server.listening || !fastPath(req, res)) handler(req, res);
        else deps.metrics?.http.watch(req.method, res);
      });
      // What Fastify sets on a server it creates itself (the options below).
      server.keepAliveTimeout = keepAliveTimeout;
      server.requestTimeout = 0;
      server.setTimeout(0);
      return server;
    },
    loggerInstance: deps.logger,
    logController: new LogController({ disableRequestLogging: !deps.logRequests }),
    // Blob bodies are streamed to storage, never buffered; the limit only applies to JSON APIs.
    bodyLimit: 1024 * 1024,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    keepAliveTimeout,
    requestTimeout: 0,
    routerOptions: { maxParamLength: 1024 },
  });

  // While closing, answer in-flight requests with `Connection: close` so keep-alive clients
  // let go and close() can finish; idle sockets are closed by forceCloseConnections.
  app.addHook('onSend', async (_request, reply) => {
    if (!app.server.listening) reply.header('connection', 'close');
  });

  // The one handler of /api/… and the server's own endpoints; every part's plugin inherits it
  // (only /v2 and the artifact-storage routes render their own envelopes).
  app.setErrorHandler(apiErrorHandler);
  let appShell: AppShell | undefined;
  app.setNotFoundHandler(async (request, reply) => {
    const shell = appShell?.(request, reply);
    if (shell) return shell;
    const error = new ApiError('NOT_FOUND', `no route ${request.method} ${request.url}`);
    return reply.code(404).send(error.toJSON());
  });

  // Before any route: the document is collected from the routes as they are registered.
  await registerOpenApi(app, { operations: apiOperations });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    try {
      await deps.db.kysely.selectFrom('schema_migrations').select('version').limit(1).execute();
      for (const check of deps.readinessChecks ?? []) await check();
      return { status: 'ready' };
    } catch (error) {
      return reply.code(503).send(new ApiError('UNAVAILABLE', `not ready: ${(error as Error).message}`).toJSON());
    }
  });

  // First, so its request hook (registered on the root) sees every part's routes.
  if (deps.metrics) await app.register(metricsRoutes, deps.metrics);
  await app.register(registryRoutes, { ...deps.registry, authorizer: deps.authorizer });
  if (deps.auth) await app.register(authRoutes, deps.auth);
  if (deps.registryPolicies) await app.register(policyRoutes, deps.registryPolicies);
  // The dashboard's registry listing (same guard as the other parts' API routes).
  await app.register(catalogRoutes, { db: deps.db, manifests: deps.registry.manifests, guard: deps.pipelines?.guard });
  if (deps.credentials) await app.register(credentialRoutes, deps.credentials);
  if (deps.secrets) await app.register(secretRoutes, deps.secrets);
  if (deps.builds) await app.register(buildRoutes, deps.builds);
  if (deps.functions) await app.register(functionRoutes, deps.functions);
  if (deps.pipelines) await app.register(pipelineRoutes, deps.pipelines);
  if (deps.artifacts) await app.register(artifactRoutes, deps.artifacts);
  if (deps.events) await app.register(eventRoutes, deps.events);
  appShell = await mountWebApp(app, deps.webRoot ?? defaultWebRoot());
  return app;
}
