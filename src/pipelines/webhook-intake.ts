/**
 * @module pipelines/webhook-intake
 * What a verified push webhook does to a pipeline: the branch/tag/path filters of its webhook
 * trigger (asking git for the changed files when the payload's lists were cut short), then a
 * run of the pushed commit. Used by PipelineService.receiveWebhook.
 */
import type { RunView } from './runs.js';
import { primarySource, type PipelineInput } from './spec.js';
import { matchesPaths, matchesRef } from './path-filter.js';
import type { PushEvent } from './webhooks.js';
import { changedFiles as remoteChangedFiles } from '../git/remote-changes.js';
import type { GitCredentials } from '../git/remote.js';
import type { TriggerRequest } from './service-types.js';

export interface WebhookOutcome {
  status: 'started' | 'duplicate' | 'ignored' | 'pong';
  reason?: string;
  run?: RunView;
}

/** What the intake needs from PipelineService. */
export interface WebhookIntake {
  cacheDir: string;
  sourceCredentials(namespace: string, source: PipelineInput['sources'][number]): Promise<GitCredentials | undefined>;
  trigger(namespace: string, name: string, request: TriggerRequest): Promise<{ run: RunView; duplicate: boolean }>;
}

const zeroCommit = /^0+$/;

export async function filterAndStart(intake: WebhookIntake, namespace: string, name: string, spec: PipelineInput, event: PushEvent): Promise<WebhookOutcome> {
  const webhook = spec.triggers.webhook;
  if (!webhook) return { status: 'ignored', reason: 'the pipeline has no webhook trigger' };
  if (event.deleted) return { status: 'ignored', reason: `${event.ref} was deleted` };
  const primary = primarySource(spec);
  if (event.tag !== null) {
    if (!webhook.tags || !matchesRef(webhook.tags, event.tag)) return { status: 'ignored', reason: `tag ${event.tag} matches no tag filter` };
  } else if (event.branch !== null) {
    const branches = webhook.branches ?? (primary ? [primary.branch] : []);
    if (!matchesRef(branches, event.branch)) return { status: 'ignored', reason: `branch ${event.branch} matches no branch filter (${branches.join(', ')})` };
  } else {
    return { status: 'ignored', reason: `ref ${event.ref} is neither a branch nor a tag` };
  }
  if (webhook.paths && (webhook.paths.include?.length || webhook.paths.exclude?.length)) {
    let files = event.changedFiles;
    if (files === null && primary && event.before && !zeroCommit.test(event.before)) {
      // The payload's file lists were cut short: ask git.
      files = await remoteChangedFiles(primary.url, event.before, event.after, {
        cacheDir: intake.cacheDir, credentials: await intake.sourceCredentials(namespace, primary).catch(() => undefined), timeoutMs: 120_000,
      }).catch(() => null);
    }
    if (!matchesPaths(webhook.paths, files)) return { status: 'ignored', reason: `no changed file matches the path filter (${(files ?? []).slice(0, 10).join(', ')})` };
  }
  const { run, duplicate } = await intake.trigger(namespace, name, {
    commit: event.after, ref: event.ref, branch: event.branch ?? undefined,
    trigger: { type: 'webhook', provider: event.provider, deliveryId: event.deliveryId, event: event.kind, by: event.pusher, message: event.headMessage, receivedAt: Date.now() },
  });
  return duplicate ? { status: 'duplicate', reason: `commit ${event.after} is already running as run ${run.number}`, run } : { status: 'started', run };
}
