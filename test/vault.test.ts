/**
 * The vault on both dialects: envelopes round-trip, are bound to their record, never leave
 * plaintext in the db, and keep opening through master and data key rotations. Master keys:
 * parsing never echoes key material; the data folder's key file is created once, 0600.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { openDatabase, type Database } from '../src/db/db.js';
import { loadMasterKeys, mask, parseMasterKey, Vault, VaultError, type MasterKey } from '../src/vault/vault.js';
import { dialects, tempDir, type DialectUnderTest } from './helpers/harness.js';

const envelopePattern = /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]*$/;

function newMasterKey(): MasterKey {
  return parseMasterKey(randomBytes(32).toString('base64'));
}

interface Fixture {
  db: Database;
  dataDir: string;
  /** Another handle on the same database, as a second process would have; closed by the fixture. */
  openHandle(): Promise<Database>;
}

/** A fresh database (and data folder) per test; every handle, the database and the folder are removed after. */
async function withDatabase(dialect: DialectUnderTest, fn: (fixture: Fixture) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  const database = await dialect.create();
  const handles: Database[] = [];
  const openHandle = async () => {
    const handle = await openDatabase({ url: database.url, dataDir: dir.path });
    handles.push(handle);
    return handle;
  };
  try {
    await fn({ db: await openHandle(), dataDir: dir.path, openHandle });
  } finally {
    for (const handle of handles) await handle.close().catch(() => undefined);
    await database.drop();
    await dir.remove();
  }
}

/** Asserts a VaultError with `code` whose message leaks none of `secrets`. */
async function rejectsVault(promise: Promise<unknown>, code: string, secrets: string[] = [], message?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof VaultError, `expected a VaultError, got ${String(error)}`);
    assert.equal(error.code, code);
    for (const secret of secrets) if (secret !== '') assert.ok(!error.message.includes(secret), 'error message leaks a secret');
    if (message) assert.match(error.message, message);
    return true;
  });
}

/** Flips one bit of the decoded bytes of envelope part `index` (2 = iv, 3 = tag, 4 = ciphertext). */
function flipByte(envelope: string, index: number): string {
  const parts = envelope.split('.');
  const bytes = Buffer.from(parts[index]!, 'base64url');
  bytes[bytes.length - 1]! ^= 0x01;
  parts[index] = bytes.toString('base64url');
  return parts.join('.');
}

