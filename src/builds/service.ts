/**
 * @module builds/service
 * Builds as durable jobs: an image from a Dockerfile and an uploaded context, or a component
 * from a git repository's build spec. Submitting records a `builds` row and enqueues a job; a
 * worker (JobQueue, concurrency from config) runs it through the BuildDriver with logs
 * streamed live and kept, pushes the result into Slipway's own registry, and records the
 * digest and the time of each phase (clone, build, push). A restart re-queues or fails what
 * was running — never leaves it "running".
 */
import { SlipwayError } from '../http/error-catalog.js';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, realpath, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AccessService, Principal } from '../auth/access.js';
import type { Config } from '../config/config.js';
import type { ExternalRegistries } from '../credentials/service.js';
import type { NamespaceSecrets } from '../vault/secrets.js';
import type { Database } from '../db/db.js';
import type { JobQueueApi } from '../db/job-queue.js';
import type { JobStatus, Tables } from '../db/schema.js';
import { sql, type Kysely } from 'kysely';
import type { ContentReader } from '../registry/content-reader.js';
import { RegistryError } from '../registry/errors.js';
import type { ManifestService } from '../registry/manifest-service.js';
import type { UploadService } from '../registry/upload-service.js';
import type { BuildDriver } from './build-driver.js';
import type { BuildContextStore } from './context-store.js';
import { resolveBaseImages, registryHostOfImage } from './base-resolution.js';
import { formatBuildSpecWarning, readBuildSpec } from './build-spec.js';
import { findBuildSpec } from './build-spec-file.js';
import { componentLayer, pushComponent } from './component-artifact.js';
import { cloneRepository } from '../git/clone.js';
import type { LogStore, LogFollower } from '../logs/log-store.js';
import { checkTag, componentRepository, componentTag, imageRepository, NamingError } from './naming.js';

export type BuildKind = 'image' | 'component';

export interface BuildView {
  id: string;
  namespace: string;
  kind: BuildKind;
  status: JobStatus;
  component: string | null;
  branch: string | null;
  tag: string | null;
  architecture: string;
  source: Record<string, unknown>;
  imageName: string | null;
  digest: string | null;
  pullCommand: string | null;
  errorMessage: string | null;
  requestedBy: string | null;
  linuxUsername: string | null;
  githubUsername: string | null;
  phases: Record<string, number>;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface Requester {
  principal: Principal | null;
  linuxUsername?: string;
  githubUsername?: string;
}

export class BuildInputError extends SlipwayError {
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}
export class BuildNotFoundError extends SlipwayError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}

/** What the build service uses of the durable queue (the `jobs` table is db/job-queue's). */
export type BuildQueue = Pick<JobQueueApi, 'enqueue' | 'cancel' | 'getMany'>;

/** What a build row records besides its identity and requester. */
interface BuildRowFields { component: string | null; branch: string | null; tag: string | null; architecture: string; source: Record<string, unknown>; image_name: string }

interface JobPayload {
  buildId: string;
}

const terminal = new Set<JobStatus>(['succeeded', 'failed', 'cancelled']);

export interface BuildServiceDeps {
  db: Database;
  queue: BuildQueue;
  driver: BuildDriver;
  logs: LogStore;
  /** `reads`: the registry's read path with pull-through, so `FROM <proxy ns>/…` resolves here (fetched on first use). */
  registry: { uploads: UploadService; manifests: ManifestService; reads?: Pick<ContentReader, 'manifest'> };
  config: Config['builds'];
  /** Folder for work trees (`<dataDir>/builds`). */
  workDir: string;
  /** Where uploaded contexts wait for their worker (local folder, or shared with other replicas). */
  contexts: BuildContextStore;
  /** `host:port` of Slipway's registry as builds and clients reach it. */
  registryHost: () => string;
  /** Present when access control is on: builds push with a short-lived key of the requester. */
  access?: AccessService;
  registries?: ExternalRegistries;
  /** The namespace's named secrets (build secrets); present with access control on. */
  secrets?: NamespaceSecrets;
  /** Metrics (main.ts): a build ended, with its run time and the time it waited in the queue. */
  onBuildFinished?(outcome: 'succeeded' | 'failed' | 'cancelled', runSeconds: number, waitSeconds: number): void;
}

