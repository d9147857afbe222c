/**
 * @module cli/client
 * A small typed client of Slipway's REST API (`/api/v1`) for the `slipway` command, on Node's
 * fetch. Every request has a time limit (30 s by default). Failures are ApiRequestError
 * (a CommandError: exit 1) whose message names the method, the URL and the server's
 * `{code, message}`; the Authorization header is never part of a message.
 */
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

// ---- shapes of the API answers the CLI uses (see auth/routes.ts, credentials/routes.ts) ----

export interface Me {
  name: string;
  kind: 'user' | 'service';
  admin: boolean;
  namespaces: Array<{ name: string; role: string }>;
}

export interface CreatedKey {
  id: string;
  /** The secret, shown once. */
  key: string;
  name: string;
  scopes: string[];
  expiresAt: string | null;
  owner: string;
}

export interface RegistryView {
  id: string;
  namespace: string;
  prefix: string;
  type: string;
  username: string | null;
  region: string | null;
  enable_ci: boolean;
  credentials: Record<string, string>;
  created_at: string;
  updated_at: string;
}

export interface RegistryCreateInput {
  prefix: string;
  type: string;
  credentials: Record<string, unknown>;
  enable_ci: boolean;
}

export interface RegistryLogin {
  username: string;
  password: string;
  expires_at: string | null;
}

const defaultTimeoutMs = 30_000;

export class ApiClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;

  constructor(baseUrl: string, private readonly auth?: ClientAuth, options: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  }

  me(): Promise<Me> {
    return this.request<Me>('GET', '/api/v1/me');
  }

  createKey(input: { name: string; scopes: string[]; expiresIn?: string }): Promise<CreatedKey> {
    return this.request<CreatedKey>('POST', '/api/v1/keys', input);
  }

  async revokeKey(id: string): Promise<void> {
    await this.request<void>('DELETE', `/api/v1/keys/${encodeURIComponent(id)}`);
  }

  listRegistries(namespace: string): Promise<RegistryView[]> {
    return this.request<RegistryView[]>('GET', registriesPath(namespace));
  }

  createRegistry(namespace: string, input: RegistryCreateInput): Promise<RegistryView> {
    return this.request<RegistryView>('POST', registriesPath(namespace), input);
  }

  async deleteRegistry(namespace: string, id: string): Promise<void> {
    await this.request<void>('DELETE', `${registriesPath(namespace)}/${encodeURIComponent(id)}`);
  }

  registryCreds(namespace: string, id: string): Promise<RegistryLogin> {
    return this.request<RegistryLogin>('GET', `${registriesPath(namespace)}/${encodeURIComponent(id)}/creds`);
  }

  /** The Authorization header of this client's credentials (for streamed or raw requests). */
  authorization(): string | undefined {
    if (this.auth?.kind === 'basic') return `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`, 'utf8').toString('base64')}`;
    if (this.auth?.kind === 'bearer') return `Bearer ${this.auth.key}`;
    return undefined;
  }

  /** One request; resolves with the parsed JSON body (undefined for an empty one). */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = `${this.baseUrl}${path}`;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.auth?.kind === 'basic') headers.authorization = `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`, 'utf8').toString('base64')}`;
    if (this.auth?.kind === 'bearer') headers.authorization = `Bearer ${this.auth.key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        // Credentials are never sent on to wherever a redirect points; the caller is told instead.
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      const err = error as Error & { cause?: { code?: string; message?: string } };
      if (err.name === 'TimeoutError' || err.name === 'AbortError') {
        throw new ApiRequestError(`${method} ${url}: no answer within ${Math.round(this.timeoutMs / 1000)} s`, method, url, 0);
      }
      const cause = err.cause?.code ?? err.cause?.message ?? err.message;
      throw new ApiRequestError(`cannot reach ${url} (${method}): ${cause}`, method, url, 0);
    }
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      const err = error as Error;
      const why = err.name === 'TimeoutError' || err.name === 'AbortError' ? `no complete answer within ${Math.round(this.timeoutMs / 1000)} s` : `the answer broke off: ${err.message}`;
      throw new ApiRequestError(`${method} ${url}: ${why}`, method, url, response.status);
    }
    if (response.status >= 300 && response.status < 400) {
      const location = response.headers.get('location');
      throw new ApiRequestError(
        `${method} ${url}: the server redirects (${response.status}) to ${location ?? 'another address'}; use that address${location ? ` (${serverRoot(location, url)})` : ''} instead`,
        method, url, response.status,
      );
    }
    if (!response.ok) throw responseError(method, url, response, text);
    if (text === '') return undefined as T;
    const parsed = parseJson(text);
    if (parsed === undefined) {
      throw new ApiRequestError(`${method} ${url}: the answer is not JSON (is this a Slipway server?)`, method, url, response.status);
    }
    return parsed as T;
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

/** The error for a non-2xx answer, naming the server's `{code, message}` (or `errorMessage`). */
export function responseError(method: string, url: string, response: Response, text: string): ApiRequestError {
  const parsed = parseJson(text) as { code?: unknown; message?: unknown; errorMessage?: unknown } | undefined;
  const code = typeof parsed?.code === 'string' ? parsed.code : undefined;
  // The artifact-storage API answers `{status, errorMessage}`.
  const message = typeof parsed?.message === 'string' ? parsed.message : typeof parsed?.errorMessage === 'string' ? parsed.errorMessage : undefined;
  const said = code || message
    ? `${code ?? ''}${code && message ? ': ' : ''}${message ?? ''}`
    : text.trim() ? text.trim().replace(/\s+/g, ' ').slice(0, 200) : response.statusText;
  return new ApiRequestError(`${method} ${url}: ${response.status} ${said}`, method, url, response.status, code, message);
}
