/**
 * @module cli/session-commands
 * `slipway login` and `slipway logout`, and how the API commands find their server and key.
 *
 * `login <url>` checks the user name and password (`GET /api/v1/me`, basic auth), makes an API
 * key `cli@<hostname>` (all scopes, 90 days) and stores it, never the password, in the
 * credentials file (cli/credentials-store.ts); the latest login becomes the default server.
 * A second login to the same server replaces (and revokes) the key stored before.
 * `logout [url]` revokes the key on the server and forgets it.
 *
 * API commands use, first match wins: `--server`, `SLIPWAY_SERVER`, the default server; and
 * `SLIPWAY_API_KEY` (for CI) or the key stored for that server.
 */
import os from 'node:os';
import type { Command } from 'commander';
import { ApiClient, ApiRequestError } from './client.js';
import { credentialsPath, nextDefault, normaliseServerUrl, readCredentials, writeCredentials } from './credentials-store.js';
import { CommandError, UsageError } from './errors.js';
import { promptHidden, readStdinSecret } from './secrets.js';

type Env = Record<string, string | undefined>;

const keyLifetime = '90d';

const warn = (line: string) => {
  process.stderr.write(`slipway: ${line}\n`);
};

export interface Session {
  url: string;
  client: ApiClient;
  /** Where the key came from, for hints in errors. */
  keySource: 'env' | 'file';
}

/** The server and API key an API command uses (see the module comment). */
export async function resolveSession(serverFlag: string | undefined, env: Env): Promise<Session> {
  const envKey = env.SLIPWAY_API_KEY?.trim() || undefined;
  let url: string | undefined = serverFlag ?? (env.SLIPWAY_SERVER?.trim() || undefined);
  if (url !== undefined) url = normaliseServerUrl(url);
  if (envKey) {
    if (!url) throw new UsageError('SLIPWAY_API_KEY is set but no server is: set SLIPWAY_SERVER or pass --server');
    return { url, client: new ApiClient(url, { kind: 'bearer', key: envKey }), keySource: 'env' };
  }
  const file = credentialsPath(env);
  const data = await readCredentials(file, warn);
  url ??= data.default;
  if (!url) throw new UsageError('not logged in: run `slipway login <url> --username <name> --password-stdin` (or set SLIPWAY_SERVER and SLIPWAY_API_KEY)');
  const entry = data.servers[url];
  if (!entry) throw new UsageError(`not logged in to ${url}: run \`slipway login ${url} --username <name> --password-stdin\` (or set SLIPWAY_API_KEY)`);
  return { url, client: new ApiClient(url, { kind: 'bearer', key: entry.key }), keySource: 'file' };
}

/** Adds what to do about a rejected key to an API error. */
/** Runs `fn` with the session of `--server` (or the stored/env one); a 401 gets a login hint. */
export async function withSession<T>(flags: { server?: string }, env: Env, fn: (session: Session) => Promise<T>): Promise<T> {
  const session = await resolveSession(flags.server, env);
  try {
    return await fn(session);
  } catch (error) {
    throw explain(error, session);
  }
}

export function explain(error: unknown, session: Session): unknown {
  if (error instanceof ApiRequestError && error.status === 401) {
    const hint = session.keySource === 'env'
      ? 'the key in SLIPWAY_API_KEY was not accepted (revoked or expired?)'
      : `the stored API key was not accepted (revoked or expired?): run \`slipway login ${session.url}\` again`;
    return new CommandError(`${error.message}\n${hint}`);
  }
  return error;
}

function isLoopback(url: string): boolean {
  const host = new URL(url).hostname;
  return host === 'localhost' || host === '[::1]' || /^127\./.test(host);
}

