/**
 * Build contexts: tarball extraction (tar and tar.gz from the `tar` CLI; hand-made archives with
 * traversal, absolute paths, escaping symlinks and hard links, device files, oversize content —
 * each refused with a ContextError and an empty destination) and git clones of local repositories
 * made here (default branch, branch, tag, full and short commit, missing ones; credentials that
 * reach the server through the askpass helper only, never argv or the log; cancel and timeout).
 */
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { access, chmod, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { cloneRepository, ContextError, extractTarball, maskSecrets, type ContextErrorReason } from '../src/builds/context.js';
import { killAllChildren, requireCommands, run } from './helpers/commands.js';
import { tempDir } from './helpers/harness.js';

const timeout = 60_000;

after(() => killAllChildren());

interface TarEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'FIFO';
  body?: string | Buffer;
  /** Declared size when there is no body (for oversize headers). */
  size?: number;
  linkpath?: string;
  mode?: number;
}

/** A tar archive written block by block, so that tests can make archives no tar tool would. */
function tarOf(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const body = entry.body === undefined ? Buffer.alloc(0) : Buffer.from(entry.body);
    const type = entry.type ?? 'File';
    const header = new Header({
      path: entry.path,
      type,
      size: type === 'File' ? (entry.size ?? body.length) : 0,
      mode: entry.mode ?? (type === 'Directory' ? 0o755 : 0o644),
      linkpath: entry.linkpath,
      mtime: new Date('2024-01-01T00:00:00Z'),
      uid: 1000,
      gid: 1000,
    });
    header.encode();
    blocks.push(header.block!);
    if (body.length > 0) {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

async function expectContextError(promise: Promise<unknown>, reason: ContextErrorReason, pattern: RegExp): Promise<ContextError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ContextError, `expected a ContextError, got ${String(error)}`);
    assert.equal(error.reason, reason, error.message);
    assert.match(error.message, pattern);
    return error;
  }
  assert.fail(`expected a ContextError (${reason})`);
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** A temp folder with an (empty) `dest` inside it, removed after `fn`. */
async function withDest(fn: (dest: string, root: string) => Promise<void>): Promise<void> {
  const dir = await tempDir('slipway-context-test-');
  try {
    const dest = path.join(dir.path, 'work', 'dest');
    await mkdir(dest, { recursive: true });
    await fn(dest, dir.path);
  } finally {
    await dir.remove();
  }
}

