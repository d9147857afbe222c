/**
 * The `slipway` command as a user runs it: `node bin/slipway.js …` in child processes, each with
 * a hard time limit and killed in `finally`/`after` whatever happens. Covers `serve` (address,
 * config precedence file < env < flags, config errors, health endpoints, graceful SIGTERM),
 * `gc` and `fsck`.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { tempDir } from './helpers/harness.js';
import { cleanEnv, killAllChildren, killTree, run, slipwayBin, spawnTracked, type CommandResult } from './helpers/commands.js';
import { errorCode, imageManifest, pushBlob, pushImage, putManifest, randomBlob, sha256 } from './helpers/oci.js';

interface Serve {
  child: ChildProcess;
  /** The URL printed by `serve`. */
  url: string;
  /** The data folder printed by `serve`. */
  dataDir: string;
  stdout(): string;
  stderr(): string;
  /** Resolves when stdout matches `pattern`. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  /** SIGTERM, then the exit (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `slipway serve ARGS` and waits for the line announcing where it listens. */
async function startServe(args: string[], options: { cwd: string; env?: Record<string, string>; timeoutMs?: number }): Promise<Serve> {
  const child = spawnTracked(process.execPath, [slipwayBin, 'serve', ...args], { cwd: options.cwd, env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    for (const watcher of watchers) watcher();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() }));
  });
  const waitForOutput = (pattern: RegExp, timeoutMs = 20_000) => new Promise<RegExpExecArray>((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(stdout);
      if (!match) return;
      done();
      resolve(match);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`slipway ${args.join(' ')}: no output matching ${pattern} within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      watchers.delete(check);
    };
    watchers.add(check);
    void exited.then(({ code, signal }) => {
      // Let the last output arrive before deciding.
      setImmediate(() => {
        if (!watchers.has(check)) return;
        check();
        if (!watchers.has(check)) return;
        done();
        reject(new Error(`slipway ${args.join(' ')} exited (${code ?? signal}) before printing ${pattern}\nstdout: ${stdout}\nstderr: ${stderr}`));
      });
    });
    check();
  });
  let match: RegExpExecArray;
  try {
    match = await waitForOutput(/Slipway listening on (http:\/\/\S+) \(data in (.+?), database/, options.timeoutMs ?? 20_000);
  } catch (error) {
    killTree(child);
    throw error;
  }
  return {
    child,
    url: match[1]!,
    dataDir: match[2]!,
    stdout: () => stdout,
    stderr: () => stderr,
    waitForOutput,
    exited,
    async stop(timeoutMs = 20_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => killTree(child), timeoutMs);
      try {
        const { code, signal } = await exited;
        return { code, signal };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Runs `slipway ARGS` to completion (hard limit), whatever its exit code. */
function slipway(args: string[], options: { cwd: string; env?: Record<string, string>; timeoutMs?: number }): Promise<CommandResult> {
  return run(process.execPath, [slipwayBin, ...args], { cwd: options.cwd, env: cleanEnv(options.env), timeoutMs: options.timeoutMs ?? 60_000, allowFailure: true });
}

function blobFile(dataDir: string, digest: string): string {
  const hex = digest.replace(/^sha256:/, '');
  return path.join(dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** The last stdout line that parses as a JSON object. */
function lastJson<T>(stdout: string): T {
  const lines = stdout.trim().split('\n').reverse();
  for (const line of lines) {
    try {
      const value = JSON.parse(line) as unknown;
      if (value && typeof value === 'object') return value as T;
    } catch {
      // not JSON
    }
  }
  throw new Error(`no JSON line in output: ${stdout}`);
}

describe('slipway command', { timeout: 600_000 }, () => {
  after(() => killAllChildren());

  test('serve prints the address it listens on; /healthz, /readyz and /v2/ answer; SIGTERM exits 0', { timeout: 60_000 }, async () => {
    const work = await tempDir('slipway-cli-');
    let server: Serve | undefined;
    try {
      const dataDir = path.join(work.path, 'data');
      server = await startServe(['--listen', '127.0.0.1:0', '--data-dir', dataDir], { cwd: work.path });
      const port = Number(new URL(server.url).port);
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.ok(port > 0, `a real port is printed, not 0: ${server.url}`);
      assert.equal(server.dataDir, dataDir);
      assert.ok(await exists(path.join(dataDir, 'slipway.db')), 'the SQLite database is in the data folder');

      const health = await fetch(`${server.url}/healthz`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: 'ok' });
      const ready = await fetch(`${server.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: 'ready' });
      const base = await fetch(`${server.url}/v2/`);
      assert.equal(base.status, 200);
      assert.equal(base.headers.get('docker-distribution-api-version'), 'registry/2.0');

      assert.deepEqual(await server.stop(), { code: 0, signal: null });
    } finally {
      if (server) killTree(server.child);
      await work.remove();
    }
  });

  test('configuration precedence: file < environment < flags', { timeout: 120_000 }, async () => {
    const work = await tempDir('slipway-cli-');
    const servers: Serve[] = [];
    const start = async (args: string[], env: Record<string, string> = {}) => {
      const server = await startServe(args, { cwd: work.path, env });
      servers.push(server);
      const health = await fetch(`${server.url}/healthz`);
      assert.equal(health.status, 200, `healthz on ${server.url}`);
      return server;
    };
    const stop = async (server: Serve) => assert.deepEqual(await server.stop(), { code: 0, signal: null });
    try {
      const fileDir = path.join(work.path, 'from-file');
      const envDir = path.join(work.path, 'from-env');
      const flagDir = path.join(work.path, 'from-flags');
      const configFile = path.join(work.path, 'slipway.yaml');
      // Distinct loopback addresses tell which source won, with port 0 so nothing collides.
      await writeFile(configFile, [
        'listen: 127.0.0.2:0',
        `dataDir: ${JSON.stringify(fileDir)}`,
        'log:',
        '  level: warn',
        'registry:',
        '  gc:',
        '    gracePeriod: 2h',
        '',
      ].join('\n'));

      // The file alone.
      let server = await start(['--config', configFile]);
      assert.equal(new URL(server.url).hostname, '127.0.0.2');
      assert.equal(server.dataDir, fileDir);
      assert.ok(await exists(path.join(fileDir, 'slipway.db')));
      assert.doesNotMatch(server.stdout(), /"level":30/, 'log.level from the file silences info logs');
      await stop(server);

      // The environment over the file, key by key: SLIPWAY_LISTEN wins, dataDir still from the file.
      server = await start(['--config', configFile], { SLIPWAY_LISTEN: '127.0.0.3:0' });
      assert.equal(new URL(server.url).hostname, '127.0.0.3');
      assert.equal(server.dataDir, fileDir);
      await stop(server);

      server = await start(['--config', configFile], { SLIPWAY_LISTEN: '127.0.0.3:0', SLIPWAY_DATA_DIR: envDir });
      assert.equal(new URL(server.url).hostname, '127.0.0.3');
      assert.equal(server.dataDir, envDir);
      assert.ok(await exists(path.join(envDir, 'slipway.db')));
      await stop(server);

      // Flags over both.
      server = await start(['--config', configFile, '--listen', '127.0.0.4:0', '--data-dir', flagDir], { SLIPWAY_LISTEN: '127.0.0.3:0', SLIPWAY_DATA_DIR: envDir });
      assert.equal(new URL(server.url).hostname, '127.0.0.4');
      assert.equal(server.dataDir, flagDir);
      assert.ok(await exists(path.join(flagDir, 'slipway.db')));
      await stop(server);

      // The environment alone, no file.
      server = await start([], { SLIPWAY_LISTEN: '127.0.0.5:0', SLIPWAY_DATA_DIR: envDir });
      assert.equal(new URL(server.url).hostname, '127.0.0.5');
      assert.equal(server.dataDir, envDir);
      await stop(server);

      // The short flags.
      server = await start(['-c', configFile, '-l', '127.0.0.6:0', '-d', flagDir]);
      assert.equal(new URL(server.url).hostname, '127.0.0.6');
      assert.equal(server.dataDir, flagDir);
      await stop(server);
    } finally {
      for (const server of servers) killTree(server.child);
      await work.remove();
    }
  });

  test('a bad configuration fails at start with exit code 2 and names the bad key', { timeout: 120_000 }, async () => {
    const work = await tempDir('slipway-cli-');
    try {
      const dataDir = path.join(work.path, 'data');
      const cases: Array<{ what: string; file?: string; args?: string[]; env?: Record<string, string>; message: RegExp }> = [
        { what: 'unknown nested key', file: 'registry:\n  foo: 1\n', message: /unknown key registry\.foo/ },
        { what: 'unknown top-level key', file: 'listne: 127.0.0.1:0\n', message: /unknown key listne/ },
        { what: 'bad duration', file: 'registry:\n  gc:\n    gracePeriod: soon\n', message: /registry\.gc\.gracePeriod/ },
        { what: 'bad type', file: 'registry:\n  deleteEnabled: maybe\n', message: /registry\.deleteEnabled/ },
        { what: 'bad log level', file: 'log:\n  level: loud\n', message: /log\.level/ },
        { what: 'not YAML', file: 'listen: [unclosed\n', message: /not valid YAML/ },
        { what: 'missing file', args: ['--config', path.join(work.path, 'nope.yaml')], message: /cannot read config file .*nope\.yaml/ },
        { what: 'bad --listen flag', args: ['--listen', 'nowhere'], message: /listen/ },
        { what: 'bad SLIPWAY_LISTEN', env: { SLIPWAY_LISTEN: 'nowhere' }, message: /listen/ },
        { what: 'bad --database flag', args: ['--database', 'mysql://x'], message: /database/ },
      ];
      for (const [index, c] of cases.entries()) {
        const args = ['serve', '--data-dir', dataDir, ...(c.args ?? [])];
        if (c.file !== undefined) {
          const file = path.join(work.path, `bad-${index}.yaml`);
          await writeFile(file, c.file);
          args.push('--config', file);
        }
        if (!c.args?.includes('--listen') && !c.env?.SLIPWAY_LISTEN) args.push('--listen', '127.0.0.1:0');
        const result = await slipway(args, { cwd: work.path, env: c.env, timeoutMs: 30_000 });
        assert.equal(result.code, 2, `${c.what}: exit code 2, got ${result.code ?? result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
        assert.match(result.stderr, c.message, `${c.what}: the message names the problem`);
        assert.match(result.stderr, /^slipway: /m);
        assert.doesNotMatch(result.stdout, /listening/i, `${c.what}: the server must not start`);
      }

      // The same validation applies to the other subcommands.
      const gc = await slipway(['gc', '--data-dir', dataDir, '--grace-period', 'soon'], { cwd: work.path, timeoutMs: 30_000 });
      assert.equal(gc.code, 2, gc.stderr);
      assert.match(gc.stderr, /registry\.gc\.gracePeriod/);
    } finally {
      await work.remove();
    }
  });

  test('SIGTERM lets a slow in-flight upload finish with 202, then the process exits 0', { timeout: 120_000 }, async () => {
    const work = await tempDir('slipway-cli-');
    const dataDir = path.join(work.path, 'data');
    let server: Serve | undefined;
    // A client that keeps connections alive, as registry clients do.
    const agent = new http.Agent({ keepAlive: true });
    try {
      // Request logging on (the default, made explicit): the log tells when the PATCH is in hand.
      const configFile = path.join(work.path, 'slipway.yaml');
      await writeFile(configFile, 'log:\n  level: info\n  requests: true\n');
      server = await startServe(['--config', configFile, '--listen', '127.0.0.1:0', '--data-dir', dataDir], { cwd: work.path });
      const name = 'cli/slow';
      const started = await fetch(`${server.url}/v2/${name}/blobs/uploads/`, { method: 'POST' });
      assert.equal(started.status, 202);
      const location = new URL(started.headers.get('location')!, server.url);

      const chunkSize = 64 * 1024;
      const blob = randomBytes(6 * chunkSize);
      const digest = sha256(blob);
      const response = new Promise<{ status: number; range: string | undefined; body: string; at: number }>((resolve, reject) => {
        const request = http.request(location, {
          method: 'PATCH',
          agent,
          headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.length, 'Content-Range': `0-${blob.length - 1}` },
        }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk; });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, range: res.headers.range, body, at: Date.now() }));
          res.on('error', reject);
        });
        request.on('error', reject);
        void (async () => {
          request.write(blob.subarray(0, chunkSize));
          // Once the server has the request in hand, ask it to stop.
          await server!.waitForOutput(/"method":"PATCH"/);
          await sleep(100);
          server!.child.kill('SIGTERM');
          await server!.waitForOutput(/shutting down/);
          for (let offset = chunkSize; offset < blob.length; offset += chunkSize) {
            await sleep(200);
            request.write(blob.subarray(offset, offset + chunkSize));
          }
          request.end();
        })().catch(reject);
      });

      void response.catch(() => undefined); // awaited below; never an unhandled rejection

      // While it drains, the server takes no new work.
      await server.waitForOutput(/shutting down/);
      const refused = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.status, (error: Error) => error.name);
      assert.ok(refused === 503 || refused === 'TypeError', `a new request during shutdown is refused, got ${refused}`);
      assert.equal(server.child.exitCode, null, 'the process waits for the in-flight request');

      const answer = await response;
      assert.equal(answer.status, 202, `the in-flight PATCH succeeds: ${answer.body}`);
      assert.equal(answer.range, `0-${blob.length - 1}`);

      // Wait past the 30 s shutdown timeout so that a hang shows as what it is, then go on.
      const exit = await Promise.race([server.exited, sleep(40_000, undefined, { ref: false })]);
      if (!exit) killTree(server.child);
      const firstStdout = server.stdout();
      agent.destroy();

      // The bytes it accepted are kept: a new server finishes the same upload.
      const restarted = await startServe(['--listen', '127.0.0.1:0', '--data-dir', dataDir], { cwd: work.path });
      server = restarted;
      const resumed = new URL(location.pathname, restarted.url);
      const status = await fetch(resumed);
      assert.equal(status.status, 204);
      assert.equal(status.headers.get('range'), `0-${blob.length - 1}`);
      resumed.searchParams.set('digest', digest);
      const put = await fetch(resumed, { method: 'PUT' });
      assert.equal(put.status, 201, await put.text());
      const stored = await fetch(`${restarted.url}/v2/${name}/blobs/${digest}`);
      assert.equal(stored.status, 200);
      assert.deepEqual(Buffer.from(await stored.arrayBuffer()), blob);
      assert.deepEqual(await restarted.stop(), { code: 0, signal: null });

      // The first process: exit 0, promptly once its last request was answered, even though
      // the client keeps its connection alive (as skopeo, buildah and docker do).
      assert.ok(exit, `the process did not exit within 40 s of SIGTERM\nstdout: ${firstStdout}`);
      assert.ok(exit.at >= answer.at, 'the process exited after answering');
      const lateBy = exit.at - answer.at;
      assert.ok(lateBy < 10_000 && exit.code === 0 && exit.signal === null,
        `after its last request was answered the process should exit 0 at once; it exited ${exit.code ?? exit.signal} ${lateBy} ms later\nstdout of the stopped server:\n${firstStdout}`);
    } finally {
      agent.destroy();
      if (server) killTree(server.child);
      await work.remove();
    }
  });

  test('gc --grace-period 0s --json removes an untagged manifest and its own blobs, keeps tagged content', { timeout: 120_000 }, async () => {
    const work = await tempDir('slipway-cli-');
    const dataDir = path.join(work.path, 'data');
    let server: Serve | undefined;
    try {
      server = await startServe(['--listen', '127.0.0.1:0', '--data-dir', dataDir], { cwd: work.path });
      const url = server.url;
      const name = 'cli/app';
      const tagged = await pushImage(url, name, 'v1', 2, 4096);
      const shared = tagged.blobs[1]!;

      // Untagged: pushed by digest only; its config and one layer are its own, one layer is shared.
      const config = { data: Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, nonce: randomBytes(8).toString('hex') })), digest: '' };
      config.digest = sha256(config.data);
      const own = randomBlob(5000);
      for (const blob of [config, own, shared]) assert.equal((await pushBlob(url, name, blob.data, blob.digest)).status, 201);
      const untagged = imageManifest({ digest: config.digest, size: config.data.length }, [own, shared].map((b) => ({ digest: b.digest, size: b.data.length })));
      assert.equal((await putManifest(url, name, untagged.digest, untagged)).status, 201);
      assert.equal((await fetch(`${url}/v2/${name}/manifests/${untagged.digest}`)).status, 200);
      for (const blob of [config, own]) assert.ok(await exists(blobFile(dataDir, blob.digest)), `blob file of ${blob.digest} is stored`);

      // With the default grace period (1h) fresh content is kept; the server is still running.
      const keep = await slipway(['gc', '--json', '--data-dir', dataDir], { cwd: work.path });
      assert.equal(keep.code, 0, keep.stderr);
      const kept = lastJson<Record<string, number>>(keep.stdout);
      assert.equal(kept.manifestsDeleted, 0);
      assert.equal(kept.blobsDeleted, 0);

      const gc = await slipway(['gc', '--grace-period', '0s', '--json', '--data-dir', dataDir], { cwd: work.path });
      assert.equal(gc.code, 0, `gc: ${gc.stdout}\n${gc.stderr}`);
      const report = lastJson<{ manifestsDeleted: number; linksDeleted: number; blobsDeleted: number; bytesFreed: number; uploadsExpired: number; durationMs: number }>(gc.stdout);
      assert.equal(report.manifestsDeleted, 1);
      assert.equal(report.blobsDeleted, 2);
      assert.equal(report.linksDeleted, 2);
      assert.equal(report.bytesFreed, config.data.length + own.data.length);
      assert.equal(typeof report.durationMs, 'number');

      // What a user sees afterwards, from the server that kept running.
      const manifest = await fetch(`${url}/v2/${name}/manifests/${untagged.digest}`);
      assert.equal(manifest.status, 404);
      assert.equal(await errorCode(manifest), 'MANIFEST_UNKNOWN');
      for (const blob of [config, own]) {
        const response = await fetch(`${url}/v2/${name}/blobs/${blob.digest}`);
        assert.equal(response.status, 404, `blob ${blob.digest} is gone`);
        assert.equal(await errorCode(response), 'BLOB_UNKNOWN');
        assert.equal(await exists(blobFile(dataDir, blob.digest)), false, `blob file of ${blob.digest} is removed`);
      }
      const v1 = await fetch(`${url}/v2/${name}/manifests/v1`, { headers: { Accept: tagged.manifest.mediaType } });
      assert.equal(v1.status, 200);
      assert.equal(v1.headers.get('docker-content-digest'), tagged.manifest.digest);
      for (const blob of tagged.blobs) {
        const response = await fetch(`${url}/v2/${name}/blobs/${blob.digest}`);
        assert.equal(response.status, 200, `tagged blob ${blob.digest} is kept`);
        assert.deepEqual(Buffer.from(await response.arrayBuffer()), blob.data);
      }

      // Nothing left to do: the human-readable report says so.
      const again = await slipway(['gc', '--grace-period', '0s', '--data-dir', dataDir], { cwd: work.path });
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /\b0 manifests\b/);
      assert.match(again.stdout, /\b0 blobs\b/);

      assert.deepEqual(await server.stop(), { code: 0, signal: null });
    } finally {
      if (server) killTree(server.child);
      await work.remove();
    }
  });

  test('fsck exits 0 on a clean registry and 1 naming a corrupted or missing blob', { timeout: 120_000 }, async () => {
    const work = await tempDir('slipway-cli-');
    const dataDir = path.join(work.path, 'data');
    let server: Serve | undefined;
    try {
      server = await startServe(['--listen', '127.0.0.1:0', '--data-dir', dataDir], { cwd: work.path });
      const { manifest, blobs } = await pushImage(server.url, 'cli/fsck', 'v1', 2, 4096);
      assert.equal((await fetch(`${server.url}/v2/cli/fsck/manifests/${manifest.digest}`)).status, 200);
      assert.deepEqual(await server.stop(), { code: 0, signal: null });
      server = undefined;

      const clean = await slipway(['fsck', '--data-dir', dataDir], { cwd: work.path });
      assert.equal(clean.code, 0, `fsck on a clean registry: ${clean.stdout}\n${clean.stderr}`);
      assert.match(clean.stdout, /\b3 blobs\b/);
      assert.match(clean.stdout, /\b1 manifests\b/);
      assert.match(clean.stdout, /\b0 problems\b/);
      const cleanJson = await slipway(['fsck', '--json', '--data-dir', dataDir], { cwd: work.path });
      assert.equal(cleanJson.code, 0);
      assert.deepEqual(lastJson<{ problems: unknown[] }>(cleanJson.stdout).problems, []);

      // Flip one byte of a layer file, same size.
      const corrupted = blobs[1]!;
      const file = blobFile(dataDir, corrupted.digest);
      const bytes = await readFile(file);
      assert.deepEqual(bytes, corrupted.data, 'the blob file holds the pushed bytes');
      bytes[100] = bytes[100]! ^ 0xff;
      await writeFile(file, bytes);

      const bad = await slipway(['fsck', '--data-dir', dataDir], { cwd: work.path });
      assert.equal(bad.code, 1, `fsck on a corrupted blob: ${bad.stdout}\n${bad.stderr}`);
      assert.match(bad.stdout, /\b1 problems?\b/);
      assert.ok(bad.stdout.split('\n').some((line) => line.includes('blob-corrupt') && line.includes(corrupted.digest)), `fsck names the corrupted blob: ${bad.stdout}`);

      // A linked blob whose file is gone is reported too.
      const missing = blobs[2]!;
      await rm(blobFile(dataDir, missing.digest));
      const badJson = await slipway(['fsck', '--json', '--data-dir', dataDir], { cwd: work.path });
      assert.equal(badJson.code, 1, badJson.stderr);
      const problems = lastJson<{ problems: Array<{ kind: string; digest?: string }> }>(badJson.stdout).problems;
      assert.deepEqual(
        problems.map((p) => `${p.kind} ${p.digest}`).sort(),
        [`blob-corrupt ${corrupted.digest}`, `blob-missing ${missing.digest}`].sort(),
      );
    } finally {
      if (server) killTree(server.child);
      await work.remove();
    }
  });
});
