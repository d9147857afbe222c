/**
 * The one client tests use for Slipway's JSON API (`/api/v1/...`, `/auth/...`, `/fn/...`): a base
 * URL and credentials in, `{status, headers, body, text}` out. It never throws on a status, so a
 * test asserts exactly what it expects; it does throw on network errors and on its time limit, so
 * a stuck server fails the test instead of hanging it. Registry traffic (`/v2/`) goes through real
 * clients or registry-client.ts instead.
 */
import assert from 'node:assert/strict';

/**
 * Who calls: a ready `Authorization` value (`Basic …`/`Bearer …`), a user and password, a bearer
 * token, or an API key (sent as `Bearer <key>`, as the API asks). `undefined`/`null`: anonymous.
 */
export type Credentials = string | { basic: { user: string; password: string } } | { bearer: string } | { apiKey: string } | null | undefined;

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  /** Parsed JSON when the answer is JSON, else the text (`undefined` when empty). */
  body: T;
  text: string;
}

export interface RequestOptions {
  /** Overrides the client's credentials for this call (`null`: anonymous). */
  auth?: Credentials;
  headers?: Record<string, string>;
  /** Per-request time limit; default `defaultTimeoutMs`. */
  timeoutMs?: number;
}

/**
 * A request body: a plain value goes as JSON; Buffer, Uint8Array, Blob, FormData and
 * URLSearchParams go as they are (a `content-type` header is then the caller's to give).
 */
export type RequestBody = unknown;

export type Requester = <T = any>(method: string, path: string, body?: RequestBody, options?: RequestOptions) => Promise<ApiResponse<T>>;

export interface ApiClient {
  readonly base: string;
  request: Requester;
  get<T = any>(path: string, options?: RequestOptions): Promise<ApiResponse<T>>;
  post<T = any>(path: string, body?: RequestBody, options?: RequestOptions): Promise<ApiResponse<T>>;
  put<T = any>(path: string, body?: RequestBody, options?: RequestOptions): Promise<ApiResponse<T>>;
  patch<T = any>(path: string, body?: RequestBody, options?: RequestOptions): Promise<ApiResponse<T>>;
  delete<T = any>(path: string, options?: RequestOptions): Promise<ApiResponse<T>>;
  /** The same server, other credentials. */
  as(credentials: Credentials): ApiClient;
}

/** Long enough for `?wait=true` builds and sync function calls; tests with stricter needs pass their own. */
export const defaultTimeoutMs = 300_000;

export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

export function authorization(credentials: Credentials): string | undefined {
  if (credentials === undefined || credentials === null) return undefined;
  if (typeof credentials === 'string') return credentials;
  if ('basic' in credentials) return basicAuth(credentials.basic.user, credentials.basic.password);
  if ('bearer' in credentials) return `Bearer ${credentials.bearer}`;
  return `Bearer ${credentials.apiKey}`;
}

const passedAsIs = (body: unknown): body is BodyInit =>
  body instanceof Uint8Array || body instanceof Blob || body instanceof FormData || body instanceof URLSearchParams || body instanceof ArrayBuffer;

/** A client for the server at `base` (e.g. `ts.url`), calling with `credentials` unless a call says otherwise. */
export function createApiClient(base: string | (() => string), credentials?: Credentials): ApiClient {
  const baseOf = typeof base === 'string' ? () => base : base;
  const request: Requester = async (method, path, body, options = {}) => {
    const auth = authorization(options.auth !== undefined ? options.auth : credentials);
    const headers: Record<string, string> = {};
    if (auth) headers.authorization = auth;
    let payload: BodyInit | undefined;
    if (body !== undefined) {
      if (passedAsIs(body)) payload = body;
      else {
        payload = JSON.stringify(body);
        headers['content-type'] = 'application/json';
      }
    }
    const url = `${baseOf()}${path}`;
    let response: Response;
    try {
      response = await fetch(url, { method, headers: { ...headers, ...options.headers }, body: payload, signal: AbortSignal.timeout(options.timeoutMs ?? defaultTimeoutMs) });
    } catch (error) {
      // undici says only "fetch failed"; the cause (ECONNREFUSED, reset, timeout) is what matters.
      const cause = (error as { cause?: { message?: string; code?: string } }).cause;
      throw new Error(`${method} ${url}: ${(error as Error).message}${cause ? ` (${cause.code ?? ''} ${cause.message ?? ''})` : ''}`, { cause: error });
    }
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: parseBody(text) as never, text };
  };
  return {
    get base() { return baseOf(); },
    request,
    get: (path, options) => request('GET', path, undefined, options),
    post: (path, body, options) => request('POST', path, body, options),
    put: (path, body, options) => request('PUT', path, body, options),
    patch: (path, body, options) => request('PATCH', path, body, options),
    delete: (path, options) => request('DELETE', path, undefined, options),
    as: (other) => createApiClient(baseOf, other),
  };
}

function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Asserts that `response` is an API error with this status and code, in the one error shape
 * `{code, message, detail?}` (no other keys, a non-empty message); `message` also matches when given.
 */
export function assertApiError(response: ApiResponse, status: number, code: string, message?: RegExp): void {
  const shown = `${response.status} ${response.text.slice(0, 500)}`;
  assert.equal(response.status, status, shown);
  const body = response.body as Record<string, unknown> | undefined;
  assert.ok(body && typeof body === 'object' && !Array.isArray(body), `an error body is a JSON object: ${shown}`);
  assert.equal(body.code, code, shown);
  assert.equal(typeof body.message, 'string', shown);
  assert.ok((body.message as string).length > 0, `an error has a message: ${shown}`);
  assert.deepEqual(Object.keys(body).filter((key) => !['code', 'message', 'detail'].includes(key)), [], `an error has only code, message and detail: ${shown}`);
  if (message) assert.match(body.message as string, message);
}
