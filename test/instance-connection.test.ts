/**
 * The gateway's raw connections to an instance, against a hand-driven `net` server on
 * loopback standing in for a misbehaving instance (every byte it sends is chosen by the
 * test): answers cut at odd boundaries and sent slowly, connections closed mid-body or
 * between requests, answers framed by the close, garbage, keep-alive reuse without
 * pipelining, `Connection: close` and `Keep-Alive: timeout`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { InstanceProxy, type ForwardResult, type ProxyTarget } from '../src/functions/proxy.js';

const timeout = { timeout: 30_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What the instance does with one request head on a connection (`index`: the connection's nth request, from 1). */
type Behaviour = (socket: net.Socket, head: string, index: number) => unknown;

interface Answer { status: number; headers: http.IncomingHttpHeaders; body: string; aborted: boolean }

function get(port: number, path: string, agent: http.Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      let done = false;
      const finish = (aborted: boolean) => {
        if (done) return;
        done = true;
        resolve({ status: res.statusCode!, headers: res.headers, body, aborted });
      };
      res.setEncoding('latin1');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => finish(false));
      res.on('error', () => finish(true));
      res.on('aborted', () => finish(true));
    });
    req.on('error', reject);
  });
}

/** Writes `text` in pieces cut at `cuts`, with a pause between them. */
async function dribble(socket: net.Socket, text: string, cuts: number[], pauseMs = 15): Promise<void> {
  let at = 0;
  for (const cut of [...cuts, text.length]) {
    socket.write(text.slice(at, cut), 'latin1');
    at = cut;
    await sleep(pauseMs);
  }
}

