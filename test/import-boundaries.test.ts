/**
 * The import-boundary lint (.dependency-cruiser.cjs) catches what it is there for: a
 * cross-part import outside the matrix and an import cycle, on a small throw-away tree, and
 * passes on the real compiled src. Guards against a lint that silently passes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const depcruise = path.join(repo, 'node_modules', '.bin', 'depcruise');
const config = path.join(repo, '.dependency-cruiser.cjs');

async function cruise(cwd: string, target: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout } = await run(depcruise, [target, '--config', config, '--output-type', 'err'], { cwd, timeout: 60_000 });
    return { code: 0, out: stdout };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, out: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

test('the lint fails on a cross-part import, a deep import and a cycle', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-lint-'));
  try {
    const file = async (name: string, text: string) => {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), text);
    };
    await file('package.json', '{"type":"module"}');
    // builds may not import pipelines (pipelines sits above builds).
    await file('src/builds/service.js', "import { run } from '../pipelines/runner.js';\nexport const build = run;\n");
    await file('src/pipelines/runner.js', 'export const run = 1;\n');
    // pipelines must use builds through src/builds/index.ts, not its files.
    await file('src/builds/build-spec.js', 'export const spec = 1;\n');
    await file('src/pipelines/stage-build.js', "import { spec } from '../builds/build-spec.js';\nexport const stage = spec;\n");
    // A cycle inside one part.
    await file('src/db/job-queue.js', "import { worker } from './job-worker.js';\nexport const queue = worker;\n");
    await file('src/db/job-worker.js', "import { queue } from './job-queue.js';\nexport const worker = () => queue;\n");
    const result = await cruise(dir, 'src');
    assert.notEqual(result.code, 0, result.out);
    assert.match(result.out, /part-builds/);
    assert.match(result.out, /no-circular/);
    assert.match(result.out, /builds-through-its-entry/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the lint fails when a part\'s api.ts reaches a node builtin or a server module', { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'slipway-lint-'));
  try {
    const file = async (name: string, text: string) => {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), text);
    };
    await file('package.json', '{"type":"module"}');
    // Through a schema module that reads a file (the dashboard bundles api.ts).
    await file('src/vault/api.js', "import { limits } from './limits.js';\nexport const vaultOperations = limits;\n");
    await file('src/vault/limits.js', "import { readFileSync } from 'node:fs';\nexport const limits = readFileSync;\n");
    // A schema taken from the part's service.
    await file('src/events/api.js', "import { schema } from './service.js';\nexport const eventOperations = schema;\n");
    await file('src/events/service.js', 'export const schema = 1;\n');
    const result = await cruise(dir, 'src');
    assert.notEqual(result.code, 0, result.out);
    assert.match(result.out, /api-browser-safe: src\/vault\/api\.js → (node:)?fs/);
    assert.match(result.out, /api-browser-safe: src\/events\/api\.js → src\/events\/service\.js/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the compiled src passes the lint', { timeout: 120_000 }, async () => {
  const result = await cruise(repo, 'dist/src');
  assert.equal(result.code, 0, result.out);
});
