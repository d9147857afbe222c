/**
 * @module functions/proxy
 * The gateway's HTTP forwarding core: sends one caller's request to a function instance
 * (`http://<address>:<port>`) and streams the answer back, on Node's own `IncomingMessage` /
 * `ServerResponse` (the gateway hands over the raw objects).
 *
 * - One undici `Pool` per instance (keep-alive, no pipelining), created on first use and
 *   dropped by `forget`, so warm requests reuse a connection. Requests go through
 *   `Pool.dispatch` with the exchange itself as the handler: the answer's chunks are written
 *   straight into the `ServerResponse`, with no intermediate stream or promise per chunk.
 * - Both bodies are streamed with backpressure, never buffered (except in collect mode, where
 *   the answer is the result).
 * - Headers travel as flat raw arrays (`rawHeaders` in, `writeHead(status, array)` out): one
 *   pass filters hop-by-hop headers (and those named in `Connection`) and adds `host` and
 *   `x-forwarded-*`; nothing is parsed into objects on the hot path.
 * - Failures become the API's JSON error shape while the answer has not started (504
 *   FUNCTION_TIMEOUT, 502 FUNCTION_FAILED, 413 PAYLOAD_TOO_LARGE); once it has, the client's
 *   connection is destroyed so the client sees a truncated answer, not a wrong one.
 */
import type http from 'node:http';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { answerHeaders, bodilessByDefault, dropNamedInConnection, headerObject, lowerCaseNames, recomputed } from './proxy-headers.js';
import { BodyRelay } from './proxy-body.js';

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

/** Methods safe to send again when a pooled connection was found closed. */
const idempotent = new Set(['GET', 'HEAD', 'OPTIONS']);

const emptyBody = Buffer.alloc(0);

function uncorkAnswer(res: http.ServerResponse): void {
  res.uncork();
}

/** Socket errors of undici named the way Node's client names them (the messages callers match). */
function upstreamDetail(error: NodeJS.ErrnoException): string {
  if (error.code === 'UND_ERR_SOCKET') return `socket hang up: ${error.message} (ECONNRESET)`;
  return error.code !== undefined && !error.message.includes(error.code) ? `${error.message} (${error.code})` : error.message;
}

/** One request through the proxy; settles its promise exactly once. Also the undici dispatch handler. */
class Exchange implements Dispatcher.DispatchHandlers {
  private requestBytes = 0;
  private responseBytes = 0;
  private settled = false;
  /** Set when the gateway aborts the instance request (undici then reports the abort as an error). */
  private ending = false;
  private timer: NodeJS.Timeout | undefined;
  /** Aborts the instance request (given by undici once the request is on a connection). */
  private abortUpstream: ((error?: Error) => void) | undefined;
  /** The instance's answer status, once its headers arrived. */
  private status = 0;
  /** Resumes a paused instance answer (given by undici with the headers). */
  private resumeUpstream: (() => void) | undefined;
  /** Collect mode: the answer so far. */
  private chunks: Buffer[] | undefined;
  private answerRaw: string[] | undefined;
  /** The listener streaming the caller's body, removed when the exchange fails early. */
  private onRequestData: ((chunk: Buffer) => void) | undefined;
  /** Whether the request was sent again after a pooled connection turned out closed. */
  private retried = false;
  /** Whether the answer goes into the result instead of `res`. */
  private readonly collect: boolean;
  private pool!: Pool;
  private method = 'GET';
  private headers: string[] = [];
  private mode: 'none' | 'buffer' | 'stream' = 'none';

  constructor(
    private readonly req: http.IncomingMessage | null,
    private readonly res: http.ServerResponse | null,
    private readonly options: ForwardOptions,
    private readonly resolve: (result: ForwardResult) => void,
  ) {
    this.collect = options.collect === true || res === null;
  }

  start(pool: Pool, target: ProxyTarget): void {
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
      // Without a length undici sends the stream chunked.
      if (!chunked) headers.push('content-length', String(declared));
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
      for (const name in extra) headers.push(name, extra[name]!);
    }

