/**
 * The OpenAPI document of /api/v1 against the server it describes: public, OpenAPI 3.1, every
 * registered /api/v1 route in it with an answer schema and its access, every operation
 * registered, the shared Error shape and the security schemes, the docs page served offline,
 * and (through the one typed client) answers of real calls matching their documented schemas.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import type { z } from 'zod';
import { startTestServer, type TestServer } from './helpers/harness.js';
import { ApiCallError, ApiClient, type ApiInput } from '../src/http/api-client.js';
import type { Operation } from '../src/http/api-contract.js';
import { apiOperations, operationLists } from '../src/http/api-operations.js';
import { apiRoutesOf } from '../src/http/openapi.js';

const adminPassword = 'admin-secret-Pa55word';
type Doc = {
  openapi: string;
  info: { title: string; version: string; 'x-api-version'?: string };
  paths: Record<string, Record<string, { operationId?: string; 'x-access'?: string; security?: unknown[]; responses?: Record<string, { content?: unknown; description?: string }> }>>;
  components: { schemas: Record<string, { properties?: Record<string, { enum?: string[] }>; required?: string[] }>; securitySchemes: Record<string, { type: string; scheme: string }> };
};

/** `/api/v1/namespaces/:ns/…` → `/api/v1/namespaces/{ns}/…`, `*` → `{*}` (as @fastify/swagger writes them). */
const documentedPath = (url: string) => url.replace(/:([A-Za-z_]\w*)/g, '{$1}').replace(/\*$/, '{*}');

