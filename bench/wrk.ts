/**
 * @module bench/wrk
 * One wrk run (keep-alive HTTP load at a fixed connection count) and what the benches read
 * from its report: requests/s, the request count, p50/p99 latency in ms and any errors.
 */
import { spawn } from 'node:child_process';

export interface WrkResult {
  rps: number;
  requests: number;
  p50: number;
  p99: number;
  /** wrk's non-2xx/3xx and socket error lines; empty when there were none. */
  errors: string;
}

/** wrk's latency text (`812.00us`, `1.20ms`, `2.00s`) in ms; NaN when absent. */
export function wrkMs(text: string | undefined): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text ?? '');
  if (!match) return NaN;
  const value = Number(match[1]);
  return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
}

export function wrk(url: string, options: { seconds: number; connections?: number; threads?: number }): Promise<WrkResult> {
  const { seconds, connections = 32, threads = 2 } = options;
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`wrk exited ${code}: ${out}`));
        return;
      }
      resolve({
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
        requests: Number(/(\d+) requests in/.exec(out)?.[1]),
        p50: wrkMs(/\s50%\s+(\S+)/.exec(out)?.[1]),
        p99: wrkMs(/\s99%\s+(\S+)/.exec(out)?.[1]),
        errors: [/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[0], /Socket errors: .*/.exec(out)?.[0]].filter(Boolean).join('; '),
      });
    });
  });
}
