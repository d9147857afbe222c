/**
 * @module db/schema
 * The row types of every table, as the query builder sees them. Times are milliseconds since
 * the epoch (integers on both dialects); content is bytes.
 */
import type { ColumnType, Generated } from 'kysely';

export interface BlobTable {
  /** `sha256:<hex>` */
  digest: string;
  size: number;
  created_at: number;
  /** Last time something referenced or re-uploaded the blob: GC's grace period counts from it. */
  touched_at: number;
  /** 1 while GC is removing the file: writers wait for the row to go, then start afresh. */
  deleting: number;
}

export interface RepositoryTable {
  name: string;
  created_at: number;
}

/** A blob is readable in a repository only once it was pushed or mounted there. */
export interface RepositoryBlobTable {
  repository: string;
  digest: string;
  touched_at: number;
}

export interface ManifestTable {
  repository: string;
  digest: string;
  media_type: string;
  /** The manifest's artifactType, else its config media type (for referrers). */
  artifact_type: string | null;
  subject: string | null;
  /** JSON text of the manifest's annotations, for referrers. */
  annotations: string | null;
  size: number;
  content: Buffer;
  created_at: number;
  touched_at: number;
}

/** What a manifest references: blobs (config, layers) and child manifests (of an index). */
export interface ManifestReferenceTable {
  repository: string;
  manifest_digest: string;
  target_digest: string;
  kind: 'blob' | 'manifest';
}

export interface TagTable {
  repository: string;
  name: string;
  manifest_digest: string;
  updated_at: number;
}

export interface UploadTable {
  id: string;
  repository: string;
  /** Algorithm chosen at POST (`digest-algorithm`), default sha256. */
  algorithm: string;
  /** Bytes acknowledged to the client so far. */
  size: ColumnType<number, number | undefined, number>;
  /** Bytes this upload holds against its namespace's maxBytes while it runs (quota admission). */
  reserved_bytes: ColumnType<number, number | undefined, number>;
  created_at: number;
  updated_at: number;
}

/** A user (password login) or a service account (API keys only). */
export interface PrincipalTable {
  id: string;
  name: string;
  kind: 'user' | 'service';
  /** `scrypt$N$r$p$salt$hash` (base64url); null for service accounts. */
  password_hash: string | null;
  admin: ColumnType<number, number | undefined, number>;
  created_at: number;
}

export interface ApiKeyTable {
  id: string;
  principal_id: string;
  name: string;
  /** sha256 of the key's secret part (keys are 256-bit random, so no slow hash is needed). */
  secret_hash: string;
  /** JSON array of scope strings, e.g. ["registry:pull","registry:push"]; ["*"] for all the owner may do. */
  scopes: string;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
  created_at: number;
}

export interface NamespaceTable {
  name: string;
  created_by: string;
  created_at: number;
}

export interface MembershipTable {
  namespace: string;
  principal_id: string;
  role: 'owner' | 'contributor' | 'reader';
  updated_at: number;
}

export interface PublicRepositoryTable {
  repository: string;
  updated_at: number;
}

/** Append-only: rows are inserted, never updated or deleted by Slipway. */
export interface AuditTable {
  seq: Generated<number>;
  at: number;
  actor: string | null;
  action: string;
  target: string | null;
  outcome: 'ok' | 'denied' | 'failed';
  address: string | null;
  /** JSON text; never secrets. */
  detail: string | null;
}

export interface VaultDataKeyTable {
  id: string;
  /** Fingerprint of the master key that wraps this data key. */
  master_key_id: string;
  /** `iv.tag.ciphertext` (base64url) of the 32-byte data key under the master key. */
  wrapped_key: string;
  /** 1 for the key new secrets are sealed with. */
  active: ColumnType<number, number | undefined, number>;
  created_at: number;
}

