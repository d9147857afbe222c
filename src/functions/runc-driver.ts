/**
 * @module functions/runc-driver
 * The local RuntimeDriver: each function instance is a runc container with its own network
 * namespace (see `netns.ts`), a read-only root shared between instances of an image (tmpfs on
 * /tmp), UID/GID 1003 by default, no capabilities, no rlimits (the host's hard limits cannot be
 * raised here), and memory/pids limits through a `cgroupsPath` where the host has the controllers.
 *
 * `runc run` is kept in the foreground as the instance's parent (its own process group): it
 * passes the container's stdout/stderr through (no terminal), which are split into lines for
 * `onLog`, and its exit status is the container's, reported to `onExit`. Container ids, netns
 * names and bundle folders all start with `slw-`, so `cleanupOrphans()` can remove whatever a
 * previous process left.
 *
 * Images are pulled into an ImageStore on the host and unpacked once per digest; instances of
 * one image share its root read-only. `createRuncRuntime()` (runc-runtime.ts) is the server's
 * factory: it checks that runc is installed and lays out `<dataDir>/functions/`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, readdir, realpath, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { killGroup, runProcess } from '../exec/process.js';
import type { ImageConfig, ImageStore } from './image-store.js';
import { lines, sleep, waitForPort } from './instance-io.js';
import { NAME_PREFIX, NetnsManager, type InstanceNetwork } from './netns.js';
import {
  InstanceExitedError, instanceProcess, pinnedReference, type ImageRequest, type InstanceEndpoint, type InstanceSpec, type InstanceStats, type LogFn,
  type PulledImage, type RuntimeDriver,
} from './runtime-driver.js';

export { waitForPort } from './instance-io.js';

export interface RuncDriverOptions {
  /** Where images are pulled to and unpacked (roots are shared read-only by the instances of an image). */
  images: ImageStore;
  /** Bundles (config.json, pid file) live in `<stateDir>/slw-<id>`. */
  stateDir: string;
  /** runc's `--root`; default runc's own. */
  runcRoot?: string;
  /** Address pool for the instances' /30 blocks. Default 10.203.0.0/16. */
  pool?: string;
  /** Where cgroup v1 controllers are mounted. Default /sys/fs/cgroup. */
  cgroupRoot?: string;
  /**
   * Prefix of this driver's container ids, namespaces and bundles (starts with `slw-`): two
   * servers on one host each clean up only their own leftovers. Default `slw-`.
   */
  prefix?: string;
  /**
   * Network namespaces kept ready for the next instances, so a cold start does not wait for
   * the five `ip` calls that make one. Default 0; the server uses 2.
   */
  spareNetworks?: number;
}

interface Instance {
  id: string;
  bundle: string;
  net: InstanceNetwork;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done: boolean;
  pid?: number;
}

