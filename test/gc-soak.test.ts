/**
 * GC soak: online garbage collection with a one-second grace period, run in a tight loop (two
 * collectors at once, as the server's schedule and `slipway gc` may be) while concurrent
 * workers push images that share base layers across repositories, move tags, push indexes and
 * referrers, and delete tags, manifests and blob links. Bounded: fixed duration per dialect.
 *
 * What must hold:
 *   - nothing acknowledged (201) and still referenced is ever lost: every tagged manifest, the
 *     children of tagged indexes, referrers of tagged manifests and every blob they reference
 *     pull with the exact bytes, during the soak, at its end and after a final GC;
 *   - content a worker confirmed present (HEAD 200, upload 201, mount 201, manifest 201) is not
 *     collected under a manifest PUT that comes within the grace period: no MANIFEST_BLOB_UNKNOWN
 *     / MANIFEST_UNKNOWN for it;
 *   - GC does collect: everything unreferenced is gone after the grace period (404 in its
 *     repository, file removed from storage), and the collectors reported deletions;
 *   - fsck is clean at the end.
 *
 * Two focused races run first, many times over, because a soak hits them only by luck:
 * simultaneous first pushes of one new layer (all must be 201), and HEAD racing GC on a stale,
 * unreferenced blob (a HEAD 200 must keep the blob for the manifest PUT that follows).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { GcReport } from '../src/registry/gc.js';
import { dialects, startTestServer, type DialectUnderTest } from './helpers/harness.js';
import { imageIndex, imageManifest, sha256, type BuiltManifest } from './helpers/oci.js';
import {
  deleteBlob, deleteManifest, finishUpload, getBlob, getManifest, headBlob, mountBlob, putManifestBytes,
  registryError, show, sleep, uploadChunked, uploadPostPut, uploadSinglePost, call, type Fetched,
} from './helpers/registry-client.js';

const soakMs = Number(process.env.SLIPWAY_SOAK_MS ?? 15_000);
const graceMs = 1000;
const workerCount = 6;
const repositories = ['soak/alpha', 'soak/beta', 'soak/gamma', 'soak/delta'];
const tagsPerWorker = 3;
/** Base layers come in generations: a new window opens every `baseEpochMs`, old ones retire. */
const baseEpochMs = 2500;

interface Blob {
  digest: string;
  data: Buffer;
}

/** An acknowledged manifest with everything it needs to be pullable. */
interface ManifestRecord {
  repo: string;
  manifest: BuiltManifest;
  blobs: Blob[];
  children: ManifestRecord[];
  referrers: ManifestRecord[];
}

interface Violation {
  worker: number;
  repo: string;
  op: string;
  code: string | undefined;
  digest: string | undefined;
  sinceConfirmedMs: number;
}

const key = (repo: string, digest: string) => `${repo} ${digest}`;

class Soak {
  readonly base: string;
  readonly started = Date.now();
  stopped = false;
  // Ledger of what the registry acknowledged.
  readonly tagged = new Map<string, ManifestRecord>(); // "repo tag" → record (each tag has one owner worker)
  readonly everBlobs = new Map<string, Blob>(); // "repo digest" of blobs confirmed in a repo
  readonly everManifests = new Map<string, ManifestRecord>(); // "repo digest"
  readonly violations: Violation[] = [];
  readonly unexpected: string[] = [];
  readonly lost: string[] = [];
  readonly stats = {
    imagePushes: 0, indexPushes: 0, referrerPushes: 0, retags: 0, tagMoves: 0,
    tagDeletes: 0, manifestDeletes: 0, blobDeletes: 0, headHits: 0, uploads: 0, mounts: 0,
    staleRejections: 0, midSoakPulls: 0,
  };
  readonly gc = { runs: 0, manifestsDeleted: 0, linksDeleted: 0, blobsDeleted: 0, bytesFreed: 0, errors: [] as string[] };
  private readonly bases: Blob[] = [];

  constructor(base: string) {
    this.base = base;
  }

