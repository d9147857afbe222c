/**
 * @module credentials/ecr
 * AWS ECR: an IAM access key is exchanged for a 12-hour registry token with
 * `GetAuthorizationToken` (official `@aws-sdk/client-ecr`, SigV4-signed AWS JSON 1.1 call).
 * The token is base64 of `AWS:<password>`.
 *
 * AWS cannot be reached from the machines this project is developed and tested on, so the
 * tests run this exact SDK code against a local `node:http` server passed as `endpoint`.
 */
import { ECRClient, ECRServiceException, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr';
import { CredentialError, redact } from './errors.js';
import type { RegistryLogin } from './material.js';

export interface EcrAccessKey {
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface EcrExchangeOptions {
  /** Overrides the regional endpoint (`https://api.ecr.{region}.amazonaws.com`): VPC endpoints, tests. */
  endpoint?: string;
  /** Per-request timeout in milliseconds (default 15 s): the SDK's own default is none. */
  timeoutMs?: number;
  /** Attempts including retries of throttling and 5xx answers (SDK default 3). */
  maxAttempts?: number;
}

export async function exchangeEcr(key: EcrAccessKey, options: EcrExchangeOptions = {}): Promise<RegistryLogin> {
  const secrets = [key.secretAccessKey, key.sessionToken];
  const timeoutMs = options.timeoutMs ?? 15_000;
  const client = new ECRClient({
    region: key.region,
    credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey, sessionToken: key.sessionToken },
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
    requestHandler: { requestTimeout: timeoutMs, connectionTimeout: timeoutMs },
  });
  let data;
  try {
    const output = await client.send(new GetAuthorizationTokenCommand({}));
    data = output.authorizationData?.[0];
  } catch (error) {
    throw ecrError(error, key, secrets);
  } finally {
    // Closes keep-alive sockets so nothing outlives the exchange.
    client.destroy();
  }
  if (!data?.authorizationToken) {
    throw new CredentialError('CREDENTIAL_EXCHANGE_FAILED', `ECR GetAuthorizationToken for ${key.accessKeyId} returned no authorization token`);
  }
  const decoded = Buffer.from(data.authorizationToken, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw new CredentialError('CREDENTIAL_EXCHANGE_FAILED', 'ECR authorization token is not base64 of "user:password"');
  const login: RegistryLogin = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  if (data.expiresAt) login.expiresAt = data.expiresAt.getTime();
  return login;
}

function ecrError(error: unknown, key: EcrAccessKey, secrets: Array<string | undefined>): CredentialError {
  const where = `ECR GetAuthorizationToken in ${key.region} for ${key.accessKeyId}`;
  if (error instanceof ECRServiceException) {
    const status = error.$metadata.httpStatusCode;
    const code = error.$fault === 'client' ? 'CREDENTIAL_REJECTED' : 'CREDENTIAL_EXCHANGE_FAILED';
    return new CredentialError(code, redact(`${where} failed: ${error.name}${status ? ` (HTTP ${status})` : ''}: ${error.message}`, secrets));
  }
  // Not an answer from AWS: refused connection, timeout, unparsable response.
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new CredentialError('CREDENTIAL_EXCHANGE_FAILED', redact(`${where} failed: ${message}`, secrets));
}
