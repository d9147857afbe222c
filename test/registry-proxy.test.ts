/**
 * Pull-through cache namespaces against real upstreams on loopback: CNCF Distribution (Debian
 * `docker-registry`) holding an image pushed there with skopeo, and a small node server acting
 * as a broken upstream (token auth, then manifests and blobs whose digests do not match).
 * Pulls go through skopeo and plain HTTP; runs on every dialect.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { dialects, startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { cleanEnv, killAllChildren, requireCommands, run, slipwayBin, type RunOptions } from './helpers/commands.js';
import { Distribution, freePort } from './helpers/distribution.js';
import { writeOciLayout, type LayoutImage } from './helpers/oci-layout.js';
import { ociManifestType, sha256 } from './helpers/oci.js';

const adminPassword = `admin-${randomBytes(8).toString('hex')}`;
const creds = `admin:${adminPassword}`;
const basic = `Basic ${Buffer.from(creds).toString('base64')}`;
const manifestAccept = [ociManifestType, 'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.oci.image.index.v1+json'].join(', ');
const sh = (command: string, args: string[], options: RunOptions = {}) => run(command, args, { timeoutMs: 120_000, ...options });

async function sampleLayout(dir: string, tag: string): Promise<LayoutImage> {
  return writeOciLayout(dir, { tag, files: [{ path: 'hello.txt', content: `hello ${randomBytes(6).toString('hex')}\n` }, { path: 'data.bin', content: randomBytes(64 * 1024) }] });
}

async function api(ts: TestServer, method: string, url: string, body?: unknown): Promise<{ status: number; json: any }> {
  const response = await fetch(`${ts.url}${url}`, {
    method, headers: { authorization: basic, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : undefined };
}

async function registryGet(ts: TestServer, url: string, method = 'GET'): Promise<{ status: number; headers: Headers; json: any }> {
  const response = await fetch(`${ts.url}/v2/${url}`, { method, headers: { authorization: basic, accept: manifestAccept } });
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: text ? JSON.parse(text) : undefined };
}

async function rowCount(ts: TestServer, table: 'manifests' | 'repository_blobs' | 'tags', prefix: string): Promise<number> {
  const rows = await ts.server.registry.db.kysely.selectFrom(table).select('repository').where('repository', 'like', `${prefix}%`).execute();
  return rows.length;
}

/**
 * A broken upstream: token auth (a 401 Bearer challenge, a token from /token), a tag whose
 * manifest is announced under another digest, and a good manifest whose layer's bytes are wrong.
 */
