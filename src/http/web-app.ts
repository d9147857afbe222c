/**
 * @module http/web-app
 * Serves the dashboard (the Vite build in `web/dist`) at `/`: its files as they are, and
 * `index.html` for any other GET outside the API surfaces, so client-side routes load the app.
 * Without a build the server still runs API-only and `/` says how to build the dashboard.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fastifyStatic from '@fastify/static';

/** Paths the app shell never answers: their own 404s stay as they are. */
const apiSurfaces = ['/v2', '/api/', '/fn/', '/auth/', '/metrics', '/healthz', '/readyz'];

/** `web/dist` beside the package (this file runs from `dist/src/http` or `src/http`). */
export function defaultWebRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.resolve(here, '../../../web/dist'), path.resolve(here, '../../web/dist')];
  return candidates.find((dir) => existsSync(path.join(dir, 'index.html'))) ?? candidates[0]!;
}

export type AppShell = (request: FastifyRequest, reply: FastifyReply) => FastifyReply | undefined;

/** Mounts the built dashboard; returns the not-found fallback that serves the app shell. */
export async function mountWebApp(app: FastifyInstance, root: string): Promise<AppShell> {
  if (!existsSync(path.join(root, 'index.html'))) {
    app.get('/', async (_request, reply) => reply.type('text/plain; charset=utf-8')
      .send('Slipway is running (API only). The dashboard is not built: run `npm run build` (or `npx vite build --config web/vite.config.ts`) and restart.\n'));
    return () => undefined;
  }
  // wildcard: false registers one route per built file; hashed assets may be cached for good.
  await app.register(fastifyStatic, {
    root, prefix: '/', wildcard: false, index: ['index.html'],
    setHeaders: (reply, file) => { if (file.includes(`${path.sep}assets${path.sep}`)) reply.header('cache-control', 'public, max-age=31536000, immutable'); },
  });
  return (request, reply) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return undefined;
    const url = request.url.split('?')[0]!;
    if (apiSurfaces.some((prefix) => url === prefix.replace(/\/$/, '') || url.startsWith(prefix))) return undefined;
    return reply.header('cache-control', 'no-cache').sendFile('index.html');
  };
}
