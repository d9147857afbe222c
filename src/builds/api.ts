/**
 * @module builds/api
 * The artifact-storage operations of `/api/v1` (images, components, builds and their logs),
 * documented by http/openapi.ts and typed by http/api-client.ts. Their errors carry
 * `status` and `errorMessage` beside `{code, message}`.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';

const time = z.string().describe('RFC 3339 UTC');

/** The form fields of `POST …/images` (the files `dockerfile` and `context` come beside them). */
export const imageForm = z.strictObject({
  component: z.string().min(1).max(100),
  branch: z.string().min(1).max(200),
  architecture: z.string().min(1),
  tag: z.string().optional(),
  buildArgs: z.string().optional(),
  /** A git repository as the context instead of an upload (its Dockerfile unless one is uploaded). */
  gitUrl: z.string().min(1).optional(),
  gitRef: z.string().min(1).optional(),
  gitCommit: z.string().min(1).optional(),
  /** Names of the namespace's secrets the Dockerfile mounts (`RUN --mount=type=secret,id=<name>`). */
  secrets: z.string().optional(),
});
export const latestImageQuery = z.object({ component: z.string().min(1), branch: z.string().min(1), architecture: z.string().min(1) });
export const componentBody = z.strictObject({ url: z.string().min(1), component: z.string().min(1).max(100), tag: z.string().min(1).max(128), architecture: z.string().min(1) });
export const componentQuery = z.object({
  component: z.string().min(1), tag: z.string().min(1), architecture: z.string().min(1),
  format: z.enum(['tar', 'ref']).default('tar'), url: z.string().optional(), wait: z.string().optional(),
});
export const buildSettingsBody = z.strictObject({ imageNameTemplate: z.string().min(1).max(200).nullable() });
// Documentation of query strings the routes read themselves.
const waitQuery = z.object({ wait: z.enum(['true', '1', 'yes', 'false']).optional().describe('Answer when the build has ended (200, or 422 when it failed)') });
export const listBuildsQuery = z.object({
  kind: z.enum(['image', 'component']).optional(), component: z.string().optional(),
  status: z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']).optional(),
  limit: z.coerce.number().int().min(1).optional().describe('At most 500 (default 50)'),
  repository: z.string().optional().describe('Only builds whose result goes to this repository (`team/app-main-image`)'),
  source: z.enum(['git', 'upload']).optional().describe('Only builds of a git source, or of an uploaded context'),
}).describe('Parsed by builds/routes.ts (buildListFilter)');
const logsQuery = z.object({ follow: z.enum(['true', '1']).optional().describe('Server-Sent Events (also with `Accept: text/event-stream`)') });

export const buildView = z.object({
  id: z.string(), namespace: z.string(), kind: z.enum(['image', 'component']),
  status: z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']),
  component: z.string().nullable(), branch: z.string().nullable(), tag: z.string().nullable(), architecture: z.string(),
  source: z.record(z.string(), z.unknown()), imageName: z.string().nullable(), digest: z.string().nullable(), pullCommand: z.string().nullable(),
  errorMessage: z.string().nullable(), requestedBy: z.string().nullable(), linuxUsername: z.string().nullable(), githubUsername: z.string().nullable(),
  phases: z.record(z.string(), z.number()).describe('Milliseconds per phase'), createdAt: time, startedAt: time.nullable(), finishedAt: time.nullable(),
});
export const componentReference = z.object({ status: z.literal('succeeded'), reference: z.string(), digest: z.string().nullable(), pullCommand: z.string(), build: z.string() });

const ns = '/api/v1/namespaces/:ns';
const storage = 'artifact-storage' as const;

export const buildOperations = defineOperations({
  buildImage: {
    method: 'POST', path: `${ns}/images`, summary: 'Build an image from a Dockerfile and an uploaded context (or a git repository)', access: 'contributor',
    query: waitQuery, rawBody: { raw: 'multipart/form-data', description: 'The file `dockerfile`, optionally the file `context` (tar.gz), and the fields of `imageForm`: component, branch, architecture, tag, buildArgs, gitUrl, gitRef, gitCommit, secrets' },
    answers: { 202: buildView, 200: buildView, 422: buildView }, errorShape: storage,
  },
  latestImage: {
    method: 'GET', path: `${ns}/images`, summary: 'The newest image build of a component, branch and architecture (422 when it failed)', access: 'reader',
    query: latestImageQuery, answers: { 200: buildView, 422: buildView }, errorShape: storage,
  },
  buildComponent: {
    method: 'POST', path: `${ns}/components`, summary: 'Build a component from a git repository\'s build spec', access: 'contributor',
    query: waitQuery, body: componentBody, answers: { 202: buildView, 200: buildView, 422: buildView }, errorShape: storage,
  },
  getComponent: {
    method: 'GET', path: `${ns}/components`, summary: 'A component as tar.gz (`format=tar`, application/gzip) or as a registry reference (`format=ref`); built first when missing',
    access: 'reader', query: componentQuery, answers: { 200: componentReference, 202: buildView, 422: buildView }, errorShape: storage,
  },
  setBuildSettings: {
    method: 'PUT', path: `${ns}/settings/builds`, summary: 'The namespace\'s image name template', access: 'owner', body: buildSettingsBody,
    answers: { 200: z.object({ namespace: z.string(), imageNameTemplate: z.string().nullable() }) }, errorShape: storage,
  },
  listBuilds: { method: 'GET', path: `${ns}/builds`, summary: 'Builds of a namespace, newest first', access: 'reader', query: listBuildsQuery, answers: { 200: z.array(buildView) }, errorShape: storage },
  getBuild: { method: 'GET', path: `${ns}/builds/:id`, summary: 'One build', access: 'reader', answers: { 200: buildView }, errorShape: storage },
  cancelBuild: { method: 'POST', path: `${ns}/builds/:id/cancel`, summary: 'Cancel a build (an ended one is answered as it is)', access: 'contributor', answers: { 200: buildView }, errorShape: storage },
  buildLogs: {
    method: 'GET', path: `${ns}/builds/:id/logs`, summary: 'A build\'s log as text, or live as Server-Sent Events (ending with an `end` event)', access: 'reader',
    query: logsQuery, answers: { 200: { raw: 'text/plain', description: 'The log; `text/event-stream` when followed' } }, errorShape: storage,
  },
});
