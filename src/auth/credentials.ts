/**
 * @module auth/credentials
 * Checks what a caller presents — user + password, or an API key in the password field (any
 * user name, as registry clients always send one) — with failed attempts throttled per account
 * and per address and every outcome audited. Never logs or records the secret itself.
 * A password that passed scrypt is remembered briefly (`VerifiedLogins`): the next request with
 * the same pair costs an HMAC and one point select instead of ~150 ms of CPU. Concurrent first
 * requests with one pair share one scrypt. API keys are hashed with sha256 and checked against
 * the db on every request (revocation and expiry apply at once), so they need no cache.
 */
import { SlipwayError } from '../http/error-catalog.js';
import type { AccessService, Principal } from './access.js';
import type { AuditLog } from './audit.js';
import type { FailureLimiter } from './rate-limit.js';
import { VerifiedLogins } from './verified-logins.js';

export class TooManyAttemptsError extends SlipwayError {
  constructor(readonly retryAfterSeconds: number) {
    super('TOO_MANY_REQUESTS', `too many failed logins; retry in ${retryAfterSeconds} s`);
  }
}

export class Credentials {
  /** Password checks in flight, by credential fingerprint: concurrent first requests share one scrypt. */
  private readonly inFlight = new Map<string, Promise<Principal | null>>();
  readonly logins: VerifiedLogins;

  constructor(private readonly deps: { access: AccessService; audit: AuditLog; limiter: FailureLimiter; logins?: VerifiedLogins }) {
    this.logins = deps.logins ?? new VerifiedLogins();
    deps.access.onCredentialChange((principalId) => this.logins.forgetPrincipal(principalId));
  }

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
    const principal = viaKey ? await access.checkKey(secret) : await this.checkPassword(username, secret);
    if (!principal) {
      limiter.fail(accountKey);
      limiter.fail(addressKey);
      await audit.record({ actor: username, action: 'login', outcome: 'failed', address, detail: { method: viaKey ? 'api-key' : 'password' } });
      return null;
    }
    limiter.succeed(accountKey);
    return principal;
  }

  private async checkPassword(username: string, password: string): Promise<Principal | null> {
    const { access } = this.deps;
    const fingerprint = this.logins.fingerprint(username, password);
    const remembered = this.logins.lookup(fingerprint);
    if (remembered) {
      const principal = await access.confirmVerified(remembered.principalId, remembered.proof);
      if (principal && principal.name === username) return principal;
      this.logins.forget(fingerprint); // changed password or deleted user: check afresh (and fail)
    }
    const pending = this.inFlight.get(fingerprint);
    if (pending) return pending;
    const check = access.verifyPasswordOf(username, password).then((verified) => {
      if (!verified) return null;
      this.logins.remember(fingerprint, verified.principal.id, verified.storedHash);
      return verified.principal;
    }).finally(() => this.inFlight.delete(fingerprint));
    this.inFlight.set(fingerprint, check);
    return check;
  }
}
