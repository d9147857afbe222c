/**
 * @module cli/registry-policy-commands
 * `slipway registry quota|immutable|retention|proxy …`: a namespace's registry policy and its
 * pull-through cache settings over the REST API (the operations of registry/policy-api.ts and
 * auth/api.ts, called with the typed client of http/api-client.ts). Changing needs the owner
 * role; showing, the reader role; `proxy create` makes a new namespace (its caller owns it).
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { ApiClient } from './client.js';
import { authOperations } from '../auth/api.js';
import { policyOperations as ops, type RetentionRule } from '../registry/policy-api.js';
import { UsageError } from './errors.js';
import { withSession, type Session } from './session-commands.js';

type Env = Record<string, string | undefined>;

interface Flags {
  server?: string;
  namespace: string;
  json?: boolean;
}

const units: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 };

/** `10GiB`, `500MB`, `1024` → bytes; `none` → null (no limit). */
export function parseSize(text: string): number | null {
  if (text === 'none') return null;
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?$/i.exec(text.trim());
  if (!match) throw new UsageError(`not a size: ${text} (e.g. 500MB, 10GiB, 1048576, or none)`);
  return Math.round(Number(match[1]) * units[(match[2] ?? 'b').toLowerCase()]!);
}

function parseCount(text: string): number | null {
  if (text === 'none') return null;
  if (!/^\d+$/.test(text)) throw new UsageError(`not a whole number: ${text} (or none)`);
  return Number(text);
}

const human = (bytes: number) => {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) if (bytes >= size) return `${(bytes / size).toFixed(1)} ${unit}`;
  return `${bytes} B`;
};

/** The session's client (typed calls, the CLI's error messages: exit 1 on an API error). */
async function withClient<T>(flags: Flags, env: Env, fn: (client: ApiClient) => Promise<T>): Promise<T> {
  return withSession(flags, env, (session: Session) => fn(session.client));
}

const print = (flags: Flags, value: unknown, text: string) => process.stdout.write(flags.json ? `${JSON.stringify(value)}\n` : text);

function withServer(command: Command): Command {
  return command
    .option('--server <url>', 'Slipway server (default: SLIPWAY_SERVER, else the server of the last `slipway login`)')
    .requiredOption('-n, --namespace <namespace>', 'the namespace')
    .option('--json', 'print JSON');
}

