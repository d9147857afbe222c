/**
 * @module storage/s3-blob-store
 * The S3 `BlobStore` driver (AWS SDK v3; any S3-compatible server). Layout of the bucket:
 *
 *   <prefix>
 *   ├── blobs/
 *   │   ├── sha256/abcdef0123…          verified, immutable content, named by its digest
 *   │   └── sha512/…
 *   ├── objects/                      named objects (ObjectArea), e.g. objects/logs/builds/<id>/<chunk>
 *   └── uploads/
 *       └── <upload id>/
 *           ├── 0000000000000000        bytes 0 … partSize-1 of the session (sealed)
 *           ├── 0000000008388608        the next part (sealed), …
 *           └── 0000000016777216        the open tail, < partSize, rewritten by each append
 *
 * A session's whole state is these objects, named by their start offset: any process (another
 * replica, after a restart) resumes it by listing them, nothing lives in one process's memory.
 * Appends buffer into `partSize` objects so small registry chunks never make parts below S3's
 * 5 MiB multipart minimum; only the tail object is ever rewritten. `commit` builds the blob
 * under its digest key in one step that S3 makes visible atomically (CopyObject of a single
 * part, or a multipart upload completed from the parts), so no partial object is ever
 * readable under a digest. With `redirect`, blob GETs may be answered with a presigned URL of
 * the digest's object (`redirectUrl`), so bulk bytes go from S3 to the client directly.
 */
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CopyObjectCommand, CreateMultipartUploadCommand,
  DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, UploadPartCopyCommand,
  paginateListObjectsV2, type CompletedPart,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3StorageConfig } from '../config/config.js';
import { BlobNotFoundError, UploadNotFoundError, UploadOffsetError, checkObjectKey, type BlobStat, type BlobStore, type ByteRange, type ObjectArea, type UploadStore } from './blob-store.js';

const uploadIdPattern = /^[A-Za-z0-9_-]{8,128}$/;
const offsetDigits = 16;
const deleteConcurrency = 8;

export interface S3BlobStoreOptions {
  client: S3Client;
  bucket: string;
  /** Empty or ending in `/`. */
  prefix: string;
  partSize: number;
  /** Presigned redirects for blob GETs, valid this long (ms); off when undefined. */
  redirectExpiryMs?: number;
}

/** The driver from its config slice; credentials from the slice or else the SDK's default chain. */
export function createS3BlobStore(config: S3StorageConfig): S3BlobStore {
  if (!config.bucket) throw new Error('storage.s3.bucket is required');
  const client = new S3Client({
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    credentials: config.accessKeyId && config.secretAccessKey
      ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey }
      : undefined,
    // Checksums only where S3 requires them: S3-compatible servers differ in which of the
    // newer flexible checksums (and their aws-chunked bodies) they understand.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return new S3BlobStore({
    client, bucket: config.bucket, prefix: config.prefix, partSize: config.partSize,
    redirectExpiryMs: config.redirect ? config.redirectExpiry : undefined,
  });
}

export class S3BlobStore implements BlobStore {
  readonly uploads: UploadStore;
  readonly objects: ObjectArea;

  constructor(readonly options: S3BlobStoreOptions) {
    this.uploads = new S3UploadStore(this);
    this.objects = new S3ObjectArea(this);
  }

  get client(): S3Client {
    return this.options.client;
  }

  get bucket(): string {
    return this.options.bucket;
  }

  /** Key of a digest's object; digests are validated by the caller, checked again here. */
  blobKey(digest: string): string {
    const match = /^(sha256|sha512):([a-f0-9]{64,128})$/.exec(digest);
    if (!match) throw new Error(`not a storable digest: ${digest}`);
    return `${this.options.prefix}blobs/${match[1]!}/${match[2]!}`;
  }

  async stat(digest: string): Promise<BlobStat | null> {
    return this.head(this.blobKey(digest));
  }