export class BuildService {
  private readonly waiters = new Map<string, Set<() => void>>();

  constructor(private readonly deps: BuildServiceDeps) {}

  architectures(): string[] {
    return Object.keys(this.deps.config.architectures);
  }

  private architecture(name: string) {
    const found = this.deps.config.architectures[name];
    if (!found) throw new BuildInputError(`unknown architecture "${name}"; allowed: ${this.architectures().join(', ')}`);
    return found;
  }

  /** The local folder the route puts an image build's upload into (see context-store.ts). */
  contextDir(buildId: string): string {
    return this.deps.contexts.dir(buildId);
  }

  /** Drops the uploaded inputs of a build that was not queued after all (the route failed). */
  discardContext(buildId: string): Promise<void> {
    return this.deps.contexts.remove(buildId);
  }

  newBuildId(): string {
    return `b_${randomBytes(9).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x')}`;
  }

  /** Records and enqueues an image build whose context is already in `contextDir(id)`. */
  async submitImage(namespace: string, id: string, input: { component: string; branch: string; architecture: string; tag?: string; buildArgs?: Record<string, string>; dockerfile: string; git?: { url: string; ref?: string; commit?: string }; secrets?: string[] }, requester: Requester): Promise<BuildView> {
    this.architecture(input.architecture);
    if (input.secrets?.length) {
      if (!this.deps.secrets) throw new BuildInputError('build secrets need access control (and its vault) turned on');
      const known = new Set((await this.deps.secrets.list(namespace)).map((s) => s.name));
      const missing = input.secrets.filter((name) => !known.has(name));
      if (missing.length > 0) throw new BuildInputError(`secrets: namespace "${namespace}" has no secret ${missing.map((m) => `"${m}"`).join(', ')}`);
    }
    const template = await this.imageTemplate(namespace);
    let repository: string;
    try {
      repository = imageRepository(namespace, template, input.component, input.branch);
      checkTag(input.tag ?? 'latest');
    } catch (error) {
      if (error instanceof NamingError) throw new BuildInputError(error.message);
      throw error;
    }
    await this.pushable(repository);
    const imageName = `${this.deps.registryHost()}/${repository}:${input.tag ?? 'latest'}`;
    // Durable before it is queued: any replica's worker may claim the build.
    await this.deps.contexts.publish(id);
    return this.record(namespace, id, 'image', {
      component: input.component, branch: input.branch, tag: input.tag ?? 'latest', architecture: input.architecture,
      source: input.git
        ? { type: 'git', ...input.git, dockerfile: input.dockerfile, buildArgs: input.buildArgs ?? {}, secrets: input.secrets ?? [] }
        : { type: 'upload', dockerfile: input.dockerfile, buildArgs: input.buildArgs ?? {}, secrets: input.secrets ?? [] },
      image_name: imageName,
    }, requester);
  }

  /** Records and enqueues a component build; a build of the same one already under way is returned instead. */
  async submitComponent(namespace: string, input: { url: string; component: string; tag: string; architecture: string }, requester: Requester): Promise<BuildView> {
    this.architecture(input.architecture);
    let repository: string;
    let reference: string;
    try {
      repository = componentRepository(namespace, input.component);
      reference = componentTag(input.tag, input.architecture);
    } catch (error) {
      if (error instanceof NamingError) throw new BuildInputError(error.message);
      throw error;
    }
    await this.pushable(repository);
    // Check and insert under one lock on the component's key: parallel requests (on this or
    // another replica) for a missing component start one build, and the rest wait for it.
    const { db } = this.deps;
    const id = this.newBuildId();
    const existing = await db.write(async (trx) => {
      await db.lockKey(trx, `builds:component:${namespace}:${input.component}:${input.tag}:${input.architecture}`);
      const running = await trx.selectFrom('builds').select('id')
        .where('namespace', '=', namespace).where('kind', '=', 'component').where('component', '=', input.component)
        .where('tag', '=', input.tag).where('architecture', '=', input.architecture).where('status', 'in', ['queued', 'running'])
        .executeTakeFirst();
      if (running) return running.id;
      await this.insertRow(trx, namespace, id, 'component', {
        component: input.component, branch: null, tag: input.tag, architecture: input.architecture,
        source: { type: 'git', url: input.url, ref: input.tag }, image_name: `${this.deps.registryHost()}/${repository}:${reference}`,
      }, requester);
      return undefined;
    });
    if (existing) return this.get(namespace, existing);
    return this.enqueue(namespace, id);
  }

