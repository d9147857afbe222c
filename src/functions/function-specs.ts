/**
 * @module functions/function-specs
 * The function resource: its settings in the db (secret variables sealed by the vault) and the
 * revisions a change makes. Every change to what a revision holds makes a new immutable
 * revision and queues its deploy; a change to `access` alone does not.
 */
import { randomBytes } from 'node:crypto';
import type { Database } from '../db/db.js';
import type { FunctionTable } from '../db/schema.js';
import type { Vault } from '../vault/vault.js';
import type { Deployer } from './deployer.js';
import { FunctionConflictError, FunctionInputError, FunctionNotFoundError } from './errors.js';
import type { GatewayFacts } from './gateway-facts.js';
import type { ImageLocator } from './image-locator.js';
import type { LiveFunctions } from './live.js';
import type { FunctionLogs } from './logs.js';
import { findFunction, functionView, revisionRow, secretContext } from './records.js';
import {
  functionConfigSchema, functionInputSchema, functionPatchSchema, type FunctionConfig, type FunctionInput, type FunctionPatch,
  type FunctionView, type StoredConfig,
} from './spec.js';

export interface FunctionSpecsDeps {
  db: Database;
  images: ImageLocator;
  deployer: Deployer;
  live: LiveFunctions;
  facts: GatewayFacts;
  logs: FunctionLogs;
  vault?: Vault;
}

export interface UpsertOptions {
  /** Who creates the function when it is missing. */
  actor: string | null;
  /** `env` adds to the function's current variables instead of replacing them. */
  mergeEnv?: boolean;
  /** The type of a function created here. Default `http`. */
  typeIfCreated?: 'http' | 'event';
}

