/**
 * @module pipelines/executor-container
 * The container executor's sandbox: the stage's root file system is made from the executor image
 * by the stage's build driver (`BuildDriver.mountImage`: a buildah working container, mounted),
 * and each step runs in a fresh
 * runc container on that root (`runc run`, foreground, its own pid/ipc/uts/mount namespaces, the
 * host's network, Docker's default capabilities). Files the steps write outside the workspace
 * therefore persist from step to step; processes do not (a step's processes die with it).
 *
 * Mounts: the workspace at `/workspace` (read-write), and under `/.slipway` the docker shim
 * (`bin`, read-only), the step scripts (`steps`, read-only), the environment state (`state`), the
 * docker socket, and the host's Node.js with its libraries and dynamic loader (read-only) so that
 * the shim runs in any image, whatever its libc. At the end every runc container is deleted and
 * the root released (unmounted and removed).
 */
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BuildError, type BuildDriver, type ImageRoot, type RegistryAuth } from '../builds/index.js';
import { runProcess, type ProcessResult } from '../exec/process.js';
import { resolveInRoot } from '../exec/container-path.js';
import { isInside, runStepProcess, type SandboxRunOptions, type StepSandbox } from './executor-sandbox.js';
import { defaultPath } from './executor-shell.js';

export const containerWorkspace = '/workspace';
const slipwayDir = '/.slipway';

