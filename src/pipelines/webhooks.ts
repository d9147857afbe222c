/**
 * @module pipelines/webhooks
 * Incoming git push webhooks of GitHub, GitLab and Gitea/Forgejo: authentication, event
 * filtering and a common shape of the push.
 *
 * Order of the checks (each failure is a WebhookError with an HTTP status and a stable code):
 * 1. the provider: given, or detected from the event headers (`UNKNOWN_PROVIDER`, 400);
 * 2. the body size, at most 25 MiB like GitHub's own cap (`PAYLOAD_TOO_LARGE`, 413);
 * 3. authentication over the **raw bytes**, before anything is parsed, in constant time:
 *    GitHub `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`; GitLab `X-Gitlab-Token` equal to
 *    the secret; Gitea/Forgejo `X-Gitea-Signature` / `X-Forgejo-Signature` / `X-Gogs-Signature`
 *    (hex, no prefix) or else `X-Hub-Signature-256` (`SIGNATURE_MISSING` / `SIGNATURE_MISMATCH`,
 *    401; an empty configured secret accepts nothing: `SECRET_NOT_SET`, 401);
 * 4. the event: GitHub `push` and `ping`, GitLab `Push Hook` and `Tag Push Hook`, Gitea `push`
 *    (`EVENT_MISSING`, 400); any other event, and pushes of refs that are neither branches nor
 *    tags, are `EVENT_IGNORED` with status 422 — the route is expected to answer those with
 *    202 and an "ignored" body, since the sender did nothing wrong;
 * 5. the delivery id, required so that replays can be detected (`DELIVERY_ID_MISSING`, 400):
 *    GitHub `X-GitHub-Delivery`; GitLab `Idempotency-Key` (the same across GitLab's retries of
 *    one delivery), else `X-Gitlab-Event-UUID`, else `X-Gitlab-Webhook-UUID`; Gitea
 *    `X-Gitea-Delivery` (or `X-Forgejo-Delivery`, `X-Gogs-Delivery`, `X-GitHub-Delivery`);
 * 6. the body: JSON, or form-encoded with the JSON in a `payload` field (Gitea and GitHub both
 *    offer that); other content types are `UNSUPPORTED_MEDIA_TYPE` (415), broken JSON is
 *    `INVALID_JSON` (400), JSON without the push fields is `INVALID_PAYLOAD` (422).
 *
 * None of the three formats signs a timestamp: the caller must store delivery ids and refuse a
 * known one to block replays.
 */
import { SlipwayError, type ErrorCode } from '../http/error-catalog.js';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export type GitProvider = 'github' | 'gitlab' | 'gitea';

export interface PushCommit {
  id: string;
  message: string;
  added: string[];
  removed: string[];
  modified: string[];
}

export interface PushEvent {
  provider: GitProvider;
  deliveryId: string;
  /** `ping`: GitHub's hook-created event (no ref, no commits). */
  kind: 'push' | 'tag' | 'ping';
  /** The full ref (`refs/heads/main`, `refs/tags/v1`); '' for a ping. */
  ref: string;
  branch: string | null;
  tag: string | null;
  /** Commit SHAs; all zeros for a created (before) or deleted (after) ref; '' for a ping. */
  before: string;
  after: string;
  deleted: boolean;
  created: boolean;
  commits: PushCommit[];
  /**
   * Union of added/removed/modified over commits; null when the payload cannot tell (truncated
   * commit list: GitLab > 20 or total_commits_count > commits.length, GitHub 2048 cap, or before
   * is all zeros; also a forced push and a push with no commits listed). [] for a deleted ref.
   */
  changedFiles: string[] | null;
  repository: { cloneUrls: string[]; fullName: string | null };
  pusher: string | null;
  headMessage: string | null;
}

export type WebhookErrorStatus = 400 | 401 | 403 | 413 | 415 | 422;

export type WebhookErrorCode = Extract<ErrorCode,
  | 'UNKNOWN_PROVIDER' | 'SIGNATURE_MISSING' | 'SIGNATURE_MISMATCH' | 'SECRET_NOT_SET' | 'NO_SECRET' | 'EVENT_MISSING' | 'EVENT_IGNORED'
  | 'DELIVERY_ID_MISSING' | 'DELIVERY_ID_INVALID' | 'UNSUPPORTED_MEDIA_TYPE' | 'INVALID_JSON' | 'INVALID_PAYLOAD' | 'PAYLOAD_TOO_LARGE'>;

/** The status is the catalog's for `code`; `status` overrides it only for the one 400 INVALID_PAYLOAD. */
export class WebhookError extends SlipwayError {
  override readonly name = 'WebhookError';
  declare readonly status: WebhookErrorStatus;
  constructor(override readonly code: WebhookErrorCode, message: string, status?: WebhookErrorStatus) {
    super(code, message, undefined, status);
  }
}

