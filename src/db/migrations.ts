/**
 * @module db/migrations
 * Versioned schema migrations, written once with the schema builder so they run on SQLite and
 * PostgreSQL alike. Each runs in its own transaction and is recorded in `schema_migrations`;
 * a migration is never edited after it shipped — add the next one.
 */
import { sql, type Kysely } from 'kysely';
import type { Dialect } from './db.js';

export interface Migration {
  version: number;
  name: string;
  up(db: Kysely<any>, dialect: Dialect): Promise<void>;
}

const bytes = (dialect: Dialect) => (dialect === 'postgres' ? 'bytea' : 'blob');

export const migrations: Migration[] = [
  {
    version: 1,
    name: 'registry',
    async up(db, dialect) {
      await db.schema.createTable('blobs')
        .addColumn('digest', 'text', (c) => c.primaryKey())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('touched_at', 'bigint', (c) => c.notNull())
        .addColumn('deleting', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createTable('repositories')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('repository_blobs')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('touched_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('repository_blobs_pk', ['repository', 'digest'])
        .execute();
      await db.schema.createIndex('repository_blobs_digest').on('repository_blobs').column('digest').execute();
      await db.schema.createTable('manifests')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('media_type', 'text', (c) => c.notNull())
        .addColumn('artifact_type', 'text')
        .addColumn('subject', 'text')
        .addColumn('annotations', 'text')
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('content', bytes(dialect), (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('touched_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('manifests_pk', ['repository', 'digest'])
        .execute();
      await db.schema.createIndex('manifests_subject').on('manifests').columns(['repository', 'subject']).execute();
      await db.schema.createTable('manifest_references')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('manifest_digest', 'text', (c) => c.notNull())
        .addColumn('target_digest', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('manifest_references_pk', ['repository', 'manifest_digest', 'target_digest'])
        .execute();
      await db.schema.createIndex('manifest_references_target').on('manifest_references').columns(['repository', 'target_digest']).execute();
      await db.schema.createIndex('manifest_references_blob').on('manifest_references').column('target_digest').execute();
      await db.schema.createTable('tags')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('manifest_digest', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('tags_pk', ['repository', 'name'])
        .execute();
      await db.schema.createIndex('tags_manifest').on('tags').columns(['repository', 'manifest_digest']).execute();
      await db.schema.createTable('uploads')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('algorithm', 'text', (c) => c.notNull())
        // Bytes acknowledged to the client; the file may hold more after a crash mid-PATCH.
        .addColumn('size', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 2,
    name: 'access-control-vault-credentials',
    async up(db, dialect) {
      // Users and service accounts share one table (kind); passwords are scrypt hashes.
      await db.schema.createTable('principals')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('password_hash', 'text')
        .addColumn('admin', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('principal_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('secret_hash', 'text', (c) => c.notNull())
        .addColumn('scopes', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .addColumn('last_used_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('api_keys_principal').on('api_keys').column('principal_id').execute();
      await db.schema.createTable('namespaces')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('memberships')
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('principal_id', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('memberships_pk', ['namespace', 'principal_id'])
        .execute();
      await db.schema.createIndex('memberships_principal').on('memberships').column('principal_id').execute();
      await db.schema.createTable('public_repositories')
        .addColumn('repository', 'text', (c) => c.primaryKey())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('audit_log')
        .addColumn('seq', dialect === 'postgres' ? 'bigserial' : 'integer', (c) => (dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement()))
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('actor', 'text')
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('target', 'text')
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('address', 'text')
        .addColumn('detail', 'text')
        .execute();
      await db.schema.createIndex('audit_log_at').on('audit_log').column('at').execute();
      // Vault: data keys wrapped by a master key (identified by its fingerprint).
      await db.schema.createTable('vault_data_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('master_key_id', 'text', (c) => c.notNull())
        .addColumn('wrapped_key', 'text', (c) => c.notNull())
        .addColumn('active', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('external_registries')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('prefix', 'text', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('username', 'text')
        .addColumn('region', 'text')
        .addColumn('secret', 'text', (c) => c.notNull())
        .addColumn('enable_ci', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('external_registries_namespace').on('external_registries').columns(['namespace', 'prefix']).unique().execute();
    },
  },
  {
    version: 3,
    name: 'jobs-and-builds',
    async up(db) {
      // The durable job queue (JobQueue): leases make a crashed worker's job visible again.
      await db.schema.createTable('jobs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('queue', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('max_attempts', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('timeout_ms', 'bigint', (c) => c.notNull())
        .addColumn('run_after', 'bigint', (c) => c.notNull())
        .addColumn('lease_owner', 'text')
        .addColumn('lease_expires_at', 'bigint')
        .addColumn('cancel_requested', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('result', 'text')
        .addColumn('error', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .execute();
      await db.schema.createIndex('jobs_ready').on('jobs').columns(['queue', 'status', 'run_after']).execute();
      await db.schema.createTable('builds')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('job_id', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('component', 'text')
        .addColumn('branch', 'text')
        .addColumn('tag', 'text')
        .addColumn('architecture', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('image_name', 'text')
        .addColumn('digest', 'text')
        .addColumn('error_message', 'text')
        .addColumn('requested_by', 'text')
        .addColumn('linux_username', 'text')
        .addColumn('github_username', 'text')
        .addColumn('phases', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .execute();
      await db.schema.createIndex('builds_lookup').on('builds').columns(['namespace', 'kind', 'component', 'created_at']).execute();
      await db.schema.createTable('namespace_settings')
        .addColumn('namespace', 'text', (c) => c.primaryKey())
        .addColumn('image_name_template', 'text')
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 4,
    name: 'namespace-secrets',
    async up(db) {
      // Build secrets and (later) pipeline vault variables: values are vault envelopes.
      await db.schema.createTable('namespace_secrets')
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('secret', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('namespace_secrets_pk', ['namespace', 'name'])
        .execute();
    },
  },
  {
    version: 5,
    name: 'functions',
    async up(db) {
      // A function is its current settings; every deployable change is an immutable revision.
      await db.schema.createTable('functions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('access', 'text', (c) => c.notNull())
        .addColumn('config', 'text', (c) => c.notNull())
        .addColumn('active_revision', 'integer')
        .addColumn('latest_revision', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_by', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('functions_name').on('functions').columns(['namespace', 'name']).unique().execute();
      await db.schema.createTable('function_revisions')
        .addColumn('function_id', 'text', (c) => c.notNull())
        .addColumn('number', 'integer', (c) => c.notNull())
        .addColumn('image', 'text', (c) => c.notNull())
        .addColumn('image_digest', 'text')
        .addColumn('config', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('output', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('ready_at', 'bigint')
        .addPrimaryKeyConstraint('function_revisions_pk', ['function_id', 'number'])
        .execute();
      await db.schema.createTable('function_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('function_id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('secret_hash', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('last_used_at', 'bigint')
        .execute();
      await db.schema.createIndex('function_keys_function').on('function_keys').columns(['function_id']).execute();
      await db.schema.createTable('invocations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('function_id', 'text', (c) => c.notNull())
        .addColumn('revision', 'integer')
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('request', 'text', (c) => c.notNull())
        .addColumn('result', 'text')
        .addColumn('error', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('finished_at', 'bigint')
        .execute();
      await db.schema.createIndex('invocations_function').on('invocations').columns(['function_id', 'created_at']).execute();
    },
  },
  {
    version: 6,
    name: 'pipelines',
    async up(db) {
      await db.schema.createTable('pipelines')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('spec', 'text', (c) => c.notNull())
        .addColumn('webhook_secret', 'text')
        .addColumn('created_by', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('pipelines_namespace_name').unique().on('pipelines').columns(['namespace', 'name']).execute();
      await db.schema.createTable('pipeline_runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('pipeline_id', 'text', (c) => c.notNull())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('number', 'integer', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('trigger', 'text', (c) => c.notNull())
        .addColumn('commit_sha', 'text')
        .addColumn('ref', 'text')
        .addColumn('parameters', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('rerun_of', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .execute();
      await db.schema.createIndex('pipeline_runs_pipeline_number').unique().on('pipeline_runs').columns(['pipeline_id', 'number']).execute();
      await db.schema.createIndex('pipeline_runs_status').on('pipeline_runs').columns(['status']).execute();
      await db.schema.createTable('pipeline_deliveries')
        .addColumn('provider', 'text', (c) => c.notNull())
        .addColumn('delivery_id', 'text', (c) => c.notNull())
        .addColumn('pipeline_id', 'text', (c) => c.notNull())
        .addColumn('received_at', 'bigint', (c) => c.notNull())
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('pipeline_deliveries_pk', ['pipeline_id', 'provider', 'delivery_id'])
        .execute();
      await db.schema.createTable('pipeline_mirrors')
        .addColumn('pipeline_id', 'text', (c) => c.primaryKey())
        .addColumn('heads', 'text', (c) => c.notNull())
        .addColumn('last_polled_at', 'bigint')
        .addColumn('last_error', 'text')
        .execute();
    },
  },
  {
    version: 7,
    name: 'artifacts',
    async up(db) {
      await db.schema.createTable('artefact_versions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('version', 'text')
        .addColumn('ref', 'text')
        .addColumn('commit_sha', 'text')
        .addColumn('digest', 'text')
        .addColumn('image', 'text')
        .addColumn('spec', 'text')
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('archived', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('automations', 'text')
        .addColumn('created_by', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('artefact_versions_namespace').on('artefact_versions').columns(['namespace', 'name', 'created_at']).execute();
      await db.schema.createTable('automation_rules')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('rule', 'text', (c) => c.notNull())
        .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('created_by', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('automation_rules_namespace_name').unique().on('automation_rules').columns(['namespace', 'name']).execute();
    },
  },
  {
    version: 8,
    name: 'events',
    async up(db) {
      await db.schema.createTable('events')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('subject', 'text')
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('events_namespace').on('events').columns(['namespace', 'id']).execute();
      await db.schema.createTable('webhook_subscriptions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('events', 'text', (c) => c.notNull())
        .addColumn('secret', 'text', (c) => c.notNull())
        .addColumn('active', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('created_by', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('webhook_deliveries')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('subscription_id', 'text', (c) => c.notNull())
        .addColumn('event_id', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', 'bigint')
        .addColumn('last_status', 'integer')
        .addColumn('last_error', 'text')
        .addColumn('log', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('finished_at', 'bigint')
        .execute();
      await db.schema.createIndex('webhook_deliveries_subscription').on('webhook_deliveries').columns(['subscription_id', 'created_at']).execute();
      await db.schema.createIndex('webhook_deliveries_due').on('webhook_deliveries').columns(['status', 'next_attempt_at']).execute();
    },
  },
  {
    version: 9,
    name: 'replicas',
    async up(db) {
      // Registry token signing keys, shared by every replica; `sealed_jwk` is a vault envelope.
      await db.schema.createTable('token_signing_keys')
        .addColumn('kid', 'text', (c) => c.primaryKey())
        .addColumn('sealed_jwk', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      // Singleton work (GC, mirror poller, …): one holder per name until `expires_at`.
      await db.schema.createTable('leases')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('holder', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  {
    version: 10,
    name: 'registry-policies',
    async up(db) {
      await db.schema.createTable('registry_policies')
        .addColumn('namespace', 'text', (c) => c.primaryKey())
        .addColumn('immutable_tags', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('max_bytes', 'bigint')
        .addColumn('max_repositories', 'integer')
        .addColumn('retention', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('retention_schedule', 'text')
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_by', 'text')
        .execute();
      await db.schema.createTable('manifest_pulls')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('pulled_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('manifest_pulls_pk', ['repository', 'digest'])
        .execute();
      await db.schema.createTable('retention_runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('namespace', 'text', (c) => c.notNull())
        .addColumn('dry_run', 'integer', (c) => c.notNull())
        .addColumn('removed', 'text', (c) => c.notNull())
        .addColumn('kept', 'integer', (c) => c.notNull())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addColumn('finished_at', 'bigint', (c) => c.notNull())
        .addColumn('started_by', 'text')
        .execute();
      await db.schema.createIndex('retention_runs_namespace').on('retention_runs').columns(['namespace', 'started_at']).execute();
    },
  },
  {
    version: 11,
    name: 'registry proxies',
    async up(db) {
      await db.schema.createTable('registry_proxies')
        .addColumn('namespace', 'text', (c) => c.primaryKey())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('credentials_id', 'text')
        .addColumn('insecure', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('ttl_ms', 'bigint', (c) => c.notNull())
        .addColumn('mirror_of', 'text')
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createTable('registry_proxy_tags')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('tag', 'text', (c) => c.notNull())
        .addColumn('checked_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('registry_proxy_tags_pk', ['repository', 'tag'])
        .execute();
    },
  },
  {
    version: 12,
    name: 'registry quota reservations and usage',
    async up(db) {
      // The bytes a running upload holds against its namespace's maxBytes (registry/policy-service.ts).
      await db.schema.alterTable('uploads').addColumn('reserved_bytes', 'bigint', (c) => c.notNull().defaultTo(0)).execute();
      // A namespace's distinct blob bytes, kept up to date by the link writes; absent: summed on demand.
      await db.schema.createTable('registry_usage')
        .addColumn('namespace', 'text', (c) => c.primaryKey())
        .addColumn('bytes', 'bigint', (c) => c.notNull())
        .addColumn('blobs', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
];

/** Applies every migration newer than the recorded version; safe to call on every start. */
export async function migrate(db: Kysely<any>, dialect: Dialect): Promise<number[]> {
  try {
    await db.schema.createTable('schema_migrations').ifNotExists()
      .addColumn('version', 'integer', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('applied_at', 'bigint', (c) => c.notNull())
      .execute();
  } catch (error) {
    // Replicas starting at once on a fresh PostgreSQL database: IF NOT EXISTS is not atomic
    // there, the loser sees a duplicate type or table. The table exists either way; the
    // table lock below serialises the migrations themselves.
    const code = (error as { code?: string }).code;
    if (dialect !== 'postgres' || (code !== '23505' && code !== '42P07')) throw error;
  }
  const applied: number[] = [];
  for (const migration of migrations) {
    const done = await db.transaction().execute(async (trx) => {
      if (dialect === 'postgres') await sql`LOCK TABLE schema_migrations IN EXCLUSIVE MODE`.execute(trx);
      const row = await trx.selectFrom('schema_migrations').select('version').where('version', '=', migration.version).executeTakeFirst();
      if (row) return false;
      await migration.up(trx, dialect);
      await trx.insertInto('schema_migrations').values({ version: migration.version, name: migration.name, applied_at: Date.now() }).execute();
      return true;
    });
    if (done) applied.push(migration.version);
  }
  return applied;
}
