/**
 * The registry as real clients use it: skopeo, buildah, podman and curl from Debian's packages,
 * against a real Slipway server (SQLite) on 127.0.0.1. Images are made offline (OCI layouts
 * written here, or `buildah from scratch` + static busybox). Container tools run with their own
 * temporary storage (--root/--runroot, vfs), which is removed afterwards, so nothing leaks into
 * the host's image store. A missing client fails the test with a message saying what to
 * install; nothing is skipped.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, readFile, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { killAllChildren, requireCommands, run, type RunOptions } from './helpers/commands.js';
import { readOciLayout, writeOciLayout, type LayoutImage } from './helpers/oci-layout.js';
import { ociManifestType, sha256 } from './helpers/oci.js';

const dockerManifestType = 'application/vnd.docker.distribution.manifest.v2+json';
const manifestAccept = [ociManifestType, dockerManifestType, 'application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'].join(', ');
const busybox = '/bin/busybox';

/** Runs a command with the clients' default limit. */
const sh = (command: string, args: string[], options: RunOptions = {}) => run(command, args, { timeoutMs: 120_000, ...options });

async function requireBusybox(): Promise<void> {
  try {
    await access(busybox);
  } catch {
    throw new Error(`${busybox} is missing: install the Debian package busybox-static (scripts/setup.sh does)`);
  }
}

interface CurlResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** One curl call; headers of the final response (after any 100 Continue), body as bytes. */
async function curl(dir: string, args: string[]): Promise<CurlResponse> {
  const id = randomBytes(4).toString('hex');
  const headerFile = path.join(dir, `curl-${id}.headers`);
  const bodyFile = path.join(dir, `curl-${id}.body`);
  await sh('curl', ['--silent', '--show-error', '--max-time', '60', '--dump-header', headerFile, '--output', bodyFile, ...args]);
  const blocks = (await readFile(headerFile, 'utf8')).split(/\r?\n\r?\n/).filter((block) => block.trim() !== '');
  const last = blocks[blocks.length - 1]!.split(/\r?\n/);
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(last[0]!)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of last.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = Buffer.alloc(0);
  try {
    body = await readFile(bodyFile);
  } catch {
    // no body written (e.g. HEAD or 204)
  }
  return { status, headers, body };
}

/** Records the requests the server answers (method, path, status) while `fn` runs. */
async function observeRequests<T>(ts: TestServer, fn: () => Promise<T>): Promise<{ result: T; requests: Array<{ method: string; url: string; status: number }> }> {
  const requests: Array<{ method: string; url: string; status: number }> = [];
  const listener = (request: IncomingMessage, response: ServerResponse) => {
    response.on('finish', () => requests.push({ method: request.method ?? '', url: request.url ?? '', status: response.statusCode }));
  };
  ts.server.app.server.on('request', listener);
  try {
    return { result: await fn(), requests };
  } finally {
    ts.server.app.server.off('request', listener);
  }
}

async function getManifest(ts: TestServer, name: string, reference: string): Promise<{ status: number; digest: string | null; mediaType: string | null; body: Buffer }> {
  const response = await fetch(`${ts.url}/v2/${name}/manifests/${reference}`, { headers: { Accept: manifestAccept } });
  return { status: response.status, digest: response.headers.get('docker-content-digest'), mediaType: response.headers.get('content-type'), body: Buffer.from(await response.arrayBuffer()) };
}

async function getBlob(ts: TestServer, name: string, digest: string): Promise<{ status: number; body: Buffer }> {
  const response = await fetch(`${ts.url}/v2/${name}/blobs/${digest}`);
  return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
}

