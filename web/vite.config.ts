/**
 * Vite build of the dashboard: `web/` → `web/dist`, served by the server at `/` (http/web-app.ts).
 * The shared typed client and operation lists come from `../src` (browser-safe files only).
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';

const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * auth/api.ts takes `roles` and `keyScopes` from auth/access.ts, which also hashes passwords
 * (node:crypto, a top-level await): the browser gets the two constants from a small copy.
 * TODO(lead): move them into a browser-safe module in src/auth and drop this plugin.
 */
function browserSafeAccess(): Plugin {
  return {
    name: 'slipway-browser-safe-access',
    enforce: 'pre',
    resolveId(source, importer) {
      if (source === './access.js' && importer && importer.replace(/\\/g, '/').endsWith('/src/auth/api.ts')) {
        return path.join(here, 'src/api/access-constants.ts');
      }
      return null;
    },
  };
}

export default defineConfig({
  root: here,
  base: '/',
  plugins: [browserSafeAccess(), react()],
  resolve: { alias: { '@shared': path.resolve(here, '../src') } },
  build: { outDir: path.join(here, 'dist'), emptyOutDir: true, chunkSizeWarningLimit: 600 },
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
});
