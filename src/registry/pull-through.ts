/**
 * @module registry/pull-through
 * Pull-through cache: a namespace whose settings name an upstream registry
 * (registry/proxy-settings.ts) serves `<namespace>/<path>` from the upstream's `<path>`.
 *
 * - A manifest is fetched whole, its digest verified (against the digest asked for, or the
 *   upstream's `Docker-Content-Digest`), and only then stored and served; a mismatch is refused
 *   and nothing is stored.
 * - A blob is streamed to the client while it is written to an upload session and hashed; the
 *   last chunk is held back until the digest is verified and the blob recorded, so a client
 *   never receives a complete wrong blob (the connection is cut instead) and nothing is stored.
 * - A digest is immutable: once cached it is served locally. A tag is served locally for `ttl`
 *   after it was last confirmed; then a HEAD upstream confirms it (or the new manifest is
 *   fetched). When the upstream is unreachable, answers 5xx or fails verification, the cached
 *   copy is served; with nothing cached the pull fails with UPSTREAM_UNAVAILABLE.
 * - Concurrent first pulls of one manifest or blob in one process share one upstream fetch (the
 *   blob's later askers wait for it to be stored, then read the store); replicas fetch apart.
 * - Writes (manifest PUT, uploads) into a proxy namespace are refused with DENIED
 *   (registry/proxy-settings.ts; the upload and manifest services check it on every push path).
 */
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { BlobService } from './blob-service.js';
import { RegistryError } from './errors.js';
import { checkDigest, isDigest, type DigestAlgorithm } from './grammar.js';
import type { ManifestInfo, ManifestService } from './manifest-service.js';
import type { ProxySettings, ProxySettingsStore } from './proxy-settings.js';
import { readCapped, UpstreamClient, UpstreamUnreachableError, type UpstreamLogin } from './upstream-client.js';

/** Login material for an upstream, from the namespace's external registries (credentials part). */
export interface UpstreamLogins {
  /** `credentialsId` names a record; otherwise the longest prefix matching `image` (`host/path`), if any. */
  forUpstream(namespace: string, credentialsId: string | null, image: string): Promise<UpstreamLogin | null>;
}

export interface PullThroughOptions {
  db: Database;
  store: BlobStore;
  settings: ProxySettingsStore;
  manifests: ManifestService;
  blobs: BlobService;
  logins?: UpstreamLogins;
  maxManifestBytes: number;
  logger?: Pick<Logger, 'info' | 'warn' | 'error'>;
  upstreamTimeoutMs?: number;
  /** Whether a namespace exists (auth's); without it, mirror mode needs the `ns` query parameter. */
  namespaceExists?: (namespace: string) => Promise<boolean>;
}

const dockerHubHosts = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

export class PullThrough {
  private readonly clients = new Map<string, { key: string; client: UpstreamClient }>();
  /** Upstream fetches in flight in this process, by `repository@reference` (see `manifest`, `blob`). */
  private readonly manifestFlights = new Map<string, Promise<ManifestInfo>>();
  private readonly blobFlights = new Map<string, Promise<void>>();
  /** Namespace existence for mirror mode, memoised briefly (every GET/HEAD asks once mirrors exist). */
  private readonly namespaces = new Map<string, { at: number; exists: boolean }>();

  private readonly options: PullThroughOptions;

  constructor(options: PullThroughOptions) {
    this.options = { ...options };
  }

  /**
   * Auth's parts, once the composition root has opened auth (after the registry, whose reads
   * and writes other parts are built with): upstream logins from the namespace's external
   * registries, and which namespaces exist (for mirror mode).
   */
  useAuth(parts: Pick<PullThroughOptions, 'logins' | 'namespaceExists'>): void {
    this.options.logins = parts.logins;
    this.options.namespaceExists = parts.namespaceExists;
    this.clients.clear();
  }