describe('extractTarball', () => {
  before(() => requireCommands({ tar: 'tar', git: 'git' }));

  test('extracts a tar and a tar.gz made by the tar CLI, keeping inside symlinks', { timeout }, async () => {
    const dir = await tempDir('slipway-context-test-');
    try {
      const src = path.join(dir.path, 'src');
      await mkdir(path.join(src, 'app', 'lib'), { recursive: true });
      await writeFile(path.join(src, 'Dockerfile'), 'FROM scratch\nCOPY app /app\n');
      await writeFile(path.join(src, 'app', 'main.js'), 'console.log("hi")\n');
      await writeFile(path.join(src, 'app', 'lib', 'util.js'), 'export {}\n');
      await writeFile(path.join(src, 'app', 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
      await run('ln', ['-s', 'lib/util.js', path.join(src, 'app', 'util-link.js')]);
      await run('ln', ['-s', '..', path.join(src, 'app', 'lib', 'up')]);
      await run('tar', ['-cf', path.join(dir.path, 'ctx.tar'), '-C', src, '.']);
      await run('tar', ['-czf', path.join(dir.path, 'ctx.tar.gz'), '-C', src, '.']);
      const expectedBytes = 'FROM scratch\nCOPY app /app\n'.length + 'console.log("hi")\n'.length + 'export {}\n'.length + '#!/bin/sh\n'.length;

      for (const archive of ['ctx.tar', 'ctx.tar.gz']) {
        const dest = path.join(dir.path, `out-${archive}`);
        const result = await extractTarball(createReadStream(path.join(dir.path, archive)), dest, { maxBytes: 1024 * 1024 });
        assert.deepEqual(result, { files: 6, bytes: expectedBytes }, archive);
        assert.equal(await readFile(path.join(dest, 'Dockerfile'), 'utf8'), 'FROM scratch\nCOPY app /app\n');
        assert.equal(await readFile(path.join(dest, 'app', 'util-link.js'), 'utf8'), 'export {}\n');
        assert.equal(await readlink(path.join(dest, 'app', 'lib', 'up')), '..');
        assert.equal(await readFile(path.join(dest, 'app', 'lib', 'up', 'main.js'), 'utf8'), 'console.log("hi")\n');
      }
    } finally {
      await dir.remove();
    }
  });

  test('accepts hand-made archives with inside links and a gzip stream in small chunks', { timeout }, async () => {
    await withDest(async (dest) => {
      const archive = tarOf([
        { path: 'a/', type: 'Directory' },
        { path: 'a/b/', type: 'Directory' },
        { path: 'a/b/file.txt', body: 'hello' },
        { path: 'a/b/root', type: 'SymbolicLink', linkpath: '../..' },
        { path: 'a/hard.txt', type: 'Link', linkpath: 'a/b/file.txt' },
        { path: './top.txt', body: 'top' },
      ]);
      const gz = gzipSync(archive);
      const chunks = Array.from({ length: Math.ceil(gz.length / 7) }, (_, i) => gz.subarray(i * 7, i * 7 + 7));
      const result = await extractTarball(Readable.from(chunks), dest, { maxBytes: 100 });
      assert.deepEqual(result, { files: 4, bytes: 8 });
      assert.equal(await readFile(path.join(dest, 'a', 'hard.txt'), 'utf8'), 'hello');
      assert.equal(await readFile(path.join(dest, 'a', 'b', 'root', 'top.txt'), 'utf8'), 'top');
    });
  });

  const refused: Array<{ name: string; entries: TarEntry[]; reason: ContextErrorReason; pattern: RegExp; outside?: string }> = [
    { name: 'a ../ traversal', entries: [{ path: 'ok.txt', body: 'fine' }, { path: '../escaped.txt', body: 'evil' }], reason: 'unsafe-entry', pattern: /"\.\.\/escaped\.txt" contains '\.\.'/, outside: 'escaped.txt' },
    { name: 'a nested traversal', entries: [{ path: 'a/../../escaped.txt', body: 'evil' }], reason: 'unsafe-entry', pattern: /contains '\.\.'/, outside: 'escaped.txt' },
    { name: 'an absolute path', entries: [{ path: '/tmp/slipway-absolute-escape.txt', body: 'evil' }], reason: 'unsafe-entry', pattern: /is an absolute path/ },
    { name: 'a symlink to ..', entries: [{ path: 'up', type: 'SymbolicLink', linkpath: '..' }], reason: 'unsafe-entry', pattern: /symbolic link "up" -> "\.\." points outside/ },
    { name: 'a symlink to an absolute path', entries: [{ path: 'etc', type: 'SymbolicLink', linkpath: '/etc' }], reason: 'unsafe-entry', pattern: /symbolic link "etc" -> "\/etc" points outside/ },
    {
      name: 'a symlink escaping through another symlink',
      entries: [
        { path: 'a/b/', type: 'Directory' },
        { path: 'a/b/root', type: 'SymbolicLink', linkpath: '../..' },
        { path: 'sneaky', type: 'SymbolicLink', linkpath: 'a/b/root/..' },
      ],
      reason: 'unsafe-entry',
      pattern: /symbolic link "sneaky" .* points outside/,
    },
    {
      name: 'a file written through a symlink',
      entries: [
        { path: 'sub/', type: 'Directory' },
        { path: 'link', type: 'SymbolicLink', linkpath: 'sub' },
        { path: 'link/file.txt', body: 'x' },
      ],
      reason: 'unsafe-entry',
      pattern: /"link\/file\.txt" is inside the symbolic link "link"/,
    },
    { name: 'a hard link to outside', entries: [{ path: 'passwd', type: 'Link', linkpath: '../../../../etc/passwd' }], reason: 'unsafe-entry', pattern: /hard link "passwd" .* points outside/ },
    { name: 'a hard link to an absolute path', entries: [{ path: 'passwd', type: 'Link', linkpath: '/etc/passwd' }], reason: 'unsafe-entry', pattern: /hard link "passwd" .* points outside/ },
    { name: 'a hard link to a file the archive does not have', entries: [{ path: 'ok.txt', body: 'fine' }, { path: 'h', type: 'Link', linkpath: 'missing.txt' }], reason: 'invalid-archive', pattern: /not a valid tar archive/ },
    { name: 'a device file', entries: [{ path: 'ok.txt', body: 'fine' }, { path: 'null', type: 'CharacterDevice' }], reason: 'unsafe-entry', pattern: /"null" is a device file/ },
    { name: 'a FIFO', entries: [{ path: 'pipe', type: 'FIFO' }], reason: 'unsafe-entry', pattern: /"pipe" is a FIFO/ },
    {
      name: 'content over maxBytes',
      entries: [
        { path: 'a.bin', body: Buffer.alloc(600, 1) },
        { path: 'b.bin', body: Buffer.alloc(600, 2) },
      ],
      reason: 'too-large',
      pattern: /more than the allowed 1000 bytes/,
    },
  ];

  for (const { name, entries, reason, pattern, outside } of refused) {
    for (const gzip of [false, true]) {
      test(`refuses ${name}${gzip ? ' (tar.gz)' : ''}, leaving the destination empty`, { timeout }, async () => {
        await withDest(async (dest) => {
          const archive = tarOf(entries);
          await expectContextError(extractTarball(Readable.from([gzip ? gzipSync(archive) : archive]), dest, { maxBytes: 1000 }), reason, pattern);
          assert.deepEqual(await readdir(dest), []);
          if (outside) {
            assert.equal(await exists(path.join(dest, '..', outside)), false);
            assert.equal(await exists(path.join(dest, '..', '..', outside)), false);
          }
          assert.equal(await exists('/tmp/slipway-absolute-escape.txt'), false);
        });
      });
    }
  }

  test('refuses a header whose declared size is over the limit before reading the body', { timeout }, async () => {
    await withDest(async (dest) => {
      // 10 GB declared, only the header sent: refused from the header alone.
      const header = new Header({ path: 'huge.bin', type: 'File', size: 10 * 1024 ** 3, mode: 0o644, mtime: new Date() });
      header.encode();
      await expectContextError(extractTarball(Readable.from([header.block!]), dest, { maxBytes: 1024 * 1024 }), 'too-large', /more than the allowed/);
      assert.deepEqual(await readdir(dest), []);
    });
  });

  test('refuses too many entries', { timeout }, async () => {
    await withDest(async (dest) => {
      const entries = Array.from({ length: 20 }, (_, i) => ({ path: `f${i}.txt`, body: 'x' }));
      await expectContextError(extractTarball(Readable.from([tarOf(entries)]), dest, { maxBytes: 1000, maxEntries: 10 }), 'too-large', /more than 10 entries/);
      assert.deepEqual(await readdir(dest), []);
    });
  });

  test('refuses what is not a tar or tar.gz archive', { timeout }, async () => {
    await withDest(async (dest) => {
      await expectContextError(extractTarball(Readable.from([Buffer.from('just some text, not an archive\n'.repeat(40))]), dest, { maxBytes: 1e6 }), 'invalid-archive', /not a valid tar archive/);
      await expectContextError(extractTarball(Readable.from([Buffer.from('BZh91AY&SY' + 'x'.repeat(600))]), dest, { maxBytes: 1e6 }), 'invalid-archive', /bzip2/);
      await expectContextError(extractTarball(Readable.from([Buffer.from([0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9])]), dest, { maxBytes: 1e6 }), 'invalid-archive', /gzip/);
      await expectContextError(extractTarball(Readable.from([gzipSync(gzipSync(tarOf([{ path: 'a.txt', body: 'a' }])))]), dest, { maxBytes: 1e6 }), 'invalid-archive', /compressed twice/);
      const truncated = gzipSync(tarOf([{ path: 'a.txt', body: 'x'.repeat(5000) }])).subarray(0, 60);
      await expectContextError(extractTarball(Readable.from([truncated]), dest, { maxBytes: 1e6 }), 'invalid-archive', /gzip|tar/);
      assert.deepEqual(await readdir(dest), []);
    });
  });

  test('refuses a destination that is not empty, and creates a missing one', { timeout }, async () => {
    await withDest(async (dest, root) => {
      await writeFile(path.join(dest, 'existing.txt'), 'keep');
      await expectContextError(extractTarball(Readable.from([tarOf([{ path: 'a.txt', body: 'a' }])]), dest, { maxBytes: 100 }), 'invalid-input', /not empty/);
      const fresh = path.join(root, 'fresh', 'nested');
      assert.deepEqual(await extractTarball(Readable.from([tarOf([{ path: 'a.txt', body: 'a' }])]), fresh, { maxBytes: 100 }), { files: 1, bytes: 1 });
    });
  });
});

// ---------------------------------------------------------------------------------------------

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

  test('a missing branch, tag, commit or repository is a ContextError naming it, leaving the destination empty', { timeout }, async () => {
    const cases: Array<{ options: { url: string; ref?: string; commit?: string }; reason: ContextErrorReason; pattern: RegExp }> = [
      { options: { url: fixture.repo, ref: 'no-such-branch' }, reason: 'ref-not-found', pattern: /branch or tag "no-such-branch" not found/ },
      { options: { url: `file://${fixture.repo}`, ref: 'v9.9.9' }, reason: 'ref-not-found', pattern: /branch or tag "v9\.9\.9" not found/ },
      { options: { url: fixture.repo, commit: 'ab'.repeat(20) }, reason: 'commit-not-found', pattern: new RegExp(`commit ${'ab'.repeat(20)} not found`) },
      { options: { url: fixture.repo, commit: 'deadbee' }, reason: 'commit-not-found', pattern: /commit deadbee not found/ },
      { options: { url: path.join(fixture.root, 'no-such-repo') }, reason: 'repository-not-found', pattern: /repository .*no-such-repo not found/ },
      { options: { url: `file://${path.join(fixture.root, 'no-such-repo')}`, commit: fixture.c1 }, reason: 'repository-not-found', pattern: /no-such-repo not found/ },
    ];
    for (const { options, reason, pattern } of cases) {
      const dest = nextDest();
      await expectContextError(cloneRepository({ ...options, destDir: dest }, () => undefined), reason, pattern);
      assert.deepEqual(await readdir(dest), [], JSON.stringify(options));
    }
  });

  test('refuses unsafe input before running git', { timeout }, async () => {
    const dest = nextDest();
    await expectContextError(cloneRepository({ url: '--upload-pack=touch /tmp/x', destDir: dest }, () => undefined), 'invalid-input', /must not start with "-"/);
    await expectContextError(cloneRepository({ url: 'ext::sh -c touch% /tmp/x', destDir: dest }, () => undefined), 'invalid-input', /ext:: URLs is not allowed/);
    await expectContextError(cloneRepository({ url: fixture.repo, ref: '--orphan', destDir: dest }, () => undefined), 'invalid-input', /not a valid branch or tag/);
    await expectContextError(cloneRepository({ url: fixture.repo, commit: 'HEAD~1', destDir: dest }, () => undefined), 'invalid-input', /not a commit SHA/);
    assert.equal(await exists(dest), false, 'nothing is created for refused input');
    await mkdir(dest, { recursive: true });
    await writeFile(path.join(dest, 'existing'), 'x');
    await expectContextError(cloneRepository({ url: fixture.repo, destDir: dest }, () => undefined), 'invalid-input', /not empty/);
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
        const error = await expectContextError(
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
        await expectContextError(
          cloneRepository({ url: `${server.url}/team/app.git`, destDir: nextDest(), credentials: { username: 'builder', password: 'wrong-secret' } }, (line) => lines.push(line)),
          'auth-failed',
          /authentication to .* failed/,
        );
        assert.ok(!lines.join('\n').includes('wrong-secret'));

        // user:password@ in the URL: git gets the URL without them and the password via the helper.
        const inUrl = `${server.url.replace('http://', `http://builder:${encodeURIComponent(password)}@`)}/team/app.git`;
        const error = await expectContextError(cloneRepository({ url: inUrl, destDir: nextDest() }, (line) => lines.push(line)), 'repository-not-found', /not found/);
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
      const error = await expectContextError(
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
      await expectContextError(cloneRepository({ url, destDir: dest, signal: controller.signal }, () => undefined), 'aborted', /cancelled/);
      assert.ok(Date.now() - started < 15_000, `took ${Date.now() - started} ms`);
      assert.deepEqual(await readdir(dest), []);

      const timed = Date.now();
      await expectContextError(cloneRepository({ url, destDir: nextDest(), timeoutMs: 500 }, () => undefined), 'timeout', /longer than 500 ms/);
      assert.ok(Date.now() - timed < 15_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
