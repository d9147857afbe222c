/**
 * @module functions/records
 * Reading the functions part's rows (`functions`, `function_revisions`) into the API's views,
 * and the shapes written for a new revision. Only the functions part reads these tables.
 */
import type { Database } from '../db/db.js';
import type { FunctionRevisionTable, FunctionTable } from '../db/schema.js';
import { FunctionNotFoundError } from './errors.js';
import type { LiveFunctions } from './live.js';
import type { FunctionStatus, FunctionView, RevisionView, StoredConfig } from './spec.js';

export const iso = (ms: number) => new Date(ms).toISOString();

export async function findFunction(db: Database, namespace: string, name: string): Promise<FunctionTable> {
  const row = await db.kysely.selectFrom('functions').selectAll().where('namespace', '=', namespace).where('name', '=', name).executeTakeFirst();
  if (!row) throw new FunctionNotFoundError(`no function "${name}" in "${namespace}"`);
  return row;
}

/** The API's view of a function: its settings (secrets masked), status from its latest and active revisions, instances. */
export async function functionView(db: Database, live: LiveFunctions, namespace: string, name: string): Promise<FunctionView> {
  const row = await findFunction(db, namespace, name);
  const config = JSON.parse(row.config) as StoredConfig;
  const revisions = await db.kysely.selectFrom('function_revisions').select(['number', 'status', 'reason', 'image_digest'])
    .where('function_id', '=', row.id).where('number', 'in', [row.latest_revision, row.active_revision ?? row.latest_revision]).execute();
  const latest = revisions.find((r) => r.number === row.latest_revision);
  const active = revisions.find((r) => r.number === row.active_revision);
  let status: FunctionStatus = active ? 'ready' : 'failed';
  let statusReason: string | undefined;
  if (latest?.status === 'deploying') status = 'deploying';
  else if (latest?.status === 'failed') {
    statusReason = `revision ${latest.number} failed: ${latest.reason ?? 'unknown reason'}`;
    if (!active) status = 'failed';
  }
  const state = live.get(namespace, name);
  const secretEnv = Object.fromEntries(Object.keys(config.secretEnv).map((k) => [k, '****']));
  return {
    namespace, name: row.name, access: row.access as 'private' | 'public',
    ...config, secretEnv,
    imageDigest: active?.image_digest ?? null,
    status, ...(statusReason ? { statusReason } : {}),
    activeRevision: row.active_revision, latestRevision: row.latest_revision,
    instances: state?.active?.pool.size ?? 0,
    url: config.type === 'http' ? `/fn/${namespace}/${row.name}/` : `/api/v1/namespaces/${namespace}/functions/${row.name}/invocations`,
    createdAt: iso(row.created_at), updatedAt: iso(row.updated_at),
  };
}

/** A new revision, `deploying` until the deployer says otherwise. */
export function revisionRow(functionId: string, number: number, config: StoredConfig, digest: string | null, now: number): FunctionRevisionTable {
  return { function_id: functionId, number, image: config.image, image_digest: digest, config: JSON.stringify(config), status: 'deploying', reason: null, output: null, created_at: now, ready_at: null };
}

export function revisionView(r: FunctionRevisionTable, active: number | null): RevisionView {
  return {
    number: r.number, image: r.image, imageDigest: r.image_digest, status: r.status as RevisionView['status'],
    ...(r.reason ? { reason: r.reason } : {}), ...(r.output ? { output: JSON.parse(r.output) as string[] } : {}),
    active: r.number === active, createdAt: iso(r.created_at), ...(r.ready_at ? { readyAt: iso(r.ready_at) } : {}),
  };
}

/** The vault context a secret variable of a function is sealed under. */
export function secretContext(functionId: string, name: string): string {
  return `function:${functionId}:env:${name}`;
}
