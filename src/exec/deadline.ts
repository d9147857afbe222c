/**
 * @module exec/deadline
 * One signal for "the caller gave up or the time is over" that remembers which came first: what
 * a build, a step or a stage reports (`timeout` or `aborted`) depends on it.
 */

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