describe('instance connections (raw keep-alive HTTP/1.1)', () => {
  const proxy = new InstanceProxy();
  let instance: net.Server;
  let front: http.Server;
  let target: ProxyTarget;
  let frontPort: number;
  let behaviour: Behaviour = (socket) => socket.end();
  let connections = 0;
  let open = 0;
  /** Request heads seen, per connection number. */
  const heads: string[][] = [];
  /** Whether a request arrived on a connection whose previous answer was not finished. */
  let pipelined = false;
  const results: ForwardResult[] = [];

  before(async () => {
    instance = net.createServer((socket) => {
      const number = connections++;
      open++;
      heads[number] = [];
      let pending = '';
      let answering = false;
      socket.on('close', () => open--);
      socket.on('error', () => undefined);
      socket.on('data', (data: Buffer) => {
        pending += data.toString('latin1');
        let end: number;
        while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
          const head = pending.slice(0, end);
          pending = pending.slice(end + 4);
          if (answering) pipelined = true;
          heads[number]!.push(head);
          answering = true;
          void Promise.resolve(behaviour(socket, head, heads[number]!.length)).finally(() => { answering = false; });
        }
      });
    });
    await new Promise<void>((resolve) => instance.listen(0, '127.0.0.1', resolve));
    target = { address: '127.0.0.1', port: (instance.address() as AddressInfo).port };
    front = http.createServer((req, res) => {
      void proxy.forward(req, res, target, { path: req.url!, timeoutMs: 5_000, maxBodyBytes: 1024 * 1024 }).then((r) => results.push(r));
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    frontPort = (front.address() as AddressInfo).port;
  });

  after(async () => {
    proxy.close();
    front.closeAllConnections();
    await new Promise<void>((resolve) => front.close(() => resolve()));
    await new Promise<void>((resolve) => instance.close(() => resolve()));
  });

  /** A clean slate: no kept connections, the given behaviour. */
  const reset = async (next: Behaviour) => {
    proxy.forget(target);
    const end = Date.now() + 5_000;
    while (open > 0 && Date.now() < end) await sleep(10);
    assert.equal(open, 0, 'connections of the previous test closed');
    behaviour = next;
    results.length = 0;
    pipelined = false;
  };

  test('a chunked answer sent in pieces cut at odd boundaries arrives whole', timeout, async () => {
    const answer = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n1\r\n!\r\n0\r\n\r\n';
    await reset((socket) => dribble(socket, answer, [1, 17, 60, 71, 72, 75, 77, 84, 90, 101, 102, answer.length - 3, answer.length - 1]));
    const got = await get(frontPort, '/chunked');
    assert.deepEqual([got.status, got.body, got.aborted], [200, 'abc0123456789abcdef!', false]);
    assert.equal(got.headers['content-type'], 'text/plain');
    assert.equal(results[0]?.outcome, 'ok');
    assert.equal(results[0]?.responseBytes, 20);
  });

  test('a Content-Length answer in pieces; the connection is kept and reused for the next request', timeout, async () => {
    const answer = (body: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    await reset((socket, _head, index) => dribble(socket, answer(`answer number ${index}`), [5, 30, 40]));
    for (let i = 1; i <= 3; i++) {
      const got = await get(frontPort, `/n${i}`);
      assert.equal(got.body, `answer number ${i}`);
    }
    assert.equal(open, 1, 'one kept connection');
    assert.equal(heads[connections - 1]!.length, 3, 'three requests on it');
    assert.match(heads[connections - 1]![2]!, /^GET \/n3 HTTP\/1\.1\r\n/);
  });

  test('concurrent requests go on separate connections, never pipelined', timeout, async () => {
    await reset(async (socket) => {
      await sleep(100);
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
    const before = connections;
    const answers = await Promise.all([1, 2, 3, 4].map((i) => get(frontPort, `/c${i}`)));
    assert.deepEqual(answers.map((a) => a.body), ['ok', 'ok', 'ok', 'ok']);
    assert.equal(connections - before, 4);
    assert.equal(pipelined, false);
    // Sent again one after the other: the four kept connections carry them, none is opened.
    for (let i = 0; i < 4; i++) assert.equal((await get(frontPort, `/again${i}`)).body, 'ok');
    assert.equal(connections - before, 4);
    assert.equal(pipelined, false);
  });

  test('a connection closed mid-body: the client connection is destroyed, outcome upstream-error', timeout, async () => {
    await reset(async (socket) => {
      await dribble(socket, 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial', [20]);
      socket.destroy();
    });
    const got = await get(frontPort, '/cut');
    assert.equal(got.aborted, true);
    assert.equal(got.body, 'partial');
    while (results.length === 0) await sleep(10);
    assert.equal(results[0]!.outcome, 'upstream-error');
    assert.equal(results[0]!.status, 200);

    await reset(async (socket) => {
      await dribble(socket, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly some', [30]);
      socket.end();
    });
    const chunked = await get(frontPort, '/cut-chunked');
    assert.equal(chunked.aborted, true);
    assert.equal(chunked.body, 'only some');
  });

  test('an answer framed by the close is complete, and its connection is not reused', timeout, async () => {
    await reset(async (socket) => {
      await dribble(socket, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end', [25, 45]);
      socket.end();
    });
    const before = connections;
    const got = await get(frontPort, '/close-framed');
    assert.deepEqual([got.status, got.body, got.aborted], [200, 'until the end', false]);
    assert.equal((await get(frontPort, '/close-framed-2')).body, 'until the end');
    assert.equal(connections - before, 2);
  });

  test('Connection: close and bytes after the answer: the next request opens a new connection', timeout, async () => {
    await reset((socket, head) => {
      if (head.startsWith('GET /1 ')) socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nfirst');
      else if (head.startsWith('GET /2 ')) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnextEXTRA');
      else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthird');
    });
    const before = connections;
    assert.equal((await get(frontPort, '/1')).body, 'first');
    assert.equal((await get(frontPort, '/2')).body, 'next');
    assert.equal((await get(frontPort, '/3')).body, 'third', 'the out-of-step connection was dropped too');
    assert.equal(connections - before, 3);
  });

  test('a kept connection the instance closed between requests: the next request goes on a new one, no error', timeout, async () => {
    await reset((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      setTimeout(() => socket.end(), 20); // an idle timeout of the instance, shorter than ours
    });
    const before = connections;
    assert.equal((await get(frontPort, '/a')).body, 'ok');
    await sleep(100);
    const second = await get(frontPort, '/b');
    assert.deepEqual([second.status, second.body], [200, 'ok']);
    assert.equal(connections - before, 2);
    assert.ok(results.every((r) => r.outcome === 'ok'));
  });

  test('Keep-Alive: timeout=1 is honoured (an idle connection is given up a second early)', timeout, async () => {
    await reset((socket) => socket.write('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok'));
    const before = connections;
    await get(frontPort, '/k1');
    await sleep(30);
    await get(frontPort, '/k2');
    assert.equal(connections - before, 2, 'not kept past the instance\'s timeout less a second');
  });

  test('a big answer to a slow client (backpressure), then the next request on the same kept connection', timeout, async () => {
    const big = 'x'.repeat(4 * 1024 * 1024);
    await reset((socket, head) => {
      const body = head.startsWith('GET /big ') ? big : 'small';
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    });
    const before = connections;
    // A client reading slowly keeps the gateway's writes backed up to the answer's last chunk.
    const bigLength = await new Promise<number>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: frontPort, path: '/big', agent: false }, (res) => {
        let length = 0;
        res.on('data', (c: Buffer) => {
          length += c.length;
          res.pause();
          setTimeout(() => res.resume(), 2);
        });
        res.on('end', () => resolve(length));
      }).on('error', reject);
    });
    assert.equal(bigLength, big.length);
    const started = Date.now();
    assert.equal((await get(frontPort, '/small')).body, 'small');
    assert.ok(Date.now() - started < 2_000, 'answered at once, not after the timeout');
    assert.equal(connections - before, 1, 'the same kept connection');
  });

  test('garbage instead of an answer is a 502 FUNCTION_FAILED in JSON', timeout, async () => {
    await reset((socket) => socket.write('SSH-2.0-OpenSSH_9.2\r\n\r\n'));
    const got = await get(frontPort, '/garbage');
    assert.equal(got.status, 502);
    assert.equal(JSON.parse(got.body).code, 'FUNCTION_FAILED');
    assert.equal(results[0]?.outcome, 'upstream-error');
    await sleep(20);
    assert.equal(open, 0, 'the connection was closed');
  });

  test('an instance that never answers a HEAD body: HEAD answers end with their head', timeout, async () => {
    await reset((socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n'));
    const got = await new Promise<{ status: number; length?: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: frontPort, path: '/h', method: 'HEAD', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, length: res.headers['content-length'] }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.deepEqual(got, { status: 200, length: '1000' });
    assert.equal(open, 1, 'kept for the next request');
  });
});
