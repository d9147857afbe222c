/**
 * Build contexts: tarball extraction (tar and tar.gz from the `tar` CLI; hand-made archives with
 * traversal, absolute paths, escaping symlinks and hard links, device files, oversize content —
 * each refused with a ContextError and an empty destination). Git contexts: test/git-clone.test.ts.
 */
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { access, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Header } from 'tar';
import { ContextError, extractTarball, type ContextErrorReason } from '../src/builds/context-tarball.js';
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
