/**
 * @module bench/nginx-peer
 * nginx (Debian's package) as the reverse-proxy peer of the function gateway: `proxy_pass`
 * to one upstream with keepalive connections, HTTP/1.1 upstream, buffering as a packaged
 * nginx ships it, and the CPU time of its master and workers. The config and the process are
 * test/helpers/nginx-proxy.ts's, shared with the replica tests and bench.
 */
import { startNginxProxy } from '../test/helpers/nginx-proxy.js';
import { startChild } from './bench-processes.js';
import { cpuSeconds } from './host.js';

export interface NginxPeer {
  url: string;
  /** utime+stime of the master and its workers, in seconds. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/** Starts nginx proxying every path to `upstream` (host:port) with `workers` worker processes. */
export async function startNginxPeer(upstream: string, workers: number): Promise<NginxPeer> {
  const nginx = await startNginxProxy({
    upstreams: [upstream], workers, workerConnections: 4096, upstreamKeepalive: 64,
    // What the gateway sends its instances too (it adds x-forwarded-*).
    headers: { Host: '$host', 'X-Forwarded-For': '$remote_addr' },
    // The bench's children: killed when it exits, also on Ctrl-C.
    spawn: (command, args) => startChild(command, args),
  });
  return {
    url: nginx.url,
    cpuSeconds: () => nginx.pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    stop: () => nginx.stop(),
  };
}
