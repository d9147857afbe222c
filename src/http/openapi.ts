/**
 * @module http/openapi
 * The OpenAPI 3.1 document of `/api/v1` (`GET /api/v1/openapi.json`) and its interactive page
 * (`/api/docs`, served offline from @fastify/swagger-ui's own files). The document is generated
 * from the operation lists of the parts (`<part>/api.ts`): each registered `/api/v1` route gets
 * its operation's schemas as Fastify route `schema`, which @fastify/swagger turns into paths.
 *
 * Those schemas are documentation only: validation stays in the routes (zod, with the
 * messages they had), so this server's validator and serializer compilers do nothing.
 */
import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import { z } from 'zod';
import type { Access, Answer, Operation } from './api-contract.js';
import { errorCatalog, type ErrorSurface } from './error-catalog.js';

/** The codes an /api answer can carry (the catalog's api and artifact-storage surfaces). */
const apiCodes = Object.entries(errorCatalog)
  .filter(([, entry]) => (entry.surfaces as readonly ErrorSurface[]).some((surface) => surface === 'api' || surface === 'artifact-storage'))
  .map(([code]) => code);

type JsonSchema = Record<string, unknown>;

function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

/** The shared error shape (see http/errors.ts): every operation's 4XX/5XX answers. */
const errorSchema: JsonSchema = {
  $id: 'Error',
  type: 'object',
  description: 'Every API error: a code of the error catalog, a message, and sometimes detail.',
  properties: {
    code: { type: 'string', enum: apiCodes },
    message: { type: 'string' },
    detail: {},
  },
  required: ['code', 'message'],
};

const artifactStorageErrorSchema: JsonSchema = {
  $id: 'ArtifactStorageError',
  description: 'The artifact-storage API (images, components) adds `status` and `errorMessage` to the error shape.',
  allOf: [{ $ref: 'Error#' }, {
    type: 'object',
    properties: { status: { type: 'string' }, errorMessage: { type: 'string' } },
    required: ['status', 'errorMessage'],
  }],
};

const securitySchemes = {
  basic: { type: 'http', scheme: 'basic', description: 'A user name with its password, or with one of its API keys as the password.' },
  apiKey: { type: 'http', scheme: 'bearer', bearerFormat: 'slw_<id>.<secret>', description: 'An API key (`slipway login`, `POST /api/v1/keys`) as `Authorization: Bearer <key>`. Registry tokens of `/auth/token` are not accepted here.' },
} as const;

function security(access: Access): Array<Record<string, string[]>> {
  return access === 'public' ? [] : [{ basic: [] }, { apiKey: [] }];
}

function accessNote(access: Access): string {
  switch (access) {
    case 'public': return 'No credentials needed.';
    case 'signed-in': return 'Any signed-in user or service account.';
    case 'admin': return 'Server admins only.';
    case 'self-or-admin': return 'The user themself, or a server admin.';
    default: return `Needs at least the \`${access}\` role in the namespace (admins count as owners).`;
  }
}

function answerSchema(answer: Answer): JsonSchema {
  if (answer === null) return { type: 'null', description: 'No content' };
  if ('raw' in answer) return { description: answer.description ?? answer.raw, content: { [answer.raw]: { schema: {} } } };
  return jsonSchema(answer as z.ZodType, 'output');
}

function pathParams(path: string): JsonSchema | undefined {
  const names = [...path.matchAll(/:([A-Za-z_]\w*)/g)].map((m) => m[1]!);
  if (path.endsWith('*')) names.push('*');
  if (names.length === 0) return undefined;
  return { type: 'object', properties: Object.fromEntries(names.map((n) => [n, { type: 'string' }])), required: names };
}

