/**
 * @module main
 * The composition root: the one place that turns a validated config into open resources and
 * wired services. Nothing else constructs a database, a store or a service.
 */
import path from 'node:path';
import { access, mkdir } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { AccessService } from './auth/access.js';
import { AuditLog } from './auth/audit.js';
import { Credentials } from './auth/credentials.js';
import { FailureLimiter } from './auth/rate-limit.js';
import { RegistryAuthorizer } from './auth/registry-authorizer.js';
import type { AuthRoutesOptions } from './auth/routes.js';
import { TokenService } from './auth/tokens.js';
import { ApiGuard } from './auth/api-guard.js';
import type { CredentialRoutesOptions } from './credentials/routes.js';
import { ExternalRegistries } from './credentials/service.js';
import { loadMasterKeys, Vault } from './vault/vault.js';
import { allowAll, type Authorizer } from './auth/scope.js';
import type { Config } from './config/config.js';
import { parseListen } from './config/config.js';
import { openDatabase, type Database } from './db/db.js';
import { buildServer } from './http/server.js';
import { BlobService } from './registry/blob-service.js';
import { collectGarbage, scheduleGarbageCollection, type GcReport } from './registry/gc.js';
import { fsck, type FsckReport } from './registry/fsck.js';
import { ManifestService } from './registry/manifest-service.js';
import { UploadService } from './registry/upload-service.js';
import type { BlobStore } from './storage/blob-store.js';
import { FsBlobStore } from './storage/fs-blob-store.js';

/**
 * Data folder layout (embedded defaults):
 *
 *   <dataDir>/
 *   ├── slipway.db        SQLite metadata (absent when `database` is a postgres:// URL)
 *   └── blobs/            the filesystem BlobStore (see storage/fs-blob-store.ts)
 */
export interface Registry {
  db: Database;
  store: BlobStore;
  blobs: BlobService;
  uploads: UploadService;
  manifests: ManifestService;
  gc(now?: number): Promise<GcReport>;
  fsck(): Promise<FsckReport>;
  close(): Promise<void>;
}

export interface RegistryOptions {
  logger?: Logger;
  /** Wraps the blob store once (metrics, fault injection in tests). */
  wrapStore?: (store: BlobStore) => BlobStore;
}

export async function openRegistry(config: Config, options: RegistryOptions = {}): Promise<Registry> {
  const { logger } = options;
  const db = await openDatabase({ url: config.database, dataDir: config.dataDir });
  const fsStore = new FsBlobStore(path.join(config.dataDir, 'blobs'));
  const store = options.wrapStore ? options.wrapStore(fsStore) : fsStore;
  const { deleteEnabled, maxManifestBytes, gc, uploadExpiry } = config.registry;
  const blobs = new BlobService({ db, store, gracePeriodMs: gc.gracePeriod, deleteEnabled });
  const uploads = new UploadService({ db, store, blobs, expiryMs: uploadExpiry });
  const manifests = new ManifestService({ db, deleteEnabled, maxManifestBytes });
  const gcOptions = { db, store, uploads, gracePeriodMs: gc.gracePeriod, logger };
  return {
    db, store, blobs, uploads, manifests,
    gc: (now) => collectGarbage(gcOptions, now),
    fsck: () => fsck(db, store),
    close: () => db.close(),
  };
}

export interface RunningServer {
  app: FastifyInstance;
  registry: Registry;
  /** Set on the first start when no admin password was configured: print it once. */
  generatedAdminPassword?: string;
  access?: AccessService;
  registries?: ExternalRegistries;
  /** `http://host:port` the server listens on. */
  url: string;
  close(): Promise<void>;
}

export interface StartOptions extends RegistryOptions {
  authorizer?: Authorizer;
}

interface AuthParts {
  authorizer: RegistryAuthorizer;
  access: AccessService;
  routes: AuthRoutesOptions;
  credentialRoutes: CredentialRoutesOptions;
  registries: ExternalRegistries;
  generatedAdminPassword?: string;
}

/** The vault: master key from env, file, or `<dataDir>/master.key` (created on first start). */
export async function openVault(config: Config, db: Database): Promise<Vault> {
  const keys = await loadMasterKeys({ env: config.vault.masterKey, file: config.vault.masterKeyFile, previous: config.vault.previousMasterKeys, dataDir: config.dataDir });
  return Vault.open(db, keys);
}

/** Access control: users, keys, namespaces, tokens; the first start creates the `admin` user. */
async function openAuth(config: Config, db: Database): Promise<AuthParts> {
  const access = new AccessService(db);
  const audit = new AuditLog(db);
  const credentials = new Credentials({ access, audit, limiter: new FailureLimiter() });
  const { service, realm, tokenTtl, refreshTokenTtl } = config.auth;
  const tokens = new TokenService({ dataDir: config.dataDir, issuer: 'slipway', service, ttlMs: tokenTtl, refreshTtlMs: refreshTokenTtl });
  await mkdir(config.dataDir, { recursive: true });
  await tokens.init();
  const bootstrap = await access.bootstrapAdmin(config.auth.adminPassword);
  if (bootstrap.created) await audit.record({ actor: null, action: 'principal.create', target: 'admin', outcome: 'ok', detail: { kind: 'user', admin: true, bootstrap: true } });
  const authorizer = new RegistryAuthorizer({ access, tokens, credentials, audit, service, realm });
  const guard = new ApiGuard(access, authorizer);
  const registries = new ExternalRegistries({ db, vault: await openVault(config, db), audit });
  return {
    authorizer, access, registries,
    routes: { access, credentials, tokens, audit, authorizer, service },
    credentialRoutes: { registries, guard },
    generatedAdminPassword: bootstrap.password,
  };
}

export function createLogger(config: Config): Logger {
  return pino({ level: config.log.level, base: { service: 'slipway' } });
}

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config);
  const registry = await openRegistry(config, { ...options, logger });
  const gcSchedule = config.registry.gc.interval > 0
    ? scheduleGarbageCollection({ db: registry.db, store: registry.store, uploads: registry.uploads, gracePeriodMs: config.registry.gc.gracePeriod, logger }, config.registry.gc.interval)
    : undefined;
  let app: FastifyInstance;
  let auth: AuthParts | undefined;
  try {
    auth = config.auth.enabled ? await openAuth(config, registry.db) : undefined;
    app = await buildServer({
      logger,
      logRequests: config.log.requests,
      db: registry.db,
      authorizer: options.authorizer ?? auth?.authorizer ?? allowAll,
      auth: auth?.routes,
      credentials: auth?.credentialRoutes,
      registry: { blobs: registry.blobs, uploads: registry.uploads, manifests: registry.manifests, maxManifestBytes: config.registry.maxManifestBytes },
      readinessChecks: [() => access(config.dataDir)],
    });
    const { host, port } = parseListen(config.listen);
    await app.listen({ host, port });
  } catch (error) {
    await gcSchedule?.stop();
    await registry.close();
    throw error;
  }
  const address = app.server.address();
  const url = typeof address === 'object' && address
    ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
    : String(address);
  let closing: Promise<void> | undefined;
  return {
    app,
    registry,
    url,
    generatedAdminPassword: auth?.generatedAdminPassword,
    access: auth?.access,
    registries: auth?.registries,
    close() {
      // Stop accepting, let in-flight requests finish, then release the db.
      closing ??= (async () => {
        await gcSchedule?.stop();
        await app.close();
        await registry.close();
      })();
      return closing;
    },
  };
}
