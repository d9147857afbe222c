/**
 * The LogStore conformance suite: the `fs` and `blobstore` logs drivers run it. `open` gives
 * two stores over the same storage (`other` plays a second replica; for fs, the same store).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { LogStore } from '../../src/logs/log-store.js';

export interface LogStoresUnderTest {
  store: LogStore;
  /** A store over the same storage in another "process"; whether it sees live lines of `store`. */
  other: LogStore;
  sharesLiveLogs: boolean;
  close(): Promise<void>;
}

function collect(store: LogStore, id: string): Promise<{ lines: string[]; ended: Promise<void>; stop: () => void }> {
  const lines: string[] = [];
  let resolveEnd!: () => void;
  const ended = new Promise<void>((resolve) => { resolveEnd = resolve; });
  return store.follow(id, { line: (text) => lines.push(text), end: () => resolveEnd() }).then((stop) => ({ lines, ended, stop }));
}

async function waitFor(check: () => boolean, timeoutMs = 30_000): Promise<void> {
  for (const started = Date.now(); !check(); await new Promise((resolve) => setTimeout(resolve, 50))) {
    if (Date.now() - started > timeoutMs) throw new Error('timed out waiting');
  }
}

export function logStoreSuite(name: string, open: () => Promise<LogStoresUnderTest>): void {
  describe(`LogStore conformance (${name})`, { timeout: 180_000 }, () => {
    let under: LogStoresUnderTest;
    before(async () => { under = await open(); });
    after(async () => under?.close());

    test('write, read while live and after finish, live flag', async () => {
      const { store } = under;
      assert.equal(await store.read('absent-log'), '');
      assert.equal(store.isLive('log-one'), false);
      const write = await store.start('log-one');
      write('first');
      write('second\n');
      assert.equal(store.isLive('log-one'), true);
      await store.finish('log-one');
      assert.equal(store.isLive('log-one'), false);
      assert.equal(await store.read('log-one'), 'first\nsecond\n');
      await assert.rejects(store.start('../escape'));
    });

    test('a follower joining live gets the past lines, the new ones, then end; a late one replays', async () => {
      const { store } = under;
      const write = await store.start('log-follow');
      write('before');
      const follower = await collect(store, 'log-follow');
      write('after');
      await store.finish('log-follow');
      await follower.ended;
      assert.deepEqual(follower.lines, ['before', 'after']);
      const late = await collect(store, 'log-follow');
      await late.ended;
      assert.deepEqual(late.lines, ['before', 'after']);
    });

    test('a log resumed after a restart continues where it was', async () => {
      const { store } = under;
      const write = await store.start('log-resume');
      write('run 1');
      await store.finish('log-resume');
      const again = await store.start('log-resume');
      again('run 2');
      await store.finish('log-resume');
      assert.equal(await store.read('log-resume'), 'run 1\nrun 2\n');
    });

    test('another replica reads and follows a log while it is written', async (t) => {
      const { store, other, sharesLiveLogs } = under;
      if (!sharesLiveLogs) return t.skip('this driver keeps logs on one host');
      const write = await store.start('log-shared');
      for (let index = 0; index < 100; index++) write(`line ${index}`);
      await waitFor(() => other.isLive('log-shared'));
      const follower = await collect(other, 'log-shared');
      await waitFor(() => follower.lines.length === 100);
      write('late line');
      await waitFor(() => follower.lines.includes('late line'));
      await store.finish('log-shared');
      await follower.ended;
      assert.deepEqual(follower.lines, [...Array.from({ length: 100 }, (_, index) => `line ${index}`), 'late line']);
      assert.equal(await other.read('log-shared'), follower.lines.map((line) => `${line}\n`).join(''));
      await waitFor(() => !other.isLive('log-shared'));
    });
  });
}
