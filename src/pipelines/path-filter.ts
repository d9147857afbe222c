/**
 * @module pipelines/path-filter
 * Which pushes run a pipeline: globs over the changed files and over branch/tag names.
 *
 * Glob semantics (picomatch with `dot: true`; paths are relative to the repository root, with
 * `/` separators), the same as GitHub Actions' `paths` and GitLab CI's `changes`:
 * - patterns are anchored at the repository root: `*.md` matches `README.md` but **not**
 *   `docs/guide.md`; write `**\/*.md` for Markdown files at any depth;
 * - `*` and `?` never cross a `/`; `**` (a whole path segment) matches any number of folders:
 *   `src/**` matches everything under `src/`, `src/*` only its direct children;
 * - a trailing `/` means the whole folder: `docs/` is `docs/**`;
 * - a pattern without any glob character also matches everything under it as a folder:
 *   `docs` matches the file `docs` and `docs/a/b.md` (like `docs/`);
 * - dot files and folders are matched like any other (`src/**` includes `src/.env`);
 * - `{a,b}`, `[abc]`, `@(x|y)` and friends work as in picomatch; a leading `./` is ignored;
 *   negation (`!pattern`) is refused by validateGlobs — use `exclude` instead.
 * A file counts when it matches an include pattern (no include list: every file) and no
 * exclude pattern — so exclude beats include.
 *
 * Branch and tag names use the same glob rules (`release/*`, `v*`, `**` for any depth); a
 * `refs/heads/` or `refs/tags/` prefix on either side is ignored.
 */
import picomatch from 'picomatch';

export interface PathFilter {
  include?: string[];
  exclude?: string[];
}

type Matcher = (path: string) => boolean;

const cache = new Map<string, Matcher>();
const cacheLimit = 2_000;

function stripDotSlash(text: string): string {
  return text.replace(/^(\.\/)+/, '');
}

function compile(key: string, build: () => Matcher): Matcher {
  let matcher = cache.get(key);
  if (!matcher) {
    if (cache.size >= cacheLimit) cache.clear();
    matcher = build();
    cache.set(key, matcher);
  }
  return matcher;
}

function pathMatcher(pattern: string): Matcher {
  return compile(`p\0${pattern}`, () => {
    let glob = stripDotSlash(pattern);
    if (glob.endsWith('/')) glob = `${glob.replace(/\/+$/, '')}/**`;
    else if (!picomatch.scan(glob).isGlob) glob = `${glob}{,/**}`;
    return picomatch(glob, { dot: true });
  });
}

function refMatcher(pattern: string): Matcher {
  return compile(`r\0${pattern}`, () => picomatch(pattern.replace(/^refs\/(heads|tags)\//, ''), { dot: true }));
}

function normaliseFile(file: string): string {
  return stripDotSlash(file).replace(/^\/+/, '');
}

/**
 * True when at least one changed file is included (no include = everything) and not excluded.
 * changedFiles null (unknown) → true. Empty list → false when a filter is set, true otherwise.
 */
export function matchesPaths(filter: PathFilter | undefined, changedFiles: string[] | null): boolean {
  const include = filter?.include ?? [];
  const exclude = filter?.exclude ?? [];
  if (include.length === 0 && exclude.length === 0) return true;
  if (changedFiles === null) return true;
  const includes = include.map(pathMatcher);
  const excludes = exclude.map(pathMatcher);
  return changedFiles.some((raw) => {
    const file = normaliseFile(raw);
    if (file === '') return false;
    if (includes.length > 0 && !includes.some((match) => match(file))) return false;
    return !excludes.some((match) => match(file));
  });
}

/** Branch/tag name glob match; no patterns = match all. */
export function matchesRef(patterns: string[] | undefined, name: string): boolean {
  if (!patterns || patterns.length === 0) return true;
  const short = name.replace(/^refs\/(heads|tags)\//, '');
  return patterns.some((pattern) => refMatcher(pattern)(short));
}

/** Throws an Error naming the first bad pattern (and `what` it is, e.g. "triggers.webhook.paths.include"). */
export function validateGlobs(patterns: string[], what: string): void {
  if (!Array.isArray(patterns)) throw new Error(`${what} must be a list of glob patterns`);
  patterns.forEach((pattern, index) => {
    const fail = (reason: string): never => {
      throw new Error(`${what}[${index}] ${typeof pattern === 'string' ? JSON.stringify(pattern) : String(pattern)} ${reason}`);
    };
    if (typeof pattern !== 'string') fail('is not a string');
    if (pattern.trim() === '') fail('is empty');
    if (pattern.length > 512) fail('is longer than 512 characters');
    if (pattern !== pattern.trim()) fail('has spaces around it');
    if (/[\0-\x1f\x7f]/.test(pattern)) fail('contains control characters');
    if (pattern.startsWith('!')) fail('is a negation; list it in the exclude patterns instead');
    if (pattern.startsWith('/') || /^[A-Za-z]:[\\/]/.test(pattern)) fail('is an absolute path; patterns are relative to the repository root');
    if (stripDotSlash(pattern).split('/').includes('..')) fail("contains '..'; patterns cannot leave the repository");
    if (stripDotSlash(pattern) === '') fail('matches nothing');
    try {
      picomatch.makeRe(pattern, { dot: true, strictBrackets: true });
    } catch (error) {
      fail(`is not a valid glob: ${(error as Error).message}`);
    }
  });
}
