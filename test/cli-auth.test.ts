/**
 * The `slipway` commands that talk to a server or rotate keys, run as a user runs them
 * (`node bin/slipway.js …` in child processes, killed in `after` whatever happens):
 * `login`/`logout` (the CLI credentials file lives in a temp folder via SLIPWAY_CLI_CONFIG, so
 * the real home is never touched), `registry add|list|creds|rm`, `auth rotate-token-key`
 * beside a running server, and `vault rotate` followed by a restart with only the new key.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { access, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { loadConfig, type ConfigInput } from '../src/config/config.js';
import { startServer, type RunningServer } from '../src/main.js';
import { parseMasterKey } from '../src/vault/vault.js';
import { credentialsPath, normaliseServerUrl } from '../src/cli/credentials-store.js';
import { dialects, startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { cleanEnv, killAllChildren, run, slipwayBin, type CommandResult } from './helpers/commands.js';
import { createApiClient } from './helpers/api-client.js';

const adminPassword = 'admin-secret-Pa55word';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const admin = basic('admin', adminPassword);

/** Runs `slipway ARGS` to completion (hard limit), whatever its exit code. */
function slipway(args: string[], options: { cwd: string; env?: Record<string, string>; input?: string; timeoutMs?: number }): Promise<CommandResult> {
  return run(process.execPath, [slipwayBin, ...args], { cwd: options.cwd, env: cleanEnv(options.env), input: options.input, timeoutMs: options.timeoutMs ?? 60_000, allowFailure: true });
}

