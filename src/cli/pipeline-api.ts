/**
 * @module cli/pipeline-api
 * Talking to the pipelines API: a run (getRun), its paths, API errors as the server's message,
 * and following a run's log (Server-Sent Events, with its status polled beside) until it ends.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { pipelineOperations } from '../pipelines/api.js';
import type { RunView } from '../pipelines/runs.js';
import { ApiRequestError, responseError, type ApiClient } from './client.js';
import { CommandError } from './errors.js';
import { runSummary } from './pipeline-output.js';
import { withSession, type Session } from './session-commands.js';

export type Env = Record<string, string | undefined>;

export const finalStatuses = new Set(['succeeded', 'failed', 'cancelled']);

export const pipelinesPath = (ns: string) => `/api/v1/namespaces/${encodeURIComponent(ns)}/pipelines`;
export const pipelinePath = (ns: string, name: string) => `${pipelinesPath(ns)}/${encodeURIComponent(name)}`;
export const runPath = (ns: string, name: string, number: number) => `${pipelinePath(ns, name)}/runs/${number}`;

/**
 * One run (getRun). The API documents a stage's common fields; the per-type ones the output
 * shows (steps, outputs, delivered, …) are the server's RunView, which the answer is.
 */
export async function getRun(client: ApiClient, ns: string, name: string, number: number): Promise<RunView> {
  return await client.call(pipelineOperations.getRun, { params: { ns, name, number: String(number) } }) as RunView;
}

/** An API error as the server's message alone (the method and URL add nothing for a user). */
function plain(error: unknown): unknown {
  if (error instanceof ApiRequestError && error.serverMessage) {
    const why = error.status === 404 || error.status === 409 || error.status === 400 ? error.serverMessage : `${error.serverMessage} (${error.code ?? error.status})`;
    return new CommandError(why);
  }
  return error;
}

/** withSession, with API errors shown as the server's message. */
export async function api<T>(flags: { server?: string }, env: Env, fn: (session: Session) => Promise<T>): Promise<T> {
  try {
    return await withSession(flags, env, fn);
  } catch (error) {
    throw plain(error);
  }
}


/**
 * Streams a run's log (SSE) to `out` until the run has ended, and returns the final run.
 * The run's status is polled beside the stream, so a stream that ends early (the run waits and
 * the server no longer holds its live log) or never ends is followed up: the log goes on where
 * it stopped, and the wait ends when the run has.
 */
export async function followRun(session: Session, ns: string, name: string, number: number, out: (line: string) => void, hint: (line: string) => void): Promise<RunView> {
  const { client, url } = session;
  const target = `${url}${runPath(ns, name, number)}/logs`;
  let printed = 0;
  let hinted = false;
  for (;;) {
    const controller = new AbortController();
    let finalSeen: RunView | undefined;
    let ended: { status?: string; error?: string | null } | undefined;
    let stopPolling = false;
    const stopped = new AbortController();
    const pause = (ms: number) => sleep(ms, undefined, { signal: stopped.signal }).catch(() => undefined);
    // Beside the stream: the run's status (for the approval hint, and as a backstop when the
    // stream does not end by itself after the run has).
    const poller = (async () => {
      while (!stopPolling) {
        await pause(1000);
        if (stopPolling) return;
        let run: RunView;
        try {
          run = await getRun(client, ns, name, number);
        } catch {
          continue;
        }
        if (run.status === 'waiting' && !hinted) {
          const stage = run.stages.find((s) => s.type === 'approval' && s.status === 'waiting');
          if (stage) {
            hinted = true;
            hint(`run ${number} waits for an approval of stage "${stage.name}": slipway pipeline approve ${name} ${number} ${quote(stage.name)} -n ${ns} (or reject)`);
          }
        }
        if (finalStatuses.has(run.status)) {
          finalSeen = run;
          // Give the stream a moment to deliver its last lines and `end`.
          await pause(3000);
          if (!stopPolling) controller.abort();
          return;
        }
      }
    })();
    try {
      const authorization = client.authorization();
      let response: Response;
      try {
        response = await fetch(target, { headers: { accept: 'text/event-stream', ...(authorization ? { authorization } : {}) }, signal: controller.signal });
      } catch (error) {
        if (controller.signal.aborted) throw error;
        throw new ApiRequestError(`cannot reach ${target}: ${(error as Error & { cause?: { code?: string } }).cause?.code ?? (error as Error).message}`, 'GET', target, 0);
      }
      if (!response.ok) throw responseError('GET', target, response, await response.text());
      let seen = 0;
      const decoder = new TextDecoder();
      let pending = '';
      let event = 'message';
      let data: string[] = [];
      const dispatch = () => {
        if (data.length === 0) return;
        const text = data.join('\n');
        if (event === 'end') {
          try {
            ended = JSON.parse(text) as typeof ended;
          } catch {
            ended = {};
          }
        } else {
          seen++;
          // After a reconnect the server replays the log: skip what was printed already.
          if (seen > printed) {
            out(text);
            printed = seen;
          }
        }
        event = 'message';
        data = [];
      };
      try {
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          pending += decoder.decode(chunk, { stream: true });
          let at: number;
          while ((at = pending.indexOf('\n')) >= 0) {
            const line = pending.slice(0, at).replace(/\r$/, '');
            pending = pending.slice(at + 1);
            if (line === '') dispatch();
            else if (line.startsWith(':')) continue;
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            else if (line.startsWith('event:')) event = line.slice(6).trim();
          }
        }
        dispatch();
      } catch (error) {
        if (!controller.signal.aborted) throw new CommandError(`the log stream of run ${number} broke off: ${(error as Error).message}`);
      }
    } finally {
      stopPolling = true;
      stopped.abort();
      controller.abort();
      await poller;
    }
    const run = finalSeen ?? await getRun(client, ns, name, number);
    if (finalStatuses.has(run.status)) return run;
    if (run.status === 'waiting' && !hinted) {
      // The server ends the stream while a run waits: the hint comes from here then.
      const stage = run.stages.find((s) => s.type === 'approval' && s.status === 'waiting');
      if (stage) {
        hinted = true;
        hint(`run ${number} waits for an approval of stage "${stage.name}": slipway pipeline approve ${name} ${number} ${quote(stage.name)} -n ${ns} (or reject)`);
      }
    }
    void ended;
    // Not over (it waits, or the server closed the stream): follow again shortly.
    await sleep(2000);
  }
}

const quote = (text: string) => (/^[A-Za-z0-9_.\-/]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`);

/** Follows a run and ends like it: a summary, exit 1 unless it succeeded. */
export async function followAndReport(session: Session, ns: string, name: string, number: number, json: boolean | undefined): Promise<void> {
  const run = await followRun(session, ns, name, number, (line) => process.stdout.write(json ? '' : `${line}\n`), (line) => process.stderr.write(`slipway: ${line}\n`));
  if (json) process.stdout.write(`${JSON.stringify(run)}\n`);
  else process.stdout.write(`\n${runSummary(run)}`);
  if (run.status !== 'succeeded') throw new CommandError(`run ${run.number} of ${name} ${run.status}${run.error ? `: ${run.error}` : ''}`);
}