  /** Base layer `i`: every fifth is larger than the in-memory small-blob cache threshold. */
  baseLayer(i: number): Blob {
    while (this.bases.length <= i) {
      const n = this.bases.length;
      const data = randomBytes(n % 5 === 0 ? 300 * 1024 : 1024 + ((n * 7919) % 16) * 1024);
      this.bases.push({ data, digest: sha256(data) });
    }
    return this.bases[i]!;
  }

  /** 1–2 base layers: mostly from the current window, sometimes a retired one (likely stale, that is where GC races). */
  pickBases(): Blob[] {
    const epoch = Math.floor((Date.now() - this.started) / baseEpochMs);
    const current = [epoch * 2, epoch * 2 + 1, epoch * 2 + 2, epoch * 2 + 3];
    const retired = epoch > 0 ? [epoch * 2 - 4, epoch * 2 - 3, epoch * 2 - 2, epoch * 2 - 1].filter((i) => i >= 0) : [];
    const count = 1 + Math.floor(Math.random() * 2);
    const picked = new Set<number>();
    for (let i = 0; i < count; i++) {
      const pool = retired.length > 0 && Math.random() < 0.3 ? retired : current;
      picked.add(pool[Math.floor(Math.random() * pool.length)]!);
    }
    return [...picked].map((i) => this.baseLayer(i));
  }

  unexpectedResponse(worker: number, what: string, fetched: Fetched): void {
    this.unexpected.push(`worker ${worker}: ${what}: ${show(fetched)}`);
  }
}

class Worker {
  /** "repo digest" → client time just before the request that confirmed it was present. */
  private readonly confirmed = new Map<string, number>();
  private readonly history: ManifestRecord[] = [];
  private readonly tagNames: string[];

  constructor(private readonly soak: Soak, private readonly id: number) {
    this.tagNames = Array.from({ length: tagsPerWorker }, (_, k) => `w${id}-t${k}`);
  }

  async run(): Promise<void> {
    while (!this.soak.stopped) {
      const roll = Math.random();
      if (roll < 0.45) await this.pushImage();
      else if (roll < 0.53) await this.pushIndex();
      else if (roll < 0.63) await this.retag();
      else if (roll < 0.73) await this.deleteTag();
      else if (roll < 0.79) await this.deleteManifestByDigest();
      else if (roll < 0.84) await this.deleteUniqueBlobLink();
      else if (roll < 0.92) await this.pushReferrer();
      else await this.pullCheck();
    }
  }

  private randomRepo(): string {
    return repositories[Math.floor(Math.random() * repositories.length)]!;
  }

  private randomTag(): string {
    return this.tagNames[Math.floor(Math.random() * this.tagNames.length)]!;
  }

  private myTagged(): Array<[string, ManifestRecord]> {
    return [...this.soak.tagged.entries()].filter(([k]) => k.split(' ')[1]!.startsWith(`w${this.id}-`));
  }

  private confirm(repo: string, blob: Blob, at: number): void {
    this.confirmed.set(key(repo, blob.digest), at);
    this.soak.everBlobs.set(key(repo, blob.digest), blob);
  }