  /** A build whose push the registry would refuse (a pull-through namespace) is refused before it is queued. */
  private async pushable(repository: string): Promise<void> {
    try {
      await this.deps.registry.manifests.assertWritable(repository);
    } catch (error) {
      if (error instanceof RegistryError && error.code === 'DENIED') throw new SlipwayError('FORBIDDEN', error.message, error.detail);
      throw error;
    }
  }

  private async record(namespace: string, id: string, kind: BuildKind, fields: BuildRowFields, requester: Requester): Promise<BuildView> {
    await this.deps.db.write((trx) => this.insertRow(trx, namespace, id, kind, fields, requester));
    return this.enqueue(namespace, id);
  }

  private async insertRow(trx: Kysely<Tables>, namespace: string, id: string, kind: BuildKind, fields: BuildRowFields, requester: Requester): Promise<void> {
    await trx.insertInto('builds').values({
      id, namespace, kind, job_id: id, status: 'queued', component: fields.component, branch: fields.branch, tag: fields.tag,
      architecture: fields.architecture, source: JSON.stringify(fields.source), image_name: fields.image_name, digest: null,
      error_message: null, requested_by: requester.principal?.name ?? null, linux_username: requester.linuxUsername ?? null,
      github_username: requester.githubUsername ?? null, created_at: Date.now(), started_at: null, finished_at: null,
    }).execute();
  }

  private async enqueue(namespace: string, id: string): Promise<BuildView> {
    const payload: JobPayload = { buildId: id };
    await this.deps.queue.enqueue('builds', payload, { id, timeoutMs: this.deps.config.timeout, maxAttempts: 2 });
    return this.get(namespace, id);
  }

  async get(namespace: string, id: string): Promise<BuildView> {
    const row = await this.deps.db.kysely.selectFrom('builds').selectAll().where('id', '=', id).where('namespace', '=', namespace).executeTakeFirst();
    if (!row) throw new BuildNotFoundError(`no build "${id}" in "${namespace}"`);
    return view(row);
  }

  async list(namespace: string, filter: { kind?: BuildKind; component?: string; status?: JobStatus; limit?: number; repository?: string; source?: 'git' | 'upload' } = {}): Promise<BuildView[]> {
    let query = this.deps.db.kysely.selectFrom('builds').selectAll().where('namespace', '=', namespace);
    if (filter.kind) query = query.where('kind', '=', filter.kind);
    if (filter.component) query = query.where('component', '=', filter.component);
    if (filter.status) query = query.where('status', '=', filter.status);
    // image_name is `host/<repository>:<tag>`; the source JSON starts with its type.
    if (filter.repository) query = query.where(sql<boolean>`image_name like ${`%/${likeEscape(filter.repository)}:%`} escape '!'`);
    if (filter.source) query = query.where('source', 'like', `{"type":"${filter.source}"%`);
    const rows = await query.orderBy('created_at', 'desc').limit(Math.min(filter.limit ?? 50, 500)).execute();
    return rows.map(view);
  }

  /** The newest build of an image or component matching the filter, or null. */
  async latest(namespace: string, kind: BuildKind, filter: { component: string; branch?: string; tag?: string; architecture: string }): Promise<BuildView | null> {
    let query = this.deps.db.kysely.selectFrom('builds').selectAll().where('namespace', '=', namespace).where('kind', '=', kind)
      .where('component', '=', filter.component).where('architecture', '=', filter.architecture);
    if (filter.branch !== undefined) query = query.where('branch', '=', filter.branch);
    if (filter.tag !== undefined) query = query.where('tag', '=', filter.tag);
    const row = await query.orderBy('created_at', 'desc').limit(1).executeTakeFirst();
    return row ? view(row) : null;
  }

