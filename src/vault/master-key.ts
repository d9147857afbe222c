/**
 * @module vault/master-key
 * Where the master key comes from. It wraps the vault's data keys and never touches the db;
 * only its fingerprint (`mk-` + 16 hex chars of its sha256) is stored, beside each wrapped key.
 *
 * Sources, first match wins: `SLIPWAY_MASTER_KEY` (env) → a key file named in config → the
 * data folder's own file, created on first start:
 *
 *   <dataDir>/
 *   └── master.key        32 random bytes, base64, mode 0600
 *
 * Key material is never echoed: errors name the source and what is wrong with it, not the text.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

export interface MasterKey {
  /** Fingerprint, safe to store and to show: `mk-<16 hex chars of sha256(key)>`. */
  id: string;
  /** 32 bytes (AES-256). */
  key: Buffer;
}

export interface MasterKeys {
  /** Wraps new data keys and is the target of a rotation. */
  current: MasterKey;
  /** Older keys still accepted for unwrapping while a rotation is under way. */
  previous: MasterKey[];
  /** Set when this call created `<dataDir>/master.key`, so the caller can tell the operator. */
  generatedFile?: string;
}

export interface MasterKeySources {
  /** The value of SLIPWAY_MASTER_KEY, if set. */
  env?: string;
  /** A file holding the key (base64 or hex), e.g. a mounted secret. */
  file?: string;
  /** Older keys (base64 or hex), accepted for unwrapping only. */
  previous?: string[];
  dataDir: string;
}

const keyBytes = 32;
const defaultFileName = 'master.key';

export function masterKeyFromBytes(key: Buffer): MasterKey {
  if (key.length !== keyBytes) throw new Error(`a master key must be ${keyBytes} bytes, got ${key.length}`);
  return { id: `mk-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`, key };
}

/** Base64 (standard or url-safe, padding optional) or hex of exactly 32 bytes. */
export function parseMasterKey(text: string, source = 'master key'): MasterKey {
  const trimmed = text.trim();
  if (trimmed === '') throw new Error(`${source} is empty`);
  if (/^[0-9a-fA-F]+$/.test(trimmed)) {
    if (trimmed.length === keyBytes * 2) return masterKeyFromBytes(Buffer.from(trimmed, 'hex'));
    // Base64 of 32 bytes is 43 or 44 characters; any other all-hex text was meant as hex.
    if (trimmed.length < 43 || trimmed.length > 44) {
      throw new Error(`${source} is ${trimmed.length} hex digits; it must be ${keyBytes * 2} (${keyBytes} bytes)`);
    }
  }
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    throw new Error(`${source} is neither base64 nor hex (it contains other characters); expected ${keyBytes} bytes, e.g. from \`openssl rand -base64 ${keyBytes}\``);
  }
  const unpadded = trimmed.replace(/=+$/, '');
  const bytes = Buffer.from(unpadded.replace(/\+/g, '-').replace(/\//g, '_'), 'base64url');
  // Node's decoder skips what it cannot use; a round trip catches truncated or stray input.
  if (bytes.toString('base64url') !== unpadded.replace(/\+/g, '-').replace(/\//g, '_')) {
    throw new Error(`${source} is not valid base64 (${unpadded.length} characters) nor ${keyBytes * 2} hex digits`);
  }
  if (bytes.length !== keyBytes) {
    throw new Error(`${source} decodes to ${bytes.length} bytes of base64; it must be ${keyBytes} bytes (${keyBytes * 2} hex digits or 44 base64 characters)`);
  }
  return masterKeyFromBytes(bytes);
}

/** Resolves the current master key (env → file → `<dataDir>/master.key`, created if missing). */
export async function loadMasterKeys(options: MasterKeySources): Promise<MasterKeys> {
  let current: MasterKey;
  let generatedFile: string | undefined;
  if (options.env !== undefined && options.env.trim() !== '') {
    current = parseMasterKey(options.env, 'SLIPWAY_MASTER_KEY');
  } else if (options.file !== undefined) {
    // A named file must exist: creating one here would silently start a new, empty vault.
    current = parseMasterKey(await readKeyFile(options.file), `master key file ${options.file}`);
  } else {
    const file = path.join(options.dataDir, defaultFileName);
    const existing = await readKeyFileIfPresent(file);
    if (existing !== null) {
      current = parseMasterKey(existing, `master key file ${file}`);
    } else {
      const created = await createKeyFile(file);
      current = created.key;
      if (created.created) generatedFile = file;
    }
  }
  const previous: MasterKey[] = [];
  for (const [index, text] of (options.previous ?? []).entries()) {
    const key = parseMasterKey(text, `previous master key #${index + 1}`);
    if (key.id !== current.id && !previous.some((p) => p.id === key.id)) previous.push(key);
  }
  return { current, previous, ...(generatedFile ? { generatedFile } : {}) };
}

async function readKeyFile(file: string): Promise<string> {
  const text = await readKeyFileIfPresent(file);
  if (text === null) throw new Error(`master key file ${file} does not exist`);
  return text;
}

async function readKeyFileIfPresent(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/**
 * Writes a fresh key durably: temp file (0600) → fsync → link into place → fsync(dir). A hard
 * link, unlike rename, never replaces a file: when two processes start on an empty data folder
 * at once, one key wins and the other process adopts it instead of wrapping data keys under a
 * key that is then lost.
 */
async function createKeyFile(file: string): Promise<{ key: MasterKey; created: boolean }> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  const key = masterKeyFromBytes(randomBytes(keyBytes));
  const temp = path.join(dir, `.${defaultFileName}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await handle.chmod(0o600); // the umask may have taken bits away, never added them; be explicit
    await handle.writeFile(`${key.key.toString('base64')}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temp, file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      await unlink(temp);
      return { key: parseMasterKey(await readKeyFile(file), `master key file ${file}`), created: false };
    }
    // Filesystems without hard links: rename is still atomic, only not exclusive.
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
    await rename(temp, file);
    await fsyncDir(dir);
    return { key, created: true };
  }
  await unlink(temp);
  await fsyncDir(dir);
  return { key, created: true };
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