const defaultCapabilities = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** The host's Node.js, its libraries and its dynamic loader (from `ldd`), for the shim inside images. */
let nodeFiles: Promise<{ node: string; loader: string; libs: string[] }> | undefined;
function hostNodeFiles(): Promise<{ node: string; loader: string; libs: string[] }> {
  nodeFiles ??= (async () => {
    const node = await realpath(process.execPath);
    const result = await runProcess('ldd', [node], { captureStdout: true, timeoutMs: 30_000 });
    if (result.code !== 0) throw new Error(`ldd ${node} failed`);
    let loader = '';
    const libs: string[] = [];
    for (const line of result.stdout.split('\n')) {
      const linked = /=>\s+(\/\S+)/.exec(line);
      if (linked) {
        libs.push(linked[1]!);
        continue;
      }
      const direct = /^\s*(\/\S+)\s+\(/.exec(line);
      if (direct) loader = direct[1]!;
    }
    if (loader === '') throw new Error(`no dynamic loader found for ${node}`);
    return { node, loader: await realpath(loader), libs: await Promise.all(libs.map(async (lib) => ({ name: path.basename(lib), real: await realpath(lib) }))).then((list) => list.map((l) => `${l.real}\0${l.name}`)) };
  })();
  return nodeFiles;
}

/** The shim launcher inside containers: the host's node through its own loader. */
export const containerShimLauncher = `#!/bin/sh\nexec ${slipwayDir}/node/ld.so --library-path ${slipwayDir}/node/lib ${slipwayDir}/node/node ${slipwayDir}/bin/docker-shim.cjs "$@"\n`;

export interface ContainerSandboxOptions {
  driver: BuildDriver;
  image: string;
  auth?: RegistryAuth;
  insecure?: boolean;
  workspaceDir: string;
  primarySourceName: string;
  /** Host folders (see StageExecutor). */
  binDir: string;
  scriptDir: string;
  stateDir: string;
  socketPath: string;
  /** Private host folder: runc state and bundle. */
  workDir: string;
  graceMs: number;
  signal: AbortSignal;
  log: (line: string) => void;
}

interface Passwd {
  uid: number;
  gid: number;
  home: string;
}

export class ContainerSandbox implements StepSandbox {
  readonly kind = 'container' as const;
  readonly workspace = containerWorkspace;
  readonly primarySource: string;
  readonly binDir = `${slipwayDir}/bin`;
  readonly scriptDir: { step: string; host: string };
  readonly stateDir: { step: string; host: string };
  readonly socketPath = `${slipwayDir}/docker.sock`;
  private readonly name: string;
  private root?: ImageRoot;
  private rootfs?: string;
  private bashNoted = false;
  private imageEnv: Record<string, string> = {};
  private counter = 0;
  private readonly runcRoot: string;
  private readonly bundleDir: string;

  private constructor(private readonly options: ContainerSandboxOptions) {
    this.primarySource = path.posix.join(containerWorkspace, options.primarySourceName);
    this.scriptDir = { step: `${slipwayDir}/steps`, host: options.scriptDir };
    this.stateDir = { step: `${slipwayDir}/state`, host: options.stateDir };
    this.name = `slipway-stage-${randomBytes(8).toString('hex')}`;
    this.runcRoot = path.join(options.workDir, 'runc');
    this.bundleDir = path.join(options.workDir, 'bundle');
  }

  /** Pulls (when needed) and mounts the executor image; throws an Error with the reason when it cannot. */
  static async create(options: ContainerSandboxOptions): Promise<ContainerSandbox> {
    const sandbox = new ContainerSandbox(options);
    try {
      await sandbox.prepare();
    } catch (error) {
      await sandbox.close();
      throw error;
    }
    return sandbox;
  }

  private async prepare(): Promise<void> {
    const { driver, image } = this.options;
    await mkdir(this.runcRoot, { recursive: true, mode: 0o700 });
    await mkdir(this.bundleDir, { recursive: true, mode: 0o700 });
    this.options.log(`[slipway] preparing the build container from ${image}`);
    try {
      this.root = await driver.mountImage({ name: this.name, image, auth: this.options.auth, insecure: this.options.insecure, signal: this.options.signal }, this.options.log);
    } catch (error) {
      if (!(error instanceof BuildError)) throw error;
      if (error.reason === 'aborted') throw new Error('preparing the build container was stopped');
      if (error.reason === 'internal') throw new Error(`cannot mount the build container: ${error.detail ?? ''}`);
      throw new Error(`cannot use the executor image ${image}: ${error.detail ?? error.message}`);
    }
    this.rootfs = this.root.rootfs;
    this.imageEnv = { ...this.root.env };
    // Folders the steps expect: /tmp (sticky, world-writable) and root's home.
    for (const [dir, mode] of [['/tmp', 0o1777], ['/root', 0o700]] as const) {
      const host = await resolveInRoot(this.rootfs, dir);
      if (!(await stat(host).catch(() => undefined))) {
        await mkdir(host, { recursive: true });
        await chmod(host, mode);
      }
    }
  }

  baseEnv(): Record<string, string> {
    return { ...this.imageEnv, HOME: '/root', PATH: this.imageEnv.PATH ?? defaultPath };
  }

  async shellPath(shell: 'bash' | 'sh', note: (line: string) => void): Promise<string> {
    const exists = async (file: string) => {
      const info = await stat(await resolveInRoot(this.rootfs!, file)).catch(() => undefined);
      return !!info?.isFile();
    };
    if (shell === 'bash') {
      for (const candidate of ['/bin/bash', '/usr/bin/bash', '/usr/local/bin/bash']) if (await exists(candidate)) return candidate;
      if (!this.bashNoted) note(`[slipway] bash is not in the image ${this.options.image}; steps use sh`);
      this.bashNoted = true;
    }
    for (const candidate of ['/bin/sh', '/usr/bin/sh']) if (await exists(candidate)) return candidate;
    throw new Error(`the image ${this.options.image} has no /bin/sh`);
  }

  workspaceHostPath(stepPath: string): string | null {
    const resolved = path.posix.resolve('/', stepPath);
    if (!isInside(containerWorkspace, resolved)) return null;
    return path.join(this.options.workspaceDir, path.posix.relative(containerWorkspace, resolved));
  }

  async resolveFile(stepPath: string): Promise<string | null> {
    const resolved = path.posix.resolve(this.primarySource, stepPath);
    if (isInside(containerWorkspace, resolved)) {
      // Resolve inside the workspace as the container sees it: links to /workspace/... stay in it.
      const inWorkspace = await resolveInRoot(this.options.workspaceDir, path.posix.relative(containerWorkspace, resolved));
      return isInside(this.options.workspaceDir, inWorkspace) ? inWorkspace : null;
    }
    if (!this.rootfs) return null;
    const host = await resolveInRoot(this.rootfs, resolved);
    // A link from the root into /workspace lands in the (unmounted) rootfs folder: follow it to the real workspace.
    const relative = path.relative(this.rootfs, host);
    if (isInside(containerWorkspace.slice(1), relative)) {
      return resolveInRoot(this.options.workspaceDir, path.relative(containerWorkspace.slice(1), relative));
    }
    return host;
  }

  private async lookupUser(runAs: string | undefined): Promise<Passwd> {
    if (runAs === undefined || runAs === 'root' || runAs === '0') return { uid: 0, gid: 0, home: '/root' };
    const numeric = /^(\d+)(?::(\d+))?$/.exec(runAs);
    let passwd = '';
    try {
      passwd = await readFile(await resolveInRoot(this.rootfs!, '/etc/passwd'), 'utf8');
    } catch {
      // no passwd file
    }
    for (const line of passwd.split('\n')) {
      const [name, , uid, gid, , home] = line.split(':');
      if (uid === undefined || gid === undefined) continue;
      if ((numeric && uid === numeric[1]) || name === runAs) {
        return { uid: Number(uid), gid: numeric?.[2] !== undefined ? Number(numeric[2]) : Number(gid), home: home || '/' };
      }
    }
    if (numeric) return { uid: Number(numeric[1]), gid: Number(numeric[2] ?? numeric[1]), home: '/tmp' };
    throw new Error(`runAs: no user ${JSON.stringify(runAs)} in the image's /etc/passwd`);
  }

  private async mounts(): Promise<Array<Record<string, unknown>>> {
    const bind = (source: string, destination: string, readonly: boolean) => ({ destination, type: 'bind', source, options: ['rbind', readonly ? 'ro' : 'rw', 'nosuid', 'nodev'] });
    const node = await hostNodeFiles();
    const mounts: Array<Record<string, unknown>> = [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      bind(this.options.workspaceDir, containerWorkspace, false),
      bind(this.options.binDir, `${slipwayDir}/bin`, true),
      bind(this.options.scriptDir, `${slipwayDir}/steps`, true),
      bind(this.options.stateDir, `${slipwayDir}/state`, false),
      bind(this.options.socketPath, this.socketPath, false),
      { destination: `${slipwayDir}/node/node`, type: 'bind', source: node.node, options: ['bind', 'ro'] },
      { destination: `${slipwayDir}/node/ld.so`, type: 'bind', source: node.loader, options: ['bind', 'ro'] },
      ...node.libs.map((entry) => {
        const [real, name] = entry.split('\0') as [string, string];
        return { destination: `${slipwayDir}/node/lib/${name}`, type: 'bind', source: real, options: ['bind', 'ro'] };
      }),
    ];
    for (const file of ['/etc/resolv.conf', '/etc/hosts']) {
      if ((await lstat(file).catch(() => undefined))?.isFile()) mounts.push({ destination: file, type: 'bind', source: file, options: ['bind', 'ro'] });
    }
    return mounts;
  }

  async run(options: SandboxRunOptions): Promise<ProcessResult> {
    if (!this.rootfs) throw new Error('the build container is not ready');
    const user = await this.lookupUser(options.runAs);
    const env = { ...options.env };
    if (user.uid !== 0 && env.HOME === '/root') env.HOME = user.home;
    const capabilities = user.uid === 0 ? defaultCapabilities : [];
    const config = {
      ociVersion: '1.0.2-dev',
      process: {
        terminal: false,
        user: { uid: user.uid, gid: user.gid },
        args: [options.shell, options.script],
        env: Object.entries(env).map(([key, value]) => `${key}=${value}`),
        cwd: options.cwd,
        capabilities: { bounding: defaultCapabilities, effective: capabilities, permitted: capabilities, inheritable: [], ambient: [] },
        noNewPrivileges: true,
      },
      root: { path: this.rootfs, readonly: false },
      hostname: 'slipway-build',
      mounts: await this.mounts(),
      linux: {
        namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
        maskedPaths: ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
        readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      },
    };
    await writeFile(path.join(this.bundleDir, 'config.json'), JSON.stringify(config), { mode: 0o600 });
    const id = `${this.name}-${++this.counter}`;
    return runStepProcess('runc', ['--root', this.runcRoot, 'run', '--bundle', this.bundleDir, id], {
      env: { PATH: defaultPath },
      cwd: this.bundleDir,
      signal: options.signal,
      timeoutMs: options.timeoutMs,
      graceMs: this.options.graceMs,
      onLine: options.onLine,
      // runc removes a container whose init ended; one it could not (runc killed) goes here.
      afterExit: async () => {
        const state = await runProcess('runc', ['--root', this.runcRoot, 'state', id], { timeoutMs: 30_000 });
        if (state.code === 0) await this.deleteContainer(id);
      },
    });
  }

  private async deleteContainer(id: string): Promise<void> {
    await runProcess('runc', ['--root', this.runcRoot, 'kill', id, 'KILL'], { timeoutMs: 30_000 }).catch(() => undefined);
    await runProcess('runc', ['--root', this.runcRoot, 'delete', '--force', id], { timeoutMs: 30_000 }).catch(() => undefined);
  }

  async close(): Promise<void> {
    const list = await runProcess('runc', ['--root', this.runcRoot, 'list', '--quiet'], { captureStdout: true, timeoutMs: 30_000 }).catch(() => undefined);
    for (const id of (list?.stdout ?? '').split('\n').map((l) => l.trim()).filter(Boolean)) await this.deleteContainer(id);
    await rm(this.runcRoot, { recursive: true, force: true }).catch(() => undefined);
    await this.root?.release().catch(() => undefined);
  }
}
