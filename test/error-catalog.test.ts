/**
 * The one error model: `docs/errors.md` and the catalog list the same codes with the same
 * statuses and surfaces; each surface answers its own shape through a real server; a 5xx names
 * the request id and nothing of the fault; unique violations are recognised by the driver's
 * code on both dialects; no source derives a status from message text.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { sql } from 'kysely';
import { openDatabase } from '../src/db/db.js';
import { isUniqueViolation } from '../src/db/errors.js';
import { errorCatalog } from '../src/http/error-catalog.js';
import { dialects, startTestServer, tempDir } from './helpers/harness.js';

const root = path.resolve(import.meta.dirname, '..', '..');

/** The rows of every table in docs/errors.md: code → status and surfaces. */
async function documentedCodes(): Promise<Map<string, { status: number; surfaces: string[] }>> {
  const text = await readFile(path.join(root, 'docs', 'errors.md'), 'utf8');
  const rows = new Map<string, { status: number; surfaces: string[] }>();
  for (const line of text.split('\n')) {
    const match = /^\|\s*`([A-Z_]+)`\s*\|\s*(\d{3})\s*\|\s*([^|]+?)\s*\|/.exec(line);
    if (!match) continue;
    assert.ok(!rows.has(match[1]!), `docs/errors.md lists ${match[1]} twice`);
    rows.set(match[1]!, { status: Number(match[2]), surfaces: match[3]!.split(',').map((s) => s.trim()) });
  }
  return rows;
}

describe('error catalog', () => {
  test('docs/errors.md and the catalog list the same codes, statuses and surfaces', async () => {
    const documented = await documentedCodes();
    for (const [code, entry] of Object.entries(errorCatalog)) {
      const row = documented.get(code);
      assert.ok(row, `${code} is in the catalog but not in docs/errors.md`);
      assert.equal(row.status, entry.status, `${code}: status`);
      assert.deepEqual(row.surfaces, [...entry.surfaces], `${code}: surfaces`);
    }
    for (const code of documented.keys()) assert.ok(code in errorCatalog, `${code} is in docs/errors.md but not in the catalog`);
  });

  test('no source derives a status or code from message text', async () => {
    const offenders: string[] = [];
    const scan = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) await scan(file);
        else if (entry.name.endsWith('.ts')) {
          const lines = (await readFile(file, 'utf8')).split('\n');
          lines.forEach((raw, i) => {
            const line = raw.replace(/typeof [\w?.]+\.message/g, '');
            // A regex tested on an error's message, or a message compared to a literal.
            if (/\.(test|match)\(\s*\(?\s*\w+(\s+as\s+[\w.]+)?\)?\.message\b/.test(line) || /\.message\s*===\s*['"`]/.test(line)) {
              offenders.push(`${path.relative(root, file)}:${i + 1}: ${raw.trim()}`);
            }
          });
        }
      }
    };
    await scan(path.join(root, 'src'));
    assert.deepEqual(offenders, []);
  });

  for (const dialect of dialects) {
    test(`a unique violation is recognised by its driver code (${dialect.name})`, async () => {
      const dir = await tempDir();
      const database = await dialect.create();
      const db = await openDatabase({ url: database.url, dataDir: dir.path });
      try {
        await sql`CREATE TABLE unique_probe (name VARCHAR(20) PRIMARY KEY, other VARCHAR(20) UNIQUE)`.execute(db.kysely);
        await sql`INSERT INTO unique_probe (name, other) VALUES ('a', 'x')`.execute(db.kysely);
        const duplicate = await sql`INSERT INTO unique_probe (name, other) VALUES ('b', 'x')`.execute(db.kysely).catch((error: unknown) => error);
        assert.ok(isUniqueViolation(duplicate), `not recognised: ${String(duplicate)}`);
        const missingTable = await sql`INSERT INTO no_such_table (name) VALUES ('a')`.execute(db.kysely).catch((error: unknown) => error);
        assert.ok(missingTable instanceof Error);
        assert.equal(isUniqueViolation(missingTable), false);
      } finally {
        await db.close();
        await database.drop();
        await dir.remove();
      }
    });
  }

  test('each surface answers its own shape through a real server', { timeout: 60_000 }, async () => {
    const server = await startTestServer();
    try {
      const call = async (method: string, url: string, body?: string) => {
        const response = await fetch(`${server.url}${url}`, { method, body, headers: body ? { 'content-type': 'application/json' } : {} });
        return { status: response.status, body: (await response.json()) as Record<string, unknown> };
      };

      // API: a domain error (not found) and a validation failure.
      const missing = await call('GET', '/api/v1/namespaces/team/artefact-versions/nope');
      assert.equal(missing.status, 404);
      assert.equal(missing.body.code, 'NOT_FOUND');
      assert.equal(typeof missing.body.message, 'string');
      const broken = await call('POST', '/api/v1/namespaces/team/artefact-versions', '{not json');
      assert.equal(broken.status, 400);
      assert.equal(broken.body.code, 'BAD_REQUEST');
      assert.ok(broken.body.detail, 'a validation failure names its detail');

      // Artifact storage: the same code, plus the seed's fields.
      const build = await call('GET', '/api/v1/namespaces/team/builds/bld_nope');
      assert.equal(build.status, 404);
      assert.equal(build.body.code, 'NOT_FOUND');
      assert.equal(build.body.status, 'error');
      assert.equal(build.body.errorMessage, build.body.message);

      // Registry: the OCI envelope.
      const manifest = await call('GET', '/v2/team/app/manifests/latest');
      assert.equal(manifest.status, 404);
      const errors = manifest.body.errors as Array<{ code: string; message: string }>;
      assert.ok(['MANIFEST_UNKNOWN', 'NAME_UNKNOWN'].includes(errors[0]!.code), JSON.stringify(manifest.body));

      // A real fault (the table is gone): 500 INTERNAL with the request id, nothing of the fault.
      const db = await openDatabase({ url: 'sqlite', dataDir: server.dataDir, migrate: false });
      try {
        await sql`ALTER TABLE artefact_versions RENAME TO artefact_versions_gone`.execute(db.kysely);
      } finally {
        await db.close();
      }
      const fault = await call('GET', '/api/v1/namespaces/team/artefact-versions');
      assert.equal(fault.status, 500);
      assert.equal(fault.body.code, 'INTERNAL');
      assert.equal(fault.body.message, 'internal error');
      const detail = fault.body.detail as { requestId?: unknown };
      assert.equal(typeof detail.requestId, 'string');
      assert.ok((detail.requestId as string).length > 0);
      assert.doesNotMatch(JSON.stringify(fault.body), /artefact_versions|no such table/);
    } finally {
      await server.close();
    }
  });
});
