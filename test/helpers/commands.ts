/**
 * Test helpers to run real programs (registry clients, the `slipway` command) as child
 * processes: every child has a hard time limit, runs in its own process group so that its own
 * children die with it, and is tracked so an `after` hook can kill whatever is still running.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is compiled to dist/test/helpers/). */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

/** `bin/slipway.js`, the command as a user runs it. */
export const slipwayBin = path.join(repoRoot, 'bin', 'slipway.js');

const live = new Set<ChildProcess>();
// Last resort: never leave a child behind when the test process itself goes away.
process.on('exit', () => killAllChildren());

/** Kills a child and its process group (it was spawned detached, so it leads its own group). */
export function killTree(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Kills every child these helpers started that is still running; for `after` hooks. */
export function killAllChildren(): void {
  for (const child of live) killTree(child);
  live.clear();
}

/** Spawns a tracked child in its own process group; it is untracked once it has exited. */
export function spawnTracked(command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(command, args, { ...options, detached: true });
  live.add(child);
  child.on('exit', () => live.delete(child));
  child.on('error', () => live.delete(child));
  return child;
}

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Hard limit; the child's whole process group is killed when it runs out. Default 60 s. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string | Buffer;
  /** Resolve with a non-zero exit instead of rejecting. */
  allowFailure?: boolean;
}

/** Runs a program to completion; rejects on timeout and (unless allowed) on a non-zero exit. */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const line = [command, ...args].map((a) => (/[\s"'{}]/.test(a) ? JSON.stringify(a) : a)).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawnTracked(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killTree(child);
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${line}: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code, signal, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') };
      if (timedOut) reject(new Error(`${line} did not finish within ${timeoutMs} ms\nstdout: ${result.stdout}\nstderr: ${result.stderr}`));
      else if (code !== 0 && !options.allowFailure) reject(new Error(`${line} exited with ${code ?? signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`));
      else resolve(result);
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(options.input);
  });
}

/**
 * Fails (never skips) when a program a test needs is not on PATH, naming the Debian package
 * that provides it; `scripts/setup.sh` installs all of them.
 */
export async function requireCommands(commands: Record<string, string>): Promise<void> {
  const missing: string[] = [];
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  for (const [command, debianPackage] of Object.entries(commands)) {
    let found = false;
    for (const candidate of command.includes('/') ? [command] : dirs.map((dir) => path.join(dir, command))) {
      try {
        await access(candidate, constants.X_OK);
        found = true;
        break;
      } catch {
        // try the next folder
      }
    }
    if (!found) missing.push(`${command} (Debian package ${debianPackage})`);
  }
  if (missing.length > 0) {
    throw new Error(`required programs are not installed: ${missing.join(', ')}; run \`bash scripts/setup.sh\` (CI does) or apt-get install them`);
  }
}

/** The environment of this process without any SLIPWAY_* variable, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('SLIPWAY_')) env[key] = value;
  // Protocol-level tests run the registry without access control unless they ask for it.
  // Nor functions (runc instances): the tests of functions turn them on.
  return { ...env, SLIPWAY_AUTH_ENABLED: 'false', SLIPWAY_FUNCTIONS_ENABLED: 'false', ...extra };
}
