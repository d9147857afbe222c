/**
 * @module test/helpers/nginx-proxy
 * Debian's nginx as a reverse proxy in front of upstreams (host:port, round robin), for the
 * tests and the benches alike: the config written into a temp prefix, nginx in the foreground
 * (never /etc/nginx, never port 80), ready once it accepts connections, and stopped with its
 * workers and prefix gone. What differs between the users (streamed bodies, upstream keep-alive,
 * workers, timeouts, body size, headers) is an option; the rest is one config.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { killTree, spawnTracked } from './commands.js';

/**
 * Starts a program so that its owner can kill it if the process goes away; stderr must be a
 * pipe (its tail explains an nginx that would not start). The tests' `spawnTracked` by default;
 * a bench passes its own (bench/bench-processes.ts `startChild`).
 */
export type Spawner = (command: string, args: string[]) => ChildProcess;

export interface NginxProxyOptions {
  /** host:port of each upstream, balanced round robin. */
  upstreams: string[];
  /** Default: a free loopback port. */
  port?: number;
  /** Where the temp prefix is made (e.g. a test's work folder); default the OS temp folder. */
  parentDir?: string;
  /** worker_processes; default 1 (one event loop, like one Slipway process). */
  workers?: number;
  /** worker_connections; default 1024. */
  workerConnections?: number;
  /** Idle keep-alive connections to the upstreams per worker (`keepalive`); default none (a new connection per request). */
  upstreamKeepalive?: number;
  /** Bodies streamed both ways (`proxy_request_buffering off`, `proxy_buffering off`), as a registry in front of large blobs wants; default nginx's buffering. */
  streamBodies?: boolean;
  /** `client_max_body_size`: '0' for no limit; default nginx's 1m. */
  clientMaxBodySize?: string;
  /** `proxy_read_timeout`, e.g. '60s'; default nginx's. */
  readTimeout?: string;
  /** Per-upstream `max_fails`/`fail_timeout` (how soon a dead upstream is skipped); default nginx's. */
  failover?: { maxFails: number; failTimeout: string };
  /** `proxy_set_header` lines; default `{ Host: '$http_host' }` (the client's host and port). */
  headers?: Record<string, string>;
  /** Answer every request with 200 and this text instead of proxying (a floor to compare with; `upstreams` may be empty). */
  answer?: string;
  /** Write logs/access.log in the prefix; default off (no logging cost). */
  accessLog?: boolean;
  spawn?: Spawner;
  /** How long nginx may take to listen; default 10 s. */
  startTimeoutMs?: number;
}

export interface NginxProxy {
  url: string;
  port: number;
  /** The temp prefix (config, logs); removed by `stop`. */
  prefix: string;
  /** The master's and its workers' pids (for CPU accounting). */
  pids(): number[];
  /** SIGTERM (fast shutdown), SIGKILL after 5 s; no worker or prefix left behind. */
  stop(): Promise<void>;
}

// A master killed -9 leaves its workers serving: on exit, whatever was not stopped is killed
// by pid, workers included (known from the start, as they outlive a master killed first), and
// its prefix removed.
const running = new Set<() => void>();
process.on('exit', () => { for (const kill of running) kill(); });

function killPids(pids: number[]): void {
  for (const pid of pids) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
}

