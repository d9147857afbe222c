/**
 * Events on both dialects: the outbox, outgoing webhooks against real HTTP receivers on
 * 127.0.0.1 (signature by the documented scheme, retries with growing delays, permanent
 * failure, timeouts, redeliver, pattern matching, inactive webhooks, delivery after a bus
 * restart, two replicas never sending one delivery twice, deliveries reconciled with their
 * jobs, pruning), and the HTTP API on a small Fastify app: validation naming the field, the
 * secret never shown after creation, ping, the event list and the SSE stream (live, replay
 * after Last-Event-ID, type filter, ended by server close).
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { openDatabase, type Database } from '../src/db/db.js';
import { JobQueue } from '../src/db/job-queue.js';
import { EventBus, type EventBusOptions } from '../src/events/bus.js';
import { deliveryQueue } from '../src/events/deliveries.js';
import { eventRoutes } from '../src/events/routes.js';
import { verifySignature } from '../src/events/signature.js';
import { parseMasterKey, Vault, type MasterKey } from '../src/vault/vault.js';
import { dialects, tempDir as makeTempDir, type DialectUnderTest } from './helpers/dialects.js';
import { createApiClient } from './helpers/api-client.js';

const tempDir = () => makeTempDir('slipway-events-');

const ns = 'team';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// ---- receivers ----

interface Received {
  headers: http.IncomingHttpHeaders;
  body: string;
  at: number;
}

/** A status, 'hang' (never answer), or a status after a delay. */
type Behaviour = (n: number, request: Received) => number | 'hang' | { status: number; delayMs: number };

interface Receiver {
  url: string;
  requests: Received[];
  behave(next: Behaviour): void;
  close(): Promise<void>;
}

async function startReceiver(behaviour: Behaviour = () => 200): Promise<Receiver> {
  const requests: Received[] = [];
  let current = behaviour;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const received = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
      requests.push(received);
      const outcome = current(requests.length, received);
      if (outcome === 'hang') return;
      const n = requests.length;
      const answer = (status: number) => {
        if (res.destroyed) return;
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(`answer ${n}: ${'x'.repeat(2000)}`);
      };
      if (typeof outcome === 'number') answer(outcome);
      else setTimeout(() => answer(outcome.status), outcome.delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook?x=1`,
    requests,
    behave: (next) => { current = next; },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

// ---- fixtures ----

interface Fixture {
  db: Database;
  /** A bus on the fixture's db (or on a fresh handle: another "replica"); closed by the fixture. */
  bus(options?: Partial<EventBusOptions>, separateHandle?: boolean): Promise<EventBus>;
  receiver(behaviour?: Behaviour): Promise<Receiver>;
}

async function withFixture(dialect: DialectUnderTest, fn: (fixture: Fixture) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  const database = await dialect.create();
  const handles: Database[] = [];
  const buses: EventBus[] = [];
  const receivers: Receiver[] = [];
  const master: MasterKey = parseMasterKey(randomBytes(32).toString('base64'));
  const open = async () => {
    const handle = await openDatabase({ url: database.url, dataDir: dir.path });
    handles.push(handle);
    return handle;
  };
  try {
    const db = await open();
    const vault = await Vault.open(db, { current: master });
    await fn({
      db,
      async bus(options = {}, separateHandle = false) {
        const handle = separateHandle ? await open() : db;
        const bus = new EventBus({
          db: handle, vault: separateHandle ? await Vault.open(handle, { current: master }) : vault,
          retry: { attempts: 4, baseMs: 40, maxMs: 2000 }, deliveryTimeoutMs: 2000, tickMs: 30, closeTimeoutMs: 200,
          ...options,
        });
        buses.push(bus);
        return bus;
      },
      async receiver(behaviour) {
        const receiver = await startReceiver(behaviour);
        receivers.push(receiver);
        return receiver;
      },
    });
  } finally {
    for (const bus of buses) await bus.close().catch(() => undefined);
    for (const receiver of receivers) await receiver.close().catch(() => undefined);
    for (const handle of handles) await handle.close().catch(() => undefined);
    await database.drop();
    await dir.remove();
  }
}

/** The documented scheme, computed here independently of src/events/signature.ts. */
function expectedSignature(secret: string, timestamp: string, rawBody: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest('hex')}`;
}

async function startApp(bus: EventBus, options: { heartbeatMs?: number; pollMs?: number } = {}): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({ forceCloseConnections: 'idle' });
  await app.register(eventRoutes, { bus, ...options });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
}

const call = (base: string, method: string, path: string, body?: unknown) => createApiClient(base).request(method, path, body);

