/**
 * @module pipelines/executor-sandbox
 * What the stage executor needs from the place steps run in (the host as an unprivileged user,
 * or a runc container), plus the small file helpers both share: opening files a step may have
 * replaced with symbolic links (reading its state, copying input artifacts in and outputs out),
 * and the step wrapper script.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { lstat, mkdir, open, readFile, realpath, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { runProcess, type ProcessResult } from '../exec/process.js';

/** Invalid requests (programming errors of the caller), thrown by runStage. */
export class StageRequestError extends SlipwayError {
  override name = 'StageRequestError';
  constructor(message: string) {
    super('STAGE_REQUEST_INVALID', message);
  }
}

/** Characters replaced by `_` where an artifact name becomes a file name. */
export const outputNamePattern = /[^A-Za-z0-9._-]+/g;

export interface SandboxRunOptions {
  /** The wrapper script as the step sees it. */
  script: string;
  shell: string;
  env: Record<string, string>;
  /** Working directory as the step sees it. */
  cwd: string;
  /** `runAs` of the step/spec (container only). */
  runAs?: string;
  timeoutMs?: number;
  signal: AbortSignal;
  onLine: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface StepSandbox {
  readonly kind: 'shell' | 'container';
  /** Paths as steps see them. */
  readonly workspace: string;
  readonly primarySource: string;
  /** Folder (step view) holding the `docker` shim; first on PATH. */
  readonly binDir: string;
  /** Folder (step view) for wrapper scripts, and its host path. */
  readonly scriptDir: { step: string; host: string };
  /** Folder (step view) where steps dump their environment, and its host path. */
  readonly stateDir: { step: string; host: string };
  /** The docker socket path as steps see it. */
  readonly socketPath: string;
  /** Base environment of the place (HOME, PATH without the shim folder, an image's ENV). */
  baseEnv(): Record<string, string>;
  /** The shell program (step view) for `bash`/`sh`; falls back to sh (with a note) when bash is missing. */
  shellPath(shell: 'bash' | 'sh', note: (line: string) => void): Promise<string>;
  /** The host path of a step path inside the workspace, or null when it is not in the workspace. */
  workspaceHostPath(stepPath: string): string | null;
  /** The host path of any file a step can see (symbolic links resolved inside the step's root), or null. */
  resolveFile(stepPath: string): Promise<string | null>;
  run(options: SandboxRunOptions): Promise<ProcessResult>;
  close(): Promise<void>;
}

/** `'…'` quoting for POSIX shells. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function isInside(root: string, candidate: string): boolean {
  return candidate === root || candidate.startsWith(root.endsWith('/') ? root : `${root}/`);
}

/** Host path of `hostPath` with symbolic links resolved, when it stays inside `root`; else null. */
export async function realInside(root: string, hostPath: string): Promise<string | null> {
  try {
    const real = await realpath(hostPath);
    return isInside(await realpath(root), real) ? real : null;
  } catch {
    return null;
  }
}

/**
 * Reads a small regular file a step wrote without following a symbolic link in its last
 * component; null when it is missing, not a regular file, too large or (with `uid`) not owned by
 * that user.
 */
export async function readStepFile(file: string, maxBytes: number, uid?: number): Promise<Buffer | null> {
  let handle;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile() || info.size > maxBytes || (uid !== undefined && info.uid !== uid) || info.nlink > 1) return null;
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * Copies the input artifacts into the workspace before the steps; a location outside the
 * workspace (also through a link in the checkout) is refused: the reason is returned.
 */
export async function copyInputs(inputs: Array<{ name: string; location: string; file: string }>, sandbox: StepSandbox, workspaceDir: string, log: (line: string) => void): Promise<string | null> {
  for (const input of inputs) {
    const outside = `input artifact ${input.name}: ${input.location} leads outside the workspace`;
    const host = sandbox.workspaceHostPath(path.posix.resolve(sandbox.primarySource, input.location));
    if (host === null) return outside;
    let target = host;
    if ((await stat(target).catch(() => undefined))?.isDirectory() || input.location.endsWith('/')) target = path.join(target, input.name.replace(outputNamePattern, '_') || 'input');
    const parent = path.dirname(target);
    // The deepest existing ancestor must be inside the workspace (a link in the checkout must not lead out).
    let existing = parent;
    while (!(await lstat(existing).catch(() => undefined))) existing = path.dirname(existing);
    if ((await realInside(workspaceDir, existing)) === null) return outside;
    await mkdir(parent, { recursive: true });
    const realParent = await realInside(workspaceDir, parent);
    if (realParent === null) return outside;
    const source = await readFile(input.file).catch((error: Error) => {
      throw new StageRequestError(`input artifact ${input.name}: cannot read ${input.file}: ${error.message}`);
    });
    let handle;
    try {
      handle = await open(path.join(realParent, path.basename(target)), constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
    } catch (error) {
      return `input artifact ${input.name}: cannot write ${input.location}: ${(error as Error).message}`;
    }
    try {
      await handle.writeFile(source);
    } finally {
      await handle.close();
    }
    log(`[slipway] input artifact ${input.name} -> ${input.location}`);
  }
  return null;
}

/** Copies a step-made file (no symbolic link followed in its last component) and hashes the copy. */
export async function copyOutput(source: string, destination: () => Promise<string>): Promise<{ file: string; size: number; digest: string } | null> {
  let handle;
  try {
    handle = await open(source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return null;
    const file = await destination();
    await rm(file, { force: true });
    await pipeline(handle.createReadStream({ autoClose: false }), (await open(file, 'wx', 0o600)).createWriteStream());
    const size = (await stat(file)).size;
    return { file, size, digest: await sha256File(file) };
  } finally {
    await handle.close();
  }
}

/** Parses a NUL-separated `NAME=value` list (`/proc/<pid>/environ`). */
export function parseEnviron(data: Buffer): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of data.toString('utf8').split('\0')) {
    const eq = entry.indexOf('=');
    if (eq <= 0) continue;
    const name = entry.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) continue;
    env[name] = entry.slice(eq + 1);
  }
  return env;
}

