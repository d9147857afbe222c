/**
 * @module cli/build-client
 * The part of Slipway's REST API the build commands use (`/api/v1/namespaces/{ns}/images`,
 * `…/components`, `…/builds`, see builds/routes.ts), on Node's fetch. Unlike cli/client.ts it
 * uploads multipart forms, follows a build's log as Server-Sent Events and downloads archives,
 * so its time limits are per kind of request: 30 s for JSON calls, proportional to the size for
 * an upload, and an idle limit (no byte for 60 s; the server sends a keep-alive every 15 s)
 * for the log stream and downloads. Failures are ApiRequestError (exit 1) naming the method, the
 * URL and the server's message (`message` or the builds API's `errorMessage`); the
 * Authorization header is never part of a message.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiRequestError, responseError } from './client.js';
import { credentialsPath, readCredentials } from './credentials-store.js';
import { CommandError } from './errors.js';
import type { Session } from './session-commands.js';

type Env = Record<string, string | undefined>;

export type BuildStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** A build as the API shows it (builds/service.ts BuildView). */
export interface BuildView {
  id: string;
  namespace: string;
  kind: 'image' | 'component';
  status: BuildStatus;
  component: string | null;
  branch: string | null;
  tag: string | null;
  architecture: string;
  source: Record<string, unknown>;
  imageName: string | null;
  digest: string | null;
  pullCommand: string | null;
  errorMessage: string | null;
  requestedBy: string | null;
  linuxUsername: string | null;
  githubUsername: string | null;
  phases: Record<string, number>;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** `GET …/components?format=ref` of an existing component. */
export interface ComponentRef {
  status: 'succeeded';
  reference: string;
  digest: string;
  pullCommand: string;
  build: string;
}

export const terminalStatuses: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);

const jsonTimeoutMs = 30_000;
/** No byte at all for this long on a log stream or a download: the connection is dead. */
const idleTimeoutMs = 60_000;

/** The Authorization header of a session (the key it was made with: SLIPWAY_API_KEY or the stored login). */
export async function sessionAuthorization(session: Session, env: Env): Promise<string> {
  if (session.keySource === 'env') return `Bearer ${env.SLIPWAY_API_KEY!.trim()}`;
  const data = await readCredentials(credentialsPath(env));
  const entry = data.servers[session.url];
  if (!entry) throw new CommandError(`not logged in to ${session.url}`);
  return `Bearer ${entry.key}`;
}

