/**
 * @module functions/service
 * The functions part's typed facade, used by its routes and by other parts. It wires the
 * roles, each in its own module:
 *
 *   function-specs.ts   the resource: settings, revisions made by changes, upsert
 *   revisions.ts        revision list, rollback, waiting for a deploy, rolling to a new digest
 *   deployer.ts         revision → pool of instances (through the RuntimeDriver), start checks
 *   tag-follower.ts     pushes of a function's tag roll it to a new revision
 *   replica-sync.ts     what other replicas activated or deleted reaches this replica's pools
 *   invoker.ts          requests on the active revision, gateway envelope, metrics
 *   gateway-facts.ts    what the gateway must know before a request (cached)
 *   invocations.ts      asynchronous invocations (durable jobs)
 *   function-keys.ts    per-function keys
 *   instance-log.ts     instance output into the function's log
 *
 * and holds no logic of its own beyond start and stop.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { JobQueue } from '../db/job-queue.js';
import type { ExternalRegistries } from '../credentials/service.js';
import type { Vault } from '../vault/vault.js';
import { Deployer, type DeployEvent } from './deployer.js';
import { FunctionKeys } from './function-keys.js';
import { FunctionSpecs, type UpsertOptions } from './function-specs.js';
import { GatewayFacts, type FunctionFacts } from './gateway-facts.js';
import { ImageLocator } from './image-locator.js';
import { InstanceLog } from './instance-log.js';
import { AsyncInvocations } from './invocations.js';
import { Invoker, type FunctionObserver, type InvokeRequest, type InvokeResult } from './invoker.js';
import { LiveFunctions } from './live.js';
import { findFunction } from './records.js';
import type { OwnRegistry } from './local-source.js';
import type { FunctionLogs } from './logs.js';
import type { ForwardResult, InstanceProxy } from './proxy.js';
import { ReplicaSync } from './replica-sync.js';
import { Revisions } from './revisions.js';
import type { RuntimeDriver } from './runtime-driver.js';
import type { FunctionInput, FunctionMetrics, FunctionPatch, FunctionView, InvocationView, LogLine, RevisionView } from './spec.js';
import { TagFollower } from './tag-follower.js';

export { FunctionConflictError, FunctionFailedError, FunctionInputError, FunctionNotFoundError, FunctionTimeoutError } from './errors.js';
export { decodeEnvelope, type InvokeRequest, type InvokeResult } from './invoker.js';
export type { DeployEvent } from './deployer.js';
export type { FunctionFacts } from './gateway-facts.js';
export type { UpsertOptions } from './function-specs.js';

export interface FunctionServiceDeps {
  db: Database;
  registry: OwnRegistry;
  /** `host:port` clients use for Slipway's registry (image references may carry it). */
  registryHost: () => string;
  insecureRegistries: string[];
  driver: RuntimeDriver;
  proxy: InstanceProxy;
  logs: FunctionLogs;
  vault?: Vault;
  registries?: ExternalRegistries;
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Where asynchronous invocations are queued (queue `invocations`), with their attempts. */
  invocations?: { queue: Pick<JobQueue, 'enqueue'>; attempts: number };
  /** Start checks (listening on 8000, `/init`) must pass within this. Default 30 s. */
  startTimeoutMs?: number;
  maxBodyBytes?: number;
  maxAsyncBodyBytes?: number;
  /** Metrics callbacks (main.ts). */
  observer?: FunctionObserver;
  /** How often each function's active revision is compared with the db's (other replicas' deploys); default 5 s. */
  syncPollMs?: number;
}

export class FunctionService {
  readonly maxBodyBytes: number;
  readonly maxAsyncBodyBytes: number;
  private readonly images: ImageLocator;
  private readonly specs: FunctionSpecs;
  private readonly revisionsOf: Revisions;
  private readonly deployer: Deployer;
  private readonly tags: TagFollower;
  private readonly invoker: Invoker;
  private readonly facts: GatewayFacts;
  private readonly async: AsyncInvocations;
  private readonly keys: FunctionKeys;
  private readonly live: LiveFunctions;
  private readonly sync: ReplicaSync;

