/**
 * @module main
 * The composition root: the one place that turns a validated config into open resources and
 * wired services. Nothing else constructs a database, a store or a service.
 */
import path from 'node:path';
import { access, chmod, mkdir, stat } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { AccessService } from './auth/access.js';
import { AuditLog } from './auth/audit.js';
import { Credentials } from './auth/credentials.js';
import { FailureLimiter } from './auth/rate-limit.js';
import { VerifiedLogins } from './auth/verified-logins.js';
import { RegistryAuthorizer } from './auth/registry-authorizer.js';
import type { AuthRoutesOptions } from './auth/routes.js';
import { TokenService, dbTokenKeyStore } from './auth/tokens.js';
import { ApiGuard } from './auth/api-guard.js';
import type { CredentialRoutesOptions } from './credentials/routes.js';
import { ExternalRegistries } from './credentials/service.js';
import { loadMasterKeys, Vault } from './vault/vault.js';
import { NamespaceSecrets } from './vault/secrets.js';
import type { SecretRoutesOptions } from './vault/routes.js';
import { buildDrivers } from './builds/drivers.js';
import { FsLogStore, type LogStore } from './logs/log-store.js';
import { ChunkedLogStore } from './logs/chunked-log-store.js';
import { BuildService } from './builds/service.js';
import { createLocalContextStore, createSharedContextStore, type BuildContextStore } from './builds/context-store.js';
import { JobQueue } from './db/job-queue.js';
import { JobWorker } from './db/job-worker.js';
import { Lease } from './db/lease.js';
import { allowAll, type Authorizer } from './auth/scope.js';
import type { Config } from './config/config.js';
import { parseListen, pickDriver } from './config/config.js';
import { openDatabase, type Database } from './db/db.js';
import { buildServer } from './http/server.js';
import { BlobService } from './registry/blob-service.js';
import { collectGarbage, scheduleGarbageCollection, type GcReport } from './registry/gc.js';
import { fsck, type FsckReport } from './registry/fsck.js';
import { ManifestService } from './registry/manifest-service.js';
import { ProxySettingsStore } from './registry/proxy-settings.js';
import { ContentReader } from './registry/content-reader.js';
import { PullThrough, type UpstreamLogins } from './registry/pull-through.js';
import { UploadService } from './registry/upload-service.js';
import { RegistryPolicies } from './registry/policy-service.js';
import { PullTimes } from './registry/pull-times.js';
import { Retention, scheduleRetention } from './registry/retention.js';
import type { BlobStore } from './storage/blob-store.js';
import { FunctionService } from './functions/service.js';
import { FunctionLogs } from './functions/logs.js';
import { ObjectLogBackend } from './functions/log-chunks.js';
import { InstanceProxy } from './functions/proxy.js';
import { runtimes } from './functions/runtimes.js';
import { RuntimeUnavailableError, type RuntimeDriver } from './functions/runtime-driver.js';
import { storageDrivers } from './storage/drivers.js';
import { PipelineService } from './pipelines/service.js';
import { PipelineRunner } from './pipelines/runner.js';
import { StageExecutor, stepPaths } from './pipelines/executor.js';
import { MirrorPoller } from './pipelines/mirrors.js';
import { parseStageDuration } from './pipelines/spec.js';
import { ArtifactService } from './artifacts/service.js';
import { recordRegistryPushes } from './artifacts/registry-pushes.js';
import { EventBus } from './events/bus.js';
import { SlipwayMetrics } from './metrics/registry.js';
import { HttpMetrics } from './metrics/http-metrics.js';
import { dbReadings } from './metrics/db-readings.js';

/**
 * Data folder layout (embedded defaults):
 *
 *   <dataDir>/
 *   ├── slipway.db        SQLite metadata (absent when `database` is a postgres:// URL)
 *   └── blobs/            the `fs` BlobStore (see storage/fs-blob-store.ts; the whole tree: README)
 */
export interface Registry {
  db: Database;
  store: BlobStore;
  blobs: BlobService;
  uploads: UploadService;
  manifests: ManifestService;
  /** Immutable tags and quotas of namespaces; retention rules and their runs. */
  policies: RegistryPolicies;
  retention: Retention;
  pulls: PullTimes;
  /** Which namespaces are pull-through caches of an upstream registry. */
  proxies: ProxySettingsStore;
  /** Serves those namespaces from their upstream; auth's logins are attached by startServer. */
  pullThrough: PullThrough;
  /** In-process reads of manifests and blobs, through pull-through like a `/v2` GET. */
  reads: ContentReader;
  gc(now?: number): Promise<GcReport>;
  fsck(): Promise<FsckReport>;
  close(): Promise<void>;
}

