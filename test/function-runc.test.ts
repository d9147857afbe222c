/**
 * The runc RuntimeDriver on the host: instances from an assembled Node.js root (no registry),
 * each in its own network namespace, reached from the host at its /30 address on port 8000.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from './helpers/harness.js';
import { assembleNodeRootfs } from '../src/builds/base-image.js';
import { runProcess } from '../src/exec/process.js';
import { RuncDriver } from '../src/functions/runc-driver.js';
import { NetnsManager } from '../src/functions/netns.js';

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

// This test's own prefix and runc root: other tests (servers with functions) may run at the same time.
const P = 'slw-rtest-';

async function leftovers(runcRoot: string): Promise<{ containers: string[]; netns: string[]; mounts: string[] }> {
  const list = await runProcess('runc', ['--root', runcRoot, 'list', '--format', 'json'], { captureStdout: true });
  const containers = ((JSON.parse(list.stdout.trim() || 'null') ?? []) as Array<{ id: string }>).map((c) => c.id).filter((id) => id.startsWith(P));
  const ns = await runProcess('ip', ['netns', 'list'], { captureStdout: true });
  const netns = ns.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(P));
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(P));
  return { containers, netns, mounts };
}

describe('runc runtime driver', { timeout: 600_000 }, () => {
  let work: { path: string; remove(): Promise<void> };
  let rootfs: string;
  let stateDir: string;
  let driver: RuncDriver;
  const started: string[] = [];

  before(async () => {
    work = await tempDir('slipway-runc-');
    rootfs = path.join(work.path, 'rootfs');
    stateDir = path.join(work.path, 'state');
    await assembleNodeRootfs(rootfs);
    driver = new RuncDriver({ stateDir, prefix: P, runcRoot: path.join(work.path, 'runc') });
    await driver.cleanupOrphans();
  });

  after(async () => {
    for (const id of started) await driver.stop(id, { graceMs: 500 }).catch(() => undefined);
    await driver.cleanupOrphans();
    const left = await leftovers(path.join(work.path, 'runc'));
    await work.remove();
    assert.deepEqual(left, { containers: [], netns: [], mounts: [] });
  });

  test('serves HTTP as uid 1003 on a read-only root, logs, limits, clean stop', { timeout: 120_000 }, async () => {
    const logs: string[] = [];
    const t0 = performance.now();
    started.push('t1');
    const endpoint = await driver.start(
      { id: 't1', rootfs, command: ['node', '-e', server], env: [], memoryMB: 128, pids: 64 },
      (stream, line) => logs.push(`${stream}: ${line}`),
    );
    await driver.waitForPort(endpoint.address, 8000, 10_000);
    const response = await fetch(`http://${endpoint.address}:8000/`);
    const t1 = performance.now();
    assert.equal(response.status, 200);
    assert.equal(await response.text(), 'hi 1003');
    console.log(`cold start (start → first 200): ${(t1 - t0).toFixed(0)} ms`);
    assert.match(endpoint.address, /^10\.203\.\d+\.\d+$/);
    assert.ok(endpoint.pid > 0);

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
    }
    assert.deepEqual((await driver.list()).map((c) => c.id), [`${P}t1`]);

    const s0 = performance.now();
    await driver.stop('t1', { graceMs: 2000 });
    console.log(`stop: ${(performance.now() - s0).toFixed(0)} ms`);
    assert.deepEqual(await driver.list(), []);
    assert.deepEqual(await new NetnsManager().list(P), []);
    assert.equal(existsSync(memDir), false);
    assert.equal(existsSync(path.join(stateDir, `${P}t1`)), false);
  });

  test('a crashing command is reported; one that never listens times out', { timeout: 120_000 }, async () => {
    let exit: { code: number | null } | undefined;
    const exited = new Promise<void>((resolve) => {
      started.push('crash');
      void driver.start(
        { id: 'crash', rootfs, command: ['node', '-e', 'console.error("boom"); process.exit(3)'], env: [], onExit: (info) => { exit = info; resolve(); } },
        () => undefined,
      ).then(async (ep) => {
        await assert.rejects(driver.waitForPort(ep.address, 8000, 3000));
      }, () => undefined);
    });
    await exited;
    assert.equal(exit?.code, 3);
    await driver.stop('crash');

    started.push('idle');
    const idle = await driver.start({ id: 'idle', rootfs, command: ['sleep', '60'], env: [] }, () => undefined);
    await assert.rejects(driver.waitForPort(idle.address, 8000, 1500), /did not accept/);
    await driver.stop('idle', { graceMs: 300 });
    assert.deepEqual(await driver.list(), []);
  });

  test('two instances at once get different addresses', { timeout: 120_000 }, async () => {
    started.push('a', 'b');
    const [a, b] = await Promise.all(['a', 'b'].map((id) =>
      driver.start({ id, rootfs, command: ['node', '-e', server], env: [] }, () => undefined)));
    assert.notEqual(a!.address, b!.address);
    for (const ep of [a!, b!]) {
      await driver.waitForPort(ep.address, 8000, 10_000);
      assert.equal(await (await fetch(`http://${ep.address}:8000/`)).text(), 'hi 1003');
    }
    await Promise.all(['a', 'b'].map((id) => driver.stop(id, { graceMs: 1000 })));
    assert.deepEqual(await driver.list(), []);
  });

  test('cleanupOrphans removes a leaked instance', { timeout: 120_000 }, async () => {
    const leaky = new RuncDriver({ stateDir, prefix: P, runcRoot: path.join(work.path, 'runc') });
    started.push('leak');
    const ep = await leaky.start({ id: 'leak', rootfs, command: ['node', '-e', server], env: [], memoryMB: 64 }, () => undefined);
    await leaky.waitForPort(ep.address, 8000, 10_000);
    const fresh = new RuncDriver({ stateDir, prefix: P, runcRoot: path.join(work.path, 'runc') });
    const removed = await fresh.cleanupOrphans();
    assert.deepEqual(removed.containers, [`${P}leak`]);
    assert.deepEqual(removed.namespaces, [`${P}leak`]);
    assert.deepEqual(await fresh.list(), []);
    assert.deepEqual(await new NetnsManager().list(P), []);
    assert.equal(existsSync(`/sys/fs/cgroup/memory/${P}leak`), false);
    assert.equal(existsSync(path.join(stateDir, `${P}leak`)), false);
  });
});
