/**
 * Real local git repositories for tests: `makeRepository` makes one with a first commit on
 * `main` (git with a clean environment: no global or system config of the host).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { run } from './commands.js';

export const gitEnv: NodeJS.ProcessEnv = {
  ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('GIT_'))),
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.test',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.test',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};

export async function git(cwd: string, ...args: string[]): Promise<string> {
  const result = await run('git', args, { cwd, env: gitEnv, timeoutMs: 30_000 });
  return result.stdout.trim();
}

/** A working repository with one commit on `main`; `commit` writes files and commits them. */
export async function makeRepository(root: string) {
  const dir = path.join(root, `repo-${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  await git(dir, 'init', '--quiet', '--initial-branch=main');
  const commit = async (files: Record<string, string | null>, message = 'change'): Promise<string> => {
    for (const [name, content] of Object.entries(files)) {
      if (content === null) await git(dir, 'rm', '--quiet', '--', name);
      else {
        await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
        await writeFile(path.join(dir, name), content);
        await git(dir, 'add', '--', name);
      }
    }
    await git(dir, 'commit', '--quiet', '--allow-empty', '-m', message);
    return git(dir, 'rev-parse', 'HEAD');
  };
  const first = await commit({ 'README.md': '# app\n', 'src/index.ts': 'export {};\n' }, 'initial');
  return { dir, url: pathToFileURL(dir).toString(), commit, first, git: (...args: string[]) => git(dir, ...args) };
}
