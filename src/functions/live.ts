/**
 * @module functions/live
 * What this process holds of each function in memory: one RevisionPool per revision with
 * instances, the active revision, the chain that serialises its deploys, and its request
 * metrics. The deployer fills it; the gateway reads it on every request.
 */
import type { FunctionTable } from '../db/schema.js';
import { RequestMetrics } from './metrics.js';
import type { RevisionPool } from './pool.js';
import type { StoredConfig } from './spec.js';

export interface Live {
  id: string;
  namespace: string;
  name: string;
  pools: Map<number, RevisionPool>;
  active?: { number: number; pool: RevisionPool; config: StoredConfig; digest: string };
  /** Serialises deploys of one function. */
  chain: Promise<unknown>;
  /** The deploy that will produce the first active revision, for requests that arrive before it. */
  firstDeploy?: Promise<unknown>;
  metrics: RequestMetrics;
  deleted: boolean;
}

export class LiveFunctions {
  private readonly byName = new Map<string, Live>();

  /** The live state of a function row; a fresh one when the name now belongs to another function. */
  of(row: Pick<FunctionTable, 'id' | 'namespace' | 'name'>): Live {
    const key = `${row.namespace}/${row.name}`;
    let live = this.byName.get(key);
    if (!live || live.id !== row.id) {
      live = { id: row.id, namespace: row.namespace, name: row.name, pools: new Map(), chain: Promise.resolve(), metrics: new RequestMetrics(), deleted: false };
      this.byName.set(key, live);
    }
    return live;
  }

  get(namespace: string, name: string): Live | undefined {
    return this.byName.get(`${namespace}/${name}`);
  }

  /** Forgets a deleted function (its pools are closed by the caller). */
  delete(live: Live): void {
    live.deleted = true;
    if (this.byName.get(`${live.namespace}/${live.name}`) === live) this.byName.delete(`${live.namespace}/${live.name}`);
  }

  all(): Live[] {
    return [...this.byName.values()];
  }
}
