/**
 * @module exec/process
 * The exec part (`src/exec`): running programs — build tools, pipeline steps, git, the function
 * runtime — and the limits around them. Every child runs in its own process group (so a build's
 * grandchildren — `buildah-chroot-runtime`, the user's `RUN` shell and whatever it started — die
 * with it), stdout/stderr are split into lines as they arrive, and a time limit or
 * an AbortSignal ends the child: SIGTERM to the child first (buildah turns that into a failed
 * step and cleans up after itself) or to its whole group (a step's shell), SIGKILL to the whole
 * group after a grace period. Whatever is left in the group when the child exits is killed too,
 * so a build cannot leave daemons behind.
 *
 * A result is only handed back once both output pipes reached their end: every line the child
 * (or anything it started) wrote has been passed to `onLine` by then — the exit of the child
 * alone says nothing about what is still in the pipes. Only a process that escaped every kill
 * can keep a pipe open; `drainTimeoutMs` bounds the wait for that case.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface RunProcessOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Ends the child when aborted (see the module comment); the result then has `aborted: true`. */
  signal?: AbortSignal;
  /** Ends the child when it runs longer; the result then has `timedOut: true`. */
  timeoutMs?: number;
  /** Time between SIGTERM and SIGKILL of the group. Default 10 s. */
  graceMs?: number;
  /** Receives every complete line (without its line break; `\r` also ends a line) of either stream. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Collect stdout (as text) into the result. Lines still go to `onLine` as well. */
  captureStdout?: boolean;
  /** Collect stdout as bytes instead of lines (no `onLine` for stdout then). */
  captureStdoutBytes?: boolean;
  /** Bytes for stdin; stdin is closed right away when absent. */
  input?: string | Buffer;
  /** `ignore`: stdin is /dev/null (steps) instead of a pipe. */
  stdin?: 'pipe' | 'ignore';
  /**
   * Where the SIGTERM of an abort or a time limit goes: the child (default; buildah turns it into
   * a failed step and cleans up) or its whole group (a step's shell and everything it started).
   */
  terminate?: 'child' | 'group';
  /** Runs once the child exited and its group was killed: ends what left the group (a `setsid` daemon, a runtime's container). */
  afterExit?: () => Promise<void>;
  /**
   * The longest wait, after the child exited and `afterExit` ran, for the output pipes to reach
   * their end; then they are closed (after one more read of what they hold). Only a process that
   * escaped every kill holds them that long. Default: no limit.
   */
  drainTimeoutMs?: number;
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Collected stdout when asked for (`captureStdout`), else ''. */
  stdout: string;
  /** Collected stdout bytes when asked for (`captureStdoutBytes`), else empty. */
  stdoutBytes: Buffer;
  /** The last lines of stderr (up to 50), for error messages. */
  stderrTail: string[];
  timedOut: boolean;
  aborted: boolean;
  durationMs: number;
}

const live = new Set<ChildProcess>();
// Last resort: a server that exits must not leave build processes running.
process.on('exit', () => {
  for (const child of live) killGroup(child, 'SIGKILL');
});

/** Sends a signal to a child's whole process group (it leads its own group). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // group already gone
  }
}

/** Splits a byte stream into lines; `\n`, `\r\n` and a lone `\r` (progress output) end a line. */
export function lineSplitter(emit: (line: string) => void): { push(chunk: Buffer): void; end(): void } {
  let pending = '';
  const decoder = new TextDecoder('utf-8');
  const flush = (text: string) => {
    pending += text;
    let index: number;
    while ((index = pending.search(/\r\n|\r|\n/)) >= 0) {
      const line = pending.slice(0, index);
      const breakLength = pending.startsWith('\r\n', index) ? 2 : 1;
      // A lone \r at the very end may be the first half of \r\n: wait for more.
      if (pending[index] === '\r' && breakLength === 1 && index === pending.length - 1) break;
      pending = pending.slice(index + breakLength);
      emit(line);
    }
  };
  return {
    push: (chunk) => flush(decoder.decode(chunk, { stream: true })),
    end: () => {
      flush(decoder.decode());
      if (pending.endsWith('\r')) pending = pending.slice(0, -1);
      if (pending !== '') emit(pending);
      pending = '';
    },
  };
}

