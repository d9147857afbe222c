/**
 * @module auth/rate-limit
 * Failed-login throttle per account and per client address: after `maxFailures` failures in
 * `windowMs`, further attempts are refused until the window has passed. In memory: with
 * several replicas each counts its own share, which still bounds guessing.
 */
export class FailureLimiter {
  private readonly failures = new Map<string, number[]>();

  constructor(readonly maxFailures = 10, private readonly windowMs = 5 * 60_000) {}

  /**
   * Milliseconds until `key` may try again, or 0. Addresses get a higher `limit` than
   * accounts: many users may share one address (a NAT, a CI runner).
   */
  blockedFor(key: string, limit = this.maxFailures, now = Date.now()): number {
    const recent = this.recent(key, now);
    if (recent.length < limit) return 0;
    return recent[recent.length - limit]! + this.windowMs - now;
  }

  fail(key: string, now = Date.now()): void {
    const recent = this.recent(key, now);
    recent.push(now);
    this.failures.set(key, recent);
  }

  succeed(key: string): void {
    this.failures.delete(key);
  }

  private recent(key: string, now: number): number[] {
    const list = (this.failures.get(key) ?? []).filter((at) => now - at < this.windowMs);
    if (list.length === 0) this.failures.delete(key);
    return list;
  }
}
