/**
 * @module functions/instance-answer-parser
 * An incremental parser of one HTTP/1.1 answer at a time from a function instance: the status
 * line and headers, then the body framed by `Content-Length`, chunked transfer coding, or the
 * connection's close. Only what a reverse proxy needs: the headers are handed over as a flat
 * raw list (latin1, as received), the body as slices of the received buffers (never copied).
 *
 * Strict where a lenient reading could desynchronise the connection: lines end with CRLF, no
 * obs-fold, header names are tokens, one `Content-Length` value, `Transfer-Encoding` wins over
 * `Content-Length` (and the connection is then not reused). 1xx answers other than 101 are
 * skipped. Trailers are read and dropped.
 */

/** What the parser reports, in order: one head, any number of body slices, one end. */
export interface AnswerEvents {
  /** The final answer's head (status ≥ 200). `headers` is a flat [name, value, …] list. */
  onAnswerHead(status: number, headers: string[]): void;
  /** A slice of the body (a view of the received buffer: write it or copy it, do not keep it past the tick). */
  onAnswerBody(chunk: Buffer): void;
  /** The answer is complete. */
  onAnswerEnd(): void;
}

export class AnswerParseError extends Error {
  readonly code = 'HPE_INVALID_ANSWER';
}

const enum State { Idle, Head, Length, ChunkSize, ChunkData, ChunkDataEnd, Trailers, UntilClose, Done, Stopped }

/** Longest head (status line + headers) accepted, as Node's default `maxHeaderSize`. */
const maxHeadBytes = 16 * 1024;
/** Longest chunk-size line or trailer section accepted. */
const maxLineBytes = 8 * 1024;
const headEnd = Buffer.from('\r\n\r\n', 'latin1');
const statusLine = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [^\r\n]*)?$/;
const token = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Characters allowed in a header line (field-content: visible, space, tab, obs-text). */
const invalidLineChar = /[^\t\x20-\x7e\x80-\xff]/;
const digits = /^\d{1,15}$/;
const chunkSizeLine = /^([0-9A-Fa-f]{1,12})[\t ]*(?:;.*)?$/;

export class AnswerParser {
  private state = State.Idle;
  /** The answer of a HEAD request has no body whatever its headers say. */
  private bodiless = false;
  /** Head bytes received so far when the head spans several reads. */
  private pendingHead: Buffer | undefined;
  /** A chunk-size or trailer line received so far (latin1). */
  private pendingLine = '';
  private trailerBytes = 0;
  private remaining = 0;
  /** CR/LF bytes still expected after a chunk's data (2, then 1). */
  private crlfLeft = 0;
  /** Whether the connection may carry another request after this answer. */
  keepAlive = true;
  /** The instance's `Keep-Alive: timeout=N`, in ms; undefined when it announced none. */
  keepAliveTimeoutMs: number | undefined;

  constructor(private readonly events: AnswerEvents) {}

  /** A request was sent: the next bytes are its answer. */
  expect(bodiless: boolean): void {
    this.state = State.Head;
    this.bodiless = bodiless;
    this.pendingHead = undefined;
    this.pendingLine = '';
    this.trailerBytes = 0;
  }

  /** Whether an answer is awaited or being read. */
  get busy(): boolean {
    return this.state !== State.Idle && this.state !== State.Done && this.state !== State.Stopped;
  }

  /** Whether the last answer was read completely. */
  get done(): boolean {
    return this.state === State.Done;
  }

  /** Nothing more is reported (the connection is being given up). */
  stop(): void {
    this.state = State.Stopped;
  }

