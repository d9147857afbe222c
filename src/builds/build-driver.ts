/**
 * @module builds/build-driver
 * The contract every build driver fulfils (DESIGN.md, "Interfaces that make scale-out a swap"):
 * `buildah` on the host by default, a Kubernetes Job at scale. A build turns a context folder
 * and a Dockerfile into an image pushed to a registry; `runSteps` runs shell steps in a
 * container made from a base image and copies files out (component builds, tests).
 *
 * Secrets (build secrets, registry passwords) never go on a command line, never into an image
 * layer and never into the log: drivers hand them to the build tool through private temp files
 * and pass every log line through a masker (logs/mask) as a second defence.
 */
import { SlipwayError } from '../http/error-catalog.js';

/** One build log line (no line break). */
export type LogSink = (line: string) => void;

/** One line of a tool's output (no line break) and the stream it came on, for callers that keep them apart. */
export type OutputSink = (line: string, stream: 'stdout' | 'stderr') => void;

export interface RegistryAuth {
  username: string;
  password: string;
}

export interface BuildSecret {
  /** The id a Dockerfile mounts: `RUN --mount=type=secret,id=<id>` (shows up at /run/secrets/<id>). */
  id: string;
  value: string;
}

export interface BuildRequest {
  /** Folder with the build context; its `.dockerignore` is honoured. */
  contextDir: string;
  /** Path of the Dockerfile relative to the context. Default 'Dockerfile'. */
  dockerfile?: string;
  buildArgs?: Record<string, string>;
  /** The stage to build (`FROM … AS <target>`); default the last stage. */
  target?: string;
  /** e.g. 'linux/amd64'; default the host's. */
  platform?: string;
  /** For `RUN --mount=type=secret,id=…`; written to a 0600 temp file outside the context, deleted after. */
  secrets?: BuildSecret[];
  /** Full image reference to push, e.g. '127.0.0.1:5000/team/app-main-image:1' (no transport prefix). */
  destination: string;
  /** Credentials for the destination registry: used for the push and for pulling FROM images from it. */
  registryAuth?: RegistryAuth;
  /** Logins for other registries (`host[:port]` → login), e.g. where FROM images come from. */
  extraAuths?: Record<string, RegistryAuth>;
  /** Registry hosts (`host[:port]`) spoken to over plain HTTP / without TLS verification. */
  insecureRegistries?: string[];
  /** A repository (`host/name`) to share the layer cache through (`--cache-from/--cache-to`). */
  cacheRepository?: string;
  signal?: AbortSignal;
  /** Limit for the whole build including the push. */
  timeoutMs?: number;
}

export interface BuildResult {
  /** Digest of the pushed manifest (`sha256:…`). */
  digest: string;
  /** The pushed image pinned by digest: `<destination repository>@<digest>`. */
  imageRef: string;
  /** Milliseconds per phase: `build`, `push`. */
  phases: Record<string, number>;
}

export interface Step {
  name: string;
  /** A shell command (run with `/bin/sh -c` in /workspace). */
  command: string;
  timeoutMs?: number;
}