for (const dialect of dialects) {
  describe(`vault (${dialect.name})`, () => {
    test('seal and open round-trip, unicode and empty included', { timeout: 60_000 }, async () => {
      await withDatabase(dialect, async ({ db }) => {
        const master = newMasterKey();
        const vault = await Vault.open(db, { current: master });
        const secrets = ['hunter2', '', 'pässwörd 🔑 日本語 — ñ', 'x'.repeat(100_000), '{"type":"service_account","private_key":"-----BEGIN…"}'];
        for (const [i, secret] of secrets.entries()) {
          const envelope = await vault.seal(secret, `external-registry:r${i}`);
          assert.match(envelope, envelopePattern);
          assert.equal(await vault.open(envelope, `external-registry:r${i}`), secret);
        }
        // A random IV per seal: the same secret never gives the same envelope.
        const a = await vault.seal('same', 'ctx');
        const b = await vault.seal('same', 'ctx');
        assert.notEqual(a, b);
        assert.equal(await vault.open(b, 'ctx'), 'same');
        // Another vault on the same db (no shared cache) opens them too.
        const again = await Vault.open(db, { current: master });
        assert.equal(await again.open(a, 'ctx'), 'same');
        const rows = await db.kysely.selectFrom('vault_data_keys').selectAll().execute();
        assert.equal(rows.length, 1, 'opening twice creates one data key');
        assert.equal(rows[0]!.active, 1);
      });
    });

    test('a fresh database gets exactly one active data key even when many vaults open at once', { timeout: 60_000 }, async () => {
      await withDatabase(dialect, async ({ db, openHandle }) => {
        const key = newMasterKey();
        const handles = [db, await openHandle(), await openHandle()];
        const vaults = await Promise.all(handles.flatMap((h) => [Vault.open(h, { current: key }), Vault.open(h, { current: key })]));
        const rows = await db.kysely.selectFrom('vault_data_keys').selectAll().execute();
        assert.equal(rows.length, 1);
        const envelope = await vaults[0]!.seal('shared', 'ctx');
        for (const vault of vaults) assert.equal(await vault.open(envelope, 'ctx'), 'shared');
      });
    });

    test('no plaintext (nor master key) reaches the database', { timeout: 60_000 }, async () => {
      await withDatabase(dialect, async ({ db, dataDir }) => {
        const master = newMasterKey();
        const vault = await Vault.open(db, { current: master });
        const secret = `pl41ntext-${randomBytes(12).toString('hex')}-ünïcode`;
        const envelope = await vault.seal(secret, 'external-registry:reg-1');
        await db.kysely.insertInto('external_registries').values({
          id: 'reg-1', namespace: 'team', prefix: 'registry.example.com/team', type: 'basic', username: 'robot',
          region: null, secret: envelope, created_at: Date.now(), updated_at: Date.now(),
        }).execute();
        await vault.rotateDataKey();
        await vault.rotateMasterKey(newMasterKey());
        const forbidden = [secret, master.key.toString('base64'), master.key.toString('hex'), master.key.toString('base64url')];
        if (dialect.name === 'sqlite') {
          await db.close();
          const files = (await readdir(dataDir)).filter((name) => name.startsWith('slipway.db'));
          assert.ok(files.includes('slipway.db'));
          const bytes = Buffer.concat(await Promise.all(files.map((name) => readFile(path.join(dataDir, name)))));
          assert.ok(bytes.includes(Buffer.from(envelope)), 'control: the stored envelope is found in the file bytes');
          for (const text of forbidden) assert.ok(!bytes.includes(Buffer.from(text)), 'the db file holds a secret');
          assert.ok(!bytes.includes(master.key), 'the db file holds raw master key bytes');
        } else {
          const registries = await db.kysely.selectFrom('external_registries').selectAll().execute();
          const keys = await db.kysely.selectFrom('vault_data_keys').selectAll().execute();
          const dump = JSON.stringify([registries, keys]);
          assert.ok(dump.includes(envelope), 'control: the stored envelope is in the rows');
          for (const text of forbidden) assert.ok(!dump.includes(text), 'a row holds a secret');
        }
      });
    });

    test('tampered, malformed or unknown-key envelopes fail with a VaultError that leaks nothing', { timeout: 60_000 }, async () => {
      await withDatabase(dialect, async ({ db }) => {
        const master = newMasterKey();
        const vault = await Vault.open(db, { current: master });
        const secret = 'correct horse battery staple';
        const envelope = await vault.seal(secret, 'external-registry:a');
        const leaks = [secret, master.key.toString('base64'), master.key.toString('hex')];
        for (const part of [2, 3, 4]) {
          await rejectsVault(vault.open(flipByte(envelope, part), 'external-registry:a'), 'ENVELOPE_UNAUTHENTIC', leaks);
        }
        const parts = envelope.split('.');
        // Truncated ciphertext, extra or missing parts, another version, non-canonical base64.
        await rejectsVault(vault.open([...parts.slice(0, 4), parts[4]!.slice(0, -2)].join('.'), 'external-registry:a'), 'ENVELOPE_UNAUTHENTIC', leaks);
        await rejectsVault(vault.open(parts.slice(0, 4).join('.'), 'external-registry:a'), 'ENVELOPE_INVALID', leaks);
        await rejectsVault(vault.open(`${envelope}.x`, 'external-registry:a'), 'ENVELOPE_INVALID', leaks);
        await rejectsVault(vault.open(['v2', ...parts.slice(1)].join('.'), 'external-registry:a'), 'ENVELOPE_INVALID', leaks);
        await rejectsVault(vault.open([...parts.slice(0, 3), `${parts[3]}!`, parts[4]].join('.'), 'external-registry:a'), 'ENVELOPE_INVALID', leaks);
        await rejectsVault(vault.open('', 'external-registry:a'), 'ENVELOPE_INVALID', leaks);
        // A data key id the db does not have, and one that exists but did not seal it.
        await rejectsVault(vault.open([parts[0], 'dk-0000000000000000', ...parts.slice(2)].join('.'), 'external-registry:a'), 'DATA_KEY_UNKNOWN', leaks);
        const otherKey = await vault.rotateDataKey();
        await rejectsVault(vault.open([parts[0], otherKey, ...parts.slice(2)].join('.'), 'external-registry:a'), 'ENVELOPE_UNAUTHENTIC', leaks);
        // The genuine envelope still opens.
        assert.equal(await vault.open(envelope, 'external-registry:a'), secret);
      });
    });

    test('an envelope moved to another record does not open', { timeout: 60_000 }, async () => {
      await withDatabase(dialect, async ({ db }) => {
        const vault = await Vault.open(db, { current: newMasterKey() });
        const envelope = await vault.seal('s3cr3t-value', 'external-registry:a');
        await rejectsVault(vault.open(envelope, 'external-registry:b'), 'ENVELOPE_UNAUTHENTIC', ['s3cr3t-value']);
        await rejectsVault(vault.open(envelope, 'external-registry:a '), 'ENVELOPE_UNAUTHENTIC', ['s3cr3t-value']);
        await rejectsVault(vault.open(envelope, ''), 'CONTEXT_REQUIRED');
        await rejectsVault(vault.seal('x', ''), 'CONTEXT_REQUIRED');
        assert.equal(await vault.open(envelope, 'external-registry:a'), 's3cr3t-value');
      });
    });

    test('master key rotation re-wraps data keys; only the new key opens afterwards', { timeout: 60_000 }, async () => {
      await withDatabase(dialect, async ({ db, openHandle }) => {
        const oldKey = newMasterKey();
        const newKey = newMasterKey();
        const vault = await Vault.open(db, { current: oldKey });
        const first = await vault.seal('before data key rotation', 'ctx:1');
        await vault.rotateDataKey();
        const second = await vault.seal('after data key rotation', 'ctx:2');
        assert.equal(await vault.rotateMasterKey(newKey), 2);
        assert.equal(vault.masterKeyId, newKey.id);
        // The rotating vault keeps working, envelopes are unchanged.
        assert.equal(await vault.open(first, 'ctx:1'), 'before data key rotation');
        const third = await vault.seal('after master key rotation', 'ctx:3');
        const rows = await db.kysely.selectFrom('vault_data_keys').selectAll().execute();
        assert.deepEqual(rows.map((r) => r.master_key_id), [newKey.id, newKey.id]);
        assert.equal(rows.filter((r) => r.active === 1).length, 1);
        // Rotating again to the same key has nothing left to do.
        assert.equal(await vault.rotateMasterKey(newKey), 0);

        const other = await openHandle();
        const withNew = await Vault.open(other, { current: newKey });
        assert.equal(await withNew.open(first, 'ctx:1'), 'before data key rotation');
        assert.equal(await withNew.open(second, 'ctx:2'), 'after data key rotation');
        assert.equal(await withNew.open(third, 'ctx:3'), 'after master key rotation');

        // The old key alone: the vault still opens (no failure at start), envelopes do not.
        const withOld = await Vault.open(other, { current: oldKey });
        const leaks = [oldKey.key.toString('base64'), newKey.key.toString('base64'), 'before data key rotation'];
        await rejectsVault(withOld.open(first, 'ctx:1'), 'MASTER_KEY_MISMATCH', leaks, new RegExp(`master key ${oldKey.id} does not match.*${newKey.id}.*set the previous key`));
        await rejectsVault(withOld.seal('new secret', 'ctx:4'), 'MASTER_KEY_MISMATCH', leaks);
        // ...and with the new one given as previous, everything opens again.
        const withBoth = await Vault.open(other, { current: oldKey, previous: [newKey] });
        assert.equal(await withBoth.open(second, 'ctx:2'), 'after data key rotation');
      });
    });

    test('a data key under a master key this process lacks fails only where it is used', { timeout: 60_000 }, async () => {
      await withDatabase(dialect, async ({ db, openHandle }) => {
        const a = newMasterKey();
        const x = newMasterKey();
        const vaultA = await Vault.open(db, { current: a });
        const underA = await vaultA.seal('wrapped by a', 'ctx');
        // Another process, with key x current, adds a data key wrapped by x.
        const vaultX = await Vault.open(await openHandle(), { current: x, previous: [a] });
        await vaultX.rotateDataKey();
        const underX = await vaultX.seal('wrapped by x', 'ctx');
        assert.equal(await vaultX.open(underA, 'ctx'), 'wrapped by a');

        const restarted = await Vault.open(await openHandle(), { current: a });
        assert.equal(await restarted.open(underA, 'ctx'), 'wrapped by a');
        await rejectsVault(restarted.open(underX, 'ctx'), 'MASTER_KEY_MISMATCH', ['wrapped by x'], /does not match.*set the previous key/);
        // Its active data key is the one wrapped by x, so sealing fails just as clearly.
        await rejectsVault(restarted.seal('new', 'ctx'), 'MASTER_KEY_MISMATCH');
        // A rotation cannot leave a key behind: it fails whole, changing nothing.
        await rejectsVault(restarted.rotateMasterKey(newMasterKey()), 'MASTER_KEY_MISMATCH');
        const rows = await db.kysely.selectFrom('vault_data_keys').select('master_key_id').orderBy('created_at').execute();
        assert.deepEqual(rows.map((r) => r.master_key_id).sort(), [a.id, x.id].sort());
        assert.equal(restarted.masterKeyId, a.id);
      });
    });

    test('right after the rotation commits, a data key first used then already unwraps', { timeout: 60_000 }, async () => {
      await withDatabase(dialect, async ({ db, openHandle }) => {
        const oldKey = newMasterKey();
        const newKey = newMasterKey();
        const envelope = await (await Vault.open(db, { current: oldKey })).seal('opened in the commit window', 'ctx');
        // A wrapper that acts in the gap between the commit and rotateMasterKey's return, when
        // the row is already wrapped by the new key (other replicas and readers see it so).
        const base = await openHandle();
        let afterCommit: (() => Promise<void>) | undefined;
        const hooked: Database = {
          dialect: base.dialect,
          kysely: base.kysely,
          close: () => base.close(),
          lockKey: (trx, key) => base.lockKey(trx, key),
          notifications: base.notifications,
          write: async (fn) => {
            const result = await base.write(fn);
            const hook = afterCommit;
            afterCommit = undefined;
            await hook?.();
            return result;
          },
        };
        const rotating = await Vault.open(hooked, { current: oldKey }); // its cache is empty
        let inWindow: string | undefined;
        afterCommit = async () => { inWindow = await rotating.open(envelope, 'ctx'); };
        assert.equal(await rotating.rotateMasterKey(newKey), 1);
        assert.equal(inWindow, 'opened in the commit window');
      });
    });

    test('seals and opens during a master key rotation all open afterwards with the new key only', { timeout: 60_000 }, async () => {
      await withDatabase(dialect, async ({ db, openHandle }) => {
        const oldKey = newMasterKey();
        const newKey = newMasterKey();
        const early = await Vault.open(db, { current: oldKey });
        const before = await Promise.all(Array.from({ length: 10 }, (_, i) => early.seal(`before-${i}`, `ctx:before-${i}`)));
        // A second process whose cache is empty: its first use of the data key races the rotation.
        const rotating = await Vault.open(await openHandle(), { current: oldKey });
        const sealed: Array<Promise<[string, string, string]>> = [];
        const seal = (vault: Vault, secret: string) => {
          sealed.push(vault.seal(secret, `ctx:${secret}`).then((envelope) => [envelope, secret, `ctx:${secret}`]));
        };
        const opened: Promise<string>[] = [];
        for (let i = 0; i < 20; i++) {
          seal(rotating, `during-rotating-${i}`);
          seal(early, `during-early-${i}`);
          opened.push(rotating.open(before[i % before.length]!, `ctx:before-${i % before.length}`));
        }
        const rotation = rotating.rotateMasterKey(newKey);
        const dataKeyRotation = rotating.rotateDataKey();
        for (let i = 0; i < 20; i++) {
          seal(rotating, `during-rotation-${i}`);
          opened.push(rotating.open(before[i % before.length]!, `ctx:before-${i % before.length}`));
          opened.push(early.open(before[i % before.length]!, `ctx:before-${i % before.length}`));
        }
        assert.ok((await rotation) >= 1);
        await dataKeyRotation;
        for (let i = 0; i < 10; i++) seal(rotating, `after-${i}`);
        const all = await Promise.all(sealed);
        const openedValues = await Promise.all(opened);
        for (const [i, value] of openedValues.entries()) assert.match(value, /^before-\d$/, `open ${i} during rotation`);

        const rows = await db.kysely.selectFrom('vault_data_keys').selectAll().execute();
        assert.ok(rows.every((r) => r.master_key_id === newKey.id), 'every data key is wrapped by the new master key');
        const fresh = await Vault.open(await openHandle(), { current: newKey });
        for (const [i, envelope] of before.entries()) assert.equal(await fresh.open(envelope, `ctx:before-${i}`), `before-${i}`);
        for (const [envelope, secret, context] of all) assert.equal(await fresh.open(envelope, context), secret);
      });
    });
  });
}

