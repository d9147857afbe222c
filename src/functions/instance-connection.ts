/**
 * @module functions/instance-connection
 * Raw keep-alive HTTP/1.1 connections from the gateway to one function instance: a
 * `net.Socket` per connection with its answer parser, and the per-instance pool that lends
 * them out, one request at a time (no pipelining).
 *
 * Why not an HTTP client library: the gateway writes each request head as one prepared string
 * and passes the answer's body slices on as they are read; a general client builds request
 * objects, validates and re-serialises headers and runs its own queue per request, which was
 * most of the gateway's CPU per proxied request.
 *
 * A connection is lent to one `ConnectionUser` at a time. It is given back (and reused) only
 * when the answer was read completely, the request was written completely, and the instance
 * did not ask to close; otherwise it is destroyed. Idle connections are kept for the pool's
 * keep-alive time (or the instance's shorter `Keep-Alive: timeout`, less a second) and are
 * dropped when the instance closes them.
 */
import net from 'node:net';
import { AnswerParser, type AnswerEvents } from './instance-answer-parser.js';

/** The one request using a connection: told about its answer and the connection's state. */
export interface ConnectionUser {
  /** The connection to use (given synchronously when one is free, later when the pool was full). */
  onConnection(connection: InstanceConnection): void;
  onAnswerHead(status: number, headers: string[]): void;
  onAnswerBody(chunk: Buffer): void;
  onAnswerEnd(): void;
  /** All bytes of one read from the instance were reported (writes may be flushed now). */
  onReadDone(): void;
  /** The request can be written again after `write` returned false. */
  onDrain(): void;
  /**
   * The connection failed or was closed by the instance before the answer was complete.
   * `answered` tells whether any byte of the answer had arrived.
   */
  onConnectionError(error: NodeJS.ErrnoException, answered: boolean): void;
}

/** A closed connection, named the way Node's HTTP client names it. */
function hangUp(): NodeJS.ErrnoException {
  return Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
}

export class InstanceConnection implements AnswerEvents {
  private readonly socket: net.Socket;
  private readonly parser: AnswerParser;
  private user: ConnectionUser | null = null;
  /** Whether the current request was written completely. */
  private requestDone = false;
  /** Whether any byte of the current answer arrived. */
  private answered = false;
  private dead = false;
  /** Requests sent on this connection so far. */
  requests = 0;
  /** When the connection went idle (ms since epoch). */
  idleSince = 0;
  /** How long it may stay idle (ms). */
  idleLimitMs = 0;

  constructor(private readonly pool: InstanceConnections, host: string, port: number) {
    this.parser = new AnswerParser(this);
    this.socket = net.connect({ host, port, noDelay: true });
    this.socket.on('data', (data: Buffer) => this.onData(data));
    this.socket.on('drain', () => this.user?.onDrain());
    this.socket.on('end', () => this.onClosed(hangUp()));
    this.socket.on('error', (error: NodeJS.ErrnoException) => this.onClosed(error));
    this.socket.on('close', () => this.onClosed(hangUp()));
  }

  /** Whether the connection can carry a new request. */
  get usable(): boolean {
    return !this.dead && !this.socket.destroyed;
  }

  /** Starts a request: the user gets the answer's events; `bodiless` for HEAD. */
  begin(user: ConnectionUser, bodiless: boolean): void {
    this.user = user;
    this.requestDone = false;
    this.answered = false;
    this.requests++;
    this.parser.expect(bodiless);
    // The previous user may have paused it for backpressure on its last chunk and finished.
    if (this.socket.isPaused()) this.socket.resume();
  }

