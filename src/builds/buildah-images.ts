/**
 * @module builds/buildah-images
 * The buildah driver's local images, for pipeline stages (the `BuildDriver` methods after
 * `runSteps`): `buildLocal` (`buildah bud` into the local store, no push), `listImages`
 * (`buildah images --json`), `tagImage`, `inspectImage`, `removeImage` (`rmi` of one name),
 * `pushImage` (`buildah push --digestfile`, the login in a private auth file) and `mountImage`
 * (`buildah from` + `mount`: a writable root for the container executor, `umount` + `rm` on
 * release). Logins go to 0600 files in a private temp folder removed after each call, never on a
 * command line; lines that could carry a login are masked.
 */
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import {
  BuildError,
  registryHostOf,
  type ImageDetails,
  type ImageRoot,
  type ImageRootRequest,
  type LocalBuildRequest,
  type LocalImage,
  type LogSink,
  type OutputSink,
  type PushRequest,
} from './build-driver.js';
import { authSecrets, lastLine, type BuildahCli } from './buildah-cli.js';
import { createMasker } from '../logs/mask.js';

const notKnownPattern = /image not known|no such image/i;

function invalidReference(reference: string, what: string): BuildError | undefined {
  if (!reference || /\s/.test(reference) || reference.includes('://')) return new BuildError('invalid', `${what} ${reference} is not an image reference`);
  return undefined;
}

export async function buildLocal(cli: BuildahCli, request: LocalBuildRequest, output: OutputSink): Promise<{ imageId: string }> {
  if (request.tags.length === 0) throw new BuildError('invalid', 'a local build needs at least one name');
  for (const tag of request.tags) {
    const problem = invalidReference(tag, 'name');
    if (problem) throw problem;
  }
  const auths = request.auths ?? {};
  const mask = createMasker(authSecrets(Object.values(auths)));
  const work = await cli.privateDir();
  try {
    const authArgs = await cli.writeAuthFile(work.path, undefined, [], auths);
    const registriesEnv = await cli.writeRegistriesConf(work.path, request.insecureRegistries ?? []);
    const iidFile = path.join(work.path, 'image.id');
    const args = [
      '-f', request.dockerfile,
      '--iidfile', iidFile,
      ...request.tags.flatMap((tag) => ['-t', tag]),
      ...Object.entries(request.buildArgs ?? {}).flatMap(([key, value]) => ['--build-arg', `${key}=${value}`]),
      ...(request.target ? ['--target', request.target] : []),
      ...(request.platform ? ['--platform', request.platform] : []),
      ...(request.labels ?? []).flatMap((label) => ['--label', label]),
      ...(request.noCache ? ['--no-cache'] : []),
      ...(request.quiet ? ['--quiet'] : []),
      ...authArgs,
    ];
    const result = await cli.bud(args, path.resolve(request.contextDir), {
      env: { ...process.env, ...registriesEnv, TMPDIR: work.tmp },
      signal: request.signal,
      onLine: (line, stream) => output(mask(line), stream),
      note: (line) => output(mask(line), 'stderr'),
    });
    if (result.code !== 0) {
      if (result.aborted || request.signal?.aborted) throw new BuildError('aborted', 'the build was stopped');
      const detail = lastLine(result);
      throw new BuildError('failed', `buildah bud failed with exit code ${result.code ?? result.signal}${detail ? `: ${mask(detail)}` : ''}`, { exitCode: result.code ?? undefined, detail: detail && mask(detail) });
    }
    return { imageId: (await readFile(iidFile, 'utf8')).trim().replace(/^sha256:/, '') };
  } finally {
    await work.remove();
  }
}

export async function listImages(cli: BuildahCli): Promise<LocalImage[]> {
  const result = await cli.exec(['images', '--json', '--no-trunc'], { captureStdout: true, timeoutMs: 60_000 });
  if (result.code !== 0) throw new BuildError('internal', `buildah images failed: ${result.stderrTail.slice(-1)[0] ?? ''}`);
  const text = result.stdout.trim();
  if (text === '' || text === 'null') return [];
  const list = JSON.parse(text) as Array<{ id: string; names?: string[] | null; size?: string | number; createdat?: string }>;
  return list.map((image) => ({ id: image.id.replace(/^sha256:/, ''), names: image.names ?? [], size: image.size === undefined ? undefined : String(image.size), created: image.createdat }));
}

export async function tagImage(cli: BuildahCli, image: string, name: string, signal?: AbortSignal): Promise<void> {
  const result = await cli.exec(['tag', image, name], { signal, timeoutMs: 60_000 });
  if (result.code === 0) return;
  const detail = result.stderrTail.slice(-1)[0];
  throw new BuildError(result.aborted ? 'aborted' : 'failed', `cannot name ${image} ${name}${detail ? `: ${detail}` : ''}`, { detail });
}

