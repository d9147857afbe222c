/**
 * @module credentials/exchange
 * Turns stored long-lived registry material into the login `docker login` (or a CI job) uses.
 * Only ECR and Google need a vendor call; the other types are derived locally:
 *
 *   basic  username/password as stored
 *   swr    `{region}@{AK}` / hex HMAC-SHA256(SK, AK)              (swr.ts)
 *   ecr    GetAuthorizationToken → 12-hour token                 (ecr.ts, @aws-sdk/client-ecr)
 *   gcr    service-account key → 1-hour OAuth2 access token       (google.ts, google-auth-library)
 *   gar    same as gcr
 *   acr    service principal client id / secret, which Azure Container Registry accepts
 *          directly as a docker login (no AAD → ACR refresh-token exchange needed)
 *   ocir   `{tenancy-namespace}/{user}` / auth token as stored
 *
 * AWS and Google cannot be reached from the machines this project is developed and tested on:
 * the tests point the real SDK code at local servers through `ecrEndpoint` and `googleTokenUrl`.
 */
import { exchangeEcr } from './ecr.js';
import { CredentialError } from './errors.js';
import { exchangeGoogle } from './google.js';
import type { RegistryLogin, StoredCredential } from './material.js';
import { swrLogin } from './swr.js';

export interface ExchangeOptions {
  /** ECR API endpoint override (default: the region's public endpoint). */
  ecrEndpoint?: string;
  /** Google OAuth2 token endpoint override (default `https://oauth2.googleapis.com/token`). */
  googleTokenUrl?: string;
  /** Per-request timeout for vendor calls in milliseconds (default 15 s). */
  timeoutMs?: number;
}

/**
 * The short-lived (or, for locally derived types, long-lived) login for `material`.
 * Throws `CredentialError` (`CREDENTIAL_INVALID`, `CREDENTIAL_REJECTED`,
 * `CREDENTIAL_EXCHANGE_FAILED`); messages never contain secrets.
 */
export async function exchangeCredential(material: StoredCredential, options: ExchangeOptions = {}): Promise<RegistryLogin> {
  switch (material.type) {
    case 'basic':
      return material.expiresAt === undefined
        ? { username: material.username, password: material.password }
        : { username: material.username, password: material.password, expiresAt: material.expiresAt };
    case 'swr':
      try {
        return swrLogin(material);
      } catch (error) {
        throw new CredentialError('CREDENTIAL_INVALID', (error as Error).message);
      }
    case 'ecr':
      return exchangeEcr(material, { endpoint: options.ecrEndpoint, timeoutMs: options.timeoutMs });
    case 'gcr':
    case 'gar':
      return exchangeGoogle(material.serviceAccountKey, { tokenUrl: options.googleTokenUrl, timeoutMs: options.timeoutMs });
    case 'acr':
      return { username: material.clientId, password: material.clientSecret };
    case 'ocir':
      return { username: `${material.tenancyNamespace}/${material.username}`, password: material.authToken };
    default: {
      const unknown: never = material;
      throw new CredentialError('CREDENTIAL_INVALID', `unknown credential type ${JSON.stringify((unknown as { type?: unknown }).type)}`);
    }
  }
}

export { TokenCache, DEFAULT_REFRESH_MARGIN_MS, type TokenCacheOptions } from './token-cache.js';
