/**
 * Configuration: sources in order file → env → flags, strict keys, clear messages naming the key.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig, parseDuration, parseListen, pickDriver } from '../src/config/config.js';
import { buildDrivers } from '../src/builds/drivers.js';
import { runtimes } from '../src/functions/runtimes.js';
import { storageDrivers } from '../src/storage/drivers.js';
import { tempDir } from './helpers/harness.js';

describe('config', () => {
  let dir: { path: string; remove(): Promise<void> };
  before(async () => { dir = await tempDir(); });
  after(async () => dir.remove());

  test('defaults are the embedded ones', () => {
    const config = loadConfig();
    assert.equal(config.listen, '127.0.0.1:5000');
    assert.equal(config.database, 'sqlite');
    assert.equal(path.isAbsolute(config.dataDir), true);
    assert.equal(config.registry.deleteEnabled, true);
    assert.equal(config.registry.maxManifestBytes, 4 * 1024 * 1024);
    assert.equal(config.registry.gc.gracePeriod, 3_600_000);
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.registry.gc));
  });

  test('file, then env, then flags: later sources win', async () => {
    const file = path.join(dir.path, 'slipway.yaml');
    await writeFile(file, 'listen: 127.0.0.1:7000\ndataDir: /tmp/from-file\nregistry:\n  gc:\n    gracePeriod: 10m\n');
    const fromFile = loadConfig({ file });
    assert.equal(fromFile.listen, '127.0.0.1:7000');
    assert.equal(fromFile.registry.gc.gracePeriod, 600_000);
    assert.equal(fromFile.registry.gc.interval, 6 * 3_600_000, 'defaults fill the rest of a section');
    const withEnv = loadConfig({ file, env: { SLIPWAY_LISTEN: '127.0.0.1:7001', SLIPWAY_DATA_DIR: '/tmp/from-env' } });
    assert.equal(withEnv.listen, '127.0.0.1:7001');
    assert.equal(withEnv.dataDir, '/tmp/from-env');
    const withFlags = loadConfig({ file, env: { SLIPWAY_LISTEN: '127.0.0.1:7001' }, flags: { listen: '[::1]:7002' } });
    assert.equal(withFlags.listen, '[::1]:7002');
    assert.deepEqual(parseListen(withFlags.listen), { host: '::1', port: 7002 });
  });

  test('an unknown key is refused with its full path', async () => {
    const file = path.join(dir.path, 'unknown.yaml');
    await writeFile(file, 'registry:\n  gc:\n    gracePeriod: 1h\n    everySoOften: 2h\n');
    assert.throws(() => loadConfig({ file }), (error: Error) => error instanceof ConfigError && /unknown key registry\.gc\.everySoOften/.test(error.message));
  });

  test('a bad value is refused naming the key and what is expected', () => {
    assert.throws(() => loadConfig({ flags: { listen: 'nowhere' } }), /listen: HOST:PORT/);
    assert.throws(() => loadConfig({ flags: { registry: { gc: { gracePeriod: 'soon' } } } }), /registry\.gc\.gracePeriod: a duration/);
    assert.throws(() => loadConfig({ flags: { database: 'mysql://x' } }), /database: either "sqlite" or a postgres:\/\/ URL/);
    assert.throws(() => loadConfig({ flags: { registry: { maxManifestBytes: 1000 } } }), /registry\.maxManifestBytes/);
  });

  test('a missing or malformed file is a clear error', async () => {
    assert.throws(() => loadConfig({ file: path.join(dir.path, 'absent.yaml') }), /cannot read config file/);
    const bad = path.join(dir.path, 'bad.yaml');
    await writeFile(bad, 'listen: [unclosed\n');
    assert.throws(() => loadConfig({ file: bad }), /not valid YAML/);
    const list = path.join(dir.path, 'list.yaml');
    await writeFile(list, '- a\n- b\n');
    assert.throws(() => loadConfig({ file: list }), /must hold a mapping/);
  });

  test('drivers: defaults as before; an unknown name is a config error listing the known ones', () => {
    const config = loadConfig();
    assert.equal(config.storage.driver, 'fs');
    assert.equal(config.builds.driver, 'buildah');
    assert.equal(config.functions.runtime, 'runc');
    assert.throws(() => loadConfig({ flags: { storage: { driver: 'gcs' as never } } }), (error: Error) => error instanceof ConfigError && /storage\.driver: unknown driver "gcs" \(known: fs, s3\)/.test(error.message));
    assert.throws(() => loadConfig({ flags: { storage: { driver: 's3' } } }), /storage\.s3\.bucket: required when storage\.driver is s3/);
    const s3 = loadConfig({ env: { SLIPWAY_S3_ACCESS_KEY_ID: 'key', SLIPWAY_S3_SECRET_ACCESS_KEY: 'secret' }, flags: { storage: { driver: 's3', s3: { bucket: 'slipway', forcePathStyle: true } } } }).storage.s3;
    assert.deepEqual({ ...s3 }, { bucket: 'slipway', region: 'us-east-1', forcePathStyle: true, prefix: '', accessKeyId: 'key', secretAccessKey: 'secret', partSize: 8 * 1024 * 1024, redirect: false, redirectExpiry: 5 * 60_000 });
    assert.equal(config.logs.driver, 'fs');
    assert.equal(loadConfig({ flags: { logs: { driver: 'blobstore' } } }).logs.driver, 'blobstore');
    assert.throws(() => loadConfig({ flags: { logs: { driver: 's3' as never } } }), /logs\.driver: unknown logs driver "s3" \(known: fs, blobstore\)/);
    assert.throws(() => loadConfig({ flags: { builds: { driver: 'kubernetes' as never } } }), /builds\.driver: unknown driver "kubernetes" \(known: buildah\)/);
    assert.throws(() => loadConfig({ env: {}, flags: { functions: { runtime: 'kubernetes' as never } } }), /functions\.runtime: unknown driver "kubernetes" \(known: runc\)/);
    // Every name the config accepts has a factory, and a name a map lacks is the same clear error.
    assert.deepEqual(Object.keys(storageDrivers), ['fs', 's3']);
    assert.deepEqual(Object.keys(buildDrivers), ['buildah']);
    assert.deepEqual(Object.keys(runtimes), ['runc']);
    assert.equal(pickDriver(storageDrivers, 'storage.driver', 'fs'), storageDrivers.fs);
    assert.throws(() => pickDriver(storageDrivers, 'storage.driver', 'toString'), (error: Error) => error instanceof ConfigError && /storage\.driver: unknown driver "toString" \(known: fs, s3\)/.test(error.message));
  });

  test('durations accept units and bare seconds', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('2d'), 172_800_000);
    assert.equal(parseDuration(5), 5000);
    assert.throws(() => parseDuration('5 minutes'));
  });
});
