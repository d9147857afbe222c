/**
 * The gateway's forwarding core (`InstanceProxy`) between two plain `node:http` servers on
 * loopback: a front server whose handler forwards every request, and an upstream server
 * standing in for a function instance. Pass-through and header rules, streaming both ways,
 * large bodies, keep-alive reuse, the error answers (timeout, instance crash, refused, body
 * limits), a client going away, and collect mode without a caller request.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { InstanceProxy, type ForwardOptions, type ForwardResult, type ProxyTarget } from '../src/functions/proxy.js';

const timeout = { timeout: 30_000 };

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: Buffer }

/** One request from a real client; resolves with the whole answer. */
function send(port: number, options: http.RequestOptions & { body?: Buffer | string; agent?: http.Agent | false }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const { body, ...rest } = options;
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...rest }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Resolves when `predicate` holds (polled), fails after `ms`. */
async function until(predicate: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('function proxy', () => {
  const proxy = new InstanceProxy();
  let upstream: http.Server;
  let front: http.Server;
  let target: ProxyTarget;
  let frontPort: number;
  /** Per test: what the instance does, and the forward options the front uses. */
  let instance: http.RequestListener = (_req, res) => res.end('unset');
  let forwardOptions: (req: http.IncomingMessage) => ForwardOptions;
  let connections = 0;
  /** Connections to the instance still open. */
  let openUpstream = 0;
  let upstreamRequests = 0;
  const results: ForwardResult[] = [];
  const resultWaiters: Array<(r: ForwardResult) => void> = [];
  /** The next `forward` result the front server records. */
  const nextResult = () => new Promise<ForwardResult>((resolve) => {
    const ready = results.shift();
    if (ready) resolve(ready);
    else resultWaiters.push(resolve);
  });
  const defaults = (req: http.IncomingMessage): ForwardOptions => ({ path: req.url!, timeoutMs: 10_000, maxBodyBytes: 64 * 1024 * 1024 });

  before(async () => {
    upstream = http.createServer((req, res) => {
      upstreamRequests++;
      instance(req, res);
    });
    upstream.on('connection', (socket) => {
      connections++;
      openUpstream++;
      socket.on('close', () => openUpstream--);
    });
    target = { address: '127.0.0.1', port: await listen(upstream) };
    front = http.createServer((req, res) => {
      void proxy.forward(req, res, target, forwardOptions(req)).then((result) => {
        const waiter = resultWaiters.shift();
        if (waiter) waiter(result);
        else results.push(result);
      });
    });
    frontPort = await listen(front);
  });

  after(async () => {
    proxy.close();
    await closeServer(front);
    await closeServer(upstream);
  });

  const reset = (handler: http.RequestListener, options: Partial<ForwardOptions> = {}) => {
    instance = handler;
    forwardOptions = (req) => ({ ...defaults(req), ...options });
    results.length = 0;
    resultWaiters.length = 0;
    upstreamRequests = 0;
  };

  test('method, path, query, headers and body pass through; hop-by-hop headers are stripped both ways; x-forwarded-* set', timeout, async () => {
    let seen: { method?: string; url?: string; headers?: http.IncomingHttpHeaders; rawHeaders?: string[]; body?: string } = {};
    reset((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen = { method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() };
        res.writeHead(201, { 'content-type': 'text/plain', 'x-answer': 'yes', connection: 'x-private', 'x-private': 'secret' });
        res.end('made it');
      });
    }, { extraHeaders: { 'x-cff-request-id': 'req-123' } });

    const answer = await send(frontPort, {
      method: 'PATCH', path: '/things/7?a=1&b=two%20words',
      headers: {
        // No content-length: the body goes chunked, which lets the client send a Trailer header.
        'content-type': 'application/json', 'x-custom': 'kept',
        connection: 'keep-alive, x-drop-me', 'x-drop-me': '1', 'keep-alive': 'timeout=5', te: 'trailers', trailer: 'x-t',
        'proxy-connection': 'keep-alive', upgrade: 'h2c', 'x-forwarded-for': '10.1.2.3', 'x-forwarded-proto': 'https',
        'x-cff-request-id': 'from-the-client',
      },
      body: '{"hello":"x"}',
    });
    const result = await nextResult();

    assert.equal(seen.method, 'PATCH');
    assert.equal(seen.url, '/things/7?a=1&b=two%20words');
    assert.equal(seen.body, '{"hello":"x"}');
    const h = seen.headers!;
    assert.equal(h['content-type'], 'application/json');
    assert.equal(h['x-custom'], 'kept');
    assert.equal(h['transfer-encoding'], 'chunked', 'the proxy frames a streamed body of unknown length itself');
    for (const name of ['x-drop-me', 'keep-alive', 'te', 'trailer', 'proxy-connection', 'upgrade']) {
      assert.equal(h[name], undefined, `${name} must not reach the instance`);
    }
    // The proxy's own connection header (keep-alive pool), nothing of the client's.
    assert.ok(h.connection === undefined || h.connection === 'keep-alive', String(h.connection));
    assert.equal(h.host, `127.0.0.1:${frontPort}`);
    assert.equal(h['x-forwarded-host'], `127.0.0.1:${frontPort}`);
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-for'], '10.1.2.3, 127.0.0.1');
    assert.equal(h['x-cff-request-id'], 'req-123');
    assert.equal(seen.rawHeaders!.filter((n) => n.toLowerCase() === 'x-cff-request-id').length, 1, 'an extra header replaces the incoming one');

    assert.equal(answer.status, 201);
    assert.equal(answer.body.toString(), 'made it');
    assert.equal(answer.headers['x-answer'], 'yes');
    assert.equal(answer.headers['content-type'], 'text/plain');
    assert.equal(answer.headers['x-private'], undefined, 'a header named in the answer\'s Connection is dropped');
    assert.notEqual(answer.headers.connection, 'x-private');

    assert.deepEqual(result, { status: 201, outcome: 'ok', requestBytes: 13, responseBytes: 7 });
  });

  test('several set-cookie headers, HEAD and 204 answers come back intact', timeout, async () => {
    reset((req, res) => {
      if (req.url === '/empty') {
        res.writeHead(204, { 'x-kind': 'empty' });
        res.end();
        return;
      }
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly', 'c=3']);
      res.setHeader('content-type', 'text/plain');
      res.setHeader('content-length', '5');
      res.end(req.method === 'HEAD' ? undefined : 'hello');
    });
    const got = await send(frontPort, { path: '/cookies' });
    assert.equal(got.status, 200);
    assert.deepEqual(got.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly', 'c=3']);
    assert.equal(got.body.toString(), 'hello');
    await nextResult();

    const head = await send(frontPort, { method: 'HEAD', path: '/cookies' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '5');
    assert.equal(head.body.length, 0);
    assert.equal((await nextResult()).outcome, 'ok');

    const empty = await send(frontPort, { path: '/empty' });
    assert.equal(empty.status, 204);
    assert.equal(empty.headers['x-kind'], 'empty');
    assert.equal((await nextResult()).outcome, 'ok');
  });

  test('answers stream: the client gets the first chunk while the instance is still writing', timeout, async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => { release = r; });
    reset((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first;');
      void released.then(() => res.end('second'));
    });
    const firstChunk = await new Promise<{ text: string; rest: Promise<string> }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: frontPort, path: '/stream', agent: false }, (res) => {
        let text = '';
        res.once('data', (c: Buffer) => {
          const first = c.toString();
          resolve({
            text: first,
            rest: new Promise((done) => {
              res.on('data', (more: Buffer) => { text += more.toString(); });
              res.on('end', () => done(text));
            }),
          });
        });
      });
      req.on('error', reject);
    });
    assert.equal(firstChunk.text, 'first;', 'the first chunk arrives before the instance ends its answer');
    release();
    assert.equal(await firstChunk.rest, 'second');
    assert.equal((await nextResult()).outcome, 'ok');
  });

  test('request bodies stream: the instance gets the first chunk while the client is still sending', timeout, async () => {
    let firstAtInstance: string | undefined;
    reset((req, res) => {
      let all = '';
      req.on('data', (c: Buffer) => {
        firstAtInstance ??= c.toString();
        all += c.toString();
      });
      req.on('end', () => res.end(`got ${all}`));
    });
    const answer = new Promise<string>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: frontPort, path: '/upload', method: 'POST', agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => { text += c.toString(); });
        res.on('end', () => resolve(text));
      });
      req.on('error', reject);
      req.write('part-one;');
      void until(() => firstAtInstance !== undefined).then(() => req.end('part-two'), reject);
    });
    assert.equal(await answer, 'got part-one;part-two');
    assert.equal(firstAtInstance, 'part-one;');
    const result = await nextResult();
    assert.equal(result.outcome, 'ok');
    assert.equal(result.requestBytes, 'part-one;part-two'.length);
  });

  test('20 MB bodies both ways arrive unchanged', timeout, async () => {
    const size = 20 * 1024 * 1024;
    const upload = randomBytes(size);
    const download = randomBytes(size);
    let instanceHash = '';
    let instanceBytes = 0;
    reset((req, res) => {
      const hash = createHash('sha256');
      req.on('data', (c: Buffer) => { hash.update(c); instanceBytes += c.length; });
      req.on('end', () => {
        instanceHash = hash.digest('hex');
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        // In 64 KiB pieces, respecting backpressure, without a content-length (chunked).
        let offset = 0;
        const pump = () => {
          while (offset < download.length) {
            const piece = download.subarray(offset, offset + 65536);
            offset += piece.length;
            if (!res.write(piece)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      });
    });
    // Chunked upload (no content-length) in 1 MiB pieces.
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: frontPort, path: '/big', method: 'PUT', agent: false }, (res) => {
        const hash = createHash('sha256');
        let bytes = 0;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => { hash.update(c); bytes += c.length; chunks.push(c); });
        res.on('end', () => resolve(Buffer.concat(chunks, bytes)));
      });
      req.on('error', reject);
      let offset = 0;
      const pump = () => {
        while (offset < upload.length) {
          const piece = upload.subarray(offset, offset + 1024 * 1024);
          offset += piece.length;
          if (!req.write(piece)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    assert.equal(instanceBytes, size);
    assert.equal(instanceHash, sha256(upload));
    assert.equal(answer.length, size);
    assert.equal(sha256(answer), sha256(download));
    const result = await nextResult();
    assert.deepEqual(result, { status: 200, outcome: 'ok', requestBytes: size, responseBytes: size });

    // And with a content-length upload.
    const answer2 = await send(frontPort, { path: '/big', method: 'POST', headers: { 'content-length': String(size) }, body: upload });
    assert.equal(instanceHash, sha256(upload));
    assert.equal(sha256(answer2.body), sha256(download));
    assert.equal((await nextResult()).requestBytes, size);
  });

  test('warm requests reuse pooled connections to the instance; forget drops them', timeout, async () => {
    reset((req, res) => res.end(`n=${req.url}`));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      proxy.forget(target); // start without the warm connections of earlier tests
      await until(() => openUpstream === 0);
      const before = connections;
      for (let i = 0; i < 50; i++) {
        const answer = await send(frontPort, { path: `/${i}`, agent });
        assert.equal(answer.body.toString(), `n=/${i}`);
        await nextResult();
      }
      const opened = connections - before;
      assert.ok(opened >= 1 && opened <= 2, `50 sequential requests opened ${opened} connections to the instance`);

      // forget: the pooled connection is closed (the instance sees it go), the next request opens a new one.
      assert.ok(openUpstream >= 1, 'the warm connection stays open');
      proxy.forget(target);
      await until(() => openUpstream === 0);
      const beforeForgotten = connections;
      await send(frontPort, { path: '/after-forget', agent });
      await nextResult();
      assert.equal(connections - beforeForgotten, 1, 'a fresh connection after forget');
    } finally {
      agent.destroy();
    }
  });

  test('an instance that answers before reading the whole body: the caller\'s connection stays usable', timeout, async () => {
    let earlySocketClosed = false;
    reset((req, res) => {
      if (req.method === 'GET') return void res.end('second');
      req.socket.on('close', () => { earlySocketClosed = true; });
      res.end('early'); // without reading the body
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await new Promise<string>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: frontPort, path: '/early', method: 'POST', agent, headers: { 'content-length': String(200_000) } }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => { text += c.toString(); });
          res.on('end', () => {
            req.end(Buffer.alloc(100_000)); // the rest of the body, after the answer
            resolve(text);
          });
        });
        req.on('error', reject);
        req.write(Buffer.alloc(100_000));
      });
      assert.equal(first, 'early');
      assert.equal((await nextResult()).outcome, 'ok');
      // The proxy gives up the half-sent instance request rather than leaving it hanging.
      await until(() => earlySocketClosed);
      const second = await send(frontPort, { path: '/again', agent });
      assert.equal(second.body.toString(), 'second');
      assert.equal((await nextResult()).outcome, 'ok');
    } finally {
      agent.destroy();
    }
  });

  test('a pooled connection the instance dropped: a GET is sent once more on a new one, a POST is not', timeout, async () => {
    proxy.forget(target);
    await until(() => openUpstream === 0);
    const served = new WeakMap<object, number>();
    reset((req, res) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n === 2) return void req.socket.destroy(); // dropped as the second request came in
      req.resume();
      req.on('end', () => res.end(`ok ${req.method} ${req.url}`));
    });
    assert.equal((await send(frontPort, { path: '/one' })).body.toString(), 'ok GET /one');
    await nextResult();
    const before = connections;
    const retried = await send(frontPort, { path: '/two' });
    assert.equal(retried.status, 200);
    assert.equal(retried.body.toString(), 'ok GET /two');
    assert.equal((await nextResult()).outcome, 'ok');
    assert.equal(connections - before, 1, 'the retry went over a new connection');
    assert.equal(upstreamRequests, 3);

    const post = await send(frontPort, { path: '/three', method: 'POST', body: 'payload' });
    assert.equal(post.status, 502, 'a request with a body is not sent twice');
    assert.equal(JSON.parse(post.body.toString()).code, 'FUNCTION_FAILED');
    assert.equal((await nextResult()).outcome, 'upstream-error');
  });

  test('an instance that does not answer in time: 504 FUNCTION_TIMEOUT in JSON, the instance request is closed', timeout, async () => {
    let instanceSawClose = false;
    reset((req, res) => {
      res.on('close', () => { instanceSawClose = true; });
      req.resume();
    }, { timeoutMs: 300 });
    const started = Date.now();
    const answer = await send(frontPort, { path: '/slow' });
    assert.ok(Date.now() - started >= 250, 'not before the timeout');
    assert.equal(answer.status, 504);
    assert.match(String(answer.headers['content-type']), /^application\/json/);
    assert.deepEqual(JSON.parse(answer.body.toString()), { code: 'FUNCTION_TIMEOUT', message: 'the function did not answer within 0.3 s' });
    const result = await nextResult();
    assert.equal(result.outcome, 'timeout');
    assert.equal(result.status, 504);
    await until(() => instanceSawClose);
  });

  test('a timeout after the answer started destroys the client connection', timeout, async () => {
    reset((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
    }, { timeoutMs: 400 });
    const outcome = await new Promise<{ text: string; aborted: boolean }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: frontPort, path: '/stall', agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => { text += c.toString(); });
        res.on('end', () => resolve({ text, aborted: false }));
        res.on('error', () => resolve({ text, aborted: true }));
        res.on('aborted', () => resolve({ text, aborted: true }));
      });
      req.on('error', reject);
    });
    assert.equal(outcome.aborted, true);
    assert.equal(outcome.text, 'partial');
    const result = await nextResult();
    assert.equal(result.outcome, 'timeout');
    assert.equal(result.status, 200, 'the status the client got');
  });

  test('an instance that crashes mid-request: 502 FUNCTION_FAILED in JSON before the answer started', timeout, async () => {
    reset((req) => { req.socket.destroy(); });
    const answer = await send(frontPort, { path: '/crash', method: 'POST', body: 'x' });
    assert.equal(answer.status, 502);
    const error = JSON.parse(answer.body.toString());
    assert.equal(error.code, 'FUNCTION_FAILED');
    assert.match(error.message, /instance/);
    const result = await nextResult();
    assert.equal(result.outcome, 'upstream-error');
    assert.equal(result.status, 502);
    assert.match(result.error ?? '', /hang up|ECONNRESET/);
  });

  test('an instance that crashes after its answer started: the client connection is destroyed', timeout, async () => {
    reset((req, res) => {
      res.writeHead(200);
      res.write('begun');
      setTimeout(() => req.socket.destroy(), 50);
    });
    const outcome = await new Promise<{ text: string; aborted: boolean }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: frontPort, path: '/crash-late', agent: false }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => { text += c.toString(); });
        res.on('end', () => resolve({ text, aborted: false }));
        res.on('error', () => resolve({ text, aborted: true }));
      });
      req.on('error', reject);
    });
    assert.deepEqual(outcome, { text: 'begun', aborted: true });
    const result = await nextResult();
    assert.equal(result.outcome, 'upstream-error');
    assert.equal(result.status, 200);
  });

  test('a refused connection (nothing listening on loopback) is a 502 naming ECONNREFUSED', timeout, async () => {
    const probe = http.createServer();
    const deadPort = await listen(probe);
    await closeServer(probe);
    const result = await proxy.forward(null, null, { address: '127.0.0.1', port: deadPort }, { path: '/', timeoutMs: 5_000, maxBodyBytes: 10, body: Buffer.from('{}') });
    proxy.forget({ address: '127.0.0.1', port: deadPort });
    assert.equal(result.outcome, 'upstream-error');
    assert.equal(result.status, 502);
    assert.match(result.error ?? '', /ECONNREFUSED/);
  });

  test('a Content-Length over the limit is a 413 without the instance seeing a request', timeout, async () => {
    reset((_req, res) => res.end('should not happen'), { maxBodyBytes: 1000 });
    const connectionsBefore = connections;
    const answer = await new Promise<Answer>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: frontPort, path: '/upload', method: 'POST', agent: false, headers: { 'content-length': '5000' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) });
          req.destroy();
        });
      });
      req.on('error', reject);
      req.write(Buffer.alloc(100)); // the rest never comes: the answer must not wait for it
    });
    assert.equal(answer.status, 413);
    assert.deepEqual(JSON.parse(answer.body.toString()), { code: 'PAYLOAD_TOO_LARGE', message: 'request body over 1000 bytes' });
    assert.equal(answer.headers.connection, 'close');
    const result = await nextResult();
    assert.equal(result.outcome, 'too-large');
    assert.equal(result.status, 413);
    assert.equal(upstreamRequests, 0);
    assert.equal(connections, connectionsBefore);
  });

  test('a chunked body that passes the limit is a 413 and the instance request is aborted', timeout, async () => {
    let instanceClosedEarly = false;
    let instanceBytes = 0;
    reset((req, res) => {
      req.on('data', (c: Buffer) => { instanceBytes += c.length; });
      res.on('close', () => { if (!res.writableFinished) instanceClosedEarly = true; });
    }, { maxBodyBytes: 100_000 });
    const answer = await new Promise<Answer>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: frontPort, path: '/upload', method: 'POST', agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) });
          req.destroy();
        });
      });
      req.on('error', reject);
      req.write(Buffer.alloc(60_000));
      setTimeout(() => req.write(Buffer.alloc(60_000)), 50);
    });
    assert.equal(answer.status, 413);
    assert.deepEqual(JSON.parse(answer.body.toString()), { code: 'PAYLOAD_TOO_LARGE', message: 'request body over 100000 bytes' });
    const result = await nextResult();
    assert.equal(result.outcome, 'too-large');
    assert.equal(result.status, 413);
    assert.ok(result.requestBytes > 100_000);
    await until(() => instanceClosedEarly);
    assert.ok(instanceBytes <= 100_000, `the instance got ${instanceBytes} bytes`);
  });

  test('a client that goes away mid-answer: the instance sees its connection close, outcome client-aborted', timeout, async () => {
    let instanceSawClose = false;
    reset((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first');
      res.on('close', () => { instanceSawClose = !res.writableFinished; });
    });
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: frontPort, path: '/long', agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.on('close', () => undefined);
      setTimeout(() => reject(new Error('no first chunk')), 5_000).unref();
    });
    const result = await nextResult();
    assert.equal(result.outcome, 'client-aborted');
    assert.equal(result.status, 200);
    assert.equal(result.responseBytes, 5);
    await until(() => instanceSawClose);
  });

  test('a client that goes away before the answer started: outcome client-aborted, status 499', timeout, async () => {
    let instanceSawClose = false;
    reset((_req, res) => {
      res.on('close', () => { instanceSawClose = !res.writableFinished; });
    });
    const req = http.get({ host: '127.0.0.1', port: frontPort, path: '/never', agent: false });
    req.on('error', () => undefined);
    await until(() => upstreamRequests === 1);
    req.destroy();
    const result = await nextResult();
    assert.equal(result.outcome, 'client-aborted');
    assert.equal(result.status, 499);
    await until(() => instanceSawClose);
  });

  test('collect mode without a caller request: the body is sent and the answer returned', timeout, async () => {
    let seen: { method?: string; url?: string; headers?: http.IncomingHttpHeaders; body?: string } = {};
    reset((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        seen = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() };
        res.setHeader('set-cookie', ['x=1', 'y=2']);
        res.writeHead(200, { 'content-type': 'application/json', connection: 'keep-alive' });
        res.end(JSON.stringify({ hello: 'world' }));
      });
    });
    const body = Buffer.from(JSON.stringify({ name: 'event' }));
    const result = await proxy.forward(null, null, target, {
      path: '/invoke', method: 'POST', timeoutMs: 5_000, maxBodyBytes: 1024, body, collect: true, maxResponseBytes: 1024,
      extraHeaders: { 'x-cff-request-id': 'evt-1', 'content-type': 'application/json' },
    });
    assert.equal(seen.method, 'POST');
    assert.equal(seen.url, '/invoke');
    assert.equal(seen.body, '{"name":"event"}');
    assert.equal(seen.headers!['content-length'], String(body.length));
    assert.equal(seen.headers!['x-cff-request-id'], 'evt-1');
    assert.equal(seen.headers!.host, `127.0.0.1:${target.port}`);
    assert.equal(seen.headers!['x-forwarded-for'], undefined, 'no caller, no forwarding headers');

    assert.equal(result.outcome, 'ok');
    assert.equal(result.status, 200);
    assert.equal(result.body!.toString(), '{"hello":"world"}');
    assert.equal(result.headers!['content-type'], 'application/json');
    assert.deepEqual(result.headers!['set-cookie'], ['x=1', 'y=2']);
    assert.equal(result.headers!.connection, undefined);
    assert.equal(result.headers!['keep-alive'], undefined);
    assert.equal(result.requestBytes, body.length);
    assert.equal(result.responseBytes, 17);
  });

  test('collect mode failures are outcomes, never exceptions: too large either way, timeout, crash', timeout, async () => {
    reset((req, res) => {
      if (req.url === '/huge') return void res.end(Buffer.alloc(5000));
      if (req.url === '/crash') return void req.socket.destroy();
      if (req.url === '/slow') return; // never answers
      res.end('ok');
    });
    const base = { method: 'POST', timeoutMs: 5_000, maxBodyBytes: 100, collect: true, maxResponseBytes: 1000 } as const;

    const bigRequest = await proxy.forward(null, null, target, { ...base, path: '/ok', body: Buffer.alloc(101) });
    assert.equal(bigRequest.outcome, 'too-large');
    assert.equal(bigRequest.status, 413);
    assert.equal(upstreamRequests, 0, 'an oversize body never reaches the instance');

    const bigAnswer = await proxy.forward(null, null, target, { ...base, path: '/huge', body: Buffer.from('{}') });
    assert.equal(bigAnswer.outcome, 'too-large');
    assert.match(bigAnswer.error ?? '', /^RESPONSE_TOO_LARGE/);
    assert.equal(bigAnswer.body, undefined);

    const slow = await proxy.forward(null, null, target, { ...base, path: '/slow', body: Buffer.from('{}'), timeoutMs: 200 });
    assert.equal(slow.outcome, 'timeout');
    assert.equal(slow.status, 504);

    const crash = await proxy.forward(null, null, target, { ...base, path: '/crash', body: Buffer.from('{}') });
    assert.equal(crash.outcome, 'upstream-error');
    assert.equal(crash.status, 502);

    const fine = await proxy.forward(null, null, target, { ...base, path: '/ok', body: Buffer.from('{}') });
    assert.equal(fine.outcome, 'ok');
    assert.equal(fine.body!.toString(), 'ok');
  });
});
