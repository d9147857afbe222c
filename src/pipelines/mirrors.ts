/**
 * @module pipelines/mirrors
 * Polling git remotes for new commits (the `mirror` trigger of pipelines).
 *
 * Every `tickMs` the poller asks `list()` for the mirrored pipelines and polls those whose
 * `intervalMs` has passed since their last poll (`git ls-remote --heads`). State per pipeline is
 * one row of `pipeline_mirrors`: `heads` (JSON object branch → commit of the branches matching
 * the pipeline's globs; the JSON `null` while nothing was recorded yet), `last_polled_at`
 * (epoch ms of the last attempt, successful or not) and `last_error` (null after a clean poll).
 *
 * - The **first** successful poll of a pipeline only records the heads; it triggers nothing
 *   (otherwise adding a mirror would run the pipeline once per existing branch). `forget()`
 *   starts over (for example after the pipeline's source URL changed).
 * - Later polls call `onNewCommit` once per matching branch whose head moved, and for a new
 *   matching branch (`before: null`, `changedFiles: null`). Deleted branches are dropped from
 *   the state silently. `changedFiles` comes from `git/remote-changes.changedFiles` (null when unknown).
 * - `onNewCommit` is called **before** the new head is saved, and the head is saved only when
 *   it resolved: a crash or a failed trigger re-triggers the commit at the next poll rather than
 *   losing it (at-least-once; the receiver may see a commit twice after a crash).
 * - A failing remote (or a failing `credentials()` / `onNewCommit`) records `last_error` and is
 *   retried at the next interval; nothing thrown by a poll escapes the poller.
 * - Polls of one pipeline never overlap (a `pollNow` during a poll waits for it, then polls
 *   again); different pipelines are polled concurrently, `concurrency` at a time.
 * - `close()` stops the timer, cancels running git commands, starts no new trigger and waits for
 *   the polls in flight (including an `onNewCommit` already called).
 * Within one process only: two servers polling the same pipelines would both trigger.
 */
import type { Logger } from 'pino';
import type { Database } from '../db/db.js';
import { changedFiles, lsRemoteHeads } from '../git/remote-changes.js';
import type { GitCredentials } from '../git/remote.js';
import { matchesRef } from './path-filter.js';

export interface MirrorTarget {
  pipelineId: string;
  url: string;
  /** Branch globs (see path-filter); empty = every branch. */
  branches: string[];
  intervalMs: number;
  credentials?: () => Promise<GitCredentials | undefined>;
}

export interface MirrorChange {
  branch: string;
  /** The head recorded before; null for a branch seen for the first time. */
  before: string | null;
  after: string;
  changedFiles: string[] | null;
}

export interface MirrorPollerOptions {
  db: Database;
  list: () => Promise<MirrorTarget[]>;
  onNewCommit: (pipelineId: string, change: MirrorChange) => Promise<void>;
  /** Bare cache repositories for changed-file diffs (one per URL). */
  cacheDir: string;
  /** How often due pipelines are looked for. Default 10 s. */
  tickMs?: number;
  logger?: Logger;
  now?: () => number;
  /** Timed polls happen only while this answers true (several replicas: the mirror lease's holder). */
  active?: () => boolean;
  /** Pipelines polled at the same time. Default 4. */
  concurrency?: number;
  /** Limit of one git operation (ls-remote, diff fetch). Default 60 s and 5 minutes. */
  gitTimeoutMs?: number;
}

export interface MirrorState {
  heads: Record<string, string> | null;
  lastPolledAt: number | null;
  lastError: string | null;
}

const defaultIntervalMs = 60_000;

export class MirrorPoller {
  private readonly db: Database;
  private readonly options: MirrorPollerOptions;
  private readonly now: () => number;
  private readonly tickMs: number;
  private readonly concurrency: number;
  private readonly abort = new AbortController();
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Start of the last attempt per pipeline, in case the database write of it failed. */
  private readonly attempted = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private closed = false;
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(options: MirrorPollerOptions) {
    this.options = options;
    this.db = options.db;
    this.now = options.now ?? Date.now;
    this.tickMs = Math.max(10, options.tickMs ?? 10_000);
    this.concurrency = Math.max(1, options.concurrency ?? 4);
  }

