/**
 * @module cli/build-commands
 * Builds from the command line, over the artifact-storage API (builds/routes.ts):
 *
 *   build [dir]                 tar.gz the folder, upload it with its Dockerfile, follow the log
 *   component build | get       build a component from a git repository's build spec; fetch it
 *   builds list|get|logs|cancel the builds of a namespace
 *   base-image import           push a root file system (or the ready Node.js recipe) as an image
 *
 * Server and key as for every API command (cli/session-commands.ts): `--server`,
 * SLIPWAY_SERVER + SLIPWAY_API_KEY, or the last `slipway login`. Results go to stdout (the image
 * reference, the build id, a table), build logs and progress to stderr, so `ref=$(slipway build
 * …)` works; on a terminal a status line shows the phase and the elapsed time
 * (cli/build-progress.ts). Exit codes: 0 ok; 1 the build failed or was cancelled, or the API
 * said no (its message is shown); 2 usage errors; 130 interrupted (Ctrl-C cancels the build
 * being followed first).
 */
import { execFile } from 'node:child_process';
import { openAsBlob } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { create as createTar } from 'tar';
import { BuildApi, nsPath, terminalStatuses, type BuildView, type ComponentRef } from './build-client.js';
import { formatBytes, formatElapsed, Progress } from './build-progress.js';
import { normaliseServerUrl, credentialsPath, readCredentials } from './credentials-store.js';
import { CommandError, UsageError } from './errors.js';
import { readStdinSecret } from './secrets.js';
import { explain, resolveSession, type Session } from './session-commands.js';

type Env = Record<string, string | undefined>;

const defaultArchitecture = 'linux/amd64';
const maxDockerfileBytes = 1024 * 1024;
const kinds = ['image', 'component'] as const;
const statuses = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;

interface ServerFlags {
  server?: string;
  namespace: string;
}

function serverOptions(command: Command): Command {
  return command
    .option('--server <url>', 'Slipway server (default: SLIPWAY_SERVER, else the server of the last `slipway login`)')
    .requiredOption('-n, --namespace <namespace>', 'the namespace');
}

async function withApi<T>(flags: { server?: string }, env: Env, fn: (api: BuildApi, session: Session) => Promise<T>): Promise<T> {
  const session = await resolveSession(flags.server, env);
  try {
    return await fn(await BuildApi.forSession(session, env), session);
  } catch (error) {
    throw explain(error, session);
  }
}

/**
 * Ctrl-C while a command runs: the first one aborts `signal` (the command then cancels what it
 * started and exits 130), a second one exits at once.
 */
function interruptible(): { signal: AbortSignal; interrupted(): boolean; dispose(): void } {
  const controller = new AbortController();
  const onSignal = () => {
    if (controller.signal.aborted) process.exit(130);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  return {
    signal: controller.signal,
    interrupted: () => controller.signal.aborted,
    dispose: () => process.off('SIGINT', onSignal),
  };
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a whole number of at least 1');
  return n;
}

/** `--build-arg K=V` (or `K`: the value of K in the environment, as docker does) → an object. */
export function parseBuildArgs(values: string[], env: Env): Record<string, string> {
  const args: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    const name = eq < 0 ? value : value.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new UsageError(`--build-arg ${value}: expected NAME=value (NAME of letters, digits and _)`);
    if (eq < 0) {
      const fromEnv = env[name];
      if (fromEnv === undefined) throw new UsageError(`--build-arg ${name}: no value given and ${name} is not set in the environment`);
      args[name] = fromEnv;
    } else {
      args[name] = value.slice(eq + 1);
    }
  }
  return args;
}

/** The checked-out branch of the git work tree at `dir`; undefined when none (not a repository, detached HEAD, no git). */
export function gitBranch(dir: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('git', ['-C', dir, 'symbolic-ref', '--short', '-q', 'HEAD'], { timeout: 10_000, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } }, (error, stdout) => {
      const branch = String(stdout ?? '').trim();
      resolve(error || !branch ? undefined : branch);
    });
  });
}

function stateText(status: string, id: string): string {
  switch (status) {
    case 'queued': return `build ${id} queued, waiting for a worker`;
    case 'running': return `build ${id} running`;
    case 'reconnecting': return `build ${id}: the log stream broke off, reconnecting`;
    default: return `build ${id} ${status}`;
  }
}