export async function inspectImage(cli: BuildahCli, image: string, signal?: AbortSignal): Promise<ImageDetails | null> {
  const result = await cli.exec(['inspect', '--type', 'image', image], { captureStdout: true, timeoutMs: 60_000, signal });
  if (result.code !== 0) return null;
  const info = JSON.parse(result.stdout) as { OCIv1?: { created?: string; architecture?: string; os?: string; config?: Record<string, unknown> } };
  return { created: info.OCIv1?.created, architecture: info.OCIv1?.architecture, os: info.OCIv1?.os, config: info.OCIv1?.config ?? {} };
}

export async function removeImage(cli: BuildahCli, name: string, signal?: AbortSignal): Promise<void> {
  const result = await cli.exec(['rmi', name], { signal, timeoutMs: 120_000 });
  if (result.code === 0) return;
  const detail = result.stderrTail.slice(-1)[0];
  const reason = notKnownPattern.test(result.stderrTail.join(' ')) ? 'not-found' : result.aborted ? 'aborted' : 'failed';
  throw new BuildError(reason, `cannot remove ${name}${detail ? `: ${detail}` : ''}`, { detail });
}

export async function pushImage(cli: BuildahCli, request: PushRequest, log: LogSink): Promise<{ digest: string }> {
  const { destination } = request;
  const invalid = invalidReference(destination, 'destination');
  if (invalid) throw invalid;
  const mask = createMasker(authSecrets([request.auth]));
  const emit = (line: string) => log(mask(line));
  const work = await cli.privateDir();
  try {
    const authArgs = await cli.writeAuthFile(work.path, request.auth, [registryHostOf(destination)]);
    const digestFile = path.join(work.path, 'digest');
    emit(`[slipway] pushing ${destination}`);
    const result = await cli.exec([
      'push',
      '--digestfile', digestFile,
      ...(request.insecure ? ['--tls-verify=false'] : []),
      ...(request.format ? ['--format', request.format] : []),
      ...authArgs,
      request.image,
      `docker://${destination}`,
    ], { env: { ...process.env, TMPDIR: work.tmp }, signal: request.signal, onLine: emit });
    if (result.code !== 0) {
      if (result.aborted) throw new BuildError('aborted', `pushing ${destination} was cancelled`);
      const detail = mask(lastLine(result) ?? `exit ${result.code ?? result.signal}`);
      throw new BuildError('push', `pushing ${destination} failed: ${detail}`, { exitCode: result.code ?? undefined, detail });
    }
    const digest = (await readFile(digestFile, 'utf8')).trim();
    emit(`[slipway] pushed ${destination} ${digest}`);
    return { digest };
  } finally {
    await work.remove();
  }
}

export async function mountImage(cli: BuildahCli, request: ImageRootRequest, log: LogSink): Promise<ImageRoot> {
  const { name, image } = request;
  const invalid = invalidReference(image, 'image');
  if (invalid) throw invalid;
  let created = false;
  let fromDone = false;
  let mounted = false;
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    if (mounted) await cli.exec(['umount', name], { timeoutMs: 120_000 }).catch(() => undefined);
    if (!created) return;
    const removed = await cli.exec(['rm', name], { timeoutMs: 120_000 }).catch(() => undefined);
    if (removed && removed.code !== 0 && fromDone) log(`[slipway] could not remove the build container ${name}: ${removed.stderrTail.slice(-1)[0] ?? ''}`);
  };
  try {
    const work = await cli.privateDir();
    try {
      const authArgs = await cli.writeAuthFile(work.path, request.auth, [registryHostOf(image)]);
      const from = await cli.exec(['from', '--name', name, '--quiet', '--pull', ...(request.insecure ? ['--tls-verify=false'] : []), ...authArgs, image], {
        env: { ...process.env, TMPDIR: work.tmp },
        signal: request.signal,
        onLine: (line, stream) => {
          if (stream === 'stderr') log(line);
        },
      });
      // A `from` stopped midway may still have made the container: always try to remove it.
      created = true;
      fromDone = from.code === 0;
      if (from.code !== 0) {
        const detail = lastLine(from) ?? '';
        throw from.aborted
          ? new BuildError('aborted', `preparing a container from ${image} was stopped`)
          : new BuildError('failed', `cannot use the image ${image}: ${detail}`, { detail });
      }
    } finally {
      await work.remove();
    }
    const mount = await cli.exec(['mount', name], { captureStdout: true, timeoutMs: 120_000 });
    if (mount.code !== 0) {
      const detail = mount.stderrTail.slice(-1)[0] ?? '';
      throw new BuildError('internal', `cannot mount the container ${name}: ${detail}`, { detail });
    }
    mounted = true;
    const rootfs = await realpath(mount.stdout.trim());
    const env: Record<string, string> = {};
    const inspect = await cli.exec(['inspect', '--type', 'container', name], { captureStdout: true, timeoutMs: 60_000 });
    if (inspect.code === 0) {
      const info = JSON.parse(inspect.stdout) as { OCIv1?: { config?: { Env?: string[] } } };
      for (const entry of info.OCIv1?.config?.Env ?? []) {
        const eq = entry.indexOf('=');
        if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
      }
    }
    return { rootfs, env, release };
  } catch (error) {
    await release();
    throw error;
  }
}

