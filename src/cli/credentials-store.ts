/**
 * @module cli/credentials-store
 * The `slipway` command's own credentials: one API key per server, made by `slipway login`.
 *
 *   $SLIPWAY_CLI_CONFIG                         when set
 *   $XDG_CONFIG_HOME/slipway/credentials.json   else, when XDG_CONFIG_HOME is an absolute path
 *   ~/.config/slipway/credentials.json          else
 *
 *   { "version": 1,
 *     "default": "https://slipway.example.com",
 *     "servers": { "https://slipway.example.com": { "url", "username", "key", "keyId", … } } }
 *
 * Servers are keyed by their normalised URL; the latest login becomes the default. The file
 * holds API keys (never passwords), so it is written atomically (temp file → fsync → rename)
 * with mode 0600 in a folder made with mode 0700.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from './errors.js';

export interface StoredServer {
  url: string;
  username: string;
  /** The API key (`slw_<id>.<secret>`). */
  key: string;
  keyId: string;
  keyName: string;
  expiresAt: string | null;
  loggedInAt: string;
}

export interface CredentialsFile {
  version: 1;
  /** URL of the server commands talk to when neither --server nor SLIPWAY_SERVER says. */
  default?: string;
  servers: Record<string, StoredServer>;
}

/** Where the credentials file is, from the environment (see the module comment). */
export function credentialsPath(env: Record<string, string | undefined>): string {
  if (env.SLIPWAY_CLI_CONFIG) return path.resolve(env.SLIPWAY_CLI_CONFIG);
  // The XDG spec says relative values are invalid and must be ignored.
  if (env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME)) return path.join(env.XDG_CONFIG_HOME, 'slipway', 'credentials.json');
  const home = env.HOME || os.homedir();
  return path.join(home, '.config', 'slipway', 'credentials.json');
}

/**
 * A server URL as the key of the file: `scheme://host[:port][/path]`, lower-case host, no
 * trailing slash, no query, no user info. Throws a UsageError for anything else.
 */
export function normaliseServerUrl(text: string): string {
  const trimmed = text.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    throw new UsageError(`server URL "${trimmed}" has no scheme: give it as https://HOST[:PORT] (or http:// for a local server)`);
  }
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new UsageError(`"${trimmed}" is not a URL; expected https://HOST[:PORT]`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`server URL ${trimmed}: only http:// and https:// are supported`);
  if (url.username || url.password) throw new UsageError('put the user name in --username and the password on stdin, not in the server URL');
  if (url.search || url.hash) throw new UsageError(`server URL ${url.origin}${url.pathname}: leave out the query and fragment`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** The file's content; an empty store when it does not exist. */
export async function readCredentials(file: string, warn: (line: string) => void = () => undefined): Promise<CredentialsFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, servers: {} };
    throw new UsageError(`cannot read the credentials file ${file}: ${(error as Error).message}`);
  }
  try {
    const mode = (await stat(file)).mode & 0o777;
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) warn(`warning: ${file} is readable by others (mode ${mode.toString(8)}); run chmod 600 ${file}`);
  } catch {
    // gone in between: the read above still holds
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`the credentials file ${file} is not valid JSON; fix it or remove it and log in again`);
  }
  const data = parsed as Partial<CredentialsFile> | null;
  if (!data || typeof data !== 'object' || data.version !== 1 || typeof data.servers !== 'object' || data.servers === null || Array.isArray(data.servers)) {
    throw new UsageError(`the credentials file ${file} is not a Slipway CLI credentials file (version 1); fix it or remove it and log in again`);
  }
  for (const [url, entry] of Object.entries(data.servers)) {
    if (!entry || typeof entry !== 'object' || typeof entry.key !== 'string' || typeof entry.keyId !== 'string' || typeof entry.username !== 'string') {
      throw new UsageError(`the credentials file ${file} has a damaged entry for ${url}; remove it (slipway logout --force ${url}) and log in again`);
    }
  }
  return { version: 1, servers: data.servers, ...(typeof data.default === 'string' ? { default: data.default } : {}) };
}

/** Writes the whole file atomically with mode 0600 (its folder is created with mode 0700). */
export async function writeCredentials(file: string, data: CredentialsFile): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    try {
      await handle.chmod(0o600); // the umask only takes bits away; be explicit anyway
      await handle.writeFile(`${JSON.stringify(data, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
  await chmod(file, 0o600).catch(() => undefined);
  await fsyncDir(dir);
}

/** The default server after one was forgotten: the most recent remaining login. */
export function nextDefault(data: CredentialsFile): string | undefined {
  const entries = Object.values(data.servers).sort((a, b) => b.loggedInAt.localeCompare(a.loggedInAt));
  return entries[0]?.url;
}

async function fsyncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, fsConstants.O_RDONLY);
    await handle.sync();
  } catch {
    // some filesystems cannot fsync a folder; the rename is still atomic
  } finally {
    await handle?.close();
  }
}
