/**
 * @module bench/bench-processes
 * The child processes and temp folders of a bench that starts its peers itself: all killed and
 * removed when the bench exits (also on Ctrl-C), readiness polling, and s3rver on a free port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './host.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const children: ChildProcess[] = [];
const tempDirs: string[] = [];

function cleanup(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.length = 0;
}
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { cleanup(); process.exit(130); });

/** A temp folder removed when the bench exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

const outputs = new WeakMap<ChildProcess, () => string>();

/**
 * A child killed when the bench exits; an unexpected exit prints the tail of its output
 * (stdout and stderr, e.g. a server's error log lines), which `outputTail` also gives.
 */
export function startChild(command: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  children.push(child);
  let output = '';
  const keep = (data: Buffer) => { output = (output + data.toString()).slice(-8000); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  outputs.set(child, () => output);
  child.on('exit', (code, signal) => {
    if (signal !== 'SIGKILL' && signal !== 'SIGTERM' && code !== 0) process.stderr.write(`bench: ${command} exited (${code ?? signal}): ${output}\n`);
  });
  return child;
}

/** The last output of a child started by `startChild` (to explain a failed request). */
export function outputTail(child: ChildProcess): string {
  return outputs.get(child)?.() ?? '';
}

/** SIGTERM (so a --cpu-prof profile is written), then wait for the exit (at most `graceMs`). */
export async function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, graceMs))]);
}

export async function waitFor(probe: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  for (const until = Date.now() + timeoutMs; Date.now() < until; await new Promise((resolve) => setTimeout(resolve, 100))) {
    if (await probe().catch(() => false)) return;
  }
  throw new Error(`${what} did not become ready`);
}

/** The tests' local S3 server (its CLI) with a `bench` bucket, in a temp folder. */
export async function startS3rver(isUp: (endpoint: string) => Promise<boolean>): Promise<{ endpoint: string; child: ChildProcess }> {
  const port = await freePort();
  const child = startChild(path.join(repoRoot, 'node_modules/.bin/s3rver'), ['-d', tempDir('bench-s3-'), '-a', '127.0.0.1', '-p', String(port), '--silent', '--configure-bucket', 'bench']);
  const endpoint = `http://127.0.0.1:${port}`;
  await waitFor(() => isUp(endpoint), 's3rver');
  return { endpoint, child };
}