/** Variables a shell sets by itself; not carried from one step to the next. */
export const shellOwnVariables = new Set(['PWD', 'OLDPWD', 'SHLVL', '_']);

/**
 * The wrapper of one step: on exit (success, failure, `exit n`, `set -e`) it promotes the
 * variables to export to the environment and dumps the whole exported environment,
 * NUL-separated, into `stateFile` (read by the executor, which starts the next step with it).
 */
export function stepScript(options: { name: string; command: string; stateFile: string; failFast: boolean; exportNames: string[] }): string {
  const promote = options.exportNames
    .filter((name) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    .map((name) => `  if [ -n "\${${name}+x}" ]; then export ${name}; fi\n`)
    .join('');
  return [
    `# Slipway build step ${JSON.stringify(options.name.replace(/[\r\n]/g, ' '))}`,
    '__slipway_exit() {',
    '  __slipway_status=$?',
    promote.trimEnd(),
    `  cat /proc/self/environ > ${shellQuote(options.stateFile)} 2>/dev/null || :`,
    '  exit $__slipway_status',
    '}',
    'trap __slipway_exit EXIT',
    options.failFast ? 'set -e' : '',
    options.command,
    '',
  ].filter((line, index, all) => line !== '' || index === all.length - 1).join('\n');
}

export interface StepProcessOptions {
  env: Record<string, string>;
  cwd: string;
  /** Whole process group SIGTERM, then SIGKILL after `graceMs`. */
  signal: AbortSignal;
  timeoutMs?: number;
  graceMs: number;
  onLine: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Runs after the step's process exited (and its group was killed): kill whatever escaped the group. */
  afterExit?: () => Promise<void>;
}

/** After a step's process ended and its escapees were killed: the longest wait for its output pipes to end. */
const stepDrainMs = 2_000;

/**
 * Runs one step program in its own process group (SIGTERM and SIGKILL go to the whole group),
 * stdin /dev/null. The result comes once the step's output is fully read: its pipes reached
 * their end after the step's own process ended, its group was killed and `afterExit` killed what
 * left the group (`setsid`, a daemon). A holder that survived even that is cut off after
 * `stepDrainMs`, after one more read.
 */
export function runStepProcess(command: string, args: string[], options: StepProcessOptions): Promise<ProcessResult> {
  return runProcess(command, args, { ...options, stdin: 'ignore', terminate: 'group', drainTimeoutMs: stepDrainMs });
}
