// The example function: an HTTP server on port 8000 following Slipway's function contract.
const http = require('node:http');

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/init') {
    res.writeHead(200);
    return res.end();
  }
  if (req.method === 'POST' && req.url === '/invoke') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let event = {};
      try { event = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'); } catch { event = {}; }
      const body = JSON.stringify({ hello: event.name || 'world', requestId: req.headers['x-cff-request-id'] });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`hello from ${req.url}\n`);
});
server.listen(Number(process.env.PORT || 8000));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
