/**
 * ImageStore: pulls OCI/Docker images over the distribution protocol into a shared,
 * content-addressed blob cache (`dir/blobs/sha256/<hex>`, verified while streaming). Each layer
 * is extracted once, by its digest, into `dir/layers/<hex>/` (`tree/` + `whiteouts.json`; one
 * pass: hash, gunzip, untar); each image gets `dir/rootfs/<manifest-hex>/`, a hardlink farm of
 * its layers' trees with the whiteouts applied (atomic rename; no mounts to clean up).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, chown, copyFile, link, lstat, mkdir, open, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar';

export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  ExposedPorts?: Record<string, unknown>;
}

/** Where manifests and blobs come from: `get('manifests/<ref>' | 'blobs/<digest>', accept)`. */
export interface ImageSource {
  get(pathPart: string, accept?: string): Promise<Response>;
}

export interface PullOptions {
  auth?: { username: string; password: string };
  /** Read from here instead of over HTTP (e.g. Slipway's own registry, in process). */
  source?: ImageSource;
  insecure?: boolean;
  platform?: string;
}

const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

const DIGEST_RE = /^sha256:([a-f0-9]{64})$/;

function hexOf(digest: string): string {
  const m = DIGEST_RE.exec(digest);
  if (!m) throw new Error(`unsupported digest ${digest}`);
  return m[1]!;
}

export function parseImageRef(ref: string): { host: string; repository: string; reference: string } {
  const slash = ref.indexOf('/');
  if (slash < 0) throw new Error(`image reference needs a registry host: ${ref}`);
  const host = ref.slice(0, slash);
  let rest = ref.slice(slash + 1);
  let reference = 'latest';
  const at = rest.indexOf('@');
  if (at >= 0) { reference = rest.slice(at + 1); rest = rest.slice(0, at); } else {
    const colon = rest.lastIndexOf(':');
    if (colon >= 0) { reference = rest.slice(colon + 1); rest = rest.slice(0, colon); }
  }
  return { host, repository: rest, reference };
}

interface Descriptor { mediaType?: string; digest: string; size?: number; platform?: { os?: string; architecture?: string; variant?: string } }

class RegistryClient implements ImageSource {
  private token?: string;
  private useBasic = false;
  /** Bearer tokens requested through the challenge flow (observable in tests). */
  tokenRequests = 0;
  constructor(private base: string, private repository: string, private auth?: { username: string; password: string }) {}

  async get(pathPart: string, accept?: string): Promise<Response> {
    const url = `${this.base}/v2/${this.repository}/${pathPart}`;
    const doFetch = () => {
      const headers: Record<string, string> = {};
      if (accept) headers.accept = accept;
      if (this.token) headers.authorization = `Bearer ${this.token}`;
      else if (this.useBasic && this.auth) headers.authorization = `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}`;
      return fetch(url, { headers, redirect: 'follow' });
    };
    let res = await doFetch();
    if (res.status === 401) {
      const challenge = res.headers.get('www-authenticate') ?? '';
      await res.body?.cancel();
      if (/^bearer/i.test(challenge)) {
        await this.fetchToken(challenge);
        res = await doFetch();
      } else if (/^basic/i.test(challenge) && this.auth && !this.useBasic) {
        this.useBasic = true;
        res = await doFetch();
      }
    }
    if (!res.ok) {
      const text = await res.text().catch(() => '');
      throw new Error(`GET ${url}: HTTP ${res.status} ${text.slice(0, 300)}`);
    }
    return res;
  }

  private async fetchToken(challenge: string): Promise<void> {
    const params: Record<string, string> = {};
    for (const m of challenge.replace(/^bearer\s+/i, '').matchAll(/(\w+)="([^"]*)"/g)) params[m[1]!] = m[2]!;
    if (!params.realm) throw new Error(`bearer challenge without realm: ${challenge}`);
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set('service', params.service);
    url.searchParams.set('scope', params.scope ?? `repository:${this.repository}:pull`);
    const headers: Record<string, string> = {};
    if (this.auth) headers.authorization = `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}`;
    this.tokenRequests++;
    const res = await fetch(url, { headers });
    if (!res.ok) throw new Error(`token endpoint ${url.origin}${url.pathname}: HTTP ${res.status}`);
    const body = await res.json() as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new Error('token endpoint returned no token');
    this.token = token;
  }
}

