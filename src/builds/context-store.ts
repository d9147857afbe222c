/**
 * @module builds/context-store
 * Where an image build's uploaded inputs wait for the worker that runs it: the context folder
 * of an upload build, and the separately uploaded Dockerfile of a git build. The worker may be
 * on another replica than the one that received the upload (the job queue is shared).
 *
 *   <workDir>/contexts/
 *   ├── <build id>/               the context: extracted and checked by the route, or fetched by the worker
 *   ├── <build id>.dockerfile     a git build's uploaded Dockerfile
 *   └── .fetch-<build id>-<rand>/ a fetch in progress, renamed into place once complete
 *
 * Two kinds, chosen in the composition (main.ts):
 *   - `local` (storage fs, one server): the folder is all there is; the worker on this host uses it.
 *   - `shared` (storage s3, replicas): before the build is queued the folder is packed (tar,
 *     portable: no owner ids) into the blob store's object area, which every replica reads:
 *
 *       build-contexts/<build id>.tar          the context folder
 *       build-contexts/<build id>.dockerfile   a git build's uploaded Dockerfile
 *
 *     Local folders are then only working copies: the receiving replica drops its own once the
 *     objects are stored (another replica may run the build, and nothing would ever remove it
 *     there), and a worker fetches the context into its folder, extracted through the same
 *     checks and limits as an upload.
 * When the build ends, its folder and objects are removed.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { create as packTar } from 'tar';
import { extractTarball } from './context-tarball.js';

/** Largest uploaded Dockerfile (the route's limit; a packed context holds one besides the upload). */
export const maxDockerfileBytes = 1024 * 1024;

/** What the shared kind uses of the blob store's object area (storage's `ObjectArea` fits). */
export interface ContextObjects {
  put(key: string, body: Buffer): Promise<void>;
  /** Atomic: the object is visible only once the whole stream is stored. */
  putStream(key: string, source: Readable): Promise<void>;
  get(key: string): Promise<Buffer | null>;
  getStream(key: string): Promise<Readable | null>;
  delete(keys: string[]): Promise<void>;
}

export interface BuildContextStore {
  /** The build's local context folder (the route extracts the upload into it; the worker builds in it). */
  dir(buildId: string): string;
  /**
   * Makes what the route left in `dir(id)` (and `<dir>.dockerfile`) reach whichever worker runs
   * the build. Called after the upload was checked and before the build is queued: once it
   * returns, the inputs are durable.
   */
  publish(buildId: string): Promise<void>;
  /** The context folder of an upload build, fetched when it is not here; `ContextGoneError` when nowhere. */
  prepare(buildId: string): Promise<string>;
  /** A git build's uploaded Dockerfile; undefined when none was uploaded. */
  uploadedDockerfile(buildId: string): Promise<Buffer | undefined>;
  /** The build went back to the queue (shutdown, lease lost): drops what this host need not keep. */
  release(buildId: string): Promise<void>;
  /** The build ended (or was never queued): its local files and shared objects go. */
  remove(buildId: string): Promise<void>;
  /** At start, before any route or worker runs: drops working copies a crash left behind. */
  recover(): Promise<void>;
}

export class ContextGoneError extends Error {
  override name = 'ContextGoneError';
  constructor(readonly buildId: string) {
    super('the uploaded build context is gone (it is removed once a build ends)');
  }
}

export interface ContextStoreOptions {
  /** `<workDir>`: the folders go under `<workDir>/contexts`. */
  workDir: string;
  /** `builds.maxContextBytes`: the limit a fetched context is extracted under, as its upload was. */
  maxContextBytes: number;
}

/** `local`: the folder only (one server). */
export function createLocalContextStore(options: ContextStoreOptions): BuildContextStore {
  return new LocalContextStore(options);
}

/** `shared`: the folder, packed into `objects` before the build is queued (replicas). */
export function createSharedContextStore(options: ContextStoreOptions, objects: ContextObjects): BuildContextStore {
  return new SharedContextStore(options, objects);
}

class LocalContextStore implements BuildContextStore {
  protected readonly root: string;

  constructor(protected readonly options: ContextStoreOptions) {
    this.root = path.join(options.workDir, 'contexts');
  }

  dir(buildId: string): string {
    return path.join(this.root, buildId);
  }

  async publish(_buildId: string): Promise<void> {}

  async prepare(buildId: string): Promise<string> {
    const dir = this.dir(buildId);
    if (!(await isFolder(dir))) throw new ContextGoneError(buildId);
    return dir;
  }

  async uploadedDockerfile(buildId: string): Promise<Buffer | undefined> {
    return readIfThere(`${this.dir(buildId)}.dockerfile`);
  }

  /** The folder stays for the next attempt (on this same host). */
  async release(_buildId: string): Promise<void> {}

  async remove(buildId: string): Promise<void> {
    await this.removeLocal(buildId);
  }

  async recover(): Promise<void> {}

  protected async removeLocal(buildId: string): Promise<void> {
    await rm(this.dir(buildId), { recursive: true, force: true });
    await rm(`${this.dir(buildId)}.dockerfile`, { force: true });
  }
}

class SharedContextStore extends LocalContextStore {
  constructor(options: ContextStoreOptions, private readonly objects: ContextObjects) {
    super(options);
  }

  private tarKey(buildId: string): string {
    return `build-contexts/${buildId}.tar`;
  }

  private dockerfileKey(buildId: string): string {
    return `build-contexts/${buildId}.dockerfile`;
  }

  override async publish(buildId: string): Promise<void> {
    const dir = this.dir(buildId);
    // A git build's folder is empty (the clone fills it on the worker): nothing to pack.
    const entries = await readdir(dir).catch(() => [] as string[]);
    if (entries.length > 0) await this.objects.putStream(this.tarKey(buildId), Readable.from(packTar({ cwd: dir, portable: true }, entries)));
    const dockerfile = await readIfThere(`${dir}.dockerfile`);
    if (dockerfile) await this.objects.put(this.dockerfileKey(buildId), dockerfile);
    await this.removeLocal(buildId);
  }

  override async prepare(buildId: string): Promise<string> {
    const dir = this.dir(buildId);
    // A folder here is complete: fetches are renamed into place.
    if (await isFolder(dir)) return dir;
    const body = await this.objects.getStream(this.tarKey(buildId));
    if (!body) throw new ContextGoneError(buildId);
    await mkdir(this.root, { recursive: true });
    const temp = path.join(this.root, `.fetch-${buildId}-${randomBytes(4).toString('hex')}`);
    try {
      // The upload's checks again: the object area is trusted no more than the upload was.
      await extractTarball(body, temp, { maxBytes: this.options.maxContextBytes + maxDockerfileBytes });
      await rename(temp, dir);
    } finally {
      body.destroy();
      await rm(temp, { recursive: true, force: true });
    }
    return dir;
  }

  override async uploadedDockerfile(buildId: string): Promise<Buffer | undefined> {
    return (await super.uploadedDockerfile(buildId)) ?? (await this.objects.get(this.dockerfileKey(buildId))) ?? undefined;
  }

  /** The next attempt (here or elsewhere) fetches again; a copy left here would never be removed. */
  override async release(buildId: string): Promise<void> {
    await this.removeLocal(buildId);
  }

  override async remove(buildId: string): Promise<void> {
    await this.removeLocal(buildId);
    await this.objects.delete([this.tarKey(buildId), this.dockerfileKey(buildId)]);
  }

  override async recover(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }
}

async function isFolder(dir: string): Promise<boolean> {
  return (await stat(dir).catch(() => undefined))?.isDirectory() ?? false;
}

async function readIfThere(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
