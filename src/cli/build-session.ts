/**
 * @module cli/build-session
 * What the build commands share: the build API for a session (API errors explained), Ctrl-C
 * handling, and following a build to its end and reporting it.
 */
import { stat } from 'node:fs/promises';
import { BuildApi, type BuildView } from './build-client.js';
import type { Progress } from './build-progress.js';
import { CommandError } from './errors.js';
import { explain, resolveSession, type Session } from './session-commands.js';

export type Env = Record<string, string | undefined>;

export interface ServerFlags {
  server?: string;
  namespace: string;
}

export async function withApi<T>(flags: { server?: string }, env: Env, fn: (api: BuildApi, session: Session) => Promise<T>): Promise<T> {
  const session = await resolveSession(flags.server, env);
  try {
    return await fn(await BuildApi.forSession(session, env), session);
  } catch (error) {
    throw explain(error, session);
  }
}

/**
 * Ctrl-C while a command runs: the first one aborts `signal` (the command then cancels what it
 * started and exits 130), a second one exits at once.
 */
export function interruptible(): { signal: AbortSignal; interrupted(): boolean; dispose(): void } {
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  return {
    signal: controller.signal,
    interrupted: () => controller.signal.aborted,
    dispose: () => process.off('SIGINT', onSignal),
  };
}

/**
 * Runs `work` with Ctrl-C wired to its signal. Interrupted: stops `progress` with a note, runs
 * `cleanup` and exits 130; any other failure stops `progress` and is rethrown; `cleanup` runs
 * in every case.
 */
export async function runInterruptible(
  progress: Progress,
  work: (interrupt: { signal: AbortSignal; interrupted(): boolean }) => Promise<void>,
  cleanup: () => Promise<void> = async () => undefined,
): Promise<void> {
  const interrupt = interruptible();
  try {
    await work(interrupt);
  } catch (error) {
    if (interrupt.interrupted()) {
      progress.stop('slipway: interrupted');
      await cleanup();
      process.exit(130);
    }
    progress.stop();
    throw error;
  } finally {
    interrupt.dispose();
    await cleanup();
  }
}

function stateText(status: string, id: string): string {
  switch (status) {
    case 'queued': return `build ${id} queued, waiting for a worker`;
    case 'running': return `build ${id} running`;
    case 'reconnecting': return `build ${id}: the log stream broke off, reconnecting`;
    default: return `build ${id} ${status}`;
  }
}

/** Follows a build to its end on `progress`; Ctrl-C (through `signal`) cancels it and exits 130. */
export async function followBuild(api: BuildApi, namespace: string, build: BuildView, progress: Progress, signal: AbortSignal): Promise<BuildView> {
  progress.setPhase(stateText(build.status, build.id));
  try {
    return await api.followLog(namespace, build.id, { line: (text) => progress.line(text), state: (status) => progress.setPhase(stateText(status, build.id)) }, signal);
  } catch (error) {
    if (signal.aborted) await cancelOnInterrupt(api, namespace, build.id, progress);
    throw error;
  }
}

async function cancelOnInterrupt(api: BuildApi, namespace: string, id: string, progress: Progress): Promise<never> {
  progress.stop(`slipway: interrupted: cancelling build ${id}`);
  try {
    const view = await api.cancelBuild(namespace, id, 10_000);
    process.stderr.write(`slipway: build ${id} ${view.status === 'cancelled' ? 'cancelled' : view.status === 'running' ? 'is being cancelled' : `already ${view.status}`}\n`);
  } catch (error) {
    process.stderr.write(`slipway: could not cancel build ${id}: ${(error as Error).message}\n`);
  }
  process.exit(130);
}

/** `build X failed: why` / `build X was cancelled (cancelled by admin)`. */
export function outcome(build: BuildView): string {
  const message = build.errorMessage ?? '';
  if (build.status === 'cancelled') return `build ${build.id} was cancelled${message && message !== 'cancelled' ? ` (${message})` : ''}`;
  return `build ${build.id} ${build.status}${message ? `: ${message}` : ''}`;
}

/** The end of a followed build: the reference (or JSON) on stdout; a failure is a CommandError (exit 1). */
/** After a submit: print the queued build (no --follow), or follow it to its end and report. */
export async function settleSubmitted(api: BuildApi, flags: { namespace: string; follow?: boolean; json?: boolean }, build: BuildView, progress: Progress, signal: AbortSignal): Promise<void> {
  if (!flags.follow) {
    progress.stop(`slipway: build ${build.id} ${build.status}: ${build.imageName ?? ''}`);
    process.stdout.write(flags.json ? `${JSON.stringify(build)}\n` : `${build.id}\n`);
    return;
  }
  report(await followBuild(api, flags.namespace, build, progress, signal), progress, flags.json);
}

export function report(build: BuildView, progress: Progress, json: boolean | undefined): void {
  if (build.status === 'succeeded') {
    progress.stop(`slipway: build ${build.id} succeeded in ${progress.elapsed()}`);
    process.stdout.write(json ? `${JSON.stringify(build)}\n` : `${build.imageName}@${build.digest}\n`);
    return;
  }
  progress.stop();
  if (json) process.stdout.write(`${JSON.stringify(build)}\n`);
  throw new CommandError(outcome(build));
}

export async function isDirectory(dir: string): Promise<boolean> {
  return (await stat(dir).catch(() => undefined))?.isDirectory() === true;
}
