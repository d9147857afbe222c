/**
 * @module auth/tokens
 * Registry bearer tokens (Docker token-auth JWTs with an `access` claim) and refresh tokens,
 * signed ES256. The signing keys live in the db (`token_signing_keys`, each private JWK sealed
 * by the vault), so every replica on one database signs and verifies with the same keys. Each
 * key has a `kid`; the newest signs. `rotate()` (or `slipway auth rotate-token-key`) adds a key
 * and keeps the older ones for verification; a server re-reads the keys every few seconds
 * before signing and at once when it meets an unknown `kid`, so a rotation on one replica
 * reaches all of them without a restart. The first start creates the first key race-free
 * (under a db lock: insert if absent, then read), importing a `<dataDir>/token-keys.json` of
 * an older version so its tokens stay valid.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { SignJWT, exportJWK, generateKeyPair, importJWK, jwtVerify, decodeProtectedHeader, type JWK, type CryptoKey } from 'jose';
import type { Database } from '../db/db.js';
import type { Vault } from '../vault/vault.js';
import type { AccessScope } from './scope.js';

const algorithm = 'ES256';
/** Old keys verify tokens for this long after a rotation (longer than any token lives). */
const retiredKeyLifetimeMs = 31 * 24 * 3_600_000;
/** How often a signing server re-reads the keys. */
const keyFileRecheckMs = 5_000;
/** At most one reload for unknown kids per this period (forged kids cost no db round trip each). */
const unknownKidReloadMs = 250;

interface StoredKey {
  kid: string;
  jwk: JWK;
  createdAt: number;
}

interface KeyFile {
  current: string;
  keys: StoredKey[];
}

/** Where the signing keys are kept: the db, sealed by the vault. */
export interface TokenKeyStore {
  /** Every key, oldest first; the last one signs. */
  read(): Promise<StoredKey[]>;
  /** Adds `key` (with `onlyIfEmpty`: only when no key exists yet) and drops keys retired before `retiredBefore`. */
  add(key: StoredKey, options: { onlyIfEmpty?: boolean; retiredBefore?: number }): Promise<void>;
}

const sealContext = (kid: string) => `token-signing-key:${kid}`;

export function dbTokenKeyStore(db: Database, vault: Vault): TokenKeyStore {
  return {
    async read() {
      const rows = await db.kysely.selectFrom('token_signing_keys').selectAll().orderBy('created_at').orderBy('kid').execute();
      return Promise.all(rows.map(async (row) => ({
        kid: row.kid, createdAt: row.created_at, jwk: JSON.parse(await vault.open(row.sealed_jwk, sealContext(row.kid))) as JWK,
      })));
    },
    async add(key, options) {
      const sealed = await vault.seal(JSON.stringify(key.jwk), sealContext(key.kid));
      await db.write(async (trx) => {
        await db.lockKey(trx, 'token-signing-keys');
        if (options.onlyIfEmpty && await trx.selectFrom('token_signing_keys').select('kid').limit(1).executeTakeFirst()) return;
        await trx.insertInto('token_signing_keys').values({ kid: key.kid, sealed_jwk: sealed, created_at: key.createdAt }).execute();
        if (options.retiredBefore !== undefined) {
          await trx.deleteFrom('token_signing_keys').where('created_at', '<', options.retiredBefore).where('kid', '!=', key.kid).execute();
        }
      });
    },
  };
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
  private unknownReloadAt = 0;
  private readonly keys = new Map<string, CryptoKey>();

  constructor(private readonly options: { store: TokenKeyStore; dataDir?: string; issuer: string; service: string; ttlMs: number; refreshTtlMs: number }) {}

  /** Loads the keys; the first start creates the first one (or imports an older version's key file). */
  async init(): Promise<void> {
    try {
      await this.load();
    } catch (error) {
      // Keys this process cannot unseal (a wrong master key): the server still starts, as the
      // vault never stops a start, and signing or verifying fails with the vault's error.
      if ((error as Error).name === 'VaultError') return;
      throw error;
    }
    if (this.file) return;
    const imported = await this.legacyKeys();
    for (const key of imported) await this.options.store.add(key, { onlyIfEmpty: key === imported[0] });
    if (imported.length === 0) await this.options.store.add(await newKey(), { onlyIfEmpty: true });
    // Another replica may have won the race: whatever is stored now is what everyone uses.
    await this.load();
    if (!this.file) throw new TokenError('no token signing key');
  }

  /** Adds a new signing key; tokens signed with older ones stay valid until they expire. */
  async rotate(): Promise<string> {
    const key = await newKey();
    await this.options.store.add(key, { retiredBefore: key.createdAt - retiredKeyLifetimeMs });
    await this.load();
    return key.kid;
  }

  /** `<dataDir>/token-keys.json` of a version that kept keys in a file, current key last. */
  private async legacyKeys(): Promise<StoredKey[]> {
    if (!this.options.dataDir) return [];
    try {
      const file = JSON.parse(await readFile(path.join(this.options.dataDir, 'token-keys.json'), 'utf8')) as KeyFile;
      const current = file.keys.find((k) => k.kid === file.current);
      return [...file.keys.filter((k) => k !== current), ...(current ? [current] : [])];
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  private async load(): Promise<void> {
    const keys = await this.options.store.read();
    this.loadedAt = Date.now();
    if (keys.length === 0) return;
    this.file = { current: keys.at(-1)!.kid, keys };
    this.keys.clear();
  }

  private async key(kid: string, usage: 'sign' | 'verify'): Promise<CryptoKey | undefined> {
    let stored = this.file?.keys.find((k) => k.kid === kid);
    if (!stored && usage === 'verify' && Date.now() - this.unknownReloadAt >= unknownKidReloadMs) {
      this.unknownReloadAt = Date.now();
      await this.load(); // rotated by another replica or process
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
    // Pick up a rotation done by another replica or `slipway auth rotate-token-key`.
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
    // A rotation by another replica or process is picked up within seconds.
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

async function newKey(): Promise<StoredKey> {
  const { privateKey } = await generateKeyPair(algorithm, { extractable: true });
  return { kid: `k-${randomBytes(6).toString('hex')}`, jwk: await exportJWK(privateKey), createdAt: Date.now() };
}
