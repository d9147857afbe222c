/**
 * @module cli/build-history
 * `slipway builds list|get|logs|cancel`: the builds of a namespace as a table or a description,
 * their logs, and cancelling one.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { terminalStatuses, type BuildView } from './build-client.js';
import { formatElapsed } from './build-progress.js';
import { interruptible, outcome, withApi, type Env, type ServerFlags } from './build-session.js';
import { CommandError } from './errors.js';

function duration(build: BuildView): string {
  if (!build.startedAt) return '-';
  const end = build.finishedAt ? Date.parse(build.finishedAt) : Date.now();
  return formatElapsed(end - Date.parse(build.startedAt));
}

function when(iso: string | null): string {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-';
}

export function buildsTable(rows: BuildView[]): string {
  const header = ['ID', 'KIND', 'COMPONENT', 'BRANCH/TAG', 'ARCH', 'STATUS', 'CREATED', 'DURATION'];
  const cells = rows.map((b) => [
    b.id, b.kind, b.component ?? '-', b.kind === 'image' ? `${b.branch ?? '-'}:${b.tag ?? 'latest'}` : (b.tag ?? '-'),
    b.architecture, b.status, when(b.createdAt), duration(b),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  return [header, ...cells].map((line) => line.map((cell, i) => (i === line.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

export function describeBuild(b: BuildView): string {
  const lines: Array<[string, string | null | undefined]> = [
    ['id', b.id], ['kind', b.kind], ['status', b.status], ['component', b.component], ['branch', b.branch], ['tag', b.tag],
    ['architecture', b.architecture], ['image', b.imageName], ['digest', b.digest], ['error', b.errorMessage],
    ['requested by', b.requestedBy], ['created', when(b.createdAt)], ['started', when(b.startedAt)], ['finished', when(b.finishedAt)],
    ['phases', Object.keys(b.phases ?? {}).length ? Object.entries(b.phases).map(([k, v]) => `${k} ${formatElapsed(v)}`).join(', ') : null],
    ['pull', b.pullCommand],
  ];
  return lines.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => `${`${k}:`.padEnd(14)}${v}`).join('\n') + '\n';
}

export async function buildsLogsCommand(id: string, flags: ServerFlags & { follow?: boolean }, env: Env): Promise<void> {
  await withApi(flags, env, async (api) => {
    if (!flags.follow) {
      process.stdout.write(await api.logText(flags.namespace, id));
      return;
    }
    const interrupt = interruptible();
    try {
      const build = await api.followLog(flags.namespace, id, { line: (text) => process.stdout.write(`${text}\n`) }, interrupt.signal);
      if (build.status !== 'succeeded') throw new CommandError(outcome(build));
      process.stderr.write(`slipway: build ${id} succeeded: ${build.imageName}@${build.digest}\n`);
    } catch (error) {
      // Stopping to watch does not stop the build.
      if (interrupt.interrupted()) process.exit(130);
      throw error;
    } finally {
      interrupt.dispose();
    }
  });
}

export async function buildsCancelCommand(id: string, flags: ServerFlags & { wait: boolean; json?: boolean }, env: Env): Promise<void> {
  await withApi(flags, env, async (api) => {
    const before = await api.getBuild(flags.namespace, id);
    if (terminalStatuses.has(before.status)) {
      process.stderr.write(`slipway: build ${id} already ended (${before.status}); nothing to cancel\n`);
      if (flags.json) process.stdout.write(`${JSON.stringify(before)}\n`);
      return;
    }
    let build = await api.cancelBuild(flags.namespace, id);
    // A running build stops when its worker sees the request: wait for that (up to a minute).
    const deadline = Date.now() + 60_000;
    while (flags.wait && !terminalStatuses.has(build.status) && Date.now() < deadline) {
      await sleep(500);
      build = await api.getBuild(flags.namespace, id);
    }
    if (flags.json) process.stdout.write(`${JSON.stringify(build)}\n`);
    else if (build.status === 'cancelled') process.stdout.write(`Cancelled ${id}\n`);
    else if (terminalStatuses.has(build.status)) process.stdout.write(`Build ${id} ended before it could be cancelled: ${build.status}\n`);
    else process.stdout.write(`Cancellation of ${id} requested (still ${build.status})\n`);
  });
}
