/**
 * @module builds/context-tarball
 * A build's context folder from an uploaded tarball (a git context is cloned by git/clone).
 *
 * Tarballs (tar or tar.gz, gzip recognised by its magic bytes) are taken in two passes: the
 * upload is spooled to a private temp file while every header is checked (paths that are
 * absolute or contain `..`, symbolic and hard links whose target leaves the folder — also
 * through other links of the same archive —, device files and FIFOs, the total unpacked size and
 * entry count); only an archive that passed is then extracted (node-tar, strict), and the
 * extracted tree is checked once more on disk (every symlink resolves inside, no hard link to a
 * file outside). Any failure empties the destination folder: nothing is left half-extracted.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, open, readdir, readlink, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, Unpack, type ReadEntry } from 'tar';
import { emptyDir, ensureEmptyDir } from '../exec/work-folders.js';

export type ContextErrorReason =
  /** An archive entry would escape the folder, or is a device file / FIFO. */
  | 'unsafe-entry'
  /** The archive unpacks to more bytes or entries than allowed. */
  | 'too-large'
  /** Not a (supported) tar archive, or a damaged one. */
  | 'invalid-archive'
  /** Bad arguments: a non-empty destination. */
  | 'invalid-input';

/** A bad upload: answered BAD_REQUEST. */
export class ContextError extends SlipwayError {
  override readonly name = 'ContextError';
  constructor(message: string, readonly reason: ContextErrorReason) {
    super('BAD_REQUEST', message);
  }
}

export interface ExtractOptions {
  /** Upper bound of the summed size of all files in the archive. */
  maxBytes: number;
  /** Upper bound of the number of entries (files, folders, links). Default 500,000. */
  maxEntries?: number;
}

export interface ExtractResult {
  /** Entries other than folders: regular files, symbolic and hard links. */
  files: number;
  /** Summed size of the regular files. */
  bytes: number;
}

const defaultMaxEntries = 500_000;
/** Symbolic links followed while resolving one path, like the kernel's ELOOP limit. */
const maxLinkHops = 40;

/**
 * Extracts a tar or tar.gz stream into `destDir` (created when missing; it must be empty).
 * Throws a ContextError for an unsafe, damaged or oversize archive; the folder is then empty.
 */
export async function extractTarball(source: Readable, destDir: string, options: ExtractOptions): Promise<ExtractResult> {
  if (!Number.isFinite(options.maxBytes) || options.maxBytes < 0) throw new TypeError('maxBytes must be a non-negative number');
  const limits = { maxBytes: options.maxBytes, maxEntries: options.maxEntries ?? defaultMaxEntries };
  await prepareEmptyDir(destDir);
  const spoolDir = await mkdtemp(path.join(tmpdir(), 'slipway-context-'));
  const spoolPath = path.join(spoolDir, 'upload');
  try {
    const scan = await scanArchive(source, spoolPath, limits);
    await unpackArchive(spoolPath, destDir);
    await verifyTree(destDir);
    return { files: scan.files, bytes: scan.bytes };
  } catch (error) {
    await emptyDir(destDir);
    throw toContextError(error);
  } finally {
    await rm(spoolDir, { recursive: true, force: true });
  }
}

/** Creates `dir` when missing; refuses one that already has content (it is emptied on failure). */
async function prepareEmptyDir(dir: string): Promise<void> {
  if (!(await ensureEmptyDir(dir))) throw new ContextError(`the destination folder ${dir} is not empty`, 'invalid-input');
}

function toContextError(error: unknown): unknown {
  if (error instanceof ContextError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return new ContextError(`the upload is not a valid gzip stream: ${(error as Error).message}`, 'invalid-archive');
  }
  const tarCode = (error as { tarCode?: unknown } | undefined)?.tarCode;
  if ((typeof code === 'string' && code.startsWith('TAR_')) || typeof tarCode === 'string') {
    return new ContextError(`the upload is not a valid tar archive: ${(error as Error).message.replace(/^TAR_[A-Z_]+: /, '')}`, 'invalid-archive');
  }
  return error;
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError('the archive stream must yield bytes');
}

