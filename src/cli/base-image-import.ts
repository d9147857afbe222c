/**
 * @module cli/base-image-import
 * `slipway base-image import`: push a root file system (or the ready Node.js recipe) as an image
 * with buildah, logging in to the registry with this machine's Slipway login.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Progress } from './build-progress.js';
import { interruptible, isDirectory, type Env } from './build-session.js';
import { normaliseServerUrl, credentialsPath, readCredentials } from './credentials-store.js';
import { CommandError, UsageError } from './errors.js';
import { readStdinSecret } from './secrets.js';

export interface ImportFlags {
  destination: string;
  rootfs?: string;
  tarball?: string;
  node?: boolean;
  cmd?: string;
  entrypoint?: string;
  env?: string[];
  user?: string;
  workdir?: string;
  username?: string;
  passwordStdin?: boolean;
  insecure?: boolean;
  json?: boolean;
  nodePath?: string;
  busyboxPath?: string;
  storageRoot?: string;
  runRoot?: string;
  storageDriver?: string;
}

/** `--cmd`/`--entrypoint`: a JSON array as is; anything else runs with `/bin/sh -c` (Dockerfile shell form). */
export function parseCommand(value: string, flag: string): string[] {
  const trimmed = value.trim();
  if (trimmed.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      throw new UsageError(`${flag}: "${value}" looks like a JSON array but is not valid JSON`);
    }
    if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((part) => typeof part === 'string')) throw new UsageError(`${flag}: a JSON array of strings, e.g. '["node", "app.js"]'`);
    return parsed as string[];
  }
  if (trimmed === '') throw new UsageError(`${flag}: empty`);
  return ['/bin/sh', '-c', value];
}

function isLoopbackHost(host: string): boolean {
  const name = host.replace(/:\d+$/, '').toLowerCase();
  return name === 'localhost' || name === '[::1]' || /^127\./.test(name);
}

/** The registry login for `host` from this machine's Slipway login (stored, or SLIPWAY_SERVER + SLIPWAY_API_KEY), and whether that server speaks plain HTTP. */
async function storedLoginFor(host: string, env: Env): Promise<{ username: string; password: string; server: string; http: boolean } | undefined> {
  const wanted = host.toLowerCase();
  const envKey = env.SLIPWAY_API_KEY?.trim();
  if (envKey && env.SLIPWAY_SERVER?.trim()) {
    const url = new URL(normaliseServerUrl(env.SLIPWAY_SERVER));
    // Slipway takes an API key in the password field with any user name.
    if (url.host.toLowerCase() === wanted) return { username: 'slipway', password: envKey, server: url.origin, http: url.protocol === 'http:' };
  }
  const data = await readCredentials(credentialsPath(env), (line) => process.stderr.write(`slipway: ${line}\n`));
  const candidates = Object.values(data.servers).filter((entry) => {
    try {
      return new URL(entry.url).host.toLowerCase() === wanted;
    } catch {
      return false;
    }
  });
  const entry = candidates.find((c) => c.url === data.default) ?? candidates[0];
  return entry ? { username: entry.username, password: entry.key, server: entry.url, http: new URL(entry.url).protocol === 'http:' } : undefined;
}

