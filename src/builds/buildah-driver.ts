/**
 * @module builds/buildah-driver
 * The local build driver: the buildah CLI on the host (DESIGN.md, "builds: buildah on the host").
 *
 * - `build`: `buildah bud --isolation chroot --layers --force-rm` (layer cache between builds in
 *   the local store; optional `--cache-from/--cache-to` of a registry repository), then
 *   `buildah push --digestfile` of the built image ID to the destination.
 * - `runSteps`: `buildah from` the base image, `buildah copy` the context to /workspace, one
 *   `buildah run` per step, files copied out of `buildah mount`, then `buildah rm`.
 *
 * Secrets and registry passwords go to 0600 files in a private 0700 temp folder (build secrets
 * as `--secret id=…,src=…`, credentials as `--authfile`), never on a command line; the folder is
 * removed after every build. Every log line is masked (`createMasker`) before it reaches the sink.
 * Plain-HTTP registries: `--tls-verify=false` where one registry is spoken to (push, from), and a
 * per-build registries.conf marking exactly those hosts `insecure` for `bud`, whose FROM images
 * may come from anywhere.
 *
 * Abort and timeout: buildah gets SIGTERM (it fails the running step and, with `--force-rm`,
 * removes its containers), its process group SIGKILL after a grace period. Containers a killed
 * `bud` still left are found by a marker build argument recorded in each container's metadata
 * and removed; `runSteps` containers carry a unique name and are always removed.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  BuildError,
  createMasker,
  registryHostOf,
  repositoryOf,
  type BuildDriver,
  type BuildRequest,
  type BuildResult,
  type LogSink,
  type RegistryAuth,
  type StepsRequest,
  type StepsResult,
} from './build-driver.js';
import { resolveInRoot } from '../exec/container-path.js';
import { deadline } from '../exec/deadline.js';
import { runProcess, type ProcessResult, type RunProcessOptions } from '../exec/process.js';

export interface BuildahStorageOptions {
  /** `--root`: the image/container store (default buildah's, /var/lib/containers/storage as root). */
  root?: string;
  /** `--runroot`: runtime state (default /run/containers/storage as root). */
  runRoot?: string;
  /** `--storage-driver`, e.g. 'overlay' or 'vfs'. */
  driver?: string;
}

export interface BuildahDriverOptions {
  /** The buildah program. Default 'buildah' from PATH. */
  command?: string;
  /** A store of its own instead of the host's default one (tests, separate build caches). */
  storage?: BuildahStorageOptions;
  /** `--isolation` for RUN steps. Default 'chroot' (works as root without a container runtime). */
  isolation?: 'chroot' | 'oci' | 'rootless';
  /** Parent of the private temp folders (secrets, auth files). Default the OS temp folder. */
  tmpDir?: string;
  /** Time between SIGTERM and SIGKILL when a build is aborted. Default 10 s. */
  graceMs?: number;
}

/** One container in buildah's store (`buildah containers --all --json`). */
export interface BuildahContainer {
  id: string;
  name: string;
  imageName: string;
  /** False for containers of other tools (podman) in the same store. */
  builder: boolean;
}

/** The build argument that marks every container a `bud` creates (it never reaches the image). */
const markerArg = 'SLIPWAY_INTERNAL_BUILD_MARKER';
const registryHostPattern = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const secretIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const argNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;
const outputNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const containerNamePrefix = 'slipway-steps-';
/** Every container this code names itself starts with this (steps, base image imports). */
export const slipwayContainerPrefix = 'slipway-';

function stoppedError(reason: 'timeout' | 'aborted', what: string, timeoutMs: number | undefined): BuildError {
  return reason === 'timeout'
    ? new BuildError('timeout', `${what} timed out after ${timeoutMs} ms`)
    : new BuildError('aborted', `${what} was aborted`);
}

/** `containers-auth.json` content for one set of credentials on the given hosts. */
function authFileContent(auth: RegistryAuth | undefined, hosts: Iterable<string>, extra: Record<string, RegistryAuth> = {}): string {
  const auths: Record<string, { auth: string }> = {};
  for (const [host, login] of Object.entries(extra)) auths[host] = { auth: Buffer.from(`${login.username}:${login.password}`, 'utf8').toString('base64') };
  if (auth) {
    const token = Buffer.from(`${auth.username}:${auth.password}`, 'utf8').toString('base64');
    for (const host of hosts) auths[host] = { auth: token };
  }
  return JSON.stringify({ auths });
}

