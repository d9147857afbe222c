/**
 * @module git/clone
 * Cloning a repository into an empty folder and checking out a branch, a tag or a commit (a
 * build's or a pipeline run's sources). Git runs through a remote session (git/remote):
 * credentials only through the one-shot askpass helper, every line masked. A clone that fails,
 * times out or is cancelled leaves the destination empty.
 */
import path from 'node:path';
import { runProcess, type ProcessResult } from '../exec/process.js';
import { GitError } from './errors.js';
import { classifyGitFailure, isAuthFailure, isRepositoryMissing, openSession, parseRemote, type GitCredentials } from './remote.js';
import { emptyDir, ensureEmptyDir } from '../exec/work-folders.js';

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

/** Creates `dir` when missing; refuses one that already has content (it is emptied on failure). */
async function prepareEmptyDir(dir: string): Promise<void> {
  if (!(await ensureEmptyDir(dir))) throw new GitError(`the destination folder ${dir} is not empty`, 'invalid-input');
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
    throw new GitError(`${JSON.stringify(ref)} is not a valid branch or tag name`, 'invalid-input');
  }
  return short;
}


/**
 * Clones a repository into `destDir` with the `git` CLI and checks out a branch, a tag or a
 * commit. Git's output goes to `log`, masked. Failures are GitErrors naming what is missing.
 */
export async function cloneRepository(options: CloneOptions, log: (line: string) => void): Promise<CloneResult> {
  const remote = parseRemote(options.url, options.credentials);
  const ref = options.ref === undefined || options.ref === '' ? undefined : normaliseRef(options.ref);
  const commit = options.commit === undefined || options.commit === '' ? undefined : options.commit.toLowerCase();
  if (commit !== undefined && !/^[0-9a-f]{4,64}$/.test(commit)) {
    throw new GitError(`${JSON.stringify(options.commit)} is not a commit SHA (4 to 64 hexadecimal digits)`, 'invalid-input');
  }
  const depth = options.depth ?? 1;
  if (!Number.isInteger(depth) || depth < 0) throw new GitError('depth must be a non-negative integer', 'invalid-input');
  const destDir = path.resolve(options.destDir);
  await prepareEmptyDir(destDir);

  const session = await openSession(remote);
  const { mask, env } = session;
  const deadline = Date.now() + (options.timeoutMs ?? defaultCloneTimeoutMs);
  const timeoutMs = options.timeoutMs ?? defaultCloneTimeoutMs;

  const git = async (args: string[], cwd?: string, quiet = false): Promise<ProcessResult> => {
    if (options.signal?.aborted) throw new GitError('the clone was cancelled', 'aborted');
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new GitError(`cloning ${remote.shown} took longer than ${timeoutMs} ms`, 'timeout');
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
      throw new GitError(`cannot run git (is it installed?): ${mask((error as Error).message)}`, 'git-failed');
    }
    if (result.aborted) throw new GitError('the clone was cancelled', 'aborted');
    if (result.timedOut) throw new GitError(`cloning ${remote.shown} took longer than ${timeoutMs} ms`, 'timeout');
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
        throw new GitError(`${remote.shown} has no commits${ref ? ` on ${JSON.stringify(ref)}` : ''}`, 'ref-not-found');
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
      throw new GitError(
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
