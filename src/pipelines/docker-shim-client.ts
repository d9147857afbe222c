/**
 * @module pipelines/docker-shim-client
 * The `docker` client that build steps run (docker-shim.ts has the server and the protocol): a
 * CommonJS script without dependencies, written into the stage's `bin` folder and run by the
 * Node.js that runs Slipway (on the host, or bind-mounted into a container executor's image).
 * It forwards its command line, working folder and the `--build-arg NAME` values of its
 * environment over the stage's socket, relays output, and exits with the server's exit code.
 */

/** The client: CommonJS, no dependencies, run by Node (`node <file> <docker args>`). */
export const dockerShimClient = String.raw`'use strict';
const net = require('net');
const socketPath = process.env.SLIPWAY_DOCKER_SOCKET;
if (!socketPath) {
  process.stderr.write('docker: this step has no Slipway docker socket (SLIPWAY_DOCKER_SOCKET is not set)\n');
  process.exit(1);
}
const argv = process.argv.slice(2);
const env = {};
for (let i = 0; i < argv.length; i++) {
  let value;
  if (argv[i] === '--build-arg') value = argv[i + 1];
  else if (argv[i].startsWith('--build-arg=')) value = argv[i].slice(12);
  if (value !== undefined && !value.includes('=') && process.env[value] !== undefined) env[value] = process.env[value];
}
let cwd;
try { cwd = process.cwd(); } catch { cwd = '/'; }
let exitCode;
let pending = '';
const socket = net.createConnection(socketPath);
socket.setEncoding('utf8');
socket.on('connect', () => socket.write(JSON.stringify({ argv, cwd, env }) + '\n'));
socket.on('data', (chunk) => {
  pending += chunk;
  let index;
  while ((index = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, index);
    pending = pending.slice(index + 1);
    if (line === '') continue;
    const message = JSON.parse(line);
    if (message.o !== undefined) process.stdout.write(message.o);
    if (message.e !== undefined) process.stderr.write(message.e);
    if (message.x !== undefined) exitCode = message.x;
  }
});
socket.on('error', (error) => {
  process.stderr.write('docker: cannot reach Slipway (' + error.message + ')\n');
  process.exit(1);
});
socket.on('close', () => {
  if (exitCode === undefined) process.stderr.write('docker: the connection to Slipway ended early\n');
  process.exit(exitCode === undefined ? 1 : exitCode);
});
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => { socket.destroy(); process.exit(128 + (signal === 'SIGTERM' ? 15 : signal === 'SIGINT' ? 2 : 1)); });
`;
