/**
 * @module logs/chunked-log-store
 * The `blobstore` logs driver: a log as numbered chunk objects in the blob storage's object
 * area, because S3 objects cannot be appended to. Layout per log:
 *
 *   logs/<kind>/<id>/
 *   ├── 1765100000000-000001    lines flushed together (every `flushBytes` or `flushIntervalMs`,
 *   ├── 1765100001000-000002    and on finish); named by write time, then a counter: sorted = in order
 *   ├── live                    heartbeat of the writer (rewritten every `heartbeatMs`)
 *   └── end                     written by `finish`: the log is complete
 *
 * Reading is list + concatenate. Any replica follows a log another one writes by polling the
 * listing for new chunks until `end` appears, or until the writer's heartbeat is older than
 * `staleMs` (it died; the job queue hands the work to another writer, which resumes the log).
 * On the writing replica followers get lines at once from memory, as with `fs`.
 */
import { checkLogId, lineText, LiveLines, type LogFollower, type LogStore } from './log-store.js';

/** The blob storage's object area (storage/blob-store `ObjectArea`), as this part needs it. */
export interface LogObjects {
  put(key: string, body: Buffer): Promise<void>;
  get(key: string): Promise<Buffer | null>;
  list(prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt: number }>;
  delete(keys: string[]): Promise<void>;
}

export interface ChunkedLogOptions {
  flushIntervalMs?: number;
  flushBytes?: number;
  pollMs?: number;
  heartbeatMs?: number;
  staleMs?: number;
}

interface Writing {
  live: LiveLines;
  pending: string[];
  pendingBytes: number;
  timer?: NodeJS.Timeout;
  heartbeat: NodeJS.Timeout;
  /** Chunk writes in order; a failed write is retried with the next flush. */
  flushing: Promise<void>;
  counter: number;
}

interface Listing {
  chunks: string[];
  ended: boolean;
  heartbeatAt?: number;
}

const chunkPattern = /^\d{13}-\d{6}$/;

export class ChunkedLogStore implements LogStore {
  private readonly writing = new Map<string, Writing>();
  /** Remote liveness, refreshed in the background (isLive is synchronous; callers poll it). */
  private readonly remote = new Map<string, { live: boolean; checkedAt: number; refreshing?: Promise<void> }>();
  private readonly flushIntervalMs: number;
  private readonly flushBytes: number;
  private readonly pollMs: number;
  private readonly heartbeatMs: number;
  private readonly staleMs: number;

  constructor(private readonly objects: LogObjects, private readonly kind: string, options: ChunkedLogOptions = {}) {
    this.flushIntervalMs = options.flushIntervalMs ?? 1000;
    this.flushBytes = options.flushBytes ?? 64 * 1024;
    this.pollMs = options.pollMs ?? 1000;
    this.heartbeatMs = options.heartbeatMs ?? 10_000;
    this.staleMs = options.staleMs ?? 3 * this.heartbeatMs;
  }

  private prefix(id: string): string {
    return `logs/${this.kind}/${checkLogId(id)}/`;
  }

  async start(id: string): Promise<(line: string) => void> {
    let entry = this.writing.get(id);
    if (!entry) {
      const prefix = this.prefix(id);
      // Resuming after a restart: the log is open again.
      await this.objects.delete([`${prefix}end`]);
      await this.objects.put(`${prefix}live`, Buffer.alloc(0));
      const heartbeat = setInterval(() => void this.objects.put(`${prefix}live`, Buffer.alloc(0)).catch(() => undefined), this.heartbeatMs);
      heartbeat.unref();
      entry = { live: new LiveLines(), pending: [], pendingBytes: 0, heartbeat, flushing: Promise.resolve(), counter: 0 };
      this.writing.set(id, entry);
    }
    const writing = entry;
    return (line: string) => {
      const text = lineText(line);
      writing.live.add(text);
      writing.pending.push(text);
      writing.pendingBytes += text.length + 1;
      if (writing.pendingBytes >= this.flushBytes) void this.flush(id, writing);
      else writing.timer ??= setTimeout(() => void this.flush(id, writing), this.flushIntervalMs);
    };
  }

