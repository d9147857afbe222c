/**
 * @module cli/pipeline-commands
 * `slipway pipeline apply|list|get|rm|webhook-secret|run|runs|show|logs|cancel|rerun|approve|reject`
 * and `slipway artefact create|list`, over the REST API (`/api/v1/namespaces/{ns}/pipelines`,
 * see pipelines/routes.ts; `…/artefact-versions`, see artifacts/routes.ts).
 *
 * `apply -f FILE` creates the pipeline, or replaces it (PUT) when it exists; on create the
 * webhook secret is printed this once (as by `webhook-secret`, which makes a new one); nothing
 * else ever prints a secret. `run --follow` (and `logs --follow`) stream the run's log as
 * Server-Sent Events, then print a summary of its stages; the exit code is 1 when the run
 * failed or was cancelled. API errors are shown as the server's message (exit 1), bad flags or
 * files as usage errors (exit 2).
 */
import { Option, type Command } from 'commander';
import { stringify as toYaml } from 'yaml';
import { artifactOperations } from '../artifacts/api.js';
import { fillPath, type ApiBody } from '../http/api-client.js';
import { pipelineOperations } from '../pipelines/api.js';
import type { RunView } from '../pipelines/runs.js';
import { ApiRequestError, responseError } from './client.js';
import { CommandError, UsageError } from './errors.js';
import { api, finalStatuses, followAndReport, getRun, pipelinePath, type Env } from './pipeline-api.js';
import { parseParameters, readDocument, runNumber } from './pipeline-files.js';
import { countStages, describeRun, describeTrigger, duration, short, table } from './pipeline-output.js';

// Re-exported: tests and other callers import these from here.
export { followRun } from './pipeline-api.js';
export { parseDocument, parseParameters, runNumber } from './pipeline-files.js';
export { describeRun, runSummary, table } from './pipeline-output.js';

