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
import { InvalidArgumentError, Option, type Command } from 'commander';
import { baseImageImportCommand, type ImportFlags } from './base-image-import.js';
import { buildsCancelCommand, buildsLogsCommand, buildsTable, describeBuild } from './build-history.js';
import { withApi, type Env, type ServerFlags } from './build-session.js';
import { buildCommand, componentBuildCommand, componentGetCommand, type BuildFlags, type ComponentBuildFlags, type ComponentGetFlags } from './build-uploads.js';

// Re-exported: tests and other callers import these from here.
export { parseCommand } from './base-image-import.js';
export { buildsTable } from './build-history.js';
export { gitBranch, parseBuildArgs } from './build-uploads.js';

const defaultArchitecture = 'linux/amd64';
const kinds = ['image', 'component'] as const;
const statuses = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;

function serverOptions(command: Command): Command {
  return command
    .option('--server <url>', 'Slipway server (default: SLIPWAY_SERVER, else the server of the last `slipway login`)')
    .requiredOption('-n, --namespace <namespace>', 'the namespace');
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a whole number of at least 1');
  return n;
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
