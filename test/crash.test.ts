/**
 * Crash safety of the registry: `slipway serve` runs as a child process and is killed with
 * SIGKILL in the middle of concurrent monolithic and chunked uploads and manifest pushes, then
 * restarted on the same data folder and database (twice). What must hold afterwards:
 *   - every acknowledged (201) blob and manifest is intact: the exact bytes, the right digest;
 *   - nothing half-written is visible: a blob whose upload was not acknowledged is either
 *     complete and correct or 404, and every stored file hashes to its name;
 *   - upload sessions the client had not finished resume (GET Location → 204 with Range,
 *     PATCH on from there, PUT → 201 with the right digest), and those left alone are removed
 *     cleanly by `slipway gc` once `registry.uploadExpiry` has passed (BLOB_UPLOAD_UNKNOWN, no
 *     file left in blobs/_uploads);
 *   - `slipway fsck --json` finds no problem, and after `slipway gc --grace-period 0s` no crash
 *     debris is left at all.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import type { FsckReport } from '../src/registry/fsck.js';
import type { GcReport } from '../src/registry/gc.js';
import { cleanEnv, killAllChildren, killTree, repoRoot, run, slipwayBin, spawnTracked } from './helpers/commands.js';
import { dialects, tempDir, type DialectUnderTest } from './helpers/harness.js';
import { imageManifest, sha256, type BuiltManifest } from './helpers/oci.js';
import {
  finishUpload, getBlob, getManifest, patchChunk, putManifestBytes, rangeEnd, registryError, show, sleep, startUpload,
  call, uploadPostPut, uploadSinglePost, type Fetched,
} from './helpers/registry-client.js';

after(() => killAllChildren());

const rounds = 2;
const clientCount = 10;
const repositories = ['crash/one', 'crash/two', 'crash/three'];
/** Sessions opened on purpose and left half-written before each kill. */
const parkedSessionsPerRound = 4;

interface Blob {
  digest: string;
  data: Buffer;
}

interface Session {
  repo: string;
  blob: Blob;
  location: URL;
  /** Bytes the server acknowledged (last 202). */
  acknowledged: number;
  /** The completing PUT was sent (its outcome unknown). */
  completing: boolean;
}

class Ledger {
  readonly ackedBlobs = new Map<string, { repo: string; blob: Blob }>(); // "repo digest"
  /** Uploads sent but never acknowledged (in flight at the kill). */
  readonly unackedBlobs = new Map<string, { repo: string; blob: Blob }>();
  readonly ackedManifests: Array<{ repo: string; tag: string; manifest: BuiltManifest; blobs: Blob[] }> = [];
  readonly unackedManifests: Array<{ repo: string; tag: string; manifest: BuiltManifest }> = [];
  /** Chunked sessions not completed with a 201, by Location. */
  readonly sessions = new Map<string, Session>();
  readonly unexpected: string[] = [];
  readonly stats = { monolithic: 0, chunked: 0, manifests: 0, resumed: 0, resumedGone: 0, expired: 0, inFlightVisible: 0, inFlightAbsent: 0 };
  private tagCounter = 0;
  nextTag(): string {
    return `m${++this.tagCounter}`;
  }
}

interface Serve {
  child: ChildProcess;
  url: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `slipway serve` on 127.0.0.1:0; resolves once it printed where it listens. */
async function serve(args: string[]): Promise<Serve> {
  const child = spawnTracked(process.execPath, [slipwayBin, 'serve', '--listen', '127.0.0.1:0', ...args], {
    cwd: repoRoot, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: Buffer[] = [];
  const output = () => Buffer.concat(chunks).toString('utf8');
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      killTree(child);
      reject(new Error(`slipway serve did not start within 30 s:\n${output()}`));
    }, 30_000);
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      const match = /Slipway listening on (http:\/\/[^\s]+)/.exec(output());
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => chunks.push(chunk));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`slipway serve exited (${code ?? signal}) before listening:\n${output()}`));
    });
  });
  return { child, url, output, exited };
}

async function slipway(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run(process.execPath, [slipwayBin, ...args], { cwd: repoRoot, env: cleanEnv(), timeoutMs: 60_000, allowFailure: true });
}

function randomBlobOf(size: number): Blob {
  const data = randomBytes(size);
  return { data, digest: sha256(data) };
}