/** Follows a build to its end on `progress`; Ctrl-C (through `signal`) cancels it and exits 130. */
async function followBuild(api: BuildApi, namespace: string, build: BuildView, progress: Progress, signal: AbortSignal): Promise<BuildView> {
  progress.setPhase(stateText(build.status, build.id));
  try {
    return await api.followLog(namespace, build.id, { line: (text) => progress.line(text), state: (status) => progress.setPhase(stateText(status, build.id)) }, signal);
  } catch (error) {
    if (signal.aborted) await cancelOnInterrupt(api, namespace, build.id, progress);
    throw error;
  }
}

async function cancelOnInterrupt(api: BuildApi, namespace: string, id: string, progress: Progress): Promise<never> {
  progress.stop(`slipway: interrupted: cancelling build ${id}`);
  try {
    const view = await api.cancelBuild(namespace, id, 10_000);
    process.stderr.write(`slipway: build ${id} ${view.status === 'cancelled' ? 'cancelled' : view.status === 'running' ? 'is being cancelled' : `already ${view.status}`}\n`);
  } catch (error) {
    process.stderr.write(`slipway: could not cancel build ${id}: ${(error as Error).message}\n`);
  }
  process.exit(130);
}

/** `build X failed: why` / `build X was cancelled (cancelled by admin)`. */
function outcome(build: BuildView): string {
  const message = build.errorMessage ?? '';
  if (build.status === 'cancelled') return `build ${build.id} was cancelled${message && message !== 'cancelled' ? ` (${message})` : ''}`;
  return `build ${build.id} ${build.status}${message ? `: ${message}` : ''}`;
}

/** The end of a followed build: the reference (or JSON) on stdout; a failure is a CommandError (exit 1). */
function report(build: BuildView, progress: Progress, json: boolean | undefined): void {
  if (build.status === 'succeeded') {
    progress.stop(`slipway: build ${build.id} succeeded in ${progress.elapsed()}`);
    process.stdout.write(json ? `${JSON.stringify(build)}\n` : `${build.imageName}@${build.digest}\n`);
    return;
  }
  progress.stop();
  if (json) process.stdout.write(`${JSON.stringify(build)}\n`);
  throw new CommandError(outcome(build));
}

async function isDirectory(dir: string): Promise<boolean> {
  return (await stat(dir).catch(() => undefined))?.isDirectory() === true;
}

// ---------------------------------------------------------------- slipway build

interface BuildFlags extends ServerFlags {
  component: string;
  branch?: string;
  architecture: string;
  tag?: string;
  buildArg?: string[];
  file?: string;
  follow: boolean;
  json?: boolean;
}

async function buildCommand(dirArg: string | undefined, flags: BuildFlags, env: Env): Promise<void> {
  const dir = path.resolve(dirArg ?? '.');
  if (!(await isDirectory(dir))) throw new UsageError(`${dir} is not a folder: give the build context folder`);
  const dockerfilePath = flags.file !== undefined ? path.resolve(flags.file) : path.join(dir, 'Dockerfile');
  const info = await stat(dockerfilePath).catch(() => undefined);
  if (!info?.isFile()) throw new UsageError(flags.file !== undefined ? `-f ${flags.file}: no such file` : `no Dockerfile in ${dir}: add one, or name it with -f`);
  if (info.size > maxDockerfileBytes) throw new UsageError(`${dockerfilePath} is larger than ${formatBytes(maxDockerfileBytes)}`);
  const buildArgs = parseBuildArgs(flags.buildArg ?? [], env);
  const branch = flags.branch ?? (await gitBranch(dir)) ?? 'main';

  await withApi(flags, env, async (api) => {
    const progress = new Progress();
    const interrupt = interruptible();
    const work = await mkdtemp(path.join(tmpdir(), 'slipway-context-'));
    try {
      progress.start(`packing ${dir}`);
      const archive = path.join(work, 'context.tar.gz');
      await createTar({ gzip: true, cwd: dir, portable: true, file: archive }, ['.']);
      const bytes = (await stat(archive)).size;
      if (interrupt.interrupted()) throw new Error('interrupted');
      const form = new FormData();
      form.set('component', flags.component);
      form.set('branch', branch);
      form.set('architecture', flags.architecture);
      if (flags.tag !== undefined) form.set('tag', flags.tag);
      if (Object.keys(buildArgs).length > 0) form.set('buildArgs', JSON.stringify(buildArgs));
      form.set('dockerfile', new Blob([await readFile(dockerfilePath)]), 'Dockerfile');
      form.set('context', await openAsBlob(archive), 'context.tar.gz');
      progress.setPhase(`uploading the context (${formatBytes(bytes)}) for ${flags.component}, branch ${branch}, ${flags.architecture}`);
      let build: BuildView;
      try {
        build = await api.submitImage(flags.namespace, form, { bytes, signal: interrupt.signal });
      } finally {
        await rm(work, { recursive: true, force: true });
      }
      if (!flags.follow) {
        progress.stop(`slipway: build ${build.id} ${build.status}: ${build.imageName ?? ''}`);
        process.stdout.write(flags.json ? `${JSON.stringify(build)}\n` : `${build.id}\n`);
        return;
      }
      report(await followBuild(api, flags.namespace, build, progress, interrupt.signal), progress, flags.json);
    } catch (error) {
      if (interrupt.interrupted()) {
        progress.stop('slipway: interrupted');
        await rm(work, { recursive: true, force: true });
        process.exit(130);
      }
      progress.stop();
      throw error;
    } finally {
      interrupt.dispose();
      await rm(work, { recursive: true, force: true });
    }
  });
}

