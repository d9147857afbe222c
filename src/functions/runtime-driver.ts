/**
 * @module functions/runtime-driver
 * The contract every runtime driver fulfils (DESIGN.md, "Interfaces that make scale-out a
 * swap"): `runc` on this host by default, Kubernetes at scale. A driver is handed an image
 * reference and gives back an endpoint that serves HTTP on port 8000: fetching, verifying and
 * unpacking the image are the driver's business (the runc driver keeps an ImageStore on the
 * host; a Kubernetes driver lets the kubelet pull), so the function service never touches a
 * root file system.
 *
 * The instance's process is the image's, with the function's overrides applied the way OCI
 * runtimes and Kubernetes do it: `command` replaces the entrypoint (and drops the image's Cmd
 * unless `args` is given), `args` replaces the Cmd, `env` is laid over the image's environment.
 * `instanceProcess()` does that merge for drivers that run the process themselves.
 *
 * Test suite: test/suites/runtime-driver.ts (every driver runs it).
 */
import { SlipwayError } from '../http/error-catalog.js';
import type { ImageConfig, ImageSource } from './image-store.js';

export interface RegistryLogin {
  username: string;
  password: string;
}

/** An image to run and how to reach it. */
export interface ImageRequest {
  /** `host[:port]/repository:tag` or `host[:port]/repository@sha256:…`. */
  reference: string;
  /** When set, the image must have this manifest digest (a revision pinned to it). */
  digest?: string;
  /**
   * Login for the image's registry, asked for only when the driver must reach it (an image
   * already pulled by its digest needs none, and a token exchange may be slow or offline).
   */
  login?: () => Promise<RegistryLogin | undefined>;
  /** The registry is spoken to over plain HTTP. */
  insecure?: boolean;
  /**
   * Reads Slipway's own registry in process (no HTTP, no token). A driver on the server's host
   * may use it; a remote one pulls `reference` (with `login`) instead.
   */
  source?: ImageSource;
}

export interface PulledImage {
  /** Digest of the image manifest that was fetched (for a multi-platform index: the platform's). */
  digest: string;
  config: ImageConfig;
}

export interface InstanceSpec {
  /** Unique among this driver's running instances (letters, digits, `_.-`). */
  id: string;
  /** Usually pinned to the digest `pull` resolved, so every instance of a revision runs the same image. */
  image: ImageRequest;
  /** Replaces the image's entrypoint (and its Cmd, unless `args` is given). */
  command?: string[];
  /** Replaces the image's Cmd. */
  args?: string[];
  /** `KEY=value` entries laid over the image's own environment. */
  env: string[];
  /** Default: the image's working directory, else `/`. */
  workingDir?: string;
  /** Default 1003:1003 (never the image's user: instances do not run as root). */
  uid?: number;
  gid?: number;
  memoryMB?: number;
  pids?: number;
  /** Called once when the instance's process exits (its code, or the signal that killed it). */
  onExit?: (info: { code: number | null; signal: NodeJS.Signals | null }) => void;
}

export interface InstanceEndpoint {
  id: string;
  /** Where the gateway reaches the instance (an address this host can route to). */
  address: string;
  port: 8000;
  /** The instance's process id on this host, where there is one. */
  pid?: number;
}

/** Resource use of a running instance; null where the driver cannot tell. */
export interface InstanceStats {
  memoryBytes: number | null;
  pids: number | null;
}

/** A line of an instance's output (no line break). */
export type LogFn = (stream: 'stdout' | 'stderr', line: string) => void;

export interface RuntimeDriver {
  /**
   * Fetches the image (once per digest: later calls are cheap) and returns its digest and
   * config. Rejects when the image does not exist, cannot be fetched or has another digest
   * than `image.digest`.
   */
  pull(image: ImageRequest): Promise<PulledImage>;
  /**
   * Starts an instance (pulling its image when needed) and resolves once its process runs, with
   * its endpoint; it may not listen yet (see `waitForPort`). Every line the process writes goes
   * to `onLog` in order, before `onExit` is called. Rejects (leaving nothing behind) when the
   * image or the process cannot be started.
   */
  start(spec: InstanceSpec, onLog: LogFn): Promise<InstanceEndpoint>;
  /** Resolves once the instance at `address` listens on `port`; rejects after `timeoutMs` or early when it exits. */
  waitForPort(address: string, port: number, timeoutMs: number): Promise<void>;
  /**
   * Stops the instance (TERM, then KILL after `graceMs`) and removes what it used; resolves
   * after its `onExit`. Idempotent: an unknown or stopped id is fine.
   */
  stop(id: string, options?: { graceMs?: number }): Promise<void>;
  /** Resource use of a running instance, null when it is not running. */
  stats(id: string): Promise<InstanceStats | null>;
  /** Removes whatever an earlier process of this server left (instances, networks, files) and gets ready to start. */
  recover(): Promise<void>;
  /** Releases what the driver holds itself (instances are stopped by their owners first). */
  close(): Promise<void>;
}

/** The driver cannot run on this host (a tool is missing): functions are turned off, with this reason. */
export class RuntimeUnavailableError extends SlipwayError {
  override name = 'RuntimeUnavailableError';
  constructor(message: string) {
    super('RUNTIME_UNAVAILABLE', message);
  }
}

/** The image cannot run as asked (no command at all). */
export class InstanceSpecError extends SlipwayError {
  override name = 'InstanceSpecError';
  constructor(message: string) {
    super('INSTANCE_SPEC_INVALID', message);
  }
}

/** The instance's process ended before it listened (thrown by `waitForPort`). */
export class InstanceExitedError extends SlipwayError {
  override name = 'InstanceExitedError';
  constructor(message: string) {
    super('INSTANCE_EXITED', message);
  }
}

/** Command, environment and working directory of an instance: the spec's overrides over the image's. */
export function instanceProcess(image: ImageConfig, spec: Pick<InstanceSpec, 'command' | 'args' | 'env' | 'workingDir'>): { args: string[]; env: string[]; cwd: string } {
  const entrypoint = spec.command ?? image.Entrypoint ?? [];
  const cmd = spec.args ?? (spec.command ? [] : image.Cmd ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new InstanceSpecError('the image has no entrypoint or command: set "command"');
  const env = new Map<string, string>();
  for (const entry of [...(image.Env ?? []), ...spec.env]) {
    const at = entry.indexOf('=');
    if (at > 0) env.set(entry.slice(0, at), entry.slice(at + 1));
  }
  return { args, env: [...env].map(([k, v]) => `${k}=${v}`), cwd: spec.workingDir ?? (image.WorkingDir || '/') };
}

/** `reference` pinned to `digest`: its tag or digest replaced by `@digest`. */
export function pinnedReference(reference: string, digest: string): string {
  const slash = reference.indexOf('/');
  const at = reference.indexOf('@');
  let base = at >= 0 ? reference.slice(0, at) : reference;
  const colon = base.lastIndexOf(':');
  if (colon > slash) base = base.slice(0, colon);
  return `${base}@${digest}`;
}
