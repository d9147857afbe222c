/**
 * The images function tests run: built by Slipway itself (helpers/function-images.ts) from the
 * offline base image, the behaviour-switch fixture (test/fixtures/function-image) and the
 * README's example (examples/hello-fn). Checks that both are pullable under the naming
 * template with the contract's command and no USER, that the base image holds what the
 * platform relies on (node, the app user 1003, /tmp 1777), that `buildFixtureVersion` re-pushes
 * one repository:tag with a new digest, and — with the host's node, no container — that the
 * fixture and the example really behave as the function contract and the tests expect.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { killAllChildren, killTree, repoRoot, requireCommands, run, spawnTracked } from './helpers/commands.js';
import { buildFixtureVersion, buildFunctionImages, buildWork, type BuildWork, type FunctionImages } from './helpers/function-images.js';

const ns = 'fnimg';
const fixtureSource = path.join(repoRoot, 'test/fixtures/function-image/server.js');
const helloSource = path.join(repoRoot, 'examples/hello-fn/server.js');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ImageConfig {
  architecture: string;
  os: string;
  config?: { Cmd?: string[]; Entrypoint?: string[]; User?: string; Env?: string[]; WorkingDir?: string };
}

describe('function images built by Slipway', { timeout: 900_000 }, () => {
  let ts: TestServer;
  let work: BuildWork;
  let images: FunctionImages;
  let local: { path: string; remove(): Promise<void> };
  let buildMs = 0;

  const skopeo = (args: string[]) => run('skopeo', args, { timeoutMs: 120_000 });
  const inspect = async (ref: string) => JSON.parse((await skopeo(['inspect', '--tls-verify=false', `docker://${ref}`])).stdout) as { Digest: string; Layers: string[]; Architecture: string; Os: string; Env?: string[] };
  const inspectConfig = async (ref: string) => JSON.parse((await skopeo(['inspect', '--config', '--tls-verify=false', `docker://${ref}`])).stdout) as ImageConfig;

  before(async () => {
    await requireCommands({ buildah: 'buildah', skopeo: 'skopeo', tar: 'tar' });
    local = await tempDir('slipway-fn-local-');
    work = await buildWork();
    ts = await startTestServer({ config: { builds: work.builds } });
    const started = Date.now();
    images = await buildFunctionImages(ts, work, { namespace: ns });
    buildMs = Date.now() - started;
  });

  after(async () => {
    killAllChildren();
    try {
      await ts?.close();
    } finally {
      await work?.cleanup();
      await local?.remove();
    }
  });

  test('both images: named by the template in a namespace nobody created (auth off), pullable, the contract\'s command, no USER', { timeout: 180_000 }, async (t) => {
    assert.equal(images.fixture, `${ts.host}/${ns}/fixture-main-image:v1`);
    assert.equal(images.hello, `${ts.host}/${ns}/hello-main-image:latest`);
    const base = await inspect(`${ts.host}/slipway/node-base:latest`);
    for (const ref of [images.fixture, images.hello]) {
      const info = await inspect(ref);
      assert.match(info.Digest, /^sha256:[a-f0-9]{64}$/);
      assert.equal(info.Os, 'linux');
      assert.equal(info.Architecture, 'amd64');
      assert.equal(info.Layers[0], base.Layers[0], `${ref} is built on the imported base`);
      assert.ok(info.Layers.length > base.Layers.length, `${ref} adds a layer of its own`);
      const config = await inspectConfig(ref);
      assert.deepEqual(config.config?.Cmd, ['node', '/app/server.js']);
      assert.equal(config.config?.Entrypoint ?? null, null);
      assert.ok(!config.config?.User, `${ref} sets no USER (the platform sets uid/gid)`);
    }
    // The builds as the API reports them, for the record.
    const listed = await (await fetch(`${ts.url}/api/v1/namespaces/${ns}/builds`)).json() as unknown;
    const builds = (Array.isArray(listed) ? listed : (listed as { builds: unknown[] }).builds) as Array<{ component: string; status: string; phases: Record<string, number>; startedAt: string; finishedAt: string }>;
    assert.deepEqual(builds.map((b) => b.status), builds.map(() => 'succeeded'));
    for (const b of builds) t.diagnostic(`${b.component}: ${Date.parse(b.finishedAt) - Date.parse(b.startedAt)} ms (phases ${JSON.stringify(b.phases)})`);
    t.diagnostic(`base import + both builds: ${buildMs} ms`);
  });

  test('the layers hold what the platform relies on: node, the app user, /tmp 1777, the fixture at /app/server.js', { timeout: 180_000 }, async () => {
    const dir = path.join(local.path, 'fixture-image');
    await skopeo(['copy', '--src-tls-verify=false', `docker://${images.fixture}`, `dir:${dir}`]);
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as { layers: Array<{ digest: string }> };
    const blob = (digest: string) => path.join(dir, digest.replace(/^sha256:/, ''));
    const listing = async (digest: string) => (await run('tar', ['--numeric-owner', '-tvf', blob(digest)], { timeoutMs: 120_000 })).stdout.split('\n').filter(Boolean);
    const member = (lines: string[], name: string) => {
      const line = lines.find((l) => new RegExp(`\\s(\\./)?${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/?( -> .*)?$`).test(l));
      assert.ok(line, `${name} is in the layer`);
      return { line, name: line.replace(/ -> .*$/, '').split(/\s+/).pop()! };
    };
    const extract = async (digest: string, name: string) => (await run('tar', ['-xOf', blob(digest), name], { timeoutMs: 120_000 })).stdout;

    const baseLayer = manifest.layers[0]!.digest;
    const base = await listing(baseLayer);
    assert.match(member(base, 'usr/bin/node').line, /^-rwxr-xr-x 0\/0 /);
    assert.match(member(base, 'bin').line, /^l.* bin -> usr\/bin$/);
    assert.match(member(base, 'tmp').line, /^drwxrwxrwt 0\/0 /);
    assert.match(member(base, 'home/app').line, /^drwxr-xr-x 1003\/1003 /);
    assert.match(member(base, 'usr/bin/sh').line, /-> busybox$/);
    const passwd = await extract(baseLayer, member(base, 'etc/passwd').name);
    assert.match(passwd, /^app:x:1003:1003:/m);

    const appLayer = manifest.layers[manifest.layers.length - 1]!.digest;
    const app = await listing(appLayer);
    const copied = await extract(appLayer, member(app, 'app/server.js').name);
    assert.equal(copied, await readFile(fixtureSource, 'utf8'));
  });

  test('buildFixtureVersion pushes the same repository:tag again with a new digest and VERSION', { timeout: 300_000 }, async (t) => {
    let started = Date.now();
    const v1 = await buildFixtureVersion(ts, work, { namespace: ns, tag: 'rolling', version: 'r1' });
    t.diagnostic(`fixture version r1: ${Date.now() - started} ms`);
    started = Date.now();
    const v2 = await buildFixtureVersion(ts, work, { namespace: ns, tag: 'rolling', version: 'r2' });
    t.diagnostic(`fixture version r2: ${Date.now() - started} ms`);
    assert.equal(v1.reference, `${ts.host}/${ns}/rolling-main-image:rolling`);
    assert.equal(v2.reference, v1.reference);
    assert.notEqual(v2.digest, v1.digest);
    const now = await inspect(v2.reference);
    assert.equal(now.Digest, v2.digest, 'the tag points at the second build');
    assert.ok(now.Env?.includes('VERSION=r2'), JSON.stringify(now.Env));
    // The first build stays pullable by digest (a function pinned to it keeps working).
    const old = await inspect(`${ts.host}/${ns}/rolling-main-image@${v1.digest}`);
    assert.ok(old.Env?.includes('VERSION=r1'), JSON.stringify(old.Env));
  });

  // ---- the servers themselves, run with the host's node (no container) ----

  const freePort = () => new Promise<number>((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });

  interface Local {
    child: ChildProcess;
    url: string;
    stdout(): string;
    stderr(): string;
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  }

  /**
   * Runs a copy of `source` outside the repository (its package.json says "type": "module",
   * the servers are CommonJS, as at /app/server.js in the image).
   */
  const startLocal = async (source: string, env: Record<string, string>): Promise<Local> => {
    const dir = path.join(local.path, `run-${Math.random().toString(36).slice(2)}`);
    await mkdir(dir);
    const script = path.join(dir, 'server.js');
    await copyFile(source, script);
    const port = await freePort();
    const child = spawnTracked(process.execPath, [script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORT: String(port), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (chunk: Buffer) => { out += chunk.toString('utf8'); });
    child.stderr!.on('data', (chunk: Buffer) => { err += chunk.toString('utf8'); });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    return { child, url: `http://127.0.0.1:${port}`, stdout: () => out, stderr: () => err, exited };
  };

  /** Polls until the server answers; rejects when it exits or `timeoutMs` passes. */
  const ready = async (server: Local, timeoutMs = 10_000) => {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (server.child.exitCode !== null || server.child.signalCode !== null) throw new Error(`server exited: ${server.stderr()}`);
      const answered = await fetch(`${server.url}/hello`).then(async (r) => { await r.arrayBuffer(); return true; }, () => false);
      if (answered) return;
      if (Date.now() > until) throw new Error(`server did not listen within ${timeoutMs} ms: ${server.stderr()}`);
      await sleep(50);
    }
  };

  const within = <T>(promise: Promise<T>, ms: number, what: string) => Promise.race([promise, sleep(ms).then(() => { throw new Error(`${what} did not happen within ${ms} ms`); })]);

  const invoke = (server: Local, event: unknown, headers: Record<string, string> = {}) =>
    fetch(`${server.url}/invoke`, { method: 'POST', body: typeof event === 'string' ? event : JSON.stringify(event), headers: { 'content-type': 'application/json', ...headers } });

  test('fixture, MODE=ok: /init counted, /invoke echoes body, headers, env and version; envelope, sleep, log; HTTP paths; SIGTERM', { timeout: 60_000 }, async () => {
    const server = await startLocal(fixtureSource, { VERSION: 'v-test', GREETING: 'hi', SECRET_TOKEN: 'tok' });
    await ready(server);
    const contextHeaders = {
      'x-cff-request-id': '6f1c3a52-0000-4000-8000-000000000001', 'x-cff-func-name': 'echo', 'x-cff-func-version': '1',
      'x-cff-memory': '256', 'x-cff-timeout': '10', 'x-cff-invoke-type': 'sync',
    };

    const before = await (await invoke(server, { name: 'ada' }, contextHeaders)).json() as Record<string, any>;
    assert.equal(before.initCalls, 0);
    const init = await fetch(`${server.url}/init`, { method: 'POST' });
    assert.equal(init.status, 200);
    await init.arrayBuffer();

    const response = await invoke(server, '{"name":"ada"}', contextHeaders);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    const echoed = await response.json() as Record<string, any>;
    assert.equal(echoed.body, '{"name":"ada"}', 'the raw body text');
    for (const [name, value] of Object.entries(contextHeaders)) assert.equal(echoed.headers[name], value);
    assert.equal(echoed.initCalls, 1);
    assert.equal(echoed.pid, server.child.pid);
    assert.equal(echoed.uid, process.getuid!());
    assert.deepEqual(echoed.env, { GREETING: 'hi', SECRET_TOKEN: 'tok' });
    assert.equal(echoed.version, 'v-test');

    const envelope = { isBase64Encoded: true, statusCode: 201, headers: { 'x-custom': 'yes' }, body: Buffer.from('raw bytes').toString('base64') };
    assert.deepEqual(await (await invoke(server, { envelope })).json(), envelope, 'the envelope is the whole response body');

    let started = Date.now();
    const slept = await invoke(server, { sleepMs: 400 });
    assert.equal(slept.status, 200);
    await slept.arrayBuffer();
    assert.ok(Date.now() - started >= 380, 'sleepMs delays the answer');

    await (await invoke(server, { log: 'line-from-event' })).arrayBuffer();
    assert.match(server.stdout(), /^line-from-event$/m);
    assert.match(server.stderr(), /^err:line-from-event$/m);

    const hello = await fetch(`${server.url}/hello`);
    assert.equal(hello.status, 200);
    assert.equal(await hello.text(), 'hello v-test');

    started = Date.now();
    const slow = await fetch(`${server.url}/slow?ms=300`);
    assert.equal(await slow.text(), 'slow done');
    assert.ok(Date.now() - started >= 280);

    // /stream: the first chunk arrives before the second is written.
    const stream = await fetch(`${server.url}/stream`);
    const reader = stream.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now();
    assert.equal(Buffer.from(first.value!).toString(), 'first\n');
    let rest = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += Buffer.from(chunk.value).toString();
    assert.equal(rest, 'second\n');
    assert.ok(Date.now() - firstAt >= 200, 'the second chunk came ~300 ms later');

    const payload = Buffer.alloc(256 * 1024, 'abcdefgh');
    const echo = await fetch(`${server.url}/echo`, { method: 'POST', body: payload, headers: { 'content-type': 'application/x-test' } });
    assert.equal(echo.headers.get('content-type'), 'application/x-test');
    assert.ok(Buffer.from(await echo.arrayBuffer()).equals(payload), 'the body streams back unchanged');

    const whoami = await (await fetch(`${server.url}/whoami`)).json() as Record<string, unknown>;
    assert.deepEqual({ uid: whoami.uid, gid: whoami.gid, pid: whoami.pid }, { uid: process.getuid!(), gid: process.getgid!(), pid: server.child.pid });
    assert.equal(typeof whoami.hostname, 'string');

    const missing = await fetch(`${server.url}/nope`);
    assert.equal(missing.status, 404);
    await missing.arrayBuffer();

    // Node as PID 1 would ignore SIGTERM without the handler; here it must exit 0 at once.
    server.child.kill('SIGTERM');
    assert.deepEqual(await within(server.exited, 5_000, 'exit on SIGTERM'), { code: 0, signal: null });
  });

  test('fixture: a crash mid-request exits 3, GET /crash exits 4', { timeout: 30_000 }, async () => {
    const first = await startLocal(fixtureSource, {});
    await ready(first);
    await assert.rejects(invoke(first, { crash: true }), 'the connection drops without an answer');
    assert.equal((await within(first.exited, 5_000, 'exit')).code, 3);

    const second = await startLocal(fixtureSource, {});
    await ready(second);
    await assert.rejects(fetch(`${second.url}/crash`));
    assert.equal((await within(second.exited, 5_000, 'exit')).code, 4);
  });

  test('fixture, failure modes: crash at start, no server, init 404, init failing, slow start', { timeout: 60_000 }, async () => {
    const crash = await startLocal(fixtureSource, { MODE: 'crash' });
    assert.equal((await within(crash.exited, 5_000, 'exit')).code, 1);
    assert.match(crash.stderr(), /boom: crashing on purpose/);

    const noServer = await startLocal(fixtureSource, { MODE: 'no-server' });
    await within((async () => { while (!/no server here/.test(noServer.stdout())) await sleep(20); })(), 5_000, '"no server here"');
    await sleep(300);
    assert.equal(noServer.child.exitCode, null, 'stays alive');
    await assert.rejects(fetch(`${noServer.url}/hello`), 'nothing listens');
    noServer.child.kill('SIGTERM');
    assert.equal((await within(noServer.exited, 5_000, 'exit on SIGTERM')).code, 0);

    const init404 = await startLocal(fixtureSource, { MODE: 'init-404' });
    await ready(init404);
    assert.equal((await fetch(`${init404.url}/init`, { method: 'POST' })).status, 404);
    assert.equal(((await (await invoke(init404, {})).json()) as { initCalls: number }).initCalls, 0);
    killTree(init404.child);

    const initFails = await startLocal(fixtureSource, { MODE: 'init-fails' });
    await ready(initFails);
    const failed = await fetch(`${initFails.url}/init`, { method: 'POST' });
    assert.equal(failed.status, 500);
    assert.equal(await failed.text(), 'init failed: bad config');
    killTree(initFails.child);

    const started = Date.now();
    const slow = await startLocal(fixtureSource, { MODE: 'slow-start', START_DELAY_MS: '800' });
    await sleep(300);
    assert.equal(slow.child.exitCode, null);
    await assert.rejects(fetch(`${slow.url}/hello`), 'not listening yet');
    await ready(slow);
    assert.ok(Date.now() - started >= 750, `listened after ${Date.now() - started} ms`);
    killTree(slow.child);
  });

  test('examples/hello-fn: /init, /invoke with the request id, any other path as an HTTP function', { timeout: 30_000 }, async () => {
    const server = await startLocal(helloSource, {});
    await ready(server);
    const init = await fetch(`${server.url}/init`, { method: 'POST' });
    assert.equal(init.status, 200);
    await init.arrayBuffer();
    assert.deepEqual(await (await invoke(server, { name: 'Ada' }, { 'x-cff-request-id': 'req-1' })).json(), { hello: 'Ada', requestId: 'req-1' });
    assert.deepEqual(await (await invoke(server, '', { 'x-cff-request-id': 'req-2' })).json(), { hello: 'world', requestId: 'req-2' });
    const page = await fetch(`${server.url}/anything`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal((await page.text()).trim(), 'hello from /anything');
    server.child.kill('SIGTERM');
    assert.equal((await within(server.exited, 5_000, 'exit on SIGTERM')).code, 0);
  });
});
