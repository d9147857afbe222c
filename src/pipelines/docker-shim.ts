/**
 * @module pipelines/docker-shim
 * The `docker` command of build steps. Steps never get a Docker engine: a small client script
 * (`dockerShimClient` in docker-shim-client.ts, run by Node) is put first on their PATH and
 * forwards the command line over a per-stage unix socket to `DockerShimServer`, which builds and
 * manages images on the step's behalf through the stage's build driver (`BuildDriver`: buildah
 * as root by default) and streams the output back.
 *
 * Supported: `docker build` (`-t/--tag` (several), `-f/--file`, `--build-arg`, `--target`,
 * `--platform`, `--no-cache`, `--label`, accepted and ignored: `--pull`, `--rm`, `--force-rm`,
 * `-q/--quiet`, `--progress`), `docker tag`, `docker images` / `docker image ls`, `docker image
 * inspect` / `docker inspect`, `docker rmi` / `docker image rm`, `docker version`. Everything
 * else exits 1 with a message.
 *
 * Names are scoped to the run (pipelines/run-images): `docker build -t hello:1 .` stores
 * `localhost/slipway-run-<run>/hello:1`, so concurrent runs never see each other's images, and
 * `docker images` lists only the run's own. The build context and the Dockerfile must resolve
 * (symbolic links followed) inside the stage's workspace.
 *
 * Protocol: the client sends one JSON line `{argv, cwd, env}` (`env`: values of `--build-arg NAME`
 * given without a value, taken from the step's environment); the server answers with JSON lines
 * `{"o": text}` (stdout), `{"e": text}` (stderr) and finally `{"x": exitCode}`. A client that goes
 * away (its step was killed) stops the build it asked for.
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { BuildError, type BuildDriver, type LocalImage, type RegistryAuth } from '../builds/index.js';
import { LocalNameError, runImagePrefix, runImagesOf, scopedImageName, unscopedImageName, unscopeText, untaggedRepository } from './run-images.js';

const maxRequestBytes = 1024 * 1024;

export interface DockerShimOptions {
  /** Builds and keeps the run's images (the driver of the stage executor). */
  driver: BuildDriver;
  runId: string;
  /** Host folder of the workspace: build contexts and Dockerfiles must be inside it. */
  workspaceDir: string;
  /** Maps a path as the step sees it to a host path (identity for the shell executor). */
  hostPath: (stepPath: string) => string | null;
  /** A private folder for Dockerfile copies. */
  workDir: string;
  images: {
    resolveDockerfile?(text: string): Promise<{ text: string; external: string[] }>;
    registryHost: string;
    registryAuth?: RegistryAuth;
    extraAuths?: Record<string, RegistryAuth>;
    insecureRegistries: string[];
  };
  /** Notes for the stage log (masked by the caller). */
  log: (line: string) => void;
}

interface Output {
  out(text: string): void;
  err(text: string): void;
  signal: AbortSignal;
}

class CommandError extends Error {}

/** Splits `--name value`, `--name=value` and `-n value` options of one subcommand. */
function parseOptions(args: string[], spec: { values: string[]; flags: string[] }, command: string): { options: Array<[string, string]>; positional: string[] } {
  const options: Array<[string, string]> = [];
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (spec.values.includes(name)) {
      if (arg.startsWith('--') && eq > 0) options.push([name, arg.slice(eq + 1)]);
      else {
        const value = args[++i];
        if (value === undefined) throw new CommandError(`docker ${command}: option ${name} needs a value`);
        options.push([name, value]);
      }
    } else if (spec.flags.includes(name)) {
      options.push([name, eq > 0 ? arg.slice(eq + 1) : 'true']);
    } else {
      throw new CommandError(`docker ${command}: unsupported option ${name} (Slipway's docker supports: ${[...spec.values, ...spec.flags].join(' ')})`);
    }
  }
  return { options, positional };
}

function isInside(root: string, candidate: string): boolean {
  return candidate === root || candidate.startsWith(root.endsWith('/') ? root : `${root}/`);
}

/** Serves the docker shim of one stage on a unix socket. */
export class DockerShimServer {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly controllers = new Set<AbortController>();
  private buildCount = 0;
  readonly socketPath: string;

  constructor(private readonly options: DockerShimOptions, socketPath: string) {
    this.socketPath = socketPath;
  }