export interface LogSink {
  /** One log line of the build. */
  line(text: string): void;
  /** The build's state as last seen (queued while waiting for a worker, running, …). */
  state?(status: string): void;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function abortedBy(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

export class BuildApi {
  readonly baseUrl: string;

  constructor(baseUrl: string, private readonly authorization: string | undefined) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  static async forSession(session: Session, env: Env): Promise<BuildApi> {
    return new BuildApi(session.url, await sessionAuthorization(session, env));
  }

  /**
   * One request; resolves with the response once its status is 2xx (the body not read yet).
   * `timeoutMs` limits the whole exchange, body included; `headersTimeoutMs` only the wait for
   * the headers (streams: their body has an idle limit of its own); `signal` is the caller's
   * (Ctrl-C): its abort is passed on as it is.
   */
  async send(method: string, apiPath: string, init: { body?: BodyInit; headers?: Record<string, string>; timeoutMs?: number; headersTimeoutMs?: number; signal?: AbortSignal } = {}): Promise<Response> {
    const url = `${this.baseUrl}${apiPath}`;
    const headers: Record<string, string> = { accept: 'application/json', ...init.headers };
    if (this.authorization) headers.authorization = this.authorization;
    const headersLimit = new AbortController();
    const limit = init.timeoutMs ?? init.headersTimeoutMs;
    const timer = init.headersTimeoutMs !== undefined ? setTimeout(() => headersLimit.abort(), init.headersTimeoutMs) : undefined;
    const signals = [init.signal, init.timeoutMs !== undefined ? AbortSignal.timeout(init.timeoutMs) : undefined, headersLimit.signal].filter((s): s is AbortSignal => s !== undefined);
    let response: Response;
    try {
      response = await fetch(url, { method, headers, body: init.body, redirect: 'manual', signal: AbortSignal.any(signals) });
    } catch (error) {
      const err = error as Error & { cause?: { code?: string; message?: string } };
      if (abortedBy(init.signal)) throw error;
      if (err.name === 'TimeoutError' || err.name === 'AbortError') {
        throw new ApiRequestError(`${method} ${url}: no answer within ${Math.round((limit ?? 0) / 1000)} s`, method, url, 0);
      }
      const cause = err.cause?.code ?? err.cause?.message ?? err.message;
      throw new ApiRequestError(`cannot reach ${url} (${method}): ${cause}`, method, url, 0);
    } finally {
      clearTimeout(timer);
    }
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location');
      await response.body?.cancel().catch(() => undefined);
      throw new ApiRequestError(`${method} ${url}: the server redirects (${response.status}) to ${location ?? 'another address'}; use that address instead`, method, url, response.status);
    }
    if (!response.ok) throw responseError(method, url, response, await response.text().catch(() => ''));
    return response;
  }

  /** A JSON request with the usual 30 s limit; resolves with the parsed body. */
  async json<T>(method: string, apiPath: string, body?: unknown, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    const response = await this.send(method, apiPath, {
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      timeoutMs: options.timeoutMs ?? jsonTimeoutMs,
      signal: options.signal,
    });
    const text = await readBody(response, method, `${this.baseUrl}${apiPath}`);
    if (text === '') return undefined as T;
    const parsed = parseJson(text);
    if (parsed === undefined) throw new ApiRequestError(`${method} ${this.baseUrl}${apiPath}: the answer is not JSON (is this a Slipway server?)`, method, `${this.baseUrl}${apiPath}`, response.status);
    return parsed as T;
  }

  /** Like `json`, also returning the status (some answers differ by it: 200 vs 202). */
  async jsonWithStatus<T>(method: string, apiPath: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ status: number; body: T }> {
    const response = await this.send(method, apiPath, { timeoutMs: options.timeoutMs ?? jsonTimeoutMs, signal: options.signal });
    const text = await readBody(response, method, `${this.baseUrl}${apiPath}`);
    const parsed = parseJson(text);
    if (parsed === undefined) throw new ApiRequestError(`${method} ${this.baseUrl}${apiPath}: the answer is not JSON (is this a Slipway server?)`, method, `${this.baseUrl}${apiPath}`, response.status);
    return { status: response.status, body: parsed as T };
  }

  getBuild(namespace: string, id: string, signal?: AbortSignal): Promise<BuildView> {
    return this.json<BuildView>('GET', `${nsPath(namespace)}/builds/${encodeURIComponent(id)}`, undefined, { signal });
  }

  cancelBuild(namespace: string, id: string, timeoutMs = jsonTimeoutMs): Promise<BuildView> {
    return this.json<BuildView>('POST', `${nsPath(namespace)}/builds/${encodeURIComponent(id)}/cancel`, undefined, { timeoutMs });
  }

  listBuilds(namespace: string, filter: { kind?: string; component?: string; status?: string; limit?: number }): Promise<BuildView[]> {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(filter)) if (value !== undefined) query.set(key, String(value));
    const qs = query.toString();
    return this.json<BuildView[]>('GET', `${nsPath(namespace)}/builds${qs ? `?${qs}` : ''}`);
  }

  /** The stored log of a build as text. */
  async logText(namespace: string, id: string): Promise<string> {
    const apiPath = `${nsPath(namespace)}/builds/${encodeURIComponent(id)}/logs`;
    const response = await this.send('GET', apiPath, { headers: { accept: 'text/plain' }, timeoutMs: 120_000 });
    return readBody(response, 'GET', `${this.baseUrl}${apiPath}`);
  }

