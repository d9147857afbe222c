/**
 * @module functions/pool
 * The instances of one function revision and the autoscaler that sizes them.
 *
 * A request leases the ready instance with the fewest in-flight requests below the
 * per-instance concurrency. When every instance is full it waits in a queue (bounded by the
 * request's own deadline) while new instances start, up to `maxInstances`; enough start at
 * once to cover the queue, so a burst against a function at zero is absorbed, not refused.
 * Instances idle for `idleMs` stop, down to `minInstances`. An instance that exits on its own
 * is replaced when the pool is below its minimum; repeated start failures put the pool into a
 * short back-off during which requests fail at once with the reason (502, not a hang).
 */
import { SlipwayError } from '../http/error-catalog.js';
import http from 'node:http';
import { InstanceExitedError, type InstanceEndpoint, type InstanceSpec, type LogFn, type RuntimeDriver } from './runtime-driver.js';

/** What the pool needs of a RuntimeDriver. */
export type InstanceDriver = Pick<RuntimeDriver, 'start' | 'waitForPort' | 'stop'>;

export interface PoolSettings {
  minInstances: number;
  maxInstances: number;
  concurrency: number;
  idleMs: number;
  /** Start → listening on 8000, and `POST /init`, each within this. */
  startTimeoutMs: number;
}

/** Everything of an instance but its id. */
export type InstanceTemplate = Omit<InstanceSpec, 'id' | 'onExit'>;

export class StartError extends SlipwayError {
  constructor(message: string, readonly output: string[]) {
    super('INSTANCE_START_FAILED', message);
  }
}

/** The pool cannot serve (failing, stopped): the reason goes to the caller as 502/503. */
export class PoolUnavailableError extends SlipwayError {
  constructor(message: string, readonly kind: 'failing' | 'stopped') {
    super('POOL_UNAVAILABLE', message);
  }
}

export class QueueTimeoutError extends SlipwayError {
  constructor(message: string) {
    super('QUEUE_TIMEOUT', message);
  }
}

export interface Instance {
  id: string;
  endpoint: InstanceEndpoint;
  inFlight: number;
  served: number;
  lastUsed: number;
  state: 'ready' | 'stopping';
  /** Taken out because the proxy could not reach it: its exit is still worth reporting. */
  broken?: boolean;
}

export interface Lease {
  instance: Instance;
  /** True when this request waited for an instance to start (a cold start). */
  cold: boolean;
  release(): void;
}

interface Waiter {
  resolve(lease: Lease): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export interface PoolEvents {
  /** A line of an instance's output, or a `system` line from the pool. */
  log(instance: string, stream: 'stdout' | 'stderr' | 'system', line: string): void;
  /** An instance was added or removed. */
  changed?(): void;
  /** An instance passed its start checks `seconds` after its start began (metrics). */
  started?(seconds: number): void;
}

const backoffMs = 3000;
let sequence = 0;

export class RevisionPool {
  private readonly instances = new Map<string, Instance>();
  /** Stopping instances until their exit, so the exit of a broken one is still reported. */
  private readonly leaving = new Map<string, Instance>();
  private starting = 0;
  private readonly queue: Waiter[] = [];
  private stopped = false;
  private failure?: { message: string; until: number };
  private reaper?: NodeJS.Timeout;

  constructor(
    readonly label: string,
    private readonly driver: InstanceDriver,
    private readonly template: InstanceTemplate,
    private settings: PoolSettings,
    private readonly events: PoolEvents,
  ) {}

  get size(): number { return this.instances.size; }
  /** Instances by state, for metrics: starting, ready, stopping. */
  states(): { starting: number; ready: number; stopping: number } {
    let ready = 0;
    let stopping = 0;
    for (const i of this.instances.values()) if (i.state === 'ready') ready++; else stopping++;
    return { starting: this.starting, ready, stopping };
  }
  /** The serving instances, for operators (and benchmarks calling one directly). */
  list(): Array<{ id: string; address: string; inFlight: number; served: number; idleMs: number }> {
    const now = Date.now();
    return [...this.instances.values()].filter((i) => i.state === 'ready')
      .map((i) => ({ id: i.id, address: `${i.endpoint.address}:${i.endpoint.port}`, inFlight: i.inFlight, served: i.served, idleMs: i.inFlight ? 0 : now - i.lastUsed }));
  }
  get pending(): number { return this.queue.length; }
  get startingCount(): number { return this.starting; }
  get inFlight(): number {
    let n = 0;
    for (const i of this.instances.values()) n += i.inFlight;
    return n;
  }

  /** Starts the idle reaper and the minimum instances. */
  open(): void {
    this.reaper ??= setInterval(() => this.reap(), Math.min(1000, Math.max(100, this.settings.idleMs / 4)));
    this.reaper.unref();
    this.fillMinimum();
  }

