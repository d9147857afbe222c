/**
 * @module builds/base-image
 * Base images without a network: `importBaseImage` turns a root filesystem (a folder, or a
 * tar / tar.gz of one) into an image in a registry — `buildah from scratch` + `buildah add` of
 * the tree as a tar (ownership and modes as they are in the tree) + `buildah config` +
 * `buildah commit` + `buildah push` — and `assembleNodeRootfs` is the ready recipe for a minimal
 * Node.js root: the host's node with the libraries `ldd` lists and the dynamic loader, static
 * busybox and its applets, in a merged-/usr layout, with root and `app` (uid/gid 1003) users.
 * See shared/reference/host-notes.md, "Containers without a Docker engine".
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, copyFile, mkdir, open, readFile, stat, symlink, writeFile, lstat, realpath } from 'node:fs/promises';
import path from 'node:path';
import { BuildError, registryHostOf, repositoryOf, type BuildResult, type LogSink, type RegistryAuth } from './build-driver.js';
import { createMasker } from '../logs/mask.js';
import { BuildahDriver } from './buildah-driver.js';
import { runProcess } from '../exec/process.js';

export type RootfsSource = { rootfsDir: string } | { tarball: string };

export interface ImportBaseImageOptions {
  /** A folder holding the root file system, or a tar (optionally gzip/xz/bzip2-compressed) of one. */
  source: RootfsSource;
  /** Full image reference to push, e.g. '127.0.0.1:5000/base/node:1'. */
  destination: string;
  registryAuth?: RegistryAuth;
  /** Registry hosts spoken to over plain HTTP (`--tls-verify=false`). */
  insecureRegistries?: string[];
  cmd?: string[];
  entrypoint?: string[];
  env?: Record<string, string>;
  /** `user[:group]` the image runs as, e.g. '1003:1003'. */
  user?: string;
  workingDir?: string;
  labels?: Record<string, string>;
  /** The buildah driver whose store and options to use. Default a driver with buildah's defaults. */
  driver?: BuildahDriver;
  signal?: AbortSignal;
  timeoutMs?: number;
}

/**
 * Builds an image from a root file system and pushes it; returns the pushed manifest digest (and
 * the reference pinned by it). Nothing stays in the local store: the working container and the
 * committed image are removed.
 */
