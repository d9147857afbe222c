/**
 * @module registry/proxy-settings
 * Which namespaces are pull-through caches of an upstream registry, and of which one: the
 * `proxy` object of `POST /api/v1/namespaces` (schema in proxy-settings-schema.ts, so the API and
 * the registry agree), stored in `registry_proxies`. Lookups per request are memoised briefly: a change made on
 * another replica is seen within `memoMs`.
 */
import type { z } from 'zod';
import { parseDuration } from '../config/config.js';
import type { Database } from '../db/db.js';
import type { proxySettingsInput, proxySettingsView } from './proxy-settings-schema.js';
import { RegistryError } from './errors.js';

// The API's shapes live in proxy-settings-schema.ts (browser-safe, for auth/api.ts).
export { proxySettingsInput, proxySettingsView, type ProxySettingsInput } from './proxy-settings-schema.js';

export interface ProxySettings {
  namespace: string;
  /** Without a trailing slash. */
  url: string;
  credentialsId: string | null;
  insecure: boolean;
  ttlMs: number;
  mirrorOf: string | null;
}

const memoMs = 2_000;

export class ProxySettingsStore {
  private memo = new Map<string, { at: number; settings: ProxySettings | null }>();
  private mirrors: { at: number; list: ProxySettings[] } | undefined;

  constructor(private readonly db: Database) {}

  async get(namespace: string): Promise<ProxySettings | null> {
    const memo = this.memo.get(namespace);
    if (memo && Date.now() - memo.at < memoMs) return memo.settings;
    const row = await this.db.kysely.selectFrom('registry_proxies').selectAll().where('namespace', '=', namespace).executeTakeFirst();
    const settings = row ? toSettings(row) : null;
    this.memo.set(namespace, { at: Date.now(), settings });
    return settings;
  }

  /** The proxy settings that apply to a repository (by its first path component), or null. */
  forRepository(repository: string): Promise<ProxySettings | null> {
    return this.get(repository.split('/')[0]!);
  }

  /**
   * DENIED for a write into a proxy namespace. The one check behind every push path: the `/v2`
   * routes, and the upload and manifest services that builds and pipelines push through in
   * process. Deletes stay allowed (they evict cached content).
   */
  async refuseWrite(repository: string): Promise<void> {
    const settings = await this.forRepository(repository);
    if (settings) throw new RegistryError('DENIED', `namespace ${settings.namespace} is a pull-through cache of ${settings.url}; pushing into it is not allowed`, { namespace: settings.namespace, upstream: settings.url });
  }

  /** Proxy namespaces with `mirrorOf` set. */
  async mirrorsList(): Promise<ProxySettings[]> {
    if (this.mirrors && Date.now() - this.mirrors.at < memoMs) return this.mirrors.list;
    const rows = await this.db.kysely.selectFrom('registry_proxies').selectAll().where('mirror_of', 'is not', null).orderBy('namespace').execute();
    this.mirrors = { at: Date.now(), list: rows.map(toSettings) };
    return this.mirrors.list;
  }

  async set(namespace: string, input: z.output<typeof proxySettingsInput>): Promise<ProxySettings> {
    const values = {
      namespace,
      url: input.url.replace(/\/+$/, ''),
      credentials_id: input.credentialsId ?? null,
      insecure: input.insecure ? 1 : 0,
      ttl_ms: parseDuration(input.ttl),
      mirror_of: input.mirrorOf ?? null,
      updated_at: Date.now(),
    };
    await this.db.write((trx) => trx.insertInto('registry_proxies').values(values)
      .onConflict((c) => c.column('namespace').doUpdateSet({ ...values })).execute());
    this.memo.delete(namespace);
    this.mirrors = undefined;
    return toSettings(values);
  }
}

export function viewProxySettings(settings: ProxySettings): z.infer<typeof proxySettingsView> {
  return { url: settings.url, credentialsId: settings.credentialsId, insecure: settings.insecure, ttl: formatDuration(settings.ttlMs), mirrorOf: settings.mirrorOf };
}

function toSettings(row: { namespace: string; url: string; credentials_id: string | null; insecure: number; ttl_ms: number; mirror_of: string | null }): ProxySettings {
  return { namespace: row.namespace, url: row.url, credentialsId: row.credentials_id, insecure: row.insecure === 1, ttlMs: Number(row.ttl_ms), mirrorOf: row.mirror_of };
}

function formatDuration(ms: number): string {
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms % size === 0 && ms >= size) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
