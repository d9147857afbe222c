/**
 * @module registry/upstream-client
 * A small OCI distribution client for one upstream registry: manifest HEAD/GET and blob GET,
 * with the token flow registries use (a 401 with `WWW-Authenticate: Bearer realm,service,scope`
 * → a token from the realm, with Basic credentials when there are any → the request again) or
 * plain Basic. Built on node:http(s) rather than fetch so that `insecure` can accept an
 * unverified certificate and a blob redirect to a CDN drops the Authorization header.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';

export interface UpstreamLogin {
  username: string;
  password: string;
}

export interface UpstreamClientOptions {
  /** e.g. `https://registry-1.docker.io` (no trailing slash). */
  url: string;
  insecure: boolean;
  /** Login material for the upstream repository, if any (looked up whenever a token is fetched). */
  login: (repository: string) => Promise<UpstreamLogin | null>;
  timeoutMs?: number;
}

export interface UpstreamResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Readable;
}

/** The upstream could not be reached or answered a 5xx: the caller may fall back to its cache. */
export class UpstreamUnreachableError extends Error {
  override name = 'UpstreamUnreachableError';
}

export const manifestAccept = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

const maxRedirects = 5;

export class UpstreamClient {
  /** Bearer tokens by scope, until shortly before they expire. */
  private readonly tokens = new Map<string, { token: string; until: number }>();
  private readonly timeoutMs: number;

  constructor(private readonly options: UpstreamClientOptions) {
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  manifest(repository: string, reference: string, method: 'GET' | 'HEAD'): Promise<UpstreamResponse> {
    return this.send(method, repository, `/v2/${repository}/manifests/${reference}`, { accept: manifestAccept });
  }

  blob(repository: string, digest: string, method: 'GET' | 'HEAD' = 'GET'): Promise<UpstreamResponse> {
    return this.send(method, repository, `/v2/${repository}/blobs/${digest}`, {});
  }

  /** One request with the token flow; 5xx and network faults become UpstreamUnreachableError. */
  private async send(method: string, repository: string, path: string, headers: Record<string, string>): Promise<UpstreamResponse> {
    const scope = `repository:${repository}:pull`;
    const cached = this.tokens.get(scope);
    let authorization = cached && cached.until > Date.now() ? `Bearer ${cached.token}` : undefined;
    let response = await this.request(method, `${this.options.url}${path}`, { ...headers, ...(authorization ? { authorization } : {}) });
    if (response.status === 401) {
      const challenge = String(response.headers['www-authenticate'] ?? '');
      response.body.resume();
      authorization = await this.authorize(challenge, repository, scope);
      if (authorization) response = await this.request(method, `${this.options.url}${path}`, { ...headers, authorization });
    }
    if (response.status >= 500) {
      response.body.resume();
      throw new UpstreamUnreachableError(`upstream answered ${response.status} to ${method} ${path}`);
    }
    return response;
  }

  private async authorize(challenge: string, repository: string, scope: string): Promise<string | undefined> {
    const login = await this.options.login(repository);
    const basic = login ? `Basic ${Buffer.from(`${login.username}:${login.password}`).toString('base64')}` : undefined;
    if (/^basic\b/i.test(challenge)) return basic;
    if (!/^bearer\b/i.test(challenge)) return undefined;
    const parameters = parseChallenge(challenge);
    if (!parameters.realm) return undefined;
    const url = new URL(parameters.realm);
    if (parameters.service) url.searchParams.set('service', parameters.service);
    url.searchParams.set('scope', parameters.scope ?? scope);
    const response = await this.request('GET', url.toString(), basic ? { authorization: basic } : {});
    const text = await readText(response.body);
    if (response.status !== 200) return undefined;
    const answer = JSON.parse(text) as { token?: string; access_token?: string; expires_in?: number };
    const token = answer.token ?? answer.access_token;
    if (!token) return undefined;
    // Tokens last 60 s unless the server says otherwise; refresh a little early.
    this.tokens.set(scope, { token, until: Date.now() + Math.max((answer.expires_in ?? 60) - 10, 5) * 1000 });
    return `Bearer ${token}`;
  }

  /** One HTTP exchange; follows redirects, dropping credentials when the host changes. */
  private request(method: string, target: string, headers: Record<string, string>, redirects = 0): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      const url = new URL(target);
      const transport = url.protocol === 'https:' ? https : http;
      const request = transport.request(url, {
        method, headers: { 'user-agent': 'slipway-pull-through', ...headers },
        timeout: this.timeoutMs, ...(url.protocol === 'https:' && this.options.insecure ? { rejectUnauthorized: false } : {}),
      }, (response) => {
        const status = response.statusCode ?? 0;
        const location = response.headers.location;
        if ([301, 302, 303, 307, 308].includes(status) && location) {
          response.resume();
          if (redirects >= maxRedirects) return reject(new UpstreamUnreachableError(`too many redirects from ${target}`));
          const next = new URL(location, url);
          const forward = { ...headers };
          if (next.host !== url.host) delete forward.authorization;
          this.request(status === 303 ? 'GET' : method, next.toString(), forward, redirects + 1).then(resolve, reject);
          return;
        }
        // The idle timeout guards the body as well as the headers.
        resolve({ status, headers: response.headers, body: response });
      });
      request.on('timeout', () => request.destroy(new UpstreamUnreachableError(`upstream ${url.host} timed out`)));
      request.on('error', (error) => reject(error instanceof UpstreamUnreachableError ? error : new UpstreamUnreachableError(`upstream ${url.host} unreachable: ${error.message}`)));
      request.end();
    });
  }
}

/** `Bearer realm="…",service="…",scope="…"` → its parameters. */
export function parseChallenge(challenge: string): Record<string, string> {
  const parameters: Record<string, string> = {};
  for (const match of challenge.replace(/^\w+\s+/, '').matchAll(/(\w+)="([^"]*)"/g)) parameters[match[1]!.toLowerCase()] = match[2]!;
  return parameters;
}

export async function readText(body: Readable, limit = 4 * 1024 * 1024): Promise<string> {
  return (await readCapped(body, limit)).toString('utf8');
}

export async function readCapped(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      body.destroy();
      throw new UpstreamUnreachableError(`upstream answer exceeds ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
