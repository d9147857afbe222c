/**
 * @module bench/host
 * What the benchmarks read from the host: a free loopback port for a peer, and a process's
 * CPU time from /proc (utime + stime), so a peer's cost per request can be reported.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';

const clockTicks = 100; // CLK_TCK (USER_HZ) on Linux x86-64

/** utime + stime of `pid` in seconds; 0 once the process is gone. */
export function cpuSeconds(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks; // utime, stime (fields 14, 15)
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    }).on('error', reject);
  });
}
