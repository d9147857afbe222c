/**
 * @module functions/spec
 * The function resource as the API takes and shows it: the input schema (only `name` and
 * `image` required), the patch schema, and the views. Everything in `FunctionConfig` is part of
 * a revision: a change to it (or to the image's digest) makes a new immutable revision.
 */
import { z } from 'zod';

/** 1–60 of letters, digits, `-`, `_`; starts with a letter, ends with a letter or digit. */
export const functionNamePattern = /^[A-Za-z](?:[A-Za-z0-9_-]{0,58}[A-Za-z0-9])?$/;
const envName = /^[A-Za-z_][A-Za-z0-9_]*$/;
const envMap = z.record(z.string().regex(envName, 'environment variable names are letters, digits and _, not starting with a digit'), z.string().max(32 * 1024))
  .refine((m) => Object.keys(m).length <= 200, 'at most 200 variables');

export const functionConfigSchema = z.object({
  type: z.enum(['http', 'event']).default('event'),
  image: z.string().min(1).max(1024),
  /** Run the image at this digest instead of following the tag (auto-update off). */
  pinDigest: z.boolean().default(false),
  command: z.array(z.string().max(4096)).max(64).optional(),
  args: z.array(z.string().max(4096)).max(256).optional(),
  workingDir: z.string().max(4096).regex(/^\//, 'workingDir must be an absolute path').optional(),
  uid: z.number().int().min(1).max(65_534).default(1003),
  gid: z.number().int().min(1).max(65_534).default(1003),
  env: envMap.default({}),
  /** Values go to the vault; shown masked. */
  secretEnv: envMap.default({}),
  memoryMB: z.number().int().min(64).max(16_384).default(256),
  timeoutSeconds: z.number().int().min(1).max(900).default(30),
  minInstances: z.number().int().min(0).max(100).default(0),
  maxInstances: z.number().int().min(1).max(100).default(10),
  concurrency: z.number().int().min(1).max(1000).default(10),
  idleSeconds: z.number().int().min(1).max(86_400).default(300),
  logTags: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'tag names are letters, digits, _, . and -'), z.string().max(256)).default({}),
}).strict();

export const functionInputSchema = functionConfigSchema.extend({
  name: z.string().regex(functionNamePattern, 'name: 1–60 letters, digits, - and _, starting with a letter and ending with a letter or digit'),
  /** `private` (namespace members and function keys) or `public` (anyone may invoke). */
  access: z.enum(['private', 'public']).default('private'),
}).strict().refine((f) => f.minInstances <= f.maxInstances, { message: 'minInstances must not exceed maxInstances', path: ['minInstances'] });

/** PATCH: any field but `name`; `null` clears an optional override. */
export const functionPatchSchema = z.object({
  type: z.enum(['http', 'event']).optional(),
  image: z.string().min(1).max(1024).optional(),
  pinDigest: z.boolean().optional(),
  command: z.array(z.string().max(4096)).max(64).nullable().optional(),
  args: z.array(z.string().max(4096)).max(256).nullable().optional(),
  workingDir: z.string().max(4096).regex(/^\//, 'workingDir must be an absolute path').nullable().optional(),
  uid: z.number().int().min(1).max(65_534).optional(),
  gid: z.number().int().min(1).max(65_534).optional(),
  env: envMap.optional(),
  secretEnv: envMap.optional(),
  memoryMB: z.number().int().min(64).max(16_384).optional(),
  timeoutSeconds: z.number().int().min(1).max(900).optional(),
  minInstances: z.number().int().min(0).max(100).optional(),
  maxInstances: z.number().int().min(1).max(100).optional(),
  concurrency: z.number().int().min(1).max(1000).optional(),
  idleSeconds: z.number().int().min(1).max(86_400).optional(),
  logTags: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), z.string().max(256)).optional(),
  access: z.enum(['private', 'public']).optional(),
}).strict();

export type FunctionConfig = z.output<typeof functionConfigSchema>;
export type FunctionInput = z.output<typeof functionInputSchema>;
export type FunctionPatch = z.output<typeof functionPatchSchema>;

/** What a revision stores: the config with secret values sealed by the vault. */
export interface StoredConfig extends Omit<FunctionConfig, 'secretEnv'> {
  /** name → vault envelope */
  secretEnv: Record<string, string>;
}

export type FunctionStatus = 'deploying' | 'ready' | 'failed';
export type RevisionStatus = 'deploying' | 'ready' | 'failed' | 'retired';

export interface FunctionView extends Omit<FunctionConfig, 'secretEnv'> {
  namespace: string;
  name: string;
  access: 'private' | 'public';
  /** Secret variables with masked values. */
  secretEnv: Record<string, string>;
  /** The digest the active revision runs. */
  imageDigest: string | null;
  status: FunctionStatus;
  statusReason?: string;
  activeRevision: number | null;
  latestRevision: number;
  instances: number;
  /** Where HTTP functions answer, and event functions take invocations (path on this server). */
  url: string;
  createdAt: string;
  updatedAt: string;
}

export interface RevisionView {
  number: number;
  image: string;
  imageDigest: string | null;
  status: RevisionStatus;
  reason?: string;
  /** Last lines the failed instance printed. */
  output?: string[];
  active: boolean;
  createdAt: string;
  readyAt?: string;
}

export interface InvocationView {
  id: string;
  function: string;
  revision: number | null;
  status: 'queued' | 'running' | 'succeeded' | 'failed';
  attempts: number;
  createdAt: string;
  finishedAt?: string;
  /** The function's answer, body base64-encoded. */
  result?: { statusCode: number; headers: Record<string, string>; body: string; isBase64Encoded: true };
  error?: string;
}

export interface FunctionMetrics {
  requests: number;
  errors: number;
  timeouts: number;
  coldStarts: number;
  inFlight: number;
  queued: number;
  instances: number;
  latencyMs: { p50: number; p99: number };
}

export interface LogLine {
  time: string;
  function: string;
  revision: number;
  instance: string;
  stream: 'stdout' | 'stderr' | 'system';
  line: string;
  tags: Record<string, string>;
}
