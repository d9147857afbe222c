/**
 * Git clones (git/clone) of local repositories made here: default branch, branch, tag, full and
 * short commit, missing ones; credentials that reach the server through the askpass helper only,
 * never argv or the log; cancel and timeout. Each failure is a GitError and an empty destination.
 */
import assert from 'node:assert/strict';
import { access, chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cloneRepository } from '../src/git/clone.js';
import { GitError, type GitErrorReason } from '../src/git/errors.js';
import { maskSecrets } from '../src/git/remote.js';
import { killAllChildren, requireCommands, run } from './helpers/commands.js';
import { tempDir } from './helpers/harness.js';

const timeout = 60_000;

after(() => killAllChildren());

async function expectGitError(promise: Promise<unknown>, reason: GitErrorReason, pattern: RegExp): Promise<GitError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GitError, `expected a GitError, got ${String(error)}`);
    assert.equal(error.reason, reason, error.message);
    assert.match(error.message, pattern);
    return error;
  }
  assert.fail(`expected a GitError (${reason})`);
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

const gitIdentity = ['-c', 'user.name=Slipway Test', '-c', 'user.email=test@example.invalid', '-c', 'commit.gpgsign=false', '-c', 'tag.gpgsign=false'];

async function git(cwd: string, ...args: string[]): Promise<string> {
  return (await run('git', [...gitIdentity, ...args], { cwd })).stdout.trim();
}

interface Fixture {
  root: string;
  repo: string;
  /** main: c1 (a=1) → c2 (a=2); feature: c1 → c3 (b=1); tag v1 (annotated) on c1. */
  c1: string;
  c2: string;
  c3: string;
}