/** Values to mask in logs for a set of logins: passwords and their base64 `user:password` forms. */
function authSecrets(auths: Array<RegistryAuth | undefined>): string[] {
  return auths.filter((a): a is RegistryAuth => !!a).flatMap((a) => [a.password, Buffer.from(`${a.username}:${a.password}`).toString('base64')]);
}

/** Mount points at or below `dir` in this process's mount namespace. */
async function mountsUnder(dir: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (field: string) => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return text.split('\n').map((line) => unescape(line.split(' ')[4] ?? '')).filter((point) => point === dir || point.startsWith(dir + '/'));
}

/** Unmounts (lazily) whatever is mounted below `dir`; true when nothing is left mounted. */
async function unmountUnder(dir: string): Promise<boolean> {
  const points = await mountsUnder(dir);
  if (points.length === 0) return true;
  for (const point of points.sort((a, b) => b.length - a.length)) await runProcess('umount', ['-l', point], { timeoutMs: 30_000 }).catch(() => undefined);
  return (await mountsUnder(dir)).length === 0;
}

export class BuildahDriver implements BuildDriver {
  readonly command: string;
  private readonly options: BuildahDriverOptions;
  private readonly isolation: string;
  /** Builds of this driver running now; leftover containers without a readable marker are only removed when this is the only one. */
  private running = 0;
  private storeLayout?: Promise<{ graphRoot: string; driver: string } | undefined>;

  constructor(options: BuildahDriverOptions = {}) {
    this.options = options;
    this.command = options.command ?? 'buildah';
    this.isolation = options.isolation ?? 'chroot';
  }

  /** The global options every buildah call gets (storage location). */
  globalArgs(): string[] {
    const storage = this.options.storage ?? {};
    return [
      ...(storage.root ? ['--root', storage.root] : []),
      ...(storage.runRoot ? ['--runroot', storage.runRoot] : []),
      ...(storage.driver ? ['--storage-driver', storage.driver] : []),
    ];
  }

  /** Runs one buildah command with the driver's global options. */
  exec(args: string[], options: RunProcessOptions = {}): Promise<ProcessResult> {
    return runProcess(this.command, [...this.globalArgs(), ...args], { graceMs: this.options.graceMs, ...options });
  }

  /** Like `exec`, but a non-zero exit (or abort) throws a BuildError naming the command. */
  async execChecked(args: string[], options: RunProcessOptions & { what?: string } = {}): Promise<ProcessResult> {
    const result = await this.exec(args, options);
    if (result.code !== 0) {
      const what = options.what ?? `buildah ${args[0]}`;
      if (result.aborted || result.timedOut) throw new BuildError(result.timedOut ? 'timeout' : 'aborted', `${what} was stopped`);
      throw new BuildError('failed', `${what} failed (exit ${result.code ?? result.signal}): ${result.stderrTail.slice(-3).join(' | ')}`, { exitCode: result.code ?? undefined });
    }
    return result;
  }

  /** All containers in the store (including other tools' ones). */
  async containers(): Promise<BuildahContainer[]> {
    const result = await this.execChecked(['containers', '--all', '--json'], { captureStdout: true, timeoutMs: 60_000 });
    const text = result.stdout.trim();
    if (text === '' || text === 'null') return [];
    const list = JSON.parse(text) as Array<{ id: string; containername?: string; imagename?: string; builder?: boolean }>;
    return list.map((c) => ({ id: c.id, name: c.containername ?? '', imageName: c.imagename ?? '', builder: c.builder !== false }));
  }

