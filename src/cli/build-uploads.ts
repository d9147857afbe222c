/**
 * @module cli/build-uploads
 * `slipway build [dir]` (tar.gz the folder, upload it with its Dockerfile, follow the log) and
 * `slipway component build|get`, with the parsing they need (`--build-arg`, the git branch).
 */
import { execFile } from 'node:child_process';
import { openAsBlob } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { create as createTar } from 'tar';
import { nsPath, type BuildView, type ComponentRef } from './build-client.js';
import { formatBytes, Progress } from './build-progress.js';
import { followBuild, isDirectory, report, runInterruptible, settleSubmitted, withApi, type Env, type ServerFlags } from './build-session.js';
import { CommandError, UsageError } from './errors.js';

const maxDockerfileBytes = 1024 * 1024;

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

// ---------------------------------------------------------------- slipway build

export interface BuildFlags extends ServerFlags {
  component: string;
  branch?: string;
  architecture: string;
  tag?: string;
  buildArg?: string[];
  file?: string;
  follow: boolean;
  json?: boolean;
}

export async function buildCommand(dirArg: string | undefined, flags: BuildFlags, env: Env): Promise<void> {
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
    const work = await mkdtemp(path.join(tmpdir(), 'slipway-context-'));
    await runInterruptible(progress, async (interrupt) => {
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
      await settleSubmitted(api, flags, build, progress, interrupt.signal);
    }, () => rm(work, { recursive: true, force: true }));
  });
}

// ---------------------------------------------------------------- slipway component

export interface ComponentBuildFlags extends ServerFlags {
  url: string;
  component: string;
  tag: string;
  architecture: string;
  follow: boolean;
  json?: boolean;
}

export interface ComponentGetFlags extends ServerFlags {
  component: string;
  tag: string;
  architecture: string;
  output?: string;
  ref?: boolean;
  url?: string;
  json?: boolean;
}

export async function componentBuildCommand(flags: ComponentBuildFlags, env: Env): Promise<void> {
  await withApi(flags, env, async (api) => {
    const progress = new Progress();
    await runInterruptible(progress, async (interrupt) => {
      progress.start(`submitting ${flags.component} ${flags.tag} (${flags.architecture})`);
      const build = await api.submitComponent(flags.namespace, { url: flags.url, component: flags.component, tag: flags.tag, architecture: flags.architecture }, interrupt.signal);
      await settleSubmitted(api, flags, build, progress, interrupt.signal);
    });
  });
}

export async function componentGetCommand(flags: ComponentGetFlags, env: Env): Promise<void> {
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
    await runInterruptible(progress, async (interrupt) => {
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
    });
  });
}
