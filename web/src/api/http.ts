/**
 * The dashboard's one door to the server: the signed-in session (a 12 h API key kept in
 * sessionStorage), the shared typed client for parts that publish their operation lists, a
 * small JSON `request` for the others, and the two streaming readers (SSE and NDJSON) that
 * fetch — unlike EventSource — can send `Authorization` with.
 */
import { ApiCallError, ApiClient } from '@shared/http/api-client.js';

export { ApiCallError };

export interface Session {
  token: string;
  keyId: string;
  name: string;
  admin: boolean;
  expiresAt: string | null;
}

const storageKey = 'slipway.session';
const listeners = new Set<(session: Session | null) => void>();

export function currentSession(): Session | null {
  try {
    const text = sessionStorage.getItem(storageKey);
    return text ? (JSON.parse(text) as Session) : null;
  } catch {
    return null;
  }
}

export function setSession(session: Session | null): void {
  if (session) sessionStorage.setItem(storageKey, JSON.stringify(session));
  else sessionStorage.removeItem(storageKey);
  for (const listener of listeners) listener(session);
}

export function onSessionChange(listener: (session: Session | null) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function authHeaders(): Record<string, string> {
  const session = currentSession();
  return session ? { authorization: `Bearer ${session.token}` } : {};
}

/** A key the server no longer accepts ends the session: the app shows the sign-in form. */
function expire(error: unknown): never {
  if (error instanceof ApiCallError && error.status === 401 && currentSession()) setSession(null);
  throw error;
}

/** The shared typed client (operation lists from src/<part>/api.ts). */
export function client(): ApiClient {
  const session = currentSession();
  return new ApiClient({ baseUrl: '', auth: session ? { kind: 'bearer', key: session.token } : undefined });
}

export async function call<T>(run: (c: ApiClient) => Promise<T>): Promise<T> {
  try {
    return await run(client());
  } catch (error) {
    return expire(error);
  }
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** Send the body as it is (text), not as JSON. */
  raw?: boolean;
  signal?: AbortSignal;
}

/**
 * A plain JSON call; left for the sign-in and sign-out calls (the session they make or end is
 * handled here). Everything else goes through `call(c => c.call(ops.x, …))`.
 */
export async function request<T = unknown>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', ...authHeaders(), ...options.headers };
  if (body !== undefined && !options.raw) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : options.raw ? (body as BodyInit) : JSON.stringify(body), signal: options.signal });
  } catch (error) {
    throw new ApiCallError(`cannot reach the server: ${(error as Error).message}`, method, path, 0);
  }
  const text = await response.text();
  const type = response.headers.get('content-type') ?? '';
  let parsed: unknown = text;
  if (type.includes('json') && text) {
    try { parsed = JSON.parse(text); } catch { /* left as text */ }
  }
  if (!response.ok) {
    const p = parsed as { code?: string; message?: string; errorMessage?: string; detail?: unknown } | string;
    const message = typeof p === 'object' ? p.message ?? p.errorMessage : undefined;
    return expire(new ApiCallError(message ?? `HTTP ${response.status}`, method, path, response.status, typeof p === 'object' ? p.code : undefined, message, typeof p === 'object' ? p.detail : undefined));
  }
  return (text === '' ? undefined : parsed) as T;
}

/** What a form shows: the server's own message, or the reason no answer came. */
export function errorText(error: unknown): string {
  if (error instanceof ApiCallError) return error.serverMessage ?? error.message;
  return (error as Error)?.message ?? String(error);
}

/** `field: message; other: message` (the API's validation errors) → per-field messages. */
export function fieldErrors(error: unknown, fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of errorText(error).split('; ')) {
    const match = /^([\w.]+): (.*)$/.exec(part);
    const field = match?.[1]?.split('.')[0];
    if (match && field && fields.includes(field)) out[field] = match[2]!;
  }
  return out;
}

export type StreamState = 'connecting' | 'open' | 'lost' | 'ended';

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

export interface FollowOptions {
  onEvent: (event: SseEvent) => void;
  onState?: (state: StreamState) => void;
  /** Resume after this id (sent as Last-Event-ID). */
  lastEventId?: string;
  /** Reconnect when the stream drops (default true); an `end` event stops for good. */
  reconnect?: boolean;
}

/** Reads a Server-Sent Events stream with fetch; reconnects with Last-Event-ID. Returns stop(). */
export function followSse(path: string, options: FollowOptions): () => void {
  const controller = new AbortController();
  let lastId = options.lastEventId;
  let stopped = false;
  let delay = 500;
  const state = (s: StreamState) => options.onState?.(s);
  const run = async () => {
    while (!stopped) {
      state('connecting');
      let ended = false;
      try {
        const headers: Record<string, string> = { accept: 'text/event-stream', ...authHeaders() };
        if (lastId) headers['last-event-id'] = lastId;
        const response = await fetch(path, { headers, signal: controller.signal });
        if (response.status === 401) { expire(new ApiCallError('signed out', 'GET', path, 401)); }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        state('open');
        delay = 500;
        for await (const frame of splitStream(response.body, '\n\n')) {
          const event: SseEvent = { event: 'message', data: '' };
          const data: string[] = [];
          for (const line of frame.split('\n')) {
            if (line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'id') event.id = text;
            else if (field === 'event') event.event = text;
            else if (field === 'data') data.push(text);
          }
          if (data.length === 0 && !event.id) continue;
          event.data = data.join('\n');
          if (event.id) lastId = event.id;
          if (event.event === 'end') ended = true;
          options.onEvent(event);
        }
      } catch (error) {
        if (stopped || (error as Error).name === 'AbortError') return;
      }
      if (stopped) return;
      if (ended || options.reconnect === false) { state('ended'); return; }
      state('lost');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 8000);
    }
  };
  void run();
  return () => { stopped = true; controller.abort(); };
}

/** The body's text cut at each `separator`; what follows the last one waits for the next read. */
async function* splitStream(body: NonNullable<Response['body']>, separator: string): AsyncGenerator<string> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut: number;
    while ((cut = buffer.indexOf(separator)) >= 0) {
      yield buffer.slice(0, cut);
      buffer = buffer.slice(cut + separator.length);
    }
  }
}

/** Reads newline-delimited JSON (function logs with follow). Returns stop(). */
export function followNdjson(path: string, onLine: (value: unknown) => void, onState?: (state: StreamState) => void): () => void {
  const controller = new AbortController();
  void (async () => {
    try {
      onState?.('connecting');
      const response = await fetch(path, { headers: authHeaders(), signal: controller.signal });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      onState?.('open');
      for await (const raw of splitStream(response.body, '\n')) {
        const line = raw.trim();
        if (line) { try { onLine(JSON.parse(line)); } catch { onLine(line); } }
      }
      onState?.('ended');
    } catch (error) {
      if ((error as Error).name !== 'AbortError') onState?.('lost');
    }
  })();
  return () => controller.abort();
}

/** Raw fetch with the session (the invoke console needs status, headers and the body as text). */
export async function rawFetch(path: string, init: RequestInit & { headers?: Record<string, string> }): Promise<Response> {
  return fetch(path, { ...init, headers: { ...authHeaders(), ...init.headers } });
}
