/**
 * @module builds/buildah-driver
 * The local build driver: the buildah CLI on the host (DESIGN.md, "builds: buildah on the host").
 *
 * - `build`: `buildah bud --isolation chroot --layers --force-rm` (layer cache between builds in
 *   the local store; optional `--cache-from/--cache-to` of a registry repository), then
 *   `buildah push --digestfile` of the built image ID to the destination.
 * - `runSteps`: `buildah from` the base image, `buildah copy` the context to /workspace, one
 *   `buildah run` per step (its stdout and stderr go to FIFOs mounted at /.slipway-output and
 *   read here, all of it before the step's outcome is reported), files copied out of
 *   `buildah mount`, then `buildah rm`.
 * - Local images for pipeline stages (build without push, list, tag, inspect, remove, push, a
 *   mounted root): builds/buildah-images. The command line itself (store options, private temp
 *   folders, auth and registries files, marked `bud` runs): builds/buildah-cli.
 *
 * Secrets and registry passwords go to 0600 files in a private 0700 temp folder (build secrets
 * as `--secret id=…,src=…`, credentials as `--authfile`), never on a command line; the folder is
 * removed after every build. Every log line is masked (logs/mask) before it reaches the sink.
 * Plain-HTTP registries: `--tls-verify=false` where one registry is spoken to (push, from), and a
 * per-build registries.conf marking exactly those hosts `insecure` for `bud`, whose FROM images
 * may come from anywhere.
 *
 * Abort and timeout: buildah gets SIGTERM (it fails the running step and, with `--force-rm`,
 * removes its containers), its process group SIGKILL after a grace period. Containers a killed
 * `bud` still left are found by a marker build argument recorded in each container's metadata
 * and removed; `runSteps` containers carry a unique name and are always removed.
 */
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, realpath, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  BuildError,
  registryHostOf,
  repositoryOf,
  type BuildDriver,
  type BuildRequest,
  type BuildResult,
  type ImageDetails,
  type ImageRoot,
  type ImageRootRequest,
  type LocalBuildRequest,
  type LocalImage,
  type LogSink,
  type OutputSink,
  type PushRequest,
  type StepsRequest,
  type StepsResult,
} from './build-driver.js';
import { authSecrets, BuildahCli, markerArg } from './buildah-cli.js';
import * as images from './buildah-images.js';
import { resolveInRoot } from '../exec/container-path.js';
import { deadline } from '../exec/deadline.js';
import { createMasker } from '../logs/mask.js';
import { openOutputFifos } from '../exec/output-fifo.js';
import type { ProcessResult } from '../exec/process.js';

export { slipwayContainerPrefix, type BuildahContainer, type BuildahDriverOptions, type BuildahStorageOptions } from './buildah-cli.js';

const registryHostPattern = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const secretIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const argNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;
const outputNamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const containerNamePrefix = 'slipway-steps-';
/** Where a step's output FIFOs are mounted in its container. */
const stepOutputDir = '/.slipway-output';
/** After a step ended: the longest wait for a process that escaped the kill to let go of its output. */
const stepDrainMs = 2_000;
function stoppedError(reason: 'timeout' | 'aborted', what: string, timeoutMs: number | undefined): BuildError {
  return reason === 'timeout'
    ? new BuildError('timeout', `${what} timed out after ${timeoutMs} ms`)
    : new BuildError('aborted', `${what} was aborted`);
}

