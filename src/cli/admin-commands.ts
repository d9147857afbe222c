/**
 * @module cli/admin-commands
 * Key rotation beside the data folder, for operators:
 *
 * - `slipway auth rotate-token-key`: a new registry token signing key in the db, sealed by the
 *   vault (older keys stay for verification). Every running replica signs with it within
 *   seconds (they re-read the keys), so no restart is needed.
 * - `slipway vault rotate --new-key-file F`: re-wraps every vault data key under a new master
 *   key in one transaction (envelopes are untouched). When the key came from the default
 *   `<dataDir>/master.key`, that file is replaced with the new key and the old one is kept in
 *   `master.key.previous`; otherwise the operator is told where to set the new key.
 *
 * Only fingerprints (`mk-…`) and key ids (`k-…`) are printed, never key material.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { MasterKey } from '../vault/vault.js';
import { checkOwnership, configFrom, restoreOwner, withCommonFlags, type CommonFlags } from './common.js';
import { CommandError, UsageError } from './errors.js';
import { readSecretFile } from './secrets.js';

type Env = Record<string, string | undefined>;

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** temp (0600) → fsync → rename → fsync(dir): the file is either the old or the new content. */
async function replaceFileAtomically(file: string, content: string): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    try {
      await handle.chmod(0o600);
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  const dirHandle = await open(dir, fsConstants.O_RDONLY);
  try {
    await dirHandle.sync();
  } catch {
    // not every filesystem can fsync a folder
  } finally {
    await dirHandle.close();
  }
}