function startsWith(head: Buffer, bytes: number[]): boolean {
  return head.length >= bytes.length && bytes.every((byte, index) => head[index] === byte);
}

const gzipMagic = [0x1f, 0x8b];
const otherFormats: Array<[number[], string]> = [
  [[0x42, 0x5a, 0x68], 'bzip2'],
  [[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz'],
  [[0x28, 0xb5, 0x2f, 0xfd], 'zstd'],
  [[0x50, 0x4b, 0x03, 0x04], 'zip'],
];

/**
 * The tar bytes of an upload: gunzipped when it starts with the gzip magic bytes, refused when it
 * is another compression format (only tar and tar.gz are accepted).
 */
async function* tarBytes(raw: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const iterator = raw[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let exhausted = false;
  while (head.length < 8) {
    const next = await iterator.next();
    if (next.done) {
      exhausted = true;
      break;
    }
    head = Buffer.concat([head, next.value]);
  }
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      while (!exhausted) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      if (!exhausted) await iterator.return?.();
    }
  }
  for (const [magic, format] of otherFormats) {
    if (startsWith(head, magic)) {
      await iterator.return?.();
      throw new ContextError(`the upload is compressed with ${format}; send a tar or tar.gz archive`, 'invalid-archive');
    }
  }
  if (!startsWith(head, gzipMagic)) {
    yield* all();
    return;
  }
  const input = Readable.from(all());
  const gunzip = createGunzip();
  const piping = pipeline(input, gunzip);
  piping.catch(() => undefined); // errors surface while reading `gunzip`
  try {
    let first = true;
    for await (const chunk of gunzip) {
      const buffer = toBuffer(chunk);
      if (first && buffer.length > 0) {
        first = false;
        if (startsWith(buffer, gzipMagic) || startsWith(buffer, [0x28, 0xb5, 0x2f, 0xfd])) {
          throw new ContextError('the upload is compressed twice; send a tar or tar.gz archive', 'invalid-archive');
        }
      }
      yield buffer;
    }
  } finally {
    if (!gunzip.destroyed) gunzip.destroy();
    if (!input.destroyed) input.destroy();
  }
}

/** An entry path as archive-relative parts, or the reason it is refused. */
function entryParts(raw: string): string[] | string {
  if (raw.includes('\0')) return 'contains a NUL byte';
  if (/^([\\/]|[A-Za-z]:)/.test(raw)) return 'is an absolute path';
  const parts = raw.split(/[\\/]+/).filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) return "contains '..'";
  return parts;
}

/**
 * Resolves `target` (relative, `/`-separated) from the folder `start` of the archive, following
 * the symbolic links the archive has created so far. Returns the resolved parts, or null when
 * the path leaves the root (or loops).
 */
function resolveInArchive(start: string[], target: string, links: Map<string, string>, hops = { count: 0 }): string[] | null {
  if (/^([\\/]|[A-Za-z]:)/.test(target)) return null;
  let stack = [...start];
  for (const part of target.split(/[\\/]+/)) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 0) return null;
      stack.pop();
      continue;
    }
    stack.push(part);
    const link = links.get(stack.join('/'));
    if (link !== undefined) {
      if (++hops.count > maxLinkHops) return null;
      stack.pop();
      const resolved = resolveInArchive(stack, link, links, hops);
      if (resolved === null) return null;
      stack = resolved;
    }
  }
  return stack;
}

interface ArchiveScan {
  files: number;
  bytes: number;
  entries: number;
}

/**
 * Pass 1: copies the raw upload to `spoolPath` while checking every tar header. Nothing is
 * written outside the spool file. Throws a ContextError at the first refused entry.
 */