export class BuildahDriver extends BuildahCli implements BuildDriver {
  async build(request: BuildRequest, log: LogSink): Promise<BuildResult> {
    const contextDir = path.resolve(request.contextDir);
    const dockerfile = path.resolve(contextDir, request.dockerfile ?? 'Dockerfile');
    await this.validateBuild(request, contextDir, dockerfile);

    const secretValues = (request.secrets ?? []).map((secret) => secret.value);
    const authValues = authSecrets([request.registryAuth, ...Object.values(request.extraAuths ?? {})]);
    const mask = createMasker([...secretValues, ...authValues]);
    const emit = (line: string) => log(mask(line));
    const limit = deadline(request.signal, request.timeoutMs);
    const insecure = new Set(request.insecureRegistries ?? []);
    const destinationHost = registryHostOf(request.destination);
    const phases: Record<string, number> = {};
    const work = await this.privateDir();
    if (work.path.startsWith(contextDir + path.sep)) {
      await work.remove();
      throw new BuildError('invalid', `the build context ${contextDir} holds the driver's temp folder; secrets would be part of the context`);
    }
    try {
      // Secrets and credentials: private files, paths on the command line only.
      const secretArgs: string[] = [];
      for (const [index, secret] of (request.secrets ?? []).entries()) {
        const file = path.join(work.path, `secret-${index}`);
        await writeFile(file, secret.value, { mode: 0o600, flag: 'wx' });
        secretArgs.push('--secret', `id=${secret.id},src=${file}`);
      }
      const authHosts = new Set([destinationHost]);
      if (request.cacheRepository) authHosts.add(registryHostOf(request.cacheRepository));
      const authArgs = await this.writeAuthFile(work.path, request.registryAuth, authHosts, request.extraAuths);
      const registriesEnv = await this.writeRegistriesConf(work.path, [...insecure]);
      const env = { ...process.env, ...registriesEnv, TMPDIR: work.tmp };
      const iidFile = path.join(work.path, 'image.id');
      const digestFile = path.join(work.path, 'image.digest');

      const args = [
        '-f', dockerfile,
        '--iidfile', iidFile,
        '-t', request.destination,
        ...Object.entries(request.buildArgs ?? {}).flatMap(([key, value]) => ['--build-arg', `${key}=${value}`]),
        ...(request.target ? ['--target', request.target] : []),
        ...(request.platform ? ['--platform', request.platform] : []),
        ...(request.cacheRepository ? ['--cache-from', request.cacheRepository, '--cache-to', request.cacheRepository] : []),
        ...secretArgs,
        ...authArgs,
      ];
      emit(`[slipway] building ${request.destination}`);
      let failedStep: { step: string; exitCode: number } | undefined;
      const started = Date.now();
      const bud = await this.bud(args, contextDir, {
        env,
        cwd: contextDir,
        signal: limit.signal,
        note: emit,
        onLine: (line) => {
          const failure = /^Error: building at STEP "(.*)": .*?exit status (\d+)\s*$/.exec(line);
          if (failure) failedStep = { step: failure[1]!, exitCode: Number(failure[2]) };
          emit(line);
        },
      });
      phases.build = Date.now() - started;
      if (bud.code !== 0) {
        const reason = limit.reason();
        if (reason) throw stoppedError(reason, 'build', request.timeoutMs);
        if (failedStep) {
          throw new BuildError('failed', `build failed at step "${mask(failedStep.step)}" with exit code ${failedStep.exitCode}`, failedStep);
        }
        const last = bud.stderrTail.filter((line) => line.trim() !== '').slice(-1)[0] ?? '';
        throw new BuildError('failed', `buildah bud failed with exit code ${bud.code ?? bud.signal}: ${mask(last)}`, { exitCode: bud.code ?? undefined });
      }
      const imageId = (await readFile(iidFile, 'utf8')).trim();
      emit(`[slipway] built ${imageId} in ${phases.build} ms; pushing to ${request.destination}`);

      const pushStarted = Date.now();
      const push = await this.exec(
        [
          'push',
          '--digestfile', digestFile,
          ...(insecure.has(destinationHost) ? ['--tls-verify=false'] : []),
          ...authArgs,
          imageId,
          `docker://${request.destination}`,
        ],
        { env, signal: limit.signal, onLine: emit },
      );
      phases.push = Date.now() - pushStarted;
      if (push.code !== 0) {
        const reason = limit.reason();
        if (reason) throw stoppedError(reason, 'push', request.timeoutMs);
        const last = push.stderrTail.filter((line) => line.trim() !== '').slice(-1)[0] ?? '';
        throw new BuildError('push', `pushing ${request.destination} failed: ${mask(last)}`, { exitCode: push.code ?? undefined });
      }
      const digest = (await readFile(digestFile, 'utf8')).trim();
      emit(`[slipway] pushed ${request.destination} ${digest} in ${phases.push} ms`);
      return { digest, imageRef: `${repositoryOf(request.destination)}@${digest}`, phases };
    } finally {
      limit.dispose();
      await work.remove();
    }
  }