  async head(key: string): Promise<BlobStat | null> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: head.ContentLength ?? 0 };
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async get(digest: string, range?: ByteRange): Promise<Readable> {
    try {
      return await this.getObject(this.blobKey(digest), range);
    } catch (error) {
      if (isNotFound(error)) throw new BlobNotFoundError(digest);
      throw error;
    }
  }

  /** The object's bytes as a stream (in Node the SDK's body is an `IncomingMessage`). */
  async getObject(key: string, range?: ByteRange): Promise<Readable> {
    const out = await this.client.send(new GetObjectCommand({
      Bucket: this.bucket,
      Key: key,
      Range: range ? `bytes=${range.start}-${range.end}` : undefined,
    }));
    return out.Body as Readable;
  }

  /** A presigned GET of the digest's object (a Range header the client sends still applies). */
  async redirectUrl(digest: string): Promise<string | undefined> {
    const { redirectExpiryMs } = this.options;
    if (redirectExpiryMs === undefined) return undefined;
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: this.blobKey(digest) });
    return getSignedUrl(this.client, command, { expiresIn: Math.max(1, Math.round(redirectExpiryMs / 1000)) });
  }

  async delete(digest: string): Promise<boolean> {
    const key = this.blobKey(digest);
    // S3's DELETE succeeds on absent keys; the contract reports whether the blob was there.
    if (!(await this.head(key))) return false;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    return true;
  }

  async *list(): AsyncIterable<string> {
    const prefix = `${this.options.prefix}blobs/`;
    for await (const object of this.listObjects(prefix)) {
      const match = /^(sha256|sha512)\/([a-f0-9]{64,128})$/.exec(object.key.slice(prefix.length));
      if (match) yield `${match[1]!}:${match[2]!}`;
    }
  }

  async *listObjects(prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt: number }> {
    for await (const page of paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: prefix })) {
      for (const object of page.Contents ?? []) {
        if (object.Key) yield { key: object.Key, size: object.Size ?? 0, modifiedAt: object.LastModified?.getTime() ?? 0 };
      }
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

/** `ObjectArea` as objects under `<prefix>objects/`. */
class S3ObjectArea implements ObjectArea {
  constructor(private readonly store: S3BlobStore) {}

  private key(key: string): string {
    return `${this.store.options.prefix}objects/${checkObjectKey(key)}`;
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.store.client.send(new PutObjectCommand({ Bucket: this.store.bucket, Key: this.key(key), Body: body, ContentLength: body.length }));
  }

  async get(key: string): Promise<Buffer | null> {
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of await this.store.getObject(this.key(key))) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async *list(prefix: string): AsyncIterable<{ key: string; size: number; modifiedAt: number }> {
    const root = `${this.store.options.prefix}objects/`;
    if (prefix) checkObjectKey(prefix.replace(/\/$/, ''));
    for await (const object of this.store.listObjects(`${root}${prefix}`)) yield { ...object, key: object.key.slice(root.length) };
  }

  async delete(keys: string[]): Promise<void> {
    for (let index = 0; index < keys.length; index += deleteConcurrency) {
      await Promise.all(keys.slice(index, index + deleteConcurrency).map((key) =>
        this.store.client.send(new DeleteObjectCommand({ Bucket: this.store.bucket, Key: this.key(key) }))));
    }
  }
}

interface Part {
  key: string;
  offset: number;
  size: number;
  modifiedAt: number;
}

class S3UploadStore implements UploadStore {
  /** Cleared when the server answers UploadPartCopy with NotImplemented (e.g. s3rver). */
  private serverSideCopy = true;

  constructor(private readonly store: S3BlobStore) {}

  private sessionPrefix(id: string): string {
    if (!uploadIdPattern.test(id)) throw new UploadNotFoundError(id);
    return `${this.store.options.prefix}uploads/${id}/`;
  }

  private partKey(id: string, offset: number): string {
    return `${this.sessionPrefix(id)}${String(offset).padStart(offsetDigits, '0')}`;
  }

  /** The session's parts from offset 0 without gaps (anything past a gap is debris); null when absent. */
  private async parts(id: string): Promise<Part[] | null> {
    const prefix = this.sessionPrefix(id);
    const found: Part[] = [];
    for await (const object of this.store.listObjects(prefix)) {
      const name = object.key.slice(prefix.length);
      if (/^\d+$/.test(name)) found.push({ key: object.key, offset: Number(name), size: object.size, modifiedAt: object.modifiedAt });
    }
    if (found.length === 0) return null;
    found.sort((a, b) => a.offset - b.offset);
    const contiguous: Part[] = [];
    let end = 0;
    for (const part of found) {
      if (part.offset !== end) break;
      contiguous.push(part);
      end += part.size;
    }
    return contiguous;
  }

  private async requireParts(id: string): Promise<Part[]> {
    const parts = await this.parts(id);
    if (!parts) throw new UploadNotFoundError(id);
    return parts;
  }

  private put(key: string, body: Buffer): Promise<unknown> {
    return this.store.client.send(new PutObjectCommand({ Bucket: this.store.bucket, Key: key, Body: body, ContentLength: body.length }));
  }

  private async download(key: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.store.getObject(key)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** A session is its objects; an empty part at offset 0 marks a new one. */
  async create(id: string): Promise<void> {
    await this.put(this.partKey(id, 0), Buffer.alloc(0));
  }

  async append(id: string, source: AsyncIterable<Buffer>, offset: number, observe?: (chunk: Buffer) => void): Promise<number> {
    const parts = await this.requireParts(id);
    const last = parts.at(-1)!;
    const size = last.offset + last.size;
    if (size !== offset) throw new UploadOffsetError(id, offset, size);
    const { partSize } = this.store.options;
    // A tail below partSize is rewritten with the new bytes in front of it.
    let partOffset = last.size < partSize ? last.offset : size;
    let buffered: Buffer[] = partOffset === last.offset && last.size > 0 ? [await this.download(last.key)] : [];
    let bufferedBytes = partOffset === last.offset ? last.size : 0;
    let received = 0;
    // One part upload in flight while the next is received; in order, so the stored parts are
    // always a prefix of what was sent (a crash leaves no gap, only bytes to truncate).
    let inFlight: Promise<unknown> = Promise.resolve();
    try {
      for await (const chunk of source) {
        observe?.(chunk);
        buffered.push(chunk);
        bufferedBytes += chunk.length;
        received += chunk.length;
        while (bufferedBytes >= partSize) {
          const all = Buffer.concat(buffered, bufferedBytes);
          await inFlight;
          inFlight = this.put(this.partKey(id, partOffset), all.subarray(0, partSize));
          inFlight.catch(() => undefined); // observed when awaited; never unhandled meanwhile
          partOffset += partSize;
          buffered = bufferedBytes > partSize ? [all.subarray(partSize)] : [];
          bufferedBytes -= partSize;
        }
      }
      await inFlight;
      if (received > 0 && bufferedBytes > 0) await this.put(this.partKey(id, partOffset), Buffer.concat(buffered, bufferedBytes));
    } finally {
      await inFlight.catch(() => undefined);
    }
    return size + received;
  }

  async truncate(id: string, size: number): Promise<void> {
    const prefix = this.sessionPrefix(id);
    const all: Part[] = [];
    for await (const object of this.store.listObjects(prefix)) {
      const name = object.key.slice(prefix.length);
      if (/^\d+$/.test(name)) all.push({ key: object.key, offset: Number(name), size: object.size, modifiedAt: object.modifiedAt });
    }
    if (all.length === 0) throw new UploadNotFoundError(id);
    const crossing = all.find((part) => part.offset < size && part.offset + part.size > size);
    if (crossing) await this.put(crossing.key, (await this.download(crossing.key)).subarray(0, size - crossing.offset));
    const beyond = all.filter((part) => part.offset >= size && part.offset > 0);
    await this.deleteKeys(beyond.map((part) => part.key));
    const first = all.find((part) => part.offset === 0);
    if (size === 0 && first && first.size > 0) await this.put(first.key, Buffer.alloc(0));
  }

  async size(id: string): Promise<number | null> {
    let parts;
    try {
      parts = await this.parts(id);
    } catch (error) {
      if (error instanceof UploadNotFoundError) return null;
      throw error;
    }
    if (!parts) return null;
    const last = parts.at(-1)!;
    return last.offset + last.size;
  }

  async read(id: string): Promise<Readable> {
    const parts = await this.requireParts(id);
    const store = this.store;
    return Readable.from((async function* () {
      for (const part of parts) {
        if (part.size === 0) continue;
        for await (const chunk of await store.getObject(part.key)) yield chunk as Buffer;
      }
    })());
  }

  async commit(id: string, digest: string): Promise<void> {
    const parts = (await this.requireParts(id)).filter((part) => part.size > 0);
    const key = this.store.blobKey(digest);
    // Content-addressed: a blob already there holds these very bytes.
    if (!(await this.store.head(key))) {
      if (parts.length <= 1) await this.copyPart(parts[0], key);
      else await this.concatenate(id, parts, key);
    }
    await this.abort(id);
  }

  private async copyPart(part: Part | undefined, key: string): Promise<void> {
    if (!part) {
      await this.put(key, Buffer.alloc(0));
      return;
    }
    await this.store.client.send(new CopyObjectCommand({ Bucket: this.store.bucket, Key: key, CopySource: copySource(this.store.bucket, part.key) }));
  }

  /**
   * The blob from several parts, visible only when complete: server-side (UploadPartCopy) where
   * the server has it; otherwise streamed through this process into a multipart upload.
   */
  private async concatenate(id: string, parts: Part[], key: string): Promise<void> {
    const { client, bucket } = this.store;
    if (this.serverSideCopy) {
      const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
      try {
        const completed: CompletedPart[] = [];
        for (const [index, part] of parts.entries()) {
          const copied = await client.send(new UploadPartCopyCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: index + 1, CopySource: copySource(bucket, part.key) }));
          completed.push({ PartNumber: index + 1, ETag: copied.CopyPartResult?.ETag });
        }
        await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: completed } }));
        return;
      } catch (error) {
        await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
        if ((error as { name?: string })?.name !== 'NotImplemented') throw error;
        this.serverSideCopy = false;
      }
    }
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: key, Body: await this.read(id) },
      partSize: this.store.options.partSize,
      queueSize: 2,
    });
    await upload.done();
  }

  async abort(id: string): Promise<void> {
    const keys: string[] = [];
    for await (const object of this.store.listObjects(this.sessionPrefix(id))) keys.push(object.key);
    await this.deleteKeys(keys);
  }

  /** One DELETE per key (DeleteObjects needs Content-MD5, which not every server accepts alike). */
  private async deleteKeys(keys: string[]): Promise<void> {
    for (let index = 0; index < keys.length; index += deleteConcurrency) {
      await Promise.all(keys.slice(index, index + deleteConcurrency).map((key) =>
        this.store.client.send(new DeleteObjectCommand({ Bucket: this.store.bucket, Key: key }))));
    }
  }

  async *list(): AsyncIterable<{ id: string; modifiedAt: number }> {
    const prefix = `${this.store.options.prefix}uploads/`;
    const sessions = new Map<string, number>();
    for await (const object of this.store.listObjects(prefix)) {
      const id = object.key.slice(prefix.length).split('/')[0]!;
      sessions.set(id, Math.max(sessions.get(id) ?? 0, object.modifiedAt));
    }
    for (const [id, modifiedAt] of sessions) yield { id, modifiedAt };
  }
}

/** `x-amz-copy-source`: bucket and key, the key URL-encoded per segment. */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
}

function isNotFound(error: unknown): boolean {
  const { name, $metadata } = (error ?? {}) as { name?: string; $metadata?: { httpStatusCode?: number } };
  return name === 'NotFound' || name === 'NoSuchKey' || $metadata?.httpStatusCode === 404;
}
