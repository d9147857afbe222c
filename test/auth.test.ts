/**
 * Access control as users meet it: the bearer-token flow with real clients (skopeo, podman),
 * roles per namespace, API keys, public repositories, catalog filtering, rate limiting, the
 * audit log, and that no secret reaches the db in plaintext.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dialects, startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { killAllChildren, requireCommands, run } from './helpers/commands.js';
import { writeOciLayout } from './helpers/oci-layout.js';
import { imageManifest, pushBlob, putManifest, randomBlob } from './helpers/oci.js';
import { createApiClient } from './helpers/api-client.js';

const adminPassword = 'admin-secret-Pa55word';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

for (const dialect of dialects) {
  describe(`access control (${dialect.name})`, { timeout: 300_000 }, () => {
    let ts: TestServer;
    let base: string;
    const admin = basic('admin', adminPassword);
    const client = createApiClient(() => base);
    const api = (method: string, url: string, auth: string | undefined, body?: unknown) => client.request<Record<string, unknown>>(method, url, body, { auth });
    const token = async (auth: string | undefined, scope: string) => {
      const response = await api('GET', `/auth/token?service=slipway&scope=${encodeURIComponent(scope)}`, auth);
      return response.body.token as string;
    };

    before(async () => {
      ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword } } });
      base = ts.url;
      assert.equal((await api('POST', '/api/v1/namespaces', admin, { name: 'team' })).status, 201);
      for (const [name, role] of [['alice', 'contributor'], ['bob', 'reader']] as const) {
        assert.equal((await api('POST', '/api/v1/users', admin, { name, password: `${name}-password-1` })).status, 201);
        assert.equal((await api('PUT', `/api/v1/namespaces/team/members/${name}`, admin, { role })).status, 200);
      }
      assert.equal((await api('POST', '/api/v1/users', admin, { name: 'carol', password: 'carol-password-1' })).status, 201);
      assert.equal((await api('POST', '/api/v1/namespaces', basic('carol', 'carol-password-1'), { name: 'other' })).status, 201);
    });
    after(async () => {
      killAllChildren();
      await ts?.close();
    });

    test('/v2/ challenges anonymous callers with the Bearer realm; basic auth and tokens open it', { timeout: 30_000 }, async () => {
      const anonymous = await fetch(`${base}/v2/`);
      assert.equal(anonymous.status, 401);
      const challenge = anonymous.headers.get('www-authenticate') ?? '';
      assert.match(challenge, /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/auth\/token",service="slipway"/);
      assert.equal((await fetch(`${base}/v2/`, { headers: { authorization: admin } })).status, 200);
      const bearer = await token(admin, 'repository:team/app:pull');
      assert.equal((await fetch(`${base}/v2/`, { headers: { authorization: `Bearer ${bearer}` } })).status, 200);
      const push = await fetch(`${base}/v2/team/app/blobs/uploads/`, { method: 'POST' });
      assert.equal(push.status, 401);
      assert.match(push.headers.get('www-authenticate') ?? '', /scope="repository:team\/app:pull,push"/);
    });

    test('roles: a contributor pushes, a reader pulls but cannot push, another namespace sees nothing', { timeout: 120_000 }, async () => {
      await requireCommands({ skopeo: 'skopeo' });
      const dir = await tempDir('slipway-auth-');
      try {
        await writeOciLayout(dir.path, { tag: 'v1', files: [{ path: 'hello.txt', content: 'hello' }] });
        const host = new URL(base).host;
        await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', 'alice:alice-password-1', `oci:${dir.path}:v1`, `docker://${host}/team/app:v1`]);
        const inspected = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', '--creds', 'bob:bob-password-1', `docker://${host}/team/app:v1`]);
        assert.match(inspected.stdout, /schemaVersion/);
        const denied = await run('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', 'bob:bob-password-1', `oci:${dir.path}:v1`, `docker://${host}/team/app:v2`], { allowFailure: true });
        assert.notEqual(denied.code, 0);
        assert.match(denied.stderr, /denied|unauthorized|authentication required/i);
        // carol cannot read team's private repository, and cannot tell it from one that does not exist.
        const existing = await fetch(`${base}/v2/team/app/manifests/v1`, { headers: { authorization: basic('carol', 'carol-password-1') } });
        const missing = await fetch(`${base}/v2/team/nothing/manifests/v1`, { headers: { authorization: basic('carol', 'carol-password-1') } });
        assert.equal(existing.status, 403);
        assert.equal(missing.status, 403);
        const shown = async (response: Response, name: string) => JSON.stringify(await response.json()).replaceAll(name, 'NAME');
        assert.equal(await shown(existing, 'team/app'), await shown(missing, 'team/nothing'));
        const podman = await run('podman', ['login', '--tls-verify=false', '-u', 'alice', '-p', 'alice-password-1', host], { allowFailure: true, env: { ...process.env, REGISTRY_AUTH_FILE: path.join(dir.path, 'auth.json') } });
        assert.equal(podman.code, 0, podman.stderr);
        const wrong = await run('podman', ['login', '--tls-verify=false', '-u', 'alice', '-p', 'nope-nope-nope', host], { allowFailure: true, env: { ...process.env, REGISTRY_AUTH_FILE: path.join(dir.path, 'auth2.json') } });
        assert.notEqual(wrong.code, 0);
      } finally {
        await dir.remove();
      }
    });

    test('a token for one repository does not open another; a tampered token is 401', { timeout: 30_000 }, async () => {
      const blob = randomBlob(100);
      assert.equal((await pushBlob(base, 'team/one', blob.data, blob.digest, { authorization: admin })).status, 201);
      assert.equal((await pushBlob(base, 'team/two', blob.data, blob.digest, { authorization: admin })).status, 201);
      const one = await token(basic('bob', 'bob-password-1'), 'repository:team/one:pull');
      assert.equal((await fetch(`${base}/v2/team/one/blobs/${blob.digest}`, { headers: { authorization: `Bearer ${one}` } })).status, 200);
      const other = await fetch(`${base}/v2/team/two/blobs/${blob.digest}`, { headers: { authorization: `Bearer ${one}` } });
      assert.equal(other.status, 401);
      assert.match(other.headers.get('www-authenticate') ?? '', /insufficient_scope/);
      const tampered = one.slice(0, -4) + (one.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      assert.equal((await fetch(`${base}/v2/team/one/blobs/${blob.digest}`, { headers: { authorization: `Bearer ${tampered}` } })).status, 401);
      // A reader asking for push gets a token with pull only.
      const asked = await api('GET', `/auth/token?service=slipway&scope=${encodeURIComponent('repository:team/one:pull,push')}`, basic('bob', 'bob-password-1'));
      const claims = JSON.parse(Buffer.from((asked.body.token as string).split('.')[1]!, 'base64url').toString()) as { access: Array<{ name: string; actions: string[] }> };
      assert.deepEqual(claims.access, [{ type: 'repository', name: 'team/one', actions: ['pull'] }]);
    });

    test('OAuth2 form POST: password grant with a refresh token, then the refresh_token grant', { timeout: 30_000 }, async () => {
      const form = (fields: Record<string, string>) => fetch(`${base}/auth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
      const first = await form({ grant_type: 'password', username: 'alice', password: 'alice-password-1', service: 'slipway', scope: 'repository:team/app:pull', access_type: 'offline', client_id: 'test' });
      assert.equal(first.status, 200);
      const issued = await first.json() as { access_token: string; refresh_token: string };
      assert.ok(issued.refresh_token);
      const second = await form({ grant_type: 'refresh_token', refresh_token: issued.refresh_token, service: 'slipway', scope: 'repository:team/app:pull', client_id: 'test' });
      assert.equal(second.status, 200);
      assert.equal((await form({ grant_type: 'refresh_token', refresh_token: issued.access_token, service: 'slipway' })).status, 401);
      assert.equal((await form({ grant_type: 'password', username: 'alice', password: 'wrong-password', service: 'slipway' })).status, 401);
    });

    test('API keys: shown once, limited by scopes, revocable; admin push creates a namespace, others get DENIED', { timeout: 60_000 }, async () => {
      const created = await api('POST', '/api/v1/keys', basic('alice', 'alice-password-1'), { name: 'ci', scopes: ['pull'], expiresIn: '1d' });
      assert.equal(created.status, 201);
      const key = created.body.key as string;
      assert.match(key, /^slw_/);
      const listed = await api('GET', '/api/v1/keys', basic('alice', 'alice-password-1'));
      assert.ok(!JSON.stringify(listed.body).includes(key.split('.')[1]!), 'the secret is never listed');
      const blob = randomBlob(64);
      assert.equal((await pushBlob(base, 'team/keyed', blob.data, blob.digest, { authorization: basic('alice', 'alice-password-1') })).status, 201);
      assert.equal((await fetch(`${base}/v2/team/keyed/blobs/${blob.digest}`, { headers: { authorization: basic('ci-bot', key) } })).status, 200);
      assert.equal((await fetch(`${base}/v2/team/keyed/blobs/uploads/`, { method: 'POST', headers: { authorization: basic('ci-bot', key) } })).status, 403);
      assert.equal((await api('GET', '/api/v1/namespaces', `Bearer ${key}`)).status, 403, 'a pull-only key cannot use the API');
      assert.equal((await api('DELETE', `/api/v1/keys/${created.body.id as string}`, basic('alice', 'alice-password-1'))).status, 204);
      assert.equal((await fetch(`${base}/v2/team/keyed/blobs/${blob.digest}`, { headers: { authorization: basic('ci-bot', key) } })).status, 401);
      // Admin push into a new namespace creates it; alice's push into one that does not exist is DENIED.
      assert.equal((await pushBlob(base, 'fresh/app', blob.data, blob.digest, { authorization: admin })).status, 201);
      assert.ok(((await api('GET', '/api/v1/namespaces', admin)).body as unknown as Array<{ name: string }>).some((n) => n.name === 'fresh'));
      const denied = await fetch(`${base}/v2/nowhere/app/blobs/uploads/`, { method: 'POST', headers: { authorization: basic('alice', 'alice-password-1') } });
      assert.equal(denied.status, 403);
      assert.equal(((await denied.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'DENIED');
    });

    test('public repositories allow anonymous pull; the catalog lists only what the caller may see', { timeout: 60_000 }, async () => {
      const config = randomBlob(30);
      await pushBlob(base, 'other/site', config.data, config.digest, { authorization: basic('carol', 'carol-password-1') });
      const manifest = imageManifest({ digest: config.digest, size: config.data.length }, []);
      assert.equal((await putManifest(base, 'other/site', 'v1', manifest, { authorization: basic('carol', 'carol-password-1') })).status, 201);
      assert.equal((await fetch(`${base}/v2/other/site/manifests/v1`)).status, 401);
      assert.equal((await api('PUT', '/api/v1/repositories/other/site/visibility', basic('alice', 'alice-password-1'), { public: true })).status, 404);
      assert.equal((await api('PUT', '/api/v1/repositories/other/site/visibility', basic('carol', 'carol-password-1'), { public: true })).status, 200);
      assert.equal((await fetch(`${base}/v2/other/site/manifests/v1`)).status, 200);
      assert.equal((await fetch(`${base}/v2/other/site/blobs/uploads/`, { method: 'POST' })).status, 401);
      const catalog = async (auth?: string) => ((await (await fetch(`${base}/v2/_catalog`, { headers: auth ? { authorization: auth } : {} })).json()) as { repositories: string[] }).repositories;
      const carolSees = await catalog(basic('carol', 'carol-password-1'));
      assert.ok(carolSees.includes('other/site') && !carolSees.some((r) => r.startsWith('team/')), JSON.stringify(carolSees));
      assert.ok((await catalog(admin)).includes('team/app'));
    });

    test('passwords change (own, or any for an admin); deleting a user revokes its keys and access', { timeout: 60_000 }, async () => {
      assert.equal((await api('POST', '/api/v1/users', admin, { name: 'erin', password: 'erin-password-1' })).status, 201);
      assert.equal((await api('PUT', '/api/v1/namespaces/team/members/erin', admin, { role: 'reader' })).status, 200);
      const key = (await api('POST', '/api/v1/keys', basic('erin', 'erin-password-1'), { name: 'k' })).body.key as string;
      assert.equal((await api('PUT', '/api/v1/users/erin/password', basic('erin', 'erin-password-1'), { password: 'erin-password-2' })).status, 200);
      assert.equal((await fetch(`${base}/v2/`, { headers: { authorization: basic('erin', 'erin-password-1') } })).status, 401);
      assert.equal((await fetch(`${base}/v2/`, { headers: { authorization: basic('erin', 'erin-password-2') } })).status, 200);
      assert.equal((await api('PUT', '/api/v1/users/alice/password', basic('erin', 'erin-password-2'), { password: 'hijacked-pass' })).status, 403);
      assert.equal((await api('PUT', '/api/v1/users/erin/password', basic('erin', 'erin-password-2'), { password: 'short' })).status, 400);
      assert.equal((await api('DELETE', '/api/v1/users/carol', admin)).status, 409, 'the only owner of "other" cannot be deleted');
      assert.equal((await api('DELETE', '/api/v1/users/erin', admin)).status, 204);
      assert.equal((await fetch(`${base}/v2/`, { headers: { authorization: basic('erin', 'erin-password-2') } })).status, 401);
      assert.equal((await fetch(`${base}/v2/`, { headers: { authorization: basic('x', key) } })).status, 401);
      assert.equal((await api('DELETE', '/api/v1/users/erin', admin)).status, 404);
    });

    test('wrong passwords are rate-limited; the audit log records them; no secret is stored in plaintext', { timeout: 60_000 }, async () => {
      await api('POST', '/api/v1/users', admin, { name: 'dave', password: 'dave-password-1' });
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) statuses.push((await fetch(`${base}/v2/`, { headers: { authorization: basic('dave', `wrong-${i}`) } })).status);
      assert.equal(statuses[0], 401);
      assert.equal(statuses.at(-1), 429);
      const audit = await api('GET', '/api/v1/audit?action=login&limit=1000', admin);
      const entries = audit.body as unknown as Array<{ actor: string; outcome: string }>;
      assert.ok(entries.filter((e) => e.actor === 'dave' && e.outcome === 'failed').length >= 10);
      assert.equal((await api('GET', '/api/v1/audit', basic('alice', 'alice-password-1'))).status, 403);
      if (dialect.name === 'sqlite') {
        const dbFile = await readFile(path.join(ts.dataDir, 'slipway.db')).then((b) => Buffer.concat([b, ...[]]));
        const wal = await readFile(path.join(ts.dataDir, 'slipway.db-wal')).catch(() => Buffer.alloc(0));
        for (const secret of [adminPassword, 'alice-password-1', 'bob-password-1', 'carol-password-1', 'dave-password-1']) {
          assert.ok(!dbFile.includes(secret) && !wal.includes(secret), 'a password is stored in plaintext');
        }
      }
    });
  });
}
