/**
 * The external registries API (`/api/v1/namespaces/{ns}/registries`) as users meet it, on both
 * dialects: create/list/get/patch/delete with each credential type's validation, masking of
 * every secret in what the API shows, longest-prefix matching of image references, the CI
 * hand-out (`…/creds`) with its roles and audit trail, and — after a full scenario with users,
 * passwords, API keys and registry secrets — that no secret reached the server's logs, any API
 * response (other than the hand-outs and the one-time key creation), or the database.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { dialects, startTestServer, type TestServer } from './helpers/harness.js';
import { createApiClient } from './helpers/api-client.js';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const bearer = (key: string) => `Bearer ${key}`;
const unique = (label: string) => `${label}-${randomBytes(9).toString('hex')}`;

// ---------------------------------------------------------------------------------------------
// An API client that keeps every response it saw, so the secrets test can search them all.

interface Seen {
  method: string;
  url: string;
  status: number;
  /** Status line, headers and body as received. */
  text: string;
  /** Responses that legitimately carry a secret (CI hand-outs, the one-time key creation). */
  exempt: boolean;
}

interface Reply {
  status: number;
  text: string;
  /** The parsed JSON answer (loosely typed: tests read the fields they check). */
  body: any;
  headers: Headers;
}

class Api {
  readonly seen: Seen[] = [];
  constructor(readonly base: string) {}

  /** JSON in (or `raw` text), JSON out when the answer is JSON; every answer is recorded in `seen`. */
  async call(method: string, url: string, auth: string | undefined, body?: unknown, options: { exempt?: boolean; raw?: string; contentType?: string } = {}): Promise<Reply> {
    const payload = options.raw !== undefined ? Buffer.from(options.raw) : body;
    const headers: Record<string, string> = payload !== undefined ? { 'content-type': options.contentType ?? 'application/json' } : {};
    const response = await createApiClient(this.base, auth).request(method, url, payload, { headers });
    const headerText = [...response.headers.entries()].map(([k, v]) => `${k}: ${v}`).join('\n');
    this.seen.push({ method, url, status: response.status, text: `${response.status}\n${headerText}\n\n${response.text}`, exempt: options.exempt ?? false });
    // Only an answer that says it is JSON counts as parsed.
    const parsed = response.text && (response.headers.get('content-type') ?? '').includes('json') ? response.body : undefined;
    return { status: response.status, text: response.text, body: parsed, headers: response.headers };
  }
}

// ---------------------------------------------------------------------------------------------
// People and keys: olivia owns "team", alice contributes, bob reads, carol is an outsider who
// owns "other". Every API call after the setup goes with an API key (a password login costs a
// deliberately slow scrypt).

interface Team {
  adminPassword: string;
  passwords: Record<'olivia' | 'alice' | 'bob' | 'carol', string>;
  keys: Record<'admin' | 'olivia' | 'alice' | 'bob' | 'carol', string>;
}

async function setUpTeam(api: Api, adminPassword: string): Promise<Team> {
  const admin = basic('admin', adminPassword);
  const passwords = { olivia: unique('olivia-pw'), alice: unique('alice-pw'), bob: unique('bob-pw'), carol: unique('carol-pw') };
  for (const [name, password] of Object.entries(passwords)) {
    const created = await api.call('POST', '/api/v1/users', admin, { name, password });
    assert.equal(created.status, 201, created.text);
  }
  const keys = {} as Team['keys'];
  for (const [name, password] of [['admin', adminPassword], ...Object.entries(passwords)] as Array<[keyof Team['keys'], string]>) {
    const created = await api.call('POST', '/api/v1/keys', basic(name, password), { name: `${name}-key` }, { exempt: true });
    assert.equal(created.status, 201, created.text);
    keys[name] = created.body.key as string;
  }
  assert.equal((await api.call('POST', '/api/v1/namespaces', bearer(keys.olivia), { name: 'team' })).status, 201);
  assert.equal((await api.call('POST', '/api/v1/namespaces', bearer(keys.carol), { name: 'other' })).status, 201);
  for (const [member, role] of [['alice', 'contributor'], ['bob', 'reader']] as const) {
    const set = await api.call('PUT', `/api/v1/namespaces/team/members/${member}`, bearer(keys.olivia), { role });
    assert.equal(set.status, 200, set.text);
  }
  return { adminPassword, passwords, keys };
}

// ---------------------------------------------------------------------------------------------
// Login material of every type, with fresh random secrets each time.

type CredentialType = 'basic' | 'swr' | 'ecr' | 'gcr' | 'gar' | 'acr' | 'ocir';
const types: CredentialType[] = ['basic', 'swr', 'ecr', 'gcr', 'gar', 'acr', 'ocir'];

interface Fixture {
  credentials: Record<string, unknown>;
  /** The secret values in it. */
  secrets: string[];
  /** The non-secret identity and region the API shows. */
  username: string;
  region: string | null;
  /** Field names the API lists as set (masked). */
  masked: string[];
  /** Fields that must be present. */
  required: string[];
}

function fixture(type: CredentialType): Fixture {
  const hex = (n: number) => randomBytes(n).toString('hex');
  switch (type) {
    case 'basic': {
      const password = unique('basic-password');
      return { credentials: { username: `robot-${hex(3)}`, password }, secrets: [password], username: '', region: null, masked: ['password'], required: ['username', 'password'] };
    }
    case 'swr': {
      const accessKey = `AK${hex(9).toUpperCase()}`;
      const secretKey = unique('swr-secret-key');
      return { credentials: { region: 'cn-north-4', accessKey, secretKey }, secrets: [secretKey], username: accessKey, region: 'cn-north-4', masked: ['secretKey'], required: ['region', 'accessKey', 'secretKey'] };
    }
    case 'ecr': {
      const accessKeyId = `AKIA${hex(8).toUpperCase()}`;
      const secretAccessKey = unique('ecr-secret-access-key');
      const sessionToken = unique('ecr-session-token');
      return { credentials: { region: 'eu-west-1', accessKeyId, secretAccessKey, sessionToken }, secrets: [secretAccessKey, sessionToken], username: accessKeyId, region: 'eu-west-1', masked: ['secretAccessKey'], required: ['region', 'accessKeyId', 'secretAccessKey'] };
    }
    case 'gcr':
    case 'gar': {
      const email = `ci-${hex(3)}@project.iam.gserviceaccount.com`;
      const privateKey = unique(`${type}-private-key`);
      const key = { type: 'service_account', client_email: email, private_key: `-----BEGIN PRIVATE KEY-----\n${privateKey}\n-----END PRIVATE KEY-----\n`, private_key_id: hex(8) };
      // gcr gets the key file parsed, gar as the text of the file: both forms are accepted.
      return { credentials: { serviceAccountKey: type === 'gcr' ? key : JSON.stringify(key) }, secrets: [privateKey], username: email, region: null, masked: ['serviceAccountKey'], required: ['serviceAccountKey'] };
    }
    case 'acr': {
      const clientId = `${hex(4)}-${hex(2)}-${hex(2)}-${hex(2)}-${hex(6)}`;
      const clientSecret = unique('acr-client-secret');
      return { credentials: { clientId, clientSecret }, secrets: [clientSecret], username: clientId, region: null, masked: ['clientSecret'], required: ['clientId', 'clientSecret'] };
    }
    case 'ocir': {
      const authToken = unique('ocir-auth-token');
      const user = `jane.${hex(3)}@example.com`;
      return { credentials: { tenancyNamespace: 'axaxnpcrorw5', username: user, authToken }, secrets: [authToken], username: `axaxnpcrorw5/${user}`, region: null, masked: ['authToken'], required: ['tenancyNamespace', 'username', 'authToken'] };
    }
  }
}

