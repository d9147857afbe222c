/**
 * @module builds/build-driver
 * The contract every build driver fulfils (DESIGN.md, "Interfaces that make scale-out a swap"):
 * `buildah` on the host by default, a Kubernetes Job at scale. A build turns a context folder
 * and a Dockerfile into an image pushed to a registry; `runSteps` runs shell steps in a
 * container made from a base image and copies files out (component builds, tests).
 *
 * Secrets (build secrets, registry passwords) never go on a command line, never into an image
 * layer and never into the log: drivers hand them to the build tool through private temp files
 * and pass every log line through `createMasker` as a second defence.
 */

/** One build log line (no line break). */
export type LogSink = (line: string) => void;

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

export interface BuildDriver {
  build(request: BuildRequest, log: LogSink): Promise<BuildResult>;
  runSteps(request: StepsRequest, log: LogSink): Promise<StepsResult>;
}

/** Why a build did not produce a result. */
export type BuildErrorReason = 'invalid' | 'failed' | 'timeout' | 'aborted' | 'push' | 'internal';

/** A build or step that failed; the tool's own output is in the build log, not in this message. */
export class BuildError extends Error {
  override name = 'BuildError';
  readonly reason: BuildErrorReason;
  /** The Dockerfile instruction or step name that failed, when known. */
  readonly step?: string;
  /** Exit code of the failed step, when known. */
  readonly exitCode?: number;

  constructor(reason: BuildErrorReason, message: string, details: { step?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.reason = reason;
    if (details.step !== undefined) this.step = details.step;
    if (details.exitCode !== undefined) this.exitCode = details.exitCode;
  }
}

export const maskedValue = '****';

/**
 * Returns a function that replaces every occurrence of any of `values` in a line with `****`
 * (longest first, so a secret containing another is masked whole). Empty values are ignored;
 * each line (6+ characters) of a multi-line value is masked on its own too.
 */
export function createMasker(values: Iterable<string>): (line: string) => string {
  const candidates: string[] = [];
  for (const value of values) {
    candidates.push(value);
    // Logs arrive line by line: a multi-line secret is also masked one line at a time.
    if (/[\r\n]/.test(value)) for (const part of value.split(/\r\n|\r|\n/)) if (part.trim().length >= 6) candidates.push(part);
  }
  const secrets = [...new Set(candidates.filter((value) => value.length > 0))].sort((a, b) => b.length - a.length);
  if (secrets.length === 0) return (line) => line;
  return (line) => {
    let masked = line;
    for (const secret of secrets) if (masked.includes(secret)) masked = masked.split(secret).join(maskedValue);
    return masked;
  };
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