  /** Listens on the socket, 0600 and owned by `uid:gid` (the steps' user). */
  async listen(uid: number, gid: number): Promise<void> {
    await rm(this.socketPath, { force: true });
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(this.socketPath, 0o600);
    await chown(this.socketPath, uid, gid);
  }

  /** Stops every command still running and closes the socket. */
  async close(): Promise<void> {
    for (const controller of this.controllers) controller.abort();
    for (const socket of this.sockets) socket.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    // Running commands end once aborted; wait for them (each removes itself).
    const started = Date.now();
    while (this.controllers.size > 0 && Date.now() - started < 30_000) await new Promise((r) => setTimeout(r, 50));
    await rm(this.socketPath, { force: true });
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    const controller = new AbortController();
    this.controllers.add(controller);
    let buffer = '';
    let started = false;
    let ended = false;
    const send = (message: Record<string, unknown>) => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`);
    };
    const finish = (code: number) => {
      if (ended) return;
      ended = true;
      send({ x: code });
      socket.end();
      this.controllers.delete(controller);
    };
    socket.on('close', () => {
      this.sockets.delete(socket);
      controller.abort();
      if (!started) this.controllers.delete(controller);
    });
    socket.on('error', () => undefined);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      if (started) return;
      buffer += chunk;
      if (buffer.length > maxRequestBytes) {
        started = true;
        send({ e: 'docker: request too large\n' });
        finish(1);
        return;
      }
      const index = buffer.indexOf('\n');
      if (index < 0) return;
      started = true;
      let request: { argv: string[]; cwd: string; env: Record<string, string> };
      try {
        const parsed = JSON.parse(buffer.slice(0, index)) as { argv?: unknown; cwd?: unknown; env?: unknown };
        if (!Array.isArray(parsed.argv) || !parsed.argv.every((a) => typeof a === 'string') || typeof parsed.cwd !== 'string') throw new Error('bad request');
        const env: Record<string, string> = {};
        if (parsed.env && typeof parsed.env === 'object') for (const [k, v] of Object.entries(parsed.env)) if (typeof v === 'string') env[k] = v;
        request = { argv: parsed.argv as string[], cwd: parsed.cwd, env };
      } catch {
        send({ e: 'docker: malformed request\n' });
        finish(1);
        return;
      }
      const output: Output = { out: (text) => send({ o: text }), err: (text) => send({ e: text }), signal: controller.signal };
      this.dispatch(request, output).then(
        (code) => finish(code),
        (error: unknown) => {
          output.err(`${error instanceof CommandError || error instanceof LocalNameError ? '' : 'docker: internal error: '}${(error as Error).message}\n`);
          finish(error instanceof CommandError || error instanceof LocalNameError ? 1 : 125);
        },
      );
    });
  }

  private async dispatch(request: { argv: string[]; cwd: string; env: Record<string, string> }, io: Output): Promise<number> {
    const argv = [...request.argv];
    // Global options docker accepts before the subcommand that mean nothing here.
    while (argv[0] === '--debug' || argv[0] === '-D' || argv[0] === '--log-level' || argv[0]?.startsWith('--log-level=')) argv.splice(0, argv[0] === '--log-level' ? 2 : 1);
    const [command, ...rest] = argv;
    if (command === undefined || command === 'help' || command === '--help') {
      io.out('Usage: docker COMMAND\n\nSlipway build steps support: build, tag, images, image (ls|inspect|rm|build|tag), inspect, rmi, version\n');
      return command === undefined ? 1 : 0;
    }
    if (command === 'version' || command === '--version' || command === '-v') return this.version(command !== 'version', io);
    if (command === 'build') return this.build(rest, request, io);
    if (command === 'tag') return this.tag(rest, io);
    if (command === 'images') return this.images(rest, io);
    if (command === 'rmi') return this.rmi(rest, io);
    if (command === 'inspect') return this.inspect(rest, io, 'inspect');
    if (command === 'image') {
      const [sub, ...args] = rest;
      if (sub === 'build') return this.build(args, request, io);
      if (sub === 'tag') return this.tag(args, io);
      if (sub === 'ls' || sub === 'list') return this.images(args, io);
      if (sub === 'rm' || sub === 'remove') return this.rmi(args, io);
      if (sub === 'inspect') return this.inspect(args, io, 'image inspect');
      throw new CommandError(`docker image ${sub ?? ''}: not supported in Slipway build steps (supported: build, tag, ls, inspect, rm)`);
    }
    const hint = command === 'push'
      ? ': declare the image as a DOCKER_IMAGE output artifact and deliver it with a deliver stage'
      : command === 'pull' ? ': `docker build` pulls its FROM images itself' : '';
    throw new CommandError(`docker ${command}: not supported in Slipway build steps${hint} (supported: build, tag, images, image, inspect, rmi, version)`);
  }

  private version(short: boolean, io: Output): number {
    if (short) io.out('Docker version 24.0.0-slipway (buildah)\n');
    else io.out('Client:\n Version:    24.0.0-slipway\n API version: 1.43\n\nServer: Slipway (buildah)\n Engine:\n  Version:   buildah\n');
    return 0;
  }

  /** Host path of a step path, which must resolve inside the workspace. */
  private async insideWorkspace(stepPath: string, what: string): Promise<string> {
    const host = this.options.hostPath(stepPath);
    if (host === null) throw new CommandError(`docker build: the ${what} ${stepPath} is outside the workspace`);
    let real: string;
    try {
      real = await realpath(host);
    } catch {
      throw new CommandError(`docker build: the ${what} ${stepPath} does not exist`);
    }
    const root = await realpath(this.options.workspaceDir);
    if (!isInside(root, real)) throw new CommandError(`docker build: the ${what} ${stepPath} is outside the workspace`);
    return real;
  }

  /** The build tool's output as the step sees it: its own names, not the run-scoped ones. */
  private output(io: Output): (line: string, stream: 'stdout' | 'stderr') => void {
    return (line, stream) => {
      const shown = `${unscopeText(this.options.runId, line)}\n`;
      if (stream === 'stdout') io.out(shown);
      else io.err(shown);
    };
  }

  private async build(args: string[], request: { cwd: string; env: Record<string, string> }, io: Output): Promise<number> {
    const { options, positional } = parseOptions(args, {
      values: ['-t', '--tag', '-f', '--file', '--build-arg', '--target', '--platform', '--label', '--progress', '--network'],
      flags: ['--no-cache', '--pull', '--rm', '--force-rm', '-q', '--quiet'],
    }, 'build');
    if (positional.length !== 1) throw new CommandError(`docker build: needs exactly one context folder (got ${positional.length === 0 ? 'none' : positional.join(' ')})`);
    if (positional[0] === '-' || /^[a-z]+:\/\//.test(positional[0]!) || positional[0]!.startsWith('git@')) throw new CommandError('docker build: the context must be a folder of the workspace (no stdin, URL or git context)');
    const values = (name: string, short?: string) => options.filter(([n]) => n === name || n === short).map(([, v]) => v);
    const network = values('--network');
    if (network.some((n) => n !== 'host' && n !== 'default')) throw new CommandError('docker build: only --network=host is supported');
    const quiet = values('--quiet', '-q').length > 0;
    const tags = values('--tag', '-t').map((tag) => scopedImageName(this.options.runId, tag));
    const contextStep = path.posix.resolve(request.cwd, positional[0]!);
    const contextDir = await this.insideWorkspace(contextStep, 'build context');
    if (!(await stat(contextDir)).isDirectory()) throw new CommandError(`docker build: the build context ${contextStep} is not a folder`);
    const fileArg = values('--file', '-f').pop();
    if (fileArg === '-') throw new CommandError('docker build: a Dockerfile from stdin is not supported');
    const dockerfileStep = fileArg === undefined ? path.posix.join(contextStep, 'Dockerfile') : path.posix.resolve(request.cwd, fileArg);
    const dockerfile = await this.insideWorkspace(dockerfileStep, 'Dockerfile');
    if (!(await stat(dockerfile)).isFile()) throw new CommandError(`docker build: the Dockerfile ${dockerfileStep} is not a file`);
    let text = await readFile(dockerfile, 'utf8');
    const images = this.options.images;
    if (images.resolveDockerfile) text = (await images.resolveDockerfile(text)).text;

    const id = randomBytes(6).toString('hex');
    const work = path.join(this.options.workDir, `build-${id}`);
    await mkdir(work, { recursive: true, mode: 0o700 });
    try {
      // The Dockerfile with its FROM lines resolved, outside the context. A `.dockerignore` next
      // to a Dockerfile outside the context would be missed: buildah reads
      // `<Dockerfile>.dockerignore` and the context's `.dockerignore` only.
      const file = path.join(work, 'Dockerfile');
      await writeFile(file, text, { mode: 0o600 });
      const untagged = tags.length === 0 ? [`${untaggedRepository(this.options.runId)}:${++this.buildCount}-${id}`] : [];
      const buildArgs: Record<string, string> = {};
      for (const value of values('--build-arg')) {
        const eq = value.indexOf('=');
        if (eq >= 0) buildArgs[value.slice(0, eq)] = value.slice(eq + 1);
        else if (request.env[value] !== undefined) buildArgs[value] = request.env[value]!;
      }
      this.options.log(`[slipway] docker build ${contextStep}${tags.length > 0 ? ` -> ${values('--tag', '-t').join(', ')}` : ''}`);
      let imageId: string;
      try {
        ({ imageId } = await this.options.driver.buildLocal({
          contextDir,
          dockerfile: file,
          tags: [...tags, ...untagged],
          buildArgs,
          target: values('--target').pop(),
          platform: values('--platform').pop(),
          labels: values('--label'),
          noCache: values('--no-cache').length > 0,
          quiet,
          auths: { ...images.extraAuths, ...(images.registryAuth ? { [images.registryHost]: images.registryAuth } : {}) },
          insecureRegistries: images.insecureRegistries,
          signal: io.signal,
        }, quiet ? () => undefined : this.output(io)));
      } catch (error) {
        if (!(error instanceof BuildError)) throw error;
        if (io.signal.aborted) return 130;
        if (error.reason === 'invalid') throw new CommandError(`docker build: ${error.message}`);
        return error.exitCode ?? 1;
      }
      if (quiet) io.out(`sha256:${imageId.replace(/^sha256:/, '')}\n`);
      return 0;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** The run's images (names with the run's prefix, or its untagged builds). */
  async runImages(): Promise<LocalImage[]> {
    return runImagesOf(await this.options.driver.listImages(), this.options.runId);
  }

  /** An image of the run by local name or (a prefix of its) ID; throws when there is none. */
  private async findImage(reference: string, command: string): Promise<{ ref: string; image: LocalImage }> {
    const images = await this.runImages();
    const id = reference.replace(/^sha256:/, '');
    if (/^[0-9a-f]{4,64}$/.test(id)) {
      const matches = images.filter((image) => image.id.startsWith(id));
      if (matches.length === 1) return { ref: matches[0]!.id, image: matches[0]! };
    }
    let scoped: string;
    try {
      scoped = scopedImageName(this.options.runId, reference);
    } catch {
      throw new CommandError(`Error response from daemon: No such image: ${reference}`);
    }
    const image = images.find((i) => i.names.includes(scoped));
    if (!image) throw new CommandError(`Error response from daemon: No such image: ${reference} (docker ${command})`);
    return { ref: scoped, image };
  }

  private async tag(args: string[], io: Output): Promise<number> {
    const { positional } = parseOptions(args, { values: [], flags: [] }, 'tag');
    if (positional.length !== 2) throw new CommandError('docker tag: usage: docker tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]');
    const source = await this.findImage(positional[0]!, 'tag');
    const target = scopedImageName(this.options.runId, positional[1]!);
    try {
      await this.options.driver.tagImage(source.image.id, target, io.signal);
    } catch (error) {
      if (!(error instanceof BuildError)) throw error;
      io.err(`docker tag: ${error.detail ?? 'failed'}\n`);
      return 1;
    }
    return 0;
  }

  private async images(args: string[], io: Output): Promise<number> {
    const { options, positional } = parseOptions(args, { values: ['--format', '--filter', '-f'], flags: ['-q', '--quiet', '-a', '--all', '--no-trunc', '--digests'] }, 'images');
    if (options.some(([n]) => n === '--format' || n === '--filter' || n === '-f')) throw new CommandError('docker images: --format and --filter are not supported');
    const quiet = options.some(([n]) => n === '-q' || n === '--quiet');
    const noTrunc = options.some(([n]) => n === '--no-trunc');
    const want = positional[0];
    const rows: Array<{ repository: string; tag: string; id: string; created?: string; size?: string }> = [];
    for (const image of await this.runImages()) {
      for (const name of image.names) {
        if (!name.startsWith(runImagePrefix(this.options.runId))) continue;
        const local = unscopedImageName(this.options.runId, name);
        const colon = local.lastIndexOf(':');
        const repository = local.slice(0, colon);
        const tag = local.slice(colon + 1);
        if (want !== undefined && want !== repository && want !== local) continue;
        rows.push({ repository, tag, id: image.id, created: image.created, size: image.size });
      }
    }
    const shortId = (id: string) => (noTrunc ? `sha256:${id}` : id.slice(0, 12));
    if (quiet) {
      io.out([...new Set(rows.map((row) => shortId(row.id)))].map((id) => `${id}\n`).join(''));
      return 0;
    }
    const table = [['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], ...rows.map((row) => [row.repository, row.tag, shortId(row.id), row.created ?? '', row.size ?? ''])];
    const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
    io.out(table.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]! + 3))).join('').trimEnd() + '\n').join(''));
    return 0;
  }

  private async inspect(args: string[], io: Output, command: string): Promise<number> {
    const { options, positional } = parseOptions(args, { values: ['--format', '-f', '--type'], flags: ['-s', '--size'] }, command);
    const type = options.find(([n]) => n === '--type')?.[1];
    if (type !== undefined && type !== 'image') throw new CommandError(`docker ${command}: only images can be inspected here`);
    if (positional.length === 0) throw new CommandError(`docker ${command}: needs at least one image`);
    const format = options.find(([n]) => n === '--format' || n === '-f')?.[1];
    const views: Array<Record<string, unknown>> = [];
    let code = 0;
    for (const reference of positional) {
      let found;
      try {
        found = await this.findImage(reference, 'inspect');
      } catch (error) {
        io.err(`${(error as Error).message}\n`);
        code = 1;
        continue;
      }
      const info = await this.options.driver.inspectImage(found.image.id, io.signal);
      if (!info) {
        io.err(`Error: No such image: ${reference}\n`);
        code = 1;
        continue;
      }
      const config = info.config;
      views.push({
        Id: `sha256:${found.image.id}`,
        RepoTags: found.image.names.filter((n) => n.startsWith(runImagePrefix(this.options.runId))).map((n) => unscopedImageName(this.options.runId, n)),
        Created: info.created,
        Architecture: info.architecture,
        Os: info.os,
        Size: found.image.size,
        Config: {
          User: config.User ?? '',
          Env: config.Env ?? [],
          Cmd: config.Cmd ?? null,
          Entrypoint: config.Entrypoint ?? null,
          WorkingDir: config.WorkingDir ?? '',
          Labels: config.Labels ?? null,
          ExposedPorts: config.ExposedPorts ?? null,
        },
      });
    }
    if (format !== undefined) {
      for (const view of views) io.out(`${renderFormat(format, view)}\n`);
    } else {
      io.out(`${JSON.stringify(views, null, 4)}\n`);
    }
    return code;
  }

  private async rmi(args: string[], io: Output): Promise<number> {
    const { positional } = parseOptions(args, { values: [], flags: ['-f', '--force', '--no-prune'] }, 'rmi');
    if (positional.length === 0) throw new CommandError('docker rmi: needs at least one image');
    let code = 0;
    for (const reference of positional) {
      let found;
      try {
        found = await this.findImage(reference, 'rmi');
      } catch (error) {
        io.err(`${(error as Error).message}\n`);
        code = 1;
        continue;
      }
      // By ID: every run name of it; by name: that name only (the image goes with its last name).
      const names = found.ref === found.image.id ? found.image.names.filter((n) => n.startsWith(runImagePrefix(this.options.runId))) : [found.ref];
      for (const name of names) {
        try {
          await this.options.driver.removeImage(name, io.signal);
          io.out(`Untagged: ${unscopedImageName(this.options.runId, name)}\n`);
        } catch (error) {
          if (!(error instanceof BuildError)) throw error;
          io.err(`docker rmi: ${error.detail ?? 'failed'}\n`);
          code = 1;
        }
      }
    }
    return code;
  }
}

/** A small subset of Go templates: `{{.Field.Sub}}` and `{{json .Field}}`. */
function renderFormat(format: string, view: Record<string, unknown>): string {
  return format.replace(/\{\{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*\}\}/g, (_, json: string | undefined, fieldPath: string) => {
    let value: unknown = view;
    for (const key of fieldPath.split('.').filter(Boolean)) value = value && typeof value === 'object' ? (value as Record<string, unknown>)[key === 'ID' ? 'Id' : key] : undefined;
    if (json) return JSON.stringify(value ?? null);
    if (value === undefined || value === null) return '<no value>';
    if (Array.isArray(value)) return `[${value.join(' ')}]`;
    if (typeof value === 'object') return `map[${Object.entries(value as Record<string, unknown>).map(([k, v]) => `${k}:${String(v)}`).join(' ')}]`;
    return String(value);
  });
}
