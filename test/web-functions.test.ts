/**
 * The dashboard's function page end to end: a real server (auth and functions on, runc) with a
 * Node.js image pushed here (no buildah) and deployed as an HTTP function in two revisions;
 * headless chromium signs in, invokes it from the console (status, headers, body, duration),
 * sees the metrics graphs drawn, and rolls back to revision 1, which then answers.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { basicAuth, createApiClient, type ApiClient } from './helpers/api-client.js';
import { ensureWebBuilt, launchBrowser, newPage, screenshot, signIn } from './helpers/browser.js';
import { requireCommands } from './helpers/commands.js';
import { assertNoLeftovers, eventually, instancePrefix } from './helpers/functions.js';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { nodeLayer, pushNodeImage } from './helpers/node-image.js';

const adminPassword = 'admin-secret-Pa55word';
const server = `require('http').createServer((q, s) => { s.setHeader('x-version', process.env.VERSION); s.end('hello from ' + process.env.VERSION + ' ' + q.method + ' ' + q.url); }).listen(8000);`;

describe('web dashboard: function page', { timeout: 300_000 }, () => {
  let ts: TestServer;
  let browser: Browser;
  let admin: ApiClient;
  let work: { path: string; remove(): Promise<void> };
  let prefix: string;
  let page: Page | undefined;
  let imageDigest: string;

  before(async () => {
    await requireCommands({ runc: 'runc', ip: 'iproute2' });
    await ensureWebBuilt();
    work = await tempDir('slipway-web-fn-');
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword }, functions: { enabled: true, startTimeout: '6s' } } });
    prefix = await instancePrefix(ts.dataDir);
    admin = createApiClient(ts.url, { basic: { user: 'admin', password: adminPassword } });
    assert.equal((await admin.post('/api/v1/namespaces', { name: 'fns' })).status, 201);
    const image = await pushNodeImage(ts, 'fns/web', '1', await nodeLayer(work.path), { Cmd: ['node', '-e', server] }, { authorization: basicAuth('admin', adminPassword) });
    imageDigest = image.digest;
    const created = await admin.post('/api/v1/namespaces/fns/functions?wait=true', { name: 'web', type: 'http', image: image.reference, env: { VERSION: 'v1' } });
    assert.equal(created.status, 201, created.text);
    const changed = await admin.patch('/api/v1/namespaces/fns/functions/web?wait=true', { env: { VERSION: 'v2' } });
    assert.equal(changed.status, 200, changed.text);
    assert.equal(changed.body.activeRevision, 2, changed.text);
    browser = await launchBrowser();
  });

  after(async () => {
    await page?.context().close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    try {
      if (ts) {
        await ts.server.close();
        await assertNoLeftovers(ts.dataDir, prefix);
      }
    } finally {
      await ts?.close();
      await work?.remove();
    }
  });

  test('invoke console, metrics graphs, rollback', { timeout: 120_000 }, async () => {
    page = await newPage(browser, ts.url);
    const p = page;
    await signIn(p, 'admin', adminPassword);
    await p.getByRole('heading', { name: 'Namespaces' }).waitFor();
    await p.goto('/ns/fns/functions');
    await p.getByRole('link', { name: 'web' }).click();
    await p.getByTestId('live-revision').filter({ hasText: '2' }).waitFor();

    await p.getByLabel('Method').selectOption('POST');
    await p.getByLabel('Path').fill('/greet');
    await p.getByLabel('Body').fill('{"hi":1}');
    await p.getByRole('button', { name: 'Send' }).click();
    await p.getByTestId('invoke-status').filter({ hasText: '200' }).waitFor({ timeout: 30_000 });
    assert.equal((await p.getByTestId('invoke-body').innerText()).trim(), 'hello from v2 POST /greet');
    assert.match(await p.getByTestId('invoke-result').innerText(), /in \d+ ms/);

    // Two samples of the metrics API make the graphs; the totals count the invocation.
    await p.getByTestId('metrics').getByText(/1 invocations/).waitFor({ timeout: 20_000 });
    assert.equal(await p.locator('[data-testid=metrics] canvas').count(), 4);
    await p.getByTestId('metrics').scrollIntoViewIfNeeded();
    await screenshot(p, 'function');

    p.once('dialog', (dialog) => void dialog.accept());
    await p.getByRole('button', { name: 'Roll back to 1' }).click();
    await p.getByTestId('live-revision').filter({ hasText: '1' }).waitFor({ timeout: 30_000 });
    await eventually(async () => {
      await p.getByRole('button', { name: 'Send' }).click();
      await p.getByTestId('invoke-status').waitFor();
      return (await p.getByTestId('invoke-body').innerText()).startsWith('hello from v1');
    }, 30_000, 'revision 1 answers after the rollback');
    await screenshot(p, 'function-rolled-back');

    // An invoke key made on the page opens the private function to a client without a user.
    assert.equal((await fetch(`${ts.url}/fn/fns/web/`)).status, 401);
    await p.getByText('Invoke keys').click();
    await p.getByLabel('Invoke key name').fill('ci');
    await p.getByRole('button', { name: 'Create invoke key' }).click();
    const key = (await p.locator('.notice .secret').innerText()).trim();
    const keyed = await fetch(`${ts.url}/fn/fns/web/`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(keyed.status, 200, await keyed.text());
  });

  test('the revisions that run an image digest (what a run\'s delivered artefact links to)', { timeout: 60_000 }, async () => {
    const found = await admin.get(`/api/v1/namespaces/fns/function-revisions?digest=${imageDigest}`);
    assert.equal(found.status, 200, found.text);
    const revisions = found.body.revisions as Array<{ function: string; number: number; imageDigest: string; active: boolean }>;
    assert.deepEqual(revisions.map((r) => [r.function, r.number]).sort(), [['web', 1], ['web', 2]]);
    assert.ok(revisions.every((r) => r.imageDigest === imageDigest));
    assert.equal(revisions.filter((r) => r.active).length, 1, 'the live one is marked');
    assert.deepEqual((await admin.get(`/api/v1/namespaces/fns/function-revisions?digest=sha256:${'0'.repeat(64)}`)).body.revisions, []);
    assert.equal((await admin.get('/api/v1/namespaces/fns/function-revisions?digest=latest')).status, 400);
    assert.equal((await admin.get('/api/v1/namespaces/fns/function-revisions')).status, 400);
    assert.equal((await admin.post('/api/v1/namespaces', { name: 'other' })).status, 201);
    assert.deepEqual((await admin.get(`/api/v1/namespaces/other/function-revisions?digest=${imageDigest}`)).body.revisions, [], 'only the namespace\'s functions');

    // The link's target: the function page with that revision marked in its revisions view.
    const p = page ?? await newPage(browser, ts.url);
    await p.goto('/ns/fns/functions/web?revision=1#revisions');
    await p.getByTestId('marked-revision').filter({ hasText: '1' }).waitFor();
  });
});
