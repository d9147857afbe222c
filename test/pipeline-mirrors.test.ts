/**
 * The MirrorPoller against real local repositories (`git init` + commits, `file://` URLs), with
 * its state in `pipeline_mirrors` on SQLite (and PostgreSQL when SLIPWAY_TEST_POSTGRES_URL is
 * set): the first poll records, a new commit triggers once with its changed files, an unchanged
 * head triggers nothing, a new branch triggers, a failed trigger is retried, a broken URL records
 * last_error, polls of one pipeline never overlap, close() waits for the poll in flight. The git
 * reads it uses (ls-remote, changed files): test/git-remote-changes.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { openDatabase, type Database } from '../src/db/db.js';
import { MirrorPoller, type MirrorChange, type MirrorTarget } from '../src/pipelines/mirrors.js';
import { killAllChildren } from './helpers/commands.js';
import { makeRepository } from './helpers/git-repository.js';

const timeout = 60_000;

after(() => killAllChildren());

import { dialects } from './helpers/dialects.js';

let root: string;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'slipway-mirrors-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

for (const dialect of dialects) {
  describe(`mirror poller (${dialect.name})`, () => {
    let database: { url: string; drop(): Promise<void> };
    let db: Database;
    let dataDir: string;
    before(async () => {
      dataDir = await mkdtemp(path.join(root, 'data-'));
      database = await dialect.create();
      db = await openDatabase({ url: database.url, dataDir });
    });
    after(async () => {
      await db?.close();
      await database?.drop();
    });

    function poller(targets: () => MirrorTarget[], onNewCommit: (id: string, change: MirrorChange) => Promise<void>, extra: { tickMs?: number; now?: () => number } = {}) {
      return new MirrorPoller({ db, list: async () => targets(), onNewCommit, cacheDir: path.join(dataDir, 'mirror-cache'), ...extra });
    }

    test('first poll records; a new commit triggers once with its files; unchanged triggers nothing; new branches trigger', { timeout }, async () => {
      const repo = await makeRepository(root);
      const id = `p-${randomBytes(4).toString('hex')}`;
      const calls: Array<[string, MirrorChange]> = [];
      const target: MirrorTarget = { pipelineId: id, url: repo.url, branches: ['main', 'release/*'], intervalMs: 60_000 };
      const mirrors = poller(() => [target], async (pipelineId, change) => {
        calls.push([pipelineId, change]);
      });
      try {
        await mirrors.pollNow(id);
        assert.equal(calls.length, 0, 'the first poll triggers nothing');
        let state = await mirrors.state(id);
        assert.deepEqual(state?.heads, { main: repo.first });
        assert.equal(state?.lastError, null);
        assert.equal(typeof state?.lastPolledAt, 'number');

        await mirrors.pollNow(id);
        assert.equal(calls.length, 0, 'unchanged head: nothing');

        const second = await repo.commit({ 'src/api.ts': 'api\n', 'docs/guide.md': 'g\n' });
        await repo.git('branch', 'feature/ignored');
        await mirrors.pollNow(id);
        assert.equal(calls.length, 1);
        assert.equal(calls[0]![0], id);
        assert.deepEqual({ ...calls[0]![1], changedFiles: calls[0]![1].changedFiles?.sort() }, { branch: 'main', before: repo.first, after: second, changedFiles: ['docs/guide.md', 'src/api.ts'] });
        state = await mirrors.state(id);
        assert.deepEqual(state?.heads, { main: second }, 'non-matching branches are not tracked');

        await mirrors.pollNow(id);
        assert.equal(calls.length, 1, 'the same head does not trigger twice');

        await repo.git('branch', 'release/1.0');
        await mirrors.pollNow();
        assert.equal(calls.length, 2);
        assert.deepEqual(calls[1]![1], { branch: 'release/1.0', before: null, after: second, changedFiles: null });
        assert.deepEqual((await mirrors.state(id))?.heads, { main: second, 'release/1.0': second });

        await repo.git('branch', '-D', 'release/1.0');
        await mirrors.pollNow(id);
        assert.equal(calls.length, 2, 'a deleted branch triggers nothing');
        assert.deepEqual((await mirrors.state(id))?.heads, { main: second });

        await assert.rejects(mirrors.pollNow('unknown'), /no mirror trigger/);
      } finally {
        await mirrors.close();
      }
    });

    test('a failed trigger keeps the old head and is retried; a broken URL records last_error and recovers', { timeout }, async () => {
      const repo = await makeRepository(root);
      const id = `p-${randomBytes(4).toString('hex')}`;
      let url = repo.url;
      let fail = true;
      const calls: MirrorChange[] = [];
      const mirrors = poller(() => [{ pipelineId: id, url, branches: [], intervalMs: 60_000 }], async (_id, change) => {
        calls.push(change);
        if (fail) throw new Error('the queue is full');
      });
      try {
        await mirrors.pollNow(id);
        const second = await repo.commit({ 'a.txt': 'a\n' });
        await mirrors.pollNow(id);
        assert.equal(calls.length, 1);
        let state = await mirrors.state(id);
        assert.deepEqual(state?.heads, { main: repo.first }, 'not saved: the trigger failed');
        assert.match(state?.lastError ?? '', /triggering branch main .* failed: the queue is full/);

        fail = false;
        await mirrors.pollNow(id);
        assert.equal(calls.length, 2, 'retried');
        assert.deepEqual(calls[1], calls[0]);
        state = await mirrors.state(id);
        assert.deepEqual(state?.heads, { main: second });
        assert.equal(state?.lastError, null);

        url = pathToFileURL(path.join(root, 'does-not-exist')).toString();
        await mirrors.pollNow(id);
        state = await mirrors.state(id);
        assert.match(state?.lastError ?? '', /not found|does not appear|failed/);
        assert.deepEqual(state?.heads, { main: second }, 'the heads survive a failed poll');
        assert.equal(calls.length, 2);

        url = repo.url;
        await mirrors.pollNow(id);
        assert.equal((await mirrors.state(id))?.lastError, null);
        assert.equal(calls.length, 2);
      } finally {
        await mirrors.close();
      }
    });

    test('a pipeline whose first poll failed still records before triggering', { timeout }, async () => {
      const repo = await makeRepository(root);
      const id = `p-${randomBytes(4).toString('hex')}`;
      let url = 'file:///nonexistent/repository';
      const calls: MirrorChange[] = [];
      const mirrors = poller(() => [{ pipelineId: id, url, branches: [], intervalMs: 60_000 }], async (_id, change) => void calls.push(change));
      try {
        await mirrors.pollNow(id);
        const state = await mirrors.state(id);
        assert.equal(state?.heads, null);
        assert.ok(state?.lastError);
        url = repo.url;
        await mirrors.pollNow(id);
        assert.equal(calls.length, 0);
        assert.deepEqual((await mirrors.state(id))?.heads, { main: repo.first });
        await mirrors.forget(id);
        assert.equal(await mirrors.state(id), null);
      } finally {
        await mirrors.close();
      }
    });

    test('the timer polls due pipelines by interval; polls of one pipeline never overlap; close waits', { timeout }, async () => {
      const repo = await makeRepository(root);
      const id = `p-${randomBytes(4).toString('hex')}`;
      let clock = 1_000_000;
      let active = 0;
      let maxActive = 0;
      let listed = 0;
      const calls: MirrorChange[] = [];
      let release: (() => void) | undefined;
      const mirrors = poller(
        () => {
          listed += 1;
          return [{ pipelineId: id, url: repo.url, branches: ['main'], intervalMs: 5_000, credentials: async () => {
            active += 1;
            maxActive = Math.max(maxActive, active);
            await new Promise((resolve) => setTimeout(resolve, 20));
            active -= 1;
            return undefined;
          } }];
        },
        async (_id, change) => {
          calls.push(change);
          await new Promise<void>((resolve) => (release = resolve));
        },
        { tickMs: 20, now: () => clock },
      );
      const waitFor = async (what: string, check: () => boolean | Promise<boolean>) => {
        const deadline = Date.now() + 20_000;
        while (!(await check())) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      };
      mirrors.start();
      try {
        await waitFor('the first poll', async () => ((await mirrors.state(id))?.heads ?? null) !== null);
        const firstPolledAt = (await mirrors.state(id))?.lastPolledAt;
        const second = await repo.commit({ 'b.txt': 'b\n' });
        const ticks = listed;
        await waitFor('more ticks', () => listed > ticks + 5);
        assert.equal((await mirrors.state(id))?.lastPolledAt, firstPolledAt, 'not due before the interval');
        assert.equal(calls.length, 0);

        clock += 5_000;
        await waitFor('the trigger', () => calls.length === 1);
        assert.equal(calls[0]!.after, second);
        // While onNewCommit hangs, more ticks and a pollNow do not start a second poll of it.
        clock += 60_000;
        const now = mirrors.pollNow(id);
        const ticks2 = listed;
        await waitFor('more ticks', () => listed > ticks2 + 3);
        assert.equal(calls.length, 1);
        assert.equal(maxActive, 1);
        const closing = mirrors.close();
        let closed = false;
        void closing.then(() => (closed = true));
        await new Promise((resolve) => setTimeout(resolve, 50));
        assert.equal(closed, false, 'close waits for the poll in flight');
        release!();
        await closing;
        await now;
        assert.equal(calls.length, 1, 'nothing new starts after close');
        assert.deepEqual((await mirrors.state(id))?.heads, { main: second }, 'the head is saved once the trigger resolved');
      } finally {
        release?.();
        await mirrors.close();
      }
    });
  });
}
