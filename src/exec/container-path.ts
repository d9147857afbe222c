/**
 * @module exec/container-path
 * Path resolution inside a container's root file system the way the container itself would
 * resolve it: symbolic links (absolute or relative) never lead out of the root. For reading
 * files out of a mounted container (build outputs, step files) without following a link to the
 * host.
 */
import { lstat, readlink } from 'node:fs/promises';
import path from 'node:path';

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