describe('OpenAPI document of /api/v1', { timeout: 120_000 }, () => {
  let ts: TestServer;
  let doc: Doc;
  let admin: ApiClient;

  before(async () => {
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword }, functions: { enabled: true } } });
    admin = new ApiClient({ baseUrl: ts.url, auth: { kind: 'basic', username: 'admin', password: adminPassword } });
  });
  after(async () => {
    await ts?.close();
  });

  test('is public and OpenAPI 3.1, with no secret in it', async () => {
    const response = await fetch(`${ts.url}/api/v1/openapi.json`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /application\/json/);
    const text = await response.text();
    doc = JSON.parse(text) as Doc;
    assert.equal(doc.openapi, '3.1.0');
    // info.version is Slipway's own; the contract's generation (the /api/v1 of the paths) beside it.
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(doc.info.version, pkg.version);
    assert.equal(doc.info['x-api-version'], 'v1');
    assert.ok(!text.includes(adminPassword));
    // Only the REST API: not /v2, /fn, /auth/token or the health endpoints.
    for (const path of Object.keys(doc.paths)) assert.ok(path.startsWith('/api/v1/'), path);
  });

  test('every registered /api/v1 route is documented, with an answer schema and its access', () => {
    const routes = apiRoutesOf(ts.server.app);
    // Functions are on in this server, so every part's routes are registered.
    assert.ok(routes.length >= 85 && routes.some((r) => r.url.includes('/functions/')), `only ${routes.length} routes seen`);
    const problems: string[] = [];
    for (const { method, url, documented } of routes) {
      const entry = doc.paths[documentedPath(url)]?.[method.toLowerCase()];
      if (!documented || !entry) { problems.push(`${method} ${url}: not in the document`); continue; }
      if (!entry['x-access']) problems.push(`${method} ${url}: no x-access`);
      const answers = Object.entries(entry.responses ?? {}).filter(([status]) => /^[23]\d\d$/.test(status));
      if (answers.length === 0) problems.push(`${method} ${url}: no success answer`);
      for (const [status, answer] of answers) if (status !== '204' && !answer.content) problems.push(`${method} ${url}: ${status} has no schema`);
      if (!entry.responses?.['4XX']) problems.push(`${method} ${url}: no error answer`);
      if (entry['x-access'] === 'public') assert.deepEqual(entry.security, [], `${method} ${url}: public but asks for credentials`);
      else assert.ok((entry.security ?? []).length > 0, `${method} ${url}: needs credentials but names no scheme`);
    }
    assert.deepEqual(problems, []);
  });

  test('every operation is registered as a route, and no two parts share an operation id', () => {
    const routes = new Set(apiRoutesOf(ts.server.app).map((r) => `${r.method} ${r.url}`));
    for (const [id, operation] of Object.entries(apiOperations) as Array<[string, Operation]>) {
      assert.ok(routes.has(`${operation.method} ${operation.path}`), `${id}: ${operation.method} ${operation.path} is not a route`);
    }
    const total = Object.values(operationLists).reduce((sum, list) => sum + Object.keys(list).length, 0);
    assert.equal(Object.keys(apiOperations).length, total, 'an operation id is used by two parts');
  });

  test('the Error component and the security schemes', () => {
    const error = doc.components.schemas.Error!;
    assert.deepEqual(error.required, ['code', 'message']);
    for (const code of ['BAD_REQUEST', 'UNAUTHORIZED', 'FORBIDDEN', 'NOT_FOUND', 'INTERNAL']) assert.ok(error.properties?.code?.enum?.includes(code), code);
    assert.ok(doc.components.schemas.ArtifactStorageError);
    assert.deepEqual(doc.components.securitySchemes.basic, { ...doc.components.securitySchemes.basic, type: 'http', scheme: 'basic' });
    assert.deepEqual(doc.components.securitySchemes.apiKey, { ...doc.components.securitySchemes.apiKey, type: 'http', scheme: 'bearer' });
    const storage = doc.paths['/api/v1/namespaces/{ns}/builds']!.get!;
    assert.match(JSON.stringify(storage.responses?.['4XX']), /ArtifactStorageError/);
  });

  test('/api/docs is served offline: its scripts and styles come from this server', async () => {
    const page = await fetch(`${ts.url}/api/docs/`, { redirect: 'follow' });
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    const html = await page.text();
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    assert.ok(assets.some((a) => a.endsWith('swagger-ui-bundle.js')) && assets.some((a) => a.endsWith('.css')), html);
    for (const asset of assets) {
      assert.ok(!/^(https?:)?\/\//.test(asset), `${asset} is not on this server`);
      const response = await fetch(new URL(asset, `${ts.url}/api/docs/`));
      assert.equal(response.status, 200, asset);
      await response.arrayBuffer();
    }
  });

  test('real answers match their documented schemas (through the typed client)', async () => {
    const ops = apiOperations;
    const checked: string[] = [];
    const check = async <O extends Operation>(id: string, operation: O, input?: ApiInput<O>, as: ApiClient = admin) => {
      const answer = await as.call(operation, input as never);
      const schemas = Object.values(operation.answers).filter((a): a is z.ZodType => a !== null && !('raw' in a));
      if (schemas.length === 0) { checked.push(id); return answer; }
      const results = schemas.map((schema) => schema.safeParse(answer));
      assert.ok(results.some((r) => r.success), `${id}: ${JSON.stringify(results[0]!.error?.issues)} in ${JSON.stringify(answer)}`);
      checked.push(id);
      return answer;
    };

    await check('getOpenApi', ops.getOpenApi, undefined, new ApiClient({ baseUrl: ts.url }));
    const session = await check('createSession', ops.createSession, { body: { username: 'admin', password: adminPassword } }, new ApiClient({ baseUrl: ts.url })) as { token: string };
    const bearer = new ApiClient({ baseUrl: ts.url, auth: { kind: 'bearer', key: session.token } });
    await check('getMe', ops.getMe, undefined, bearer);
    await check('createNamespace', ops.createNamespace, { body: { name: 'docs' } });
    await check('listNamespaces', ops.listNamespaces);
    await check('createUser', ops.createUser, { body: { name: 'dora', password: 'dora-password-1' } });
    await check('listUsers', ops.listUsers);
    await check('setMember', ops.setMember, { params: { ns: 'docs', member: 'dora' }, body: { role: 'reader' } });
    await check('listMembers', ops.listMembers, { params: { ns: 'docs' } });
    await check('removeMember', ops.removeMember, { params: { ns: 'docs', member: 'dora' } });
    await check('setPassword', ops.setPassword, { params: { name: 'dora' }, body: { password: 'dora-password-2' } });
    const key = await check('createKey', ops.createKey, { body: { name: 'ci' } }) as { id: string };
    await check('listKeys', ops.listKeys);
    await check('revokeKey', ops.revokeKey, { params: { id: key.id } });
    await check('setRepositoryVisibility', ops.setRepositoryVisibility, { params: { '*': 'docs/app/visibility' }, body: { public: true } });
    await check('listAudit', ops.listAudit, { query: { limit: 5 } });
    await check('putSecret', ops.putSecret, { params: { ns: 'docs', name: 'token' }, body: { value: 's3cret-value' } });
    await check('listSecrets', ops.listSecrets, { params: { ns: 'docs' } });
    await check('deleteSecret', ops.deleteSecret, { params: { ns: 'docs', name: 'token' } });
    const registry = await check('createRegistry', ops.createRegistry, { params: { ns: 'docs' }, body: { prefix: 'registry.example.com/team', type: 'basic', credentials: { username: 'u', password: 'p' } } }) as { id: string };
    await check('listRegistries', ops.listRegistries, { params: { ns: 'docs' } });
    await check('matchRegistry', ops.matchRegistry, { params: { ns: 'docs' }, query: { image: 'registry.example.com/team/app:1' } });
    await check('getRegistry', ops.getRegistry, { params: { ns: 'docs', id: registry.id } });
    await check('updateRegistry', ops.updateRegistry, { params: { ns: 'docs', id: registry.id }, body: { enable_ci: true } });
    await check('getRegistryLogin', ops.getRegistryLogin, { params: { ns: 'docs', id: registry.id } });
    await check('deleteRegistry', ops.deleteRegistry, { params: { ns: 'docs', id: registry.id } });
    await check('listBuilds', ops.listBuilds, { params: { ns: 'docs' } });
    await check('setBuildSettings', ops.setBuildSettings, { params: { ns: 'docs' }, body: { imageNameTemplate: null } });
    await check('listFunctions', ops.listFunctions, { params: { ns: 'docs' } });
    await check('listPipelines', ops.listPipelines, { params: { ns: 'docs' } });
    await check('listArtefactVersions', ops.listArtefactVersions, { params: { ns: 'docs' } });
    const version = await check('createArtefactVersion', ops.createArtefactVersion, { params: { ns: 'docs' }, body: { type: 'container', name: 'registry.example.com/team/app', version: '1.0', digest: `sha256:${'a'.repeat(64)}` } }) as { id: string };
    await check('getArtefactVersion', ops.getArtefactVersion, { params: { ns: 'docs', id: version.id } });
    await check('archiveArtefactVersion', ops.archiveArtefactVersion, { params: { ns: 'docs', id: version.id }, body: { archived: true } });
    await check('createAutomationRule', ops.createAutomationRule, { params: { ns: 'docs' }, body: { name: 'ship', match: { name: 'registry.example.com/*' }, action: { deploy: { functions: ['web'] } } } });
    await check('listAutomationRules', ops.listAutomationRules, { params: { ns: 'docs' } });
    await check('getAutomationRule', ops.getAutomationRule, { params: { ns: 'docs', name: 'ship' } });
    await check('updateAutomationRule', ops.updateAutomationRule, { params: { ns: 'docs', name: 'ship' }, body: { active: false } });
    await check('deleteAutomationRule', ops.deleteAutomationRule, { params: { ns: 'docs', name: 'ship' } });
    const hook = await check('createWebhook', ops.createWebhook, { params: { ns: 'docs' }, body: { url: 'https://hooks.example.com/slipway', events: ['run.*'] } }) as { id: string };
    await check('listWebhooks', ops.listWebhooks, { params: { ns: 'docs' } });
    await check('getWebhook', ops.getWebhook, { params: { ns: 'docs', id: hook.id } });
    await check('updateWebhook', ops.updateWebhook, { params: { ns: 'docs', id: hook.id }, body: { active: false } });
    await check('listDeliveries', ops.listDeliveries, { params: { ns: 'docs', id: hook.id } });
    await check('listEvents', ops.listEvents, { params: { ns: 'docs' } });
    await check('deleteWebhook', ops.deleteWebhook, { params: { ns: 'docs', id: hook.id } });
    await check('deleteSession', ops.deleteSession, undefined, bearer);
    await assert.rejects(bearer.call(ops.getMe), (error: unknown) => error instanceof ApiCallError && error.status === 401 && error.code === 'UNAUTHORIZED');
    assert.ok(checked.length >= 45, checked.join(', '));
  });

  test('query strings are checked with their documented schemas: a 400 naming the parameter', async () => {
    const refused = async (path: string, parameter: string) => {
      const error = await admin.send('GET', path).then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof ApiCallError, `${path}: answered 2xx`);
      assert.equal(error.status, 400, `${path}: ${error.message}`);
      assert.equal(error.code, 'BAD_REQUEST', path);
      assert.match(error.serverMessage ?? '', new RegExp(`^${parameter}: `), path);
    };
    const ns = '/api/v1/namespaces/docs';
    await refused(`${ns}/events?limit=many`, 'limit');
    await refused(`${ns}/events?limit=0`, 'limit');
    await refused(`${ns}/builds?limit=1.5`, 'limit');
    await refused(`${ns}/builds?status=exploded`, 'status');
    await refused(`${ns}/builds?kind=vm`, 'kind');
    await refused(`${ns}/functions/none/logs?tail=-1`, 'tail');
    await refused(`${ns}/functions/none/logs?follow=maybe`, 'follow');
    // Good values still pass.
    assert.ok(Array.isArray(await admin.send('GET', `${ns}/builds?limit=5&status=failed&kind=image`)));
    assert.ok(((await admin.send('GET', `${ns}/events?limit=5`)) as { events: unknown[] }).events);
  });
});