  /** Writes request bytes (latin1 for strings); false when the caller should wait for `onDrain`. */
  write(data: Buffer | string): boolean {
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  /** The request was written completely (the connection may be reused once the answer is read). */
  requestWritten(): void {
    this.requestDone = true;
    if (this.parser.done) this.release();
  }

  /** Stops delivering the answer (backpressure) until `resume`. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Gives up the connection: nothing more is reported to its user. */
  destroy(): void {
    this.user = null;
    this.kill();
  }

  // ---- the parser's events, passed to the user ----

  onAnswerHead(status: number, headers: string[]): void {
    this.user?.onAnswerHead(status, headers);
  }

  onAnswerBody(chunk: Buffer): void {
    this.user?.onAnswerBody(chunk);
  }

  onAnswerEnd(): void {
    // Given back only after the whole read was parsed (see onData), never from inside it.
    this.user?.onAnswerEnd();
  }

  // ---- the socket ----

  private onData(data: Buffer): void {
    const user = this.user;
    if (user === null) {
      // Bytes on an idle connection (or one given up): it is out of step, drop it.
      this.kill();
      return;
    }
    this.answered = true;
    try {
      this.parser.execute(data);
    } catch (error) {
      this.user = null;
      this.kill();
      user.onConnectionError(error as NodeJS.ErrnoException, true);
      return;
    }
    user.onReadDone();
    if (this.parser.done && this.requestDone && this.user === user) this.release();
  }

  private onClosed(error: NodeJS.ErrnoException): void {
    if (this.dead && this.user === null) return;
    const user = this.user;
    // A body delimited by the close is complete now.
    const complete = user !== null && this.parser.closed() && this.parser.done;
    this.user = null;
    this.kill();
    if (user !== null && !complete) user.onConnectionError(error, this.answered);
  }

  /** Hands the connection back for another request, or closes it when it cannot carry one. */
  private release(): void {
    if (this.dead) return;
    this.user = null;
    if (!this.parser.keepAlive) {
      this.kill();
      return;
    }
    this.pool.idle(this, this.parser.keepAliveTimeoutMs);
  }

  private kill(): void {
    if (!this.dead) {
      this.dead = true;
      this.parser.stop();
      this.pool.gone(this);
    }
    this.socket.destroy();
  }
}

/** The keep-alive connections to one instance. */
export class InstanceConnections {
  private readonly idleConnections: InstanceConnection[] = [];
  private readonly waiting: ConnectionUser[] = [];
  private readonly all = new Set<InstanceConnection>();
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  /**
   * @param maxConnections connections at once; more users wait in order
   * @param keepAliveMs how long an idle connection is kept
   */
  constructor(private readonly host: string, private readonly port: number, private readonly maxConnections: number, private readonly keepAliveMs: number) {}

  /**
   * Lends a connection to `user` (through `user.onConnection`, at once when one is free).
   * `fresh` asks for a new connection rather than an idle one (a retry after a reused one failed).
   */
  lease(user: ConnectionUser, fresh = false): void {
    if (!fresh) {
      const now = Date.now();
      let connection: InstanceConnection | undefined;
      while ((connection = this.idleConnections.pop()) !== undefined) {
        if (connection.usable && now - connection.idleSince < connection.idleLimitMs) {
          user.onConnection(connection);
          return;
        }
        connection.destroy();
      }
    }
    if (this.all.size < this.maxConnections || this.closed) {
      user.onConnection(this.open());
      return;
    }
    this.waiting.push(user);
  }

  /** A user that gave up waiting for a connection (its request ended meanwhile). */
  cancel(user: ConnectionUser): void {
    const at = this.waiting.indexOf(user);
    if (at !== -1) this.waiting.splice(at, 1);
  }

  /** Destroys every connection (the instance stopped); users in flight see their connection fail. */
  close(): void {
    this.closed = true;
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const connection of [...this.all]) connection.destroy();
    this.idleConnections.length = 0;
  }

  /** How many connections are open (for tests and diagnostics). */
  get size(): number {
    return this.all.size;
  }

  // ---- called by the connections ----

  /** A connection finished a request and may carry another. */
  idle(connection: InstanceConnection, instanceTimeoutMs: number | undefined): void {
    const next = this.waiting.shift();
    if (next !== undefined) {
      next.onConnection(connection);
      return;
    }
    if (this.closed) {
      connection.destroy();
      return;
    }
    connection.idleSince = Date.now();
    // A Node.js instance closes idle connections after its keepAliveTimeout (announced as
    // `Keep-Alive: timeout=5`); giving up a second earlier avoids sending into a closing one.
    connection.idleLimitMs = instanceTimeoutMs !== undefined ? Math.max(0, Math.min(this.keepAliveMs, instanceTimeoutMs - 1000)) : this.keepAliveMs;
    this.idleConnections.push(connection);
    if (this.sweeper === undefined) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(250, Math.min(this.keepAliveMs, 1000)));
      this.sweeper.unref();
    }
  }

  /** A connection closed (for any reason). */
  gone(connection: InstanceConnection): void {
    this.all.delete(connection);
    const at = this.idleConnections.indexOf(connection);
    if (at !== -1) this.idleConnections.splice(at, 1);
    // A user waiting for a free slot gets a new connection.
    const next = this.waiting.shift();
    if (next !== undefined) next.onConnection(this.open());
  }

  private open(): InstanceConnection {
    const connection = new InstanceConnection(this, this.host, this.port);
    this.all.add(connection);
    return connection;
  }

  /** Closes idle connections past their keep-alive time. */
  private sweep(): void {
    const now = Date.now();
    for (const connection of [...this.idleConnections]) {
      if (now - connection.idleSince >= connection.idleLimitMs) connection.destroy();
    }
    if (this.idleConnections.length === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}
