/**
 * @module git/remote-changes
 * Reading a remote repository without a checkout (pipelines' git mirrors and triggers): its
 * branch heads (`git ls-remote`) and the files changed between two commits (both fetched into a
 * bare cache repository per URL).
 *
 * Git runs the way a clone runs it (`openGitRemoteSession`, git/remote): credentials only through a
 * one-shot GIT_ASKPASS helper, host credential helpers, prompts, hooks and `ext::` off, and every
 * message masked — no password reaches an argument, a log line or an error.
 */
import { createHash } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { runProcess, type ProcessResult } from '../exec/process.js';
import { GitError } from './errors.js';
import { openGitRemoteSession, type GitCredentials, type GitRemoteSession } from './remote.js';

export interface GitRemoteOptions {
  credentials?: GitCredentials;
  signal?: AbortSignal;
  /** For the whole operation. Default 60 s for ls-remote, 5 minutes for changedFiles. */
  timeoutMs?: number;
}

const shaPattern = /^([0-9a-f]{40}|[0-9a-f]{64})$/;

async function withSession<T>(url: string, options: GitRemoteOptions, defaultTimeoutMs: number, what: string, fn: (session: GitRemoteSession, git: (args: string[], cwd?: string, bytes?: boolean) => Promise<ProcessResult>) => Promise<T>): Promise<T> {
  const session = await openGitRemoteSession(url, options.credentials);
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const deadline = Date.now() + timeoutMs;
  const git = async (args: string[], cwd?: string, bytes = false): Promise<ProcessResult> => {
    if (options.signal?.aborted) throw new GitError(`${what} of ${session.shown} was cancelled`, 'aborted');
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new GitError(`${what} of ${session.shown} took longer than ${timeoutMs} ms`, 'timeout');
    let result: ProcessResult;
    try {
      result = await runProcess('git', args, { env: session.env, cwd, signal: options.signal, timeoutMs: remaining, graceMs: 500, captureStdout: !bytes, captureStdoutBytes: bytes });
    } catch (error) {
      throw new GitError(`cannot run git (is it installed?): ${session.mask((error as Error).message)}`, 'git-failed');
    }
    if (result.aborted) throw new GitError(`${what} of ${session.shown} was cancelled`, 'aborted');
    if (result.timedOut) throw new GitError(`${what} of ${session.shown} took longer than ${timeoutMs} ms`, 'timeout');
    return result;
  };
  try {
    return await fn(session, git);
  } finally {
    await session.dispose();
  }
}

/**
 * The branches of a remote: branch name → commit SHA (refs/heads only). Throws a GitError
 * (reason `repository-not-found`, `auth-failed`, `timeout`, `aborted`, `git-failed`, …) whose
 * message is masked.
 */
export async function lsRemoteHeads(url: string, options: GitRemoteOptions = {}): Promise<Map<string, string>> {
  return withSession(url, options, 60_000, 'ls-remote', async (session, git) => {
    const result = await git(['ls-remote', '--heads', '--', session.url]);
    if (result.code !== 0) throw session.failure(result.stderrTail, 'ls-remote');
    const heads = new Map<string, string>();
    for (const line of result.stdout.split('\n')) {
      const match = /^([0-9a-f]{40}|[0-9a-f]{64})\trefs\/heads\/(.+)$/.exec(line.trim());
      if (match) heads.set(match[2]!, match[1]!);
    }
    return heads;
  });
}

/** Serialises work on one cache repository inside this process. */
const cacheLocks = new Map<string, Promise<unknown>>();

async function locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = cacheLocks.get(key) ?? Promise.resolve();
  const run = previous.then(fn, fn);
  const tail = run.catch(() => undefined);
  cacheLocks.set(key, tail);
  try {
    return await run;
  } finally {
    if (cacheLocks.get(key) === tail) cacheLocks.delete(key);
  }
}

/** The cache repository of a URL: `<cacheDir>/<sha256 of the URL without userinfo>.git`. */
function cachePath(cacheDir: string, cleanUrl: string): string {
  return path.join(cacheDir, `${createHash('sha256').update(cleanUrl).digest('hex').slice(0, 32)}.git`);
}

/**
 * The files that differ between `before` and `after` (added, removed, modified; a rename is its
 * old and its new path), or null when that cannot be told: `before` missing, all zeros or not a
 * SHA, or a commit the remote no longer serves (a force-push dropped it). Both commits are
 * fetched (depth 1 by SHA; all branches when the server refuses a SHA) into a bare repository
 * under `cacheDir`, one per URL, kept between calls so later fetches are small. Other failures
 * (auth, missing repository, timeout) throw a masked GitError.
 */
export async function changedFiles(url: string, before: string, after: string, options: GitRemoteOptions & { cacheDir: string }): Promise<string[] | null> {
  const from = (before ?? '').toLowerCase();
  const to = (after ?? '').toLowerCase();
  if (!shaPattern.test(to)) throw new GitError(`${JSON.stringify(after)} is not a full commit SHA`, 'invalid-input');
  if (!shaPattern.test(from) || /^0+$/.test(from)) return null;
  if (/^0+$/.test(to)) return [];
  if (from === to) return [];

  return withSession(url, options, 5 * 60_000, 'fetch', async (session, git) => {
    const repo = cachePath(path.resolve(options.cacheDir), session.url);
    return locked(repo, async () => {
      const exists = await stat(path.join(repo, 'HEAD')).then(() => true, () => false);
      if (!exists) {
        await mkdir(repo, { recursive: true });
        const init = await git(['init', '--quiet', '--bare', repo]);
        if (init.code !== 0) throw session.failure(init.stderrTail, 'init');
        // The cache only ever holds what diffs need; no automatic gc between fetches.
        await git(['config', 'gc.auto', '0'], repo);
      }
      const have = async (commit: string) => (await git(['cat-file', '-e', `${commit}^{commit}`], repo)).code === 0;
      const missing = async () => {
        const found = await Promise.all([from, to].map(have));
        return [from, to].filter((_, index) => !found[index]);
      };
      const fetch = (refspecs: string[], depth: boolean) =>
        git(['fetch', '--quiet', '--no-tags', '--no-recurse-submodules', '--no-write-fetch-head', ...(depth ? ['--depth=1'] : []), '--', session.url, ...refspecs], repo);

      let wanted = await missing();
      if (wanted.length > 0) {
        // Each commit by its SHA (servers with protocol v2, GitHub, GitLab, Gitea serve any
        // reachable commit); one at a time, as one unreachable commit fails a whole fetch.
        let refused = false;
        for (const commit of wanted) {
          const byId = await fetch([commit], true);
          if (byId.code === 0) continue;
          const failure = session.failure(byId.stderrTail, 'fetch');
          if (failure.reason === 'auth-failed' || failure.reason === 'repository-not-found') throw failure;
          refused = true;
        }
        if (refused) {
          // Servers without fetch-by-SHA: all branches (a commit that no branch reaches any more,
          // say after a force-push, stays missing: then the answer is "unknown").
          const all = await fetch(['+refs/heads/*:refs/heads/*'], false);
          if (all.code !== 0) throw session.failure(all.stderrTail, 'fetch');
        }
        wanted = await missing();
        if (wanted.length > 0) return null;
      }
      const diff = await git(['diff-tree', '-r', '-z', '--name-only', '--no-renames', '--no-commit-id', from, to], repo, true);
      if (diff.code !== 0) return null;
      return [...new Set(diff.stdoutBytes.toString('utf8').split('\0').filter((name) => name !== ''))];
    });
  });
}