  /**
   * Starts one instance and runs its start checks (port 8000, then `POST /init`); on success it
   * joins the pool. Throws StartError with the instance's own last output lines on failure.
   */
  async startInstance(): Promise<Instance> {
    if (this.stopped) throw new PoolUnavailableError('function revision stopped', 'stopped');
    this.starting++;
    const startedAt = performance.now();
    const id = `${this.label}-${(++sequence).toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`;
    const output: string[] = [];
    const onLog: LogFn = (stream, line) => {
      output.push(line);
      if (output.length > 40) output.shift();
      this.events.log(id, stream, line);
    };
    let endpoint: InstanceEndpoint | undefined;
    let exited = false;
    try {
      endpoint = await this.driver.start({ ...this.template, id, onExit: (info) => { exited = true; this.onExit(id, info); } }, onLog);
      const deadline = Date.now() + this.settings.startTimeoutMs;
      try {
        await this.driver.waitForPort(endpoint.address, 8000, this.settings.startTimeoutMs);
      } catch (error) {
        // Let the last output of a crashing process arrive before reporting it.
        await new Promise((r) => setTimeout(r, 50));
        throw new StartError(exited || error instanceof InstanceExitedError
          ? 'the instance exited before it listened on port 8000'
          : `the instance did not listen on port 8000 within ${Math.round(this.settings.startTimeoutMs / 1000)} s`, output);
      }
      const init = await callInit(endpoint.address, Math.max(1000, deadline - Date.now()));
      if (!init.ok) throw new StartError(init.reason, output);
      if (this.stopped) throw new PoolUnavailableError('function revision stopped', 'stopped');
      const instance: Instance = { id, endpoint, inFlight: 0, served: 0, lastUsed: Date.now(), state: 'ready' };
      this.instances.set(id, instance);
      this.failure = undefined;
      this.events.log(id, 'system', `instance ready at ${endpoint.address}:8000`);
      this.events.changed?.();
      this.events.started?.((performance.now() - startedAt) / 1000);
      return instance;
    } catch (error) {
      if (endpoint) await this.driver.stop(id, { graceMs: 200 }).catch(() => undefined);
      if (error instanceof StartError) {
        this.events.log(id, 'system', `start failed: ${error.message}`);
        return Promise.reject(new StartError(error.message, [...output]));
      }
      throw error instanceof PoolUnavailableError ? error : new StartError((error as Error).message, [...output]);
    } finally {
      this.starting--;
    }
  }

