/**
 * @module pipelines/executor
 * The build stage of a pipeline: runs a build spec's steps (OCI DevOps `build_spec.yaml`, see
 * /work/shared/reference/formats.md §1) in a workspace the runner prepared, and collects the
 * exported variables and output artifacts.
 *
 * - Each step runs in a fresh, clean environment: PATH (the `docker` shim folder first), HOME (a
 *   private folder), LANG=C.UTF-8, the request's environment and secrets — never the server's.
 *   The working directory is the primary source checkout; the shell is `step.shell ?? spec.shell`.
 * - Steps share one environment: each step is wrapped in a script that, on exit, dumps its
 *   exported environment into a private state file; the next step starts with it. So `export X=…`
 *   in one step is visible in the next. `failImmediatelyOnError` (step beats spec) is `set -e`.
 * - A step's `timeoutInSeconds` kills its whole process group; the spec's `timeoutInSeconds` and
 *   the request's `timeoutMs` bound the stage. A failing step runs its `onFailure` steps; the
 *   steps after it are skipped and the stage fails. Aborting the request's signal cancels.
 * - Every log line (the `[slipway] step <name>` announcements, each line of stdout and stderr)
 *   is masked: secret values and registry passwords become `****`.
 * - Executors: `shell` runs steps on the host as an unprivileged uid/gid (default 1004; the
 *   workspace is chowned to it); `container` runs them in runc containers on a root file system
 *   made from the executor image, the workspace at /workspace (executor-container.ts). Both give
 *   the steps a `docker` command that builds with the stage's build driver on their behalf
 *   (docker-shim.ts); images, pushes and the container executor's root all go through that
 *   `BuildDriver` (buildah by default).
 * - Outputs: `BINARY` files are copied to a private folder (size, sha256 digest); `DOCKER_IMAGE`
 *   names a local image the steps built or tagged in this run (run-scoped names, see
 *   run-images.ts). `pushImage` pushes one to a registry; `removeRunImages` drops a run's images.
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BuildSpec, type FailureStep, BuildError, type BuildDriver, type RegistryAuth } from '../builds/index.js';
import { deadline } from '../exec/deadline.js';
import { runProcess } from '../exec/process.js';
import { createMasker } from '../logs/mask.js';
import { dockerShimClient } from './docker-shim-client.js';
import { DockerShimServer } from './docker-shim.js';
import { ContainerSandbox, containerShimLauncher, containerWorkspace } from './executor-container.js';
import { copyInputs, copyOutput, isInside, outputNamePattern, parseEnviron, readStepFile, shellOwnVariables, StageRequestError, stepScript, type StepSandbox } from './executor-sandbox.js';
import { killProcessesOf, ShellSandbox } from './executor-shell.js';
import { LocalNameError, runImageNames, runImagePrefix, runImagesOf, scopedImageName } from './run-images.js';

export type ExecutorKind = 'shell' | 'container';

/** Where the steps see the workspace and primary source (host paths for shell, /workspace/... in a container). */
export function stepPaths(kind: ExecutorKind, workspaceDir: string, primarySourceName: string): { workspace: string; primarySource: string } {
  if (kind === 'container') return { workspace: containerWorkspace, primarySource: path.posix.join(containerWorkspace, primarySourceName) };
  const workspace = path.resolve(workspaceDir);
  return { workspace, primarySource: path.join(workspace, primarySourceName) };
}

export interface StepRecord {
  name: string;
  status: 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped';
  exitCode?: number;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  onFailure?: StepRecord[];
}

export interface ImageSupport {
  /** Rewrites FROM lines (Slipway's registry first) and returns the external images it still needs. */
  resolveDockerfile?(text: string): Promise<{ text: string; external: string[] }>;
  /** host:port of Slipway's registry. */
  registryHost: string;
  /** Login for registryHost. */
  registryAuth?: RegistryAuth;
  extraAuths?: Record<string, RegistryAuth>;
  insecureRegistries: string[];
}