export interface RegistryOptions {
  logger?: Logger;
  /** Wraps the blob store once (metrics, fault injection in tests). */
  wrapStore?: (store: BlobStore) => BlobStore;
  /** Counts upload bytes and GC runs (the server's metrics). */
  metrics?: SlipwayMetrics;
}

export async function openRegistry(config: Config, options: RegistryOptions = {}): Promise<Registry> {
  const { logger } = options;
  const db = await openDatabase({ url: config.database, dataDir: config.dataDir });
  const driverStore = pickDriver(storageDrivers, 'storage.driver', config.storage.driver)({ dataDir: config.dataDir, s3: config.storage.s3 });
  const store = options.wrapStore ? options.wrapStore(driverStore) : driverStore;
  const { deleteEnabled, maxManifestBytes, gc, uploadExpiry } = config.registry;
  const blobs = new BlobService({ db, store, gracePeriodMs: gc.gracePeriod, deleteEnabled });
  const policies = new RegistryPolicies(db);
  const pulls = new PullTimes(db);
  const retention = new Retention(db, policies, pulls);
  const proxies = new ProxySettingsStore(db);
  const uploads = new UploadService({ db, store, blobs, expiryMs: uploadExpiry, admission: policies, writeGuard: proxies, onBytesReceived: options.metrics && ((bytes) => options.metrics!.registryBytesReceived.inc(bytes)) });
  const manifests = new ManifestService({ db, deleteEnabled, maxManifestBytes, tagGuard: policies, writeGuard: proxies });
  const gcOptions = { db, store, uploads, gracePeriodMs: gc.gracePeriod, logger, onRun: options.metrics && ((report: GcReport | undefined) => options.metrics!.gcFinished(report)) };
  // One read path for /v2 and in-process readers (functions): pull-through namespaces fetch on first use.
  const pullThrough = new PullThrough({ db, store, settings: proxies, manifests, blobs, maxManifestBytes, logger });
  const reads = new ContentReader({ manifests, blobs, store, pullThrough });
  return {
    db, store, blobs, uploads, manifests, policies, retention, pulls, proxies, pullThrough, reads,
    gc: (now) => collectGarbage(gcOptions, now),
    fsck: () => fsck(db, store),
    close: async () => {
      await pulls.close().catch(() => undefined);
      await db.close();
      await driverStore.close?.();
    },
  };
}

export interface RunningServer {
  app: FastifyInstance;
  registry: Registry;
  /** Set on the first start when no admin password was configured: print it once. */
  generatedAdminPassword?: string;
  access?: AccessService;
  registries?: ExternalRegistries;
  builds?: BuildService;
  functions?: FunctionService;
  pipelines?: PipelineService;
  artefacts?: ArtifactService;
  events?: EventBus;
  /** `http://host:port` the server listens on. */
  url: string;
  close(): Promise<void>;
}

export interface StartOptions extends Omit<RegistryOptions, 'metrics'> {
  authorizer?: Authorizer;
}

interface AuthParts {
  authorizer: RegistryAuthorizer;
  access: AccessService;
  routes: AuthRoutesOptions;
  credentialRoutes: CredentialRoutesOptions;
  secretRoutes: SecretRoutesOptions;
  secrets: NamespaceSecrets;
  guard: ApiGuard;
  registries: ExternalRegistries;
  vault: Vault;
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
  const credentials = new Credentials({ access, audit, limiter: new FailureLimiter(), logins: new VerifiedLogins(config.auth.loginCacheTtl) });
  const { service, realm, tokenTtl, refreshTokenTtl } = config.auth;
  const vault = await openVault(config, db);
  // Signing keys in the db, sealed by the vault: every replica accepts every replica's tokens.
  const tokens = new TokenService({ store: dbTokenKeyStore(db, vault), dataDir: config.dataDir, issuer: 'slipway', service, ttlMs: tokenTtl, refreshTtlMs: refreshTokenTtl });
  await mkdir(config.dataDir, { recursive: true });
  await tokens.init();
  const bootstrap = await access.bootstrapAdmin(config.auth.adminPassword);
  if (bootstrap.created) await audit.record({ actor: null, action: 'principal.create', target: 'admin', outcome: 'ok', detail: { kind: 'user', admin: true, bootstrap: true } });
  const authorizer = new RegistryAuthorizer({ access, tokens, credentials, audit, service, realm });
  const guard = new ApiGuard(access, authorizer);
  const registries = new ExternalRegistries({ db, vault, audit });
  const secrets = new NamespaceSecrets(db, vault);
  return {
    authorizer, access, registries, vault,
    routes: { access, credentials, tokens, audit, authorizer, service },
    credentialRoutes: { registries, guard },
    secretRoutes: { secrets, guard, audit },
    secrets,
    guard,
    generatedAdminPassword: bootstrap.password,
  };
}

