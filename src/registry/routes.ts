/**
 * @module registry/routes
 * The OCI Distribution v1.1 HTTP surface under `/v2`, as one encapsulated Fastify plugin: its
 * own body handling (raw streams, no parsing), its own error envelope, and one route table in
 * which every route names the access scope it needs. Repository names contain slashes, so
 * paths are matched here with the spec's grammar rather than by the framework's router.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { formatScope, type AccessScope, type Authorizer } from '../auth/scope.js';
import type { BlobService } from './blob-service.js';
import { RegistryError } from './errors.js';
import { checkDigest, isDigest, isValidName, isValidTag, type DigestAlgorithm } from './grammar.js';
import type { ManifestService } from './manifest-service.js';
import type { PullThrough } from './pull-through.js';
import type { ChunkRange, UploadService } from './upload-service.js';
import { parseByteRange } from './byte-range.js';
import { isReaderBody, sendFromReader, type ReaderBody } from './send-blob.js';

// The dashboard's /api/v1 listing of repositories, mounted by http/server.ts beside the /v2 surface.
export { catalogRoutes, type CatalogRoutesOptions } from './catalog-routes.js';

export interface RegistryRoutesOptions {
  blobs: BlobService;
  uploads: UploadService;
  manifests: ManifestService;
  authorizer: Authorizer;
  maxManifestBytes: number;
  /** Namespace quotas on a cross-repository mount (registry/policy-service.ts); throws DENIED. */
  mountAdmission?: { admitMount(repository: string, digest: string): Promise<void> };
  /** Records manifest pulls for retention (registry/pull-times.ts). */
  pulls?: { record(repository: string, digest: string): void };
  /** Serves proxy namespaces from their upstream (registry/pull-through.ts); absent: none. */
  pullThrough?: PullThrough;
}

export { policyRoutes, type PolicyRoutesOptions } from './policy-routes.js';

type Query = Record<string, string | string[] | undefined>;

interface Route {
  methods: string[];
  pattern: RegExp;
  /** Scopes the caller needs; `match[1]` is the repository name where there is one. */
  scopes(match: RegExpExecArray, query: Query, method: string): AccessScope[];
  handle(match: RegExpExecArray, request: FastifyRequest, reply: FastifyReply): Promise<unknown>;
}

const maxPageSize = 10_000;
const drainLimitBytes = 64 * 1024 * 1024;
const drainTimeoutMs = 5_000;

/** Reads and discards the rest of a request body up to `limit` bytes and `timeoutMs`; true when it ended. */
async function drained(request: FastifyRequest, limit: number, timeoutMs: number): Promise<boolean> {
  const declared = Number(request.headers['content-length']);
  if (!Number.isFinite(declared) || declared > limit) return false;
  const body = request.raw;
  if (body.destroyed) return false;
  return new Promise<boolean>((resolve) => {
    let seen = 0;
    const done = (ok: boolean) => {
      clearTimeout(timer);
      body.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      resolve(ok);
    };
    const onData = (chunk: Buffer) => { seen += chunk.length; if (seen > limit) done(false); };
    const onEnd = () => done(true);
    const onError = () => done(false);
    const onClose = () => done(body.readableEnded);
    const timer = setTimeout(() => done(false), timeoutMs);
    body.on('data', onData).once('end', onEnd).once('error', onError).once('close', onClose);
    body.resume();
  });
}

