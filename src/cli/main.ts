/**
 * @module cli
 * The `slipway` command. Each subcommand turns its flags into config overrides, then calls the
 * composition root; output for people goes to stdout, logs (JSON) to stderr-free stdout lines.
 *
 *   serve | gc | fsck                      on a data folder (this file)
 *   auth rotate-token-key | vault rotate   key rotation on a data folder (cli/admin-commands.ts)
 *   login | logout                         API keys of this machine (cli/session-commands.ts)
 *   registry add|list|rm|creds             a namespace's external registries (cli/registry-commands.ts)
 *   registry quota|immutable|retention     a namespace's registry policy (cli/registry-policy-commands.ts)
 *   build | component build|get            builds on the server (cli/build-commands.ts)
 *   builds list|get|logs|cancel | base-image import
 *   fn deploy|list|get|rm|revisions|rollback|invoke|logs|metrics|keys
 *   pipeline apply|list|get|rm|webhook-secret|run|runs|show|logs|cancel|rerun|approve|reject
 *   artefact create|list                   (cli/pipeline-commands.ts)
 *
 * Exit codes: 0 ok; 1 the operation failed (server, API, vault, fsck problems); 2 usage or
 * configuration errors (bad flags, bad config, missing files, not logged in).
 */
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, type ConfigInput } from '../config/config.js';
import { registerAdminCommands } from './admin-commands.js';
import { registerBuildCommands } from './build-commands.js';
import { registerFunctionCommands } from './fn-commands.js';
import { registerPipelineCommands } from './pipeline-commands.js';
import { configFrom as configFromEnv, withCommonFlags, type CommonFlags } from './common.js';
import { CommandError, UsageError } from './errors.js';
import { registerRegistryCommands } from './registry-commands.js';
import { registerSessionCommands } from './session-commands.js';

/** The server stack, loaded only by the subcommands that need it (API commands start faster). */
const serverStack = () => import('../main.js');

function configFrom(flags: CommonFlags, extra: ConfigInput = {}) {
  return configFromEnv(flags, process.env, extra);
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command('slipway').description('Slipway: git push to running functions, with its own OCI registry').showHelpAfterError();
  // Usage errors surface as CommanderError (exit 2 below) instead of commander's exit 1;
  // subcommands made after this inherit it.
  program.exitOverride();

  withCommonFlags(program.command('serve').description('start the server with embedded defaults'))
    .option('-l, --listen <host:port>', 'address to listen on (env SLIPWAY_LISTEN)')
    .action(async (flags: CommonFlags & { listen?: string }) => {
      const config = configFrom(flags, { listen: flags.listen });
      const { startServer } = await serverStack();
      const server = await startServer(config);
      process.stdout.write(`Slipway listening on ${server.url} (data in ${config.dataDir}, database ${config.database === 'sqlite' ? 'sqlite' : 'postgres'})\n`);
      if (server.generatedAdminPassword) {
        // Shown once, on the first start only; it is stored hashed.
        process.stdout.write(`Created user "admin" with password ${server.generatedAdminPassword} (set SLIPWAY_ADMIN_PASSWORD to choose it; shown only now)\n`);
      }
      if (!config.auth.enabled) process.stdout.write('Access control is OFF (auth.enabled: false): anyone who can reach this address may push and delete\n');
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        server.app.log.info({ signal }, 'shutting down: finishing in-flight requests');
        const force = setTimeout(() => {
          server.app.log.error('shutdown timed out; exiting');
          process.exit(1);
        }, config.shutdownTimeout);
        force.unref();
        server.close().then(() => process.exit(0), (error) => {
          server.app.log.error({ err: error }, 'shutdown failed');
          process.exit(1);
        });
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });

  withCommonFlags(program.command('gc').description('collect unreferenced manifests and blobs now (safe while the server runs)'))
    .addOption(new Option('--grace-period <duration>', 'only collect content untouched this long, e.g. 1h (default from config)'))
    .option('--json', 'print the report as JSON')
    .action(async (flags: CommonFlags & { gracePeriod?: string; json?: boolean }) => {
      const config = configFrom(flags, flags.gracePeriod ? { registry: { gc: { gracePeriod: flags.gracePeriod } } } : {});
      const { createLogger, openRegistry } = await serverStack();
      const registry = await openRegistry(config, { logger: createLogger({ ...config, log: { ...config.log, level: 'warn' } }) });
      try {
        const report = await registry.gc();
        if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
        else process.stdout.write(`gc: ${report.manifestsDeleted} manifests, ${report.linksDeleted} repository links, ${report.blobsDeleted} blobs (${report.bytesFreed} bytes), ${report.uploadsExpired} expired uploads removed in ${report.durationMs} ms\n`);
      } finally {
        await registry.close();
      }
    });

  withCommonFlags(program.command('fsck').description('verify every blob digest and every reference; exit 1 on problems'))
    .option('--json', 'print the report as JSON')
    .action(async (flags: CommonFlags & { json?: boolean }) => {
      const config = configFrom(flags);
      const { openRegistry } = await serverStack();
      const registry = await openRegistry(config);
      try {
        const report = await registry.fsck();
        if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
        else {
          process.stdout.write(`fsck: ${report.blobsChecked} blobs (${report.bytesChecked} bytes) and ${report.manifestsChecked} manifests checked, ${report.problems.length} problems\n`);
          for (const problem of report.problems) process.stdout.write(`  ${problem.kind} ${problem.repository ?? ''} ${problem.digest ?? ''}: ${problem.detail}\n`);
          for (const note of report.referencesDeleted) process.stdout.write(`  note: ${note.repository} ${note.digest} ${note.detail}\n`);
        }
        if (report.problems.length > 0) process.exitCode = 1;
      } finally {
        await registry.close();
      }
    });

  registerAdminCommands(program, process.env);
  registerSessionCommands(program, process.env);
  registerRegistryCommands(program, process.env);
  registerBuildCommands(program, process.env);
  registerFunctionCommands(program, process.env);
  registerPipelineCommands(program, process.env);

  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and --version end with 0; commander has already printed what was wrong.
      if (error.exitCode === 0) return;
      process.exit(2);
    }
    if (error instanceof ConfigError || error instanceof UsageError) {
      process.stderr.write(`slipway: ${error.message}\n`);
      process.exit(2);
    }
    if (error instanceof CommandError) {
      process.stderr.write(`slipway: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}