  /** Makes a blob present in `repo` the way a real client does: HEAD, else mount or upload. */
  private async ensureBlob(repo: string, blob: Blob): Promise<void> {
    const t0 = Date.now();
    const head = await headBlob(this.soak.base, repo, blob.digest);
    if (head.status === 200) {
      if (Number(head.headers.get('content-length')) !== blob.data.length) this.soak.unexpectedResponse(this.id, `HEAD size of ${blob.digest}`, head);
      this.soak.stats.headHits++;
      this.confirm(repo, blob, t0);
      return;
    }
    if (head.status !== 404) return this.soak.unexpectedResponse(this.id, 'HEAD blob', head);
    const t1 = Date.now();
    let stored: Fetched;
    const flavour = Math.random();
    if (flavour < 0.3) {
      // Mount from a repository the blob was seen in (it may have been collected there since).
      const others = repositories.filter((r) => r !== repo);
      const seen = others.filter((r) => this.soak.everBlobs.has(key(r, blob.digest)));
      const from = (seen.length > 0 ? seen : others)[Math.floor(Math.random() * (seen.length > 0 ? seen.length : others.length))]!;
      const mounted = await mountBlob(this.soak.base, repo, from, blob.digest);
      if (mounted.status === 201) {
        this.soak.stats.mounts++;
        this.confirm(repo, blob, t1);
        return;
      }
      if (mounted.status !== 202) return this.soak.unexpectedResponse(this.id, 'mount', mounted);
      stored = await finishUpload(this.soak.base, new URL(mounted.headers.get('location')!, this.soak.base), blob.digest, blob.data);
    } else if (flavour < 0.55) {
      stored = await uploadSinglePost(this.soak.base, repo, blob.data, blob.digest);
    } else if (flavour < 0.85) {
      stored = await uploadPostPut(this.soak.base, repo, blob.data, blob.digest);
    } else {
      stored = await uploadChunked(this.soak.base, repo, blob.data, Math.max(1024, Math.ceil(blob.data.length / 3)), blob.digest);
    }
    if (stored.status !== 201 || stored.headers.get('docker-content-digest') !== blob.digest) {
      return this.soak.unexpectedResponse(this.id, `upload ${blob.digest}`, stored);
    }
    this.soak.stats.uploads++;
    this.confirm(repo, blob, t1);
  }

  /**
   * PUTs a manifest; on success records it (and the tag). A rejection naming content this
   * worker confirmed less than a grace period before the response is a violation; older
   * confirmations are legitimately collectable (a stale re-tag) and only counted.
   */
  private async putManifest(record: ManifestRecord, reference: string, op: string): Promise<boolean> {
    const response = await putManifestBytes(this.soak.base, record.repo, reference, record.manifest.body, record.manifest.mediaType);
    const end = Date.now();
    if (response.status === 201) {
      if (response.headers.get('docker-content-digest') !== record.manifest.digest) this.soak.unexpectedResponse(this.id, `${op} digest`, response);
      this.confirmed.set(key(record.repo, record.manifest.digest), end - 1);
      this.soak.everManifests.set(key(record.repo, record.manifest.digest), record);
      return true;
    }
    const error = registryError(response);
    if ((error.code === 'MANIFEST_BLOB_UNKNOWN' || error.code === 'MANIFEST_UNKNOWN') && response.status < 500) {
      const digest = error.detail?.digest;
      const confirmedAt = digest ? this.confirmed.get(key(record.repo, digest)) : undefined;
      if (confirmedAt !== undefined && end - confirmedAt < graceMs) {
        this.soak.violations.push({ worker: this.id, repo: record.repo, op, code: error.code, digest, sinceConfirmedMs: end - confirmedAt });
      } else {
        this.soak.stats.staleRejections++;
      }
      return false;
    }
    this.soak.unexpectedResponse(this.id, op, response);
    return false;
  }

  private tagPut(record: ManifestRecord, tag: string): void {
    const k = `${record.repo} ${tag}`;
    const previous = this.soak.tagged.get(k);
    if (previous && previous.manifest.digest !== record.manifest.digest) this.soak.stats.tagMoves++;
    this.soak.tagged.set(k, record);
  }

  /** Config (unique) + 1–2 shared base layers + a unique top layer. */
  private async buildImage(repo: string): Promise<ManifestRecord | undefined> {
    const configData = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', nonce: randomBytes(8).toString('hex') }));
    const config = { data: configData, digest: sha256(configData) };
    const topData = randomBytes(512 + Math.floor(Math.random() * 8192));
    const top = { data: topData, digest: sha256(topData) };
    const layers = [...this.soak.pickBases(), top];
    for (const blob of [...layers, config]) {
      const before = this.soak.unexpected.length;
      await this.ensureBlob(repo, blob);
      if (this.soak.unexpected.length !== before) return undefined;
    }
    const manifest = imageManifest({ digest: config.digest, size: config.data.length }, layers.map((l) => ({ digest: l.digest, size: l.data.length })));
    return { repo, manifest, blobs: [config, ...layers], children: [], referrers: [] };
  }