const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]!;

/** One client's loop of uploads and manifest pushes until the server dies. */
async function client(base: string, ledger: Ledger, state: { killed: boolean }): Promise<void> {
  while (!state.killed) {
    const repo = pick(repositories);
    const roll = Math.random();
    try {
      if (roll < 0.5) {
        const blob = randomBlobOf(Math.random() < 0.2 ? 1024 * 1024 + Math.floor(Math.random() * 1024 * 1024) : 4096 + Math.floor(Math.random() * 256 * 1024));
        const k = `${repo} ${blob.digest}`;
        ledger.unackedBlobs.set(k, { repo, blob });
        const stored = roll < 0.3 ? await uploadSinglePost(base, repo, blob.data, blob.digest) : await uploadPostPut(base, repo, blob.data, blob.digest);
        if (stored.status !== 201 || stored.headers.get('docker-content-digest') !== blob.digest) {
          ledger.unexpected.push(`monolithic upload: ${show(stored)}`);
          continue;
        }
        ledger.unackedBlobs.delete(k);
        ledger.ackedBlobs.set(k, { repo, blob });
        ledger.stats.monolithic++;
      } else if (roll < 0.72) {
        await chunked(base, ledger, repo, randomBlobOf(128 * 1024 + Math.floor(Math.random() * 1024 * 1024)), 32 * 1024 + Math.floor(Math.random() * 192 * 1024));
      } else if (roll < 0.8) {
        // Few, large PATCHes: the store writes a big body as several writes in flight at once.
        await chunked(base, ledger, repo, randomBlobOf(4 * 1024 * 1024 + Math.floor(Math.random() * 1024 * 1024)), 2 * 1024 * 1024 + Math.floor(Math.random() * 2 * 1024 * 1024));
      } else {
        const available = [...ledger.ackedBlobs.values()].filter((b) => b.repo === repo);
        if (available.length < 2) continue;
        const [config, ...layers] = Array.from({ length: 2 + Math.floor(Math.random() * 3) }, () => pick(available).blob);
        const manifest = imageManifest({ digest: config!.digest, size: config!.data.length }, layers.map((l) => ({ digest: l.digest, size: l.data.length })), { annotations: { nonce: randomBytes(8).toString('hex') } });
        const tag = ledger.nextTag();
        const entry = { repo, tag, manifest };
        ledger.unackedManifests.push(entry);
        const put = await putManifestBytes(base, repo, tag, manifest.body, manifest.mediaType);
        if (put.status !== 201 || put.headers.get('docker-content-digest') !== manifest.digest) {
          ledger.unexpected.push(`manifest PUT: ${show(put)}`);
          continue;
        }
        ledger.unackedManifests.splice(ledger.unackedManifests.indexOf(entry), 1);
        ledger.ackedManifests.push({ ...entry, blobs: [config!, ...layers] });
        ledger.stats.manifests++;
      }
    } catch (error) {
      if (!state.killed) ledger.unexpected.push(`request failed while the server was up: ${(error as Error).stack ?? error}`);
      return;
    }
  }
}

/** A chunked upload that records its session, so an interrupted one can be resumed later. */
async function chunked(base: string, ledger: Ledger, repo: string, blob: Blob, chunkSize: number, stopAfter?: number): Promise<void> {
  let location = await startUpload(base, repo);
  const session: Session = { repo, blob, location, acknowledged: 0, completing: false };
  ledger.sessions.set(location.pathname, session);
  const end = stopAfter ?? blob.data.length;
  while (session.acknowledged < end) {
    const chunk = blob.data.subarray(session.acknowledged, Math.min(session.acknowledged + chunkSize, end));
    const patched = await patchChunk(location, chunk, session.acknowledged);
    if (patched.status !== 202) {
      ledger.unexpected.push(`PATCH: ${show(patched)}`);
      ledger.sessions.delete(location.pathname);
      return;
    }
    session.acknowledged += chunk.length;
    location = new URL(patched.headers.get('location')!, base);
    session.location = location;
  }
  if (stopAfter !== undefined) return;
  session.completing = true;
  const k = `${repo} ${blob.digest}`;
  ledger.unackedBlobs.set(k, { repo, blob });
  const stored = await finishUpload(base, location, blob.digest);
  if (stored.status !== 201 || stored.headers.get('docker-content-digest') !== blob.digest) {
    ledger.unexpected.push(`chunked upload PUT: ${show(stored)}`);
    return;
  }
  ledger.sessions.delete(location.pathname);
  ledger.unackedBlobs.delete(k);
  ledger.ackedBlobs.set(k, { repo, blob });
  ledger.stats.chunked++;
}

