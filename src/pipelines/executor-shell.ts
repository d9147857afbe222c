/**
 * @module pipelines/executor-shell
 * The shell executor's sandbox: steps run on the host as an unprivileged uid/gid (no passwd entry
 * needed), started through `setpriv` (clear supplementary groups, no new privileges) so that the
 * process-group handling of `runProcess` applies. The workspace is chowned to that user; paths
 * are host paths.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { runProcess, type ProcessResult } from '../exec/process.js';
import { isInside, realInside, runStepProcess, type SandboxRunOptions, type StepSandbox } from './executor-sandbox.js';

const standardPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** The standard folders, plus the one of the Node.js running Slipway when it is elsewhere (steps expect `node`). */
export const defaultPath = standardPath.split(':').includes(path.dirname(process.execPath)) ? standardPath : `${standardPath}:${path.dirname(process.execPath)}`;

export interface ShellSandboxOptions {
  uid: number;
  gid: number;
  workspaceDir: string;
  primarySourceName: string;
  /** Host folders of the stage (see StageExecutor). */
  binDir: string;
  scriptDir: string;
  stateDir: string;
  homeDir: string;
  socketPath: string;
  graceMs: number;
  /** `NAME=value` in every step's environment: processes that left a step's group are found by it. */
  marker: string;
}

export class ShellSandbox implements StepSandbox {
  readonly kind = 'shell' as const;
  readonly workspace: string;
  readonly primarySource: string;
  readonly binDir: string;
  readonly scriptDir: { step: string; host: string };
  readonly stateDir: { step: string; host: string };
  readonly socketPath: string;

  constructor(private readonly options: ShellSandboxOptions) {
    this.workspace = options.workspaceDir;
    this.primarySource = path.join(options.workspaceDir, options.primarySourceName);
    this.binDir = options.binDir;
    this.scriptDir = { step: options.scriptDir, host: options.scriptDir };
    this.stateDir = { step: options.stateDir, host: options.stateDir };
    this.socketPath = options.socketPath;
  }

  baseEnv(): Record<string, string> {
    return { HOME: this.options.homeDir, PATH: defaultPath };
  }

  async shellPath(shell: 'bash' | 'sh'): Promise<string> {
    return shell === 'bash' ? '/bin/bash' : '/bin/sh';
  }

  workspaceHostPath(stepPath: string): string | null {
    const resolved = path.resolve(stepPath);
    return isInside(this.workspace, resolved) ? resolved : null;
  }

  async resolveFile(stepPath: string): Promise<string | null> {
    const host = this.workspaceHostPath(path.resolve(this.primarySource, stepPath));
    return host === null ? null : realInside(this.workspace, host);
  }

  /** Checks that the step user can reach the workspace and the stage's folders (every parent folder traversable). */
  async preflight(): Promise<string | null> {
    const script = 'for d in "$@"; do case $d in r:*) d=${d#r:}; cd "$d" 2>/dev/null && test -r . ;; *) cd "$d" 2>/dev/null && test -w . ;; esac || { echo "$d"; exit 1; }; done';
    const result = await runProcess('/usr/bin/setpriv', [...this.privArgs(), '/bin/sh', '-c', script, 'check', this.primarySource, this.options.stateDir, this.options.homeDir, path.dirname(this.socketPath), `r:${this.options.scriptDir}`, `r:${this.options.binDir}`], {
      env: { PATH: defaultPath },
      captureStdout: true,
      timeoutMs: 30_000,
    });
    if (result.code === 0) return null;
    const where = result.stdout.trim() || this.primarySource;
    return `the shell executor's user (uid ${this.options.uid}) cannot use ${where}: the workspace and the executor's work folder must be in folders others may traverse (o+x)`;
  }

  private privArgs(): string[] {
    return ['--reuid', String(this.options.uid), '--regid', String(this.options.gid), '--clear-groups', '--no-new-privs', '--'];
  }

  run(options: SandboxRunOptions): Promise<ProcessResult> {
    return runStepProcess('/usr/bin/setpriv', [...this.privArgs(), options.shell, options.script], {
      env: options.env,
      cwd: options.cwd,
      signal: options.signal,
      timeoutMs: options.timeoutMs,
      graceMs: this.options.graceMs,
      onLine: options.onLine,
      // A step's processes end with it, also those that left its process group.
      afterExit: async () => {
        await killProcessesOf(this.options.uid, this.options.marker);
      },
    });
  }

  async close(): Promise<void> {
    // Nothing of its own: the executor kills the user's processes and removes the folders.
  }
}

/** Pids of processes owned by `uid` (optionally only those whose environment holds `marker`). */
export async function processesOf(uid: number, marker?: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      if ((await stat(`/proc/${entry}`)).uid !== uid) continue;
      // Zombies are dead already (waiting for their parent to reap them).
      const status = await readFile(`/proc/${entry}/stat`, 'utf8');
      if (/^\d+ \(.*\) [ZX] /s.test(status)) continue;
      if (marker !== undefined) {
        const environ = await readFile(`/proc/${entry}/environ`);
        if (!environ.includes(Buffer.from(`\0${marker}\0`)) && !environ.subarray(0, marker.length + 1).equals(Buffer.from(`${marker}\0`))) continue;
      }
      pids.push(pid);
    } catch {
      // gone
    }
  }
  return pids;
}

/** Kills (SIGKILL) processes of `uid` (those carrying `marker` in their environment, when given) until none are left. */
export async function killProcessesOf(uid: number, marker?: string): Promise<number> {
  let killed = 0;
  for (let round = 0; round < 20; round++) {
    const pids = await processesOf(uid, marker);
    if (pids.length === 0) return killed;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // gone
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return killed;
}
