/**
 * @module builds/context
 * Preparing a build's context folder, from an uploaded tarball or from a git repository.
 *
 * Tarballs (tar or tar.gz, gzip recognised by its magic bytes) are taken in two passes: the
 * upload is spooled to a private temp file while every header is checked (paths that are
 * absolute or contain `..`, symbolic and hard links whose target leaves the folder — also
 * through other links of the same archive —, device files and FIFOs, the total unpacked size and
 * entry count); only an archive that passed is then extracted (node-tar, strict), and the
 * extracted tree is checked once more on disk (every symlink resolves inside, no hard link to a
 * file outside). Any failure empties the destination folder: nothing is left half-extracted.
 *
 * Repositories are cloned with the `git` CLI. Credentials never appear in a URL, an argument or a
 * log line: they are answered by a one-shot `GIT_ASKPASS` helper in a 0700 temp folder (removed
 * afterwards), credential helpers of the host are switched off so nothing is stored, terminal
 * prompts and hooks are off, `ext::`/`fd::` transports are refused, and every line git prints is
 * masked before it is forwarded. A clone that fails, times out or is cancelled leaves the
 * destination empty.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, readdir, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, Unpack, type ReadEntry } from 'tar';
import { runProcess, type ProcessResult } from '../exec/process.js';

export type ContextErrorReason =
  /** An archive entry would escape the folder, or is a device file / FIFO. */
  | 'unsafe-entry'
  /** The archive unpacks to more bytes or entries than allowed. */
  | 'too-large'
  /** Not a (supported) tar archive, or a damaged one. */
  | 'invalid-archive'
  /** Bad arguments: a non-empty destination, a malformed URL, ref or commit. */
  | 'invalid-input'
  | 'repository-not-found'
  /** The branch or tag does not exist in the repository. */
  | 'ref-not-found'
  | 'commit-not-found'
  | 'auth-failed'
  | 'timeout'
  | 'aborted'
  /** Any other git failure (network, server error, …); the message carries git's own words. */
  | 'git-failed';

export class ContextError extends Error {
  override readonly name = 'ContextError';
  constructor(message: string, readonly reason: ContextErrorReason) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Tarballs
// ---------------------------------------------------------------------------------------------

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
  await mkdir(dir, { recursive: true });
  const existing = await readdir(dir);
  if (existing.length > 0) throw new ContextError(`the destination folder ${dir} is not empty`, 'invalid-input');
}

/** Removes everything inside `dir`, keeping the folder itself. */
async function emptyDir(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  await Promise.all(names.map((name) => rm(path.join(dir, name), { recursive: true, force: true, maxRetries: 2 })));
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

// ---------------------------------------------------------------------------------------------
// Git
// ---------------------------------------------------------------------------------------------

export interface GitCredentials {
  username: string;
  password: string;
}

export interface CloneOptions {
  /** Anything git can clone: `https://`, `ssh://`, `git@host:path`, `file://`, a local path. */
  url: string;
  /** A branch or a tag (`refs/heads/` / `refs/tags/` prefixes are accepted). Default: the remote's HEAD. */
  ref?: string;
  /** A full or abbreviated commit SHA to check out (detached). */
  commit?: string;
  /** Created when missing; must be empty. Emptied again when the clone fails. */
  destDir: string;
  /** For http(s) remotes; never put in a URL, an argument, the environment or a log line. */
  credentials?: GitCredentials;
  signal?: AbortSignal;
  /** For the whole clone (all git commands). Default 10 minutes. */
  timeoutMs?: number;
  /** History depth. Default 1 (a shallow clone); 0 for the full history. */
  depth?: number;
}

export interface CloneResult {
  /** The full SHA of the commit checked out. */
  commit: string;
  /** The branch or tag checked out (as given, or the remote's default branch); the commit SHA when only a commit was asked for. */
  ref: string;
}

const defaultCloneTimeoutMs = 10 * 60_000;
/** User names this long are masked in logs like passwords (some hosts take a token as the user name). */
const usernameMaskLength = 16;

/** Environment variables of the server that may reach git; every other `GIT_*` variable is dropped. */
const keptGitVariables = new Set(['GIT_SSH', 'GIT_SSH_COMMAND', 'GIT_SSH_VARIANT', 'GIT_SSL_CAINFO', 'GIT_SSL_CAPATH', 'GIT_PROXY_COMMAND', 'GIT_PROXY_SSL_CAINFO', 'GIT_EXEC_PATH']);

/** Replaces secrets in git's output: the password (also URL-encoded) and any `user:password@` in a URL. */
export function maskSecrets(text: string, secrets: string[]): string {
  let masked = text;
  // Longest first, so that a secret containing another one is masked whole.
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) if (secret.length > 0) masked = masked.split(secret).join('***');
  return masked.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s/@:]*):[^\s/@]*@/gi, '$1:***@');
}

