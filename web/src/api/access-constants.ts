// Browser copy of the two constants auth/api.ts needs from auth/access.ts (see vite.config.ts).
// TODO: take from a browser-safe src/auth module once one exists.
export type Role = 'owner' | 'contributor' | 'reader';
export const roles: readonly Role[] = ['owner', 'contributor', 'reader'];
export const keyScopes = ['*', 'pull', 'push', 'delete', 'api'] as const;
