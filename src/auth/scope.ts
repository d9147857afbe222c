/**
 * @module auth/scope
 * The one seam between every route and access control: a route declares the scopes it needs
 * (`repository:<name>:pull`, `repository:<name>:push`, `registry:catalog:*` …) and the
 * surface calls `Authorizer.authorize` before the handler runs. The real authorizer
 * (auth/registry-authorizer) is chosen in the composition root; `allowAll` when auth is off.
 */
import type { FastifyRequest } from 'fastify';

export type AccessAction = 'pull' | 'push' | 'delete' | '*';

export interface AccessScope {
  type: 'repository' | 'registry';
  name: string;
  actions: AccessAction[];
}

export interface Authorizer {
  /** Resolves when the request may proceed; throws an error the surface renders (401/403) otherwise. */
  authorize(request: FastifyRequest, scopes: AccessScope[]): Promise<void>;
  /** Whether the caller holds `scope`, without failing: catalog filtering, a mount's source. */
  permits(request: FastifyRequest, scope: AccessScope): Promise<boolean>;
}

/** For a registry run without access control (`auth.enabled: false`). */
export const allowAll: Authorizer = {
  authorize: async () => undefined,
  permits: async () => true,
};

/** `repository:library/alpine:pull,push` — the token-scope syntax of registry auth. */
export function formatScope(scope: AccessScope): string {
  return `${scope.type}:${scope.name}:${scope.actions.join(',')}`;
}