  private async validateBuild(request: BuildRequest, contextDir: string, dockerfile: string): Promise<void> {
    const invalid = (message: string) => new BuildError('invalid', message);
    const context = await stat(contextDir).catch(() => undefined);
    if (!context?.isDirectory()) throw invalid(`build context ${request.contextDir} is not a folder`);
    if (dockerfile !== contextDir && !dockerfile.startsWith(contextDir + path.sep)) throw invalid(`Dockerfile ${request.dockerfile} is outside the build context`);
    const file = await stat(dockerfile).catch(() => undefined);
    if (!file?.isFile()) throw invalid(`Dockerfile ${request.dockerfile ?? 'Dockerfile'} not found in the build context`);
    if (!request.destination || /\s/.test(request.destination) || request.destination.includes('://')) throw invalid(`destination ${request.destination} is not an image reference`);
    for (const secret of request.secrets ?? []) if (!secretIdPattern.test(secret.id)) throw invalid(`secret id ${secret.id} is not valid`);
    for (const key of Object.keys(request.buildArgs ?? {})) if (!argNamePattern.test(key) || key === markerArg) throw invalid(`build argument ${key} is not valid`);
    for (const host of request.insecureRegistries ?? []) if (!registryHostPattern.test(host)) throw invalid(`insecure registry ${host} is not a host[:port]`);
    if (request.platform && !/^[a-z0-9]+\/[a-z0-9_]+(?:\/[a-z0-9]+)?$/.test(request.platform)) throw invalid(`platform ${request.platform} is not os/arch[/variant]`);
    if (request.target && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(request.target)) throw invalid(`target ${request.target} is not a stage name`);
  }

  async runSteps(request: StepsRequest, log: LogSink): Promise<StepsResult> {
    const contextDir = path.resolve(request.contextDir);
    const outputDir = path.resolve(request.outputDir);
    await this.validateSteps(request, contextDir);

    const mask = createMasker(authSecrets([request.registryAuth, ...Object.values(request.extraAuths ?? {})]));
    const emit = (line: string) => log(mask(line));
    const limit = deadline(request.signal, request.timeoutMs);
    const insecure = new Set(request.insecureRegistries ?? []);
    const baseHost = registryHostOf(request.baseImage);
    const name = `${containerNamePrefix}${randomBytes(8).toString('hex')}`;
    const phases: Record<string, number> = {};
    const work = await this.privateDir();
    let created = false;
    const check = (result: ProcessResult, what: string) => {
      if (result.code === 0) return;
      const reason = limit.reason();
      if (reason) throw stoppedError(reason, what, request.timeoutMs);
      const last = result.stderrTail.filter((line) => line.trim() !== '').slice(-1)[0] ?? '';
      throw new BuildError('failed', `${what} failed with exit code ${result.code ?? result.signal}: ${mask(last)}`, { exitCode: result.code ?? undefined });
    };
    try {
      const authArgs = await this.writeAuthFile(work.path, request.registryAuth, [baseHost], request.extraAuths);
      const env = { ...process.env, TMPDIR: work.tmp };

      let started = Date.now();
      emit(`[slipway] preparing a container from ${request.baseImage}`);
      const from = await this.exec(
        ['from', '--name', name, '--quiet', ...(insecure.has(baseHost) ? ['--tls-verify=false'] : []), ...authArgs, request.baseImage],
        { env, signal: limit.signal, onLine: emit },
      );
      created = from.code === 0;
      check(from, `pulling ${request.baseImage}`);
      check(await this.exec(['copy', '--quiet', name, contextDir, '/workspace'], { env, signal: limit.signal, onLine: emit }), 'copying the context');
      phases.prepare = Date.now() - started;

      const envArgs = Object.entries(request.env ?? {}).flatMap(([key, value]) => ['--env', `${key}=${value}`]);
      // The steps' own output comes through FIFOs read here, not through buildah's relay (which
      // may drop a failing step's last lines, see exec/output-fifo).
      const fifoDir = path.join(work.path, 'output');
      await mkdir(fifoDir);
      await chmod(fifoDir, 0o711);
      for (const [index, step] of request.steps.entries()) {
        emit(`[slipway] step ${step.name}: ${step.command}`);
        started = Date.now();
        const fifos = await openOutputFifos(fifoDir, `step-${index}`, (line) => emit(line)).catch((error: Error) => {
          throw new BuildError('internal', error.message);
        });
        const inside = (file: string) => `${stepOutputDir}/${path.basename(file)}`;
        const result = await this.exec(
          [
            'run', '--isolation', this.isolation, '--workingdir', '/workspace', '--volume', `${fifoDir}:${stepOutputDir}`, ...envArgs, name, '--',
            // `$0` is the step's command: run by a shell of its own, as before, with its output in the FIFOs.
            '/bin/sh', '-c', `exec /bin/sh -c "$0" >${inside(fifos.stdout)} 2>${inside(fifos.stderr)}`, step.command,
          ],
          { env, signal: limit.signal, timeoutMs: step.timeoutMs, onLine: emit },
        );
        // Every line the step printed is in the log before its outcome is.
        await fifos.drain(stepDrainMs);
        phases[`step:${step.name}`] = Date.now() - started;
        if (result.code === 0) continue;
        const reason = limit.reason();
        if (reason) throw stoppedError(reason, `step "${step.name}"`, request.timeoutMs);
        if (result.timedOut) throw new BuildError('timeout', `step "${step.name}" timed out after ${step.timeoutMs} ms`, { step: step.name });
        const exitCode = result.code ?? undefined;
        emit(`[slipway] step ${step.name} failed with exit code ${result.code ?? result.signal}`);
        throw new BuildError('failed', `step "${step.name}" failed with exit code ${result.code ?? result.signal}`, { step: step.name, exitCode });
      }

      started = Date.now();
      const outputs: StepsResult['outputs'] = [];
      if (request.outputs.length > 0) {
        const mounted = await this.exec(['mount', name], { captureStdout: true, signal: limit.signal });
        check(mounted, 'mounting the container');
        try {
          const root = await realpath(mounted.stdout.trim());
          await mkdir(outputDir, { recursive: true });
          for (const output of request.outputs) {
            const inside = output.path.startsWith('/') ? output.path : `/workspace/${output.path}`;
            const source = await resolveInRoot(root, inside);
            const info = await stat(source).catch(() => undefined);
            if (!info?.isFile()) throw new BuildError('failed', `output ${output.name}: ${inside} is not a file after the steps`);
            const file = path.join(outputDir, output.name);
            await copyFile(source, file);
            outputs.push({ name: output.name, file, size: info.size });
            emit(`[slipway] output ${output.name}: ${inside} (${info.size} bytes)`);
          }
        } finally {
          await this.exec(['umount', name], { timeoutMs: 60_000 });
        }
      }
      phases.outputs = Date.now() - started;
      return { outputs, phases };
    } finally {
      limit.dispose();
      // The container is ours by its unique name; a `from` stopped midway may still have made it.
      const removed = await this.exec(['rm', name], { timeoutMs: 120_000 });
      if (removed.code !== 0 && created) emit(`[slipway] could not remove container ${name}: ${removed.stderrTail.slice(-1)[0] ?? ''}`);
      await work.remove();
    }
  }