interface BuildParts {
  service: BuildService;
  worker: JobWorker<{ buildId: string }, { digest: string }>;
}

/** `logs.driver`: files in `<dataDir>/logs/<kind>`, or chunks in the blob storage every replica reads. */
function openLogStore(config: Config, registry: Registry, kind: 'builds' | 'pipelines'): LogStore {
  if (config.logs.driver === 'blobstore') return new ChunkedLogStore(logObjects(registry), kind);
  return new FsLogStore(path.join(config.dataDir, 'logs', kind));
}

function logObjects(registry: Registry) {
  const objects = registry.store.objects;
  if (!objects) throw new Error('logs.driver blobstore: the storage driver has no object area');
  return objects;
}

/** Uploaded build contexts: the local folder (storage fs, one server), or shared through the object storage every replica reads (s3). */
function openContextStore(config: Config, registry: Registry, workDir: string): BuildContextStore {
  const options = { workDir, maxContextBytes: config.builds.maxContextBytes };
  if (config.storage.driver !== 's3') return createLocalContextStore(options);
  const objects = registry.store.objects;
  if (!objects) throw new Error('storage.driver s3: the storage driver has no object area for build contexts');
  return createSharedContextStore(options, objects);
}

/** Builds: the durable queue (recovered first: nothing stays "running" after a crash), buildah, logs. */
/** The BuildDriver `builds.driver` selects, with its settings; builds and pipeline stages share it. */
function configuredBuildDriver(config: Config) {
  return pickDriver(buildDrivers, 'builds.driver', config.builds.driver)(config.builds.buildah, { dataDir: config.dataDir });
}

async function openBuilds(config: Config, registry: Registry, auth: AuthParts | undefined, registryHost: () => string, logger: Logger, metrics: SlipwayMetrics): Promise<BuildParts> {
  const jobs = new JobQueue(registry.db);
  const recovered = await jobs.recover();
  if (recovered.requeued + recovered.failed > 0) logger.warn(recovered, 'jobs interrupted by the last stop');
  const workDir = path.join(config.dataDir, 'builds');
  await mkdir(path.join(workDir, 'tmp'), { recursive: true });
  const service = new BuildService({
    db: registry.db, queue: jobs, driver: configuredBuildDriver(config),
    logs: openLogStore(config, registry, 'builds'),
    registry: { uploads: registry.uploads, manifests: registry.manifests, reads: registry.reads },
    config: config.builds, workDir, registryHost, access: auth?.access, registries: auth?.registries, secrets: auth?.secrets,
    contexts: openContextStore(config, registry, workDir),
    onBuildFinished: (outcome, runSeconds, waitSeconds) => metrics.buildFinished(outcome, runSeconds, waitSeconds),
  });
  await service.reconcile();
  const worker = new JobWorker<{ buildId: string }, { digest: string }>(jobs, {
    queue: 'builds', concurrency: config.builds.concurrency,
    handler: (job, signal) => service.run(job.payload, signal),
    onError: (error) => logger.warn({ err: error }, 'build worker'),
  });
  return { service, worker };
}

interface FunctionParts {
  service: FunctionService;
  proxy: InstanceProxy;
  worker: JobWorker<{ invocationId: string }, void>;
}