  constructor(private readonly deps: FunctionServiceDeps) {
    this.maxBodyBytes = deps.maxBodyBytes ?? 6 * 1024 * 1024;
    this.maxAsyncBodyBytes = deps.maxAsyncBodyBytes ?? 256 * 1024;
    const { db, logger } = deps;
    const live = new LiveFunctions();
    this.images = new ImageLocator(deps);
    this.facts = new GatewayFacts(db, live);
    this.deployer = new Deployer({
      db, driver: deps.driver, images: this.images, live, facts: this.facts, log: new InstanceLog(db, deps.logs),
      vault: deps.vault, logger, startTimeoutMs: deps.startTimeoutMs, observer: deps.observer,
    });
    this.specs = new FunctionSpecs({ db, images: this.images, deployer: this.deployer, live, facts: this.facts, logs: deps.logs, vault: deps.vault });
    this.revisionsOf = new Revisions({ db, live, deployer: this.deployer, logger });
    this.tags = new TagFollower({ db, registry: deps.registry, images: this.images, revisions: this.revisionsOf, logger });
    this.live = live;
    this.sync = new ReplicaSync({ db, live, deployer: this.deployer, logger, pollMs: deps.syncPollMs });
    this.invoker = new Invoker({ observer: deps.observer, live, proxy: deps.proxy, view: (namespace, name) => this.specs.view(namespace, name), maxBodyBytes: this.maxBodyBytes });
    this.async = new AsyncInvocations({ db, invoker: this.invoker, queue: deps.invocations?.queue, attempts: deps.invocations?.attempts, observer: deps.observer });
    this.keys = new FunctionKeys(db);
  }

  /**
   * Removes whatever a previous process left (containers, namespaces, bundles), then brings
   * every function back: active revisions get their minimum instances, interrupted deploys run
   * again, and tags pushed while the server was down are followed.
   */
  async start(): Promise<void> {
    await this.deps.driver.recover();
    this.tags.start();
    this.sync.start();
    for (const live of await this.deployer.restore()) {
      void live.chain.then(() => this.tags.catchUp(live)).catch((error: Error) => this.deps.logger?.warn({ err: error }, 'following a tag after the restart failed'));
    }
  }

  async close(): Promise<void> {
    this.tags.close();
    this.sync.close();
    await this.deployer.close();
    await this.deps.logs.close();
  }

  /** Tells `listener` when a revision became active or failed to start (for `deploy.*` events). */
  onDeploy(listener: (event: DeployEvent) => void): () => void {
    return this.deployer.onDeploy(listener);
  }

  // ---- the resource

  create(namespace: string, input: FunctionInput, actor: string | null): Promise<FunctionView> {
    return this.specs.create(namespace, input, actor);
  }

  update(namespace: string, name: string, patch: FunctionPatch): Promise<FunctionView> {
    return this.specs.update(namespace, name, patch);
  }

  /** Applies settings to a function, creating it when missing (pipeline deploy stages, automation rules, Score workloads). */
  upsert(namespace: string, name: string, settings: Record<string, unknown>, options: UpsertOptions): Promise<{ function: FunctionView; created: boolean }> {
    return this.specs.upsert(namespace, name, settings, options);
  }

  /** Deletes the function; every replica stops its instances. */
  async remove(namespace: string, name: string): Promise<void> {
    await this.specs.remove(namespace, name);
    await this.sync.announce(namespace, name);
  }

  list(namespace: string): Promise<FunctionView[]> {
    return this.specs.list(namespace);
  }

  get(namespace: string, name: string): Promise<FunctionView> {
    return this.specs.view(namespace, name);
  }

  /** The namespace an own-registry image belongs to (for the caller's pull permission), else null. */
  imageNamespace(image: string): string | null {
    return this.images.namespaceOf(image);
  }

  // ---- revisions

  revisions(namespace: string, name: string): Promise<RevisionView[]> {
    return this.revisionsOf.list(namespace, name);
  }

  /** Revisions of the namespace's functions running the image `digest`. */
  revisionsWithDigest(namespace: string, digest: string): Promise<Array<RevisionView & { function: string }>> {
    return this.revisionsOf.withDigest(namespace, digest);
  }

  /** Makes an earlier (or any) revision the active one again, after its start checks pass. */
  rollback(namespace: string, name: string, number: number, wait: boolean): Promise<FunctionView> {
    return this.revisionsOf.rollback(namespace, name, number, wait);
  }