async function scanArchive(source: Readable, spoolPath: string, limits: { maxBytes: number; maxEntries: number }): Promise<ArchiveScan> {
  const scan: ArchiveScan = { files: 0, bytes: 0, entries: 0 };
  const links = new Map<string, string>();
  let failure: ContextError | undefined;
  const fail = (message: string, reason: ContextErrorReason) => {
    failure ??= new ContextError(message, reason);
  };

  const check = (entry: ReadEntry) => {
    if (failure) return;
    scan.entries += 1;
    if (scan.entries > limits.maxEntries) return fail(`the archive has more than ${limits.maxEntries} entries`, 'too-large');
    const shown = JSON.stringify(entry.path);
    const parts = entryParts(entry.path);
    if (typeof parts === 'string') return fail(`archive entry ${shown} ${parts}; it would be written outside the build context`, 'unsafe-entry');
    const key = parts.join('/');
    // A path under a symlink of the archive would be written wherever that link points.
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (links.has(prefix)) return fail(`archive entry ${shown} is inside the symbolic link ${JSON.stringify(prefix)}`, 'unsafe-entry');
    }
    if (parts.length === 0 && entry.type !== 'Directory' && entry.type !== 'GNUDumpDir') {
      return fail(`archive entry ${shown} would replace the build context folder itself`, 'unsafe-entry');
    }
    switch (entry.type) {
      case 'Directory':
      case 'GNUDumpDir':
        links.delete(key);
        return;
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        links.delete(key);
        scan.files += 1;
        scan.bytes += entry.size;
        if (scan.bytes > limits.maxBytes) return fail(`the archive unpacks to more than the allowed ${limits.maxBytes} bytes`, 'too-large');
        return;
      case 'SymbolicLink': {
        const target = entry.linkpath ?? '';
        if (resolveInArchive(parts.slice(0, -1), target, links) === null) {
          return fail(`symbolic link ${shown} -> ${JSON.stringify(target)} points outside the build context`, 'unsafe-entry');
        }
        links.set(key, target);
        scan.files += 1;
        return;
      }
      case 'Link': {
        const target = entry.linkpath ?? '';
        const targetParts = entryParts(target);
        if (typeof targetParts === 'string' || resolveInArchive([], target, links) === null) {
          return fail(`hard link ${shown} -> ${JSON.stringify(target)} points outside the build context`, 'unsafe-entry');
        }
        links.delete(key);
        scan.files += 1;
        return;
      }
      case 'CharacterDevice':
      case 'BlockDevice':
        return fail(`archive entry ${shown} is a device file; build contexts may hold only files, folders and links`, 'unsafe-entry');
      case 'FIFO':
        return fail(`archive entry ${shown} is a FIFO; build contexts may hold only files, folders and links`, 'unsafe-entry');
      default:
        return fail(`archive entry ${shown} has the unsupported type ${entry.type}`, 'invalid-archive');
    }
  };

  const parser = new Parser({
    strict: true,
    filter: (_path, entry) => {
      check(entry as ReadEntry);
      return false; // bodies are skipped in this pass
    },
  });
  let parseError: Error | undefined;
  let parsed = false;
  const done = new Promise<void>((resolve) => {
    parser.on('error', (error: Error) => {
      parseError ??= error;
      resolve();
    });
    parser.on('end', () => {
      parsed = true;
      resolve();
    });
  });

  const spool = await open(spoolPath, 'wx', 0o600);
  let tarLength = 0;
  try {
    async function* spooled(): AsyncGenerator<Buffer> {
      for await (const chunk of source.iterator({ destroyOnReturn: false })) {
        const buffer = toBuffer(chunk);
        let offset = 0;
        while (offset < buffer.length) offset += (await spool.write(buffer, offset, buffer.length - offset)).bytesWritten;
        yield buffer;
      }
    }
    for await (const chunk of tarBytes(spooled())) {
      tarLength += chunk.length;
      // Headers, padding and metadata around `maxBytes` of content: generous, but bounded,
      // so that a compressed stream of zero blocks cannot keep the server busy forever.
      if (tarLength > limits.maxBytes + 2048 * (scan.entries + 1) + 64 * 1024 * 1024) {
        fail(`the archive unpacks to more than the allowed ${limits.maxBytes} bytes`, 'too-large');
      }
      if (!failure && !parseError) parser.write(chunk);
      if (failure || parseError) break;
    }
    if (!failure && !parseError) {
      parser.end();
      await done;
    }
  } finally {
    await spool.close();
  }
  if (failure) throw failure;
  if (parseError) throw toContextError(parseError);
  if (!parsed) throw new ContextError('the upload is not a valid tar archive', 'invalid-archive');
  return scan;
}