export function registerAdminCommands(program: Command, env: Env): void {
  const auth = program.command('auth').description('access control administration beside the data folder');

  withCommonFlags(auth.command('rotate-token-key').description('add a new registry token signing key (old keys keep verifying); safe while the server runs'))
    .option('--json', 'print {"kid": …}')
    .action(async (flags: CommonFlags & { json?: boolean }) => {
      const config = configFrom(flags, env);
      // The keys live in the db sealed by the vault: both must be the server's.
      if (config.database === 'sqlite' && !(await exists(path.join(config.dataDir, 'slipway.db')))) {
        throw new UsageError(`no database in ${config.dataDir} (slipway.db is missing): point --data-dir (or SLIPWAY_DATA_DIR, or dataDir in --config) at the server's data folder, or pass --database for PostgreSQL`);
      }
      const masterKeyGiven = (config.vault.masterKey ?? '').trim() !== '' || config.vault.masterKeyFile !== undefined;
      if (!masterKeyGiven && !(await exists(path.join(config.dataDir, 'master.key')))) {
        throw new UsageError(`no vault master key: ${path.join(config.dataDir, 'master.key')} does not exist and neither SLIPWAY_MASTER_KEY nor vault.masterKeyFile is set; give the key the server uses`);
      }
      const { service, tokenTtl, refreshTokenTtl } = config.auth;
      const { TokenService, dbTokenKeyStore } = await import('../auth/tokens.js');
      const { openRegistry, openVault } = await import('../main.js');
      const registry = await openRegistry(config);
      let kid: string;
      try {
        const vault = await openVault(config, registry.db);
        const tokens = new TokenService({ store: dbTokenKeyStore(registry.db, vault), issuer: 'slipway', service, ttlMs: tokenTtl, refreshTtlMs: refreshTokenTtl });
        kid = await tokens.rotate();
      } finally {
        await registry.close();
      }
      if (flags.json) process.stdout.write(`${JSON.stringify({ kid })}\n`);
      else {
        process.stdout.write(`New token signing key: ${kid}\n`);
        process.stdout.write('Running servers (every replica) sign with it within seconds; tokens signed with the older keys stay valid until they expire.\n');
      }
    });

  const vault = program.command('vault').description('the secrets vault: master key rotation');

  withCommonFlags(vault.command('rotate').description('re-wrap every vault data key under a new master key'))
    .requiredOption('--new-key-file <file>', 'file with the new master key: 32 bytes as base64 or hex, e.g. from `openssl rand -base64 32`')
    .option('--json', 'print the result as JSON')
    .action(async (flags: CommonFlags & { newKeyFile: string; json?: boolean }) => {
      const config = configFrom(flags, env);
      const { loadMasterKeys, parseMasterKey, VaultError } = await import('../vault/vault.js');
      const { openRegistry, openVault } = await import('../main.js');
      const nextKey = await parseMasterKeyText(flags.newKeyFile, parseMasterKey);
      const defaultFile = path.join(config.dataDir, 'master.key');
      const source: 'env' | 'file' | 'default' = config.vault.masterKey !== undefined && config.vault.masterKey.trim() !== ''
        ? 'env'
        : config.vault.masterKeyFile !== undefined ? 'file' : 'default';
      // loadMasterKeys would create a missing default file: a fresh key that wraps nothing.
      if (source === 'default' && !(await exists(defaultFile))) {
        throw new UsageError(`no current master key: ${defaultFile} does not exist and neither SLIPWAY_MASTER_KEY nor vault.masterKeyFile is set; point --data-dir at the server's data folder, or give the key the server uses`);
      }
      if (config.database === 'sqlite' && !(await exists(path.join(config.dataDir, 'slipway.db')))) {
        throw new UsageError(`no database in ${config.dataDir} (slipway.db is missing): point --data-dir at the server's data folder, or pass --database for PostgreSQL`);
      }
      let current: MasterKey;
      try {
        current = (await loadMasterKeys({ env: config.vault.masterKey, file: config.vault.masterKeyFile, previous: config.vault.previousMasterKeys, dataDir: config.dataDir })).current;
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      if (current.id === nextKey.id) {
        throw new UsageError(`the new key is the current master key (${current.id}); make a new one, e.g. openssl rand -base64 32 > new-master.key`);
      }
      const owner = source === 'default' ? await checkOwnership(defaultFile) : undefined;
      const previousFile = `${defaultFile}.previous`;
      if (source === 'default') {
        // Kept before anything changes, so the old key is on disk whatever happens next.
        const oldText = await readFile(defaultFile, 'utf8');
        await replaceFileAtomically(previousFile, oldText.endsWith('\n') ? oldText : `${oldText}\n`);
        await restoreOwner(previousFile, owner);
      }

      const registry = await openRegistry(config);
      let count: number;
      try {
        const opened = await openVault(config, registry.db);
        count = await opened.rotateMasterKey(nextKey);
      } catch (error) {
        if (error instanceof VaultError) throw new CommandError(`vault rotation failed, nothing was changed: ${error.message}`);
        throw error;
      } finally {
        await registry.close();
      }

      let replaced = false;
      if (source === 'default') {
        await replaceFileAtomically(defaultFile, `${nextKey.key.toString('base64')}\n`);
        await restoreOwner(defaultFile, owner);
        replaced = true;
      }

      if (flags.json) {
        process.stdout.write(`${JSON.stringify({ rewrapped: count, masterKeyId: nextKey.id, previousMasterKeyId: current.id, source, ...(replaced ? { replacedFile: defaultFile, previousFile } : {}) })}\n`);
        return;
      }
      const out = (line: string) => process.stdout.write(`${line}\n`);
      out(`Re-wrapped ${count} data key${count === 1 ? '' : 's'} under the new master key ${nextKey.id} (was ${current.id}).`);
      if (source === 'default') {
        out(`${defaultFile} now holds the new key; the old one is kept in ${previousFile} (mode 0600).`);
        out('Restart every server that uses this data folder. Servers that take the key from SLIPWAY_MASTER_KEY or vault.masterKeyFile');
        out('need the new key set there. Until every replica has restarted, keep the old key in vault.previousMasterKeys');
        out(`(the content of ${previousFile}); then remove it from there and delete that file.`);
      } else if (source === 'env') {
        out('Next: set SLIPWAY_MASTER_KEY to the new key (the content of the new key file) on every server, and put the old key');
        out('in vault.previousMasterKeys until every replica has restarted with the new one; then remove the old key.');
      } else {
        out(`Next: put the new key in ${config.vault.masterKeyFile} (or point vault.masterKeyFile at the new key file) on every server,`);
        out('and put the old key in vault.previousMasterKeys until every replica has restarted with the new one; then remove the old key.');
      }
    });
}

async function parseMasterKeyText(file: string, parseMasterKey: (text: string, source: string) => MasterKey): Promise<MasterKey> {
  const text = await readSecretFile(file, '--new-key-file');
  try {
    return parseMasterKey(text, `new master key file ${file}`);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}
