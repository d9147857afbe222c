/**
 * Catches the test file that leaves function instances' network namespaces behind. A server's
 * namespaces carry a prefix derived from its data folder (functions/runc-runtime.ts), so every
 * temp folder a test makes is remembered here, and when the test process exits, namespaces with
 * one of those prefixes are reported (naming this file), removed, and fail the file. Without it a
 * leak shows up hours later as a stray `slw-…` in `ip netns list` that nobody can place.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';

const prefixes = new Set<string>();
let installed = false;

/** Remembers a folder that may become a server's data folder. */
export function watchDataFolder(folder: string): void {
  prefixes.add(`slw-${createHash('sha256').update(realpathSync(folder)).digest('hex').slice(0, 6)}-`);
  if (installed) return;
  installed = true;
  process.on('exit', reportLeftovers);
}

function namespaces(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n').map((line) => line.split(' ')[0] ?? '').filter(Boolean);
  } catch {
    return []; // no iproute2 here: nothing can have leaked
  }
}

function reportLeftovers(): void {
  const leaked = namespaces().filter((name) => [...prefixes].some((prefix) => name.startsWith(prefix)));
  if (leaked.length === 0) return;
  for (const name of leaked) {
    try { execFileSync('ip', ['netns', 'delete', name], { stdio: 'ignore' }); } catch { /* reported below anyway */ }
  }
  process.stderr.write(`\n# LEAK: ${process.argv[1] ?? 'this test file'} left network namespaces behind (now removed): ${leaked.join(', ')}\n`);
  process.exitCode = 1;
}