  /** Writes the pending lines as the next chunk; resolves when every chunk so far is stored. */
  private flush(id: string, writing: Writing): Promise<void> {
    clearTimeout(writing.timer);
    writing.timer = undefined;
    if (writing.pending.length === 0) return writing.flushing;
    const lines = writing.pending;
    writing.pending = [];
    writing.pendingBytes = 0;
    const key = `${this.prefix(id)}${String(Date.now()).padStart(13, '0')}-${String(++writing.counter).padStart(6, '0')}`;
    const body = Buffer.from(lines.map((text) => `${text}\n`).join(''));
    writing.flushing = writing.flushing.then(() => this.objects.put(key, body)).catch(() => {
      // Kept for the next flush rather than lost (the chunk key stays in order: it is newer).
      writing.pending.unshift(...lines);
      writing.pendingBytes += body.length;
    });
    return writing.flushing;
  }

  async finish(id: string): Promise<void> {
    const writing = this.writing.get(id);
    if (!writing) return;
    clearInterval(writing.heartbeat);
    await this.flush(id, writing);
    if (writing.pending.length > 0) await this.flush(id, writing); // one retry of a failed write
    this.writing.delete(id);
    const prefix = this.prefix(id);
    await this.objects.put(`${prefix}end`, Buffer.alloc(0));
    await this.objects.delete([`${prefix}live`]);
    this.remote.delete(id);
    writing.live.end();
  }

  private async listing(id: string): Promise<Listing> {
    const prefix = this.prefix(id);
    const listing: Listing = { chunks: [], ended: false };
    for await (const object of this.objects.list(prefix)) {
      const name = object.key.slice(prefix.length);
      if (chunkPattern.test(name)) listing.chunks.push(object.key);
      else if (name === 'end') listing.ended = true;
      else if (name === 'live') listing.heartbeatAt = object.modifiedAt;
    }
    listing.chunks.sort();
    return listing;
  }

  private isRemoteLive(listing: Listing): boolean {
    return !listing.ended && listing.heartbeatAt !== undefined && Date.now() - listing.heartbeatAt < this.staleMs;
  }

  private async readChunks(keys: string[]): Promise<string> {
    const bodies = await Promise.all(keys.map((key) => this.objects.get(key)));
    return bodies.map((body) => body?.toString('utf8') ?? '').join('');
  }

  async read(id: string): Promise<string> {
    const writing = this.writing.get(id);
    if (writing) await this.flush(id, writing);
    const listing = await this.listing(id);
    return (await this.readChunks(listing.chunks)) + (writing?.pending.map((text) => `${text}\n`).join('') ?? '');
  }

  isLive(id: string): boolean {
    if (this.writing.has(id)) return true;
    const known = this.remote.get(id);
    if (!known || (Date.now() - known.checkedAt > this.pollMs / 2 && !known.refreshing)) {
      const entry = known ?? { live: false, checkedAt: 0 };
      entry.refreshing = this.listing(id).then((listing) => {
        entry.live = this.isRemoteLive(listing);
        entry.checkedAt = Date.now();
      }, () => undefined).finally(() => { entry.refreshing = undefined; });
      this.remote.set(id, entry);
      if (this.remote.size > 1000) this.remote.delete(this.remote.keys().next().value!);
    }
    return known?.live ?? false;
  }

  async follow(id: string, follower: LogFollower): Promise<() => void> {
    const writing = this.writing.get(id);
    if (writing) return writing.live.follow(follower);
    // Written elsewhere (or finished): replay the chunks, then poll for new ones.
    const seen = new Set<string>();
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const emit = async (listing: Listing) => {
      const fresh = listing.chunks.filter((key) => !seen.has(key));
      const text = await this.readChunks(fresh);
      for (const key of fresh) seen.add(key);
      if (stopped) return;
      for (const line of text.split('\n').slice(0, -1)) follower.line(line);
    };
    const poll = async () => {
      if (stopped) return;
      try {
        const listing = await this.listing(id);
        await emit(listing);
        if (!this.isRemoteLive(listing)) {
          stopped = true;
          follower.end();
          return;
        }
      } catch {
        // The store hiccuped: the next poll tries again.
      }
      if (!stopped) timer = setTimeout(() => void poll(), this.pollMs);
    };
    await poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /** Stops heartbeats and flushes what is pending (logs stay open for a restart to resume). */
  async close(): Promise<void> {
    for (const [id, writing] of this.writing) {
      clearInterval(writing.heartbeat);
      await this.flush(id, writing);
    }
  }
}