  private async pushImage(): Promise<void> {
    const repo = this.randomRepo();
    const record = await this.buildImage(repo);
    if (!record) return;
    const tag = this.randomTag();
    if (await this.putManifest(record, tag, 'push image')) {
      this.soak.stats.imagePushes++;
      this.history.push(record);
      this.tagPut(record, tag);
    }
  }

  /** Two child images pushed by digest, then an index over them under a tag. */
  private async pushIndex(): Promise<void> {
    const repo = this.randomRepo();
    const children: ManifestRecord[] = [];
    for (let i = 0; i < 2; i++) {
      const child = await this.buildImage(repo);
      if (!child) return;
      if (!(await this.putManifest(child, child.manifest.digest, 'push child'))) return;
      children.push(child);
    }
    const index = imageIndex(children.map((c) => c.manifest));
    const record: ManifestRecord = { repo, manifest: index, blobs: [], children, referrers: [] };
    const tag = this.randomTag();
    if (await this.putManifest(record, tag, 'push index')) {
      this.soak.stats.indexPushes++;
      this.history.push(record);
      this.tagPut(record, tag);
    }
  }

  /** Re-PUTs an older manifest of this worker under a tag: fine if its content is still there, rejected if collected. */
  private async retag(): Promise<void> {
    if (this.history.length === 0) return;
    const record = this.history[Math.floor(Math.random() * this.history.length)]!;
    const tag = this.randomTag();
    const wasTagged = this.myTagged().some(([, r]) => r === record);
    if (await this.putManifest(record, tag, 'retag')) {
      this.soak.stats.retags++;
      this.tagPut(record, tag);
      // While it was untagged its referrers were fair game for GC; the re-push promises only
      // those still here when it was acknowledged (it touched them in its transaction).
      if (!wasTagged && record.referrers.length > 0) {
        const listed = await call(`${this.soak.base}/v2/${record.repo}/referrers/${record.manifest.digest}`);
        const present = new Set((JSON.parse(listed.body.toString('utf8')) as { manifests: Array<{ digest: string }> }).manifests.map((m) => m.digest));
        record.referrers = record.referrers.filter((r) => present.has(r.manifest.digest));
      }
    }
  }

  private async deleteTag(): Promise<void> {
    const mine = this.myTagged();
    if (mine.length === 0) return;
    const [k, record] = mine[Math.floor(Math.random() * mine.length)]!;
    const tag = k.split(' ')[1]!;
    const response = await deleteManifest(this.soak.base, record.repo, tag);
    if (response.status !== 202) return this.soak.unexpectedResponse(this.id, 'delete tag', response);
    this.soak.tagged.delete(k);
    this.soak.stats.tagDeletes++;
  }

  /** Deletes one of this worker's top-level manifests by digest (with every tag on it). */
  private async deleteManifestByDigest(): Promise<void> {
    if (this.history.length === 0) return;
    const record = this.history[Math.floor(Math.random() * this.history.length)]!;
    const response = await deleteManifest(this.soak.base, record.repo, record.manifest.digest);
    if (response.status !== 202 && !(response.status === 404 && registryError(response).code === 'MANIFEST_UNKNOWN')) {
      return this.soak.unexpectedResponse(this.id, 'delete manifest', response);
    }
    for (const [k, tagged] of this.myTagged()) if (tagged === record) this.soak.tagged.delete(k);
    this.confirmed.delete(key(record.repo, record.manifest.digest));
    if (response.status === 202) this.soak.stats.manifestDeletes++;
  }

  /** Unlinks the unique top layer of an untagged image of this worker (never a shared layer). */
  private async deleteUniqueBlobLink(): Promise<void> {
    const taggedNow = new Set(this.myTagged().map(([, r]) => r));
    const candidates = this.history.filter((r) => r.children.length === 0 && !taggedNow.has(r));
    if (candidates.length === 0) return;
    const record = candidates[Math.floor(Math.random() * candidates.length)]!;
    const top = record.blobs[record.blobs.length - 1]!;
    const response = await deleteBlob(this.soak.base, record.repo, top.digest);
    if (response.status !== 202 && !(response.status === 404 && registryError(response).code === 'BLOB_UNKNOWN')) {
      return this.soak.unexpectedResponse(this.id, 'delete blob', response);
    }
    this.confirmed.delete(key(record.repo, top.digest));
    if (response.status === 202) this.soak.stats.blobDeletes++;
  }