type Headers = Record<string, string | string[] | undefined>;

/** Largest accepted body: GitHub caps its payloads at 25 MB. */
export const maxWebhookBytes = 25 * 1024 * 1024;

const zeroSha = /^0+$/;

function headerReader(headers: Headers): (name: string) => string | undefined {
  const lower = new Map<string, string>();
  for (const [key, value] of Object.entries(headers)) {
    const single = Array.isArray(value) ? value[0] : value;
    if (typeof single === 'string' && !lower.has(key.toLowerCase())) lower.set(key.toLowerCase(), single);
  }
  return (name) => {
    const value = lower.get(name);
    return value === undefined ? undefined : value.trim();
  };
}

/**
 * The provider a request comes from, by its event headers. Gitea also sends `X-GitHub-Event`
 * (and Forgejo `X-Gitea-Event`), so Gitea/Forgejo/Gogs headers are looked at first.
 */
export function detectProvider(headers: Headers): GitProvider | null {
  const header = headerReader(headers);
  if (header('x-gitea-event') || header('x-forgejo-event') || header('x-gogs-event')) return 'gitea';
  if (header('x-gitlab-event')) return 'gitlab';
  if (header('x-github-event')) return 'github';
  return null;
}

function first(header: (name: string) => string | undefined, names: string[]): string | undefined {
  for (const name of names) {
    const value = header(name);
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

/** Compares two byte strings in constant time, also when their lengths differ. */
function safeEqual(a: Buffer, b: Buffer): boolean {
  // Hashing first gives equal lengths, so timingSafeEqual never throws nor leaks the length.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

function verifyHmac(rawBody: Buffer, secret: string, hex: string, header: string): void {
  const expected = createHmac('sha256', secret).update(rawBody).digest();
  const given = /^[0-9a-f]{64}$/i.test(hex) ? Buffer.from(hex, 'hex') : Buffer.from(hex, 'utf8');
  if (!safeEqual(expected, given)) throw new WebhookError('SIGNATURE_MISMATCH', `the ${header} signature does not match the payload and the webhook secret`);
}

function verify(provider: GitProvider, header: (name: string) => string | undefined, rawBody: Buffer, secret: string): void {
  if (typeof secret !== 'string' || secret === '') throw new WebhookError('SECRET_NOT_SET', 'the webhook has no secret; requests cannot be authenticated');
  switch (provider) {
    case 'github': {
      const signature = header('x-hub-signature-256');
      if (!signature) throw new WebhookError('SIGNATURE_MISSING', 'X-Hub-Signature-256 is missing; set a secret on the GitHub webhook');
      const match = /^sha256=(.*)$/i.exec(signature);
      verifyHmac(rawBody, secret, match ? match[1]! : signature, 'X-Hub-Signature-256');
      return;
    }
    case 'gitlab': {
      const token = header('x-gitlab-token');
      if (!token) throw new WebhookError('SIGNATURE_MISSING', 'X-Gitlab-Token is missing; set the secret token on the GitLab webhook');
      if (!safeEqual(Buffer.from(token, 'utf8'), Buffer.from(secret, 'utf8'))) {
        throw new WebhookError('SIGNATURE_MISMATCH', 'X-Gitlab-Token does not match the webhook secret');
      }
      return;
    }
    case 'gitea': {
      for (const name of ['X-Gitea-Signature', 'X-Forgejo-Signature', 'X-Gogs-Signature']) {
        const signature = header(name.toLowerCase());
        if (signature) return verifyHmac(rawBody, secret, signature, name);
      }
      const hub = header('x-hub-signature-256');
      if (hub) {
        const match = /^sha256=(.*)$/i.exec(hub);
        return verifyHmac(rawBody, secret, match ? match[1]! : hub, 'X-Hub-Signature-256');
      }
      throw new WebhookError('SIGNATURE_MISSING', 'X-Gitea-Signature is missing; set a secret on the Gitea/Forgejo webhook');
    }
  }
}

function checkEvent(provider: GitProvider, header: (name: string) => string | undefined): 'push' | 'tag' | 'ping' {
  const names = provider === 'github' ? ['x-github-event'] : provider === 'gitlab' ? ['x-gitlab-event'] : ['x-gitea-event', 'x-forgejo-event', 'x-gogs-event', 'x-github-event'];
  const event = first(header, names);
  if (!event) throw new WebhookError('EVENT_MISSING', `the ${names[0]} header is missing`);
  const ignored = () => new WebhookError('EVENT_IGNORED', `${JSON.stringify(event)} events do not trigger pipelines (only pushes do)`);
  switch (provider) {
    case 'github':
      if (event === 'push') return 'push';
      if (event === 'ping') return 'ping';
      throw ignored();
    case 'gitlab':
      if (event === 'Push Hook') return 'push';
      if (event === 'Tag Push Hook') return 'tag';
      throw ignored();
    case 'gitea':
      if (event === 'push') return 'push';
      throw ignored();
  }
}

function deliveryId(provider: GitProvider, header: (name: string) => string | undefined): string {
  const names =
    provider === 'github' ? ['x-github-delivery']
    : provider === 'gitlab' ? ['idempotency-key', 'x-gitlab-event-uuid', 'x-gitlab-webhook-uuid']
    : ['x-gitea-delivery', 'x-forgejo-delivery', 'x-gogs-delivery', 'x-github-delivery'];
  const id = first(header, names);
  if (!id) throw new WebhookError('DELIVERY_ID_MISSING', `the delivery id header (${names.join(' or ')}) is missing; it is needed to detect replays`);
  if (id.length > 200 || !/^[\x21-\x7e]+$/.test(id)) throw new WebhookError('DELIVERY_ID_INVALID', 'the delivery id header is not a short printable token');
  return id;
}

function parseBody(rawBody: Buffer, contentType: string | undefined): unknown {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  let text: string;
  if (type === 'application/x-www-form-urlencoded') {
    const payload = new URLSearchParams(rawBody.toString('utf8')).get('payload');
    if (payload === null) throw new WebhookError('INVALID_PAYLOAD', 'the form-encoded body has no "payload" field', 400);
    text = payload;
  } else if (type === '' || type === 'application/json' || type.endsWith('+json') || type === 'text/plain') {
    text = rawBody.toString('utf8');
  } else {
    throw new WebhookError('UNSUPPORTED_MEDIA_TYPE', `content type ${JSON.stringify(type)} is not supported; send application/json (or form-encoded with a payload field)`);
  }
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (error) {
    throw new WebhookError('INVALID_JSON', `the payload is not valid JSON: ${(error as Error).message}`);
  }
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function str(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string' && item !== '') : [];
}

function obj(value: unknown): Json {
  return isObject(value) ? value : {};
}

function invalid(message: string): WebhookError {
  return new WebhookError('INVALID_PAYLOAD', message);
}

function sha(payload: Json, field: 'before' | 'after'): string {
  const value = payload[field];
  if (typeof value !== 'string' || !/^([0-9a-f]{40}|[0-9a-f]{64})$/i.test(value)) throw invalid(`the payload has no valid "${field}" commit SHA`);
  return value.toLowerCase();
}

function repositoryOf(provider: GitProvider, payload: Json): PushEvent['repository'] {
  const urls: unknown[] = [];
  let fullName: string | null = null;
  if (provider === 'gitlab') {
    const project = obj(payload.project);
    const repository = obj(payload.repository);
    urls.push(project.git_http_url, project.git_ssh_url, project.http_url, project.ssh_url, project.web_url, repository.git_http_url, repository.git_ssh_url, repository.homepage);
    fullName = str(project.path_with_namespace);
  } else {
    const repository = obj(payload.repository);
    urls.push(repository.clone_url, repository.ssh_url, repository.html_url, repository.git_url);
    fullName = str(repository.full_name);
  }
  return { cloneUrls: [...new Set(urls.map(str).filter((url): url is string => url !== null))], fullName };
}

/** Authenticates and parses one webhook delivery; throws a WebhookError (see the module comment). */
export function verifyAndParse(input: { headers: Headers; rawBody: Buffer; secret: string; provider?: GitProvider }): PushEvent {
  const header = headerReader(input.headers);
  const provider = input.provider ?? detectProvider(input.headers);
  if (!provider) throw new WebhookError('UNKNOWN_PROVIDER', 'not a GitHub, GitLab or Gitea/Forgejo webhook (no X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header)');
  if (!Buffer.isBuffer(input.rawBody)) throw new TypeError('rawBody must be a Buffer (the bytes as received)');
  if (input.rawBody.length > maxWebhookBytes) throw new WebhookError('PAYLOAD_TOO_LARGE', `the payload is larger than ${maxWebhookBytes} bytes`);

  verify(provider, header, input.rawBody, input.secret);
  const event = checkEvent(provider, header);
  const id = deliveryId(provider, header);
  const payload = parseBody(input.rawBody, header('content-type'));
  if (!isObject(payload)) throw invalid('the payload is not a JSON object');
  const repository = repositoryOf(provider, payload);

  if (event === 'ping') {
    return {
      provider, deliveryId: id, kind: 'ping', ref: '', branch: null, tag: null, before: '', after: '', deleted: false, created: false,
      commits: [], changedFiles: [], repository, pusher: str(obj(payload.sender).login), headMessage: null,
    };
  }

  const ref = payload.ref;
  if (typeof ref !== 'string' || ref === '') throw invalid('the payload has no "ref"');
  let branch: string | null = null;
  let tag: string | null = null;
  if (ref.startsWith('refs/heads/') && ref.length > 'refs/heads/'.length) branch = ref.slice('refs/heads/'.length);
  else if (ref.startsWith('refs/tags/') && ref.length > 'refs/tags/'.length) tag = ref.slice('refs/tags/'.length);
  else throw new WebhookError('EVENT_IGNORED', `pushes to ${JSON.stringify(ref)} (neither a branch nor a tag) do not trigger pipelines`);
  const kind: 'push' | 'tag' = tag !== null ? 'tag' : 'push';

  const before = sha(payload, 'before');
  const after = sha(payload, 'after');
  const deleted = zeroSha.test(after) || payload.deleted === true;
  const created = zeroSha.test(before) || payload.created === true;

  if (payload.commits !== undefined && payload.commits !== null && !Array.isArray(payload.commits)) throw invalid('"commits" is not a list');
  const rawCommits = Array.isArray(payload.commits) ? payload.commits : [];
  const commits: PushCommit[] = rawCommits.filter(isObject).map((commit) => ({
    id: typeof commit.id === 'string' ? commit.id : '',
    message: typeof commit.message === 'string' ? commit.message : '',
    added: strings(commit.added),
    removed: strings(commit.removed),
    modified: strings(commit.modified),
  }));

  const total = provider === 'gitlab' ? payload.total_commits_count : provider === 'gitea' ? payload.total_commits : undefined;
  const truncated =
    (typeof total === 'number' && total > commits.length) ||
    (provider === 'gitlab' && typeof total !== 'number' && commits.length >= 20) ||
    (provider === 'github' && commits.length >= 2048);
  let changedFiles: string[] | null;
  if (deleted) changedFiles = [];
  else if (created || truncated || payload.forced === true || commits.length === 0) changedFiles = null;
  else {
    const files = new Set<string>();
    for (const commit of commits) for (const file of [...commit.added, ...commit.removed, ...commit.modified]) files.add(file);
    changedFiles = [...files];
  }

  let pusher: string | null;
  let headMessage: string | null;
  if (provider === 'gitlab') {
    pusher = str(payload.user_username) ?? str(payload.user_name);
    headMessage = commits.find((commit) => commit.id.toLowerCase() === after)?.message ?? null;
  } else {
    const who = obj(payload.pusher);
    pusher = provider === 'github'
      ? str(who.name) ?? str(obj(payload.sender).login)
      : str(who.login) ?? str(who.username) ?? str(who.name) ?? str(obj(payload.sender).login);
    const head = obj(payload.head_commit);
    headMessage = typeof head.message === 'string' ? head.message : commits.find((commit) => commit.id.toLowerCase() === after)?.message ?? null;
  }
  if (deleted) headMessage = null;

  return { provider, deliveryId: id, kind, ref, branch, tag, before, after, deleted, created, commits, changedFiles, repository, pusher, headMessage };
}

/**
 * A repository URL in a comparable form: no scheme, userinfo, port-less default, trailing
 * `.git` or `/`; lower-cased (the three hosts treat repository paths case-insensitively); `git@host:path` read as `host/path`. For matching a
 * pipeline's source URL against `PushEvent.repository.cloneUrls`.
 */
export function normaliseRepositoryUrl(url: string): string {
  let text = url.trim();
  const scp = /^(?:[^@/]+@)?([^:/]+):(?!\/)(.+)$/.exec(text);
  if (scp && !/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) text = `ssh://${scp[1]}/${scp[2]}`;
  let host = '';
  let pathname = text;
  try {
    const parsed = new URL(text);
    host = parsed.hostname.toLowerCase();
    pathname = decodeURIComponent(parsed.pathname);
  } catch {
    // not a URL: compare as given
  }
  pathname = pathname.replace(/\/+$/, '').replace(/\.git$/i, '').replace(/^\/+/, '');
  return (host ? `${host}/${pathname}` : pathname).toLowerCase();
}

/** True when `url` names the repository of the event (see normaliseRepositoryUrl). */
export function repositoryMatches(event: Pick<PushEvent, 'repository'>, url: string): boolean {
  const wanted = normaliseRepositoryUrl(url);
  return event.repository.cloneUrls.some((candidate) => normaliseRepositoryUrl(candidate) === wanted);
}
