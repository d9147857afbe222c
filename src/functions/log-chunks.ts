/**
 * @module functions/log-chunks
 * Function logs in the blob storage's object area (`logs.driver: blobstore`). Every replica
 * writes its own instances' lines; a function's log is all replicas' chunks:
 *
 *   logs/functions/<namespace>/<name>/
 *   └── <write time, 13 digits>-<writer id>-<counter>     one batch of JSON lines
 *
 * Sorted by name the chunks are in time order (to the batch; replicas' clocks agree closely
 * enough for logs). Reading lists and concatenates from the newest back to the tail asked
 * for; following polls for chunks of other writers (this process's lines reach its followers
 * directly). Past `maxBytes` the oldest chunks are deleted.
 */
import { randomBytes } from 'node:crypto';
import type { FunctionLogBackend } from './logs.js';
import { parseLine } from './logs.js';
import type { LogLine } from './spec.js';

/** The blob storage's object area (storage/blob-store `ObjectArea`), as this part needs it. */
export interface LogObjects {
  put(key: string, body: Buffer): Promise<void>;
  get(key: string): Promise<Buffer | null>;
  list(prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt: number }>;
  delete(keys: string[]): Promise<void>;
}

export interface ObjectLogOptions {
  maxBytes?: number;
  batchMs?: number;
  pollMs?: number;
  /** This process's name in chunk keys; random by default. */
  writer?: string;
}

export class ObjectLogBackend implements FunctionLogBackend {
  readonly batchMs: number;
  private readonly maxBytes: number;
  private readonly pollMs: number;
  private readonly writer: string;
  private counter = 0;
  /** Bytes written per function since its chunks were last measured. */
  private readonly unmeasured = new Map<string, number>();

  constructor(private readonly objects: LogObjects, options: ObjectLogOptions = {}) {
    this.maxBytes = options.maxBytes ?? 10 * 1024 * 1024;
    this.batchMs = options.batchMs ?? 1000;
    this.pollMs = options.pollMs ?? 1000;
    this.writer = options.writer ?? randomBytes(4).toString('hex');
  }

  private prefix(namespace: string, name: string): string {
    return `logs/functions/${namespace}/${name}/`;
  }

  private async chunks(namespace: string, name: string): Promise<Array<{ key: string; size: number }>> {
    const found: Array<{ key: string; size: number }> = [];
    for await (const object of this.objects.list(this.prefix(namespace, name))) found.push({ key: object.key, size: object.size });
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async write(namespace: string, name: string, lines: LogLine[]): Promise<void> {
    const key = `${this.prefix(namespace, name)}${String(Date.now()).padStart(13, '0')}-${this.writer}-${String(++this.counter).padStart(6, '0')}`;
    const body = Buffer.from(lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
    await this.objects.put(key, body);
    const id = `${namespace}/${name}`;
    const since = (this.unmeasured.get(id) ?? 0) + body.length;
    this.unmeasured.set(id, since);
    if (since > this.maxBytes / 4) await this.prune(namespace, name);
  }

  private async prune(namespace: string, name: string): Promise<void> {
    this.unmeasured.delete(`${namespace}/${name}`);
    const chunks = await this.chunks(namespace, name);
    let total = chunks.reduce((sum, chunk) => sum + chunk.size, 0);
    const drop: string[] = [];
    for (const chunk of chunks) {
      if (total <= this.maxBytes) break;
      drop.push(chunk.key);
      total -= chunk.size;
    }
    await this.objects.delete(drop);
  }

  private async parse(keys: string[]): Promise<LogLine[]> {
    const bodies = await Promise.all(keys.map((key) => this.objects.get(key)));
    const lines: LogLine[] = [];
    for (const body of bodies) {
      for (const text of (body?.toString('utf8') ?? '').split('\n')) {
        const line = text ? parseLine(text) : undefined;
        if (line) lines.push(line);
      }
    }
    return lines;
  }

  async read(namespace: string, name: string, tail?: number): Promise<LogLine[]> {
    const keys = (await this.chunks(namespace, name)).map((chunk) => chunk.key);
    if (tail === undefined) return this.parse(keys);
    // From the newest chunk back, until there are enough lines.
    let lines: LogLine[] = [];
    for (let end = keys.length; end > 0 && lines.length < tail; end -= 8) {
      lines = [...(await this.parse(keys.slice(Math.max(0, end - 8), end))), ...lines];
    }
    return lines.slice(Math.max(0, lines.length - tail));
  }

  async remove(namespace: string, name: string): Promise<void> {
    await this.objects.delete((await this.chunks(namespace, name)).map((chunk) => chunk.key));
  }

  watch(namespace: string, name: string, listener: (line: LogLine) => void): () => void {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let seen: Set<string> | undefined;
    const poll = async () => {
      try {
        const keys = (await this.chunks(namespace, name)).map((chunk) => chunk.key);
        // Only what others write from now on: the first listing is the starting point.
        const fresh = seen ? keys.filter((key) => !seen!.has(key) && !key.includes(`-${this.writer}-`)) : [];
        seen = new Set(keys);
        for (const line of await this.parse(fresh)) if (!stopped) listener(line);
      } catch {
        // The store hiccuped: the next poll tries again.
      }
      if (!stopped) timer = setTimeout(() => void poll(), this.pollMs);
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }
}
