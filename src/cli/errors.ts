/**
 * @module cli/errors
 * What a `slipway` subcommand may fail with, and the exit code each maps to in `cli/main.ts`:
 * UsageError (a flag, a file or a setting is wrong: exit 2) and CommandError (the server, the
 * API or the data said no: exit 1). Messages never carry secrets.
 */

/** Wrong or missing flags, files or local settings: exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** The operation itself failed (server, API, vault): exit code 1. */
export class CommandError extends Error {
  override name = 'CommandError';
}