/** Functions: the runtime driver (off with a warning when the host lacks it), the service, the async invocation worker. */
async function openFunctions(config: Config, registry: Registry, auth: AuthParts | undefined, registryHost: () => string, logger: Logger, metrics: SlipwayMetrics): Promise<FunctionParts | undefined> {
  if (!config.functions.enabled) return undefined;
  let driver: RuntimeDriver;
  try {
    driver = await pickDriver(runtimes, 'functions.runtime', config.functions.runtime)({ dataDir: config.dataDir, addressPool: config.functions.addressPool });
  } catch (error) {
    if (!(error instanceof RuntimeUnavailableError)) throw error;
    logger.warn(`functions are off: ${error.message}`);
    return undefined;
  }
  const proxy = new InstanceProxy();
  const vault = auth?.vault ?? await openVault(config, registry.db);
  const queue = new JobQueue(registry.db);
  const service = new FunctionService({
    db: registry.db,
    registry: { manifests: registry.manifests, blobs: registry.blobs, store: registry.store, reads: registry.reads },
    registryHost, insecureRegistries: config.builds.insecureRegistries,
    driver, proxy,
    logs: new FunctionLogs(config.logs.driver === 'blobstore' ? new ObjectLogBackend(logObjects(registry)) : path.join(config.dataDir, 'logs', 'functions')),
    vault, registries: auth?.registries, logger,
    invocations: { queue, attempts: config.functions.asyncAttempts },
    startTimeoutMs: config.functions.startTimeout,
    maxBodyBytes: config.functions.maxBodyBytes, maxAsyncBodyBytes: config.functions.maxAsyncBodyBytes,
    observer: metrics.functionObserver(),
  });
  metrics.setSources({ functionInstances: () => service.instanceStates() });
  const worker = new JobWorker<{ invocationId: string }, void>(queue, {
    queue: 'invocations', concurrency: config.functions.asyncConcurrency,
    handler: (job) => service.runInvocation(job.payload.invocationId, job.attempts, job.attempts >= job.maxAttempts),
    onError: (error) => logger.warn({ err: error }, 'invocation worker'),
  });
  return { service, proxy, worker };
}

interface DeliveryParts {
  events: EventBus;
  artefacts: ArtifactService;
  pipelines: PipelineService;
  runner: PipelineRunner;
  worker: JobWorker<{ runId: string }, void>;
  mirrors: MirrorPoller;
  /** Timed mirror polls run on the one replica that holds it. */
  mirrorLease: Lease;
  /** Stops listening to registry pushes. */
  unhook: () => void;
}

/**
 * Delivery: events (outbox, webhooks out), artefact versions with automation rules, and
 * pipelines with their runner, triggers and mirror poller. Registry pushes record artefact
 * versions (except a pipeline's own pushes, which it records with commit and ref) and start
 * pipelines with a registry trigger.
 */
