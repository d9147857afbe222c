/**
 * The BuildDriver conformance suite: every driver runs it (`buildah` now, Kubernetes Jobs later)
 * with one line in its own test file. A real registry (a Slipway test server, plain HTTP) holds
 * the base image (pushed by hand, no build tool) and receives the builds; each test ends with the
 * driver's `leftovers()` empty, so a driver that leaves containers, mounts or temp files fails.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BuildError, type BuildDriver } from '../../src/builds/build-driver.js';
import { startTestServer, tempDir, type TestServer } from '../helpers/harness.js';
import { nodeLayer, pushNodeImage } from '../helpers/node-image.js';
import { sha256 } from '../helpers/oci.js';

export interface BuildDriverUnderTest {
  driver: BuildDriver;
  /** What of the driver's is still there (containers, mounts, temp files), by name. */
  leftovers(): Promise<string[]>;
  close(): Promise<void>;
}

const manifestAccept = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');

/** Processes whose command line contains `needle` (a stopped build must leave none). */
async function processesWith(needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if ((await readFile(`/proc/${entry}/cmdline`)).toString('utf8').replace(/\0/g, ' ').includes(needle)) found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

export function buildDriverSuite(name: string, open: (workDir: string) => Promise<BuildDriverUnderTest>): void {
  describe(`BuildDriver conformance (${name})`, { timeout: 1_800_000 }, () => {
    let ts: TestServer;
    let work: { path: string; remove(): Promise<void> };
    let under: BuildDriverUnderTest;
    let driver: BuildDriver;
    let baseImage: string;

    const collect = () => {
      const lines: string[] = [];
      return { lines, sink: (line: string) => lines.push(line), text: () => lines.join('\n') };
    };
    async function context(files: Record<string, string>): Promise<string> {
      const dir = path.join(work.path, `ctx-${randomBytes(4).toString('hex')}`);
      for (const [file, content] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
        await writeFile(path.join(dir, file), content);
      }
      return dir;
    }
    async function manifest(repository: string, reference: string): Promise<{ status: number; digest: string | null; body: Buffer }> {
      const response = await fetch(`${ts.url}/v2/${repository}/manifests/${reference}`, { headers: { accept: manifestAccept } });
      return { status: response.status, digest: response.headers.get('docker-content-digest'), body: Buffer.from(await response.arrayBuffer()) };
    }
    async function assertNothingLeft(what: string): Promise<void> {
      assert.deepEqual(await under.leftovers(), [], `${what}: nothing of the driver is left`);
    }

    before(async () => {
      ts = await startTestServer();
      work = await tempDir('slipway-build-suite-');
      const pushed = await pushNodeImage(ts, 'suite/base', '1', await nodeLayer(work.path), { Cmd: ['/usr/bin/node'] });
      baseImage = pushed.reference;
      under = await open(work.path);
      driver = under.driver;
    }, { timeout: 300_000 });

    after(async () => {
      await under?.close();
      await ts?.close();
      await work?.remove();
    });

    test('build: a small Dockerfile is built and pushed; the result names what the registry holds', { timeout: 300_000 }, async () => {
      const ctx = await context({ Dockerfile: `FROM ${baseImage}\nCOPY app.js /app/app.js\nRUN node /app/app.js > /app/ran.txt && echo built-it\n`, 'app.js': "console.log('app ran')\n" });
      const log = collect();
      const result = await driver.build({ contextDir: ctx, destination: `${ts.host}/suite/app:1`, insecureRegistries: [ts.host] }, log.sink);
      const pushed = await manifest('suite/app', '1');
      assert.equal(pushed.status, 200);
      assert.equal(result.digest, pushed.digest);
      assert.equal(sha256(pushed.body), result.digest);
      assert.equal(result.imageRef, `${ts.host}/suite/app@${result.digest}`);
      assert.ok(log.lines.includes('built-it'), `the RUN's output is in the log:\n${log.text()}`);
      assert.equal(typeof result.phases.build, 'number');
      await assertNothingLeft('a build');
    });

    test('build: a failing RUN gives a BuildError with its exit code and output, and pushes nothing', { timeout: 300_000 }, async () => {
      const ctx = await context({ Dockerfile: `FROM ${baseImage}\nRUN echo before the failure\nRUN echo failing now && exit 42\nRUN echo never\n` });
      const log = collect();
      await assert.rejects(
        driver.build({ contextDir: ctx, destination: `${ts.host}/suite/fails:1`, insecureRegistries: [ts.host] }, log.sink),
        (error: unknown) => {
          assert.ok(error instanceof BuildError, String(error));
          assert.equal(error.reason, 'failed');
          assert.equal(error.exitCode, 42);
          assert.equal(error.step, 'RUN echo failing now && exit 42');
          assert.match(error.message, /RUN echo failing now && exit 42.*exit code 42/);
          return true;
        },
      );
      assert.ok(log.lines.includes('failing now'), 'the step output is in the log');
      assert.ok(!log.lines.includes('never'));
      assert.equal((await manifest('suite/fails', '1')).status, 404, 'nothing was pushed');
      await assertNothingLeft('a failed build');
    });

    test('build: cancel and time limit mid-RUN stop it at once, with no process, secret or push left', { timeout: 300_000 }, async () => {
      const ctx = await context({ Dockerfile: `FROM ${baseImage}\nRUN echo started-abort && sleep 641\n` });
      const controller = new AbortController();
      const buildSecret = `abort-secret-${randomBytes(8).toString('hex')}`;
      let onCommandLines: number[] | undefined;
      await assert.rejects(
        driver.build({ contextDir: ctx, destination: `${ts.host}/suite/aborted:1`, insecureRegistries: [ts.host], signal: controller.signal, secrets: [{ id: 's', value: buildSecret }] }, (line) => {
          // While the build runs: the secret is on no process's command line. Then cancel.
          if (line === 'started-abort') {
            void processesWith(buildSecret).then((found) => {
              onCommandLines = found;
              controller.abort();
            });
          }
        }),
        (error: unknown) => error instanceof BuildError && error.reason === 'aborted',
      );
      assert.deepEqual(onCommandLines, [], 'the secret value is not on any command line');
      assert.deepEqual(await processesWith('sleep 641'), []);
      assert.equal((await manifest('suite/aborted', '1')).status, 404);
      await assertNothingLeft('a cancelled build');

      const slow = await context({ Dockerfile: `FROM ${baseImage}\nRUN echo started-timeout && sleep 642\n` });
      await assert.rejects(
        driver.build({ contextDir: slow, destination: `${ts.host}/suite/slow:1`, insecureRegistries: [ts.host], timeoutMs: 4_000 }, () => undefined),
        (error: unknown) => error instanceof BuildError && error.reason === 'timeout' && /timed out after 4000 ms/.test(error.message),
      );
      assert.deepEqual(await processesWith('sleep 642'), []);
      await assertNothingLeft('a timed-out build');
    });
  });
}
