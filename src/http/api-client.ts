/**
 * @module http/api-client
 * One typed client of `/api/v1`, derived from the parts' operation lists (`<part>/api.ts`,
 * the same lists the OpenAPI document is generated from): `client.call(operations.getMe)`
 * answers with the operation's own answer type, so the CLI and the dashboard share one shape
 * of each resource. Runs on the global fetch (Node and browsers); no node-only imports.
 */
import type { z } from 'zod';
import type { Operation, PathParams, RawAnswer } from './api-contract.js';

export type ApiAuth =
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'bearer'; key: string };

type AnswerOf<A> = A extends null ? undefined : A extends RawAnswer ? string : A extends z.ZodType ? z.output<A> : never;

/** What a successful call resolves with: the union of the operation's answers. */
export type ApiResult<O extends Operation> = AnswerOf<O['answers'][keyof O['answers']]>;

/** The JSON body an operation takes (its schema's input). */
export type ApiBody<O extends Operation> = O['body'] extends z.ZodType ? z.input<O['body']> : unknown;

/** A body sent as it is instead of JSON, where the operation takes one (a YAML pipeline definition). */
export interface TextBody {
  contentType: string;
  text: string;
}

/** Path parameters (named as in the path), query and JSON body (or its text form) of one call. */
export type ApiInput<O extends Operation> =
  & (PathParams<O['path']> extends Record<string, string> ? { params: PathParams<O['path']> } : { params?: undefined })
  & (O['query'] extends z.ZodType ? { query?: z.input<O['query']> } : { query?: undefined })
  & (O['body'] extends z.ZodType ? { body: ApiBody<O>; raw?: undefined } | { raw: TextBody; body?: undefined } : { body?: unknown; raw?: TextBody });

/** A non-2xx answer, or no answer: the server's `{code, message, detail}` when it sent one. */
export class ApiCallError extends Error {
  override name = 'ApiCallError';
  constructor(
    message: string,
    readonly method: string,
    readonly url: string,
    /** HTTP status; 0 when no answer arrived (network error or timeout). */
    readonly status: number,
    readonly code?: string,
    readonly serverMessage?: string,
    readonly detail?: unknown,
    readonly requestId?: string,
    /** The answer as it came (non-2xx only): its text, status text and redirect target. */
    readonly response?: { text: string; statusText: string; location?: string },
  ) {
    super(message);
  }
}

export interface ApiClientOptions {
  /** The server's root, e.g. `http://127.0.0.1:8080`; '' for the page's own origin. */
  baseUrl: string;
  auth?: ApiAuth;
  /** Per request; default 30 s. */
  timeoutMs?: number;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** `/api/v1/namespaces/:ns/…` with `{ns: 'a b'}` → `/api/v1/namespaces/a%20b/…` (`*` stays raw). */
export function fillPath(path: string, params: Record<string, string> = {}): string {
  return path
    .replace(/:([A-Za-z_]\w*)/g, (_, name: string) => {
      const value = params[name];
      if (value === undefined) throw new TypeError(`missing path parameter "${name}" for ${path}`);
      return encodeURIComponent(value);
    })
    .replace(/\*$/, () => (params['*'] ?? '').split('/').map(encodeURIComponent).join('/'));
}

function queryString(query: Record<string, unknown> | undefined): string {
  if (!query) return '';
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue;
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, String(item));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

function base64(text: string): string {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function authorizationHeader(auth: ApiAuth | undefined): string | undefined {
  if (auth?.kind === 'basic') return `Basic ${base64(`${auth.username}:${auth.password}`)}`;
  if (auth?.kind === 'bearer') return `Bearer ${auth.key}`;
  return undefined;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

export class ApiClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly fetcher: typeof fetch;

  constructor(private readonly options: ApiClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fetcher = options.fetch ?? ((...args) => fetch(...args));
  }

  authorization(): string | undefined {
    return authorizationHeader(this.options.auth);
  }

  /** Calls one operation; resolves with its parsed answer, or throws ApiCallError. */
  async call<O extends Operation>(operation: O, input?: ApiInput<O>): Promise<ApiResult<O>> {
    const { params, query, body, raw } = (input ?? {}) as { params?: Record<string, string>; query?: Record<string, unknown>; body?: unknown; raw?: TextBody };
    return await this.send(operation.method, `${fillPath(operation.path, params)}${queryString(query)}`, body, { raw }) as ApiResult<O>;
  }

  /**
   * One request to a path of this server (with its query), a JSON body when given (or `raw`, sent
   * as it is): the parsed JSON answer, its text when it is not JSON, undefined when empty; or
   * throws ApiCallError.
   */
  async send(method: string, path: string, body?: unknown, options: { raw?: TextBody } = {}): Promise<unknown> {
    const url = `${this.baseUrl}${path}`;
    const headers: Record<string, string> = { accept: 'application/json' };
    const authorization = this.authorization();
    if (authorization) headers.authorization = authorization;
    const payload = options.raw ? options.raw.text : body === undefined ? undefined : JSON.stringify(body);
    if (options.raw) headers['content-type'] = options.raw.contentType;
    else if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetcher(url, {
        method,
        headers,
        body: payload,
        // Credentials are never sent on to wherever a redirect points.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      const err = error as Error & { cause?: { code?: string; message?: string } };
      if (err.name === 'TimeoutError' || err.name === 'AbortError') {
        throw new ApiCallError(`${method} ${url}: no answer within ${Math.round(this.timeoutMs / 1000)} s`, method, url, 0);
      }
      throw new ApiCallError(`cannot reach ${url} (${method}): ${err.cause?.code ?? err.cause?.message ?? err.message}`, method, url, 0);
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      const err = error as Error;
      const why = err.name === 'TimeoutError' || err.name === 'AbortError' ? `no complete answer within ${Math.round(this.timeoutMs / 1000)} s` : `the answer broke off: ${err.message}`;
      throw new ApiCallError(`${method} ${url}: ${why}`, method, url, response.status);
    }
    if (!response.ok) {
      const parsed = parseJson(text) as { code?: unknown; message?: unknown; errorMessage?: unknown; detail?: { requestId?: unknown } } | undefined;
      const code = typeof parsed?.code === 'string' ? parsed.code : undefined;
      const message = typeof parsed?.message === 'string' ? parsed.message : typeof parsed?.errorMessage === 'string' ? parsed.errorMessage : undefined;
      const requestId = response.headers.get('x-request-id') ?? undefined;
      const what = message ? `${code ? `${code}: ` : ''}${message}` : `HTTP ${response.status}`;
      throw new ApiCallError(`${method} ${url}: ${what}`, method, url, response.status, code, message, parsed?.detail, requestId,
        { text, statusText: response.statusText, location: response.headers.get('location') ?? undefined });
    }
    if (text === '') return undefined;
    const type = response.headers.get('content-type') ?? '';
    if (!type.includes('json')) return text;
    const parsed = parseJson(text);
    if (parsed === undefined) throw new ApiCallError(`${method} ${url}: the answer is not JSON`, method, url, response.status);
    return parsed;
  }
}
