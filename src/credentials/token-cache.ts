/**
 * @module credentials/token-cache
 * Keeps exchanged registry logins per registry id so a burst of pulls or CI jobs costs one
 * vendor call: a login is reused until `refreshMarginMs` (5 minutes) before it expires, and
 * concurrent callers for the same id share one in-flight exchange. Logins without an expiry
 * (basic, SWR, ACR, OCIR) are computed locally and cheaply, so they are not kept: a change to
 * the stored material then takes effect at once.
 */
import type { RegistryLogin } from './material.js';

export interface TokenCacheOptions {
  /** Clock in epoch milliseconds (tests move it). */
  now?: () => number;
  /** Refresh this long before expiry (default 5 minutes). */
  refreshMarginMs?: number;
}

export const DEFAULT_REFRESH_MARGIN_MS = 5 * 60_000;

export class TokenCache {
  readonly #now: () => number;
  readonly #margin: number;
  readonly #logins = new Map<string, RegistryLogin & { expiresAt: number }>();
  readonly #inFlight = new Map<string, Promise<RegistryLogin>>();
  // Bumped by invalidate(): an exchange started before it must not fill the cache after it.
  readonly #generation = new Map<string, number>();

  constructor(options: TokenCacheOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#margin = options.refreshMarginMs ?? DEFAULT_REFRESH_MARGIN_MS;
  }

  /**
   * The login for `registryId`: the cached one while it is fresh, else the result of
   * `exchange()`, which runs at most once at a time per id. A failed exchange is not cached;
   * every caller waiting on it gets the same error.
   */
  get(registryId: string, exchange: () => Promise<RegistryLogin>): Promise<RegistryLogin> {
    const cached = this.#logins.get(registryId);
    if (cached) {
      if (this.#fresh(cached.expiresAt)) return Promise.resolve({ ...cached });
      this.#logins.delete(registryId);
    }
    const pending = this.#inFlight.get(registryId);
    if (pending) return pending.then((login) => ({ ...login }));

    const generation = this.#generation.get(registryId) ?? 0;
    // Promise.resolve().then(): a synchronous throw in `exchange` becomes a rejection too.
    const run: Promise<RegistryLogin> = Promise.resolve()
      .then(exchange)
      .then((login) => {
        if (login.expiresAt !== undefined && this.#fresh(login.expiresAt) && (this.#generation.get(registryId) ?? 0) === generation) {
          this.#logins.set(registryId, { ...login, expiresAt: login.expiresAt });
        }
        return login;
      })
      .finally(() => {
        if (this.#inFlight.get(registryId) === run) this.#inFlight.delete(registryId);
      });
    this.#inFlight.set(registryId, run);
    return run.then((login) => ({ ...login }));
  }

  /** Drops every cached login (notifications from other replicas may have been missed). */
  clear(): void {
    for (const id of new Set([...this.#logins.keys(), ...this.#inFlight.keys()])) this.invalidate(id);
  }

  /** Forgets the login of `registryId` (its material changed or the registry was deleted). */
  invalidate(registryId: string): void {
    this.#logins.delete(registryId);
    this.#inFlight.delete(registryId);
    this.#generation.set(registryId, (this.#generation.get(registryId) ?? 0) + 1);
  }

  /** Number of logins currently kept (expired ones are dropped lazily). */
  get size(): number {
    return this.#logins.size;
  }

  #fresh(expiresAt: number): boolean {
    return this.#now() < expiresAt - this.#margin;
  }
}
