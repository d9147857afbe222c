/**
 * A build is a durable job: `kill -9` of the server in the middle of a build, then a restart,
 * and the build is run again to the end — never left "running".
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { tempDir } from './helpers/harness.js';
import { cleanEnv, killAllChildren, killTree, requireCommands, run, slipwayBin, spawnTracked } from './helpers/commands.js';
import { BuildahDriver } from '../src/builds/buildah-driver.js';
import { assembleNodeRootfs, importBaseImage } from '../src/builds/base-image.js';

after(() => killAllChildren());

async function serve(args: string[]): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawnTracked(process.execPath, [slipwayBin, 'serve', ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
  for (let i = 0; i < 200; i++) {
    const match = /listening on (http:\/\/\S+)/.exec(output);
    if (match) return { child, url: match[1]!, output: () => output };
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  killTree(child);
  throw new Error(`slipway serve did not start:\n${output}`);
}

test('kill -9 during a build, restart: the build runs again and finishes', { timeout: 300_000 }, async () => {
  await requireCommands({ buildah: 'buildah', tar: 'tar' });
  const work = await tempDir('slipway-builds-restart-');
  const storage = { root: path.join(work.path, 'storage'), runRoot: path.join(work.path, 'runroot') };
  const driver = new BuildahDriver({ storage: { ...storage, driver: 'overlay' }, tmpDir: work.path });
  let server: Awaited<ReturnType<typeof serve>> | undefined;
  try {
    const config = path.join(work.path, 'slipway.yaml');
    await writeFile(config, [
      'log: {level: warn, requests: false}', 'registry: {gc: {interval: 0}}',
      `builds: {buildah: {storageRoot: ${storage.root}, runRoot: ${storage.runRoot}, storageDriver: overlay}}`, '',
    ].join('\n'));
    const args = ['--listen', '127.0.0.1:0', '--data-dir', path.join(work.path, 'data'), '--config', config];
    server = await serve(args);
    const host = new URL(server.url).host;
    const rootfs = path.join(work.path, 'rootfs');
    await assembleNodeRootfs(rootfs);
    await importBaseImage({ source: { rootfsDir: rootfs }, destination: `${host}/slipway/node-base:latest`, insecureRegistries: [host], driver }, () => undefined);

    const form = new FormData();
    for (const [key, value] of Object.entries({ component: 'durable', branch: 'main', architecture: 'linux/amd64' })) form.set(key, value);
    form.set('dockerfile', new Blob([`FROM ${host}/slipway/node-base:latest\nRUN sleep 4 && echo slept > /slept\n`]), 'Dockerfile');
    const submitted = await (await fetch(`${server.url}/api/v1/namespaces/team/images`, { method: 'POST', body: form })).json() as { id: string };
    const status = async (base: string) => ((await (await fetch(`${base}/api/v1/namespaces/team/builds/${submitted.id}`)).json()) as { status: string; errorMessage: string | null });
    for (let i = 0; i < 100 && (await status(server.url)).status !== 'running'; i++) await sleep(100);
    await sleep(1000);
    assert.equal((await status(server.url)).status, 'running');
    killTree(server.child, 'SIGKILL');
    await new Promise((resolve) => server!.child.once('exit', resolve));

    // Same port is not needed: the build's image name carries the old one, so listen there again.
    server = await serve(['--listen', host, ...args.slice(2)]);
    let final = await status(server.url);
    for (let i = 0; i < 600 && !['succeeded', 'failed', 'cancelled'].includes(final.status); i++) {
      await sleep(200);
      final = await status(server.url);
    }
    assert.equal(final.status, 'succeeded', `after the restart: ${JSON.stringify(final)}\n${server.output()}`);
    const log = await (await fetch(`${server.url}/api/v1/namespaces/team/builds/${submitted.id}/logs`)).text();
    assert.ok((log.match(/started on/g) ?? []).length >= 2, `the build ran again:\n${log}`);
  } finally {
    if (server) killTree(server.child, 'SIGTERM');
    await sleep(500);
    if (server) killTree(server.child, 'SIGKILL');
    await driver.exec(['rm', '--all'], { timeoutMs: 120_000 }).catch(() => undefined);
    await driver.exec(['rmi', '--all', '--force'], { timeoutMs: 120_000 }).catch(() => undefined);
    const mounts = await run('sh', ['-c', `grep -o ' ${work.path}[^ ]*' /proc/mounts || true`]).catch(() => ({ stdout: '' }));
    for (const point of mounts.stdout.trim().split('\n').filter(Boolean).reverse()) await run('umount', ['-l', point.trim()], { allowFailure: true });
    await work.remove();
  }
});
