/**
 * Several stateless replicas: two `slipway serve` processes on one PostgreSQL database, one S3
 * bucket (s3rver) and one vault master key, with Debian's nginx in front (round robin). Drives:
 *   - a chunked upload whose POST, PATCHes and PUT alternate between the replicas, read back
 *     through the other one;
 *   - skopeo pushing a multi-layer image through nginx (its requests spread over both) and
 *     pulling it through one replica directly;
 *   - a registry token from replica A accepted by B, and a signing-key rotation reaching both;
 *   - webhook pings queued through either replica, each delivered (claimed) exactly once;
 *   - replica A killed -9 in the middle of concurrent chunked pushes through nginx: every
 *     acknowledged blob is readable through B, and every interrupted session resumes on B from
 *     at least its acknowledged offset and completes with the right digest.
 * Needs PostgreSQL (SLIPWAY_TEST_POSTGRES_URL), nginx and skopeo.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { cleanEnv, killAllChildren, killTree, repoRoot, run, slipwayBin } from './helpers/commands.js';
import { adminPassword, basic, startNginx, startReplica, stopReplica, type Replica } from './helpers/replicas.js';
import { dialects, tempDir } from './helpers/dialects.js';
import { startS3Server } from './helpers/s3-server.js';
import { makeLayer, goArch, layoutBlobPath } from './helpers/oci-layout.js';
import { call, show, sleep, type Fetched } from './helpers/registry-client.js';
import { ociConfigType, ociIndexType, ociLayerType, ociManifestType, sha256 } from './helpers/oci.js';

const postgres = dialects.find((dialect) => dialect.name === 'postgres');

after(() => killAllChildren());

async function token(base: string, scope: string): Promise<string> {
  const response = await call(`${base}/auth/token?service=slipway&scope=${encodeURIComponent(scope)}`, { headers: { authorization: basic } });
  assert.equal(response.status, 200, show(response));
  return (JSON.parse(response.body.toString('utf8')) as { token: string }).token;
}

function kidOf(jwt: string): string {
  return (JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }).kid;
}

const body = (data: Buffer): BodyInit => new Uint8Array(data.buffer, data.byteOffset, data.byteLength) as unknown as BodyInit;

/** The path (and query) of a Location, to send to any replica. */
function locationPath(fetched: Fetched): string {
  const value = fetched.headers.get('location');
  if (!value) throw new Error(`no Location: ${show(fetched)}`);
  const url = new URL(value, 'http://placeholder');
  return `${url.pathname}${url.search}`;
}

/** A multi-layer OCI layout (real gzip'd tar layers) for skopeo to push. */
async function multiLayerLayout(dir: string, tag: string, layerCount: number): Promise<{ manifestDigest: string; blobs: string[] }> {
  const layers = [];
  for (let i = 0; i < layerCount; i++) {
    layers.push(await makeLayer([{ path: `layer-${i}/data.bin`, content: randomBytes(i === 0 ? 7 * 1024 * 1024 : 200 * 1024 + i) }]));
  }
  const config = Buffer.from(JSON.stringify({
    created: new Date().toISOString(), architecture: goArch(), os: 'linux', config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.diffId) },
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: ociManifestType,
    config: { mediaType: ociConfigType, digest: sha256(config), size: config.length },
    layers: layers.map((layer) => ({ mediaType: ociLayerType, digest: layer.digest, size: layer.data.length })),
  }));
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const blob of [config, manifest, ...layers.map((layer) => layer.data)]) await writeFile(layoutBlobPath(dir, sha256(blob)), blob);
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(path.join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2, mediaType: ociIndexType,
    manifests: [{ mediaType: ociManifestType, digest: sha256(manifest), size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  }));
  return { manifestDigest: sha256(manifest), blobs: [sha256(config), ...layers.map((layer) => layer.digest)] };
}