/** The Fastify route `schema` of one operation (read by @fastify/swagger, compiled by no one). */
export function operationSchema(operationId: string, operation: Operation): FastifySchema & Record<string, unknown> {
  const error = operation.errorShape === 'artifact-storage' ? 'ArtifactStorageError#' : 'Error#';
  const response: Record<string, JsonSchema> = {};
  for (const [status, answer] of Object.entries(operation.answers)) response[status] = answerSchema(answer);
  response['4XX'] = { description: 'A client error (bad input, no or wrong credentials, missing role, not found, conflict)', $ref: error };
  response['5XX'] = { description: 'A server error', $ref: error };
  const schema: FastifySchema & Record<string, unknown> = {
    operationId,
    summary: operation.summary,
    description: [operation.description, `**Access:** ${accessNote(operation.access)}`].filter(Boolean).join('\n\n'),
    tags: [tagOf(operation.path)],
    security: security(operation.access),
    'x-access': operation.access,
    response,
  };
  const params = pathParams(operation.path);
  if (params) schema.params = params;
  if (operation.query) schema.querystring = jsonSchema(operation.query, 'input');
  if (operation.body) schema.body = jsonSchema(operation.body, 'input');
  else if (operation.rawBody) {
    schema.body = { description: operation.rawBody.description ?? operation.rawBody.raw };
    schema.consumes = [operation.rawBody.raw];
  }
  return schema;
}

/** The resource a path is about: `namespaces/:ns/functions/…` → `functions`. */
function tagOf(path: string): string {
  const parts = path.split('/').slice(3).filter((p) => p && !p.startsWith(':'));
  return parts[0] === 'namespaces' && parts.length > 1 ? parts[1]! : parts[0] ?? 'api';
}

const seenRoutes = new WeakMap<FastifyInstance, Array<{ method: string; url: string; documented: boolean }>>();

/** Every `/api/v1` route registered on `app` (HEAD routes aside), and whether it has an operation. */
export function apiRoutesOf(app: FastifyInstance): ReadonlyArray<{ method: string; url: string; documented: boolean }> {
  return seenRoutes.get(app) ?? [];
}

export interface OpenApiOptions {
  /** Every part's operations, by operation id. */
  operations: Record<string, Operation>;
  /** `info.version`; default Slipway's own (package.json). */
  version?: string;
}

/** The contract's generation, as in the `/api/v1` paths (`x-api-version` of the document). */
export const apiVersion = 'v1';

/**
 * Slipway's version from package.json (the nearest one above this module: dist/src/http in a
 * build). `info.version` is the version of the document, which changes with the product.
 */
export function productVersion(): string {
  for (let up = '../'; up.length <= 5 * 3; up += '../') {
    try {
      const pkg = JSON.parse(readFileSync(new URL(`${up}package.json`, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'slipway' && pkg.version) return pkg.version;
    } catch {
      // Not here: one folder up.
    }
  }
  return '0.0.0';
}

/**
 * Registers the document and the docs page on the root instance; call before the routes are
 * registered (both work from Fastify's onRoute hook).
 */
export async function registerOpenApi(app: FastifyInstance, options: OpenApiOptions): Promise<void> {
  const byRoute = new Map<string, { id: string; operation: Operation }>();
  for (const [id, operation] of Object.entries(options.operations)) byRoute.set(`${operation.method} ${operation.path}`, { id, operation });

  // Documentation only: request validation and reply serialization stay as without schemas.
  app.setValidatorCompiler(() => () => true);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.addSchema(errorSchema);
  app.addSchema(artifactStorageErrorSchema);

  const seen: Array<{ method: string; url: string; documented: boolean }> = [];
  seenRoutes.set(app, seen);
  app.addHook('onRoute', (route: RouteOptions) => {
    if (!route.url.startsWith('/api/v1/')) return;
    for (const method of [route.method].flat()) {
      if (method === 'HEAD') continue;
      const found = byRoute.get(`${method} ${route.url}`);
      seen.push({ method, url: route.url, documented: found !== undefined });
      if (found) route.schema = operationSchema(found.id, found.operation);
      else app.log.warn(`${method} ${route.url} has no operation in any <part>/api.ts: it is missing from the OpenAPI document`);
    }
  });

  // `x-api-version`: an extension the InfoObject type does not list (hence the variable).
  const info = {
    title: 'Slipway API',
    version: options.version ?? productVersion(),
    'x-api-version': apiVersion,
    description: 'The REST API of Slipway. Every error is `{code, message, detail?}` (components.schemas.Error) with the status of its code.',
  };
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info,
      components: { securitySchemes: securitySchemes as never },
    },
    // Components are named by the `$id` given to app.addSchema (`Error`), not `def-0`.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
    // Only the REST API: not /v2 (the OCI API), /fn (the gateway), /auth, health endpoints.
    transform: ({ schema, url }) => ({ schema: { ...(schema ?? {}), hide: !url.startsWith('/api/v1/') } as never, url }),
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs' });
  app.get('/api/v1/openapi.json', async () => app.swagger());
}
