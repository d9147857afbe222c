/**
 * @module builds/limits
 * Small pieces the build drivers and the pipeline executor share: one signal for "the caller
 * gave up or the time is over" that remembers which came first, and path resolution inside a
 * container's root the way the container itself would resolve it.
 */
import { lstat, readlink } from 'node:fs/promises';
import path from 'node:path';

/** Combines a caller's signal and a time limit into one signal that knows why it fired. */
export function deadline(signal: AbortSignal | undefined, timeoutMs: number | undefined) {
  const controller = new AbortController();
  let reason: 'timeout' | 'aborted' | undefined;
  const onAbort = () => {
    reason ??= 'aborted';
    controller.abort();
  };
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  const timer = timeoutMs !== undefined && timeoutMs > 0
    ? setTimeout(() => {
        reason ??= 'timeout';
        controller.abort();
      }, timeoutMs)
    : undefined;
  return {
    signal: controller.signal,
    reason: () => reason,
    dispose() {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    },
  };
}

/** Resolves `containerPath` inside the folder `root` the way the container would: symlinks (absolute or relative) never leave `root`. */
export async function resolveInRoot(root: string, containerPath: string): Promise<string> {
  const pending = containerPath.split('/').filter((part) => part !== '' && part !== '.');
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(root, ...resolved, part);
    let info;
    try {
      info = await lstat(candidate);
    } catch {
      resolved.push(part);
      continue; // missing: let the caller's stat report it
    }
    if (info.isSymbolicLink()) {
      if (++hops > 40) throw new Error(`too many symbolic links in ${containerPath}`);
      const target = await readlink(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
      continue;
    }
    resolved.push(part);
  }
  return path.join(root, ...resolved);
}