export function registerRegistryPolicyCommands(registry: Command, env: Env): void {
  const quota = registry.command('quota').description('a namespace\'s registry quota and usage');
  withServer(quota.command('show').description('usage and quota of the namespace')).action(async (flags: Flags) => {
    await withClient(flags, env, async (client) => {
      const usage = await client.call(ops.getRegistryUsage, { params: { ns: flags.namespace } });
      const limit = (value: number | null, format: (n: number) => string) => (value === null ? 'no limit' : format(value));
      print(flags, usage, `bytes:        ${human(usage.bytes)} of ${limit(usage.quota.maxBytes, human)} (${usage.blobs} distinct blobs)\nrepositories: ${usage.repositories} of ${limit(usage.quota.maxRepositories, String)}\n`);
    });
  });
  withServer(quota.command('set').description('set or clear (none) the limits; pushes over them are refused'))
    .option('--max-bytes <size>', 'bytes of distinct blobs, e.g. 10GiB, or none')
    .option('--max-repositories <n>', 'number of repositories, or none')
    .action(async (flags: Flags & { maxBytes?: string; maxRepositories?: string }) => {
      if (flags.maxBytes === undefined && flags.maxRepositories === undefined) throw new UsageError('give --max-bytes and/or --max-repositories');
      const change = {
        ...(flags.maxBytes !== undefined ? { maxBytes: parseSize(flags.maxBytes) } : {}),
        ...(flags.maxRepositories !== undefined ? { maxRepositories: parseCount(flags.maxRepositories) } : {}),
      };
      await withClient(flags, env, async (client) => {
        const stored = await client.call(ops.setRegistryPolicy, { params: { ns: flags.namespace }, body: { quota: change } });
        print(flags, stored, `quota of ${flags.namespace}: maxBytes ${stored.quota.maxBytes ?? 'none'}, maxRepositories ${stored.quota.maxRepositories ?? 'none'}\n`);
      });
    });

  const immutable = registry.command('immutable').description('tag globs under which a pushed tag cannot be moved or deleted');
  withServer(immutable.command('show').description('the immutable-tag globs')).action(async (flags: Flags) => {
    await withClient(flags, env, async (client) => {
      const policy = await client.call(ops.getRegistryPolicy, { params: { ns: flags.namespace } });
      print(flags, policy.immutableTags, policy.immutableTags.length === 0 ? `no immutable tags in ${flags.namespace}\n` : `${policy.immutableTags.join('\n')}\n`);
    });
  });
  withServer(immutable.command('set').description('replace the immutable-tag globs (none given: clear them)'))
    .argument('[globs...]', 'tag globs, e.g. "v*" "release-*"')
    .action(async (globs: string[], flags: Flags) => {
      await withClient(flags, env, async (client) => {
        const stored = await client.call(ops.setRegistryPolicy, { params: { ns: flags.namespace }, body: { immutableTags: globs } });
        print(flags, stored.immutableTags, `immutable tags of ${flags.namespace}: ${stored.immutableTags.join(' ') || 'none'}\n`);
      });
    });

  const retention = registry.command('retention').description('retention rules: which manifests a run removes');
  withServer(retention.command('show').description('the retention rules (JSON)')).action(async (flags: Flags) => {
    await withClient(flags, env, async (client) => {
      const policy = await client.call(ops.getRegistryPolicy, { params: { ns: flags.namespace } });
      process.stdout.write(`${JSON.stringify(policy.retention, null, flags.json ? undefined : 2)}\n`);
    });
  });
  withServer(retention.command('set').description('replace the rules with a JSON array from a file (- for stdin)'))
    .argument('<file>', 'e.g. [{"repositories":"team/*","tags":"*","keepLast":10,"dropUntagged":true}]')
    .action(async (file: string, flags: Flags) => {
      const text = file === '-' ? await readStdin() : await readFile(file, 'utf8').catch((error: Error) => { throw new UsageError(`cannot read ${file}: ${error.message}`); });
      let rules: unknown;
      try {
        rules = JSON.parse(text);
      } catch {
        throw new UsageError(`${file} is not JSON`);
      }
      await withClient(flags, env, async (client) => {
        const stored = await client.call(ops.setRegistryPolicy, { params: { ns: flags.namespace }, body: { retention: rules as RetentionRule[] } });
        print(flags, stored.retention, `${stored.retention.length} retention rule(s) in ${flags.namespace}\n`);
      });
    });
  withServer(retention.command('schedule').description('apply the rules on a schedule, e.g. 1d (none: only on demand)'))
    .argument('<every>', 'a duration such as 1d or 12h, or none')
    .action(async (every: string, flags: Flags) => {
      await withClient(flags, env, async (client) => {
        const stored = await client.call(ops.setRegistryPolicy, { params: { ns: flags.namespace }, body: { retentionSchedule: every === 'none' ? null : every } });
        print(flags, stored, `retention of ${flags.namespace}: ${stored.retentionSchedule ? `every ${stored.retentionSchedule}` : 'on demand only'}\n`);
      });
    });
  withServer(retention.command('run').description('list what the rules would remove (dry run), or remove it with --apply'))
    .option('--apply', 'remove for real (blobs go with the next garbage collection)')
    .action(async (flags: Flags & { apply?: boolean }) => {
      await withClient(flags, env, async (client) => {
        const run = await client.call(ops.runRetention, { params: { ns: flags.namespace }, query: { dryRun: flags.apply ? 'false' : 'true' } });
        const lines = run.removed.map((r) => `${run.dryRun ? 'would remove' : 'removed'} ${r.repository}@${r.digest}${r.tags.length ? ` (${r.tags.join(', ')})` : ''}: ${r.reason}`);
        print(flags, run, `${lines.join('\n')}${lines.length ? '\n' : ''}${run.removed.length} ${run.dryRun ? 'would go' : 'removed'}, ${run.kept} kept (run ${run.id})\n`);
      });
    });
  withServer(retention.command('runs').description('recent retention runs')).action(async (flags: Flags) => {
    await withClient(flags, env, async (client) => {
      const runs = await client.call(ops.listRetentionRuns, { params: { ns: flags.namespace } });
      print(flags, runs, runs.map((r) => `${r.startedAt}  ${r.id}  ${r.dryRun ? 'dry run' : 'applied'}  removed ${r.removed.length}, kept ${r.kept}  by ${r.startedBy ?? '-'}`).join('\n') + (runs.length ? '\n' : `no retention runs in ${flags.namespace}\n`));
    });
  });
}