export interface StageRequest {
  runId: string;
  stageName: string;
  /** Parsed, placeholders resolved by the caller. */
  spec: BuildSpec;
  /** Host folder; sources already cloned in <workspaceDir>/<sourceName>. */
  workspaceDir: string;
  primarySourceName: string;
  /** Base step environment, already merged by the caller. */
  env: Record<string, string>;
  /** Vault variables name → value: in the step environment, masked in every log line. */
  secrets: Record<string, string>;
  /** Input artifacts fetched by the caller: host `file` is copied to `location` (relative to the primary source, or absolute inside the workspace). */
  inputFiles?: Array<{ name: string; location: string; file: string }>;
  executor: { kind: 'shell' } | { kind: 'container'; image: string; auth?: RegistryAuth; insecure?: boolean };
  images: ImageSupport;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Receives masked lines. */
  log: (line: string) => void;
  /** Progress snapshot whenever a step starts/ends. */
  onStep?: (steps: StepRecord[]) => void;
}

export type StageOutput =
  | { name: string; type: 'BINARY'; file: string; size: number; digest: string }
  | { name: string; type: 'DOCKER_IMAGE'; image: string; imageId: string };

export interface StageResult {
  status: 'succeeded' | 'failed' | 'cancelled' | 'timeout';
  steps: StepRecord[];
  failedStep?: string;
  exitCode?: number;
  message?: string;
  exported: Record<string, string>;
  outputs: StageOutput[];
}

export interface StageExecutorOptions {
  /** Builds, pushes and mounts images for the stages (the executor image, the steps' `docker`). */
  driver: BuildDriver;
  /** Private temp/output space (stage folders, BINARY outputs under `outputs/<run>/`). */
  workRoot: string;
  /** Default 1004. */
  shellUid?: number;
  /** Default the uid. */
  shellGid?: number;
  /** Time between SIGTERM and SIGKILL of a step's process group. Default 3 s. */
  graceMs?: number;
}

const maxStateBytes = 4 * 1024 * 1024;

function now(): string {
  return new Date().toISOString();
}

function clone(steps: StepRecord[]): StepRecord[] {
  return steps.map((step) => ({ ...step, ...(step.onFailure ? { onFailure: step.onFailure.map((f) => ({ ...f })) } : {}) }));
}

export class StageExecutor {
  private readonly driver: BuildDriver;
  private readonly workRoot: string;
  private readonly uid: number;
  private readonly gid: number;
  private readonly graceMs: number;
  /** Shell stages running now (their user's leftover processes are killed when the last ends). */
  private shellStages = 0;

  constructor(options: StageExecutorOptions) {
    this.driver = options.driver;
    this.workRoot = path.resolve(options.workRoot);
    this.uid = options.shellUid ?? 1004;
    this.gid = options.shellGid ?? this.uid;
    this.graceMs = options.graceMs ?? 3_000;
  }