function describeResult(result: CommandResult): string {
  return `exit ${result.code ?? result.signal}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
}

const api = (base: string, method: string, url: string, auth: string | undefined, body?: unknown) => createApiClient(base, auth).request<unknown>(method, url, body);

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

function jwtHeader(token: string): { kid?: string; alg?: string } {
  return JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { kid?: string };
}

describe('CLI credentials file location', () => {
  test('SLIPWAY_CLI_CONFIG, then $XDG_CONFIG_HOME/slipway, then ~/.config/slipway', { timeout: 120_000 }, () => {
    assert.equal(credentialsPath({ SLIPWAY_CLI_CONFIG: '/x/creds.json', XDG_CONFIG_HOME: '/y', HOME: '/z' }), '/x/creds.json');
    assert.equal(credentialsPath({ XDG_CONFIG_HOME: '/y', HOME: '/z' }), '/y/slipway/credentials.json');
    assert.equal(credentialsPath({ XDG_CONFIG_HOME: 'relative', HOME: '/z' }), '/z/.config/slipway/credentials.json', 'a relative XDG_CONFIG_HOME is ignored');
    assert.equal(credentialsPath({ HOME: '/z' }), '/z/.config/slipway/credentials.json');
    assert.equal(normaliseServerUrl('HTTP://Example.COM:8080/'), 'http://example.com:8080');
    assert.throws(() => normaliseServerUrl('example.com:8080'), /scheme/);
  });
});

describe('slipway login, registry and logout', { timeout: 600_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  let credsFile: string;
  let env: Record<string, string>;
  let firstKey: string;
  const cli = (args: string[], options: { input?: string; env?: Record<string, string> } = {}) => slipway(args, { cwd: work.path, env: { ...env, ...options.env }, input: options.input });
  const readCreds = async () => JSON.parse(await readFile(credsFile, 'utf8')) as { default?: string; servers: Record<string, { url: string; username: string; key: string; keyId: string }> };

  const basicSecret = 'basic-Secret-Passw0rd';
  const hubSecret = 'hub-Secret-Passw0rd';
  const accessKey = 'AKEXAMPLE0123456789';
  const secretKey = 'SKexample-secret-key-0123456789abcdef';
  const ids: Record<'basic' | 'swr' | 'hub', string> = { basic: '', swr: '', hub: '' };

  before(async () => {
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword } } });
    work = await tempDir('slipway-cli-auth-');
    credsFile = path.join(work.path, 'cli', 'credentials.json');
    // HOME and XDG_CONFIG_HOME point into the temp folder too: nothing may land in the real home.
    env = { SLIPWAY_CLI_CONFIG: credsFile, HOME: work.path, XDG_CONFIG_HOME: path.join(work.path, 'xdg') };
    assert.equal((await api(ts.url, 'POST', '/api/v1/namespaces', admin, { name: 'team' })).status, 201);
  });
  after(async () => {
    killAllChildren();
    await ts?.close();
    await work?.remove();
  });

  test('login: a wrong password exits 1 with the server\'s message; the right one stores an API key (mode 0600), not the password', { timeout: 120_000 }, async () => {
    const wrong = await cli(['login', ts.url, '--username', 'admin', '--password-stdin'], { input: 'not-the-password\n' });
    assert.equal(wrong.code, 1, describeResult(wrong));
    assert.match(wrong.stderr, /invalid username, password or API key/);
    assert.ok(wrong.stderr.includes(ts.url), 'the error names the server');
    assert.ok(!wrong.stderr.includes('not-the-password'), 'the password is never printed');
    assert.equal(await exists(credsFile), false, 'nothing is stored after a failed login');

    const ok = await cli(['login', `${ts.url}/`, '--username', 'admin', '--password-stdin'], { input: `${adminPassword}\n` });
    assert.equal(ok.code, 0, describeResult(ok));
    assert.equal(ok.stdout, `Logged in to ${ts.url} as admin\n`);
    assert.equal((await stat(credsFile)).mode & 0o777, 0o600);
    const text = await readFile(credsFile, 'utf8');
    assert.ok(!text.includes(adminPassword), 'the credentials file holds no password');
    const creds = await readCreds();
    assert.equal(creds.default, ts.url);
    const entry = creds.servers[ts.url]!;
    assert.equal(entry.username, 'admin');
    assert.match(entry.key, /^slw_/);
    assert.ok(!ok.stdout.includes(entry.key) && !ok.stderr.includes(entry.key), 'the key is not printed');
    firstKey = entry.key;

    const me = await api(ts.url, 'GET', '/api/v1/me', `Bearer ${entry.key}`);
    assert.equal(me.status, 200);
    assert.equal((me.body as { name: string }).name, 'admin');
    const keys = (await api(ts.url, 'GET', '/api/v1/keys', admin)).body as Array<{ id: string; name: string; scopes: string[]; expiresAt: string | null }>;
    const made = keys.find((k) => k.id === entry.keyId);
    assert.ok(made, 'the key is listed on the server');
    assert.equal(made.name, `cli@${os.hostname()}`);
    assert.deepEqual(made.scopes, ['*']);
    const days = (Date.parse(made.expiresAt ?? '') - Date.now()) / 86_400_000;
    assert.ok(days > 89 && days <= 90, `expires in 90 days, got ${days}`);
  });

  test('login again with --password warns, and replaces (revokes) the key stored before', { timeout: 120_000 }, async () => {
    const again = await cli(['login', ts.url, '--username', 'admin', '--password', adminPassword]);
    assert.equal(again.code, 0, describeResult(again));
    assert.match(again.stderr, /warning: .*--password-stdin/);
    const entry = (await readCreds()).servers[ts.url]!;
    assert.notEqual(entry.key, firstKey);
    assert.equal((await api(ts.url, 'GET', '/api/v1/me', `Bearer ${firstKey}`)).status, 401, 'the replaced key is revoked');
    assert.equal((await api(ts.url, 'GET', '/api/v1/me', `Bearer ${entry.key}`)).status, 200);
  });

  test('registry add (basic, swr with --enable-ci), list without secrets, creds, enable_ci, rm', { timeout: 120_000 }, async () => {
    const skFile = path.join(work.path, 'swr-sk.txt');
    await writeFile(skFile, `${secretKey}\n`, { mode: 0o600 });

    const addBasic = await cli(['registry', 'add', '--namespace', 'team', '--prefix', 'registry.example.com/team', '--type', 'basic', '--username', 'bot', '--enable-ci', '--secret-stdin'], { input: `${basicSecret}\n` });
    assert.equal(addBasic.code, 0, describeResult(addBasic));
    assert.match(addBasic.stdout, /^reg_\S+\n$/);
    ids.basic = addBasic.stdout.trim();

    const addSwr = await cli(['registry', 'add', '-n', 'team', '--prefix', 'swr.cn-north-4.myhuaweicloud.com/team', '--type', 'swr', '--region', 'cn-north-4', '--username', accessKey, '--enable-ci', '--secret-file', skFile]);
    assert.equal(addSwr.code, 0, describeResult(addSwr));
    ids.swr = addSwr.stdout.trim();

    const addHub = await cli(['registry', 'add', '-n', 'team', '--prefix', 'docker.io/team', '--type', 'basic', '--username', 'hub-user'], { env: { SLIPWAY_REGISTRY_SECRET: hubSecret } });
    assert.equal(addHub.code, 0, describeResult(addHub));
    ids.hub = addHub.stdout.trim();

    // Usage errors: exit 2, before anything reaches the server.
    const noRegion = await cli(['registry', 'add', '-n', 'team', '--prefix', 'swr.eu-west-101.myhuaweicloud.com/x', '--type', 'swr', '--username', accessKey, '--secret-file', skFile]);
    assert.equal(noRegion.code, 2, describeResult(noRegion));
    assert.match(noRegion.stderr, /--region/);
    const noSecret = await cli(['registry', 'add', '-n', 'team', '--prefix', 'quay.io/x', '--type', 'basic', '--username', 'u']);
    assert.equal(noSecret.code, 2, describeResult(noSecret));
    assert.match(noSecret.stderr, /--secret-stdin/);

    const table = await cli(['registry', 'list', '--namespace', 'team']);
    assert.equal(table.code, 0, describeResult(table));
    assert.match(table.stdout, /^ID\s+PREFIX\s+TYPE\s+USERNAME\s+ENABLE_CI\n/);
    for (const id of Object.values(ids)) assert.ok(table.stdout.includes(id), `${id} is listed`);
    assert.match(table.stdout, new RegExp(`${ids.swr}\\s+swr\\.cn-north-4\\.myhuaweicloud\\.com/team\\s+swr\\s+${accessKey}\\s+yes`));
    assert.match(table.stdout, new RegExp(`${ids.hub}\\s+docker\\.io/team\\s+basic\\s+hub-user\\s+no`));

    const listed = await cli(['registry', 'list', '-n', 'team', '--json']);
    assert.equal(listed.code, 0, describeResult(listed));
    for (const secret of [basicSecret, hubSecret, secretKey]) {
      assert.ok(!table.stdout.includes(secret) && !listed.stdout.includes(secret), 'list never shows a secret');
    }
    const rows = JSON.parse(listed.stdout) as Array<{ id: string; type: string; enable_ci: boolean; username: string | null; region: string | null }>;
    assert.equal(rows.length, 3);
    const byId = new Map(rows.map((r) => [r.id, r]));
    const swr = byId.get(ids.swr)!;
    assert.deepEqual([swr.type, swr.enable_ci, swr.username, swr.region], ['swr', true, accessKey, 'cn-north-4']);
    assert.equal(byId.get(ids.basic)?.enable_ci, true);
    assert.equal(byId.get(ids.hub)?.enable_ci, false);

    const basicCreds = await cli(['registry', 'creds', '-n', 'team', ids.basic, '--json']);
    assert.equal(basicCreds.code, 0, describeResult(basicCreds));
    assert.deepEqual(JSON.parse(basicCreds.stdout), { username: 'bot', password: basicSecret, expires_at: null });

    const expectedSwrPassword = createHmac('sha256', secretKey).update(accessKey).digest('hex');
    const swrCreds = await cli(['registry', 'creds', '-n', 'team', ids.swr, '--format', 'docker-login']);
    assert.equal(swrCreds.code, 0, describeResult(swrCreds));
    assert.equal(swrCreds.stdout, `cn-north-4@${accessKey}\n${expectedSwrPassword}\n`);
    const swrText = await cli(['registry', 'creds', '-n', 'team', ids.swr]);
    assert.equal(swrText.code, 0, describeResult(swrText));
    assert.match(swrText.stdout, new RegExp(`username: cn-north-4@${accessKey}\npassword: ${expectedSwrPassword}\n`));

    const denied = await cli(['registry', 'creds', '-n', 'team', ids.hub]);
    assert.equal(denied.code, 1, describeResult(denied));
    assert.match(denied.stderr, /enable_ci/);
    assert.ok(!denied.stdout.includes(hubSecret) && !denied.stderr.includes(hubSecret));

    const removed = await cli(['registry', 'rm', '-n', 'team', ids.hub]);
    assert.equal(removed.code, 0, describeResult(removed));
    const remaining = JSON.parse((await cli(['registry', 'list', '-n', 'team', '--json'])).stdout) as Array<{ id: string }>;
    assert.deepEqual(remaining.map((r) => r.id).sort(), [ids.basic, ids.swr].sort());
    const again = await cli(['registry', 'rm', '-n', 'team', ids.hub]);
    assert.equal(again.code, 1, describeResult(again));
    assert.match(again.stderr, /404/);
    assert.ok(again.stderr.includes(ts.url), 'the error names the URL');
  });

  test('SLIPWAY_SERVER and SLIPWAY_API_KEY override the credentials file (CI)', { timeout: 120_000 }, async () => {
    const key = (await readCreds()).servers[ts.url]!.key;
    const ciEnv = { SLIPWAY_CLI_CONFIG: path.join(work.path, 'ci', 'none.json'), SLIPWAY_SERVER: ts.url, SLIPWAY_API_KEY: key };
    const listed = await cli(['registry', 'list', '-n', 'team', '--json'], { env: ciEnv });
    assert.equal(listed.code, 0, describeResult(listed));
    assert.equal((JSON.parse(listed.stdout) as unknown[]).length, 2);
    const bad = await cli(['registry', 'list', '-n', 'team'], { env: { ...ciEnv, SLIPWAY_API_KEY: 'slw_nope.nope' } });
    assert.equal(bad.code, 1, describeResult(bad));
    assert.match(bad.stderr, /401/);
    assert.equal(await exists(path.join(work.path, 'ci', 'none.json')), false);
  });

  test('logout revokes the key on the server and forgets it', { timeout: 120_000 }, async () => {
    const key = (await readCreds()).servers[ts.url]!.key;
    const out = await cli(['logout']);
    assert.equal(out.code, 0, describeResult(out));
    assert.equal(out.stdout, `Logged out of ${ts.url}\n`);
    assert.equal((await api(ts.url, 'GET', '/api/v1/me', `Bearer ${key}`)).status, 401, 'the key is revoked');
    const creds = await readCreds();
    assert.deepEqual(creds.servers, {});
    assert.equal(creds.default, undefined);
    assert.equal((await stat(credsFile)).mode & 0o777, 0o600);
    const notLoggedIn = await cli(['registry', 'list', '-n', 'team']);
    assert.equal(notLoggedIn.code, 2, describeResult(notLoggedIn));
    assert.match(notLoggedIn.stderr, /not logged in/);
  });
});

describe('slipway auth rotate-token-key', { timeout: 300_000 }, () => {
  after(() => killAllChildren());

  test('beside a running server: new tokens carry the new kid and work; older tokens still work', { timeout: 120_000 }, async () => {
    const ts = await startTestServer({ config: { auth: { enabled: true, adminPassword } } });
    const work = await tempDir('slipway-cli-auth-');
    try {
      const token = async () => {
        const response = await api(ts.url, 'GET', `/auth/token?service=slipway&scope=${encodeURIComponent('repository:team/app:pull')}`, admin);
        assert.equal(response.status, 200);
        return (response.body as { token: string }).token;
      };
      const before = await token();
      const oldKid = jwtHeader(before).kid;
      assert.ok(oldKid);

      const missing = await slipway(['auth', 'rotate-token-key', '--data-dir', path.join(work.path, 'empty')], { cwd: work.path });
      assert.equal(missing.code, 2, describeResult(missing));
      assert.match(missing.stderr, /slipway\.db is missing/);

      const rotated = await slipway(['auth', 'rotate-token-key', '--data-dir', ts.dataDir], { cwd: work.path });
      assert.equal(rotated.code, 0, describeResult(rotated));
      const newKid = /New token signing key: (k-[0-9a-f]+)/.exec(rotated.stdout)?.[1];
      assert.ok(newKid, rotated.stdout);
      assert.notEqual(newKid, oldKid);
      // The server re-reads the keys (db, sealed by the vault) within 5 s.
      await sleep(6_000);
      const fresh = await token();
      assert.equal(jwtHeader(fresh).kid, newKid);
      assert.equal((await fetch(`${ts.url}/v2/`, { headers: { authorization: `Bearer ${fresh}` } })).status, 200, 'a token signed with the new key works');
      assert.equal((await fetch(`${ts.url}/v2/`, { headers: { authorization: `Bearer ${before}` } })).status, 200, 'a token signed with the old key still works');
    } finally {
      await ts.close();
      await work.remove();
    }
  });
});

for (const dialect of dialects) {
  describe(`slipway vault rotate (${dialect.name})`, { timeout: 300_000 }, () => {
    after(() => killAllChildren());

    test('re-wraps the data keys; a server restarted with only the new key still hands out the old credentials', { timeout: 120_000 }, async () => {
      const work = await tempDir('slipway-cli-vault-');
      const database = await dialect.create();
      const dataDir = path.join(work.path, 'data');
      const servers = new Set<RunningServer>();
      const start = async (vault?: ConfigInput['vault']) => {
        const config = loadConfig({
          flags: {
            listen: '127.0.0.1:0', dataDir, database: database.url, log: { level: 'warn', requests: false },
            auth: { enabled: true, adminPassword }, registry: { gc: { interval: 0 } }, functions: { enabled: false }, ...(vault ? { vault } : {}),
          },
        });
        const server = await startServer(config, { logger: pino({ level: 'silent' }) });
        servers.add(server);
        return server;
      };
      const stop = async (server: RunningServer) => {
        servers.delete(server);
        await server.close();
      };
      try {
        let server = await start();
        assert.equal((await api(server.url, 'POST', '/api/v1/namespaces', admin, { name: 'team' })).status, 201);
        const created = await api(server.url, 'POST', '/api/v1/namespaces/team/registries', admin, {
          prefix: 'registry.example.com/team', type: 'basic', credentials: { username: 'bot', password: 'vaulted-Passw0rd' }, enable_ci: true,
        });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const id = (created.body as { id: string }).id;
        const creds = () => api(server.url, 'GET', `/api/v1/namespaces/team/registries/${id}/creds`, admin);
        assert.equal((await creds()).status, 200);

        const keyFile = path.join(dataDir, 'master.key');
        const oldText = await readFile(keyFile, 'utf8');
        const oldKey = parseMasterKey(oldText);
        const newText = randomBytes(32).toString('base64');
        const newKey = parseMasterKey(newText);
        const newKeyFile = path.join(work.path, 'new-master.key');
        await writeFile(newKeyFile, `${newText}\n`, { mode: 0o600 });

        const args = ['vault', 'rotate', '--new-key-file', newKeyFile, '--data-dir', dataDir, '--database', database.url];
        const rotated = await slipway(args, { cwd: work.path });
        assert.equal(rotated.code, 0, describeResult(rotated));
        assert.match(rotated.stdout, /Re-wrapped 1 data key under the new master key/);
        assert.ok(rotated.stdout.includes(newKey.id), 'prints the new fingerprint');
        assert.match(rotated.stdout, /previousMasterKeys/);
        for (const text of [oldText.trim(), newText, oldKey.key.toString('hex'), newKey.key.toString('hex')]) {
          assert.ok(!rotated.stdout.includes(text) && !rotated.stderr.includes(text), 'never prints key material');
        }
        assert.equal(parseMasterKey(await readFile(keyFile, 'utf8')).id, newKey.id, 'master.key holds the new key');
        assert.equal(parseMasterKey(await readFile(`${keyFile}.previous`, 'utf8')).id, oldKey.id, 'master.key.previous holds the old key');
        assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
        assert.equal((await stat(`${keyFile}.previous`)).mode & 0o777, 0o600);

        const same = await slipway(args, { cwd: work.path });
        assert.equal(same.code, 2, describeResult(same));
        assert.match(same.stderr, /is the current master key/);

        await stop(server);
        // Only the new key: master.key (replaced) and no previous keys.
        server = await start();
        const restarted = await creds();
        assert.equal(restarted.status, 200, JSON.stringify(restarted.body));
        assert.deepEqual(restarted.body, { username: 'bot', password: 'vaulted-Passw0rd', expires_at: null });
        await stop(server);

        // And the old key alone no longer opens anything: the data keys really were re-wrapped.
        server = await start({ masterKey: oldText.trim() });
        assert.notEqual((await creds()).status, 200);
      } finally {
        for (const server of servers) await server.close();
        await database.drop();
        await work.remove();
      }
    });
  });
}