  /** A lease on the least busy instance; waits (until `deadline`) while instances start. */
  acquire(deadline: number): Promise<Lease> {
    if (this.stopped) return Promise.reject(new PoolUnavailableError('function revision stopped', 'stopped'));
    const free = this.leastBusy();
    if (free) return Promise.resolve(this.lease(free, false));
    if (this.failure && this.failure.until > Date.now() && this.instances.size === 0) {
      return Promise.reject(new PoolUnavailableError(this.failure.message, 'failing'));
    }
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = {
        resolve, reject,
        timer: setTimeout(() => {
          const at = this.queue.indexOf(waiter);
          if (at >= 0) this.queue.splice(at, 1);
          reject(new QueueTimeoutError('no instance became free before the timeout'));
        }, Math.max(0, deadline - Date.now())),
      };
      this.queue.push(waiter);
      this.scaleUp();
    });
  }

  private leastBusy(): Instance | undefined {
    let best: Instance | undefined;
    for (const instance of this.instances.values()) {
      if (instance.state !== 'ready' || instance.inFlight >= this.settings.concurrency) continue;
      if (!best || instance.inFlight < best.inFlight) best = instance;
    }
    return best;
  }

  private lease(instance: Instance, cold: boolean): Lease {
    instance.inFlight++;
    let released = false;
    return {
      instance,
      cold,
      release: () => {
        if (released) return;
        released = true;
        instance.inFlight--;
        instance.served++;
        instance.lastUsed = Date.now();
        this.dispatch();
      },
    };
  }

  /** Hands free slots to queued requests, oldest first. */
  private dispatch(): void {
    while (this.queue.length > 0) {
      const instance = this.leastBusy();
      if (!instance) return;
      const waiter = this.queue.shift()!;
      clearTimeout(waiter.timer);
      waiter.resolve(this.lease(instance, true));
    }
  }

  /** Starts enough instances to cover the queue (each brings `concurrency` slots), up to the max. */
  private scaleUp(): void {
    if (this.stopped) return;
    const needed = Math.ceil(this.queue.length / this.settings.concurrency) - this.starting;
    const room = this.settings.maxInstances - this.instances.size - this.starting;
    for (let i = 0; i < Math.min(needed, room); i++) this.launch();
  }

  /** Starts one instance in the background; failures fail the waiting requests when nothing else can serve them. */
  private launch(): void {
    this.startInstance().then(() => this.dispatch(), (error: Error) => {
      if (error instanceof PoolUnavailableError) return;
      const message = error.message;
      this.failure = { message, until: Date.now() + backoffMs };
      if (this.instances.size === 0 && this.starting === 0) {
        for (const waiter of this.queue.splice(0)) {
          clearTimeout(waiter.timer);
          waiter.reject(new PoolUnavailableError(message, 'failing'));
        }
      }
    });
  }

  private onExit(id: string, info: { code: number | null; signal: NodeJS.Signals | null }): void {
    const how = info.code !== null ? `code ${info.code}` : `signal ${info.signal}`;
    const leaving = this.leaving.get(id);
    if (leaving) {
      this.leaving.delete(id);
      if (leaving.broken) this.events.log(id, 'system', `instance exited on its own (${how})`);
      return;
    }
    const instance = this.instances.get(id);
    if (!instance) return;
    this.instances.delete(id);
    this.events.changed?.();
    if (instance.state === 'stopping') return;
    this.events.log(id, 'system', `instance exited on its own (${how})`);
    void this.driver.stop(id, { graceMs: 0 }).catch(() => undefined);
    this.fillMinimum();
    if (this.queue.length > 0) this.scaleUp();
  }

  private fillMinimum(): void {
    if (this.stopped) return;
    if (this.failure && this.failure.until > Date.now()) {
      setTimeout(() => this.fillMinimum(), this.failure.until - Date.now()).unref();
      return;
    }
    for (let n = this.instances.size + this.starting; n < this.settings.minInstances; n++) this.launch();
  }

  /** Stops instances idle longer than `idleMs`, most idle first, down to the minimum. */
  private reap(): void {
    const now = Date.now();
    const idle = [...this.instances.values()]
      .filter((i) => i.state === 'ready' && i.inFlight === 0 && now - i.lastUsed >= this.settings.idleMs)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    let surplus = this.instances.size - this.settings.minInstances;
    for (const instance of idle) {
      if (surplus-- <= 0) break;
      void this.stopInstance(instance, 'idle');
    }
  }

  private async stopInstance(instance: Instance, why: string): Promise<void> {
    instance.state = 'stopping';
    this.leaving.set(instance.id, instance);
    this.events.log(instance.id, 'system', `instance stopping (${why})`);
    // Drain: the instance takes no new requests; wait (bounded) for those it serves.
    const drainUntil = Date.now() + 30_000;
    while (instance.inFlight > 0 && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
    this.instances.delete(instance.id);
    this.events.changed?.();
    await this.driver.stop(instance.id, { graceMs: 1000 }).catch(() => undefined);
    this.leaving.delete(instance.id);
  }

  /**
   * An instance the proxy could not reach (connection refused or reset before an answer): it
   * takes no more requests and is replaced; it is usually a process that just died.
   */
  markBroken(instance: Instance): void {
    if (instance.state !== 'ready' || !this.instances.has(instance.id)) return;
    instance.broken = true;
    void this.stopInstance(instance, 'unreachable').then(() => this.fillMinimum());
  }

  /** New limits (a revision's settings never change, but min/max may be tuned live). */
  update(settings: PoolSettings): void {
    this.settings = settings;
    this.fillMinimum();
  }

  /** Stops taking requests, lets running ones finish (up to `graceMs`), stops every instance. */
  async close(graceMs = 30_000): Promise<void> {
    this.stopped = true;
    if (this.reaper) clearInterval(this.reaper);
    for (const waiter of this.queue.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(new PoolUnavailableError('function revision stopped', 'stopped'));
    }
    const until = Date.now() + graceMs;
    while (this.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    while (this.starting > 0 && Date.now() < until + 5000) await new Promise((r) => setTimeout(r, 20));
    await Promise.all([...this.instances.values()].map((instance) => {
      instance.state = 'stopping';
      this.instances.delete(instance.id);
      return this.driver.stop(instance.id, { graceMs: 500 }).catch(() => undefined);
    }));
    this.events.changed?.();
  }
}

/** `POST /init`: 2xx is done, 404 means the image has none, anything else fails the start. */
function callInit(address: string, timeoutMs: number): Promise<{ ok: true } | { ok: false; reason: string }> {
  return new Promise((resolve) => {
    const request = http.request({ host: address, port: 8000, method: 'POST', path: '/init', headers: { 'content-length': 0 }, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (c: Buffer) => { if (size < 2048) { chunks.push(c); size += c.length; } });
      response.on('end', () => {
        clearTimeout(timer);
        const status = response.statusCode ?? 0;
        if ((status >= 200 && status < 300) || status === 404) resolve({ ok: true });
        else resolve({ ok: false, reason: `POST /init answered ${status}: ${Buffer.concat(chunks).toString('utf8').slice(0, 500)}` });
      });
      response.on('error', (error) => resolve({ ok: false, reason: `POST /init failed: ${error.message}` }));
    });
    const timer = setTimeout(() => {
      request.destroy();
      resolve({ ok: false, reason: `POST /init did not answer within ${Math.round(timeoutMs / 1000)} s` });
    }, timeoutMs);
    request.on('error', (error) => {
      clearTimeout(timer);
      resolve({ ok: false, reason: `POST /init failed: ${error.message}` });
    });
    request.end();
  });
}
