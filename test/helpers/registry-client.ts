/**
 * A minimal OCI distribution client for stress tests: every upload flavour (single POST,
 * POST then PUT, chunked PATCHes), HEAD/GET of blobs and manifests, each with a time limit so
 * a stuck server fails the test instead of hanging it.
 */
import { asBody, sha256 } from './oci.js';

/** Per-request time limit. */
export const requestTimeoutMs = 30_000;

export interface Fetched {
  status: number;
  headers: Headers;
  body: Buffer;
}

/** One request, body read whole; rejects on network errors and on the time limit. */
export async function call(url: string | URL, init: RequestInit = {}): Promise<Fetched> {
  let response: Response;
  try {
    response = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(requestTimeoutMs) });
  } catch (error) {
    // undici says only "fetch failed"; the cause (ECONNREFUSED, reset, timeout) is what matters.
    const cause = (error as { cause?: { message?: string; code?: string } }).cause;
    throw new Error(`${init.method ?? 'GET'} ${url}: ${(error as Error).message}${cause ? ` (${cause.code ?? ''} ${cause.message ?? ''})` : ''}`, { cause: error });
  }
  const body = Buffer.from(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, body };
}

/** The first error code (and its detail) of an OCI error envelope, if the body is one. */
export function registryError(fetched: Fetched): { code?: string; detail?: { digest?: string } } {
  try {
    const parsed = JSON.parse(fetched.body.toString('utf8')) as { errors?: Array<{ code: string; detail?: { digest?: string } }> };
    return { code: parsed.errors?.[0]?.code, detail: parsed.errors?.[0]?.detail };
  } catch {
    return {};
  }
}

export function show(fetched: Fetched): string {
  return `${fetched.status} ${fetched.body.toString('utf8').slice(0, 300)}`;
}

function location(base: string, fetched: Fetched): URL {
  const value = fetched.headers.get('location');
  if (!value) throw new Error(`no Location in ${show(fetched)}`);
  return new URL(value, base);
}

/** Single POST `?digest=`: 201 when stored. */
export function uploadSinglePost(base: string, repo: string, data: Buffer, digest = sha256(data)): Promise<Fetched> {
  return call(`${base}/v2/${repo}/blobs/uploads/?digest=${encodeURIComponent(digest)}`, {
    method: 'POST', body: asBody(data), headers: { 'Content-Type': 'application/octet-stream' },
  });
}

/** Opens an upload session (202); returns its absolute Location. */
export async function startUpload(base: string, repo: string): Promise<URL> {
  const started = await call(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (started.status !== 202) throw new Error(`POST upload: ${show(started)}`);
  return location(base, started);
}

/** POST then PUT with the whole body. Returns the PUT's response. */
export async function uploadPostPut(base: string, repo: string, data: Buffer, digest = sha256(data)): Promise<Fetched> {
  return finishUpload(base, await startUpload(base, repo), digest, data);
}

/** One PATCH at `start`; returns the response (202 carries the next Location and the Range). */
export function patchChunk(at: URL, chunk: Buffer, start: number): Promise<Fetched> {
  return call(at, {
    method: 'PATCH',
    body: asBody(chunk),
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${start}-${start + chunk.length - 1}` },
  });
}

/** The completing PUT `?digest=`, optionally with a last chunk. */
export function finishUpload(base: string, at: URL, digest: string, last?: Buffer): Promise<Fetched> {
  const url = new URL(at);
  url.searchParams.set('digest', digest);
  return call(url, {
    method: 'PUT',
    body: last ? asBody(last) : undefined,
    headers: { 'Content-Type': 'application/octet-stream' },
  });
}

/** The last byte offset a session reports in its `Range: 0-<end>` header. */
export function rangeEnd(fetched: Fetched): number {
  const range = fetched.headers.get('range');
  const match = range ? /^0-(\d+)$/.exec(range) : null;
  if (!match) throw new Error(`bad Range header in ${show(fetched)}`);
  return Number(match[1]);
}

/**
 * Chunked upload: POST, PATCHes of `chunkSize`, PUT. `onProgress` sees each acknowledged
 * offset (so a test knows what the server confirmed before it died).
 */
export async function uploadChunked(base: string, repo: string, data: Buffer, chunkSize: number, digest = sha256(data), onProgress?: (at: URL, acknowledged: number) => void): Promise<Fetched> {
  let at = await startUpload(base, repo);
  onProgress?.(at, 0);
  let offset = 0;
  while (offset < data.length) {
    const chunk = data.subarray(offset, Math.min(offset + chunkSize, data.length));
    const patched = await patchChunk(at, chunk, offset);
    if (patched.status !== 202) throw new Error(`PATCH: ${show(patched)}`);
    offset += chunk.length;
    at = location(base, patched);
    onProgress?.(at, offset);
  }
  return finishUpload(base, at, digest);
}

/** Cross-repository mount: 201 mounted, 202 a fresh session instead (its Location returned). */
export function mountBlob(base: string, repo: string, from: string, digest: string): Promise<Fetched> {
  return call(`${base}/v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, { method: 'POST' });
}

export function headBlob(base: string, repo: string, digest: string): Promise<Fetched> {
  return call(`${base}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
}

export function getBlob(base: string, repo: string, digest: string): Promise<Fetched> {
  return call(`${base}/v2/${repo}/blobs/${digest}`);
}

export function getManifest(base: string, repo: string, reference: string): Promise<Fetched> {
  return call(`${base}/v2/${repo}/manifests/${reference}`, {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' },
  });
}

export function putManifestBytes(base: string, repo: string, reference: string, body: Buffer, mediaType: string): Promise<Fetched> {
  return call(`${base}/v2/${repo}/manifests/${reference}`, { method: 'PUT', body: asBody(body), headers: { 'Content-Type': mediaType } });
}

export function deleteManifest(base: string, repo: string, reference: string): Promise<Fetched> {
  return call(`${base}/v2/${repo}/manifests/${reference}`, { method: 'DELETE' });
}

export function deleteBlob(base: string, repo: string, digest: string): Promise<Fetched> {
  return call(`${base}/v2/${repo}/blobs/${digest}`, { method: 'DELETE' });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