  /** The newest successful component build's layer (its tar.gz), or null. */
  async componentArchive(namespace: string, component: string, tag: string, architecture: string): Promise<{ build: BuildView; repository: string; reference: string; layer: { digest: string; size: number } } | null> {
    const repository = componentRepository(namespace, component);
    const reference = componentTag(tag, architecture);
    const build = await this.deps.db.kysely.selectFrom('builds').selectAll().where('namespace', '=', namespace).where('kind', '=', 'component')
      .where('component', '=', component).where('tag', '=', tag).where('architecture', '=', architecture).where('status', '=', 'succeeded')
      .orderBy('created_at', 'desc').limit(1).executeTakeFirst();
    if (!build?.digest) return null;
    try {
      const layer = componentLayer(await this.deps.registry.manifests.content(repository, build.digest));
      return layer ? { build: view(build), repository, reference, layer } : null;
    } catch {
      return null; // deleted from the registry since: build it again
    }
  }

  async cancel(namespace: string, id: string, actor?: string): Promise<BuildView> {
    const build = await this.get(namespace, id);
    if (terminal.has(build.status)) return build;
    // A queued build is cancelled at once (no worker will see its inputs); a running one when its worker sees the request.
    if ((await this.deps.queue.cancel(id)) === 'cancelled' && build.kind === 'image') await this.deps.contexts.remove(id);
    await this.deps.db.write((trx) => trx.updateTable('builds').set({ status: 'cancelled', finished_at: Date.now(), error_message: `cancelled${actor ? ` by ${actor}` : ''}` })
      .where('id', '=', id).where('status', '=', 'queued').execute());
    this.notify(id);
    return this.get(namespace, id);
  }

  logText(id: string): Promise<string> {
    return this.deps.logs.read(id);
  }

  isLogLive(id: string): boolean {
    return this.deps.logs.isLive(id);
  }

  followLog(id: string, follower: LogFollower): Promise<() => void> {
    return this.deps.logs.follow(id, follower);
  }