describe('mask', () => {
  test('shows at most the last 2 characters, and only of long secrets', () => {
    assert.equal(mask(''), '****');
    assert.equal(mask('short'), '****');
    assert.equal(mask('elevenchars'), '****');
    assert.equal(mask('twelve-chars'), '****rs');
    assert.equal(mask('a-long-secret-ending-in-🔑!'), '****🔑!');
  });
});

describe('parseMasterKey', () => {
  test('accepts base64, base64url and hex of 32 bytes, trimmed', () => {
    const bytes = randomBytes(32);
    const key = parseMasterKey(bytes.toString('base64'));
    assert.match(key.id, /^mk-[0-9a-f]{16}$/);
    assert.deepEqual(key.key, bytes);
    for (const text of [`  ${bytes.toString('base64')}\n`, bytes.toString('base64url'), bytes.toString('base64').replace(/=+$/, ''), bytes.toString('hex'), bytes.toString('hex').toUpperCase()]) {
      const parsed = parseMasterKey(text);
      assert.equal(parsed.id, key.id);
      assert.deepEqual(parsed.key, bytes);
    }
    assert.notEqual(parseMasterKey(randomBytes(32).toString('hex')).id, key.id);
  });

  test('rejects wrong lengths and other encodings without echoing the input', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /empty/],
      ['   \n', /empty/],
      [randomBytes(16).toString('base64'), /16 bytes.*must be 32/],
      [randomBytes(48).toString('base64'), /48 bytes.*must be 32/],
      [randomBytes(31).toString('hex'), /62 hex digits; it must be 64/],
      [randomBytes(33).toString('hex'), /66 hex digits; it must be 64/],
      [`${randomBytes(30).toString('base64')}!?`, /neither base64 nor hex/],
      [`${randomBytes(16).toString('hex')} ${randomBytes(16).toString('hex')}`, /neither base64 nor hex/],
      [`${randomBytes(32).toString('base64').slice(0, 42)}=x`, /neither base64 nor hex/],
      [`${randomBytes(32).toString('base64').slice(0, 42)}`, /not valid base64|must be 32/],
    ];
    for (const [input, expected] of cases) {
      assert.throws(() => parseMasterKey(input), (error: Error) => {
        assert.match(error.message, expected);
        const trimmed = input.trim();
        if (trimmed !== '') {
          assert.ok(!error.message.includes(trimmed), 'the message echoes the key');
          assert.ok(!error.message.includes(trimmed.slice(0, 8)), 'the message echoes part of the key');
        }
        return true;
      });
    }
  });
});