async function openDelivery(config: Config, registry: Registry, auth: AuthParts | undefined, functions: FunctionParts | undefined, registryHost: () => string, logger: Logger, metrics: SlipwayMetrics): Promise<DeliveryParts> {
  const vault = auth?.vault ?? await openVault(config, registry.db);
  const events = new EventBus({ db: registry.db, vault, logger, onDeliveryAttempt: (outcome) => metrics.webhookDeliveries.inc({ outcome }) });
  const publish = (namespace: string, type: string, data: Record<string, unknown>, subject?: string) => events.publish(namespace, type, data, subject);
  const workDir = path.join(config.dataDir, 'pipelines');
  await mkdir(path.join(workDir, 'runs'), { recursive: true });
  await mkdir(path.join(workDir, 'executor'), { recursive: true });
  // Shell-executor steps run as an unprivileged user that must reach its workspace: these
  // folders get search permission for others (o+x: enter, not list).
  for (const dir of [config.dataDir, workDir, path.join(workDir, 'runs'), path.join(workDir, 'executor')]) {
    const mode = (await stat(dir)).mode & 0o7777;
    if (!(mode & 0o001)) await chmod(dir, mode | 0o001);
  }
  const jobs = new JobQueue(registry.db);
  // One log store: the runner writes, the API reads and follows the same live logs.
  const runLogs = openLogStore(config, registry, 'pipelines');
  const pipelines = new PipelineService({
    db: registry.db, queue: jobs, logs: runLogs, vault, secrets: auth?.secrets,
    publish, cacheDir: path.join(workDir, 'git-cache'), stageTimeoutMs: config.pipelines.stageTimeout, logger,
  });
  const fnService = functions?.service;
  const deployable = (): FunctionService => {
    if (!fnService) throw new Error('functions are turned off on this server');
    return fnService;
  };
  const artefacts = new ArtifactService({
    db: registry.db, publish, logger,
    actions: {
      async deployFunction(namespace, functionName, image) {
        await deployable().update(namespace, functionName, { image });
      },
      async deployWorkload(namespace, functionName, workload) {
        await deployable().upsert(namespace, functionName, workload, { actor: 'automation' });
      },
      async runPipeline(namespace, pipeline, parameters, trigger) {
        await pipelines.trigger(namespace, pipeline, { parameters, trigger: { ...trigger, type: 'automation', receivedAt: Date.now() } });
      },
    },
  });
  // Build stages build and push through the same configured driver as builds (one layer cache).
  const executor = new StageExecutor({ driver: configuredBuildDriver(config), workRoot: path.join(workDir, 'executor'), shellUid: config.pipelines.shellUid, shellGid: config.pipelines.shellGid });
  const runner = new PipelineRunner({
    db: registry.db, service: pipelines, queue: jobs, executor, stepPaths, logs: runLogs,
    workDir, config: config.pipelines, registryHost, insecureRegistries: config.builds.insecureRegistries,
    registry: { uploads: registry.uploads, manifests: registry.manifests, reads: registry.reads },
    access: auth?.access, secrets: auth?.secrets, registries: auth?.registries, functions: fnService, logger,
    recordArtefact: (namespace, input, actor) => artefacts.record(namespace, input, { source: 'pipeline', actor }),
    observer: metrics.pipelineObserver(),
  });
  const failed = await pipelines.reconcile();
  if (failed > 0) logger.warn({ failed }, 'pipeline runs interrupted by the last stop could not be resumed');
  await runner.sweep();
  const worker = new JobWorker<{ runId: string }, void>(jobs, {
    // A stopping server gives running stages 3 s: they run again from their start at the next one.
    queue: 'pipeline-runs', concurrency: config.pipelines.concurrency, graceMs: 3000,
    handler: (job, signal) => runner.advance(job.payload.runId, signal),
    onError: (error) => logger.warn({ err: error }, 'pipeline worker'),
  });
  const mirrorLease = new Lease(registry.db, 'pipeline-mirrors');
  const mirrors = new MirrorPoller({
    // Checks every second which mirrors are due (each polls at its own interval).
    db: registry.db, cacheDir: path.join(workDir, 'git-cache'), logger, tickMs: 1000, active: () => mirrorLease.held,
    list: () => pipelines.mirrors(config.pipelines.mirrorInterval, parseStageDuration),
    onNewCommit: (pipelineId, change) => pipelines.onMirrorCommit(pipelineId, change),
  });
  const unhookDeploys = fnService?.onDeploy((event) => {
    void events.publish(event.namespace, `deploy.${event.status}`, { ...event }, event.name).catch((error) => logger.warn({ err: error }, 'publishing a deploy event'));
  });
  const unhookTriggers = registry.manifests.onTagPushed((event) => {
    void pipelines.onTagPushed(event).catch((error) => logger.warn({ err: error }, 'registry trigger'));
  });
  const unhookArtefacts = recordRegistryPushes({
    manifests: registry.manifests, artefacts, registryHost, logger,
    recordedElsewhere: (repository, tag) => runner.isPipelinePush(repository, tag),
  });
  const unhook = () => {
    unhookTriggers();
    unhookArtefacts();
    unhookDeploys?.();
  };
  return { events, artefacts, pipelines, runner, worker, mirrors, mirrorLease, unhook };
}

export function createLogger(config: Config): Logger {
  return pino({ level: config.log.level, base: { service: 'slipway' } });
}

