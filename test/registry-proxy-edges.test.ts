/**
 * Pull-through at its edges, against CNCF Distribution on loopback (behind a small forwarder
 * that counts and delays what reaches it): in-process readers (functions, builds) take the same
 * path as `/v2` (fetch on first use, the cached copy while the upstream is down, a wrong digest
 * refused), in-process pushes into a proxy namespace are refused like `/v2` ones, and concurrent
 * first pulls of one blob or tag reach the upstream once. A function deployed from a proxy image
 * that was never pulled over `/v2` runs with runc (SQLite only: the deploy path is the same on
 * both dialects). Runs on every dialect.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pushComponent } from '../src/builds/component-artifact.js';
import { RegistryError } from '../src/registry/errors.js';
import { dialects, startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { killAllChildren, requireCommands } from './helpers/commands.js';
import { Distribution, freePort } from './helpers/distribution.js';
import { assertNoLeftovers, instancePrefix } from './helpers/functions.js';
import { nodeLayer, pushNodeImage } from './helpers/node-image.js';
import { ociManifestType, pushImage, sha256 } from './helpers/oci.js';

const adminPassword = `admin-${randomBytes(8).toString('hex')}`;
const basic = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;
const accept = [ociManifestType, 'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.oci.image.index.v1+json'].join(', ');

/** Forwards to `target`, counting `METHOD path` and holding each request `delayMs` (so concurrent pulls overlap). */
async function startCountingForwarder(target: string, delayMs: number): Promise<{ url: string; count(method: string, path: string): number; close(): Promise<void> }> {
  const counts = new Map<string, number>();
  const server = http.createServer((request, response) => {
    const key = `${request.method} ${request.url!.split('?')[0]}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    setTimeout(() => {
      const upstream = http.request(`${target}${request.url}`, { method: request.method, headers: { ...request.headers, host: new URL(target).host } }, (answer) => {
        response.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(response);
      });
      upstream.on('error', () => response.destroy());
      request.pipe(upstream);
    }, delayMs);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    count: (method, at) => counts.get(`${method} ${at}`) ?? 0,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** An upstream whose tag `lying` is announced under another digest, and whose blob `bad` has wrong bytes. */
async function startLyingUpstream(): Promise<{ url: string; badBlob: string; close(): Promise<void> }> {
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociManifestType, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('{}'), size: 2 }, layers: [] }));
  const badBlob = sha256(randomBytes(16));
  const server = http.createServer((request, response) => {
    if (request.url === '/v2/x/manifests/lying') {
      response.setHeader('content-type', ociManifestType);
      response.setHeader('docker-content-digest', sha256(randomBytes(8)));
      return response.end(manifest);
    }
    if (request.url === `/v2/x/blobs/${badBlob}`) return response.end(randomBytes(200 * 1024));
    response.statusCode = 404;
    response.end('{"errors":[{"code":"NAME_UNKNOWN"}]}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, badBlob, close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
}

async function api(ts: TestServer, method: string, url: string, body?: unknown): Promise<{ status: number; json: any }> {
  const response = await fetch(`${ts.url}${url}`, { method, headers: { authorization: basic, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : undefined };
}

async function rows(ts: TestServer, table: 'manifests' | 'repository_blobs' | 'tags', repository: string): Promise<number> {
  return (await ts.server.registry.db.kysely.selectFrom(table).select('repository').where('repository', '=', repository).execute()).length;
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RegistryError, String(error));
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

for (const dialect of dialects) {
  describe(`pull-through edges (${dialect.name})`, { timeout: 300_000 }, () => {
    let ts: TestServer;
    let work: { path: string; remove(): Promise<void> };
    let upstream: Distribution;
    let forwarder: Awaited<ReturnType<typeof startCountingForwarder>>;
    let lying: Awaited<ReturnType<typeof startLyingUpstream>>;
    let image: Awaited<ReturnType<typeof pushImage>>;
    const upstreamBase = () => `http://${upstream.host}`;

    before(async () => {
      await requireCommands({ 'docker-registry': 'docker-registry' });
      work = await tempDir('slipway-proxy-edges-');
      upstream = new Distribution(work.path, await freePort());
      await upstream.start();
      image = await pushImage(upstreamBase(), 'lib/app', 'v1', 2, 512 * 1024);
      forwarder = await startCountingForwarder(upstreamBase(), 300);
      lying = await startLyingUpstream();
      ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword } } });
      for (const [name, url] of [['hub', upstreamBase()], ['counted', forwarder.url], ['broken', lying.url]] as const) {
        const created = await api(ts, 'POST', '/api/v1/namespaces', { name, proxy: { url } });
        assert.equal(created.status, 201, JSON.stringify(created.json));
      }
    });

    after(async () => {
      await upstream?.stop();
      killAllChildren();
      await forwarder?.close();
      await lying?.close();
      await ts?.close();
      await work?.remove();
    });

    test('an in-process read of a proxy image never pulled over /v2 fetches, verifies and caches it; then serves the cache with the upstream down', { timeout: 60_000 }, async () => {
      const { reads } = ts.server.registry;
      const { info, bytes } = await reads.manifestContent('hub/lib/app', 'v1');
      assert.equal(info.digest, image.manifest.digest);
      assert.equal(sha256(bytes), image.manifest.digest);
      for (const blob of image.blobs) assert.equal(sha256(await readAll((await reads.blob('hub/lib/app', blob.digest)).body)), blob.digest);
      assert.equal(await rows(ts, 'manifests', 'hub/lib/app'), 1);
      assert.equal(await rows(ts, 'repository_blobs', 'hub/lib/app'), image.blobs.length);
      // /v2 sees what the in-process read cached.
      const overHttp = await fetch(`${ts.url}/v2/hub/lib/app/manifests/v1`, { headers: { authorization: basic, accept } });
      assert.equal(overHttp.headers.get('docker-content-digest'), image.manifest.digest);

      await upstream.stop();
      try {
        assert.equal((await reads.manifest('hub/lib/app', 'v1')).digest, image.manifest.digest, 'the cached copy');
        assert.equal(sha256(await readAll((await reads.blob('hub/lib/app', image.blobs[1]!.digest)).body)), image.blobs[1]!.digest);
        // Nothing cached and the upstream down: the error names the upstream.
        await rejectsWith(reads.manifest('hub/lib/other', 'v1'), 'UPSTREAM_UNAVAILABLE', new RegExp(`upstream ${upstreamBase()} of pull-through namespace hub is unavailable`));
      } finally {
        await upstream.start();
      }
    });

    test('in process, a wrong digest from the upstream is refused and nothing is stored', { timeout: 60_000 }, async () => {
      const { reads, store } = ts.server.registry;
      await rejectsWith(reads.manifest('broken/x', 'lying'), 'UPSTREAM_DIGEST_MISMATCH', /refused, nothing stored/);
      assert.equal(await rows(ts, 'manifests', 'broken/x'), 0);
      const { body } = await reads.blob('broken/x', lying.badBlob);
      await assert.rejects(readAll(body), /hashed to/);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(await rows(ts, 'repository_blobs', 'broken/x'), 0);
      assert.equal(await store.stat(lying.badBlob), null);
    });

    test('concurrent first pulls of one blob and of one tag reach the upstream once (over /v2 and in process alike)', { timeout: 60_000 }, async () => {
      const [config, layer, other] = [image.blobs[0]!, image.blobs[1]!, image.blobs[2]!];
      const get = (url: string) => fetch(`${ts.url}/v2/${url}`, { headers: { authorization: basic, accept } });
      const manifests = await Promise.all([1, 2, 3, 4].map(() => get('counted/lib/app/manifests/v1')));
      for (const response of manifests) {
        assert.equal(response.status, 200);
        assert.equal(sha256(Buffer.from(await response.arrayBuffer())), image.manifest.digest);
      }
      assert.equal(forwarder.count('GET', '/v2/lib/app/manifests/v1'), 1, 'one manifest fetch for four pulls');

      const blobs = await Promise.all([1, 2, 3, 4].map(() => get(`counted/lib/app/blobs/${layer.digest}`)));
      for (const response of blobs) {
        assert.equal(response.status, 200);
        assert.equal(sha256(Buffer.from(await response.arrayBuffer())), layer.digest);
      }
      assert.equal(forwarder.count('GET', `/v2/lib/app/blobs/${layer.digest}`), 1, 'one blob fetch for four pulls');

      // An in-process reader and a client at once share one fetch too.
      const [inProcess, overHttp] = await Promise.all([
        ts.server.registry.reads.blob('counted/lib/app', other.digest).then((found) => readAll(found.body)),
        get(`counted/lib/app/blobs/${other.digest}`).then(async (response) => Buffer.from(await response.arrayBuffer())),
      ]);
      assert.equal(sha256(inProcess), other.digest);
      assert.equal(sha256(overHttp), other.digest);
      assert.equal(forwarder.count('GET', `/v2/lib/app/blobs/${other.digest}`), 1);
      assert.equal(forwarder.count('GET', `/v2/lib/app/blobs/${config.digest}`), 0);
    });

    test('in-process pushes into a proxy namespace are refused like /v2 ones; a build there is refused before it is queued', { timeout: 60_000 }, async () => {
      const { registry } = ts.server;
      const denied = /namespace hub is a pull-through cache of http:\/\/127\.0\.0\.1:\d+; pushing into it is not allowed/;
      const dir = path.join(work.path, 'component');
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'tool'), 'binary');
      // The path builds and pipeline deliveries push components by.
      await rejectsWith(pushComponent(registry, 'hub/components/tool', '1.0-any', dir, ['tool'], { component: 'tool', tag: '1.0', architecture: 'any' }), 'DENIED', denied);
      await rejectsWith(registry.uploads.monolithic('hub/lib/mine', sha256('x'), Readable.from([Buffer.from('x')]), 1), 'DENIED', denied);
      await rejectsWith(registry.manifests.put('hub/lib/mine', 'v1', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: ociManifestType, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('{}'), size: 2 }, layers: [] })), ociManifestType), 'DENIED', denied);
      assert.equal(await rows(ts, 'manifests', 'hub/lib/mine'), 0);
      assert.equal(await rows(ts, 'repository_blobs', 'hub/lib/mine'), 0);
      assert.equal((await registry.db.kysely.selectFrom('uploads').select('id').where('repository', 'like', 'hub/%').execute()).length, 0, 'no upload session left');

      const form = new FormData();
      form.set('component', 'app');
      form.set('branch', 'main');
      form.set('architecture', 'linux/amd64');
      form.set('dockerfile', new Blob(['FROM scratch\n']), 'Dockerfile');
      const build = await fetch(`${ts.url}/api/v1/namespaces/hub/images`, { method: 'POST', headers: { authorization: basic }, body: form });
      const answer = await build.json() as { code: string; message: string };
      assert.equal(build.status, 403, JSON.stringify(answer));
      assert.equal(answer.code, 'FORBIDDEN');
      assert.match(answer.message, denied);
      assert.equal((await registry.db.kysely.selectFrom('builds').select('id').where('namespace', '=', 'hub').execute()).length, 0, 'no build recorded');
    });
  });
}