interface SseFrame { id?: string; event?: string; data?: string; comment?: string }

/** Reads a Server-Sent Events stream into frames until aborted or ended (its own connection, no pool). */
function readSse(url: string, headers: Record<string, string> = {}): { frames: SseFrame[]; ended: Promise<void>; abort(): void; status: Promise<number> } {
  const frames: SseFrame[] = [];
  let request!: http.ClientRequest;
  let resolveStatus!: (status: number) => void;
  const status = new Promise<number>((resolve) => { resolveStatus = resolve; });
  const ended = new Promise<void>((resolve, reject) => {
    request = http.get(url, { headers, agent: false }, (response) => {
      resolveStatus(response.statusCode ?? 0);
      response.setEncoding('utf8');
      let buffer = '';
      response.on('data', (chunk: string) => {
        buffer += chunk;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const frame: SseFrame = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) frame.comment = line.slice(1).trim();
            else if (line.startsWith('id: ')) frame.id = line.slice(4);
            else if (line.startsWith('event: ')) frame.event = line.slice(7);
            else if (line.startsWith('data: ')) frame.data = line.slice(6);
          }
          frames.push(frame);
        }
      });
      response.on('end', resolve);
      response.on('close', resolve);
    });
    request.on('error', (error) => (request.destroyed ? resolve() : reject(error)));
  });
  return { frames, ended, abort: () => request.destroy(), status };
}

