/**
 * CNCF Distribution (Debian `docker-registry`) on loopback as a real upstream registry for
 * pull-through tests: its own config (Debian's turns on htpasswd), filesystem storage in `dir`,
 * stoppable and restartable (the upstream going down), killed with the test's children.
 */
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { killTree, spawnTracked } from './commands.js';

export async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export class Distribution {
  child?: ChildProcess;
  constructor(readonly dir: string, readonly port: number) {
    writeFileSync(path.join(dir, 'config.yml'), [
      'version: 0.1',
      'log: {level: error, accesslog: {disabled: true}}',
      `storage: {filesystem: {rootdirectory: ${JSON.stringify(path.join(dir, 'data'))}}, delete: {enabled: true}}`,
      `http: {addr: "127.0.0.1:${port}"}`,
      '',
    ].join('\n'));
  }

  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.child = spawnTracked('/usr/bin/docker-registry', ['serve', path.join(this.dir, 'config.yml')], { stdio: 'ignore' });
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        if ((await fetch(`http://${this.host}/v2/`)).ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error('docker-registry did not start within 15 s');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    killTree(child);
    await once(child, 'exit');
  }
}