  /** Starts the timer; the first tick runs right away. */
  start(): void {
    if (this.closed || this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.tickMs);
    this.timer.unref();
    void this.tick();
  }

  /**
   * Polls now, ignoring intervals: one pipeline (which must be in `list()`) or all of them.
   * Resolves when the polls are done; poll failures are recorded, not thrown.
   */
  async pollNow(pipelineId?: string): Promise<void> {
    if (this.closed) throw new Error('the mirror poller is closed');
    const targets = await this.options.list();
    const chosen = pipelineId === undefined ? targets : targets.filter((target) => target.pipelineId === pipelineId);
    if (pipelineId !== undefined && chosen.length === 0) throw new Error(`pipeline ${pipelineId} has no mirror trigger`);
    await Promise.all(chosen.map((target) => this.schedule(target, true)));
  }

  /** The stored state of a pipeline's mirror, or null when it was never polled. */
  async state(pipelineId: string): Promise<MirrorState | null> {
    const row = await this.db.kysely.selectFrom('pipeline_mirrors').selectAll().where('pipeline_id', '=', pipelineId).executeTakeFirst();
    if (!row) return null;
    const heads = parseHeads(row.heads);
    return { heads: heads && Object.fromEntries(Object.entries(heads)), lastPolledAt: row.last_polled_at === null ? null : Number(row.last_polled_at), lastError: row.last_error };
  }