export async function importBaseImage(options: ImportBaseImageOptions, log: LogSink): Promise<BuildResult> {
  const driver = options.driver ?? new BuildahDriver();
  const mask = createMasker(options.registryAuth ? [options.registryAuth.password, Buffer.from(`${options.registryAuth.username}:${options.registryAuth.password}`).toString('base64')] : []);
  const emit = (line: string) => log(mask(line));
  if (!options.destination || /\s/.test(options.destination) || options.destination.includes('://')) {
    throw new BuildError('invalid', `destination ${options.destination} is not an image reference`);
  }
  const controller = new AbortController();
  let stopped: 'timeout' | 'aborted' | undefined;
  const onAbort = () => {
    stopped ??= 'aborted';
    controller.abort();
  };
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = options.timeoutMs ? setTimeout(() => ((stopped ??= 'timeout'), controller.abort()), options.timeoutMs) : undefined;
  const signal = controller.signal;
  const check = (result: { code: number | null; signal: NodeJS.Signals | null; stderrTail: string[] }, what: string) => {
    if (result.code === 0) return;
    if (stopped === 'timeout') throw new BuildError('timeout', `${what} timed out after ${options.timeoutMs} ms`);
    if (stopped === 'aborted') throw new BuildError('aborted', `${what} was aborted`);
    throw new BuildError(what.startsWith('push') ? 'push' : 'failed', `${what} failed with exit code ${result.code ?? result.signal}: ${mask(result.stderrTail.filter((l) => l.trim() !== '').slice(-1)[0] ?? '')}`, { exitCode: result.code ?? undefined });
  };

  const name = `slipway-import-${randomBytes(8).toString('hex')}`;
  const phases: Record<string, number> = {};
  const work = await driver.privateDir();
  let imageId: string | undefined;
  try {
    const destinationHost = registryHostOf(options.destination);
    const authArgs = await driver.writeAuthFile(work.path, options.registryAuth, [destinationHost]);
    const tlsArgs = (options.insecureRegistries ?? []).includes(destinationHost) ? ['--tls-verify=false'] : [];
    const env = { ...process.env, TMPDIR: work.tmp };

    let started = Date.now();
    let archive: string;
    if ('rootfsDir' in options.source) {
      const dir = path.resolve(options.source.rootfsDir);
      if (!(await stat(dir).catch(() => undefined))?.isDirectory()) throw new BuildError('invalid', `root file system ${dir} is not a folder`);
      // A tar keeps owners and modes exactly (`buildah copy` would make everything root's).
      archive = path.join(work.path, 'rootfs.tar');
      emit(`[slipway] packing ${dir}`);
      check(await runProcess('tar', ['--numeric-owner', '-C', dir, '-cf', archive, '.'], { signal, env, onLine: emit }), 'packing the root file system');
    } else {
      archive = path.resolve(options.source.tarball);
      if (!(await stat(archive).catch(() => undefined))?.isFile()) throw new BuildError('invalid', `root file system archive ${archive} is not a file`);
    }
    check(await driver.exec(['from', '--name', name, '--quiet', 'scratch'], { signal, env, onLine: emit }), 'creating the working container');
    check(await driver.exec(['add', '--quiet', name, archive, '/'], { signal, env, onLine: emit }), 'adding the root file system');
    const configArgs = [
      ...(options.cmd ? ['--cmd', JSON.stringify(options.cmd)] : []),
      ...(options.entrypoint ? ['--entrypoint', JSON.stringify(options.entrypoint)] : []),
      ...Object.entries(options.env ?? {}).flatMap(([key, value]) => ['--env', `${key}=${value}`]),
      ...(options.user ? ['--user', options.user] : []),
      ...(options.workingDir ? ['--workingdir', options.workingDir] : []),
      ...Object.entries(options.labels ?? {}).flatMap(([key, value]) => ['--label', `${key}=${value}`]),
    ];
    if (configArgs.length > 0) check(await driver.exec(['config', ...configArgs, name], { signal, env, onLine: emit }), 'configuring the image');
    const iidFile = path.join(work.path, 'image.id');
    check(await driver.exec(['commit', '--quiet', '--iidfile', iidFile, name], { signal, env, onLine: emit }), 'committing the image');
    imageId = (await readFile(iidFile, 'utf8')).trim();
    phases.build = Date.now() - started;
    emit(`[slipway] committed ${imageId} in ${phases.build} ms; pushing to ${options.destination}`);

    started = Date.now();
    const digestFile = path.join(work.path, 'image.digest');
    check(await driver.exec(['push', '--digestfile', digestFile, ...tlsArgs, ...authArgs, imageId, `docker://${options.destination}`], { signal, env, onLine: emit }), `pushing ${options.destination}`);
    phases.push = Date.now() - started;
    const digest = (await readFile(digestFile, 'utf8')).trim();
    emit(`[slipway] pushed ${options.destination} ${digest} in ${phases.push} ms`);
    return { digest, imageRef: `${repositoryOf(options.destination)}@${digest}`, phases };
  } finally {
    if (timer) clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    await driver.exec(['rm', name], { timeoutMs: 120_000 });
    if (imageId) await driver.exec(['rmi', '--force', imageId], { timeoutMs: 120_000 });
    await work.remove();
  }
}

export interface NodeRootfsOptions {
  /** Default: the node running this process (wherever Node.js was installed). */
  nodePath?: string;
  /** A statically linked busybox (Debian's busybox-static). Default '/bin/busybox'. */
  busyboxPath?: string;
}

export interface NodeRootfs {
  /** Host paths of the shared libraries (and the dynamic loader) copied in. */
  libraries: string[];
  /** The busybox applets linked into /usr/bin. */
  applets: string[];
}

/** The applets the recipe promises (all of busybox's are linked; these must be among them). */
export const requiredApplets = ['sh', 'ls', 'cat', 'env', 'mkdir', 'rm', 'cp', 'mv', 'echo', 'sleep', 'tar', 'gzip', 'wget'];