interface ParsedRemote {
  url: string;
  /** For messages and logs: the URL without any userinfo password. */
  shown: string;
  credentials?: GitCredentials;
}

function parseRemote(url: string, credentials: GitCredentials | undefined): ParsedRemote {
  if (typeof url !== 'string' || url.trim() === '') throw new ContextError('a repository URL is required', 'invalid-input');
  if (/[\0\r\n]/.test(url)) throw new ContextError('the repository URL contains control characters', 'invalid-input');
  if (url.startsWith('-')) throw new ContextError('the repository URL must not start with "-"', 'invalid-input');
  // `ext::command` runs a program, `fd::` talks to descriptors: never from a user-supplied URL.
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(url)) throw new ContextError(`the git transport of ${url.split('::')[0]}:: URLs is not allowed`, 'invalid-input');
  if (!/^https?:\/\//i.test(url)) return { url, shown: maskSecrets(url, []), credentials };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ContextError(`the repository URL ${maskSecrets(url, [])} is not a valid URL`, 'invalid-input');
  }
  let found = credentials;
  if (parsed.password !== '' && !found) {
    found = { username: decodeURIComponent(parsed.username), password: decodeURIComponent(parsed.password) };
  }
  if (parsed.password !== '' || (found && parsed.username !== '')) {
    parsed.username = '';
    parsed.password = '';
  }
  const clean = parsed.toString();
  return { url: clean, shown: clean, credentials: found };
}

function normaliseRef(ref: string): string {
  const short = ref.replace(/^refs\/(heads|tags)\//, '');
  if (
    short === '' ||
    short.startsWith('-') ||
    short.startsWith('/') ||
    short.endsWith('/') ||
    short.endsWith('.lock') ||
    short.includes('..') ||
    short.includes('@{') ||
    short.includes('//') ||
    /[\0-\x20\x7f~^:?*[\\]/.test(short)
  ) {
    throw new ContextError(`${JSON.stringify(ref)} is not a valid branch or tag name`, 'invalid-input');
  }
  return short;
}

/** Writes the one-shot GIT_ASKPASS helper; secrets go to 0600 files next to it, never the environment. */
async function writeAskPass(credentials: GitCredentials): Promise<{ dir: string; script: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'slipway-askpass-'));
  await chmod(dir, 0o700);
  await writeFile(path.join(dir, 'username'), credentials.username, { mode: 0o600 });
  await writeFile(path.join(dir, 'password'), credentials.password, { mode: 0o600 });
  const script = path.join(dir, `askpass-${randomBytes(6).toString('hex')}.sh`);
  await writeFile(
    script,
    ['#!/bin/sh', '# One-shot credential answer for a single git clone (Slipway); removed afterwards.', 'dir=$(dirname "$0")', 'case "$1" in', '  [Uu]sername*) cat "$dir/username" ;;', '  *) cat "$dir/password" ;;', 'esac', ''].join('\n'),
    { mode: 0o700 },
  );
  return { dir, script };
}

function gitEnvironment(askPass: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('GIT_') && !keptGitVariables.has(key)) continue;
    if (key === 'SSH_ASKPASS' || key === 'SSH_ASKPASS_REQUIRE') continue;
    env[key] = value;
  }
  const config: Array<[string, string]> = [
    // No credential helper of the host: nothing is looked up or stored.
    ['credential.helper', ''],
    ['protocol.ext.allow', 'never'],
    ['core.askPass', ''],
    ['advice.detachedHead', 'false'],
    // No hooks from the host's global config run on a user's checkout.
    ['core.hooksPath', '/dev/null'],
    ['init.defaultBranch', 'main'],
  ];
  env.GIT_CONFIG_COUNT = String(config.length);
  config.forEach(([key, value], index) => {
    env[`GIT_CONFIG_KEY_${index}`] = key;
    env[`GIT_CONFIG_VALUE_${index}`] = value;
  });
  env.GIT_TERMINAL_PROMPT = '0';
  env.GCM_INTERACTIVE = 'never';
  env.LC_ALL = 'C';
  env.LANGUAGE = 'C';
  if (askPass) env.GIT_ASKPASS = askPass;
  // ssh must fail rather than ask for a password or passphrase.
  if (!env.GIT_SSH_COMMAND && !env.GIT_SSH) env.GIT_SSH_COMMAND = 'ssh -o BatchMode=yes';
  return env;
}

