/**
 * The RuntimeDriver conformance suite: every driver runs it (`runc` now, Kubernetes later) with
 * one line in its own test file. Images come from a real registry (a Slipway test server, plain
 * HTTP) by reference, as the contract says; each test ends with the driver's `leftovers()`
 * empty, so a driver that leaves containers, networks or files behind fails.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { ImageRequest, InstanceEndpoint, RuntimeDriver } from '../../src/functions/runtime-driver.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/harness.js';
import { nodeLayer, pushNodeImage, type PushedImage } from '../helpers/node-image.js';

export interface RuntimeDriverUnderTest {
  driver: RuntimeDriver;
  /** What of the driver's is still on the host or cluster (instances, networks, files), by name. */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

/** The image's own server: its environment, working directory and arguments, as JSON. */
const serverScript = `
const http = require('http');
console.log('starting ' + process.env.GREETING);
console.error('an error line');
http.createServer((q, s) => {
  s.setHeader('content-type', 'application/json');
  s.end(JSON.stringify({ greeting: process.env.GREETING, kept: process.env.KEPT, cwd: process.cwd(), argv: process.argv.slice(1) }));
}).listen(8000);
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function runtimeDriverSuite(name: string, open: (workDir: string) => Promise<RuntimeDriverUnderTest>): void {
  describe(`RuntimeDriver conformance (${name})`, { timeout: 900_000 }, () => {
    let ts: TestServer;
    let work: { path: string; remove(): Promise<void> };
    let under: RuntimeDriverUnderTest;
    let driver: RuntimeDriver;
    let server: PushedImage;
    const started = new Set<string>();

    const image = (pushed: PushedImage, pinned = true): ImageRequest => ({ reference: pushed.reference, ...(pinned ? { digest: pushed.digest } : {}), insecure: true });
    /** One request on a fresh connection: endpoints of stopped instances are reused by the next ones. */
    const answer = (endpoint: InstanceEndpoint) => new Promise<{ greeting?: string; kept?: string; cwd: string; argv: string[] }>((resolve, reject) => {
      const request = http.get({ host: endpoint.address, port: endpoint.port, path: '/', agent: false, timeout: 10_000 }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          } catch (error) {
            reject(error as Error);
          }
        });
        response.on('error', reject);
      });
      request.on('timeout', () => request.destroy(new Error(`${endpoint.address}:${endpoint.port} did not answer`)));
      request.on('error', reject);
    });
    async function assertNothingLeft(what: string): Promise<void> {
      assert.deepEqual(await under.leftovers(), [], `${what}: nothing of the driver is left`);
    }

    before(async () => {
      ts = await startTestServer();
      work = await tempDir('slipway-runtime-suite-');
      const layer = await nodeLayer(work.path);
      server = await pushNodeImage(ts, 'suite/server', '1', layer, {
        Entrypoint: ['node'], Cmd: ['-e', serverScript], Env: ['GREETING=from-image', 'KEPT=from-image'], WorkingDir: '/tmp',
      });
      under = await open(work.path);
      driver = under.driver;
      await driver.recover();
    }, { timeout: 300_000 });

    after(async () => {
      for (const id of started) await driver?.stop(id, { graceMs: 200 }).catch(() => undefined);
      await driver?.close();
      const left = await under?.leftovers();
      await under?.close();
      await ts?.close();
      await work?.remove();
      assert.deepEqual(left ?? [], [], 'nothing is left after the suite');
    });

    test('pull resolves a tag to the image digest and config; a pinned pull checks the digest', { timeout: 300_000 }, async () => {
      const pulled = await driver.pull(image(server, false));
      assert.equal(pulled.digest, server.digest);
      assert.deepEqual(pulled.config.Entrypoint, ['node']);
      assert.deepEqual(pulled.config.Env, ['GREETING=from-image', 'KEPT=from-image']);
      const again = await driver.pull(image(server));
      assert.equal(again.digest, server.digest);
      await assert.rejects(driver.pull({ ...image(server), digest: `sha256:${'0'.repeat(64)}` }), 'another digest than the pinned one is refused');
    });

    test('start from an image reference: the endpoint answers with the image\'s process, output reaches onLog, stats, stop', { timeout: 300_000 }, async () => {
      const lines: string[] = [];
      let exited = false;
      started.add('serve');
      const endpoint = await driver.start({
        id: 'serve', image: image(server), env: ['GREETING=from-spec'], memoryMB: 128, pids: 64, onExit: () => { exited = true; },
      }, (stream, line) => lines.push(`${stream}: ${line}`));
      assert.equal(endpoint.port, 8000);
      await driver.waitForPort(endpoint.address, 8000, 20_000);
      const body = await answer(endpoint);
      assert.equal(body.greeting, 'from-spec', 'the spec\'s environment is laid over the image\'s');
      assert.equal(body.kept, 'from-image', 'variables the spec does not name keep the image\'s value');
      assert.equal(body.cwd, '/tmp', 'the image\'s working directory');
      assert.deepEqual(body.argv, [], 'the image\'s entrypoint and cmd ran (node -e script)');
      for (let i = 0; i < 50 && lines.length < 2; i++) await sleep(20);
      assert.ok(lines.includes('stdout: starting from-spec'), lines.join('\n'));
      assert.ok(lines.includes('stderr: an error line'), lines.join('\n'));

      const stats = await driver.stats('serve');
      assert.ok(stats, 'a running instance has stats');
      assert.ok(stats.memoryBytes === null || stats.memoryBytes > 0);

      await driver.stop('serve', { graceMs: 2000 });
      started.delete('serve');
      assert.equal(exited, true, 'onExit was called by the time stop returns');
      assert.equal(await driver.stats('serve'), null, 'a stopped instance has none');
      await driver.stop('serve');
      await assertNothingLeft('a stopped instance');
    });

    test('command and args replace the image\'s entrypoint and cmd; two instances get their own endpoints', { timeout: 300_000 }, async () => {
      started.add('args-a').add('args-b');
      const [a, b] = await Promise.all([
        driver.start({ id: 'args-a', image: image(server), args: ['-e', serverScript, 'extra'], env: [] }, () => undefined),
        driver.start({ id: 'args-b', image: image(server), command: ['/usr/bin/node', '-e', serverScript, 'own'], env: [] }, () => undefined),
      ]);
      assert.notEqual(`${a.address}:${a.port}`, `${b.address}:${b.port}`);
      await Promise.all([a, b].map((endpoint) => driver.waitForPort(endpoint.address, 8000, 20_000)));
      assert.deepEqual((await answer(a)).argv, ['extra'], 'args replace the cmd, the entrypoint stays');
      assert.deepEqual((await answer(b)).argv, ['own'], 'command replaces the entrypoint and drops the cmd');
      await Promise.all(['args-a', 'args-b'].map((id) => driver.stop(id, { graceMs: 1000 })));
      started.clear();
      await assertNothingLeft('two stopped instances');
    });

    test('a missing image: pull and start reject and leave nothing behind', { timeout: 120_000 }, async () => {
      const missing: ImageRequest = { reference: `${ts.host}/suite/missing:1`, insecure: true };
      await assert.rejects(driver.pull(missing));
      await assert.rejects(driver.start({ id: 'missing', image: missing, env: [] }, () => undefined));
      await assert.rejects(driver.start({ id: 'no-command', image: image(server), command: [], env: [] }, () => undefined), /no entrypoint or command/);
      await assertNothingLeft('failed starts');
    });

    test('an instance that never listens: waitForPort rejects after its time limit', { timeout: 120_000 }, async () => {
      started.add('idle');
      const idle = await driver.start({ id: 'idle', image: image(server), command: ['sleep', '60'], env: [] }, () => undefined);
      const waited = Date.now();
      await assert.rejects(driver.waitForPort(idle.address, 8000, 1500));
      assert.ok(Date.now() - waited < 15_000);
      await driver.stop('idle', { graceMs: 300 });
      started.delete('idle');
      await assertNothingLeft('an instance that never listened');
    });

    test('an instance that exits: its last output, then onExit with the code; waitForPort rejects early', { timeout: 120_000 }, async () => {
      const lines: string[] = [];
      let linesAtExit = -1;
      let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
      let resolveExit!: () => void;
      const exited = new Promise<void>((resolve) => { resolveExit = resolve; });
      started.add('crash');
      const endpoint = await driver.start({
        id: 'crash', image: image(server), command: ['node', '-e', 'console.error("boom"); setTimeout(() => process.exit(3), 300)'], env: [],
        onExit: (info) => { exit = info; linesAtExit = lines.length; resolveExit(); },
      }, (_stream, line) => lines.push(line));
      const waited = Date.now();
      await assert.rejects(driver.waitForPort(endpoint.address, 8000, 30_000));
      assert.ok(Date.now() - waited < 25_000, 'waitForPort gave up when the instance exited');
      await exited;
      assert.equal(exit?.code, 3);
      assert.ok(linesAtExit >= 1 && lines.includes('boom'), 'the output arrived before onExit');
      await driver.stop('crash');
      started.delete('crash');
      await assertNothingLeft('an exited instance');
    });
  });
}
