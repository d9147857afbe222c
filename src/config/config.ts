/**
 * @module config
 * Owns Slipway's one configuration object: read from a YAML file, then environment variables,
 * then command-line flags (later sources win), validated once with strict keys, then frozen.
 * `process.env` is read here and nowhere else.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { durationPattern, parseDuration } from './duration.js';

export { parseDuration } from './duration.js';

const listenPattern = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** A duration such as `30s`, `15m`, `24h`; a bare number is seconds. Parsed to milliseconds. */
const duration = z.union([z.number().nonnegative(), z.string().regex(durationPattern, 'a duration such as 30s, 15m or 24h')])
  .transform((value) => parseDuration(value));

/**
 * The drivers each seam can be built with. `src/main.ts` picks the factory of the configured
 * name from the seam's map (`storage/drivers.ts`, `builds/drivers.ts`, `functions/runtimes.ts`,
 * each typed to have one factory per name here) and hands it only its own slice of the config.
 */
export const storageDriverNames = ['fs', 's3'] as const;
export const buildDriverNames = ['buildah'] as const;
export const runtimeNames = ['runc'] as const;
export type StorageDriverName = (typeof storageDriverNames)[number];
export type BuildDriverName = (typeof buildDriverNames)[number];
export type RuntimeName = (typeof runtimeNames)[number];

/** A driver name of `names`; anything else is refused listing the known ones. */
function driverName<const T extends readonly [string, ...string[]]>(names: T) {
  return z.enum(names, { error: (issue) => `unknown driver "${String(issue.input)}" (known: ${names.join(', ')})` });
}

const mebibyte = 1024 * 1024;

/** The `s3` storage driver's slice. Credentials: these keys (env SLIPWAY_S3_ACCESS_KEY_ID / SLIPWAY_S3_SECRET_ACCESS_KEY) or the AWS SDK's usual chain. */
const s3StorageSchema = z.strictObject({
  /** An S3-compatible server (MinIO, Ceph, …); default AWS's endpoint for `region`. */
  endpoint: z.string().url().optional(),
  /** Checked against `storage.driver` below: required only when the driver is s3. */
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name').optional(),
  region: z.string().min(1).default('us-east-1'),
  /** `http://host/bucket/key` addressing, which most self-hosted servers need. */
  forcePathStyle: z.boolean().default(false),
  /** Key prefix of everything Slipway stores, empty or ending in `/`, e.g. `slipway/`. */
  prefix: z.string().regex(/^([A-Za-z0-9._-]+\/)*$/, 'empty or path segments ending in /, e.g. slipway/').default(''),
  accessKeyId: z.string().min(1).optional(),
  secretAccessKey: z.string().min(1).optional(),
  /** Size of the objects an upload is stored in (S3's multipart minimum is 5 MiB): memory per upload in flight is about twice this. */
  partSize: z.number().int().min(5 * mebibyte).max(512 * mebibyte).default(8 * mebibyte),
  /** Blob GETs answer 307 to a presigned URL of the object (the client fetches from S3 itself) instead of streaming through the server; HEAD and small blobs stay local. */
  redirect: z.boolean().default(false),
  /** Lifetime of a presigned redirect URL. */
  redirectExpiry: duration.prefault('5m'),
});
export type S3StorageConfig = z.output<typeof s3StorageSchema>;