export interface StepsRequest {
  /** Image the working container is made from (pulled when not present). */
  baseImage: string;
  /** Copied to /workspace in the container. */
  contextDir: string;
  steps: Step[];
  env?: Record<string, string>;
  /** Files to copy out after the steps: `path` is relative to /workspace (or absolute inside the container). */
  outputs: Array<{ name: string; path: string }>;
  /** Host folder the outputs are written to (as `<name>`). */
  outputDir: string;
  registryAuth?: RegistryAuth;
  extraAuths?: Record<string, RegistryAuth>;
  insecureRegistries?: string[];
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface StepsResult {
  outputs: Array<{ name: string; file: string; size: number }>;
  /** Milliseconds per phase: `prepare` (pull + copy), `step:<name>` for each step, `outputs`. */
  phases: Record<string, number>;
}

export interface LocalBuildRequest {
  /** Folder with the build context; its `.dockerignore` is honoured. */
  contextDir: string;
  /** Absolute path of the Dockerfile; it may be outside the context (then `<Dockerfile>.dockerignore` is read too). */
  dockerfile: string;
  /** Names in the local store, e.g. `localhost/slipway-run-r1/app:1`; at least one. */
  tags: string[];
  buildArgs?: Record<string, string>;
  target?: string;
  platform?: string;
  /** `key=value` (or `key`) labels for the image. */
  labels?: string[];
  noCache?: boolean;
  /** Less output from the build tool (`docker build -q`). */
  quiet?: boolean;
  /** Logins by registry host (`host[:port]`), for FROM images. */
  auths?: Record<string, RegistryAuth>;
  /** Registry hosts (`host[:port]`) spoken to over plain HTTP / without TLS verification. */
  insecureRegistries?: string[];
  signal?: AbortSignal;
}

/** An image in the driver's local store. */
export interface LocalImage {
  /** Full hex ID (no `sha256:`). */
  id: string;
  names: string[];
  /** As the tool prints it (`106 MB`). */
  size?: string;
  created?: string;
}

/** What `inspectImage` tells about a local image (its OCI configuration). */
export interface ImageDetails {
  created?: string;
  architecture?: string;
  os?: string;
  /** The OCI image config (`User`, `Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `Labels`, `ExposedPorts`, …). */
  config: Record<string, unknown>;
}

export interface PushRequest {
  /** A local image: a name in the store or an ID. */
  image: string;
  /** Full image reference to push to (no transport prefix). */
  destination: string;
  auth?: RegistryAuth;
  /** Plain HTTP / no TLS verification for the destination registry. */
  insecure?: boolean;
  /** Manifest format; default the tool's (OCI). */
  format?: 'oci' | 'v2s2';
  signal?: AbortSignal;
}

export interface ImageRootRequest {
  /** Name of the working container (unique; `slipway-…`), so that leftovers are recognised as ours. */
  name: string;
  /** Pulled when not present (and always checked for a newer version). */
  image: string;
  auth?: RegistryAuth;
  insecure?: boolean;
  signal?: AbortSignal;
}

/** A writable root file system made from an image, mounted on the host until `release`. */
export interface ImageRoot {
  /** Host path of the mounted root (symbolic links resolved). */
  rootfs: string;
  /** The image's configured environment (`ENV`). */
  env: Record<string, string>;
  /** Unmounts and removes it; problems go to the log given to `mountImage`. Safe to call twice. */
  release(): Promise<void>;
}

export interface BuildDriver {
  build(request: BuildRequest, log: LogSink): Promise<BuildResult>;
  runSteps(request: StepsRequest, log: LogSink): Promise<StepsResult>;
  /** Builds into the local store (no push); the build tool's output goes to `output` as it comes. `imageId`: full hex, no `sha256:`. */
  buildLocal(request: LocalBuildRequest, output: OutputSink): Promise<{ imageId: string }>;
  listImages(): Promise<LocalImage[]>;
  /** Adds the name `name` to the local image `image` (name or ID). */
  tagImage(image: string, name: string, signal?: AbortSignal): Promise<void>;
  /** null when there is no such image. */
  inspectImage(image: string, signal?: AbortSignal): Promise<ImageDetails | null>;
  /** Removes one name; the image goes with its last name. A BuildError `not-found` when there is no such name. */
  removeImage(name: string, signal?: AbortSignal): Promise<void>;
  pushImage(request: PushRequest, log: LogSink): Promise<{ digest: string }>;
  mountImage(request: ImageRootRequest, log: LogSink): Promise<ImageRoot>;
}

/** Why a build (or an image operation) did not produce a result. */
export type BuildErrorReason = 'invalid' | 'failed' | 'timeout' | 'aborted' | 'push' | 'not-found' | 'internal';

/** A build or step that failed; the tool's own output is in the build log, not in this message. */
export class BuildError extends SlipwayError {
  override name = 'BuildError';
  readonly reason: BuildErrorReason;
  /** The Dockerfile instruction or step name that failed, when known. */
  readonly step?: string;
  /** Exit code of the failed step, when known. */
  readonly exitCode?: number;
  /** The tool's own last words (its last line of stderr), when there were any. */
  declare readonly detail?: string;

  constructor(reason: BuildErrorReason, message: string, details: { step?: string; exitCode?: number; detail?: string; cause?: unknown } = {}) {
    super('BUILD_FAILED', message, details.detail);
    if (details.cause !== undefined) this.cause = details.cause;
    this.reason = reason;
    if (details.step !== undefined) this.step = details.step;
    if (details.exitCode !== undefined) this.exitCode = details.exitCode;
  }
}

/** The registry host of an image reference (`docker.io` when it has none), like the containers tools read it. */
export function registryHostOf(reference: string): string {
  const slash = reference.indexOf('/');
  if (slash < 0) return 'docker.io';
  const first = reference.slice(0, slash);
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first : 'docker.io';
}

/** The repository part of an image reference: without `:tag` and `@digest`. */
export function repositoryOf(reference: string): string {
  const at = reference.indexOf('@');
  const withoutDigest = at >= 0 ? reference.slice(0, at) : reference;
  const lastSlash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.lastIndexOf(':');
  return colon > lastSlash ? withoutDigest.slice(0, colon) : withoutDigest;
}