describe('cloneRepository', () => {
  let fixture: Fixture;
  let removeRoot: () => Promise<void>;
  let dests = 0;
  const nextDest = () => path.join(fixture.root, 'clones', `clone-${++dests}`);

  before(async () => {
    await requireCommands({ git: 'git' });
    const dir = await tempDir('slipway-clone-test-');
    removeRoot = dir.remove;
    const repo = path.join(dir.path, 'origin repo');
    await mkdir(repo);
    await git(repo, 'init', '--quiet', '--initial-branch=main');
    await writeFile(path.join(repo, 'a.txt'), '1\n');
    await git(repo, 'add', 'a.txt');
    await git(repo, 'commit', '--quiet', '-m', 'c1');
    const c1 = await git(repo, 'rev-parse', 'HEAD');
    await git(repo, 'tag', '-a', 'v1', '-m', 'version 1');
    await git(repo, 'checkout', '--quiet', '-b', 'feature');
    await writeFile(path.join(repo, 'b.txt'), '1\n');
    await git(repo, 'add', 'b.txt');
    await git(repo, 'commit', '--quiet', '-m', 'c3');
    const c3 = await git(repo, 'rev-parse', 'HEAD');
    await git(repo, 'checkout', '--quiet', 'main');
    await writeFile(path.join(repo, 'a.txt'), '2\n');
    await git(repo, 'commit', '--quiet', '-am', 'c2');
    const c2 = await git(repo, 'rev-parse', 'HEAD');
    fixture = { root: dir.path, repo, c1, c2, c3 };
  });

  after(async () => {
    await removeRoot?.();
  });

  test('clones the default branch from a plain path', { timeout }, async () => {
    const dest = nextDest();
    const lines: string[] = [];
    const result = await cloneRepository({ url: fixture.repo, destDir: dest }, (line) => lines.push(line));
    assert.deepEqual(result, { commit: fixture.c2, ref: 'main' });
    assert.equal(await readFile(path.join(dest, 'a.txt'), 'utf8'), '2\n');
    assert.equal(await exists(path.join(dest, 'b.txt')), false);
    assert.ok(lines.some((line) => line.startsWith('$ git clone')), lines.join('\n'));
    // Shallow by default.
    assert.equal(await git(dest, 'rev-list', '--count', 'HEAD'), '1');
  });

  test('clones a branch from a file:// URL, and the full history with depth 0', { timeout }, async () => {
    const dest = nextDest();
    const result = await cloneRepository({ url: `file://${fixture.repo}`, ref: 'feature', destDir: dest }, () => undefined);
    assert.deepEqual(result, { commit: fixture.c3, ref: 'feature' });
    assert.equal(await readFile(path.join(dest, 'b.txt'), 'utf8'), '1\n');
    assert.equal(await readFile(path.join(dest, 'a.txt'), 'utf8'), '1\n');

    const full = nextDest();
    await cloneRepository({ url: `file://${fixture.repo}`, ref: 'refs/heads/main', destDir: full, depth: 0 }, () => undefined);
    assert.equal(await git(full, 'rev-list', '--count', 'HEAD'), '2');
  });

  test('clones a tag, resolving an annotated tag to its commit', { timeout }, async () => {
    const dest = nextDest();
    const result = await cloneRepository({ url: fixture.repo, ref: 'v1', destDir: dest }, () => undefined);
    assert.deepEqual(result, { commit: fixture.c1, ref: 'v1' });
    assert.equal(await readFile(path.join(dest, 'a.txt'), 'utf8'), '1\n');
  });

  test('checks out a full commit SHA and a short one (from another branch)', { timeout }, async () => {
    const dest = nextDest();
    const full = await cloneRepository({ url: `file://${fixture.repo}`, commit: fixture.c1, destDir: dest }, () => undefined);
    assert.deepEqual(full, { commit: fixture.c1, ref: fixture.c1 });
    assert.equal(await readFile(path.join(dest, 'a.txt'), 'utf8'), '1\n');
    assert.equal(await exists(path.join(dest, 'b.txt')), false);

    const shortDest = nextDest();
    const short = await cloneRepository({ url: fixture.repo, commit: fixture.c3.slice(0, 8), ref: 'feature', destDir: shortDest }, () => undefined);
    assert.deepEqual(short, { commit: fixture.c3, ref: 'feature' });
    assert.equal(await readFile(path.join(shortDest, 'b.txt'), 'utf8'), '1\n');
  });

  test('a missing branch, tag, commit or repository is a GitError naming it, leaving the destination empty', { timeout }, async () => {
    const cases: Array<{ options: { url: string; ref?: string; commit?: string }; reason: GitErrorReason; pattern: RegExp }> = [
      { options: { url: fixture.repo, ref: 'no-such-branch' }, reason: 'ref-not-found', pattern: /branch or tag "no-such-branch" not found/ },
      { options: { url: `file://${fixture.repo}`, ref: 'v9.9.9' }, reason: 'ref-not-found', pattern: /branch or tag "v9\.9\.9" not found/ },
      { options: { url: fixture.repo, commit: 'ab'.repeat(20) }, reason: 'commit-not-found', pattern: new RegExp(`commit ${'ab'.repeat(20)} not found`) },
      { options: { url: fixture.repo, commit: 'deadbee' }, reason: 'commit-not-found', pattern: /commit deadbee not found/ },
      { options: { url: path.join(fixture.root, 'no-such-repo') }, reason: 'repository-not-found', pattern: /repository .*no-such-repo not found/ },
      { options: { url: `file://${path.join(fixture.root, 'no-such-repo')}`, commit: fixture.c1 }, reason: 'repository-not-found', pattern: /no-such-repo not found/ },
    ];
    for (const { options, reason, pattern } of cases) {
      const dest = nextDest();
      await expectGitError(cloneRepository({ ...options, destDir: dest }, () => undefined), reason, pattern);
      assert.deepEqual(await readdir(dest), [], JSON.stringify(options));
    }
  });

  test('refuses unsafe input before running git', { timeout }, async () => {
    const dest = nextDest();
    await expectGitError(cloneRepository({ url: '--upload-pack=touch /tmp/x', destDir: dest }, () => undefined), 'invalid-input', /must not start with "-"/);
    await expectGitError(cloneRepository({ url: 'ext::sh -c touch% /tmp/x', destDir: dest }, () => undefined), 'invalid-input', /ext:: URLs is not allowed/);
    await expectGitError(cloneRepository({ url: fixture.repo, ref: '--orphan', destDir: dest }, () => undefined), 'invalid-input', /not a valid branch or tag/);
    await expectGitError(cloneRepository({ url: fixture.repo, commit: 'HEAD~1', destDir: dest }, () => undefined), 'invalid-input', /not a commit SHA/);
    assert.equal(await exists(dest), false, 'nothing is created for refused input');
    await mkdir(dest, { recursive: true });
    await writeFile(path.join(dest, 'existing'), 'x');
    await expectGitError(cloneRepository({ url: fixture.repo, destDir: dest }, () => undefined), 'invalid-input', /not empty/);
  });

  describe('credentials', () => {
    const password = 'pa55-w0rd:with/odd@chars';
    let wrapperDir: string;
    let recordFile: string;
    let savedPath: string | undefined;

    before(async () => {
      // A `git` first on PATH that records its argv and GIT_ASKPASS, then runs the real git.
      wrapperDir = path.join(fixture.root, 'wrapper');
      recordFile = path.join(wrapperDir, 'record.txt');
      await mkdir(wrapperDir);
      const realGit = (await run('sh', ['-c', 'command -v git'])).stdout.trim();
      await writeFile(
        path.join(wrapperDir, 'git'),
        `#!/bin/sh\nprintf 'argv:%s\\n' "$*" >> '${recordFile}'\nprintf 'askpass:%s\\n' "$GIT_ASKPASS" >> '${recordFile}'\nexec '${realGit}' "$@"\n`,
      );
      await chmod(path.join(wrapperDir, 'git'), 0o755);
      savedPath = process.env.PATH;
      process.env.PATH = `${wrapperDir}${path.delimiter}${savedPath ?? ''}`;
    });

    after(() => {
      process.env.PATH = savedPath;
    });

    /** An HTTP server asking for Basic auth; it records what it was sent and answers 404 once authorised. */
    async function authServer(): Promise<{ url: string; authorizations: string[]; close(): Promise<void> }> {
      const authorizations: string[] = [];
      const server = http.createServer((request, response) => {
        const authorization = request.headers.authorization;
        if (!authorization) {
          response.writeHead(401, { 'WWW-Authenticate': 'Basic realm="slipway-test"' }).end();
          return;
        }
        authorizations.push(authorization);
        const [user, pass] = Buffer.from(authorization.replace(/^Basic /, ''), 'base64').toString('utf8').split(/:(.*)/s);
        if (user === 'builder' && pass === password) response.writeHead(404).end('not found');
        else response.writeHead(401, { 'WWW-Authenticate': 'Basic realm="slipway-test"' }).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as AddressInfo).port;
      return {
        url: `http://127.0.0.1:${port}`,
        authorizations,
        close: () => new Promise((resolve) => server.close(() => resolve())),
      };
    }

    async function recorded(): Promise<string> {
      try {
        return await readFile(recordFile, 'utf8');
      } catch {
        return '';
      }
    }

    test('credentials reach the server through the askpass helper only; never argv, the log or the error', { timeout }, async () => {
      const server = await authServer();
      try {
        await writeFile(recordFile, '');
        const lines: string[] = [];
        const dest = nextDest();
        const error = await expectGitError(
          cloneRepository({ url: `${server.url}/team/app.git`, destDir: dest, credentials: { username: 'builder', password } }, (line) => lines.push(line)),
          'repository-not-found',
          /app\.git.* not found/,
        );
        // The server got exactly these credentials, so the helper answered git.
        assert.ok(server.authorizations.includes(`Basic ${Buffer.from(`builder:${password}`).toString('base64')}`), server.authorizations.join(', '));
        const record = await recorded();
        assert.match(record, /argv:.*clone/);
        for (const text of [record, lines.join('\n'), error.message]) {
          assert.ok(!text.includes(password), text);
          assert.ok(!text.includes(encodeURIComponent(password)), text);
        }
        // The helper and its folder are gone.
        const helpers = [...record.matchAll(/^askpass:(.+)$/gm)].map((match) => match[1]!);
        assert.ok(helpers.length > 0, record);
        for (const helper of helpers) {
          assert.equal(await exists(helper), false, helper);
          assert.equal(await exists(path.dirname(helper)), false, helper);
        }
        assert.deepEqual(await readdir(dest), []);
      } finally {
        await server.close();
      }
    });

    test('wrong credentials are an auth failure; a password in the URL is moved out of it', { timeout }, async () => {
      const server = await authServer();
      try {
        await writeFile(recordFile, '');
        const lines: string[] = [];
        await expectGitError(
          cloneRepository({ url: `${server.url}/team/app.git`, destDir: nextDest(), credentials: { username: 'builder', password: 'wrong-secret' } }, (line) => lines.push(line)),
          'auth-failed',
          /authentication to .* failed/,
        );
        assert.ok(!lines.join('\n').includes('wrong-secret'));

        // user:password@ in the URL: git gets the URL without them and the password via the helper.
        const inUrl = `${server.url.replace('http://', `http://builder:${encodeURIComponent(password)}@`)}/team/app.git`;
        const error = await expectGitError(cloneRepository({ url: inUrl, destDir: nextDest() }, (line) => lines.push(line)), 'repository-not-found', /not found/);
        assert.ok(server.authorizations.includes(`Basic ${Buffer.from(`builder:${password}`).toString('base64')}`));
        const record = await recorded();
        for (const text of [record, lines.join('\n'), error.message]) {
          assert.ok(!text.includes(password), text);
          assert.ok(!text.includes(encodeURIComponent(password)), text);
        }
      } finally {
        await server.close();
      }
    });

    test('a fake https://user@127.0.0.1:1 remote fails fast without showing the password', { timeout }, async () => {
      await writeFile(recordFile, '');
      const lines: string[] = [];
      const started = Date.now();
      const error = await expectGitError(
        cloneRepository({ url: 'https://builder@127.0.0.1:1/team/app.git', destDir: nextDest(), credentials: { username: 'builder', password }, timeoutMs: 30_000 }, (line) => lines.push(line)),
        'git-failed',
        /127\.0\.0\.1/,
      );
      assert.ok(Date.now() - started < 30_000);
      for (const text of [await recorded(), lines.join('\n'), error.message]) assert.ok(!text.includes(password), text);
    });
  });

  test('masks secrets in any text', { timeout }, () => {
    assert.equal(maskSecrets('fatal: https://bob:hunter2@example.com/x and hunter2', ['hunter2']), 'fatal: https://bob:***@example.com/x and ***');
    assert.equal(maskSecrets('remote https://alice:t0k3n@host/repo', []), 'remote https://alice:***@host/repo');
    assert.equal(maskSecrets('abc and abcdef', ['abc', 'abcdef']), '*** and ***');
  });

  test('cancelling or running out of time kills git', { timeout }, async () => {
    // A server that accepts the connection and never answers.
    const sockets = new Set<import('node:net').Socket>();
    const server = http.createServer(() => undefined);
    server.on('connection', (socket) => sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/stuck.git`;
    try {
      const controller = new AbortController();
      const started = Date.now();
      setTimeout(() => controller.abort(), 300);
      const dest = nextDest();
      await expectGitError(cloneRepository({ url, destDir: dest, signal: controller.signal }, () => undefined), 'aborted', /cancelled/);
      assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
      assert.deepEqual(await readdir(dest), []);

      const timed = Date.now();
      await expectGitError(cloneRepository({ url, destDir: nextDest(), timeoutMs: 500 }, () => undefined), 'timeout', /longer than 500 ms/);
      assert.ok(Date.now() - timed < 15_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
