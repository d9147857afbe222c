/**
 * @module cli/registry-commands
 * `slipway registry add|list|rm|creds`: a namespace's external registries (and, from
 * cli/registry-policy-commands.ts, `quota|immutable|retention`) over the REST API
 * (`/api/v1/namespaces/{ns}/registries`, see credentials/routes.ts). Flags become the stored
 * credential shape of the type (credentials/material.ts); the secret comes from stdin, a file
 * or SLIPWAY_REGISTRY_SECRET, never from the command line. `creds` prints a login, which is its
 * purpose (CI scripts); nothing else prints a secret.
 */
import { Option, type Command } from 'commander';
import type { RegistryView } from './client.js';
import { UsageError } from './errors.js';
import { readSecretFile, readStdinSecret } from './secrets.js';
import { withSession } from './session-commands.js';
import { registerRegistryPolicyCommands, registerRegistryProxyCommands } from './registry-policy-commands.js';

type Env = Record<string, string | undefined>;

const types = ['basic', 'swr', 'ecr', 'gcr', 'gar', 'acr', 'ocir'] as const;
type RegistryType = (typeof types)[number];

interface ServerFlags {
  server?: string;
  namespace: string;
}

interface AddFlags extends ServerFlags {
  prefix: string;
  type: RegistryType;
  username?: string;
  region?: string;
  tenancy?: string;
  enableCi?: boolean;
  secretStdin?: boolean;
  secretFile?: string;
  json?: boolean;
}

/** Which flags each type takes, and what the secret is called in its stored shape. */
const shapes: Record<RegistryType, { username?: string; region?: boolean; tenancy?: boolean; secret: string; secretHelp: string }> = {
  basic: { username: 'username', secret: 'password', secretHelp: 'the password or access token' },
  swr: { username: 'accessKey', region: true, secret: 'secretKey', secretHelp: 'the IAM secret access key (SK); --username is the access key (AK)' },
  ecr: { username: 'accessKeyId', region: true, secret: 'secretAccessKey', secretHelp: 'the AWS secret access key; --username is the access key id' },
  gcr: { secret: 'serviceAccountKey', secretHelp: 'the service account JSON key file' },
  gar: { secret: 'serviceAccountKey', secretHelp: 'the service account JSON key file' },
  acr: { username: 'clientId', secret: 'clientSecret', secretHelp: 'the service principal client secret; --username is the client (application) id' },
  ocir: { username: 'username', tenancy: true, secret: 'authToken', secretHelp: 'an OCI auth token; --tenancy is the Object Storage namespace' },
};

/** The non-secret fields of a type's stored shape, from flags; a UsageError for missing or foreign flags. */
export function identityFor(flags: Pick<AddFlags, 'type' | 'username' | 'region' | 'tenancy'>): Record<string, string> {
  const shape = shapes[flags.type];
  const out: Record<string, string> = {};
  const need = (value: string | undefined, flag: string, why: string): string => {
    if (value === undefined || value.trim() === '') throw new UsageError(`--type ${flags.type} needs ${flag} (${why})`);
    return value.trim();
  };
  const refuse = (value: string | undefined, flag: string) => {
    if (value !== undefined) throw new UsageError(`${flag} does not apply to --type ${flags.type}`);
  };
  if (shape.username) out[shape.username] = need(flags.username, '--username', shape.username === 'username' ? 'the user name' : `the ${shape.username}`);
  else refuse(flags.username, '--username');
  if (shape.region) out.region = need(flags.region, '--region', flags.type === 'swr' ? 'the project, normally the region id such as cn-north-4' : 'the AWS region such as eu-west-1');
  else refuse(flags.region, '--region');
  if (shape.tenancy) out.tenancyNamespace = need(flags.tenancy, '--tenancy', 'the Object Storage namespace of the tenancy');
  else refuse(flags.tenancy, '--tenancy');
  return out;
}

/** The `credentials` object of the API for a type (credentials/material.ts), from flags and the secret. */
export function credentialsFor(flags: Pick<AddFlags, 'type' | 'username' | 'region' | 'tenancy'>, secret: string): Record<string, unknown> {
  const out: Record<string, unknown> = identityFor(flags);
  if (flags.type === 'gcr' || flags.type === 'gar') {
    let key: { type?: unknown; client_email?: unknown; private_key?: unknown } | null;
    try {
      key = JSON.parse(secret) as typeof key;
    } catch {
      throw new UsageError(`--type ${flags.type}: the secret must be the service account's JSON key file, and it is not JSON`);
    }
    if (!key || key.type !== 'service_account' || typeof key.client_email !== 'string' || typeof key.private_key !== 'string') {
      throw new UsageError(`--type ${flags.type}: the JSON is not a service account key (needs "type": "service_account", client_email and private_key)`);
    }
    out.serviceAccountKey = secret.trim();
  } else {
    out[shapes[flags.type].secret] = secret;
  }
  return out;
}

