/**
 * @module functions/logs
 * Instance output of every function, plus live followers. Lines are appended in batches so a
 * chatty instance costs one write per tick, not per line. Where the batches go is the backend
 * (`logs.driver`): `FileLogBackend`, one JSON-lines file per function under
 * `<dir>/<namespace>/<name>.log` (rotated once at `maxBytes` to `.log.1`); or
 * `ObjectLogBackend` (functions/log-chunks), chunk objects in the blob storage that every
 * replica writes its own instances' lines to and reads all of.
 */
import { createReadStream } from 'node:fs';
import { appendFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import type { LogLine } from './spec.js';

type Listener = (line: LogLine) => void;

/** Where batches of one function's lines are stored. */
export interface FunctionLogBackend {
  /** How long lines wait to be written together. */
  readonly batchMs: number;
  write(namespace: string, name: string, lines: LogLine[]): Promise<void>;
  /** The last `tail` lines (all when undefined), oldest first. */
  read(namespace: string, name: string, tail?: number): Promise<LogLine[]>;
  remove(namespace: string, name: string): Promise<void>;
  /** Lines other processes write from now on (other replicas' instances); absent when there are none. */
  watch?(namespace: string, name: string, listener: Listener): () => void;
}

export class FunctionLogs {
  private readonly pending = new Map<string, LogLine[]>();
  private readonly listeners = new Map<string, Set<Listener>>();
  private flushing: Promise<void> = Promise.resolve();
  private timer?: NodeJS.Timeout;
  private readonly backend: FunctionLogBackend;

  /** `target`: a folder for the file backend, or a backend. */
  constructor(target: string | FunctionLogBackend, maxBytes = 10 * 1024 * 1024) {
    this.backend = typeof target === 'string' ? new FileLogBackend(target, maxBytes) : target;
  }

  append(namespace: string, line: LogLine): void {
    const key = `${namespace}/${line.function}`;
    for (const listener of this.listeners.get(key) ?? []) listener(line);
    const batch = this.pending.get(key);
    if (batch) batch.push(line);
    else this.pending.set(key, [line]);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, this.backend.batchMs);
  }

  /** Writes every pending line; resolves when they are stored. */
  flush(): Promise<void> {
    const batches = [...this.pending];
    this.pending.clear();
    this.flushing = this.flushing.then(async () => {
      for (const [key, lines] of batches) {
        const [namespace, name] = key.split('/') as [string, string];
        await this.backend.write(namespace, name, lines);
      }
    }).catch(() => undefined);
    return this.flushing;
  }

  async read(namespace: string, name: string, tail?: number): Promise<LogLine[]> {
    await this.flush();
    return this.backend.read(namespace, name, tail);
  }

  /** Calls `listener` for every new line of the function until the returned function is called. */
  follow(namespace: string, name: string, listener: Listener): () => void {
    const key = `${namespace}/${name}`;
    let set = this.listeners.get(key);
    if (!set) this.listeners.set(key, (set = new Set()));
    set.add(listener);
    const unwatch = this.backend.watch?.(namespace, name, listener);
    return () => {
      unwatch?.();
      set!.delete(listener);
      if (set!.size === 0) this.listeners.delete(key);
    };
  }

  async remove(namespace: string, name: string): Promise<void> {
    await this.flush();
    await this.backend.remove(namespace, name);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

/** One JSON-lines file per function, rotated once. */
export class FileLogBackend implements FunctionLogBackend {
  readonly batchMs = 50;

  constructor(private readonly dir: string, private readonly maxBytes: number) {}

  private file(namespace: string, name: string): string {
    return path.join(this.dir, namespace, `${name}.log`);
  }

  async write(namespace: string, name: string, lines: LogLine[]): Promise<void> {
    const file = this.file(namespace, name);
    await mkdir(path.dirname(file), { recursive: true });
    const size = await stat(file).then((s) => s.size, () => 0);
    if (size > this.maxBytes) await rename(file, `${file}.1`).catch(() => undefined);
    await appendFile(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  }

  async read(namespace: string, name: string, tail?: number): Promise<LogLine[]> {
    const lines: LogLine[] = [];
    for (const file of [`${this.file(namespace, name)}.1`, this.file(namespace, name)]) {
      const exists = await stat(file).then(() => true, () => false);
      if (!exists) continue;
      const reader = readline.createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
      for await (const text of reader) {
        if (!text) continue;
        const line = parseLine(text);
        if (line) lines.push(line);
        if (tail !== undefined && lines.length > tail * 2 + 1000) lines.splice(0, lines.length - tail);
      }
    }
    return tail === undefined ? lines : lines.slice(Math.max(0, lines.length - tail));
  }

  async remove(namespace: string, name: string): Promise<void> {
    await rm(this.file(namespace, name), { force: true });
    await rm(`${this.file(namespace, name)}.1`, { force: true });
  }
}

/** A stored JSON line, or undefined for a line cut by a crash mid-write. */
export function parseLine(text: string): LogLine | undefined {
  try {
    return JSON.parse(text) as LogLine;
  } catch {
    return undefined;
  }
}
