/**
 * The OCI Distribution v1.1 API, endpoint by endpoint, status by status, error code by error
 * code, against a real server on both db dialects.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dialects, startTestServer, type TestServer } from './helpers/harness.js';
import { asBody, errorCode, imageIndex, imageManifest, ociManifestType, pushBlob, pushImage, putManifest, randomBlob, sha256 } from './helpers/oci.js';
import { createApiClient } from './helpers/api-client.js';

const timeout = 60_000;

/** References no manifest can be stored under: malformed tags, malformed or unsupported digests. */
const malformedReferences = ['.INVALID_MANIFEST_NAME', '-lead', 't'.repeat(129), 'sha256:zz', `sha256:${'A'.repeat(64)}`, `sha384:${'a'.repeat(96)}`, 'a:b'];
/** Well-formed references to nothing. */
const missingReferences = ['nope', sha256('nope'), `sha512:${'0'.repeat(128)}`];

/** GET answers 404 with `code` in the envelope; HEAD the same status with no body. */
async function assertAbsent(base: string, repository: string, reference: string, code: 'MANIFEST_UNKNOWN' | 'NAME_UNKNOWN', headers: Record<string, string> = {}): Promise<void> {
  const what = `${repository}:${reference}`;
  const get = await fetch(`${base}/v2/${repository}/manifests/${reference}`, { headers });
  assert.equal(get.status, 404, `GET ${what}`);
  assert.equal(await errorCode(get), code, `GET ${what}`);
  const head = await fetch(`${base}/v2/${repository}/manifests/${reference}`, { method: 'HEAD', headers });
  assert.equal(head.status, 404, `HEAD ${what}`);
  assert.equal((await head.arrayBuffer()).byteLength, 0, `HEAD ${what}`);
}

