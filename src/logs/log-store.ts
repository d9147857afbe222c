/**
 * @module logs/log-store
 * The logs part (`src/logs`: this store, and masking secrets in lines, logs/mask): line logs
 * of long-running work — builds (`<dataDir>/logs/builds/<id>.log`) and pipeline runs
 * (`<dataDir>/logs/pipelines/<id>.log`). Lines are appended to one file per id (kept
 * afterwards) and fanned out live to followers (Server-Sent Events). A follower first gets what
 * is in the file, then new lines, then `end` when the work finishes — also when it joined late.
 */
import { EventEmitter } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';

export interface LogFollower {
  line(text: string): void;
  end(): void;
}

interface LiveLog {
  stream: WriteStream;
  events: EventEmitter;
  /** The most recent lines, for followers that join while the work runs. */
  lines: string[];
  truncated: number;
}

const maxLiveLines = 20_000;

export class LogStore {
  private readonly open = new Map<string, LiveLog>();

  constructor(private readonly dir: string) {}

  private file(id: string): string {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new Error(`invalid log id ${id}`);
    return path.join(this.dir, `${id}.log`);
  }

  /** Starts (or resumes, after a restart) the log of `id`; returns the line writer. */
  async start(id: string): Promise<(line: string) => void> {
    await mkdir(this.dir, { recursive: true });
    let entry = this.open.get(id);
    if (!entry) {
      entry = { stream: createWriteStream(this.file(id), { flags: 'a' }), events: new EventEmitter(), lines: [], truncated: 0 };
      entry.events.setMaxListeners(0);
      this.open.set(id, entry);
    }
    const live = entry;
    return (line: string) => {
      const text = line.endsWith('\n') ? line.slice(0, -1) : line;
      live.stream.write(`${text}\n`);
      live.lines.push(text);
      // Followers that join late get the recent part from memory; the file keeps everything.
      if (live.lines.length > maxLiveLines) {
        live.truncated += live.lines.length - maxLiveLines;
        live.lines.splice(0, live.lines.length - maxLiveLines);
      }
      live.events.emit('line', text);
    };
  }

  /** Closes the log: followers get `end`; the file stays. */
  async finish(id: string): Promise<void> {
    const entry = this.open.get(id);
    if (!entry) return;
    this.open.delete(id);
    await new Promise<void>((resolve) => entry.stream.end(resolve));
    entry.events.emit('end');
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

  /** Replays the log so far, then follows it live until it is finished; returns an unsubscribe. */
  async follow(id: string, follower: LogFollower): Promise<() => void> {
    const entry = this.open.get(id);
    if (!entry) {
      for (const text of (await this.read(id)).split('\n').slice(0, -1)) follower.line(text);
      follower.end();
      return () => undefined;
    }
    // Replay and subscribe in one synchronous step, so no line falls in between.
    for (const text of entry.lines) follower.line(text);
    if (entry.truncated) follower.line(`[… ${entry.truncated} earlier lines are in the stored log]`);
    const onLine = (text: string) => follower.line(text);
    const onEnd = () => follower.end();
    entry.events.on('line', onLine);
    entry.events.once('end', onEnd);
    return () => {
      entry.events.off('line', onLine);
      entry.events.off('end', onEnd);
    };
  }
}