interface ServerFlags {
  server?: string;
  namespace: string;
  json?: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

function serverOptions(command: Command, what = 'the pipeline'): Command {
  return command
    .option('--server <url>', 'Slipway server (default: SLIPWAY_SERVER, else the server of the last `slipway login`)')
    .requiredOption('-n, --namespace <namespace>', `the namespace of ${what}`);
}

// ---- commands ---------------------------------------------------------------------------------

export function registerPipelineCommands(program: Command, env: Env): void {
  const pipeline = program.command('pipeline').alias('pipelines')
    .description('pipelines: build, deliver and deploy from git; runs, logs, approvals')
    .addHelpText('after', '\nEvery subcommand uses the API key of `slipway login`, or SLIPWAY_SERVER and SLIPWAY_API_KEY (for CI).');

  serverOptions(pipeline.command('apply').description('create a pipeline from a file, or replace its definition when it exists'))
    .requiredOption('-f, --file <file>', 'the pipeline, YAML or JSON (- reads stdin)')
    .option('--json', 'print the pipeline as JSON')
    .action(async (flags: ServerFlags & { file: string }) => {
      const document = await readDocument(flags.file) as Record<string, unknown>;
      const name = document.name;
      await api(flags, env, async ({ client, url }) => {
        let exists = false;
        if (typeof name === 'string' && name !== '') {
          try {
            await client.call(pipelineOperations.getPipeline, { params: { ns: flags.namespace, name } });
            exists = true;
          } catch (error) {
            if (!(error instanceof ApiRequestError && error.status === 404)) throw error;
          }
        }
        // Unknown keys the server left out (refused with `strict: true`).
        const warn = (view: { warnings?: Array<{ message: string; path: string }> }) => {
          for (const warning of view.warnings ?? []) process.stderr.write(`Warning: ${warning.message}\n`);
        };
        // The file as it is: the server validates it (unknown keys are warnings, see above).
        const definition = document as ApiBody<typeof pipelineOperations.createPipeline>;
        if (exists) {
          const view = await client.call(pipelineOperations.replacePipeline, { params: { ns: flags.namespace, name: name as string }, body: definition });
          warn(view);
          if (flags.json) return void process.stdout.write(`${JSON.stringify(view)}\n`);
          process.stdout.write(`Updated pipeline ${view.name} in ${view.namespace}\n`);
          process.stdout.write(`Webhook URL:    ${url}${view.webhook.path}\n`);
          return;
        }
        const view = await client.call(pipelineOperations.createPipeline, { params: { ns: flags.namespace }, body: definition });
        warn(view);
        if (flags.json) return void process.stdout.write(`${JSON.stringify(view)}\n`);
        process.stdout.write(`Created pipeline ${view.name} in ${view.namespace}\n`);
        process.stdout.write(`Webhook URL:    ${url}${view.webhook.path}\n`);
        if (view.webhook.secret) {
          process.stdout.write(`Webhook secret: ${view.webhook.secret}\n`);
          process.stdout.write(`  shown only now: store it in the git host's webhook settings (a new one: slipway pipeline webhook-secret ${view.name} -n ${view.namespace})\n`);
        }
      });
    });

  serverOptions(pipeline.command('list').alias('ls').description('list the pipelines of a namespace'), 'the pipelines')
    .option('--json', 'print JSON')
    .action(async (flags: ServerFlags) => {
      await api(flags, env, async ({ client }) => {
        const { pipelines } = await client.call(pipelineOperations.listPipelines, { params: { ns: flags.namespace } });
        if (flags.json) return void process.stdout.write(`${JSON.stringify(pipelines)}\n`);
        if (pipelines.length === 0) return void process.stdout.write(`No pipelines in ${flags.namespace}\n`);
        process.stdout.write(table(['NAME', 'STAGES', 'LAST RUN', 'UPDATED'], pipelines.map((p) => [
          p.name, String(countStages(p)), p.lastRun ? `#${p.lastRun.number} ${p.lastRun.status}` : '-', p.updatedAt,
        ])));
      });
    });

  serverOptions(pipeline.command('get').description('print a pipeline\'s definition as YAML (ready for apply), or all of it as JSON'))
    .argument('<name>')
    .option('--json', 'print the pipeline (definition, webhook, last run) as JSON')
    .action(async (name: string, flags: ServerFlags) => {
      await api(flags, env, async ({ client, url }) => {
        const view = await client.call(pipelineOperations.getPipeline, { params: { ns: flags.namespace, name } });
        if (flags.json) return void process.stdout.write(`${JSON.stringify(view)}\n`);
        const header = [
          `# pipeline ${view.name} in ${view.namespace}, updated ${view.updatedAt}${view.createdBy ? `, created by ${view.createdBy}` : ''}`,
          `# webhook: ${url}${view.webhook.path}${view.webhook.secretSet ? '' : ' (no secret)'}`,
          `# last run: ${view.lastRun ? `#${view.lastRun.number} ${view.lastRun.status} (${view.lastRun.createdAt})` : 'none'}`,
        ];
        process.stdout.write(`${header.join('\n')}\n${toYaml(view.spec)}`);
      });
    });

  serverOptions(pipeline.command('rm').alias('delete').description('delete a pipeline: its active runs are cancelled, its runs go'))
    .argument('<name>')
    .action(async (name: string, flags: ServerFlags) => {
      await api(flags, env, async ({ client }) => {
        await client.call(pipelineOperations.deletePipeline, { params: { ns: flags.namespace, name } });
        process.stdout.write(`Deleted pipeline ${name}\n`);
      });
    });

  serverOptions(pipeline.command('webhook-secret').description('make a new webhook secret (the old one stops working); it is printed once'))
    .argument('<name>')
    .action(async (name: string, flags: ServerFlags) => {
      await api(flags, env, async ({ client, url }) => {
        const { secret } = await client.call(pipelineOperations.rotateWebhookSecret, { params: { ns: flags.namespace, name } });
        process.stdout.write(`${secret}\n`);
        process.stderr.write(`slipway: the webhook secret of ${name} is shown only now: put it in the git host's webhook for ${url}${pipelinePath(flags.namespace, name)}/webhook\n`);
      });
    });

  serverOptions(pipeline.command('run').description('start a run; with --follow, print its log until it ends (exit 1 unless it succeeds)'))
    .argument('<name>')
    .option('-p, --param <NAME=VALUE>', 'a parameter value (repeat)', collect, [])
    .option('--branch <branch>', 'build this branch of the primary source (default its branch)')
    .option('--commit <sha>', 'build this commit (default the branch head)')
    .option('-f, --follow', 'print the log as it comes, then a summary; exit 1 when the run fails')
    .option('--json', 'print the run as JSON')
    .action(async (name: string, flags: ServerFlags & { param: string[]; branch?: string; commit?: string; follow?: boolean }) => {
      const parameters = parseParameters(flags.param);
      if (flags.commit !== undefined && !/^[0-9a-f]{4,64}$/.test(flags.commit)) throw new UsageError(`--commit takes a commit SHA (4–64 lowercase hex digits), got "${flags.commit}"`);
      if (flags.branch !== undefined && flags.branch.trim() === '') throw new UsageError('--branch: empty');
      await api(flags, env, async (session) => {
        const { client } = session;
        const body: ApiBody<typeof pipelineOperations.startRun> = { parameters };
        if (flags.branch) body.branch = flags.branch;
        if (flags.commit) body.commit = flags.commit;
        let run: RunView;
        try {
          run = await client.call(pipelineOperations.startRun, { params: { ns: flags.namespace, name }, body }) as RunView;
        } catch (error) {
          // A parameter problem: name the parameters the pipeline has.
          if (error instanceof ApiRequestError && error.status === 400 && /parameter/.test(error.serverMessage ?? '')) {
            const declared = await client.call(pipelineOperations.getPipeline, { params: { ns: flags.namespace, name } }).then((p) => p.spec.parameters, () => undefined);
            if (declared) {
              const list = declared.length ? declared.map((p) => (p.defaultValue !== undefined ? `${p.name} (default "${p.defaultValue}")` : `${p.name} (required)`)).join(', ') : 'none';
              throw new CommandError(`${error.serverMessage}\nparameters of ${name}: ${list}`);
            }
          }
          throw error;
        }
        if (!flags.follow) {
          if (flags.json) return void process.stdout.write(`${JSON.stringify(run)}\n`);
          process.stdout.write(`Run ${run.number} of ${name}: ${run.status}\n`);
          process.stderr.write(`slipway: follow it with: slipway pipeline logs ${name} ${run.number} -n ${flags.namespace} --follow\n`);
          return;
        }
        if (!flags.json) process.stderr.write(`slipway: run ${run.number} of ${name} ${run.status}\n`);
        await followAndReport(session, flags.namespace, name, run.number, flags.json);
      });
    });

  serverOptions(pipeline.command('runs').description('list the runs of a pipeline, newest first'))
    .argument('<name>')
    .option('--limit <n>', 'how many (at most 200)', '20')
    .addOption(new Option('--status <status>', 'only runs in this status').choices(['queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled']))
    .option('--json', 'print JSON')
    .action(async (name: string, flags: ServerFlags & { limit: string; status?: string }) => {
      if (!/^\d+$/.test(flags.limit) || Number(flags.limit) < 1) throw new UsageError(`--limit takes a positive whole number, got "${flags.limit}"`);
      await api(flags, env, async ({ client }) => {
        const query = { limit: Number(flags.limit), status: flags.status as RunView['status'] | undefined };
        const { runs } = await client.call(pipelineOperations.listRuns, { params: { ns: flags.namespace, name }, query });
        if (flags.json) return void process.stdout.write(`${JSON.stringify(runs)}\n`);
        if (runs.length === 0) return void process.stdout.write(`No runs of ${name}\n`);
        process.stdout.write(table(['RUN', 'STATUS', 'TRIGGER', 'COMMIT', 'CREATED', 'DURATION', 'ERROR'], runs.map((r) => [
          String(r.number), r.status, describeTrigger(r), short(r.commit), r.createdAt, duration(r.durationMs), r.error ?? '',
        ])));
      });
    });

  serverOptions(pipeline.command('show').description('a run: stages, steps with exit codes, exported variables, artifacts with digests'))
    .argument('<name>')
    .argument('<number>', 'run number (see `slipway pipeline runs`)')
    .option('--json', 'print the run as JSON')
    .action(async (name: string, numberArg: string, flags: ServerFlags) => {
      const number = runNumber(numberArg);
      await api(flags, env, async ({ client }) => {
        const run = await getRun(client, flags.namespace, name, number);
        process.stdout.write(flags.json ? `${JSON.stringify(run)}\n` : describeRun(run));
      });
    });

  serverOptions(pipeline.command('logs').description('print a run\'s log; --follow prints it live until the run ends'))
    .argument('<name>')
    .argument('<number>', 'run number')
    .option('-f, --follow', 'keep printing until the run ends, then a summary; exit 1 unless it succeeded')
    .action(async (name: string, numberArg: string, flags: ServerFlags & { follow?: boolean }) => {
      const number = runNumber(numberArg);
      await api(flags, env, async (session) => {
        if (flags.follow) return followAndReport(session, flags.namespace, name, number, false);
        const target = `${session.url}${fillPath(pipelineOperations.runLogs.path, { ns: flags.namespace, name, number: String(number) })}`;
        const authorization = session.client.authorization();
        let response: Response;
        try {
          response = await fetch(target, { headers: { accept: 'text/plain', ...(authorization ? { authorization } : {}) }, signal: AbortSignal.timeout(60_000) });
        } catch (error) {
          throw new ApiRequestError(`cannot reach ${target}: ${(error as Error & { cause?: { code?: string } }).cause?.code ?? (error as Error).message}`, 'GET', target, 0);
        }
        const text = await response.text();
        if (!response.ok) throw responseError('GET', target, response, text);
        process.stdout.write(text);
      });
    });

  serverOptions(pipeline.command('cancel').description('cancel a queued, running or waiting run'))
    .argument('<name>')
    .argument('<number>', 'run number')
    .action(async (name: string, numberArg: string, flags: ServerFlags) => {
      const number = runNumber(numberArg);
      await api(flags, env, async ({ client }) => {
        const before = await getRun(client, flags.namespace, name, number);
        if (finalStatuses.has(before.status)) return void process.stdout.write(`Run ${number} of ${name} had already ${before.status}\n`);
        const run = await client.call(pipelineOperations.cancelRun, { params: { ns: flags.namespace, name, number: String(number) } });
        if (run.status === 'cancelled') process.stdout.write(`Cancelled run ${number} of ${name}\n`);
        else if (finalStatuses.has(run.status)) process.stdout.write(`Run ${number} of ${name} had already ${run.status}\n`);
        else process.stdout.write(`Cancelling run ${number} of ${name} (it stops its current stage)\n`);
      });
    });

  serverOptions(pipeline.command('rerun').description('run a finished run again: the same commit and parameters, from a stage (default the first failed one)'))
    .argument('<name>')
    .argument('<number>', 'run number')
    .option('--from-stage <stage>', 'run this stage and the later ones again; earlier ones are taken over')
    .option('-f, --follow', 'print the new run\'s log until it ends; exit 1 unless it succeeds')
    .option('--json', 'print the new run as JSON')
    .action(async (name: string, numberArg: string, flags: ServerFlags & { fromStage?: string; follow?: boolean }) => {
      const number = runNumber(numberArg);
      await api(flags, env, async (session) => {
        const run = await session.client.call(pipelineOperations.rerun, { params: { ns: flags.namespace, name, number: String(number) }, body: flags.fromStage ? { fromStage: flags.fromStage } : {} }) as RunView;
        if (!flags.follow) {
          if (flags.json) return void process.stdout.write(`${JSON.stringify(run)}\n`);
          return void process.stdout.write(`Run ${run.number} of ${name} re-runs run ${number}: ${run.status}\n`);
        }
        if (!flags.json) process.stderr.write(`slipway: run ${run.number} of ${name} re-runs run ${number}\n`);
        await followAndReport(session, flags.namespace, name, run.number, flags.json);
      });
    });

  for (const decision of ['approve', 'reject'] as const) {
    serverOptions(pipeline.command(decision).description(`${decision} a run's approval stage that is waiting`))
      .argument('<name>')
      .argument('<number>', 'run number')
      .argument('<stage>', 'the approval stage')
      .option('-m, --comment <text>', 'why (kept with the decision)')
      .action(async (name: string, numberArg: string, stage: string, flags: ServerFlags & { comment?: string }) => {
        const number = runNumber(numberArg);
        await api(flags, env, async ({ client }) => {
          const operation = decision === 'approve' ? pipelineOperations.approveStage : pipelineOperations.rejectStage;
          await client.call(operation, { params: { ns: flags.namespace, name, number: String(number), stage }, body: flags.comment !== undefined ? { comment: flags.comment } : {} });
          process.stdout.write(`${decision === 'approve' ? 'Approved' : 'Rejected'} stage "${stage}" of run ${number} of ${name}${decision === 'approve' ? '; the run goes on' : '; the run fails'}\n`);
        });
      });
  }

  // ---- artefact versions ----

  const artefact = program.command('artefact').alias('artifact')
    .description('artefact versions: tell Slipway about images and Score workloads built elsewhere (automation rules act on them)');

  serverOptions(artefact.command('create').description('record an artefact version (how an external CI notifies Slipway)'), 'the artefact')
    .addOption(new Option('--type <type>', 'container: an image; workload: a Score workload').choices(['container', 'workload']).makeOptionMandatory())
    .requiredOption('--name <name>', 'container: the image name without tag (host/repo); workload: the workload name')
    .option('--version <version>', 'container: the tag; workload: any version label')
    .option('--ref <ref>', 'git ref it was built from (refs/heads/main, refs/tags/v1)')
    .option('--commit <sha>', 'git commit it was built from')
    .option('--digest <digest>', 'container: sha256:… of the image')
    .option('--spec <file>', 'workload: the Score file (YAML or JSON)')
    .option('--image <ref>', 'workload: the image of containers whose image is "."')
    .option('--dry-run', 'validate only')
    .option('--json', 'print the version as JSON')
    .action(async (flags: ServerFlags & { type: 'container' | 'workload'; name: string; version?: string; ref?: string; commit?: string; digest?: string; spec?: string; image?: string; dryRun?: boolean }) => {
      if (flags.type === 'container' && flags.spec !== undefined) throw new UsageError('--spec is for --type workload (a container artefact is the image)');
      if (flags.type === 'container' && flags.image !== undefined) throw new UsageError('--image is for --type workload (a container artefact is the image itself: --name and --version)');
      if (flags.type === 'workload' && flags.spec === undefined) throw new UsageError('--type workload needs --spec <score.yaml>');
      if (flags.type === 'workload' && flags.digest !== undefined) throw new UsageError('--digest is for --type container');
      if (flags.ref !== undefined && !flags.ref.startsWith('refs/')) throw new UsageError(`--ref takes a full git ref (refs/heads/${flags.ref} or refs/tags/${flags.ref}), got "${flags.ref}"`);
      const body: ApiBody<typeof artifactOperations.createArtefactVersion> = { type: flags.type, name: flags.name };
      for (const key of ['version', 'ref', 'commit', 'digest', 'image'] as const) if (flags[key] !== undefined) body[key] = flags[key];
      if (flags.spec !== undefined) body.spec = await readDocument(flags.spec);
      await api(flags, env, async ({ client }) => {
        const query = flags.dryRun ? { dry_run: 'true' as const } : {};
        const view = await client.call(artifactOperations.createArtefactVersion, { params: { ns: flags.namespace }, query, body });
        if (flags.dryRun || !view) return void process.stdout.write(`The artefact version is valid (not recorded: --dry-run)\n`);
        if (flags.json) return void process.stdout.write(`${JSON.stringify(view)}\n`);
        process.stdout.write(`Recorded ${view.type} ${view.name}${view.version ? `:${view.version}` : ''} as ${view.id}\n`);
        for (const a of view.automations ?? []) process.stdout.write(`  rule ${a.rule}: ${a.action} ${a.outcome}${a.error ? ` (${a.error})` : ''}\n`);
        if (view.automations?.some((a) => a.outcome === 'failed')) process.stderr.write('slipway: an automation rule failed on this version (see above)\n');
      });
    });

  serverOptions(artefact.command('list').alias('ls').description('list artefact versions, newest first'), 'the artefacts')
    .option('--name <name>', 'only versions of this name')
    .addOption(new Option('--type <type>', 'only this type').choices(['container', 'workload']))
    .option('--ref <ref>', 'only versions of this git ref')
    .option('--archived', 'archived versions (default: the others)')
    .option('--limit <n>', 'how many (at most 1000)', '100')
    .option('--json', 'print JSON')
    .action(async (flags: ServerFlags & { name?: string; type?: string; ref?: string; archived?: boolean; limit: string }) => {
      if (!/^\d+$/.test(flags.limit) || Number(flags.limit) < 1 || Number(flags.limit) > 1000) throw new UsageError(`--limit takes a whole number from 1 to 1000, got "${flags.limit}"`);
      const query = {
        limit: Number(flags.limit), archived: flags.archived ? 'true' as const : 'false' as const,
        name: flags.name || undefined, type: (flags.type || undefined) as 'container' | 'workload' | undefined, reference: flags.ref || undefined,
      };
      await api(flags, env, async ({ client }) => {
        const { artefactVersions } = await client.call(artifactOperations.listArtefactVersions, { params: { ns: flags.namespace }, query });
        if (flags.json) return void process.stdout.write(`${JSON.stringify(artefactVersions)}\n`);
        if (artefactVersions.length === 0) return void process.stdout.write('No artefact versions\n');
        process.stdout.write(table(['ID', 'TYPE', 'NAME', 'VERSION', 'DIGEST', 'COMMIT', 'SOURCE', 'CREATED'], artefactVersions.map((v) => [
          v.id, v.type, v.name, v.version ?? '-', v.digest ? `${v.digest.slice(0, 19)}…` : '-', short(v.commit), v.source, v.createdAt,
        ])));
      });
    });
}