  /**
   * Parses received bytes, reporting to the events. Throws AnswerParseError for bytes that are
   * not a valid answer (or bytes outside an answer); the connection must then be closed. Bytes
   * after a complete answer make the connection not reusable (no pipelining is used).
   */
  execute(data: Buffer): void {
    let offset = 0;
    const length = data.length;
    while (offset < length) {
      switch (this.state) {
        case State.Head: {
          offset = this.head(data, offset);
          break;
        }
        case State.Length: {
          const take = Math.min(this.remaining, length - offset);
          this.remaining -= take;
          this.events.onAnswerBody(offset === 0 && take === length ? data : data.subarray(offset, offset + take));
          offset += take;
          if (this.remaining === 0 && this.state === State.Length) this.end();
          break;
        }
        case State.ChunkSize: {
          const line = this.line(data, offset);
          if (line === undefined) return;
          offset = line.next;
          const match = chunkSizeLine.exec(line.text);
          if (match === null) throw new AnswerParseError(`invalid chunk size line ${JSON.stringify(line.text.slice(0, 40))}`);
          const size = parseInt(match[1]!, 16);
          if (size === 0) {
            this.state = State.Trailers;
          } else {
            this.remaining = size;
            this.state = State.ChunkData;
          }
          break;
        }
        case State.ChunkData: {
          const take = Math.min(this.remaining, length - offset);
          this.remaining -= take;
          this.events.onAnswerBody(offset === 0 && take === length ? data : data.subarray(offset, offset + take));
          offset += take;
          if (this.remaining === 0 && this.state === State.ChunkData) {
            this.state = State.ChunkDataEnd;
            this.crlfLeft = 2;
          }
          break;
        }
        case State.ChunkDataEnd: {
          const expected = this.crlfLeft === 2 ? 13 : 10;
          if (data[offset] !== expected) throw new AnswerParseError('chunk data not followed by CRLF');
          offset++;
          if (--this.crlfLeft === 0) this.state = State.ChunkSize;
          break;
        }
        case State.Trailers: {
          const line = this.line(data, offset);
          if (line === undefined) return;
          offset = line.next;
          if (line.text === '') this.end();
          else {
            this.trailerBytes += line.text.length;
            if (this.trailerBytes > maxLineBytes) throw new AnswerParseError('trailers too large');
          }
          break;
        }
        case State.UntilClose: {
          this.events.onAnswerBody(offset === 0 ? data : data.subarray(offset));
          return;
        }
        case State.Done: {
          // More than the answer: the instance is out of step with this connection.
          this.keepAlive = false;
          return;
        }
        case State.Stopped:
          return;
        case State.Idle:
          throw new AnswerParseError('bytes received while no request was outstanding');
      }
    }
  }

  /**
   * The connection was closed by the instance. Returns true when that completed the answer
   * (a body delimited by the close, or no answer in progress); false when it cut one short.
   */
  closed(): boolean {
    if (this.state === State.UntilClose) {
      this.end();
      return true;
    }
    return !this.busy;
  }

  private end(): void {
    this.state = State.Done;
    this.events.onAnswerEnd();
  }

  /** Reads a CRLF-terminated line from `offset`; undefined (kept for the next read) when it is not complete yet. */
  private line(data: Buffer, offset: number): { text: string; next: number } | undefined {
    const newline = data.indexOf(10, offset);
    if (newline === -1) {
      this.pendingLine += data.toString('latin1', offset);
      if (this.pendingLine.length > maxLineBytes) throw new AnswerParseError('line too long');
      return undefined;
    }
    let text = data.toString('latin1', offset, newline);
    if (this.pendingLine !== '') {
      text = this.pendingLine + text;
      this.pendingLine = '';
    }
    if (text.charCodeAt(text.length - 1) !== 13) throw new AnswerParseError('line not ended by CRLF');
    return { text: text.slice(0, -1), next: newline + 1 };
  }

