/**
 * @module http/api-contract
 * The shape of one documented `/api/v1` operation: method, path, the access it needs, and the
 * zod schemas of its query, body and answers. Each part lists its operations beside its routes
 * (`<part>/api.ts`); the routes validate with the same zod schemas, the OpenAPI document is
 * generated from them (http/openapi.ts) and the typed client takes its types from them
 * (http/api-client.ts). No node-only imports here: the dashboard bundles the types.
 */
import type { z } from 'zod';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * Who may call an operation: anyone; any signed-in principal; an admin; or a member of the
 * path's namespace with at least this role (the route checks it, the document states it).
 */
export type Access = 'public' | 'signed-in' | 'admin' | 'reader' | 'contributor' | 'owner' | 'self-or-admin';

/** A non-JSON answer (logs, archives, event streams), documented by media type only. */
export interface RawAnswer {
  raw: string;
  description?: string;
}

/** `null`: an empty answer (204). */
export type Answer = z.ZodType | RawAnswer | null;

export interface Operation {
  method: HttpMethod;
  /** Fastify's form: `/api/v1/namespaces/:ns/…`, `*` for a wildcard tail. */
  path: string;
  summary: string;
  description?: string;
  access: Access;
  query?: z.ZodType;
  /** A JSON body, validated by the route with this schema. */
  body?: z.ZodType;
  /** A body that is not JSON (multipart upload, YAML), documented by media type. */
  rawBody?: RawAnswer;
  /** Successful answers by status. Errors are added for every operation (the `Error` shape). */
  answers: Record<number, Answer>;
  /** The artifact-storage API adds `{status, errorMessage}` to the error shape. */
  errorShape?: 'error' | 'artifact-storage';
}

/** Keeps each operation's literal types (the client's types come from them). */
export function defineOperations<const T extends Record<string, Operation>>(operations: T): T {
  return operations;
}

/** `{ns: string, member: string}` from `/…/:ns/members/:member`; `{'*': string}` for a wildcard. */
export type PathParams<P extends string> =
  P extends `${string}:${infer Name}/${infer Rest}` ? { [K in Name]: string } & PathParams<`/${Rest}`>
    : P extends `${string}:${infer Name}` ? { [K in Name]: string }
      : P extends `${string}*` ? { '*': string }
        : unknown;