/** The nginx.conf of `options`, everything under `prefix`. */
export function nginxConfig(prefix: string, port: number, options: NginxProxyOptions): string {
  const failover = options.failover ? ` max_fails=${options.failover.maxFails} fail_timeout=${options.failover.failTimeout}` : '';
  const servers = options.upstreams.map((upstream) => `server ${upstream}${failover};`);
  if (options.upstreamKeepalive) servers.push(`keepalive ${options.upstreamKeepalive};`);
  const headers = Object.entries(options.headers ?? { Host: '$http_host' }).map(([name, value]) => `proxy_set_header ${name} ${value};`);
  const location = options.answer !== undefined ? ['default_type text/plain;', `return 200 ${JSON.stringify(options.answer)};`] : [
    'proxy_pass http://upstreams;',
    // HTTP/1.1 without `Connection: close`: what upstream keep-alive needs.
    'proxy_http_version 1.1;',
    'proxy_set_header Connection "";',
    ...headers,
    ...(options.streamBodies ? ['proxy_request_buffering off;', 'proxy_buffering off;'] : []),
    ...(options.readTimeout ? [`proxy_read_timeout ${options.readTimeout};`] : []),
  ];
  return `
worker_processes ${options.workers ?? 1};
daemon off;
master_process on;
error_log ${prefix}/logs/error.log warn;
pid ${prefix}/nginx.pid;
events { worker_connections ${options.workerConnections ?? 1024}; }
http {
  access_log ${options.accessLog ? `${prefix}/logs/access.log` : 'off'};
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  ${servers.length > 0 ? `upstream upstreams { ${servers.join(' ')} }` : ''}
  server {
    listen 127.0.0.1:${port};${options.clientMaxBodySize !== undefined ? `\n    client_max_body_size ${options.clientMaxBodySize};` : ''}
    location / {
      ${location.join('\n      ')}
    }
  }
}
`;
}

/** Starts nginx proxying every path to `options.upstreams`; resolves once it accepts connections. */
export async function startNginxProxy(options: NginxProxyOptions): Promise<NginxProxy> {
  const prefix = mkdtempSync(path.join(options.parentDir ?? os.tmpdir(), 'slipway-nginx-'));
  mkdirSync(path.join(prefix, 'logs'));
  const port = options.port ?? await freePort();
  const configFile = path.join(prefix, 'nginx.conf');
  writeFileSync(configFile, nginxConfig(prefix, port, options));
  const spawner = options.spawn ?? ((command, args) => spawnTracked(command, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
  const child = spawner('nginx', ['-p', prefix, '-c', configFile]);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-4000); });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
    child.once('error', (error) => { stderr += error.message; resolve(); }); // e.g. no nginx on PATH
  });
  const master = child.pid;
  const live = () => child.exitCode === null && child.signalCode === null;
  const known = new Set<number>(master === undefined ? [] : [master]);
  const pids = () => {
    if (master !== undefined) for (const pid of childrenOf(master)) known.add(pid);
    return master === undefined || !live() ? [] : [master, ...childrenOf(master)];
  };
  const killAll = () => {
    pids();
    killPids([...known].filter((pid) => pid !== master || live()));
    rmSync(prefix, { recursive: true, force: true });
  };
  running.add(killAll);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    pids();
    killTree(child, 'SIGTERM'); // nginx: fast shutdown
    const timer = setTimeout(() => killTree(child), 5_000);
    await exited;
    clearTimeout(timer);
    // Workers the master could not take down (it was killed): never left running.
    killPids([...known].filter((pid) => pid !== master));
    running.delete(killAll);
    rmSync(prefix, { recursive: true, force: true });
  };

  const gaveUp = exited.then(() => {
    throw new Error(`nginx exited before listening on ${port}: ${stderr}${readLog(prefix)}`);
  });
  try {
    await Promise.race([waitForPort(port, options.startTimeoutMs ?? 10_000), gaveUp]);
  } catch (error) {
    await stop();
    throw error;
  }
  gaveUp.catch(() => undefined); // exiting later is `stop`'s business
  await waitForWorkers(pids, options.workers ?? 1);
  return { url: `http://127.0.0.1:${port}`, port, prefix, pids, stop };
}

/** Until the master has forked its workers (it listens first), so all of them are known. */
async function waitForWorkers(pids: () => number[], workers: number): Promise<void> {
  for (const until = Date.now() + 2_000; pids().length <= workers && Date.now() < until;) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function readLog(prefix: string): string {
  try {
    return readFileSync(path.join(prefix, 'logs', 'error.log'), 'utf8').slice(-2000);
  } catch {
    return '';
  }
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

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true); });
      socket.on('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listened on ${port} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
