/**
 * @module auth/verified-logins
 * Remembers, for a short time, that a user name + password pair passed scrypt, so clients that
 * send HTTP basic on every request (curl scripts, CI jobs, some registry clients) pay the
 * ~150 ms hash once, not per request. What is kept holds nothing an attacker could use:
 * - the map key is an HMAC of the pair under a random per-process key (never the password);
 * - the entry holds the principal's id and a hash of the stored password hash it was checked
 *   against, which the caller compares with the row on every hit, so a password change or a
 *   deleted user (on this replica or another) stops the entry from matching at once.
 * Only successes are stored, so wrong guesses cannot fill it and always pay full scrypt.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';

export interface VerifiedLogin {
  principalId: string;
  /** sha256 of the stored password hash the password was verified against. */
  proof: string;
  expiresAt: number;
}

export class VerifiedLogins {
  private readonly secret = randomBytes(32);
  /** Insertion-ordered: the first entry is the oldest, evicted when full. */
  private readonly entries = new Map<string, VerifiedLogin>();

  constructor(private readonly ttlMs = 60_000, private readonly maxEntries = 10_000) {}

  get enabled(): boolean {
    return this.ttlMs > 0;
  }

  /** The map key of a credential: length-prefixed so "ab"+"c" and "a"+"bc" differ. */
  fingerprint(username: string, password: string): string {
    return createHmac('sha256', this.secret).update(`${username.length}:${username}\0${password}`).digest('base64url');
  }

  lookup(fingerprint: string, now = Date.now()): VerifiedLogin | undefined {
    const entry = this.entries.get(fingerprint);
    if (!entry) return undefined;
    if (entry.expiresAt <= now) {
      this.entries.delete(fingerprint);
      return undefined;
    }
    return entry;
  }

  remember(fingerprint: string, principalId: string, storedHash: string, now = Date.now()): void {
    if (!this.enabled) return;
    this.entries.delete(fingerprint);
    while (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(fingerprint, { principalId, proof: proofOf(storedHash), expiresAt: now + this.ttlMs });
  }

  forget(fingerprint: string): void {
    this.entries.delete(fingerprint);
  }

  /** Drops every entry of a principal (its password changed, or it was deleted). */
  forgetPrincipal(principalId: string): void {
    for (const [fingerprint, entry] of this.entries) if (entry.principalId === principalId) this.entries.delete(fingerprint);
  }

  get size(): number {
    return this.entries.size;
  }
}

/** What an entry keeps of the stored hash: enough to notice it changed, nothing to guess against. */
export function proofOf(storedHash: string): string {
  return createHash('sha256').update(storedHash).digest('base64url');
}
