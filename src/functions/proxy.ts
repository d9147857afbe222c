/**
 * @module functions/proxy
 * The gateway's HTTP forwarding core: sends one caller's request to a function instance
 * (`http://<address>:<port>`) and streams the answer back, on Node's own `IncomingMessage` /
 * `ServerResponse` (the gateway hands over the raw objects).
 *
 * - Raw keep-alive connections per instance (`InstanceConnections`, no pipelining), opened on
 *   first use and dropped by `forget`. The request head is written as one prepared string
 *   (with a small buffered body, one write); the answer is read by a minimal HTTP/1.1 answer
 *   parser and its body slices are written straight into the `ServerResponse`.
 * - Both bodies are streamed with backpressure, never buffered (except in collect mode, where
 *   the answer is the result). A caller's body of unknown length is sent chunked.
 * - Headers travel as flat raw arrays (`rawHeaders` in, `writeHead(status, array)` out): one
 *   pass filters hop-by-hop headers (and those named in `Connection`) and adds `host` and
 *   `x-forwarded-*`; nothing is parsed into objects on the hot path.
 * - Failures become the API's JSON error shape while the answer has not started (504
 *   FUNCTION_TIMEOUT, 502 FUNCTION_FAILED, 413 PAYLOAD_TOO_LARGE); once it has, the client's
 *   connection is destroyed so the client sees a truncated answer, not a wrong one.
 */
import type http from 'node:http';
import { answerHeaders, bodilessByDefault, dropNamedInConnection, headerObject, lowerCaseNames, recomputed } from './proxy-headers.js';
import { InstanceConnections, type ConnectionUser, type InstanceConnection } from './instance-connection.js';

export interface ProxyTarget { address: string; port: number }

export interface ForwardOptions {
  /** Path + query to request on the instance, starting with '/'. */
  path: string;
  /** Defaults to the incoming request's method (`POST` without one). */
  method?: string;
  /**
   * Limit for the whole exchange: until the answer's headers arrived and its body was passed
   * on. On expiry the instance request is destroyed; the client gets a 504 if nothing was
   * sent yet, otherwise its connection is destroyed.
   */
  timeoutMs: number;
  /**
   * Request body limit. A `Content-Length` above it is a 413 before the instance is
   * contacted; a chunked body that passes it aborts the instance request (413 if the answer
   * has not started).
   */
  maxBodyBytes: number;
  /** Added to the instance request, replacing incoming headers of the same name. */
  extraHeaders?: Record<string, string>;
  /** Replaces the incoming body (used for event invocations, where the body was already read). */
  body?: Buffer;
  /**
   * Collect the instance's answer into the result instead of writing it to `res`. Nothing is
   * written to `res` in this mode (errors are reported in the result); `res`, when given, only
   * tells that the caller went away.
   */
  collect?: boolean;
  /** Collect mode: an answer over this many bytes is abandoned (outcome `too-large`, error `RESPONSE_TOO_LARGE: …`). */
  maxResponseBytes?: number;
}

export interface ForwardResult {
  /** The status sent to the client (collect mode: the instance's); 499 when the client left before any. */
  status: number;
  outcome: 'ok' | 'timeout' | 'upstream-error' | 'client-aborted' | 'too-large';
  requestBytes: number;
  responseBytes: number;
  /** Collect mode: the instance's answer headers, hop-by-hop ones removed. */
  headers?: Record<string, string | string[]>;
  /** Collect mode: the instance's answer body. */
  body?: Buffer;
  /** What went wrong: the instance error (`upstream-error`), or `CODE: message` for the other failures. */
  error?: string;
}

/** Methods safe to send again when a kept-alive connection was found closed. */
const idempotent = new Set(['GET', 'HEAD', 'OPTIONS']);

const emptyBody = Buffer.alloc(0);

/** A buffered body up to this size leaves in the same write as the request head. */
const joinedBodyBytes = 64 * 1024;
/** What a request target or an added header must not contain (it would break the request head). */
const invalidTarget = /[^\x21-\x7e\x80-\xff]/;
const invalidValue = /[^\t\x20-\x7e\x80-\xff]/;
const invalidName = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/;