async function startBrokenUpstream(): Promise<{ url: string; goodManifestDigest: string; badLayerDigest: string; close(): Promise<void>; tokenRequests: number }> {
  const layer = randomBytes(300 * 1024);
  const badLayerDigest = sha256(randomBytes(16));
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: ociManifestType,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: badLayerDigest, size: layer.length }],
  }));
  const goodManifestDigest = sha256(manifest);
  const state = { tokenRequests: 0 };
  const server = http.createServer((request, response) => {
    const url = new URL(request.url!, 'http://x');
    if (url.pathname === '/token') {
      state.tokenRequests++;
      // `private` needs the robot's login; everything else is anonymous.
      if (url.searchParams.get('scope')?.includes(':private:') && request.headers.authorization !== `Basic ${Buffer.from('robot:s3cret').toString('base64')}`) {
        response.statusCode = 401;
        return response.end('{}');
      }
      response.setHeader('content-type', 'application/json');
      return response.end(JSON.stringify({ token: url.searchParams.get('scope')?.includes(':private:') ? 'private-token' : 'good-token', expires_in: 300 }));
    }
    const repository = /^\/v2\/(.+?)\/(?:manifests|blobs)\//.exec(url.pathname)?.[1] ?? 'x';
    const wanted = repository === 'private' ? 'Bearer private-token' : 'Bearer good-token';
    if (request.headers.authorization !== wanted) {
      response.statusCode = 401;
      response.setHeader('www-authenticate', `Bearer realm="http://${request.headers.host}/token",service="broken",scope="repository:${repository}:pull"`);
      return response.end('{}');
    }
    const send = (body: Buffer, type: string, digest: string) => {
      response.setHeader('content-type', type);
      response.setHeader('docker-content-digest', digest);
      response.setHeader('content-length', body.length);
      response.end(request.method === 'HEAD' ? undefined : body);
    };
    // A tag whose manifest is announced under a digest it does not have.
    if (url.pathname === '/v2/x/manifests/lying') return send(manifest, ociManifestType, sha256(randomBytes(8)));
    // A digest whose content is another manifest.
    if (url.pathname.startsWith('/v2/x/manifests/sha256:') && url.pathname !== `/v2/x/manifests/${goodManifestDigest}`) return send(manifest, ociManifestType, goodManifestDigest);
    if (url.pathname === '/v2/x/manifests/good' || url.pathname === '/v2/private/manifests/good' || url.pathname === `/v2/x/manifests/${goodManifestDigest}`) return send(manifest, ociManifestType, goodManifestDigest);
    if (url.pathname === `/v2/x/blobs/${badLayerDigest}`) return send(layer, 'application/octet-stream', badLayerDigest);
    response.statusCode = 404;
    response.end('{"errors":[{"code":"NAME_UNKNOWN"}]}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`, goodManifestDigest, badLayerDigest,
    get tokenRequests() { return state.tokenRequests; },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

for (const dialect of dialects) {
  describe(`pull-through cache (${dialect.name})`, { timeout: 300_000 }, () => {
    let ts: TestServer;
    let work: { path: string; remove(): Promise<void> };
    let upstream: Distribution;
    let broken: Awaited<ReturnType<typeof startBrokenUpstream>>;
    let v1: LayoutImage;
    let v1Digest: string;

    before(async () => {
      await requireCommands({ skopeo: 'skopeo', 'docker-registry': 'docker-registry' });
      work = await tempDir('slipway-proxy-');
      upstream = new Distribution(work.path, await freePort());
      await upstream.start();
      v1 = await sampleLayout(path.join(work.path, 'v1'), 'v1');
      await sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${path.join(work.path, 'v1')}:v1`, `docker://${upstream.host}/lib/app:v1`]);
      v1Digest = (await sh('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${upstream.host}/lib/app:v1`])).stdout.trim();
      broken = await startBrokenUpstream();
      ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword } } });
      for (const [name, url, ttl] of [['hub', `http://${upstream.host}`, '24h'], ['quick', `http://${upstream.host}`, '1s'], ['broken', broken.url, '24h']] as const) {
        const created = await api(ts, 'POST', '/api/v1/namespaces', { name, proxy: { url, ttl } });
        assert.equal(created.status, 201, JSON.stringify(created.json));
      }
    });

    after(async () => {
      await upstream?.stop();
      killAllChildren();
      await broken?.close();
      await ts?.close();
      await work?.remove();
    });

    test('the proxy settings are stored and shown; a bad one is refused', async () => {
      const shown = await api(ts, 'GET', '/api/v1/namespaces/hub/proxy');
      assert.equal(shown.status, 200);
      assert.deepEqual(shown.json, { url: `http://${upstream.host}`, credentialsId: null, insecure: false, ttl: '24h', mirrorOf: null });
      assert.equal((await api(ts, 'POST', '/api/v1/namespaces', { name: 'bad', proxy: { url: 'ftp://x', ttl: '1h' } })).status, 400);
      assert.equal((await api(ts, 'POST', '/api/v1/namespaces', { name: 'bad', proxy: { url: 'http://x', ttl: 'soon' } })).status, 400);
      assert.equal((await api(ts, 'GET', '/api/v1/namespaces/bad/proxy')).status, 404);
      const changed = await api(ts, 'PUT', '/api/v1/namespaces/quick/proxy', { url: `http://${upstream.host}/`, ttl: '1s', insecure: true });
      assert.equal(changed.status, 200);
      assert.deepEqual(changed.json, { url: `http://${upstream.host}`, credentialsId: null, insecure: true, ttl: '1s', mirrorOf: null });
    });

    test('the CLI: slipway registry proxy create|show|set; bad input is a usage error or the API\'s message', { timeout: 60_000 }, async () => {
      const key = await api(ts, 'POST', '/api/v1/keys', { name: 'proxy-cli' });
      assert.equal(key.status, 201);
      const env = cleanEnv({ SLIPWAY_SERVER: ts.url, SLIPWAY_API_KEY: (key.json as { key: string }).key, HOME: work.path, XDG_CONFIG_HOME: path.join(work.path, 'xdg') });
      const slipway = (...args: string[]) => run(process.execPath, [slipwayBin, 'registry', 'proxy', ...args], { env, timeoutMs: 30_000, allowFailure: true });
      const created = await slipway('create', 'clihub', '--url', `http://${upstream.host}`, '--ttl', '1h');
      assert.equal(created.code, 0, created.stderr);
      assert.equal(created.stdout, `clihub is a pull-through cache of http://${upstream.host} (ttl 1h)\n`);
      const shown = await slipway('show', '-n', 'clihub', '--json');
      assert.deepEqual(JSON.parse(shown.stdout), { url: `http://${upstream.host}`, credentialsId: null, insecure: false, ttl: '1h', mirrorOf: null });
      // (No --mirror-of here: the mirror-mode test below expects the only mirror.)
      const changed = await slipway('set', '-n', 'clihub', '--url', `http://${upstream.host}`, '--ttl', '5m', '--insecure');
      assert.equal(changed.code, 0, changed.stderr);
      assert.match(changed.stdout, /ttl 5m, insecure\)/);
      assert.equal((await slipway('set', '-n', 'clihub')).code, 2, 'no --url: a usage error');
      const bad = await slipway('set', '-n', 'clihub', '--url', `http://${upstream.host}`, '--ttl', 'soon');
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /ttl/);
      const notProxy = await slipway('show', '-n', 'nosuch');
      assert.equal(notProxy.code, 1);
    });

    test('skopeo pulls through: first from the upstream, then from the cache with the upstream stopped', { timeout: 120_000 }, async () => {
      const ref = `docker://${ts.host}/hub/lib/app:v1`;
      const out = path.join(work.path, 'pulled-1');
      await sh('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', creds, ref, `oci:${out}:v1`]);
      const digest = (await sh('skopeo', ['inspect', '--tls-verify=false', '--creds', creds, '--format', '{{.Digest}}', ref])).stdout.trim();
      assert.equal(digest, v1Digest);
      assert.equal(await rowCount(ts, 'manifests', 'hub/lib/app'), 1);
      assert.equal(await rowCount(ts, 'repository_blobs', 'hub/lib/app'), 1 + v1.layers.length, 'config and layers are cached');
      // By digest too.
      const byDigest = await registryGet(ts, `hub/lib/app/manifests/${v1Digest}`);
      assert.equal(byDigest.status, 200);
      assert.equal(byDigest.headers.get('docker-content-digest'), v1Digest);

      await upstream.stop();
      try {
        await sh('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', creds, ref, `oci:${path.join(work.path, 'pulled-2')}:v1`]);
        await sh('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', creds, `docker://${ts.host}/hub/lib/app@${v1Digest}`, `oci:${path.join(work.path, 'pulled-3')}:v1`]);
        // Nothing cached and the upstream down: a clear error, no hang.
        const missing = await registryGet(ts, 'hub/lib/other/manifests/v1');
        assert.equal(missing.status, 503);
        assert.equal(missing.json.errors[0].code, 'UPSTREAM_UNAVAILABLE');
        assert.match(missing.json.errors[0].message, /unavailable and nothing is cached/);
        const missingBlob = await registryGet(ts, `hub/lib/other/blobs/${sha256('x')}`);
        assert.equal(missingBlob.status, 503);
      } finally {
        await upstream.start();
      }
      // A name the upstream does not have: its 404, not a 5xx.
      assert.equal((await registryGet(ts, 'hub/lib/nothing/manifests/v1')).json.errors[0].code, 'MANIFEST_UNKNOWN');
    });

    test('a tag is re-checked after the ttl and follows the upstream; before it, the cached copy is served', { timeout: 120_000 }, async () => {
      assert.equal((await registryGet(ts, 'quick/lib/app/manifests/v1')).headers.get('docker-content-digest'), v1Digest);
      assert.equal((await registryGet(ts, 'hub/lib/app/manifests/v1')).headers.get('docker-content-digest'), v1Digest);
      // Move the upstream tag.
      await sampleLayout(path.join(work.path, 'v2'), 'v1');
      await sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${path.join(work.path, 'v2')}:v1`, `docker://${upstream.host}/lib/app:v1`]);
      const v2Digest = (await sh('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${upstream.host}/lib/app:v1`])).stdout.trim();
      assert.notEqual(v2Digest, v1Digest);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      assert.equal((await registryGet(ts, 'quick/lib/app/manifests/v1', 'HEAD')).headers.get('docker-content-digest'), v2Digest, 'ttl 1s: follows the move');
      assert.equal((await registryGet(ts, 'hub/lib/app/manifests/v1', 'HEAD')).headers.get('docker-content-digest'), v1Digest, 'ttl 24h: still the cached tag');
      await sh('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', creds, `docker://${ts.host}/quick/lib/app:v1`, `oci:${path.join(work.path, 'pulled-v2')}:v1`]);
      // Due again, upstream down: the cached copy.
      await upstream.stop();
      try {
        await new Promise((resolve) => setTimeout(resolve, 1_100));
        assert.equal((await registryGet(ts, 'quick/lib/app/manifests/v1')).headers.get('docker-content-digest'), v2Digest);
      } finally {
        await upstream.start();
      }
    });

    test('a client that goes away mid-blob does not stop the caching', { timeout: 60_000 }, async () => {
      // quick/lib/app fetched v1's manifest only, so v1's layer is not cached there yet.
      const layer = v1.layers[0]!.digest;
      assert.equal((await registryGet(ts, `quick/lib/app/blobs/${layer}`, 'HEAD')).status, 200);
      assert.equal(await rowCount(ts, 'repository_blobs', 'quick/lib/app') >= 1, true);
      const before = (await ts.server.registry.db.kysely.selectFrom('repository_blobs').select('digest').where('repository', '=', 'quick/lib/app').where('digest', '=', layer).execute()).length;
      assert.equal(before, 0, 'HEAD of an uncached blob stores nothing');
      const controller = new AbortController();
      const response = await fetch(`${ts.url}/v2/quick/lib/app/blobs/${layer}`, { headers: { authorization: basic }, signal: controller.signal });
      assert.equal(response.status, 200);
      controller.abort();
      const deadline = Date.now() + 10_000;
      for (;;) {
        const linked = await ts.server.registry.db.kysely.selectFrom('repository_blobs').select('digest').where('repository', '=', 'quick/lib/app').where('digest', '=', layer).execute();
        if (linked.length === 1) break;
        if (Date.now() > deadline) assert.fail('the blob was not cached after the client left');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const cached = await fetch(`${ts.url}/v2/quick/lib/app/blobs/${layer}`, { headers: { authorization: basic } });
      assert.equal(sha256(Buffer.from(await cached.arrayBuffer())), layer);
    });

    test('mirror mode: the upstream\'s own paths, without the namespace prefix (registries.conf mirror)', { timeout: 120_000 }, async () => {
      const created = await api(ts, 'POST', '/api/v1/namespaces', { name: 'mirror', proxy: { url: `http://${upstream.host}`, mirrorOf: 'docker.io' } });
      assert.equal(created.status, 201, JSON.stringify(created.json));
      const current = (await sh('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${upstream.host}/lib/app:v1`])).stdout.trim();
      const direct = await registryGet(ts, 'lib/app/manifests/v1');
      assert.equal(direct.status, 200, JSON.stringify(direct.json));
      assert.equal(direct.headers.get('docker-content-digest'), current);
      assert.equal(await rowCount(ts, 'manifests', 'mirror/lib/app'), 1, 'cached under the proxy namespace');
      // A client configured with Slipway as docker.io's mirror (containers/image adds ?ns=docker.io).
      const conf = path.join(work.path, 'registries.conf');
      writeFileSync(conf, `[[registry]]\nlocation = "docker.io"\n[[registry.mirror]]\nlocation = "${ts.host}"\ninsecure = true\n`);
      // A mirror gets no --creds (those are docker.io's): its login comes from an auth file.
      const authFile = path.join(work.path, 'auth.json');
      writeFileSync(authFile, JSON.stringify({ auths: { [ts.host]: { auth: Buffer.from(creds).toString('base64') } } }));
      const out = path.join(work.path, 'mirrored');
      await sh('skopeo', ['--registries-conf', conf, 'copy', '--authfile', authFile, 'docker://docker.io/lib/app:v1', `oci:${out}:v1`]);
      // (--raw: a plain inspect also lists tags, which skopeo asks of docker.io itself.)
      const viaMirror = (await sh('skopeo', ['--registries-conf', conf, 'inspect', '--raw', '--authfile', authFile, 'docker://docker.io/lib/app:v1'])).stdout;
      assert.equal(sha256(Buffer.from(viaMirror)), current);
      // Existing namespaces keep their own names.
      assert.equal((await registryGet(ts, 'hub/lib/app/manifests/v1')).status, 200);
    });

    test('pushing into a proxy namespace is refused with DENIED', { timeout: 60_000 }, async () => {
      const push = await sh('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', creds, `oci:${path.join(work.path, 'v1')}:v1`, `docker://${ts.host}/hub/lib/mine:v1`], { allowFailure: true });
      assert.notEqual(push.code, 0);
      const response = await fetch(`${ts.url}/v2/hub/lib/mine/blobs/uploads/`, { method: 'POST', headers: { authorization: basic } });
      assert.equal(response.status, 403);
      const body = await response.json() as { errors: Array<{ code: string; message: string }> };
      assert.equal(body.errors[0]!.code, 'DENIED');
      assert.match(body.errors[0]!.message, /pull-through cache of http:\/\/127\.0\.0\.1:\d+; pushing into it is not allowed/);
      const manifest = await fetch(`${ts.url}/v2/hub/lib/mine/manifests/v1`, { method: 'PUT', headers: { authorization: basic, 'content-type': ociManifestType }, body: '{}' });
      assert.equal(manifest.status, 403);
      assert.equal(await rowCount(ts, 'manifests', 'hub/lib/mine'), 0);
    });

    test('a wrong digest from the upstream is refused and nothing is stored (token auth on the way)', { timeout: 60_000 }, async () => {
      const lying = await registryGet(ts, 'broken/x/manifests/lying');
      assert.equal(lying.status, 502);
      assert.equal(lying.json.errors[0].code, 'UPSTREAM_DIGEST_MISMATCH');
      assert.ok(broken.tokenRequests >= 1, 'the upstream token flow was followed');
      const wrongContent = await registryGet(ts, `broken/x/manifests/${sha256('not this')}`);
      assert.equal(wrongContent.status, 502);
      assert.equal(await rowCount(ts, 'manifests', 'broken/'), 0);
      assert.equal(await rowCount(ts, 'tags', 'broken/'), 0);

      // A good manifest whose layer bytes are wrong: the transfer is cut, the blob not stored.
      assert.equal((await registryGet(ts, 'broken/x/manifests/good')).status, 200);
      const response = await fetch(`${ts.url}/v2/broken/x/blobs/${broken.badLayerDigest}`, { headers: { authorization: basic } });
      let received: Buffer | undefined;
      try {
        received = Buffer.from(await response.arrayBuffer());
      } catch {
        received = undefined;
      }
      assert.equal(received, undefined, 'the transfer must be cut before it completes');
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(await rowCount(ts, 'repository_blobs', 'broken/'), 0);
      assert.equal(await ts.server.registry.store.stat(broken.badLayerDigest), null);
      // An upstream that wants a login: refused without one, pulled with the namespace's stored
      // external registry (longest prefix match).
      const refused = await registryGet(ts, 'broken/private/manifests/good');
      assert.equal(refused.status, 403);
      assert.equal(refused.json.errors[0].code, 'DENIED');
      const stored = await api(ts, 'POST', '/api/v1/namespaces/broken/registries', { prefix: new URL(broken.url).host, type: 'basic', credentials: { username: 'robot', password: 's3cret' } });
      assert.equal(stored.status, 201, JSON.stringify(stored.json));
      const pulled = await registryGet(ts, 'broken/private/manifests/good');
      assert.equal(pulled.status, 200);
      assert.equal(pulled.headers.get('docker-content-digest'), broken.goodManifestDigest);

      const skopeo = await sh('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', creds, `docker://${ts.host}/broken/x:good`, `oci:${path.join(work.path, 'broken')}:x`], { allowFailure: true });
      assert.notEqual(skopeo.code, 0);
    });
  });
}
