/**
 * Offline base images with real buildah: `assembleNodeRootfs` makes a minimal Node.js root from
 * the host's node and static busybox, `importBaseImage` pushes it (from the folder, and from a
 * tar.gz of it) to a real Slipway registry on 127.0.0.1, and a step container made from the
 * pushed image runs `node -e` and `sh -c`. buildah uses a store of its own in a temp folder.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { killAllChildren, requireCommands, run } from './helpers/commands.js';
import { sha256 } from './helpers/oci.js';
import { BuildahDriver } from '../src/builds/buildah-driver.js';
import { assembleNodeRootfs, importBaseImage, requiredApplets } from '../src/builds/base-image.js';

const manifestAccept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json';

async function mountsUnder(dir: string): Promise<string[]> {
  const lines = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n');
  return lines.map((line) => line.split(' ')[4] ?? '').filter((point) => point.startsWith(dir + '/')).sort();
}

describe('base images from a root file system', { timeout: 900_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  let driver: BuildahDriver;
  let storageRoot: string;
  let tmpRoot: string;
  let rootfs: string;

  before(async () => {
    await requireCommands({ buildah: 'buildah', tar: 'tar', ldd: 'libc-bin' });
    ts = await startTestServer();
    work = await tempDir('slipway-base-image-');
    storageRoot = path.join(work.path, 'storage');
    tmpRoot = path.join(work.path, 'tmp');
    await mkdir(tmpRoot, { recursive: true });
    driver = new BuildahDriver({ storage: { root: storageRoot, runRoot: path.join(work.path, 'runroot'), driver: 'overlay' }, tmpDir: tmpRoot });
    rootfs = path.join(work.path, 'rootfs');
  });

  after(async () => {
    killAllChildren();
    if (driver) {
      await driver.exec(['rm', '--all'], { timeoutMs: 120_000 }).catch(() => undefined);
      await driver.exec(['rmi', '--all', '--force'], { timeoutMs: 120_000 }).catch(() => undefined);
    }
    if (storageRoot) for (const point of (await mountsUnder(storageRoot)).reverse()) await run('umount', ['-l', point], { allowFailure: true }).catch(() => undefined);
    await ts?.close();
    await work?.remove();
  });

  test('assembleNodeRootfs: merged /usr, busybox applets, node with its libraries and loader, users, folders', { timeout: 120_000 }, async () => {
    const result = await assembleNodeRootfs(rootfs);
    for (const link of ['bin', 'sbin', 'lib', 'lib64']) assert.equal(await readlink(path.join(rootfs, link)), `usr/${link}`);
    for (const applet of requiredApplets) assert.equal(await readlink(path.join(rootfs, 'usr/bin', applet)), 'busybox', applet);
    assert.deepEqual(await readFile(path.join(rootfs, 'usr/bin/node')), await readFile(process.execPath));
    assert.ok(result.libraries.some((lib) => /libc\.so/.test(lib)), 'libc is among the libraries');
    assert.ok(result.libraries.some((lib) => /\/ld-linux[^/]*\.so/.test(lib)), 'the dynamic loader is among them');
    for (const lib of result.libraries) {
      const inside = lib.replace(/^\/(lib|lib64)\//, 'usr/$1/').replace(/^\//, '');
      assert.ok((await stat(path.join(rootfs, inside))).isFile(), `${lib} is in the root as ${inside}`);
    }
    assert.match(await readFile(path.join(rootfs, 'etc/passwd'), 'utf8'), /^app:x:1003:1003:/m);
    assert.match(await readFile(path.join(rootfs, 'etc/group'), 'utf8'), /^app:x:1003:/m);
    assert.equal((await stat(path.join(rootfs, 'tmp'))).mode & 0o7777, 0o1777);
    const workspace = await lstat(path.join(rootfs, 'workspace'));
    assert.ok(workspace.isDirectory());
    assert.deepEqual([workspace.uid, workspace.gid], [1003, 1003]);
  });

  test('importBaseImage from the folder and from a tar.gz: node -e and sh -c run in the pushed image', { timeout: 300_000 }, async () => {
    await stat(path.join(rootfs, 'usr/bin/node')).catch(async () => assembleNodeRootfs(rootfs));
    const log: string[] = [];
    const sink = (line: string) => log.push(line);
    const fromDir = await importBaseImage({
      source: { rootfsDir: rootfs },
      destination: `${ts.host}/base/node:1`,
      insecureRegistries: [ts.host],
      driver,
      cmd: ['/usr/bin/node'],
      env: { NODE_ENV: 'production' },
      labels: { 'org.example.base': 'node' },
    }, sink);
    console.log(`import from folder: ${JSON.stringify(fromDir.phases)}`);
    const manifest = await fetch(`${ts.url}/v2/base/node/manifests/1`, { headers: { Accept: manifestAccept } });
    assert.equal(manifest.status, 200);
    const body = Buffer.from(await manifest.arrayBuffer());
    assert.equal(manifest.headers.get('docker-content-digest'), fromDir.digest);
    assert.equal(sha256(body), fromDir.digest);
    assert.equal((JSON.parse(body.toString('utf8')) as { layers: unknown[] }).layers.length, 1, 'one layer');
    assert.equal(fromDir.imageRef, `${ts.host}/base/node@${fromDir.digest}`);
    // Nothing stays in the local store.
    assert.deepEqual(await driver.containers(), []);
    assert.equal((await driver.exec(['images', '--quiet'], { captureStdout: true })).stdout.trim(), '');

    const tarball = path.join(work.path, 'rootfs.tar.gz');
    await run('tar', ['--numeric-owner', '-C', rootfs, '-czf', tarball, '.'], { timeoutMs: 120_000 });
    const fromTar = await importBaseImage({ source: { tarball }, destination: `${ts.host}/base/node-tar:1`, insecureRegistries: [ts.host], driver, user: '1003:1003' }, sink);
    assert.match(fromTar.digest, /^sha256:[0-9a-f]{64}$/);

    const ctx = path.join(work.path, 'ctx');
    await mkdir(ctx, { recursive: true });
    for (const image of [`${ts.host}/base/node:1`, fromTar.imageRef]) {
      const out: string[] = [];
      const result = await driver.runSteps({
        baseImage: image,
        contextDir: ctx,
        insecureRegistries: [ts.host],
        outputs: [],
        outputDir: path.join(work.path, 'out'),
        steps: [
          { name: 'node', command: "node -e 'console.log(1+1)'" },
          { name: 'shell', command: "sh -c 'echo shell works' && stat -c '%a' /tmp && stat -c '%u:%g' /workspace && id app" },
        ],
      }, (line) => out.push(line));
      assert.ok(out.includes('2'), `${image}: node printed 2:\n${out.join('\n')}`);
      assert.ok(out.includes('shell works'), image);
      assert.ok(out.includes('1777'), `${image}: /tmp keeps its mode`);
      assert.ok(out.includes('1003:1003'), `${image}: /workspace keeps its owner`);
      assert.ok(out.some((line) => /^uid=1003\(app\) gid=1003\(app\)/.test(line)), `${image}: the app user exists`);
      assert.ok(result.phases['step:node']! >= 0);
    }
    const inspected = JSON.parse((await driver.exec(['inspect', '--type', 'image', `${ts.host}/base/node:1`], { captureStdout: true })).stdout) as {
      OCIv1: { config: { Cmd?: string[]; Env?: string[]; Labels?: Record<string, string> } };
    };
    assert.deepEqual(inspected.OCIv1.config.Cmd, ['/usr/bin/node']);
    assert.ok(inspected.OCIv1.config.Env?.includes('NODE_ENV=production'));
    assert.equal(inspected.OCIv1.config.Labels?.['org.example.base'], 'node');
    assert.deepEqual(await driver.containers(), []);
    assert.deepEqual(await readdir(tmpRoot), []);
  });
});