  /** `POST …/images` (multipart); the upload may take as long as its size needs. */
  submitImage(namespace: string, form: FormData, options: { bytes: number; signal?: AbortSignal }): Promise<BuildView> {
    // 30 s plus 256 KiB/s for the upload and the server's unpacking.
    const timeoutMs = jsonTimeoutMs + Math.ceil(options.bytes / 262_144) * 1000;
    return this.send('POST', `${nsPath(namespace)}/images`, { body: form, timeoutMs, signal: options.signal })
      .then(async (response) => {
        const parsed = parseJson(await readBody(response, 'POST', `${this.baseUrl}${nsPath(namespace)}/images`));
        if (parsed === undefined) throw new ApiRequestError(`POST ${this.baseUrl}${nsPath(namespace)}/images: the answer is not JSON (is this a Slipway server?)`, 'POST', `${this.baseUrl}${nsPath(namespace)}/images`, response.status);
        return parsed as BuildView;
      });
  }

  submitComponent(namespace: string, input: { url: string; component: string; tag: string; architecture: string }, signal?: AbortSignal): Promise<BuildView> {
    return this.json<BuildView>('POST', `${nsPath(namespace)}/components`, input, { signal });
  }

  /**
   * Follows a build's log (Server-Sent Events) until the build reaches a final state, then
   * resolves with the build. The server closes the stream at once for a build still queued
   * (no log yet) and the connection may break: either way it connects again, skipping the lines
   * already passed on (the stream always replays the log from its start).
   */
  async followLog(namespace: string, id: string, sink: LogSink, signal?: AbortSignal): Promise<BuildView> {
    const logPath = `${nsPath(namespace)}/builds/${encodeURIComponent(id)}/logs`;
    let seen = 0;
    let failures = 0;
    let lastState = '';
    const state = (status: string) => {
      if (status !== lastState) {
        lastState = status;
        sink.state?.(status);
      }
    };
    for (;;) {
      let end: { status?: string; errorMessage?: string | null; digest?: string | null } | undefined;
      let count = 0;
      try {
        const idle = new AbortController();
        const response = await this.send('GET', logPath, {
          headers: { accept: 'text/event-stream' },
          headersTimeoutMs: jsonTimeoutMs,
          signal: signal ? AbortSignal.any([signal, idle.signal]) : idle.signal,
        });
        failures = 0;
        await readEvents(response, idle, (event, data) => {
          if (event === 'end') {
            end = parseJson(data) as typeof end;
            return;
          }
          count += 1;
          if (count > seen) {
            seen = count;
            state('running');
            sink.line(data);
          }
        });
      } catch (error) {
        if (abortedBy(signal)) throw error;
        // A build that is not there, or a key that is refused, does not get better by retrying.
        if (error instanceof ApiRequestError && error.status >= 400 && error.status < 500) throw error;
        failures += 1;
        if (failures > 5) {
          throw new CommandError(`lost the log of build ${id}: ${(error as Error).message}; the build goes on: follow it with \`slipway builds logs -n ${namespace} ${id} --follow\``);
        }
        state('reconnecting');
        await sleep(Math.min(500 * 2 ** failures, 10_000), undefined, { signal });
        continue;
      }
      if (end?.status && terminalStatuses.has(end.status)) {
        const build = await this.getBuild(namespace, id, signal);
        if (terminalStatuses.has(build.status)) return build;
      }
      // Ended without a final state: the build waits for a worker (no log yet), or the stream broke off.
      if (end?.status) state(end.status);
      await sleep(end?.status === 'queued' ? 1000 : 500, undefined, { signal });
    }
  }