  /** Runs one build stage; never throws for step failures (see StageResult), only for invalid requests and internal errors. */
  async runStage(request: StageRequest): Promise<StageResult> {
    this.validate(request);
    const workspaceDir = await realpath(request.workspaceDir).catch(() => {
      throw new StageRequestError(`the workspace ${request.workspaceDir} does not exist`);
    });
    const primaryHost = path.join(workspaceDir, request.primarySourceName);
    if (!(await stat(primaryHost).catch(() => undefined))?.isDirectory()) throw new StageRequestError(`the primary source ${primaryHost} is not a folder`);

    const { spec } = request;
    const kind = request.executor.kind;
    const authPasswords = [request.images.registryAuth, ...Object.values(request.images.extraAuths ?? {}), request.executor.kind === 'container' ? request.executor.auth : undefined]
      .filter((a): a is RegistryAuth => !!a)
      .flatMap((a) => [a.password, Buffer.from(`${a.username}:${a.password}`).toString('base64')]);
    const mask = createMasker([...Object.values(request.secrets), ...authPasswords]);
    const log = (line: string) => request.log(mask(line));
    const steps: StepRecord[] = spec.steps.map((step) => ({
      name: step.name,
      status: 'pending',
      ...(step.onFailure.length > 0 ? { onFailure: step.onFailure.map((f) => ({ name: f.name, status: 'pending' as const })) } : {}),
    }));
    const report = () => request.onStep?.(clone(steps));
    const finish = (result: Omit<StageResult, 'steps' | 'exported' | 'outputs'> & Partial<StageResult>): StageResult => {
      for (const step of steps) {
        if (step.status === 'pending') step.status = 'skipped';
        for (const failure of step.onFailure ?? []) if (failure.status === 'pending') failure.status = 'skipped';
      }
      report();
      if (result.message && result.status !== 'succeeded') log(`[slipway] stage ${request.stageName} ${result.status}: ${result.message}`);
      return { exported: {}, outputs: [], ...result, steps: clone(steps) };
    };

    // Refusals that depend on the spec: before anything runs.
    const refusal = this.refusal(request);
    if (refusal) return finish({ status: 'failed', message: refusal });

    const timeouts = [spec.timeoutInSeconds !== undefined ? spec.timeoutInSeconds * 1000 : undefined, request.timeoutMs].filter((t): t is number => t !== undefined && t > 0);
    const stageTimeoutMs = timeouts.length > 0 ? Math.min(...timeouts) : undefined;
    const limit = deadline(request.signal, stageTimeoutMs);
    const stopped = (): StageResult | null => {
      const fired = limit.reason();
      if (!fired) return null;
      const reason = fired === 'timeout' ? 'timeout' : 'cancelled';
      return finish({ status: reason, message: reason === 'timeout' ? `the stage timed out after ${Math.round((stageTimeoutMs ?? 0) / 1000)} s` : 'the stage was cancelled' });
    };

    // Stage folders: <workRoot>/stages/<id> (0711) with bin, steps (root, readable), state and
    // home (the step user's, private), work (root only); the socket in a short private folder.
    await mkdir(path.join(this.workRoot, 'stages'), { recursive: true });
    await chmod(this.workRoot, 0o711);
    await chmod(path.join(this.workRoot, 'stages'), 0o711);
    const stageDir = await mkdtemp(path.join(this.workRoot, 'stages', 's-'));
    await chmod(stageDir, 0o711);
    const dirs = {
      bin: path.join(stageDir, 'bin'),
      steps: path.join(stageDir, 'steps'),
      state: path.join(stageDir, 'state'),
      home: path.join(stageDir, 'home'),
      work: path.join(stageDir, 'work'),
    };
    const stepUid = kind === 'shell' ? this.uid : 0;
    const stepGid = kind === 'shell' ? this.gid : 0;
    for (const [name, dir] of Object.entries(dirs)) {
      const own = name === 'state' || name === 'home';
      await mkdir(dir, { mode: own || name === 'work' ? 0o700 : 0o755 });
      if (own) await chown(dir, stepUid, stepGid);
    }
    let socketDir = path.join(stageDir, 'sock');
    if (Buffer.byteLength(path.join(socketDir, 'docker.sock')) > 100) socketDir = await mkdtemp(path.join(tmpdir(), 'slipway-sock-'));
    else await mkdir(socketDir);
    await chmod(socketDir, 0o700);
    await chown(socketDir, stepUid, stepGid);
    const socketHost = path.join(socketDir, 'docker.sock');
    const stageToken = `SLIPWAY_STAGE=${randomBytes(12).toString('hex')}`;

    let sandbox: StepSandbox | undefined;
    let shim: DockerShimServer | undefined;
    if (kind === 'shell') this.shellStages++;
    try {
      await writeFile(path.join(dirs.bin, 'docker-shim.cjs'), dockerShimClient, { mode: 0o644 });
      await writeFile(
        path.join(dirs.bin, 'docker'),
        kind === 'shell' ? `#!/bin/sh\nexec ${process.execPath} ${path.join(dirs.bin, 'docker-shim.cjs')} "$@"\n` : containerShimLauncher,
        { mode: 0o755 },
      );

      if (request.executor.kind === 'shell') {
        const shell = new ShellSandbox({
          uid: this.uid, gid: this.gid, workspaceDir, primarySourceName: request.primarySourceName,
          binDir: dirs.bin, scriptDir: dirs.steps, stateDir: dirs.state, homeDir: dirs.home, socketPath: socketHost, graceMs: this.graceMs, marker: stageToken,
        });
        sandbox = shell;
        const inputProblem = await copyInputs(request.inputFiles ?? [], sandbox, workspaceDir, request.log);
        if (inputProblem) return finish({ status: 'failed', message: inputProblem });
        // The workspace belongs to the step user (links themselves, never their targets).
        const chowned = await runProcess('chown', ['-R', '-h', '-P', `${this.uid}:${this.gid}`, workspaceDir], { timeoutMs: 300_000 });
        if (chowned.code !== 0) throw new Error(`cannot hand the workspace to uid ${this.uid}: ${chowned.stderrTail.slice(-1)[0] ?? ''}`);
        const unreachable = await shell.preflight();
        if (unreachable) return finish({ status: 'failed', message: unreachable });
      } else {
        try {
          sandbox = await ContainerSandbox.create({
            driver: this.driver, image: request.executor.image, auth: request.executor.auth, insecure: request.executor.insecure,
            workspaceDir, primarySourceName: request.primarySourceName, binDir: dirs.bin, scriptDir: dirs.steps, stateDir: dirs.state,
            socketPath: socketHost, workDir: dirs.work, graceMs: this.graceMs, signal: limit.signal, log,
          });
        } catch (error) {
          return stopped() ?? finish({ status: 'failed', message: (error as Error).message });
        }
        const inputProblem = await copyInputs(request.inputFiles ?? [], sandbox, workspaceDir, request.log);
        if (inputProblem) return finish({ status: 'failed', message: inputProblem });
      }
      const box = sandbox;

      shim = new DockerShimServer({
        driver: this.driver,
        runId: request.runId,
        workspaceDir,
        hostPath: (stepPath) => box.workspaceHostPath(stepPath),
        workDir: dirs.work,
        images: request.images,
        log,
      }, socketHost);
      await shim.listen(stepUid, stepGid);

      // The environment of the first step; each step's dump becomes the next one's.
      const forced: Record<string, string> = {
        SLIPWAY_DOCKER_SOCKET: box.socketPath,
        [stageToken.split('=')[0]!]: stageToken.split('=')[1]!,
      };
      const base = box.baseEnv();
      let env: Record<string, string> = {
        ...base,
        PATH: `${box.binDir}:${base.PATH}`,
        LANG: 'C.UTF-8',
        ...request.env,
        ...request.secrets,
        ...forced,
      };

      const stateFile = { step: path.posix.join(box.stateDir.step, 'env'), host: path.join(box.stateDir.host, 'env') };
      let scriptCount = 0;
      const runOne = async (step: FailureStep, record: StepRecord, label: string): Promise<{ ok: boolean; timedOut: boolean; exitCode?: number; signal?: string }> => {
        const shellName = step.shell ?? spec.shell;
        const shellPath = await box.shellPath(shellName, log);
        const script = `step-${++scriptCount}.sh`;
        await writeFile(path.join(box.scriptDir.host, script), stepScript({
          name: step.name,
          command: step.command,
          stateFile: stateFile.step,
          failFast: step.failImmediatelyOnError ?? spec.failImmediatelyOnError ?? false,
          exportNames: spec.env.exportedVariables,
        }), { mode: 0o644 });
        await rm(stateFile.host, { force: true });
        record.status = 'running';
        record.startedAt = now();
        report();
        log(`[slipway] ${label} ${step.name}`);
        const started = Date.now();
        const result = await box.run({
          script: path.posix.join(box.scriptDir.step, script),
          shell: shellPath,
          env,
          cwd: box.primarySource,
          runAs: step.runAs ?? spec.runAs,
          timeoutMs: step.timeoutInSeconds !== undefined ? step.timeoutInSeconds * 1000 : undefined,
          signal: limit.signal,
          onLine: (line) => log(line),
        });
        record.finishedAt = now();
        record.durationMs = Date.now() - started;
        const state = await readStepFile(stateFile.host, maxStateBytes, kind === 'shell' ? this.uid : undefined);
        if (state) {
          const next = parseEnviron(state);
          for (const name of shellOwnVariables) delete next[name];
          env = { ...next, ...forced };
        }
        await rm(stateFile.host, { force: true });
        const ok = result.code === 0 && !result.timedOut && !result.aborted;
        record.status = ok ? 'succeeded' : 'failed';
        if (result.code !== null) record.exitCode = result.code;
        report();
        if (result.timedOut) log(`[slipway] ${label} ${step.name} timed out after ${step.timeoutInSeconds} s`);
        else if (!ok && !result.aborted) log(`[slipway] ${label} ${step.name} failed with exit code ${result.code ?? result.signal}`);
        return { ok, timedOut: result.timedOut, exitCode: result.code ?? undefined, signal: result.signal ?? undefined };
      };

      for (const [index, step] of spec.steps.entries()) {
        const record = steps[index]!;
        const outcome = await runOne(step, record, 'step');
        if (outcome.ok) continue;
        const stop = stopped();
        if (stop) return stop;
        // The failing step's onFailure steps, then the stage fails.
        for (const [j, failure] of step.onFailure.entries()) {
          await runOne(failure, record.onFailure![j]!, 'onFailure step');
          if (limit.reason()) break;
        }
        const stopAfter = stopped();
        if (stopAfter) return stopAfter;
        const message = outcome.timedOut
          ? `step "${step.name}" timed out after ${step.timeoutInSeconds} s`
          : outcome.exitCode !== undefined ? `step "${step.name}" failed with exit code ${outcome.exitCode}` : `step "${step.name}" was killed (${outcome.signal ?? 'unknown signal'})`;
        return finish({ status: 'failed', failedStep: step.name, ...(outcome.exitCode !== undefined && !outcome.timedOut ? { exitCode: outcome.exitCode } : {}), message });
      }

      // Outputs.
      const outputs: StageOutput[] = [];
      let outputDir: string | undefined;
      for (const artifact of spec.outputArtifacts) {
        if (artifact.type === 'BINARY') {
          const source = await box.resolveFile(artifact.location);
          const copied = source === null ? null : await copyOutput(source, async () => {
            outputDir ??= await this.outputFolder(request);
            return path.join(outputDir, artifact.name.replace(outputNamePattern, '_') || 'output');
          });
          if (!copied) return finish({ status: 'failed', message: `output artifact ${artifact.name}: ${artifact.location} is not a file in the ${kind === 'shell' ? 'workspace' : 'build container'} after the steps` });
          outputs.push({ name: artifact.name, type: 'BINARY', ...copied });
          log(`[slipway] output ${artifact.name}: ${artifact.location} (${copied.size} bytes, ${copied.digest})`);
        } else {
          let scoped: string;
          try {
            scoped = scopedImageName(request.runId, artifact.location);
          } catch (error) {
            return finish({ status: 'failed', message: `output artifact ${artifact.name}: ${(error as Error).message}` });
          }
          const image = await this.findRunImage(request.runId, scoped);
          if (!image) return finish({ status: 'failed', message: `output artifact ${artifact.name}: no image ${artifact.location} was built or tagged in this run (docker build -t ${artifact.location} …)` });
          outputs.push({ name: artifact.name, type: 'DOCKER_IMAGE', image: scoped, imageId: image });
          log(`[slipway] output ${artifact.name}: image ${artifact.location} (${image.slice(0, 12)})`);
        }
      }

      const exported: Record<string, string> = {};
      for (const name of spec.env.exportedVariables) {
        if (Object.prototype.hasOwnProperty.call(env, name)) exported[name] = env[name]!;
        else log(`[slipway] warning: exported variable ${name} is not set at the end of the stage`);
      }
      return finish({ status: 'succeeded', exported, outputs });
    } finally {
      limit.dispose();
      await shim?.close().catch(() => undefined);
      await sandbox?.close().catch((error: Error) => log(`[slipway] cleanup: ${error.message}`));
      if (kind === 'shell') {
        this.shellStages--;
        // This stage's processes (setsid'ed daemons included), found by the stage's marker in
        // their environment — never all of the user's: other servers on the host may share it.
        await killProcessesOf(this.uid, stageToken);
      }
      await rm(stageDir, { recursive: true, force: true }).catch(() => undefined);
      if (!isInside(stageDir, socketDir)) await rm(socketDir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private validate(request: StageRequest): void {
    const invalid = (message: string) => new StageRequestError(message);
    try {
      scopedImageName(request.runId, 'x');
    } catch {
      throw invalid(`run id ${JSON.stringify(request.runId)} is not usable`);
    }
    if (!request.primarySourceName || request.primarySourceName.includes('/') || request.primarySourceName === '.' || request.primarySourceName === '..') {
      throw invalid(`primary source name ${JSON.stringify(request.primarySourceName)} is not a folder name`);
    }
    if (request.spec.steps.length === 0) throw invalid('the build spec has no steps');
    if (request.executor.kind === 'container' && !request.executor.image) throw invalid('the container executor needs an image');
    for (const key of [...Object.keys(request.env), ...Object.keys(request.secrets)]) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw invalid(`environment variable name ${JSON.stringify(key)} is not valid`);
    }
  }

  /** A reason not to run the spec at all (user content the executor cannot honour). */
  private refusal(request: StageRequest): string | null {
    const { spec } = request;
    if (request.executor.kind === 'shell') {
      const wanted = [
        ...(spec.runAs !== undefined ? [{ where: 'the build spec', runAs: spec.runAs }] : []),
        ...spec.steps.flatMap((step) => [step, ...step.onFailure].filter((s) => s.runAs !== undefined).map((s) => ({ where: `step "${s.name}"`, runAs: s.runAs! }))),
      ];
      const first = wanted[0];
      if (first) {
        return first.runAs === 'root' || first.runAs === '0'
          ? `${first.where} asks for runAs: root, which the shell executor does not allow (its steps run as uid ${this.uid}); use the container executor for steps that need root`
          : `${first.where} asks for runAs: ${first.runAs}; the shell executor runs every step as uid ${this.uid} (runAs needs the container executor)`;
      }
    }
    for (const artifact of spec.outputArtifacts) {
      if (artifact.type === 'BINARY' && request.executor.kind === 'shell' && path.isAbsolute(artifact.location) && !isInside(path.resolve(request.workspaceDir), path.resolve(artifact.location))) {
        return `output artifact ${artifact.name}: ${artifact.location} is outside the workspace (the shell executor only collects files from ${path.resolve(request.workspaceDir)})`;
      }
      if (artifact.type === 'DOCKER_IMAGE') {
        try {
          scopedImageName(request.runId, artifact.location);
        } catch (error) {
          return `output artifact ${artifact.name}: ${(error as Error).message}`;
        }
      }
    }
    return null;
  }

  private async outputFolder(request: StageRequest): Promise<string> {
    const runDir = path.join(this.workRoot, 'outputs', request.runId.replace(outputNamePattern, '_'));
    await mkdir(runDir, { recursive: true, mode: 0o700 });
    return mkdtemp(path.join(runDir, `${request.stageName.replace(outputNamePattern, '_').slice(0, 40)}-`));
  }

  private async findRunImage(runId: string, scoped: string): Promise<string | null> {
    return runImagesOf(await this.driver.listImages(), runId).find((image) => image.names.includes(scoped))?.id ?? null;
  }

  /**
   * Pushes a run's image (its run-scoped name as in the StageOutput, or the name the steps used)
   * to `destination` (`host:port/repo:tag`); the login goes through an auth file, never argv.
   */
  async pushImage(runId: string, image: string, destination: string, options: { auth?: RegistryAuth; insecure: boolean; log: (l: string) => void; signal?: AbortSignal; format?: 'oci' | 'v2s2' }): Promise<{ digest: string }> {
    const scoped = scopedImageName(runId, image);
    if (!(await this.findRunImage(runId, scoped))) throw new Error(`no image ${image} in run ${runId}`);
    return this.driver.pushImage({ image: scoped, destination, auth: options.auth, insecure: options.insecure, format: options.format, signal: options.signal }, options.log);
  }

  /**
   * At run end: removes every image name of the run (images without other names go with them;
   * the layer cache stays) and the run's BINARY output files under `<workRoot>/outputs/<run>`.
   */
  async removeRunImages(runId: string): Promise<void> {
    await this.removeRunOutputs(runId);
    for (const name of runImageNames(await this.driver.listImages(), runId)) {
      try {
        await this.driver.removeImage(name);
      } catch (error) {
        if (error instanceof BuildError && error.reason === 'not-found') continue;
        throw new Error(`cannot remove ${name}: ${(error as BuildError).detail ?? ''}`);
      }
    }
  }

  /** Removes the run's BINARY output files (under `<workRoot>/outputs/<run>`). */
  async removeRunOutputs(runId: string): Promise<void> {
    await rm(path.join(this.workRoot, 'outputs', runId.replace(outputNamePattern, '_')), { recursive: true, force: true });
  }
}

export { runImagePrefix, scopedImageName, LocalNameError, StageRequestError };
