/**
 * @module bench/node-floor
 * What Node costs per request on this host before any Slipway code runs, against nginx, side
 * by side in one run (issue 12.5: is "≤ 1.5× nginx's CPU per proxied request" within reach of
 * a Node process at all?). Every server is its own process; wrk (2 threads, 32 connections)
 * drives each in turn, rounds alternated; CPU µs per request from /proc (utime + stime).
 *
 *   answer:  node:http hello · net-socket hello (bench/floor-servers) · nginx `return 200`
 *   proxy:   a minimal net-socket proxy (floor-servers net-proxy) · nginx proxy_pass with
 *            upstream keepalive, both to the same node:http hello instance
 *
 *   node dist/bench/node-floor.js [--seconds 10] [--rounds 2] [--results bench/results-node-floor.md]
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startChild, stopChild } from './bench-processes.js';
import { cpuSeconds, freePort } from './host.js';
import { startNginxProxy, type NginxProxy } from '../test/helpers/nginx-proxy.js';
import { wrk } from './wrk.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '2' },
    results: { type: 'string', default: path.join(repoRoot, 'bench', 'results-node-floor.md') },
  },
});
const seconds = Number(flags.seconds);
const rounds = Number(flags.rounds);
const floorServers = path.join(repoRoot, 'dist', 'bench', 'floor-servers.js');

interface Peer { name: string; kind: 'answer' | 'proxy'; url: string; pids(): number[] }
interface Sample { rps: number; cpuMicros: number; p50: number; p99: number }

async function measure(peer: Peer): Promise<Sample> {
  const cpu = () => peer.pids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const before = cpu();
  const result = await wrk(peer.url, { seconds });
  const spent = cpu() - before;
  if (result.errors) throw new Error(`${peer.name}: errors under load: ${result.errors}`);
  return { rps: result.rps, cpuMicros: (spent * 1e6) / result.requests, p50: result.p50, p99: result.p99 };
}

async function floorServer(kind: string, upstream?: number): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort();
  const child = startChild(process.execPath, [floorServers, kind, String(port), ...(upstream ? [String(upstream)] : [])]);
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${port}/`).then((r) => r.ok, () => false)) return { child, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${kind} did not answer on ${port}`);
}

async function main(): Promise<void> {
  const children: ChildProcess[] = [];
  const nginxes: NginxProxy[] = [];
  try {
    const instance = await floorServer('http-hello');
    children.push(instance.child);
    const netHello = await floorServer('net-hello');
    children.push(netHello.child);
    const netProxy = await floorServer('net-proxy', instance.port);
    children.push(netProxy.child);
    const nginxAnswer = await startNginxProxy({ upstreams: [], answer: 'hello', spawn: startChild });
    nginxes.push(nginxAnswer);
    const nginxProxy = await startNginxProxy({ upstreams: [`127.0.0.1:${instance.port}`], upstreamKeepalive: 64, spawn: startChild });
    nginxes.push(nginxProxy);
    const peers: Peer[] = [
      { name: 'node:http hello', kind: 'answer', url: `http://127.0.0.1:${instance.port}/`, pids: () => [instance.child.pid!] },
      { name: 'net-socket hello', kind: 'answer', url: `http://127.0.0.1:${netHello.port}/`, pids: () => [netHello.child.pid!] },
      { name: 'nginx return 200 (1 worker)', kind: 'answer', url: `${nginxAnswer.url}/`, pids: () => nginxAnswer.pids() },
      { name: 'minimal net-socket proxy', kind: 'proxy', url: `http://127.0.0.1:${netProxy.port}/`, pids: () => [netProxy.child.pid!] },
      { name: 'nginx proxy_pass keepalive (1 worker)', kind: 'proxy', url: `${nginxProxy.url}/`, pids: () => nginxProxy.pids() },
    ];
    const samples = new Map<string, Sample[]>(peers.map((peer) => [peer.name, []]));
    for (const peer of peers) await wrk(peer.url, { seconds }).catch(() => undefined); // warm up (JIT, connections)
    for (let round = 0; round < rounds; round++) {
      // Alternate the order so a noisy moment does not always hit the same peer.
      for (const peer of round % 2 === 0 ? peers : [...peers].reverse()) {
        const sample = await measure(peer);
        samples.get(peer.name)!.push(sample);
        console.error(`${peer.name}: ${sample.rps.toFixed(0)} req/s, ${sample.cpuMicros.toFixed(1)} µs CPU/request`);
      }
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
    const row = (name: string) => {
      const list = samples.get(name)!;
      return { rps: median(list.map((s) => s.rps)), cpu: median(list.map((s) => s.cpuMicros)), p50: median(list.map((s) => s.p50)), p99: median(list.map((s) => s.p99)) };
    };
    const nginxOf = (kind: Peer['kind']) => row(peers.find((p) => p.kind === kind && p.name.startsWith('nginx'))!.name);
    const lines = [
      `# Node's floor against nginx (${new Date().toISOString()})`,
      '',
      `wrk -t2 -c32, ${seconds} s per sample, ${rounds} rounds (median), every server its own process on ${os.cpus().length} shared cores. Ratios against nginx of the same kind.`,
      '',
      '| kind | server | req/s | × nginx req/s | CPU µs/request | × nginx CPU | p50 ms | p99 ms |',
      '|---|---|---:|---:|---:|---:|---:|---:|',
      ...peers.map((peer) => {
        const r = row(peer.name);
        const n = nginxOf(peer.kind);
        return `| ${peer.kind} | ${peer.name} | ${r.rps.toFixed(0)} | ${(r.rps / n.rps).toFixed(2)} | ${r.cpu.toFixed(1)} | ${(r.cpu / n.cpu).toFixed(2)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`;
      }),
      '',
    ];
    writeFileSync(flags.results!, `${lines.join('\n')}\n`);
    console.log(lines.join('\n'));
  } finally {
    for (const nginx of nginxes) await nginx.stop().catch(() => undefined);
    for (const child of children) await stopChild(child).catch(() => undefined);
  }
}

await main();
