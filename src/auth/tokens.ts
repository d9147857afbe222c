/**
 * @module auth/tokens
 * Registry bearer tokens (Docker token-auth JWTs with an `access` claim) and refresh tokens,
 * signed ES256 with keys kept in `<dataDir>/token-keys.json`. Each key has a `kid`; `rotate()`
 * (or `slipway auth rotate-token-key` beside a running server) adds a new signing key and keeps
 * the old ones for verification, and a server that meets an unknown `kid` reloads the file, so
 * keys rotate without a restart.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { randomBytes } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, importJWK, jwtVerify, decodeProtectedHeader, type JWK, type CryptoKey } from 'jose';
import type { AccessScope } from './scope.js';

const algorithm = 'ES256';
/** Old keys verify tokens for this long after a rotation (longer than any token lives). */
const retiredKeyLifetimeMs = 31 * 24 * 3_600_000;
/** How often a signing server re-reads the key file. */
const keyFileRecheckMs = 5_000;

interface StoredKey {
  kid: string;
  jwk: JWK;
  createdAt: number;
}

interface KeyFile {
  current: string;
  keys: StoredKey[];
}

export interface TokenClaims {
  subject: string;
  access: AccessScope[];
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  issuedAt: string;
}

export class TokenError extends SlipwayError {
  constructor(message: string) {
    super('TOKEN_INVALID', message);
  }
}

export class TokenService {
  private file: KeyFile | undefined;
  private loadedAt = 0;
  private readonly keys = new Map<string, CryptoKey>();

  constructor(private readonly options: { dataDir: string; issuer: string; service: string; ttlMs: number; refreshTtlMs: number }) {}

  private get path(): string {
    return path.join(this.options.dataDir, 'token-keys.json');
  }

  async init(): Promise<void> {
    await this.load();
    if (!this.file) await this.rotate();
  }

  /** Adds a new signing key; tokens signed with older ones stay valid until they expire. */
  async rotate(): Promise<string> {
    await this.load();
    const { privateKey } = await generateKeyPair(algorithm, { extractable: true });
    const kid = `k-${randomBytes(6).toString('hex')}`;
    const now = Date.now();
    const keys = [...(this.file?.keys ?? []).filter((k) => now - k.createdAt < retiredKeyLifetimeMs), { kid, jwk: await exportJWK(privateKey), createdAt: now }];
    const next: KeyFile = { current: kid, keys };
    const temp = `${this.path}.${process.pid}.tmp`;
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(JSON.stringify(next));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, this.path);
    this.file = next;
    this.keys.clear();
    this.loadedAt = Date.now();
    return kid;
  }

  private async load(): Promise<void> {
    try {
      this.file = JSON.parse(await readFile(this.path, 'utf8')) as KeyFile;
      this.keys.clear();
      this.loadedAt = Date.now();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }

  private async key(kid: string, usage: 'sign' | 'verify'): Promise<CryptoKey | undefined> {
    let stored = this.file?.keys.find((k) => k.kid === kid);
    if (!stored && usage === 'verify') {
      await this.load(); // rotated by another process
      stored = this.file?.keys.find((k) => k.kid === kid);
    }
    if (!stored) return undefined;
    let key = this.keys.get(`${kid}:${usage}`);
    if (!key) {
      const jwk = usage === 'verify' ? { ...stored.jwk, d: undefined } : stored.jwk;
      key = (await importJWK(jwk, algorithm)) as CryptoKey;
      this.keys.set(`${kid}:${usage}`, key);
    }
    return key;
  }

  async currentKid(): Promise<string> {
    // Pick up a rotation done by `slipway auth rotate-token-key` in another process.
    await this.load();
    if (!this.file) throw new TokenError('no token signing key');
    return this.file.current;
  }

  async issueAccess(claims: TokenClaims): Promise<IssuedToken> {
    return this.sign({ access: claims.access }, claims.subject, this.options.ttlMs);
  }

  async issueRefresh(subject: string): Promise<string> {
    return (await this.sign({ use: 'refresh' }, subject, this.options.refreshTtlMs)).token;
  }

  private async sign(payload: Record<string, unknown>, subject: string, ttlMs: number): Promise<IssuedToken> {
    // A rotation by another process (`slipway auth rotate-token-key`) is picked up within seconds.
    if (Date.now() - this.loadedAt > keyFileRecheckMs) await this.load();
    const kid = this.file?.current ?? (await this.currentKid());
    const key = await this.key(kid, 'sign');
    if (!key) throw new TokenError('token signing key missing');
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT(payload).setProtectedHeader({ alg: algorithm, kid, typ: 'JWT' })
      .setIssuer(this.options.issuer).setAudience(this.options.service).setSubject(subject)
      .setIssuedAt(now).setNotBefore(now - 1).setExpirationTime(now + Math.ceil(ttlMs / 1000))
      .setJti(randomBytes(12).toString('base64url')).sign(key);
    return { token, expiresIn: Math.ceil(ttlMs / 1000), issuedAt: new Date(now * 1000).toISOString() };
  }

  /** Verifies signature, issuer, audience and time; throws TokenError on anything wrong. */
  async verify(token: string, use: 'access' | 'refresh'): Promise<{ subject: string; access: AccessScope[] }> {
    try {
      const { kid } = decodeProtectedHeader(token);
      const key = kid ? await this.key(kid, 'verify') : undefined;
      if (!key) throw new TokenError('token signed with an unknown key');
      const { payload } = await jwtVerify(token, key, { issuer: this.options.issuer, audience: this.options.service, algorithms: [algorithm] });
      if ((payload.use === 'refresh') !== (use === 'refresh')) throw new TokenError(`not a ${use} token`);
      return { subject: payload.sub ?? '', access: Array.isArray(payload.access) ? (payload.access as AccessScope[]) : [] };
    } catch (error) {
      if (error instanceof TokenError) throw error;
      throw new TokenError(`invalid token: ${(error as Error).message}`);
    }
  }
}