  private async validateSteps(request: StepsRequest, contextDir: string): Promise<void> {
    const invalid = (message: string) => new BuildError('invalid', message);
    const context = await stat(contextDir).catch(() => undefined);
    if (!context?.isDirectory()) throw invalid(`context ${request.contextDir} is not a folder`);
    if (!request.baseImage || /\s/.test(request.baseImage) || request.baseImage.includes('://')) throw invalid(`base image ${request.baseImage} is not an image reference`);
    if (request.steps.length === 0) throw invalid('no steps to run');
    const stepNames = new Set<string>();
    for (const step of request.steps) {
      if (!step.name || stepNames.has(step.name)) throw invalid(`step name ${step.name} is empty or used twice`);
      stepNames.add(step.name);
    }
    const outputNames = new Set<string>();
    for (const output of request.outputs) {
      if (!outputNamePattern.test(output.name) || outputNames.has(output.name)) throw invalid(`output name ${output.name} is not a valid, unique file name`);
      outputNames.add(output.name);
      if (!output.path || output.path.includes('\0')) throw invalid(`output ${output.name} has no path`);
    }
    for (const key of Object.keys(request.env ?? {})) if (!argNamePattern.test(key)) throw invalid(`environment variable ${key} is not valid`);
    for (const host of request.insecureRegistries ?? []) if (!registryHostPattern.test(host)) throw invalid(`insecure registry ${host} is not a host[:port]`);
  }

  // Local images for pipeline stages: builds/buildah-images.

  buildLocal(request: LocalBuildRequest, output: OutputSink): Promise<{ imageId: string }> {
    return images.buildLocal(this, request, output);
  }

  listImages(): Promise<LocalImage[]> {
    return images.listImages(this);
  }

  tagImage(image: string, name: string, signal?: AbortSignal): Promise<void> {
    return images.tagImage(this, image, name, signal);
  }

  inspectImage(image: string, signal?: AbortSignal): Promise<ImageDetails | null> {
    return images.inspectImage(this, image, signal);
  }

  removeImage(name: string, signal?: AbortSignal): Promise<void> {
    return images.removeImage(this, name, signal);
  }

  pushImage(request: PushRequest, log: LogSink): Promise<{ digest: string }> {
    return images.pushImage(this, request, log);
  }

  mountImage(request: ImageRootRequest, log: LogSink): Promise<ImageRoot> {
    return images.mountImage(this, request, log);
  }
}
