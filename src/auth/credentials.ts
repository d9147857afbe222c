/**
 * @module auth/credentials
 * Checks what a caller presents — user + password, or an API key in the password field (any
 * user name, as registry clients always send one) — with failed attempts throttled per account
 * and per address and every outcome audited. Never logs or records the secret itself.
 */
import type { AccessService, Principal } from './access.js';
import type { AuditLog } from './audit.js';
import type { FailureLimiter } from './rate-limit.js';

export class TooManyAttemptsError extends Error {
  constructor(readonly retryAfterSeconds: number) {
    super(`too many failed logins; retry in ${retryAfterSeconds} s`);
  }
}

export class Credentials {
  constructor(private readonly deps: { access: AccessService; audit: AuditLog; limiter: FailureLimiter }) {}

  /** Decodes an `Authorization: Basic …` header and checks it; null when wrong. */
  async basic(header: string, address: string): Promise<Principal | null> {
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return null;
    return this.check(decoded.slice(0, colon), decoded.slice(colon + 1), address);
  }

  async check(username: string, secret: string, address: string): Promise<Principal | null> {
    const { access, audit, limiter } = this.deps;
    const accountKey = `account:${username}`;
    const addressKey = `address:${address}`;
    const wait = Math.max(limiter.blockedFor(accountKey), limiter.blockedFor(addressKey, limiter.maxFailures * 5));
    if (wait > 0) {
      await audit.record({ actor: username, action: 'login', outcome: 'denied', address, detail: { reason: 'rate-limited' } });
      throw new TooManyAttemptsError(Math.ceil(wait / 1000));
    }
    const viaKey = access.isKey(secret);
    const principal = viaKey ? await access.checkKey(secret) : await access.checkPassword(username, secret);
    if (!principal) {
      limiter.fail(accountKey);
      limiter.fail(addressKey);
      await audit.record({ actor: username, action: 'login', outcome: 'failed', address, detail: { method: viaKey ? 'api-key' : 'password' } });
      return null;
    }
    limiter.succeed(accountKey);
    return principal;
  }
}