export async function registryRoutes(app: FastifyInstance, options: RegistryRoutesOptions): Promise<void> {
  const { blobs, uploads, manifests, authorizer, pullThrough } = options;

  // Bodies are streamed by the handlers themselves: blobs straight to storage, manifests capped.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  // Set on every reply up front (not in onSend) so hijacked blob responses carry it too.
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('Docker-Distribution-API-Version', 'registry/2.0');
  });

  app.setErrorHandler(async (error, request, reply) => {
    let registryError = toRegistryError(error);
    if (registryError.status >= 500) {
      request.log.error({ err: error }, 'registry request failed');
      if (registryError.detail === undefined) registryError = new RegistryError(registryError.code, registryError.message, { requestId: request.id }, registryError.status).withHeaders(registryError.headers ?? {});
    }
    if (registryError.headers) reply.headers(registryError.headers);
    // An error before the body was read: a small rest is drained so the client, still sending,
    // reads the error (e.g. a 416 telling it where to resume) instead of a broken pipe; a large
    // or endless one is dropped with the connection.
    if (!request.raw.readableEnded && !(await drained(request, drainLimitBytes, drainTimeoutMs))) reply.header('Connection', 'close');
    return reply.code(registryError.status).type('application/json').send(registryError.toEnvelope());
  });

  const repo = (match: RegExpExecArray, actions: AccessScope['actions']): AccessScope[] => [{ type: 'repository', name: match[1]!, actions }];

  const routes: Route[] = [
    {
      methods: ['GET', 'HEAD'],
      pattern: /^_catalog$/,
      // Any caller may ask; each sees only the repositories it may pull.
      scopes: () => [],
      async handle(_match, request, reply) {
        const query = request.query as Query;
        const { limit, last } = pageParameters(query);
        if (limit === 0) return reply.send({ repositories: [] });
        const visible: string[] = [];
        let after = last;
        let more = false;
        scan: for (;;) {
          const page = await manifests.repositories(500, after);
          for (const [i, name] of page.items.entries()) {
            after = name;
            if (!(await authorizer.permits(request, { type: 'repository', name, actions: ['pull'] }))) continue;
            visible.push(name);
            if (limit !== undefined && visible.length === limit) {
              more = i < page.items.length - 1 || page.next !== undefined;
              break scan;
            }
          }
          if (page.next === undefined) break;
        }
        if (more) reply.header('Link', `</v2/_catalog?n=${limit}&last=${encodeURIComponent(visible.at(-1)!)}>; rel="next"`);
        return reply.send({ repositories: visible });
      },
    },
    {
      methods: ['GET', 'HEAD'],
      pattern: /^(.+)\/tags\/list$/,
      scopes: (m) => repo(m, ['pull']),
      async handle(match, request, reply) {
        const name = match[1]!;
        const { limit, last } = pageParameters(request.query as Query);
        if (limit === 0) {
          await manifests.tags(name, 0);
          return reply.send({ name, tags: [] });
        }
        const page = await manifests.tags(name, limit, last);
        if (page.next !== undefined) reply.header('Link', `</v2/${name}/tags/list?n=${limit}&last=${encodeURIComponent(page.next)}>; rel="next"`);
        return reply.send({ name, tags: page.items });
      },
    },
    {
      methods: ['GET', 'HEAD', 'PUT', 'DELETE'],
      pattern: /^(.+)\/manifests\/([^/]+)$/,
      scopes: (m, _q, method) => repo(m, method === 'PUT' ? ['push'] : method === 'DELETE' ? ['delete'] : ['pull']),
      async handle(match, request, reply) {
        const name = match[1]!;
        const reference = match[2]!;
        // Only a PUT stores the name and a DELETE names what to remove, so only they refuse a
        // malformed one (400); GET/HEAD of it is a manifest that is not there (404).
        if (request.method === 'PUT' || request.method === 'DELETE') checkReference(reference);
        if (request.method === 'PUT') {
          const body = await readCapped(request.raw, options.maxManifestBytes, request.headers['content-length']);
          const stored = await manifests.put(name, reference, body, request.headers['content-type']);
          reply.header('Location', `/v2/${name}/manifests/${stored.digest}`).header('Docker-Content-Digest', stored.digest);
          if (stored.subject) reply.header('OCI-Subject', stored.subject);
          return reply.code(201).send();
        }
        if (request.method === 'DELETE') {
          await manifests.delete(name, reference);
          return reply.code(202).send();
        }
        const info = (await pullThrough?.manifest(name, reference)) ?? await manifests.info(name, reference);
        const etag = `"${info.digest}"`;
        reply.header('Docker-Content-Digest', info.digest).header('ETag', etag).type(info.mediaType);
        if (request.headers['if-none-match'] === etag) return reply.code(304).send();
        if (request.method === 'HEAD') return reply.header('Content-Length', info.size).send();
        options.pulls?.record(name, info.digest);
        return reply.send(await manifests.content(name, info.digest));
      },
    },
    {
      methods: ['POST'],
      pattern: /^(.+)\/blobs\/uploads\/?$/,
      // A mount's source is checked in the handler: without pull there, it falls back to an upload.
      scopes: (m) => repo(m, ['pull', 'push']),
      async handle(match, request, reply) {
        const name = match[1]!;
        const query = request.query as Query;
        const mount = single(query.mount);
        const from = single(query.from);
        if (mount !== undefined) {
          const check = checkDigest(mount);
          if (!check.ok) throw new RegistryError('DIGEST_INVALID', `invalid digest ${mount}`, { digest: mount });
          const mayRead = from && isValidName(from) && (await authorizer.permits(request, { type: 'repository', name: from, actions: ['pull'] }));
          if (mayRead) await options.mountAdmission?.admitMount(name, mount);
          if (mayRead && (await blobs.mount(name, from, mount))) {
            return reply.code(201).header('Location', `/v2/${name}/blobs/${mount}`).header('Docker-Content-Digest', mount).send();
          }
          // Cannot mount: fall through to an ordinary upload session (202), as the spec allows.
        }
        const digest = single(query.digest);
        if (digest !== undefined) {
          const stored = await uploads.monolithic(name, digest, request.raw, contentLength(request));
          return reply.code(201).header('Location', `/v2/${name}/blobs/${stored}`).header('Docker-Content-Digest', stored).send();
        }
        const algorithm = digestAlgorithm(single(query['digest-algorithm']));
        drain(request.raw);
        const id = await uploads.start(name, algorithm);
        return sendUploadState(reply.code(202), name, id, 0);
      },
    },
    {
      methods: ['GET', 'PATCH', 'PUT', 'DELETE'],
      pattern: /^(.+)\/blobs\/uploads\/([^/]+)$/,
      scopes: (m, _q, method) => repo(m, method === 'GET' ? ['pull'] : ['pull', 'push']),
      async handle(match, request, reply) {
        const name = match[1]!;
        const id = match[2]!;
        switch (request.method) {
          case 'GET': {
            const size = await uploads.status(name, id);
            return sendUploadState(reply.code(204), name, id, size);
          }
          case 'PATCH': {
            const size = await uploads.append(name, id, request.raw, contentRange(request), contentLength(request));
            return sendUploadState(reply.code(202), name, id, size);
          }
          case 'PUT': {
            const digest = single((request.query as Query).digest);
            const stored = await uploads.complete(name, id, digest, request.raw, contentRange(request), contentLength(request));
            return reply.code(201).header('Location', `/v2/${name}/blobs/${stored}`).header('Docker-Content-Digest', stored).send();
          }
          default: {
            await uploads.cancel(name, id);
            return reply.code(204).send();
          }
        }
      },
    },
    {
      methods: ['GET', 'HEAD', 'DELETE'],
      pattern: /^(.+)\/blobs\/([^/]+)$/,
      scopes: (m, _q, method) => repo(m, method === 'DELETE' ? ['delete'] : ['pull']),
      async handle(match, request, reply) {
        const name = match[1]!;
        const digest = match[2]!;
        if (!checkDigest(digest).ok) throw new RegistryError('DIGEST_INVALID', `invalid digest ${digest}`, { digest });
        if (request.method === 'DELETE') {
          await blobs.delete(name, digest);
          return reply.code(202).send();
        }
        reply.header('Docker-Content-Digest', digest).header('ETag', `"${digest}"`).header('Accept-Ranges', 'bytes').type('application/octet-stream');
        const fetched = await pullThrough?.blob(name, digest, request.method);
        if (fetched) {
          if (fetched.size !== undefined) reply.header('Content-Length', fetched.size);
          return reply.send(fetched.body);
        }
        if (request.method === 'HEAD') {
          const found = await blobs.stat(name, digest);
          if (!found) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest });
          return reply.header('Content-Length', found.size).send();
        }
        // storage.s3.redirect: the client fetches the bytes from the object store (its Range too).
        const location = await blobs.redirectUrl(name, digest);
        if (location) return reply.code(307).header('Location', location).removeHeader('Content-Type').send();
        const rangeHeader = request.headers.range;
        if (rangeHeader === undefined) {
          const { size, body } = await blobs.open(name, digest);
          return send(request, reply.header('Content-Length', size), body);
        }
        const found = await blobs.stat(name, digest);
        if (!found) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest });
        const range = parseByteRange(rangeHeader, found.size);
        if (range === 'unsatisfiable') {
          return reply.code(416).header('Content-Range', `bytes */${found.size}`).type('application/json')
            .send(new RegistryError('RANGE_INVALID', `range ${rangeHeader} is not satisfiable for ${found.size} bytes`).toEnvelope());
        }
        if (range === 'ignore') {
          const { size, body } = await blobs.open(name, digest);
          return send(request, reply.header('Content-Length', size), body);
        }
        const { body } = await blobs.open(name, digest, range);
        return send(request, reply.code(206).header('Content-Range', `bytes ${range.start}-${range.end}/${found.size}`)
          .header('Content-Length', range.end - range.start + 1), body);
      },
    },
    {
      methods: ['GET'],
      pattern: /^(.+)\/referrers\/([^/]+)$/,
      scopes: (m) => repo(m, ['pull']),
      async handle(match, request, reply) {
        const digest = match[2]!;
        if (!checkDigest(digest).ok) throw new RegistryError('DIGEST_INVALID', `invalid digest ${digest}`, { digest });
        const artifactType = single((request.query as Query).artifactType);
        const { index, filtered } = await manifests.referrers(match[1]!, digest, artifactType);
        if (filtered) reply.header('OCI-Filters-Applied', 'artifactType');
        return reply.type('application/vnd.oci.image.index.v1+json').send(Buffer.from(JSON.stringify(index)));
      },
    },
  ];

  app.route({
    method: ['GET', 'HEAD'],
    url: '/v2/',
    exposeHeadRoute: false,
    handler: async (request, reply) => {
      await authorizer.authorize(request, []);
      return reply.type('application/json').send('{}');
    },
  });

  app.route({
    method: ['GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE'],
    url: '/v2/*',
    exposeHeadRoute: false,
    handler: async (request, reply) => {
      const path = (request.params as { '*': string })['*'];
      for (const route of routes) {
        const match = route.pattern.exec(path);
        if (!match) continue;
        if (pullThrough && match[1] !== undefined && isValidName(match[1]) && (request.method === 'GET' || request.method === 'HEAD')) {
          match[1] = (await pullThrough.mirrorName(match[1], single((request.query as Query).ns))) ?? match[1];
        }
        if (match[1] !== undefined && !isValidName(match[1])) throw new RegistryError('NAME_INVALID', `invalid repository name ${match[1]}`, { name: match[1] });
        if (!route.methods.includes(request.method)) throw new RegistryError('UNSUPPORTED', `${request.method} is not supported on this endpoint`);
        const scopes = route.scopes(match, request.query as Query, request.method);
        request.log.debug({ scopes: scopes.map(formatScope) }, 'authorize');
        await authorizer.authorize(request, scopes);
        if (pullThrough && match[1] !== undefined && ['PUT', 'POST', 'PATCH'].includes(request.method)) await pullThrough.refuseWrite(match[1]);
        return route.handle(match, request, reply);
      }
      throw new RegistryError('NAME_UNKNOWN', `no registry endpoint at /v2/${path}`);
    },
  });
}

