/**
 * The gateway's fast path in front of Fastify (`gatewayFastPath`) with a stand-in function
 * service: which requests it takes (an HTTP function with cached facts that is public, or
 * called with a key verified moments ago) and which it leaves to the Fastify route (anything
 * that needs a lookup, the namespace check or an error answer), and how gateway URLs split.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import { gatewayFastPath, gatewayUrl } from '../src/functions/routes.js';
import type { ApiGuard } from '../src/auth/api-guard.js';
import type { FunctionFacts, FunctionService } from '../src/functions/service.js';

const timeout = { timeout: 10_000 };

/** A function service that knows only what the test put in its caches; records invocations. */
function stubService(facts: Record<string, FunctionFacts>, keys: Record<string, string> = {}) {
  const invoked: Array<{ ns: string; name: string; path: string; method: string }> = [];
  const service = {
    described: (ns: string, name: string) => facts[`${ns}/${name}`],
    checkedKey: (id: string, authorization: string | undefined) => {
      if (!authorization?.startsWith('Bearer slwfn_')) return false;
      const owner = keys[authorization.slice(7)];
      return owner === undefined ? undefined : owner === id;
    },
    invoke: async (ns: string, name: string, request: { path: string; method: string; res: http.ServerResponse }) => {
      invoked.push({ ns, name, path: request.path, method: request.method });
      request.res.end();
      return { status: 200, outcome: 'ok', requestBytes: 0, responseBytes: 0 };
    },
  };
  return { service: service as unknown as FunctionService, invoked };
}

function request(url: string, headers: Record<string, string> = {}): http.IncomingMessage {
  return { url, method: 'GET', headers, resume() { return this; } } as unknown as http.IncomingMessage;
}

function response(): http.ServerResponse {
  return { end() {}, once() { return this; }, headersSent: false } as unknown as http.ServerResponse;
}

const logger = { info() {}, error() {} };
const guard = {} as ApiGuard;

describe('function gateway fast path', () => {
  test('gateway URLs split into the function and the path as sent', timeout, () => {
    assert.deepEqual(gatewayUrl('/fn/ns/name'), { ns: 'ns', name: 'name', path: '/' });
    assert.deepEqual(gatewayUrl('/fn/ns/name/'), { ns: 'ns', name: 'name', path: '/' });
    assert.deepEqual(gatewayUrl('/fn/ns/name?x=1'), { ns: 'ns', name: 'name', path: '/?x=1' });
    assert.deepEqual(gatewayUrl('/fn/ns/name/a/b?x=%20'), { ns: 'ns', name: 'name', path: '/a/b?x=%20' });
    assert.deepEqual(gatewayUrl('/fn/ns/name/a%20b/c%2Fd'), { ns: 'ns', name: 'name', path: '/a%20b/c%2Fd' });
    assert.deepEqual(gatewayUrl('/fn/ns/name//double'), { ns: 'ns', name: 'name', path: '//double' });
    for (const url of ['/fn/', '/fn/ns', '/fn/ns/', '/fn//name/x', '/fn/ns?x=/a/b', '/api/v1/x', '/fnx/ns/name']) {
      assert.equal(gatewayUrl(url), undefined, url);
    }
  });

  test('a public HTTP function with cached facts is served in front of the router', timeout, () => {
    const { service, invoked } = stubService({ 'ns/web': { id: 'fn_1', type: 'http', access: 'public' } });
    const fast = gatewayFastPath({ functions: service, guard, logger, logRequests: false });
    assert.equal(fast(request('/fn/ns/web/hello?x=1'), response()), true);
    assert.deepEqual(invoked, [{ ns: 'ns', name: 'web', path: '/hello?x=1', method: 'GET' }]);
  });

  test('everything that needs a lookup, the namespace check or an error answer is left to the route', timeout, () => {
    const { service, invoked } = stubService({
      'ns/web': { id: 'fn_1', type: 'http', access: 'public' },
      'ns/private': { id: 'fn_2', type: 'http', access: 'private' },
      'ns/event': { id: 'fn_3', type: 'event', access: 'public' },
    }, { 'slwfn_k2.secret': 'fn_2', 'slwfn_k1.secret': 'fn_1' });
    const fast = gatewayFastPath({ functions: service, guard, logger, logRequests: false });
    const leftToRoute = (url: string, headers?: Record<string, string>) => assert.equal(fast(request(url, headers), response()), false, url);
    leftToRoute('/api/v1/namespaces/ns/functions');
    leftToRoute('/fn/ns/unknown/'); // not cached (or not there): the route looks it up
    leftToRoute('/fn/ns/event/'); // an event function: the route answers 404
    leftToRoute('/fn/ns%2Fx/web/'); // encoded names are decoded by the router
    leftToRoute('/fn/ns/private/'); // no credentials: the route answers 401
    leftToRoute('/fn/ns/private/', { authorization: 'Basic YWRtaW46eA==' }); // a member: the route checks the role
    leftToRoute('/fn/ns/private/', { authorization: 'Bearer slwfn_k9.unknown' }); // a key not verified yet
    leftToRoute('/fn/ns/private/', { authorization: 'Bearer slwfn_k1.secret' }); // a key of another function
    assert.equal(invoked.length, 0);

    assert.equal(fast(request('/fn/ns/private/x', { authorization: 'Bearer slwfn_k2.secret' }), response()), true, 'a verified key of the function');
    assert.deepEqual(invoked.map((i) => i.path), ['/x']);
  });

  test('without access control, private functions are served too', timeout, () => {
    const { service, invoked } = stubService({ 'ns/private': { id: 'fn_2', type: 'http', access: 'private' } });
    const fast = gatewayFastPath({ functions: service, logger, logRequests: false });
    assert.equal(fast(request('/fn/ns/private'), response()), true);
    assert.equal(invoked.length, 1);
  });
});