/** Runs a program to completion; never rejects for a non-zero exit (look at `code`), only when it cannot start. */
export function runProcess(command: string, args: string[], options: RunProcessOptions = {}): Promise<ProcessResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      resolve({ code: null, signal: null, stdout: '', stdoutBytes: Buffer.alloc(0), stderrTail: [], timedOut: false, aborted: true, durationMs: 0 });
      return;
    }
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: [options.stdin === 'ignore' ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    live.add(child);
    const stdoutParts: string[] = [];
    const stdoutBytes: Buffer[] = [];
    const stderrTail: string[] = [];
    const stdoutLines = lineSplitter((line) => {
      if (options.captureStdout) stdoutParts.push(line);
      options.onLine?.(line, 'stdout');
    });
    const stderrLines = lineSplitter((line) => {
      stderrTail.push(line);
      if (stderrTail.length > 50) stderrTail.shift();
      options.onLine?.(line, 'stderr');
    });
    child.stdout!.on('data', (chunk: Buffer) => (options.captureStdoutBytes ? stdoutBytes.push(chunk) : stdoutLines.push(chunk)));
    child.stderr!.on('data', (chunk: Buffer) => stderrLines.push(chunk));
    // 'close' comes once every stdio stream has ended: nothing is left unread in the pipes.
    const closed = new Promise<void>((resolveClosed) => child.once('close', () => resolveClosed()));

    let timedOut = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    const stop = () => {
      if (child.exitCode !== null || child.signalCode !== null || killTimer) return;
      if (options.terminate === 'group') {
        killGroup(child, 'SIGTERM');
      } else {
        try {
          child.kill('SIGTERM');
        } catch {
          // already gone
        }
      }
      killTimer = setTimeout(() => killGroup(child, 'SIGKILL'), options.graceMs ?? 10_000);
    };
    const timeout = options.timeoutMs !== undefined && options.timeoutMs > 0
      ? setTimeout(() => {
          timedOut = true;
          stop();
        }, options.timeoutMs)
      : undefined;
    const onAbort = () => {
      aborted = true;
      stop();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });

    const finish = () => {
      if (timeout) clearTimeout(timeout);
      if (killTimer) clearTimeout(killTimer);
      options.signal?.removeEventListener('abort', onAbort);
      live.delete(child);
    };
    let failed = false;
    child.on('error', (error) => {
      failed = true;
      finish();
      reject(new Error(`cannot run ${command}: ${error.message}`));
    });
    child.once('exit', (code, signal) => {
      if (timeout) clearTimeout(timeout);
      void (async () => {
        // Whatever the child left in its group (a backgrounded RUN command, a stuck runtime) goes
        // too, once its output had a moment to drain: a relay process of the child may still be
        // writing the last lines into the pipes when the child itself exits.
        let groupTimer: NodeJS.Timeout | undefined;
        await Promise.race([closed, new Promise<void>((r) => { groupTimer = setTimeout(r, 250); })]);
        clearTimeout(groupTimer);
        killGroup(child, 'SIGKILL');
        await options.afterExit?.().catch(() => undefined);
        if (options.drainTimeoutMs !== undefined) {
          let drainTimer: NodeJS.Timeout | undefined;
          const late = await Promise.race([
            closed.then(() => false),
            // setImmediate: one more poll phase reads what the pipes hold before they are closed.
            new Promise<boolean>((r) => { drainTimer = setTimeout(() => setImmediate(() => r(true)), options.drainTimeoutMs); }),
          ]);
          clearTimeout(drainTimer);
          if (late) {
            child.stdout!.destroy();
            child.stderr!.destroy();
          }
        }
        await closed;
        if (failed) return;
        finish();
        stdoutLines.end();
        stderrLines.end();
        resolve({
          code,
          signal,
          stdout: stdoutParts.join('\n'),
          stdoutBytes: Buffer.concat(stdoutBytes),
          stderrTail,
          timedOut,
          aborted,
          durationMs: Date.now() - started,
        });
      })();
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
}
