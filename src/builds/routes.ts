/**
 * @module builds/routes
 * The artifact-storage API under `/api/v1/namespaces/{ns}`: `images` (build from a Dockerfile
 * and an uploaded context; look up the newest), `components` (build from a git repository's
 * build spec; fetch as tar.gz or as a registry reference, building it first when missing),
 * and `builds` (list, get, cancel, logs — live as Server-Sent Events). Identity comes from the
 * caller's credentials; the optional `linux_username` and `github_username` headers are
 * recorded on the build. Responses carry `status`, and `errorMessage` on failure.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Principal } from '../auth/access.js';
import type { ApiGuard } from '../auth/api-guard.js';
import { artifactStorageErrorHandler } from '../http/error-handler.js';
import { ApiError } from '../http/errors.js';
import { parseBody, parseQuery } from '../http/validation.js';
import type { BlobService } from '../registry/blob-service.js';
import { buildSettingsBody, componentBody, componentQuery, imageForm, latestImageQuery, listBuildsQuery } from './api.js';
import { maxDockerfileBytes } from './context-store.js';
import { extractTarball } from './context-tarball.js';
import { BuildInputError, type BuildService, type BuildView, type Requester } from './service.js';

export interface BuildRoutesOptions {
  builds: BuildService;
  blobs: BlobService;
  /** Absent when access control is off: every caller may build in any namespace. */
  guard?: ApiGuard;
  maxContextBytes: number;
}

const uploadedDockerfile = '.slipway.Dockerfile';

/**
 * The build list's filter from its query (listBuildsQuery of api.ts): a bad value is a 400
 * naming the parameter. New filters go into the schema and here.
 */
export function buildListFilter(request: FastifyRequest): Parameters<BuildService['list']>[1] {
  const { kind, component, status, limit, repository, source } = parseQuery(listBuildsQuery, request);
  return { kind, component, status, limit, repository: repository || undefined, source };
}