  /**
   * A private 0700 temp folder for one build: its secrets and auth files, and (as `tmp`, to be
   * buildah's TMPDIR) the run bundles and downloads buildah leaves behind when it is killed.
   * `remove` deletes it all, after unmounting anything still mounted inside.
   */
  async privateDir(): Promise<{ path: string; tmp: string; remove(): Promise<void> }> {
    const base = this.options.tmpDir ?? tmpdir();
    await mkdir(base, { recursive: true });
    const dir = await mkdtemp(path.join(base, 'slipway-build-'));
    const tmp = path.join(dir, 'tmp');
    await mkdir(tmp, { mode: 0o700 });
    return {
      path: dir,
      tmp,
      async remove() {
        // Never let a recursive delete walk into a mount (a container root left mounted); the
        // secret and auth files themselves go in any case.
        if (await unmountUnder(dir)) {
          await rm(dir, { recursive: true, force: true });
          return;
        }
        for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
          if (entry.isFile()) await rm(path.join(dir, entry.name), { force: true });
        }
      },
    };
  }

  /** Writes the auth file (if credentials were given) and returns the `--authfile` arguments. */
  async writeAuthFile(dir: string, auth: RegistryAuth | undefined, hosts: Iterable<string>, extra: Record<string, RegistryAuth> = {}): Promise<string[]> {
    if (!auth && Object.keys(extra).length === 0) return [];
    const file = path.join(dir, 'auth.json');
    await writeFile(file, authFileContent(auth, hosts, extra), { mode: 0o600, flag: 'wx' });
    return ['--authfile', file];
  }

  /** Writes a registries.conf marking exactly `hosts` insecure (plus the host's own configuration) and returns env for it. */
  async writeRegistriesConf(dir: string, hosts: string[]): Promise<NodeJS.ProcessEnv> {
    if (hosts.length === 0) return {};
    let base = '';
    for (const file of [process.env.CONTAINERS_REGISTRIES_CONF, '/etc/containers/registries.conf']) {
      if (!file) continue;
      try {
        base = await readFile(file, 'utf8');
        break;
      } catch {
        // try the next
      }
    }
    // The v1 format cannot be mixed with [[registry]] tables: then only our entries are used.
    if (/^\s*\[registries\./m.test(base)) base = '';
    // A host the system file already configures keeps its own entry (a second one is an error).
    const entries = hosts
      .filter((host) => !new RegExp(`location\\s*=\\s*"${host.replace(/[.[\]]/g, '\\$&')}"`).test(base))
      .map((host) => `\n[[registry]]\nlocation = "${host}"\ninsecure = true\n`);
    const file = path.join(dir, 'registries.conf');
    await writeFile(file, `${base}\n${entries.join('')}`, { mode: 0o600 });
    return { CONTAINERS_REGISTRIES_CONF: file };
  }

  async build(request: BuildRequest, log: LogSink): Promise<BuildResult> {
    const contextDir = path.resolve(request.contextDir);
    const dockerfile = path.resolve(contextDir, request.dockerfile ?? 'Dockerfile');
    await this.validateBuild(request, contextDir, dockerfile);

    const secretValues = (request.secrets ?? []).map((secret) => secret.value);
    const authValues = authSecrets([request.registryAuth, ...Object.values(request.extraAuths ?? {})]);
    const mask = createMasker([...secretValues, ...authValues]);
    const emit = (line: string) => log(mask(line));
    const limit = deadline(request.signal, request.timeoutMs);
    const marker = randomBytes(12).toString('hex');
    const insecure = new Set(request.insecureRegistries ?? []);
    const destinationHost = registryHostOf(request.destination);
    const phases: Record<string, number> = {};
    const work = await this.privateDir();
    if (work.path.startsWith(contextDir + path.sep)) {
      await work.remove();
      throw new BuildError('invalid', `the build context ${contextDir} holds the driver's temp folder; secrets would be part of the context`);
    }
    this.running++;
    try {
      // Secrets and credentials: private files, paths on the command line only.
      const secretArgs: string[] = [];
      for (const [index, secret] of (request.secrets ?? []).entries()) {
        const file = path.join(work.path, `secret-${index}`);
        await writeFile(file, secret.value, { mode: 0o600, flag: 'wx' });
        secretArgs.push('--secret', `id=${secret.id},src=${file}`);
      }
      const authHosts = new Set([destinationHost]);
      if (request.cacheRepository) authHosts.add(registryHostOf(request.cacheRepository));
      const authArgs = await this.writeAuthFile(work.path, request.registryAuth, authHosts, request.extraAuths);
      const registriesEnv = await this.writeRegistriesConf(work.path, [...insecure]);
      const env = { ...process.env, ...registriesEnv, TMPDIR: work.tmp };
      const iidFile = path.join(work.path, 'image.id');
      const digestFile = path.join(work.path, 'image.digest');

      const args = [
        'bud',
        '--isolation', this.isolation,
        '--layers',
        '--force-rm',
        '-f', dockerfile,
        '--iidfile', iidFile,
        '-t', request.destination,
        '--build-arg', `${markerArg}=${marker}`,
        ...Object.entries(request.buildArgs ?? {}).flatMap(([key, value]) => ['--build-arg', `${key}=${value}`]),
        ...(request.target ? ['--target', request.target] : []),
        ...(request.platform ? ['--platform', request.platform] : []),
        ...(request.cacheRepository ? ['--cache-from', request.cacheRepository, '--cache-to', request.cacheRepository] : []),
        ...secretArgs,
        ...authArgs,
        contextDir,
      ];
      emit(`[slipway] building ${request.destination}`);
      let failedStep: { step: string; exitCode: number } | undefined;
      const started = Date.now();
      const bud = await this.exec(args, {
        env,
        cwd: contextDir,
        signal: limit.signal,
        onLine: (line) => {
          const failure = /^Error: building at STEP "(.*)": .*?exit status (\d+)\s*$/.exec(line);
          if (failure) failedStep = { step: failure[1]!, exitCode: Number(failure[2]) };
          const unused = /^\[Warning\] one or more build args were not consumed: \[(.*)\]$/.exec(line);
          if (unused) {
            const others = unused[1]!.split(' ').filter((name) => name !== '' && name !== markerArg);
            if (others.length === 0) return;
            line = `[Warning] one or more build args were not consumed: [${others.join(' ')}]`;
          }
          emit(line);
        },
      });
      phases.build = Date.now() - started;
      if (bud.code !== 0) {
        await this.removeLeftovers(marker, emit);
        const reason = limit.reason();
        if (reason) throw stoppedError(reason, 'build', request.timeoutMs);
        if (failedStep) {
          throw new BuildError('failed', `build failed at step "${mask(failedStep.step)}" with exit code ${failedStep.exitCode}`, failedStep);
        }
        const last = bud.stderrTail.filter((line) => line.trim() !== '').slice(-1)[0] ?? '';
        throw new BuildError('failed', `buildah bud failed with exit code ${bud.code ?? bud.signal}: ${mask(last)}`, { exitCode: bud.code ?? undefined });
      }
      const imageId = (await readFile(iidFile, 'utf8')).trim();
      emit(`[slipway] built ${imageId} in ${phases.build} ms; pushing to ${request.destination}`);

      const pushStarted = Date.now();
      const push = await this.exec(
        [
          'push',
          '--digestfile', digestFile,
          ...(insecure.has(destinationHost) ? ['--tls-verify=false'] : []),
          ...authArgs,
          imageId,
          `docker://${request.destination}`,
        ],
        { env, signal: limit.signal, onLine: emit },
      );
      phases.push = Date.now() - pushStarted;
      if (push.code !== 0) {
        const reason = limit.reason();
        if (reason) throw stoppedError(reason, 'push', request.timeoutMs);
        const last = push.stderrTail.filter((line) => line.trim() !== '').slice(-1)[0] ?? '';
        throw new BuildError('push', `pushing ${request.destination} failed: ${mask(last)}`, { exitCode: push.code ?? undefined });
      }
      const digest = (await readFile(digestFile, 'utf8')).trim();
      emit(`[slipway] pushed ${request.destination} ${digest} in ${phases.push} ms`);
      return { digest, imageRef: `${repositoryOf(request.destination)}@${digest}`, phases };
    } finally {
      this.running--;
      limit.dispose();
      await work.remove();
    }
  }

  private async validateBuild(request: BuildRequest, contextDir: string, dockerfile: string): Promise<void> {
    const invalid = (message: string) => new BuildError('invalid', message);
    const context = await stat(contextDir).catch(() => undefined);
    if (!context?.isDirectory()) throw invalid(`build context ${request.contextDir} is not a folder`);
    if (dockerfile !== contextDir && !dockerfile.startsWith(contextDir + path.sep)) throw invalid(`Dockerfile ${request.dockerfile} is outside the build context`);
    const file = await stat(dockerfile).catch(() => undefined);
    if (!file?.isFile()) throw invalid(`Dockerfile ${request.dockerfile ?? 'Dockerfile'} not found in the build context`);
    if (!request.destination || /\s/.test(request.destination) || request.destination.includes('://')) throw invalid(`destination ${request.destination} is not an image reference`);
    for (const secret of request.secrets ?? []) if (!secretIdPattern.test(secret.id)) throw invalid(`secret id ${secret.id} is not valid`);
    for (const key of Object.keys(request.buildArgs ?? {})) if (!argNamePattern.test(key) || key === markerArg) throw invalid(`build argument ${key} is not valid`);
    for (const host of request.insecureRegistries ?? []) if (!registryHostPattern.test(host)) throw invalid(`insecure registry ${host} is not a host[:port]`);
    if (request.platform && !/^[a-z0-9]+\/[a-z0-9_]+(?:\/[a-z0-9]+)?$/.test(request.platform)) throw invalid(`platform ${request.platform} is not os/arch[/variant]`);
    if (request.target && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(request.target)) throw invalid(`target ${request.target} is not a stage name`);
  }

  /** Where buildah keeps per-container metadata, for finding the marker of a killed build. */
  private layout(): Promise<{ graphRoot: string; driver: string } | undefined> {
    this.storeLayout ??= (async () => {
      const result = await this.exec(['info'], { captureStdout: true, timeoutMs: 60_000 });
      if (result.code !== 0) return undefined;
      try {
        const info = JSON.parse(result.stdout) as { store?: { GraphRoot?: string; GraphDriverName?: string } };
        if (!info.store?.GraphRoot || !info.store.GraphDriverName) return undefined;
        return { graphRoot: info.store.GraphRoot, driver: info.store.GraphDriverName };
      } catch {
        return undefined;
      }
    })();
    return this.storeLayout;
  }

  /** Whether a container was made by the build with `marker` (undefined when its metadata cannot be read). */
  private async carriesMarker(id: string, marker: string): Promise<boolean | undefined> {
    const layout = await this.layout();
    if (!layout) return undefined;
    try {
      const metadata = JSON.parse(await readFile(path.join(layout.graphRoot, `${layout.driver}-containers`, id, 'userdata', 'buildah.json'), 'utf8')) as { Args?: Record<string, string> };
      return metadata.Args?.[markerArg] === marker;
    } catch {
      return undefined;
    }
  }

  /** Removes containers a stopped `bud` left behind (normally none: `--force-rm` removes them). */
  /**
   * After a failed or killed build: removes the build containers carrying this build's random
   * marker. Listing only here (not before every build) keeps a buildah start (~66 ms) off the
   * happy path; a marker cannot be on a container made before the build.
   */
  private async removeLeftovers(marker: string, emit: LogSink): Promise<void> {
    let fresh: BuildahContainer[];
    try {
      fresh = (await this.containers()).filter((c) => c.builder && !c.name.startsWith(slipwayContainerPrefix));
    } catch (error) {
      emit(`[slipway] cannot list containers to clean up: ${(error as Error).message}`);
      return;
    }
    for (const container of fresh) {
      const owned = await this.carriesMarker(container.id, marker);
      if (owned === false) continue;
      if (owned === undefined) {
        emit(`[slipway] container ${container.name} may be left over from this build (its metadata cannot be read); not removed`);
        continue;
      }
      const removed = await this.exec(['rm', container.id], { timeoutMs: 120_000 });
      emit(removed.code === 0 ? `[slipway] removed container ${container.name} left by the build` : `[slipway] could not remove container ${container.name}`);
    }
  }

  async runSteps(request: StepsRequest, log: LogSink): Promise<StepsResult> {
    const contextDir = path.resolve(request.contextDir);
    const outputDir = path.resolve(request.outputDir);
    await this.validateSteps(request, contextDir);

    const mask = createMasker(authSecrets([request.registryAuth, ...Object.values(request.extraAuths ?? {})]));
    const emit = (line: string) => log(mask(line));
    const limit = deadline(request.signal, request.timeoutMs);
    const insecure = new Set(request.insecureRegistries ?? []);
    const baseHost = registryHostOf(request.baseImage);
    const name = `${containerNamePrefix}${randomBytes(8).toString('hex')}`;
    const phases: Record<string, number> = {};
    const work = await this.privateDir();
    let created = false;
    const check = (result: ProcessResult, what: string) => {
      if (result.code === 0) return;
      const reason = limit.reason();
      if (reason) throw stoppedError(reason, what, request.timeoutMs);
      const last = result.stderrTail.filter((line) => line.trim() !== '').slice(-1)[0] ?? '';
      throw new BuildError('failed', `${what} failed with exit code ${result.code ?? result.signal}: ${mask(last)}`, { exitCode: result.code ?? undefined });
    };
    try {
      const authArgs = await this.writeAuthFile(work.path, request.registryAuth, [baseHost], request.extraAuths);
      const env = { ...process.env, TMPDIR: work.tmp };

      let started = Date.now();
      emit(`[slipway] preparing a container from ${request.baseImage}`);
      const from = await this.exec(
        ['from', '--name', name, '--quiet', ...(insecure.has(baseHost) ? ['--tls-verify=false'] : []), ...authArgs, request.baseImage],
        { env, signal: limit.signal, onLine: emit },
      );
      created = from.code === 0;
      check(from, `pulling ${request.baseImage}`);
      check(await this.exec(['copy', '--quiet', name, contextDir, '/workspace'], { env, signal: limit.signal, onLine: emit }), 'copying the context');
      phases.prepare = Date.now() - started;

      const envArgs = Object.entries(request.env ?? {}).flatMap(([key, value]) => ['--env', `${key}=${value}`]);
      for (const step of request.steps) {
        emit(`[slipway] step ${step.name}: ${step.command}`);
        started = Date.now();
        const result = await this.exec(
          ['run', '--isolation', this.isolation, '--workingdir', '/workspace', ...envArgs, name, '--', '/bin/sh', '-c', step.command],
          { env, signal: limit.signal, timeoutMs: step.timeoutMs, onLine: emit },
        );
        phases[`step:${step.name}`] = Date.now() - started;
        if (result.code === 0) continue;
        const reason = limit.reason();
        if (reason) throw stoppedError(reason, `step "${step.name}"`, request.timeoutMs);
        if (result.timedOut) throw new BuildError('timeout', `step "${step.name}" timed out after ${step.timeoutMs} ms`, { step: step.name });
        const exitCode = result.code ?? undefined;
        emit(`[slipway] step ${step.name} failed with exit code ${result.code ?? result.signal}`);
        throw new BuildError('failed', `step "${step.name}" failed with exit code ${result.code ?? result.signal}`, { step: step.name, exitCode });
      }

      started = Date.now();
      const outputs: StepsResult['outputs'] = [];
      if (request.outputs.length > 0) {
        const mounted = await this.exec(['mount', name], { captureStdout: true, signal: limit.signal });
        check(mounted, 'mounting the container');
        try {
          const root = await realpath(mounted.stdout.trim());
          await mkdir(outputDir, { recursive: true });
          for (const output of request.outputs) {
            const inside = output.path.startsWith('/') ? output.path : `/workspace/${output.path}`;
            const source = await resolveInRoot(root, inside);
            const info = await stat(source).catch(() => undefined);
            if (!info?.isFile()) throw new BuildError('failed', `output ${output.name}: ${inside} is not a file after the steps`);
            const file = path.join(outputDir, output.name);
            await copyFile(source, file);
            outputs.push({ name: output.name, file, size: info.size });
            emit(`[slipway] output ${output.name}: ${inside} (${info.size} bytes)`);
          }
        } finally {
          await this.exec(['umount', name], { timeoutMs: 60_000 });
        }
      }
      phases.outputs = Date.now() - started;
      return { outputs, phases };
    } finally {
      limit.dispose();
      // The container is ours by its unique name; a `from` stopped midway may still have made it.
      const removed = await this.exec(['rm', name], { timeoutMs: 120_000 });
      if (removed.code !== 0 && created) emit(`[slipway] could not remove container ${name}: ${removed.stderrTail.slice(-1)[0] ?? ''}`);
      await work.remove();
    }
  }

  private async validateSteps(request: StepsRequest, contextDir: string): Promise<void> {
    const invalid = (message: string) => new BuildError('invalid', message);
    const context = await stat(contextDir).catch(() => undefined);
    if (!context?.isDirectory()) throw invalid(`context ${request.contextDir} is not a folder`);
    if (!request.baseImage || /\s/.test(request.baseImage) || request.baseImage.includes('://')) throw invalid(`base image ${request.baseImage} is not an image reference`);
    if (request.steps.length === 0) throw invalid('no steps to run');
    const stepNames = new Set<string>();
    for (const step of request.steps) {
      if (!step.name || stepNames.has(step.name)) throw invalid(`step name ${step.name} is empty or used twice`);
      stepNames.add(step.name);
    }
    const outputNames = new Set<string>();
    for (const output of request.outputs) {
      if (!outputNamePattern.test(output.name) || outputNames.has(output.name)) throw invalid(`output name ${output.name} is not a valid, unique file name`);
      outputNames.add(output.name);
      if (!output.path || output.path.includes('\0')) throw invalid(`output ${output.name} has no path`);
    }
    for (const key of Object.keys(request.env ?? {})) if (!argNamePattern.test(key)) throw invalid(`environment variable ${key} is not valid`);
    for (const host of request.insecureRegistries ?? []) if (!registryHostPattern.test(host)) throw invalid(`insecure registry ${host} is not a host[:port]`);
  }
}
