/**
 * @module events/live-stream
 * The Server-Sent Events stream of a namespace's events (`GET …/events/stream`, documented in
 * ./routes.ts): this process's events through the bus's listeners, a replay from the outbox
 * after `Last-Event-ID`, and a poll of the outbox for events other replicas published. Each
 * event is sent once per connection; a client that falls 1 MiB behind is disconnected.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { EventBus } from './bus.js';
import { eventIdFloor } from './ids.js';
import type { DomainEvent } from './outbox.js';
import { matchesAny } from './patterns.js';

export interface LiveStreamOptions {
  /** Keep-alive comment interval. */
  heartbeatMs: number;
  /** How often a stream polls the outbox for other replicas' events; 0 = never. */
  pollMs: number;
}

export interface StreamRequest {
  namespace: string;
  /** Patterns; absent: every type. */
  types?: string[];
  /** Replay the stored events after this id first. */
  resumeFrom?: string;
}

export class LiveStreams {
  /** Streams never end by themselves: `endAll` (a closing server) ends them, so close() can finish. */
  private readonly open = new Set<() => void>();

  constructor(private readonly bus: Pick<EventBus, 'listen' | 'list'>, private readonly options: LiveStreamOptions) {}

  endAll(): void {
    for (const end of [...this.open]) end();
  }

  /** Takes over the reply and streams until the client goes or `endAll`. */
  async serve(request: FastifyRequest, reply: FastifyReply, { namespace, types, resumeFrom }: StreamRequest): Promise<void> {
    const matches = (event: DomainEvent) => !types || matchesAny(types, event.type);

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      // A stream's connection is never reused: closing it with the stream lets a closing server finish at once.
      connection: 'close',
    });
    res.write(': slipway events\nretry: 3000\n\n');

    /** Ids already sent, with when: dedupes live pushes against replay and polling. */
    const sent = new Map<string, number>();
    let ended = false;
    let replaying = true;
    const buffered: DomainEvent[] = [];
    const maxBehind = 1024 * 1024;
    let pollTimer: NodeJS.Timeout | undefined;

    const write = (event: DomainEvent) => {
      if (ended || sent.has(event.id)) return;
      sent.set(event.id, Date.now());
      if (sent.size > 50_000) sent.delete(sent.keys().next().value!);
      res.write(`id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      if (res.writableLength > maxBehind) end();
    };
    const end = () => {
      if (ended) return;
      ended = true;
      this.open.delete(end);
      unlisten();
      clearInterval(heartbeat);
      clearTimeout(pollTimer);
      if (!res.writableEnded) res.end();
    };

    const unlisten = this.bus.listen((event) => {
      if (event.namespace !== namespace || !matches(event)) return;
      if (replaying) buffered.push(event);
      else write(event);
    });
    const heartbeat = setInterval(() => { if (!ended) res.write(': keep-alive\n\n'); }, this.options.heartbeatMs);
    this.open.add(end);
    request.raw.once('close', end);
    res.once('close', end);

    // Replay what the client missed, then what arrived meanwhile.
    try {
      if (resumeFrom !== undefined) {
        let cursor = resumeFrom;
        for (;;) {
          const page = await this.bus.list(namespace, { after: cursor, types, limit: 500 });
          for (const event of page) write(event);
          if (page.length < 500 || ended) break;
          cursor = page[page.length - 1]!.id;
          if (res.writableLength > 0) await new Promise((resolve) => { res.once('drain', resolve); res.once('close', resolve); });
        }
      }
    } catch (error) {
      request.log.warn({ err: error }, 'event stream replay failed');
      end();
      return;
    }
    replaying = false;
    for (const event of buffered.splice(0)) write(event);

    // Other replicas' events: poll a window that reaches back, so late commits are not missed.
    const lookbackMs = 10_000;
    const poll = async () => {
      if (ended) return;
      try {
        const now = Date.now();
        const floor = eventIdFloor(now - lookbackMs);
        let cursor = resumeFrom !== undefined && resumeFrom > floor ? resumeFrom : floor;
        for (let pages = 0; pages < 20 && !ended; pages++) {
          const page = await this.bus.list(namespace, { after: cursor, types, limit: 500 });
          for (const event of page) write(event);
          if (page.length < 500) break;
          cursor = page[page.length - 1]!.id;
        }
        for (const [id, at] of sent) if (at < now - 2 * lookbackMs) sent.delete(id);
      } catch (error) {
        request.log.warn({ err: error }, 'event stream poll failed');
      }
      if (!ended) pollTimer = setTimeout(() => void poll(), this.options.pollMs);
    };
    if (this.options.pollMs > 0 && !ended) pollTimer = setTimeout(() => void poll(), this.options.pollMs);
  }
}