function sendUploadState(reply: FastifyReply, name: string, id: string, size: number): FastifyReply {
  return reply
    .header('Location', `/v2/${name}/blobs/uploads/${id}`)
    .header('Range', `0-${Math.max(size - 1, 0)}`)
    .header('Docker-Upload-UUID', id)
    .header('Content-Length', 0)
    .send();
}

function checkReference(reference: string): void {
  if (isDigest(reference)) {
    const check = checkDigest(reference);
    if (!check.ok) throw new RegistryError('DIGEST_INVALID', `invalid digest ${reference}`, { digest: reference });
  } else if (!isValidTag(reference)) {
    throw new RegistryError('TAG_INVALID', `invalid tag ${reference}`, { tag: reference });
  }
}

function pageParameters(query: Query): { limit?: number; last?: string } {
  const n = single(query.n);
  const last = single(query.last);
  if (n === undefined) return { last };
  if (!/^\d+$/.test(n)) throw new RegistryError('PAGINATION_NUMBER_INVALID', `n must be a non-negative integer, not ${n}`);
  return { limit: Math.min(Number(n), maxPageSize), last };
}

function digestAlgorithm(value: string | undefined): DigestAlgorithm {
  if (value === undefined || value === 'sha256') return 'sha256';
  if (value === 'sha512') return 'sha512';
  throw new RegistryError('DIGEST_INVALID', `unsupported digest algorithm ${value}`);
}