/**
 * For other callers of git against a remote (pipelines: `ls-remote`, fetches into a cache): the
 * remote URL without userinfo, a masking function, the environment (credential helpers off, a
 * one-shot GIT_ASKPASS when there are credentials), a classifier of failures, and `dispose`,
 * which removes the askpass folder. Throws a ContextError ('invalid-input') for a refused URL.
 */
export interface GitRemoteSession {
  url: string;
  /** For messages: the URL without a password. */
  shown: string;
  env: NodeJS.ProcessEnv;
  mask(text: string): string;
  failure(stderrTail: string[], what: string): ContextError;
  dispose(): Promise<void>;
}

export async function openGitRemoteSession(url: string, credentials?: GitCredentials): Promise<GitRemoteSession> {
  return sessionFor(parseRemote(url, credentials));
}

async function sessionFor(remote: ReturnType<typeof parseRemote>): Promise<GitRemoteSession> {
  const secrets: string[] = [];
  if (remote.credentials) {
    const { username, password } = remote.credentials;
    secrets.push(password, encodeURIComponent(password));
    // Token-as-username schemes: a long user name is treated as a secret too.
    if (username.length >= usernameMaskLength) secrets.push(username, encodeURIComponent(username));
  }
  const mask = (text: string) => maskSecrets(text, secrets);
  const askPass = remote.credentials ? await writeAskPass(remote.credentials) : undefined;
  return {
    url: remote.url,
    shown: remote.shown,
    env: gitEnvironment(askPass?.script),
    mask,
    failure: (stderrTail, what) => classifyGitFailure(stderrTail.map(mask), remote.shown, what, undefined),
    dispose: async () => {
      if (askPass) await rm(askPass.dir, { recursive: true, force: true });
    },
  };
}

/**
 * Clones a repository into `destDir` with the `git` CLI and checks out a branch, a tag or a
 * commit. Git's output goes to `log`, masked. Failures are ContextErrors naming what is missing.
 */
