/**
 * @module functions/proxy
 * Forwards a request to a function instance (`http://<address>:8000`) over a keep-alive pool
 * per instance, streaming both ways; or, for event invocations, sends a given body and collects
 * the answer. Hop-by-hop headers are dropped, `x-forwarded-*` added. A caller that goes away
 * aborts the upstream request; a timeout is a 504, an instance error a 502, an oversize body a
 * 413 — in the API's JSON error shape when the answer has not started yet.
 */
import http from 'node:http';

export interface ProxyTarget { address: string; port: number }

export interface ForwardOptions {
  /** Path + query on the instance, starting with '/'. */
  path: string;
  method?: string;
  timeoutMs: number;
  maxBodyBytes: number;
  extraHeaders?: Record<string, string>;
  /** Sent instead of the incoming body. */
  body?: Buffer;
  /** Collect the answer instead of writing it to `res`. */
  collect?: boolean;
  maxResponseBytes?: number;
}

export interface ForwardResult {
  status: number;
  outcome: 'ok' | 'timeout' | 'upstream-error' | 'client-aborted' | 'too-large';
  requestBytes: number;
  responseBytes: number;
  headers?: Record<string, string | string[]>;
  body?: Buffer;
  error?: string;
}

const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);

function filterHeaders(headers: http.IncomingHttpHeaders): Record<string, string | string[]> {
  const named = typeof headers.connection === 'string' ? headers.connection.toLowerCase().split(',').map((s) => s.trim()) : [];
  const out: Record<string, string | string[]> = {};
  for (const key in headers) {
    if (hopByHop.has(key) || named.includes(key)) continue;
    const value = headers[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ code, message });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export class InstanceProxy {
  private readonly agents = new Map<string, http.Agent>();

  constructor(private readonly options: { maxSocketsPerInstance?: number; keepAliveMs?: number } = {}) {}

  private agent(target: ProxyTarget): http.Agent {
    const key = `${target.address}:${target.port}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new http.Agent({ keepAlive: true, keepAliveMsecs: 1000, maxSockets: this.options.maxSocketsPerInstance ?? 256, maxFreeSockets: 64, timeout: this.options.keepAliveMs ?? 30_000 });
      this.agents.set(key, agent);
    }
    return agent;
  }

  forget(target: ProxyTarget): void {
    const key = `${target.address}:${target.port}`;
    this.agents.get(key)?.destroy();
    this.agents.delete(key);
  }

  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  forward(req: http.IncomingMessage | null, res: http.ServerResponse | null, target: ProxyTarget, options: ForwardOptions): Promise<ForwardResult> {
    return new Promise<ForwardResult>((resolve) => {
      let requestBytes = 0;
      let responseBytes = 0;
      let settled = false;
      const seconds = Math.max(1, Math.round(options.timeoutMs / 1000));
      const finish = (result: Omit<ForwardResult, 'requestBytes' | 'responseBytes'>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ ...result, requestBytes, responseBytes });
      };
      const fail = (status: number, outcome: ForwardResult['outcome'], code: string, message: string) => {
        upstream?.destroy();
        if (res) sendError(res, status, code, message);
        finish({ status, outcome, error: message });
      };

      const declared = req ? Number(req.headers['content-length'] ?? NaN) : NaN;
      if (options.body === undefined && declared > options.maxBodyBytes) {
        req?.resume();
        if (res) sendError(res, 413, 'PAYLOAD_TOO_LARGE', `request body over ${options.maxBodyBytes} bytes`);
        resolve({ status: 413, outcome: 'too-large', requestBytes: 0, responseBytes: 0, error: 'request body too large' });
        return;
      }
      if (options.body && options.body.length > options.maxBodyBytes) {
        resolve({ status: 413, outcome: 'too-large', requestBytes: 0, responseBytes: 0, error: 'request body too large' });
        return;
      }

      const headers: Record<string, string | string[]> = req ? filterHeaders(req.headers) : {};
      if (req) {
        const client = req.socket.remoteAddress ?? '';
        const prior = req.headers['x-forwarded-for'];
        headers['x-forwarded-for'] = prior ? `${String(prior)}, ${client}` : client;
        headers['x-forwarded-proto'] = 'http';
        if (req.headers.host) headers['x-forwarded-host'] = req.headers.host;
      }
      if (options.extraHeaders) Object.assign(headers, options.extraHeaders);
      if (options.body !== undefined) {
        delete headers['transfer-encoding'];
        headers['content-length'] = String(options.body.length);
      }

      const timer = setTimeout(() => fail(504, 'timeout', 'FUNCTION_TIMEOUT', `the function did not answer within ${seconds} s`), options.timeoutMs);
      let upstream: http.ClientRequest | undefined = http.request({
        host: target.address, port: target.port, method: options.method ?? req?.method ?? 'POST', path: options.path, headers, agent: this.agent(target),
      }, (response) => {
        const status = response.statusCode ?? 502;
        if (options.collect || !res) {
          const chunks: Buffer[] = [];
          const limit = options.maxResponseBytes ?? Infinity;
          response.on('data', (chunk: Buffer) => {
            responseBytes += chunk.length;
            if (responseBytes > limit) {
              upstream?.destroy();
              finish({ status: 502, outcome: 'too-large', error: `the function's answer is over ${limit} bytes` });
              return;
            }
            chunks.push(chunk);
          });
          response.on('end', () => finish({ status, outcome: 'ok', headers: response.headers as Record<string, string | string[]>, body: Buffer.concat(chunks) }));
          response.on('error', (error) => finish({ status: 502, outcome: 'upstream-error', error: error.message }));
          response.on('aborted', () => finish({ status: 502, outcome: 'upstream-error', error: 'the instance closed the connection mid-answer' }));
          return;
        }
        res.writeHead(status, filterHeaders(response.headers));
        response.on('data', (chunk: Buffer) => {
          responseBytes += chunk.length;
          if (!res.write(chunk)) {
            response.pause();
            res.once('drain', () => response.resume());
          }
        });
        response.on('end', () => {
          res.end();
          finish({ status, outcome: 'ok' });
        });
        response.on('error', () => {
          res.destroy();
          finish({ status, outcome: 'upstream-error', error: 'the instance closed the connection mid-answer' });
        });
      });
      upstream.on('error', (error) => {
        if (settled) return;
        fail(502, 'upstream-error', 'FUNCTION_FAILED', `the function failed: ${error.message}`);
      });

      if (res) {
        res.on('close', () => {
          if (settled || res.writableFinished) return;
          upstream?.destroy();
          finish({ status: 499, outcome: 'client-aborted' });
        });
      }

      if (options.body !== undefined || !req) {
        requestBytes = options.body?.length ?? 0;
        upstream.end(options.body);
        return;
      }
      req.on('data', (chunk: Buffer) => {
        requestBytes += chunk.length;
        if (requestBytes > options.maxBodyBytes) {
          req.pause();
          req.removeAllListeners('data');
          fail(413, 'too-large', 'PAYLOAD_TOO_LARGE', `request body over ${options.maxBodyBytes} bytes`);
          return;
        }
        if (!upstream!.write(chunk)) {
          req.pause();
          upstream!.once('drain', () => req.resume());
        }
      });
      req.on('end', () => upstream?.end());
      req.on('error', () => upstream?.destroy());
    });
  }
}