function contentRange(request: FastifyRequest): ChunkRange | undefined {
  const header = request.headers['content-range'];
  if (header === undefined) return undefined;
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!match) throw new RegistryError('RANGE_INVALID', `invalid Content-Range ${header}`);
  return { start: Number(match[1]), end: Number(match[2]) };
}

function contentLength(request: FastifyRequest): number | undefined {
  const header = request.headers['content-length'];
  return header === undefined ? undefined : Number(header);
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function drain(stream: Readable): void {
  if (!stream.readableEnded) stream.resume();
}

async function readCapped(stream: Readable, limit: number, declared: string | undefined): Promise<Buffer> {
  const tooLarge = () => new RegistryError('MANIFEST_INVALID', `manifest exceeds the ${limit}-byte limit`, undefined, 413);
  if (declared !== undefined && Number(declared) > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += (chunk as Buffer).length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function toRegistryError(error: unknown): RegistryError {
  if (error instanceof RegistryError) return error;
  const fastifyError = error as { code?: string; statusCode?: number; message?: string };
  if (fastifyError.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new RegistryError('SIZE_INVALID', fastifyError.message, undefined, 413);
  if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    return new RegistryError('UNSUPPORTED', fastifyError.message, undefined, fastifyError.statusCode);
  }
  // Client went away mid-body (Node's "aborted" carries ECONNRESET): nothing to report to it,
  // but not a server fault either.
  if ((error as NodeJS.ErrnoException).code === 'ECONNRESET') {
    return new RegistryError('BLOB_UPLOAD_INVALID', 'request body was cut short');
  }
  return new RegistryError('UNKNOWN');
}

/** Sends a blob body: buffers and streams through Fastify, positional readers through reused buffers. */
async function send(request: FastifyRequest, reply: FastifyReply, body: Readable | Buffer | ReaderBody): Promise<unknown> {
  if (!isReaderBody(body)) return reply.send(body);
  await sendFromReader(request, reply, body);
  return reply;
}