describe('two replicas behind nginx on PostgreSQL and S3', { timeout: 420_000, skip: postgres ? false : 'needs SLIPWAY_TEST_POSTGRES_URL' }, () => {
  test('uploads, pulls, tokens and jobs cross replicas; a replica killed -9 mid-push loses no acknowledged data', { timeout: 400_000 }, async () => {
    const work = await tempDir('slipway-replicas-');
    const database = await postgres!.create();
    const s3 = await startS3Server();
    const masterKey = randomBytes(32).toString('base64');
    const shared = { database: database.url, s3, masterKey };
    let nginx: { url: string; stop(): Promise<void> } | undefined;
    let receiver: Server | undefined;
    const replicas: Replica[] = [];
    try {
      // At the same time: migrations, the admin user, the vault data key and the first token key
      // are each created once, whoever comes first.
      replicas.push(...await Promise.all([startReplica('a', work.path, shared), startReplica('b', work.path, shared)]));
      const [a, b] = replicas as [Replica, Replica];
      nginx = await startNginx(work.path, replicas.map((replica) => new URL(replica.url).host));
      const figures: Record<string, unknown> = {};

      // ---- a token from A is accepted by B (shared signing keys) ----
      const pushToken = await token(a.url, 'repository:replicas/chunked:pull,push');
      const auth = { authorization: `Bearer ${pushToken}` };
      assert.equal((await call(`${b.url}/v2/`, { headers: auth })).status, 200, 'B accepts a token A signed');

      // ---- a chunked upload alternating replicas: POST on A, PATCHes on B, A, B, PUT on A ----
      const data = randomBytes(13 * 1024 * 1024 + 12345);
      const digest = sha256(data);
      const chunk = 3 * 1024 * 1024;
      const bases = [a.url, b.url];
      let started = await call(`${a.url}/v2/replicas/chunked/blobs/uploads/`, { method: 'POST', headers: auth });
      assert.equal(started.status, 202, show(started));
      let at = locationPath(started);
      let turn = 1;
      for (let offset = 0; offset < data.length; offset += chunk, turn++) {
        const part = data.subarray(offset, Math.min(offset + chunk, data.length));
        const patched = await call(`${bases[turn % 2]}${at}`, {
          method: 'PATCH', body: body(part),
          headers: { ...auth, 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + part.length - 1}` },
        });
        assert.equal(patched.status, 202, `PATCH at ${offset} on ${turn % 2 ? 'b' : 'a'}: ${show(patched)}`);
        assert.equal(patched.headers.get('range'), `0-${offset + part.length - 1}`);
        at = locationPath(patched);
      }
      const status = await call(`${bases[turn % 2]}${at}`, { headers: auth });
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), `0-${data.length - 1}`, 'either replica reports the whole session');
      const url = new URL(at, 'http://placeholder');
      url.searchParams.set('digest', digest);
      const completed = await call(`${bases[(turn + 1) % 2]}${url.pathname}${url.search}`, { method: 'PUT', headers: auth });
      assert.equal(completed.status, 201, show(completed));
      for (const base of bases) {
        const read = await call(`${base}/v2/replicas/chunked/blobs/${digest}`, { headers: auth });
        assert.equal(read.status, 200);
        assert.ok(read.body.equals(data), `the blob reads back whole through ${base}`);
      }
      figures.chunkedUpload = { bytes: data.length, patches: turn - 1 };

      // ---- skopeo push through nginx, pull through B directly ----
      const layout = await multiLayerLayout(path.join(work.path, 'layout'), 'v1', 4);
      const creds = `admin:${adminPassword}`;
      const nginxHost = new URL(nginx.url).host;
      const pushStarted = Date.now();
      const pushed = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', creds, `oci:${path.join(work.path, 'layout')}:v1`, `docker://${nginxHost}/replicas/skopeo:v1`], { timeoutMs: 120_000, allowFailure: true });
      assert.equal(pushed.code, 0, `skopeo push: ${pushed.stderr}`);
      figures.skopeoPushMs = Date.now() - pushStarted;
      const served = replicas.map((replica) => (replica.output().match(/\/v2\/replicas\/skopeo\//g) ?? []).length);
      figures.skopeoRequestsPerReplica = served;
      assert.ok(served.every((count) => count > 0), `both replicas served part of the push (${served.join(', ')})`);
      const pulled = await run('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', creds, `docker://${new URL(b.url).host}/replicas/skopeo:v1`, `oci:${path.join(work.path, 'pulled')}:v1`], { timeoutMs: 120_000, allowFailure: true });
      assert.equal(pulled.code, 0, `skopeo pull: ${pulled.stderr}`);
      const pulledIndex = JSON.parse(await readFile(path.join(work.path, 'pulled', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
      assert.equal(pulledIndex.manifests[0]!.digest, layout.manifestDigest, 'the same manifest comes back');
      for (const blob of layout.blobs) {
        assert.equal(sha256(await readFile(layoutBlobPath(path.join(work.path, 'pulled'), blob))), blob);
      }

      // ---- a signing-key rotation (CLI beside the replicas) reaches both ----
      const rotated = await run(process.execPath, [slipwayBin, 'auth', 'rotate-token-key', '--json', '--database', database.url, '--data-dir', a.dataDir], {
        cwd: repoRoot, env: cleanEnv({ SLIPWAY_MASTER_KEY: masterKey }), timeoutMs: 60_000, allowFailure: true,
      });
      assert.equal(rotated.code, 0, rotated.stderr);
      const newKid = (JSON.parse(rotated.stdout) as { kid: string }).kid;
      // Signers re-read the keys every 5 s; verifiers at once on an unknown kid.
      const rotationStarted = Date.now();
      let fresh = await token(b.url, 'repository:replicas/chunked:pull');
      while (kidOf(fresh) !== newKid && Date.now() - rotationStarted < 10_000) {
        await sleep(250);
        fresh = await token(b.url, 'repository:replicas/chunked:pull');
      }
      assert.equal(kidOf(fresh), newKid, 'B signs with the rotated key');
      figures.rotationReachedSignerMs = Date.now() - rotationStarted;
      assert.equal((await call(`${a.url}/v2/replicas/chunked/blobs/${digest}`, { method: 'HEAD', headers: { authorization: `Bearer ${fresh}` } })).status, 200, 'A accepts it');
      assert.equal((await call(`${b.url}/v2/`, { headers: auth })).status, 200, 'the old key still verifies');

      // ---- webhook pings queued through either replica: each claimed and delivered once ----
      const deliveries: string[] = [];
      receiver = createServer((request, response) => {
        deliveries.push(String(request.headers['x-slipway-delivery']));
        request.resume();
        request.on('end', () => response.end('ok'));
      });
      await new Promise<void>((resolve) => receiver!.listen(0, '127.0.0.1', resolve));
      const hookUrl = `http://127.0.0.1:${(receiver.address() as net.AddressInfo).port}/hook`;
      const json = { authorization: basic, 'content-type': 'application/json' };
      assert.equal((await call(`${a.url}/api/v1/namespaces`, { method: 'POST', headers: json, body: JSON.stringify({ name: 'hooks' }) })).status, 201);
      const hook = await call(`${b.url}/api/v1/namespaces/hooks/webhooks`, { method: 'POST', headers: json, body: JSON.stringify({ url: hookUrl, events: ['*'] }) });
      assert.equal(hook.status, 201, show(hook));
      const hookId = (JSON.parse(hook.body.toString('utf8')) as { id: string }).id;
      const pingsStarted = Date.now();
      const queued: string[] = [];
      for (let i = 0; i < 10; i++) {
        const ping = await call(`${bases[i % 2]}/api/v1/namespaces/hooks/webhooks/${hookId}/ping`, { method: 'POST', headers: { authorization: basic } });
        assert.equal(ping.status, 202, show(ping));
        queued.push((JSON.parse(ping.body.toString('utf8')) as { id: string }).id);
      }
      const deadline = Date.now() + 20_000;
      while (deliveries.length < queued.length && Date.now() < deadline) await sleep(50);
      figures.tenPingsDeliveredMs = Date.now() - pingsStarted;
      await sleep(1500); // a double claim would show up meanwhile
      assert.equal(deliveries.length, queued.length, `each ping delivered once (${deliveries.length} deliveries)`);
      assert.deepEqual([...new Set(deliveries)].sort(), [...queued].sort());

      // ---- kill -9 mid-push the replica holding the singleton leases: acknowledged data
      // survives, sessions resume on the other, the leases move to it ----
      const leaseDb = new pg.Client({ connectionString: database.url });
      await leaseDb.connect();
      const gcHolder = (await leaseDb.query<{ holder: string }>("SELECT holder FROM leases WHERE name = 'registry-gc'")).rows[0]?.holder ?? '';
      await leaseDb.end();
      const victim = replicas.find((replica) => gcHolder.includes(`-${replica.child.pid}-`));
      assert.ok(victim, `one replica holds the GC lease (${gcHolder})`);
      const survivor = victim === a ? b : a;
      figures.killed = victim.name;
      const pushAuth = { authorization: `Bearer ${await token(survivor.url, 'repository:replicas/crash:pull,push')}` };
      const acked: Array<{ digest: string; data: Buffer }> = [];
      const interrupted: Array<{ at: string; acknowledged: number; data: Buffer; digest: string }> = [];
      const state = { killed: false, stop: false };
      let requestsAfterKill = 0;
      const client = async () => {
        while (!state.stop) {
          const blob = randomBytes(2 * 1024 * 1024 + Math.floor(Math.random() * 1024 * 1024));
          const blobDigest = sha256(blob);
          let session: { at: string; acknowledged: number } | undefined;
          try {
            const opened = await call(`${nginx!.url}/v2/replicas/crash/blobs/uploads/`, { method: 'POST', headers: pushAuth });
            if (opened.status !== 202) throw new Error(show(opened));
            session = { at: locationPath(opened), acknowledged: 0 };
            const step = 512 * 1024;
            for (let offset = 0; offset < blob.length; offset += step) {
              const part = blob.subarray(offset, Math.min(offset + step, blob.length));
              const patched = await call(`${nginx!.url}${session.at}`, {
                method: 'PATCH', body: body(part),
                headers: { ...pushAuth, 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + part.length - 1}` },
              });
              if (state.killed) requestsAfterKill++;
              if (patched.status !== 202) throw new Error(show(patched));
              session = { at: locationPath(patched), acknowledged: offset + part.length };
            }
            const done = new URL(session.at, 'http://placeholder');
            done.searchParams.set('digest', blobDigest);
            const put = await call(`${nginx!.url}${done.pathname}${done.search}`, { method: 'PUT', headers: pushAuth });
            if (put.status !== 201) throw new Error(show(put));
            acked.push({ digest: blobDigest, data: blob });
          } catch {
            // The request hit the killed replica (502 from nginx, or a reset): what was
            // acknowledged must still be there.
            if (session) interrupted.push({ ...session, data: blob, digest: blobDigest });
          }
        }
      };
      const clients = Array.from({ length: 4 }, () => client());
      await sleep(3000);
      killTree(victim.child, 'SIGKILL');
      state.killed = true;
      await victim.exited;
      // The victim's singleton leases (GC, mirror poller) pass to the survivor: at once when it
      // sees the victim's pid is gone (same host), else after the 15 s ttl.
      const leases = new pg.Client({ connectionString: database.url });
      await leases.connect();
      const handoverStarted = Date.now();
      try {
        const holders = async () => (await leases.query<{ name: string; holder: string }>('SELECT name, holder FROM leases WHERE expires_at > $1', [Date.now()])).rows;
        while (Date.now() - handoverStarted < 25_000) {
          const rows = await holders();
          if (rows.length === 2 && rows.every((row) => row.holder.includes(`-${survivor.child.pid}-`))) break;
          await sleep(100);
        }
        const rows = await holders();
        assert.deepEqual(rows.map((row) => row.name).sort(), ['pipeline-mirrors', 'registry-gc']);
        assert.ok(rows.every((row) => row.holder.includes(`-${survivor.child.pid}-`)), `B holds every lease: ${JSON.stringify(rows)}`);
        figures.leaseHandoverMs = Date.now() - handoverStarted;
      } finally {
        await leases.end();
      }
      await sleep(Math.max(0, 3000 - (Date.now() - handoverStarted)));
      state.stop = true;
      await Promise.all(clients);
      figures.killMidPush = { ackedBlobs: acked.length, interruptedSessions: interrupted.length, patchesAfterKill: requestsAfterKill };
      assert.ok(acked.length > 0, 'some pushes were acknowledged');
      assert.ok(interrupted.length > 0, 'the kill interrupted some sessions');
      for (const blob of acked) {
        const read = await call(`${survivor.url}/v2/replicas/crash/blobs/${blob.digest}`, { headers: pushAuth });
        assert.equal(read.status, 200, `acknowledged ${blob.digest} readable through B`);
        assert.ok(read.body.equals(blob.data));
      }
      let resumed = 0;
      for (const session of interrupted) {
        const current = await call(`${survivor.url}${session.at}`, { headers: pushAuth });
        assert.equal(current.status, 204, `session readable on B: ${show(current)}`);
        const end = Number(/^0-(\d+)$/.exec(current.headers.get('range') ?? '')?.[1] ?? -1) + 1;
        assert.ok(end >= session.acknowledged, `nothing acknowledged was lost (${end} ≥ ${session.acknowledged})`);
        const rest = session.data.subarray(end);
        const finish = new URL(locationPath(current), 'http://placeholder');
        finish.searchParams.set('digest', session.digest);
        const put = await call(`${survivor.url}${finish.pathname}${finish.search}`, { method: 'PUT', headers: { ...pushAuth, 'content-type': 'application/octet-stream' }, body: rest.length > 0 ? body(rest) : undefined });
        assert.equal(put.status, 201, `resumed on B and completed: ${show(put)}`);
        resumed++;
      }
      figures.resumedOnB = resumed;
      // Through nginx again: the dead upstream is skipped.
      assert.equal((await call(`${nginx.url}/v2/replicas/skopeo/manifests/v1`, { headers: { authorization: `Bearer ${await token(survivor.url, 'repository:replicas/skopeo:pull')}`, accept: ociManifestType } })).status, 200);
      process.stdout.write(`# replicas figures: ${JSON.stringify(figures)}\n`);
    } finally {
      receiver?.closeAllConnections();
      receiver?.close();
      await nginx?.stop();
      for (const replica of replicas) await stopReplica(replica);
      await s3.close();
      await database.drop();
      await work.remove();
    }
  });
});