/** Runs the load and SIGKILLs the server in the middle of it. */
async function loadAndKill(server: Serve, ledger: Ledger): Promise<void> {
  const state = { killed: false };
  for (let i = 0; i < parkedSessionsPerRound; i++) {
    const blob = randomBlobOf(200 * 1024 + i * 1000);
    await chunked(server.url, ledger, pick(repositories), blob, 64 * 1024, 64 * 1024 * (1 + (i % 2)) + (i === 3 ? 0 : 1000 * i));
  }
  const clients = Array.from({ length: clientCount }, () => client(server.url, ledger, state));
  await sleep(1200 + Math.random() * 1500);
  state.killed = true;
  killTree(server.child, 'SIGKILL');
  const { signal } = await server.exited;
  assert.equal(signal, 'SIGKILL');
  await Promise.all(clients);
}

/** Every acknowledged blob and manifest is intact; nothing unacknowledged is half-visible. */
async function verifyIntact(base: string, ledger: Ledger, dataDir: string): Promise<void> {
  const problems: string[] = [];
  for (const [k, { repo, blob }] of ledger.ackedBlobs) {
    const got = await getBlob(base, repo, blob.digest);
    if (got.status !== 200) problems.push(`acknowledged blob ${k}: ${show(got)}`);
    else if (got.body.length !== blob.data.length || sha256(got.body) !== blob.digest) problems.push(`acknowledged blob ${k}: ${got.body.length} bytes hashing to ${sha256(got.body)}`);
  }
  for (const { repo, tag, manifest, blobs } of ledger.ackedManifests) {
    for (const reference of [tag, manifest.digest]) {
      const got = await getManifest(base, repo, reference);
      if (got.status !== 200 || !got.body.equals(manifest.body) || got.headers.get('docker-content-digest') !== manifest.digest) problems.push(`acknowledged manifest ${repo}:${reference}: ${show(got)}`);
    }
    for (const blob of blobs) if (!ledger.ackedBlobs.has(`${repo} ${blob.digest}`)) problems.push(`ledger: manifest blob ${blob.digest} not acknowledged`);
  }
  for (const [k, { repo, blob }] of ledger.unackedBlobs) {
    const got = await getBlob(base, repo, blob.digest);
    if (got.status === 200) {
      if (sha256(got.body) !== blob.digest) problems.push(`unacknowledged blob ${k} visible with wrong content (${got.body.length} of ${blob.data.length} bytes)`);
      else ledger.stats.inFlightVisible++;
    } else if (got.status === 404 && registryError(got).code === 'BLOB_UNKNOWN') {
      ledger.stats.inFlightAbsent++;
    } else {
      problems.push(`unacknowledged blob ${k}: ${show(got)}`);
    }
  }
  for (const { repo, tag, manifest } of ledger.unackedManifests) {
    const got = await getManifest(base, repo, tag);
    if (got.status === 200 ? !got.body.equals(manifest.body) : registryError(got).code !== 'MANIFEST_UNKNOWN') problems.push(`unacknowledged manifest ${repo}:${tag}: ${show(got)}`);
  }
  // No stored file is ever partial: each hashes to its name.
  const root = path.join(dataDir, 'blobs', 'sha256');
  for (const prefix of await readdir(root).catch(() => [] as string[])) {
    for (const name of await readdir(path.join(root, prefix))) {
      const digest = `sha256:${name}`;
      if (sha256(await readFile(path.join(root, prefix, name))) !== digest) problems.push(`stored file ${digest} does not hash to its name`);
    }
  }
  assert.deepEqual(problems, [], 'content after the crash');
}

