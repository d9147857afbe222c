/**
 * @module functions/netns
 * One network namespace per function instance: `ip netns add slw-<id>`, a veth pair whose peer is
 * created directly inside the namespace (as `eth0`), and a private /30 from a pool (default
 * 10.203.0.0/16): the host side gets .1 of the block, the instance .2, so the host reaches the
 * instance at its address. Two `ip -batch` calls per namespace. Everything is named with the
 * `slw-` prefix (host veths `slw<index>`) so leftovers of a crashed process can be found.
 */
import { runProcess } from '../exec/process.js';

export const NAME_PREFIX = 'slw-';

export interface NetnsOptions {
  /** IPv4 pool in CIDR form; split into /30 blocks. Default 10.203.0.0/16. */
  pool?: string;
}

export interface InstanceNetwork {
  name: string;
  /** Path for `linux.namespaces[].path` in an OCI config. */
  path: string;
  hostVeth: string;
  hostAddress: string;
  address: string;
}

function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`bad IPv4 address ${ip}`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}
function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

async function ip(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const result = await runProcess('ip', args, { captureStdout: true, input, timeoutMs: 30_000, graceMs: 1000 });
  return { code: result.code, stdout: result.stdout, stderr: result.stderrTail.join('\n') };
}

export class NetnsManager {
  private readonly base: number;
  private readonly blocks: number;
  private readonly taken = new Set<number>();

  constructor(options: NetnsOptions = {}) {
    const [addr, bitsText] = (options.pool ?? '10.203.0.0/16').split('/');
    const bits = Number(bitsText);
    if (!addr || !Number.isInteger(bits) || bits < 8 || bits > 30) throw new Error(`bad pool ${options.pool}`);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    this.base = (ipToInt(addr) & mask) >>> 0;
    this.blocks = 2 ** (32 - bits) / 4;
  }

  /** Indices of host veths `slw<n>` present on the host (from any process). */
  private async usedIndices(): Promise<Set<number>> {
    const out = await ip(['-o', 'link', 'show']);
    const used = new Set<number>();
    for (const match of out.stdout.matchAll(/^\d+:\s+slw(\d+)[@:]/gm)) used.add(Number(match[1]));
    return used;
  }

  /**
   * Creates namespace `name` (must start with `slw-`) with a veth pair and a /30. The host veth
   * name `slw<index>` is the lock on the block: another process (a second server on the host)
   * that took the index first makes `link add` fail with "File exists", and the next free index
   * is tried; a veth this call did not create is never deleted.
   */
  async create(name: string): Promise<InstanceNetwork> {
    if (!name.startsWith(NAME_PREFIX)) throw new Error(`namespace names start with ${NAME_PREFIX}`);
    const added = await ip(['netns', 'add', name]);
    if (added.code !== 0) throw new Error(`ip netns add ${name} failed: ${added.stderr}`);
    let net: InstanceNetwork | undefined;
    let index = -1;
    try {
      const used = await this.usedIndices();
      for (let i = 0; i < this.blocks && !net; i++) {
        if (used.has(i) || this.taken.has(i)) continue;
        this.taken.add(i);
        const veth = `slw${i}`;
        const link = await ip(['link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
        if (link.code === 0) {
          index = i;
          const block = this.base + i * 4;
          net = { name, path: `/run/netns/${name}`, hostVeth: veth, hostAddress: intToIp(block + 1), address: intToIp(block + 2) };
        } else {
          this.taken.delete(i);
          if (!/exists/i.test(link.stderr)) throw new Error(`ip link add ${veth} failed: ${link.stderr}`);
        }
      }
      if (!net) throw new Error('address pool exhausted');
      const host = await ip(['-batch', '-'], [`addr add ${net.hostAddress}/30 dev ${net.hostVeth}`, `link set ${net.hostVeth} up`].join('\n') + '\n');
      if (host.code !== 0) throw new Error(`ip failed: ${host.stderr}`);
      const inside = await ip(['-n', name, '-batch', '-'], [`addr add ${net.address}/30 dev eth0`, 'link set eth0 up', 'link set lo up'].join('\n') + '\n');
      if (inside.code !== 0) throw new Error(`ip -n ${name} failed: ${inside.stderr}`);
      return net;
    } catch (error) {
      await this.delete(name, net?.hostVeth);
      throw error;
    } finally {
      if (index >= 0) this.taken.delete(index);
    }
  }

  /** Removes the namespace (its veth pair goes with it); missing pieces are not an error. */
  async delete(name: string, hostVeth?: string): Promise<void> {
    await ip(['netns', 'delete', name]);
    if (hostVeth) await ip(['link', 'delete', hostVeth]);
  }

  /** Namespaces named with the prefix. */
  async list(prefix = NAME_PREFIX): Promise<string[]> {
    const out = await ip(['netns', 'list']);
    return out.stdout.split('\n').map((line) => line.split(' ')[0] ?? '').filter((n) => n.startsWith(prefix));
  }

  /** Deletes every prefixed namespace and stray host veth `slw<n>`; returns the namespaces removed. */
  async cleanup(prefix = NAME_PREFIX): Promise<string[]> {
    const names = await this.list(prefix);
    for (const name of names) await this.delete(name);
    // Host veths carry no owner: swept only by a whole-host cleanup (another server's are live).
    if (prefix === NAME_PREFIX) for (const index of await this.usedIndices()) await ip(['link', 'delete', `slw${index}`]);
    return names;
  }
}