for (const dialect of dialects) {
  describe(`registry API (${dialect.name})`, { timeout: 300_000 }, () => {
    let server: TestServer;
    let base: string;
    before(async () => {
      server = await startTestServer({ dialect });
      base = server.url;
    });
    after(async () => server?.close());

    test('GET /v2/ answers 200 with the API version header', { timeout }, async () => {
      const response = await fetch(`${base}/v2/`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('docker-distribution-api-version'), 'registry/2.0');
    });

    describe('blob push and pull', () => {
      test('POST then PUT stores a blob; GET and HEAD return it with digest, length and ETag', { timeout }, async () => {
        const blob = randomBlob(5000);
        const put = await pushBlob(base, 'push/mono', blob.data);
        assert.equal(put.status, 201);
        assert.equal(put.headers.get('docker-content-digest'), blob.digest);
        assert.equal(put.headers.get('location'), `/v2/push/mono/blobs/${blob.digest}`);
        const get = await fetch(`${base}/v2/push/mono/blobs/${blob.digest}`);
        assert.equal(get.status, 200);
        assert.equal(get.headers.get('docker-content-digest'), blob.digest);
        assert.equal(get.headers.get('content-length'), '5000');
        assert.equal(get.headers.get('etag'), `"${blob.digest}"`);
        assert.deepEqual(Buffer.from(await get.arrayBuffer()), blob.data);
        const head = await fetch(`${base}/v2/push/mono/blobs/${blob.digest}`, { method: 'HEAD' });
        assert.equal(head.status, 200);
        assert.equal(head.headers.get('content-length'), '5000');
        assert.equal(head.headers.get('docker-content-digest'), blob.digest);
      });

      test('a single POST with ?digest and a body stores the blob (201)', { timeout }, async () => {
        const blob = randomBlob(300);
        const response = await fetch(`${base}/v2/push/single/blobs/uploads/?digest=${blob.digest}`, { method: 'POST', body: asBody(blob.data), headers: { 'Content-Type': 'application/octet-stream' } });
        assert.equal(response.status, 201);
        assert.equal(response.headers.get('docker-content-digest'), blob.digest);
        const get = await fetch(`${base}/v2/push/single/blobs/${blob.digest}`);
        assert.deepEqual(Buffer.from(await get.arrayBuffer()), blob.data);
      });

      test('an empty blob can be pushed and pulled', { timeout }, async () => {
        const empty = Buffer.alloc(0);
        const put = await pushBlob(base, 'push/empty', empty);
        assert.equal(put.status, 201);
        const get = await fetch(`${base}/v2/push/empty/blobs/${sha256(empty)}`);
        assert.equal(get.status, 200);
        assert.equal((await get.arrayBuffer()).byteLength, 0);
      });

      test('a wrong digest is DIGEST_INVALID and leaves neither blob nor session behind', { timeout }, async () => {
        const blob = randomBlob(1000);
        const wrong = sha256('something else');
        const start = await fetch(`${base}/v2/push/wrong/blobs/uploads/`, { method: 'POST' });
        const location = new URL(start.headers.get('location')!, base);
        const sessionUrl = location.toString();
        location.searchParams.set('digest', wrong);
        const put = await fetch(location, { method: 'PUT', body: asBody(blob.data) });
        assert.equal(put.status, 400);
        assert.equal(await errorCode(put), 'DIGEST_INVALID');
        for (const digest of [wrong, blob.digest]) {
          const get = await fetch(`${base}/v2/push/wrong/blobs/${digest}`);
          assert.equal(get.status, 404);
          assert.equal(await errorCode(get), 'BLOB_UNKNOWN');
        }
        const status = await fetch(sessionUrl);
        assert.equal(status.status, 404);
        assert.equal(await errorCode(status), 'BLOB_UPLOAD_UNKNOWN');
      });

      test('a malformed or unsupported digest is DIGEST_INVALID (400)', { timeout }, async () => {
        for (const digest of ['sha256:abc', 'md5:0123456789abcdef0123456789abcdef', 'nodigest', `sha256:${'A'.repeat(64)}`]) {
          const response = await fetch(`${base}/v2/push/bad/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { method: 'POST', body: 'x' });
          assert.equal(response.status, 400, digest);
          assert.equal(await errorCode(response), 'DIGEST_INVALID', digest);
        }
        const missing = await pushBlob(base, 'push/bad', Buffer.from('x'), '');
        assert.equal(missing.status, 400);
        assert.equal(await errorCode(missing), 'DIGEST_INVALID');
      });

      test('sha512 digests are verified and served', { timeout }, async () => {
        const data = Buffer.from('sha512 content');
        const digest = `sha512:${createHash('sha512').update(data).digest('hex')}`;
        const put = await pushBlob(base, 'push/sha512', data, digest);
        assert.equal(put.status, 201);
        assert.equal(put.headers.get('docker-content-digest'), digest);
        const get = await fetch(`${base}/v2/push/sha512/blobs/${digest}`);
        assert.deepEqual(Buffer.from(await get.arrayBuffer()), data);
        const start = await fetch(`${base}/v2/push/sha512/blobs/uploads/?digest-algorithm=sha512`, { method: 'POST' });
        assert.equal(start.status, 202);
        const location = new URL(start.headers.get('location')!, base);
        location.searchParams.set('digest', `sha512:${'0'.repeat(128)}`);
        const wrong = await fetch(location, { method: 'PUT', body: asBody(data) });
        assert.equal(await errorCode(wrong), 'DIGEST_INVALID');
      });

      test('chunked upload: PATCH with Content-Range, status, out-of-order 416, final PUT with a last chunk', { timeout }, async () => {
        const blob = randomBlob(30_000);
        const start = await fetch(`${base}/v2/push/chunked/blobs/uploads/`, { method: 'POST' });
        assert.equal(start.status, 202);
        assert.equal(start.headers.get('range'), '0-0');
        assert.ok(start.headers.get('docker-upload-uuid'));
        let location = new URL(start.headers.get('location')!, base);
        const patch = (from: number, to: number) => fetch(location, {
          method: 'PATCH', body: asBody(blob.data.subarray(from, to)),
          headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${from}-${to - 1}` },
        });
        const first = await patch(0, 10_000);
        assert.equal(first.status, 202);
        assert.equal(first.headers.get('range'), '0-9999');
        location = new URL(first.headers.get('location')!, base);
        const skipped = await patch(15_000, 20_000);
        assert.equal(skipped.status, 416);
        assert.equal(await errorCode(skipped), 'RANGE_INVALID');
        assert.equal(skipped.headers.get('range'), '0-9999');
        const status = await fetch(location);
        assert.equal(status.status, 204);
        assert.equal(status.headers.get('range'), '0-9999');
        assert.ok(status.headers.get('location'));
        const second = await patch(10_000, 20_000);
        assert.equal(second.status, 202);
        assert.equal(second.headers.get('range'), '0-19999');
        const finish = new URL(location);
        finish.searchParams.set('digest', blob.digest);
        const put = await fetch(finish, { method: 'PUT', body: asBody(blob.data.subarray(20_000)), headers: { 'Content-Range': '20000-29999', 'Content-Type': 'application/octet-stream' } });
        assert.equal(put.status, 201);
        const get = await fetch(`${base}/v2/push/chunked/blobs/${blob.digest}`);
        assert.deepEqual(Buffer.from(await get.arrayBuffer()), blob.data);
      });

      test('bytes a crashed PATCH left past the acknowledged size are dropped: status and resume use the acknowledged size', { timeout }, async () => {
        const blob = randomBlob(8192);
        const start = await fetch(`${base}/v2/push/leftover/blobs/uploads/`, { method: 'POST' });
        const id = start.headers.get('docker-upload-uuid')!;
        const first = await fetch(new URL(start.headers.get('location')!, base), {
          method: 'PATCH', body: asBody(blob.data.subarray(0, 4096)), headers: { 'Content-Range': '0-4095', 'Content-Type': 'application/octet-stream' },
        });
        assert.equal(first.status, 202);
        // What a server killed mid-PATCH leaves: unacknowledged bytes (here zeros, as a hole reads) past the end.
        await appendFile(path.join(server.dataDir, 'blobs', '_uploads', id), Buffer.alloc(1000));
        const location = new URL(first.headers.get('location')!, base);
        const status = await fetch(location);
        assert.equal(status.headers.get('range'), '0-4095');
        const second = await fetch(location, {
          method: 'PATCH', body: asBody(blob.data.subarray(4096)), headers: { 'Content-Range': '4096-8191', 'Content-Type': 'application/octet-stream' },
        });
        assert.equal(second.status, 202);
        const finish = new URL(second.headers.get('location')!, base);
        finish.searchParams.set('digest', blob.digest);
        assert.equal((await fetch(finish, { method: 'PUT' })).status, 201);
        assert.equal(sha256(Buffer.from(await (await fetch(`${base}/v2/push/leftover/blobs/${blob.digest}`)).arrayBuffer())), blob.digest);
      });

      test('a large PATCH at the wrong offset gets its 416 (with the Range to resume from), not a broken pipe', { timeout }, async () => {
        const start = await fetch(`${base}/v2/push/wrong-offset/blobs/uploads/`, { method: 'POST' });
        const location = new URL(start.headers.get('location')!, base);
        const big = randomBlob(8 * 1024 * 1024);
        for (let i = 0; i < 3; i++) {
          const wrong = await fetch(location, { method: 'PATCH', body: asBody(big.data), headers: { 'Content-Range': `1-${big.data.length}`, 'Content-Type': 'application/octet-stream' } });
          assert.equal(wrong.status, 416);
          assert.equal(wrong.headers.get('range'), '0-0');
        }
        const right = await fetch(location, { method: 'PATCH', body: asBody(big.data), headers: { 'Content-Range': `0-${big.data.length - 1}`, 'Content-Type': 'application/octet-stream' } });
        assert.equal(right.status, 202);
      });

      test('a PATCH without Content-Range (streamed, as Docker sends it) is accepted', { timeout }, async () => {
        const blob = randomBlob(4096);
        const start = await fetch(`${base}/v2/push/streamed/blobs/uploads/`, { method: 'POST' });
        const location = new URL(start.headers.get('location')!, base);
        const patch = await fetch(location, { method: 'PATCH', body: asBody(blob.data) });
        assert.equal(patch.status, 202);
        assert.equal(patch.headers.get('range'), '0-4095');
        const finish = new URL(patch.headers.get('location')!, base);
        finish.searchParams.set('digest', blob.digest);
        assert.equal((await fetch(finish, { method: 'PUT' })).status, 201);
      });

      test('a Content-Length that disagrees with Content-Range is refused', { timeout }, async () => {
        const start = await fetch(`${base}/v2/push/mismatch/blobs/uploads/`, { method: 'POST' });
        const location = new URL(start.headers.get('location')!, base);
        const patch = await fetch(location, { method: 'PATCH', body: 'abcd', headers: { 'Content-Range': '0-9' } });
        assert.equal(patch.status, 416);
        const status = await fetch(location);
        assert.equal(status.headers.get('range'), '0-0');
      });

      test('DELETE on an upload cancels it; the session is then unknown', { timeout }, async () => {
        const start = await fetch(`${base}/v2/push/cancel/blobs/uploads/`, { method: 'POST' });
        const location = new URL(start.headers.get('location')!, base);
        await fetch(location, { method: 'PATCH', body: 'partial' });
        const cancel = await fetch(location, { method: 'DELETE' });
        assert.equal(cancel.status, 204);
        const status = await fetch(location);
        assert.equal(status.status, 404);
        assert.equal(await errorCode(status), 'BLOB_UPLOAD_UNKNOWN');
        const again = await fetch(location, { method: 'DELETE' });
        assert.equal(await errorCode(again), 'BLOB_UPLOAD_UNKNOWN');
      });

      test('an upload session belongs to its repository', { timeout }, async () => {
        const start = await fetch(`${base}/v2/push/owner/blobs/uploads/`, { method: 'POST' });
        const id = start.headers.get('docker-upload-uuid')!;
        const status = await fetch(`${base}/v2/push/other/blobs/uploads/${id}`);
        assert.equal(status.status, 404);
        assert.equal(await errorCode(status), 'BLOB_UPLOAD_UNKNOWN');
        const unknown = await fetch(`${base}/v2/push/owner/blobs/uploads/00000000000000000000000000000000`);
        assert.equal(await errorCode(unknown), 'BLOB_UPLOAD_UNKNOWN');
      });

      test('cross-repository mount: 201 when the source has the blob, else a 202 upload session', { timeout }, async () => {
        const blob = randomBlob(2048);
        await pushBlob(base, 'mount/source', blob.data);
        const before = await fetch(`${base}/v2/mount/target/blobs/${blob.digest}`, { method: 'HEAD' });
        assert.equal(before.status, 404);
        const mounted = await fetch(`${base}/v2/mount/target/blobs/uploads/?mount=${blob.digest}&from=mount/source`, { method: 'POST' });
        assert.equal(mounted.status, 201);
        assert.equal(mounted.headers.get('location'), `/v2/mount/target/blobs/${blob.digest}`);
        assert.equal(mounted.headers.get('docker-content-digest'), blob.digest);
        const get = await fetch(`${base}/v2/mount/target/blobs/${blob.digest}`);
        assert.deepEqual(Buffer.from(await get.arrayBuffer()), blob.data);
        const fallback = await fetch(`${base}/v2/mount/target/blobs/uploads/?mount=${sha256('absent')}&from=mount/source`, { method: 'POST' });
        assert.equal(fallback.status, 202);
        assert.ok(fallback.headers.get('location')?.includes('/blobs/uploads/'));
        const noFrom = await fetch(`${base}/v2/mount/third/blobs/uploads/?mount=${blob.digest}`, { method: 'POST' });
        assert.equal(noFrom.status, 202);
      });

      test('a blob is readable only in repositories it was pushed or mounted to', { timeout }, async () => {
        const blob = randomBlob(100);
        await pushBlob(base, 'iso/a', blob.data);
        await pushBlob(base, 'iso/c', Buffer.from('make repository c exist'));
        for (const method of ['GET', 'HEAD']) {
          const response = await fetch(`${base}/v2/iso/c/blobs/${blob.digest}`, { method });
          assert.equal(response.status, 404, method);
        }
        assert.equal(await errorCode(await fetch(`${base}/v2/iso/c/blobs/${blob.digest}`)), 'BLOB_UNKNOWN');
      });

      test('ranged reads: 206 with Content-Range, suffix ranges, 416 when unsatisfiable', { timeout }, async () => {
        const data = Buffer.from('0123456789abcdefghij');
        await pushBlob(base, 'range/blob', data);
        const url = `${base}/v2/range/blob/blobs/${sha256(data)}`;
        const middle = await fetch(url, { headers: { Range: 'bytes=5-9' } });
        assert.equal(middle.status, 206);
        assert.equal(middle.headers.get('content-range'), 'bytes 5-9/20');
        assert.equal(await middle.text(), '56789');
        const open = await fetch(url, { headers: { Range: 'bytes=15-' } });
        assert.equal(await open.text(), 'fghij');
        const suffix = await fetch(url, { headers: { Range: 'bytes=-3' } });
        assert.equal(await suffix.text(), 'hij');
        const beyond = await fetch(url, { headers: { Range: 'bytes=25-30' } });
        assert.equal(beyond.status, 416);
        assert.equal(beyond.headers.get('content-range'), 'bytes */20');
        const backwards = await fetch(url, { headers: { Range: 'bytes=9-5' } });
        assert.equal(backwards.status, 416);
        // A large blob is streamed from disk rather than memory; ranges work there too.
        const big = randomBlob(600_000);
        await pushBlob(base, 'range/blob', big.data);
        const tail = await fetch(`${base}/v2/range/blob/blobs/${big.digest}`, { headers: { Range: 'bytes=599990-599999' } });
        assert.equal(tail.status, 206);
        assert.deepEqual(Buffer.from(await tail.arrayBuffer()), big.data.subarray(599_990));
      });

      test('a multi-MiB blob comes back whole with its headers, by range across chunk boundaries, and survives a client that hangs up', { timeout }, async () => {
        const big = randomBlob(3 * 1024 * 1024 + 12_345);
        assert.equal((await pushBlob(base, 'large/blob', big.data)).status, 201);
        const url = `${base}/v2/large/blob/blobs/${big.digest}`;
        const whole = await fetch(url);
        assert.equal(whole.status, 200);
        assert.equal(whole.headers.get('content-length'), String(big.data.length));
        assert.equal(whole.headers.get('docker-content-digest'), big.digest);
        assert.equal(whole.headers.get('docker-distribution-api-version'), 'registry/2.0');
        assert.equal(sha256(Buffer.from(await whole.arrayBuffer())), big.digest);
        const from = 1024 * 1024 - 100;
        const to = 2 * 1024 * 1024 + 100;
        const middle = await fetch(url, { headers: { Range: `bytes=${from}-${to}` } });
        assert.equal(middle.status, 206);
        assert.equal(middle.headers.get('content-range'), `bytes ${from}-${to}/${big.data.length}`);
        assert.deepEqual(Buffer.from(await middle.arrayBuffer()), big.data.subarray(from, to + 1));
        // Read a little, then hang up: the server lets go and keeps serving.
        const aborter = new AbortController();
        const partial = await fetch(url, { signal: aborter.signal });
        const reader = partial.body!.getReader();
        await reader.read();
        aborter.abort();
        await reader.read().catch(() => undefined);
        const again = await fetch(url);
        assert.equal(sha256(Buffer.from(await again.arrayBuffer())), big.digest);
      });

      test('DELETE of a blob unlinks it from the repository (202, then 404)', { timeout }, async () => {
        const blob = randomBlob(64);
        await pushBlob(base, 'delete/blob', blob.data);
        const del = await fetch(`${base}/v2/delete/blob/blobs/${blob.digest}`, { method: 'DELETE' });
        assert.equal(del.status, 202);
        assert.equal((await fetch(`${base}/v2/delete/blob/blobs/${blob.digest}`)).status, 404);
        const again = await fetch(`${base}/v2/delete/blob/blobs/${blob.digest}`, { method: 'DELETE' });
        assert.equal(again.status, 404);
        assert.equal(await errorCode(again), 'BLOB_UNKNOWN');
      });
    });

    describe('manifests', () => {
      test('PUT by tag, then GET by tag and digest returns the exact bytes and headers', { timeout }, async () => {
        const { manifest } = await pushImage(base, 'man/basic', 'v1');
        for (const reference of ['v1', manifest.digest]) {
          const get = await fetch(`${base}/v2/man/basic/manifests/${reference}`, { headers: { Accept: ociManifestType } });
          assert.equal(get.status, 200);
          assert.equal(get.headers.get('content-type'), ociManifestType);
          assert.equal(get.headers.get('docker-content-digest'), manifest.digest);
          assert.deepEqual(Buffer.from(await get.arrayBuffer()), manifest.body);
          const head = await fetch(`${base}/v2/man/basic/manifests/${reference}`, { method: 'HEAD' });
          assert.equal(head.status, 200);
          assert.equal(head.headers.get('content-length'), String(manifest.body.length));
          assert.equal(head.headers.get('docker-content-digest'), manifest.digest);
        }
        const cached = await fetch(`${base}/v2/man/basic/manifests/v1`, { headers: { 'If-None-Match': `"${manifest.digest}"` } });
        assert.equal(cached.status, 304);
      });

      test('the PUT answers 201 with Location and Docker-Content-Digest; PUT by digest must match', { timeout }, async () => {
        const config = randomBlob(50);
        await pushBlob(base, 'man/digest', config.data);
        const manifest = imageManifest({ digest: config.digest, size: 50 }, []);
        const put = await putManifest(base, 'man/digest', manifest.digest, manifest);
        assert.equal(put.status, 201);
        assert.equal(put.headers.get('location'), `/v2/man/digest/manifests/${manifest.digest}`);
        assert.equal(put.headers.get('docker-content-digest'), manifest.digest);
        const mismatch = await putManifest(base, 'man/digest', sha256('other'), manifest);
        assert.equal(mismatch.status, 400);
        assert.equal(await errorCode(mismatch), 'DIGEST_INVALID');
      });

      test('a manifest referencing a blob not in the repository is MANIFEST_BLOB_UNKNOWN', { timeout }, async () => {
        const config = randomBlob(50);
        const elsewhere = randomBlob(70);
        await pushBlob(base, 'man/missing', config.data);
        await pushBlob(base, 'man/elsewhere', elsewhere.data);
        for (const layer of [randomBlob(10), elsewhere]) {
          const manifest = imageManifest({ digest: config.digest, size: 50 }, [{ digest: layer.digest, size: layer.data.length }]);
          const put = await putManifest(base, 'man/missing', 'latest', manifest);
          assert.equal(put.status, 400);
          assert.equal(await errorCode(put), 'MANIFEST_BLOB_UNKNOWN');
        }
        const get = await fetch(`${base}/v2/man/missing/manifests/latest`);
        assert.equal(get.status, 404);
      });

      test('an index referencing a manifest not in the repository is MANIFEST_UNKNOWN', { timeout }, async () => {
        const { manifest } = await pushImage(base, 'man/index', 'child');
        const ghost = imageManifest({ digest: sha256('x'), size: 1 }, []);
        const bad = await putManifest(base, 'man/index', 'multi', imageIndex([manifest, ghost]));
        assert.equal(await errorCode(bad), 'MANIFEST_UNKNOWN');
        const index = imageIndex([manifest]);
        const good = await putManifest(base, 'man/index', 'multi', index);
        assert.equal(good.status, 201);
        const get = await fetch(`${base}/v2/man/index/manifests/multi`);
        assert.equal(get.headers.get('content-type'), index.mediaType);
        assert.deepEqual(Buffer.from(await get.arrayBuffer()), index.body);
      });

      test('Docker schema2 manifests and manifest lists are accepted', { timeout }, async () => {
        const config = randomBlob(40);
        const layer = randomBlob(80);
        await pushBlob(base, 'man/docker', config.data);
        await pushBlob(base, 'man/docker', layer.data);
        const body = Buffer.from(JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
          config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: config.digest, size: 40 },
          layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: layer.digest, size: 80 }],
        }));
        const manifest = { body, digest: sha256(body), mediaType: 'application/vnd.docker.distribution.manifest.v2+json' };
        assert.equal((await putManifest(base, 'man/docker', 'v2', manifest)).status, 201);
        const listBody = Buffer.from(JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
          manifests: [{ mediaType: manifest.mediaType, digest: manifest.digest, size: body.length, platform: { os: 'linux', architecture: 'amd64' } }],
        }));
        const list = { body: listBody, digest: sha256(listBody), mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json' };
        assert.equal((await putManifest(base, 'man/docker', 'list', list)).status, 201);
        const get = await fetch(`${base}/v2/man/docker/manifests/list`);
        assert.equal(get.headers.get('content-type'), list.mediaType);
      });

      test('malformed JSON, unknown media types, mismatched mediaType and bad structure are MANIFEST_INVALID', { timeout }, async () => {
        const cases: Array<[string, string]> = [
          ['{not json', ociManifestType],
          [JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.example+json', config: {}, layers: [] }), 'application/vnd.example+json'],
          [JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }), ociManifestType],
          [JSON.stringify({ schemaVersion: 1, config: { mediaType: 'a', digest: sha256('a'), size: 1 }, layers: [] }), ociManifestType],
          [JSON.stringify({ schemaVersion: 2, layers: [] }), ociManifestType],
          [JSON.stringify({ schemaVersion: 2, config: { mediaType: 'a', digest: 'sha256:zz', size: 1 }, layers: [] }), ociManifestType],
          [JSON.stringify({ schemaVersion: 2, config: { mediaType: 'a', digest: sha256('a'), size: -1 }, layers: [] }), ociManifestType],
          [JSON.stringify([1, 2]), ociManifestType],
        ];
        for (const [body, type] of cases) {
          const put = await fetch(`${base}/v2/man/invalid/manifests/latest`, { method: 'PUT', body, headers: { 'Content-Type': type } });
          assert.equal(put.status, 400, body);
          assert.equal(await errorCode(put), 'MANIFEST_INVALID', body);
        }
        assert.equal((await fetch(`${base}/v2/man/invalid/manifests/latest`)).status, 404);
      });

      test('a manifest over 4 MiB is refused with 413; one just under is accepted', { timeout }, async () => {
        const config = randomBlob(20);
        await pushBlob(base, 'man/large', config.data);
        const padded = (size: number) => {
          const skeleton = imageManifest({ digest: config.digest, size: 20 }, [], { annotations: { pad: '' } });
          const pad = 'x'.repeat(size - skeleton.body.length);
          const body = Buffer.from(JSON.stringify({ ...JSON.parse(skeleton.body.toString()), annotations: { pad } }));
          assert.equal(body.length, size);
          return { body, digest: sha256(body), mediaType: ociManifestType };
        };
        const tooBig = await putManifest(base, 'man/large', 'big', padded(4 * 1024 * 1024 + 1));
        assert.equal(tooBig.status, 413);
        assert.ok((await tooBig.json()).errors);
        const fits = await putManifest(base, 'man/large', 'fits', padded(4 * 1024 * 1024));
        assert.equal(fits.status, 201);
      });

      test('unknown manifests are MANIFEST_UNKNOWN; unknown repositories NAME_UNKNOWN', { timeout }, async () => {
        await pushImage(base, 'man/known', 'v1', 1, 10);
        const tag = await fetch(`${base}/v2/man/known/manifests/nope`);
        assert.equal(tag.status, 404);
        assert.equal(await errorCode(tag), 'MANIFEST_UNKNOWN');
        const digest = await fetch(`${base}/v2/man/known/manifests/${sha256('nope')}`, { method: 'HEAD' });
        assert.equal(digest.status, 404);
        const repo = await fetch(`${base}/v2/man/never-pushed/manifests/latest`);
        assert.equal(repo.status, 404);
        assert.equal(await errorCode(repo), 'NAME_UNKNOWN');
      });

      test('GET/HEAD of any reference naming no manifest is 404, valid or not: MANIFEST_UNKNOWN, or NAME_UNKNOWN without the repository', { timeout }, async () => {
        await pushImage(base, 'man/probe', 'v1', 1, 10);
        for (const reference of [...malformedReferences, ...missingReferences]) {
          await assertAbsent(base, 'man/probe', reference, 'MANIFEST_UNKNOWN');
          await assertAbsent(base, 'man/never-there', reference, 'NAME_UNKNOWN');
        }
        assert.equal((await fetch(`${base}/v2/man/probe/manifests/v1`, { method: 'HEAD' })).status, 200);
      });

      test('PUT and DELETE of a malformed reference are TAG_INVALID / DIGEST_INVALID (400) and store or remove nothing', { timeout }, async () => {
        const { manifest } = await pushImage(base, 'man/malformed', 'v1', 1, 10);
        for (const [reference, code] of [['.INVALID_MANIFEST_NAME', 'TAG_INVALID'], ['t'.repeat(129), 'TAG_INVALID'], ['sha256:zz', 'DIGEST_INVALID'], [`sha384:${'a'.repeat(96)}`, 'DIGEST_INVALID']] as const) {
          const put = await putManifest(base, 'man/malformed', reference, manifest);
          assert.equal(put.status, 400, `PUT ${reference}`);
          assert.equal(await errorCode(put), code, `PUT ${reference}`);
          const del = await fetch(`${base}/v2/man/malformed/manifests/${reference}`, { method: 'DELETE' });
          assert.equal(del.status, 400, `DELETE ${reference}`);
          assert.equal(await errorCode(del), code, `DELETE ${reference}`);
        }
        assert.deepEqual((await (await fetch(`${base}/v2/man/malformed/tags/list`)).json()).tags, ['v1']);
        assert.equal((await fetch(`${base}/v2/man/malformed/manifests/${manifest.digest}`, { method: 'HEAD' })).status, 200);
      });

      test('DELETE by tag removes only the tag; by digest removes the manifest and its tags', { timeout }, async () => {
        const { manifest } = await pushImage(base, 'man/delete', 'a', 1, 10);
        await putManifest(base, 'man/delete', 'b', manifest);
        const byTag = await fetch(`${base}/v2/man/delete/manifests/a`, { method: 'DELETE' });
        assert.equal(byTag.status, 202);
        assert.equal((await fetch(`${base}/v2/man/delete/manifests/a`)).status, 404);
        assert.equal((await fetch(`${base}/v2/man/delete/manifests/b`)).status, 200);
        const byDigest = await fetch(`${base}/v2/man/delete/manifests/${manifest.digest}`, { method: 'DELETE' });
        assert.equal(byDigest.status, 202);
        for (const reference of ['b', manifest.digest]) {
          const get = await fetch(`${base}/v2/man/delete/manifests/${reference}`);
          assert.equal(get.status, 404);
          assert.equal(await errorCode(get), 'MANIFEST_UNKNOWN');
        }
        const again = await fetch(`${base}/v2/man/delete/manifests/${manifest.digest}`, { method: 'DELETE' });
        assert.equal(again.status, 404);
        const tags = await (await fetch(`${base}/v2/man/delete/tags/list`)).json();
        assert.deepEqual(tags.tags, []);
      });
    });

    describe('referrers', () => {
      test('subject gives OCI-Subject; referrers lists them with artifactType and annotations; the filter is announced', { timeout }, async () => {
        const { manifest: subject } = await pushImage(base, 'ref/app', 'v1', 1, 10);
        const empty = Buffer.from('{}');
        await pushBlob(base, 'ref/app', empty);
        const artifact = (artifactType: string, note: string) => imageManifest({ digest: sha256(empty), size: 2 }, [], {
          artifactType,
          subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.body.length },
          annotations: { note },
        });
        const signature = artifact('application/vnd.example.signature', 'sig');
        const sbom = artifact('application/vnd.example.sbom', 'sbom');
        for (const m of [signature, sbom]) {
          const put = await putManifest(base, 'ref/app', m.digest, m);
          assert.equal(put.status, 201);
          assert.equal(put.headers.get('oci-subject'), subject.digest);
        }
        const all = await fetch(`${base}/v2/ref/app/referrers/${subject.digest}`);
        assert.equal(all.status, 200);
        assert.equal(all.headers.get('content-type'), 'application/vnd.oci.image.index.v1+json');
        assert.equal(all.headers.get('oci-filters-applied'), null);
        const index = await all.json();
        assert.equal(index.schemaVersion, 2);
        assert.equal(index.manifests.length, 2);
        const sig = index.manifests.find((d: { digest: string }) => d.digest === signature.digest);
        assert.equal(sig.artifactType, 'application/vnd.example.signature');
        assert.deepEqual(sig.annotations, { note: 'sig' });
        assert.equal(sig.size, signature.body.length);
        const filtered = await fetch(`${base}/v2/ref/app/referrers/${subject.digest}?artifactType=application/vnd.example.sbom`);
        assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType');
        assert.deepEqual((await filtered.json()).manifests.map((d: { digest: string }) => d.digest), [sbom.digest]);
      });

      test('a subject that does not exist yet is accepted, and referrers of unknown digests are an empty 200', { timeout }, async () => {
        const empty = Buffer.from('{}');
        await pushBlob(base, 'ref/dangling', empty);
        const missing = sha256('not pushed yet');
        const m = imageManifest({ digest: sha256(empty), size: 2 }, [], { artifactType: 'application/x', subject: { mediaType: ociManifestType, digest: missing, size: 10 } });
        assert.equal((await putManifest(base, 'ref/dangling', m.digest, m)).status, 201);
        const list = await (await fetch(`${base}/v2/ref/dangling/referrers/${missing}`)).json();
        assert.equal(list.manifests.length, 1);
        const none = await fetch(`${base}/v2/ref/nowhere/referrers/${sha256('nothing')}`);
        assert.equal(none.status, 200);
        assert.deepEqual((await none.json()).manifests, []);
        const bad = await fetch(`${base}/v2/ref/nowhere/referrers/sha256:xyz`);
        assert.equal(bad.status, 400);
      });
    });

    describe('tags and catalog', () => {
      test('tags are listed in lexical order with n/last pagination and a Link header', { timeout }, async () => {
        const { manifest } = await pushImage(base, 'tags/list', 'seed', 1, 10);
        const names = ['b', 'A', 'a', '1.0', '_x', 'z-9', 'a.b'];
        for (const name of names) assert.equal((await putManifest(base, 'tags/list', name, manifest)).status, 201);
        const sorted = [...names, 'seed'].sort();
        const all = await (await fetch(`${base}/v2/tags/list/tags/list`)).json();
        assert.deepEqual(all, { name: 'tags/list', tags: sorted });
        const page1 = await fetch(`${base}/v2/tags/list/tags/list?n=3`);
        assert.deepEqual((await page1.json()).tags, sorted.slice(0, 3));
        const link = page1.headers.get('link');
        assert.match(link ?? '', /^<\/v2\/tags\/list\/tags\/list\?n=3&last=[^>]+>; rel="next"$/);
        const next = link!.slice(1, link!.indexOf('>'));
        const page2 = await (await fetch(`${base}${next}`)).json();
        assert.deepEqual(page2.tags, sorted.slice(3, 6));
        const afterLast = await fetch(`${base}/v2/tags/list/tags/list?n=100&last=${sorted[5]}`);
        assert.deepEqual((await afterLast.json()).tags, sorted.slice(6));
        assert.equal(afterLast.headers.get('link'), null);
        const zero = await fetch(`${base}/v2/tags/list/tags/list?n=0`);
        assert.deepEqual((await zero.json()).tags, []);
        assert.equal(zero.headers.get('link'), null);
        const bad = await fetch(`${base}/v2/tags/list/tags/list?n=-1`);
        assert.equal(bad.status, 400);
        assert.equal(await errorCode(bad), 'PAGINATION_NUMBER_INVALID');
        const unknown = await fetch(`${base}/v2/tags/never/tags/list`);
        assert.equal(unknown.status, 404);
        assert.equal(await errorCode(unknown), 'NAME_UNKNOWN');
      });

      test('tag moves point the tag at the new manifest', { timeout }, async () => {
        const first = await pushImage(base, 'tags/move', 'latest', 1, 10);
        const second = await pushImage(base, 'tags/move', 'latest', 1, 10);
        const head = await fetch(`${base}/v2/tags/move/manifests/latest`, { method: 'HEAD' });
        assert.equal(head.headers.get('docker-content-digest'), second.manifest.digest);
        assert.notEqual(first.manifest.digest, second.manifest.digest);
        assert.equal((await fetch(`${base}/v2/tags/move/manifests/${first.manifest.digest}`)).status, 200);
      });

      test('the catalog lists repositories with the same pagination', { timeout }, async () => {
        for (const name of ['cat/a', 'cat/b', 'cat/c']) await pushBlob(base, name, Buffer.from(name));
        const all = (await (await fetch(`${base}/v2/_catalog`)).json()).repositories as string[];
        assert.ok(['cat/a', 'cat/b', 'cat/c'].every((n) => all.includes(n)));
        assert.deepEqual(all, [...all].sort());
        const first = await fetch(`${base}/v2/_catalog?n=1&last=cat/a`);
        assert.deepEqual((await first.json()).repositories, ['cat/b']);
        assert.match(first.headers.get('link') ?? '', /^<\/v2\/_catalog\?n=1&last=cat%2Fb>; rel="next"$/);
      });
    });

    describe('names and errors', () => {
      test('invalid repository names are NAME_INVALID; invalid tags TAG_INVALID on PUT', { timeout }, async () => {
        for (const name of ['UPPER/case', 'a//b', '-lead', 'trail-', 'a/.b', `${'a'.repeat(256)}`]) {
          const response = await fetch(`${base}/v2/${name}/tags/list`);
          assert.equal(response.status, 400, name);
          assert.equal(await errorCode(response), 'NAME_INVALID', name);
        }
        for (const name of ['a', 'a0/b_c/d__e/f-g/h.i', 'x---y']) {
          const response = await fetch(`${base}/v2/${name}/blobs/uploads/`, { method: 'POST' });
          assert.equal(response.status, 202, name);
        }
        const tag = await fetch(`${base}/v2/names/ok/manifests/.bad`, { method: 'PUT', body: '{}' });
        assert.equal(tag.status, 400);
        assert.equal(await errorCode(tag), 'TAG_INVALID');
        const long = await fetch(`${base}/v2/names/ok/manifests/${'t'.repeat(129)}`, { method: 'PUT', body: '{}' });
        assert.equal(long.status, 400);
        assert.equal(await errorCode(long), 'TAG_INVALID');
      });

      test('unsupported methods are UNSUPPORTED (405) in the error envelope', { timeout }, async () => {
        const response = await fetch(`${base}/v2/some/repo/manifests/latest`, { method: 'POST' });
        assert.equal(response.status, 405);
        assert.equal(await errorCode(response), 'UNSUPPORTED');
      });
    });

    describe('garbage collection and fsck', () => {
      test('GC keeps tagged content and collects untagged manifests and unreferenced blobs after the grace period', { timeout }, async () => {
        const kept = await pushImage(base, 'gc/repo', 'keep', 2, 100);
        const dropped = await pushImage(base, 'gc/repo', 'drop', 2, 100);
        const shared = kept.blobs[1]!;
        await fetch(`${base}/v2/gc/repo/manifests/drop`, { method: 'DELETE' });
        const registry = server.server.registry;
        const early = await registry.gc();
        assert.equal(early.blobsDeleted, 0, 'nothing is collected within the grace period');
        const report = await registry.gc(Date.now() + server.config.registry.gc.gracePeriod + 1000);
        assert.ok(report.manifestsDeleted >= 1);
        assert.ok(report.blobsDeleted >= 3);
        assert.equal((await fetch(`${base}/v2/gc/repo/manifests/${dropped.manifest.digest}`)).status, 404);
        for (const blob of dropped.blobs) assert.equal((await fetch(`${base}/v2/gc/repo/blobs/${blob.digest}`, { method: 'HEAD' })).status, 404);
        for (const blob of kept.blobs) {
          const get = await fetch(`${base}/v2/gc/repo/blobs/${blob.digest}`);
          assert.equal(get.status, 200);
          assert.deepEqual(Buffer.from(await get.arrayBuffer()), blob.data);
        }
        assert.equal((await fetch(`${base}/v2/gc/repo/manifests/keep`)).status, 200);
        assert.ok(shared);
        const check = await registry.fsck();
        assert.deepEqual(check.problems, []);
      });

      test('deleting a blob a tagged manifest references is a note in fsck, not a fault; pulling it is BLOB_UNKNOWN until pushed again', { timeout }, async () => {
        const image = await pushImage(base, 'fsck/deleted-layer', 'v1', 1, 300);
        const layer = image.blobs[1]!;
        assert.equal((await fetch(`${base}/v2/fsck/deleted-layer/blobs/${layer.digest}`, { method: 'DELETE' })).status, 202);
        assert.equal(await errorCode(await fetch(`${base}/v2/fsck/deleted-layer/blobs/${layer.digest}`)), 'BLOB_UNKNOWN');
        const report = await server.server.registry.fsck();
        assert.deepEqual(report.problems, []);
        assert.ok(report.referencesDeleted.some((note) => note.repository === 'fsck/deleted-layer' && note.digest === image.manifest.digest && note.detail.includes(layer.digest)));
        assert.equal((await pushBlob(base, 'fsck/deleted-layer', layer.data)).status, 201);
        assert.ok(!(await server.server.registry.fsck()).referencesDeleted.some((note) => note.repository === 'fsck/deleted-layer'));
      });

      test('fsck reports a corrupted blob file', { timeout }, async () => {
        const blob = randomBlob(700);
        await pushBlob(base, 'fsck/repo', blob.data);
        const hex = blob.digest.slice('sha256:'.length);
        await writeFile(path.join(server.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex), Buffer.from('tampered'));
        const report = await server.server.registry.fsck();
        const problem = report.problems.find((p) => p.digest === blob.digest);
        assert.equal(problem?.kind, 'blob-corrupt');
        await fetch(`${base}/v2/fsck/repo/blobs/${blob.digest}`, { method: 'DELETE' });
        await server.server.registry.gc(Date.now() + server.config.registry.gc.gracePeriod + 1000);
        assert.deepEqual((await server.server.registry.fsck()).problems, []);
      });
    });
  });
}