  /** Resolves when the build reaches a final state (or `signal` aborts). */
  async waitFor(namespace: string, id: string, signal?: AbortSignal): Promise<BuildView> {
    for (;;) {
      const build = await this.get(namespace, id);
      if (terminal.has(build.status) || signal?.aborted) return build;
      await new Promise<void>((resolve) => {
        const set = this.waiters.get(id) ?? new Set();
        this.waiters.set(id, set);
        const done = () => {
          clearTimeout(timer);
          set.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        // Also poll: another replica may run the build.
        const timer = setTimeout(done, 1000);
        set.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  private notify(id: string): void {
    for (const wake of this.waiters.get(id) ?? []) wake();
  }

  /** Builds left queued/running by a crash get the state their job ended in. */
  async reconcile(): Promise<void> {
    await this.deps.contexts.recover();
    const open = await this.deps.db.kysely.selectFrom('builds').select(['id', 'job_id']).where('status', 'in', ['queued', 'running']).execute();
    const jobs = new Map((await this.deps.queue.getMany(open.map((b) => b.job_id))).map((job) => [job.id, job]));
    for (const build of open) {
      const job = jobs.get(build.job_id);
      if (!job || !terminal.has(job.status)) continue;
      await this.deps.db.write((trx) => trx.updateTable('builds').set({ status: job.status, error_message: job.error ?? null, finished_at: job.finishedAt ?? Date.now() })
        .where('id', '=', build.id).execute());
    }
  }

  // ---- the worker side ----

  /** Runs one build job; throws with the reason on failure (the queue records it). */
  async run(payload: JobPayload, signal: AbortSignal): Promise<{ digest: string }> {
    const row = await this.deps.db.kysely.selectFrom('builds').selectAll().where('id', '=', payload.buildId).executeTakeFirst();
    if (!row) throw new Error(`build ${payload.buildId} has no record`);
    const log = await this.deps.logs.start(row.id);
    const phases: Record<string, number> = {};
    const startedAt = Date.now();
    const finished = (outcome: 'succeeded' | 'failed' | 'cancelled') =>
      this.deps.onBuildFinished?.(outcome, (Date.now() - startedAt) / 1000, Math.max(0, startedAt - row.created_at) / 1000);
    await this.update(row.id, { status: 'running', started_at: startedAt, error_message: null });
    log(`build ${row.id} (${row.kind} ${row.component ?? ''}) started on ${new Date().toISOString()}`);
    let pushKey: { id: string; key: string } | undefined;
    try {
      const requester = row.requested_by && this.deps.access ? await this.deps.access.findByName(row.requested_by) : null;
      if (this.deps.access && !requester) throw new Error(`the requesting user "${row.requested_by}" no longer exists`);
      if (requester && this.deps.access) {
        // Pushes and FROM pulls run with the requester's rights, through a key that lives as long as the build.
        const created = await this.deps.access.createKey(requester, `build ${row.id}`, ['pull', 'push'], this.deps.config.timeout + 600_000);
        pushKey = { id: created.id, key: created.key };
      }
      const registryAuth = pushKey && requester ? { username: requester.name, password: pushKey.key } : undefined;
      const insecureRegistries = [this.deps.registryHost(), ...this.deps.config.insecureRegistries];
      const arch = this.architecture(row.architecture);
      const source = JSON.parse(row.source) as { type: string; url?: string; ref?: string; commit?: string; dockerfile?: string; buildArgs?: Record<string, string>; secrets?: string[] };
      let digest: string;
      if (row.kind === 'image') {
        const contextDir = this.contextDir(row.id);
        if (source.type === 'git') {
          // The uploaded Dockerfile (if any) waits beside the context; the clone needs an empty folder.
          const uploaded = await this.deps.contexts.uploadedDockerfile(row.id);
          await rm(contextDir, { recursive: true, force: true });
          const cloneStarted = Date.now();
          const cloned = await cloneRepository({ url: source.url!, ref: source.ref, commit: source.commit, destDir: contextDir, credentials: await this.gitCredentials(row.namespace, source.url!), signal }, log);
          phases.clone = Date.now() - cloneStarted;
          log(`cloned ${source.url} at ${cloned.ref} (${cloned.commit})`);
          if (uploaded) await writeFile(path.join(contextDir, source.dockerfile!), uploaded);
        } else {
          await this.deps.contexts.prepare(row.id);
        }
        const started = Date.now();
        const dockerfilePath = path.join(contextDir, source.dockerfile ?? 'Dockerfile');
        const resolved = await resolveBaseImages(await readFile(dockerfilePath, 'utf8'), this.deps.registryHost(), (repository, reference) => this.existsHere(repository, reference));
        await writeFile(dockerfilePath, resolved.text);
        const extraAuths = await this.loginsFor(row.namespace, resolved.external, log);
        // Secret values live only in memory and the driver's private 0600 files for this build.
        const secrets = source.secrets?.length && this.deps.secrets
          ? (await this.deps.secrets.reveal(row.namespace, source.secrets)).map((s) => ({ id: s.name, value: s.value }))
          : undefined;
        const result = await this.deps.driver.build({
          contextDir, dockerfile: source.dockerfile, buildArgs: source.buildArgs, platform: arch.platform,
          destination: row.image_name!, registryAuth, extraAuths, insecureRegistries, signal, secrets,
        }, log);
        Object.assign(phases, result.phases);
        phases.total = Date.now() - started;
        digest = result.digest;
      } else {
        digest = await this.buildComponent(row, source, arch.builderImage, { registryAuth, insecureRegistries, signal, log, phases });
      }
      await this.update(row.id, { status: 'succeeded', digest, finished_at: Date.now(), phases: JSON.stringify(phases) });
      log(`build succeeded: ${row.image_name} @ ${digest}`);
      finished('succeeded');
      return { digest };
    } catch (error) {
      const reason = signal.aborted ? (signal.reason as { kind?: string; message?: string } | undefined) : undefined;
      if (reason?.kind === 'shutdown' || reason?.kind === 'lease-lost') {
        // The job goes back to the queue (or to another worker): so does the build.
        log(`build interrupted (${reason.kind}); it will run again`);
        if (reason.kind === 'shutdown') await this.update(row.id, { status: 'queued', error_message: null });
        throw error;
      }
      const cancelled = reason?.kind === 'cancelled';
      const message = cancelled ? 'cancelled' : reason?.kind === 'timeout' ? `${reason.message} (builds.timeout)` : (error as Error).message;
      log(`build ${cancelled ? 'cancelled' : 'failed'}: ${message}`);
      await this.update(row.id, { status: cancelled ? 'cancelled' : 'failed', error_message: message, finished_at: Date.now(), phases: JSON.stringify(phases) });
      finished(cancelled ? 'cancelled' : 'failed');
      // A failed Dockerfile fails again: no retry (restarts are re-queued by the queue itself).
      throw Object.assign(error instanceof Error ? error : new Error(String(error)), { retryable: false });
    } finally {
      if (pushKey) await this.deps.access?.revokeKey(pushKey.id, null).catch(() => undefined);
      const requeued = signal.aborted && ['shutdown', 'lease-lost'].includes((signal.reason as { kind?: string } | undefined)?.kind ?? '');
      // The outcome stands even if removing its inputs fails (shared objects are only storage then).
      if (row.kind === 'image') await (requeued ? this.deps.contexts.release(row.id) : this.deps.contexts.remove(row.id))
        .catch((error: unknown) => log(`[slipway] removing the build's context failed: ${(error as Error).message}`));
      await this.deps.logs.finish(row.id);
      this.notify(row.id);
    }
  }

  private async buildComponent(row: { id: string; namespace: string; component: string | null; tag: string | null; architecture: string }, source: { url?: string; ref?: string },
    builderImage: string, options: { registryAuth?: { username: string; password: string }; insecureRegistries: string[]; signal: AbortSignal; log: (line: string) => void; phases: Record<string, number> }): Promise<string> {
    const work = path.join(this.deps.workDir, 'work', row.id);
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    try {
      const checkout = path.join(work, 'source');
      let started = Date.now();
      const cloned = await cloneRepository({ url: source.url!, ref: source.ref, destDir: checkout, signal: options.signal }, options.log);
      options.phases.clone = Date.now() - started;
      options.log(`cloned ${source.url} at ${cloned.ref} (${cloned.commit})`);
      const specFile = await findBuildSpec(checkout);
      if (!specFile) throw new Error('the repository has no build spec (build_spec.yaml, build_spec.yml or .slipway/build_spec.yaml)');
      const { spec, warnings } = readBuildSpec(await readFile(specFile, 'utf8'), { fileName: path.relative(await realpath(checkout), specFile) });
      for (const warning of warnings) options.log(formatBuildSpecWarning(warning));
      const binaries = spec.outputArtifacts.filter((a) => a.type === 'BINARY');
      if (binaries.length === 0) throw new Error('the build spec declares no outputArtifacts of type BINARY');
      const outputDir = path.join(work, 'outputs');
      await mkdir(outputDir, { recursive: true });
      started = Date.now();
      // The builder image resolves like FROM: Slipway's registry first.
      const image = (await resolveBaseImages(`FROM ${builderImage}`, this.deps.registryHost(), (repository, reference) => this.existsHere(repository, reference))).text.slice('FROM '.length);
      const own = image.startsWith(`${this.deps.registryHost()}/`);
      await this.deps.driver.runSteps({
        baseImage: image, contextDir: checkout, extraAuths: own ? undefined : await this.loginsFor(row.namespace, [image], options.log),
        steps: spec.steps.map((s) => ({ name: s.name, command: s.command, timeoutMs: s.timeoutInSeconds ? s.timeoutInSeconds * 1000 : undefined })),
        env: spec.env?.variables, outputs: binaries.map((a) => ({ name: a.name, path: a.location })), outputDir,
        // Slipway's own login only ever goes to Slipway's registry.
        registryAuth: own ? options.registryAuth : undefined, insecureRegistries: options.insecureRegistries, signal: options.signal,
      }, options.log);
      options.phases.build = Date.now() - started;
      started = Date.now();
      const files = await readdir(outputDir);
      const pushed = await pushComponent(this.deps.registry, componentRepository(row.namespace, row.component!), componentTag(row.tag!, row.architecture), outputDir, files, {
        component: row.component!, tag: row.tag!, architecture: row.architecture, source: source.url, revision: cloned.commit,
      });
      options.phases.push = Date.now() - started;
      return pushed.digest;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /**
   * Git credentials from the vault: the namespace's `basic` registry-credential record whose
   * prefix matches the repository URL's host and path (e.g. `git.example.com/team`).
   */
  private async gitCredentials(namespace: string, url: string): Promise<{ username: string; password: string } | undefined> {
    const match = /^https?:\/\/(?:[^@/]+@)?([^/]+\/[^?#]*)/i.exec(url);
    if (!match || !this.deps.registries) return undefined;
    const pathLike = match[1]!.replace(/\.git$/, '').toLowerCase();
    try {
      const login = await this.deps.registries.loginForImage(namespace, pathLike);
      return login ? { username: login.username, password: login.password } : undefined;
    } catch {
      return undefined; // not expressible as a prefix match: clone without credentials
    }
  }

  /** Whether `repository:reference` is in Slipway's own registry (FROM resolves here first). */
  private async existsHere(repository: string, reference: string): Promise<boolean> {
    try {
      const { reads, manifests } = this.deps.registry;
      if (reads) await reads.manifest(repository, reference);
      else await manifests.info(repository, reference);
      return true;
    } catch {
      return false;
    }
  }

  /** Logins for external images, from the namespace's registry credentials (longest prefix). */
  private async loginsFor(namespace: string, images: string[], log: (line: string) => void): Promise<Record<string, { username: string; password: string }>> {
    const auths: Record<string, { username: string; password: string }> = {};
    if (!this.deps.registries) return auths;
    for (const image of images) {
      const host = registryHostOfImage(image);
      if (!host || auths[host]) continue;
      const login = await this.deps.registries.loginForImage(namespace, image);
      if (login) {
        auths[host] = { username: login.username, password: login.password };
        log(`[slipway] using the namespace's credentials for ${host} to pull ${image}`);
      }
    }
    return auths;
  }

  private async update(id: string, fields: Partial<{ status: JobStatus; started_at: number; finished_at: number; digest: string; error_message: string | null; phases: string }>): Promise<void> {
    await this.deps.db.write((trx) => trx.updateTable('builds').set(fields).where('id', '=', id).execute());
    this.notify(id);
  }

  /** The namespace's image naming template; null returns to the server default. */
  async setImageNameTemplate(namespace: string, template: string | null): Promise<void> {
    if (template !== null) {
      try {
        imageRepository(namespace, template, 'component', 'branch');
      } catch (error) {
        throw new BuildInputError(`imageNameTemplate: ${(error as Error).message}`);
      }
    }
    const now = Date.now();
    await this.deps.db.write((trx) => trx.insertInto('namespace_settings').values({ namespace, image_name_template: template, updated_at: now })
      .onConflict((c) => c.column('namespace').doUpdateSet({ image_name_template: template, updated_at: now })).execute());
  }

  private async imageTemplate(namespace: string): Promise<string> {
    const row = await this.deps.db.kysely.selectFrom('namespace_settings').select('image_name_template').where('namespace', '=', namespace).executeTakeFirst();
    return row?.image_name_template ?? this.deps.config.imageNameTemplate;
  }
}

function view(row: { id: string; namespace: string; kind: BuildKind; status: JobStatus; component: string | null; branch: string | null; tag: string | null; architecture: string; source: string; image_name: string | null; digest: string | null; error_message: string | null; requested_by: string | null; linux_username: string | null; github_username: string | null; phases: string; created_at: number; started_at: number | null; finished_at: number | null }): BuildView {
  const imageName = row.image_name;
  return {
    id: row.id, namespace: row.namespace, kind: row.kind, status: row.status, component: row.component, branch: row.branch, tag: row.tag,
    architecture: row.architecture, source: JSON.parse(row.source) as Record<string, unknown>, imageName, digest: row.digest,
    pullCommand: imageName && row.kind === 'image' && row.status === 'succeeded' ? `podman pull --tls-verify=false ${imageName}` : null,
    errorMessage: row.error_message, requestedBy: row.requested_by, linuxUsername: row.linux_username, githubUsername: row.github_username,
    phases: JSON.parse(row.phases) as Record<string, number>,
    createdAt: new Date(row.created_at).toISOString(),
    startedAt: row.started_at ? new Date(row.started_at).toISOString() : null,
    finishedAt: row.finished_at ? new Date(row.finished_at).toISOString() : null,
  };
}

/** `%`, `_` and the escape character itself taken literally in a LIKE pattern (`escape '!'`). */
function likeEscape(text: string): string {
  return text.replace(/[!%_]/g, (c) => `!${c}`);
}