/** Pass 2: extracts the spooled (and already checked) archive with node-tar in strict mode. */
async function unpackArchive(spoolPath: string, destDir: string): Promise<void> {
  const unpack = new Unpack({
    cwd: destDir,
    strict: true,
    preserveOwner: false,
    filter: (_path, entry) => {
      const readEntry = entry as ReadEntry;
      // No set-user/group-ID bits from an upload.
      if (typeof readEntry.mode === 'number') readEntry.mode &= 0o1777;
      return true;
    },
  });
  let failure: Error | undefined;
  const finished = new Promise<void>((resolve, reject) => {
    unpack.on('error', (error: Error) => {
      failure ??= error;
      reject(error);
    });
    unpack.on('close', () => resolve());
  });
  finished.catch(() => undefined);
  try {
    const file = createReadStream(spoolPath);
    try {
      for await (const chunk of tarBytes(file)) {
        if (failure) break;
        if (!unpack.write(chunk)) {
          await Promise.race([new Promise((resolve) => unpack.once('drain', resolve)), finished]);
        }
      }
    } finally {
      file.destroy();
    }
    if (failure) throw failure;
    unpack.end();
    await finished;
  } catch (error) {
    // File writes already started may still land: let them, then the caller empties the folder.
    unpack.abort(error instanceof Error ? error : new Error(String(error)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    throw error;
  }
}

/**
 * Pass 3: the tree on disk. Every symbolic link must resolve inside `root` (following links on
 * disk, dangling parts resolved by name), and every file with several hard links must have all
 * of them inside `root`.
 */
async function verifyTree(root: string): Promise<void> {
  const realRoot = await realpath(root);
  const linkCounts = new Map<string, { nlink: number; seen: number; path: string }>();
  const walk = async (relative: string[]): Promise<void> => {
    const entries = await readdir(path.join(realRoot, ...relative), { withFileTypes: true });
    for (const entry of entries) {
      const parts = [...relative, entry.name];
      const full = path.join(realRoot, ...parts);
      const stats = await lstat(full);
      if (stats.isSymbolicLink()) {
        const target = await readlink(full);
        if ((await resolveOnDisk(realRoot, relative, target)) === null) {
          throw new ContextError(`symbolic link ${JSON.stringify(parts.join('/'))} -> ${JSON.stringify(target)} points outside the build context`, 'unsafe-entry');
        }
      } else if (stats.isDirectory()) {
        await walk(parts);
      } else if (stats.isFile()) {
        if (stats.nlink > 1) {
          const key = `${stats.dev}:${stats.ino}`;
          const known = linkCounts.get(key) ?? { nlink: stats.nlink, seen: 0, path: parts.join('/') };
          known.seen += 1;
          linkCounts.set(key, known);
        }
      } else {
        throw new ContextError(`${JSON.stringify(parts.join('/'))} is neither a file, a folder nor a link`, 'unsafe-entry');
      }
    }
  };
  await walk([]);
  for (const { nlink, seen, path: file } of linkCounts.values()) {
    if (seen < nlink) throw new ContextError(`${JSON.stringify(file)} is a hard link to a file outside the build context`, 'unsafe-entry');
  }
}

/** Like resolveInArchive, on disk: null when `target` (seen from folder `start`) leaves `root`. */
async function resolveOnDisk(root: string, start: string[], target: string, hops = { count: 0 }): Promise<string[] | null> {
  if (path.isAbsolute(target)) return null;
  let stack = [...start];
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 0) return null;
      stack.pop();
      continue;
    }
    stack.push(part);
    let isLink = false;
    try {
      isLink = (await lstat(path.join(root, ...stack))).isSymbolicLink();
    } catch {
      // missing: the rest resolves by name
    }
    if (isLink) {
      if (++hops.count > maxLinkHops) return null;
      const next = await readlink(path.join(root, ...stack));
      stack.pop();
      const resolved = await resolveOnDisk(root, stack, next, hops);
      if (resolved === null) return null;
      stack = resolved;
    }
  }
  return stack;
}