export async function cloneRepository(options: CloneOptions, log: (line: string) => void): Promise<CloneResult> {
  const remote = parseRemote(options.url, options.credentials);
  const ref = options.ref === undefined || options.ref === '' ? undefined : normaliseRef(options.ref);
  const commit = options.commit === undefined || options.commit === '' ? undefined : options.commit.toLowerCase();
  if (commit !== undefined && !/^[0-9a-f]{4,64}$/.test(commit)) {
    throw new ContextError(`${JSON.stringify(options.commit)} is not a commit SHA (4 to 64 hexadecimal digits)`, 'invalid-input');
  }
  const depth = options.depth ?? 1;
  if (!Number.isInteger(depth) || depth < 0) throw new ContextError('depth must be a non-negative integer', 'invalid-input');
  const destDir = path.resolve(options.destDir);
  await prepareEmptyDir(destDir);

  const session = await sessionFor(remote);
  const { mask, env } = session;
  const deadline = Date.now() + (options.timeoutMs ?? defaultCloneTimeoutMs);
  const timeoutMs = options.timeoutMs ?? defaultCloneTimeoutMs;

  const git = async (args: string[], cwd?: string, quiet = false): Promise<ProcessResult> => {
    if (options.signal?.aborted) throw new ContextError('the clone was cancelled', 'aborted');
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new ContextError(`cloning ${remote.shown} took longer than ${timeoutMs} ms`, 'timeout');
    if (!quiet) log(mask(`$ git ${args.map((arg) => (arg === remote.url ? remote.shown : arg)).join(' ')}`));
    let result: ProcessResult;
    try {
      result = await runProcess('git', args, {
        env,
        cwd,
        signal: options.signal,
        timeoutMs: remaining,
        graceMs: 2_000,
        captureStdout: quiet,
        onLine: (line, stream) => {
          if (line.trim() === '' || (quiet && stream === 'stdout')) return;
          log(mask(line));
        },
      });
    } catch (error) {
      throw new ContextError(`cannot run git (is it installed?): ${mask((error as Error).message)}`, 'git-failed');
    }
    if (result.aborted) throw new ContextError('the clone was cancelled', 'aborted');
    if (result.timedOut) throw new ContextError(`cloning ${remote.shown} took longer than ${timeoutMs} ms`, 'timeout');
    return result;
  };
  const failWith = (result: ProcessResult, what: string): never => {
    throw classifyGitFailure(result.stderrTail.map(mask), remote.shown, what, ref);
  };

  try {
    if (commit === undefined) {
      const args = ['clone', '--no-local', '--no-recurse-submodules'];
      if (depth > 0) args.push('--depth', String(depth));
      if (ref) args.push('--branch', ref);
      args.push('--', remote.url, destDir);
      const cloned = await git(args);
      if (cloned.code !== 0) failWith(cloned, 'clone');
      const head = await git(['rev-parse', '--verify', 'HEAD^{commit}'], destDir, true);
      if (head.code !== 0) {
        throw new ContextError(`${remote.shown} has no commits${ref ? ` on ${JSON.stringify(ref)}` : ''}`, 'ref-not-found');
      }
      let resolvedRef = ref;
      if (!resolvedRef) {
        const branch = await git(['symbolic-ref', '--quiet', '--short', 'HEAD'], destDir, true);
        resolvedRef = branch.code === 0 && branch.stdout.trim() !== '' ? branch.stdout.trim() : 'HEAD';
      }
      return { commit: head.stdout.trim(), ref: resolvedRef };
    }

    const init = await git(['init', '--quiet', destDir], undefined, true);
    if (init.code !== 0) failWith(init, 'init');
    const added = await git(['remote', 'add', 'origin', remote.url], destDir, true);
    if (added.code !== 0) failWith(added, 'init');
    let fetched = false;
    if (commit.length === 40 || commit.length === 64) {
      // Servers (protocol v2, GitHub, GitLab, …) serve a reachable commit by its full SHA.
      const args = ['fetch', '--no-tags', '--no-recurse-submodules'];
      if (depth > 0) args.push('--depth', String(depth));
      args.push('origin', commit);
      const byId = await git(args, destDir);
      if (byId.code === 0) fetched = true;
      else if (isRepositoryMissing(byId.stderrTail.join('\n')) || isAuthFailure(byId.stderrTail.join('\n'))) failWith(byId, 'fetch');
      else log('fetching the commit by its SHA failed; fetching all branches and tags instead');
    }
    if (!fetched) {
      const all = await git(['fetch', '--tags', '--no-recurse-submodules', 'origin', '+refs/heads/*:refs/remotes/origin/*'], destDir);
      if (all.code !== 0) failWith(all, 'fetch');
    }
    const found = await git(['rev-parse', '--verify', '--quiet', `${commit}^{commit}`], destDir, true);
    if (found.code !== 0 || found.stdout.trim() === '') {
      const ambiguous = found.stderrTail.some((line) => /ambiguous/i.test(line));
      throw new ContextError(
        ambiguous ? `commit ${commit} is ambiguous in ${remote.shown}; give more digits` : `commit ${commit} not found in ${remote.shown}`,
        'commit-not-found',
      );
    }
    const sha = found.stdout.trim();
    const checkout = await git(['checkout', '--quiet', '--detach', sha], destDir);
    if (checkout.code !== 0) failWith(checkout, 'checkout');
    return { commit: sha, ref: ref ?? sha };
  } catch (error) {
    await emptyDir(destDir);
    throw error;
  } finally {
    await session.dispose();
  }
}

function isRepositoryMissing(stderr: string): boolean {
  return /does not appear to be a git repository|repository '.*' does not exist|repository '.*' not found|Repository not found|not a git repository|HTTP 404|The requested URL returned error: 404/i.test(stderr);
}

function isAuthFailure(stderr: string): boolean {
  return /Authentication failed|could not read (Username|Password)|terminal prompts disabled|Permission denied \(publickey|Invalid username or password|The requested URL returned error: 40[13]|HTTP Basic: Access denied/i.test(stderr);
}

function classifyGitFailure(stderrTail: string[], shown: string, what: string, ref: string | undefined): ContextError {
  const stderr = stderrTail.join('\n');
  const fatal = [...stderrTail].reverse().find((line) => /^(fatal|error):/.test(line)) ?? stderrTail[stderrTail.length - 1] ?? 'no output';
  const branch = /Remote branch (.+?) not found in upstream/i.exec(stderr);
  if (branch || (ref && /couldn't find remote ref/i.test(stderr))) {
    return new ContextError(`branch or tag ${JSON.stringify(ref ?? branch?.[1] ?? '')} not found in ${shown}`, 'ref-not-found');
  }
  if (isAuthFailure(stderr)) return new ContextError(`authentication to ${shown} failed (${fatal})`, 'auth-failed');
  if (isRepositoryMissing(stderr)) return new ContextError(`repository ${shown} not found (${fatal})`, 'repository-not-found');
  return new ContextError(`git ${what} of ${shown} failed: ${fatal}`, 'git-failed');
}