export async function baseImageImportCommand(flags: ImportFlags, env: Env): Promise<void> {
  const sources = [flags.rootfs !== undefined, flags.tarball !== undefined, flags.node === true].filter(Boolean).length;
  if (sources !== 1) throw new UsageError('give exactly one of --rootfs DIR, --tarball FILE or --node');
  if (flags.passwordStdin && !flags.username) throw new UsageError('--password-stdin needs --username');
  if (flags.username && !flags.passwordStdin && !env.SLIPWAY_REGISTRY_PASSWORD) throw new UsageError('--username needs the password: pass --password-stdin (or set SLIPWAY_REGISTRY_PASSWORD)');
  if (flags.rootfs !== undefined && !(await isDirectory(flags.rootfs))) throw new UsageError(`--rootfs ${flags.rootfs}: not a folder`);
  if (flags.tarball !== undefined && !(await stat(flags.tarball).catch(() => undefined))?.isFile()) throw new UsageError(`--tarball ${flags.tarball}: no such file`);
  const { registryHostOf } = await import('../builds/build-driver.js');
  const destination = flags.destination.trim();
  if (!destination || /\s/.test(destination) || destination.includes('://')) throw new UsageError(`--destination ${flags.destination}: give an image reference such as HOST:PORT/slipway/node-base:latest`);
  const host = registryHostOf(destination);
  const environment: Record<string, string> = {};
  for (const pair of flags.env ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--env ${pair}: expected NAME=value`);
    environment[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const cmd = flags.cmd !== undefined ? parseCommand(flags.cmd, '--cmd') : flags.node ? ['node'] : undefined;
  const entrypoint = flags.entrypoint !== undefined ? parseCommand(flags.entrypoint, '--entrypoint') : undefined;
  if (flags.node && !('PATH' in environment)) environment.PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

  let registryAuth: { username: string; password: string } | undefined;
  let httpServer = false;
  if (flags.username) {
    const password = flags.passwordStdin ? await readStdinSecret('--password-stdin') : env.SLIPWAY_REGISTRY_PASSWORD!;
    registryAuth = { username: flags.username, password };
  } else {
    const stored = await storedLoginFor(host, env);
    if (stored) {
      registryAuth = { username: stored.username, password: stored.password };
      httpServer = stored.http;
    }
  }
  const insecure = flags.insecure ?? (isLoopbackHost(host) || httpServer);
  if (flags.node && typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new UsageError('--node needs root: the root file system it assembles has files owned by root and by app (1003)');
  }

  const [{ importBaseImage, assembleNodeRootfs }, { BuildahDriver }, { BuildError }] = await Promise.all([
    import('../builds/base-image.js'), import('../builds/buildah-driver.js'), import('../builds/build-driver.js'),
  ]);
  const driver = new BuildahDriver({
    storage: { root: flags.storageRoot, runRoot: flags.runRoot, driver: flags.storageDriver },
  });
  const progress = new Progress();
  const interrupt = interruptible();
  let rootfsTemp: string | undefined;
  try {
    let source: { rootfsDir: string } | { tarball: string };
    if (flags.node) {
      rootfsTemp = await mkdtemp(path.join(tmpdir(), 'slipway-node-rootfs-'));
      progress.start('assembling a minimal Node.js root file system');
      const made = await assembleNodeRootfs(rootfsTemp, { nodePath: flags.nodePath, busyboxPath: flags.busyboxPath });
      progress.line(`[slipway] Node.js root: ${made.libraries.length} libraries, ${made.applets.length} busybox applets`);
      source = { rootfsDir: rootfsTemp };
    } else {
      progress.start('importing the root file system');
      source = flags.rootfs !== undefined ? { rootfsDir: path.resolve(flags.rootfs) } : { tarball: path.resolve(flags.tarball!) };
    }
    if (interrupt.interrupted()) throw new Error('interrupted');
    progress.setPhase(`building ${destination}`);
    const result = await importBaseImage({
      source, destination, registryAuth, insecureRegistries: insecure ? [host] : [], cmd, entrypoint,
      env: Object.keys(environment).length > 0 ? environment : undefined, user: flags.user, workingDir: flags.workdir,
      driver, signal: interrupt.signal,
    }, (line) => progress.line(line));
    progress.stop(`slipway: imported in ${progress.elapsed()}`);
    process.stdout.write(flags.json
      ? `${JSON.stringify({ reference: destination, digest: result.digest, imageRef: result.imageRef })}\n`
      : `Pushed ${destination}\nDigest: ${result.digest}\n`);
  } catch (error) {
    progress.stop();
    if (interrupt.interrupted()) {
      if (rootfsTemp) await rm(rootfsTemp, { recursive: true, force: true });
      process.stderr.write('slipway: interrupted\n');
      process.exit(130);
    }
    if (error instanceof BuildError) {
      const hint = error.reason === 'push' && !registryAuth ? ` (no registry login for ${host}: log in with \`slipway login\` to that server, or pass --username and --password-stdin)` : '';
      if (error.reason === 'invalid') throw new UsageError(error.message);
      throw new CommandError(`${error.message}${hint}`);
    }
    if (flags.node && error instanceof Error && !(error instanceof UsageError)) throw new CommandError(`assembling the Node.js root file system failed: ${error.message}`);
    throw error;
  } finally {
    interrupt.dispose();
    if (rootfsTemp) await rm(rootfsTemp, { recursive: true, force: true });
  }
}