export class ImageStore {
  private unpacking = new Map<string, Promise<string>>();
  private downloading = new Map<string, Promise<void>>();

  constructor(readonly dir: string) {}

  blobPath(digest: string): string { return path.join(this.dir, 'blobs', 'sha256', hexOf(digest)); }
  rootfsPath(digest: string): string { return path.join(this.dir, 'rootfs', hexOf(digest)); }

  async pull(imageRef: string, options: PullOptions = {}): Promise<{ digest: string; config: ImageConfig }> {
    const { host, repository, reference } = parseImageRef(imageRef);
    const scheme = options.insecure ? 'http' : 'https';
    const client = options.source ?? new RegistryClient(`${scheme}://${host}`, repository, options.auth);
    const [os, arch, variant] = (options.platform ?? 'linux/amd64').split('/');

    let res = await client.get(`manifests/${reference}`, MANIFEST_TYPES);
    let bytes = Buffer.from(await res.arrayBuffer());
    let doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
    if (DIGEST_RE.test(reference)) verifyBytes(bytes, reference);
    if (doc.manifests) {
      const pick = doc.manifests.find((m) => m.platform?.os === os && m.platform?.architecture === arch && (!variant || m.platform?.variant === variant));
      if (!pick) throw new Error(`no manifest for platform ${options.platform ?? 'linux/amd64'} in ${imageRef}`);
      res = await client.get(`manifests/${pick.digest}`, MANIFEST_TYPES);
      bytes = Buffer.from(await res.arrayBuffer());
      verifyBytes(bytes, pick.digest);
      doc = JSON.parse(bytes.toString('utf8'));
    }
    if (!doc.config || !doc.layers) throw new Error(`${imageRef}: not an image manifest`);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

    await this.fetchBlob(client, doc.config.digest);
    for (const layer of doc.layers) await this.fetchBlob(client, layer.digest);
    await mkdir(path.join(this.dir, 'manifests'), { recursive: true });
    const mpath = path.join(this.dir, 'manifests', hexOf(digest));
    await atomicWrite(mpath, bytes);
    return { digest, config: await this.configOf(digest) };
  }

  private async readManifest(digest: string): Promise<{ config: Descriptor; layers: Descriptor[] }> {
    const bytes = await readFile(path.join(this.dir, 'manifests', hexOf(digest)));
    verifyBytes(bytes, digest);
    return JSON.parse(bytes.toString('utf8'));
  }

  async configOf(digest: string): Promise<ImageConfig> {
    const manifest = await this.readManifest(digest);
    const raw = JSON.parse(await readFile(this.blobPath(manifest.config.digest), 'utf8')) as { config?: ImageConfig };
    const c = raw.config ?? {};
    const out: ImageConfig = {};
    if (c.User !== undefined) out.User = c.User;
    if (c.Env) out.Env = c.Env;
    if (c.Entrypoint) out.Entrypoint = c.Entrypoint;
    if (c.Cmd) out.Cmd = c.Cmd;
    if (c.WorkingDir !== undefined) out.WorkingDir = c.WorkingDir;
    if (c.ExposedPorts) out.ExposedPorts = c.ExposedPorts;
    return out;
  }