  /**
   * Mirror mode: the proxy repository that an unprefixed upstream path stands for, or null.
   * `ns` is the upstream a mirror client names (containers/image sends `?ns=docker.io`);
   * without it, a name whose first component is no namespace goes to the first mirror proxy.
   */
  async mirrorName(repository: string, ns?: string): Promise<string | null> {
    const mirrors = await this.options.settings.mirrorsList();
    if (mirrors.length === 0) return null;
    if (ns !== undefined) {
      const named = mirrors.find((m) => m.mirrorOf === ns);
      return named ? `${named.namespace}/${repository}` : null;
    }
    const first = repository.split('/')[0]!;
    if (!this.options.namespaceExists || (await this.options.settings.get(first)) || (await this.namespaceExists(first))) return null;
    return `${mirrors[0]!.namespace}/${repository}`;
  }

  private async namespaceExists(namespace: string): Promise<boolean> {
    const memo = this.namespaces.get(namespace);
    if (memo && Date.now() - memo.at < 2_000) return memo.exists;
    const exists = await this.options.namespaceExists!(namespace);
    if (this.namespaces.size > 10_000) this.namespaces.clear();
    this.namespaces.set(namespace, { at: Date.now(), exists });
    return exists;
  }

  /** DENIED for a write into a proxy namespace (registry/proxy-settings.ts). */
  refuseWrite(repository: string): Promise<void> {
    return this.options.settings.refuseWrite(repository);
  }

  /** The manifest to serve, cached first where needed; null when the repository is not in a proxy namespace. */
  async manifest(repository: string, reference: string): Promise<ManifestInfo | null> {
    const target = await this.target(repository);
    if (!target) return null;
    const local = await this.local(repository, reference);
    const byDigest = isDigest(reference);
    if (local && byDigest) return local;
    if (local && !(await this.due(repository, reference, target.settings.ttlMs))) return local;
    // Single flight per manifest within this process: concurrent first pulls (or re-checks) of one
    // tag share one upstream exchange. (Replicas each make their own.)
    const key = `${repository}@${reference}`;
    const flying = this.manifestFlights.get(key);
    if (flying) return flying;
    const flight = this.refresh(repository, reference, target, local).finally(() => this.manifestFlights.delete(key));
    this.manifestFlights.set(key, flight);
    return flight;
  }

  /** Fetches (or, with a cached copy, re-checks) a manifest upstream; see `manifest`. */
  private async refresh(repository: string, reference: string, target: Target, local: ManifestInfo | null): Promise<ManifestInfo> {
    try {
      if (local) {
        const head = await target.client.manifest(target.path, reference, 'HEAD');
        head.body.resume();
        if (head.status === 200 && head.headers['docker-content-digest'] === local.digest) {
          await this.confirmed(repository, reference);
          return local;
        }
        if (head.status !== 200) {
          this.options.logger?.warn({ repository, reference, status: head.status }, 'pull-through: upstream HEAD did not confirm the tag; serving the cached copy');
          return local;
        }
      }
      return await this.fetchManifest(repository, target, reference);
    } catch (error) {
      const fallBack = error instanceof UpstreamUnreachableError || (error instanceof RegistryError && error.code === 'UPSTREAM_DIGEST_MISMATCH');
      if (local && fallBack) {
        this.options.logger?.warn({ repository, reference, err: error }, 'pull-through: upstream failed; serving the cached copy');
        return local;
      }
      if (error instanceof UpstreamUnreachableError) throw unavailable(target.settings, error);
      throw error;
    }
  }