function upstreamDetail(error: NodeJS.ErrnoException): string {
  return error.code !== undefined && !error.message.includes(error.code) ? `${error.message} (${error.code})` : error.message;
}

/** One request through the proxy; settles its promise exactly once. Also the user of its instance connection. */
class Exchange implements ConnectionUser {
  private requestBytes = 0;
  private responseBytes = 0;
  private settled = false;
  /** Set when the gateway ends the instance request itself (its connection's failure is then expected). */
  private ending = false;
  private timer: NodeJS.Timeout | undefined;
  /** The instance's answer status, once its headers arrived. */
  private status = 0;
  /** Collect mode: the answer so far. */
  private chunks: Buffer[] | undefined;
  private answerRaw: string[] | undefined;
  /** The listener streaming the caller's body, removed when the exchange fails early. */
  private onRequestData: ((chunk: Buffer) => void) | undefined;
  /** Resumes reading the instance's answer once the client took what was written. */
  private onClientDrain: (() => void) | undefined;
  /** Whether the request was sent again after a connection turned out closed. */
  private retried = false;
  /** Whether the answer goes into the result instead of `res`. */
  private readonly collect: boolean;
  private connections: InstanceConnections | undefined;
  /** The connection carrying this request, while it does. */
  private connection: InstanceConnection | undefined;
  private waitingForConnection = false;
  private method = 'GET';
  /** The request line and headers, ready to write. */
  private head = '';
  private chunkedBody = false;
  /** Whether the whole request was handed to the connection. */
  private requestEnded = false;
  /** Whether `res` is corked until the current read from the instance was passed on. */
  private corked = false;
  private mode: 'none' | 'buffer' | 'stream' = 'none';

  constructor(
    private readonly req: http.IncomingMessage | null,
    private readonly res: http.ServerResponse | null,
    private readonly options: ForwardOptions,
    private readonly resolve: (result: ForwardResult) => void,
  ) {
    this.collect = options.collect === true || res === null;
  }

  start(connections: InstanceConnections, target: ProxyTarget): void {
    const { req, options } = this;
    const extra = lowerCaseNames(options.extraHeaders);
    const headers: string[] = [];
    let declared = -1;
    let chunked = false;
    let host: string | undefined;
    let forwardedFor: string | undefined;
    let connection: string | undefined;

    if (req !== null) {
      const raw = req.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i]!;
        const lower = name.toLowerCase();
        if (recomputed.has(lower)) {
          const value = raw[i + 1]!;
          if (lower === 'host') host = value;
          else if (lower === 'content-length') declared = Number(value);
          else if (lower === 'transfer-encoding') chunked = true;
          else if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
          else if (lower === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
          continue;
        }
        if (extra !== undefined && Object.hasOwn(extra, lower)) continue;
        headers.push(name, raw[i + 1]!);
      }
      if (connection !== undefined) dropNamedInConnection(headers, connection);
    }

    const method = options.method ?? req?.method ?? 'POST';
    if (options.body !== undefined) {
      if (options.body.length > options.maxBodyBytes) return this.tooLarge();
      this.mode = 'buffer';
      headers.push('content-length', String(options.body.length));
    } else if (req !== null && (chunked || declared > 0)) {
      if (declared > options.maxBodyBytes) return this.tooLarge();
      this.mode = 'stream';
      // A body of unknown length is framed chunked by the proxy itself.
      if (chunked) this.chunkedBody = true;
      headers.push(chunked ? 'transfer-encoding' : 'content-length', chunked ? 'chunked' : String(declared));
    } else if (!bodilessByDefault.has(method.toUpperCase())) {
      headers.push('content-length', '0');
    }

    if (extra === undefined || !Object.hasOwn(extra, 'host')) headers.push('host', host ?? `${target.address}:${target.port}`);
    if (req !== null) {
      if (extra === undefined || !Object.hasOwn(extra, 'x-forwarded-for')) {
        const client = req.socket.remoteAddress ?? '';
        headers.push('x-forwarded-for', forwardedFor === undefined ? client : `${forwardedFor}, ${client}`);
      }
      if (extra === undefined || !Object.hasOwn(extra, 'x-forwarded-proto')) headers.push('x-forwarded-proto', 'http');
      if (host !== undefined && (extra === undefined || !Object.hasOwn(extra, 'x-forwarded-host'))) headers.push('x-forwarded-host', host);
    }
    if (extra !== undefined) {
      for (const name in extra) {
        const value = extra[name]!;
        if (invalidName.test(name) || name === '' || invalidValue.test(value)) return this.unsendable(`invalid header ${JSON.stringify(name)}`);
        headers.push(name, value);
      }
    }
    if (options.path.charCodeAt(0) !== 47 /* / */ || invalidTarget.test(options.path) || invalidName.test(method)) {
      return this.unsendable(`invalid request target ${JSON.stringify(options.path.slice(0, 80))}`);
    }

