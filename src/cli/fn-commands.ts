/**
 * @module cli/fn-commands
 * `slipway fn deploy|list|get|rm|revisions|rollback|invoke|logs|metrics|keys`: functions over
 * the REST API (`/api/v1/namespaces/{ns}/functions`, see functions/routes.ts). `deploy` creates
 * the function or, when it exists, changes it (a new revision) and waits for the result.
 * Secret variables come from `--secret-env NAME` with the value in the environment of the
 * command (never on the command line).
 */
import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { functionOperations } from '../functions/api.js';
import type { LogLine } from '../functions/spec.js';
import { fillPath, type ApiBody, type ApiResult } from '../http/api-client.js';
import { ApiRequestError, responseError } from './client.js';
import { CommandError, UsageError } from './errors.js';
import { withSession } from './session-commands.js';

type Env = Record<string, string | undefined>;
type FunctionView = ApiResult<typeof functionOperations.getFunction>;
/** What `deploy` sends: the create body without the name (also a valid change). */
type DeployBody = Omit<ApiBody<typeof functionOperations.createFunction>, 'name'>;

interface ServerFlags {
  server?: string;
  namespace: string;
  json?: boolean;
}

interface DeployFlags extends ServerFlags {
  image: string;
  type?: 'http' | 'event';
  env: string[];
  secretEnv: string[];
  command?: string;
  args?: string;
  workdir?: string;
  uid?: string;
  gid?: string;
  memory?: string;
  timeout?: string;
  min?: string;
  max?: string;
  concurrency?: string;
  idle?: string;
  tag: string[];
  public?: boolean;
  private?: boolean;
  pin?: boolean;
  wait: boolean;
}

const collect = (value: string, previous: string[]) => [...previous, value];

function pairs(values: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const at = value.indexOf('=');
    if (at <= 0) throw new UsageError(`${flag} takes NAME=VALUE, got "${value}"`);
    out[value.slice(0, at)] = value.slice(at + 1);
  }
  return out;
}

