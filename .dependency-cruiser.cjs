/**
 * Import boundaries of src/ (docs/architecture.md explains the matrix).
 * dependency-cruiser cannot parse TypeScript 7, so it cruises the compiled tree: run it on
 * dist/src after `tsc` (`npm run lint`; scripts/test.sh does so before the tests). Type-only
 * imports are erased by tsc and so are not checked.
 * Paths match both src/ and dist/src/ so fixtures in test/ can use either.
 */
const { builtinModules } = require('node:module');

const root = '^(dist/)?src/';

/** part → the parts it may import (besides itself). Leaves first, the composition root last. */
const allowed = {
  config: [],
  exec: [],
  logs: [],
  git: ['exec'],
  db: [],
  storage: ['config'],
  // http/errors.ts and http/validation.ts are the shared kit every part's routes use;
  // http/server.ts mounts every part's routes (the http part's own composition), see below.
  http: [],
  vault: ['http', 'config', 'db'],
  events: ['db', 'http', 'config'],
  auth: ['config', 'db', 'http', 'registry', 'vault'],
  // http: the API kit (errors, validation, api-contract) of the policy routes.
  registry: ['auth', 'storage', 'db', 'config', 'http'],
  credentials: ['http', 'config', 'db', 'vault'],
  builds: ['config', 'db', 'exec', 'git', 'logs', 'http', 'registry', 'credentials'],
  functions: ['config', 'db', 'exec', 'http', 'registry', 'events'],
  artifacts: ['config', 'db', 'http', 'registry', 'events'],
  pipelines: ['config', 'db', 'exec', 'git', 'logs', 'http', 'registry', 'builds', 'functions', 'events'],
  // prom-client lives here only; parts get plain observer callbacks from main.ts.
  metrics: ['db'],
  // The client: the config file format, the wire names it shares with the server, and
  // main.ts for `slipway serve`/admin commands that run the server in-process.
  // http/api-client.ts is the one typed client; any part's api.ts gives it the operations
  // (registry: the registry-policy operations).
  cli: ['config', 'auth', 'builds', 'vault', 'main', 'http', 'registry'],
};
const parts = [...Object.keys(allowed), 'main'];

const partRules = Object.entries(allowed).map(([part, may]) => ({
  name: `part-${part}`,
  comment: `${part} may import only: ${may.join(', ') || '(no other part)'}`,
  severity: 'error',
  from: { path: `${root}${part}/`, pathNot: part === 'http' ? `${root}http/(server|api-operations)\\.[jt]s$` : undefined },
  // http/error-catalog.ts (the one error model, importing nothing) is shared by every part.
  to: {
    pathNot: part === 'cli' ? `${root}(http/error-catalog|[^/]+/api)\\.[jt]s$` : `${root}http/error-catalog\\.[jt]s$`,
    path: `${root}(${parts.filter((p) => p !== part && !may.includes(p)).map((p) => (p === 'main' ? 'main\\.[jt]s$' : `${p}/`)).join('|')})`,
  },
}));

/**
 * Every part's api.ts runs in the browser too (the dashboard bundles the operation lists, and
 * the CLI takes them): what it reaches may not be a node builtin, an npm package other than the
 * browser-safe ones below, or a server module (a part's store, service or routes; db, exec, git,
 * logs, storage, metrics; the http server kit; builds' entry, which re-exports buildah code).
 */
const browserSafePackages = ['zod', 'picomatch'];
const serverOnly = [
  `^(node:)?(${builtinModules.filter((m) => !m.startsWith('_')).join('|')})(/|$)`,
  `node_modules/(?!(${browserSafePackages.join('|')})/)`,
  `${root}(db|exec|git|logs|storage|metrics)/`,
  `${root}main\\.[jt]s$`,
  `${root}http/(?!(api-contract|api-client|error-catalog)\\.[jt]s$)`,
  `${root}[^/]+/(routes|service|store|[^/]*-routes|[^/]*-service|[^/]*-store)\\.[jt]s$`,
  `${root}builds/index\\.[jt]s$`,
];

module.exports = {
  forbidden: [
    {
      name: 'api-browser-safe',
      comment: 'a part\'s api.ts (and all it imports) must load in a browser: no node builtin, no server module, npm only ' + browserSafePackages.join(', '),
      severity: 'error',
      from: { path: `${root}[^/]+/api\\.[jt]s$` },
      to: { reachable: true, path: serverOnly },
    },
    { name: 'no-circular', severity: 'error', comment: 'no import cycles in src', from: { path: root }, to: { circular: true } },
    {
      name: 'http-server-mounts-routes-only',
      comment: 'http/server.ts may import other parts only for their routes, http/api-operations.ts only for their operation lists (api.ts)',
      severity: 'error',
      from: { path: `${root}http/(server|api-operations)\\.[jt]s$` },
      to: { path: `${root}(?!http/)[^/]+/`, pathNot: `${root}[^/]+/(routes|api)\\.[jt]s$` },
    },
    {
      name: 'builds-through-its-entry',
      comment: 'other parts use builds through src/builds/index.ts (or its operation list, builds/api.ts); main.ts and http/server.ts wire its service, driver map and routes, and the cli runs buildah itself for local builds',
      severity: 'error',
      from: { path: root, pathNot: `${root}(builds/|main\\.[jt]s$|http/server\\.[jt]s$|cli/)` },
      to: { path: `${root}builds/`, pathNot: `${root}builds/(index|api)\\.[jt]s$` },
    },
    ...partRules,
  ],
  options: {
    // npm packages are leaves (not followed) but kept, so api-browser-safe sees them.
    doNotFollow: { path: 'node_modules' },
    moduleSystems: ['es6'],
  },
};