function table(rows: RegistryView[]): string {
  const header = ['ID', 'PREFIX', 'TYPE', 'USERNAME', 'ENABLE_CI'];
  const cells = rows.map((r) => [r.id, r.prefix, r.type, r.username ?? '-', r.enable_ci ? 'yes' : 'no']);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [header, ...cells].map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function serverOptions(command: Command): Command {
  return command
    .option('--server <url>', 'Slipway server (default: SLIPWAY_SERVER, else the server of the last `slipway login`)')
    .requiredOption('-n, --namespace <namespace>', 'the namespace the registry belongs to');
}

export function registerRegistryCommands(program: Command, env: Env): void {
  const registry = program.command('registry')
    .description('external registries of a namespace: where its images are pushed and pulled outside Slipway')
    .addHelpText('after', '\nEvery subcommand uses the API key of `slipway login`, or SLIPWAY_SERVER and SLIPWAY_API_KEY (for CI).');
  // quota | immutable | retention: the namespace's own registry policy (cli/registry-policy-commands.ts).
  registerRegistryPolicyCommands(registry, env);
  registerRegistryProxyCommands(registry, env);

  serverOptions(registry.command('add').description('add a registry and its login; prints the new id'))
    .requiredOption('--prefix <prefix>', 'images it applies to, e.g. registry.example.com/team')
    .addOption(new Option('--type <type>', 'kind of login').choices(types).makeOptionMandatory())
    .option('--username <name>', 'user name, access key id (swr, ecr) or client id (acr)')
    .option('--region <region>', 'region (swr: the project, e.g. cn-north-4; ecr: e.g. eu-west-1)')
    .option('--tenancy <namespace>', 'ocir: the Object Storage namespace of the tenancy')
    .option('--enable-ci', 'let contributors fetch a login for CI (`slipway registry creds`)')
    .option('--secret-stdin', 'read the secret from stdin')
    .option('--secret-file <file>', 'read the secret from a file (gcr/gar: the JSON key file)')
    .option('--json', 'print the new record as JSON')
    .addHelpText('after', `\nThe secret per type:\n${types.map((t) => `  ${t.padEnd(6)} ${shapes[t].secretHelp}`).join('\n')}\nIt may also come from SLIPWAY_REGISTRY_SECRET.`)
    .action(async (flags: AddFlags) => {
      if (flags.secretStdin && flags.secretFile !== undefined) throw new UsageError('give either --secret-stdin or --secret-file, not both');
      // Check the flags before reading a secret or asking the server anything.
      identityFor(flags);
      let secret: string;
      if (flags.secretStdin) secret = await readStdinSecret('--secret-stdin');
      else if (flags.secretFile !== undefined) secret = await readSecretFile(flags.secretFile, '--secret-file');
      else if (env.SLIPWAY_REGISTRY_SECRET) secret = env.SLIPWAY_REGISTRY_SECRET;
      else throw new UsageError(`no secret given (${shapes[flags.type].secretHelp}): use --secret-stdin or --secret-file FILE, or set SLIPWAY_REGISTRY_SECRET`);
      const credentials = credentialsFor(flags, secret);
      await withSession(flags, env, async ({ client }) => {
        const created = await client.createRegistry(flags.namespace, { prefix: flags.prefix, type: flags.type, credentials, enable_ci: flags.enableCi === true });
        process.stdout.write(flags.json ? `${JSON.stringify(created)}\n` : `${created.id}\n`);
      });
    });

  serverOptions(registry.command('list').alias('ls').description('list the registries of a namespace (secrets are never shown)'))
    .option('--json', 'print JSON')
    .action(async (flags: ServerFlags & { json?: boolean }) => {
      await withSession(flags, env, async ({ client }) => {
        const rows = await client.listRegistries(flags.namespace);
        if (flags.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
        else if (rows.length === 0) process.stdout.write(`no registries in namespace "${flags.namespace}"\n`);
        else process.stdout.write(table(rows));
      });
    });

  serverOptions(registry.command('rm').alias('remove').description('remove a registry and its stored login'))
    .argument('<id>', 'registry id (see `slipway registry list`)')
    .action(async (id: string, flags: ServerFlags) => {
      await withSession(flags, env, async ({ client }) => {
        await client.deleteRegistry(flags.namespace, id);
        process.stdout.write(`Removed ${id}\n`);
      });
    });

  serverOptions(registry.command('creds').description('print a login for a registry (for CI; the registry needs enable_ci)'))
    .argument('<id>', 'registry id (see `slipway registry list`)')
    .addOption(new Option('--format <format>', 'text; json; docker-login: user name and password on two lines; password: the password only').choices(['text', 'json', 'docker-login', 'password']))
    .option('--json', 'same as --format json')
    .addHelpText('after', '\nFor example: slipway registry creds -n team ID --format password | docker login -u USER --password-stdin HOST')
    .action(async (id: string, flags: ServerFlags & { format?: string; json?: boolean }) => {
      if (flags.json && flags.format !== undefined && flags.format !== 'json') throw new UsageError('--json and --format disagree; give one');
      const format = flags.json ? 'json' : flags.format ?? 'text';
      await withSession(flags, env, async ({ client }) => {
        const login = await client.registryCreds(flags.namespace, id);
        switch (format) {
          case 'json':
            process.stdout.write(`${JSON.stringify({ username: login.username, password: login.password, expires_at: login.expires_at })}\n`);
            break;
          case 'docker-login':
            process.stdout.write(`${login.username}\n${login.password}\n`);
            break;
          case 'password':
            process.stdout.write(`${login.password}\n`);
            break;
          default:
            process.stdout.write(`username: ${login.username}\npassword: ${login.password}\n${login.expires_at ? `expires:  ${login.expires_at}\n` : ''}`);
        }
      });
    });
}
