/**
 * Images for function tests, built by Slipway itself: the offline base image (busybox + the
 * host's Node.js) is imported into the test server's registry, then the behaviour-switch
 * fixture (test/fixtures/function-image, MODE=…) and the README's example (examples/hello-fn)
 * are built through `POST /api/v1/namespaces/{ns}/images`. Builds use a private buildah store
 * made by `buildWork()`, removed (with its mounts) by its `cleanup()`.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { assembleNodeRootfs, importBaseImage } from '../../src/builds/base-image.js';
import { BuildahDriver } from '../../src/builds/buildah-driver.js';
import { repoRoot, run } from './commands.js';
import { tempDir, type TestServer } from './harness.js';

export interface BuildWork {
  path: string;
  /** `builds` config for the test server: a private buildah store. */
  builds: { buildah: { storageRoot: string; runRoot: string; storageDriver: 'overlay' } };
  driver: BuildahDriver;
  cleanup(): Promise<void>;
}

export async function buildWork(): Promise<BuildWork> {
  const work = await tempDir('slipway-fn-images-');
  const buildah = { storageRoot: path.join(work.path, 'storage'), runRoot: path.join(work.path, 'runroot'), storageDriver: 'overlay' as const };
  const driver = new BuildahDriver({ storage: { root: buildah.storageRoot, runRoot: buildah.runRoot, driver: 'overlay' }, tmpDir: work.path });
  return {
    path: work.path,
    builds: { buildah },
    driver,
    async cleanup() {
      await driver.exec(['rm', '--all'], { timeoutMs: 120_000 }).catch(() => undefined);
      await driver.exec(['rmi', '--all', '--force'], { timeoutMs: 120_000 }).catch(() => undefined);
      const mounts = await run('sh', ['-c', `grep -o ' ${work.path}[^ ]*' /proc/mounts || true`]).catch(() => ({ stdout: '' }));
      for (const point of mounts.stdout.trim().split('\n').filter(Boolean).reverse()) await run('umount', ['-l', point.trim()], { allowFailure: true });
      await work.remove();
    },
  };
}

export interface FunctionImages {
  /** The behaviour-switch fixture (MODE env), full pullable reference. */
  fixture: string;
  /** The README's example function. */
  hello: string;
}

/** Imports the offline base image into the server (auth off) once. */
export async function importBase(ts: TestServer, work: BuildWork): Promise<void> {
  const rootfs = path.join(work.path, 'rootfs');
  await assembleNodeRootfs(rootfs);
  await importBaseImage({ source: { rootfsDir: rootfs }, destination: `${ts.host}/slipway/node-base:latest`, insecureRegistries: [ts.host], driver: work.driver }, () => undefined);
}

async function buildFromDir(ts: TestServer, work: BuildWork, options: { namespace: string; dir: string; component: string; tag: string; buildArgs?: string }): Promise<{ reference: string; digest: string }> {
  const context = path.join(work.path, `ctx-${options.component}-${options.tag}.tar.gz`);
  await run('tar', ['-czf', context, '-C', options.dir, '.']);
  const form = new FormData();
  form.set('component', options.component);
  form.set('branch', 'main');
  form.set('architecture', 'linux/amd64');
  form.set('tag', options.tag);
  if (options.buildArgs) form.set('buildArgs', options.buildArgs);
  form.set('dockerfile', new Blob([await readFile(path.join(options.dir, 'Dockerfile'))]), 'Dockerfile');
  form.set('context', new Blob([await readFile(context)]), 'context.tar.gz');
  const response = await fetch(`${ts.url}/api/v1/namespaces/${options.namespace}/images?wait=true`, { method: 'POST', body: form });
  const body = await response.json() as { status: string; imageName?: string; digest?: string; errorMessage?: string; id?: string };
  if (body.status !== 'succeeded' || !body.imageName || !body.digest) {
    const logs = body.id ? await (await fetch(`${ts.url}/api/v1/namespaces/${options.namespace}/builds/${body.id}/logs`)).text() : '';
    throw new Error(`build of ${options.component} failed: ${JSON.stringify(body)}\n${logs.slice(-3000)}`);
  }
  return { reference: body.imageName, digest: body.digest };
}

/** The base image, then the fixture and the example, built by the server. */
export async function buildFunctionImages(ts: TestServer, work: BuildWork, options: { namespace: string }): Promise<FunctionImages> {
  await importBase(ts, work);
  const fixture = await buildFromDir(ts, work, { namespace: options.namespace, dir: path.join(repoRoot, 'test/fixtures/function-image'), component: 'fixture', tag: 'v1' });
  const hello = await buildFromDir(ts, work, { namespace: options.namespace, dir: path.join(repoRoot, 'examples/hello-fn'), component: 'hello', tag: 'latest' });
  return { fixture: fixture.reference, hello: hello.reference };
}

/** The fixture with `VERSION=<version>` under `<ns>/rolling-main-image:<tag>`: a re-push of one tag with a new digest. */
export async function buildFixtureVersion(ts: TestServer, work: BuildWork, options: { namespace: string; tag: string; version: string }): Promise<{ reference: string; digest: string }> {
  const dir = path.join(work.path, `fixture-${options.version}`);
  await mkdir(dir, { recursive: true });
  const source = path.join(repoRoot, 'test/fixtures/function-image');
  await writeFile(path.join(dir, 'server.js'), await readFile(path.join(source, 'server.js')));
  const dockerfile = (await readFile(path.join(source, 'Dockerfile'), 'utf8')).replace('COPY ', `ENV VERSION=${options.version}\nCOPY `);
  await writeFile(path.join(dir, 'Dockerfile'), dockerfile);
  return buildFromDir(ts, work, { namespace: options.namespace, dir, component: 'rolling', tag: options.tag });
}