for (const dialect of dialects) {
  describe(`events (${dialect.name})`, { timeout: 180_000 }, () => {
    test('a delivery is signed by the documented scheme and carries the event', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const receiver = await f.receiver();
        const bus = await f.bus();
        bus.start();
        const secret = 'my-receiver-secret-0123456789';
        const hook = await bus.webhooks.create(ns, { url: receiver.url, events: ['run.*'], secret }, 'ada');
        assert.equal(hook.secret, secret);
        assert.equal(hook.secretHint, '****6789');
        assert.equal(hook.createdBy, 'ada');
        const event = await bus.publish(ns, 'run.succeeded', { run: { id: 'r1', number: 7 } }, 'pipeline:build');
        const [request] = await eventually(() => receiver.requests.length >= 1 && receiver.requests, 'the delivery');
        const h = request!.headers;
        assert.equal(h['content-type'], 'application/json');
        assert.equal(h['user-agent'], 'Slipway-Hookshot/1');
        assert.equal(h['x-slipway-event'], 'run.succeeded');
        assert.match(String(h['x-slipway-delivery']), /^whd_/);
        const timestamp = String(h['x-slipway-timestamp']);
        assert.match(timestamp, /^\d+$/);
        assert.ok(Math.abs(Number(timestamp) - Date.now() / 1000) < 30);
        assert.equal(h['x-slipway-signature-256'], expectedSignature(secret, timestamp, request!.body));
        assert.ok(verifySignature(secret, timestamp, String(h['x-slipway-signature-256']), request!.body));
        assert.ok(!verifySignature('another-secret-0123456789', timestamp, String(h['x-slipway-signature-256']), request!.body));
        assert.ok(!verifySignature(secret, String(Number(timestamp) - 3600), expectedSignature(secret, String(Number(timestamp) - 3600), request!.body), request!.body), 'old timestamps are replays');
        assert.deepEqual(JSON.parse(request!.body), {
          id: event.id, type: 'run.succeeded', namespace: ns, subject: 'pipeline:build', createdAt: event.createdAt, data: { run: { id: 'r1', number: 7 } },
        });
        const deliveries = await eventually(async () => {
          const list = await bus.webhooks.deliveries(ns, hook.id);
          return list[0]?.status === 'succeeded' && list;
        }, 'the delivery recorded');
        assert.equal(deliveries.length, 1);
        assert.equal(deliveries[0]!.id, h['x-slipway-delivery']);
        assert.equal(deliveries[0]!.eventType, 'run.succeeded');
        assert.equal(deliveries[0]!.attempts, 1);
        assert.equal(deliveries[0]!.log[0]!.status, 200);
        assert.equal(deliveries[0]!.log[0]!.responseBody!.length, 1024, 'the first 1 KiB of the answer');
        assert.ok(deliveries[0]!.log[0]!.responseBody!.startsWith('answer 1: '));
      });
    });

    test('a receiver failing twice then succeeding gets 3 attempts with growing delays, all in the log', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const receiver = await f.receiver((n) => (n <= 2 ? 500 : 200));
        const bus = await f.bus({ retry: { attempts: 5, baseMs: 150, maxMs: 5000 } });
        bus.start();
        const hook = await bus.webhooks.create(ns, { url: receiver.url, events: ['deploy.succeeded'] }, null);
        assert.match(hook.secret, /^whsec_/);
        await bus.publish(ns, 'deploy.succeeded', { fn: 'api' });
        const delivery = await eventually(async () => {
          const [d] = await bus.webhooks.deliveries(ns, hook.id);
          return d?.status === 'succeeded' && d;
        }, 'success after retries');
        assert.equal(receiver.requests.length, 3);
        assert.equal(new Set(receiver.requests.map((r) => r.headers['x-slipway-delivery'])).size, 1, 'one delivery id across retries');
        const gap1 = receiver.requests[1]!.at - receiver.requests[0]!.at;
        const gap2 = receiver.requests[2]!.at - receiver.requests[1]!.at;
        assert.ok(gap1 >= 100, `first retry waited ${gap1} ms`);
        // Lower bounds only (a loaded machine makes every gap longer): the second back-off is at
        // least 0.75 × 300 ms, longer than the first can ever be scheduled (≤ 150 ms).
        assert.ok(gap2 >= 220, `the second retry waited at least the doubled back-off: ${gap1} then ${gap2} ms`);
        assert.equal(delivery.attempts, 3);
        assert.deepEqual(delivery.log.map((a) => a.status), [500, 500, 200]);
        for (const attempt of delivery.log) {
          assert.ok(Date.parse(attempt.at) > 0);
          assert.ok(attempt.durationMs >= 0);
          assert.equal(attempt.error, null);
        }
        assert.equal(delivery.lastStatus, 200);
        assert.equal(delivery.lastError, null);
        assert.equal(delivery.nextAttemptAt, null);
        assert.ok(delivery.finishedAt);
      });
    });

    test('permanent failures end failed after N attempts (status, refused connection, timeout); redeliver sends again', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const failing = await f.receiver(() => 503);
        const hanging = await f.receiver(() => 'hang');
        const gone = await f.receiver();
        const goneUrl = gone.url;
        await gone.close();
        // 1 s: long enough that a loaded host still gets the 503s in time, short for the hanging one.
        const bus = await f.bus({ retry: { attempts: 3, baseMs: 20, maxMs: 100 }, deliveryTimeoutMs: 1000 });
        bus.start();
        const a = await bus.webhooks.create(ns, { url: failing.url, events: ['*'] }, null);
        const b = await bus.webhooks.create(ns, { url: goneUrl, events: ['*'] }, null);
        const c = await bus.webhooks.create(ns, { url: hanging.url, events: ['*'] }, null);
        const event = await bus.publish(ns, 'run.failed', { n: 1 });
        const finished = async (id: string) => eventually(async () => {
          const [d] = await bus.webhooks.deliveries(ns, id);
          return d?.status === 'failed' && d;
        }, `webhook ${id} failing for good`, 15_000);
        const [da, db, dc] = await Promise.all([finished(a.id), finished(b.id), finished(c.id)]);
        assert.equal(failing.requests.length, 3);
        assert.equal(da.attempts, 3);
        assert.deepEqual(da.log.map((x) => x.status), [503, 503, 503]);
        assert.equal(da.lastError, 'HTTP 503');
        assert.equal(db.attempts, 3);
        assert.ok(db.log.every((x) => x.status === null && /ECONNREFUSED/.test(x.error ?? '')), JSON.stringify(db.log));
        assert.equal(dc.attempts, 3);
        assert.ok(dc.log.every((x) => x.status === null && /timed out after 1000 ms/.test(x.error ?? '')), JSON.stringify(dc.log));
        assert.ok(dc.log.every((x) => x.durationMs >= 950 && x.durationMs < 5000));
        await sleep(200);
        assert.equal(failing.requests.length, 3, 'nothing after the last attempt');

        failing.behave(() => 204);
        const again = await bus.webhooks.redeliver(ns, da.id);
        assert.notEqual(again.id, da.id);
        assert.equal(again.eventId, event.id);
        assert.equal(again.webhookId, a.id);
        const done = await eventually(async () => {
          const d = await bus.webhooks.delivery(ns, a.id, again.id);
          return d.status === 'succeeded' && d;
        }, 'the redelivery');
        assert.equal(done.attempts, 1);
        assert.equal(failing.requests.length, 4);
        assert.equal(JSON.parse(failing.requests[3]!.body).id, event.id);
        assert.equal(failing.requests[3]!.headers['x-slipway-delivery'], again.id);
        assert.equal((await bus.webhooks.delivery(ns, a.id, da.id)).status, 'failed', 'the old delivery and its log stay');
        await assert.rejects(bus.webhooks.redeliver(ns, da.id, b.id), { name: 'EventNotFoundError' });
        await assert.rejects(bus.webhooks.redeliver('other', da.id), { name: 'EventNotFoundError' });
      });
    });

    test('patterns pick the events; an inactive webhook gets nothing', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const runs = await f.receiver();
        const deploys = await f.receiver();
        const off = await f.receiver();
        const failures = await f.receiver();
        const bus = await f.bus();
        bus.start();
        const r = await bus.webhooks.create(ns, { url: runs.url, events: ['run.*'] }, null);
        await bus.webhooks.create(ns, { url: deploys.url, events: ['deploy.succeeded'] }, null);
        const o = await bus.webhooks.create(ns, { url: off.url, events: ['*'], active: false }, null);
        await bus.webhooks.create(ns, { url: failures.url, events: ['*.failed', 'artefact.created'] }, null);
        await bus.webhooks.create('elsewhere', { url: runs.url, events: ['*'] }, null);
        await bus.publish(ns, 'run.failed', {});
        await bus.publish(ns, 'deploy.succeeded', {});
        await bus.publish(ns, 'deploy.failed', {});
        await bus.publish(ns, 'artefact.created', {});
        await bus.publish(ns, 'run.queued', {});
        await eventually(() => runs.requests.length >= 2 && deploys.requests.length >= 1 && failures.requests.length >= 3, 'the deliveries');
        await sleep(300);
        const types = (rx: Receiver) => rx.requests.map((q) => q.headers['x-slipway-event']).sort();
        assert.deepEqual(types(runs), ['run.failed', 'run.queued']);
        assert.deepEqual(types(deploys), ['deploy.succeeded']);
        assert.deepEqual(types(failures), ['artefact.created', 'deploy.failed', 'run.failed']);
        assert.equal(off.requests.length, 0);
        assert.deepEqual(await bus.webhooks.deliveries(ns, o.id), []);

        // Deactivated while a delivery waits: it ends failed without being sent.
        runs.behave(() => 500);
        await bus.publish(ns, 'run.started', {});
        await eventually(() => runs.requests.length >= 3, 'the first attempt');
        await bus.webhooks.update(ns, r.id, { active: false });
        const ended = await eventually(async () => {
          const d = (await bus.webhooks.deliveries(ns, r.id)).find((x) => x.eventType === 'run.started');
          return d?.status === 'failed' && d;
        }, 'the inactive delivery ending');
        assert.equal(ended.lastError, 'the webhook is inactive');
        assert.equal(runs.requests.length, 3);
        await bus.publish(ns, 'run.succeeded', {});
        assert.equal((await bus.webhooks.deliveries(ns, r.id)).length, 3, 'no delivery queued for an inactive webhook');
        await assert.rejects(bus.webhooks.redeliver(ns, ended.id), { name: 'EventConflictError' });
      });
    });

    test('a pending delivery is sent by a new bus after a restart; a send cut short by close is sent again', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const receiver = await f.receiver();
        const first = await f.bus();
        const hook = await first.webhooks.create(ns, { url: receiver.url, events: ['*'] }, null);
        // Not started: the event is only in the outbox when the process "stops".
        const event = await first.publish(ns, 'run.queued', { n: 1 });
        await first.close();
        assert.equal(receiver.requests.length, 0);
        const second = await f.bus({}, true);
        second.start();
        await eventually(() => receiver.requests.length === 1, 'the delivery after the restart');
        assert.equal(JSON.parse(receiver.requests[0]!.body).id, event.id);

        // A send in flight when the bus closes is abandoned and handed back, not lost.
        receiver.behave(() => 'hang');
        const inFlight = await second.publish(ns, 'run.started', { n: 2 });
        await eventually(() => receiver.requests.length === 2, 'the hanging send');
        await second.close();
        const [pending] = await second.webhooks.deliveries(ns, hook.id);
        assert.equal(pending!.status, 'pending');
        assert.equal(pending!.attempts, 0, 'an abandoned send is not counted');
        receiver.behave(() => 200);
        const third = await f.bus({}, true);
        third.start();
        await eventually(async () => (await third.webhooks.delivery(ns, hook.id, pending!.id)).status === 'succeeded', 'the resend');
        assert.equal(JSON.parse(receiver.requests[2]!.body).id, inFlight.id);
        assert.equal(receiver.requests[2]!.headers['x-slipway-delivery'], pending!.id);
      });
    });

    test('two replicas on one database never send a delivery twice', { timeout: 60_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const receiver = await f.receiver(() => 200);
        const a = await f.bus({ tickMs: 10, concurrency: 4 }, true);
        const b = await f.bus({ tickMs: 10, concurrency: 4 }, true);
        const hook = await a.webhooks.create(ns, { url: receiver.url, events: ['*'] }, null);
        const publisher = await f.bus();
        const count = 40;
        for (let i = 0; i < count; i++) await publisher.publish(ns, 'run.queued', { i });
        a.start();
        b.start();
        await eventually(async () => {
          const list = await a.webhooks.deliveries(ns, hook.id, { limit: 500 });
          return list.length === count && list.every((d) => d.status === 'succeeded');
        }, 'all deliveries', 30_000);
        const ids = receiver.requests.map((r) => r.headers['x-slipway-delivery']);
        assert.equal(ids.length, count, 'each delivery sent once');
        assert.equal(new Set(ids).size, count);
      });
    });

    test('a lease that runs out (a stalled or dead sender) is taken over; the stale sender\'s result is dropped', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const receiver = await f.receiver((n) => (n === 1 ? { status: 500, delayMs: 600 } : 200));
        // The first sender is "stalled": its clock runs two minutes behind, so the lease it
        // takes (and every heartbeat) has already run out for everyone else, as if it had died.
        const stalledJobs = new JobQueue(f.db, { now: () => Date.now() - 120_000 });
        const stalled = await f.bus({ jobs: stalledJobs }, true);
        const hook = await stalled.webhooks.create(ns, { url: receiver.url, events: ['*'] }, null);
        stalled.start();
        await stalled.publish(ns, 'run.queued', {});
        await eventually(() => receiver.requests.length === 1, 'the first send');
        const [claimed] = await new JobQueue(f.db).list(deliveryQueue, { status: 'running' });
        assert.equal(claimed?.leaseOwner, stalledJobs.workerId, 'claimed under a lease');
        assert.ok(claimed!.leaseExpiresAt! < Date.now(), 'a lease that has run out');
        const taker = await f.bus({}, true);
        taker.start();
        await eventually(() => receiver.requests.length === 2, 'the takeover');
        await sleep(900);
        const [delivery] = await taker.webhooks.deliveries(ns, hook.id);
        assert.equal(delivery!.status, 'succeeded');
        assert.equal(delivery!.attempts, 1, 'the stale attempt (500) is not recorded over the new owner\'s');
        assert.deepEqual(delivery!.log.map((a) => a.status), [200]);
        assert.equal(receiver.requests.length, 2);
      });
    });

    test('upkeep: a pending delivery whose job ended fails; one whose job is gone gets a new one and is sent', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const receiver = await f.receiver();
        const bus = await f.bus();
        const hook = await bus.webhooks.create(ns, { url: receiver.url, events: ['*'] }, null);
        const jobs = new JobQueue(f.db);
        // Not started: both deliveries wait. The first one's job is then lost (ended and purged)…
        const lost = await bus.publish(ns, 'run.queued', { n: 1 });
        const [orphan] = await bus.webhooks.deliveries(ns, hook.id);
        assert.equal(await jobs.cancel(orphan!.id), 'cancelled');
        assert.equal(await jobs.purge(deliveryQueue, { finishedBefore: Date.now() + 1 }), 1);
        // …the second one's job ends without it.
        await bus.publish(ns, 'run.started', { n: 2 });
        const [stranded] = await bus.webhooks.deliveries(ns, hook.id);
        assert.equal(await jobs.cancel(stranded!.id), 'cancelled');
        bus.start();
        const failed = await eventually(async () => {
          const d = await bus.webhooks.delivery(ns, hook.id, stranded!.id);
          return d.status === 'failed' && d;
        }, 'the stranded delivery failing');
        assert.equal(failed.lastError, 'its job ended: cancelled');
        assert.equal(failed.attempts, 0);
        await eventually(async () => (await bus.webhooks.delivery(ns, hook.id, orphan!.id)).status === 'succeeded', 'the orphan sent');
        assert.deepEqual(receiver.requests.map((r) => JSON.parse(r.body).id), [lost.id]);
      });
    });

    test('list pages the outbox; prune drops old events but keeps what pending deliveries need', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const bus = await f.bus({ retention: { maxEvents: 3, maxDeliveries: 1 } });
        const seen: string[] = [];
        const stop = bus.listen((e) => seen.push(e.type));
        const published = [];
        for (const type of ['run.queued', 'run.started', 'deploy.succeeded', 'run.failed', 'run.succeeded']) published.push(await bus.publish(ns, type, { type }));
        await bus.publish('elsewhere', 'run.queued', {});
        stop();
        await bus.publish(ns, 'run.cancelled', {});
        assert.deepEqual(seen, ['run.queued', 'run.started', 'deploy.succeeded', 'run.failed', 'run.succeeded', 'run.queued']);
        const all = await bus.list(ns, {});
        assert.deepEqual(all.map((e) => e.type), ['run.queued', 'run.started', 'deploy.succeeded', 'run.failed', 'run.succeeded', 'run.cancelled']);
        assert.deepEqual((await bus.list(ns, { after: published[1]!.id, limit: 2 })).map((e) => e.type), ['deploy.succeeded', 'run.failed']);
        assert.deepEqual((await bus.list(ns, { types: ['run.*'], limit: 2 })).map((e) => e.type), ['run.succeeded', 'run.cancelled']);
        assert.deepEqual((await bus.list(ns, { types: ['deploy.succeeded', '*.failed'] })).map((e) => e.type), ['deploy.succeeded', 'run.failed']);
        const odd = await bus.publish('odd', 'build_step.done', {});
        await bus.publish('odd', 'buildxstep.done', {});
        assert.deepEqual((await bus.list('odd', { types: ['build_step.*'] })).map((e) => e.id), [odd.id], '_ is literal, not a LIKE wildcard');
        await assert.rejects(bus.list(ns, { types: ['run.'] }), /type: /);
        await assert.rejects(bus.publish(ns, 'Bad Type', {}), /type: /);
        await assert.rejects(bus.publish(ns, 'ping', {}), /reserved/);

        // A webhook that never answers keeps its delivery pending: its event is kept.
        const hook = await bus.webhooks.create(ns, { url: 'http://127.0.0.1:9/nowhere', events: ['run.queued'] }, null);
        const kept = await bus.publish(ns, 'run.queued', { keep: true });
        const newest = [];
        for (let i = 0; i < 4; i++) newest.push(await bus.publish(ns, 'deploy.failed', { i }));
        const pruned = await bus.prune();
        assert.equal(pruned.events, 10, 'of 14 (all namespaces): the newest 3 and the one a pending delivery needs stay');
        const left = await bus.list(ns, { limit: 1000 });
        assert.deepEqual(left.map((e) => e.id), [kept.id, ...newest.slice(1).map((e) => e.id)]);
        assert.equal((await bus.webhooks.deliveries(ns, hook.id))[0]!.status, 'pending');
      });
    });

    test('HTTP API: validation names the field, the secret is never shown again, ping, redeliver, event list', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const receiver = await f.receiver();
        const bus = await f.bus();
        bus.start();
        const { app, url } = await startApp(bus);
        try {
          const base = `/api/v1/namespaces/${ns}`;
          const badUrl = await call(url, 'POST', `${base}/webhooks`, { url: 'not a url', events: ['run.*'] });
          assert.equal(badUrl.status, 400);
          assert.equal(badUrl.body.code, 'BAD_REQUEST');
          assert.match(badUrl.body.message, /^url: /);
          const ftp = await call(url, 'POST', `${base}/webhooks`, { url: 'ftp://example.com/x', events: ['run.*'] });
          assert.equal(ftp.status, 400);
          assert.match(ftp.body.message, /url: must be an http/);
          const badPattern = await call(url, 'POST', `${base}/webhooks`, { url: receiver.url, events: ['run.*', 'Run..x'] });
          assert.equal(badPattern.status, 400);
          assert.match(badPattern.body.message, /events\.1: /);
          const noEvents = await call(url, 'POST', `${base}/webhooks`, { url: receiver.url, events: [] });
          assert.equal(noEvents.status, 400);
          assert.match(noEvents.body.message, /events: /);
          const shortSecret = await call(url, 'POST', `${base}/webhooks`, { url: receiver.url, events: ['*'], secret: 'short' });
          assert.equal(shortSecret.status, 400);
          assert.match(shortSecret.body.message, /secret: /);
          assert.ok(!shortSecret.text.includes('short'), 'the submitted secret is not echoed');
          const extra = await call(url, 'POST', `${base}/webhooks`, { url: receiver.url, events: ['*'], colour: 'red' });
          assert.equal(extra.status, 400);

          const created = await call(url, 'POST', `${base}/webhooks`, { url: receiver.url, events: ['run.*'] });
          assert.equal(created.status, 201, created.text);
          const secret: string = created.body.secret;
          assert.match(secret, /^whsec_[A-Za-z0-9_-]{32}$/);
          assert.equal(created.body.secretHint, `****${secret.slice(-4)}`);
          const id: string = created.body.id;
          const hookBase = `${base}/webhooks/${id}`;

          const list = await call(url, 'GET', `${base}/webhooks`);
          assert.equal(list.status, 200);
          assert.equal(list.body.webhooks.length, 1);
          assert.deepEqual(list.body.webhooks[0].events, ['run.*']);
          assert.equal(list.body.webhooks[0].active, true);
          const one = await call(url, 'GET', hookBase);
          assert.equal(one.status, 200);
          assert.equal(one.body.url, receiver.url);
          for (const text of [list.text, one.text]) {
            assert.ok(!text.includes(secret), 'the secret is never in a GET');
            assert.ok(!/"secret"/.test(text));
          }
          const stored = await f.db.kysely.selectFrom('webhook_subscriptions').select('secret').where('id', '=', id).executeTakeFirstOrThrow();
          assert.ok(!stored.secret.includes(secret), 'sealed at rest');

          const badPatch = await call(url, 'PATCH', hookBase, { events: ['deploy.*', ''] });
          assert.equal(badPatch.status, 400);
          assert.match(badPatch.body.message, /events\.1: /);
          assert.equal((await call(url, 'PATCH', hookBase, {})).status, 400);
          const patched = await call(url, 'PATCH', hookBase, { events: ['run.*', 'deploy.*'] });
          assert.equal(patched.status, 200, patched.text);
          assert.deepEqual(patched.body.events, ['run.*', 'deploy.*']);
          assert.equal(patched.body.secret, undefined);
          const rotated = await call(url, 'PATCH', hookBase, { rotateSecret: true });
          assert.equal(rotated.status, 200);
          const newSecret: string = rotated.body.secret;
          assert.ok(newSecret && newSecret !== secret);
          assert.ok(!(await call(url, 'GET', hookBase)).text.includes(newSecret));

          const ping = await call(url, 'POST', `${hookBase}/ping`);
          assert.equal(ping.status, 202, ping.text);
          assert.equal(ping.body.eventType, 'ping');
          const pinged = await eventually(() => receiver.requests.find((r) => r.headers['x-slipway-event'] === 'ping'), 'the ping');
          assert.equal(pinged.headers['x-slipway-delivery'], ping.body.id);
          const pingTimestamp = String(pinged.headers['x-slipway-timestamp']);
          assert.equal(pinged.headers['x-slipway-signature-256'], expectedSignature(newSecret, pingTimestamp, pinged.body), 'signed with the rotated secret');
          assert.equal(JSON.parse(pinged.body).data.webhook.id, id);

          receiver.behave(() => 500);
          await bus.publish(ns, 'run.failed', { run: 1 });
          await bus.publish(ns, 'artefact.created', { v: 1 });
          const deliveries = await eventually(async () => {
            const answer = await call(url, 'GET', `${hookBase}/deliveries?limit=10`);
            const d = answer.body.deliveries.find((x: { eventType: string }) => x.eventType === 'run.failed');
            return d && d.status === 'failed' && answer.body.deliveries;
          }, 'the failed delivery', 15_000);
          assert.equal(deliveries.length, 2, 'the ping and run.failed');
          assert.equal(deliveries[0].eventType, 'run.failed', 'newest first');
          assert.equal(deliveries[0].log.length, 4);
          assert.equal((await call(url, 'GET', `${hookBase}/deliveries?limit=0`)).status, 400);
          assert.equal((await call(url, 'GET', `${hookBase}/deliveries?status=nope`)).status, 400);

          receiver.behave(() => 200);
          const redo = await call(url, 'POST', `${hookBase}/deliveries/${deliveries[0].id}/redeliver`);
          assert.equal(redo.status, 202, redo.text);
          await eventually(async () => (await call(url, 'GET', `${hookBase}/deliveries/${redo.body.id}`)).body.status === 'succeeded', 'the redelivery');
          assert.equal((await call(url, 'POST', `${hookBase}/deliveries/whd_nope/redeliver`)).status, 404);
          assert.equal((await call(url, 'GET', `${base}/webhooks/wh_nope`)).status, 404);
          assert.equal((await call(url, 'GET', `/api/v1/namespaces/other/webhooks/${id}`)).status, 404);

          const events = await call(url, 'GET', `${base}/events`);
          assert.equal(events.status, 200);
          assert.deepEqual(events.body.events.map((e: { type: string }) => e.type), ['run.failed', 'artefact.created'], 'pings are not in the feed');
          const filtered = await call(url, 'GET', `${base}/events?type=artefact.*`);
          assert.deepEqual(filtered.body.events.map((e: { type: string }) => e.type), ['artefact.created']);
          const after = await call(url, 'GET', `${base}/events?after=${events.body.events[0].id}`);
          assert.deepEqual(after.body.events.map((e: { type: string }) => e.type), ['artefact.created']);
          const badType = await call(url, 'GET', `${base}/events?type=RUN`);
          assert.equal(badType.status, 400);
          assert.match(badType.body.message, /^type: /);
          assert.equal((await call(url, 'GET', `${base}/events?after=${encodeURIComponent('x y')}`)).status, 400);

          assert.equal((await call(url, 'DELETE', hookBase)).status, 204);
          assert.equal((await call(url, 'GET', hookBase)).status, 404);
          assert.equal((await f.db.kysely.selectFrom('webhook_deliveries').select('id').where('subscription_id', '=', id).execute()).length, 0);
        } finally {
          await app.close();
        }
      });
    });

    test('SSE: live events, replay after Last-Event-ID, type filter, heartbeat, ended by server close', { timeout: 30_000 }, async () => {
      await withFixture(dialect, async (f) => {
        const bus = await f.bus();
        const { app, url } = await startApp(bus, { heartbeatMs: 200, pollMs: 100 });
        let closed = false;
        try {
          const streamUrl = `${url}/api/v1/namespaces/${ns}/events/stream`;
          const live = readSse(streamUrl);
          const runsOnly = readSse(`${streamUrl}?type=run.*`);
          assert.equal(await live.status, 200);
          assert.equal(await runsOnly.status, 200);
          await sleep(100);
          const e1 = await bus.publish(ns, 'run.queued', { n: 1 });
          const e2 = await bus.publish(ns, 'deploy.succeeded', { n: 2 });
          await bus.publish('elsewhere', 'run.queued', { n: 0 });
          const e3 = await bus.publish(ns, 'run.succeeded', { n: 3 });
          const dataFrames = (s: { frames: SseFrame[] }) => s.frames.filter((x) => x.id);
          await eventually(() => dataFrames(live).length >= 3 && dataFrames(runsOnly).length >= 2, 'live frames');
          assert.deepEqual(dataFrames(live).map((x) => [x.id, x.event]), [[e1.id, 'run.queued'], [e2.id, 'deploy.succeeded'], [e3.id, 'run.succeeded']]);
          assert.deepEqual(JSON.parse(dataFrames(live)[1]!.data!), e2);
          assert.deepEqual(dataFrames(runsOnly).map((x) => x.id), [e1.id, e3.id]);
          await eventually(() => live.frames.some((x) => x.comment === 'keep-alive'), 'a heartbeat');
          live.abort();
          runsOnly.abort();

          // An event written by another replica (not through this bus) arrives by the poll.
          const other = await f.bus({}, true);
          const follower = readSse(streamUrl);
          await sleep(100);
          const e4 = await other.publish(ns, 'run.failed', { n: 4 });
          await eventually(() => dataFrames(follower).some((x) => x.id === e4.id), 'the other replica\'s event');
          await sleep(300);
          assert.equal(dataFrames(follower).filter((x) => x.id === e4.id).length, 1, 'sent once');
          follower.abort();

          // Resume: everything after the last seen id is replayed, then live continues.
          const resumed = readSse(streamUrl, { 'last-event-id': e1.id });
          await eventually(() => dataFrames(resumed).length >= 3, 'the replay');
          const e5 = await bus.publish(ns, 'run.started', { n: 5 });
          await eventually(() => dataFrames(resumed).length >= 4, 'live after the replay');
          await sleep(300);
          assert.deepEqual(dataFrames(resumed).map((x) => x.id), [e2.id, e3.id, e4.id, e5.id]);
          resumed.abort();
          const byQuery = readSse(`${streamUrl}?after=${e3.id}&type=run.*`);
          await eventually(() => dataFrames(byQuery).length >= 2, 'the replay by ?after');
          assert.deepEqual(dataFrames(byQuery).map((x) => x.id), [e4.id, e5.id]);
          const badFilter = await call(url, 'GET', `/api/v1/namespaces/${ns}/events/stream?type=RUN`);
          assert.equal(badFilter.status, 400);

          // A closing server ends open streams, and close() does not hang on them.
          const started = Date.now();
          await app.close();
          closed = true;
          assert.ok(Date.now() - started < 5000);
          await byQuery.ended;
        } finally {
          if (!closed) await app.close();
        }
      });
    });
  });
}