    // The caller's headers were checked by Node's parser; they pass as received (latin1).
    let head = `${method} ${options.path} HTTP/1.1\r\n`;
    for (let i = 0; i < headers.length; i += 2) head += `${headers[i]!}: ${headers[i + 1]!}\r\n`;
    this.head = `${head}\r\n`;
    this.connections = connections;
    this.method = method;
    this.timer = setTimeout(() => this.expire(), Math.min(Math.max(options.timeoutMs, 1), 2_147_483_647));
    if (this.res !== null) this.res.on('close', () => this.onClientClose());
    this.send(false);
  }

  /** Asks for a connection (a new one for a retry); the request goes out in `onConnection`. */
  private send(fresh: boolean): void {
    this.waitingForConnection = true;
    this.connections!.lease(this, fresh);
  }

  // ---- the connection's events ----

  onConnection(connection: InstanceConnection): void {
    this.waitingForConnection = false;
    if (this.settled || this.ending) {
      connection.destroy();
      return;
    }
    this.connection = connection;
    connection.begin(this, this.method === 'HEAD' || this.method === 'head');
    if (this.mode === 'none') {
      connection.write(this.head);
    } else if (this.mode === 'buffer') {
      const body = this.options.body!;
      this.requestBytes = body.length;
      if (body.length <= joinedBodyBytes) {
        // Head and body in one write (one syscall, one packet for the usual small event).
        const joined = Buffer.allocUnsafe(this.head.length + body.length);
        joined.write(this.head, 0, 'latin1');
        body.copy(joined, this.head.length);
        connection.write(joined);
      } else {
        connection.cork();
        connection.write(this.head);
        connection.write(body);
        connection.uncork();
      }
    } else {
      connection.write(this.head);
      this.streamBody(this.req!);
      return;
    }
    this.requestEnded = true;
    connection.requestWritten();
  }

  /** Streams the caller's body to the instance, counted against the limit, with backpressure. */
  private streamBody(req: http.IncomingMessage): void {
    const limit = this.options.maxBodyBytes;
    this.onRequestData = (chunk: Buffer) => {
      if (this.settled || chunk.length === 0) return;
      this.requestBytes += chunk.length;
      if (this.requestBytes > limit) {
        this.fail(413, 'too-large', 'PAYLOAD_TOO_LARGE', `request body over ${limit} bytes`);
        return;
      }
      const connection = this.connection;
      if (connection === undefined) return;
      let flowing: boolean;
      if (this.chunkedBody) {
        connection.cork();
        connection.write(`${chunk.length.toString(16)}\r\n`);
        connection.write(chunk);
        flowing = connection.write('\r\n');
        connection.uncork();
      } else {
        flowing = connection.write(chunk);
      }
      if (!flowing) req.pause();
    };
    req.on('data', this.onRequestData);
    req.on('end', () => {
      const connection = this.connection;
      if (this.settled || connection === undefined) return;
      if (this.chunkedBody) connection.write('0\r\n\r\n');
      this.requestEnded = true;
      connection.requestWritten();
    });
  }

  onDrain(): void {
    if (!this.settled && this.mode === 'stream') this.req!.resume();
  }

  onAnswerHead(status: number, raw: string[]): void {
    if (this.settled) return;
    this.status = status;
    if (this.collect) {
      this.chunks = [];
      this.answerRaw = raw;
      return;
    }
    const res = this.res!;
    if (res.headersSent || res.destroyed) {
      // Someone else answered (or the client is gone): nothing sensible to pass on.
      this.abort();
      this.finish(res.destroyed ? 499 : res.statusCode, res.destroyed ? 'client-aborted' : 'upstream-error', 'the answer had already started');
      return;
    }
    try {
      res.writeHead(status, answerHeaders(raw));
    } catch (error) {
      // Headers Node will not send (the instance is not trusted to produce valid ones).
      this.fail(502, 'upstream-error', 'FUNCTION_FAILED', `the function's answer has invalid headers: ${(error as Error).message}`, (error as Error).message);
      return;
    }
    // Head, body and end usually arrive in one read from the instance: hold the client
    // socket's writes until that read was passed on (onReadDone), so they leave in one writev.
    res.cork();
    this.corked = true;
  }

  onAnswerBody(chunk: Buffer): void {
    if (this.settled) return;
    this.responseBytes += chunk.length;
    if (this.chunks !== undefined) {
      const limit = this.options.maxResponseBytes ?? Infinity;
      if (this.responseBytes > limit) {
        this.abort();
        this.finish(502, 'too-large', `RESPONSE_TOO_LARGE: the function's answer is over ${limit} bytes`);
        return;
      }
      this.chunks.push(chunk);
      return;
    }
    const res = this.res!;
    if (res.write(chunk)) return;
    const connection = this.connection;
    if (connection === undefined) return;
    connection.pause();
    this.onClientDrain ??= () => this.connection?.resume();
    res.once('drain', this.onClientDrain);
  }

  onAnswerEnd(): void {
    if (this.settled) return;
    const connection = this.connection;
    this.connection = undefined;
    // An answer before the whole request was sent: the half-sent request is given up (its
    // connection cannot carry another); a complete one goes back to the pool by itself.
    if (!this.requestEnded) connection?.destroy();
    if (this.chunks !== undefined) {
      const { chunks } = this;
      const body = chunks.length === 1 ? chunks[0]! : chunks.length === 0 ? emptyBody : Buffer.concat(chunks, this.responseBytes);
      this.settle({ status: this.status, outcome: 'ok', requestBytes: this.requestBytes, responseBytes: this.responseBytes, headers: headerObject(answerHeaders(this.answerRaw!)), body });
      return;
    }
    this.res!.end();
    this.finish(this.status, 'ok');
  }

  onReadDone(): void {
    if (this.corked) {
      this.corked = false;
      this.res!.uncork();
    }
  }

  onConnectionError(error: NodeJS.ErrnoException, answered: boolean): void {
    this.connection = undefined;
    if (this.settled || this.ending) return;
    if (this.status !== 0) {
      this.onAnswerError(this.status, error);
      return;
    }
    // A kept-alive connection the instance closed as it went idle (a race no pool avoids): a
    // request without body that cannot have done anything is sent once more on a new one.
    if (!this.retried && !answered && this.mode === 'none' && (error.code === 'ECONNRESET' || error.code === 'EPIPE')
      && idempotent.has(this.method.toUpperCase())) {
      this.retried = true;
      this.send(true);
      return;
    }
    const detail = upstreamDetail(error);
    this.fail(502, 'upstream-error', 'FUNCTION_FAILED', `the function instance failed: ${detail}`, detail);
  }

  // ---- failures ----

  /** Ends the instance request (its connection is closed). */
  private abort(): void {
    this.ending = true;
    if (this.waitingForConnection) {
      this.waitingForConnection = false;
      this.connections?.cancel(this);
    }
    const connection = this.connection;
    this.connection = undefined;
    connection?.destroy();
  }

  /** The instance's answer broke off after its headers arrived. */
  private onAnswerError(status: number, error: Error): void {
    if (this.settled) return;
    const detail = `the instance's answer broke off: ${error.message}`;
    if (this.collect) {
      this.finish(502, 'upstream-error', detail);
      return;
    }
    this.res!.destroy();
    this.finish(status, 'upstream-error', detail);
  }

  private expire(): void {
    if (this.settled) return;
    const seconds = Math.round(this.options.timeoutMs / 100) / 10;
    this.fail(504, 'timeout', 'FUNCTION_TIMEOUT', `the function did not answer within ${seconds} s`);
  }

  private onClientClose(): void {
    if (this.settled || this.res!.writableFinished) return;
    this.abort();
    this.finish(this.res!.headersSent && !this.collect ? this.res!.statusCode : 499, 'client-aborted');
  }

  /** Content-Length (or the given body) over the limit: answered before contacting the instance. */
  private tooLarge(): void {
    this.fail(413, 'too-large', 'PAYLOAD_TOO_LARGE', `request body over ${this.options.maxBodyBytes} bytes`);
  }

  /** A request that cannot be written as HTTP/1.1 (invalid target or added header). */
  private unsendable(why: string): void {
    this.fail(502, 'upstream-error', 'FUNCTION_FAILED', `the request could not be sent to the function: ${why}`, why);
  }

  /**
   * Ends the exchange with an error: the instance request is aborted; the client gets the
   * JSON error, or its connection is destroyed when the answer had started.
   */
  private fail(status: number, outcome: ForwardResult['outcome'], code: string, message: string, error = `${code}: ${message}`): void {
    this.abort();
    const { req, res } = this;
    const bodyLeft = req !== null && !req.complete && this.options.body === undefined;
    if (this.collect || res === null) {
      this.finish(status, outcome, error);
      return;
    }
    if (res.headersSent) {
      const sent = res.statusCode;
      res.destroy();
      this.finish(sent, outcome, error);
      return;
    }
    const body = JSON.stringify({ code, message });
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) };
    if (bodyLeft) headers.connection = 'close';
    this.finish(status, outcome, error);
    res.writeHead(status, headers);
    res.end(body);
  }

  private finish(status: number, outcome: ForwardResult['outcome'], error?: string): void {
    const result: ForwardResult = { status, outcome, requestBytes: this.requestBytes, responseBytes: this.responseBytes };
    if (error !== undefined) result.error = error;
    this.settle(result);
  }

  private settle(result: ForwardResult): void {
    if (this.settled) return;
    this.settled = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const { req } = this;
    if (req !== null && !req.complete && this.options.body === undefined) {
      // The rest of the caller's body is not wanted any more (an early answer or a failure):
      // drain it so the caller's connection is not stuck.
      if (this.onRequestData !== undefined) req.removeListener('data', this.onRequestData);
      req.resume();
    }
    this.resolve(result);
  }
}

