/**
 * HTTP basic on every request: a password that passed scrypt is remembered briefly, so a
 * client sending the same pair again costs no second hash; a changed password, a deleted user,
 * a revoked or expired key stop working at once (also on another replica sharing the db);
 * wrong passwords are never remembered and stay throttled; what is remembered holds no secret.
 */
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { AccessService } from '../src/auth/access.js';
import { AuditLog } from '../src/auth/audit.js';
import { Credentials, TooManyAttemptsError } from '../src/auth/credentials.js';
import { FailureLimiter } from '../src/auth/rate-limit.js';
import { VerifiedLogins } from '../src/auth/verified-logins.js';
import { openDatabase, type Database } from '../src/db/db.js';
import { dialects, startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { createApiClient } from './helpers/api-client.js';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** Credentials over `access`, counting the scrypt-backed password checks it makes. */
function countingCredentials(access: AccessService, db: Database, logins = new VerifiedLogins()) {
  const counted = { hashes: 0 };
  const original = access.verifyPasswordOf.bind(access);
  access.verifyPasswordOf = async (name, password) => {
    counted.hashes++;
    return original(name, password);
  };
  const credentials = new Credentials({ access, audit: new AuditLog(db), limiter: new FailureLimiter(), logins });
  return { credentials, counted };
}

for (const dialect of dialects) {
  describe(`remembered basic-auth logins (${dialect.name}, service level)`, { timeout: 120_000 }, () => {
    let db: Database;
    let dir: Awaited<ReturnType<typeof tempDir>>;
    let database: { url: string; drop(): Promise<void> };
    let access: AccessService;

    before(async () => {
      dir = await tempDir('slipway-logins-');
      database = await dialect.create();
      db = await openDatabase({ url: database.url, dataDir: dir.path, migrate: true });
      access = new AccessService(db);
      await access.createUser('dana', 'dana-password-1');
    });
    after(async () => {
      await db?.close();
      await database?.drop();
      await dir?.remove();
    });

    test('one scrypt for many requests with the same pair, sequential and concurrent', async () => {
      const { credentials, counted } = countingCredentials(new AccessService(db), db);
      const concurrent = await Promise.all(Array.from({ length: 24 }, () => credentials.check('dana', 'dana-password-1', '127.0.0.1')));
      for (const principal of concurrent) assert.equal(principal?.name, 'dana');
      for (let i = 0; i < 20; i++) assert.equal((await credentials.check('dana', 'dana-password-1', '127.0.0.1'))?.name, 'dana');
      assert.equal(counted.hashes, 1);
    });

    test('wrong passwords are never remembered: each one is hashed, then throttled', async () => {
      const { credentials, counted } = countingCredentials(new AccessService(db), db);
      assert.equal((await credentials.check('dana', 'dana-password-1', '10.0.0.1'))?.name, 'dana');
      for (let i = 0; i < 10; i++) assert.equal(await credentials.check('dana', `wrong-${i % 2}`, '10.0.0.1'), null);
      assert.equal(counted.hashes, 11);
      await assert.rejects(credentials.check('dana', 'wrong-0', '10.0.0.1'), TooManyAttemptsError);
      assert.equal(counted.hashes, 11, 'a throttled attempt costs no hash');
    });

    test('what is remembered holds neither the password nor the stored hash', async () => {
      const { credentials } = countingCredentials(new AccessService(db), db);
      const password = 'dana-password-1';
      assert.ok(await credentials.check('dana', password, '127.0.0.1'));
      assert.equal(credentials.logins.size, 1);
      const row = await db.kysely.selectFrom('principals').select('password_hash').where('name', '=', 'dana').executeTakeFirstOrThrow();
      const dump = inspect(credentials.logins, { depth: null, showHidden: true, maxArrayLength: null, maxStringLength: null });
      for (const secret of [password, Buffer.from(password).toString('base64'), Buffer.from(`dana:${password}`).toString('base64'), row.password_hash!, row.password_hash!.split('$').pop()!]) {
        assert.equal(dump.includes(secret), false, `the cache shows ${secret}`);
      }
    });

    test('a password changed on another replica stops the remembered one at once', async () => {
      await access.createUser('erin', 'erin-password-1');
      const replicaA = countingCredentials(new AccessService(db), db);
      const replicaB = new AccessService(db); // shares only the db with A
      assert.equal((await replicaA.credentials.check('erin', 'erin-password-1', '127.0.0.1'))?.name, 'erin');
      assert.equal((await replicaA.credentials.check('erin', 'erin-password-1', '127.0.0.1'))?.name, 'erin');
      assert.equal(replicaA.counted.hashes, 1);
      const erin = (await replicaB.findByName('erin'))!;
      await replicaB.setPassword(erin.id, 'erin-password-2');
      assert.equal(await replicaA.credentials.check('erin', 'erin-password-1', '127.0.0.1'), null);
      assert.equal((await replicaA.credentials.check('erin', 'erin-password-2', '127.0.0.1'))?.name, 'erin');
      await replicaB.deletePrincipal(erin.id);
      assert.equal(await replicaA.credentials.check('erin', 'erin-password-2', '127.0.0.1'), null);
    });

    test('a password change or deletion through the same service drops its entries', async () => {
      const own = new AccessService(db);
      const { credentials } = countingCredentials(own, db);
      const fay = await own.createUser('fay', 'fay-password-1');
      assert.ok(await credentials.check('fay', 'fay-password-1', '127.0.0.1'));
      assert.equal(credentials.logins.size, 1);
      await own.setPassword(fay.id, 'fay-password-2');
      assert.equal(credentials.logins.size, 0);
      assert.ok(await credentials.check('fay', 'fay-password-2', '127.0.0.1'));
      await own.deletePrincipal(fay.id);
      assert.equal(credentials.logins.size, 0);
    });

    test('an entry expires after its time; a time of 0 remembers nothing', async () => {
      const logins = new VerifiedLogins(60_000);
      const fingerprint = logins.fingerprint('dana', 'x');
      logins.remember(fingerprint, 'p_1', '$hash', 1_000);
      assert.equal(logins.lookup(fingerprint, 60_999)?.principalId, 'p_1');
      assert.equal(logins.lookup(fingerprint, 61_000), undefined);
      assert.equal(logins.size, 0);
      const { credentials, counted } = countingCredentials(new AccessService(db), db, new VerifiedLogins(0));
      for (let i = 0; i < 3; i++) assert.ok(await credentials.check('dana', 'dana-password-1', '127.0.0.1'));
      assert.equal(counted.hashes, 3);
      assert.equal(credentials.logins.size, 0);
    });

    test('a full cache evicts its oldest entry; user name and password are bound together', () => {
      const logins = new VerifiedLogins(60_000, 2);
      logins.remember(logins.fingerprint('a', 'pw'), 'p_a', 'h', 0);
      logins.remember(logins.fingerprint('b', 'pw'), 'p_b', 'h', 0);
      logins.remember(logins.fingerprint('c', 'pw'), 'p_c', 'h', 0);
      assert.equal(logins.size, 2);
      assert.equal(logins.lookup(logins.fingerprint('a', 'pw'), 1), undefined);
      assert.equal(logins.lookup(logins.fingerprint('c', 'pw'), 1)?.principalId, 'p_c');
      assert.notEqual(logins.fingerprint('ab', 'c'), logins.fingerprint('a', 'bc'));
    });
  });
}

describe('remembered basic-auth logins through the server', { timeout: 120_000 }, () => {
  let ts: TestServer;
  const adminPassword = 'admin-secret-Pa55word';
  const admin = basic('admin', adminPassword);
  const api = (method: string, url: string, auth: string, body?: unknown) => createApiClient(ts.url, auth).request<Record<string, unknown>>(method, url, body);
  const v2 = async (auth: string) => (await fetch(`${ts.url}/v2/`, { headers: { authorization: auth } })).status;

  before(async () => {
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword } } });
    assert.equal((await api('POST', '/api/v1/users', admin, { name: 'gus', password: 'gus-password-1' })).status, 201);
  });
  after(async () => ts?.close());

  test('a changed password is refused at once on /v2/ and the API; the new one works', async () => {
    const old = basic('gus', 'gus-password-1');
    assert.equal(await v2(old), 200);
    assert.equal((await api('GET', '/api/v1/namespaces', old)).status, 200);
    assert.equal((await api('PUT', '/api/v1/users/gus/password', old, { password: 'gus-password-2' })).status, 200);
    assert.equal(await v2(old), 401);
    assert.equal((await api('GET', '/api/v1/namespaces', old)).status, 401);
    assert.equal(await v2(basic('gus', 'gus-password-2')), 200);
  });

  test('a deleted user is refused at once', async () => {
    assert.equal((await api('POST', '/api/v1/users', admin, { name: 'hal', password: 'hal-password-1' })).status, 201);
    const hal = basic('hal', 'hal-password-1');
    assert.equal(await v2(hal), 200);
    assert.equal((await api('DELETE', '/api/v1/users/hal', admin)).status, 204);
    assert.equal(await v2(hal), 401);
  });

  test('an API key as the basic password stops at once when revoked, and when it expires', async () => {
    const created = await api('POST', '/api/v1/keys', admin, { name: 'ci', scopes: ['pull'] });
    assert.equal(created.status, 201);
    const asBasic = basic('anyone', created.body.key as string);
    assert.equal(await v2(asBasic), 200);
    assert.equal(await v2(asBasic), 200);
    assert.equal((await api('DELETE', `/api/v1/keys/${created.body.id as string}`, admin)).status, 204);
    assert.equal(await v2(asBasic), 401);

    const shortLived = await api('POST', '/api/v1/keys', admin, { name: 'brief', scopes: ['pull'], expiresIn: '1s' });
    const brief = basic('anyone', shortLived.body.key as string);
    assert.equal(await v2(brief), 200);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    assert.equal(await v2(brief), 401);
  });
});