  /**
   * Downloads `apiPath` to `file` (through a temp file beside it, renamed when complete) and
   * checks the bytes against the Docker-Content-Digest header when the server sends one.
   */
  async download(apiPath: string, file: string, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<{ bytes: number; digest: string }> {
    const idle = new AbortController();
    const response = await this.send('GET', apiPath, {
      headers: { accept: 'application/gzip, application/json' },
      headersTimeoutMs: options.timeoutMs ?? 120_000,
      signal: options.signal ? AbortSignal.any([options.signal, idle.signal]) : idle.signal,
    });
    const expected = response.headers.get('docker-content-digest');
    const toStdout = file === '-';
    const temp = toStdout ? '' : path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.part`);
    const out = toStdout ? process.stdout : createWriteStream(temp, { mode: 0o644 });
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      if (!response.body) throw new CommandError(`GET ${this.baseUrl}${apiPath}: the answer has no body`);
      const reader = response.body.getReader();
      let timer = setTimeout(() => idle.abort(), idleTimeoutMs);
      try {
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (error) {
            if (abortedBy(options.signal)) throw error;
            throw new CommandError(`GET ${this.baseUrl}${apiPath}: the download broke off after ${bytes} bytes${idle.signal.aborted ? ` (nothing for ${idleTimeoutMs / 1000} s)` : `: ${(error as Error).message}`}`);
          }
          if (chunk.done) break;
          clearTimeout(timer);
          timer = setTimeout(() => idle.abort(), idleTimeoutMs);
          hash.update(chunk.value);
          bytes += chunk.value.length;
          if (!out.write(chunk.value)) await new Promise<void>((resolve) => out.once('drain', resolve));
        }
      } finally {
        clearTimeout(timer);
      }
      const digest = `sha256:${hash.digest('hex')}`;
      if (expected && expected.startsWith('sha256:') && expected !== digest) {
        throw new CommandError(`GET ${this.baseUrl}${apiPath}: the download does not match its digest (${expected}, got ${digest})`);
      }
      if (!toStdout) {
        await new Promise<void>((resolve, reject) => (out as ReturnType<typeof createWriteStream>).end((error?: Error | null) => (error ? reject(error) : resolve())));
        await rename(temp, file);
      }
      return { bytes, digest };
    } catch (error) {
      if (!toStdout) {
        (out as ReturnType<typeof createWriteStream>).destroy();
        await rm(temp, { force: true });
      }
      throw error;
    }
  }
}

/** The body as text; a broken-off or timed-out body is an ApiRequestError. */
async function readBody(response: Response, method: string, url: string): Promise<string> {
  try {
    return await response.text();
  } catch (error) {
    const err = error as Error;
    const why = err.name === 'TimeoutError' || err.name === 'AbortError' ? 'no complete answer in time' : `the answer broke off: ${err.message}`;
    throw new ApiRequestError(`${method} ${url}: ${why}`, method, url, response.status);
  }
}

export function nsPath(namespace: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}`;
}

/**
 * Reads a Server-Sent Events body, calling `onEvent(event, data)` per event (`message` when the
 * event has no name); comments (keep-alives) only reset the idle timer, which aborts `idle`.
 */
async function readEvents(response: Response, idle: AbortController, onEvent: (event: string, data: string) => void): Promise<void> {
  if (!response.body) return;
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = 'message';
  let data: string[] = [];
  let timer = setTimeout(() => idle.abort(), idleTimeoutMs);
  const dispatch = () => {
    if (data.length > 0 || event !== 'message') onEvent(event, data.join('\n'));
    event = 'message';
    data = [];
  };
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (idle.signal.aborted) throw new Error(`no data for ${idleTimeoutMs / 1000} s`);
        throw error;
      }
      if (chunk.done) break;
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), idleTimeoutMs);
      buffer += decoder.decode(chunk.value, { stream: true });
      let newline: number;
      while ((newline = buffer.search(/\r?\n|\r/)) >= 0) {
        const line = buffer.slice(0, newline);
        const breakLength = buffer.startsWith('\r\n', newline) ? 2 : 1;
        // A lone \r at the very end may be the first half of \r\n: wait for more.
        if (buffer[newline] === '\r' && breakLength === 1 && newline === buffer.length - 1) break;
        buffer = buffer.slice(newline + breakLength);
        if (line === '') {
          dispatch();
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
    }
  } finally {
    clearTimeout(timer);
    reader.releaseLock();
  }
  // The stream ended without a closing blank line: what came is still an event.
  if (buffer.trim() !== '' && buffer.startsWith('data:')) data.push(buffer.slice(5).replace(/^ /, ''));
  if (data.length > 0) dispatch();
}