// ---------------------------------------------------------------- slipway component

interface ComponentBuildFlags extends ServerFlags {
  url: string;
  component: string;
  tag: string;
  architecture: string;
  follow: boolean;
  json?: boolean;
}

interface ComponentGetFlags extends ServerFlags {
  component: string;
  tag: string;
  architecture: string;
  output?: string;
  ref?: boolean;
  url?: string;
  json?: boolean;
}

async function componentBuildCommand(flags: ComponentBuildFlags, env: Env): Promise<void> {
  await withApi(flags, env, async (api) => {
    const progress = new Progress();
    const interrupt = interruptible();
    try {
      progress.start(`submitting ${flags.component} ${flags.tag} (${flags.architecture})`);
      const build = await api.submitComponent(flags.namespace, { url: flags.url, component: flags.component, tag: flags.tag, architecture: flags.architecture }, interrupt.signal);
      if (!flags.follow) {
        progress.stop(`slipway: build ${build.id} ${build.status}: ${build.imageName ?? ''}`);
        process.stdout.write(flags.json ? `${JSON.stringify(build)}\n` : `${build.id}\n`);
        return;
      }
      report(await followBuild(api, flags.namespace, build, progress, interrupt.signal), progress, flags.json);
    } catch (error) {
      if (interrupt.interrupted()) {
        progress.stop('slipway: interrupted');
        process.exit(130);
      }
      progress.stop();
      throw error;
    } finally {
      interrupt.dispose();
    }
  });
}

