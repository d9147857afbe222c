/**
 * The dashboard end to end: headless Debian chromium (playwright-core) against a real server
 * (auth on, SQLite) serving the built web app, with real data made here: an image pushed with
 * skopeo, a reader, a pipeline whose run waits for an approval. Covers sign in (wrong and right
 * password), home → namespace → repository, API keys (shown once, revoked), a reader who sees
 * no delete button (and whom the API refuses), the live run page (a stage finishing without a
 * reload, approve, re-run) and sign out. Each test saves a screenshot to docs/screenshots.
 */
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { basicAuth, createApiClient, type ApiClient } from './helpers/api-client.js';
import { ociIndexType, ociManifestType, pushBlob, pushImage, putManifest, sha256 } from './helpers/oci.js';
import { ensureWebBuilt, launchBrowser, newPage, screenshot, signIn } from './helpers/browser.js';
import { requireCommands, run } from './helpers/commands.js';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { writeOciLayout } from './helpers/oci-layout.js';
import { makeRepository } from './helpers/git-repository.js';

const adminPassword = 'admin-secret-Pa55word';
const readerPassword = 'rita-password-1';

describe('web dashboard', { timeout: 240_000 }, () => {
  let ts: TestServer;
  let browser: Browser;
  let admin: ApiClient;
  let work: { path: string; remove(): Promise<void> };
  let pushedDigest: string;
  const pages: Page[] = [];
  const page = async () => { const p = await newPage(browser, ts.url); pages.push(p); return p; };

  before(async () => {
    await requireCommands({ skopeo: 'skopeo' });
    await ensureWebBuilt();
    work = await tempDir();
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword } } });
    admin = createApiClient(ts.url, { basic: { user: 'admin', password: adminPassword } });
    assert.equal((await admin.post('/api/v1/namespaces', { name: 'team' })).status, 201);
    assert.equal((await admin.post('/api/v1/users', { name: 'rita', password: readerPassword })).status, 201);
    assert.equal((await admin.put('/api/v1/namespaces/team/members/rita', { role: 'reader' })).status, 200);
    const layout = await writeOciLayout(path.join(work.path, 'layout'), { tag: 'v1', files: [{ path: 'hello.txt', content: 'hello from the dashboard test\n' }] });
    pushedDigest = layout.manifest.digest;
    await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--dest-creds', `admin:${adminPassword}`, `oci:${layout.dir}:v1`, `docker://${ts.host}/team/app:v1`], { timeoutMs: 60_000 });
    browser = await launchBrowser();
  });

  after(async () => {
    for (const p of pages) await p.context().close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await ts?.close();
    await work?.remove();
  });

  test('sign in: a wrong password gets a clear message; the right one opens home, then namespace and repository', { timeout: 60_000 }, async () => {
    const p = await page();
    await signIn(p, 'admin', 'not-the-password');
    await p.getByRole('alert').filter({ hasText: 'Wrong user name or password' }).waitFor();
    assert.match(p.url(), /\/sign-in/);
    await screenshot(p, 'sign-in-wrong-password');

    await signIn(p, 'admin', adminPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    await p.getByTestId('count-repositories-team').filter({ hasText: '1' }).waitFor();
    await screenshot(p, 'home');

    await p.getByRole('link', { name: 'team', exact: true }).click();
    await p.waitForURL(/\/ns\/team/);
    await p.getByRole('link', { name: 'team/app' }).click();
    await p.waitForURL(/\/ns\/team\/repo\/team\/app$/);
    const row = p.getByRole('row').filter({ hasText: 'v1' });
    await row.waitFor();
    assert.match(await row.innerText(), new RegExp(pushedDigest.slice(7, 19)));
    assert.equal(await row.getByRole('button', { name: 'Delete' }).count(), 1, 'the admin may delete the tag');
    await screenshot(p, 'repository');

    // The listing the screens use (registry/catalog-routes.ts).
    const listed = await admin.get('/api/v1/namespaces/team/repositories');
    assert.deepEqual(listed.body.repositories.map((r: { name: string; tags: number }) => [r.name, r.tags]), [['team/app', 1]]);
    const detail = await admin.get('/api/v1/namespaces/team/repositories/team/app');
    assert.equal(detail.body.tags[0].digest, pushedDigest);
    assert.equal((await admin.get('/api/v1/namespaces/team/repositories/other/app')).status, 404, 'only repositories inside the namespace');

    // A shared link opens the same screen after a reload (the server falls back to the app).
    await p.reload();
    await p.getByRole('row').filter({ hasText: 'v1' }).waitFor();
  });

  test('API keys: created and shown once, then revoked', { timeout: 60_000 }, async () => {
    const p = await page();
    await signIn(p, 'admin', adminPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    await p.getByRole('link', { name: 'API keys' }).click();
    await p.getByLabel('Key name').fill('ci-robot');
    await p.getByRole('button', { name: 'Create key' }).click();
    const key = (await p.getByTestId('new-key').innerText()).trim();
    assert.ok(key.length > 20, 'the secret is shown');
    assert.equal((await admin.get('/api/v1/me', { auth: { apiKey: key } })).status, 200, 'the new key works');
    await screenshot(p, 'api-keys');
    p.once('dialog', (dialog) => void dialog.accept());
    await p.getByRole('button', { name: 'Revoke ci-robot' }).click();
    await p.getByRole('button', { name: 'Revoke ci-robot' }).waitFor({ state: 'detached' });
    assert.equal((await admin.get('/api/v1/me', { auth: { apiKey: key } })).status, 401, 'the revoked key is refused');

    // A bad expiry: the API's message, next to its field.
    await p.getByLabel('Key name').fill('bad');
    await p.getByLabel('Expires in').fill('soon');
    await p.getByRole('button', { name: 'Create key' }).click();
    await p.getByText('expiresIn: a duration such as 30d or 12h').or(p.getByText('a duration such as 30d or 12h')).first().waitFor();
  });

  test('a reader sees the repository without a delete button, and the API refuses the delete', { timeout: 60_000 }, async () => {
    const p = await page();
    await signIn(p, 'rita', readerPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    await p.goto('/ns/team/repo/team/app');
    await p.getByRole('row').filter({ hasText: 'v1' }).waitFor();
    assert.equal(await p.getByRole('button', { name: 'Delete' }).count(), 0);
    await screenshot(p, 'repository-reader');
    const rita = admin.as({ basic: { user: 'rita', password: readerPassword } });
    assert.equal((await rita.delete('/api/v1/namespaces/team/repositories/team/app?tag=v1')).status, 403);
    // Sign out ends the session: its key no longer works, protected screens ask to sign in.
    await p.getByRole('button', { name: 'Sign out' }).click();
    await p.waitForURL(/\/sign-in/);
    await p.goto('/keys');
    await p.waitForURL(/\/sign-in\?next=%2Fkeys/);
  });

  test('run page: the stage graph updates live, approve, then re-run', { timeout: 90_000 }, async () => {
    const created = await admin.post('/api/v1/namespaces/team/pipelines', {
      name: 'release',
      stages: [{ name: 'pause', type: 'wait', duration: '2s' }, { name: 'gate', type: 'approval' }],
    });
    assert.equal(created.status, 201, created.text);
    const started = await admin.post('/api/v1/namespaces/team/pipelines/release/runs', {});
    assert.equal(started.status, 201, started.text);
    const number = started.body.number as number;

    const p = await page();
    await signIn(p, 'admin', adminPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    // The page follows the event stream: it asks for the run when it opens, on run.* events and
    // on a (re)connect of the stream, never on a timer.
    const runGets: number[] = [];
    p.on('request', (r) => { if (r.method() === 'GET' && new URL(r.url()).pathname === `/api/v1/namespaces/team/pipelines/release/runs/${number}`) runGets.push(Date.now()); });
    await p.goto(`/ns/team/pipelines/release/runs/${number}`);
    const pause = p.locator('[data-stage="pause"]');
    await pause.waitFor();
    // Loaded while the wait stage is still going; it finishes on the page with no reload.
    await p.locator('[data-stage="pause"][data-status="succeeded"]').waitFor({ timeout: 20_000 });
    await p.locator('[data-stage="gate"][data-status="waiting"]').waitFor({ timeout: 20_000 });
    await p.getByRole('heading', { name: /Run #\d+ waiting/ }).waitFor({ timeout: 20_000 });
    const quietFrom = runGets.length;
    await p.waitForTimeout(4000);
    assert.equal(runGets.length, quietFrom, 'no run fetches while nothing happens (no polling)');
    assert.ok(runGets.length <= 5, `a handful of run fetches, not a poll: ${runGets.length}`);
    await p.getByLabel('Comment').fill('looks good');
    await screenshot(p, 'run-waiting');
    await p.getByRole('button', { name: 'Approve gate' }).click();
    await p.locator('[data-stage="gate"][data-status="succeeded"]').waitFor({ timeout: 20_000 });
    await p.getByRole('heading', { name: /Run #\d+ succeeded/ }).waitFor({ timeout: 20_000 });
    await screenshot(p, 'run-succeeded');
    // What moved the stages: one stage.* event per change, with the run and the stage.
    const stageEvents = (await admin.get('/api/v1/namespaces/team/events?type=stage.*')).body.events as Array<{ type: string; subject: string; data: { run: { number: number; id: string }; stage: { name: string; status: string; approval?: { comment?: string } } } }>;
    const mine = stageEvents.filter((e) => e.data.run.number === number);
    assert.deepEqual(mine.map((e) => `${e.type} ${e.data.stage.name}`), ['stage.started pause', 'stage.succeeded pause', 'stage.started gate', 'stage.waiting gate', 'stage.approved gate', 'stage.succeeded gate']);
    assert.equal(mine[0]!.subject, `release#${number}`);
    assert.equal(mine[4]!.data.stage.approval?.comment, 'looks good');

    await p.getByRole('button', { name: 'Re-run', exact: true }).click();
    await p.waitForURL(new RegExp(`/runs/${number + 1}$`));
    await p.locator('[data-stage="pause"]').waitFor();
    const runs = await admin.get('/api/v1/namespaces/team/pipelines/release/runs');
    assert.ok((runs.body.runs as Array<{ number: number }>).some((r) => r.number === number + 1), 'the re-run exists');
    await admin.post(`/api/v1/namespaces/team/pipelines/release/runs/${number + 1}/cancel`, {});

    // The home feed shows the runs' events.
    await p.goto('/');
    await p.getByTestId('events').getByText('run.succeeded').first().waitFor({ timeout: 20_000 });
  });

  test('run page: a rejection with its comment; a running run whose log stream drops, reconnects without duplicates, then is cancelled', { timeout: 90_000 }, async () => {
    assert.equal((await admin.post('/api/v1/namespaces/team/pipelines', { name: 'gated', stages: [{ name: 'gate', type: 'approval' }, { name: 'after', type: 'wait', duration: '1s' }] })).status, 201);
    assert.equal((await admin.post('/api/v1/namespaces/team/pipelines', { name: 'slow', stages: [{ name: 'nap', type: 'wait', duration: '25s' }] })).status, 201);
    const gated = (await admin.post('/api/v1/namespaces/team/pipelines/gated/runs', {})).body.number as number;
    const slow = (await admin.post('/api/v1/namespaces/team/pipelines/slow/runs', {})).body.number as number;

    const p = await page();
    await signIn(p, 'admin', adminPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    await p.goto(`/ns/team/pipelines/gated/runs/${gated}`);
    await p.locator('[data-stage="gate"][data-status="waiting"]').waitFor({ timeout: 20_000 });
    await p.getByLabel('Comment').fill('not this week');
    await p.getByRole('button', { name: 'Reject gate' }).click();
    await p.getByRole('heading', { name: /Run #\d+ failed/ }).waitFor({ timeout: 20_000 });
    await p.locator('[data-stage="gate"][data-status="failed"]').getByText('rejected by admin: not this week').waitFor();
    await p.locator('[data-stage="after"][data-status="skipped"]').waitFor();
    await screenshot(p, 'run-rejected');

    await p.goto(`/ns/team/pipelines/slow/runs/${slow}`);
    await p.locator('[data-stage="nap"][data-status="running"]').waitFor({ timeout: 20_000 });
    const log = p.getByTestId('run-log');
    await log.getByText('[nap] waiting').waitFor({ timeout: 20_000 });
    // The streams drop (the server closes every connection) and stay refused for a moment.
    await p.route('**/runs/*/logs*', (route) => route.abort('connectionreset'));
    ts.server.app.server.closeAllConnections();
    await p.getByText('Connection lost — reconnecting…').waitFor({ timeout: 20_000 });
    await p.unroute('**/runs/*/logs*');
    await p.getByText('Connection lost — reconnecting…').waitFor({ state: 'detached', timeout: 20_000 });
    await log.getByText('[nap] waiting').waitFor({ timeout: 20_000 });
    await p.getByRole('button', { name: 'Cancel run' }).click();
    await p.getByRole('heading', { name: /Run #\d+ cancelled/ }).waitFor({ timeout: 20_000 });
    await p.locator('[data-stage="nap"][data-status="cancelled"]').waitFor({ timeout: 20_000 });
    // The log goes on after the reconnect, each line once.
    await log.getByText('run cancelled').waitFor({ timeout: 20_000 });
    const lines = (await log.innerText()).split('\n').filter(Boolean);
    assert.equal(new Set(lines).size, lines.length, `no line twice:\n${lines.join('\n')}`);
    assert.equal(lines.filter((l) => l.includes('[nap] waiting')).length, 1);
    await screenshot(p, 'run-cancelled');
  });

  test('repository page: the platforms of an index and its referrers', { timeout: 60_000 }, async () => {
    const auth = { authorization: basicAuth('admin', adminPassword) };
    const amd = await pushImage(ts.url, 'team/multi', 'amd64-only', 1, 256, auth);
    const arm = await pushImage(ts.url, 'team/multi', 'arm64-only', 1, 256, auth);
    const indexBody = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: ociIndexType,
      manifests: [
        { mediaType: ociManifestType, digest: amd.manifest.digest, size: amd.manifest.body.length, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: ociManifestType, digest: arm.manifest.digest, size: arm.manifest.body.length, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
    }));
    const index = { body: indexBody, digest: sha256(indexBody), mediaType: ociIndexType };
    assert.equal((await putManifest(ts.url, 'team/multi', 'v2', index, auth)).status, 201);
    // A referrer: an OCI artifact whose subject is the index (an SBOM, say).
    const empty = Buffer.from('{}');
    assert.equal((await pushBlob(ts.url, 'team/multi', empty, sha256(empty), auth)).status, 201);
    const sbom = Buffer.from('{"sbom":true}');
    assert.equal((await pushBlob(ts.url, 'team/multi', sbom, sha256(sbom), auth)).status, 201);
    const artifactBody = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: ociManifestType, artifactType: 'application/vnd.example.sbom+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(empty), size: 2 },
      layers: [{ mediaType: 'application/vnd.example.sbom+json', digest: sha256(sbom), size: sbom.length }],
      subject: { mediaType: ociIndexType, digest: index.digest, size: indexBody.length },
    }));
    const artifact = { body: artifactBody, digest: sha256(artifactBody), mediaType: ociManifestType };
    assert.equal((await putManifest(ts.url, 'team/multi', artifact.digest, artifact, auth)).status, 201);

    const p = await page();
    await signIn(p, 'admin', adminPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    await p.goto('/ns/team/repo/team/multi');
    const row = p.getByRole('row').filter({ hasText: 'v2' });
    await row.waitFor();
    const text = await row.innerText();
    assert.match(text, /linux\/amd64/);
    assert.match(text, /linux\/arm64\/v8/);
    assert.match(text, new RegExp(`application/vnd.example.sbom\\+json ${artifact.digest.slice(0, 19)}`));
    assert.match(await p.getByRole('row').filter({ hasText: 'amd64-only' }).innerText(), /—/, 'a single image has no referrers');
    await screenshot(p, 'repository-index');
  });

  test('a push through the webhook starts a run; its page shows the commit and the live stage', { timeout: 90_000 }, async () => {
    const repo = await makeRepository(work.path);
    const created = await admin.post('/api/v1/namespaces/team/pipelines', {
      name: 'on-push', sources: [{ name: 'app', url: repo.url }], triggers: { webhook: { branches: ['main'] } },
      stages: [{ name: 'settle', type: 'wait', duration: '2s' }],
    });
    assert.equal(created.status, 201, created.text);
    const secret = created.body.webhook.secret as string;
    const body = JSON.stringify({
      ref: 'refs/heads/main', before: '0'.repeat(40), after: repo.first,
      commits: [{ id: repo.first, message: 'initial', added: ['README.md'], removed: [], modified: [] }],
      repository: { clone_url: repo.url, full_name: 'team/app' }, pusher: { name: 'ada' },
    });
    const hook = await fetch(`${ts.url}/api/v1/namespaces/team/pipelines/on-push/webhook`, {
      method: 'POST', body,
      headers: { 'content-type': 'application/json', 'x-github-event': 'push', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}` },
    });
    assert.equal(hook.status, 202, await hook.text());

    const p = await page();
    await signIn(p, 'admin', adminPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    await p.goto('/ns/team/pipelines');
    await p.getByRole('link', { name: 'on-push' }).click();
    await p.getByText(`${ts.url}/api/v1/namespaces/team/pipelines/on-push/webhook`).waitFor();
    await p.getByRole('row').filter({ hasText: '#1' }).filter({ hasText: 'webhook' }).waitFor();
    await screenshot(p, 'pipeline');
    // A definition the API refuses: its message, at the line it names.
    await p.getByRole('button', { name: 'Edit' }).click();
    const editor = p.getByLabel('Definition (YAML)');
    const yaml = await editor.inputValue();
    const line = yaml.split('\n').findIndex((l) => l.includes('- name: settle')) + 1;
    assert.ok(line > 0, yaml);
    await editor.fill(yaml.replace('type: wait', 'type: compile'));
    await p.getByRole('button', { name: 'Save' }).click();
    const refused = p.getByRole('alert').filter({ hasText: 'stages' });
    await refused.waitFor();
    assert.match(await refused.innerText(), new RegExp(`^line ${line}: `));
    await p.getByRole('button', { name: 'Cancel' }).click();
    await p.getByRole('link', { name: '#1' }).click();
    await p.locator('.facts').getByText(repo.first).waitFor();
    await p.locator('[data-stage="settle"][data-status="succeeded"]').waitFor({ timeout: 20_000 });
    await p.getByRole('heading', { name: /Run #1 succeeded/ }).waitFor({ timeout: 20_000 });
    await screenshot(p, 'run-from-webhook');
  });

  test('a lost event stream shows a banner and reconnects by itself; every namespace tab opens', { timeout: 90_000 }, async () => {
    const p = await page();
    await signIn(p, 'admin', adminPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    // The stream is refused for a while: the banner shows; once it is back, the banner goes.
    await p.route('**/events/stream*', (route) => route.abort('connectionreset'));
    await p.goto('/');
    await p.getByText('Connection lost — reconnecting…').waitFor({ timeout: 20_000 });
    await screenshot(p, 'home-connection-lost');
    await p.unroute('**/events/stream*');
    await p.getByText('Connection lost — reconnecting…').waitFor({ state: 'detached', timeout: 20_000 });
    // Events published after the reconnect arrive live.
    await admin.post('/api/v1/namespaces/team/pipelines/release/runs', {});
    await p.getByTestId('events').getByText('run.queued').first().waitFor({ timeout: 20_000 });

    for (const [tab, heading] of [['repositories', 'Repository'], ['pipelines', 'Pipeline'], ['builds', null], ['artefacts', null], ['registries', null], ['secrets', null], ['members', 'Member'], ['webhooks', null], ['events', null], ['audit', 'Action']] as const) {
      await p.goto(`/ns/team/${tab}`);
      await p.getByRole('tab', { name: /./ }).first().waitFor();
      await p.locator('.tab-body').filter({ hasNotText: 'Loading…' }).waitFor();
      if (heading) await p.getByRole('columnheader', { name: heading }).first().waitFor();
      assert.equal(await p.locator('.tab-body [role=alert]').count(), 0, `tab ${tab} shows no error: ${await p.locator('.tab-body').innerText()}`);
    }
    await p.goto('/ns/team/members');
    await p.getByRole('cell', { name: 'rita' }).waitFor();
    await screenshot(p, 'namespace-members');
  });
});
