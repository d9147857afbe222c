/**
 * @module bench/nginx-peer
 * nginx (Debian's package) as the reverse-proxy peer of the function gateway: `proxy_pass`
 * to one upstream with keepalive connections, HTTP/1.1 upstream, no buffering of small
 * answers changed from the defaults a packaged nginx ships with. Runs in the foreground from a
 * temp prefix, so it never touches /etc/nginx or port 80.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { cpuSeconds, freePort } from './host.js';

export interface NginxPeer {
  url: string;
  /** utime+stime of the master and its workers, in seconds. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

/** The pids whose parent is `pid` (nginx's workers). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch { /* exited meanwhile */ }
  }
  return children;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts nginx proxying every path to `upstream` (host:port) with `workers` worker processes. */
export async function startNginxPeer(upstream: string, workers: number): Promise<NginxPeer> {
  const prefix = mkdtempSync(path.join(os.tmpdir(), 'slipway-bench-nginx-'));
  mkdirSync(path.join(prefix, 'logs'));
  const port = await freePort();
  writeFileSync(path.join(prefix, 'nginx.conf'), `
worker_processes ${workers};
daemon off;
master_process on;
error_log ${prefix}/logs/error.log warn;
pid ${prefix}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  upstream fn { server ${upstream}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://fn;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
  }
}
`);
  const child: ChildProcess = spawn('nginx', ['-p', prefix, '-c', path.join(prefix, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await Promise.race([waitForPort(port, 10_000), exited.then(() => { throw new Error(`nginx exited: ${stderr}`); })]);
  } catch (error) {
    child.kill('SIGKILL');
    rmSync(prefix, { recursive: true, force: true });
    throw error;
  }
  const master = child.pid!;
  return {
    url: `http://127.0.0.1:${port}`,
    cpuSeconds: () => [master, ...childrenOf(master)].reduce((sum, pid) => sum + cpuSeconds(pid), 0),
    async stop() {
      child.kill('SIGTERM'); // nginx: fast shutdown
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
      rmSync(prefix, { recursive: true, force: true });
    },
  };
}