describe('registry with deletes disabled', { timeout: 60_000 }, () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ config: { registry: { deleteEnabled: false } } });
  });
  after(async () => server?.close());

  test('manifest, tag and blob deletes answer UNSUPPORTED (405) and delete nothing', { timeout }, async () => {
    const { manifest, blobs } = await pushImage(server.url, 'nodel/repo', 'v1', 1, 10);
    for (const url of [`manifests/v1`, `manifests/${manifest.digest}`, `blobs/${blobs[0]!.digest}`]) {
      const response = await fetch(`${server.url}/v2/nodel/repo/${url}`, { method: 'DELETE' });
      assert.equal(response.status, 405, url);
      assert.equal(await errorCode(response), 'UNSUPPORTED');
    }
    assert.equal((await fetch(`${server.url}/v2/nodel/repo/manifests/v1`)).status, 200);
  });
});

describe('manifest lookups of absent references with access control on', { timeout: 120_000 }, () => {
  const adminPassword = 'admin-secret-Pa55word';
  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const admin = { authorization: basic('admin', adminPassword) };
  const reader = { authorization: basic('rita', 'rita-password-1') };
  const outsider = { authorization: basic('otto', 'otto-password-1') };
  let server: TestServer;
  let base: string;
  const api = async (method: string, url: string, headers: Record<string, string>, body: unknown) => (await createApiClient(base).request(method, url, body, { headers })).status;
  before(async () => {
    server = await startTestServer({ config: { auth: { enabled: true, adminPassword } } });
    base = server.url;
    assert.equal(await api('POST', '/api/v1/namespaces', admin, { name: 'team' }), 201);
    for (const name of ['rita', 'otto']) assert.equal(await api('POST', '/api/v1/users', admin, { name, password: `${name}-password-1` }), 201);
    assert.equal(await api('PUT', '/api/v1/namespaces/team/members/rita', admin, { role: 'reader' }), 200);
    await pushImage(base, 'team/repo', 'v1', 1, 10, admin);
    await pushImage(base, 'team/pub', 'v1', 1, 10, admin);
    // Public before anything is pushed to it: anonymous callers may ask, and it does not exist yet.
    for (const repository of ['team/pub', 'team/pub-empty']) {
      assert.equal(await api('PUT', `/api/v1/repositories/${repository}/visibility`, admin, { public: true }), 200);
    }
  });
  after(async () => server?.close());

  test('an authorized caller (basic auth or bearer token) gets MANIFEST_UNKNOWN, or NAME_UNKNOWN without the repository', { timeout }, async () => {
    const token = async (repository: string) => {
      const response = await fetch(`${base}/auth/token?service=slipway&scope=${encodeURIComponent(`repository:${repository}:pull`)}`, { headers: reader });
      return { authorization: `Bearer ${((await response.json()) as { token: string }).token}` };
    };
    for (const reference of [...malformedReferences, ...missingReferences]) {
      await assertAbsent(base, 'team/repo', reference, 'MANIFEST_UNKNOWN', reader);
      await assertAbsent(base, 'team/missing', reference, 'NAME_UNKNOWN', reader);
    }
    for (const reference of ['.INVALID_MANIFEST_NAME', 'sha256:zz', 'nope']) {
      await assertAbsent(base, 'team/repo', reference, 'MANIFEST_UNKNOWN', await token('team/repo'));
      await assertAbsent(base, 'team/missing', reference, 'NAME_UNKNOWN', await token('team/missing'));
    }
    assert.equal((await fetch(`${base}/v2/team/repo/manifests/v1`, { method: 'HEAD', headers: reader })).status, 200);
  });

  test('an anonymous caller of a public repository gets the same 404s', { timeout }, async () => {
    for (const reference of [...malformedReferences, ...missingReferences]) {
      await assertAbsent(base, 'team/pub', reference, 'MANIFEST_UNKNOWN');
      await assertAbsent(base, 'team/pub-empty', reference, 'NAME_UNKNOWN');
    }
    assert.equal((await fetch(`${base}/v2/team/pub/manifests/v1`, { method: 'HEAD' })).status, 200);
  });

  test('callers without pull still get 401 (anonymous) or 403 (signed in), for any reference, existing repository or not', { timeout }, async () => {
    for (const repository of ['team/repo', 'team/missing']) {
      for (const reference of ['v1', '.INVALID_MANIFEST_NAME', 'sha256:zz', 'nope']) {
        for (const method of ['GET', 'HEAD']) {
          const url = `${base}/v2/${repository}/manifests/${reference}`;
          const anonymous = await fetch(url, { method });
          assert.equal(anonymous.status, 401, `${method} ${repository}:${reference} anonymous`);
          assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer realm=/);
          const denied = await fetch(url, { method, headers: outsider });
          assert.equal(denied.status, 403, `${method} ${repository}:${reference} outsider`);
          if (method === 'GET') assert.equal(await errorCode(denied), 'DENIED');
        }
      }
    }
  });
});
