/**
 * The gateway's HTTP/1.1 answer parser on its own: framing by Content-Length, chunked coding
 * and close, answers split at every byte boundary, 1xx and bodiless answers, keep-alive
 * decisions, and the malformed answers it must refuse.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AnswerParser, AnswerParseError } from '../src/functions/instance-answer-parser.js';

interface Parsed { status?: number; headers?: string[]; body: string; ended: boolean; heads: number }

function parser(bodiless = false): { parser: AnswerParser; seen: Parsed } {
  const seen: Parsed = { body: '', ended: false, heads: 0 };
  const p = new AnswerParser({
    onAnswerHead(status, headers) { seen.status = status; seen.headers = headers; seen.heads++; },
    onAnswerBody(chunk) { seen.body += chunk.toString('latin1'); },
    onAnswerEnd() { seen.ended = true; },
  });
  p.expect(bodiless);
  return { parser: p, seen };
}

/** Feeds `text` cut at the given offsets. */
function feed(p: AnswerParser, text: string, cuts: number[]): void {
  const bytes = Buffer.from(text, 'latin1');
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    p.execute(bytes.subarray(at, cut));
    at = cut;
  }
}

const lengthAnswer = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello world';
const chunkedAnswer = 'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\nB\r\nworld, 0123\r\n0\r\nX-Trailer: t\r\n\r\n';

describe('instance answer parser', () => {
  test('a Content-Length answer cut at every byte boundary (and in single bytes) gives the same head and body', () => {
    for (let cut = 0; cut <= lengthAnswer.length; cut++) {
      const { parser: p, seen } = parser();
      feed(p, lengthAnswer, [cut]);
      assert.equal(seen.status, 200, `cut at ${cut}`);
      assert.deepEqual(seen.headers, ['Content-Type', 'text/plain', 'Content-Length', '11', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
      assert.equal(seen.body, 'hello world');
      assert.equal(seen.ended, true);
      assert.equal(p.keepAlive, true);
    }
    const { parser: p, seen } = parser();
    feed(p, lengthAnswer, [...Array(lengthAnswer.length).keys()].slice(1));
    assert.equal(seen.body, 'hello world');
    assert.equal(seen.ended, true);
  });

  test('a chunked answer with extensions and trailers, cut at every pair of boundaries', () => {
    for (let first = 0; first <= chunkedAnswer.length; first++) {
      for (let second = first; second <= chunkedAnswer.length; second += 3) {
        const { parser: p, seen } = parser();
        feed(p, chunkedAnswer, [first, second]);
        assert.equal(seen.status, 201);
        assert.equal(seen.body, 'hello world, 0123', `cuts at ${first}, ${second}`);
        assert.equal(seen.ended, true);
        assert.equal(seen.heads, 1);
        assert.equal(p.keepAlive, true);
      }
    }
  });

  test('the connection can carry the next answer after a complete one', () => {
    const { parser: p, seen } = parser();
    feed(p, chunkedAnswer, []);
    assert.equal(p.done, true);
    p.expect(false);
    seen.body = '';
    seen.ended = false;
    feed(p, lengthAnswer, [7]);
    assert.equal(seen.status, 200);
    assert.equal(seen.body, 'hello world');
    assert.equal(seen.ended, true);
  });

  test('1xx answers are skipped; 101 is refused', () => {
    const { parser: p, seen } = parser();
    feed(p, `HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n${lengthAnswer}`, [10, 30]);
    assert.equal(seen.heads, 1);
    assert.equal(seen.status, 200);
    assert.equal(seen.body, 'hello world');
    const other = parser();
    assert.throws(() => feed(other.parser, 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', []), AnswerParseError);
  });

  test('HEAD, 204 and 304 answers have no body whatever their headers say', () => {
    const head = parser(true);
    feed(head.parser, 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n', []);
    assert.equal(head.seen.ended, true);
    assert.equal(head.seen.body, '');
    assert.equal(head.parser.keepAlive, true);
    for (const status of [204, 304]) {
      const { parser: p, seen } = parser();
      feed(p, `HTTP/1.1 ${status} X\r\nX-Kind: empty\r\n\r\n`, []);
      assert.equal(seen.status, status);
      assert.equal(seen.ended, true);
    }
    const empty = parser();
    feed(empty.parser, 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', []);
    assert.equal(empty.seen.ended, true);
  });

  test('a body delimited by the close ends with the close, and the connection is not kept', () => {
    const { parser: p, seen } = parser();
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome bytes', [20]);
    assert.equal(seen.ended, false);
    assert.equal(p.keepAlive, false);
    assert.equal(p.closed(), true);
    assert.equal(seen.ended, true);
    assert.equal(seen.body, 'some bytes');
  });

  test('a close before the answer is complete is reported as cut short', () => {
    for (const text of ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel', 'HTTP/1.1 200 OK\r\nContent-']) {
      const { parser: p, seen } = parser();
      feed(p, text, []);
      assert.equal(p.closed(), false, text);
      assert.equal(seen.ended, false);
    }
  });

  test('keep-alive: Connection: close, HTTP/1.0, Keep-Alive timeout, bytes after the answer', () => {
    const close = parser();
    feed(close.parser, 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n', []);
    assert.equal(close.parser.keepAlive, false);
    const old = parser();
    feed(old.parser, 'HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n', []);
    assert.equal(old.parser.keepAlive, false);
    const oldKept = parser();
    feed(oldKept.parser, 'HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n', []);
    assert.equal(oldKept.parser.keepAlive, true);
    const timeout = parser();
    feed(timeout.parser, 'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n', []);
    assert.equal(timeout.parser.keepAliveTimeoutMs, 5000);
    const extra = parser();
    feed(extra.parser, 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n', []);
    assert.equal(extra.seen.body, 'ok');
    assert.equal(extra.seen.ended, true);
    assert.equal(extra.parser.keepAlive, false, 'an instance out of step is not reused');
  });

  test('Transfer-Encoding wins over Content-Length, and the connection is then not reused', () => {
    const { parser: p, seen } = parser();
    feed(p, 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n', []);
    assert.equal(seen.body, 'ok');
    assert.equal(seen.ended, true);
    assert.equal(p.keepAlive, false);
  });

  test('malformed answers are refused', () => {
    const bad = [
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 20 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n',
      'HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\n folded: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\r\n',
    ];
    for (const text of bad) {
      const { parser: p } = parser();
      assert.throws(() => feed(p, text, []), AnswerParseError, JSON.stringify(text));
    }
    const idle = new AnswerParser({ onAnswerHead() {}, onAnswerBody() {}, onAnswerEnd() {} });
    assert.throws(() => idle.execute(Buffer.from('HTTP/1.1 200 OK\r\n\r\n')), AnswerParseError, 'bytes with no request outstanding');
    const huge = parser();
    assert.throws(() => feed(huge.parser, `HTTP/1.1 200 OK\r\nX: ${'a'.repeat(20_000)}`, [1000, 5000]), AnswerParseError, 'a head that never ends');
  });
});