  /** Resolves when the latest revision is ready or failed (or `signal` aborts). */
  waitForDeploy(namespace: string, name: string, signal?: AbortSignal): Promise<FunctionView> {
    return this.revisionsOf.waitForDeploy(namespace, name, signal);
  }

  // ---- requests

  /** What a caller of the gateway needs to know before the request: type, access, id (cached: see `described`). */
  describe(namespace: string, name: string): Promise<FunctionFacts> {
    return this.facts.describe(namespace, name);
  }

  /** The gateway's facts of a function when looked up in the last moments and unchanged since; synchronous. */
  described(namespace: string, name: string): FunctionFacts | undefined {
    return this.facts.described(namespace, name);
  }

  /**
   * Runs one request on the active revision. HTTP functions (with `req`/`res`) are streamed
   * and answered by the proxy; event functions get `POST /invoke` and the answer is returned.
   */
  async invoke(namespace: string, name: string, request: InvokeRequest): Promise<InvokeResult | ForwardResult> {
    const live = this.live.get(namespace, name);
    // Deployed through another replica and not followed here yet: look it up now.
    if (!live || (!live.active && !live.firstDeploy)) await this.sync.ensure(namespace, name, 30_000);
    return this.invoker.invoke(namespace, name, request);
  }

  instances(namespace: string, name: string): Array<{ id: string; revision: number; address: string; inFlight: number; served: number; idleMs: number }> {
    return this.invoker.instances(namespace, name);
  }

  metrics(namespace: string, name: string): FunctionMetrics {
    return this.invoker.metrics(namespace, name);
  }

  // ---- asynchronous invocations

  recordInvocation(namespace: string, name: string, request: { body: Buffer; contentType?: string }): Promise<InvocationView> {
    return this.async.record(namespace, name, request);
  }

  enqueueInvocation(id: string, timeoutMs: number): Promise<void> {
    return this.async.enqueue(id, timeoutMs);
  }

  /** This server's instances by state and the requests waiting for one (metrics, read at scrape). */
  instanceStates(): { instances: Record<string, number>; queued: number } {
    const instances: Record<string, number> = { starting: 0, ready: 0, stopping: 0 };
    let queued = 0;
    for (const live of this.live.all()) {
      for (const pool of live.pools.values()) {
        const states = pool.states();
        instances.starting! += states.starting;
        instances.ready! += states.ready;
        instances.stopping! += states.stopping;
        queued += pool.pending;
      }
    }
    return { instances, queued };
  }

  /** One attempt of an async invocation; throws (for a retry) when the function failed. */
  runInvocation(id: string, attempt: number, lastAttempt: boolean): Promise<void> {
    return this.async.run(id, attempt, lastAttempt);
  }

  invocation(namespace: string, name: string, id: string): Promise<InvocationView> {
    return this.async.get(namespace, name, id);
  }

  // ---- per-function keys

  createKey(namespace: string, name: string, keyName: string): Promise<{ id: string; name: string; key: string; createdAt: string }> {
    return this.keys.create(namespace, name, keyName);
  }

  listKeys(namespace: string, name: string): Promise<Array<{ id: string; name: string; createdAt: string; lastUsedAt: string | null }>> {
    return this.keys.list(namespace, name);
  }

  deleteKey(namespace: string, name: string, id: string): Promise<void> {
    return this.keys.remove(namespace, name, id);
  }

  /** `checkKey` from its cache only: undefined when it would need the database. */
  checkedKey(functionId: string, authorization: string | undefined): boolean | undefined {
    return this.keys.checked(functionId, authorization);
  }

  /** Whether `authorization` carries a key of this function. */
  checkKey(functionId: string, authorization: string | undefined): Promise<boolean> {
    return this.keys.check(functionId, authorization);
  }

  // ---- logs

  /** Instance output and deploy lines of a function, the last `tail` of them. */
  async logsOf(namespace: string, name: string, tail?: number): Promise<LogLine[]> {
    await findFunction(this.deps.db, namespace, name);
    return this.deps.logs.read(namespace, name, tail);
  }

  followLogs(namespace: string, name: string, listener: (line: LogLine) => void): () => void {
    return this.deps.logs.follow(namespace, name, listener);
  }
}
