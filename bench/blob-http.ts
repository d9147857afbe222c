/**
 * @module bench/blob-http
 * The benches' registry HTTP client on node:http (no fetch overhead in the figures): one
 * request with its body written in pieces with backpressure, status checks, upload locations,
 * and 1 MiB views of a blob so the client never copies it.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  bytes: number;
}

export interface RequestOptions {
  headers?: Record<string, string | number>;
  body?: Buffer[];
  /** Count the answer's bytes but drop them. */
  discard?: boolean;
  agent?: http.Agent;
}

export function request(method: string, url: string, options: RequestOptions = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: options.headers, agent: options.agent }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (!options.discard) chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const parts = options.body ?? [];
    let index = 0;
    const pump = (): void => {
      while (index < parts.length) if (!req.write(parts[index++])) return void req.once('drain', pump);
      req.end();
    };
    pump();
  });
}

export function expect(response: Response, status: number, what: string): Response {
  if (response.status !== status) throw new Error(`${what}: HTTP ${response.status} ${response.body.toString().slice(0, 300)}`);
  return response;
}

/** The upload's next URL (its Location), with `digest` for the closing PUT. */
export function nextUrl(base: string, response: Response, digest?: string): string {
  const url = new URL(String(response.headers.location), base);
  if (digest) url.searchParams.set('digest', digest);
  return url.toString();
}

/** 1 MiB views of `data[start, end)`. */
export function pieces(data: Buffer, start = 0, end = data.length): Buffer[] {
  const out: Buffer[] = [];
  for (let at = start; at < end; at += 1024 * 1024) out.push(data.subarray(at, Math.min(at + 1024 * 1024, end)));
  return out;
}

export function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A bench's `request` (usually bound to its keep-alive agent). */
export type Send = (method: string, url: string, options?: Omit<RequestOptions, 'agent'>) => Promise<Response>;

/** One POST with `?digest=` and the whole blob. */
export async function pushMonolithic(send: Send, base: string, repository: string, data: Buffer): Promise<void> {
  expect(await send('POST', `${base}/v2/${repository}/blobs/uploads/?digest=${sha256(data)}`, {
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length }, body: pieces(data),
  }), 201, 'monolithic push');
}

/** POST, a PATCH per `chunkBytes`, the closing PUT. */
export async function pushChunked(send: Send, base: string, repository: string, data: Buffer, chunkBytes: number): Promise<void> {
  let response = expect(await send('POST', `${base}/v2/${repository}/blobs/uploads/`, { headers: { 'Content-Length': 0 } }), 202, 'POST upload');
  for (let start = 0; start < data.length; start += chunkBytes) {
    const end = Math.min(start + chunkBytes, data.length);
    response = expect(await send('PATCH', nextUrl(base, response), {
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': end - start, 'Content-Range': `${start}-${end - 1}` },
      body: pieces(data, start, end),
    }), 202, 'PATCH chunk');
  }
  expect(await send('PUT', nextUrl(base, response, sha256(data)), { headers: { 'Content-Length': 0 } }), 201, 'PUT upload');
}

export const imageManifestType = 'application/vnd.oci.image.manifest.v1+json';

/** A one-layer OCI image manifest, made distinct by `index`. */
export function imageManifest(config: { digest: string; size: number }, layer: { digest: string; size: number }, index: number): Buffer {
  return Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: imageManifestType,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
    annotations: { 'bench.index': String(index) },
  }));
}