/** Whether an ELF executable asks for a program interpreter (is dynamically linked). */
async function isDynamicElf(file: string): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const header = Buffer.alloc(64);
    await handle.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF executable`);
    const is64 = header[4] === 2;
    const little = header[5] === 1;
    const u16 = (buf: Buffer, at: number) => (little ? buf.readUInt16LE(at) : buf.readUInt16BE(at));
    const u32 = (buf: Buffer, at: number) => (little ? buf.readUInt32LE(at) : buf.readUInt32BE(at));
    const phoff = is64 ? Number(little ? header.readBigUInt64LE(32) : header.readBigUInt64BE(32)) : u32(header, 28);
    const phentsize = u16(header, is64 ? 54 : 42);
    const phnum = u16(header, is64 ? 56 : 44);
    const table = Buffer.alloc(phentsize * phnum);
    await handle.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) if (u32(table, i * phentsize) === 3 /* PT_INTERP */) return true;
    return false;
  } finally {
    await handle.close();
  }
}

/** Host path → path inside a merged-/usr root (`/lib/x` → `usr/lib/x`). */
function mergedUsrPath(hostPath: string): string {
  const normal = path.posix.normalize(hostPath);
  const merged = /^\/(bin|sbin|lib|lib32|lib64|libx32)\//.test(normal) ? `/usr${normal}` : normal;
  return merged.replace(/^\/+/, '');
}

async function exists(file: string): Promise<boolean> {
  return (await lstat(file).catch(() => undefined)) !== undefined;
}

/**
 * Creates a minimal root file system for Node.js in `dir` (created if missing): merged /usr
 * (`bin`, `sbin`, `lib`, `lib64` link into `usr`), static busybox with every applet linked in
 * /usr/bin, the host's node with every library `ldd` lists and the dynamic loader, /etc/passwd
 * and /etc/group with root and `app` (1003:1003), /tmp (1777), /workspace and /home/app owned by
 * app. Needs root (for the ownership).
 */
export async function assembleNodeRootfs(dir: string, options: NodeRootfsOptions = {}): Promise<NodeRootfs> {
  const nodePath = options.nodePath ?? await realpath(process.execPath);
  const busyboxPath = options.busyboxPath ?? '/bin/busybox';
  const root = path.resolve(dir);
  const at = (inside: string) => path.join(root, inside);

  if (await isDynamicElf(busyboxPath)) throw new Error(`${busyboxPath} is dynamically linked; install Debian's busybox-static`);

  for (const folder of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64', 'etc', 'root', 'home/app', 'workspace', 'tmp', 'dev', 'proc', 'sys', 'run']) {
    await mkdir(at(folder), { recursive: true });
  }
  for (const link of ['bin', 'sbin', 'lib', 'lib64']) if (!(await exists(at(link)))) await symlink(`usr/${link}`, at(link));

  // busybox and its applets
  await copyFile(busyboxPath, at('usr/bin/busybox'));
  await chmod(at('usr/bin/busybox'), 0o755);
  const list = await runProcess(busyboxPath, ['--list'], { captureStdout: true, timeoutMs: 30_000 });
  if (list.code !== 0) throw new Error(`${busyboxPath} --list failed`);
  const applets = list.stdout.split('\n').map((s) => s.trim()).filter((s) => /^[A-Za-z0-9_.[\]-]+$/.test(s) && s !== 'busybox');
  const missing = requiredApplets.filter((applet) => !applets.includes(applet));
  if (missing.length > 0) throw new Error(`${busyboxPath} lacks the applets ${missing.join(', ')}`);
  for (const applet of applets) if (!(await exists(at(`usr/bin/${applet}`)))) await symlink('busybox', at(`usr/bin/${applet}`));

  // node, its libraries and the dynamic loader
  await copyFile(nodePath, at('usr/bin/node'));
  await chmod(at('usr/bin/node'), 0o755);
  const ldd = await runProcess('ldd', [nodePath], { captureStdout: true, timeoutMs: 30_000 });
  if (ldd.code !== 0) throw new Error(`ldd ${nodePath} failed: ${ldd.stderrTail.join(' ')}`);
  const libraries: string[] = [];
  for (const line of ldd.stdout.split('\n')) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
    const match = /=>\s*(\/\S+)\s*\(/.exec(line) ?? /^\s*(\/\S+)\s*\(/.exec(line);
    if (!match) {
      if (/not found/.test(line)) throw new Error(`ldd ${nodePath}: ${line.trim()}`);
      continue; // linux-vdso and the like have no file
    }
    const hostPath = match[1]!;
    const target = at(mergedUsrPath(hostPath));
    await mkdir(path.dirname(target), { recursive: true });
    await copyFile(hostPath, target); // follows the host's symlink: the file lands under the name the loader asks for
    await chmod(target, 0o755);
    libraries.push(hostPath);
  }
  if (!libraries.some((lib) => /\/ld-[^/]*\.so/.test(lib))) throw new Error(`ldd ${nodePath} listed no dynamic loader`);

  // users, groups and the folders they own
  await writeFile(at('etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1003:1003:app:/home/app:/bin/sh\n', { mode: 0o644 });
  await writeFile(at('etc/group'), 'root:x:0:\napp:x:1003:\n', { mode: 0o644 });
  await writeFile(at('etc/nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files dns\n', { mode: 0o644 });
  await chmod(at('tmp'), 0o1777);
  await chmod(at('root'), 0o700);
  for (const owned of ['home/app', 'workspace']) {
    await chown(at(owned), 1003, 1003);
    await chmod(at(owned), 0o755);
  }
  return { libraries, applets };
}