  /** An artifact (by digest) whose subject is one of this worker's tagged images. */
  private async pushReferrer(): Promise<void> {
    const mine = this.myTagged().filter(([, r]) => r.children.length === 0);
    if (mine.length === 0) return;
    const [, subject] = mine[Math.floor(Math.random() * mine.length)]!;
    const configData = Buffer.from(JSON.stringify({ signed: randomBytes(8).toString('hex') }));
    const config = { data: configData, digest: sha256(configData) };
    const layerData = randomBytes(256);
    const layer = { data: layerData, digest: sha256(layerData) };
    for (const blob of [config, layer]) await this.ensureBlob(subject.repo, blob);
    const manifest = imageManifest({ digest: config.digest, size: config.data.length }, [{ digest: layer.digest, size: layer.data.length }], {
      artifactType: 'application/vnd.example.signature.v1',
      subject: { mediaType: subject.manifest.mediaType, digest: subject.manifest.digest, size: subject.manifest.body.length },
    });
    const record: ManifestRecord = { repo: subject.repo, manifest, blobs: [config, layer], children: [], referrers: [] };
    if (await this.putManifest(record, manifest.digest, 'push referrer')) {
      this.soak.stats.referrerPushes++;
      subject.referrers.push(record);
    }
  }

  /** Pulls one of this worker's tagged manifests and its content mid-soak. */
  private async pullCheck(): Promise<void> {
    const mine = this.myTagged();
    if (mine.length === 0) return;
    const [k, record] = mine[Math.floor(Math.random() * mine.length)]!;
    this.soak.stats.midSoakPulls++;
    await verifyPullable(this.soak, record, k.split(' ')[1]!, false);
  }
}

/** Every byte of a manifest and what it references, exact; failures go to `soak.lost`. */
async function verifyPullable(soak: Soak, record: ManifestRecord, reference: string, withReferrers: boolean): Promise<void> {
  const got = await getManifest(soak.base, record.repo, reference);
  if (got.status !== 200 || !got.body.equals(record.manifest.body) || got.headers.get('docker-content-digest') !== record.manifest.digest) {
    soak.lost.push(`manifest ${record.repo}:${reference} (${record.manifest.digest}): ${show(got)}`);
    return;
  }
  for (const blob of record.blobs) {
    const pulled = await getBlob(soak.base, record.repo, blob.digest);
    if (pulled.status !== 200 || sha256(pulled.body) !== blob.digest) soak.lost.push(`blob ${record.repo}@${blob.digest} of ${record.manifest.digest}: ${pulled.status === 200 ? 'wrong bytes' : show(pulled)}`);
  }
  for (const child of record.children) await verifyPullable(soak, child, child.manifest.digest, withReferrers);
  if (withReferrers) {
    for (const referrer of record.referrers) await verifyPullable(soak, referrer, referrer.manifest.digest, true);
    if (record.referrers.length > 0) {
      const listed = await call(`${soak.base}/v2/${record.repo}/referrers/${record.manifest.digest}`);
      const digests = new Set((JSON.parse(listed.body.toString('utf8')) as { manifests: Array<{ digest: string }> }).manifests.map((m) => m.digest));
      for (const referrer of record.referrers) {
        if (!digests.has(referrer.manifest.digest)) soak.lost.push(`referrer ${referrer.manifest.digest} of ${record.repo}@${record.manifest.digest} not listed`);
      }
    }
  }
}

/** Everything that must survive: tagged manifests, their children and referrers, and their blobs. */
function liveSet(soak: Soak): { manifests: Set<string>; blobs: Set<string>; digests: Set<string> } {
  const manifests = new Set<string>();
  const blobs = new Set<string>();
  const digests = new Set<string>();
  const visit = (record: ManifestRecord) => {
    manifests.add(key(record.repo, record.manifest.digest));
    for (const blob of record.blobs) {
      blobs.add(key(record.repo, blob.digest));
      digests.add(blob.digest);
    }
    for (const child of [...record.children, ...record.referrers]) visit(child);
  };
  for (const record of soak.tagged.values()) visit(record);
  return { manifests, blobs, digests };
}