  /** Drops a pipeline's state: its next poll records the heads again without triggering. */
  async forget(pipelineId: string): Promise<void> {
    await this.inFlight.get(pipelineId);
    this.attempted.delete(pipelineId);
    await this.db.write((trx) => trx.deleteFrom('pipeline_mirrors').where('pipeline_id', '=', pipelineId).execute());
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.abort.abort();
    await this.ticking;
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight.values()]);
  }

  private tick(): Promise<void> {
    if (this.closed || this.ticking) return this.ticking ?? Promise.resolve();
    if (this.options.active && !this.options.active()) return Promise.resolve();
    this.ticking = this.dueTargets()
      .then((due) => {
        for (const target of due) void this.schedule(target, false);
      })
      .catch((error: unknown) => this.options.logger?.warn({ err: error }, 'mirror poller: listing the mirrored pipelines failed'))
      .finally(() => {
        this.ticking = undefined;
      });
    return this.ticking;
  }

  private async dueTargets(): Promise<MirrorTarget[]> {
    const targets = await this.options.list();
    const candidates = targets.filter((target) => !this.inFlight.has(target.pipelineId));
    if (candidates.length === 0) return [];
    const polledAt = new Map<string, number | null>();
    for (let i = 0; i < candidates.length; i += 500) {
      const ids = candidates.slice(i, i + 500).map((target) => target.pipelineId);
      const rows = await this.db.kysely.selectFrom('pipeline_mirrors').select(['pipeline_id', 'last_polled_at']).where('pipeline_id', 'in', ids).execute();
      for (const row of rows) polledAt.set(row.pipeline_id, row.last_polled_at === null ? null : Number(row.last_polled_at));
    }
    const now = this.now();
    return candidates.filter((target) => {
      const last = Math.max(polledAt.get(target.pipelineId) ?? -Infinity, this.attempted.get(target.pipelineId) ?? -Infinity);
      const interval = Number.isFinite(target.intervalMs) && target.intervalMs > 0 ? target.intervalMs : defaultIntervalMs;
      return now - last >= interval;
    });
  }

  /** Queues a poll of one pipeline after any poll of it in flight. Never rejects. */
  private schedule(target: MirrorTarget, force: boolean): Promise<void> {
    const id = target.pipelineId;
    const previous = this.inFlight.get(id);
    if (previous && !force) return previous;
    const run = (previous ?? Promise.resolve()).then(() => this.limited(() => this.pollOne(target)));
    const tracked = run.catch((error: unknown) => this.options.logger?.error({ err: error, pipelineId: id }, 'mirror poller: unexpected failure')).finally(() => {
      if (this.inFlight.get(id) === tracked) this.inFlight.delete(id);
    });
    this.inFlight.set(id, tracked);
    return tracked;
  }

  private async limited(fn: () => Promise<void>): Promise<void> {
    if (this.active >= this.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active += 1;
    try {
      await fn();
    } finally {
      this.active -= 1;
      this.waiting.shift()?.();
    }
  }

  private async save(pipelineId: string, heads: Record<string, string> | null, polledAt: number, lastError: string | null): Promise<void> {
    const values = { heads: JSON.stringify(heads === null ? null : sortKeys(heads)), last_polled_at: polledAt, last_error: lastError === null ? null : lastError.slice(0, 2_000) };
    await this.db.write((trx) =>
      trx.insertInto('pipeline_mirrors').values({ pipeline_id: pipelineId, ...values }).onConflict((conflict) => conflict.column('pipeline_id').doUpdateSet(values)).execute(),
    );
  }

  private async pollOne(target: MirrorTarget): Promise<void> {
    if (this.closed) return;
    const id = target.pipelineId;
    const logger = this.options.logger?.child({ pipelineId: id });
    const startedAt = this.now();
    this.attempted.set(id, startedAt);
    const row = await this.db.kysely.selectFrom('pipeline_mirrors').select('heads').where('pipeline_id', '=', id).executeTakeFirst();
    const saved = row ? parseHeads(row.heads) : null;

    let credentials: GitCredentials | undefined;
    let remote: Map<string, string>;
    try {
      credentials = await target.credentials?.();
      remote = await lsRemoteHeads(target.url, { credentials, signal: this.abort.signal, timeoutMs: this.options.gitTimeoutMs });
    } catch (error) {
      if (this.closed) return; // cancelled by close(): not an error of the remote
      const message = error instanceof Error ? error.message : String(error);
      logger?.warn({ err: message }, 'mirror poller: polling the remote failed');
      await this.save(id, saved, startedAt, message);
      return;
    }

    const matching = emptyHeads();
    for (const [branch, commit] of remote) if (matchesRef(target.branches, branch)) matching[branch] = commit;

    if (saved === null) {
      await this.save(id, matching, startedAt, null);
      logger?.info({ branches: Object.keys(matching).length }, 'mirror poller: recorded the heads (first poll, nothing triggered)');
      return;
    }

    const heads = emptyHeads();
    // Branches gone from the remote (or no longer matching) are dropped.
    for (const branch of Object.keys(saved)) if (Object.hasOwn(matching, branch)) heads[branch] = saved[branch]!;
    const errors: string[] = [];
    for (const branch of Object.keys(matching).sort()) {
      const after = matching[branch]!;
      const before = Object.hasOwn(saved, branch) ? saved[branch]! : null;
      if (before === after) continue;
      let files: string[] | null = null;
      if (before !== null) {
        try {
          files = await changedFiles(target.url, before, after, { cacheDir: this.options.cacheDir, credentials, signal: this.abort.signal, timeoutMs: this.options.gitTimeoutMs });
        } catch (error) {
          logger?.warn({ err: error instanceof Error ? error.message : String(error), branch }, 'mirror poller: cannot tell the changed files');
        }
      }
      if (this.closed) break;
      try {
        await this.options.onNewCommit(id, { branch, before, after, changedFiles: files });
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        logger?.warn({ err: message, branch, commit: after }, 'mirror poller: triggering the pipeline failed; retried at the next poll');
        errors.push(`triggering branch ${branch} at ${after.slice(0, 12)} failed: ${message}`);
        continue;
      }
      heads[branch] = after;
      // Saved right away: a crash after this point does not trigger the branch again.
      await this.save(id, heads, startedAt, null);
    }
    await this.save(id, heads, startedAt, errors.length > 0 ? errors.join('; ') : null);
  }
}

/** A branch → commit object without a prototype (a branch may be called `__proto__`). */
function emptyHeads(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

function parseHeads(text: string): Record<string, string> | null {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
    const heads = emptyHeads();
    for (const [branch, commit] of Object.entries(value)) if (typeof commit === 'string') heads[branch] = commit;
    return heads;
  } catch {
    return null;
  }
}

function sortKeys(heads: Record<string, string>): Record<string, string> {
  const sorted = emptyHeads();
  for (const branch of Object.keys(heads).sort()) sorted[branch] = heads[branch]!;
  return sorted;
}
