/**
 * @module functions/service
 * Functions: settings and revisions in the db, and in memory one RevisionPool per running
 * revision. A deploy resolves the image to a digest, pulls and unpacks it once, starts one
 * instance and runs its start checks; only then does traffic move to the new revision (the old
 * one drains). A failed start marks the revision failed with the reason and the instance's own
 * output, and traffic stays where it was. Tags of Slipway's own registry are followed: a push
 * of a new digest under a function's tag rolls it to a new revision.
 *
 * Invocations lease an instance from the active pool and go through the InstanceProxy; event
 * functions get `POST /invoke` with the FunctionGraph context headers and may answer with the
 * gateway envelope, which is decoded here.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { FunctionRevisionTable, FunctionTable } from '../db/schema.js';
import type { Vault } from '../vault/vault.js';
import type { ExternalRegistries } from '../credentials/service.js';
import { RegistryError } from '../registry/errors.js';
import type { ImageConfig, ImageStore } from './image-store.js';
import { parseImageRef } from './image-store.js';
import { localImageSource, type OwnRegistry } from './local-source.js';
import type { FunctionLogs } from './logs.js';
import { RequestMetrics } from './metrics.js';
import { PoolUnavailableError, QueueTimeoutError, RevisionPool, StartError, type InstanceDriver, type InstanceTemplate } from './pool.js';
import type { ForwardResult, InstanceProxy } from './proxy.js';
import {
  functionConfigSchema, type FunctionConfig, type FunctionInput, type FunctionMetrics, type FunctionPatch, type FunctionStatus,
  type FunctionView, type InvocationView, type LogLine, type RevisionView, type StoredConfig,
} from './spec.js';

export class FunctionNotFoundError extends Error {}
export class FunctionInputError extends Error {}
export class FunctionConflictError extends Error {}
/** The function cannot answer: 502 with the reason. */
export class FunctionFailedError extends Error {}
/** No instance answered in time: 504. */
export class FunctionTimeoutError extends Error {}

export interface FunctionServiceDeps {
  db: Database;
  registry: OwnRegistry;
  /** `host:port` clients use for Slipway's registry (image references may carry it). */
  registryHost: () => string;
  insecureRegistries: string[];
  images: ImageStore;
  driver: InstanceDriver & { cleanupOrphans(): Promise<unknown>; refillSpares?(): void; close?(): Promise<void> };
  proxy: InstanceProxy;
  logs: FunctionLogs;
  vault?: Vault;
  registries?: ExternalRegistries;
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Start checks (listening on 8000, `/init`) must pass within this. Default 30 s. */
  startTimeoutMs?: number;
  maxBodyBytes?: number;
  maxAsyncBodyBytes?: number;
}

interface Live {
  id: string;
  namespace: string;
  name: string;
  pools: Map<number, RevisionPool>;
  active?: { number: number; pool: RevisionPool; config: StoredConfig; digest: string };
  /** Serialises deploys of one function. */
  chain: Promise<unknown>;
  /** The deploy that will produce the first active revision, for requests that arrive before it. */
  firstDeploy?: Promise<unknown>;
  metrics: RequestMetrics;
  deleted: boolean;
}

export interface InvokeRequest {
  /** For HTTP functions: the caller's request streamed through (with `res`). */
  req?: http.IncomingMessage;
  res?: http.ServerResponse;
  method: string;
  path: string;
  body?: Buffer;
  headers?: Record<string, string>;
  invokeType?: 'sync' | 'async';
  requestId?: string;
  /** Set on the one retry after an instance refused the connection. */
  retried?: boolean;
}

export interface InvokeResult {
  statusCode: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
  revision: number;
}

const iso = (ms: number) => new Date(ms).toISOString();
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const keyPrefix = 'slwfn_';
/** How long the gateway's facts of a function are kept without a change dropping them. */
const factsTtlMs = 2000;

/** What the gateway needs to know of a function before a request. */
export interface FunctionFacts { id: string; type: 'http' | 'event'; access: 'private' | 'public' }

/** A revision that became active (`succeeded`) or failed to start. */
export interface DeployEvent {
  namespace: string;
  name: string;
  revision: number;
  status: 'succeeded' | 'failed';
  reason?: string;
  digest?: string;
  image?: string;
  activeRevision: number | null;
}

export class FunctionService {
  private readonly live = new Map<string, Live>();
  private readonly keyCache = new Map<string, { functionId: string; until: number }>();
  private closed = false;
  private unsubscribe?: () => void;
  private readonly deployListeners = new Set<(event: DeployEvent) => void>();
  readonly maxBodyBytes: number;
  readonly maxAsyncBodyBytes: number;

  constructor(private readonly deps: FunctionServiceDeps) {
    this.maxBodyBytes = deps.maxBodyBytes ?? 6 * 1024 * 1024;
    this.maxAsyncBodyBytes = deps.maxAsyncBodyBytes ?? 256 * 1024;
  }

  private get db() { return this.deps.db; }

  /** Tells `listener` when a revision became active or failed to start (for `deploy.*` events). */
  onDeploy(listener: (event: DeployEvent) => void): () => void {
    this.deployListeners.add(listener);
    return () => this.deployListeners.delete(listener);
  }

  private emitDeploy(event: DeployEvent): void {
    for (const listener of this.deployListeners) {
      try {
        listener(event);
      } catch {
        // a listener's problem is not the deploy's
      }
    }
  }

  // ---- start and stop ------------------------------------------------------------------