function addReport(soak: Soak, report: GcReport): void {
  soak.gc.runs++;
  soak.gc.manifestsDeleted += report.manifestsDeleted;
  soak.gc.linksDeleted += report.linksDeleted;
  soak.gc.blobsDeleted += report.blobsDeleted;
  soak.gc.bytesFreed += report.bytesFreed;
}

async function soakOn(dialect: DialectUnderTest): Promise<void> {
  const server = await startTestServer({ dialect, config: { registry: { gc: { gracePeriod: `${graceMs}ms`, interval: 0 } } } });
  try {
    const registry = server.server.registry;
    const soak = new Soak(server.url);

    const gcLoop = async (pauseMs: number) => {
      while (!soak.stopped) {
        try {
          addReport(soak, await registry.gc());
        } catch (error) {
          soak.gc.errors.push(String((error as Error).stack ?? error));
        }
        await sleep(pauseMs * Math.random());
      }
    };
    const collectors = [gcLoop(60), gcLoop(250)];
    const workers = Array.from({ length: workerCount }, (_, i) => new Worker(soak, i).run().catch((error) => {
      soak.unexpected.push(`worker ${i} crashed: ${(error as Error).stack ?? error}`);
    }));
    await sleep(soakMs);
    soak.stopped = true;
    await Promise.all([...workers, ...collectors]);
    const duringSoak = { ...soak.gc };

    assert.deepEqual(soak.gc.errors, [], 'GC runs failed');
    assert.deepEqual(soak.unexpected, [], 'unexpected registry responses');
    assert.deepEqual(soak.violations, [], 'content confirmed present within the grace period was collected under a manifest PUT');
    assert.deepEqual(soak.lost, [], 'acknowledged, still-referenced content was not pullable during the soak');

    // Everything still referenced is intact right away …
    for (const [k, record] of soak.tagged) await verifyPullable(soak, record, k.split(' ')[1]!, true);
    assert.deepEqual(soak.lost, [], 'acknowledged, still-referenced content lost at the end of the soak');

    // … and after a final GC past the grace period, which removes everything else.
    await sleep(graceMs + 100);
    const final = await registry.gc();
    addReport(soak, final);
    const again = await registry.gc();
    assert.deepEqual([again.manifestsDeleted, again.linksDeleted, again.blobsDeleted], [0, 0, 0], 'a second GC right after the final one found more to collect');
    for (const [k, record] of soak.tagged) await verifyPullable(soak, record, k.split(' ')[1]!, true);
    assert.deepEqual(soak.lost, [], 'acknowledged, still-referenced content lost after the final GC');

    const live = liveSet(soak);
    const lingering: string[] = [];
    let garbageBlobs = 0;
    for (const [k, blob] of soak.everBlobs) {
      if (live.blobs.has(k)) continue;
      garbageBlobs++;
      const repo = k.split(' ')[0]!;
      const head = await headBlob(soak.base, repo, blob.digest);
      if (head.status !== 404) lingering.push(`blob ${k}: HEAD ${head.status}`);
      if (!live.digests.has(blob.digest) && (await registry.store.stat(blob.digest)) !== null) lingering.push(`blob file ${blob.digest} still stored`);
    }
    let garbageManifests = 0;
    for (const [k, record] of soak.everManifests) {
      if (live.manifests.has(k)) continue;
      garbageManifests++;
      const got = await getManifest(soak.base, record.repo, record.manifest.digest);
      if (got.status !== 404) lingering.push(`manifest ${k}: GET ${got.status}`);
    }
    assert.deepEqual(lingering, [], 'unreferenced content survived a GC past the grace period');
    assert.ok(garbageBlobs > 0 && garbageManifests > 0, 'the soak produced no garbage to collect');

    const storedRows = await registry.db.kysely.selectFrom('blobs').select('digest').execute();
    assert.deepEqual(storedRows.map((r) => r.digest).filter((d) => !live.digests.has(d)), [], 'blob rows left that nothing references');

    const report = await registry.fsck();
    assert.deepEqual(report.problems, [], 'fsck problems');
    assert.equal(report.unlinkedRowsWithoutContent, 0);

    assert.ok(duringSoak.runs >= 10, `only ${duringSoak.runs} GC runs during the soak`);
    assert.ok(duringSoak.manifestsDeleted > 0, 'GC collected no manifest during the soak');
    assert.ok(duringSoak.linksDeleted > 0, 'GC collected no repository link during the soak');
    assert.ok(duringSoak.blobsDeleted > 0, 'GC collected no blob during the soak');

    const s = soak.stats;
    console.log(`gc-soak[${dialect.name}] ${(soakMs / 1000).toFixed(0)}s, ${workerCount} workers: ${s.imagePushes} image + ${s.indexPushes} index + ${s.referrerPushes} referrer pushes `
      + `(${s.uploads} uploads, ${s.mounts} mounts, ${s.headHits} HEAD hits), ${s.retags} re-tags, ${s.tagMoves} tag moves, `
      + `${s.tagDeletes} tag + ${s.manifestDeletes} manifest + ${s.blobDeletes} blob deletes, ${s.staleRejections} legit stale rejections, ${s.midSoakPulls} mid-soak pulls; `
      + `${duringSoak.runs} gc runs collected ${duringSoak.manifestsDeleted} manifests, ${duringSoak.linksDeleted} links, ${duringSoak.blobsDeleted} blobs (${duringSoak.bytesFreed} B) `
      + `+ final ${final.manifestsDeleted}/${final.linksDeleted}/${final.blobsDeleted}; ${soak.tagged.size} tags verified; 0 lost, 0 violations, fsck clean`);
  } finally {
    await closeServer(server);
  }
}