function integer(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} takes a whole number, got "${value}"`);
  return Number(value);
}

/** A JSON array (`'["node","x.js"]'`) or words split on spaces. */
function words(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  if (value.trim().startsWith('[')) {
    const parsed = JSON.parse(value) as unknown;
    if (!Array.isArray(parsed) || parsed.some((v) => typeof v !== 'string')) throw new UsageError('--command/--args as JSON must be an array of strings');
    return parsed as string[];
  }
  return value.trim().split(/\s+/).filter(Boolean);
}

/** The API body of `deploy` from flags; secrets read from the environment by name. */
export function deployBody(flags: DeployFlags, env: Env): DeployBody {
  const secretEnv: Record<string, string> = {};
  for (const name of flags.secretEnv) {
    const value = env[name];
    if (value === undefined) throw new UsageError(`--secret-env ${name}: set ${name} in the environment of this command (values never go on the command line)`);
    secretEnv[name] = value;
  }
  if (flags.public && flags.private) throw new UsageError('give --public or --private, not both');
  const body: DeployBody = {
    image: flags.image,
    type: flags.type,
    command: words(flags.command),
    args: words(flags.args),
    workingDir: flags.workdir,
    uid: integer(flags.uid, '--uid'),
    gid: integer(flags.gid, '--gid'),
    memoryMB: integer(flags.memory, '--memory'),
    timeoutSeconds: integer(flags.timeout, '--timeout'),
    minInstances: integer(flags.min, '--min'),
    maxInstances: integer(flags.max, '--max'),
    concurrency: integer(flags.concurrency, '--concurrency'),
    idleSeconds: integer(flags.idle, '--idle'),
    pinDigest: flags.pin,
    access: flags.public ? 'public' : flags.private ? 'private' : undefined,
  };
  if (flags.env.length) body.env = pairs(flags.env, '--env');
  if (flags.secretEnv.length) body.secretEnv = secretEnv;
  if (flags.tag.length) body.logTags = pairs(flags.tag, '--tag');
  for (const key of Object.keys(body) as Array<keyof DeployBody>) if (body[key] === undefined) delete body[key];
  return body;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function describe(fn: FunctionView): string {
  const lines = [
    `name:       ${fn.name} (${fn.type}, ${fn.access})`,
    `status:     ${fn.status}${fn.statusReason ? ` — ${fn.statusReason}` : ''}`,
    `image:      ${fn.image}${fn.imageDigest ? `@${fn.imageDigest}` : ''}${fn.pinDigest ? ' (pinned)' : ''}`,
    `revision:   ${fn.activeRevision ?? '-'} active, ${fn.latestRevision} latest`,
    `instances:  ${fn.instances} (min ${fn.minInstances}, max ${fn.maxInstances}, concurrency ${fn.concurrency}, idle ${fn.idleSeconds} s)`,
    `limits:     ${fn.memoryMB} MB, ${fn.timeoutSeconds} s, uid ${fn.uid}, gid ${fn.gid}`,
    `url:        ${fn.url}`,
  ];
  return lines.join('\n') + '\n';
}

function serverOptions(command: Command): Command {
  return command
    .option('--server <url>', 'Slipway server (default: SLIPWAY_SERVER, else the server of the last `slipway login`)')
    .requiredOption('-n, --namespace <namespace>', 'the namespace of the function');
}

export function registerFunctionCommands(program: Command, env: Env): void {
  const fn = program.command('fn').alias('function')
    .description('functions: deploy images as serverless functions, invoke them, follow their logs')
    .addHelpText('after', '\nEvery subcommand uses the API key of `slipway login`, or SLIPWAY_SERVER and SLIPWAY_API_KEY (for CI).');

  serverOptions(fn.command('deploy').description('create a function, or change it (a new revision); waits until it is ready or failed'))
    .argument('<name>', 'function name')
    .requiredOption('--image <ref>', 'image: ns/repo:tag in this Slipway, or host/repo:tag elsewhere')
    .addOption(new Option('--type <type>', 'http: called at /fn/NS/NAME/…; event: POST …/invocations').choices(['http', 'event']))
    .option('-e, --env <NAME=VALUE>', 'environment variable (repeat)', collect, [])
    .option('--secret-env <NAME>', 'secret variable: its value is read from this command\'s environment, kept in the vault (repeat)', collect, [])
    .option('--command <words>', 'replaces the image\'s entrypoint (words, or a JSON array)')
    .option('--args <words>', 'replaces the image\'s command arguments')
    .option('--workdir <dir>', 'working directory')
    .option('--uid <uid>', 'user id (default 1003)')
    .option('--gid <gid>', 'group id (default 1003)')
    .option('--memory <mb>', 'memory limit in MB (default 256)')
    .option('--timeout <seconds>', 'per-request timeout (default 30)')
    .option('--min <n>', 'instances always warm (default 0)')
    .option('--max <n>', 'most instances (default 10)')
    .option('--concurrency <n>', 'requests per instance at once (default 10)')
    .option('--idle <seconds>', 'idle time before an instance stops (default 300)')
    .option('--tag <NAME=VALUE>', 'log tag (repeat)', collect, [])
    .option('--public', 'anyone may invoke it')
    .option('--private', 'only members and function keys may invoke it (the default)')
    .option('--pin', 'run the digest the tag has now; do not follow later pushes')
    .option('--no-wait', 'return at once instead of waiting for the deploy')
    .option('--json', 'print the function as JSON')
    .action(async (name: string, flags: DeployFlags) => {
      const body = deployBody(flags, env);
      await withSession(flags, env, async ({ client }) => {
        const query = flags.wait ? { wait: 'true' as const } : {};
        let view: FunctionView;
        try {
          view = await client.call(functionOperations.createFunction, { params: { ns: flags.namespace }, query, body: { name, ...body } });
        } catch (error) {
          if (!(error instanceof ApiRequestError && error.status === 409)) throw error;
          view = await client.call(functionOperations.updateFunction, { params: { ns: flags.namespace, name }, query, body });
        }
        process.stdout.write(flags.json ? `${JSON.stringify(view)}\n` : describe(view));
        if (view.status === 'failed' || (flags.wait && view.statusReason && view.latestRevision !== view.activeRevision)) {
          throw new CommandError(`deploy of ${name} failed: ${view.statusReason ?? 'see `slipway fn revisions`'}`);
        }
      });
    });

  serverOptions(fn.command('list').alias('ls').description('list the functions of a namespace'))
    .option('--json', 'print JSON')
    .action(async (flags: ServerFlags) => {
      await withSession(flags, env, async ({ client }) => {
        const { functions } = await client.call(functionOperations.listFunctions, { params: { ns: flags.namespace } });
        if (flags.json) process.stdout.write(`${JSON.stringify(functions)}\n`);
        else if (functions.length === 0) process.stdout.write(`no functions in namespace "${flags.namespace}"\n`);
        else process.stdout.write(table(['NAME', 'TYPE', 'STATUS', 'REVISION', 'INSTANCES', 'IMAGE'], functions.map((f) => [f.name, f.type, f.status, String(f.activeRevision ?? '-'), String(f.instances), f.image])));
      });
    });

  serverOptions(fn.command('get').description('show a function'))
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, flags: ServerFlags) => {
      await withSession(flags, env, async ({ client }) => {
        const view = await client.call(functionOperations.getFunction, { params: { ns: flags.namespace, name } });
        process.stdout.write(flags.json ? `${JSON.stringify(view)}\n` : describe(view));
      });
    });

  serverOptions(fn.command('rm').alias('delete').description('delete a function: its instances stop, its revisions, keys and logs go'))
    .argument('<name>')
    .action(async (name: string, flags: ServerFlags) => {
      await withSession(flags, env, async ({ client }) => {
        await client.call(functionOperations.deleteFunction, { params: { ns: flags.namespace, name } });
        process.stdout.write(`Deleted ${name}\n`);
      });
    });

  serverOptions(fn.command('revisions').description('list the revisions of a function, newest first'))
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, flags: ServerFlags) => {
      await withSession(flags, env, async ({ client }) => {
        const { revisions } = await client.call(functionOperations.listRevisions, { params: { ns: flags.namespace, name } });
        if (flags.json) process.stdout.write(`${JSON.stringify(revisions)}\n`);
        else process.stdout.write(table(['REVISION', 'STATUS', 'ACTIVE', 'DIGEST', 'REASON'], revisions.map((r) => [String(r.number), r.status, r.active ? '*' : '', (r.imageDigest ?? '-').slice(0, 19), r.reason ?? ''])));
      });
    });

  serverOptions(fn.command('rollback').description('make an earlier revision the active one again'))
    .argument('<name>')
    .argument('<revision>', 'revision number (see `slipway fn revisions`)')
    .action(async (name: string, revision: string, flags: ServerFlags) => {
      const number = integer(revision, 'REVISION')!;
      await withSession(flags, env, async ({ client }) => {
        const view = await client.call(functionOperations.rollbackFunction, { params: { ns: flags.namespace, name }, body: { revision: number } });
        process.stdout.write(`${name} now runs revision ${view.activeRevision}\n`);
      });
    });

  serverOptions(fn.command('invoke').description('call an event function with an event (JSON) and print its answer'))
    .argument('<name>')
    .option('-d, --data <json>', 'the event; @FILE reads a file, - reads stdin', '{}')
    .option('--async', 'queue the event; prints the invocation id')
    .action(async (name: string, flags: ServerFlags & { data: string; async?: boolean }) => {
      let data: Buffer;
      if (flags.data === '-') data = await readStdin();
      else if (flags.data.startsWith('@')) data = await readFile(flags.data.slice(1));
      else data = Buffer.from(flags.data);
      await withSession(flags, env, async ({ client, url }) => {
        const target = `${url}${fillPath(functionOperations.invokeFunction.path, { ns: flags.namespace, name })}${flags.async ? '?mode=async' : ''}`;
        const authorization = client.authorization();
        const response = await fetch(target, { method: 'POST', body: new Uint8Array(data), headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) } });
        const text = Buffer.from(await response.arrayBuffer());
        if (!response.ok && response.status !== 202 && !response.headers.get('x-slipway-revision')) throw responseError('POST', target, response, text.toString('utf8'));
        if (flags.async) {
          process.stdout.write(`${(JSON.parse(text.toString('utf8')) as { id: string }).id}\n`);
          return;
        }
        process.stdout.write(text);
        if (text.length && text[text.length - 1] !== 0x0a && process.stdout.isTTY) process.stdout.write('\n');
        if (response.status >= 400) throw new CommandError(`${name} answered ${response.status}`);
      });
    });

  serverOptions(fn.command('logs').description('print the output of a function\'s instances'))
    .argument('<name>')
    .option('-f, --follow', 'keep printing new lines')
    .option('--tail <n>', 'lines from the end to start with', '100')
    .option('--json', 'print the JSON lines as they come')
    .action(async (name: string, flags: ServerFlags & { follow?: boolean; tail: string }) => {
      const tail = integer(flags.tail, '--tail');
      await withSession(flags, env, async ({ client, url }) => {
        const target = `${url}${fillPath(functionOperations.functionLogs.path, { ns: flags.namespace, name })}?tail=${tail}${flags.follow ? '&follow=true' : ''}`;
        const authorization = client.authorization();
        const response = await fetch(target, { headers: authorization ? { authorization } : {} });
        if (!response.ok) throw responseError('GET', target, response, await response.text());
        const decoder = new TextDecoder();
        let pending = '';
        const print = (text: string) => {
          if (!text.trim()) return;
          if (flags.json) return void process.stdout.write(`${text}\n`);
          const line = JSON.parse(text) as LogLine;
          process.stdout.write(`${line.time} r${line.revision} ${line.instance} ${line.stream === 'stdout' ? '' : `[${line.stream}] `}${line.line}\n`);
        };
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          pending += decoder.decode(chunk, { stream: true });
          let at: number;
          while ((at = pending.indexOf('\n')) >= 0) {
            print(pending.slice(0, at));
            pending = pending.slice(at + 1);
          }
        }
        print(pending);
      });
    });

  serverOptions(fn.command('metrics').description('request metrics of a function'))
    .argument('<name>')
    .action(async (name: string, flags: ServerFlags) => {
      await withSession(flags, env, async ({ client }) => {
        const metrics = await client.call(functionOperations.functionMetrics, { params: { ns: flags.namespace, name } });
        process.stdout.write(`${JSON.stringify(metrics, null, 2)}\n`);
      });
    });

  const keys = fn.command('keys').description('keys that may invoke one private function');
  serverOptions(keys.command('create').description('create a key; it is printed once'))
    .argument('<name>', 'function')
    .requiredOption('--key-name <label>', 'what the key is for')
    .action(async (name: string, flags: ServerFlags & { keyName: string }) => {
      await withSession(flags, env, async ({ client }) => {
        const created = await client.call(functionOperations.createFunctionKey, { params: { ns: flags.namespace, name }, body: { name: flags.keyName } });
        process.stdout.write(`${created.key}\n`);
      });
    });
  serverOptions(keys.command('rm').description('revoke a key'))
    .argument('<name>', 'function')
    .argument('<id>', 'key id')
    .action(async (name: string, id: string, flags: ServerFlags) => {
      await withSession(flags, env, async ({ client }) => {
        await client.call(functionOperations.deleteFunctionKey, { params: { ns: flags.namespace, name, id } });
        process.stdout.write(`Revoked ${id}\n`);
      });
    });
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