async function componentGetCommand(flags: ComponentGetFlags, env: Env): Promise<void> {
  if (flags.ref && flags.output !== undefined) throw new UsageError('give either -o FILE or --ref, not both');
  if (flags.json && !flags.ref) throw new UsageError('--json goes with --ref (the archive itself is not JSON)');
  const output = flags.output ?? `${flags.component}-${flags.tag}.tar.gz`;
  if (output !== '-' && !(await isDirectory(path.dirname(path.resolve(output))))) throw new UsageError(`-o ${output}: the folder ${path.dirname(path.resolve(output))} does not exist`);
  await withApi(flags, env, async (api) => {
    const query = (format: 'ref' | 'tar') => {
      const params = new URLSearchParams({ component: flags.component, tag: flags.tag, architecture: flags.architecture, format });
      if (format === 'ref') params.set('wait', 'false');
      if (flags.url !== undefined) params.set('url', flags.url);
      return `${nsPath(flags.namespace)}/components?${params.toString()}`;
    };
    const progress = new Progress();
    const interrupt = interruptible();
    try {
      // First the reference, without waiting: a missing component is built now, and followed here.
      let answer = await api.jsonWithStatus<ComponentRef | BuildView>('GET', query('ref'), { signal: interrupt.signal });
      if (answer.status === 202) {
        const build = answer.body as BuildView;
        progress.start(`${flags.component} ${flags.tag} does not exist yet: building it`);
        const done = await followBuild(api, flags.namespace, build, progress, interrupt.signal);
        if (done.status !== 'succeeded') report(done, progress, false);
        progress.stop(`slipway: build ${done.id} succeeded in ${progress.elapsed()}`);
        answer = await api.jsonWithStatus<ComponentRef>('GET', query('ref'), { signal: interrupt.signal });
      }
      const ref = answer.body as ComponentRef;
      if (answer.status !== 200 || typeof ref.reference !== 'string') throw new CommandError(`component ${flags.component} ${flags.tag}: unexpected answer (${answer.status})`);
      if (flags.ref) {
        progress.stop();
        process.stdout.write(flags.json ? `${JSON.stringify(ref)}\n` : `${ref.reference}\n`);
        return;
      }
      progress.start(`downloading ${flags.component} ${flags.tag} (${flags.architecture})`);
      const { bytes, digest } = await api.download(query('tar'), output === '-' ? '-' : path.resolve(output), { signal: interrupt.signal });
      progress.stop();
      if (output !== '-') process.stdout.write(`${output} (${formatBytes(bytes)}, ${digest})\n`);
    } catch (error) {
      if (interrupt.interrupted()) {
        progress.stop('slipway: interrupted');
        process.exit(130);
      }
      progress.stop();
      throw error;
    } finally {
      interrupt.dispose();
    }
  });
}

// ---------------------------------------------------------------- slipway builds

function duration(build: BuildView): string {
  if (!build.startedAt) return '-';
  const end = build.finishedAt ? Date.parse(build.finishedAt) : Date.now();
  return formatElapsed(end - Date.parse(build.startedAt));
}

function when(iso: string | null): string {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-';
}