  /** Reads the head from `offset`; returns the offset after what was consumed. */
  private head(data: Buffer, offset: number): number {
    let buffer = data;
    let start = offset;
    let searchFrom = offset;
    if (this.pendingHead !== undefined) {
      const before = this.pendingHead.length;
      buffer = Buffer.concat([this.pendingHead, data.subarray(offset)]);
      start = 0;
      searchFrom = Math.max(0, before - 3);
    }
    const end = buffer.indexOf(headEnd, searchFrom);
    if (end === -1) {
      if (buffer.length - start > maxHeadBytes) throw new AnswerParseError(`answer head over ${maxHeadBytes} bytes`);
      this.pendingHead = start === 0 && buffer !== data ? buffer : Buffer.from(buffer.subarray(start));
      return data.length;
    }
    if (end - start > maxHeadBytes) throw new AnswerParseError(`answer head over ${maxHeadBytes} bytes`);
    const consumedOfData = buffer === data ? end + 4 : end + 4 - this.pendingHead!.length + offset;
    this.pendingHead = undefined;
    this.parseHead(buffer.toString('latin1', start, end));
    return consumedOfData;
  }

  private parseHead(text: string): void {
    const lines = text.split('\r\n');
    const match = statusLine.exec(lines[0]!);
    if (match === null) throw new AnswerParseError(`invalid status line ${JSON.stringify(lines[0]!.slice(0, 60))}`);
    const status = Number(match[2]);
    const http11 = match[1] === '1';
    const headers: string[] = [];
    let contentLength = -1;
    let chunked = false;
    let transferEncoding = false;
    let close = !http11;
    let keepAliveTimeoutMs: number | undefined;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0 || invalidLineChar.test(line)) throw new AnswerParseError(`invalid header line ${JSON.stringify(line.slice(0, 60))}`);
      const name = line.slice(0, colon);
      if (!token.test(name)) throw new AnswerParseError(`invalid header name ${JSON.stringify(name.slice(0, 60))}`);
      const value = line.slice(colon + 1).trim();
      headers.push(name, value);
      // Only names of these lengths matter for framing (content-length 14, transfer-encoding 17, connection/keep-alive 10).
      const size = name.length;
      if (size !== 14 && size !== 17 && size !== 10) continue;
      const lower = name.toLowerCase();
      if (lower === 'content-length') {
        if (!digits.test(value)) throw new AnswerParseError(`invalid content-length ${JSON.stringify(value.slice(0, 40))}`);
        const declared = Number(value);
        if (contentLength !== -1 && contentLength !== declared) throw new AnswerParseError('conflicting content-length headers');
        contentLength = declared;
      } else if (lower === 'transfer-encoding') {
        transferEncoding = true;
        const codings = value.toLowerCase().split(',');
        chunked = codings[codings.length - 1]!.trim() === 'chunked';
      } else if (lower === 'connection') {
        for (const option of value.toLowerCase().split(',')) {
          const trimmed = option.trim();
          if (trimmed === 'close') close = true;
          else if (trimmed === 'keep-alive' && !http11) close = false;
        }
      } else if (lower === 'keep-alive') {
        const timeout = /(?:^|[,;\s])timeout=(\d+)/i.exec(value);
        if (timeout !== null) keepAliveTimeoutMs = Number(timeout[1]) * 1000;
      }
    }
    if (status < 200) {
      // 100 Continue, 102, 103 Early Hints: the final answer follows on the same connection.
      if (status === 101) throw new AnswerParseError('the instance switched protocols (upgrades are not supported)');
      return;
    }
    this.keepAlive = !close;
    this.keepAliveTimeoutMs = keepAliveTimeoutMs;
    if (this.bodiless || status === 204 || status === 304) {
      this.events.onAnswerHead(status, headers);
      if (this.state === State.Head) this.end();
      return;
    }
    if (transferEncoding) {
      // A Content-Length beside it is ignored, and the connection is not trusted for another request.
      if (contentLength !== -1) this.keepAlive = false;
      this.state = chunked ? State.ChunkSize : State.UntilClose;
      if (!chunked) this.keepAlive = false;
    } else if (contentLength !== -1) {
      this.state = State.Length;
      this.remaining = contentLength;
    } else {
      this.state = State.UntilClose;
      this.keepAlive = false;
    }
    this.events.onAnswerHead(status, headers);
    if (this.state === State.Length && this.remaining === 0) this.end();
  }
}
