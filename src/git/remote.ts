/**
 * @module git/remote
 * The git part (`src/git`): everything that runs the `git` CLI against a remote — clones
 * (git/clone), branch heads and changed files (git/remote-changes) — goes through one remote
 * session made here, so credentials are handled one way only. Credentials never appear in a URL,
 * an argument, the environment or a log line: they are answered by a one-shot `GIT_ASKPASS`
 * helper in a 0700 temp folder (removed by `dispose`), credential helpers of the host are
 * switched off so nothing is stored, terminal prompts and hooks are off, `ext::`/`fd::`
 * transports are refused, and every line git prints is masked before it goes anywhere.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GitError } from './errors.js';

export interface GitCredentials {
  username: string;
  password: string;
}

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

export interface ParsedRemote {
  url: string;
  /** For messages and logs: the URL without any userinfo password. */
  shown: string;
  credentials?: GitCredentials;
}

/** Checks a remote URL (refusing option-like URLs and `ext::`/`fd::`) and takes userinfo out of an http(s) URL. */
export function parseRemote(url: string, credentials: GitCredentials | undefined): ParsedRemote {
  if (typeof url !== 'string' || url.trim() === '') throw new GitError('a repository URL is required', 'invalid-input');
  if (/[\0\r\n]/.test(url)) throw new GitError('the repository URL contains control characters', 'invalid-input');
  if (url.startsWith('-')) throw new GitError('the repository URL must not start with "-"', 'invalid-input');
  // `ext::command` runs a program, `fd::` talks to descriptors: never from a user-supplied URL.
  if (/^[A-Za-z][A-Za-z0-9+.-]*::/.test(url)) throw new GitError(`the git transport of ${url.split('::')[0]}:: URLs is not allowed`, 'invalid-input');
  if (!/^https?:\/\//i.test(url)) return { url, shown: maskSecrets(url, []), credentials };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new GitError(`the repository URL ${maskSecrets(url, [])} is not a valid URL`, 'invalid-input');
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
 * which removes the askpass folder. Throws a GitError ('invalid-input') for a refused URL.
 */
export interface GitRemoteSession {
  url: string;
  /** For messages: the URL without a password. */
  shown: string;
  env: NodeJS.ProcessEnv;
  mask(text: string): string;
  failure(stderrTail: string[], what: string): GitError;
  dispose(): Promise<void>;
}

export async function openGitRemoteSession(url: string, credentials?: GitCredentials): Promise<GitRemoteSession> {
  return openSession(parseRemote(url, credentials));
}

/** The session of an already parsed remote (a clone checks its other arguments in between). */
export async function openSession(remote: ParsedRemote): Promise<GitRemoteSession> {
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

export function isRepositoryMissing(stderr: string): boolean {
  return /does not appear to be a git repository|repository '.*' does not exist|repository '.*' not found|Repository not found|not a git repository|HTTP 404|The requested URL returned error: 404/i.test(stderr);
}

export function isAuthFailure(stderr: string): boolean {
  return /Authentication failed|could not read (Username|Password)|terminal prompts disabled|Permission denied \(publickey|Invalid username or password|The requested URL returned error: 40[13]|HTTP Basic: Access denied/i.test(stderr);
}

/** A GitError naming what is missing (branch, repository, login) from git's (masked) stderr. */
export function classifyGitFailure(stderrTail: string[], shown: string, what: string, ref: string | undefined): GitError {
  const stderr = stderrTail.join('\n');
  const fatal = [...stderrTail].reverse().find((line) => /^(fatal|error):/.test(line)) ?? stderrTail[stderrTail.length - 1] ?? 'no output';
  const branch = /Remote branch (.+?) not found in upstream/i.exec(stderr);
  if (branch || (ref && /couldn't find remote ref/i.test(stderr))) {
    return new GitError(`branch or tag ${JSON.stringify(ref ?? branch?.[1] ?? '')} not found in ${shown}`, 'ref-not-found');
  }
  if (isAuthFailure(stderr)) return new GitError(`authentication to ${shown} failed (${fatal})`, 'auth-failed');
  if (isRepositoryMissing(stderr)) return new GitError(`repository ${shown} not found (${fatal})`, 'repository-not-found');
  return new GitError(`git ${what} of ${shown} failed: ${fatal}`, 'git-failed');
}
