/**
 * @module registry/fsck
 * Consistency check of the registry's storage against its metadata: every blob's content hashes
 * to its digest and has its recorded size, every link and manifest reference points at content
 * that exists, every tag at a manifest, and no stored file is unknown to the db. Read-only.
 */
import { createHash } from 'node:crypto';
import type { Database } from '../db/db.js';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store.js';

export type FsckProblemKind =
  | 'blob-missing'          // a linked blob has no content
  | 'blob-corrupt'          // content does not hash to its digest
  | 'blob-size-mismatch'
  | 'link-without-blob'     // a repository link to a blob row that does not exist
  | 'tag-dangling'          // a tag points at a manifest that does not exist
  | 'manifest-corrupt'      // stored manifest bytes do not hash to the digest
  | 'orphan-file';          // a stored file that no blob row claims (GC removes it)

export interface FsckProblem {
  kind: FsckProblemKind;
  digest?: string;
  repository?: string;
  detail: string;
}

export interface FsckReport {
  blobsChecked: number;
  bytesChecked: number;
  manifestsChecked: number;
  problems: FsckProblem[];
  /**
   * Manifests that reference a blob or child manifest a client deleted from the repository (the
   * spec allows such deletes; pushes and GC never cause this). Reported, not a fault: pulling
   * that manifest fails until the content is pushed again.
   */
  referencesDeleted: Array<{ repository: string; digest: string; detail: string }>;
  /** Rows without content that no repository links: leftovers of a crash, harmless, GC removes them. */
  unlinkedRowsWithoutContent: number;
}

export async function fsck(db: Database, store: BlobStore): Promise<FsckReport> {
  const report: FsckReport = { blobsChecked: 0, bytesChecked: 0, manifestsChecked: 0, problems: [], referencesDeleted: [], unlinkedRowsWithoutContent: 0 };
  const linked = new Set((await db.kysely.selectFrom('repository_blobs').select('digest').distinct().execute()).map((r) => r.digest));
  const rows = await db.kysely.selectFrom('blobs').select(['digest', 'size', 'deleting']).execute();
  const known = new Set<string>();
  for (const row of rows) {
    known.add(row.digest);
    if (row.deleting) continue;
    const algorithm = row.digest.split(':')[0]!;
    const hash = createHash(algorithm);
    let size = 0;
    try {
      for await (const chunk of await store.get(row.digest)) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
    } catch (error) {
      if (!(error instanceof BlobNotFoundError)) throw error;
      if (linked.has(row.digest)) report.problems.push({ kind: 'blob-missing', digest: row.digest, detail: 'linked blob has no stored content' });
      else report.unlinkedRowsWithoutContent++;
      continue;
    }
    report.blobsChecked++;
    report.bytesChecked += size;
    const actual = `${algorithm}:${hash.digest('hex')}`;
    if (actual !== row.digest) report.problems.push({ kind: 'blob-corrupt', digest: row.digest, detail: `content hashes to ${actual}` });
    else if (size !== row.size) report.problems.push({ kind: 'blob-size-mismatch', digest: row.digest, detail: `stored ${size} bytes, recorded ${row.size}` });
  }
  for (const digest of linked) {
    if (!known.has(digest)) report.problems.push({ kind: 'link-without-blob', digest, detail: 'a repository links a blob with no row' });
  }
  for await (const digest of store.list()) {
    if (!known.has(digest)) report.problems.push({ kind: 'orphan-file', digest, detail: 'stored file with no blob row' });
  }

  const manifests = await db.kysely.selectFrom('manifests').select(['repository', 'digest', 'content']).execute();
  for (const manifest of manifests) {
    report.manifestsChecked++;
    const algorithm = manifest.digest.split(':')[0]!;
    const actual = `${algorithm}:${createHash(algorithm).update(manifest.content).digest('hex')}`;
    if (actual !== manifest.digest) report.problems.push({ kind: 'manifest-corrupt', repository: manifest.repository, digest: manifest.digest, detail: `content hashes to ${actual}` });
  }
  const missingBlobs = await db.kysely.selectFrom('manifest_references as r')
    .leftJoin('repository_blobs as l', (join) => join.onRef('l.repository', '=', 'r.repository').onRef('l.digest', '=', 'r.target_digest'))
    .select(['r.repository', 'r.manifest_digest', 'r.target_digest'])
    .where('r.kind', '=', 'blob').where('l.digest', 'is', null).execute();
  const missingChildren = await db.kysely.selectFrom('manifest_references as r')
    .leftJoin('manifests as m', (join) => join.onRef('m.repository', '=', 'r.repository').onRef('m.digest', '=', 'r.target_digest'))
    .select(['r.repository', 'r.manifest_digest', 'r.target_digest'])
    .where('r.kind', '=', 'manifest').where('m.digest', 'is', null).execute();
  for (const ref of [...missingBlobs, ...missingChildren]) {
    report.referencesDeleted.push({ repository: ref.repository, digest: ref.manifest_digest, detail: `references ${ref.target_digest}, which was deleted from the repository` });
  }
  const dangling = await db.kysely.selectFrom('tags as t')
    .leftJoin('manifests as m', (join) => join.onRef('m.repository', '=', 't.repository').onRef('m.digest', '=', 't.manifest_digest'))
    .select(['t.repository', 't.name', 't.manifest_digest']).where('m.digest', 'is', null).execute();
  for (const tag of dangling) {
    report.problems.push({ kind: 'tag-dangling', repository: tag.repository, digest: tag.manifest_digest, detail: `tag ${tag.name} points at a missing manifest` });
  }
  return report;
}
