/**
 * @module bench/floor-servers
 * The smallest Node servers this host can run, for bench/node-floor: what Node itself costs
 * per request before any Slipway code runs. Each runs as its own process:
 *
 *   node dist/bench/floor-servers.js http-hello <port>            node:http, a 5-byte answer
 *   node dist/bench/floor-servers.js net-hello <port>             net sockets, the answer prewritten
 *   node dist/bench/floor-servers.js net-proxy <port> <upstream>  net sockets both ways, one kept-alive
 *                                                                 upstream connection per caller
 *
 * `net-proxy` is a floor, not a proxy anyone should run: Content-Length framing only, no
 * chunked bodies, no limits, no error answers. It forwards the request head (hop-by-hop
 * headers dropped, X-Forwarded-* added), then the answer with an X-Request-Id, as the gateway
 * does, and nothing else.
 */
import http from 'node:http';
import net from 'node:net';

const [kind, portText, upstreamText] = process.argv.slice(2);
const port = Number(portText);
const hop = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Complete heads (`\r\n\r\n`-ended) and Content-Length bodies from a byte stream. */
class Framer {
  private pending: Buffer = Buffer.alloc(0);
  constructor(private readonly onMessage: (lines: string[], body: Buffer) => void) {}

  push(data: Buffer): void {
    this.pending = this.pending.length === 0 ? data : Buffer.concat([this.pending, data]);
    for (;;) {
      const end = this.pending.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = this.pending.toString('latin1', 0, end).split('\r\n');
      let length = 0;
      for (let i = 1; i < lines.length; i++) {
        const line = lines[i]!;
        if (line.length > 15 && line.slice(0, 15).toLowerCase() === 'content-length:') length = Number(line.slice(15).trim());
      }
      if (this.pending.length < end + 4 + length) return;
      const body = this.pending.subarray(end + 4, end + 4 + length);
      this.pending = this.pending.subarray(end + 4 + length);
      this.onMessage(lines, body);
    }
  }
}

function kept(lines: string[]): string {
  let out = '';
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (!hop.has(line.slice(0, line.indexOf(':')).toLowerCase())) out += `${line}\r\n`;
  }
  return out;
}

if (kind === 'http-hello') {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 5 });
    res.end('hello');
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, '127.0.0.1');
} else if (kind === 'net-hello') {
  const answer = Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello', 'latin1');
  net.createServer((socket) => {
    socket.setNoDelay(true);
    const framer = new Framer(() => socket.write(answer));
    socket.on('data', (data: Buffer) => framer.push(data));
    socket.on('error', () => socket.destroy());
  }).listen(port, '127.0.0.1');
} else if (kind === 'net-proxy') {
  const upstream = Number(upstreamText);
  let requests = 0;
  net.createServer((socket) => {
    socket.setNoDelay(true);
    const instance = net.connect(upstream, '127.0.0.1');
    instance.setNoDelay(true);
    const fromCaller = new Framer((lines, body) => {
      const [method, target] = lines[0]!.split(' ');
      instance.cork();
      instance.write(`${method} ${target} HTTP/1.1\r\n${kept(lines)}x-forwarded-for: ${socket.remoteAddress}\r\nx-forwarded-proto: http\r\n\r\n`, 'latin1');
      if (body.length > 0) instance.write(body);
      instance.uncork();
    });
    const fromInstance = new Framer((lines, body) => {
      socket.cork();
      socket.write(`${lines[0]}\r\n${kept(lines)}x-request-id: ${(++requests).toString(16).padStart(16, '0')}\r\n\r\n`, 'latin1');
      if (body.length > 0) socket.write(body);
      socket.uncork();
    });
    socket.on('data', (data: Buffer) => fromCaller.push(data));
    instance.on('data', (data: Buffer) => fromInstance.push(data));
    socket.on('error', () => instance.destroy());
    socket.on('close', () => instance.destroy());
    instance.on('error', () => socket.destroy());
  }).listen(port, '127.0.0.1');
} else {
  console.error('usage: floor-servers http-hello|net-hello|net-proxy <port> [upstream port]');
  process.exit(2);
}
