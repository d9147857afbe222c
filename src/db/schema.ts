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
  created_at: number;
  updated_at: number;
}

export interface MigrationTable {
  version: number;
  name: string;
  applied_at: number;
}

export interface Tables {
  blobs: BlobTable;
  repositories: RepositoryTable;
  repository_blobs: RepositoryBlobTable;
  manifests: ManifestTable;
  manifest_references: ManifestReferenceTable;
  tags: TagTable;
  uploads: UploadTable;
  schema_migrations: MigrationTable;
}

// Generated is kept importable for later tables with database-assigned keys.
export type { Generated };
