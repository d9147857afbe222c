/**
 * @module builds/buildah-cli
 * The buildah command line as the buildah driver uses it: the driver's store options on every
 * call, private temp folders for one build or push (secrets, auth files, buildah's TMPDIR),
 * `--authfile` and per-build registries.conf files, and `bud` runs marked so that the containers
 * a killed `bud` left can be found and removed. Credentials only ever go into 0600 files here,
 * never on a command line.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BuildError, type LogSink, type OutputSink, type RegistryAuth } from './build-driver.js';
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
export const markerArg = 'SLIPWAY_INTERNAL_BUILD_MARKER';
/** Every container this code names itself starts with this (steps, stage roots, base image imports). */
export const slipwayContainerPrefix = 'slipway-';

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
export function authSecrets(auths: Array<RegistryAuth | undefined>): string[] {
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

/** The last non-empty line of a command's stderr, for messages. */
export function lastLine(result: ProcessResult): string | undefined {
  return result.stderrTail.filter((line) => line.trim() !== '').slice(-1)[0];
}

export class BuildahCli {
  readonly command: string;
  protected readonly options: BuildahDriverOptions;
  protected readonly isolation: string;
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

  /**
   * Runs `buildah bud` (with the driver's isolation, `--layers --force-rm`) on `contextDir` with a
   * fresh marker build argument; the marker is filtered out of buildah's "build args were not
   * consumed" warning. When `bud` fails or is killed, the containers it left are removed
   * (`note` gets what was done).
   */
  async bud(args: string[], contextDir: string, options: { env: NodeJS.ProcessEnv; cwd?: string; signal?: AbortSignal; onLine: OutputSink; note: LogSink }): Promise<ProcessResult> {
    const marker = randomBytes(12).toString('hex');
    const result = await this.exec(['bud', '--isolation', this.isolation, '--layers', '--force-rm', ...args, '--build-arg', `${markerArg}=${marker}`, contextDir], {
      env: options.env,
      cwd: options.cwd,
      signal: options.signal,
      onLine: (line, stream) => {
        const unused = /^\[Warning\] one or more build args were not consumed: \[(.*)\]$/.exec(line);
        if (unused) {
          const others = unused[1]!.split(' ').filter((name) => name !== '' && name !== markerArg);
          if (others.length === 0) return;
          line = `[Warning] one or more build args were not consumed: [${others.join(' ')}]`;
        }
        options.onLine(line, stream);
      },
    });
    if (result.code !== 0) await this.removeLeftovers(marker, options.note);
    return result;
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

  /**
   * After a failed or killed build: removes the build containers carrying this build's random
   * marker. Listing only here (not before every build) keeps a buildah start (~66 ms) off the
   * happy path; a marker cannot be on a container made before the build.
   */
  protected async removeLeftovers(marker: string, emit: LogSink): Promise<void> {
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
}
