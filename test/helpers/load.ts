/**
 * Load for tests of output handling under pressure: busy shell loops on every core (at a lower
 * priority than the test, so the test still makes progress) for the time `fn` runs, and an event
 * loop that is blocked in short bursts — what a loaded server looks like to its child processes.
 */
import { availableParallelism } from 'node:os';
import { killTree, spawnTracked } from './commands.js';

export async function withLoad<T>(fn: () => Promise<T>, options: { blockMs?: number; everyMs?: number } = {}): Promise<T> {
  const hogs = Array.from({ length: availableParallelism() }, () => spawnTracked('nice', ['-n', '5', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }));
  const blockMs = options.blockMs ?? 20;
  const blocker = setInterval(() => {
    const until = Date.now() + blockMs;
    while (Date.now() < until) {
      // busy: the event loop does nothing else meanwhile
    }
  }, options.everyMs ?? 30);
  try {
    return await fn();
  } finally {
    clearInterval(blocker);
    for (const hog of hogs) killTree(hog);
  }
}