export const configSchema = z.strictObject({
  listen: z.string().regex(listenPattern, 'HOST:PORT, e.g. 127.0.0.1:5000').default('127.0.0.1:5000'),
  dataDir: z.string().min(1).default('./data'),
  /** `sqlite` (a file in the data folder, the default) or a `postgres://` URL. */
  database: z.string().refine((v) => v === 'sqlite' || /^postgres(ql)?:\/\//.test(v), 'either "sqlite" or a postgres:// URL').default('sqlite'),
  storage: z.strictObject({
    /** Where blobs (registry layers, component archives) are kept: `fs`, files in `<dataDir>/blobs`; `s3`, an S3-compatible bucket (`storage.s3`). */
    driver: driverName(storageDriverNames).default('fs'),
    s3: s3StorageSchema.optional(),
  }).prefault({}).superRefine((storage, context) => {
    if (storage.driver === 's3' && !storage.s3?.bucket) context.addIssue({ code: 'custom', path: ['s3', 'bucket'], message: 'required when storage.driver is s3' });
  }),
  logs: z.strictObject({
    /** Where build, pipeline-run and function logs are kept: `fs`, files in `<dataDir>/logs`; `blobstore`, chunks in the blob storage (`storage.driver`), readable and followable from every replica. */
    driver: z.enum(['fs', 'blobstore'], { error: (issue) => `unknown logs driver "${String(issue.input)}" (known: fs, blobstore)` }).default('fs'),
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Log one line per request; costs throughput on small requests. */
    requests: z.boolean().default(true),
  }).prefault({}),
  registry: z.strictObject({
    /** Deletes of manifests, tags and blobs; off answers UNSUPPORTED (405). */
    deleteEnabled: z.boolean().default(true),
    /** Largest manifest accepted (bytes); the spec asks for at least 4 MB. */
    maxManifestBytes: z.number().int().min(4 * 1024 * 1024).default(4 * 1024 * 1024),
    /** Upload sessions untouched this long are removed. */
    uploadExpiry: duration.prefault('24h'),
    gc: z.strictObject({
      /** Content unreferenced and untouched for this long may be collected. */
      gracePeriod: duration.prefault('1h'),
      /** Run GC in the server this often; 0 turns the schedule off. */
      interval: duration.prefault('6h'),
    }).prefault({}),
  }).prefault({}),
  auth: z.strictObject({
    /** Off: anyone may push and delete (a throw-away local registry). On by default. */
    enabled: z.boolean().default(true),
    /** Password of the `admin` user created on first start (env SLIPWAY_ADMIN_PASSWORD); generated and printed once when unset. */
    adminPassword: z.string().min(8).optional(),
    /** Token `aud`/`service` and the challenge's service. */
    service: z.string().min(1).default('slipway'),
    /** Absolute URL of the token endpoint for the challenge; default: derived from the request's Host. */
    realm: z.string().url().optional(),
    tokenTtl: duration.prefault('5m'),
    refreshTokenTtl: duration.prefault('30d'),
    /** How long a password that passed scrypt is remembered in memory (HTTP basic on every request); 0 turns it off. */
    loginCacheTtl: duration.prefault('1m'),
  }).prefault({}),
  builds: z.strictObject({
    /** What runs builds and build stages: `buildah` on this host (settings in `builds.buildah`). */
    driver: driverName(buildDriverNames).default('buildah'),
    /** Builds running at once on this server. */
    concurrency: z.number().int().min(1).max(64).default(1),
    /** A build running longer is stopped and failed. */
    timeout: duration.prefault('30m'),
    /** Largest uploaded build context (bytes, unpacked). */
    maxContextBytes: z.number().int().positive().default(512 * 1024 * 1024),
    /** `host:port` that image names carry (what clients pull from); default: the listen address. */
    registryHost: z.string().regex(listenPattern, 'HOST:PORT').optional(),
    /** Other registries builds reach over plain HTTP (Slipway's own always is, when it listens without TLS). */
    insecureRegistries: z.array(z.string().regex(listenPattern, 'HOST:PORT')).default([]),
    /** buildah's image store; default the host's (`/var/lib/containers/storage`). */
    buildah: z.strictObject({
      storageRoot: z.string().optional(),
      runRoot: z.string().optional(),
      storageDriver: z.enum(['overlay', 'vfs']).optional(),
    }).prefault({}),
    /** Default image name of `POST …/images`; `{component}`, `{branch}` are replaced. Per namespace in its settings. */
    imageNameTemplate: z.string().regex(/^[a-z0-9{}._-]+$/).default('{component}-{branch}-image'),
    /**
     * Build environments by name (the API's `architecture`): the platform images are built
     * for, and the builder image component steps run in (a reference in Slipway's registry or
     * elsewhere; `slipway base-image import --node` makes one offline).
     */
    architectures: z.record(z.string().regex(/^[a-z0-9._/-]+$/), z.strictObject({
      platform: z.string().regex(/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/, 'os/arch, e.g. linux/amd64'),
      builderImage: z.string().min(1),
    })).default({ 'linux/amd64': { platform: 'linux/amd64', builderImage: 'slipway/node-base:latest' } }),
  }).prefault({}),
  functions: z.strictObject({
    /** Run functions on this server (needs runc, root and `ip netns`); off: the API answers 503. */
    enabled: z.boolean().default(true),
    /** What runs function instances: `runc` on this host (its network: `addressPool`). */
    runtime: driverName(runtimeNames).default('runc'),
    /** An instance must listen on 8000 and answer `POST /init` within this. */
    startTimeout: duration.prefault('30s'),
    /** Largest request body of a synchronous call (and of a function's answer). */
    maxBodyBytes: z.number().int().positive().default(6 * 1024 * 1024),
    /** Largest event of an asynchronous invocation. */
    maxAsyncBodyBytes: z.number().int().positive().default(256 * 1024),
    /** Attempts of an asynchronous invocation (a 5xx answer, a timeout or a crash is retried). */
    asyncAttempts: z.number().int().min(1).max(20).default(3),
    /** Asynchronous invocations running at once. */
    asyncConcurrency: z.number().int().min(1).max(256).default(8),
    /** Addresses of instances: one /30 per instance. */
    addressPool: z.string().regex(/^\d+\.\d+\.\d+\.\d+\/\d+$/, 'an IPv4 CIDR such as 10.203.0.0/16').default('10.203.0.0/16'),
  }).prefault({}),
  pipelines: z.strictObject({
    /** Runs of pipelines at once (each may build images: keep it small on small machines). */
    concurrency: z.number().int().min(1).max(64).default(2),
    /** A stage (and a whole build spec) is stopped after this unless it says less. */
    stageTimeout: duration.prefault('1h'),
    /** Default poll interval of mirrored repositories. */
    mirrorInterval: duration.prefault('15m'),
    /** Default executor of build stages: `shell` (host, unprivileged user) or `container`. */
    executor: z.enum(['shell', 'container']).default('shell'),
    /** uid/gid the shell executor runs steps as (no passwd entry needed). */
    shellUid: z.number().int().min(1).max(65_534).default(1004),
    shellGid: z.number().int().min(1).max(65_534).default(1004),
    /** Builder image of `container` build stages that name none. */
    builderImage: z.string().min(1).default('slipway/node-base:latest'),
    /** Failed runs keep their workspace and local images this long, for a re-run from the failed stage. */
    keepFailed: duration.prefault('24h'),
  }).prefault({}),
  vault: z.strictObject({
    /** Base64 or hex of 32 bytes (env SLIPWAY_MASTER_KEY); wins over masterKeyFile. */
    masterKey: z.string().optional(),
    /** A file holding the master key (e.g. a mounted secret); default `<dataDir>/master.key`, created on first start. */
    masterKeyFile: z.string().optional(),
    /** Older master keys still accepted while `slipway vault rotate` re-wraps the data keys. */
    previousMasterKeys: z.array(z.string()).default([]),
  }).prefault({}),
  metrics: z.strictObject({
    /** Anyone may read GET /metrics (env SLIPWAY_METRICS_PUBLIC); off: server admins (password, or a key with the `metrics` scope). */
    public: z.boolean().default(false),
  }).prefault({}),
  shutdownTimeout: duration.prefault('30s'),
});

export type Config = Readonly<z.output<typeof configSchema>>;
export type ConfigInput = z.input<typeof configSchema>;

export class ConfigError extends SlipwayError {
  override name = 'ConfigError';
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}

export interface ConfigSources {
  /** Path of a YAML file (`--config`). */
  file?: string;
  /** The environment; only `SLIPWAY_*` variables are read. */
  env?: Record<string, string | undefined>;
  /** Values from command-line flags, already in config shape. */
  flags?: ConfigInput;
}

/** Merge file → env → flags, validate, resolve the data folder, freeze. */
export function loadConfig(sources: ConfigSources = {}): Config {
  let fromFile: unknown = {};
  if (sources.file) {
    let text: string;
    try {
      text = readFileSync(sources.file, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read config file ${sources.file}: ${(error as Error).message}`);
    }
    try {
      fromFile = parseYaml(text) ?? {};
    } catch (error) {
      throw new ConfigError(`config file ${sources.file} is not valid YAML: ${(error as Error).message}`);
    }
    if (typeof fromFile !== 'object' || Array.isArray(fromFile)) throw new ConfigError(`config file ${sources.file} must hold a mapping`);
  }
  const merged = deepMerge(deepMerge(fromFile as Record<string, unknown>, fromEnv(sources.env ?? {})), (sources.flags ?? {}) as Record<string, unknown>);
  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = issue.path.join('.');
      if (issue.code === 'unrecognized_keys') return `unknown key ${issue.keys.map((k) => (key ? `${key}.${k}` : k)).join(', ')}`;
      return `${key || '(root)'}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  }
  const config = { ...result.data, dataDir: path.resolve(result.data.dataDir) };
  return deepFreeze(config);
}

function fromEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (env.SLIPWAY_LISTEN) out.listen = env.SLIPWAY_LISTEN;
  if (env.SLIPWAY_DATA_DIR) out.dataDir = env.SLIPWAY_DATA_DIR;
  if (env.SLIPWAY_DATABASE) out.database = env.SLIPWAY_DATABASE;
  if (env.SLIPWAY_LOG_LEVEL) out.log = { level: env.SLIPWAY_LOG_LEVEL };
  const auth: Record<string, unknown> = {};
  if (env.SLIPWAY_ADMIN_PASSWORD) auth.adminPassword = env.SLIPWAY_ADMIN_PASSWORD;
  if (env.SLIPWAY_AUTH_ENABLED) auth.enabled = !/^(false|0|off|no)$/i.test(env.SLIPWAY_AUTH_ENABLED);
  if (Object.keys(auth).length > 0) out.auth = auth;
  if (env.SLIPWAY_MASTER_KEY) out.vault = { masterKey: env.SLIPWAY_MASTER_KEY };
  const s3: Record<string, unknown> = {};
  if (env.SLIPWAY_S3_ACCESS_KEY_ID) s3.accessKeyId = env.SLIPWAY_S3_ACCESS_KEY_ID;
  if (env.SLIPWAY_S3_SECRET_ACCESS_KEY) s3.secretAccessKey = env.SLIPWAY_S3_SECRET_ACCESS_KEY;
  if (Object.keys(s3).length > 0) out.storage = { s3 };
  if (env.SLIPWAY_METRICS_PUBLIC) out.metrics = { public: !/^(false|0|off|no)$/i.test(env.SLIPWAY_METRICS_PUBLIC) };
  if (env.SLIPWAY_FUNCTIONS_ENABLED) out.functions = { enabled: !/^(false|0|off|no)$/i.test(env.SLIPWAY_FUNCTIONS_ENABLED) };
  return out;
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepFreeze<T>(value: T): T {
  if (isPlainObject(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

/**
 * The factory that `key` names in `drivers`. Config validation refuses unknown names already;
 * this also catches a map that lacks one, with the same message.
 */
export function pickDriver<F>(drivers: Readonly<Record<string, F>>, key: string, name: string): F {
  const factory = Object.hasOwn(drivers, name) ? drivers[name] : undefined;
  if (!factory) throw new ConfigError(`invalid configuration: ${key}: unknown driver "${name}" (known: ${Object.keys(drivers).join(', ')})`);
  return factory;
}

/** Split `HOST:PORT` (IPv6 in brackets) for `listen()`. */
export function parseListen(listen: string): { host: string; port: number } {
  const match = listenPattern.exec(listen);
  if (!match) throw new ConfigError(`listen: not HOST:PORT: ${listen}`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port: Number(match[2]) };
}
