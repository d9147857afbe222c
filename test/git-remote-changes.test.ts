/**
 * Reading remotes without a checkout (git/remote-changes) against real local repositories
 * (`git init` + commits, `file://` URLs) and stub HTTP servers: ls-remote of the branch heads,
 * changed files between two commits through the bare cache (also after a force-push dropped the
 * old head), timeouts and cancel, masked errors with credentials only through askpass.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GitError } from '../src/git/errors.js';
import { changedFiles, lsRemoteHeads } from '../src/git/remote-changes.js';
import { killAllChildren } from './helpers/commands.js';
import { makeRepository } from './helpers/git-repository.js';

const timeout = 60_000;

after(() => killAllChildren());

let root: string;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'slipway-git-remote-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('git remote', () => {
  test('lsRemoteHeads lists the branches (not tags) of a file:// remote', { timeout }, async () => {
    const repo = await makeRepository(root);
    await repo.git('branch', 'feature/x');
    await repo.git('tag', 'v1');
    const heads = await lsRemoteHeads(repo.url);
    assert.deepEqual(Object.fromEntries(heads), { 'feature/x': repo.first, main: repo.first });
  });

  test('changedFiles: the diff of two commits through the bare cache; zeros and unknown before are null', { timeout }, async () => {
    const repo = await makeRepository(root);
    const cacheDir = path.join(root, `cache-${randomBytes(4).toString('hex')}`);
    const second = await repo.commit({ 'src/a.ts': 'a\n', 'README.md': '# app 2\n' });
    const third = await repo.commit({ 'src/index.ts': null, 'docs/x.md': 'x\n' });
    assert.deepEqual((await changedFiles(repo.url, repo.first, second, { cacheDir }))?.sort(), ['README.md', 'src/a.ts']);
    assert.deepEqual((await changedFiles(repo.url, repo.first, third, { cacheDir }))?.sort(), ['README.md', 'docs/x.md', 'src/a.ts', 'src/index.ts']);
    assert.deepEqual(await changedFiles(repo.url, third, third, { cacheDir }), []);
    assert.equal(await changedFiles(repo.url, '0'.repeat(40), third, { cacheDir }), null);
    assert.equal(await changedFiles(repo.url, '', third, { cacheDir }), null);
    assert.equal((await readdir(cacheDir)).length, 1, 'one cache repository per URL');

    // A force-push drops `third`: it can no longer be fetched (a fresh cache), so: unknown.
    await repo.git('reset', '--quiet', '--hard', second);
    const rewritten = await repo.commit({ 'other.txt': 'o\n' }, 'rewritten');
    await repo.git('reflog', 'expire', '--expire=now', '--all');
    await repo.git('gc', '--quiet', '--prune=now');
    const freshCache = path.join(root, `cache-${randomBytes(4).toString('hex')}`);
    assert.equal(await changedFiles(repo.url, third, rewritten, { cacheDir: freshCache }), null);
    // The first cache still holds `third` and can tell.
    assert.deepEqual((await changedFiles(repo.url, third, rewritten, { cacheDir }))?.sort(), ['docs/x.md', 'other.txt', 'src/index.ts']);
  });

  test('parallel diffs of one URL share the cache safely; bad input is refused', { timeout }, async () => {
    const repo = await makeRepository(root);
    const cacheDir = path.join(root, `cache-${randomBytes(4).toString('hex')}`);
    const commits = [repo.first];
    for (let i = 0; i < 4; i++) commits.push(await repo.commit({ [`f${i}.txt`]: `${i}\n` }));
    const results = await Promise.all(commits.slice(1).map((commit, index) => changedFiles(repo.url, commits[index]!, commit, { cacheDir })));
    assert.deepEqual(results, [['f0.txt'], ['f1.txt'], ['f2.txt'], ['f3.txt']]);
    await assert.rejects(changedFiles(repo.url, repo.first, 'main', { cacheDir }), (error: Error) => error instanceof GitError && error.reason === 'invalid-input');
    await assert.rejects(lsRemoteHeads('ext::sh -c touch% /tmp/pwned'), (error: Error) => error instanceof GitError && error.reason === 'invalid-input');
  });

  test('a remote that never answers: timeout and cancel end git', { timeout }, async () => {
    const server = http.createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/acme/app.git`;
      const started = Date.now();
      await assert.rejects(lsRemoteHeads(url, { timeoutMs: 500 }), (error: Error) => error instanceof GitError && error.reason === 'timeout');
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 300);
      await assert.rejects(lsRemoteHeads(url, { signal: controller.signal }), (error: Error) => error instanceof GitError && error.reason === 'aborted');
      assert.ok(Date.now() - started < 15_000);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('errors are masked: no password in the message, credentials only through askpass', { timeout }, async () => {
    const seen: string[] = [];
    const server = http.createServer((request, response) => {
      seen.push(String(request.headers.authorization ?? ''));
      response.writeHead(401, { 'WWW-Authenticate': 'Basic realm="test"' }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const password = 'hunter2-very-secret-token';
      await assert.rejects(lsRemoteHeads(`http://127.0.0.1:${port}/acme/app.git`, { credentials: { username: 'ada', password }, timeoutMs: 20_000 }), (error: Error) => {
        assert.doesNotMatch(error.message, /hunter2/);
        assert.match(error.message, /authentication/i);
        return true;
      });
      await assert.rejects(lsRemoteHeads(`http://ada:${password}@127.0.0.1:${port}/acme/app.git`, { timeoutMs: 20_000 }), (error: Error) => {
        assert.doesNotMatch(error.message, /hunter2/);
        return true;
      });
      assert.ok(seen.some((value) => value === `Basic ${Buffer.from(`ada:${password}`).toString('base64')}`), 'the credentials reached the server');
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
