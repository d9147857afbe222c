/**
 * @module functions/proxy-body
 * The relay stream that carries a caller's request body to the function instance.
 */
import type http from 'node:http';
import { Readable } from 'node:stream';

/**
 * The caller's body as the instance request's body: a separate stream, so that undici ending
 * or destroying it (on a failure) never touches the caller's connection, and so that the
 * bytes are counted against the limit as they pass.
 */
export class BodyRelay extends Readable {
  constructor(private readonly source: http.IncomingMessage) {
    super();
  }

  override _read(): void {
    this.source.resume();
  }

  /**
   * The caller's body is complete. Held back until undici consumes the stream: one already
   * ended when the request is written would be sent with a Content-Length instead of chunked,
   * and the framing of a body of unknown length should not depend on how fast the pool was.
   */
  finish(): void {
    if (this.readableFlowing === true) this.push(null);
    else this.once('resume', () => this.push(null));
  }
}
