/**
 * @module auth/roles
 * The namespace roles and the scopes an API key may be limited to: the constants auth/api.ts
 * validates with. Apart from access.ts (which hashes passwords with node:crypto) so the api
 * module loads in the browser too.
 */
export type Role = 'owner' | 'contributor' | 'reader';
export const roles: readonly Role[] = ['owner', 'contributor', 'reader'];

/** Scopes an API key may be limited to; `*` is everything its owner may do. */
/** `metrics`: may read GET /metrics (only keys of server admins; see auth/api-guard). */
export const keyScopes = ['*', 'pull', 'push', 'delete', 'api', 'metrics'] as const;
export type KeyScope = (typeof keyScopes)[number];
