/**
 * @module db/notifications
 * Wake-ups between processes on one database: a channel name plus a short text payload. On
 * PostgreSQL they travel as `NOTIFY` (one dedicated `LISTEN` connection per process, opened at
 * the first subscribe, reopened after a drop); on SQLite they reach only this process.
 *
 * Delivery is best-effort by design: callers keep polling as the safety net (a notification
 * sent while a listener was reconnecting is lost; after a reconnect every listener is called
 * once with payload `*`, "something may have changed"). Listeners of this process are called
 * at once on publish and never a second time by the echo of their own NOTIFY.
 */
import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';

export type NotificationListener = (payload: string) => void;

export interface Notifications {
  /** Sends now (outside any transaction). */
  publish(channel: string, payload: string): Promise<void>;
  /**
   * Sends to the other processes when `trx` commits (PostgreSQL delivers NOTIFY on commit,
   * nothing on rollback). This process's listeners are not called: the caller wakes its own
   * after the commit, when what they look for is visible.
   */
  publishIn(trx: Kysely<any>, channel: string, payload: string): Promise<void>;
  subscribe(channel: string, listener: NotificationListener): () => void;
  close(): Promise<void>;
}

/** Channel names are SQL identifiers in LISTEN: keep them to this shape. */
const channelPattern = /^[a-z][a-z0-9_]{0,62}$/;
/** Payload after the sender prefix; PostgreSQL's limit is 8000 bytes. */
const maxPayloadBytes = 7000;
const reconnectMs = 1000;

class Listeners {
  private readonly byChannel = new Map<string, Set<NotificationListener>>();

  add(channel: string, listener: NotificationListener): { remove(): void; first: boolean } {
    if (!channelPattern.test(channel)) throw new RangeError(`invalid notification channel ${channel}`);
    let set = this.byChannel.get(channel);
    const first = !set;
    if (!set) this.byChannel.set(channel, set = new Set());
    set.add(listener);
    return { first, remove: () => { set.delete(listener); } };
  }

  channels(): string[] {
    return [...this.byChannel.keys()];
  }

  call(channel: string, payload: string): void {
    for (const listener of [...(this.byChannel.get(channel) ?? [])]) {
      try {
        listener(payload);
      } catch (error) {
        process.emitWarning(`notification listener (${channel}) threw: ${(error as Error).message}`);
      }
    }
  }

  callAll(payload: string): void {
    for (const channel of this.byChannel.keys()) this.call(channel, payload);
  }
}

function checkPayload(payload: string): void {
  if (Buffer.byteLength(payload) > maxPayloadBytes) throw new RangeError('notification payload too long');
}

/** SQLite: one process, so notifications are plain in-process calls. */
export function localNotifications(): Notifications {
  const listeners = new Listeners();
  return {
    async publish(channel, payload) { checkPayload(payload); listeners.call(channel, payload); },
    async publishIn(_trx, _channel, payload) { checkPayload(payload); },
    subscribe: (channel, listener) => listeners.add(channel, listener).remove,
    async close() { /* nothing held */ },
  };
}

/** PostgreSQL: NOTIFY through the pool (or the caller's transaction), LISTEN on one own connection. */
export function postgresNotifications(pool: pg.Pool, connection: pg.ClientConfig): Notifications {
  const listeners = new Listeners();
  const sender = randomBytes(6).toString('hex');
  let client: pg.Client | undefined;
  /** Channels the current client LISTENs to. */
  let listening = new Set<string>();
  let connecting: Promise<void> | undefined;
  let retry: NodeJS.Timeout | undefined;
  let everConnected = false;
  let closed = false;

  const onMessage = (message: pg.Notification) => {
    const text = message.payload ?? '';
    const bar = text.indexOf('|');
    if (bar < 0 || text.slice(0, bar) === sender) return; // our own echo: delivered locally already
    listeners.call(message.channel, text.slice(bar + 1));
  };
  const listenAll = async (which: pg.Client) => {
    for (const channel of listeners.channels()) {
      if (listening.has(channel)) continue;
      listening.add(channel);
      await which.query(`LISTEN ${channel}`);
    }
  };
  const scheduleReconnect = () => {
    if (closed || retry) return;
    retry = setTimeout(() => { retry = undefined; void connect(); }, reconnectMs);
    retry.unref();
  };
  const dropped = (which: pg.Client) => {
    if (client !== which) return;
    client = undefined;
    void which.end().catch(() => undefined);
    scheduleReconnect();
  };
  const connect = (): Promise<void> => {
    if (client || closed) return Promise.resolve();
    connecting ??= (async () => {
      const next = new pg.Client(connection);
      next.on('notification', onMessage);
      next.on('error', () => dropped(next));
      next.on('end', () => dropped(next));
      try {
        await next.connect();
        listening = new Set();
        client = next;
        await listenAll(next);
      } catch {
        client = undefined;
        await next.end().catch(() => undefined);
        scheduleReconnect();
        return;
      } finally {
        connecting = undefined;
      }
      if (closed) {
        client = undefined;
        await next.end().catch(() => undefined);
        return;
      }
      // Anything sent while we were away is lost: let every listener look once.
      if (everConnected) listeners.callAll('*');
      everConnected = true;
    })();
    return connecting;
  };

  const send = (channel: string, payload: string) => sql`SELECT pg_notify(${channel}, ${`${sender}|${payload}`})`;
  return {
    async publish(channel, payload) {
      checkPayload(payload);
      listeners.call(channel, payload);
      await pool.query('SELECT pg_notify($1, $2)', [channel, `${sender}|${payload}`]);
    },
    async publishIn(trx, channel, payload) {
      checkPayload(payload);
      await send(channel, payload).execute(trx);
    },
    subscribe(channel, listener) {
      const { first, remove } = listeners.add(channel, listener);
      if (first) {
        if (client && !connecting) listenAll(client).catch(() => undefined);
        else void connect().then(() => (client ? listenAll(client) : undefined)).catch(() => undefined);
      }
      return remove;
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      await connecting;
      await client?.end().catch(() => undefined);
      client = undefined;
    },
  };
}
