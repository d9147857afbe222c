/**
 * @module registry/send-blob
 * Writes a large blob to the client from a positional `BlobReader` through two reused buffers:
 * a buffer is filled again only after the socket has taken its previous contents (the write
 * callback), so nothing is allocated per chunk. The response is hijacked from Fastify for
 * this: status and headers already set on the reply are written as they are.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { OutgoingHttpHeaders } from 'node:http';
import type { BlobReader } from '../storage/blob-store.js';

export interface ReaderBody {
  reader: BlobReader;
  start: number;
  length: number;
}

const chunkBytes = 1024 * 1024;

export function isReaderBody(body: unknown): body is ReaderBody {
  return typeof body === 'object' && body !== null && 'reader' in body;
}

export async function sendFromReader(request: FastifyRequest, reply: FastifyReply, body: ReaderBody): Promise<void> {
  const { reader } = body;
  const response = reply.raw;
  reply.hijack();
  const headers = reply.getHeaders();
  // As the server's onSend hook does for other replies: let keep-alive clients go while closing.
  if (!request.server.server.listening) headers.connection = 'close';
  const gone = new Promise<never>((_resolve, reject) => {
    response.once('close', () => { if (!response.writableFinished) reject(new Error('client closed the connection')); });
  });
  gone.catch(() => undefined);
  try {
    response.writeHead(reply.statusCode, headers as OutgoingHttpHeaders);
    const buffers = [Buffer.allocUnsafeSlow(chunkBytes), Buffer.allocUnsafeSlow(chunkBytes)];
    const flushed: Array<Promise<void>> = [Promise.resolve(), Promise.resolve()];
    let position = body.start;
    let remaining = body.length;
    for (let slot = 0; remaining > 0; slot ^= 1) {
      await Promise.race([flushed[slot], gone]);
      const buffer = buffers[slot]!;
      const read = await reader.read(buffer, Math.min(chunkBytes, remaining), position);
      if (read === 0) throw new Error(`blob ended ${remaining} bytes early`);
      position += read;
      remaining -= read;
      const write = new Promise<void>((resolve, reject) => {
        response.write(read === buffer.length ? buffer : buffer.subarray(0, read), (error) => (error ? reject(error) : resolve()));
      });
      write.catch(() => undefined); // awaited on the slot's next turn or below
      flushed[slot] = write;
    }
    await Promise.race([Promise.all(flushed), gone]);
    response.end();
  } catch (error) {
    // Headers are out: the only honest signal left is cutting the connection short.
    request.log.debug({ err: error }, 'blob response aborted');
    response.destroy();
  } finally {
    await reader.close();
  }
}