/** Resumes every other interrupted session (always those the client had not finished). */
async function resumeSessions(base: string, ledger: Ledger): Promise<Session[]> {
  const problems: string[] = [];
  const left: Session[] = [];
  let i = 0;
  for (const [key, session] of ledger.sessions) {
    if (i++ % 2 === 1) {
      left.push(session);
      continue;
    }
    ledger.sessions.delete(key);
    // The restarted server listens on another port: same path, new base.
    const status = await call(new URL(session.location.pathname, base));
    if (status.status === 404 && registryError(status).code === 'BLOB_UPLOAD_UNKNOWN') {
      // Only a session whose completing PUT was under way may be gone; its blob is then whole or absent.
      if (!session.completing) problems.push(`session ${key} (${session.acknowledged} bytes acknowledged, never completed) is gone after the crash`);
      ledger.stats.resumedGone++;
      continue;
    }
    if (status.status !== 204) {
      problems.push(`session ${key} status: ${show(status)}`);
      continue;
    }
    let size = rangeEnd(status) + 1;
    if (size < session.acknowledged || size > session.blob.data.length) {
      problems.push(`session ${key} reports ${size} bytes, ${session.acknowledged} were acknowledged, the blob has ${session.blob.data.length}`);
      continue;
    }
    let location = new URL(status.headers.get('location') ?? session.location.pathname, base);
    let patched = await patchChunk(location, session.blob.data.subarray(size), size);
    if (patched.status === 416 && size === 1) {
      // `Range: 0-0` is both an empty session and a one-byte one.
      size = 0;
      patched = await patchChunk(location, session.blob.data, 0);
    }
    if (patched.status !== 202 || rangeEnd(patched) !== session.blob.data.length - 1) {
      problems.push(`session ${key} resume PATCH from ${size}: ${show(patched)}`);
      continue;
    }
    location = new URL(patched.headers.get('location')!, base);
    const done = await finishUpload(base, location, session.blob.digest);
    if (done.status !== 201 || done.headers.get('docker-content-digest') !== session.blob.digest) {
      problems.push(`session ${key} resumed from ${size} (acknowledged ${session.acknowledged}) does not complete: ${show(done)}`);
      continue;
    }
    const got = await getBlob(base, session.repo, session.blob.digest);
    if (got.status !== 200 || sha256(got.body) !== session.blob.digest) problems.push(`resumed blob ${session.blob.digest}: ${show(got)}`);
    ledger.ackedBlobs.set(`${session.repo} ${session.blob.digest}`, { repo: session.repo, blob: session.blob });
    ledger.unackedBlobs.delete(`${session.repo} ${session.blob.digest}`);
    ledger.stats.resumed++;
  }
  assert.deepEqual(problems, [], 'resuming interrupted upload sessions');
  return left;
}

function parseJson<T>(stdout: string, what: string): T {
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  assert.ok(line, `${what} printed no JSON: ${stdout}`);
  return JSON.parse(line) as T;
}

