/**
 * Helpers for function tests: waiting for a deploy, and checks that a server left
 * no runc container or network namespace behind.
 */
import assert from 'node:assert/strict';
import { realpath } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { run } from './commands.js';

/** The prefix a server with this data folder gives its instances (see createRuncRuntime in functions/runc-driver.ts). */
export async function instancePrefix(dataDir: string): Promise<string> {
  return `slw-${createHash('sha256').update(await realpath(dataDir)).digest('hex').slice(0, 6)}-`;
}

/** runc containers and network namespaces of the server with this data folder. */
export async function leftovers(dataDir: string, prefix: string): Promise<{ containers: string[]; namespaces: string[] }> {
  const list = await run('runc', ['--root', path.join(dataDir, 'functions', 'runc'), 'list', '--format', 'json'], { allowFailure: true });
  const containers = ((JSON.parse(list.stdout.trim() || 'null') ?? []) as Array<{ id: string }>).map((c) => c.id).filter((id) => id.startsWith(prefix));
  const netns = await run('ip', ['netns', 'list'], { allowFailure: true });
  const namespaces = netns.stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(prefix));
  return { containers, namespaces };
}

export async function assertNoLeftovers(dataDir: string, prefix: string): Promise<void> {
  const left = await leftovers(dataDir, prefix);
  assert.deepEqual(left, { containers: [], namespaces: [] }, 'no runc container or network namespace is left behind');
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