export interface ExternalRegistryTable {
  id: string;
  namespace: string;
  /** Host plus optional path, e.g. `registry.example.com/my-team`. */
  prefix: string;
  type: 'basic' | 'swr' | 'ecr' | 'gcr' | 'gar' | 'acr' | 'ocir';
  /** Non-secret identity (user name, access key id, client id); shown in the API. */
  username: string | null;
  region: string | null;
  /** Vault envelope of the secret part (password, secret key, JSON key). */
  secret: string;
  enable_ci: ColumnType<number, number | undefined, number>;
  created_at: number;
  updated_at: number;
}

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface JobTable {
  id: string;
  /** Which workers take it, e.g. `builds`. */
  queue: string;
  /** JSON text. */
  payload: string;
  status: JobStatus;
  attempts: ColumnType<number, number | undefined, number>;
  max_attempts: ColumnType<number, number | undefined, number>;
  timeout_ms: number;
  /** Not taken before this time (retry back-off). */
  run_after: number;
  lease_owner: string | null;
  /** A running job whose lease passed is taken again (or failed when out of attempts). */
  lease_expires_at: number | null;
  cancel_requested: ColumnType<number, number | undefined, number>;
  /** JSON text. */
  result: string | null;
  error: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export interface BuildTable {
  id: string;
  namespace: string;
  kind: 'image' | 'component';
  job_id: string;
  status: JobStatus;
  component: string | null;
  branch: string | null;
  tag: string | null;
  architecture: string;
  /** JSON: `{ type: 'upload' }` or `{ type: 'git', url, ref, commit? }`. */
  source: string;
  /** Full reference of the result, e.g. `127.0.0.1:5000/team/app-main-image:1`. */
  image_name: string | null;
  digest: string | null;
  error_message: string | null;
  requested_by: string | null;
  linux_username: string | null;
  github_username: string | null;
  /** JSON: milliseconds per phase, e.g. `{ "clone": 120, "build": 4000, "push": 300 }`. */
  phases: ColumnType<string, string | undefined, string>;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export interface NamespaceSettingsTable {
  namespace: string;
  /** e.g. `{component}-{branch}-image`; null: the default. */
  image_name_template: string | null;
  updated_at: number;
}

/** A namespace that is a pull-through cache of an upstream registry (registry/proxy-settings.ts). */
export interface RegistryProxyTable {
  namespace: string;
  url: string;
  /** An external registry record of the namespace; null: the longest matching prefix, if any. */
  credentials_id: string | null;
  insecure: number;
  ttl_ms: number;
  /** e.g. `docker.io`: also served without the namespace prefix (registry mirror mode). */
  mirror_of: string | null;
  updated_at: number;
}

/** When a cached tag of a proxy namespace was last confirmed against the upstream. */
export interface RegistryProxyTagTable {
  repository: string;
  tag: string;
  checked_at: number;
}

/** A namespace's distinct blob bytes, maintained by every link write; a missing row is summed again on demand. */
export interface RegistryUsageTable {
  namespace: string;
  bytes: number;
  blobs: number;
}

export interface NamespaceSecretTable {
  namespace: string;
  name: string;
  /** Vault envelope (context `namespace-secret:<ns>/<name>`). */
  secret: string;
  created_by: string | null;
  created_at: number;
  updated_at: number;
}

export interface MigrationTable {
  version: number;
  name: string;
  applied_at: number;
}

/** A function: `config` is the JSON of its StoredConfig (secret values as vault envelopes). */
export interface FunctionTable {
  id: string;
  namespace: string;
  name: string;
  access: string;
  config: string;
  active_revision: number | null;
  latest_revision: number;
  created_by: string | null;
  created_at: number;
  updated_at: number;
}

export interface FunctionRevisionTable {
  function_id: string;
  number: number;
  image: string;
  image_digest: string | null;
  config: string;
  /** deploying | ready | failed | retired */
  status: string;
  reason: string | null;
  /** JSON array: the last lines a failed start printed. */
  output: string | null;
  created_at: number;
  ready_at: number | null;
}

export interface FunctionKeyTable {
  id: string;
  function_id: string;
  name: string;
  secret_hash: string;
  created_at: number;
  last_used_at: number | null;
}

/** Asynchronous invocations: the request and result are JSON (bodies base64). */
export interface InvocationTable {
  id: string;
  function_id: string;
  revision: number | null;
  status: string;
  attempts: number;
  request: string;
  result: string | null;
  error: string | null;
  created_at: number;
  finished_at: number | null;
}

/** A pipeline: `spec` is the JSON of its PipelineSpec; `webhook_secret` a vault envelope. */
export interface PipelineTable {
  id: string;
  namespace: string;
  name: string;
  spec: string;
  webhook_secret: string | null;
  created_by: string | null;
  created_at: number;
  updated_at: number;
}

/** One run of a pipeline; `state` is the JSON of its RunState (stages, steps, exported, artifacts). */
export interface PipelineRunTable {
  id: string;
  pipeline_id: string;
  namespace: string;
  number: number;
  /** queued | running | waiting | succeeded | failed | cancelled */
  status: string;
  /** JSON: who or what started it. */
  trigger: string;
  commit_sha: string | null;
  ref: string | null;
  /** JSON: name → value, after overrides. */
  parameters: string;
  state: string;
  error: string | null;
  rerun_of: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

/** Webhook deliveries already seen (replays are ignored). */
export interface PipelineDeliveryTable {
  provider: string;
  delivery_id: string;
  pipeline_id: string;
  received_at: number;
  outcome: string;
}

/** A polled mirror's last seen heads (JSON branch → commit). */
export interface PipelineMirrorTable {
  pipeline_id: string;
  heads: string;
  last_polled_at: number | null;
  last_error: string | null;
}

/** An artefact version (Humanitec's shape): `spec` is the JSON Score workload for `workload`. */
export interface ArtefactVersionTable {
  id: string;
  namespace: string;
  /** container | workload */
  type: string;
  name: string;
  version: string | null;
  ref: string | null;
  commit_sha: string | null;
  digest: string | null;
  image: string | null;
  spec: string | null;
  /** registry | pipeline | api */
  source: string;
  archived: ColumnType<number, number | undefined, number>;
  /** JSON array of the automation outcomes `{rule, action, outcome, error?}`; null before rules ran. */
  automations: string | null;
  created_by: string | null;
  created_at: number;
}

/** An automation rule: `rule` is the JSON of its match and action. */
export interface AutomationRuleTable {
  id: string;
  namespace: string;
  name: string;
  rule: string;
  active: ColumnType<number, number | undefined, number>;
  created_by: string | null;
  created_at: number;
  updated_at: number;
}

/** The outbox of domain events; ids are time-ordered so `id > cursor` pages in order. */
export interface EventTable {
  id: string;
  namespace: string;
  type: string;
  subject: string | null;
  data: string;
  created_at: number;
}

/** Outgoing webhooks: `events` is a JSON array of patterns; `secret` a vault envelope. */
export interface WebhookSubscriptionTable {
  id: string;
  namespace: string;
  url: string;
  events: string;
  secret: string;
  active: ColumnType<number, number | undefined, number>;
  created_by: string | null;
  created_at: number;
  updated_at: number;
}

/** One event to one subscription; `log` is a JSON array of attempts. */
export interface WebhookDeliveryTable {
  id: string;
  subscription_id: string;
  event_id: string;
  /** pending | succeeded | failed */
  status: string;
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: number | null;
  last_status: number | null;
  last_error: string | null;
  log: string;
  created_at: number;
  finished_at: number | null;
}

/** A namespace's registry policy (registry/policy-service.ts); no row: no limits, no rules. */
export interface RegistryPolicyTable {
  namespace: string;
  /** JSON array of tag globs; a tag matching one cannot be moved or deleted once pushed. */
  immutable_tags: string;
  max_bytes: number | null;
  max_repositories: number | null;
  /** JSON array of retention rules (registry/retention.ts). */
  retention: string;
  /** How often the server applies the retention rules (a duration such as `1d`); null: only on demand. */
  retention_schedule: string | null;
  updated_at: number;
  updated_by: string | null;
}

/** The last pull of a manifest, flushed in batches (registry/pull-times.ts). */
export interface ManifestPullTable {
  repository: string;
  digest: string;
  pulled_at: number;
}

/** One retention run (or dry run) and what it removed, with why. */
export interface RetentionRunTable {
  id: string;
  namespace: string;
  dry_run: number;
  /** JSON array of {repository, digest, tags, reason}. */
  removed: string;
  kept: number;
  started_at: number;
  finished_at: number;
  started_by: string | null;
}

export interface Tables {
  blobs: BlobTable;
  repositories: RepositoryTable;
  repository_blobs: RepositoryBlobTable;
  manifests: ManifestTable;
  manifest_references: ManifestReferenceTable;
  tags: TagTable;
  uploads: UploadTable;
  principals: PrincipalTable;
  api_keys: ApiKeyTable;
  namespaces: NamespaceTable;
  memberships: MembershipTable;
  public_repositories: PublicRepositoryTable;
  audit_log: AuditTable;
  vault_data_keys: VaultDataKeyTable;
  external_registries: ExternalRegistryTable;
  jobs: JobTable;
  builds: BuildTable;
  namespace_settings: NamespaceSettingsTable;
  namespace_secrets: NamespaceSecretTable;
  registry_proxies: RegistryProxyTable;
  registry_proxy_tags: RegistryProxyTagTable;
  registry_usage: RegistryUsageTable;
  functions: FunctionTable;
  function_revisions: FunctionRevisionTable;
  function_keys: FunctionKeyTable;
  invocations: InvocationTable;
  pipelines: PipelineTable;
  pipeline_runs: PipelineRunTable;
  pipeline_deliveries: PipelineDeliveryTable;
  pipeline_mirrors: PipelineMirrorTable;
  artefact_versions: ArtefactVersionTable;
  automation_rules: AutomationRuleTable;
  events: EventTable;
  webhook_subscriptions: WebhookSubscriptionTable;
  webhook_deliveries: WebhookDeliveryTable;
  registry_policies: RegistryPolicyTable;
  manifest_pulls: ManifestPullTable;
  retention_runs: RetentionRunTable;
  schema_migrations: MigrationTable;
  token_signing_keys: TokenSigningKeyTable;
  leases: LeaseTable;
}

/** A registry token signing key (ES256 private JWK sealed by the vault); the newest signs. */
export interface TokenSigningKeyTable {
  kid: string;
  sealed_jwk: string;
  created_at: number;
}

/** A named lease: singleton work runs on the replica that holds it. */
export interface LeaseTable {
  name: string;
  holder: string;
  expires_at: number;
}

// Generated is kept importable for later tables with database-assigned keys.
export type { Generated };