export class InstanceProxy {
  private readonly pools = new Map<string, InstanceConnections>();
  private readonly maxSockets: number;
  private readonly keepAliveMs: number;

  /**
   * @param options.maxSocketsPerInstance connections per instance at once (more requests wait for one); default 256
   * @param options.keepAliveMs how long an idle connection is kept; default 4 s, under Node's 5 s server keep-alive
   *   (an instance announcing a shorter `Keep-Alive: timeout` is honoured)
   */
  constructor(options: { maxSocketsPerInstance?: number; keepAliveMs?: number } = {}) {
    this.maxSockets = options.maxSocketsPerInstance ?? 256;
    this.keepAliveMs = options.keepAliveMs ?? 4_000;
  }

  /**
   * Forwards one request. Streaming mode (`res` given, no `collect`): the answer is written to
   * `res`, errors too. Collect mode (`collect`, or no `res`): the answer is returned. `req` may
   * be null when `body` carries the request. The promise never rejects for exchange failures;
   * they are in `outcome`.
   */
  forward(req: http.IncomingMessage | null, res: http.ServerResponse | null, target: ProxyTarget, options: ForwardOptions): Promise<ForwardResult> {
    const connections = this.connections(target);
    return new Promise<ForwardResult>((resolve) => new Exchange(req, res, options, resolve).start(connections, target));
  }

  /** Drops the keep-alive connections to one instance (it stopped). */
  forget(target: ProxyTarget): void {
    const key = `${target.address}:${target.port}`;
    const connections = this.pools.get(key);
    if (connections === undefined) return;
    this.pools.delete(key);
    connections.close();
  }

  /** Drops every connection. */
  close(): void {
    for (const connections of this.pools.values()) connections.close();
    this.pools.clear();
  }

  private connections(target: ProxyTarget): InstanceConnections {
    const key = `${target.address}:${target.port}`;
    let connections = this.pools.get(key);
    if (connections === undefined) {
      connections = new InstanceConnections(target.address, target.port, this.maxSockets, this.keepAliveMs);
      this.pools.set(key, connections);
    }
    return connections;
  }
}
