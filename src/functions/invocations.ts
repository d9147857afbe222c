/**
 * @module functions/invocations
 * Asynchronous invocations of event functions: the event is recorded, a durable job runs it
 * (retried on a 5xx answer, a timeout or a crash, up to the configured attempts) and the answer
 * is kept for the caller to fetch.
 */
import { randomBytes } from 'node:crypto';
import type { Database } from '../db/db.js';
import type { JobQueue } from '../db/job-queue.js';
import { FunctionFailedError, FunctionNotFoundError } from './errors.js';
import type { FunctionObserver, Invoker, InvokeResult } from './invoker.js';
import { findFunction, iso } from './records.js';
import type { InvocationView } from './spec.js';

export interface AsyncInvocationsDeps {
  db: Database;
  invoker: Invoker;
  /** Where invocation jobs go (queue `invocations`); absent: nothing runs them. */
  queue?: Pick<JobQueue, 'enqueue'>;
  /** Attempts of one invocation. Default 3. */
  attempts?: number;
  observer?: FunctionObserver;
}

export class AsyncInvocations {
  constructor(private readonly deps: AsyncInvocationsDeps) {}

  private get db() { return this.deps.db; }

  /** Queues a recorded invocation; its job may run past the function's timeout by a minute (start, retries). */
  async enqueue(id: string, timeoutMs: number): Promise<void> {
    if (!this.deps.queue) throw new Error('asynchronous invocations are not available on this server');
    await this.deps.queue.enqueue('invocations', { invocationId: id }, { maxAttempts: this.deps.attempts ?? 3, timeoutMs: timeoutMs + 60_000 });
  }

  async record(namespace: string, name: string, request: { body: Buffer; contentType?: string }): Promise<InvocationView> {
    const row = await findFunction(this.db, namespace, name);
    const id = `inv_${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;
    await this.db.write((trx) => trx.insertInto('invocations').values({
      id, function_id: row.id, revision: null, status: 'queued', attempts: 0,
      request: JSON.stringify({ body: request.body.toString('base64'), contentType: request.contentType ?? 'application/json' }),
      result: null, error: null, created_at: Date.now(), finished_at: null,
    }).execute());
    return this.get(namespace, name, id);
  }

  /** One attempt of an async invocation; throws (for a retry) when the function failed. */
  async run(id: string, attempt: number, lastAttempt: boolean): Promise<void> {
    const row = await this.db.kysely.selectFrom('invocations as i').innerJoin('functions as f', 'f.id', 'i.function_id')
      .select(['i.id', 'i.request', 'f.namespace', 'f.name']).where('i.id', '=', id).executeTakeFirst();
    if (!row) return; // the function was deleted
    const request = JSON.parse(row.request) as { body: string; contentType: string };
    await this.db.write((trx) => trx.updateTable('invocations').set({ status: 'running', attempts: attempt }).where('id', '=', id).execute());
    try {
      const result = await this.deps.invoker.invoke(row.namespace, row.name, {
        method: 'POST', path: '/invoke', body: Buffer.from(request.body, 'base64'),
        headers: { 'content-type': request.contentType }, invokeType: 'async', requestId: id,
      }) as InvokeResult;
      if (result.statusCode >= 500) throw new FunctionFailedError(`the function answered ${result.statusCode}`);
      const headers = Object.fromEntries(Object.entries(result.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(', ') : v]));
      await this.db.write((trx) => trx.updateTable('invocations').set({
        status: 'succeeded', revision: result.revision, finished_at: Date.now(), error: null,
        result: JSON.stringify({ statusCode: result.statusCode, headers, body: result.body.toString('base64'), isBase64Encoded: true }),
      }).where('id', '=', id).execute());
      this.deps.observer?.asyncAttempt?.('succeeded');
    } catch (error) {
      const message = (error as Error).message;
      this.deps.observer?.asyncAttempt?.(lastAttempt || error instanceof FunctionNotFoundError ? 'failed' : 'retried');
      await this.db.write((trx) => trx.updateTable('invocations').set({
        status: lastAttempt || error instanceof FunctionNotFoundError ? 'failed' : 'queued', error: message, finished_at: lastAttempt ? Date.now() : null,
      }).where('id', '=', id).execute());
      if (error instanceof FunctionNotFoundError) return;
      throw error;
    }
  }

  async get(namespace: string, name: string, id: string): Promise<InvocationView> {
    const fn = await findFunction(this.db, namespace, name);
    const row = await this.db.kysely.selectFrom('invocations').selectAll().where('id', '=', id).where('function_id', '=', fn.id).executeTakeFirst();
    if (!row) throw new FunctionNotFoundError(`no invocation "${id}" of "${name}"`);
    return {
      id: row.id, function: name, revision: row.revision, status: row.status as InvocationView['status'], attempts: row.attempts,
      createdAt: iso(row.created_at), ...(row.finished_at ? { finishedAt: iso(row.finished_at) } : {}),
      ...(row.result ? { result: JSON.parse(row.result) as InvocationView['result'] } : {}),
      ...(row.error && row.status !== 'succeeded' ? { error: row.error } : {}),
    };
  }
}