  private async fetchBlob(client: ImageSource, digest: string): Promise<void> {
    const target = this.blobPath(digest);
    if (await exists(target)) return;
    const pending = this.downloading.get(digest);
    if (pending) return pending;
    const job = (async () => {
      await mkdir(path.dirname(target), { recursive: true });
      const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
      try {
        const res = await client.get(`blobs/${digest}`);
        if (!res.body) throw new Error(`blob ${digest}: empty body`);
        const hash = createHash('sha256');
        const tap = new Transform({ transform(chunk, _enc, cb) { hash.update(chunk); cb(null, chunk); } });
        await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), tap, createWriteStream(tmp));
        const got = `sha256:${hash.digest('hex')}`;
        if (got !== digest) throw new Error(`blob digest mismatch: expected ${digest}, got ${got}`);
        await rename(tmp, target);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      } finally {
        this.downloading.delete(digest);
      }
    })();
    this.downloading.set(digest, job);
    return job;
  }

  /** Verifies a cached blob against its digest. */
  async verifyBlob(digest: string): Promise<void> {
    const hash = createHash('sha256');
    await pipeline(createReadStream(this.blobPath(digest)), hash);
    const got = `sha256:${hash.digest('hex')}`;
    if (got !== digest) throw new Error(`cached blob corrupted: expected ${digest}, got ${got}`);
  }

  /** The extracted tree of one layer (`tree/`) and its whiteouts (`whiteouts.json`). */
  layerPath(digest: string): string { return path.join(this.dir, 'layers', hexOf(digest)); }

  /**
   * The image's root: each layer is extracted once into `layers/<hex>/` (shared by every image
   * that has it) and the root is a hardlink farm of those trees with the whiteouts applied.
   * Built in a temp folder and renamed, so a root that exists is complete.
   */
  async unpack(digest: string): Promise<string> {
    const target = this.rootfsPath(digest);
    if (await exists(target)) return target;
    const pending = this.unpacking.get(digest);
    if (pending) return pending;
    const job = (async () => {
      await this.recover();
      const manifest = await this.readManifest(digest);
      const layers = await Promise.all(manifest.layers.map((l) => this.layer(l.digest)));
      await mkdir(path.dirname(target), { recursive: true });
      const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
      await mkdir(tmp);
      try {
        for (const layer of layers) await applyLayerDir(layer, tmp);
        await rename(tmp, target).catch(async (err) => {
          if (await exists(target)) { await rm(tmp, { recursive: true, force: true }); return; }
          throw err;
        });
        return target;
      } catch (err) {
        await rm(tmp, { recursive: true, force: true });
        throw err;
      } finally {
        this.unpacking.delete(digest);
      }
    })();
    this.unpacking.set(digest, job);
    return job;
  }

  /** Layers this store extracted (each layer digest once, unless gc removed it). */
  layersExtracted = 0;
  private extracting = new Map<string, Promise<string>>();
  private recovered?: Promise<void>;

  /**
   * Removes temp folders a crashed process left (`*.tmp-*` under layers/ and rootfs/); once per
   * store, before its first unpack, so nothing of this process is in flight.
   */
  private recover(): Promise<void> {
    this.recovered ??= (async () => {
      for (const sub of ['layers', 'rootfs']) {
        for (const name of await readdir(path.join(this.dir, sub)).catch(() => [] as string[])) {
          if (name.includes('.tmp-')) await rm(path.join(this.dir, sub, name), { recursive: true, force: true });
        }
      }
    })();
    return this.recovered;
  }

  /**
   * The extracted layer folder, made once per layer digest: the blob is hashed, decompressed
   * and extracted in one pass into a temp folder, which is renamed into place only when the
   * hash matched and extraction finished.
   */
  private layer(digest: string): Promise<string> {
    const pending = this.extracting.get(digest);
    if (pending) return pending;
    const job = (async () => {
      const target = this.layerPath(digest);
      if (await exists(target)) return target;
      await mkdir(path.dirname(target), { recursive: true });
      const tmp = `${target}.tmp-${randomBytes(6).toString('hex')}`;
      try {
        await mkdir(path.join(tmp, 'tree'), { recursive: true });
        const whiteouts = await this.extractLayer(digest, path.join(tmp, 'tree'));
        await writeFile(path.join(tmp, 'whiteouts.json'), JSON.stringify(whiteouts));
        await rename(tmp, target).catch(async (err) => {
          if (await exists(target)) { await rm(tmp, { recursive: true, force: true }); return; }
          throw err;
        });
        this.layersExtracted++;
        return target;
      } catch (err) {
        await rm(tmp, { recursive: true, force: true });
        throw err;
      } finally {
        this.extracting.delete(digest);
      }
    })();
    this.extracting.set(digest, job);
    return job;
  }

  /** One pass over the blob: sha256, gunzip (when gzip), tar extraction recording whiteouts. */
  private async extractLayer(digest: string, dest: string): Promise<LayerWhiteouts> {
    const blob = this.blobPath(digest);
    const head = Buffer.alloc(4);
    const fh = await open(blob, 'r');
    try { await fh.read(head, 0, 4, 0); } finally { await fh.close(); }
    if (head.equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) throw new Error(`layer ${digest}: zstd layers are not supported`);
    const gzip = head[0] === 0x1f && head[1] === 0x8b;
    const out: LayerWhiteouts = { whiteouts: [], opaque: [] };
    const hash = createHash('sha256');
    const tap = new Transform({ transform(chunk, _enc, cb) { hash.update(chunk); cb(null, chunk); } });
    const unpack = tar.x({
      cwd: dest,
      preservePaths: false,
      preserveOwner: process.getuid?.() === 0,
      noChmod: false,
      unlink: true,
      filter: (p) => {
        const rel = safeRel(p);
        if (rel === null) return false;
        const base = path.posix.basename(rel);
        if (!base.startsWith('.wh.')) return true;
        const dir = path.posix.dirname(rel);
        if (base === '.wh..wh..opq') out.opaque.push(dir === '.' ? '' : dir);
        else out.whiteouts.push(path.posix.join(dir, base.slice(4)));
        return false;
      },
    });
    const read = createReadStream(blob, { highWaterMark: 1 << 20 });
    try {
      if (gzip) await pipeline(read, tap, createGunzip({ chunkSize: 1 << 20 }), unpack);
      else await pipeline(read, tap, unpack);
    } catch (err) {
      // A corrupted blob usually fails in gunzip or tar first: name it as such.
      await this.verifyBlob(digest);
      throw err;
    }
    const got = `sha256:${hash.digest('hex')}`;
    if (got !== digest) throw new Error(`cached blob corrupted: expected ${digest}, got ${got}`);
    return out;
  }

  async remove(digest: string): Promise<void> {
    await rm(this.rootfsPath(digest), { recursive: true, force: true });
    await rm(path.join(this.dir, 'manifests', hexOf(digest)), { force: true });
  }

  /** Deletes rootfs folders, manifests and blobs not reachable from `keep` (manifest digests). */
  async gc(keep: Set<string>): Promise<{ removedImages: string[]; removedBlobs: string[] }> {
    const removedImages: string[] = [];
    const removedBlobs: string[] = [];
    const live = new Set<string>();
    const manifests = await readdir(path.join(this.dir, 'manifests')).catch(() => [] as string[]);
    for (const name of manifests) {
      if (name.includes('.tmp-')) continue;
      const digest = `sha256:${name}`;
      if (keep.has(digest)) {
        const m = await this.readManifest(digest);
        live.add(hexOf(m.config.digest));
        for (const l of m.layers) live.add(hexOf(l.digest));
      } else { await this.remove(digest); removedImages.push(digest); }
    }
    for (const name of await readdir(path.join(this.dir, 'rootfs')).catch(() => [] as string[])) {
      if (!keep.has(`sha256:${name}`) && !name.includes('.tmp-')) await rm(path.join(this.dir, 'rootfs', name), { recursive: true, force: true });
    }
    for (const name of await readdir(path.join(this.dir, 'layers')).catch(() => [] as string[])) {
      if (!name.includes('.tmp-') && !live.has(name) && !this.extracting.has(`sha256:${name}`)) await rm(path.join(this.dir, 'layers', name), { recursive: true, force: true });
    }
    for (const name of await readdir(path.join(this.dir, 'blobs', 'sha256')).catch(() => [] as string[])) {
      if (name.includes('.tmp-') || live.has(name)) continue;
      await rm(path.join(this.dir, 'blobs', 'sha256', name), { force: true });
      removedBlobs.push(`sha256:${name}`);
    }
    return { removedImages, removedBlobs };
  }
}

