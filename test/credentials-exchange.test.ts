/**
 * Login material → registry login: SWR derivation, ECR and Google exchanges through the real
 * SDKs against local servers (AWS and Google are not reachable from here), and the token cache.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, verify } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { CredentialError } from '../src/credentials/errors.js';
import { exchangeCredential, TokenCache } from '../src/credentials/exchange.js';
import { GOOGLE_TOKEN_URL } from '../src/credentials/google.js';
import { storedCredentialSchema, type RegistryLogin, type StoredCredential } from '../src/credentials/material.js';
import { swrLogin, swrLoginPassword, swrRegistryHost } from '../src/credentials/swr.js';

// ---------------------------------------------------------------------------------------------
// A local stand-in for a vendor endpoint: port 0 on 127.0.0.1, every request recorded.

interface Recorded { method: string; url: string; headers: IncomingMessage['headers']; body: string }
type Handler = (request: Recorded, response: ServerResponse) => void;

async function withServer(handler: Handler, run: (url: string, requests: Recorded[]) => Promise<void>): Promise<void> {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      requests.push(recorded);
      try {
        handler(recorded, res);
      } catch (error) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    await run(`http://127.0.0.1:${port}`, requests);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function json(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

async function rejectsWith(promise: Promise<unknown>, code: string, includes: RegExp, secrets: string[]): Promise<CredentialError> {
  const error = await promise.then(() => assert.fail('expected a rejection'), (e: unknown) => e);
  assert.ok(error instanceof CredentialError, `expected CredentialError, got ${String(error)}`);
  assert.equal(error.code, code);
  assert.match(error.message, includes);
  for (const secret of secrets) {
    assert.ok(!error.message.includes(secret), `message leaks a secret: ${error.message}`);
    assert.ok(!String(error.stack).includes(secret), 'stack leaks a secret');
  }
  assert.equal(error.cause, undefined);
  return error;
}

// ---------------------------------------------------------------------------------------------

describe('SWR login from AK/SK', () => {
  // RFC 2104 HMAC written out with plain SHA-256, independent of createHmac.
  function hmacSha256Hex(key: string, message: string): string {
    let k = Buffer.from(key, 'utf8');
    if (k.length > 64) k = createHash('sha256').update(k).digest();
    k = Buffer.concat([k, Buffer.alloc(64 - k.length)]);
    const ipad = Buffer.from(k.map((b) => b ^ 0x36));
    const opad = Buffer.from(k.map((b) => b ^ 0x5c));
    const inner = createHash('sha256').update(ipad).update(message, 'utf8').digest();
    return createHash('sha256').update(opad).update(inner).digest('hex');
  }

  const ak = 'AKIAEXAMPLE0123456789';
  const sk = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

  test('known answer: SK is the key, AK the message, lowercase hex', () => {
    // `printf "$AK" | openssl dgst -sha256 -hmac "$SK"`, the recipe in formats.md §2.6.
    const openssl = '162f6e894bc009ba22afccfa90da2ccd8278ae54a9c1ee770e37062c3efe4a72';
    assert.equal(hmacSha256Hex(sk, ak), openssl);
    assert.equal(swrLoginPassword(ak, sk), openssl);
    assert.notEqual(swrLoginPassword(sk, ak), openssl, 'key and message must not be swapped');
  });

  test('RFC 4231 test case 2 (key "Jefe")', () => {
    assert.equal(swrLoginPassword('what do ya want for nothing?', 'Jefe'), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });

  test('username is {project}@{AK}', () => {
    assert.deepEqual(swrLogin({ region: 'cn-north-4', accessKey: ak, secretKey: sk }), { username: `cn-north-4@${ak}`, password: hmacSha256Hex(sk, ak) });
    assert.equal(swrLogin({ region: 'eu-de_dev', accessKey: ak, secretKey: sk }).username, `eu-de_dev@${ak}`);
  });

  test('registry host of a region or sub-project', () => {
    assert.equal(swrRegistryHost('cn-north-4'), 'swr.cn-north-4.myhuaweicloud.com');
    assert.equal(swrRegistryHost('eu-de_dev'), 'swr.eu-de.myhuaweicloud.com');
  });

  test('bad material is CREDENTIAL_INVALID without the secret', async () => {
    await rejectsWith(exchangeCredential({ type: 'swr', region: 'cn@north', accessKey: ak, secretKey: sk }), 'CREDENTIAL_INVALID', /region/, [sk]);
  });
});

describe('locally derived logins', () => {
  const rows: Array<[name: string, material: StoredCredential, expected: RegistryLogin]> = [
    ['basic', { type: 'basic', username: 'robot', password: 'pw' }, { username: 'robot', password: 'pw' }],
    ['basic with expiry', { type: 'basic', username: 'robot', password: 'pw', expiresAt: 1_900_000_000_000 }, { username: 'robot', password: 'pw', expiresAt: 1_900_000_000_000 }],
    ['swr', { type: 'swr', region: 'ap-southeast-1', accessKey: 'AK1', secretKey: 'SK1' }, { username: 'ap-southeast-1@AK1', password: swrLoginPassword('AK1', 'SK1') }],
    ['acr', { type: 'acr', clientId: '00000000-1111-2222-3333-444444444444', clientSecret: 'azure-secret' }, { username: '00000000-1111-2222-3333-444444444444', password: 'azure-secret' }],
    ['ocir', { type: 'ocir', tenancyNamespace: 'axaxnpcrorw5', username: 'jane@example.com', authToken: 'oci-token' }, { username: 'axaxnpcrorw5/jane@example.com', password: 'oci-token' }],
    ['ocir identity domain', { type: 'ocir', tenancyNamespace: 'ns', username: 'oracleidentitycloudservice/jane', authToken: 't' }, { username: 'ns/oracleidentitycloudservice/jane', password: 't' }],
  ];
  for (const [name, material, expected] of rows) {
    test(name, async () => {
      assert.ok(storedCredentialSchema.safeParse(material).success, 'fixture matches the stored schema');
      assert.deepEqual(await exchangeCredential(material), expected);
    });
  }

  test('the stored schema rejects unknown types and stray fields', () => {
    assert.equal(storedCredentialSchema.safeParse({ type: 'ftp', username: 'u', password: 'p' }).success, false);
    assert.equal(storedCredentialSchema.safeParse({ type: 'basic', username: 'u', password: 'p', pasword: 'typo' }).success, false);
    assert.equal(storedCredentialSchema.safeParse({ type: 'ecr', region: 'us-east-1', accessKeyId: 'AK' }).success, false);
  });
});

// ---------------------------------------------------------------------------------------------

describe('ECR GetAuthorizationToken through @aws-sdk/client-ecr', () => {
  const material = { type: 'ecr', region: 'eu-west-1', accessKeyId: 'AKIDLOCALTEST', secretAccessKey: 'ecr-secret-key-do-not-leak' } as const;

  test('decodes AWS:<password> and the expiry', { timeout: 30_000 }, async () => {
    const expiresAtSeconds = Math.floor(Date.now() / 1000) + 12 * 3600;
    await withServer((_request, response) => {
      json(response, 200, {
        authorizationData: [{
          authorizationToken: Buffer.from('AWS:ecr-registry-password').toString('base64'),
          expiresAt: expiresAtSeconds,
          proxyEndpoint: 'https://123456789012.dkr.ecr.eu-west-1.amazonaws.com',
        }],
      }, { 'content-type': 'application/x-amz-json-1.1' });
    }, async (url, requests) => {
      const login = await exchangeCredential(material, { ecrEndpoint: url });
      assert.deepEqual(login, { username: 'AWS', password: 'ecr-registry-password', expiresAt: expiresAtSeconds * 1000 });

      assert.equal(requests.length, 1);
      const [request] = requests;
      assert.equal(request!.method, 'POST');
      assert.equal(request!.headers['x-amz-target'], 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken');
      assert.equal(request!.headers['content-type'], 'application/x-amz-json-1.1');
      assert.deepEqual(JSON.parse(request!.body), {});
      // SigV4 with the stored key, scoped to the region and the ECR service.
      assert.match(String(request!.headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIDLOCALTEST\/\d{8}\/eu-west-1\/ecr\/aws4_request, SignedHeaders=.*, Signature=[0-9a-f]{64}$/);
      assert.ok(!JSON.stringify(request!.headers).includes(material.secretAccessKey));
    });
  });

  test('session token is sent for temporary keys', { timeout: 30_000 }, async () => {
    await withServer((_request, response) => {
      json(response, 200, { authorizationData: [{ authorizationToken: Buffer.from('AWS:p').toString('base64'), expiresAt: 2_000_000_000 }] });
    }, async (url, requests) => {
      await exchangeCredential({ ...material, sessionToken: 'session-token-value' }, { ecrEndpoint: url });
      assert.equal(requests[0]!.headers['x-amz-security-token'], 'session-token-value');
    });
  });

  test('an AWS error is a clear CredentialError without the secret', { timeout: 30_000 }, async () => {
    await withServer((_request, response) => {
      // A misbehaving endpoint that echoes the secret must still not leak it.
      json(response, 400, {
        __type: 'UnrecognizedClientException',
        message: `The security token included in the request is invalid (${material.secretAccessKey}).`,
      }, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': 'UnrecognizedClientException' });
    }, async (url, requests) => {
      const error = await rejectsWith(exchangeCredential(material, { ecrEndpoint: url }), 'CREDENTIAL_REJECTED', /UnrecognizedClientException.*HTTP 400.*security token included in the request is invalid/, [material.secretAccessKey]);
      assert.match(error.message, /AKIDLOCALTEST/);
      assert.match(error.message, /\*\*\*/);
      assert.equal(requests.length, 1, 'a client error is not retried');
    });
  });

  test('a token that is not AWS:<password> is rejected', { timeout: 30_000 }, async () => {
    await withServer((_request, response) => {
      json(response, 200, { authorizationData: [{ authorizationToken: Buffer.from('nocolon').toString('base64'), expiresAt: 2_000_000_000 }] });
    }, async (url) => {
      await rejectsWith(exchangeCredential(material, { ecrEndpoint: url }), 'CREDENTIAL_EXCHANGE_FAILED', /not base64 of "user:password"/, [material.secretAccessKey]);
    });
  });

  test('an unreachable endpoint fails with a clear error', { timeout: 30_000 }, async () => {
    let closedUrl = '';
    await withServer(() => undefined, async (url) => { closedUrl = url; });
    await rejectsWith(exchangeCredential(material, { ecrEndpoint: closedUrl, timeoutMs: 2_000 }), 'CREDENTIAL_EXCHANGE_FAILED', /ECR GetAuthorizationToken in eu-west-1 for AKIDLOCALTEST failed/, [material.secretAccessKey]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('Google service-account key → access token through google-auth-library', () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const keyFile = {
    type: 'service_account',
    project_id: 'slipway-test',
    private_key_id: 'key-id-0123',
    private_key: privateKey,
    client_email: 'pusher@slipway-test.iam.gserviceaccount.com',
    client_id: '1234567890',
    token_uri: 'https://attacker.invalid/token',
  };
  const privateKeyBody = privateKey.split('\n')[5]!;

  /** Checks the request is a JWT-bearer grant signed with the test's key; returns its claims. */
  function checkGrant(request: Recorded): Record<string, unknown> {
    assert.equal(request.method, 'POST');
    assert.match(String(request.headers['content-type']), /^application\/x-www-form-urlencoded/);
    const form = new URLSearchParams(request.body);
    assert.equal(form.get('grant_type'), 'urn:ietf:params:oauth:grant-type:jwt-bearer');
    const [header, payload, signature] = (form.get('assertion') ?? '').split('.');
    assert.ok(header && payload && signature, 'assertion is a compact JWS');
    assert.equal((JSON.parse(Buffer.from(header, 'base64url').toString()) as { alg?: string }).alg, 'RS256');
    assert.ok(verify('RSA-SHA256', Buffer.from(`${header}.${payload}`), publicKey, Buffer.from(signature, 'base64url')), 'signed with the key');
    return JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
  }

  for (const type of ['gcr', 'gar'] as const) {
    test(`${type}: signed JWT-bearer grant → oauth2accesstoken login`, { timeout: 30_000 }, async () => {
      await withServer((_request, response) => {
        json(response, 200, { access_token: 'ya29.local-access-token', expires_in: 3600, token_type: 'Bearer' });
      }, async (url, requests) => {
        const before = Date.now();
        const login = await exchangeCredential({ type, serviceAccountKey: JSON.stringify(keyFile) }, { googleTokenUrl: `${url}/token` });
        assert.equal(login.username, 'oauth2accesstoken');
        assert.equal(login.password, 'ya29.local-access-token');
        assert.ok(login.expiresAt! >= before + 3_590_000 && login.expiresAt! <= Date.now() + 3_600_000, `expiry ${login.expiresAt}`);

        assert.equal(requests.length, 1);
        assert.equal(requests[0]!.url, '/token');
        const claims = checkGrant(requests[0]!);
        assert.equal(claims.iss, keyFile.client_email);
        assert.equal(claims.scope, 'https://www.googleapis.com/auth/cloud-platform');
        assert.equal(claims.aud, GOOGLE_TOKEN_URL);
        assert.equal(Number(claims.exp) - Number(claims.iat), 3600);
      });
    });
  }

  test('the key may be stored parsed', { timeout: 30_000 }, async () => {
    await withServer((_request, response) => json(response, 200, { access_token: 'tok', expires_in: 3600, token_type: 'Bearer' }), async (url, requests) => {
      const login = await exchangeCredential({ type: 'gcr', serviceAccountKey: keyFile as never }, { googleTokenUrl: url });
      assert.equal(login.password, 'tok');
      checkGrant(requests[0]!);
    });
  });

  test('an OAuth error is a clear CredentialError without the key', { timeout: 30_000 }, async () => {
    await withServer((_request, response) => {
      json(response, 400, { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' });
    }, async (url, requests) => {
      const error = await rejectsWith(
        exchangeCredential({ type: 'gcr', serviceAccountKey: JSON.stringify(keyFile) }, { googleTokenUrl: url }),
        'CREDENTIAL_REJECTED', /Google token exchange for pusher@slipway-test\.iam\.gserviceaccount\.com failed \(HTTP 400\): invalid_grant: Invalid JWT Signature\./,
        [privateKeyBody, new URLSearchParams(requests[0]?.body ?? '').get('assertion') ?? 'no-assertion'],
      );
      assert.ok(!error.message.includes('BEGIN PRIVATE KEY'));
      assert.equal(requests.length, 1, 'a 400 is not retried');
    });
  });

  const badKeys: Array<[name: string, key: string, message: RegExp]> = [
    ['not JSON', `{"private_key": "${privateKeyBody}`, /not valid JSON/],
    ['missing client_email', JSON.stringify({ ...keyFile, client_email: undefined }), /client_email/],
    ['wrong type', JSON.stringify({ ...keyFile, type: 'authorized_user' }), /type/],
    ['unusable private key', JSON.stringify({ ...keyFile, private_key: privateKey.replace(/\n[A-Za-z0-9+/]{20}/, '\n') }), /private_key is not a PEM private key/],
  ];
  for (const [name, key, message] of badKeys) {
    test(`bad key file (${name}) is CREDENTIAL_INVALID without the key`, async () => {
      await rejectsWith(exchangeCredential({ type: 'gcr', serviceAccountKey: key }), 'CREDENTIAL_INVALID', message, [privateKeyBody]);
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe('TokenCache', () => {
  const hour = 3_600_000;
  function clock(start = 1_000_000_000_000) {
    const state = { now: start };
    return { state, now: () => state.now };
  }
  function counting(makeLogin: (n: number) => RegistryLogin) {
    let calls = 0;
    const exchange = async () => makeLogin(++calls);
    return { exchange, calls: () => calls };
  }

  test('a fresh login is reused (cache hit)', async () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now });
    const source = counting((n) => ({ username: 'AWS', password: `pw${n}`, expiresAt: c.state.now + 12 * hour }));
    assert.equal((await cache.get('reg-a', source.exchange)).password, 'pw1');
    c.state.now += 11 * hour;
    assert.equal((await cache.get('reg-a', source.exchange)).password, 'pw1');
    assert.equal(source.calls(), 1);
  });

  test('refreshes 5 minutes before expiry', async () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now });
    const expiresAt = c.state.now + hour;
    const source = counting((n) => ({ username: 'u', password: `pw${n}`, expiresAt: expiresAt + (n - 1) * hour }));
    await cache.get('reg', source.exchange);
    c.state.now = expiresAt - 5 * 60_000 - 1;
    assert.equal((await cache.get('reg', source.exchange)).password, 'pw1', 'just outside the margin: cached');
    c.state.now = expiresAt - 5 * 60_000;
    assert.equal((await cache.get('reg', source.exchange)).password, 'pw2', 'inside the margin: exchanged again');
    assert.equal(source.calls(), 2);
  });

  test('ids are cached separately', async () => {
    const cache = new TokenCache();
    const source = counting((n) => ({ username: 'u', password: `pw${n}`, expiresAt: Date.now() + hour }));
    assert.equal((await cache.get('a', source.exchange)).password, 'pw1');
    assert.equal((await cache.get('b', source.exchange)).password, 'pw2');
    assert.equal((await cache.get('a', source.exchange)).password, 'pw1');
    assert.equal(cache.size, 2);
  });

  test('concurrent callers share one in-flight exchange', async () => {
    const cache = new TokenCache();
    let calls = 0;
    let release!: (login: RegistryLogin) => void;
    const exchange = () => { calls++; return new Promise<RegistryLogin>((resolve) => { release = resolve; }); };
    const waiting = Promise.all([cache.get('reg', exchange), cache.get('reg', exchange), cache.get('reg', exchange)]);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls, 1);
    release({ username: 'u', password: 'shared', expiresAt: Date.now() + hour });
    const logins = await waiting;
    assert.deepEqual(logins.map((login) => login.password), ['shared', 'shared', 'shared']);
    logins[0]!.password = 'mutated';
    assert.equal((await cache.get('reg', exchange)).password, 'shared', 'callers get copies');
    assert.equal(calls, 1);
  });

  test('a failure reaches every waiter and is not cached', async () => {
    const cache = new TokenCache();
    let calls = 0;
    const failing = async () => { calls++; await new Promise((resolve) => setImmediate(resolve)); throw new Error('vendor down'); };
    const results = await Promise.allSettled([cache.get('reg', failing), cache.get('reg', failing)]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected']);
    assert.equal(calls, 1);
    const syncThrow = () => { throw new Error('sync failure'); };
    await assert.rejects(cache.get('reg', syncThrow), /sync failure/);
    assert.equal((await cache.get('reg', async () => ({ username: 'u', password: 'ok', expiresAt: Date.now() + hour }))).password, 'ok');
  });

  test('logins without expiry, or already inside the margin, are not kept', async () => {
    const cache = new TokenCache();
    const longLived = counting((n) => ({ username: 'u', password: `pw${n}` }));
    await cache.get('basic', longLived.exchange);
    await cache.get('basic', longLived.exchange);
    assert.equal(longLived.calls(), 2);
    const shortLived = counting((n) => ({ username: 'u', password: `pw${n}`, expiresAt: Date.now() + 60_000 }));
    await cache.get('short', shortLived.exchange);
    await cache.get('short', shortLived.exchange);
    assert.equal(shortLived.calls(), 2);
    assert.equal(cache.size, 0);
  });

  test('invalidate drops the login and any exchange already under way', async () => {
    const cache = new TokenCache();
    const source = counting((n) => ({ username: 'u', password: `pw${n}`, expiresAt: Date.now() + hour }));
    await cache.get('reg', source.exchange);
    cache.invalidate('reg');
    assert.equal((await cache.get('reg', source.exchange)).password, 'pw2');

    let release!: (login: RegistryLogin) => void;
    const stale = cache.get('reg2', () => new Promise<RegistryLogin>((resolve) => { release = resolve; }));
    await new Promise((resolve) => setImmediate(resolve));
    cache.invalidate('reg2');
    release({ username: 'u', password: 'old-material', expiresAt: Date.now() + hour });
    assert.equal((await stale).password, 'old-material');
    assert.equal((await cache.get('reg2', source.exchange)).password, 'pw3', 'the stale result was not stored');
  });

  test('with a real ECR exchange: one vendor call for a burst of callers', { timeout: 30_000 }, async () => {
    const expiresAt = Math.floor(Date.now() / 1000) + 12 * 3600;
    await withServer((_request, response) => {
      setTimeout(() => json(response, 200, { authorizationData: [{ authorizationToken: Buffer.from('AWS:burst').toString('base64'), expiresAt }] }), 50);
    }, async (url, requests) => {
      const cache = new TokenCache();
      const material = { type: 'ecr', region: 'us-east-1', accessKeyId: 'AKID', secretAccessKey: 'secret' } as const;
      const logins = await Promise.all(Array.from({ length: 5 }, () => cache.get('ecr-prod', () => exchangeCredential(material, { ecrEndpoint: url }))));
      assert.ok(logins.every((login) => login.password === 'burst' && login.expiresAt === expiresAt * 1000));
      await cache.get('ecr-prod', () => exchangeCredential(material, { ecrEndpoint: url }));
      assert.equal(requests.length, 1);
    });
  });
});
