/**
 * Registry policies of a namespace against a real server with access control on, on SQLite and
 * PostgreSQL: immutable tags (skopeo cannot move or delete one; a same-digest re-push is fine),
 * quotas (a push over maxBytes is refused — monolithic before any byte is stored, chunked at
 * commit — leaving no upload, no blob and the usage as it was; a repository beyond
 * maxRepositories is refused), retention (dry run, run, record), and the API's validation and
 * roles. skopeo and curl from Debian's packages; every skopeo gets its own auth file.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dialects, startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { cleanEnv, killAllChildren, requireCommands, run, slipwayBin, type RunOptions } from './helpers/commands.js';
import { writeOciLayout, type LayoutImage } from './helpers/oci-layout.js';
import { createApiClient, type ApiClient } from './helpers/api-client.js';
import { asBody, pushImage, sha256 } from './helpers/oci.js';

const adminPassword = `admin-${randomBytes(8).toString('hex')}`;
const readerPassword = `reader-${randomBytes(8).toString('hex')}`;
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const admin = basic('admin', adminPassword);
const sh = (command: string, args: string[], options: RunOptions = {}) => run(command, args, { timeoutMs: 120_000, ...options });

for (const dialect of dialects) {
  describe(`registry policies (${dialect.name})`, { timeout: 600_000 }, () => {
    let ts: TestServer;
    let work: { path: string; remove(): Promise<void> };
    let api: ApiClient;
    let authEnv: NodeJS.ProcessEnv;
    let imageA: LayoutImage;
    let imageB: LayoutImage;

    const skopeo = (args: string[], allowFailure = false) => sh('skopeo', [...args], { env: authEnv, allowFailure });
    const copy = (image: LayoutImage, ref: string) => skopeo(['copy', '--dest-tls-verify=false', `oci:${image.dir}:${image.tag}`, `docker://${ts.host}/${ref}`], true);
    const registry = (method: string, url: string, init: RequestInit = {}) =>
      fetch(`${ts.url}${url}`, { ...init, method, headers: { authorization: admin, ...(init.headers as Record<string, string> | undefined) } });
    const envelope = async (response: Response) => ((await response.json()) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
    const tagDigest = async (repository: string, tag: string) =>
      (await registry('HEAD', `/v2/${repository}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).headers.get('docker-content-digest');
    /** What must be unchanged after a refused push: no upload session or temp file, the blob absent. */
    const nothingStored = async (digest: string) => {
      const { db, store } = ts.server.registry;
      assert.deepEqual(await db.kysely.selectFrom('uploads').select('id').execute(), [], 'no upload session left');
      const temp: string[] = [];
      for await (const file of store.uploads.list()) temp.push(file.id);
      assert.deepEqual(temp, [], 'no upload temp data left');
      assert.equal(await db.kysely.selectFrom('blobs').select('digest').where('digest', '=', digest).executeTakeFirst(), undefined, 'no blob row');
      assert.equal(await store.stat(digest), null, 'no blob content');
    };

    before(async () => {
      await requireCommands({ skopeo: 'skopeo', curl: 'curl', tar: 'tar' });
      work = await tempDir('slipway-policy-');
      ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword }, registry: { deleteEnabled: true } } });
      api = createApiClient(ts.url, admin);
      for (const ns of ['team', 'quota']) assert.equal((await api.post('/api/v1/namespaces', { name: ns })).status, 201);
      assert.equal((await api.post('/api/v1/users', { name: 'rita', password: readerPassword })).status, 201);
      assert.equal((await api.put('/api/v1/namespaces/team/members/rita', { role: 'reader' })).status, 200);
      const authFile = path.join(work.path, 'auth.json');
      await writeFile(authFile, JSON.stringify({ auths: { [ts.host]: { auth: Buffer.from(`admin:${adminPassword}`).toString('base64') } } }));
      authEnv = { ...process.env, REGISTRY_AUTH_FILE: authFile };
      imageA = await writeOciLayout(path.join(work.path, 'a'), { tag: 'v1', files: [{ path: 'a.txt', content: 'image a' }] });
      imageB = await writeOciLayout(path.join(work.path, 'b'), { tag: 'v1', files: [{ path: 'b.txt', content: 'image b' }] });
    });

    after(async () => {
      killAllChildren();
      await ts?.close();
      await work?.remove();
    });

    test('immutable tags: a move and a delete are refused, naming the rule; a same-digest re-push and other tags are fine', async () => {
      const set = await api.put('/api/v1/namespaces/team/registry-policy', { immutableTags: ['v*', 'release-*'] });
      assert.equal(set.status, 200, set.text);
      assert.deepEqual(set.body.immutableTags, ['v*', 'release-*']);

      assert.equal((await copy(imageA, 'team/app:v1')).code, 0);
      const pushedA = await tagDigest('team/app', 'v1');
      assert.equal(pushedA, imageA.manifest.digest);

      const moved = await copy(imageB, 'team/app:v1');
      assert.notEqual(moved.code, 0, 'skopeo must fail to move an immutable tag');
      assert.match(moved.stderr, /denied|immutable/i);
      assert.equal(await tagDigest('team/app', 'v1'), pushedA, 'the tag still points at the first push');

      const again = await copy(imageA, 'team/app:v1');
      assert.equal(again.code, 0, `same digest re-push: ${again.stderr}`);

      // Registry's own answer: DENIED, 403, the rule named.
      const put = await registry('PUT', `/v2/team/app/manifests/v1`, { body: asBody(imageB.manifest.data), headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(put.status, 403);
      const refusal = await envelope(put);
      assert.equal(refusal.code, 'DENIED');
      assert.match(refusal.message, /team\/app:v1 is immutable \(rule "v\*"/);

      const deleted = await skopeo(['delete', '--tls-verify=false', `docker://${ts.host}/team/app:v1`], true);
      assert.notEqual(deleted.code, 0, 'skopeo delete of an immutable tag must fail');
      const byDigest = await registry('DELETE', `/v2/team/app/manifests/${pushedA}`);
      assert.equal(byDigest.status, 403);
      assert.match((await envelope(byDigest)).message, /cannot be deleted/);
      // The dashboard's delete (the /api catalog) is refused the same way, as FORBIDDEN.
      const viaApi = await api.delete('/api/v1/namespaces/team/repositories/team/app?tag=v1');
      assert.equal(viaApi.status, 403, viaApi.text);
      assert.equal(viaApi.body.code, 'FORBIDDEN');
      assert.match(viaApi.body.message, /immutable/);
      assert.equal(await tagDigest('team/app', 'v1'), pushedA);

      // A tag no rule matches moves and goes as always.
      assert.equal((await copy(imageA, 'team/app:latest')).code, 0);
      assert.equal((await copy(imageB, 'team/app:latest')).code, 0);
      assert.equal(await tagDigest('team/app', 'latest'), imageB.manifest.digest);
      assert.equal((await registry('DELETE', '/v2/team/app/manifests/latest')).status, 202);
    });

    test('quota maxBytes: monolithic refused before storing, chunked refused at commit, nothing left, usage unchanged', async () => {
      assert.equal((await copy(imageA, 'quota/base:1')).code, 0);
      const before = await api.get('/api/v1/namespaces/quota/registry-usage');
      assert.equal(before.status, 200);
      assert.equal(before.body.bytes, imageA.config.data.length + imageA.layers[0]!.data.length);
      assert.equal(before.body.blobs, 2);
      assert.equal(before.body.repositories, 1);
      const maxBytes = before.body.bytes + 500;
      assert.equal((await api.put('/api/v1/namespaces/quota/registry-policy', { quota: { maxBytes } })).status, 200);

      // Monolithic single POST with a known length: curl, refused from Content-Length alone.
      const big = randomBytes(4096);
      const bigDigest = sha256(big);
      const bigFile = path.join(work.path, 'big.bin');
      await writeFile(bigFile, big);
      const curl = await sh('curl', ['--silent', '--show-error', '--max-time', '60', '-u', `admin:${adminPassword}`, '-X', 'POST',
        '-H', 'Content-Type: application/octet-stream', '--data-binary', `@${bigFile}`, '-w', '\n%{http_code}',
        `${ts.url}/v2/quota/base/blobs/uploads/?digest=${bigDigest}`]);
      const [body, status] = curl.stdout.trimEnd().split(/\n(?=\d{3}$)/);
      assert.equal(status, '403', curl.stdout);
      const monolithic = (JSON.parse(body!) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
      assert.equal(monolithic.code, 'DENIED');
      assert.match(monolithic.message, /quota maxBytes of namespace "quota" is \d+ bytes/);
      await nothingStored(bigDigest);

      // Chunked without a length: accepted chunk by chunk, refused at commit, the session removed.
      const start = await registry('POST', '/v2/quota/base/blobs/uploads/');
      assert.equal(start.status, 202);
      const location = new URL(start.headers.get('location')!, ts.url);
      const patch = await fetch(location, {
        method: 'PATCH', headers: { authorization: admin, 'content-type': 'application/octet-stream' },
        body: new ReadableStream({ start(controller) { controller.enqueue(new Uint8Array(big)); controller.close(); } }), duplex: 'half',
      } as RequestInit);
      assert.equal(patch.status, 202, await patch.text());
      location.searchParams.set('digest', bigDigest);
      const commit = await fetch(location, { method: 'PUT', headers: { authorization: admin } });
      assert.equal(commit.status, 403);
      assert.match((await envelope(commit)).message, /maxBytes/);
      await nothingStored(bigDigest);
      assert.equal((await fetch(location, { headers: { authorization: admin } })).status, 404, 'the session is gone');

      // A PATCH with a known length over the quota is refused before it is stored.
      const start2 = await registry('POST', '/v2/quota/base/blobs/uploads/');
      const patched = await fetch(new URL(start2.headers.get('location')!, ts.url), { method: 'PATCH', body: asBody(big), headers: { authorization: admin, 'content-type': 'application/octet-stream' } });
      assert.equal(patched.status, 403);
      await nothingStored(bigDigest);

      // A real client: skopeo's push of an image over the quota fails and leaves nothing.
      const bigImage = await writeOciLayout(path.join(work.path, 'big'), { tag: '1', files: [{ path: 'big.bin', content: randomBytes(8192).toString('hex') }] });
      const refused = await copy(bigImage, 'quota/base:big');
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /denied|quota/i);
      await nothingStored(bigImage.layers[0]!.digest);

      // A blob the namespace holds already costs nothing: a re-push of the same image fits.
      assert.equal((await copy(imageA, 'quota/base:2')).code, 0);
      const afterAll = await api.get('/api/v1/namespaces/quota/registry-usage');
      assert.deepEqual({ bytes: afterAll.body.bytes, blobs: afterAll.body.blobs }, { bytes: before.body.bytes, blobs: before.body.blobs });
      assert.deepEqual(afterAll.body.quota, { maxBytes, maxRepositories: null });
    });

    test('quota maxRepositories: a new repository beyond it is refused, existing ones still take pushes', async () => {
      const usage = (await api.get('/api/v1/namespaces/quota/registry-usage')).body;
      assert.equal((await api.put('/api/v1/namespaces/quota/registry-policy', { quota: { maxRepositories: usage.repositories, maxBytes: null } })).status, 200);
      const refused = await copy(imageB, 'quota/another:1');
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /denied|maxRepositories/i);
      const start = await registry('POST', '/v2/quota/another/blobs/uploads/');
      assert.equal(start.status, 403);
      assert.match((await envelope(start)).message, /quota maxRepositories of namespace "quota" is 1 and reached: cannot create repository quota\/another/);
      assert.equal((await copy(imageB, 'quota/base:b')).code, 0, 'an existing repository takes new content');
      assert.equal((await api.get('/api/v1/namespaces/quota/registry-usage')).body.repositories, 1);
      assert.equal((await api.put('/api/v1/namespaces/quota/registry-policy', { quota: { maxRepositories: null } })).status, 200);
      assert.equal((await copy(imageB, 'quota/another:1')).code, 0, 'cleared: no limit');
    });

    test('bad input is a 400 naming the field; a reader may view but not change; others see no namespace', async () => {
      const bad = async (body: unknown, field: RegExp) => {
        const response = await api.put('/api/v1/namespaces/team/registry-policy', body);
        assert.equal(response.status, 400, response.text);
        assert.equal(response.body.code, 'BAD_REQUEST');
        assert.match(response.body.message, field);
      };
      await bad({ immutableTags: 'v*' }, /^immutableTags: /);
      await bad({ immutableTags: [''] }, /immutableTags\.0: a glob must not be empty/);
      await bad({ quota: { maxBytes: -1 } }, /quota\.maxBytes: zero or more/);
      await bad({ quota: { maxBytes: 1.5 } }, /quota\.maxBytes: a whole number/);
      await bad({ quota: { maxFiles: 3 } }, /quota: .*maxFiles/);
      await bad({ retention: [{ keepWithin: 'soon' }] }, /retention\.0\.keepWithin: a duration such as 30d/);
      await bad({ colour: 'red' }, /colour/);

      const reader = api.as(basic('rita', readerPassword));
      assert.equal((await reader.get('/api/v1/namespaces/team/registry-policy')).status, 200);
      assert.equal((await reader.get('/api/v1/namespaces/team/registry-usage')).status, 200);
      const change = await reader.put('/api/v1/namespaces/team/registry-policy', { immutableTags: [] });
      assert.equal(change.status, 403);
      assert.equal(change.body.code, 'FORBIDDEN');
      assert.equal((await reader.post('/api/v1/namespaces/team/retention-runs?dryRun=false')).status, 403);
      assert.equal((await reader.get('/api/v1/namespaces/quota/registry-policy')).status, 404, 'not a member: no such namespace');
      assert.deepEqual((await api.get('/api/v1/namespaces/team/registry-policy')).body.immutableTags, ['v*', 'release-*'], 'unchanged');
    });

    test('the CLI: slipway registry quota|immutable|retention with an API key', async () => {
      const key = await api.post('/api/v1/keys', { name: 'policy-cli' });
      assert.equal(key.status, 201);
      const env = cleanEnv({ SLIPWAY_SERVER: ts.url, SLIPWAY_API_KEY: key.body.key, HOME: work.path, XDG_CONFIG_HOME: path.join(work.path, 'xdg') });
      const slipway = (...args: string[]) => run(process.execPath, [slipwayBin, 'registry', ...args], { env, timeoutMs: 60_000, allowFailure: true });

      const set = await slipway('quota', 'set', '-n', 'quota', '--max-bytes', '1GiB', '--max-repositories', '5');
      assert.equal(set.code, 0, set.stderr);
      assert.match(set.stdout, /maxBytes 1073741824, maxRepositories 5/);
      const shown = await slipway('quota', 'show', '-n', 'quota', '--json');
      assert.equal(shown.code, 0, shown.stderr);
      assert.deepEqual(JSON.parse(shown.stdout).quota, { maxBytes: 1073741824, maxRepositories: 5 });
      assert.equal((await slipway('quota', 'set', '-n', 'quota', '--max-bytes', 'lots')).code, 2, 'a bad size is a usage error');
      assert.equal((await slipway('quota', 'set', '-n', 'quota', '--max-bytes', 'none', '--max-repositories', 'none')).code, 0);

      const immutable = await slipway('immutable', 'show', '-n', 'team');
      assert.equal(immutable.stdout, 'v*\nrelease-*\n');
      const rules = path.join(work.path, 'rules.json');
      await writeFile(rules, JSON.stringify([{ repositories: 'team/nothing-*', keepLast: 3 }]));
      assert.equal((await slipway('retention', 'set', '-n', 'team', rules)).code, 0);
      const dry = await slipway('retention', 'run', '-n', 'team');
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /0 would go, 0 kept \(run ret_/);
      const schedule = await slipway('retention', 'schedule', '-n', 'team', '7d');
      assert.equal(schedule.code, 0, schedule.stderr);
      assert.equal(schedule.stdout, 'retention of team: every 7d\n');
      assert.equal((await slipway('retention', 'schedule', '-n', 'team', 'none')).stdout, 'retention of team: on demand only\n');
      await writeFile(rules, JSON.stringify([{ keepWithin: 'soon' }]));
      const refused = await slipway('retention', 'set', '-n', 'team', rules);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /keepWithin: a duration/);
    });

    test('retention: a dry run lists what would go and why; a run removes it, keeps immutable tags, and is recorded', async () => {
      const headers = { authorization: admin };
      const pushed: Record<string, string> = {};
      for (const tag of ['1', '2', '3', 'v9', 'keep-me']) {
        pushed[tag] = (await pushImage(ts.url, 'team/ret', tag, 1, 256, headers)).manifest.digest;
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
      const untagged = (await pushImage(ts.url, 'team/ret', 'tmp', 1, 256, headers)).manifest.digest;
      assert.equal((await registry('DELETE', '/v2/team/ret/manifests/tmp')).status, 202);
      const rules = [{ repositories: 'team/r*', tags: '*', keepLast: 1, alwaysKeep: 'keep-*', dropUntagged: true }];
      assert.equal((await api.put('/api/v1/namespaces/team/registry-policy', { retention: rules })).status, 200);

      const dry = await api.post('/api/v1/namespaces/team/retention-runs');
      assert.equal(dry.status, 201, dry.text);
      assert.equal(dry.body.dryRun, true);
      const listed = Object.fromEntries((dry.body.removed as Array<{ digest: string; reason: string; tags: string[] }>).map((r) => [r.tags.join(',') || 'untagged', r.reason]));
      // keep-me is the newest push (kept by keepLast and alwaysKeep); v9 is immutable.
      assert.deepEqual(Object.keys(listed).sort(), ['1', '2', '3', 'untagged']);
      assert.match(listed['2']!, /rule 1: not among the last 1 pushed/);
      assert.match(listed.untagged!, /rule 1: untagged/);
      assert.equal(await tagDigest('team/ret', '2'), pushed['2'], 'a dry run removes nothing');

      const real = await api.post('/api/v1/namespaces/team/retention-runs?dryRun=false');
      assert.equal(real.status, 201);
      assert.equal(real.body.removed.length, 4);
      for (const tag of ['1', '2', '3']) assert.equal((await registry('GET', `/v2/team/ret/manifests/${tag}`)).status, 404, `${tag} removed`);
      assert.equal((await registry('GET', `/v2/team/ret/manifests/${untagged}`)).status, 404, 'untagged removed');
      for (const tag of ['v9', 'keep-me']) assert.equal(await tagDigest('team/ret', tag), pushed[tag], `${tag} kept`);
      const runs = await api.get('/api/v1/namespaces/team/retention-runs');
      // Newest first: this run, this dry run, the CLI test's dry run.
      assert.deepEqual(runs.body.map((r: { dryRun: boolean }) => r.dryRun), [false, true, true]);
      assert.deepEqual(runs.body.slice(0, 2).map((r: { id: string }) => r.id), [real.body.id, dry.body.id]);
      assert.equal(runs.body[0].removed.length, 4);
      assert.equal(runs.body[0].startedBy, 'admin');

      // On a schedule: due when no real run happened within it; recorded with startedBy null.
      assert.equal((await api.put('/api/v1/namespaces/team/registry-policy', { retentionSchedule: '1d' })).status, 200);
      const pushed4 = (await pushImage(ts.url, 'team/ret', '4', 1, 256, headers)).manifest.digest;
      await new Promise((resolve) => setTimeout(resolve, 15));
      const pushed5 = (await pushImage(ts.url, 'team/ret', '5', 1, 256, headers)).manifest.digest;
      assert.deepEqual(await ts.server.registry.retention.runScheduled(), [], 'not due: a real run was just made');
      const scheduled = await ts.server.registry.retention.runScheduled(Date.now() + 2 * 86_400_000);
      assert.equal(scheduled.length, 1);
      assert.equal(scheduled[0]!.startedBy, null);
      // Two days on: 5 is the newest push, keep-me (alwaysKeep) and v9 (immutable) stay; 4 goes.
      assert.deepEqual(scheduled[0]!.removed.map((r) => [r.digest, r.tags]), [[pushed4, ['4']]]);
      assert.equal(await tagDigest('team/ret', '5'), pushed5);
      assert.equal((await registry('GET', '/v2/team/ret/manifests/4')).status, 404);
      assert.equal((await api.put('/api/v1/namespaces/team/registry-policy', { retentionSchedule: 'weekly' })).status, 400);
    });

    test('retention keepWithin counts pulls: recorded in memory, flushed before the run', async () => {
      const headers = { authorization: admin };
      const a = (await pushImage(ts.url, 'team/pulled', 'a', 1, 256, headers)).manifest.digest;
      const b = (await pushImage(ts.url, 'team/pulled', 'b', 1, 256, headers)).manifest.digest;
      // Both pushed three days ago.
      const { db } = ts.server.registry;
      const old = Date.now() - 3 * 86_400_000;
      await db.write(async (trx) => {
        await trx.updateTable('manifests').set({ created_at: old }).where('repository', '=', 'team/pulled').execute();
        await trx.updateTable('tags').set({ updated_at: old }).where('repository', '=', 'team/pulled').execute();
      });
      const pull = await registry('GET', '/v2/team/pulled/manifests/a', { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(pull.status, 200);
      await pull.arrayBuffer();
      assert.equal((await db.kysely.selectFrom('manifest_pulls').select('digest').where('repository', '=', 'team/pulled').execute()).length, 0, 'not written per pull');
      assert.equal((await api.put('/api/v1/namespaces/team/registry-policy', { retention: [{ repositories: 'team/pulled', keepWithin: '1d' }], retentionSchedule: null })).status, 200);
      const dry = await api.post('/api/v1/namespaces/team/retention-runs?dryRun=true');
      assert.deepEqual(dry.body.removed.map((r: { digest: string; reason: string }) => [r.digest, r.reason]), [[b, 'rule 1: not pushed or pulled within 1d']]);
      assert.notEqual(a, b);
    });
  });
}