function verifyBytes(bytes: Buffer, digest: string): void {
  const got = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  if (got !== digest) throw new Error(`manifest digest mismatch: expected ${digest}, got ${got}`);
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(() => true, () => false);
}

async function atomicWrite(file: string, bytes: Buffer): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  await writeFile(tmp, bytes);
  await rename(tmp, file);
}

function safeRel(entryPath: string): string | null {
  const norm = path.posix.normalize(entryPath.replace(/^\.\//, ''));
  if (norm.startsWith('/') || norm === '..' || norm.startsWith('../') || norm.split('/').includes('..')) return null;
  return norm === '.' ? '' : norm.replace(/\/$/, '');
}

interface LayerWhiteouts {
  /** Paths (relative to the root) that this layer deletes from the layers below. */
  whiteouts: string[];
  /** Folders whose contents from the layers below this layer hides. */
  opaque: string[];
}

/**
 * `root/rel` when every component of `rel` is a real folder inside `root` (no symlink can lead
 * a whiteout outside the root), else null.
 */
async function folderInside(root: string, rel: string): Promise<string | null> {
  let at = root;
  for (const part of rel.split('/').filter(Boolean)) {
    at = path.join(at, part);
    const st = await lstat(at).catch(() => null);
    if (!st?.isDirectory()) return null;
  }
  return at;
}

/** Applies one extracted layer onto `root`: whiteouts against the layers below, then its tree as hardlinks. */
async function applyLayerDir(layerDir: string, root: string): Promise<void> {
  const { whiteouts, opaque } = JSON.parse(await readFile(path.join(layerDir, 'whiteouts.json'), 'utf8')) as LayerWhiteouts;
  for (const dir of opaque) {
    const abs = await folderInside(root, dir);
    if (abs) for (const child of await readdir(abs)) await rm(path.join(abs, child), { recursive: true, force: true });
  }
  for (const w of whiteouts) {
    const parent = await folderInside(root, path.posix.dirname(w));
    if (parent) await rm(path.join(parent, path.posix.basename(w)), { recursive: true, force: true });
  }
  await linkTree(path.join(layerDir, 'tree'), root);
}

const asRoot = process.getuid?.() === 0;

/** Mirrors `src` into `dst` (an existing folder): folders made with src's mode/owner, everything else hardlinked. */
async function linkTree(src: string, dst: string): Promise<void> {
  const st = await lstat(src);
  await chmod(dst, st.mode & 0o7777);
  if (asRoot) await chown(dst, st.uid, st.gid);
  const entries = await readdir(src, { withFileTypes: true });
  await Promise.all(entries.map(async (entry) => {
    const from = path.join(src, entry.name);
    const to = path.join(dst, entry.name);
    const existing = await lstat(to).catch(() => null);
    if (entry.isDirectory()) {
      if (existing && !existing.isDirectory()) await rm(to, { force: true });
      if (!existing?.isDirectory()) await mkdir(to);
      await linkTree(from, to);
      return;
    }
    if (existing) await rm(to, { recursive: true, force: true });
    await link(from, to).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EMLINK') throw err;
      // Too many links to one inode: a copy does the same job.
      const s = await lstat(from);
      if (s.isSymbolicLink()) await symlink(await readlink(from), to);
      else if (s.isFile()) {
        await copyFile(from, to);
        await chmod(to, s.mode & 0o7777);
        if (asRoot) await chown(to, s.uid, s.gid);
      }
    });
  }));
}
