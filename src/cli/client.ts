/**
 * @module cli/client
 * The `slipway` command's client of the REST API (`/api/v1`): documented operations go through
 * the shared typed client (http/api-client.ts, shapes from the parts' api.ts); `request()` is
 * the untyped remainder, through the same client. Every request has a time limit (30 s by default). Failures are ApiRequestError
 * (a CommandError: exit 1) whose message names the method, the URL and the server's
 * `{code, message}`; the Authorization header is never part of a message.
 */
import { authOperations } from '../auth/api.js';
import { credentialOperations } from '../credentials/api.js';
import { ApiCallError, ApiClient as TypedClient, authorizationHeader, type ApiBody, type ApiInput, type ApiResult } from '../http/api-client.js';
import type { Operation } from '../http/api-contract.js';
import { CommandError } from './errors.js';

export type ClientAuth =
  | { kind: 'basic'; username: string; password: string }
  | { kind: 'bearer'; key: string };

export interface ClientOptions {
  /** Per request; default 30 s. */
  timeoutMs?: number;
}

export class ApiRequestError extends CommandError {
  override name = 'ApiRequestError';
  constructor(
    message: string,
    readonly method: string,
    readonly url: string,
    /** HTTP status; 0 when no answer arrived (network error or timeout). */
    readonly status: number,
    /** The server's error code (`UNAUTHORIZED`, `NOT_FOUND` …), when it sent one. */
    readonly code?: string,
    /** The server's message, when it sent one. */
    readonly serverMessage?: string,
  ) {
    super(message);
  }
}

// ---- shapes of the API answers the CLI uses: the operations' own (auth/api.ts, credentials/api.ts) ----

export type Me = ApiResult<typeof authOperations.getMe>;
export type CreatedKey = ApiResult<typeof authOperations.createKey>;
export type RegistryView = ApiResult<typeof credentialOperations.listRegistries>[number];
export type RegistryCreateInput = ApiBody<typeof credentialOperations.createRegistry>;
export type RegistryLogin = ApiResult<typeof credentialOperations.getRegistryLogin>;

const defaultTimeoutMs = 30_000;

export class ApiClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;

  constructor(baseUrl: string, private readonly auth?: ClientAuth, options: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  }

  me(): Promise<Me> {
    return this.call(authOperations.getMe);
  }

  createKey(input: ApiBody<typeof authOperations.createKey>): Promise<CreatedKey> {
    return this.call(authOperations.createKey, { body: input });
  }

  async revokeKey(id: string): Promise<void> {
    await this.call(authOperations.revokeKey, { params: { id } });
  }

  listRegistries(namespace: string): Promise<RegistryView[]> {
    return this.call(credentialOperations.listRegistries, { params: { ns: namespace } });
  }

  createRegistry(namespace: string, input: RegistryCreateInput): Promise<RegistryView> {
    return this.call(credentialOperations.createRegistry, { params: { ns: namespace }, body: input });
  }

  async deleteRegistry(namespace: string, id: string): Promise<void> {
    await this.call(credentialOperations.deleteRegistry, { params: { ns: namespace, id } });
  }

  registryCreds(namespace: string, id: string): Promise<RegistryLogin> {
    return this.call(credentialOperations.getRegistryLogin, { params: { ns: namespace, id } });
  }

  /**
   * One documented operation through the shared typed client (http/api-client.ts), its
   * failures as ApiRequestError with the CLI's messages.
   */
  async call<O extends Operation>(operation: O, input?: ApiInput<O>): Promise<ApiResult<O>> {
    let result: ApiResult<O>;
    try {
      result = await this.typed().call(operation, input);
    } catch (error) {
      throw error instanceof ApiCallError ? cliError(error) : error;
    }
    const json = Object.values(operation.answers).some((answer) => answer !== null && !('raw' in answer));
    if (json && typeof result === 'string') {
      const url = `${this.baseUrl}${operation.path}`;
      throw new ApiRequestError(`${operation.method} ${url}: the answer is not JSON (is this a Slipway server?)`, operation.method, url, 200);
    }
    return result;
  }

  /** The Authorization header of this client's credentials (for streamed or raw requests). */
  authorization(): string | undefined {
    return authorizationHeader(this.auth);
  }

  /** One request; resolves with the parsed JSON body (undefined for an empty one). */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let result: unknown;
    try {
      result = await this.typed().send(method, path, body);
    } catch (error) {
      throw error instanceof ApiCallError ? cliError(error) : error;
    }
    if (typeof result === 'string' && parseJson(result) === undefined) {
      const url = `${this.baseUrl}${path}`;
      throw new ApiRequestError(`${method} ${url}: the answer is not JSON (is this a Slipway server?)`, method, url, 200);
    }
    return (typeof result === 'string' ? parseJson(result) : result) as T;
  }

  private typed(): TypedClient {
    return new TypedClient({ baseUrl: this.baseUrl, auth: this.auth, timeoutMs: this.timeoutMs });
  }
}

function registriesPath(namespace: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/registries`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** `scheme://host[:port]` of a redirect target, resolved against the request URL. */
function serverRoot(location: string, requestUrl: string): string {
  try {
    return new URL(location, requestUrl).origin;
  } catch {
    return location;
  }
}

/** The shared client's failure in the CLI's words (the same as request()'s). */
function cliError(error: ApiCallError): ApiRequestError {
  const { method, url, status, response } = error;
  if (!response) return new ApiRequestError(error.message, method, url, status, error.code, error.serverMessage);
  if (status >= 300 && status < 400) {
    const location = response.location;
    return new ApiRequestError(
      `${method} ${url}: the server redirects (${status}) to ${location ?? 'another address'}; use that address${location ? ` (${serverRoot(location, url)})` : ''} instead`,
      method, url, status,
    );
  }
  return errorOf(method, url, status, response.statusText, response.text);
}

/** The error for a non-2xx answer, naming the server's `{code, message}` (or `errorMessage`). */
export function responseError(method: string, url: string, response: Response, text: string): ApiRequestError {
  return errorOf(method, url, response.status, response.statusText, text);
}

function errorOf(method: string, url: string, status: number, statusText: string, text: string): ApiRequestError {
  const parsed = parseJson(text) as { code?: unknown; message?: unknown; errorMessage?: unknown } | undefined;
  const code = typeof parsed?.code === 'string' ? parsed.code : undefined;
  // The artifact-storage API answers `{status, errorMessage}`.
  const message = typeof parsed?.message === 'string' ? parsed.message : typeof parsed?.errorMessage === 'string' ? parsed.errorMessage : undefined;
  const said = code || message
    ? `${code ?? ''}${code && message ? ': ' : ''}${message ?? ''}`
    : text.trim() ? text.trim().replace(/\s+/g, ' ').slice(0, 200) : statusText;
  return new ApiRequestError(`${method} ${url}: ${status} ${said}`, method, url, status, code, message);
}