  /**
   * A blob not cached yet in a proxy repository: its size (HEAD) or its bytes streaming from the
   * upstream while they are stored. Null when the repository is not a proxy's or the blob is here.
   */
  async blob(repository: string, digest: string, method: string): Promise<{ size?: number; body?: Readable } | null> {
    const target = await this.target(repository);
    if (!target || (await this.options.blobs.stat(repository, digest))) return null;
    const check = checkDigest(digest);
    if (!check.ok) throw new RegistryError('DIGEST_INVALID', `invalid digest ${digest}`, { digest });
    const key = `${repository}@${digest}`;
    if (method !== 'HEAD') {
      // Single flight per blob within this process: a GET while another one is caching the blob
      // waits for it and is then served from the store (if that fetch failed, it tries itself).
      const flying = this.blobFlights.get(key);
      if (flying) {
        await flying.catch(() => undefined);
        return this.blob(repository, digest, method);
      }
    }
    let settle: (error?: unknown) => void = () => undefined;
    if (method !== 'HEAD') {
      const flight = new Promise<void>((resolve, reject) => {
        settle = (error) => {
          if (this.blobFlights.get(key) === flight) this.blobFlights.delete(key);
          if (error === undefined) resolve();
          else reject(error);
        };
      });
      flight.catch(() => undefined);
      this.blobFlights.set(key, flight);
    }
    try {
      let response;
      try {
        response = await target.client.blob(target.path, digest, method === 'HEAD' ? 'HEAD' : 'GET');
      } catch (error) {
        if (error instanceof UpstreamUnreachableError) throw unavailable(target.settings, error);
        throw error;
      }
      if (response.status !== 200) {
        response.body.resume();
        if (response.status === 404) throw new RegistryError('BLOB_UNKNOWN', `upstream ${target.settings.url} has no blob ${digest} in ${target.path}`, { digest });
        if (response.status === 429) throw unavailable(target.settings, new Error('upstream answered 429 (rate limited)'));
        throw upstreamRefused(target.settings, response.status);
      }
      const declared = response.headers['content-length'];
      const size = declared === undefined ? undefined : Number(declared);
      if (method === 'HEAD') {
        response.body.resume();
        return { size };
      }
      return { size, body: this.cacheWhileStreaming(repository, digest, check.algorithm, response.body, settle) };
    } catch (error) {
      settle(error);
      throw error;
    }
  }