/**
 * Stops the server, then lets the pool's sockets finish closing before the harness drops the
 * database WITH (FORCE): `pg.Pool#end()` resolves before its connections are fully closed, and
 * the pool has no 'error' listener (src/db/db.ts), so a terminated straggler would surface as an
 * uncaught exception after the test ended.
 */
async function closeServer(server: Awaited<ReturnType<typeof startTestServer>>): Promise<void> {
  await server.server.close();
  await sleep(250);
  await server.close();
}

/**
 * The race in its purest form, many times over: blobs pushed, left unreferenced past the grace
 * period, then HEAD-checked by a client while GC is collecting them. Whichever wins, the answers
 * must agree: a HEAD 200 means the blob was kept (the HEAD touched it), so a manifest PUT right
 * after it must succeed; otherwise the HEAD must say 404.
 */
async function headRacesGc(dialect: DialectUnderTest): Promise<void> {
  const server = await startTestServer({ dialect, config: { registry: { gc: { gracePeriod: `${graceMs}ms`, interval: 0 } } } });
  try {
    const base = server.url;
    const repo = 'race/head';
    const outcome = { kept: 0, collected: 0, violations: [] as string[] };
    let lastGcMs = 50;
    // Every batch is pushed up front and held by a tagged manifest; all go stale in one grace
    // period, then each batch is released (its tag deleted) just before its own race.
    const batches = Array.from({ length: 12 }, () => Array.from({ length: 30 }, () => {
      const data = randomBytes(64 + Math.floor(Math.random() * 512));
      return { data, digest: sha256(data) };
    }));
    const queue = batches.flat();
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let blob = queue.shift(); blob; blob = queue.shift()) {
        const stored = await uploadSinglePost(base, repo, blob.data, blob.digest);
        assert.equal(stored.status, 201, show(stored));
      }
    }));
    for (const [i, blobs] of batches.entries()) {
      const holder = imageManifest({ digest: blobs[0]!.digest, size: blobs[0]!.data.length }, blobs.slice(1).map((b) => ({ digest: b.digest, size: b.data.length })));
      const put = await putManifestBytes(base, repo, `batch-${i}`, holder.body, holder.mediaType);
      assert.equal(put.status, 201, show(put));
    }
    await sleep(graceMs + 50);
    for (const [batch, blobs] of batches.entries()) {
      const untag = await deleteManifest(base, repo, `batch-${batch}`);
      assert.equal(untag.status, 202, show(untag));
      // The HEADs are spread over about as long as the last GC took; GC starts at once or (every
      // other batch) half-way in, so that some HEADs come before it reaches their blob (and keep
      // it), some while it collects, some after.
      const spread = Math.max(30, lastGcMs * 1.5);
      const gcRun = sleep(batch % 2 === 0 ? 0 : spread / 2).then(() => server.server.registry.gc()).then((report) => {
        lastGcMs = report.durationMs;
      });
      await Promise.all([gcRun, ...blobs.map(async (blob) => {
        await sleep(Math.random() * spread);
        const t0 = Date.now();
        const head = await headBlob(base, repo, blob.digest);
        if (head.status === 404) {
          outcome.collected++;
          return;
        }
        assert.equal(head.status, 200, show(head));
        const manifest = imageManifest({ digest: blob.digest, size: blob.data.length }, []);
        const put = await putManifestBytes(base, repo, manifest.digest, manifest.body, manifest.mediaType);
        if (put.status === 201) outcome.kept++;
        else outcome.violations.push(`HEAD 200 for ${blob.digest}, then the manifest PUT ${Date.now() - t0} ms later: ${show(put)}`);
      })]);
    }
    console.log(`gc-head-race[${dialect.name}]: ${outcome.kept} HEAD 200 then PUT 201, ${outcome.collected} HEAD 404 (collected first), ${outcome.violations.length} HEAD 200 then PUT rejected`);
    assert.deepEqual(outcome.violations, [], 'HEAD answered 200 for a blob that GC was collecting');
  } finally {
    await closeServer(server);
  }
}

