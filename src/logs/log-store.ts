/**
 * @module logs/log-store
 * The logs part (`src/logs`: the stores, and masking secrets in lines, logs/mask): line logs
 * of long-running work — builds and pipeline runs. Two drivers (`logs.driver`): `fs`, this
 * module's `FsLogStore`, one file per id (`<dataDir>/logs/builds/<id>.log`,
 * `<dataDir>/logs/pipelines/<id>.log`); and `blobstore` (logs/chunked-log-store), chunks in the
 * blob storage's object area, so a replica can read and follow a log another one writes.
 * Lines are fanned out live to local followers (Server-Sent Events). A follower first gets
 * what is stored, then new lines, then `end` when the work finishes — also when it joined late.
 */
import { EventEmitter } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';

export interface LogFollower {
  line(text: string): void;
  end(): void;
}

/** What builds and pipelines write and read logs through; one per kind of log (builds, pipelines). */
export interface LogStore {
  /** Starts (or resumes, after a restart) the log of `id`; returns the line writer. */
  start(id: string): Promise<(line: string) => void>;
  /** Closes the log: followers get `end`; the stored log stays. */
  finish(id: string): Promise<void>;
  /** The whole stored log, lines ending in `\n`; empty when there is none. */
  read(id: string): Promise<string>;
  /** True while the log is being written (and is followable live). */
  isLive(id: string): boolean;
  /** Replays the log so far, then follows it live until it is finished; returns an unsubscribe. */
  follow(id: string, follower: LogFollower): Promise<() => void>;
}

const logIdPattern = /^[A-Za-z0-9_-]+$/;

export function checkLogId(id: string): string {
  if (!logIdPattern.test(id)) throw new Error(`invalid log id ${id}`);
  return id;
}

const maxLiveLines = 20_000;

/** The recent lines of a log being written here, and its local followers. */
export class LiveLines {
  private readonly events = new EventEmitter();
  private readonly lines: string[] = [];
  private truncated = 0;

  constructor() {
    this.events.setMaxListeners(0);
  }

  add(text: string): void {
    this.lines.push(text);
    // Followers that join late get the recent part from memory; the store keeps everything.
    if (this.lines.length > maxLiveLines) {
      this.truncated += this.lines.length - maxLiveLines;
      this.lines.splice(0, this.lines.length - maxLiveLines);
    }
    this.events.emit('line', text);
  }

  end(): void {
    this.events.emit('end');
  }

  follow(follower: LogFollower): () => void {
    // Replay and subscribe in one synchronous step, so no line falls in between.
    for (const text of this.lines) follower.line(text);
    if (this.truncated) follower.line(`[… ${this.truncated} earlier lines are in the stored log]`);
    const onLine = (text: string) => follower.line(text);
    const onEnd = () => follower.end();
    this.events.on('line', onLine);
    this.events.once('end', onEnd);
    return () => {
      this.events.off('line', onLine);
      this.events.off('end', onEnd);
    };
  }
}

/** One line as stored: without its own line break. */
export function lineText(line: string): string {
  return line.endsWith('\n') ? line.slice(0, -1) : line;
}

interface LiveLog {
  stream: WriteStream;
  live: LiveLines;
}

/** The `fs` driver: lines appended to one file per id, kept afterwards. */
export class FsLogStore implements LogStore {
  private readonly open = new Map<string, LiveLog>();

  constructor(private readonly dir: string) {}

  private file(id: string): string {
    return path.join(this.dir, `${checkLogId(id)}.log`);
  }

  async start(id: string): Promise<(line: string) => void> {
    await mkdir(this.dir, { recursive: true });
    let entry = this.open.get(id);
    if (!entry) {
      entry = { stream: createWriteStream(this.file(id), { flags: 'a' }), live: new LiveLines() };
      this.open.set(id, entry);
    }
    const { stream, live } = entry;
    return (line: string) => {
      const text = lineText(line);
      stream.write(`${text}\n`);
      live.add(text);
    };
  }

  async finish(id: string): Promise<void> {
    const entry = this.open.get(id);
    if (!entry) return;
    this.open.delete(id);
    await new Promise<void>((resolve) => entry.stream.end(resolve));
    entry.live.end();
  }

  async read(id: string): Promise<string> {
    try {
      return await readFile(this.file(id), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw error;
    }
  }

  isLive(id: string): boolean {
    return this.open.has(id);
  }

  async follow(id: string, follower: LogFollower): Promise<() => void> {
    const entry = this.open.get(id);
    if (!entry) {
      for (const text of (await this.read(id)).split('\n').slice(0, -1)) follower.line(text);
      follower.end();
      return () => undefined;
    }
    return entry.live.follow(follower);
  }
}