/** A fixture's identity for basic is its own user name. */
function identityOf(f: Fixture): string {
  return f.username || (f.credentials.username as string);
}

const swrPassword = (accessKey: string, secretKey: string) => createHmac('sha256', secretKey).update(accessKey).digest('hex');

function assertMasked(view: Record<string, unknown>, f: Fixture, type: CredentialType, where: string): void {
  assert.equal(view.type, type, where);
  assert.equal(view.username, identityOf(f), `${where}: the identity is shown`);
  assert.equal(view.region, f.region, where);
  assert.deepEqual(view.credentials, Object.fromEntries(f.masked.map((field) => [field, '****'])), `${where}: credentials are masked`);
  const text = JSON.stringify(view);
  for (const secret of f.secrets) assert.ok(!text.includes(secret), `${where}: a ${type} secret is shown`);
}

// ---------------------------------------------------------------------------------------------

for (const dialect of dialects) {
  describe(`external registries API (${dialect.name})`, () => {
    let ts: TestServer;
    let api: Api;
    let team: Team;
    const as = (who: keyof Team['keys']) => bearer(team.keys[who]);
    const registries = (ns = 'team') => `/api/v1/namespaces/${ns}/registries`;
    const create = (prefix: string, type: CredentialType, f: Fixture, enableCi = false, ns = 'team') =>
      api.call('POST', registries(ns), as('olivia'), { prefix, type, credentials: f.credentials, enable_ci: enableCi });
    const auditOf = async (action: string) => {
      const listed = await api.call('GET', `/api/v1/audit?action=${encodeURIComponent(action)}&limit=1000`, as('admin'));
      assert.equal(listed.status, 200, listed.text);
      return listed.body as Array<{ actor: string; action: string; target: string; outcome: string; address: string | null; detail: unknown }>;
    };

    before(async () => {
      const adminPassword = unique('admin-pw');
      ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword } } });
      api = new Api(ts.url);
      team = await setUpTeam(api, adminPassword);
    });
    after(async () => {
      await ts?.close();
    });

    test('create, list, get, patch and delete a registry of every type; credentials are masked in every answer', { timeout: 60_000 }, async () => {
      const made = new Map<CredentialType, { id: string; f: Fixture }>();
      for (const type of types) {
        const f = fixture(type);
        const created = await create(`crud-${type}.example.com/team`, type, f);
        assert.equal(created.status, 201, `${type}: ${created.text}`);
        assert.match(created.body.id as string, /^reg_/);
        assert.equal(created.body.namespace, 'team');
        assert.equal(created.body.prefix, `crud-${type}.example.com/team`);
        assert.equal(created.body.enable_ci, false);
        assertMasked(created.body, f, type, `POST ${type}`);
        made.set(type, { id: created.body.id as string, f });
      }

      // Every member sees the list and each record, masked; the reader too.
      for (const who of ['olivia', 'alice', 'bob'] as const) {
        const listed = await api.call('GET', registries(), as(who));
        assert.equal(listed.status, 200, listed.text);
        for (const [type, { id, f }] of made) {
          const entry = (listed.body as Array<Record<string, unknown>>).find((r) => r.id === id);
          assert.ok(entry, `${who} lists the ${type} registry`);
          assertMasked(entry, f, type, `list by ${who}`);
          const one = await api.call('GET', `${registries()}/${id}`, as(who));
          assert.equal(one.status, 200, one.text);
          assertMasked(one.body, f, type, `GET ${type} by ${who}`);
        }
      }

      // PATCH: prefix and enable_ci alone keep the material; new credentials replace it.
      for (const [type, { id, f }] of made) {
        const patched = await api.call('PATCH', `${registries()}/${id}`, as('olivia'), { prefix: `https://CRUD-${type}.example.com/team/renamed/`, enable_ci: true });
        assert.equal(patched.status, 200, patched.text);
        assert.equal(patched.body.prefix, `crud-${type}.example.com/team/renamed`, 'the prefix is stored normalised');
        assert.equal(patched.body.enable_ci, true);
        assertMasked(patched.body, f, type, `PATCH ${type}`);
        const next = fixture(type);
        const replaced = await api.call('PATCH', `${registries()}/${id}`, as('olivia'), { credentials: next.credentials });
        assert.equal(replaced.status, 200, replaced.text);
        assertMasked(replaced.body, next, type, `PATCH credentials ${type}`);
        for (const secret of f.secrets) assert.ok(!replaced.text.includes(secret));
        made.set(type, { id, f: next });
      }
      // Changing the type needs new credentials of that type.
      const basicId = made.get('basic')!.id;
      const retyped = await api.call('PATCH', `${registries()}/${basicId}`, as('olivia'), { type: 'swr' });
      assert.equal(retyped.status, 400, retyped.text);
      assert.match(retyped.body.message as string, /credentials/);
      const swr = fixture('swr');
      const toSwr = await api.call('PATCH', `${registries()}/${basicId}`, as('olivia'), { type: 'swr', credentials: swr.credentials });
      assert.equal(toSwr.status, 200, toSwr.text);
      assertMasked(toSwr.body, swr, 'swr', 'PATCH basic → swr');

      // Only owners change anything; outsiders cannot tell the namespace exists.
      const { id: acrId } = made.get('acr')!;
      for (const [who, status] of [['alice', 403], ['bob', 403], ['carol', 404]] as const) {
        assert.equal((await api.call('PATCH', `${registries()}/${acrId}`, as(who), { enable_ci: false })).status, status, `PATCH by ${who}`);
        assert.equal((await api.call('DELETE', `${registries()}/${acrId}`, as(who))).status, status, `DELETE by ${who}`);
        assert.equal((await api.call('POST', registries(), as(who), { prefix: `${who}.example.com`, type: 'acr', credentials: fixture('acr').credentials })).status, status, `POST by ${who}`);
      }
      assert.equal((await api.call('GET', registries(), as('carol'))).status, 404);
      assert.equal((await api.call('GET', `${registries()}/${acrId}`, as('carol'))).status, 404);
      // A record is only reachable through its own namespace, even for that namespace's owner.
      assert.equal((await api.call('GET', `${registries('other')}/${acrId}`, as('carol'))).status, 404);
      assert.equal((await api.call('PATCH', `${registries('other')}/${acrId}`, as('carol'), { enable_ci: false })).status, 404);
      assert.equal((await api.call('DELETE', `${registries('other')}/${acrId}`, as('carol'))).status, 404);
      assert.equal((await api.call('GET', registries(), undefined)).status, 401);

      // DELETE, then the record is gone for every route.
      for (const [type, { id }] of made) {
        const deleted = await api.call('DELETE', `${registries()}/${id}`, as('olivia'));
        assert.equal(deleted.status, 204, `${type}: ${deleted.text}`);
        assert.equal((await api.call('GET', `${registries()}/${id}`, as('olivia'))).status, 404);
        assert.equal((await api.call('PATCH', `${registries()}/${id}`, as('olivia'), { enable_ci: true })).status, 404);
        assert.equal((await api.call('GET', `${registries()}/${id}/creds`, as('olivia'))).status, 404);
        assert.equal((await api.call('DELETE', `${registries()}/${id}`, as('olivia'))).status, 404);
      }
      const remaining = await api.call('GET', registries(), as('olivia'));
      assert.ok(!(remaining.body as Array<{ prefix: string }>).some((r) => r.prefix.startsWith('crud-')), remaining.text);
      const audited = [...await auditOf('registry.create'), ...await auditOf('registry.update'), ...await auditOf('registry.delete')];
      for (const { id } of made.values()) {
        assert.deepEqual(new Set(audited.filter((e) => e.target === `team/${id}`).map((e) => e.action)), new Set(['registry.create', 'registry.update', 'registry.delete']));
      }
    });

    test('validation: a missing field of each type is a 400 naming it, without echoing any secret', { timeout: 60_000 }, async () => {
      const expectBad = async (body: unknown, field: RegExp, secrets: string[], what: string, options: { raw?: string; method?: string; url?: string } = {}) => {
        const response = await api.call(options.method ?? 'POST', options.url ?? registries(), as('olivia'), body, { raw: options.raw });
        assert.equal(response.status, 400, `${what}: ${response.text}`);
        assert.equal(response.body.code, 'BAD_REQUEST', what);
        assert.match(response.body.message as string, field, `${what}: the message names the field`);
        for (const secret of secrets) assert.ok(!response.text.includes(secret), `${what}: the answer echoes a secret: ${response.text}`);
      };
      for (const type of types) {
        for (const field of fixture(type).required) {
          const f = fixture(type);
          const credentials = { ...f.credentials };
          delete credentials[field];
          await expectBad({ prefix: `v-${type}.example.com`, type, credentials }, new RegExp(`credentials\\.${field}\\b`), f.secrets, `${type} without ${field}`);
          // An empty string is no better than a missing field.
          await expectBad({ prefix: `v-${type}.example.com`, type, credentials: { ...f.credentials, [field]: '' } }, new RegExp(`credentials\\.${field}\\b`), f.secrets, `${type} with an empty ${field}`);
        }
        // A misspelt field is refused (never silently dropped), named, and its value not echoed.
        const f = fixture(type);
        const stray = unique('stray-secret');
        await expectBad({ prefix: `v-${type}.example.com`, type, credentials: { ...f.credentials, passwrod: stray } }, /passwrod/, [...f.secrets, stray], `${type} with a misspelt field`);
        // A value of the wrong kind.
        const secretField = f.masked[0]!;
        await expectBad({ prefix: `v-${type}.example.com`, type, credentials: { ...f.credentials, [secretField]: 12345678 } }, new RegExp(`credentials\\.${secretField}`), f.secrets, `${type} with a number as ${secretField}`);
        // Material of another type: e.g. basic's fields sent as swr.
        const other = fixture(type === 'basic' ? 'swr' : 'basic');
        await expectBad({ prefix: `v-${type}.example.com`, type, credentials: other.credentials }, /credentials\./, other.secrets, `${type} with another type's fields`);
      }
      // A service-account key without its private key.
      const gcr = fixture('gcr');
      const keyFile = { ...(gcr.credentials.serviceAccountKey as Record<string, unknown>) };
      delete keyFile.private_key;
      await expectBad({ prefix: 'v-gcr.example.com', type: 'gcr', credentials: { serviceAccountKey: keyFile } }, /credentials\.serviceAccountKey/, [keyFile.private_key_id as string], 'gcr key without private_key');

      const b = fixture('basic');
      await expectBad({ prefix: 'v.example.com', type: 'dockerhub', credentials: b.credentials }, /\btype\b/, b.secrets, 'unknown type');
      await expectBad({ prefix: 'v.example.com', credentials: b.credentials }, /\btype\b/, b.secrets, 'no type');
      await expectBad({ type: 'basic', credentials: b.credentials }, /\bprefix\b/, b.secrets, 'no prefix');
      await expectBad({ prefix: '', type: 'basic', credentials: b.credentials }, /\bprefix\b/, b.secrets, 'empty prefix');
      await expectBad({ prefix: 'v.example.com', type: 'basic' }, /\bcredentials\b/, [], 'no credentials');
      await expectBad({ prefix: 'v.example.com', type: 'basic', credentials: b.secrets[0] }, /\bcredentials\b/, b.secrets, 'credentials as a string');
      await expectBad({ prefix: 'v.example.com', type: 'basic', credentials: b.credentials, enable_ci: 'yes' }, /\benable_ci\b/, b.secrets, 'enable_ci not a boolean');
      await expectBad({ prefix: 'v.example.com', type: 'basic', credentials: b.credentials, password: b.secrets[0] }, /password/, b.secrets, 'a secret beside the credentials');
      for (const prefix of ['myorg', 'registry.example.com/Team', 'registry.example.com/team/app:1.0', 'registry.example.com/team@sha256:abc', 'registry.example.com//team', 'bad host.example.com', 'registry.example.com:99999']) {
        await expectBad({ prefix, type: 'basic', credentials: b.credentials }, /\bprefix\b/, b.secrets, `prefix ${JSON.stringify(prefix)}`);
      }
      // Bodies that are not JSON objects: the parser's message must not quote what was sent.
      const secret = unique('raw-secret');
      for (const raw of [`{"prefix":"v.example.com","type":"basic","credentials":{"username":"u","password":${secret}}}`, `{"password":"${secret}"`, `${secret}`, `{"password":"${secret}"} trailing`]) {
        const response = await api.call('POST', registries(), as('olivia'), undefined, { raw });
        assert.equal(response.status, 400, response.text);
        assert.ok(!response.text.includes(secret.slice(0, 10)), `a malformed body is echoed: ${response.text}`);
      }
      const form = await api.call('POST', registries(), as('olivia'), undefined, { raw: `prefix=v.example.com&type=basic&password=${secret}`, contentType: 'application/x-www-form-urlencoded' });
      assert.ok(form.status >= 400 && form.status < 500, form.text);
      assert.ok(!form.text.includes(secret), form.text);

      // PATCH validates the same way.
      const good = fixture('basic');
      const created = await create('v-patch.example.com', 'basic', good);
      assert.equal(created.status, 201, created.text);
      const url = `${registries()}/${created.body.id as string}`;
      const next = fixture('basic');
      await expectBad({ credentials: { password: next.secrets[0] } }, /credentials\.username/, [...next.secrets, ...good.secrets], 'PATCH without username', { method: 'PATCH', url });
      await expectBad({ type: 'ocir' }, /credentials/, good.secrets, 'PATCH of the type alone', { method: 'PATCH', url });
      await expectBad({ type: 'nope', credentials: next.credentials }, /\btype\b/, next.secrets, 'PATCH to an unknown type', { method: 'PATCH', url });
      await expectBad({ prefix: 'nohost' }, /\bprefix\b/, [], 'PATCH to a bad prefix', { method: 'PATCH', url });
      await expectBad({ secret: next.secrets[0] }, /secret/, next.secrets, 'PATCH of an unknown field', { method: 'PATCH', url });
      // Nothing of the refused requests was stored.
      const stored = await api.call('GET', registries(), as('olivia'));
      assert.deepEqual((stored.body as Array<{ prefix: string }>).filter((r) => r.prefix.startsWith('v')).map((r) => r.prefix), ['v-patch.example.com']);
      const still = await api.call('GET', url, as('olivia'));
      assert.equal(still.body.username, good.credentials.username);
      assert.equal((await api.call('DELETE', url, as('olivia'))).status, 204);
    });

    test('a prefix is unique per namespace (after normalisation): a duplicate is 409, another namespace may reuse it', { timeout: 60_000 }, async () => {
      const first = await create('dup.example.com/team', 'basic', fixture('basic'));
      assert.equal(first.status, 201, first.text);
      for (const spelling of ['dup.example.com/team', 'https://DUP.example.com/team/', 'http://dup.example.com/team//']) {
        const f = fixture('acr');
        const again = await create(spelling, 'acr', f);
        assert.equal(again.status, 409, `${spelling}: ${again.text}`);
        assert.equal(again.body.code, 'CONFLICT');
        for (const secret of f.secrets) assert.ok(!again.text.includes(secret));
      }
      // Docker Hub's spellings are one registry.
      const hub = await create('docker.io/dup-org', 'basic', fixture('basic'));
      assert.equal(hub.status, 201, hub.text);
      for (const spelling of ['index.docker.io/dup-org', 'https://registry-1.docker.io/dup-org/', 'registry.hub.docker.com/dup-org']) {
        assert.equal((await create(spelling, 'basic', fixture('basic'))).status, 409, spelling);
      }
      const hubRoot = await create('https://index.docker.io/v1/', 'basic', fixture('basic'));
      assert.equal(hubRoot.status, 201, hubRoot.text);
      assert.equal(hubRoot.body.prefix, 'docker.io');
      assert.equal((await create('docker.io', 'basic', fixture('basic'))).status, 409);
      // A longer prefix under an existing one is a different record.
      assert.equal((await create('dup.example.com/team/app', 'basic', fixture('basic'))).status, 201);
      // The same prefix in another namespace is that namespace's own record.
      const elsewhere = await api.call('POST', registries('other'), as('carol'), { prefix: 'dup.example.com/team', type: 'basic', credentials: fixture('basic').credentials });
      assert.equal(elsewhere.status, 201, elsewhere.text);
      // Renaming onto a taken prefix is a conflict too, and changes nothing.
      const second = await create('dup2.example.com', 'basic', fixture('basic'));
      assert.equal(second.status, 201, second.text);
      const renamed = await api.call('PATCH', `${registries()}/${second.body.id as string}`, as('olivia'), { prefix: 'https://dup.example.com/team' });
      assert.equal(renamed.status, 409, renamed.text);
      assert.equal((await api.call('GET', `${registries()}/${second.body.id as string}`, as('olivia'))).body.prefix, 'dup2.example.com');
      // Renaming a record to its own prefix is no conflict.
      assert.equal((await api.call('PATCH', `${registries()}/${second.body.id as string}`, as('olivia'), { prefix: 'dup2.example.com' })).status, 200);
    });

    test('match: the longest prefix on path-component boundaries wins, Docker Hub spellings included', { timeout: 60_000 }, async () => {
      assert.equal((await api.call('POST', '/api/v1/namespaces', as('olivia'), { name: 'matching' })).status, 201);
      assert.equal((await api.call('PUT', '/api/v1/namespaces/matching/members/bob', as('olivia'), { role: 'reader' })).status, 200);
      const prefixes: Record<string, string> = {
        hub: 'docker.io',
        hubLibrary: 'docker.io/library',
        hubAlpine: 'https://index.docker.io/library/alpine',
        hubOrg: 'registry-1.docker.io/myorg',
        example: 'registry.example.com',
        exampleTeam: 'registry.example.com/team',
        exampleApp: 'REGISTRY.example.com/team/app/',
        local: 'localhost:5000',
        swr: 'swr.cn-north-4.myhuaweicloud.com/proj',
        ipv6: '[::1]:5000/ns',
      };
      const ids: Record<string, string> = {};
      for (const [name, prefix] of Object.entries(prefixes)) {
        const created = await create(prefix, 'basic', fixture('basic'), false, 'matching');
        assert.equal(created.status, 201, `${prefix}: ${created.text}`);
        ids[name] = created.body.id as string;
      }
      const digest = `sha256:${'ab'.repeat(32)}`;
      const cases: Array<[image: string, expected: string | null]> = [
        ['alpine', 'hubAlpine'],
        ['alpine:3.20', 'hubAlpine'],
        [`alpine@${digest}`, 'hubAlpine'],
        ['library/alpine', 'hubAlpine'],
        ['docker.io/library/alpine', 'hubAlpine'],
        ['docker.io/library/alpine:latest', 'hubAlpine'],
        ['index.docker.io/library/alpine', 'hubAlpine'],
        ['registry-1.docker.io/library/alpine:edge', 'hubAlpine'],
        ['registry.hub.docker.com/library/alpine', 'hubAlpine'],
        ['alpine-extra', 'hubLibrary'],
        ['alpinex:1', 'hubLibrary'],
        ['busybox', 'hubLibrary'],
        ['library/alpine/sub', 'hubAlpine'],
        ['myorg/app', 'hubOrg'],
        ['index.docker.io/myorg/app:2', 'hubOrg'],
        // Like Docker: a one-component path on docker.io is an official image (library/myorg).
        ['docker.io/myorg', 'hubLibrary'],
        ['docker.io/myorg/app', 'hubOrg'],
        ['myorgx/app', 'hub'],
        ['someone/else', 'hub'],
        ['registry.example.com/team/app', 'exampleApp'],
        ['registry.example.com/team/app:1.0', 'exampleApp'],
        [`registry.example.com/team/app@${digest}`, 'exampleApp'],
        ['registry.example.com/team/app/sub/image', 'exampleApp'],
        ['REGISTRY.EXAMPLE.COM/team/app', 'exampleApp'],
        ['registry.example.com/team/application', 'exampleTeam'],
        ['registry.example.com/team/ap', 'exampleTeam'],
        ['registry.example.com/team', 'exampleTeam'],
        ['registry.example.com/teamx/app', 'example'],
        ['registry.example.com/other', 'example'],
        ['registry.example.com:443/team/app', null],
        ['registry.example.com.evil.io/team/app', null],
        ['sub.registry.example.com/team/app', null],
        ['localhost:5000/anything', 'local'],
        ['localhost:5001/anything', null],
        ['localhost/anything', null],
        ['swr.cn-north-4.myhuaweicloud.com/proj/app:1', 'swr'],
        ['swr.cn-north-4.myhuaweicloud.com/project/app', null],
        ['swr.cn-north-4.myhuaweicloud.com/pro', null],
        ['[::1]:5000/ns/app', 'ipv6'],
        ['[::1]:5000/nsx/app', null],
        ['quay.io/team/app', null],
      ];
      const failures: string[] = [];
      for (const [image, expected] of cases) {
        for (const who of ['olivia', 'bob'] as const) {
          const found = await api.call('GET', `${registries('matching')}/match?image=${encodeURIComponent(image)}`, as(who));
          const got = found.status === 200 ? Object.entries(ids).find(([, id]) => id === found.body.id)?.[0] ?? `unknown id ${found.body.id as string}` : found.status === 404 ? null : `status ${found.status}: ${found.text}`;
          if (got !== expected) failures.push(`${image} (as ${who}): expected ${expected ?? 'no match'}, got ${got ?? 'no match'}`);
          if (found.status === 200) assert.deepEqual(found.body.credentials, { password: '****' });
        }
      }
      assert.deepEqual(failures, []);

      for (const image of ['Alpine', 'registry.example.com//x', 'registry.example.com/team/app:bad tag', 'registry.example.com/team/app:', `alpine@sha256:xyz`, 'registry.example.com/Team/app']) {
        const bad = await api.call('GET', `${registries('matching')}/match?image=${encodeURIComponent(image)}`, as('bob'));
        assert.equal(bad.status, 400, `${image}: ${bad.text}`);
      }
      const missing = await api.call('GET', `${registries('matching')}/match`, as('bob'));
      assert.equal(missing.status, 400);
      assert.match(missing.body.message as string, /image/);
      assert.equal((await api.call('GET', `${registries('matching')}/match?image=alpine`, as('carol'))).status, 404, 'outsiders learn nothing');
      assert.equal((await api.call('GET', `${registries('matching')}/match?image=alpine`, as('alice'))).status, 404, 'a member of another namespace learns nothing');

      // Deleting the most specific record lets the next-longest one apply.
      assert.equal((await api.call('DELETE', `${registries('matching')}/${ids.hubAlpine!}`, as('olivia'))).status, 204);
      assert.equal((await api.call('GET', `${registries('matching')}/match?image=alpine`, as('bob'))).body.id, ids.hubLibrary);
      assert.equal((await api.call('DELETE', `${registries('matching')}/${ids.hubLibrary!}`, as('olivia'))).status, 204);
      assert.equal((await api.call('GET', `${registries('matching')}/match?image=docker.io/library/alpine`, as('bob'))).body.id, ids.hub);
      // Renaming a prefix moves the match with it.
      assert.equal((await api.call('PATCH', `${registries('matching')}/${ids.exampleApp!}`, as('olivia'), { prefix: 'registry.example.com/team/app2' })).status, 200);
      assert.equal((await api.call('GET', `${registries('matching')}/match?image=registry.example.com/team/app`, as('bob'))).body.id, ids.exampleTeam);
      assert.equal((await api.call('GET', `${registries('matching')}/match?image=registry.example.com/team/app2:1`, as('bob'))).body.id, ids.exampleApp);
    });

    test('creds: contributors get basic, SWR, ACR and OCIR logins; readers 403; outsiders 404; enable_ci off 403; all audited', { timeout: 60_000 }, async () => {
      const b = fixture('basic');
      const s = fixture('swr');
      const a = fixture('acr');
      const o = fixture('ocir');
      const off = fixture('basic');
      const ids: Record<string, string> = {};
      for (const [name, prefix, type, f, ci] of [
        ['basic', 'creds-basic.example.com/team', 'basic', b, true],
        ['swr', 'swr.cn-north-4.myhuaweicloud.com/creds', 'swr', s, true],
        ['acr', 'credsteam.azurecr.io', 'acr', a, true],
        ['ocir', 'fra.ocir.io/axaxnpcrorw5', 'ocir', o, true],
        ['off', 'creds-off.example.com', 'basic', off, false],
      ] as const) {
        const created = await create(prefix, type, f, ci);
        assert.equal(created.status, 201, created.text);
        ids[name] = created.body.id as string;
      }
      const creds = (name: string, who: keyof Team['keys'], ns = 'team') => api.call('GET', `${registries(ns)}/${ids[name] ?? name}/creds`, as(who), undefined, { exempt: true });
      const before = (await auditOf('registry.creds')).length;

      const expected: Record<string, { username: string; password: string }> = {
        basic: { username: b.credentials.username as string, password: b.credentials.password as string },
        swr: { username: `cn-north-4@${s.credentials.accessKey as string}`, password: swrPassword(s.credentials.accessKey as string, s.credentials.secretKey as string) },
        acr: { username: a.credentials.clientId as string, password: a.credentials.clientSecret as string },
        ocir: { username: `axaxnpcrorw5/${o.credentials.username as string}`, password: o.credentials.authToken as string },
      };
      assert.match(expected.swr!.password, /^[0-9a-f]{64}$/);
      let handedOut = 0;
      for (const who of ['alice', 'olivia', 'admin'] as const) {
        for (const [name, login] of Object.entries(expected)) {
          const got = await creds(name, who);
          assert.equal(got.status, 200, `${name} for ${who}: ${got.text}`);
          assert.deepEqual(got.body, { ...login, expires_at: null }, `${name} for ${who}`);
          assert.equal(got.headers.get('cache-control'), 'no-store');
          handedOut++;
        }
      }

      // A reader may see the record but never its login.
      const reader = await creds('basic', 'bob');
      assert.equal(reader.status, 403, reader.text);
      assert.ok(!reader.text.includes(expected.basic!.password));
      // An outsider cannot tell the namespace from one that does not exist; a key of the
      // outsider's own namespace does not open another's record either.
      const outsider = await creds('basic', 'carol');
      const nowhere = await creds('basic', 'carol', 'nowhere');
      assert.equal(outsider.status, 404, outsider.text);
      assert.equal(nowhere.status, 404, nowhere.text);
      assert.deepEqual({ ...outsider.body, message: (outsider.body.message as string).replace('team', 'NS') }, { ...nowhere.body, message: (nowhere.body.message as string).replace('nowhere', 'NS') });
      assert.equal((await creds('basic', 'carol', 'other')).status, 404);
      assert.equal((await creds('basic', 'admin', 'nowhere')).status, 404);
      assert.equal((await creds('reg_doesnotexist', 'alice')).status, 404);
      // enable_ci off: 403 for everyone, the owner and the admin included.
      for (const who of ['alice', 'olivia', 'admin'] as const) {
        const denied = await creds('off', who);
        assert.equal(denied.status, 403, denied.text);
        assert.match(denied.body.message as string, /enable_ci/);
        assert.ok(!denied.text.includes(off.credentials.password as string));
      }
      // A key limited to registry scopes cannot fetch logins through the API.
      const pullKey = await api.call('POST', '/api/v1/keys', as('alice'), { name: 'pull-only', scopes: ['pull', 'push'] }, { exempt: true });
      assert.equal(pullKey.status, 201, pullKey.text);
      assert.equal((await api.call('GET', `${registries()}/${ids.basic!}/creds`, bearer(pullKey.body.key as string), undefined, { exempt: true })).status, 403);
      assert.equal((await api.call('GET', `${registries()}/${ids.basic!}/creds`, undefined, undefined, { exempt: true })).status, 401);

      // The audit log has every hand-out, granted and refused, with who, what and from where.
      const entries = (await auditOf('registry.creds')).slice(before);
      const ok = entries.filter((e) => e.outcome === 'ok');
      assert.equal(ok.length, handedOut, JSON.stringify(entries, null, 1));
      for (const who of ['alice', 'olivia', 'admin']) {
        for (const name of Object.keys(expected)) {
          assert.ok(ok.some((e) => e.actor === who && e.target === `team/${ids[name]!}`), `hand-out of ${name} to ${who} is audited`);
        }
        assert.ok(entries.some((e) => e.actor === who && e.target === `team/${ids.off!}` && e.outcome === 'denied'), `refusal (enable_ci off) to ${who} is audited`);
      }
      for (const entry of entries) {
        assert.equal(entry.action, 'registry.creds');
        assert.match(entry.address ?? '', /127\.0\.0\.1/);
        const text = JSON.stringify(entry);
        for (const login of Object.values(expected)) assert.ok(!text.includes(login.password), 'the audit log holds a handed-out secret');
      }
    });

    test('creds: a reader\'s refused request for a login is audited too', { timeout: 60_000 }, async () => {
      const f = fixture('basic');
      const created = await create('reader-audit.example.com', 'basic', f, true);
      assert.equal(created.status, 201, created.text);
      const id = created.body.id as string;
      assert.equal((await api.call('GET', `${registries()}/${id}/creds`, as('bob'), undefined, { exempt: true })).status, 403);
      const entries = await auditOf('registry.creds');
      assert.ok(entries.some((e) => e.actor === 'bob' && e.target === `team/${id}` && e.outcome === 'denied'), JSON.stringify(entries.filter((e) => e.actor === 'bob')));
    });

    test('PATCH of credentials changes what creds returns at once; enable_ci can be turned off and on', { timeout: 60_000 }, async () => {
      const first = fixture('basic');
      const expiresAt = Date.now() + 24 * 3600_000;
      const created = await api.call('POST', registries(), as('olivia'), { prefix: 'rotate.example.com', type: 'basic', credentials: { ...first.credentials, expiresAt }, enable_ci: true });
      assert.equal(created.status, 201, created.text);
      const url = `${registries()}/${created.body.id as string}`;
      const creds = () => api.call('GET', `${url}/creds`, as('alice'), undefined, { exempt: true });

      // A temporary pair: handed out with its expiry (and kept by the server's login cache).
      let got = await creds();
      assert.equal(got.status, 200, got.text);
      assert.deepEqual(got.body, { username: first.credentials.username, password: first.credentials.password, expires_at: new Date(expiresAt).toISOString() });
      assert.deepEqual((await creds()).body, got.body);

      const second = fixture('basic');
      assert.equal((await api.call('PATCH', url, as('olivia'), { credentials: { ...second.credentials, expiresAt: expiresAt + 1000 } })).status, 200);
      got = await creds();
      assert.deepEqual(got.body, { username: second.credentials.username, password: second.credentials.password, expires_at: new Date(expiresAt + 1000).toISOString() }, 'the new pair, not a cached old one');

      const third = fixture('basic');
      assert.equal((await api.call('PATCH', url, as('olivia'), { credentials: third.credentials })).status, 200);
      assert.deepEqual((await creds()).body, { username: third.credentials.username, password: third.credentials.password, expires_at: null });

      // Another type altogether.
      const swr = fixture('swr');
      const retyped = await api.call('PATCH', url, as('olivia'), { type: 'swr', credentials: { ...swr.credentials, region: 'ap-southeast-1' } });
      assert.equal(retyped.status, 200, retyped.text);
      assert.equal(retyped.body.region, 'ap-southeast-1');
      assert.deepEqual((await creds()).body, {
        username: `ap-southeast-1@${swr.credentials.accessKey as string}`,
        password: swrPassword(swr.credentials.accessKey as string, swr.credentials.secretKey as string),
        expires_at: null,
      });

      // enable_ci off: refused; a PATCH of the prefix alone keeps the material.
      assert.equal((await api.call('PATCH', url, as('olivia'), { enable_ci: false })).status, 200);
      assert.equal((await creds()).status, 403);
      assert.equal((await api.call('PATCH', url, as('olivia'), { enable_ci: true, prefix: 'rotated.example.com' })).status, 200);
      got = await creds();
      assert.equal(got.status, 200, got.text);
      assert.equal(got.body.username, `ap-southeast-1@${swr.credentials.accessKey as string}`);

      // Gone after DELETE.
      assert.equal((await api.call('DELETE', url, as('olivia'))).status, 204);
      assert.equal((await creds()).status, 404);
      assert.equal((await api.call('GET', url, as('olivia'))).status, 404);
    });

    test('an SWR record whose region or access key can never make a login is refused when stored', { timeout: 60_000 }, async () => {
      for (const [field, value] of [['region', 'cn-north-4@x'], ['region', 'cn north 4'], ['accessKey', 'AK@X']] as const) {
        const f = fixture('swr');
        const created = await create(`bad-swr-${randomBytes(3).toString('hex')}.example.com`, 'swr', { ...f, credentials: { ...f.credentials, [field]: value } }, true);
        if (created.status === 201) await api.call('DELETE', `${registries()}/${created.body.id as string}`, as('olivia'));
        assert.equal(created.status, 400, `${field}=${value}: ${created.text}`);
      }
    });
  });

  describe(`secrets stay secret (${dialect.name})`, () => {
    test('after a full scenario no secret is in the server logs, any API response or the database', { timeout: 60_000 }, async () => {
      const logs: string[] = [];
      const adminPassword = unique('admin-pw');
      const ts = await startTestServer({ dialect, config: { auth: { enabled: true, adminPassword }, log: { level: 'trace', requests: true } }, logSink: logs });
      /** label → secret; labels are what a failure shows, never the secret. */
      const secrets = new Map<string, string>();
      const keep = (label: string, value: string) => secrets.set(label, value);
      const dataFiles: Array<{ file: string; data: Buffer }> = [];
      const api = new Api(ts.url);
      try {
        const team = await setUpTeam(api, adminPassword);
        keep('admin password', adminPassword);
        for (const [name, password] of Object.entries(team.passwords)) {
          keep(`${name}'s password`, password);
          keep(`${name}'s basic header`, Buffer.from(`${name}:${password}`).toString('base64'));
        }
        for (const [name, key] of Object.entries(team.keys)) {
          keep(`${name}'s API key`, key);
          keep(`${name}'s API key secret`, key.split('.')[1]!);
        }
        keep('admin basic header', Buffer.from(`admin:${adminPassword}`).toString('base64'));
        const as = (who: keyof Team['keys']) => bearer(team.keys[who]);

        // Logins on every path: token endpoint (basic, form password grant, refresh), /v2 basic
        // with a password and with an API key, the API with basic; and failed ones.
        const scope = encodeURIComponent('repository:team/app:pull,push');
        const token = await api.call('GET', `/auth/token?service=slipway&scope=${scope}&offline_token=true`, basic('alice', team.passwords.alice));
        assert.equal(token.status, 200, token.text);
        const form = (fields: Record<string, string>) => api.call('POST', '/auth/token', undefined, undefined, { raw: new URLSearchParams(fields).toString(), contentType: 'application/x-www-form-urlencoded' });
        const granted = await form({ grant_type: 'password', username: 'bob', password: team.passwords.bob, service: 'slipway', scope: 'repository:team/app:pull', access_type: 'offline', client_id: 'test' });
        assert.equal(granted.status, 200, granted.text);
        assert.equal((await form({ grant_type: 'refresh_token', refresh_token: granted.body.refresh_token as string, service: 'slipway', client_id: 'test' })).status, 200);
        const wrongPassword = unique('wrong-password');
        keep('a wrong password', wrongPassword);
        assert.equal((await form({ grant_type: 'password', username: 'bob', password: wrongPassword, service: 'slipway' })).status, 401);
        assert.equal((await api.call('GET', '/v2/', basic('alice', wrongPassword))).status, 401);
        assert.equal((await api.call('GET', '/api/v1/me', basic('carol', wrongPassword))).status, 401);
        const forgedKey = `${team.keys.carol.split('.')[0]!}.${randomBytes(32).toString('base64url')}`;
        keep('a forged API key', forgedKey.split('.')[1]!);
        assert.equal((await api.call('GET', '/api/v1/me', bearer(forgedKey))).status, 401);
        assert.equal((await api.call('GET', '/v2/', basic('ci', forgedKey))).status, 401);
        assert.equal((await api.call('GET', '/v2/', basic('alice', team.passwords.alice))).status, 200);
        assert.equal((await api.call('GET', '/v2/', basic('ci', team.keys.alice))).status, 200);
        assert.equal((await api.call('GET', '/api/v1/me', basic('bob', team.passwords.bob))).status, 200);
        assert.equal((await api.call('GET', '/api/v1/me', bearer(team.keys.bob))).status, 200);
        // A push with an API key as the password, a pull with the bearer token.
        const blob = randomBytes(512);
        const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
        const started = await api.call('POST', '/v2/team/app/blobs/uploads/', basic('ci', team.keys.alice));
        assert.equal(started.status, 202, started.text);
        const location = new URL(started.headers.get('location')!, ts.url);
        location.searchParams.set('digest', digest);
        const put = await fetch(location, { method: 'PUT', body: new Uint8Array(blob), headers: { authorization: basic('ci', team.keys.alice), 'content-type': 'application/octet-stream' } });
        assert.equal(put.status, 201);
        api.seen.push({ method: 'PUT', url: location.pathname, status: put.status, text: `${put.status}\n${[...put.headers.entries()].join('\n')}\n\n${await put.text()}`, exempt: false });
        assert.equal((await api.call('GET', `/v2/team/app/blobs/${digest}`, bearer(token.body.token as string))).status, 200);
        // A second key, listed, then revoked; the revoked key no longer works.
        const extra = await api.call('POST', '/api/v1/keys', as('alice'), { name: 'short-lived', scopes: ['pull'], expiresIn: '1h' }, { exempt: true });
        assert.equal(extra.status, 201, extra.text);
        keep('a revoked API key', extra.body.key as string);
        assert.equal((await api.call('GET', '/api/v1/keys', as('alice'))).status, 200);
        assert.equal((await api.call('DELETE', `/api/v1/keys/${extra.body.id as string}`, as('alice'))).status, 204);
        assert.equal((await api.call('GET', '/v2/', basic('ci', extra.body.key as string))).status, 401);

        // External registries of every type, with secrets; some changed later.
        const ids: Partial<Record<CredentialType, string>> = {};
        const fixtures: Partial<Record<CredentialType, Fixture>> = {};
        for (const type of types) {
          const f = fixture(type);
          fixtures[type] = f;
          f.secrets.forEach((secret, i) => keep(`${type} secret ${i}`, secret));
          const created = await api.call('POST', '/api/v1/namespaces/team/registries', as('olivia'), { prefix: `secrets-${type}.example.com`, type, credentials: f.credentials, enable_ci: ['basic', 'swr', 'acr', 'ocir'].includes(type) });
          assert.equal(created.status, 201, created.text);
          ids[type] = created.body.id as string;
        }
        const swr0 = fixtures.swr!;
        keep('SWR login password', swrPassword(swr0.credentials.accessKey as string, swr0.credentials.secretKey as string));
        // Requests that are refused while carrying secrets.
        const refused = fixture('basic');
        keep('a refused basic password', refused.secrets[0]!);
        const refusedUser = { ...refused.credentials };
        delete refusedUser.username;
        assert.equal((await api.call('POST', '/api/v1/namespaces/team/registries', as('olivia'), { prefix: 'refused.example.com', type: 'basic', credentials: refusedUser })).status, 400);
        assert.equal((await api.call('POST', '/api/v1/namespaces/team/registries', as('olivia'), { prefix: 'refused.example.com', type: 'quay', credentials: refused.credentials })).status, 400);
        assert.equal((await api.call('POST', '/api/v1/namespaces/team/registries', as('olivia'), { prefix: 'refused', type: 'basic', credentials: refused.credentials })).status, 400);
        assert.equal((await api.call('POST', '/api/v1/namespaces/team/registries', as('olivia'), { prefix: 'secrets-basic.example.com', type: 'basic', credentials: refused.credentials })).status, 409);
        assert.equal((await api.call('POST', '/api/v1/namespaces/team/registries', as('alice'), { prefix: 'refused.example.com', type: 'basic', credentials: refused.credentials })).status, 403);
        assert.equal((await api.call('POST', '/api/v1/namespaces/team/registries', as('carol'), { prefix: 'refused.example.com', type: 'basic', credentials: refused.credentials })).status, 404);
        assert.equal((await api.call('POST', '/api/v1/namespaces/team/registries', as('olivia'), undefined, { raw: `{"prefix":"refused.example.com","type":"basic","credentials":{"username":"u","password":${refused.secrets[0]!}}}` })).status, 400);
        assert.equal((await api.call('PATCH', `/api/v1/namespaces/team/registries/${ids.acr!}`, as('olivia'), { credentials: { clientSecret: refused.secrets[0] } })).status, 400);
        // Changes of material: the old and the new secrets are both secrets.
        for (const type of ['basic', 'swr', 'ecr', 'gar'] as const) {
          const next = fixture(type);
          next.secrets.forEach((secret, i) => keep(`${type} rotated secret ${i}`, secret));
          const patched = await api.call('PATCH', `/api/v1/namespaces/team/registries/${ids[type]!}`, as('olivia'), { credentials: next.credentials });
          assert.equal(patched.status, 200, patched.text);
          fixtures[type] = next;
        }
        const swr1 = fixtures.swr!;
        keep('rotated SWR login password', swrPassword(swr1.credentials.accessKey as string, swr1.credentials.secretKey as string));
        // Reading it all back as members.
        for (const who of ['olivia', 'alice', 'bob'] as const) {
          assert.equal((await api.call('GET', '/api/v1/namespaces/team/registries', as(who))).status, 200);
          for (const id of Object.values(ids)) assert.equal((await api.call('GET', `/api/v1/namespaces/team/registries/${id}`, as(who))).status, 200);
          assert.equal((await api.call('GET', `/api/v1/namespaces/team/registries/match?image=${encodeURIComponent('secrets-swr.example.com/app:1')}`, as(who))).status, 200);
        }
        // Hand-outs (their answers legitimately hold secrets) and refusals.
        for (const type of ['basic', 'swr', 'acr', 'ocir'] as const) {
          const got = await api.call('GET', `/api/v1/namespaces/team/registries/${ids[type]!}/creds`, as('alice'), undefined, { exempt: true });
          assert.equal(got.status, 200, `${type}: ${got.status}`);
        }
        const handedOut = api.seen.filter((s) => s.exempt && s.url.endsWith('/creds')).map((s) => s.text).join('\n');
        assert.ok(handedOut.includes(fixtures.basic!.secrets[0]!), 'sanity: the hand-out holds the current basic password');
        assert.ok(handedOut.includes(secrets.get('rotated SWR login password')!), 'sanity: the hand-out holds the SWR login');
        assert.equal((await api.call('GET', `/api/v1/namespaces/team/registries/${ids.basic!}/creds`, as('bob'), undefined, { exempt: true })).status, 403);
        assert.equal((await api.call('GET', `/api/v1/namespaces/team/registries/${ids.ecr!}/creds`, as('alice'), undefined, { exempt: true })).status, 403);
        assert.equal((await api.call('GET', `/api/v1/namespaces/team/registries/${ids.basic!}/creds`, as('carol'), undefined, { exempt: true })).status, 404);
        // The audit log, as the admin reads it; then one record is deleted.
        for (const action of ['login', 'registry.creds', 'registry.create', 'registry.update', 'key.create', 'key.revoke']) {
          assert.equal((await api.call('GET', `/api/v1/audit?action=${action}&limit=1000`, as('admin'))).status, 200);
        }
        assert.equal((await api.call('GET', '/api/v1/audit?limit=1000', as('admin'))).status, 200);
        assert.equal((await api.call('DELETE', `/api/v1/namespaces/team/registries/${ids.ocir!}`, as('olivia'))).status, 204);
        assert.equal((await api.call('GET', '/api/v1/users', as('admin'))).status, 200);
        assert.equal((await api.call('GET', '/api/v1/namespaces/team/members', as('bob'))).status, 200);

        // Everything the server keeps: every file of its data folder (SQLite's db, -wal, -shm
        // included), or every row of every table on PostgreSQL.
        const walk = async (dir: string): Promise<string[]> => {
          const out: string[] = [];
          for (const entry of await readdir(dir, { withFileTypes: true })) {
            const full = path.join(dir, entry.name);
            if (entry.isDirectory()) out.push(...await walk(full));
            else if (entry.isFile()) out.push(full);
          }
          return out;
        };
        for (const file of await walk(ts.dataDir)) dataFiles.push({ file: path.relative(ts.dataDir, file), data: await readFile(file) });
        if (dialect.name === 'sqlite') {
          assert.ok(dataFiles.some((f) => f.file === 'slipway.db'), 'sanity: the SQLite file was read');
        } else {
          const client = new pg.Client({ connectionString: ts.config.database });
          await client.connect();
          try {
            const tables = await client.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'");
            assert.ok(tables.rows.length >= 10, 'sanity: the tables were found');
            for (const { table_name: table } of tables.rows) {
              const rows = await client.query(`SELECT * FROM "${table}"`);
              const parts: Buffer[] = [];
              for (const row of rows.rows as Array<Record<string, unknown>>) {
                for (const value of Object.values(row)) parts.push(Buffer.isBuffer(value) ? value : Buffer.from(typeof value === 'string' ? value : JSON.stringify(value) ?? ''));
              }
              // Also the text form PostgreSQL itself gives each row (covers every column type).
              const asText = await client.query<{ row: string }>(`SELECT t::text AS row FROM "${table}" t`);
              parts.push(Buffer.from(asText.rows.map((r) => r.row).join('\n')));
              dataFiles.push({ file: `table ${table}`, data: Buffer.concat(parts) });
            }
          } finally {
            await client.end();
          }
        }
      } finally {
        await ts.close();
      }

      // Sanity: the places searched hold real data, so finding nothing means something.
      const logText = logs.join('');
      assert.ok(logs.length > 50, `the server logged (${logs.length} lines)`);
      assert.ok(logText.includes('incoming request') && logText.includes('/api/v1/namespaces/team/registries'), 'request lines were logged');
      const stored = Buffer.concat(dataFiles.map((f) => f.data));
      assert.ok(stored.includes('olivia') && stored.includes('secrets-basic.example.com') && stored.includes('registry.creds'), 'the database holds the scenario');
      const shown = api.seen.filter((s) => !s.exempt);
      assert.ok(shown.length > 60, `responses seen: ${shown.length}`);
      assert.ok(api.seen.some((s) => s.exempt && s.text.includes(secrets.get("alice's API key")!)), 'sanity: the key creation answer holds the key');

      const leaks: string[] = [];
      for (const [label, secret] of secrets) {
        logs.forEach((line, i) => { if (line.includes(secret)) leaks.push(`${label} in log line ${i}: ${line.replaceAll(secret, '<SECRET>').slice(0, 300)}`); });
        for (const s of shown) if (s.text.includes(secret)) leaks.push(`${label} in the answer to ${s.method} ${s.url} (${s.status}): ${s.text.replaceAll(secret, '<SECRET>').slice(0, 300)}`);
        for (const f of dataFiles) if (f.data.includes(secret)) leaks.push(`${label} in ${dialect.name} ${f.file}`);
      }
      assert.deepEqual(leaks, []);
    });
  });
}
