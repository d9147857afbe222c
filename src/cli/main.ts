/**
 * @module cli
 * The `slipway` command. Each subcommand turns its flags into config overrides, then calls the
 * composition root; output for people goes to stdout, logs (JSON) to stderr-free stdout lines.
 */
import { Command, Option } from 'commander';
import { ConfigError, loadConfig, type ConfigInput } from '../config/config.js';
import { createLogger, openRegistry, startServer } from '../main.js';

interface CommonFlags {
  config?: string;
  dataDir?: string;
  database?: string;
}

function withCommonFlags(command: Command): Command {
  return command
    .option('-c, --config <file>', 'YAML config file')
    .option('-d, --data-dir <dir>', 'data folder (env SLIPWAY_DATA_DIR)')
    .option('--database <url>', '"sqlite" (default) or a postgres:// URL (env SLIPWAY_DATABASE)');
}

function configFrom(flags: CommonFlags, extra: ConfigInput = {}) {
  return loadConfig({
    file: flags.config,
    env: process.env,
    flags: { dataDir: flags.dataDir, database: flags.database, ...extra },
  });
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command('slipway').description('Slipway: git push to running functions, with its own OCI registry').showHelpAfterError();

  withCommonFlags(program.command('serve').description('start the server with embedded defaults'))
    .option('-l, --listen <host:port>', 'address to listen on (env SLIPWAY_LISTEN)')
    .action(async (flags: CommonFlags & { listen?: string }) => {
      const config = configFrom(flags, { listen: flags.listen });
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

  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`slipway: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}
