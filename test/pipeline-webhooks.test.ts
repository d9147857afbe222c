/**
 * Incoming push webhooks and the path/branch filters, pure: realistic GitHub, GitLab and
 * Gitea/Forgejo payloads signed for real (HMAC-SHA256 over the exact bytes), wrong and missing
 * signatures, other events, form-encoded bodies, tag pushes, branch creation and deletion,
 * truncated commit lists; globs over changed files and branch names, and refused patterns.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { matchesPaths, matchesRef, validateGlobs } from '../src/pipelines/path-filter.js';
import { detectProvider, normaliseRepositoryUrl, repositoryMatches, verifyAndParse, WebhookError, type GitProvider, type PushEvent } from '../src/pipelines/webhooks.js';

const timeout = 10_000;
const secret = 'It5-a-s3cret/with+odd=chars';
const zeros = '0000000000000000000000000000000000000000';
const sha1 = 'a10867b14bb761a232cd80139fbd4c0d33264240';
const sha2 = 'b2a3f4c5d6e7f8091a2b3c4d5e6f708192a3b4c5';
const sha3 = 'c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6';

function hmac(body: Buffer | string, key = secret): string {
  return createHmac('sha256', key).update(body).digest('hex');
}

function commit(id: string, message: string, files: { added?: string[]; removed?: string[]; modified?: string[] }) {
  return {
    id,
    tree_id: id.split('').reverse().join(''),
    distinct: true,
    message,
    timestamp: '2025-03-01T10:00:00Z',
    url: `https://example.test/acme/app/commit/${id}`,
    author: { name: 'Ada', email: 'ada@example.test', username: 'ada' },
    committer: { name: 'Ada', email: 'ada@example.test', username: 'ada' },
    added: files.added ?? [],
    removed: files.removed ?? [],
    modified: files.modified ?? [],
  };
}

function githubPush(overrides: Record<string, unknown> = {}) {
  const commits = [commit(sha2, 'Add the API', { added: ['src/api.ts'], modified: ['package.json'] }), commit(sha3, 'Docs', { modified: ['README.md'], removed: ['docs/old.md'] })];
  return {
    ref: 'refs/heads/main',
    before: sha1,
    after: sha3,
    repository: {
      id: 1296269,
      name: 'app',
      full_name: 'acme/app',
      private: false,
      owner: { name: 'acme', login: 'acme' },
      html_url: 'https://github.com/acme/app',
      clone_url: 'https://github.com/acme/app.git',
      git_url: 'git://github.com/acme/app.git',
      ssh_url: 'git@github.com:acme/app.git',
      default_branch: 'main',
    },
    pusher: { name: 'ada', email: 'ada@example.test' },
    sender: { login: 'ada', id: 1 },
    created: false,
    deleted: false,
    forced: false,
    base_ref: null,
    compare: `https://github.com/acme/app/compare/${sha1.slice(0, 12)}...${sha3.slice(0, 12)}`,
    commits,
    head_commit: commits[1],
    ...overrides,
  };
}

function gitlabPush(overrides: Record<string, unknown> = {}) {
  const commits = [commit(sha2, 'Add the API\n', { added: ['src/api.ts'] }), commit(sha3, 'Fix the build\n', { modified: ['Dockerfile'] })];
  return {
    object_kind: 'push',
    event_name: 'push',
    before: sha1,
    after: sha3,
    ref: 'refs/heads/main',
    ref_protected: true,
    checkout_sha: sha3,
    user_id: 4,
    user_name: 'Ada Lovelace',
    user_username: 'ada',
    user_email: '',
    project_id: 15,
    project: {
      id: 15,
      name: 'App',
      web_url: 'https://gitlab.example.test/acme/app',
      git_ssh_url: 'git@gitlab.example.test:acme/app.git',
      git_http_url: 'https://gitlab.example.test/acme/app.git',
      namespace: 'Acme',
      path_with_namespace: 'acme/app',
      default_branch: 'main',
    },
    repository: {
      name: 'App',
      url: 'git@gitlab.example.test:acme/app.git',
      homepage: 'https://gitlab.example.test/acme/app',
      git_http_url: 'https://gitlab.example.test/acme/app.git',
      git_ssh_url: 'git@gitlab.example.test:acme/app.git',
    },
    commits,
    total_commits_count: 2,
    ...overrides,
  };
}

function giteaPush(overrides: Record<string, unknown> = {}) {
  const commits = [commit(sha3, 'Update the handler', { modified: ['src/handler.ts'], added: ['.slipway/build.yaml'] })];
  return {
    ref: 'refs/heads/develop',
    before: sha2,
    after: sha3,
    compare_url: `https://gitea.example.test/acme/app/compare/${sha2}...${sha3}`,
    commits,
    total_commits: 1,
    head_commit: commits[0],
    repository: {
      id: 3,
      owner: { id: 2, login: 'acme', username: 'acme' },
      name: 'app',
      full_name: 'acme/app',
      html_url: 'https://gitea.example.test/acme/app',
      ssh_url: 'git@gitea.example.test:acme/app.git',
      clone_url: 'https://gitea.example.test/acme/app.git',
      default_branch: 'main',
    },
    pusher: { id: 1, login: 'ada', username: 'ada', full_name: 'Ada', email: 'ada@example.test' },
    sender: { id: 1, login: 'ada', username: 'ada' },
  };
}

interface Delivery {
  headers: Record<string, string | string[] | undefined>;
  rawBody: Buffer;
}

function githubDelivery(payload: unknown, event = 'push', key = secret): Delivery {
  const rawBody = Buffer.from(JSON.stringify(payload));
  return {
    rawBody,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/044aadd',
      'x-github-event': event,
      'x-github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958',
      'x-github-hook-id': '292430182',
      'x-hub-signature': `sha1=${createHmac('sha1', key).update(rawBody).digest('hex')}`,
      'x-hub-signature-256': `sha256=${hmac(rawBody, key)}`,
    },
  };
}

function gitlabDelivery(payload: unknown, event = 'Push Hook', token = secret): Delivery {
  return {
    rawBody: Buffer.from(JSON.stringify(payload, null, 2)),
    headers: {
      'content-type': 'application/json',
      'user-agent': 'GitLab/17.6.0',
      'x-gitlab-event': event,
      'x-gitlab-token': token,
      'x-gitlab-instance': 'https://gitlab.example.test',
      'x-gitlab-webhook-uuid': '1f0b2ad8-7ad4-4a49-9d5a-4c5d8e0b4c11',
      'x-gitlab-event-uuid': '7c9b4a1e-0f53-4bb2-8c64-9e0f5d7a2b33',
      'idempotency-key': 'f0e2a9b7-1c3d-4e5f-8a9b-0c1d2e3f4a5b',
    },
  };
}

function giteaDelivery(payload: unknown, options: { form?: boolean; forgejo?: boolean; key?: string } = {}): Delivery {
  const json = JSON.stringify(payload, null, '  ');
  const rawBody = Buffer.from(options.form ? new URLSearchParams({ payload: json }).toString() : json);
  const signature = hmac(rawBody, options.key ?? secret);
  const headers: Record<string, string> = {
    'content-type': options.form ? 'application/x-www-form-urlencoded' : 'application/json',
    'user-agent': 'Go-http-client/1.1',
    'x-github-delivery': '6b8c1a2e-5d4f-4e3a-9b2c-1d0e9f8a7b6c',
    'x-github-event': 'push',
    'x-github-event-type': 'push',
    'x-gitea-delivery': '6b8c1a2e-5d4f-4e3a-9b2c-1d0e9f8a7b6c',
    'x-gitea-event': 'push',
    'x-gitea-event-type': 'push',
    'x-gitea-signature': signature,
    'x-gogs-delivery': '6b8c1a2e-5d4f-4e3a-9b2c-1d0e9f8a7b6c',
    'x-gogs-event': 'push',
    'x-gogs-event-type': 'push',
    'x-gogs-signature': signature,
    'x-hub-signature': `sha1=${createHmac('sha1', options.key ?? secret).update(rawBody).digest('hex')}`,
    'x-hub-signature-256': `sha256=${signature}`,
  };
  if (options.forgejo) {
    headers['x-forgejo-delivery'] = headers['x-gitea-delivery']!;
    headers['x-forgejo-event'] = 'push';
    headers['x-forgejo-signature'] = signature;
  }
  return { headers, rawBody };
}

function parse(delivery: Delivery, provider?: GitProvider, key = secret): PushEvent {
  return verifyAndParse({ headers: delivery.headers, rawBody: delivery.rawBody, secret: key, provider });
}

function rejects(fn: () => unknown, status: number, code: string, message?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof WebhookError, `expected a WebhookError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.equal(error.status, status);
    if (message) assert.match(error.message, message);
    return true;
  });
}

function without(headers: Record<string, string | string[] | undefined>, ...names: string[]) {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !names.includes(name)));
}

describe('incoming push webhooks', () => {
  test('detects the provider from the headers (Gitea before the GitHub headers it also sends)', { timeout }, () => {
    assert.equal(detectProvider(githubDelivery(githubPush()).headers), 'github');
    assert.equal(detectProvider(gitlabDelivery(gitlabPush()).headers), 'gitlab');
    assert.equal(detectProvider(giteaDelivery(giteaPush()).headers), 'gitea');
    assert.equal(detectProvider({ 'X-Forgejo-Event': 'push' }), 'gitea');
    assert.equal(detectProvider({ 'X-GitHub-Event': 'push' }), 'github', 'header names in any case');
    assert.equal(detectProvider({ 'content-type': 'application/json' }), null);
    rejects(() => verifyAndParse({ headers: { 'content-type': 'application/json' }, rawBody: Buffer.from('{}'), secret }), 400, 'UNKNOWN_PROVIDER');
  });

  test('GitHub: a signed push of a branch', { timeout }, () => {
    const event = parse(githubDelivery(githubPush()));
    assert.deepEqual(event, {
      provider: 'github',
      deliveryId: '72d3162e-cc78-11e3-81ab-4c9367dc0958',
      kind: 'push',
      ref: 'refs/heads/main',
      branch: 'main',
      tag: null,
      before: sha1,
      after: sha3,
      deleted: false,
      created: false,
      commits: [
        { id: sha2, message: 'Add the API', added: ['src/api.ts'], removed: [], modified: ['package.json'] },
        { id: sha3, message: 'Docs', added: [], removed: ['docs/old.md'], modified: ['README.md'] },
      ],
      changedFiles: ['src/api.ts', 'package.json', 'docs/old.md', 'README.md'],
      repository: {
        cloneUrls: ['https://github.com/acme/app.git', 'git@github.com:acme/app.git', 'https://github.com/acme/app', 'git://github.com/acme/app.git'],
        fullName: 'acme/app',
      },
      pusher: 'ada',
      headMessage: 'Docs',
    });
  });

  test('GitHub: ping, tag push, branch created, branch deleted, forced push', { timeout }, () => {
    const ping = parse(githubDelivery({ zen: 'Keep it logically awesome.', hook_id: 1, hook: { type: 'Repository' }, repository: githubPush().repository, sender: { login: 'ada' } }, 'ping'));
    assert.equal(ping.kind, 'ping');
    assert.equal(ping.branch, null);
    assert.equal(ping.repository.fullName, 'acme/app');

    const tag = parse(githubDelivery(githubPush({ ref: 'refs/tags/v1.2.0', before: zeros, after: sha3, created: true, commits: [], base_ref: 'refs/heads/main' })));
    assert.equal(tag.kind, 'tag');
    assert.equal(tag.tag, 'v1.2.0');
    assert.equal(tag.branch, null);
    assert.equal(tag.created, true);
    assert.equal(tag.changedFiles, null, 'a new ref: cannot tell');

    const created = parse(githubDelivery(githubPush({ ref: 'refs/heads/feature/x', before: zeros, created: true })));
    assert.equal(created.branch, 'feature/x');
    assert.equal(created.created, true);
    assert.equal(created.changedFiles, null);

    const deleted = parse(githubDelivery(githubPush({ after: zeros, deleted: true, commits: [], head_commit: null })));
    assert.equal(deleted.deleted, true);
    assert.equal(deleted.kind, 'push');
    assert.deepEqual(deleted.changedFiles, []);
    assert.equal(deleted.headMessage, null);

    const forced = parse(githubDelivery(githubPush({ forced: true })));
    assert.equal(forced.changedFiles, null, 'a forced push may have dropped commits');

    const rewound = parse(githubDelivery(githubPush({ commits: [], head_commit: null })));
    assert.equal(rewound.changedFiles, null, 'no commits listed: cannot tell');
  });

  test('GitHub: a list at the 2048 cap is taken as truncated', { timeout }, () => {
    const commits = Array.from({ length: 2048 }, (_, index) => commit(index.toString(16).padStart(40, '0').replace(/^0/, 'a'), `c${index}`, { modified: [`f${index}`] }));
    const event = parse(githubDelivery(githubPush({ commits, head_commit: commits[2047] })));
    assert.equal(event.commits.length, 2048);
    assert.equal(event.changedFiles, null);
  });

  test('GitHub: missing, wrong and malformed signatures are 401, checked before the body is parsed', { timeout }, () => {
    const good = githubDelivery(githubPush());
    rejects(() => parse({ ...good, headers: without(good.headers, 'x-hub-signature-256') }), 401, 'SIGNATURE_MISSING');
    rejects(() => parse(good, undefined, 'another secret'), 401, 'SIGNATURE_MISMATCH');
    rejects(() => parse({ ...good, headers: { ...good.headers, 'x-hub-signature-256': 'sha256=abc' } }), 401, 'SIGNATURE_MISMATCH');
    rejects(() => parse({ ...good, headers: { ...good.headers, 'x-hub-signature-256': `sha1=${hmac(good.rawBody)}` } }), 401, 'SIGNATURE_MISMATCH');
    // One changed byte (a re-serialised body) no longer matches.
    const tampered = Buffer.from(good.rawBody.toString().replace('"main"', '"mainx"'));
    rejects(() => parse({ ...good, rawBody: tampered }), 401, 'SIGNATURE_MISMATCH');
    // Garbage with a wrong signature is a 401, not a JSON error: nothing is parsed first.
    rejects(() => parse({ headers: good.headers, rawBody: Buffer.from('{not json') }), 401, 'SIGNATURE_MISMATCH');
    // An empty secret authenticates nothing, even a body "signed" with it.
    rejects(() => parse(githubDelivery(githubPush(), 'push', ''), undefined, ''), 401, 'SECRET_NOT_SET');
    // Upper-case hex is fine.
    const upper = { ...good, headers: { ...good.headers, 'x-hub-signature-256': `sha256=${hmac(good.rawBody).toUpperCase()}` } };
    assert.equal(parse(upper).branch, 'main');
  });

  test('other events are EVENT_IGNORED (422, answered 202 by the route); a missing event or delivery id is 400', { timeout }, () => {
    rejects(() => parse(githubDelivery({ action: 'opened', number: 1 }, 'pull_request')), 422, 'EVENT_IGNORED', /pull_request/);
    rejects(() => parse(gitlabDelivery({ object_kind: 'merge_request' }, 'Merge Request Hook')), 422, 'EVENT_IGNORED');
    const giteaCreate = giteaDelivery({ ref: 'x', ref_type: 'branch' });
    giteaCreate.headers['x-gitea-event'] = 'create';
    rejects(() => parse(giteaCreate), 422, 'EVENT_IGNORED');
    rejects(() => parse(githubDelivery(githubPush({ ref: 'refs/notes/commits' }))), 422, 'EVENT_IGNORED', /neither a branch nor a tag/);

    const good = githubDelivery(githubPush());
    rejects(() => parse({ ...good, headers: without(good.headers, 'x-github-event') }, 'github'), 400, 'EVENT_MISSING');
    rejects(() => parse({ ...good, headers: without(good.headers, 'x-github-delivery') }), 400, 'DELIVERY_ID_MISSING');
    rejects(() => parse({ ...good, headers: { ...good.headers, 'x-github-delivery': 'a b' } }), 400, 'DELIVERY_ID_INVALID');
    // Events are checked after authentication: an unsigned pull_request is a 401.
    const unsigned = githubDelivery({ action: 'opened' }, 'pull_request');
    rejects(() => parse({ ...unsigned, headers: without(unsigned.headers, 'x-hub-signature-256') }), 401, 'SIGNATURE_MISSING');
  });

  test('malformed bodies: invalid JSON is 400, a non-push object 422, another content type 415, oversize 413', { timeout }, () => {
    const sign = (raw: string, type = 'application/json'): Delivery => {
      const delivery = githubDelivery({});
      const rawBody = Buffer.from(raw);
      return { rawBody, headers: { ...delivery.headers, 'content-type': type, 'x-hub-signature-256': `sha256=${hmac(rawBody)}` } };
    };
    rejects(() => parse(sign('{"ref": "refs/heads/main",')), 400, 'INVALID_JSON', /not valid JSON/);
    rejects(() => parse(sign('[1,2]')), 422, 'INVALID_PAYLOAD', /not a JSON object/);
    rejects(() => parse(sign('{"ref":"refs/heads/main"}')), 422, 'INVALID_PAYLOAD', /before/);
    rejects(() => parse(sign(JSON.stringify({ ...githubPush(), after: 'HEAD' }))), 422, 'INVALID_PAYLOAD', /after/);
    rejects(() => parse(sign(JSON.stringify({ ...githubPush(), commits: 'many' }))), 422, 'INVALID_PAYLOAD', /commits/);
    rejects(() => parse(sign('<xml/>', 'application/xml')), 415, 'UNSUPPORTED_MEDIA_TYPE');
    rejects(() => parse(sign('payloadx=1', 'application/x-www-form-urlencoded')), 400, 'INVALID_PAYLOAD', /payload/);
    // GitHub's own form content type works like Gitea's.
    const form = sign(new URLSearchParams({ payload: JSON.stringify(githubPush()) }).toString(), 'application/x-www-form-urlencoded; charset=utf-8');
    assert.equal(parse(form).after, sha3);
    const huge = Buffer.alloc(25 * 1024 * 1024 + 1, 0x20);
    rejects(() => parse({ headers: githubDelivery({}).headers, rawBody: huge }), 413, 'PAYLOAD_TOO_LARGE');
  });

  test('GitLab: token, branch push, tag push, idempotency key, truncated lists', { timeout }, () => {
    const event = parse(gitlabDelivery(gitlabPush()));
    assert.equal(event.provider, 'gitlab');
    assert.equal(event.kind, 'push');
    assert.equal(event.branch, 'main');
    assert.equal(event.deliveryId, 'f0e2a9b7-1c3d-4e5f-8a9b-0c1d2e3f4a5b', 'Idempotency-Key first: the same across retries');
    assert.deepEqual(event.changedFiles, ['src/api.ts', 'Dockerfile']);
    assert.equal(event.pusher, 'ada');
    assert.equal(event.headMessage, 'Fix the build\n');
    assert.deepEqual(event.repository, {
      cloneUrls: ['https://gitlab.example.test/acme/app.git', 'git@gitlab.example.test:acme/app.git', 'https://gitlab.example.test/acme/app'],
      fullName: 'acme/app',
    });

    const older = gitlabDelivery(gitlabPush());
    assert.equal(parse({ ...older, headers: without(older.headers, 'idempotency-key') }).deliveryId, '7c9b4a1e-0f53-4bb2-8c64-9e0f5d7a2b33');
    assert.equal(parse({ ...older, headers: without(older.headers, 'idempotency-key', 'x-gitlab-event-uuid') }).deliveryId, '1f0b2ad8-7ad4-4a49-9d5a-4c5d8e0b4c11');
    rejects(() => parse({ ...older, headers: without(older.headers, 'idempotency-key', 'x-gitlab-event-uuid', 'x-gitlab-webhook-uuid') }), 400, 'DELIVERY_ID_MISSING');

    const tag = parse(gitlabDelivery(gitlabPush({ object_kind: 'tag_push', event_name: 'tag_push', ref: 'refs/tags/v2.0.0', before: zeros, commits: [], total_commits_count: 0 }), 'Tag Push Hook'));
    assert.equal(tag.kind, 'tag');
    assert.equal(tag.tag, 'v2.0.0');
    assert.equal(tag.changedFiles, null);

    const many = parse(gitlabDelivery(gitlabPush({ total_commits_count: 45 })));
    assert.equal(many.changedFiles, null, 'total_commits_count above the list: truncated');
    const twenty = Array.from({ length: 20 }, (_, index) => commit(`${index.toString(16).padStart(2, '0')}${sha1.slice(2)}`, `c${index}`, { modified: ['x'] }));
    assert.equal(parse(gitlabDelivery(gitlabPush({ commits: twenty, total_commits_count: undefined }))).changedFiles, null, '20 listed and no total: maybe truncated');
    assert.deepEqual(parse(gitlabDelivery(gitlabPush({ commits: twenty, total_commits_count: 20 }))).changedFiles, ['x']);

    const deleted = parse(gitlabDelivery(gitlabPush({ after: zeros, checkout_sha: null, commits: [], total_commits_count: 0 })));
    assert.equal(deleted.deleted, true);
    assert.deepEqual(deleted.changedFiles, []);

    rejects(() => parse(gitlabDelivery(gitlabPush(), 'Push Hook', 'wrong')), 401, 'SIGNATURE_MISMATCH');
    rejects(() => parse(gitlabDelivery(gitlabPush(), 'Push Hook', `${secret}x`)), 401, 'SIGNATURE_MISMATCH');
    rejects(() => parse(gitlabDelivery(gitlabPush(), 'Push Hook', secret.slice(0, -1))), 401, 'SIGNATURE_MISMATCH');
    const noToken = gitlabDelivery(gitlabPush());
    rejects(() => parse({ ...noToken, headers: without(noToken.headers, 'x-gitlab-token') }), 401, 'SIGNATURE_MISSING');
  });

  test('Gitea/Forgejo: JSON and form-encoded bodies, every signature header, wrong ones refused', { timeout }, () => {
    const event = parse(giteaDelivery(giteaPush()));
    assert.equal(event.provider, 'gitea');
    assert.equal(event.branch, 'develop');
    assert.equal(event.deliveryId, '6b8c1a2e-5d4f-4e3a-9b2c-1d0e9f8a7b6c');
    assert.deepEqual(event.changedFiles, ['.slipway/build.yaml', 'src/handler.ts']);
    assert.equal(event.pusher, 'ada');
    assert.equal(event.headMessage, 'Update the handler');
    assert.equal(event.repository.fullName, 'acme/app');

    const form = parse(giteaDelivery(giteaPush(), { form: true }));
    assert.deepEqual(form, event, 'the form-encoded body (signed as sent) parses the same');

    const forgejo = giteaDelivery(giteaPush(), { forgejo: true });
    assert.equal(parse({ ...forgejo, headers: without(forgejo.headers, 'x-gitea-signature', 'x-gogs-signature', 'x-gitea-event', 'x-gogs-event', 'x-gitea-delivery', 'x-gogs-delivery') }).provider, 'gitea');
    const hubOnly = giteaDelivery(giteaPush());
    assert.equal(parse({ ...hubOnly, headers: without(hubOnly.headers, 'x-gitea-signature', 'x-gogs-signature') }).after, sha3);
    const unsigned = giteaDelivery(giteaPush());
    rejects(() => parse({ ...unsigned, headers: without(unsigned.headers, 'x-gitea-signature', 'x-gogs-signature', 'x-hub-signature-256', 'x-hub-signature') }), 401, 'SIGNATURE_MISSING');
    rejects(() => parse(giteaDelivery(giteaPush(), { key: 'nope' })), 401, 'SIGNATURE_MISMATCH');
    // The Gitea signature has no prefix; a prefixed one is not accepted there.
    const prefixed = giteaDelivery(giteaPush());
    rejects(() => parse({ ...prefixed, headers: { ...prefixed.headers, 'x-gitea-signature': `sha256=${prefixed.headers['x-gitea-signature']}` } }), 401, 'SIGNATURE_MISMATCH');

    assert.equal(parse(giteaDelivery(giteaPush({}) as never)).changedFiles?.length, 2);
    const truncated = giteaDelivery({ ...giteaPush(), total_commits: 7 });
    assert.equal(parse(truncated).changedFiles, null);
    // A Gitea hook configured as "GitHub" in Slipway still verifies (it also sends the GitHub headers).
    assert.equal(parse(giteaDelivery(giteaPush()), 'github').provider, 'github');
  });

  test('repository URLs compare across https, ssh and scp forms', { timeout }, () => {
    assert.equal(normaliseRepositoryUrl('https://user:pw@GitHub.com/Acme/App.git/'), 'github.com/acme/app');
    assert.equal(normaliseRepositoryUrl('git@github.com:acme/app.git'), 'github.com/acme/app');
    assert.equal(normaliseRepositoryUrl('ssh://git@github.com/acme/app'), 'github.com/acme/app');
    const event = parse(githubDelivery(githubPush()));
    assert.ok(repositoryMatches(event, 'https://github.com/acme/app'));
    assert.ok(repositoryMatches(event, 'git@github.com:acme/app.git'));
    assert.ok(!repositoryMatches(event, 'https://github.com/acme/other.git'));
  });
});

describe('path and branch filters', () => {
  test('no filter: everything, also an empty or unknown list', { timeout }, () => {
    assert.equal(matchesPaths(undefined, ['a']), true);
    assert.equal(matchesPaths(undefined, []), true);
    assert.equal(matchesPaths({}, []), true);
    assert.equal(matchesPaths({ include: [], exclude: [] }, null), true);
    assert.equal(matchesPaths({ include: ['src/**'] }, null), true, 'unknown changes run the pipeline');
    assert.equal(matchesPaths({ include: ['src/**'] }, []), false);
    assert.equal(matchesPaths({ exclude: ['docs/**'] }, []), false);
  });

  test('include globs: src/**, root-anchored *.md, **/*.md, folders with a trailing slash or plain names, dot files', { timeout }, () => {
    const src = { include: ['src/**'] };
    assert.equal(matchesPaths(src, ['src/a/b.ts']), true);
    assert.equal(matchesPaths(src, ['src/.env']), true, 'dot files match');
    assert.equal(matchesPaths(src, ['lib/src/a.ts', 'README.md']), false);
    assert.equal(matchesPaths({ include: ['*.md'] }, ['README.md']), true);
    assert.equal(matchesPaths({ include: ['*.md'] }, ['docs/guide.md']), false, '*.md is anchored at the root');
    assert.equal(matchesPaths({ include: ['**/*.md'] }, ['docs/guide.md']), true);
    assert.equal(matchesPaths({ include: ['**/*.md'] }, ['CHANGES.md']), true);
    assert.equal(matchesPaths({ include: ['docs/'] }, ['docs/a/b.png']), true);
    assert.equal(matchesPaths({ include: ['docs'] }, ['docs/a/b.png']), true, 'a plain name is also a folder');
    assert.equal(matchesPaths({ include: ['docs'] }, ['docs']), true);
    assert.equal(matchesPaths({ include: ['docs'] }, ['docsx/a']), false);
    assert.equal(matchesPaths({ include: ['src/*'] }, ['src/a/b.ts']), false, 'src/* is direct children only');
    assert.equal(matchesPaths({ include: ['src/*'] }, ['src/a.ts']), true);
    assert.equal(matchesPaths({ include: ['./src/**'] }, ['src/a.ts']), true, 'a leading ./ is ignored');
    assert.equal(matchesPaths({ include: ['{api,web}/**/*.ts'] }, ['web/x/y.ts']), true);
    assert.equal(matchesPaths({ include: ['.github/workflows/*.y?(a)ml'] }, ['.github/workflows/ci.yaml']), true);
  });

  test('exclude beats include; one kept file is enough', { timeout }, () => {
    const filter = { include: ['src/**'], exclude: ['src/**/*.test.ts', 'src/fixtures/'] };
    assert.equal(matchesPaths(filter, ['src/a.test.ts']), false);
    assert.equal(matchesPaths(filter, ['src/deep/a.test.ts', 'src/fixtures/x.json']), false);
    assert.equal(matchesPaths(filter, ['src/a.test.ts', 'src/a.ts']), true);
    assert.equal(matchesPaths({ include: ['**'], exclude: ['**'] }, ['a']), false);
    assert.equal(matchesPaths({ exclude: ['*.md', 'docs/'] }, ['README.md', 'docs/x.md']), false, 'only excludes: every file excluded');
    assert.equal(matchesPaths({ exclude: ['*.md', 'docs/'] }, ['README.md', 'main.go']), true);
  });

  test('branch and tag names', { timeout }, () => {
    assert.equal(matchesRef(undefined, 'anything'), true);
    assert.equal(matchesRef([], 'anything'), true);
    assert.equal(matchesRef(['main'], 'main'), true);
    assert.equal(matchesRef(['main'], 'main2'), false);
    assert.equal(matchesRef(['release/*'], 'release/1.0'), true);
    assert.equal(matchesRef(['release/*'], 'release/1.0/hotfix'), false);
    assert.equal(matchesRef(['release/**'], 'release/1.0/hotfix'), true);
    assert.equal(matchesRef(['*'], 'feature/x'), false, '* does not cross /');
    assert.equal(matchesRef(['**'], 'feature/x'), true);
    assert.equal(matchesRef(['v*'], 'v1.2.3'), true);
    assert.equal(matchesRef(['v[0-9]*'], 'vnext'), false);
    assert.equal(matchesRef(['refs/heads/main'], 'main'), true);
    assert.equal(matchesRef(['main'], 'refs/heads/main'), true);
    assert.equal(matchesRef(['*'], '.hidden'), true);
  });

  test('invalid globs are refused with the pattern named', { timeout }, () => {
    validateGlobs(['src/**', '*.md', 'docs/', '{a,b}/[xy]*'], 'paths.include');
    const bad: Array<[string, RegExp]> = [
      ['', /is empty/],
      ['   ', /is empty/],
      ['/etc/passwd', /absolute/],
      ['C:\\x', /absolute/],
      ['../secrets/**', /'\.\.'/],
      ['src/../../x', /'\.\.'/],
      ['!docs/**', /negation/],
      [' src/**', /spaces/],
      ['src/\n**', /control/],
      ['src/[a', /not a valid glob/],
      ['x'.repeat(513), /longer/],
    ];
    for (const [pattern, message] of bad) {
      assert.throws(() => validateGlobs(['ok/**', pattern], 'triggers.webhook.paths.include'), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.match(error.message, /^triggers\.webhook\.paths\.include\[1\] /);
        assert.match(error.message, message);
        return true;
      }, JSON.stringify(pattern));
    }
  });
});