async function crashOn(dialect: DialectUnderTest): Promise<void> {
  const dir = await tempDir('slipway-crash-');
  const database = await dialect.create();
  let server: Serve | undefined;
  try {
    const dataDir = path.join(dir.path, 'data');
    const configFile = path.join(dir.path, 'slipway.yaml');
    await writeFile(configFile, [
      'log:', '  level: warn', '  requests: false',
      'registry:', '  uploadExpiry: 1s', '  gc:', '    interval: 0', '    gracePeriod: 1h',
      'shutdownTimeout: 10s', '',
    ].join('\n'));
    const common = ['--config', configFile, '--data-dir', dataDir, '--database', database.url];
    const ledger = new Ledger();

    server = await serve(common);
    for (let round = 1; round <= rounds; round++) {
      await loadAndKill(server, ledger);
      assert.deepEqual(ledger.unexpected, [], `unexpected responses before the kill in round ${round}`);
      const interrupted = [...ledger.sessions.values()].filter((s) => s.acknowledged < s.blob.data.length || s.completing);
      assert.ok(interrupted.length >= parkedSessionsPerRound, 'no interrupted sessions to resume');
      server = await serve(common);
      await verifyIntact(server.url, ledger, dataDir);
      const left = await resumeSessions(server.url, ledger);

      // Sessions left alone expire: `slipway gc` (upload expiry 1 s, grace period 1 h) while the server runs.
      await sleep(1100);
      const gc = await slipway(['gc', '--json', ...common]);
      assert.equal(gc.code, 0, `slipway gc failed: ${gc.stdout}${gc.stderr}`);
      const gcReport = parseJson<GcReport>(gc.stdout, 'slipway gc');
      // A left session whose completing PUT was under way may have committed before the kill
      // (then it is gone, not expired); every other one must be expired.
      const mustExpire = left.filter((s) => !s.completing).length;
      assert.ok(gcReport.uploadsExpired >= mustExpire, `gc expired ${gcReport.uploadsExpired} uploads, ${mustExpire} were left that never completed`);
      assert.equal(gcReport.blobsDeleted, 0, 'gc with a 1 h grace period deleted blobs');
      for (const session of left) {
        const status = await call(new URL(session.location.pathname, server.url));
        assert.equal(status.status, 404, `expired session still answers: ${show(status)}`);
        assert.equal(registryError(status).code, 'BLOB_UPLOAD_UNKNOWN');
        ledger.sessions.delete(session.location.pathname);
        ledger.stats.expired++;
      }
      assert.deepEqual(await readdir(path.join(dataDir, 'blobs', '_uploads')), [], 'files left in blobs/_uploads after expiry');
      ledger.sessions.clear();

      await verifyIntact(server.url, ledger, dataDir);
      const fsck = await slipway(['fsck', '--json', ...common]);
      const fsckReport = parseJson<FsckReport>(fsck.stdout, 'slipway fsck');
      assert.deepEqual(fsckReport.problems, [], `fsck after crash ${round}`);
      assert.equal(fsck.code, 0);
      assert.ok(fsckReport.blobsChecked > 0);
    }

    // A full collection removes every crash leftover (claimed rows without content, unreferenced blobs) and nothing tagged.
    const gc = await slipway(['gc', '--json', '--grace-period', '0s', ...common]);
    assert.equal(gc.code, 0, `slipway gc --grace-period 0s failed: ${gc.stdout}${gc.stderr}`);
    const problems: string[] = [];
    for (const { repo, tag, manifest, blobs } of ledger.ackedManifests) {
      const got = await getManifest(server.url, repo, tag);
      if (got.status !== 200 || !got.body.equals(manifest.body)) problems.push(`tagged manifest ${repo}:${tag} after full gc: ${show(got)}`);
      for (const blob of blobs) {
        const pulled: Fetched = await getBlob(server.url, repo, blob.digest);
        if (pulled.status !== 200 || sha256(pulled.body) !== blob.digest) problems.push(`blob ${repo}@${blob.digest} of ${tag} after full gc: ${show(pulled)}`);
      }
    }
    assert.deepEqual(problems, [], 'tagged content after a full GC');
    const fsck = await slipway(['fsck', '--json', ...common]);
    const fsckReport = parseJson<FsckReport>(fsck.stdout, 'slipway fsck');
    assert.deepEqual(fsckReport.problems, [], 'fsck after a full GC');
    assert.equal(fsckReport.unlinkedRowsWithoutContent, 0, 'crash leftovers survived a full GC');
    assert.deepEqual(await readdir(path.join(dataDir, 'blobs', '_uploads')), []);

    // And the server still shuts down cleanly.
    killTree(server.child, 'SIGTERM');
    const exit = await server.exited;
    assert.equal(exit.code, 0, `slipway serve did not exit cleanly on SIGTERM:\n${server.output()}`);
    server = undefined;

    const s = ledger.stats;
    console.log(`crash[${dialect.name}] ${rounds} kills: ${s.monolithic} monolithic + ${s.chunked} chunked uploads and ${s.manifests} manifests acknowledged and intact; `
      + `in flight at the kill: ${s.inFlightVisible} blobs complete, ${s.inFlightAbsent} absent, none partial; `
      + `${s.resumed} sessions resumed, ${s.resumedGone} gone while completing, ${s.expired} expired cleanly; fsck clean`);
  } catch (error) {
    // The server's own words explain most failures (a crash, a 500): keep them with the error.
    if (server && error instanceof Error) error.message += `\nserver output:\n${server.output().slice(-8000)}`;
    throw error;
  } finally {
    if (server) killTree(server.child, 'SIGKILL');
    await server?.exited;
    await database.drop().catch(() => undefined);
    await dir.remove();
  }
}

for (const dialect of dialects) {
  test(`crash safety on ${dialect.name}: kill -9 mid-push loses nothing acknowledged and shows nothing half-written`, { timeout: 150_000 }, async () => {
    await crashOn(dialect);
  });
}
