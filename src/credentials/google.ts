/**
 * @module credentials/google
 * Google Container Registry and Artifact Registry: a service-account JSON key is exchanged for
 * a one-hour OAuth2 access token (JWT-bearer grant, RFC 7523, signed RS256 with the key) using
 * `google-auth-library`'s `JWT` client; `docker login` then takes user `oauth2accesstoken`.
 *
 * Google cannot be reached from the machines this project is developed and tested on, so the
 * tests run this exact library code against a local `node:http` server passed as `tokenUrl`.
 * google-auth-library 10 hard-codes `https://oauth2.googleapis.com/token`, so the override is a
 * request interceptor on the client's own transporter that redirects that one URL. The key
 * file's `token_uri` is deliberately ignored: it is user-supplied text, and honouring it would
 * let anyone who can store a key make Slipway POST a signed assertion to a host of their choice.
 */
import { createPrivateKey } from 'node:crypto';
import { JWT } from 'google-auth-library';
import { CredentialError, redact } from './errors.js';
import { googleServiceAccountKeySchema, type GoogleServiceAccountKey, type RegistryLogin } from './material.js';

export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
export const GOOGLE_REGISTRY_USERNAME = 'oauth2accesstoken';
const cloudPlatformScope = 'https://www.googleapis.com/auth/cloud-platform';

export interface GoogleExchangeOptions {
  /** Where to POST the JWT-bearer grant instead of Google's token endpoint (tests, proxies). */
  tokenUrl?: string;
  /** Per-request timeout in milliseconds (default 15 s). */
  timeoutMs?: number;
}

/** Parses and checks a key file given as JSON text or as an object. Never echoes the key. */
export function parseServiceAccountKey(input: string | object): GoogleServiceAccountKey {
  let value: unknown = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch {
      throw new CredentialError('CREDENTIAL_INVALID', 'Google service-account key is not valid JSON');
    }
  }
  const parsed = googleServiceAccountKeySchema.safeParse(value);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((issue) => issue.path.join('.') || '(root)'))].join(', ');
    throw new CredentialError('CREDENTIAL_INVALID', `Google service-account key is missing or has invalid fields: ${fields}`);
  }
  // Checked here so a pasted-wrong key is reported as bad material, not as a vendor failure.
  try {
    createPrivateKey(parsed.data.private_key);
  } catch {
    throw new CredentialError('CREDENTIAL_INVALID', 'Google service-account key: private_key is not a PEM private key');
  }
  return parsed.data;
}

export async function exchangeGoogle(keyInput: string | object, options: GoogleExchangeOptions = {}): Promise<RegistryLogin> {
  const key = parseServiceAccountKey(keyInput);
  const client = new JWT({
    email: key.client_email,
    key: key.private_key,
    keyId: key.private_key_id,
    scopes: [cloudPlatformScope],
    transporterOptions: { timeout: options.timeoutMs ?? 15_000 },
  });
  if (options.tokenUrl) {
    const target = new URL(options.tokenUrl);
    client.transporter.interceptors.request.add({
      resolved: async (config) => {
        if (config.url.toString() === GOOGLE_TOKEN_URL) config.url = new URL(target);
        return config;
      },
    });
  }
  let credentials;
  try {
    credentials = await client.authorize();
  } catch (error) {
    throw googleError(error, key);
  }
  if (!credentials.access_token) {
    throw new CredentialError('CREDENTIAL_EXCHANGE_FAILED', `Google token endpoint returned no access token for ${key.client_email}`);
  }
  const login: RegistryLogin = { username: GOOGLE_REGISTRY_USERNAME, password: credentials.access_token };
  if (credentials.expiry_date) login.expiresAt = credentials.expiry_date;
  return login;
}

function googleError(error: unknown, key: GoogleServiceAccountKey): CredentialError {
  // gaxios errors carry the request (with the signed assertion) in `config`: only the status
  // and the OAuth error text are kept, and the error is not chained as `cause`.
  const status = (error as { response?: { status?: number } }).response?.status;
  const message = error instanceof Error ? error.message : String(error);
  const code = status !== undefined && status >= 400 && status < 500 ? 'CREDENTIAL_REJECTED' : 'CREDENTIAL_EXCHANGE_FAILED';
  const text = `Google token exchange for ${key.client_email} failed${status ? ` (HTTP ${status})` : ''}: ${message}`;
  return new CredentialError(code, redact(text, [key.private_key]));
}