    this.pool = pool;
    this.method = method;
    this.headers = headers;
    this.timer = setTimeout(() => this.expire(), Math.min(Math.max(options.timeoutMs, 1), 2_147_483_647));
    if (this.res !== null) this.res.on('close', () => this.onClientClose());
    this.send();
  }

  /** Hands the instance request to the pool (which sends it on a free connection). */
  private send(): void {
    let body: Buffer | Readable | null = null;
    if (this.mode === 'buffer') {
      body = this.options.body!;
      this.requestBytes = body.length;
    } else if (this.mode === 'stream') {
      body = this.streamBody(this.req!);
    }
    this.pool.dispatch({
      path: this.options.path, method: this.method as Dispatcher.HttpMethod, headers: this.headers, body,
      headersTimeout: 0, bodyTimeout: 0, upgrade: null,
    }, this);
  }

  /** The caller's body as a relay stream, counted against the limit. */
  private streamBody(req: http.IncomingMessage): Readable {
    const limit = this.options.maxBodyBytes;
    const relay = new BodyRelay(req);
    this.onRequestData = (chunk: Buffer) => {
      if (this.settled) return;
      this.requestBytes += chunk.length;
      if (this.requestBytes > limit) {
        this.fail(413, 'too-large', 'PAYLOAD_TOO_LARGE', `request body over ${limit} bytes`);
        return;
      }
      if (!relay.push(chunk)) req.pause();
    };
    req.on('data', this.onRequestData);
    req.on('end', () => {
      if (!this.settled) relay.finish();
    });
    return relay;
  }

  // ---- undici's handler interface ----

  onConnect(abort: (error?: Error) => void): void {
    if (this.settled || this.ending) abort(new Error('the exchange is over'));
    else this.abortUpstream = abort;
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    if (this.settled) return false;
    if (status < 200) return true; // informational: the final answer follows
    this.status = status;
    this.resumeUpstream = resume;
    const flat = new Array<string>(raw.length);
    for (let i = 0; i < raw.length; i++) flat[i] = raw[i]!.toString('latin1');

    if (this.collect) {
      this.chunks = [];
      this.answerRaw = flat;
      return true;
    }
    const res = this.res!;
    if (res.headersSent || res.destroyed) {
      // Someone else answered (or the client is gone): nothing sensible to pass on.
      this.abort();
      this.finish(res.destroyed ? 499 : res.statusCode, res.destroyed ? 'client-aborted' : 'upstream-error', 'the answer had already started');
      return false;
    }
    try {
      res.writeHead(status, answerHeaders(flat));
      // Headers, body and end usually arrive in one read from the instance: hold the
      // socket's writes until this tick's parsing is done, so they leave in one writev
      // instead of two or three syscalls (the largest cost of a proxied request here).
      res.cork();
      process.nextTick(uncorkAnswer, res);
    } catch (error) {
      // Headers Node will not send (the instance is not trusted to produce valid ones).
      this.fail(502, 'upstream-error', 'FUNCTION_FAILED', `the function's answer has invalid headers: ${(error as Error).message}`, (error as Error).message);
      return false;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.settled) return false;
    this.responseBytes += chunk.length;
    if (this.chunks !== undefined) {
      const limit = this.options.maxResponseBytes ?? Infinity;
      if (this.responseBytes > limit) {
        this.abort();
        this.finish(502, 'too-large', `RESPONSE_TOO_LARGE: the function's answer is over ${limit} bytes`);
        return false;
      }
      this.chunks.push(chunk);
      return true;
    }
    const res = this.res!;
    if (res.write(chunk)) return true;
    res.once('drain', this.resumeUpstream!);
    return false;
  }

  onComplete(): void {
    if (this.settled) return;
    if (this.chunks !== undefined) {
      const { chunks } = this;
      const body = chunks.length === 1 ? chunks[0]! : chunks.length === 0 ? emptyBody : Buffer.concat(chunks, this.responseBytes);
      this.settle({ status: this.status, outcome: 'ok', requestBytes: this.requestBytes, responseBytes: this.responseBytes, headers: headerObject(answerHeaders(this.answerRaw!)), body });
      return;
    }
    this.res!.end();
    this.finish(this.status, 'ok');
  }

  onError(error: NodeJS.ErrnoException): void {
    if (this.settled || this.ending) return;
    if (this.status !== 0) {
      this.onAnswerError(this.status, error);
      return;
    }
    if (error.code === 'UND_ERR_INVALID_ARG') {
      // Invalid header values or path: the caller's request cannot be expressed upstream.
      this.fail(502, 'upstream-error', 'FUNCTION_FAILED', `the request could not be sent to the function: ${error.message}`, error.message);
      return;
    }
    // A pooled connection the instance closed as it went idle (a race no pool avoids): a
    // request without body that cannot have done anything is sent once more on a new one.
    if (!this.retried && this.mode === 'none' && (error.code === 'UND_ERR_SOCKET' || error.code === 'ECONNRESET')
      && idempotent.has(this.method.toUpperCase())) {
      this.retried = true;
      this.abortUpstream = undefined;
      // Once undici is done with the failed connection, so the retry goes out on the same
      // client (a fresh connection) rather than a second client of the pool.
      setImmediate(() => {
        if (!this.settled && !this.ending) this.send();
      });
      return;
    }
    const detail = upstreamDetail(error);
    this.fail(502, 'upstream-error', 'FUNCTION_FAILED', `the function instance failed: ${detail}`, detail);
  }

  // ---- failures ----

  /** Ends the instance request (undici closes its connection). */
  private abort(): void {
    this.ending = true;
    const abort = this.abortUpstream;
    this.abortUpstream = undefined;
    abort?.(new Error('the gateway ended the exchange'));
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
      // drain it so the caller's connection is not stuck. An instance request still being
      // written is not finished: undici closes its connection once the answer is complete.
      if (this.onRequestData !== undefined) req.removeListener('data', this.onRequestData);
      req.resume();
    }
    this.resolve(result);
  }
}

export class InstanceProxy {
  private readonly pools = new Map<string, Pool>();
  private readonly maxSockets: number;
  private readonly keepAliveMs: number;

  /**
   * @param options.maxSocketsPerInstance connections per instance at once (more requests wait in the pool); default 256
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
    const pool = this.pool(target);
    return new Promise<ForwardResult>((resolve) => new Exchange(req, res, options, resolve).start(pool, target));
  }

  /** Drops pooled keep-alive connections to one instance (it stopped). */
  forget(target: ProxyTarget): void {
    const key = `${target.address}:${target.port}`;
    const pool = this.pools.get(key);
    if (pool === undefined) return;
    this.pools.delete(key);
    pool.destroy().catch(() => undefined);
  }

  /** Drops every pooled connection. */
  close(): void {
    for (const pool of this.pools.values()) pool.destroy().catch(() => undefined);
    this.pools.clear();
  }

  private pool(target: ProxyTarget): Pool {
    const key = `${target.address}:${target.port}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = new Pool(target.address.includes(':') ? `http://[${target.address}]:${target.port}` : `http://${key}`, {
        connections: this.maxSockets, pipelining: 1,
        keepAliveTimeout: this.keepAliveMs, keepAliveMaxTimeout: this.keepAliveMs,
        headersTimeout: 0, bodyTimeout: 0,
      });
      this.pools.set(key, pool);
    }
    return pool;
  }
}
