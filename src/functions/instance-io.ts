/**
 * @module functions/instance-io
 * Small I/O helpers of the runc driver: splitting an instance's output into log lines and
 * waiting until an address accepts TCP connections.
 */
import net from 'node:net';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function lines(stream: NodeJS.ReadableStream, emit: (line: string) => void): Promise<void> {
  return new Promise((resolve) => {
    let pending = '';
    const decoder = new TextDecoder();
    stream.on('data', (chunk: Buffer) => {
      pending += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = pending.indexOf('\n')) >= 0) {
        emit(pending.slice(0, i).replace(/\r$/, ''));
        pending = pending.slice(i + 1);
      }
    });
    const end = () => {
      pending += decoder.decode();
      if (pending) emit(pending);
      pending = '';
      resolve();
    };
    stream.on('end', end);
    stream.on('error', end);
  });
}

/** Resolves once a TCP connection to address:port succeeds; rejects after timeoutMs. */
export async function waitForPort(address: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: address, port });
      const timer = setTimeout(() => finish(false), Math.max(50, Math.min(1000, deadline - Date.now())));
      function finish(result: boolean) {
        clearTimeout(timer);
        socket.destroy();
        resolve(result);
      }
      socket.once('connect', () => finish(true));
      socket.once('error', () => finish(false));
    });
    if (ok) return;
    if (Date.now() >= deadline) throw new Error(`${address}:${port} did not accept connections within ${timeoutMs} ms`);
    await sleep(5);
  }
}
