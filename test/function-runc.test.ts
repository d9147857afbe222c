/**
 * The runc RuntimeDriver on the host: the shared RuntimeDriver suite, then what is particular
 * to runc: instances as uid 1003 on a read-only root in their own network namespace (reached
 * at its /30 address), cgroup limits, and removal of a previous process's leftovers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { nodeLayer, pushNodeImage, type PushedImage } from './helpers/node-image.js';
import { runProcess } from '../src/exec/process.js';
import { ImageStore } from '../src/functions/image-store.js';
import { RuncDriver } from '../src/functions/runc-driver.js';
import { NetnsManager } from '../src/functions/netns.js';
import { runtimeDriverSuite } from './suites/runtime-driver.js';

const server = `
const fs = require('fs');
const http = require('http');
console.log('starting as ' + process.getuid());
console.error('an error line');
http.createServer((q, s) => {
  if (q.url === '/rw') {
    const tryWrite = (f) => { try { fs.writeFileSync(f, 'x'); return 'ok'; } catch (e) { return e.code; } };
    s.end(JSON.stringify({ root: tryWrite('/x'), tmp: tryWrite('/tmp/x') }));
    return;
  }
  s.end('hi ' + process.getuid());
}).listen(8000);
`;

/** runc containers, network namespaces, bundles and mounts whose names carry `prefix`. */
async function leftovers(runcRoot: string, stateDir: string, prefix: string): Promise<{ containers: string[]; netns: string[]; mounts: string[]; bundles: string[] }> {
  const list = await runProcess('runc', ['--root', runcRoot, 'list', '--format', 'json'], { captureStdout: true });
  const containers = ((JSON.parse(list.stdout.trim() || 'null') ?? []) as Array<{ id: string }>).map((c) => c.id).filter((id) => id.startsWith(prefix));
  const ns = await runProcess('ip', ['netns', 'list'], { captureStdout: true });
  const netns = ns.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(prefix));
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(prefix));
  const bundles = (await readdir(stateDir).catch(() => [] as string[])).filter((n) => n.startsWith(prefix));
  return { containers, netns, mounts, bundles };
}

runtimeDriverSuite('runc', async (workDir) => {
  // The suite's own prefix and runc root: other tests (servers with functions) may run at the same time.
  const prefix = 'slw-rsuite-';
  const runcRoot = path.join(workDir, 'suite-runc');
  const stateDir = path.join(workDir, 'suite-bundles');
  const driver = new RuncDriver({ images: new ImageStore(path.join(workDir, 'suite-images')), stateDir, runcRoot, prefix });
  return {
    driver,
    leftovers: async () => Object.values(await leftovers(runcRoot, stateDir, prefix)).flat(),
    close: () => driver.cleanupOrphans().then(() => undefined),
  };
});

// This test's own prefix and runc root: other tests (servers with functions) may run at the same time.
const P = 'slw-rtest-';

