/**
 * Logging in to an access-controlled Slipway with real clients from Debian's packages: buildah
 * (login, push of an image built here from scratch + static busybox), podman (login, pull, run,
 * docker-style `--password-stdin` / `--get-login` / logout) and skopeo (login, copy, inspect),
 * against a real server (SQLite) on 127.0.0.1 with auth on. Every client gets its own
 * `REGISTRY_AUTH_FILE` and its own storage in a temporary folder, so the machine's own auth
 * files and image stores are never touched (the last test checks the auth files). A missing
 * client fails the test with a message saying what to install; nothing is skipped.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestServer, tempDir, type TestServer } from './helpers/harness.js';
import { killAllChildren, requireCommands, run, type RunOptions } from './helpers/commands.js';
import { writeOciLayout } from './helpers/oci-layout.js';
import { createApiClient } from './helpers/api-client.js';

const busybox = '/bin/busybox';
const adminPassword = `admin-${randomBytes(8).toString('hex')}`;
const passwords = { olivia: `olivia-${randomBytes(8).toString('hex')}`, alice: `alice-${randomBytes(8).toString('hex')}`, bob: `bob-${randomBytes(8).toString('hex')}` };
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const manifestAccept = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.oci.image.index.v1+json'].join(', ');
/** What clients print when the registry refuses them. */
const authError = /denied|unauthorized|authentication required|insufficient_scope|requested access to the resource is denied/i;

/** Runs a command with the clients' default limit. */
const sh = (command: string, args: string[], options: RunOptions = {}) => run(command, args, { timeoutMs: 120_000, ...options });

async function requireBusybox(): Promise<void> {
  try {
    await access(busybox);
  } catch {
    throw new Error(`${busybox} is missing: install the Debian package busybox-static (scripts/setup.sh does)`);
  }
}

/** The machine's own registry auth files (as root and as the current user): content or absent. */
const machineAuthFiles = [
  path.join(homedir(), '.docker', 'config.json'),
  path.join(homedir(), '.config', 'containers', 'auth.json'),
  path.join(homedir(), '.dockercfg'),
  `/run/containers/${process.getuid?.() ?? 0}/auth.json`,
  ...(process.env.XDG_RUNTIME_DIR ? [path.join(process.env.XDG_RUNTIME_DIR, 'containers', 'auth.json')] : []),
];
async function snapshotMachineAuth(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const file of machineAuthFiles) {
    out[file] = await readFile(file).then((data) => createHash('sha256').update(data).digest('hex'), () => 'absent');
  }
  return out;
}

