/**
 * What several replicas on one database share, checked with two db handles standing for two
 * processes: named leases (SQLite and PostgreSQL), NOTIFY wake-ups of the job queue (PostgreSQL),
 * and registry token signing keys kept in the db sealed by the vault.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { openDatabase, type Database } from '../src/db/db.js';
import { JobQueue } from '../src/db/job-queue.js';
import { JobWorker } from '../src/db/job-worker.js';
import { Lease, acquireLease, leaseHolder } from '../src/db/lease.js';
import { TokenService, dbTokenKeyStore } from '../src/auth/tokens.js';
import { GatewayFacts } from '../src/functions/gateway-facts.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AuditLog } from '../src/auth/audit.js';
import { ExternalRegistries } from '../src/credentials/service.js';
import { LiveFunctions } from '../src/functions/live.js';
import { Vault, parseMasterKey } from '../src/vault/vault.js';
import { dialects, tempDir } from './helpers/dialects.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

for (const dialect of dialects) {
  describe(`replica state (${dialect.name})`, { timeout: 120_000 }, () => {
    const cleanups: Array<() => Promise<void>> = [];
    after(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    });

    /** Two handles on one fresh database (two "replicas"). */
    async function twoHandles(): Promise<[Database, Database]> {
      const database = await dialect.create();
      const dir = await tempDir('slipway-replica-state-');
      const a = await openDatabase({ url: database.url, dataDir: dir.path });
      const b = await openDatabase({ url: database.url, dataDir: dir.path });
      cleanups.push(async () => {
        await a.close();
        await b.close();
        await database.drop();
        await dir.remove();
      });
      return [a, b];
    }

    test('a lease has one holder; it is renewed, released, and taken over after expiry', async () => {
      const [a, b] = await twoHandles();
      let now = 1_000_000;
      assert.equal(await acquireLease(a, 'gc', 'replica-a', 1000, now), true);
      assert.equal(await acquireLease(b, 'gc', 'replica-b', 1000, now + 10), false, 'held by a');
      assert.equal(await acquireLease(a, 'gc', 'replica-a', 1000, now + 500), true, 'renewed');
      assert.equal(await acquireLease(b, 'gc', 'replica-b', 1000, now + 1400), false, 'the renewal moved the expiry');
      assert.equal(await leaseHolder(b, 'gc', now + 1400), 'replica-a');
      now += 1600; // a stopped renewing (killed): its lease ran out
      assert.equal(await acquireLease(b, 'gc', 'replica-b', 1000, now), true, 'taken over after expiry');
      assert.equal(await acquireLease(a, 'gc', 'replica-a', 1000, now + 1), false);
      assert.equal(await acquireLease(a, 'mirrors', 'replica-a', 1000, now), true, 'leases are per name');
    });

    test('concurrent takers of a free lease: exactly one wins', async () => {
      const [a, b] = await twoHandles();
      const now = Date.now();
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => acquireLease(i % 2 ? a : b, 'race', `holder-${i}`, 10_000, now)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    test('Lease: the holder renews; a stopped holder hands over at once, a vanished one after its ttl', async () => {
      const [a, b] = await twoHandles();
      const first = await new Lease(a, 'poller', { ttlMs: 600 }).start();
      const second = await new Lease(b, 'poller', { ttlMs: 600 }).start();
      try {
        assert.equal(first.held, true);
        assert.equal(second.held, false);
        await sleep(1000); // longer than the ttl: the holder kept renewing
        assert.equal(first.held, true);
        assert.equal(second.held, false);
        await first.stop(); // released
        await until(() => second.held, 2000, 'the second lease to take over');
        assert.equal(first.held, false);

        // A holder that dies without releasing: simulate by a row of a holder that never renews.
        await second.stop();
        assert.equal(await acquireLease(a, 'poller', 'dead-replica', 600), true);
        const third = await new Lease(b, 'poller', { ttlMs: 600 }).start();
        try {
          assert.equal(third.held, false);
          const started = Date.now();
          await until(() => third.held, 3000, 'takeover after the dead holder expired');
          assert.ok(Date.now() - started <= 1200, `taken over within ttl + one renewal (${Date.now() - started} ms)`);
        } finally {
          await third.stop();
        }
      } finally {
        await first.stop();
        await second.stop();
      }
    });

    test('token signing keys are shared: one first key under a race, tokens verify across handles, rotation reaches both', async () => {
      const [a, b] = await twoHandles();
      const masterKey = parseMasterKey(randomBytes(32).toString('base64'));
      const [vaultA, vaultB] = await Promise.all([Vault.open(a, { current: masterKey }), Vault.open(b, { current: masterKey })]);
      const options = { issuer: 'slipway', service: 'slipway', ttlMs: 60_000, refreshTtlMs: 600_000 };
      const tokensA = new TokenService({ store: dbTokenKeyStore(a, vaultA), ...options });
      const tokensB = new TokenService({ store: dbTokenKeyStore(b, vaultB), ...options });
      await Promise.all([tokensA.init(), tokensB.init()]);
      const rows = await a.kysely.selectFrom('token_signing_keys').selectAll().execute();
      assert.equal(rows.length, 1, 'one first key although both started at once');
      assert.ok(!rows[0]!.sealed_jwk.includes('"d"'), 'the private key is sealed, not stored in the clear');
      assert.equal(await tokensA.currentKid(), await tokensB.currentKid());

      const issued = await tokensA.issueAccess({ subject: 'alice', access: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] });
      assert.equal((await tokensB.verify(issued.token, 'access')).subject, 'alice', 'a token from A is accepted by B');

      const kid = await tokensB.rotate();
      const rotated = await tokensB.issueAccess({ subject: 'bob', access: [] });
      assert.equal((await tokensA.verify(rotated.token, 'access')).subject, 'bob', 'A verifies a key rotated on B at once');
      assert.equal((await tokensA.verify(issued.token, 'access')).subject, 'alice', 'the old key still verifies');
      assert.equal(await tokensA.currentKid(), kid, 'A signs with the rotated key');

      const other = await Vault.open(a, { current: parseMasterKey(randomBytes(32).toString('base64')) });
      // A replica with another master key starts (the vault never stops a start) but cannot sign or verify.
      const stranger = new TokenService({ store: dbTokenKeyStore(a, other), ...options });
      await stranger.init();
      assert.equal(await a.kysely.selectFrom('token_signing_keys').select('kid').execute().then((r) => r.length), 2, 'it made no key of its own');
      await assert.rejects(stranger.issueAccess({ subject: 'eve', access: [] }), /master key/i, 'keys need the shared master key');
      await assert.rejects(stranger.verify(issued.token, 'access'), /master key|invalid token/i);
    });

    test('a function change through one handle drops the gateway facts the other cached, within a second', { skip: dialect.name === 'sqlite' && 'one process on SQLite' }, async () => {
      const [a, b] = await twoHandles();
      const now = Date.now();
      await a.write((trx) => trx.insertInto('functions').values({
        id: 'fn_1', namespace: 'team', name: 'hello', access: 'private', config: JSON.stringify({ type: 'http' }),
        active_revision: null, latest_revision: 0, created_by: null, created_at: now, updated_at: now,
      }).execute());
      const factsA = new GatewayFacts(a, new LiveFunctions());
      const factsB = new GatewayFacts(b, new LiveFunctions());
      await sleep(300); // LISTEN connections are up
      assert.equal((await factsB.describe('team', 'hello')).access, 'private');
      assert.equal(factsB.described('team', 'hello')?.access, 'private', 'cached on B');
      await a.write((trx) => trx.updateTable('functions').set({ access: 'public' }).where('id', '=', 'fn_1').execute());
      const changed = Date.now();
      factsA.forget('team', 'hello', 'fn_1'); // what A's function service does on a change
      await until(() => factsB.described('team', 'hello') === undefined, 1000, 'B to drop its cached facts');
      assert.ok(Date.now() - changed < 1000);
      assert.equal((await factsB.describe('team', 'hello')).access, 'public');
    });

    test('a changed external registry drops the exchanged login the other replica cached', { skip: dialect.name === 'sqlite' && 'one process on SQLite' }, async () => {
      const [a, b] = await twoHandles();
      let issued = 0;
      // A stand-in for ECR's GetAuthorizationToken: a new token per call.
      const ecr = createServer((request, response) => {
        request.resume();
        request.on('end', () => {
          issued++;
          response.setHeader('content-type', 'application/x-amz-json-1.1');
          response.end(JSON.stringify({ authorizationData: [{ authorizationToken: Buffer.from(`AWS:token-${issued}`).toString('base64'), expiresAt: Math.floor(Date.now() / 1000) + 3600 }] }));
        });
      });
      await new Promise<void>((resolve) => ecr.listen(0, '127.0.0.1', resolve));
      try {
        const masterKey = parseMasterKey(randomBytes(32).toString('base64'));
        const exchange = { ecrEndpoint: `http://127.0.0.1:${(ecr.address() as AddressInfo).port}` };
        const registriesA = new ExternalRegistries({ db: a, vault: await Vault.open(a, { current: masterKey }), audit: new AuditLog(a), exchange });
        const registriesB = new ExternalRegistries({ db: b, vault: await Vault.open(b, { current: masterKey }), audit: new AuditLog(b), exchange });
        await sleep(300); // LISTEN connections are up
        const prefix = '123456789012.dkr.ecr.us-east-1.amazonaws.com/team';
        const created = await registriesA.create('team', { prefix, type: 'ecr', credentials: { region: 'us-east-1', accessKeyId: 'AKID', secretAccessKey: 'first-secret' } }, 'ada');
        const image = `${prefix}/app:1`;
        assert.equal((await registriesB.loginForImage('team', image))?.password, 'token-1');
        assert.equal((await registriesB.loginForImage('team', image))?.password, 'token-1', 'cached on B');
        await registriesA.update('team', created.id, { credentials: { region: 'us-east-1', accessKeyId: 'AKID', secretAccessKey: 'second-secret' } }, 'ada');
        await sleep(500);
        assert.equal((await registriesB.loginForImage('team', image))?.password, 'token-2', 'B exchanged again after the change on A');
      } finally {
        ecr.closeAllConnections();
        ecr.close();
      }
    });

    test('a job enqueued through one handle is claimed exactly once, and a worker on the other wakes without polling', async () => {
      const [a, b] = await twoHandles();
      const producer = new JobQueue(a);
      const claimed: string[] = [];
      // Polls only every 30 s: a start within a second means the wake-up crossed processes.
      const workers = [a, b, b].map((db) => new JobWorker<{ n: number }, void>(new JobQueue(db), {
        queue: 'replica-jobs', pollMs: 30_000, concurrency: 2,
        handler: async (job) => { claimed.push(job.id); },
      }));
      if (dialect.name === 'postgres') workers.shift(); // only the other handle's workers: NOTIFY must reach them
      for (const worker of workers) worker.start();
      await sleep(300); // LISTEN connections are up
      try {
        const started = Date.now();
        const ids = await Promise.all(Array.from({ length: 20 }, (_, n) => producer.enqueue('replica-jobs', { n })));
        await until(() => claimed.length >= ids.length, 10_000, 'all jobs to run');
        assert.ok(Date.now() - started < 5_000, `woken, not polled (${Date.now() - started} ms)`);
        await sleep(200);
        assert.deepEqual([...claimed].sort(), [...ids].sort(), 'each job ran exactly once');
        const jobs = await producer.getMany(ids);
        assert.ok(jobs.every((job) => job.status === 'succeeded' && job.attempts === 1));
      } finally {
        for (const worker of workers) await worker.stop();
      }
    });
  });
}