/** A small image (a text file and 200 KiB of random bytes) in a fresh OCI layout. */
async function sampleLayout(dir: string, tag: string): Promise<LayoutImage & { greeting: string }> {
  const greeting = `hello from slipway ${randomBytes(6).toString('hex')}\n`;
  const image = await writeOciLayout(dir, {
    tag,
    files: [
      { path: 'hello.txt', content: greeting },
      { path: 'data/random.bin', content: randomBytes(200 * 1024) },
    ],
    cmd: ['/bin/busybox', 'cat', '/hello.txt'],
    labels: { 'org.example.test': 'registry-clients' },
  });
  return { ...image, greeting };
}

describe('registry with real clients', { timeout: 600_000 }, () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer();
  });

  after(async () => {
    killAllChildren();
    await ts?.close();
  });

  test('skopeo: copy an OCI layout in and back out, inspect, list-tags, delete', { timeout: 180_000 }, async () => {
    await requireCommands({ skopeo: 'skopeo', tar: 'tar' });
    const work = await tempDir('slipway-skopeo-');
    try {
      const source = await sampleLayout(path.join(work.path, 'source'), 'v1');
      const ref = `docker://${ts.host}/clients/skopeo`;

      await sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${source.dir}:v1`, `${ref}:v1`]);

      // The registry holds exactly the bytes skopeo sent: same manifest digest, same blobs.
      const stored = await getManifest(ts, 'clients/skopeo', 'v1');
      assert.equal(stored.status, 200);
      assert.equal(stored.digest, source.manifest.digest);
      assert.equal(stored.mediaType, ociManifestType);
      assert.deepEqual(stored.body, source.manifest.data);
      assert.deepEqual((await getBlob(ts, 'clients/skopeo', source.layers[0]!.digest)).body, source.layers[0]!.data);

      const inspected = JSON.parse((await sh('skopeo', ['inspect', '--tls-verify=false', `${ref}:v1`])).stdout) as {
        Digest: string; RepoTags: string[]; Layers: string[]; Labels: Record<string, string>; Os: string;
      };
      assert.equal(inspected.Digest, source.manifest.digest);
      assert.deepEqual(inspected.Layers, [source.layers[0]!.digest]);
      assert.deepEqual(inspected.RepoTags, ['v1']);
      assert.equal(inspected.Labels['org.example.test'], 'registry-clients');
      assert.equal(inspected.Os, 'linux');
      const raw = await sh('skopeo', ['inspect', '--raw', '--tls-verify=false', `${ref}:v1`]);
      assert.equal(raw.stdout, source.manifest.data.toString('utf8'));
      const config = await sh('skopeo', ['inspect', '--config', '--raw', '--tls-verify=false', `${ref}:v1`]);
      assert.equal(config.stdout, source.config.data.toString('utf8'));

      // A second tag on the same manifest, registry to registry.
      await sh('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `${ref}:v1`, `${ref}:latest`]);
      const tags = JSON.parse((await sh('skopeo', ['list-tags', '--tls-verify=false', ref])).stdout) as { Repository: string; Tags: string[] };
      assert.deepEqual(tags.Tags.sort(), ['latest', 'v1']);

      // Back out to a new layout: identical manifest, config and layer bytes.
      const copyDir = path.join(work.path, 'copy');
      await sh('skopeo', ['copy', '--src-tls-verify=false', `${ref}:v1`, `oci:${copyDir}:v1`]);
      const copied = await readOciLayout(copyDir, 'v1');
      assert.equal(copied.manifest.digest, source.manifest.digest);
      assert.equal(copied.manifestMediaType, ociManifestType);
      assert.deepEqual(copied.config.data, source.config.data);
      assert.equal(copied.layers.length, 1);
      assert.equal(copied.layers[0]!.digest, source.layers[0]!.digest);
      assert.deepEqual(copied.layers[0]!.data, source.layers[0]!.data);
      assert.equal(sha256(copied.layers[0]!.data), source.layers[0]!.digest);

      // skopeo delete removes the manifest (by digest, so both tags go with it).
      await sh('skopeo', ['delete', '--tls-verify=false', `${ref}:v1`]);
      assert.equal((await getManifest(ts, 'clients/skopeo', source.manifest.digest)).status, 404);
      assert.equal((await getManifest(ts, 'clients/skopeo', 'v1')).status, 404);
      const gone = await sh('skopeo', ['inspect', '--tls-verify=false', `${ref}:v1`], { allowFailure: true });
      assert.notEqual(gone.code, 0, 'skopeo inspect of a deleted image must fail');
      assert.match(gone.stderr, /manifest unknown|not found|MANIFEST_UNKNOWN/i);
      const after = await sh('skopeo', ['list-tags', '--tls-verify=false', ref], { allowFailure: true });
      if (after.code === 0) assert.deepEqual((JSON.parse(after.stdout) as { Tags: string[] }).Tags, []);
      else assert.match(after.stderr, /name unknown|not found|NAME_UNKNOWN/i);
    } finally {
      await work.remove();
    }
  });

  test('buildah: push a scratch+busybox image (OCI and Docker v2s2), remove it, pull it back', { timeout: 300_000 }, async () => {
    await requireCommands({ buildah: 'buildah' });
    await requireBusybox();
    const work = await tempDir('slipway-buildah-');
    const id = `slipway-test-${randomBytes(4).toString('hex')}`;
    const storage = ['--root', path.join(work.path, 'root'), '--runroot', path.join(work.path, 'runroot'), '--storage-driver', 'vfs'];
    const buildah = (args: string[], options: RunOptions = {}) => sh('buildah', [...storage, ...args], options);
    try {
      const container = (await buildah(['from', '--name', id, 'scratch'])).stdout.trim();
      assert.equal(container, id);
      await buildah(['copy', '--chmod', '0755', container, busybox, '/bin/busybox']);
      await buildah(['config', '--cmd', '["/bin/busybox","echo","hi"]', '--label', `slipway.test=${id}`, container]);
      const local = `localhost/${id}:1`;
      await buildah(['commit', '--quiet', container, local]);
      await buildah(['rm', container]);

      const remote = `${ts.host}/clients/buildah`;
      const ociDigestFile = path.join(work.path, 'oci.digest');
      const v2s2DigestFile = path.join(work.path, 'v2s2.digest');
      await buildah(['push', '--tls-verify=false', '--digestfile', ociDigestFile, local, `docker://${remote}:oci`]);
      await buildah(['push', '--tls-verify=false', '--format', 'v2s2', '--digestfile', v2s2DigestFile, local, `docker://${remote}:v2s2`]);
      const ociDigest = (await readFile(ociDigestFile, 'utf8')).trim();
      const v2s2Digest = (await readFile(v2s2DigestFile, 'utf8')).trim();
      assert.notEqual(ociDigest, v2s2Digest);

      // What the registry serves: the manifest buildah pushed, under its media type.
      const oci = await getManifest(ts, 'clients/buildah', 'oci');
      assert.equal(oci.status, 200);
      assert.equal(oci.digest, ociDigest);
      assert.equal(oci.mediaType, ociManifestType);
      assert.equal(sha256(oci.body), ociDigest);
      const docker = await getManifest(ts, 'clients/buildah', 'v2s2');
      assert.equal(docker.status, 200);
      assert.equal(docker.digest, v2s2Digest);
      assert.equal(docker.mediaType, dockerManifestType);
      const dockerManifest = JSON.parse(docker.body.toString('utf8')) as { mediaType: string; config: { mediaType: string }; layers: Array<{ digest: string; size: number }> };
      assert.equal(dockerManifest.mediaType, dockerManifestType);
      assert.equal(dockerManifest.config.mediaType, 'application/vnd.docker.container.image.v1+json');
      for (const layer of dockerManifest.layers) {
        const blob = await getBlob(ts, 'clients/buildah', layer.digest);
        assert.equal(blob.status, 200);
        assert.equal(blob.body.length, layer.size);
        assert.equal(sha256(blob.body), layer.digest);
      }

      // Remove the local image, then pull both manifests back.
      await buildah(['rmi', local]);
      assert.equal((await buildah(['images', '--quiet'])).stdout.trim(), '', 'local storage should be empty after rmi');
      for (const [tag, digest] of [['oci', ociDigest], ['v2s2', v2s2Digest]] as const) {
        await buildah(['pull', '--tls-verify=false', `${remote}:${tag}`]);
        const inspected = JSON.parse((await buildah(['inspect', '--type', 'image', `${remote}:${tag}`])).stdout) as {
          FromImageDigest: string; OCIv1: { config: { Cmd: string[]; Labels: Record<string, string> } };
        };
        assert.equal(inspected.FromImageDigest, digest, `pulled ${tag} has the pushed digest`);
        assert.deepEqual(inspected.OCIv1.config.Cmd, ['/bin/busybox', 'echo', 'hi']);
        assert.equal(inspected.OCIv1.config.Labels['slipway.test'], id);
      }

      // The pulled image's file system holds the very busybox binary that went in.
      const check = (await buildah(['from', '--name', `${id}-check`, `${remote}:v2s2`])).stdout.trim();
      const mountPoint = (await buildah(['mount', check])).stdout.trim();
      assert.deepEqual(await readFile(path.join(mountPoint, 'bin', 'busybox')), await readFile(busybox));
      await buildah(['umount', check]);
    } finally {
      await buildah(['rm', '--all'], { allowFailure: true, timeoutMs: 60_000 }).catch(() => undefined);
      await buildah(['rmi', '--all', '--force'], { allowFailure: true, timeoutMs: 60_000 }).catch(() => undefined);
      await work.remove();
    }
  });

  test('podman: pull an image from the registry and run it', { timeout: 300_000 }, async () => {
    await requireCommands({ podman: 'podman', skopeo: 'skopeo', tar: 'tar', runc: 'runc' });
    await requireBusybox();
    const work = await tempDir('slipway-podman-');
    const storage = [
      '--root', path.join(work.path, 'root'), '--runroot', path.join(work.path, 'runroot'), '--tmpdir', path.join(work.path, 'tmp'),
      '--storage-driver', 'vfs', '--events-backend', 'none',
      // How podman runs on this kind of host (shared/reference/host-notes.md).
      '--cgroup-manager', 'cgroupfs', '--runtime', 'runc',
    ];
    const podman = (args: string[], options: RunOptions = {}) => sh('podman', [...storage, ...args], options);
    try {
      const message = `podman pulled this from slipway ${randomBytes(4).toString('hex')}`;
      const image = await writeOciLayout(path.join(work.path, 'layout'), {
        tag: 'v1',
        files: [{ path: 'bin/busybox', source: busybox, mode: 0o755 }, { path: 'message.txt', content: `${message}\n` }],
        cmd: ['/bin/busybox', 'cat', '/message.txt'],
      });
      await sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${image.dir}:v1`, `docker://${ts.host}/clients/podman:v1`]);

      const remote = `${ts.host}/clients/podman:v1`;
      await podman(['pull', '--tls-verify=false', remote]);
      const digest = (await podman(['image', 'inspect', '--format', '{{.Digest}}', remote])).stdout.trim();
      assert.equal(digest, image.manifest.digest);
      const listed = (await podman(['images', '--format', '{{.Repository}}:{{.Tag}}'])).stdout.split('\n');
      assert.ok(listed.includes(remote), `podman images lists ${remote}: ${listed.join(', ')}`);

      const ran = await podman(['run', '--rm', '--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', remote]);
      assert.equal(ran.stdout.trim(), message);
    } finally {
      await podman(['rm', '--all', '--force'], { allowFailure: true, timeoutMs: 60_000 }).catch(() => undefined);
      await podman(['rmi', '--all', '--force'], { allowFailure: true, timeoutMs: 60_000 }).catch(() => undefined);
      await work.remove();
    }
  });

  test('curl: chunked upload (POST, PATCH with Content-Range, status, PUT ?digest) and ranged GET', { timeout: 120_000 }, async () => {
    await requireCommands({ curl: 'curl' });
    const work = await tempDir('slipway-curl-');
    try {
      const name = 'clients/curl';
      const blob = randomBytes(3 * 64 * 1024 + 123);
      const digest = sha256(blob);
      const chunks = [blob.subarray(0, 64 * 1024), blob.subarray(64 * 1024, 2 * 64 * 1024), blob.subarray(2 * 64 * 1024)];
      const chunkFiles: string[] = [];
      for (const [index, chunk] of chunks.entries()) {
        const file = path.join(work.path, `chunk-${index}`);
        await writeFile(file, chunk);
        chunkFiles.push(file);
      }
      const absolute = (location: string) => new URL(location, ts.url).toString();

      const started = await curl(work.path, ['-X', 'POST', `${ts.url}/v2/${name}/blobs/uploads/`]);
      assert.equal(started.status, 202);
      assert.ok(started.headers.location, 'POST answers a Location');
      assert.ok(started.headers['docker-upload-uuid'], 'POST answers Docker-Upload-UUID');
      let location = absolute(started.headers.location);

      let offset = 0;
      for (const [index, chunk] of chunks.slice(0, 2).entries()) {
        const patched = await curl(work.path, [
          '-X', 'PATCH', '--data-binary', `@${chunkFiles[index]}`,
          '-H', 'Content-Type: application/octet-stream',
          '-H', `Content-Range: ${offset}-${offset + chunk.length - 1}`,
          location,
        ]);
        assert.equal(patched.status, 202, `PATCH chunk ${index}: ${patched.body.toString()}`);
        offset += chunk.length;
        assert.equal(patched.headers.range, `0-${offset - 1}`);
        location = absolute(patched.headers.location!);
      }

      const status = await curl(work.path, [location]);
      assert.equal(status.status, 204);
      assert.equal(status.headers.range, `0-${offset - 1}`);
      assert.equal(status.body.length, 0);

      // A chunk that does not start where the upload ends is refused with 416.
      const gap = await curl(work.path, [
        '-X', 'PATCH', '--data-binary', `@${chunkFiles[2]}`, '-H', 'Content-Type: application/octet-stream',
        '-H', `Content-Range: ${offset + 10}-${offset + 10 + chunks[2]!.length - 1}`, location,
      ]);
      assert.equal(gap.status, 416);
      assert.equal((await curl(work.path, [location])).headers.range, `0-${offset - 1}`, 'a refused chunk leaves the upload as it was');

      // The last chunk goes with the closing PUT.
      const put = await curl(work.path, [
        '-X', 'PUT', '--data-binary', `@${chunkFiles[2]}`, '-H', 'Content-Type: application/octet-stream',
        '-H', `Content-Range: ${offset}-${blob.length - 1}`, `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`,
      ]);
      assert.equal(put.status, 201, put.body.toString());
      assert.equal(put.headers['docker-content-digest'], digest);
      assert.equal(new URL(absolute(put.headers.location!)).pathname, `/v2/${name}/blobs/${digest}`);

      const whole = await curl(work.path, [`${ts.url}/v2/${name}/blobs/${digest}`]);
      assert.equal(whole.status, 200);
      assert.deepEqual(whole.body, blob);

      const head = await curl(work.path, ['--head', `${ts.url}/v2/${name}/blobs/${digest}`]);
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(blob.length));
      assert.equal(head.headers['docker-content-digest'], digest);

      const ranged = await curl(work.path, ['-r', '1000-1999', `${ts.url}/v2/${name}/blobs/${digest}`]);
      assert.equal(ranged.status, 206);
      assert.equal(ranged.headers['content-range'], `bytes 1000-1999/${blob.length}`);
      assert.deepEqual(ranged.body, blob.subarray(1000, 2000));

      const tail = await curl(work.path, ['-r', '-100', `${ts.url}/v2/${name}/blobs/${digest}`]);
      assert.equal(tail.status, 206);
      assert.deepEqual(tail.body, blob.subarray(blob.length - 100));

      const open = await curl(work.path, ['-r', `${blob.length - 10}-`, `${ts.url}/v2/${name}/blobs/${digest}`]);
      assert.equal(open.status, 206);
      assert.deepEqual(open.body, blob.subarray(blob.length - 10));

      const beyond = await curl(work.path, ['-r', `${blob.length + 5}-`, `${ts.url}/v2/${name}/blobs/${digest}`]);
      assert.equal(beyond.status, 416);
      assert.equal(beyond.headers['content-range'], `bytes */${blob.length}`);

      // The session is gone once completed.
      assert.equal((await curl(work.path, [location])).status, 404);
    } finally {
      await work.remove();
    }
  });

  test('cross-repository mount: skopeo mounts instead of uploading; POST ?mount=&from= answers 201', { timeout: 180_000 }, async () => {
    await requireCommands({ skopeo: 'skopeo', curl: 'curl', tar: 'tar' });
    const work = await tempDir('slipway-mount-');
    try {
      const source = await sampleLayout(path.join(work.path, 'source'), 'v1');
      const layer = source.layers[0]!.digest;
      await sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${source.dir}:v1`, `docker://${ts.host}/mount/source:v1`]);

      // Registry to registry, other repository: the layer is mounted, not sent again.
      const { requests } = await observeRequests(ts, () => sh('skopeo', [
        'copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${ts.host}/mount/source:v1`, `docker://${ts.host}/mount/copy:v1`,
      ]));
      const mounts = requests.filter((r) => r.method === 'POST' && r.url.startsWith('/v2/mount/copy/blobs/uploads/') && r.url.includes('mount='));
      assert.ok(mounts.some((r) => r.status === 201 && decodeURIComponent(r.url).includes(`mount=${layer}`) && decodeURIComponent(r.url).includes('from=mount/source')),
        `skopeo should mount ${layer} from mount/source; requests: ${JSON.stringify(requests, null, 1)}`);
      assert.ok(!requests.some((r) => r.method === 'GET' && r.url === `/v2/mount/source/blobs/${layer}`), 'the layer was not downloaded for the copy');
      const copied = await getManifest(ts, 'mount/copy', 'v1');
      assert.equal(copied.status, 200);
      assert.equal(copied.digest, source.manifest.digest);
      assert.deepEqual((await getBlob(ts, 'mount/copy', layer)).body, source.layers[0]!.data);

      // The raw protocol with curl: a mount from a repository that has the blob is a 201.
      const mounted = await curl(work.path, ['-X', 'POST', `${ts.url}/v2/mount/curl/blobs/uploads/?mount=${encodeURIComponent(layer)}&from=${encodeURIComponent('mount/source')}`]);
      assert.equal(mounted.status, 201);
      assert.equal(mounted.headers['docker-content-digest'], layer);
      assert.equal(new URL(mounted.headers.location!, ts.url).pathname, `/v2/mount/curl/blobs/${layer}`);
      const head = await curl(work.path, ['--head', `${ts.url}/v2/mount/curl/blobs/${layer}`]);
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(source.layers[0]!.data.length));

      // From a repository that does not have the blob: an ordinary upload session (202) instead.
      const missing = sha256(randomBytes(32));
      const fallback = await curl(work.path, ['-X', 'POST', `${ts.url}/v2/mount/curl/blobs/uploads/?mount=${encodeURIComponent(missing)}&from=${encodeURIComponent('mount/source')}`]);
      assert.equal(fallback.status, 202);
      assert.match(fallback.headers.location ?? '', /\/v2\/mount\/curl\/blobs\/uploads\//);
    } finally {
      await work.remove();
    }
  });
});