export async function buildRoutes(app: FastifyInstance, options: BuildRoutesOptions): Promise<void> {
  const { builds, blobs, guard } = options;
  await app.register(multipart, { limits: { fileSize: options.maxContextBytes, files: 2, fields: 20, fieldSize: 64 * 1024 } });

  // The seed's answer shape: `{status: "error", errorMessage}` beside `{code, message, detail}`.
  app.setErrorHandler(async (error, request, reply) => {
    const tooLarge = (error as { code?: unknown }).code === 'FST_REQ_FILE_TOO_LARGE' ? new ApiError('PAYLOAD_TOO_LARGE', `upload larger than ${options.maxContextBytes} bytes`) : undefined;
    return artifactStorageErrorHandler(tooLarge ?? error, request, reply);
  });

  /** The caller, checked for at least `least` in the namespace (auth off: anonymous, allowed). */
  const caller = async (request: FastifyRequest, least: 'reader' | 'contributor'): Promise<Requester> => {
    const { ns } = request.params as { ns: string };
    let principal: Principal | null = null;
    if (guard) {
      principal = await guard.authenticate(request);
      await guard.requireRole(principal, ns, least);
    }
    const header = (name: string) => {
      const value = request.headers[name];
      return typeof value === 'string' && value.length <= 128 ? value : undefined;
    };
    return { principal, linuxUsername: header('linux_username') ?? header('linux-username'), githubUsername: header('github_username') ?? header('github-username') };
  };
  const ns = (request: FastifyRequest) => (request.params as { ns: string }).ns;
  const wantsWait = (request: FastifyRequest) => ['true', '1', 'yes'].includes(String((request.query as Record<string, unknown>).wait ?? ''));
  const finish = async (request: FastifyRequest, reply: FastifyReply, build: BuildView) => {
    if (!wantsWait(request)) return reply.code(202).send(build);
    const aborted = new AbortController();
    request.raw.once('close', () => aborted.abort());
    const done = await builds.waitFor(ns(request), build.id, aborted.signal);
    return reply.code(done.status === 'succeeded' ? 200 : done.status === 'failed' ? 422 : 200).send(done);
  };

  app.post('/api/v1/namespaces/:ns/images', async (request, reply) => {
    const requester = await caller(request, 'contributor');
    if (!request.isMultipart()) throw new BuildInputError('send multipart/form-data with the file "dockerfile", optionally the file "context" (tar.gz) and the fields component, branch, architecture, tag, buildArgs');
    const id = builds.newBuildId();
    const contextDir = builds.contextDir(id);
    await mkdir(contextDir, { recursive: true });
    let currentFile: NodeJS.ReadableStream | undefined;
    let submitted = false;
    try {
      const fields: Record<string, string> = {};
      let dockerfile: Buffer | undefined;
      for await (const part of request.parts()) {
        if (part.type === 'file') {
          currentFile = part.file;
          if (part.fieldname === 'dockerfile') {
            const chunks: Buffer[] = [];
            let size = 0;
            for await (const chunk of part.file) {
              size += (chunk as Buffer).length;
              if (size > maxDockerfileBytes) throw new BuildInputError(`dockerfile: larger than ${maxDockerfileBytes} bytes`);
              chunks.push(chunk as Buffer);
            }
            dockerfile = Buffer.concat(chunks);
          } else if (part.fieldname === 'context') {
            await extractTarball(part.file, contextDir, { maxBytes: options.maxContextBytes });
            if (part.file.truncated) throw new ApiError('PAYLOAD_TOO_LARGE', `context: larger than ${options.maxContextBytes} bytes`);
          } else {
            part.file.resume();
            throw new BuildInputError(`unexpected file "${part.fieldname}"; send "dockerfile" and optionally "context"`);
          }
        } else {
          fields[part.fieldname] = String(part.value);
        }
      }
      const input = imageForm.safeParse(fields);
      if (!input.success) throw new BuildInputError(input.error.issues.map((i) => `${i.path.join('.') || 'form'}: ${i.message}`).join('; '));
      const { gitUrl, gitRef, gitCommit, secrets, ...rest } = input.data;
      if (!gitUrl && !dockerfile) throw new BuildInputError('dockerfile: the file is required (or gitUrl, to build the repository\'s Dockerfile)');
      if (gitUrl && (await readdir(contextDir)).length > 0) throw new BuildInputError('send either a context upload or gitUrl, not both');
      if (gitUrl && dockerfile) await writeFile(`${contextDir}.dockerfile`, dockerfile);
      // Under a name of its own, so the context's own Dockerfile cannot shadow the uploaded one.
      else if (dockerfile) await writeFile(path.join(contextDir, uploadedDockerfile), dockerfile);
      const build = await builds.submitImage(ns(request), id, {
        ...rest, buildArgs: parseBuildArgs(rest.buildArgs), dockerfile: dockerfile ? uploadedDockerfile : 'Dockerfile',
        git: gitUrl ? { url: gitUrl, ref: gitRef, commit: gitCommit } : undefined,
        secrets: secrets ? secrets.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
      }, requester);
      // Queued: its inputs now belong to the build (removed when it ends), whatever happens to this request.
      submitted = true;
      return finish(request, reply, build);
    } catch (error) {
      // The rest of the upload is not wanted: let it drain and close the connection after the
      // answer, so the request ends (an unread body would keep it, and shutdown, waiting).
      currentFile?.resume();
      reply.header('Connection', 'close');
      if (!submitted) await builds.discardContext(id);
      throw error;
    }
  });

  app.get('/api/v1/namespaces/:ns/images', async (request, reply) => {
    await caller(request, 'reader');
    const query = latestImageQuery.safeParse(request.query);
    if (!query.success) throw new BuildInputError(`query: component, branch and architecture are required`);
    if (!builds.architectures().includes(query.data.architecture)) throw new BuildInputError(`unknown architecture "${query.data.architecture}"; allowed: ${builds.architectures().join(', ')}`);
    const found = await builds.latest(ns(request), 'image', query.data);
    if (!found) return reply.code(404).send({ code: 'NOT_FOUND', status: 'not_found', errorMessage: `no image build of ${query.data.component} (${query.data.branch}, ${query.data.architecture})` });
    return reply.code(found.status === 'failed' ? 422 : 200).send({ ...found, status: found.status });
  });

  app.post('/api/v1/namespaces/:ns/components', async (request, reply) => {
    const requester = await caller(request, 'contributor');
    const input = parseBody(componentBody, request);
    return finish(request, reply, await builds.submitComponent(ns(request), input, requester));
  });

  app.get('/api/v1/namespaces/:ns/components', async (request, reply) => {
    const requester = await caller(request, 'reader');
    const query = componentQuery.safeParse(request.query);
    if (!query.success) throw new BuildInputError('query: component, tag and architecture are required');
    const { component, tag, architecture, format } = query.data;
    if (!builds.architectures().includes(architecture)) throw new BuildInputError(`unknown architecture "${architecture}"; allowed: ${builds.architectures().join(', ')}`);
    let archive = await builds.componentArchive(ns(request), component, tag, architecture);
    if (!archive) {
      // Missing: build it (from ?url=, or the repository a previous build of the component used).
      const url = query.data.url ?? (await builds.latest(ns(request), 'component', { component, architecture }))?.source.url as string | undefined;
      if (!url) return reply.code(404).send({ code: 'NOT_FOUND', status: 'not_found', errorMessage: `component ${component} ${tag} (${architecture}) does not exist and no repository is known for it; pass ?url=` });
      if (guard && requester.principal) await guard.requireRole(requester.principal, ns(request), 'contributor');
      const build = await builds.submitComponent(ns(request), { url, component, tag, architecture }, requester);
      if (query.data.wait === 'false') return reply.code(202).send(build);
      const aborted = new AbortController();
      request.raw.once('close', () => aborted.abort());
      const done = await builds.waitFor(ns(request), build.id, aborted.signal);
      if (done.status !== 'succeeded') return reply.code(422).send(done);
      archive = await builds.componentArchive(ns(request), component, tag, architecture);
      if (!archive) throw new ApiError('INTERNAL', 'the component build succeeded but its artifact is missing');
    }
    if (format === 'ref') {
      const reference = `${archive.build.imageName}`;
      return { status: 'succeeded', reference, digest: archive.build.digest, pullCommand: `skopeo copy --src-tls-verify=false docker://${reference} dir:${component}`, build: archive.build.id };
    }
    const { body, size } = await blobs.open(archive.repository, archive.layer.digest);
    reply.header('Content-Type', 'application/gzip').header('Content-Length', size)
      .header('Content-Disposition', `attachment; filename="${component}-${tag}-${architecture.replaceAll('/', '-')}.tar.gz"`)
      .header('Docker-Content-Digest', archive.layer.digest);
    if (Buffer.isBuffer(body) || typeof (body as { pipe?: unknown }).pipe === 'function') return reply.send(body);
    // A positional reader: stream it through a Readable.
    const { reader, start, length } = body as { reader: { read(b: Buffer, l: number, p: number): Promise<number>; close(): Promise<void> }; start: number; length: number };
    const { Readable } = await import('node:stream');
    return reply.send(Readable.from((async function* () {
      try {
        for (let position = start; position < start + length;) {
          const buffer = Buffer.allocUnsafe(Math.min(1024 * 1024, start + length - position));
          const read = await reader.read(buffer, buffer.length, position);
          if (read === 0) break;
          position += read;
          yield buffer.subarray(0, read);
        }
      } finally {
        await reader.close();
      }
    })()));
  });

  app.put('/api/v1/namespaces/:ns/settings/builds', async (request) => {
    const requester = await caller(request, 'contributor');
    if (guard && requester.principal) await guard.requireRole(requester.principal, ns(request), 'owner');
    const input = parseBody(buildSettingsBody, request);
    await builds.setImageNameTemplate(ns(request), input.imageNameTemplate);
    return { namespace: ns(request), ...input };
  });

  app.get('/api/v1/namespaces/:ns/builds', async (request) => {
    await caller(request, 'reader');
    return builds.list(ns(request), buildListFilter(request));
  });

  app.get('/api/v1/namespaces/:ns/builds/:id', async (request) => {
    await caller(request, 'reader');
    return builds.get(ns(request), (request.params as { id: string }).id);
  });

  app.post('/api/v1/namespaces/:ns/builds/:id/cancel', async (request) => {
    const requester = await caller(request, 'contributor');
    return builds.cancel(ns(request), (request.params as { id: string }).id, requester.principal?.name);
  });

  app.get('/api/v1/namespaces/:ns/builds/:id/logs', async (request, reply) => {
    await caller(request, 'reader');
    const id = (request.params as { id: string }).id;
    await builds.get(ns(request), id);
    const follow = (request.headers.accept ?? '').includes('text/event-stream') || ['true', '1'].includes(String((request.query as Record<string, unknown>).follow ?? ''));
    if (!follow) return reply.type('text/plain; charset=utf-8').send(await builds.logText(id));
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    let closed = false;
    raw.once('close', () => { closed = true; });
    // A queued build has no log yet: wait for it to start (or end) rather than end the stream.
    for (let build = await builds.get(ns(request), id); build.status === 'queued' && !builds.isLogLive(id) && !closed;) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      build = await builds.get(ns(request), id);
    }
    const unsubscribe = await builds.followLog(id, {
      line: (text) => { if (!closed) raw.write(`data: ${text.replace(/\r?\n/g, ' ')}\n\n`); },
      end: () => {
        if (closed) return;
        closed = true;
        void builds.get(ns(request), id).then((build) => {
          raw.write(`event: end\ndata: ${JSON.stringify({ status: build.status, errorMessage: build.errorMessage, digest: build.digest })}\n\n`);
          raw.end();
        }, () => raw.end());
      },
    });
    const keepAlive = setInterval(() => { if (!closed) raw.write(': keep-alive\n\n'); }, 15_000);
    raw.once('close', () => {
      closed = true;
      clearInterval(keepAlive);
      unsubscribe();
    });
  });
}

/** `buildArgs` as a JSON object or as `KEY=VALUE` lines. */
export function parseBuildArgs(text: string | undefined): Record<string, string> {
  if (!text || !text.trim()) return {};
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new BuildInputError('buildArgs: not valid JSON');
    }
    const result = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).safeParse(parsed);
    if (!result.success) throw new BuildInputError('buildArgs: an object of NAME: "value" strings');
    return result.data;
  }
  const args: Record<string, string> = {};
  for (const line of trimmed.split(/\r?\n/)) {
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (!match) throw new BuildInputError(`buildArgs: "${line.trim().slice(0, 40)}" is not NAME=value`);
    args[match[1]!] = match[2]!;
  }
  return args;
}
