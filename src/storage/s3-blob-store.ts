/**
 * @module storage/s3-blob-store
 * The S3 `BlobStore` driver (AWS SDK v3; any S3-compatible server). Layout of the bucket:
 *
 *   <prefix>
 *   ├── blobs/
 *   │   ├── sha256/abcdef0123…          verified, immutable content, named by its digest
 *   │   └── sha512/…
 *   ├── objects/                      named objects (ObjectArea), e.g. objects/logs/builds/<id>/<chunk>
 *   │                                 and objects/build-contexts/<build id>.tar (streamed: putStream)
 *   └── uploads/
 *       └── <upload id>/
 *           ├── 0000000000000000-0000000008388608   bytes 0 … partSize-1 (sealed)
 *           ├── 0000000008388608-0000000008388608   the next part (sealed), …
 *           └── 0000000016777216-0000000000001234   the open tail, < partSize
 *
 * A session's whole state is these objects, named by start offset and length: any process
 * (another replica, after a restart) resumes it by listing them, nothing lives in one
 * process's memory. Appends buffer into `partSize` objects so small registry chunks never make
 * parts below S3's 5 MiB multipart minimum; only the tail is ever replaced, by a longer one
 * under its own name, the old one deleted once the new one is stored. `commit` builds the blob
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

  /** A whole object's bytes. */
  async getObjectBytes(key: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.getObject(key)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /**
   * Stores a stream of any length under `key` (lib-storage: one PUT, or a multipart upload in
   * `partSize` parts, visible only once complete). A failing source rejects with its own error,
   * not with what aborting the multipart upload answered (servers without AbortMultipartUpload).
   */
  async putObjectStream(key: string, source: Readable): Promise<void> {
    let sourceError: unknown;
    source.once('error', (error) => { sourceError ??= error; });
    const upload = new Upload({ client: this.client, params: { Bucket: this.bucket, Key: key, Body: source }, partSize: this.options.partSize, queueSize: 2 });
    try {
      await upload.done();
    } catch (error) {
      throw sourceError ?? error;
    }
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

  /**
   * One PUT for bodies below `partSize`, else a multipart upload (parts of `partSize`, two in
   * flight): S3 shows the object only when the upload completes, so a failed source leaves
   * none (an aborted multipart upload's parts are never listed as objects).
   */
  async putStream(key: string, source: Readable): Promise<void> {
    await this.store.putObjectStream(this.key(key), source);
  }

  async getStream(key: string): Promise<Readable | null> {
    try {
      return await this.store.getObject(this.key(key));
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async get(key: string): Promise<Buffer | null> {
    try {
      return await this.store.getObjectBytes(this.key(key));
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
  /** Holds the length its name declares (older unsized names count as complete). */
  complete: boolean;
}

/** A session's objects: every one stored, and the chain of complete parts from offset 0. */
interface SessionParts {
  objects: Part[];
  chain: Part[];
}

/**
 * `<offset>-<size>`, both zero-padded; a bare `<offset>` is the older layout (size unknown).
 * A part names its own length because a writer that dies mid-PUT can leave a short object on
 * S3-compatible servers that write in place (s3rver does): such an object is not part of the
 * session, and since a rewritten tail goes under a new name, the acknowledged one it replaces
 * survives until the new one is complete.
 */
const partNamePattern = /^(\d+)(?:-(\d+))?$/;

class S3UploadStore implements UploadStore {
  /** Cleared when the server answers UploadPartCopy with NotImplemented (e.g. s3rver). */
  private serverSideCopy = true;

  constructor(private readonly store: S3BlobStore) {}

  private sessionPrefix(id: string): string {
    if (!uploadIdPattern.test(id)) throw new UploadNotFoundError(id);
    return `${this.store.options.prefix}uploads/${id}/`;
  }

  private partKey(id: string, offset: number, size: number): string {
    return `${this.sessionPrefix(id)}${String(offset).padStart(offsetDigits, '0')}-${String(size).padStart(offsetDigits, '0')}`;
  }

  /**
   * Every object of the session, and the chain from offset 0 through complete parts, taking
   * the longest part at each offset (a rewritten tail whose predecessor is not yet deleted).
   * Null when the session has no complete part at offset 0 (absent).
   */
  private async sessionParts(id: string): Promise<SessionParts | null> {
    const prefix = this.sessionPrefix(id);
    const objects: Part[] = [];
    const longest = new Map<number, Part>();
    for await (const object of this.store.listObjects(prefix)) {
      const match = partNamePattern.exec(object.key.slice(prefix.length));
      if (!match) continue;
      const complete = match[2] === undefined || Number(match[2]) === object.size;
      const part = { key: object.key, offset: Number(match[1]), size: object.size, modifiedAt: object.modifiedAt, complete };
      objects.push(part);
      if (!complete) continue; // cut short
      const known = longest.get(part.offset);
      if (!known || part.size > known.size) longest.set(part.offset, part);
    }
    const chain: Part[] = [];
    for (let part = longest.get(0); part; part = part.size > 0 ? longest.get(part.offset + part.size) : undefined) chain.push(part);
    return chain.length > 0 ? { objects, chain } : null;
  }

  private async requireParts(id: string): Promise<SessionParts> {
    const parts = await this.sessionParts(id);
    if (!parts) throw new UploadNotFoundError(id);
    return parts;
  }

  private put(key: string, body: Buffer): Promise<unknown> {
    return this.store.client.send(new PutObjectCommand({ Bucket: this.store.bucket, Key: key, Body: body, ContentLength: body.length }));
  }

  /** A session is its objects; an empty part at offset 0 marks a new one. */
  async create(id: string): Promise<void> {
    await this.put(this.partKey(id, 0, 0), Buffer.alloc(0));
  }

  async append(id: string, source: AsyncIterable<Buffer>, offset: number, observe?: (chunk: Buffer) => void): Promise<number> {
    const { objects, chain } = await this.requireParts(id);
    const last = chain.at(-1)!;
    const size = last.offset + last.size;
    if (size !== offset) throw new UploadOffsetError(id, offset, size);
    const { partSize } = this.store.options;
    // A tail below partSize is rewritten (under a new name) with the new bytes in front of it.
    const rewritesTail = last.size < partSize;
    let partOffset = rewritesTail ? last.offset : size;
    let buffered: Buffer[] = rewritesTail && last.size > 0 ? [await this.store.getObjectBytes(last.key)] : [];
    let bufferedBytes = rewritesTail ? last.size : 0;
    let received = 0;
    const written = new Set<string>();
    const putPart = (body: Buffer): Promise<unknown> => {
      const key = this.partKey(id, partOffset, body.length);
      written.add(key);
      return this.put(key, body);
    };
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
          inFlight = putPart(all.subarray(0, partSize));
          inFlight.catch(() => undefined); // observed when awaited; never unhandled meanwhile
          partOffset += partSize;
          buffered = bufferedBytes > partSize ? [all.subarray(partSize)] : [];
          bufferedBytes -= partSize;
        }
      }
      await inFlight;
      if (received > 0 && bufferedBytes > 0) await putPart(Buffer.concat(buffered, bufferedBytes));
    } finally {
      await inFlight.catch(() => undefined);
    }
    if (rewritesTail && received > 0) {
      // The replaced tail (and anything a dead writer left at its offset) only now.
      await this.deleteKeys(objects.filter((part) => part.offset === last.offset && !written.has(part.key)).map((part) => part.key));
    }
    return size + received;
  }

  /**
   * Keeps the chain up to `size`, the part crossing it replaced by a shorter one (written before
   * anything is deleted), and deletes every other object of the session.
   */
  async truncate(id: string, size: number): Promise<void> {
    const { objects, chain } = await this.requireParts(id);
    const keep = new Set<string>();
    for (const part of chain) {
      if (part.offset + part.size <= size) {
        keep.add(part.key);
        if (part.offset + part.size === size) break;
        continue;
      }
      const length = size - part.offset;
      const exact = objects.find((other) => other.complete && other.offset === part.offset && other.size === length);
      if (exact) keep.add(exact.key);
      else {
        const key = this.partKey(id, part.offset, length);
        await this.put(key, (await this.store.getObjectBytes(part.key)).subarray(0, length));
        keep.add(key);
      }
      break;
    }
    await this.deleteKeys(objects.filter((part) => !keep.has(part.key)).map((part) => part.key));
  }

  async size(id: string): Promise<number | null> {
    let parts;
    try {
      parts = await this.sessionParts(id);
    } catch (error) {
      if (error instanceof UploadNotFoundError) return null;
      throw error;
    }
    if (!parts) return null;
    const last = parts.chain.at(-1)!;
    return last.offset + last.size;
  }

  async read(id: string): Promise<Readable> {
    const parts = (await this.requireParts(id)).chain;
    const store = this.store;
    return Readable.from((async function* () {
      for (const part of parts) {
        if (part.size === 0) continue;
        for await (const chunk of await store.getObject(part.key)) yield chunk as Buffer;
      }
    })());
  }

  async commit(id: string, digest: string): Promise<void> {
    const parts = (await this.requireParts(id)).chain.filter((part) => part.size > 0);
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
    await this.store.putObjectStream(key, await this.read(id));
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