interface ProxyFlags extends Flags {
  url?: string;
  credentialsId?: string;
  insecure?: boolean;
  ttl?: string;
  mirrorOf?: string;
}

function proxyOptions(command: Command): Command {
  return command
    .option('--credentials-id <id>', 'an external registry of the namespace to log in with (default: the longest matching prefix)')
    .option('--insecure', 'accept an upstream TLS certificate that does not verify')
    .option('--ttl <duration>', 'how long a cached tag is served before it is re-checked upstream (default 24h)')
    .option('--mirror-of <registry>', 'also serve the upstream\'s own paths without the namespace prefix, e.g. docker.io');
}

function proxyBody(flags: ProxyFlags) {
  if (!flags.url) throw new UsageError('give --url <upstream registry>, e.g. https://registry-1.docker.io');
  return {
    url: flags.url,
    ...(flags.credentialsId ? { credentialsId: flags.credentialsId } : {}),
    ...(flags.insecure ? { insecure: true } : {}),
    ...(flags.ttl ? { ttl: flags.ttl } : {}),
    ...(flags.mirrorOf ? { mirrorOf: flags.mirrorOf } : {}),
  };
}

const proxyText = (namespace: string, view: { url: string; credentialsId: string | null; insecure: boolean; ttl: string; mirrorOf: string | null }) =>
  `${namespace} is a pull-through cache of ${view.url} (ttl ${view.ttl}${view.credentialsId ? `, credentials ${view.credentialsId}` : ''}${view.insecure ? ', insecure' : ''}${view.mirrorOf ? `, mirror of ${view.mirrorOf}` : ''})\n`;

/** `slipway registry proxy create|show|set`: pull-through cache namespaces (docs/registry-proxy.md). */
export function registerRegistryProxyCommands(registry: Command, env: Env): void {
  const proxy = registry.command('proxy').description('namespaces that cache an upstream registry (pull-through)');
  proxyOptions(proxy.command('create').description('create a namespace that is a pull-through cache of --url'))
    .argument('<namespace>', 'the new namespace, e.g. hub')
    .option('--server <url>', 'Slipway server (default: SLIPWAY_SERVER, else the server of the last `slipway login`)')
    .option('--url <url>', 'the upstream registry, e.g. https://registry-1.docker.io')
    .option('--json', 'print JSON')
    .action(async (namespace: string, flags: ProxyFlags) => {
      const body = proxyBody(flags);
      await withClient({ ...flags, namespace }, env, async (client) => {
        await client.call(authOperations.createNamespace, { body: { name: namespace, proxy: body } });
        const view = await client.call(authOperations.getNamespaceProxy, { params: { ns: namespace } });
        print(flags, view, proxyText(namespace, view));
      });
    });
  withServer(proxy.command('show').description('the upstream settings of a proxy namespace')).action(async (flags: Flags) => {
    await withClient(flags, env, async (client) => {
      const view = await client.call(authOperations.getNamespaceProxy, { params: { ns: flags.namespace } });
      print(flags, view, proxyText(flags.namespace, view));
    });
  });
  proxyOptions(withServer(proxy.command('set').description('make the namespace a proxy of --url, or change its settings')))
    .option('--url <url>', 'the upstream registry')
    .action(async (flags: ProxyFlags) => {
      const body = proxyBody(flags);
      await withClient(flags, env, async (client) => {
        const view = await client.call(authOperations.setNamespaceProxy, { params: { ns: flags.namespace }, body });
        print(flags, view, proxyText(flags.namespace, view));
      });
    });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