const issues = (error: { issues: Array<{ path: PropertyKey[]; message: string }> }) => error.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`).join('; ');

export class FunctionSpecs {
  constructor(private readonly deps: FunctionSpecsDeps) {}

  private get db() { return this.deps.db; }

  async create(namespace: string, input: FunctionInput, actor: string | null): Promise<FunctionView> {
    await this.deps.images.check(input.image);
    const id = `fn_${randomBytes(8).toString('hex')}`;
    const { name, access, ...config } = input;
    const stored = await this.seal(id, config, {});
    const now = Date.now();
    try {
      await this.db.write(async (trx) => {
        await trx.insertInto('functions').values({
          id, namespace, name, access, config: JSON.stringify(stored), active_revision: null, latest_revision: 1, created_by: actor, created_at: now, updated_at: now,
        }).execute();
        await trx.insertInto('function_revisions').values(revisionRow(id, 1, stored, null, now)).execute();
      });
    } catch (error) {
      if (await findFunction(this.db, namespace, name).catch(() => null)) throw new FunctionConflictError(`function "${name}" already exists in "${namespace}"`);
      throw error;
    }
    this.deps.facts.forget(namespace, name);
    const live = this.deps.live.of({ id, namespace, name });
    live.firstDeploy = this.deps.deployer.enqueue(live, 1, false);
    return this.view(namespace, name);
  }

  async update(namespace: string, name: string, patch: FunctionPatch): Promise<FunctionView> {
    const row = await findFunction(this.db, namespace, name);
    const current = JSON.parse(row.config) as StoredConfig;
    const { access, secretEnv, ...changes } = patch;
    const merged: Record<string, unknown> = { ...current, secretEnv: {} };
    for (const [key, value] of Object.entries(changes)) {
      if (value === null) delete merged[key];
      else if (value !== undefined) merged[key] = value;
    }
    const parsed = functionConfigSchema.safeParse(merged);
    if (!parsed.success) throw new FunctionInputError(issues(parsed.error));
    const config = parsed.data;
    if (config.minInstances > config.maxInstances) throw new FunctionInputError('minInstances: must not exceed maxInstances');
    if (patch.image !== undefined || patch.pinDigest !== undefined) await this.deps.images.check(config.image);
    // Secrets not named in the patch keep their sealed values; named ones are replaced.
    const stored = await this.seal(row.id, config, secretEnv === undefined ? current.secretEnv : {});
    const changed = JSON.stringify(canonical(stored)) !== JSON.stringify(canonical(current)) || (secretEnv !== undefined && !sameKeys(secretEnv, current.secretEnv));
    const forceRevision = secretEnv !== undefined && Object.keys(secretEnv).length > 0;
    const now = Date.now();
    let number: number | undefined;
    await this.db.write(async (trx) => {
      const fresh = await trx.selectFrom('functions').select(['latest_revision']).where('id', '=', row.id).executeTakeFirstOrThrow();
      const updates: Partial<FunctionTable> = { updated_at: now };
      if (access) updates.access = access;
      if (changed || forceRevision) {
        number = fresh.latest_revision + 1;
        updates.config = JSON.stringify(stored);
        updates.latest_revision = number;
        await trx.insertInto('function_revisions').values(revisionRow(row.id, number, stored, null, now)).execute();
      }
      await trx.updateTable('functions').set(updates).where('id', '=', row.id).execute();
    });
    this.deps.facts.forget(namespace, name, row.id);
    if (number !== undefined) this.deps.deployer.enqueue(this.deps.live.of(row), number, false);
    return this.view(namespace, name);
  }

  /**
   * Applies `settings` (fields of a patch) to the function, or creates it with them when it is
   * missing: what pipeline deploy stages and automation rules do. Resolves when the new
   * revision is recorded, not when it is ready.
   */
  async upsert(namespace: string, name: string, settings: Record<string, unknown>, options: UpsertOptions): Promise<{ function: FunctionView; created: boolean }> {
    const current = await functionView(this.db, this.deps.live, namespace, name).catch((error: Error) => {
      if (error instanceof FunctionNotFoundError) return null;
      throw error;
    });
    if (!current) {
      const input = functionInputSchema.safeParse({ type: options.typeIfCreated ?? 'http', ...settings, name });
      if (!input.success) throw new FunctionInputError(issues(input.error));
      try {
        return { function: await this.create(namespace, input.data, options.actor), created: true };
      } catch (error) {
        // Created by someone else meanwhile: update it like one that was there.
        if (!(error instanceof FunctionConflictError)) throw error;
      }
    }
    const patch = functionPatchSchema.safeParse(settings);
    if (!patch.success) throw new FunctionInputError(issues(patch.error));
    const env = options.mergeEnv && patch.data.env
      ? { ...(current ?? await functionView(this.db, this.deps.live, namespace, name)).env, ...patch.data.env }
      : patch.data.env;
    return { function: await this.update(namespace, name, { ...patch.data, ...(env ? { env } : {}) }), created: false };
  }

  async remove(namespace: string, name: string): Promise<void> {
    const row = await findFunction(this.db, namespace, name);
    await this.db.write(async (trx) => {
      await trx.deleteFrom('function_keys').where('function_id', '=', row.id).execute();
      await trx.deleteFrom('invocations').where('function_id', '=', row.id).execute();
      await trx.deleteFrom('function_revisions').where('function_id', '=', row.id).execute();
      await trx.deleteFrom('functions').where('id', '=', row.id).execute();
    });
    this.deps.facts.forget(namespace, name, row.id);
    const live = this.deps.live.get(namespace, name);
    if (live && live.id === row.id) await this.deps.deployer.retire(live);
    await this.deps.logs.remove(namespace, name);
  }

  async list(namespace: string): Promise<FunctionView[]> {
    const rows = await this.db.kysely.selectFrom('functions').select('name').where('namespace', '=', namespace).orderBy('name').execute();
    return Promise.all(rows.map((r) => this.view(namespace, r.name)));
  }

  view(namespace: string, name: string): Promise<FunctionView> {
    return functionView(this.db, this.deps.live, namespace, name);
  }

  private async seal(id: string, config: FunctionConfig, keep: Record<string, string>): Promise<StoredConfig> {
    const secretEnv: Record<string, string> = { ...keep };
    const entries = Object.entries(config.secretEnv);
    if (entries.length > 0 && !this.deps.vault) throw new FunctionInputError('secretEnv needs the vault, which is not configured');
    for (const [k, v] of entries) secretEnv[k] = await this.deps.vault!.seal(v, secretContext(id, k));
    return { ...config, secretEnv };
  }
}

/** Stable JSON for comparing configs (sealed secrets compared by name only). */
function canonical(config: StoredConfig): unknown {
  const sorted = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(sorted);
    if (value && typeof value === 'object') return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sorted((value as Record<string, unknown>)[k])]));
    return value;
  };
  return sorted({ ...config, secretEnv: Object.keys(config.secretEnv).sort() });
}

function sameKeys(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  return JSON.stringify(Object.keys(a).sort()) === JSON.stringify(Object.keys(b).sort());
}