export function registerSessionCommands(program: Command, env: Env): void {
  program.command('login')
    .description('log in to a Slipway server: makes an API key for this machine and stores it (not the password)')
    .argument('<url>', 'server URL, e.g. https://slipway.example.com')
    .requiredOption('-u, --username <name>', 'user name')
    .option('--password-stdin', 'read the password from stdin')
    .option('-p, --password <password>', 'the password (insecure: visible in shell history and ps; prefer --password-stdin)')
    .addHelpText('after', '\nThe password may also come from SLIPWAY_PASSWORD; in a terminal you are asked for it.\nCredentials are stored in $SLIPWAY_CLI_CONFIG, else $XDG_CONFIG_HOME/slipway/credentials.json, else ~/.config/slipway/credentials.json.')
    .action(async (urlArg: string, flags: { username: string; password?: string; passwordStdin?: boolean }) => {
      const url = normaliseServerUrl(urlArg);
      if (flags.password !== undefined && flags.passwordStdin) throw new UsageError('give either --password or --password-stdin, not both');
      if (flags.username.trim() === '') throw new UsageError('--username: empty');
      // Check the local file first, so a broken one does not leave a key behind on the server.
      const file = credentialsPath(env);
      await readCredentials(file, warn);
      let password: string;
      if (flags.passwordStdin) password = await readStdinSecret('--password-stdin');
      else if (flags.password !== undefined) {
        warn('warning: a password on the command line is visible in shell history and to other users (ps); use --password-stdin');
        password = flags.password;
      } else if (env.SLIPWAY_PASSWORD) password = env.SLIPWAY_PASSWORD;
      else password = await promptHidden(`Password for ${flags.username} at ${url}: `);
      if (password === '') throw new UsageError('the password is empty');
      if (new URL(url).protocol === 'http:' && !isLoopback(url)) warn(`warning: ${url} is plain http: the password and the API key travel unencrypted`);

      const basic = new ApiClient(url, { kind: 'basic', username: flags.username, password });
      let me;
      try {
        me = await basic.me();
      } catch (error) {
        if (error instanceof ApiRequestError && error.status === 401) throw new CommandError(`login to ${url} failed: ${error.message}`);
        throw error;
      }
      const created = await basic.createKey({ name: `cli@${os.hostname()}`, scopes: ['*'], expiresIn: keyLifetime });
      // Re-read: another login may have written the file meanwhile.
      const data = await readCredentials(file, warn);
      const previous = data.servers[url];
      data.servers[url] = {
        url, username: me.name, key: created.key, keyId: created.id, keyName: created.name, expiresAt: created.expiresAt, loggedInAt: new Date().toISOString(),
      };
      data.default = url;
      try {
        await writeCredentials(file, data);
      } catch (error) {
        // Do not leave a working key nobody has.
        await new ApiClient(url, { kind: 'bearer', key: created.key }).revokeKey(created.id).catch(() => undefined);
        throw new UsageError(`cannot write the credentials file ${file}: ${(error as Error).message}`);
      }
      if (previous && previous.keyId !== created.id) {
        try {
          // With the old key itself: it may belong to another user than this login.
          await new ApiClient(url, { kind: 'bearer', key: previous.key }).revokeKey(previous.keyId);
        } catch (error) {
          if (!(error instanceof ApiRequestError && (error.status === 401 || error.status === 404))) {
            warn(`warning: could not revoke the API key stored before (${previous.keyId}): ${(error as Error).message}`);
          }
        }
      }
      process.stdout.write(`Logged in to ${url} as ${me.name}\n`);
      process.stderr.write(`API key ${created.name} (${created.id}${created.expiresAt ? `, expires ${created.expiresAt}` : ''}) stored in ${file}\n`);
    });

  program.command('logout')
    .description('revoke the API key of `slipway login` on the server and forget it')
    .argument('[url]', 'server URL (default: the default server)')
    .option('--force', 'forget the key even when the server cannot be reached to revoke it')
    .action(async (urlArg: string | undefined, flags: { force?: boolean }) => {
      const file = credentialsPath(env);
      const data = await readCredentials(file, warn);
      const url = urlArg !== undefined ? normaliseServerUrl(urlArg) : data.default;
      if (!url) throw new UsageError('not logged in to any server');
      const entry = data.servers[url];
      if (!entry) throw new UsageError(`not logged in to ${url}`);
      try {
        await new ApiClient(url, { kind: 'bearer', key: entry.key }).revokeKey(entry.keyId);
      } catch (error) {
        if (error instanceof ApiRequestError && (error.status === 401 || error.status === 404)) {
          warn(`the stored key was no longer valid on ${url} (already revoked or expired)`);
        } else if (flags.force) {
          warn(`warning: could not revoke API key ${entry.keyId} on the server (${(error as Error).message}); forgetting it anyway: revoke it there (DELETE /api/v1/keys/${entry.keyId})`);
        } else {
          throw new CommandError(`${(error as Error).message}\nthe key is still stored; try again, or use --force to forget it without revoking it`);
        }
      }
      const fresh = await readCredentials(file, warn);
      delete fresh.servers[url];
      if (fresh.default === url || (fresh.default !== undefined && !fresh.servers[fresh.default])) {
        const next = nextDefault(fresh);
        if (next) fresh.default = next;
        else delete fresh.default;
      }
      await writeCredentials(file, fresh);
      process.stdout.write(`Logged out of ${url}\n`);
    });
}