describe('a function deployed from a proxy image never pulled over /v2 (runc)', { timeout: 300_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  let upstream: Distribution;
  let lying: Awaited<ReturnType<typeof startLyingUpstream>>;
  let prefix: string;
  const server = `require('http').createServer((q, s) => s.end('hello from the proxy ' + q.url)).listen(8000);`;

  before(async () => {
    await requireCommands({ 'docker-registry': 'docker-registry', runc: 'runc', ip: 'iproute2' });
    work = await tempDir('slipway-proxy-fn-');
    upstream = new Distribution(work.path, await freePort());
    await upstream.start();
    lying = await startLyingUpstream();
    await pushNodeImage({ url: `http://${upstream.host}`, host: upstream.host }, 'lib/fn', '1', await nodeLayer(work.path), { Cmd: ['node', '-e', server] });
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword }, functions: { enabled: true, startTimeout: '6s' } } });
    prefix = await instancePrefix(ts.dataDir);
    for (const [name, proxy] of [['hub', { url: `http://${upstream.host}` }], ['broken', { url: lying.url }], ['fns', undefined]] as const) {
      const created = await api(ts, 'POST', '/api/v1/namespaces', proxy ? { name, proxy } : { name });
      assert.equal(created.status, 201, JSON.stringify(created.json));
    }
  });

  after(async () => {
    try {
      if (ts) {
        await ts.server.close();
        await assertNoLeftovers(ts.dataDir, prefix);
      }
    } finally {
      await upstream?.stop();
      killAllChildren();
      await lying?.close();
      await ts?.close();
      await work?.remove();
    }
  });

  test('deploy caches the image through the proxy and the function answers; an unreachable upstream or a lying one is a clear 400', { timeout: 180_000 }, async () => {
    assert.equal(await rows(ts, 'manifests', 'hub/lib/fn'), 0, 'never pulled');
    const created = await api(ts, 'POST', '/api/v1/namespaces/fns/functions?wait=true', { name: 'web', type: 'http', image: `${ts.host}/hub/lib/fn:1` });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.equal(created.json.status, 'ready', JSON.stringify(created.json));
    const answer = await fetch(`${ts.url}/fn/fns/web/hi`, { headers: { authorization: basic } });
    assert.equal(await answer.text(), 'hello from the proxy /hi');
    assert.equal(await rows(ts, 'manifests', 'hub/lib/fn'), 1, 'cached by the deploy');
    assert.equal(await rows(ts, 'repository_blobs', 'hub/lib/fn'), 2, 'config and layer cached');

    await upstream.stop();
    const down = await api(ts, 'POST', '/api/v1/namespaces/fns/functions', { name: 'absent', type: 'http', image: `${ts.host}/hub/lib/absent:1` });
    assert.equal(down.status, 400, JSON.stringify(down.json));
    assert.match(down.json.message, new RegExp(`upstream http://${upstream.host.replace(/\./g, '\\.')} of pull-through namespace hub is unavailable`));
    const wrong = await api(ts, 'POST', '/api/v1/namespaces/fns/functions', { name: 'lying', type: 'http', image: `${ts.host}/broken/x:lying` });
    assert.equal(wrong.status, 400, JSON.stringify(wrong.json));
    assert.match(wrong.json.message, /UPSTREAM_DIGEST_MISMATCH/);
    assert.equal(await rows(ts, 'manifests', 'broken/x'), 0);
    assert.equal((await api(ts, 'DELETE', '/api/v1/namespaces/fns/functions/web')).status < 300, true);
  });
});
