/**
 * @module functions/metrics
 * Per-function request metrics kept in memory: counters since start and the latency of the last
 * 2,048 requests (p50/p99 over that window).
 */
import type { FunctionMetrics } from './spec.js';

const window = 2048;

export class RequestMetrics {
  requests = 0;
  errors = 0;
  timeouts = 0;
  coldStarts = 0;
  private readonly latencies = new Float64Array(window);
  private next = 0;
  private filled = 0;

  record(ms: number, outcome: 'ok' | 'error' | 'timeout', cold: boolean): void {
    this.requests++;
    if (outcome === 'error') this.errors++;
    if (outcome === 'timeout') this.timeouts++;
    if (cold) this.coldStarts++;
    this.latencies[this.next] = ms;
    this.next = (this.next + 1) % window;
    if (this.filled < window) this.filled++;
  }

  view(live: { inFlight: number; queued: number; instances: number }): FunctionMetrics {
    const sorted = Array.from(this.latencies.subarray(0, this.filled)).sort((a, b) => a - b);
    const at = (q: number) => (sorted.length ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 100) / 100 : 0);
    return {
      requests: this.requests, errors: this.errors, timeouts: this.timeouts, coldStarts: this.coldStarts,
      ...live,
      latencyMs: { p50: at(0.5), p99: at(0.99) },
    };
  }
}
