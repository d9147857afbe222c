/**
 * Vite build of the dashboard: `web/` → `web/dist`, served by the server at `/` (http/web-app.ts).
 * The shared typed client and operation lists come from `../src`: every src/<part>/api.ts is
 * browser-safe (the api-browser-safe rule of .dependency-cruiser.cjs), so no stubs are needed.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const here = path.dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: here,
  base: '/',
  plugins: [react()],
  resolve: { alias: { '@shared': path.resolve(here, '../src') } },
  build: { outDir: path.join(here, 'dist'), emptyOutDir: true, chunkSizeWarningLimit: 600 },
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
});
