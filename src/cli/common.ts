/**
 * @module cli/common
 * Flags shared by the subcommands that work on a data folder (`serve`, `gc`, `fsck`,
 * `auth rotate-token-key`, `vault rotate`) and how they become a validated config, plus the
 * file-ownership check of the commands that replace a file the server reads.
 */
import { stat, chown } from 'node:fs/promises';
import type { Command } from 'commander';
import { loadConfig, type Config, type ConfigInput } from '../config/config.js';
import { UsageError } from './errors.js';

export interface CommonFlags {
  config?: string;
  dataDir?: string;
  database?: string;
}

export function withCommonFlags(command: Command): Command {
  return command
    .option('-c, --config <file>', 'YAML config file')
    .option('-d, --data-dir <dir>', 'data folder (env SLIPWAY_DATA_DIR)')
    .option('--database <url>', '"sqlite" (default) or a postgres:// URL (env SLIPWAY_DATABASE)');
}

export function configFrom(flags: CommonFlags, env: Record<string, string | undefined>, extra: ConfigInput = {}): Config {
  return loadConfig({
    file: flags.config,
    env,
    flags: { dataDir: flags.dataDir, database: flags.database, ...extra },
  });
}

export interface Ownership {
  uid: number;
  gid: number;
}

/**
 * Replacing a file by rename gives it to whoever runs the command. The server must still read
 * it, so: the owner may go ahead, root goes ahead and hands the file back afterwards
 * (`restoreOwner`), anyone else is refused before anything changes.
 */
export async function checkOwnership(file: string): Promise<Ownership | undefined> {
  if (typeof process.getuid !== 'function') return undefined;
  const info = await stat(file);
  const uid = process.getuid();
  if (uid === info.uid) return undefined;
  if (uid === 0) return { uid: info.uid, gid: info.gid };
  throw new UsageError(`${file} belongs to uid ${info.uid}, this command runs as uid ${uid}: run it as the user the server runs as (or as root), so the server can still read the file`);
}

export async function restoreOwner(file: string, owner: Ownership | undefined): Promise<void> {
  if (owner) await chown(file, owner.uid, owner.gid);
}