/**
 * A new base layer is typically pushed by several builds at once (into several repositories and
 * into the same one): every one of those uploads must be acknowledged, none may fail.
 */
async function simultaneousFirstPushes(dialect: DialectUnderTest): Promise<void> {
  const server = await startTestServer({ dialect, config: { registry: { gc: { gracePeriod: `${graceMs}ms`, interval: 0 } } } });
  try {
    const failures: string[] = [];
    let acknowledged = 0;
    for (let round = 0; round < 25; round++) {
      const data = randomBytes(2048 + round * 512);
      const digest = sha256(data);
      await Promise.all(Array.from({ length: 8 }, async (_, i) => {
        const repo = `shared/app${i % 5}`;
        const stored = i % 2 === 0 ? await uploadSinglePost(server.url, repo, data, digest) : await uploadPostPut(server.url, repo, data, digest);
        if (stored.status === 201 && stored.headers.get('docker-content-digest') === digest) acknowledged++;
        else failures.push(`round ${round}, ${repo}: ${show(stored)}`);
      }));
      for (let i = 0; i < 5; i++) {
        const got = await getBlob(server.url, `shared/app${i}`, digest);
        if (got.status !== 200 || sha256(got.body) !== digest) failures.push(`round ${round}, shared/app${i}: GET ${show(got)}`);
      }
    }
    assert.deepEqual(failures, [], 'simultaneous pushes of one new blob');
    assert.equal(acknowledged, 25 * 8);
    const report = await server.server.registry.fsck();
    assert.deepEqual(report.problems, []);
  } finally {
    await closeServer(server);
  }
}

for (const dialect of dialects) {
  test(`simultaneous first pushes of a shared layer on ${dialect.name}: all acknowledged`, { timeout: 60_000 }, async () => {
    await simultaneousFirstPushes(dialect);
  });
}

for (const dialect of dialects) {
  test(`HEAD racing GC on ${dialect.name}: a HEAD 200 always keeps the blob for the manifest PUT that follows`, { timeout: 90_000 }, async () => {
    await headRacesGc(dialect);
  });
}

for (const dialect of dialects) {
  test(`GC soak on ${dialect.name}: online GC with a 1 s grace period never loses acknowledged, referenced content`, { timeout: soakMs + 90_000 }, async () => {
    await soakOn(dialect);
  });
}