describe('real clients log in to an access-controlled registry', { timeout: 1_800_000 }, () => {
  let ts: TestServer;
  let work: { path: string; remove(): Promise<void> };
  let machineAuthBefore: Record<string, string>;
  /** What the contributor's buildah push stored, for the tests after it. */
  let pushed: { ref: string; digest: string; message: string } | undefined;

  const api = (method: string, url: string, auth: string, body?: unknown) => createApiClient(ts.url, auth).request<Record<string, unknown>>(method, url, body);
  const manifestStatus = async (name: string, reference: string) => {
    const response = await fetch(`${ts.url}/v2/${name}/manifests/${reference}`, { headers: { authorization: basic('admin', adminPassword), accept: manifestAccept } });
    await response.arrayBuffer();
    return { status: response.status, digest: response.headers.get('docker-content-digest') };
  };
  /**
   * A fresh, empty auth file (`{"auths":{}}`) in the work folder: no credentials at all. (buildah
   * refuses a REGISTRY_AUTH_FILE that does not exist.)
   */
  const authFile = async (label: string) => {
    const file = path.join(work.path, 'auth', `${label}-${randomBytes(3).toString('hex')}.json`);
    await writeFile(file, JSON.stringify({ auths: {} }));
    return file;
  };
  const storedLogins = async (file: string) => (JSON.parse(await readFile(file, 'utf8')) as { auths: Record<string, { auth: string }> }).auths;
  const withAuth = (file: string): NodeJS.ProcessEnv => ({ ...process.env, REGISTRY_AUTH_FILE: file });

  /** buildah with its own storage (vfs) in `dir`. */
  const buildahIn = (dir: string) => (args: string[], options: RunOptions = {}) =>
    sh('buildah', ['--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--storage-driver', 'vfs', ...args], options);
  /**
   * podman with its own storage in `dir`, with the flags this kind of host needs
   * (shared/reference/host-notes.md). podman wants a run root of at most 50 characters: `dir`
   * must be short (see podmanDir).
   */
  const podmanIn = (dir: string) => (args: string[], options: RunOptions = {}) =>
    sh('podman', [
      '--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--tmpdir', path.join(dir, 'tmp'),
      '--storage-driver', 'vfs', '--events-backend', 'none', '--cgroup-manager', 'cgroupfs', '--runtime', 'runc',
      ...args,
    ], options);

  /** Builds `localhost/<name>:1` from scratch + static busybox in buildah storage `dir`; removes the working container. */
  const buildImage = async (dir: string, message: string): Promise<string> => {
    const buildah = buildahIn(dir);
    const name = `slipway-auth-${randomBytes(4).toString('hex')}`;
    const container = (await buildah(['from', '--name', name, 'scratch'])).stdout.trim();
    try {
      await buildah(['copy', '--chmod', '0755', container, busybox, '/bin/busybox']);
      await buildah(['config', '--cmd', JSON.stringify(['/bin/busybox', 'echo', message]), '--label', `slipway.test=${name}`, container]);
      await buildah(['commit', '--quiet', container, `localhost/${name}:1`]);
    } finally {
      await buildah(['rm', container], { allowFailure: true });
    }
    return `localhost/${name}:1`;
  };
  /** Removes every container and image from buildah storage `dir` (ours alone). */
  const cleanBuildah = async (dir: string) => {
    const buildah = buildahIn(dir);
    await buildah(['rm', '--all'], { allowFailure: true, timeoutMs: 60_000 }).catch(() => undefined);
    await buildah(['rmi', '--all', '--force'], { allowFailure: true, timeoutMs: 60_000 }).catch(() => undefined);
  };
  const cleanPodman = async (dir: string) => {
    const podman = podmanIn(dir);
    await podman(['rm', '--all', '--force'], { allowFailure: true, timeoutMs: 60_000 }).catch(() => undefined);
    await podman(['rmi', '--all', '--force'], { allowFailure: true, timeoutMs: 60_000 }).catch(() => undefined);
  };

  before(async () => {
    machineAuthBefore = await snapshotMachineAuth();
    work = await tempDir('slipway-auth-clients-');
    await mkdir(path.join(work.path, 'auth'));
    ts = await startTestServer({ config: { auth: { enabled: true, adminPassword } } });
    const admin = basic('admin', adminPassword);
    for (const [name, password] of Object.entries(passwords)) {
      const created = await api('POST', '/api/v1/users', admin, { name, password });
      assert.equal(created.status, 201, created.text);
    }
    // olivia (not an admin) owns "team"; alice contributes; bob reads.
    assert.equal((await api('POST', '/api/v1/namespaces', basic('olivia', passwords.olivia), { name: 'team' })).status, 201);
    for (const [member, role] of [['alice', 'contributor'], ['bob', 'reader']] as const) {
      assert.equal((await api('PUT', `/api/v1/namespaces/team/members/${member}`, basic('olivia', passwords.olivia), { role })).status, 200);
    }
  });

  after(async () => {
    killAllChildren();
    await ts?.close();
    await work?.remove();
  });

  test('buildah: without a login a push is refused; after buildah login a contributor pushes a locally built image', { timeout: 300_000 }, async () => {
    await requireCommands({ buildah: 'buildah' });
    await requireBusybox();
    const dir = path.join(work.path, 'buildah-alice');
    const buildah = buildahIn(dir);
    const message = `pushed by alice ${randomBytes(4).toString('hex')}`;
    try {
      const local = await buildImage(dir, message);
      const remote = `docker://${ts.host}/team/app:1`;
      const file = await authFile('buildah-alice');

      const anonymous = await buildah(['push', '--tls-verify=false', local, remote], { allowFailure: true, env: withAuth(file) });
      assert.notEqual(anonymous.code, 0, 'an anonymous push must fail');
      assert.match(anonymous.stderr, authError);
      assert.equal((await manifestStatus('team/app', '1')).status, 404);

      const wrong = await buildah(['login', '--tls-verify=false', '-u', 'alice', '-p', 'not-alices-password', ts.host], { allowFailure: true, env: withAuth(file) });
      assert.notEqual(wrong.code, 0, 'a wrong password must not log in');
      assert.deepEqual(await storedLogins(file), {}, 'a failed login stores nothing');

      const login = await buildah(['login', '--tls-verify=false', '-u', 'alice', '-p', passwords.alice, ts.host], { env: withAuth(file) });
      assert.match(login.stdout, /Login Succeeded/i);
      assert.equal(Buffer.from((await storedLogins(file))[ts.host]!.auth, 'base64').toString(), `alice:${passwords.alice}`, 'the login went to REGISTRY_AUTH_FILE');

      const digestFile = path.join(work.path, 'alice-push.digest');
      await buildah(['push', '--tls-verify=false', '--digestfile', digestFile, local, remote], { env: withAuth(file) });
      const digest = (await readFile(digestFile, 'utf8')).trim();
      const stored1 = await manifestStatus('team/app', '1');
      assert.equal(stored1.status, 200);
      assert.equal(stored1.digest, digest);
      pushed = { ref: `${ts.host}/team/app:1`, digest, message };

      // A second push of the same image with the Docker manifest format, same login.
      await buildah(['push', '--tls-verify=false', '--format', 'v2s2', local, `docker://${ts.host}/team/app:v2s2`], { env: withAuth(file) });
      assert.equal((await manifestStatus('team/app', 'v2s2')).status, 200);
    } finally {
      await cleanBuildah(dir);
    }
  });

  test('buildah: a reader logs in but their push fails with an auth error', { timeout: 300_000 }, async () => {
    await requireCommands({ buildah: 'buildah' });
    await requireBusybox();
    const dir = path.join(work.path, 'buildah-bob');
    const buildah = buildahIn(dir);
    try {
      const local = await buildImage(dir, 'bob was here');
      const file = await authFile('buildah-bob');
      await buildah(['login', '--tls-verify=false', '-u', 'bob', '-p', passwords.bob, ts.host], { env: withAuth(file) });
      for (const target of ['team/app:bob', 'team/bobs-own:1', 'bob/app:1']) {
        const push = await buildah(['push', '--tls-verify=false', '--retry', '0', local, `docker://${ts.host}/${target}`], { allowFailure: true, env: withAuth(file) });
        assert.notEqual(push.code, 0, `a reader's push to ${target} must fail`);
        assert.match(push.stderr, authError, `${target}: ${push.stderr}`);
        const [name, tag] = target.split(':');
        assert.equal((await manifestStatus(name!, tag!)).status, 404, `${target} was not written`);
      }
    } finally {
      await cleanBuildah(dir);
    }
  });

  test('podman: a reader logs in (docker-style --get-login names them), pulls the pushed image and runs it', { timeout: 300_000 }, async () => {
    await requireCommands({ podman: 'podman', runc: 'runc' });
    assert.ok(pushed, 'needs the image the buildah test pushed');
    const dir = await tempDir('slw-pm-');
    const podman = podmanIn(dir.path);
    const file = await authFile('podman-bob');
    try {
      const anonymous = await podman(['pull', '--tls-verify=false', pushed.ref], { allowFailure: true, env: withAuth(file) });
      assert.notEqual(anonymous.code, 0, 'an anonymous pull of a private repository must fail');
      assert.match(anonymous.stderr, authError);

      await podman(['login', '--tls-verify=false', '-u', 'bob', '-p', passwords.bob, ts.host], { env: withAuth(file) });
      assert.equal((await podman(['login', '--get-login', ts.host], { env: withAuth(file) })).stdout.trim(), 'bob');
      await podman(['pull', '--tls-verify=false', pushed.ref], { env: withAuth(file) });
      assert.equal((await podman(['image', 'inspect', '--format', '{{.Digest}}', pushed.ref])).stdout.trim(), pushed.digest);
      const ran = await podman(['run', '--rm', '--network', 'none', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', pushed.ref]);
      assert.equal(ran.stdout.trim(), pushed.message);

      // The reader's login does not stretch to a push.
      const push = await podman(['push', '--tls-verify=false', pushed.ref, `docker://${ts.host}/team/app:from-podman`], { allowFailure: true, env: withAuth(file) });
      assert.notEqual(push.code, 0);
      assert.match(push.stderr, authError);
      assert.equal((await manifestStatus('team/app', 'from-podman')).status, 404);
    } finally {
      await cleanPodman(dir.path);
      await dir.remove();
    }
  });

  test('skopeo: login, then copy registry to registry and out to an OCI layout; API keys log in as well', { timeout: 300_000 }, async () => {
    await requireCommands({ skopeo: 'skopeo', tar: 'tar' });
    assert.ok(pushed, 'needs the image the buildah test pushed');
    const file = await authFile('skopeo-alice');
    const login = await sh('skopeo', ['login', '--tls-verify=false', '-u', 'alice', '-p', passwords.alice, ts.host], { env: withAuth(file) });
    assert.match(login.stdout, /Login Succeeded/i);
    await sh('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${pushed.ref}`, `docker://${ts.host}/team/copy:1`], { env: withAuth(file) });
    assert.equal((await manifestStatus('team/copy', '1')).digest, pushed.digest);
    const out = path.join(work.path, 'skopeo-out');
    await sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${ts.host}/team/copy:1`, `oci:${out}:1`], { env: withAuth(file) });
    const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.equal(index.manifests[0]!.digest, pushed.digest);
    const inspected = JSON.parse((await sh('skopeo', ['inspect', '--tls-verify=false', `docker://${ts.host}/team/copy:1`], { env: withAuth(file) })).stdout) as { Digest: string };
    assert.equal(inspected.Digest, pushed.digest);
    await sh('skopeo', ['logout', ts.host], { env: withAuth(file) });
    const loggedOut = await sh('skopeo', ['inspect', '--tls-verify=false', `docker://${ts.host}/team/copy:1`], { allowFailure: true, env: withAuth(file) });
    assert.notEqual(loggedOut.code, 0, 'after logout the private repository is closed again');

    // An API key as the password (any user name): a push-scoped key pushes, a pull-only key does not.
    const layout = await writeOciLayout(path.join(work.path, 'keyed-layout'), { tag: 'v1', files: [{ path: 'hello.txt', content: `keyed ${randomBytes(4).toString('hex')}` }] });
    for (const [scopes, allowed] of [[['pull', 'push'], true], [['pull'], false]] as const) {
      const key = await api('POST', '/api/v1/keys', basic('alice', passwords.alice), { name: `skopeo-${scopes.join('-')}`, scopes });
      assert.equal(key.status, 201, key.text);
      const keyFile = await authFile(`skopeo-key-${scopes.join('-')}`);
      await sh('skopeo', ['login', '--tls-verify=false', '-u', 'ci-robot', '-p', key.body.key as string, ts.host], { env: withAuth(keyFile) });
      const tag = `key-${scopes.join('-')}`;
      const copy = await sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout.dir}:v1`, `docker://${ts.host}/team/keyed:${tag}`], { allowFailure: true, env: withAuth(keyFile) });
      if (allowed) {
        assert.equal(copy.code, 0, copy.stderr);
        assert.equal((await manifestStatus('team/keyed', tag)).digest, layout.manifest.digest);
      } else {
        assert.notEqual(copy.code, 0, 'a pull-only key cannot push');
        assert.match(copy.stderr, authError);
        assert.equal((await manifestStatus('team/keyed', tag)).status, 404);
        // …but it pulls.
        await sh('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ts.host}/team/keyed:key-pull-push`], { env: withAuth(keyFile) });
      }
    }
  });

  test('skopeo inspect without a login fails on a private repository and succeeds once the owner makes it public', { timeout: 300_000 }, async () => {
    await requireCommands({ skopeo: 'skopeo' });
    assert.ok(pushed, 'needs the image the buildah test pushed');
    const anonymous = withAuth(await authFile('anonymous'));
    const inspect = () => sh('skopeo', ['inspect', '--tls-verify=false', `docker://${pushed!.ref}`], { allowFailure: true, env: anonymous });

    const closed = await inspect();
    assert.notEqual(closed.code, 0, 'a private repository is closed to anonymous clients');
    assert.match(closed.stderr, authError);

    // Only the namespace's owner may open it.
    assert.equal((await api('PUT', '/api/v1/repositories/team/app/visibility', basic('alice', passwords.alice), { public: true })).status, 403);
    assert.equal((await api('PUT', '/api/v1/repositories/team/app/visibility', basic('olivia', passwords.olivia), { public: true })).status, 200);
    const open = await inspect();
    assert.equal(open.code, 0, open.stderr);
    assert.equal((JSON.parse(open.stdout) as { Digest: string }).Digest, pushed.digest);
    // Public means pull: an anonymous push is still refused.
    const layout = await writeOciLayout(path.join(work.path, 'anonymous-layout'), { tag: 'v1', files: [{ path: 'x.txt', content: 'x' }] });
    const push = await sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout.dir}:v1`, `docker://${ts.host}/team/app:anonymous`], { allowFailure: true, env: anonymous });
    assert.notEqual(push.code, 0);
    assert.match(push.stderr, authError);
    // Other repositories of the namespace stay private.
    const sibling = await sh('skopeo', ['inspect', '--tls-verify=false', `docker://${ts.host}/team/copy:1`], { allowFailure: true, env: anonymous });
    assert.notEqual(sibling.code, 0);

    // And closed again.
    assert.equal((await api('PUT', '/api/v1/repositories/team/app/visibility', basic('olivia', passwords.olivia), { public: false })).status, 200);
    const reclosed = await inspect();
    assert.notEqual(reclosed.code, 0);
    assert.match(reclosed.stderr, authError);
  });

  test('docker-style login: podman login --password-stdin stores a Docker config entry; --get-login names the user; logout forgets it', { timeout: 300_000 }, async () => {
    await requireCommands({ podman: 'podman' });
    const dir = await tempDir('slw-pm-');
    const podman = podmanIn(dir.path);
    const file = await authFile('podman-docker-style');
    try {
      const notYet = await podman(['login', '--get-login', ts.host], { allowFailure: true, env: withAuth(file) });
      assert.notEqual(notYet.code, 0, '--get-login fails before any login');
      assert.match(notYet.stderr, /not logged in/i);

      const wrong = await podman(['login', '--tls-verify=false', '--username', 'alice', '--password-stdin', ts.host], { allowFailure: true, input: 'wrong-password-for-alice\n', env: withAuth(file) });
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stderr, /unauthorized|invalid username|authentication required|401/i);
      assert.deepEqual(await storedLogins(file), {}, 'a failed login stores nothing');

      const login = await podman(['login', '--tls-verify=false', '--username', 'alice', '--password-stdin', ts.host], { input: `${passwords.alice}\n`, env: withAuth(file) });
      assert.match(login.stdout, /Login Succeeded/i);
      const config = await storedLogins(file);
      assert.deepEqual(Object.keys(config), [ts.host]);
      assert.equal(Buffer.from(config[ts.host]!.auth, 'base64').toString(), `alice:${passwords.alice}`, 'a Docker config entry: base64 of user:password');
      assert.equal((await podman(['login', '--get-login', ts.host], { env: withAuth(file) })).stdout.trim(), 'alice');

      // Logging in again as someone else replaces the entry.
      await podman(['login', '--tls-verify=false', '--username', 'bob', '--password-stdin', ts.host], { input: `${passwords.bob}\n`, env: withAuth(file) });
      assert.equal((await podman(['login', '--get-login', ts.host], { env: withAuth(file) })).stdout.trim(), 'bob');

      await podman(['logout', ts.host], { env: withAuth(file) });
      const gone = await podman(['login', '--get-login', ts.host], { allowFailure: true, env: withAuth(file) });
      assert.notEqual(gone.code, 0, '--get-login fails after logout');
      assert.equal((await storedLogins(file))[ts.host], undefined);
    } finally {
      await cleanPodman(dir.path);
      await dir.remove();
    }
  });

  test('the machine\'s own registry auth files were not touched', { timeout: 30_000 }, async () => {
    assert.deepEqual(await snapshotMachineAuth(), machineAuthBefore);
  });
});