  private async fetchManifest(repository: string, target: Target, reference: string): Promise<ManifestInfo> {
    const response = await target.client.manifest(target.path, reference, 'GET');
    if (response.status !== 200) {
      response.body.resume();
      if (response.status === 404) throw new RegistryError('MANIFEST_UNKNOWN', `upstream ${target.settings.url} has no manifest ${target.path}:${reference}`, { reference });
      if (response.status === 429) throw new UpstreamUnreachableError('upstream answered 429 (rate limited)');
      throw upstreamRefused(target.settings, response.status);
    }
    const body = await readCapped(response.body, this.options.maxManifestBytes);
    const announced = headerValue(response.headers['docker-content-digest']);
    const expected = isDigest(reference) ? reference : announced;
    const algorithm: DigestAlgorithm = (expected && checkDigest(expected).ok ? (checkDigest(expected) as { algorithm: DigestAlgorithm }).algorithm : 'sha256');
    const actual = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`;
    if (expected !== undefined && expected !== actual) {
      throw new RegistryError('UPSTREAM_DIGEST_MISMATCH', `upstream ${target.settings.url} sent a manifest for ${target.path}:${reference} whose digest is ${actual}, not ${expected}; refused, nothing stored`, { expected, actual });
    }
    const info = await this.options.manifests.put(repository, reference, body, headerValue(response.headers['content-type']), { pullThrough: true });
    if (!isDigest(reference)) await this.confirmed(repository, reference);
    return info;
  }

  /** Tees the upstream body to the client and an upload session; see the module comment. */
  private cacheWhileStreaming(repository: string, digest: string, algorithm: DigestAlgorithm, source: Readable, settle: (error?: unknown) => void): Readable {
    const { store, blobs, logger } = this.options;
    const client = new PassThrough();
    let clientGone = false;
    client.on('close', () => { clientGone = true; });
    client.on('error', () => { clientGone = true; });
    const hash = createHash(algorithm);
    let held: Buffer | undefined;
    async function* feed(): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        if (held && !clientGone && !client.write(held)) await drainedOrClosed(client);
        held = chunk as Buffer;
        yield held;
      }
    }
    const id = `pull-${randomBytes(12).toString('hex')}`;
    void (async () => {
      let created = false;
      try {
        await store.uploads.create(id);
        created = true;
        const size = await store.uploads.append(id, feed(), 0, (chunk) => hash.update(chunk));
        const actual = `${algorithm}:${hash.digest('hex')}`;
        if (actual !== digest) throw new RegistryError('UPSTREAM_DIGEST_MISMATCH', `upstream blob ${digest} hashed to ${actual}; refused, nothing stored`, { expected: digest, actual });
        await blobs.adopt(repository, digest, size, () => store.uploads.commit(id, digest), () => store.uploads.abort(id));
        created = false;
        settle();
        if (!clientGone) client.end(held);
      } catch (error) {
        source.destroy();
        if (created) await store.uploads.abort(id).catch(() => undefined);
        logger?.warn({ repository, digest, err: error }, 'pull-through: blob not cached');
        settle(error);
        client.destroy(error as Error);
      }
    })();
    return client;
  }

  private async target(repository: string): Promise<Target | null> {
    const settings = await this.options.settings.forRepository(repository);
    const slash = repository.indexOf('/');
    if (!settings || slash === -1) return null;
    let path = repository.slice(slash + 1);
    const host = new URL(settings.url).host;
    // Docker Hub's official images live under `library/`: `hub/alpine` means `library/alpine`.
    if (dockerHubHosts.has(host) && !path.includes('/')) path = `library/${path}`;
    const key = `${settings.url}|${settings.insecure}|${settings.credentialsId}`;
    let entry = this.clients.get(settings.namespace);
    if (!entry || entry.key !== key) {
      const logins = this.options.logins;
      const client = new UpstreamClient({
        url: settings.url, insecure: settings.insecure, timeoutMs: this.options.upstreamTimeoutMs,
        login: async (upstreamPath) => logins ? logins.forUpstream(settings.namespace, settings.credentialsId, `${host}/${upstreamPath}`) : null,
      });
      entry = { key, client };
      this.clients.set(settings.namespace, entry);
    }
    return { settings, path, client: entry.client };
  }

  private async local(repository: string, reference: string): Promise<ManifestInfo | null> {
    try {
      return await this.options.manifests.info(repository, reference);
    } catch (error) {
      if (error instanceof RegistryError && (error.code === 'MANIFEST_UNKNOWN' || error.code === 'NAME_UNKNOWN')) return null;
      throw error;
    }
  }

  /** True when the cached tag was last confirmed longer than `ttlMs` ago (or never). */
  private async due(repository: string, tag: string, ttlMs: number): Promise<boolean> {
    const row = await this.options.db.kysely.selectFrom('registry_proxy_tags').select('checked_at')
      .where('repository', '=', repository).where('tag', '=', tag).executeTakeFirst();
    return !row || Date.now() - Number(row.checked_at) >= ttlMs;
  }

  private async confirmed(repository: string, tag: string): Promise<void> {
    const now = Date.now();
    await this.options.db.write((trx) => trx.insertInto('registry_proxy_tags').values({ repository, tag, checked_at: now })
      .onConflict((c) => c.columns(['repository', 'tag']).doUpdateSet({ checked_at: now })).execute());
  }
}

interface Target {
  settings: ProxySettings;
  /** The repository's path on the upstream. */
  path: string;
  client: UpstreamClient;
}

function unavailable(settings: ProxySettings, error: Error): RegistryError {
  return new RegistryError('UPSTREAM_UNAVAILABLE', `upstream ${settings.url} of pull-through namespace ${settings.namespace} is unavailable and nothing is cached: ${error.message}`, { upstream: settings.url });
}

function upstreamRefused(settings: ProxySettings, status: number): RegistryError {
  return new RegistryError('DENIED', `upstream ${settings.url} refused the pull (HTTP ${status}); check the namespace's proxy credentials`, { upstream: settings.url, status });
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function drainedOrClosed(stream: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done).off('close', done);
      resolve();
    };
    stream.once('drain', done).once('close', done);
  });
}