describe('loadMasterKeys', () => {
  test('creates <dataDir>/master.key once, mode 0600, and reuses it', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    try {
      const dataDir = path.join(dir.path, 'data');
      const first = await loadMasterKeys({ dataDir });
      const file = path.join(dataDir, 'master.key');
      assert.equal(first.generatedFile, file);
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.equal(parseMasterKey(await readFile(file, 'utf8')).id, first.current.id);
      assert.deepEqual(first.previous, []);
      const second = await loadMasterKeys({ dataDir });
      assert.equal(second.current.id, first.current.id);
      assert.equal(second.generatedFile, undefined);
      assert.deepEqual(await readdir(dataDir), ['master.key'], 'no temp file is left behind');
    } finally {
      await dir.remove();
    }
  });

  test('processes starting at once on an empty folder agree on one key', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    try {
      const results = await Promise.all(Array.from({ length: 8 }, () => loadMasterKeys({ dataDir: dir.path })));
      assert.equal(new Set(results.map((r) => r.current.id)).size, 1);
      assert.equal(results.filter((r) => r.generatedFile).length, 1);
      assert.deepEqual(await readdir(dir.path), ['master.key']);
    } finally {
      await dir.remove();
    }
  });

  test('env beats file, a file beats the data folder, previous keys are parsed', { timeout: 60_000 }, async () => {
    const dir = await tempDir();
    try {
      const envKey = randomBytes(32);
      const fileKey = randomBytes(32);
      const previousKey = randomBytes(32);
      const file = path.join(dir.path, 'mounted.key');
      await writeFile(file, `${fileKey.toString('hex')}\n`);
      const fromEnv = await loadMasterKeys({ env: envKey.toString('base64'), file, dataDir: dir.path, previous: [previousKey.toString('base64'), envKey.toString('hex')] });
      assert.deepEqual(fromEnv.current.key, envKey);
      assert.deepEqual(fromEnv.previous.map((k) => k.key), [previousKey], 'previous keys are deduplicated against the current one');
      assert.equal(fromEnv.generatedFile, undefined);
      const fromFile = await loadMasterKeys({ env: '  ', file, dataDir: dir.path });
      assert.deepEqual(fromFile.current.key, fileKey);
      assert.deepEqual((await readdir(dir.path)).sort(), ['mounted.key'], 'no master.key is created when a key is given');

      await assert.rejects(loadMasterKeys({ file: path.join(dir.path, 'missing.key'), dataDir: dir.path }), /missing\.key does not exist/);
      const bad = randomBytes(16).toString('base64');
      await assert.rejects(loadMasterKeys({ env: bad, dataDir: dir.path }), (error: Error) => /SLIPWAY_MASTER_KEY/.test(error.message) && !error.message.includes(bad));
      await assert.rejects(loadMasterKeys({ env: envKey.toString('base64'), previous: [bad], dataDir: dir.path }), (error: Error) => /previous master key #1/.test(error.message) && !error.message.includes(bad));
      await writeFile(file, 'not a key at all!');
      await assert.rejects(loadMasterKeys({ file, dataDir: dir.path }), (error: Error) => error.message.includes(file) && !error.message.includes('not a key at all'));
    } finally {
      await dir.remove();
    }
  });
});