describe('runc runtime driver', { timeout: 600_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  let stateDir: string;
  let images: ImageStore;
  let driver: RuncDriver;
  let image: PushedImage;
  const started: string[] = [];
  const request = () => ({ reference: image.reference, digest: image.digest, insecure: true });

  before(async () => {
    ts = await startTestServer();
    work = await tempDir('slipway-runc-');
    stateDir = path.join(work.path, 'state');
    image = await pushNodeImage(ts, 'runc/node', '1', await nodeLayer(work.path), { Cmd: ['node', '-e', server] });
    images = new ImageStore(path.join(work.path, 'images'));
    driver = new RuncDriver({ images, stateDir, prefix: P, runcRoot: path.join(work.path, 'runc') });
    await driver.cleanupOrphans();
  });

  after(async () => {
    for (const id of started) await driver?.stop(id, { graceMs: 500 }).catch(() => undefined);
    await driver?.cleanupOrphans();
    const left = work ? await leftovers(path.join(work.path, 'runc'), stateDir, P) : undefined;
    await ts?.close();
    await work?.remove();
    assert.deepEqual(left ?? { containers: [], netns: [], mounts: [], bundles: [] }, { containers: [], netns: [], mounts: [], bundles: [] });
  });

  test('serves HTTP as uid 1003 on a read-only root, logs, limits, clean stop', { timeout: 120_000 }, async () => {
    const logs: string[] = [];
    await driver.pull(request());
    const t0 = performance.now();
    started.push('t1');
    const endpoint = await driver.start(
      { id: 't1', image: request(), env: [], memoryMB: 128, pids: 64 },
      (stream, line) => logs.push(`${stream}: ${line}`),
    );
    await driver.waitForPort(endpoint.address, 8000, 10_000);
    const response = await fetch(`http://${endpoint.address}:8000/`);
    const t1 = performance.now();
    assert.equal(response.status, 200);
    assert.equal(await response.text(), 'hi 1003');
    console.log(`cold start (start → first 200): ${(t1 - t0).toFixed(0)} ms`);
    assert.match(endpoint.address, /^10\.203\.\d+\.\d+$/);
    assert.ok(endpoint.pid! > 0);

    const rw = (await (await fetch(`http://${endpoint.address}:8000/rw`)).json()) as { root: string; tmp: string };
    assert.equal(rw.root, 'EROFS');
    assert.equal(rw.tmp, 'ok');

    assert.ok(logs.includes('stdout: starting as 1003'), logs.join('\n'));
    assert.ok(logs.includes('stderr: an error line'), logs.join('\n'));

    const memDir = `/sys/fs/cgroup/memory/${P}t1`;
    if (existsSync(memDir)) {
      assert.equal(Number((await readFile(path.join(memDir, 'memory.limit_in_bytes'), 'utf8')).trim()), 128 * 1024 * 1024);
    } else {
      assert.ok(logs.some((l) => l.includes('memory limit') && l.includes('not applied')), logs.join('\n'));
    }
    if (existsSync(`/sys/fs/cgroup/pids/${P}t1`)) {
      assert.equal((await readFile(`/sys/fs/cgroup/pids/${P}t1/pids.max`, 'utf8')).trim(), '64');
      assert.ok(((await driver.stats('t1'))?.pids ?? 0) >= 1, 'stats read the pids cgroup');
    }
    assert.ok(((await driver.stats('t1'))?.memoryBytes ?? 0) > 0, 'stats tell the memory in use');
    assert.deepEqual((await driver.list()).map((c) => c.id), [`${P}t1`]);

    const s0 = performance.now();
    await driver.stop('t1', { graceMs: 2000 });
    console.log(`stop: ${(performance.now() - s0).toFixed(0)} ms`);
    assert.deepEqual(await driver.list(), []);
    assert.deepEqual(await new NetnsManager().list(P), []);
    assert.equal(existsSync(memDir), false);
    assert.equal(existsSync(path.join(stateDir, `${P}t1`)), false);
  });

  test('one that never listens times out naming the address', { timeout: 120_000 }, async () => {
    started.push('idle');
    const idle = await driver.start({ id: 'idle', image: request(), command: ['sleep', '60'], env: [] }, () => undefined);
    await assert.rejects(driver.waitForPort(idle.address, 8000, 1500), /did not accept/);
    await driver.stop('idle', { graceMs: 300 });
    assert.deepEqual(await driver.list(), []);
  });

  test('cleanupOrphans removes a leaked instance', { timeout: 120_000 }, async () => {
    const leaky = new RuncDriver({ images, stateDir, prefix: P, runcRoot: path.join(work.path, 'runc') });
    started.push('leak');
    const ep = await leaky.start({ id: 'leak', image: request(), env: [], memoryMB: 64 }, () => undefined);
    await leaky.waitForPort(ep.address, 8000, 10_000);
    const fresh = new RuncDriver({ images, stateDir, prefix: P, runcRoot: path.join(work.path, 'runc') });
    const removed = await fresh.cleanupOrphans();
    assert.deepEqual(removed.containers, [`${P}leak`]);
    assert.deepEqual(removed.namespaces, [`${P}leak`]);
    assert.deepEqual(await fresh.list(), []);
    assert.deepEqual(await new NetnsManager().list(P), []);
    assert.equal(existsSync(`/sys/fs/cgroup/memory/${P}leak`), false);
    assert.equal(existsSync(path.join(stateDir, `${P}leak`)), false);
  });
});