  /**
   * Removes whatever a previous process left (containers, namespaces, bundles), then brings
   * every function back: active revisions get their minimum instances, interrupted deploys run
   * again, and tags pushed while the server was down are followed.
   */
  async start(): Promise<void> {
    await this.deps.driver.cleanupOrphans();
    this.deps.driver.refillSpares?.();
    this.unsubscribe = this.deps.registry.manifests.onTagPushed((event) => this.onTagPushed(event.repository, event.tag, event.digest));
    const rows = await this.db.kysely.selectFrom('functions').selectAll().execute();
    for (const row of rows) {
      const live = this.liveOf(row);
      const deploying = await this.db.kysely.selectFrom('function_revisions').select('number')
        .where('function_id', '=', row.id).where('status', '=', 'deploying').orderBy('number').execute();
      if (row.active_revision !== null) {
        const active = row.active_revision;
        live.chain = live.chain.then(() => this.activate(live, active, { check: false })).catch((error: Error) => {
          this.deps.logger?.warn({ function: `${row.namespace}/${row.name}`, err: error }, 'could not restore function');
        });
      }
      for (const { number } of deploying) this.enqueueDeploy(live, number, false);
      void live.chain.then(() => this.followTag(live));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    const pools = [...this.live.values()].flatMap((live) => [...live.pools.values()]);
    await Promise.all(pools.map((pool) => pool.close(10_000)));
    await this.deps.driver.close?.();
    await this.deps.logs.close();
  }

  private liveOf(row: Pick<FunctionTable, 'id' | 'namespace' | 'name'>): Live {
    const key = `${row.namespace}/${row.name}`;
    let live = this.live.get(key);
    if (!live || live.id !== row.id) {
      live = { id: row.id, namespace: row.namespace, name: row.name, pools: new Map(), chain: Promise.resolve(), metrics: new RequestMetrics(), deleted: false };
      this.live.set(key, live);
    }
    return live;
  }

  // ---- the resource ----------------------------------------------------------------------

  async create(namespace: string, input: FunctionInput, actor: string | null): Promise<FunctionView> {
    await this.checkImage(input.image, input.pinDigest);
    const id = `fn_${randomBytes(8).toString('hex')}`;
    const { name, access, ...config } = input;
    const stored = await this.seal(id, config, {});
    const now = Date.now();
    try {
      await this.db.write(async (trx) => {
        await trx.insertInto('functions').values({
          id, namespace, name, access, config: JSON.stringify(stored), active_revision: null, latest_revision: 1, created_by: actor, created_at: now, updated_at: now,
        }).execute();
        await trx.insertInto('function_revisions').values(revisionRow(id, 1, stored, null, now)).execute();
      });
    } catch (error) {
      if (await this.find(namespace, name).catch(() => null)) throw new FunctionConflictError(`function "${name}" already exists in "${namespace}"`);
      throw error;
    }
    this.forgetFacts(namespace, name);
    const live = this.liveOf({ id, namespace, name });
    live.firstDeploy = this.enqueueDeploy(live, 1, false);
    return this.view(namespace, name);
  }

  async update(namespace: string, name: string, patch: FunctionPatch): Promise<FunctionView> {
    const row = await this.find(namespace, name);
    const current = JSON.parse(row.config) as StoredConfig;
    const { access, secretEnv, ...changes } = patch;
    const merged: Record<string, unknown> = { ...current, secretEnv: {} };
    for (const [key, value] of Object.entries(changes)) {
      if (value === null) delete merged[key];
      else if (value !== undefined) merged[key] = value;
    }
    const parsed = functionConfigSchema.safeParse(merged);
    if (!parsed.success) throw new FunctionInputError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    const config = parsed.data;
    if (config.minInstances > config.maxInstances) throw new FunctionInputError('minInstances: must not exceed maxInstances');
    if (patch.image !== undefined || patch.pinDigest !== undefined) await this.checkImage(config.image, config.pinDigest);
    // Secrets not named in the patch keep their sealed values; named ones are replaced.
    const stored = await this.seal(row.id, config, secretEnv === undefined ? current.secretEnv : {});
    const changed = JSON.stringify(canonical(stored)) !== JSON.stringify(canonical(current)) || (secretEnv !== undefined && !sameKeys(secretEnv, current.secretEnv));
    const forceRevision = secretEnv !== undefined && Object.keys(secretEnv).length > 0;
    const now = Date.now();
    let number: number | undefined;
    await this.db.write(async (trx) => {
      const fresh = await trx.selectFrom('functions').select(['latest_revision']).where('id', '=', row.id).executeTakeFirstOrThrow();
      const updates: Partial<FunctionTable> = { updated_at: now };
      if (access) updates.access = access;
      if (changed || forceRevision) {
        number = fresh.latest_revision + 1;
        updates.config = JSON.stringify(stored);
        updates.latest_revision = number;
        await trx.insertInto('function_revisions').values(revisionRow(row.id, number, stored, null, now)).execute();
      }
      await trx.updateTable('functions').set(updates).where('id', '=', row.id).execute();
    });
    this.forgetFacts(namespace, name, row.id);
    if (number !== undefined) this.enqueueDeploy(this.liveOf(row), number, false);
    return this.view(namespace, name);
  }

  async remove(namespace: string, name: string): Promise<void> {
    const row = await this.find(namespace, name);
    await this.db.write(async (trx) => {
      await trx.deleteFrom('function_keys').where('function_id', '=', row.id).execute();
      await trx.deleteFrom('invocations').where('function_id', '=', row.id).execute();
      await trx.deleteFrom('function_revisions').where('function_id', '=', row.id).execute();
      await trx.deleteFrom('functions').where('id', '=', row.id).execute();
    });
    this.forgetFacts(namespace, name, row.id);
    const live = this.live.get(`${namespace}/${name}`);
    if (live && live.id === row.id) {
      live.deleted = true;
      this.live.delete(`${namespace}/${name}`);
      await Promise.all([...live.pools.values()].map((pool) => pool.close(5000)));
      live.pools.clear();
    }
    await this.deps.logs.remove(namespace, name);
  }

  async list(namespace: string): Promise<FunctionView[]> {
    const rows = await this.db.kysely.selectFrom('functions').select('name').where('namespace', '=', namespace).orderBy('name').execute();
    return Promise.all(rows.map((r) => this.view(namespace, r.name)));
  }

  async get(namespace: string, name: string): Promise<FunctionView> {
    return this.view(namespace, name);
  }

  async revisions(namespace: string, name: string): Promise<RevisionView[]> {
    const row = await this.find(namespace, name);
    const revisions = await this.db.kysely.selectFrom('function_revisions').selectAll().where('function_id', '=', row.id).orderBy('number', 'desc').execute();
    return revisions.map((r) => revisionView(r, row.active_revision));
  }

  /** Makes an earlier (or any) revision the active one again, after its start checks pass. */
  async rollback(namespace: string, name: string, number: number, wait: boolean): Promise<FunctionView> {
    const row = await this.find(namespace, name);
    const revision = await this.db.kysely.selectFrom('function_revisions').selectAll().where('function_id', '=', row.id).where('number', '=', number).executeTakeFirst();
    if (!revision) throw new FunctionNotFoundError(`function "${name}" has no revision ${number}`);
    if (!revision.image_digest) throw new FunctionInputError(`revision ${number} never resolved its image: it cannot be rolled back to`);
    await this.db.write((trx) => trx.updateTable('functions').set({ config: revision.config, updated_at: Date.now() }).where('id', '=', row.id).execute());
    const deploy = this.enqueueDeploy(this.liveOf(row), number, true);
    if (wait) await deploy;
    return this.view(namespace, name);
  }

  /** Resolves when the latest revision is ready or failed (or `signal` aborts). */
  async waitForDeploy(namespace: string, name: string, signal?: AbortSignal): Promise<FunctionView> {
    for (;;) {
      const live = this.live.get(`${namespace}/${name}`);
      if (live) await live.chain;
      const view = await this.view(namespace, name);
      if (view.status !== 'deploying' || signal?.aborted) return view;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async find(namespace: string, name: string): Promise<FunctionTable> {
    const row = await this.db.kysely.selectFrom('functions').selectAll().where('namespace', '=', namespace).where('name', '=', name).executeTakeFirst();
    if (!row) throw new FunctionNotFoundError(`no function "${name}" in "${namespace}"`);
    return row;
  }

  private async view(namespace: string, name: string): Promise<FunctionView> {
    const row = await this.find(namespace, name);
    const config = JSON.parse(row.config) as StoredConfig;
    const revisions = await this.db.kysely.selectFrom('function_revisions').select(['number', 'status', 'reason', 'image_digest'])
      .where('function_id', '=', row.id).where('number', 'in', [row.latest_revision, row.active_revision ?? row.latest_revision]).execute();
    const latest = revisions.find((r) => r.number === row.latest_revision);
    const active = revisions.find((r) => r.number === row.active_revision);
    let status: FunctionStatus = active ? 'ready' : 'failed';
    let statusReason: string | undefined;
    if (latest?.status === 'deploying') status = 'deploying';
    else if (latest?.status === 'failed') {
      statusReason = `revision ${latest.number} failed: ${latest.reason ?? 'unknown reason'}`;
      if (!active) status = 'failed';
    }
    const live = this.live.get(`${namespace}/${name}`);
    const secretEnv = Object.fromEntries(Object.keys(config.secretEnv).map((k) => [k, '****']));
    return {
      namespace, name: row.name, access: row.access as 'private' | 'public',
      ...config, secretEnv,
      imageDigest: active?.image_digest ?? null,
      status, ...(statusReason ? { statusReason } : {}),
      activeRevision: row.active_revision, latestRevision: row.latest_revision,
      instances: live?.active?.pool.size ?? 0,
      url: config.type === 'http' ? `/fn/${namespace}/${row.name}/` : `/api/v1/namespaces/${namespace}/functions/${row.name}/invocations`,
      createdAt: iso(row.created_at), updatedAt: iso(row.updated_at),
    };
  }

  // ---- images ----------------------------------------------------------------------------

  /** Own registry: `ns/repo:tag`, or with this server's host. Others: external. */
  private locate(image: string): { own: true; repository: string; reference: string } | { own: false; ref: string } {
    const first = image.split('/')[0] ?? '';
    const hasHost = image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
    if (!hasHost || first === this.deps.registryHost()) {
      const ref = hasHost ? image : `local/${image}`;
      const parsed = parseImageRef(ref);
      return { own: true, repository: parsed.repository, reference: parsed.reference };
    }
    return { own: false, ref: image };
  }

  /** Clear errors before anything is saved: a malformed reference or an unknown own image. */
  private async checkImage(image: string, pinDigest: boolean): Promise<void> {
    const where = this.locate(image);
    if (!where.own) {
      if (!/^[^/]+\/.+/.test(image)) throw new FunctionInputError(`image "${image}" is not a valid reference`);
      return;
    }
    if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)+$/.test(where.repository)) throw new FunctionInputError(`image "${image}": "${where.repository}" is not a repository name`);
    if (pinDigest && !where.reference.includes(':')) { /* a tag: pinned to its digest at deploy */ }
    try {
      await this.deps.registry.manifests.info(where.repository, where.reference);
    } catch (error) {
      if (error instanceof RegistryError) throw new FunctionInputError(`image "${image}" is not in this registry (${error.code})`);
      throw error;
    }
  }

  /** The namespace an own-registry image belongs to (for the caller's pull permission), else null. */
  imageNamespace(image: string): string | null {
    const where = this.locate(image);
    return where.own ? where.repository.split('/')[0]! : null;
  }

  /** Pulls (cached, verified) and unpacks; returns the digest, the image config and the root. */
  private async prepareImage(namespace: string, image: string, digest: string | null): Promise<{ digest: string; config: ImageConfig; rootfs: string }> {
    const { images } = this.deps;
    if (digest) {
      const rootfs = images.rootfsPath(digest);
      const cached = await images.configOf(digest).catch(() => null);
      if (cached) return { digest, config: cached, rootfs: await images.unpack(digest) };
      void rootfs;
    }
    const where = this.locate(image);
    let pulled;
    if (where.own) {
      const reference = digest ?? where.reference;
      pulled = await images.pull(`local/${where.repository}${reference.includes(':') ? '@' : ':'}${reference}`, { source: localImageSource(this.deps.registry, where.repository) });
    } else {
      const login = await this.deps.registries?.loginForImage(namespace, image);
      const host = image.split('/')[0]!;
      const ref = digest ? `${image.replace(/[:@][^/]*$/, '')}@${digest}` : image;
      pulled = await images.pull(ref, {
        auth: login ? { username: login.username, password: login.password } : undefined,
        insecure: this.deps.insecureRegistries.includes(host),
      });
    }
    if (digest && pulled.digest !== digest) throw new Error(`image digest changed while pulling: expected ${digest}, got ${pulled.digest}`);
    return { digest: pulled.digest, config: pulled.config, rootfs: await images.unpack(pulled.digest) };
  }

  private async onTagPushed(repository: string, tag: string, digest: string): Promise<void> {
    if (this.closed) return;
    const rows = await this.db.kysely.selectFrom('functions').selectAll().execute();
    for (const row of rows) {
      const config = JSON.parse(row.config) as StoredConfig;
      const where = this.locate(config.image);
      if (!where.own || config.pinDigest || where.repository !== repository || where.reference !== tag) continue;
      await this.rollToDigest(row, digest).catch((error: Error) => this.deps.logger?.warn({ err: error }, 'auto-update failed'));
    }
  }

  /** After a restart: a tag pushed while the server was down. */
  private async followTag(live: Live): Promise<void> {
    const row = await this.db.kysely.selectFrom('functions').selectAll().where('id', '=', live.id).executeTakeFirst();
    if (!row) return;
    const config = JSON.parse(row.config) as StoredConfig;
    const where = this.locate(config.image);
    if (!where.own || config.pinDigest || where.reference.includes(':')) return;
    const info = await this.deps.registry.manifests.info(where.repository, where.reference).catch(() => null);
    if (info) await this.rollToDigest(row, info.digest);
  }

  /** A new revision with the same settings at `digest`, unless the latest already runs it. */
  private async rollToDigest(row: FunctionTable, digest: string): Promise<void> {
    const latest = await this.db.kysely.selectFrom('function_revisions').select(['image_digest', 'status'])
      .where('function_id', '=', row.id).where('number', '=', row.latest_revision).executeTakeFirst();
    if (latest?.image_digest === digest || latest?.status === 'deploying') return;
    let number = 0;
    await this.db.write(async (trx) => {
      const fresh = await trx.selectFrom('functions').select(['latest_revision', 'config']).where('id', '=', row.id).executeTakeFirst();
      if (!fresh) return;
      number = fresh.latest_revision + 1;
      await trx.insertInto('function_revisions').values(revisionRow(row.id, number, JSON.parse(fresh.config) as StoredConfig, digest, Date.now())).execute();
      await trx.updateTable('functions').set({ latest_revision: number, updated_at: Date.now() }).where('id', '=', row.id).execute();
    });
    if (number) {
      this.deps.logger?.info({ function: `${row.namespace}/${row.name}`, revision: number, digest }, 'tag pushed again: rolling to a new revision');
      this.enqueueDeploy(this.liveOf(row), number, false);
    }
  }

  // ---- deploys -----------------------------------------------------------------------------

  private enqueueDeploy(live: Live, number: number, rollback: boolean): Promise<unknown> {
    const run = live.chain.then(() => this.deploy(live, number, rollback));
    live.chain = run.catch(() => undefined);
    return live.chain;
  }

  private async deploy(live: Live, number: number, rollback: boolean): Promise<void> {
    if (live.deleted || this.closed) return;
    const fn = await this.db.kysely.selectFrom('functions').select(['active_revision', 'latest_revision']).where('id', '=', live.id).executeTakeFirst();
    if (!fn) return;
    // A newer revision already queued makes this one moot (unless it is an explicit rollback).
    if (!rollback && number < fn.latest_revision) {
      await this.setRevision(live, number, { status: 'retired', reason: `superseded by revision ${fn.latest_revision} before it was deployed` });
      return;
    }
    if (!rollback && fn.active_revision !== null && number < fn.active_revision) return;
    await this.db.write((trx) => trx.updateTable('function_revisions').set({ status: 'deploying', reason: null, output: null })
      .where('function_id', '=', live.id).where('number', '=', number).execute());
    try {
      await this.activate(live, number, { check: true });
    } catch (error) {
      const output = error instanceof StartError ? error.output : [];
      const reason = (error as Error).message;
      this.log(live, number, 'control', 'system', `revision ${number} failed: ${reason}`);
      await this.setRevision(live, number, { status: 'failed', reason, output: JSON.stringify(output.slice(-20)) });
      this.emitDeploy({ namespace: live.namespace, name: live.name, revision: number, status: 'failed', reason, activeRevision: live.active?.number ?? null });
    }
  }

  /**
   * Builds the revision's pool; with `check`, one instance must pass its start checks first.
   * Then the revision becomes the active one and the previous pool drains.
   */
  private async activate(live: Live, number: number, options: { check: boolean }): Promise<void> {
    const revision = await this.db.kysely.selectFrom('function_revisions').selectAll().where('function_id', '=', live.id).where('number', '=', number).executeTakeFirstOrThrow();
    const config = JSON.parse(revision.config) as StoredConfig;
    const image = await this.prepareImage(live.namespace, revision.image, revision.image_digest);
    if (!revision.image_digest) {
      await this.db.write((trx) => trx.updateTable('function_revisions').set({ image_digest: image.digest }).where('function_id', '=', live.id).where('number', '=', number).execute());
    }
    const template = await this.template(live, number, config, image.config, image.rootfs);
    const label = `${live.id.slice(3, 11)}-r${number}`;
    let pool = live.pools.get(number);
    if (!pool) {
      pool = new RevisionPool(label, this.deps.driver, template, poolSettings(config, this.deps.startTimeoutMs), {
        log: (instance, stream, line) => this.log(live, number, instance, stream, line),
      });
      live.pools.set(number, pool);
    }
    if (options.check) {
      try {
        await pool.startInstance();
      } catch (error) {
        if (live.active?.pool !== pool) {
          live.pools.delete(number);
          await pool.close(0);
        }
        throw error;
      }
    }
    if (live.deleted || this.closed) {
      live.pools.delete(number);
      await pool.close(0);
      return;
    }
    const previous = live.active;
    live.active = { number, pool, config, digest: image.digest };
    this.forgetFacts(live.namespace, live.name);
    pool.open();
    const now = Date.now();
    await this.db.write(async (trx) => {
      await trx.updateTable('function_revisions').set({ status: 'ready', reason: null, output: null, ready_at: now }).where('function_id', '=', live.id).where('number', '=', number).execute();
      if (previous && previous.number !== number) {
        await trx.updateTable('function_revisions').set({ status: 'retired' }).where('function_id', '=', live.id).where('number', '=', previous.number).where('status', '=', 'ready').execute();
      }
      await trx.updateTable('functions').set({ active_revision: number, updated_at: now }).where('id', '=', live.id).execute();
    });
    this.log(live, number, 'control', 'system', `revision ${number} is active (${image.digest})`);
    this.emitDeploy({ namespace: live.namespace, name: live.name, revision: number, status: 'succeeded', digest: image.digest, image: revision.image, activeRevision: number });
    if (previous && previous.pool !== pool) {
      live.pools.delete(previous.number);
      void previous.pool.close();
    }
  }

  private async setRevision(live: Live, number: number, changes: Partial<FunctionRevisionTable>): Promise<void> {
    await this.db.write((trx) => trx.updateTable('function_revisions').set(changes).where('function_id', '=', live.id).where('number', '=', number).execute());
  }

  /** Command, environment and limits of an instance: the function's overrides over the image's. */
  private async template(live: Live, number: number, config: StoredConfig, image: ImageConfig, rootfs: string): Promise<InstanceTemplate> {
    const entrypoint = config.command ?? image.Entrypoint ?? [];
    const args = config.args ?? (config.command ? [] : image.Cmd ?? []);
    const command = [...entrypoint, ...args];
    if (command.length === 0) throw new StartError('the image has no entrypoint or command: set "command"', []);
    const env = new Map<string, string>();
    for (const entry of image.Env ?? []) {
      const at = entry.indexOf('=');
      if (at > 0) env.set(entry.slice(0, at), entry.slice(at + 1));
    }
    const runtime: Record<string, string> = {
      RUNTIME_FUNC_NAME: live.name, RUNTIME_FUNC_VERSION: String(number), RUNTIME_PACKAGE: live.namespace,
      RUNTIME_PROJECT_ID: live.namespace, RUNTIME_MEMORY: String(config.memoryMB), RUNTIME_TIMEOUT: String(config.timeoutSeconds),
    };
    for (const [k, v] of Object.entries({ ...runtime, ...config.env })) env.set(k, v);
    for (const [k, envelope] of Object.entries(config.secretEnv)) {
      if (!this.deps.vault) throw new StartError('secret environment variables need the vault', []);
      env.set(k, await this.deps.vault.open(envelope, secretContext(live.id, k)));
    }
    return {
      rootfs, command, env: [...env].map(([k, v]) => `${k}=${v}`),
      workingDir: config.workingDir ?? (image.WorkingDir || undefined),
      uid: config.uid, gid: config.gid, memoryMB: config.memoryMB, pids: 1024,
    };
  }

  private async seal(id: string, config: FunctionConfig, keep: Record<string, string>): Promise<StoredConfig> {
    const secretEnv: Record<string, string> = { ...keep };
    const entries = Object.entries(config.secretEnv);
    if (entries.length > 0 && !this.deps.vault) throw new FunctionInputError('secretEnv needs the vault, which is not configured');
    for (const [k, v] of entries) secretEnv[k] = await this.deps.vault!.seal(v, secretContext(id, k));
    return { ...config, secretEnv };
  }

  private log(live: Live, revision: number, instance: string, stream: LogLine['stream'], line: string): void {
    void (async () => {
      const tags = await this.tagsOf(live);
      this.deps.logs.append(live.namespace, { time: new Date().toISOString(), function: live.name, revision, instance, stream, line, tags });
    })();
  }

  private tagCache = new Map<string, { tags: Record<string, string>; until: number }>();
  private async tagsOf(live: Live): Promise<Record<string, string>> {
    const cached = this.tagCache.get(live.id);
    if (cached && cached.until > Date.now()) return cached.tags;
    const tags = live.active?.config.logTags
      ?? (JSON.parse((await this.db.kysely.selectFrom('functions').select('config').where('id', '=', live.id).executeTakeFirst())?.config ?? '{}') as Partial<StoredConfig>).logTags
      ?? {};
    this.tagCache.set(live.id, { tags, until: Date.now() + 2000 });
    return tags;
  }

  // ---- invocations -------------------------------------------------------------------------

  /** What a caller of the gateway needs to know before the request: type, access, id (cached: see `described`). */
  async describe(namespace: string, name: string): Promise<FunctionFacts> {
    const key = `${namespace}/${name}`;
    const cached = this.described(namespace, name);
    if (cached !== undefined) return cached;
    const generation = this.factsGeneration;
    let facts: FunctionFacts;
    const live = this.live.get(key);
    if (live?.active && !live.deleted) facts = { id: live.id, type: live.active.config.type, access: await this.accessOf(live.id) };
    else {
      const row = await this.find(namespace, name);
      facts = { id: row.id, type: (JSON.parse(row.config) as StoredConfig).type, access: row.access as 'private' | 'public' };
    }
    // Not kept when a change happened while it was looked up (it may predate the change).
    if (generation === this.factsGeneration) this.facts.set(key, { facts, until: Date.now() + factsTtlMs });
    return facts;
  }

  /**
   * The gateway's facts of a function when `describe` looked them up in the last moments and
   * nothing changed since (update, delete, create, a revision becoming active drop them);
   * undefined otherwise. Synchronous: the gateway's fast path decides on it.
   */
  described(namespace: string, name: string): FunctionFacts | undefined {
    const entry = this.facts.get(`${namespace}/${name}`);
    if (entry === undefined) return undefined;
    if (entry.until > Date.now()) return entry.facts;
    this.facts.delete(`${namespace}/${name}`);
    return undefined;
  }

  /** Drops the cached gateway facts of a function (and its cached access). */
  private forgetFacts(namespace: string, name: string, id?: string): void {
    this.factsGeneration++;
    this.facts.delete(`${namespace}/${name}`);
    if (id !== undefined) this.accessCache.delete(id);
  }

  private readonly facts = new Map<string, { facts: FunctionFacts; until: number }>();
  private factsGeneration = 0;

  private accessCache = new Map<string, { access: 'private' | 'public'; until: number }>();
  private async accessOf(id: string): Promise<'private' | 'public'> {
    const cached = this.accessCache.get(id);
    if (cached && cached.until > Date.now()) return cached.access;
    const row = await this.db.kysely.selectFrom('functions').select('access').where('id', '=', id).executeTakeFirst();
    const access = (row?.access ?? 'private') as 'private' | 'public';
    this.accessCache.set(id, { access, until: Date.now() + 1000 });
    return access;
  }

  /**
   * Runs one request on the active revision. HTTP functions (with `req`/`res`) are streamed
   * and answered by the proxy; event functions get `POST /invoke` and the answer is returned.
   */
  async invoke(namespace: string, name: string, request: InvokeRequest): Promise<InvokeResult | ForwardResult> {
    const started = performance.now();
    const live = this.live.get(`${namespace}/${name}`);
    if (!live || live.deleted) throw new FunctionNotFoundError(`no function "${name}" in "${namespace}"`);
    const waitMs = (live.active?.config.timeoutSeconds ?? 30) * 1000;
    const deadline = Date.now() + waitMs;
    let active = live.active;
    if (!active) {
      // Created moments ago: wait for its first deploy (bounded by the request's deadline).
      await Promise.race([live.firstDeploy ?? live.chain, new Promise((r) => setTimeout(r, waitMs).unref())]);
      active = live.active as Live['active'];
      if (!active) {
        const view = await this.view(namespace, name).catch(() => null);
        if (view?.status === 'deploying') throw new FunctionTimeoutError(`the function was still deploying after ${waitMs / 1000} s`);
        throw new FunctionFailedError(view?.statusReason ?? 'the function has no ready revision');
      }
    }
    let lease;
    try {
      lease = await active.pool.acquire(deadline);
    } catch (error) {
      live.metrics.record(performance.now() - started, error instanceof QueueTimeoutError ? 'timeout' : 'error', false);
      if (error instanceof QueueTimeoutError) throw new FunctionTimeoutError(`the function did not answer within ${active.config.timeoutSeconds} s (no instance became free)`);
      if (error instanceof PoolUnavailableError && error.kind === 'failing') throw new FunctionFailedError(`the function is failing: ${error.message}`);
      if (error instanceof PoolUnavailableError) return this.invoke(namespace, name, request); // revision switched meanwhile
      throw error;
    }
    let result: ForwardResult;
    try {
      const headers = active.config.type === 'event' || request.body ? this.contextHeaders(live, active.number, active.config, deadline, request) : request.headers;
      result = await this.deps.proxy.forward(request.req ?? null, request.res ?? null, lease.instance.endpoint, {
        path: request.path, method: request.method, timeoutMs: Math.max(1, deadline - Date.now()),
        maxBodyBytes: this.maxBodyBytes, extraHeaders: headers, body: request.body, collect: !request.res, maxResponseBytes: this.maxBodyBytes,
      });
    } finally {
      lease.release();
    }
    if (result.outcome === 'upstream-error' && result.status === 502) {
      active.pool.markBroken(lease.instance);
      this.deps.proxy.forget(lease.instance.endpoint);
      // Nothing reached the instance (refused): a buffered request is safe to send elsewhere.
      if (!request.res && /ECONNREFUSED/.test(result.error ?? '') && !request.retried) return this.invoke(namespace, name, { ...request, retried: true });
    }
    const outcome = result.outcome === 'timeout' ? 'timeout' : result.outcome === 'ok' || result.outcome === 'client-aborted' || result.outcome === 'too-large' ? 'ok' : 'error';
    live.metrics.record(performance.now() - started, outcome, lease.cold);
    if (request.res) return result;
    if (result.outcome === 'timeout') throw new FunctionTimeoutError(`the function did not answer within ${active.config.timeoutSeconds} s`);
    if (result.outcome === 'upstream-error') throw new FunctionFailedError(`the function failed: ${result.error ?? 'instance error'}`);
    if (result.outcome === 'too-large') throw new FunctionInputError(`the function's answer is over ${this.maxBodyBytes} bytes`);
    return decodeEnvelope(result.status, result.headers ?? {}, result.body ?? Buffer.alloc(0), active.number);
  }

  private contextHeaders(live: Live, number: number, config: StoredConfig, deadline: number, request: InvokeRequest): Record<string, string> {
    return {
      ...(request.headers ?? {}),
      'x-cff-request-id': request.requestId ?? randomUUID(),
      'x-cff-func-name': live.name,
      'x-cff-func-version': String(number),
      'x-cff-memory': String(config.memoryMB),
      'x-cff-timeout': String(config.timeoutSeconds),
      'x-cff-invoke-type': request.invokeType ?? 'sync',
      'x-cff-project-id': live.namespace,
      'x-cff-package': live.namespace,
      'x-cff-region': 'local',
      'x-slipway-deadline': new Date(deadline).toISOString(),
      'x-slipway-deadline-ms': String(deadline),
    };
  }

  instances(namespace: string, name: string): Array<{ id: string; revision: number; address: string; inFlight: number; served: number; idleMs: number }> {
    const live = this.live.get(`${namespace}/${name}`);
    if (!live) throw new FunctionNotFoundError(`no function "${name}" in "${namespace}"`);
    return [...live.pools].flatMap(([revision, pool]) => pool.list().map((i) => ({ ...i, revision })));
  }

  metrics(namespace: string, name: string): FunctionMetrics {
    const live = this.live.get(`${namespace}/${name}`);
    if (!live) throw new FunctionNotFoundError(`no function "${name}" in "${namespace}"`);
    const pool = live.active?.pool;
    return live.metrics.view({ inFlight: pool?.inFlight ?? 0, queued: pool?.pending ?? 0, instances: pool?.size ?? 0 });
  }

  // ---- asynchronous invocations ------------------------------------------------------------

  async recordInvocation(namespace: string, name: string, request: { body: Buffer; contentType?: string }): Promise<InvocationView> {
    const row = await this.find(namespace, name);
    const id = `inv_${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;
    await this.db.write((trx) => trx.insertInto('invocations').values({
      id, function_id: row.id, revision: null, status: 'queued', attempts: 0,
      request: JSON.stringify({ body: request.body.toString('base64'), contentType: request.contentType ?? 'application/json' }),
      result: null, error: null, created_at: Date.now(), finished_at: null,
    }).execute());
    return this.invocation(namespace, name, id);
  }

  /** One attempt of an async invocation; throws (for a retry) when the function failed. */
  async runInvocation(id: string, attempt: number, lastAttempt: boolean): Promise<void> {
    const row = await this.db.kysely.selectFrom('invocations as i').innerJoin('functions as f', 'f.id', 'i.function_id')
      .select(['i.id', 'i.request', 'f.namespace', 'f.name']).where('i.id', '=', id).executeTakeFirst();
    if (!row) return; // the function was deleted
    const request = JSON.parse(row.request) as { body: string; contentType: string };
    await this.db.write((trx) => trx.updateTable('invocations').set({ status: 'running', attempts: attempt }).where('id', '=', id).execute());
    try {
      const result = await this.invoke(row.namespace, row.name, {
        method: 'POST', path: '/invoke', body: Buffer.from(request.body, 'base64'),
        headers: { 'content-type': request.contentType }, invokeType: 'async', requestId: id,
      }) as InvokeResult;
      if (result.statusCode >= 500) throw new FunctionFailedError(`the function answered ${result.statusCode}`);
      const headers = Object.fromEntries(Object.entries(result.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v]));
      await this.db.write((trx) => trx.updateTable('invocations').set({
        status: 'succeeded', revision: result.revision, finished_at: Date.now(), error: null,
        result: JSON.stringify({ statusCode: result.statusCode, headers, body: result.body.toString('base64'), isBase64Encoded: true }),
      }).where('id', '=', id).execute());
    } catch (error) {
      const message = (error as Error).message;
      await this.db.write((trx) => trx.updateTable('invocations').set({
        status: lastAttempt || error instanceof FunctionNotFoundError ? 'failed' : 'queued', error: message, finished_at: lastAttempt ? Date.now() : null,
      }).where('id', '=', id).execute());
      if (error instanceof FunctionNotFoundError) return;
      throw error;
    }
  }

  async invocation(namespace: string, name: string, id: string): Promise<InvocationView> {
    const fn = await this.find(namespace, name);
    const row = await this.db.kysely.selectFrom('invocations').selectAll().where('id', '=', id).where('function_id', '=', fn.id).executeTakeFirst();
    if (!row) throw new FunctionNotFoundError(`no invocation "${id}" of "${name}"`);
    return {
      id: row.id, function: name, revision: row.revision, status: row.status as InvocationView['status'], attempts: row.attempts,
      createdAt: iso(row.created_at), ...(row.finished_at ? { finishedAt: iso(row.finished_at) } : {}),
      ...(row.result ? { result: JSON.parse(row.result) as InvocationView['result'] } : {}),
      ...(row.error && row.status !== 'succeeded' ? { error: row.error } : {}),
    };
  }

  // ---- per-function keys -----------------------------------------------------------------------

  async createKey(namespace: string, name: string, keyName: string): Promise<{ id: string; name: string; key: string; createdAt: string }> {
    const fn = await this.find(namespace, name);
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const now = Date.now();
    await this.db.write((trx) => trx.insertInto('function_keys').values({ id, function_id: fn.id, name: keyName, secret_hash: sha256(secret), created_at: now, last_used_at: null }).execute());
    return { id, name: keyName, key: `${keyPrefix}${id}.${secret}`, createdAt: iso(now) };
  }

  async listKeys(namespace: string, name: string): Promise<Array<{ id: string; name: string; createdAt: string; lastUsedAt: string | null }>> {
    const fn = await this.find(namespace, name);
    const rows = await this.db.kysely.selectFrom('function_keys').selectAll().where('function_id', '=', fn.id).orderBy('created_at').execute();
    return rows.map((r) => ({ id: r.id, name: r.name, createdAt: iso(r.created_at), lastUsedAt: r.last_used_at ? iso(r.last_used_at) : null }));
  }

  async deleteKey(namespace: string, name: string, id: string): Promise<void> {
    const fn = await this.find(namespace, name);
    const result = await this.db.write((trx) => trx.deleteFrom('function_keys').where('id', '=', id).where('function_id', '=', fn.id).executeTakeFirst());
    if (Number(result.numDeletedRows) === 0) throw new FunctionNotFoundError(`no key "${id}" on "${name}"`);
    for (const [k, v] of this.keyCache) if (v.functionId === fn.id) this.keyCache.delete(k);
  }

  /**
   * `checkKey` from its cache only: true or false when this token was verified in the last
   * moments (and not revoked since), undefined when it would need the database.
   */
  checkedKey(functionId: string, authorization: string | undefined): boolean | undefined {
    if (!authorization?.startsWith(`Bearer ${keyPrefix}`)) return false;
    const cached = this.keyCache.get(authorization.slice(7 + keyPrefix.length));
    return cached && cached.until > Date.now() ? cached.functionId === functionId : undefined;
  }

  /** Whether `authorization` carries a key of this function (cached briefly: it is on the hot path). */
  async checkKey(functionId: string, authorization: string | undefined): Promise<boolean> {
    if (!authorization?.startsWith(`Bearer ${keyPrefix}`)) return false;
    const token = authorization.slice(7 + keyPrefix.length);
    const cached = this.keyCache.get(token);
    if (cached && cached.until > Date.now()) return cached.functionId === functionId;
    const dot = token.indexOf('.');
    if (dot < 0) return false;
    const row = await this.db.kysely.selectFrom('function_keys').select(['id', 'function_id', 'secret_hash']).where('id', '=', token.slice(0, dot)).executeTakeFirst();
    if (!row) return false;
    const ok = timingSafeEqual(Buffer.from(row.secret_hash, 'hex'), Buffer.from(sha256(token.slice(dot + 1)), 'hex'));
    if (!ok) return false;
    this.keyCache.set(token, { functionId: row.function_id, until: Date.now() + 10_000 });
    void this.db.write((trx) => trx.updateTable('function_keys').set({ last_used_at: Date.now() }).where('id', '=', row.id).execute()).catch(() => undefined);
    return row.function_id === functionId;
  }

  /** Where instance output of a function is kept. */
  logsOf(namespace: string, name: string, tail?: number): Promise<LogLine[]> {
    return this.find(namespace, name).then(() => this.deps.logs.read(namespace, name, tail));
  }

  followLogs(namespace: string, name: string, listener: (line: LogLine) => void): () => void {
    return this.deps.logs.follow(namespace, name, listener);
  }
}

function revisionRow(functionId: string, number: number, config: StoredConfig, digest: string | null, now: number): FunctionRevisionTable {
  return { function_id: functionId, number, image: config.image, image_digest: digest, config: JSON.stringify(config), status: 'deploying', reason: null, output: null, created_at: now, ready_at: null };
}

function revisionView(r: FunctionRevisionTable, active: number | null): RevisionView {
  return {
    number: r.number, image: r.image, imageDigest: r.image_digest, status: r.status as RevisionView['status'],
    ...(r.reason ? { reason: r.reason } : {}), ...(r.output ? { output: JSON.parse(r.output) as string[] } : {}),
    active: r.number === active, createdAt: iso(r.created_at), ...(r.ready_at ? { readyAt: iso(r.ready_at) } : {}),
  };
}

function poolSettings(config: StoredConfig, startTimeoutMs = 30_000) {
  return {
    minInstances: config.minInstances, maxInstances: config.maxInstances, concurrency: config.concurrency,
    idleMs: config.idleSeconds * 1000, startTimeoutMs,
  };
}

function secretContext(functionId: string, name: string): string {
  return `function:${functionId}:env:${name}`;
}

/** Stable JSON for comparing configs (sealed secrets compared by name only). */
function canonical(config: StoredConfig): unknown {
  const sorted = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(sorted);
    if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sorted((value as Record<string, unknown>)[k])]));
    return value;
  };
  return sorted({ ...config, secretEnv: Object.keys(config.secretEnv).sort() });
}

function sameKeys(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  return JSON.stringify(Object.keys(a).sort()) === JSON.stringify(Object.keys(b).sort());
}

/** An answer in the gateway envelope becomes a real HTTP response; anything else passes as is. */
export function decodeEnvelope(status: number, headers: Record<string, string | string[]>, body: Buffer, revision: number): InvokeResult {
  const type = String(headers['content-type'] ?? '');
  if (status === 200 && (type.includes('json') || type === '') && body.length > 0 && body[0] === 0x7b) {
    try {
      const parsed = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      if (typeof parsed.statusCode === 'number' && Number.isInteger(parsed.statusCode) && parsed.statusCode >= 100 && parsed.statusCode <= 599 && 'body' in parsed) {
        const out: Record<string, string | string[]> = {};
        if (parsed.headers && typeof parsed.headers === 'object') {
          for (const [k, v] of Object.entries(parsed.headers as Record<string, unknown>)) {
            if (Array.isArray(v)) out[k.toLowerCase()] = v.map(String);
            else if (v !== undefined && v !== null) out[k.toLowerCase()] = String(v);
          }
        }
        const raw = parsed.body;
        const text = typeof raw === 'string' ? raw : raw === undefined || raw === null ? '' : JSON.stringify(raw);
        const bytes = parsed.isBase64Encoded === true ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8');
        return { statusCode: parsed.statusCode, headers: out, body: bytes, revision };
      }
    } catch {
      // Not JSON after all: passed through.
    }
  }
  const passed: Record<string, string | string[]> = {};
  for (const name of ['content-type', 'cache-control', 'set-cookie', 'location', 'etag', 'last-modified']) {
    const v = headers[name];
    if (v !== undefined) passed[name] = v;
  }
  return { statusCode: status, headers: passed, body, revision };
}