export async function startServer(config: Config, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config);
  // One metrics registry per server (tests run many in one process).
  const metrics = new SlipwayMetrics();
  const registry = await openRegistry(config, { ...options, logger, metrics });
  metrics.setSources(dbReadings(registry.db));
  // Several replicas on one db: scheduled GC and scheduled retention run on the holder of this lease only.
  const gcLease = new Lease(registry.db, 'registry-gc');
  const gcSchedule = config.registry.gc.interval > 0
    ? scheduleGarbageCollection({ db: registry.db, store: registry.store, uploads: registry.uploads, gracePeriodMs: config.registry.gc.gracePeriod, logger, onRun: (report) => metrics.gcFinished(report) }, config.registry.gc.interval, () => gcLease.held)
    : undefined;
  // Namespaces with a retentionSchedule are checked once a minute (registry/retention.ts).
  const retentionSchedule = scheduleRetention(registry.retention, 60_000, (error) => logger.error({ err: error }, 'scheduled retention failed'), () => gcLease.held);
  let app: FastifyInstance;
  let auth: AuthParts | undefined;
  let builds: BuildParts | undefined;
  let functions: FunctionParts | undefined;
  let delivery: DeliveryParts | undefined;
  // Known once listening: image names carry the address builds and clients reach the registry at.
  let registryHost = config.builds.registryHost ?? '';
  try {
    auth = config.auth.enabled ? await openAuth(config, registry.db) : undefined;
    builds = await openBuilds(config, registry, auth, () => registryHost, logger, metrics);
    functions = await openFunctions(config, registry, auth, () => registryHost, logger, metrics);
    delivery = await openDelivery(config, registry, auth, functions, () => registryHost, logger, metrics);
    const registries = auth?.registries;
    const logins: UpstreamLogins | undefined = registries && {
      forUpstream: (namespace, credentialsId, image) => credentialsId ? registries.loginById(namespace, credentialsId) : registries.loginForImage(namespace, image),
    };
    const pullThrough = registry.pullThrough;
    pullThrough.useAuth({ logins, namespaceExists: auth && ((namespace) => auth!.access.namespaceExists(namespace)) });
    app = await buildServer({
      logger,
      logRequests: config.log.requests,
      db: registry.db,
      authorizer: options.authorizer ?? auth?.authorizer ?? allowAll,
      auth: auth && { ...auth.routes, proxies: registry.proxies, mirrorName: (repository) => pullThrough.mirrorName(repository) },
      credentials: auth?.credentialRoutes,
      secrets: auth?.secretRoutes,
      builds: { builds: builds.service, blobs: registry.blobs, guard: auth?.guard, maxContextBytes: config.builds.maxContextBytes },
      registry: {
        blobs: registry.blobs, uploads: registry.uploads, manifests: registry.manifests, maxManifestBytes: config.registry.maxManifestBytes,
        mountAdmission: registry.policies, pulls: registry.pulls, pullThrough,
      },
      registryPolicies: auth ? { policies: registry.policies, retention: registry.retention, guard: auth.guard, audit: auth.routes.audit } : undefined,
      readinessChecks: [() => access(config.dataDir)],
      functions: functions ? { functions: functions.service, guard: auth?.guard } : undefined,
      pipelines: { pipelines: delivery.pipelines, guard: auth?.guard },
      artifacts: { artefacts: delivery.artefacts, guard: auth?.guard },
      events: { bus: delivery.events, guard: auth?.guard },
      metrics: { metrics, http: new HttpMetrics(metrics), public: config.metrics.public, guard: auth?.guard },
    });
    const { host, port } = parseListen(config.listen);
    await app.listen({ host, port });
    const listening = app.server.address();
    if (!registryHost && typeof listening === 'object' && listening) {
      const reachable = ['0.0.0.0', '::'].includes(listening.address) ? '127.0.0.1' : listening.address;
      registryHost = `${listening.family === 'IPv6' && reachable !== '127.0.0.1' ? `[${reachable}]` : reachable}:${listening.port}`;
    }
    builds.worker.start();
    if (functions) {
      await functions.service.start();
      functions.worker.start();
    }
    delivery.events.start();
    delivery.worker.start();
    const leaseError = (error: unknown) => logger.warn({ err: error }, 'renewing a singleton lease');
    await gcLease.start(leaseError);
    await delivery.mirrorLease.start(leaseError);
    delivery.mirrors.start();
  } catch (error) {
    await gcLease.stop();
    await delivery?.mirrorLease.stop();
    delivery?.unhook();
    await delivery?.mirrors.close();
    await delivery?.worker.stop();
    await delivery?.events.close();
    await functions?.worker.stop();
    await functions?.service.close();
    await builds?.worker.stop();
    await gcSchedule?.stop();
    await retentionSchedule.stop();
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
    builds: builds?.service,
    functions: functions?.service,
    pipelines: delivery?.pipelines,
    artefacts: delivery?.artefacts,
    events: delivery?.events,
    close() {
      // Stop accepting, let in-flight requests finish, then release the db.
      closing ??= (async () => {
        await gcSchedule?.stop();
        await gcLease.stop();
        await retentionSchedule.stop();
        // Running builds get the shutdown grace, then go back to the queue for the next start.
        await builds?.worker.stop();
        delivery?.unhook();
        await delivery?.mirrors.close();
        await delivery?.mirrorLease.stop();
        // A running pipeline stage goes back to the queue and runs again at the next start.
        await delivery?.worker.stop();
        await functions?.worker.stop();
        // The gateway stops taking requests and finishes those in flight; then the instances
        // stop: nothing is left running.
        await app.close();
        await functions?.service.close();
        functions?.proxy.close();
        await delivery?.events.close();
        await registry.close();
      })();
      return closing;
    },
  };
}