const defaultPath = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export class RuncDriver implements RuntimeDriver {
  private readonly instances = new Map<string, Instance>();
  private readonly netns: NetnsManager;
  private readonly cgroupRoot: string;
  private netnsQueue: Promise<void> = Promise.resolve();
  private readonly spares: InstanceNetwork[] = [];
  private spareSequence = 0;
  private closed = false;
  readonly prefix: string;

  constructor(private readonly options: RuncDriverOptions) {
    this.netns = new NetnsManager({ pool: options.pool });
    this.cgroupRoot = options.cgroupRoot ?? '/sys/fs/cgroup';
    this.prefix = options.prefix ?? NAME_PREFIX;
    if (!this.prefix.startsWith(NAME_PREFIX) || !/^[A-Za-z0-9_.-]{4,24}$/.test(this.prefix)) throw new Error(`bad instance prefix ${this.prefix}: must start with ${NAME_PREFIX}`);
  }

  /**
   * Waits until the instance at `address` listens on `port`, read from its own network
   * namespace (`/proc/<pid>/net/tcp{,6}`): a TCP connect from the host is not proof on hosts
   * with a transparent proxy that accepts every connection. Unknown addresses fall back to a
   * TCP connect. Rejects early when the instance exits.
   */
  async waitForPort(address: string, port: number, timeoutMs: number): Promise<void> {
    const instance = [...this.instances.values()].find((i) => i.net.address === address);
    if (!instance || !instance.pid) return waitForPort(address, port, timeoutMs);
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (instance.done) throw new InstanceExitedError(`instance ${instance.id} exited before listening on ${port}`);
      for (const file of ['tcp', 'tcp6']) {
        const text = await readFile(`/proc/${instance.pid}/net/${file}`, 'utf8').catch(() => '');
        for (const line of text.split('\n').slice(1)) {
          const cols = line.trim().split(/\s+/);
          if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') return;
        }
      }
      if (Date.now() >= deadline) throw new Error(`${address}:${port} did not accept connections within ${timeoutMs} ms`);
      await sleep(3);
    }
  }

  private runcArgs(args: string[]): string[] {
    return this.options.runcRoot ? ['--root', this.options.runcRoot, ...args] : args;
  }

  private runc(args: string[], timeoutMs = 30_000) {
    return runProcess('runc', this.runcArgs(args), { captureStdout: true, timeoutMs, graceMs: 1000 });
  }

  private containerId(id: string): string {
    const full = id.startsWith(this.prefix) ? id : this.prefix + id;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(full)) throw new Error(`bad instance id ${id}`);
    return full;
  }

  /** Which cgroup v1 controllers are usable (mounted and writable). */
  private async controllers(): Promise<{ memory: boolean; pids: boolean; reason?: string }> {
    const check = async (name: string) => {
      try {
        return (await stat(path.join(this.cgroupRoot, name))).isDirectory() && existsSync(path.join(this.cgroupRoot, name, 'cgroup.procs'));
      } catch {
        return false;
      }
    };
    return { memory: await check('memory'), pids: await check('pids') };
  }

  /**
   * Pulls into the image store (blobs verified while streaming; `source` read in process when
   * given) and unpacks the root once per digest. An image already here by its digest is not
   * fetched again.
   */
  async pull(image: ImageRequest): Promise<PulledImage> {
    const { config, digest } = await this.prepare(image);
    return { digest, config };
  }

  /** Roots by digest, so the starts of one revision's instances share one unpack. */
  private readonly prepared = new Map<string, Promise<{ digest: string; config: ImageConfig; rootfs: string }>>();

  private async prepare(image: ImageRequest): Promise<{ digest: string; config: ImageConfig; rootfs: string }> {
    const { images } = this.options;
    if (image.digest) {
      const known = await this.prepared.get(image.digest)?.catch(() => undefined);
      // The store may have been cleaned under us: then the image is prepared again.
      if (known && existsSync(known.rootfs)) return known;
      const digest = image.digest;
      const cached = (async () => {
        const config = await images.configOf(digest).catch(() => null);
        if (config) return { digest, config, rootfs: await images.unpack(digest) };
        return this.fetch(image);
      })();
      this.prepared.set(digest, cached);
      cached.catch(() => this.prepared.delete(digest));
      return cached;
    }
    const fetched = await this.fetch(image);
    this.prepared.set(fetched.digest, Promise.resolve(fetched));
    return fetched;
  }

  private async fetch(image: ImageRequest): Promise<{ digest: string; config: ImageConfig; rootfs: string }> {
    const reference = image.digest ? pinnedReference(image.reference, image.digest) : image.reference;
    const auth = image.source ? undefined : await image.login?.();
    const pulled = await this.options.images.pull(reference, { source: image.source, auth, insecure: image.insecure });
    if (image.digest && pulled.digest !== image.digest) throw new Error(`image digest changed while pulling: expected ${image.digest}, got ${pulled.digest}`);
    return { digest: pulled.digest, config: pulled.config, rootfs: await this.options.images.unpack(pulled.digest) };
  }

  async start(spec: InstanceSpec, onLog: LogFn): Promise<InstanceEndpoint> {
    const id = this.containerId(spec.id);
    if (this.instances.has(id)) throw new Error(`instance ${id} is already running`);
    const image = await this.prepare(spec.image);
    const proc = instanceProcess(image.config, spec);
    const rootfs = await realpath(image.rootfs);
    const bundle = path.join(path.resolve(this.options.stateDir), id);
    await mkdir(bundle, { recursive: true });

    const resources: Record<string, unknown> = {};
    const ctl = await this.controllers();
    if (spec.memoryMB !== undefined) {
      if (ctl.memory) resources.memory = { limit: Math.round(spec.memoryMB * 1024 * 1024) };
      else onLog('stderr', `[slipway] memory limit ${spec.memoryMB} MB not applied: no memory cgroup controller at ${this.cgroupRoot}/memory`);
    }
    if (spec.pids !== undefined) {
      if (ctl.pids) resources.pids = { limit: spec.pids };
      else onLog('stderr', `[slipway] pids limit ${spec.pids} not applied: no pids cgroup controller at ${this.cgroupRoot}/pids`);
    }

    // Namespace creation is serialised: the address allocation reads the host's veths.
    const netInfo = await this.takeNetwork(id);
    const config = {
      ociVersion: '1.0.2',
      process: {
        terminal: false,
        user: { uid: spec.uid ?? 1003, gid: spec.gid ?? 1003 },
        args: proc.args,
        env: proc.env.some((e) => e.startsWith('PATH=')) ? proc.env : [defaultPath, ...proc.env],
        cwd: proc.cwd,
        capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
        noNewPrivileges: true,
      },
      root: { path: rootfs, readonly: true },
      hostname: id.slice(0, 63),
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
        { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
        { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
        { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
        { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
        { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', 'size=65536k'] },
      ],
      linux: {
        namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: netInfo.path }],
        ...(Object.keys(resources).length ? { cgroupsPath: `/${id}`, resources } : {}),
        maskedPaths: ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
        readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      },
    };
    const pidFile = path.join(bundle, 'pid');
    await rm(pidFile, { force: true });
    await writeFile(path.join(bundle, 'config.json'), JSON.stringify(config, null, 2));

    // Foreground `runc run` in its own process group stays the container's parent.
    const child = spawn('runc', this.runcArgs(['run', '--bundle', bundle, '--pid-file', pidFile, id]), {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const early: string[] = [];
    let started = false;
    const out = lines(child.stdout!, (line) => onLog('stdout', line));
    const err = lines(child.stderr!, (line) => {
      if (!started) early.push(line);
      onLog('stderr', line);
    });
    const instance: Instance = {
      id,
      bundle,
      net: netInfo,
      child,
      done: false,
      exited: new Promise((resolve) => {
        let result: { code: number | null; signal: NodeJS.Signals | null } = { code: null, signal: null };
        child.on('error', (error) => {
          early.push(`cannot run runc: ${error.message}`);
          result = { code: 127, signal: null };
        });
        child.on('exit', (code, signal) => {
          result = { code, signal };
        });
        child.on('close', () => {
          void Promise.all([out, err]).then(() => {
            instance.done = true;
            resolve(result);
          });
        });
      }),
    };
    void instance.exited.then((info) => spec.onExit?.(info));
    this.instances.set(id, instance);

    // Wait for the pid file (the container is running) or runc's exit.
    let pid = 0;
    for (;;) {
      const text = await readFile(pidFile, 'utf8').catch(() => '');
      if (text.trim()) {
        pid = Number(text.trim());
        break;
      }
      if (instance.done) {
        const info = await instance.exited;
        await this.teardown(instance);
        throw new Error(`runc run ${id} failed (exit ${info.code ?? info.signal}): ${early.slice(-10).join('\n')}`);
      }
      await sleep(3);
    }
    started = true;
    instance.pid = pid;
    return { id, address: netInfo.address, port: 8000, pid };
  }

  /** Creates a namespace (serialised: the address allocation reads the host's veths). */
  private createNetwork(name: string): Promise<InstanceNetwork> {
    const creating = this.netnsQueue.then(() => this.netns.create(name));
    this.netnsQueue = creating.then(() => undefined, () => undefined);
    return creating;
  }

  /** A spare namespace when one is ready (refilled in the background), else a new one. */
  private async takeNetwork(id: string): Promise<InstanceNetwork> {
    const spare = this.spares.shift();
    this.refillSpares();
    return spare ?? this.createNetwork(id);
  }

  private refilling = 0;
  /** Keeps `spareNetworks` namespaces ready. */
  refillSpares(): void {
    const want = this.options.spareNetworks ?? 0;
    while (!this.closed && this.spares.length + this.refilling < want) {
      this.refilling++;
      void this.createNetwork(`${this.prefix}n${(++this.spareSequence).toString(36)}${Math.random().toString(36).slice(2, 6)}`)
        .then(async (net) => {
          if (this.closed) await this.netns.delete(net.name, net.hostVeth);
          else this.spares.push(net);
        }, () => undefined)
        .finally(() => { this.refilling--; });
    }
  }

  /** Memory from the instance's cgroup (else its process's resident set), pids from its cgroup. */
  async stats(id: string): Promise<InstanceStats | null> {
    const cid = this.containerId(id);
    const instance = this.instances.get(cid);
    if (!instance || instance.done || !instance.pid) return null;
    const number = async (file: string) => {
      const text = await readFile(file, 'utf8').catch(() => null);
      return text === null || !/^\d+\s*$/.test(text) ? null : Number(text.trim());
    };
    let memoryBytes = await number(path.join(this.cgroupRoot, 'memory', cid, 'memory.usage_in_bytes'));
    if (memoryBytes === null) {
      const status = await readFile(`/proc/${instance.pid}/status`, 'utf8').catch(() => '');
      const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
      memoryBytes = rss ? Number(rss[1]) * 1024 : null;
    }
    return { memoryBytes, pids: await number(path.join(this.cgroupRoot, 'pids', cid, 'pids.current')) };
  }

  /** A previous process's leftovers go; spare namespaces are made for the first instances. */
  async recover(): Promise<void> {
    await this.cleanupOrphans();
    this.refillSpares();
  }

  /** Removes the spare namespaces (instances are stopped by their owners). */
  async close(): Promise<void> {
    this.closed = true;
    await this.netnsQueue;
    while (this.refilling > 0) await sleep(10);
    for (const net of this.spares.splice(0)) await this.netns.delete(net.name, net.hostVeth);
  }

  /** Ids of running instances known to this driver. */
  running(): string[] {
    return [...this.instances.values()].filter((i) => !i.done).map((i) => i.id);
  }

  /** SIGTERM → (graceMs) SIGKILL → runc delete → netns delete → cgroup folders → bundle. */
  async stop(id: string, options: { graceMs?: number } = {}): Promise<void> {
    const cid = this.containerId(id);
    const instance = this.instances.get(cid);
    if (!instance) {
      await this.removeLeftovers(cid);
      return;
    }
    const grace = options.graceMs ?? 5000;
    if (!instance.done) {
      await this.runc(['kill', cid, 'TERM']);
      const timedOut = await Promise.race([instance.exited.then(() => false), sleep(grace).then(() => true)]);
      if (timedOut) {
        await this.runc(['kill', '--all', cid, 'KILL']);
        const stuck = await Promise.race([instance.exited.then(() => false), sleep(5000).then(() => true)]);
        if (stuck) killGroup(instance.child, 'SIGKILL');
      }
    }
    await this.teardown(instance);
  }

  private async teardown(instance: Instance): Promise<void> {
    if (!instance.done) {
      killGroup(instance.child, 'SIGKILL');
      await Promise.race([instance.exited, sleep(2000)]);
    }
    await this.removeLeftovers(instance.id, instance.net);
    this.instances.delete(instance.id);
  }

  /** Idempotent removal of the container, namespace, cgroup folders and bundle of one id. */
  private async removeLeftovers(id: string, net?: InstanceNetwork): Promise<void> {
    const state = await this.runc(['state', id]);
    if (state.code === 0) {
      const del = await this.runc(['delete', id]);
      if (del.code !== 0) await this.runc(['delete', '--force', id]);
    }
    await this.netns.delete(net?.name ?? id, net?.hostVeth);
    await this.removeCgroups(id);
    await rm(path.join(path.resolve(this.options.stateDir), id), { recursive: true, force: true });
  }

  private async removeCgroups(id: string): Promise<void> {
    const controllers = await readdir(this.cgroupRoot).catch(() => [] as string[]);
    for (const ctl of controllers) {
      const dir = path.join(this.cgroupRoot, ctl, id);
      if (existsSync(dir)) await rmdir(dir).catch(() => undefined);
    }
  }

  /** runc containers with the `slw-` prefix: id, status, pid. */
  async list(): Promise<Array<{ id: string; status: string; pid: number }>> {
    const result = await this.runc(['list', '--format', 'json']);
    if (result.code !== 0) throw new Error(`runc list failed: ${result.stderrTail.join('\n')}`);
    const parsed = JSON.parse(result.stdout.trim() || 'null') as Array<{ id: string; status: string; pid: number }> | null;
    return (parsed ?? []).filter((c) => c.id.startsWith(this.prefix)).map((c) => ({ id: c.id, status: c.status, pid: c.pid }));
  }

  /** Removes every container, namespace, cgroup folder and bundle (a previous process's leftovers). */
  async cleanupOrphans(): Promise<{ containers: string[]; namespaces: string[]; bundles: string[] }> {
    const containers = (await this.list()).map((c) => c.id);
    for (const id of containers) {
      await this.runc(['kill', '--all', id, 'KILL']);
      const del = await this.runc(['delete', '--force', id]);
      if (del.code !== 0) await this.runc(['delete', '--force', id]);
      const known = this.instances.get(id);
      if (known) await Promise.race([known.exited, sleep(2000)]);
    }
    this.spares.splice(0);
    const namespaces = await this.netns.cleanup(this.prefix);
    const bundles = (await readdir(path.resolve(this.options.stateDir)).catch(() => [] as string[])).filter((n) => n.startsWith(this.prefix));
    for (const name of bundles) await rm(path.join(path.resolve(this.options.stateDir), name), { recursive: true, force: true });
    for (const ctl of await readdir(this.cgroupRoot).catch(() => [] as string[])) {
      for (const name of await readdir(path.join(this.cgroupRoot, ctl)).catch(() => [] as string[])) {
        if (name.startsWith(this.prefix)) await rmdir(path.join(this.cgroupRoot, ctl, name)).catch(() => undefined);
      }
    }
    for (const id of [...this.instances.keys()]) if (this.instances.get(id)!.done) this.instances.delete(id);
    return { containers, namespaces, bundles };
  }
}

