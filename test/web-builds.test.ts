/**
 * The dashboard's builds: a real image build (buildah, a private store, `FROM scratch` so no
 * base image is needed) submitted through the API; headless chromium finds it in the builds
 * tab, opens it and sees its log and its final status arrive live, then the pushed
 * repository it made.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { basicAuth } from './helpers/api-client.js';
import { ensureWebBuilt, launchBrowser, newPage, screenshot, signIn } from './helpers/browser.js';
import { requireCommands } from './helpers/commands.js';
import { buildWork, type BuildWork } from './helpers/function-images.js';
import { startTestServer, type TestServer } from './helpers/harness.js';

const adminPassword = 'admin-secret-Pa55word';

describe('web dashboard: builds', { timeout: 300_000 }, () => {
  let ts: TestServer;
  let browser: Browser;
  let work: BuildWork;
  let page: Page | undefined;

  before(async () => {
    await requireCommands({ buildah: 'buildah' });
    await ensureWebBuilt();
    work = await buildWork();
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword }, builds: work.builds } });
    const created = await fetch(`${ts.url}/api/v1/namespaces`, { method: 'POST', headers: { authorization: basicAuth('admin', adminPassword), 'content-type': 'application/json' }, body: JSON.stringify({ name: 'team' }) });
    assert.equal(created.status, 201);
    browser = await launchBrowser();
  });

  after(async () => {
    await page?.context().close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    await ts?.close();
    await work?.cleanup();
  });

  test('builds tab → a build page with its live log and final status', { timeout: 180_000 }, async () => {
    const form = new FormData();
    for (const [key, value] of Object.entries({ component: 'site', branch: 'main', architecture: 'linux/amd64', tag: 'v1' })) form.set(key, value);
    form.set('dockerfile', new Blob(['FROM scratch\nCOPY .slipway.Dockerfile /Dockerfile\nLABEL made.by=web-test\n']), 'Dockerfile');
    const submitted = await fetch(`${ts.url}/api/v1/namespaces/team/images`, { method: 'POST', body: form, headers: { authorization: basicAuth('admin', adminPassword) } });
    const build = await submitted.json() as { id: string; status: string };
    assert.ok(submitted.status < 300, JSON.stringify(build));

    page = await newPage(browser, ts.url);
    const p = page;
    await signIn(p, 'admin', adminPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    await p.goto('/ns/team/builds');
    await p.getByRole('link', { name: build.id.slice(0, 12) }).click();
    await p.waitForURL(new RegExp(`/ns/team/builds/${build.id}$`));
    await p.locator('.facts .status-succeeded').waitFor({ timeout: 60_000 }).catch(async (error: Error) => {
      const now = await (await fetch(`${ts.url}/api/v1/namespaces/team/builds/${build.id}`, { headers: { authorization: basicAuth('admin', adminPassword) } })).text();
      throw new Error(`${error.message}\nbuild: ${now}\npage: ${await p.locator('main').innerText()}`);
    });
    assert.ok((await p.getByTestId('build-log').innerText()).length > 0, 'the log shows');
    await screenshot(p, 'build');
    // The image it pushed links to its repository.
    await p.getByRole('link', { name: /team\/site-main-image:v1/ }).click();
    await p.getByRole('row').filter({ hasText: 'v1' }).waitFor();
    await p.goto('/ns/team/builds');
    await p.getByRole('row').filter({ hasText: build.id.slice(0, 12) }).locator('.status-succeeded').waitFor();
  });

  test('builds tab filters: status, kind, source and repository, on the server and in the URL', { timeout: 180_000 }, async () => {
    const auth = { authorization: basicAuth('admin', adminPassword) };
    const form = new FormData();
    for (const [key, value] of Object.entries({ component: 'broken', branch: 'main', architecture: 'linux/amd64', tag: 'v1' })) form.set(key, value);
    // No shell in scratch: the RUN fails.
    form.set('dockerfile', new Blob(['FROM scratch\nRUN false\n']), 'Dockerfile');
    const failed = await (await fetch(`${ts.url}/api/v1/namespaces/team/images?wait=true`, { method: 'POST', body: form, headers: auth })).json() as { id: string; status: string };
    assert.equal(failed.status, 'failed', JSON.stringify(failed));
    const list = async (query: string) => {
      const response = await fetch(`${ts.url}/api/v1/namespaces/team/builds${query}`, { headers: auth });
      return { status: response.status, ids: response.ok ? ((await response.json()) as Array<{ id: string; component: string }>).map((b) => b.component) : [] };
    };
    assert.deepEqual((await list('?status=failed')).ids, ['broken']);
    assert.deepEqual((await list('?repository=team/site-main-image')).ids, ['site']);
    assert.deepEqual((await list('?repository=team/site')).ids, [], 'a whole repository name, not a prefix');
    assert.deepEqual((await list('?source=upload')).ids.sort(), ['broken', 'site']);
    assert.deepEqual((await list('?source=git')).ids, []);
    assert.equal((await list('?source=ftp')).status, 400);

    const p = page ?? await newPage(browser, ts.url);
    await p.goto('/ns/team/builds?status=failed');
    const rows = p.locator('.tab-body tbody tr');
    await rows.filter({ hasText: failed.id.slice(0, 12) }).waitFor();
    assert.equal(await rows.count(), 1, 'only the failed build');
    assert.equal(await p.getByLabel('Status').inputValue(), 'failed');
    await p.getByLabel('Status').selectOption('');
    await p.waitForURL((url) => !url.search.includes('status'));
    await rows.nth(1).waitFor();
    assert.equal(await rows.count(), 2);
    await p.getByLabel('Repository').fill('team/site-main-image');
    await p.getByRole('button', { name: 'Filter' }).click();
    await p.waitForURL(/\?repository=team%2Fsite-main-image$/);
    await rows.filter({ hasNotText: failed.id.slice(0, 12) }).first().waitFor();
    await p.waitForFunction(() => document.querySelectorAll('.tab-body tbody tr').length === 1);
    // The shared link opens the same filtered list.
    await p.reload();
    await p.getByRole('row').filter({ hasText: 'site-main-image' }).waitFor();
    assert.equal(await p.getByLabel('Repository').inputValue(), 'team/site-main-image');
    assert.equal(await rows.count(), 1);
    await screenshot(p, 'builds-filtered');
    await p.getByRole('button', { name: 'Clear filters' }).click();
    await p.waitForFunction(() => document.querySelectorAll('.tab-body tbody tr').length === 2);
  });
});