export function buildsTable(rows: BuildView[]): string {
  const header = ['ID', 'KIND', 'COMPONENT', 'BRANCH/TAG', 'ARCH', 'STATUS', 'CREATED', 'DURATION'];
  const cells = rows.map((b) => [
    b.id, b.kind, b.component ?? '-', b.kind === 'image' ? `${b.branch ?? '-'}:${b.tag ?? 'latest'}` : (b.tag ?? '-'),
    b.architecture, b.status, when(b.createdAt), duration(b),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [header, ...cells].map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function describeBuild(b: BuildView): string {
  const lines: Array<[string, string | null | undefined]> = [
    ['id', b.id], ['kind', b.kind], ['status', b.status], ['component', b.component], ['branch', b.branch], ['tag', b.tag],
    ['architecture', b.architecture], ['image', b.imageName], ['digest', b.digest], ['error', b.errorMessage],
    ['requested by', b.requestedBy], ['created', when(b.createdAt)], ['started', when(b.startedAt)], ['finished', when(b.finishedAt)],
    ['phases', Object.keys(b.phases ?? {}).length ? Object.entries(b.phases).map(([k, v]) => `${k} ${formatElapsed(v)}`).join(', ') : null],
    ['pull', b.pullCommand],
  ];
  return lines.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => `${`${k}:`.padEnd(14)}${v}`).join('\n') + '\n';
}

async function buildsLogsCommand(id: string, flags: ServerFlags & { follow?: boolean }, env: Env): Promise<void> {
  await withApi(flags, env, async (api) => {
    if (!flags.follow) {
      process.stdout.write(await api.logText(flags.namespace, id));
      return;
    }
    const interrupt = interruptible();
    try {
      const build = await api.followLog(flags.namespace, id, { line: (text) => process.stdout.write(`${text}\n`) }, interrupt.signal);
      if (build.status !== 'succeeded') throw new CommandError(outcome(build));
      process.stderr.write(`slipway: build ${id} succeeded: ${build.imageName}@${build.digest}\n`);
    } catch (error) {
      // Stopping to watch does not stop the build.
      if (interrupt.interrupted()) process.exit(130);
      throw error;
    } finally {
      interrupt.dispose();
    }
  });
}

async function buildsCancelCommand(id: string, flags: ServerFlags & { wait: boolean; json?: boolean }, env: Env): Promise<void> {
  await withApi(flags, env, async (api) => {
    const before = await api.getBuild(flags.namespace, id);
    if (terminalStatuses.has(before.status)) {
      process.stderr.write(`slipway: build ${id} already ended (${before.status}); nothing to cancel\n`);
      if (flags.json) process.stdout.write(`${JSON.stringify(before)}\n`);
      return;
    }
    let build = await api.cancelBuild(flags.namespace, id);
    // A running build stops when its worker sees the request: wait for that (up to a minute).
    const deadline = Date.now() + 60_000;
    while (flags.wait && !terminalStatuses.has(build.status) && Date.now() < deadline) {
      await sleep(500);
      build = await api.getBuild(flags.namespace, id);
    }
    if (flags.json) process.stdout.write(`${JSON.stringify(build)}\n`);
    else if (build.status === 'cancelled') process.stdout.write(`Cancelled ${id}\n`);
    else if (terminalStatuses.has(build.status)) process.stdout.write(`Build ${id} ended before it could be cancelled: ${build.status}\n`);
    else process.stdout.write(`Cancellation of ${id} requested (still ${build.status})\n`);
  });
}

// ---------------------------------------------------------------- slipway base-image import

interface ImportFlags {
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

async function baseImageImportCommand(flags: ImportFlags, env: Env): Promise<void> {
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

// ---------------------------------------------------------------- registration

export function registerBuildCommands(program: Command, env: Env): void {
  serverOptions(program.command('build').description('build an image from a folder and its Dockerfile on the server; prints the image reference'))
    .argument('[dir]', 'the build context folder', '.')
    .requiredOption('--component <name>', 'component the image belongs to (part of its name)')
    .option('--branch <branch>', 'branch (part of the image name; default: the git branch checked out in DIR, else "main")')
    .option('--architecture <arch>', 'build environment', defaultArchitecture)
    .option('--tag <tag>', 'image tag (default latest)')
    .option('--build-arg <NAME=value>', 'a build argument (repeatable; NAME alone takes the value from the environment)', collect)
    .option('-f, --file <Dockerfile>', 'the Dockerfile (default DIR/Dockerfile)')
    .option('--no-follow', 'print the build id once submitted instead of following the log')
    .option('--json', 'print the build record as JSON instead of the reference')
    .addHelpText('after', '\nThe folder is uploaded as a tar.gz; the server applies its .dockerignore. The log and progress go to\nstderr, the reference (IMAGE:TAG@sha256:…) to stdout. Ctrl-C cancels the build. Exit 1 when the build fails.')
    .action((dir: string | undefined, flags: BuildFlags) => buildCommand(dir, flags, env));

  const component = program.command('component').description('components: build outputs of a git repository\'s build_spec.yaml, kept as OCI artifacts');
  serverOptions(component.command('build').description('build a component from a git repository at a tag; prints its reference'))
    .requiredOption('--url <url>', 'git repository URL the server clones')
    .requiredOption('--component <name>', 'component name')
    .requiredOption('--tag <tag>', 'git tag (or branch) to build, and the version of the component')
    .option('--architecture <arch>', 'build environment', defaultArchitecture)
    .option('--no-follow', 'print the build id once submitted instead of following the log')
    .option('--json', 'print the build record as JSON instead of the reference')
    .action((flags: ComponentBuildFlags) => componentBuildCommand(flags, env));
  serverOptions(component.command('get').description('download a component as tar.gz (building it first when missing), or print its reference'))
    .requiredOption('--component <name>', 'component name')
    .requiredOption('--tag <tag>', 'version (git tag)')
    .option('--architecture <arch>', 'build environment', defaultArchitecture)
    .option('-o, --output <file>', 'where to save it ("-" for stdout; default COMPONENT-TAG.tar.gz)')
    .option('--ref', 'print the registry reference instead of downloading')
    .option('--url <url>', 'git repository to build it from when missing (default: the one its last build used)')
    .option('--json', 'with --ref: print the whole answer as JSON')
    .action((flags: ComponentGetFlags) => componentGetCommand(flags, env));

  const builds = program.command('builds').description('builds of a namespace: list, inspect, follow, cancel');
  serverOptions(builds.command('list').alias('ls').description('list recent builds, newest first'))
    .addOption(new Option('--kind <kind>', 'only image or component builds').choices(kinds))
    .option('--component <name>', 'only builds of this component')
    .addOption(new Option('--status <status>', 'only builds in this state').choices(statuses))
    .option('--limit <n>', 'at most this many (default 50, at most 500)', positiveInt)
    .option('--json', 'print JSON')
    .action(async (flags: ServerFlags & { kind?: string; component?: string; status?: string; limit?: number; json?: boolean }) => {
      await withApi(flags, env, async (api) => {
        const rows = await api.listBuilds(flags.namespace, { kind: flags.kind, component: flags.component, status: flags.status, limit: flags.limit });
        if (flags.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
        else if (rows.length === 0) process.stdout.write(`no builds in namespace "${flags.namespace}"${flags.kind || flags.component || flags.status ? ' matching the filter' : ''}\n`);
        else process.stdout.write(buildsTable(rows));
      });
    });
  serverOptions(builds.command('get').description('show one build'))
    .argument('<id>', 'build id (see `slipway builds list`)')
    .option('--json', 'print JSON')
    .action(async (id: string, flags: ServerFlags & { json?: boolean }) => {
      await withApi(flags, env, async (api) => {
        const build = await api.getBuild(flags.namespace, id);
        process.stdout.write(flags.json ? `${JSON.stringify(build)}\n` : describeBuild(build));
      });
    });
  serverOptions(builds.command('logs').description('print the log of a build'))
    .argument('<id>', 'build id (see `slipway builds list`)')
    .option('-f, --follow', 'follow the log live until the build ends (exit 1 when it failed or was cancelled)')
    .action((id: string, flags: ServerFlags & { follow?: boolean }) => buildsLogsCommand(id, flags, env));
  serverOptions(builds.command('cancel').description('cancel a queued or running build'))
    .argument('<id>', 'build id (see `slipway builds list`)')
    .option('--no-wait', 'return once the cancellation is requested, without waiting for the build to stop')
    .option('--json', 'print the build record as JSON')
    .action((id: string, flags: ServerFlags & { wait: boolean; json?: boolean }) => buildsCancelCommand(id, flags, env));

  const baseImage = program.command('base-image').description('base images without a network');
  baseImage.command('import')
    .description('push a root file system as an image with buildah (--node: a minimal Node.js root assembled from this host)')
    .requiredOption('--destination <ref>', 'image reference to push, e.g. HOST:PORT/slipway/node-base:latest')
    .option('--rootfs <dir>', 'a folder holding the root file system')
    .option('--tarball <file>', 'a tar (optionally gzip/xz/bzip2-compressed) of the root file system')
    .option('--node', 'assemble a minimal Node.js root from this host: its node and libraries, static busybox, users root and app (1003); needs root')
    .option('--cmd <command>', 'default command: a JSON array (["node", "app.js"]) or a shell command line (default for --node: ["node"])')
    .option('--entrypoint <command>', 'entrypoint, as --cmd')
    .option('--env <NAME=value>', 'an environment variable of the image (repeatable)', collect)
    .option('--user <user>', 'user[:group] the image runs as, e.g. 1003:1003')
    .option('--workdir <dir>', 'working directory of the image')
    .option('--username <name>', 'registry user name (default: the `slipway login` of the destination\'s server, with its API key)')
    .option('--password-stdin', 'read the registry password from stdin (or set SLIPWAY_REGISTRY_PASSWORD)')
    .option('--insecure', 'push over plain HTTP (default for 127.0.0.1, localhost and servers logged in to with http://)')
    .option('--no-insecure', 'push over HTTPS even to a local address')
    .option('--json', 'print {reference, digest, imageRef} as JSON')
    .option('--node-path <file>', 'with --node: the node binary (default the one running slipway)')
    .option('--busybox-path <file>', 'with --node: a statically linked busybox (default /bin/busybox)')
    .addOption(new Option('--storage-root <dir>', 'buildah --root (a store of its own)').hideHelp())
    .addOption(new Option('--run-root <dir>', 'buildah --runroot').hideHelp())
    .addOption(new Option('--storage-driver <driver>', 'buildah --storage-driver').choices(['overlay', 'vfs']).hideHelp())
    .addHelpText('after', '\nNothing stays in the local buildah store afterwards. Prints the pushed reference and its digest.')
    .action((flags: ImportFlags) => baseImageImportCommand(flags, env));
}
