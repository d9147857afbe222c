/**
 * @module git/errors
 * The one error every git operation throws (clone, ls-remote, fetches into a cache), with a
 * reason a caller can act on. Messages are already masked: no password or token in them.
 */
import { SlipwayError } from '../http/error-catalog.js';

export type GitErrorReason =
  /** Bad arguments: a non-empty destination, a refused or malformed URL, ref or commit. */
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

export class GitError extends SlipwayError {
  override readonly name = 'GitError';
  constructor(message: string, readonly reason: GitErrorReason) {
    super('GIT_FAILED', message);
  }
}
