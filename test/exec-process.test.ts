/**
 * The exec part with real processes (`sh -c`): the line splitter; runProcess hands a result back
 * only once everything a program printed has reached `onLine` — also for 50 failing programs in
 * a row on a loaded machine, with the build tools' options and with the pipeline steps' ones;
 * what a program left in its group is killed; a pipe held by a process that escaped every kill
 * is cut off after `drainTimeoutMs`; output FIFOs (exec/output-fifo) are read to their end.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { openOutputFifos } from '../src/exec/output-fifo.js';
import { lineSplitter, runProcess, type RunProcessOptions } from '../src/exec/process.js';
import { killAllChildren } from './helpers/commands.js';
import { tempDir } from './helpers/harness.js';
import { withLoad } from './helpers/load.js';

const timeout = 120_000;

after(() => killAllChildren());

/** Starts `command` in a session of its own (out of the group) and waits until it is there. */
function escapee(command: string, pidFile: string): string {
  return `setsid sh -c 'echo $$ > ${pidFile}; exec ${command}' & while [ ! -s ${pidFile} ]; do sleep 0.01; done`;
}

/** Pids of processes whose command line contains `needle`. */
async function processesWith(needle: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`).catch(() => Buffer.alloc(0));
    if (cmdline.toString('utf8').replace(/\0/g, ' ').includes(needle)) found.push(Number(entry));
  }
  return found;
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

describe('lineSplitter', () => {
  test('\\n, \\r\\n and a lone \\r end a line, also across chunks; multi-byte characters split over chunks stay whole; end flushes', () => {
    const lines: string[] = [];
    const splitter = lineSplitter((line) => lines.push(line));
    const bytes = Buffer.from('one\ntwo\r\nthree\rfour ünï\r');
    // Byte by byte: every boundary falls inside a line break or a character once.
    for (const byte of bytes) splitter.push(Buffer.from([byte]));
    splitter.push(Buffer.from('\nfive'));
    splitter.end();
    assert.deepEqual(lines, ['one', 'two', 'three', 'four ünï', 'five']);
  });
});

describe('runProcess', () => {
  /** What the pipeline step sandboxes pass (executor-sandbox runStepProcess). */
  const stepOptions: RunProcessOptions = { stdin: 'ignore', terminate: 'group', drainTimeoutMs: 2_000, afterExit: async () => undefined };

  for (const [label, options] of [['build tool options', {}], ['step options', stepOptions]] as const) {
    test(`${label}: 50 failing programs in a row under load; every line each printed is in the output`, { timeout }, async () => {
      const missing = await withLoad(async () => {
        const lost: string[] = [];
        for (let i = 0; i < 50; i++) {
          const lines: string[] = [];
          const result = await runProcess('/bin/sh', ['-c', `echo out ${i}; printf 'about to fail ${i}' >&2; exit 3`], {
            ...options,
            env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
            onLine: (line, stream) => lines.push(`${stream}:${line}`),
          });
          assert.equal(result.code, 3);
          for (const line of [`stdout:out ${i}`, `stderr:about to fail ${i}`]) if (!lines.includes(line)) lost.push(line);
          assert.deepEqual(result.stderrTail, [`about to fail ${i}`]);
        }
        return lost;
      });
      assert.deepEqual(missing, [], 'no line is lost');
    });
  }

  test('what a program left in its process group is killed once it exited', { timeout }, async () => {
    const marker = `sleep 617${Math.floor(Math.random() * 1000)}`;
    const result = await runProcess('/bin/sh', ['-c', `${marker} & echo started`], { onLine: () => undefined });
    assert.equal(result.code, 0);
    assert.deepEqual(await processesWith(marker), [], 'the background sleep is gone');
  });

  test('a pipe held by a process that escaped the group is cut off after drainTimeoutMs, keeping what came before', { timeout }, async () => {
    const marker = `sleep 618${Math.floor(Math.random() * 1000)}`;
    const dir = await tempDir('slipway-exec-');
    const lines: string[] = [];
    const started = Date.now();
    try {
      const result = await runProcess('/bin/sh', ['-c', `${escapee(marker, path.join(dir.path, 'pid'))}; echo before; exit 4`], { ...stepOptions, drainTimeoutMs: 500, onLine: (line) => lines.push(line) });
      assert.equal(result.code, 4);
      assert.ok(Date.now() - started < 10_000, 'the held pipe did not keep the result back');
      assert.deepEqual(lines, ['before']);
      assert.equal((await processesWith(marker)).length, 1, 'the escaped process still runs (nothing here could kill it)');
    } finally {
      killAll(await processesWith(marker));
      await dir.remove();
    }
  });
});

describe('output FIFOs', () => {
  test('50 failing programs in a row under load write into FIFOs; drain returns once every line is read', { timeout }, async () => {
    const dir = await tempDir('slipway-output-fifo-');
    try {
      const missing = await withLoad(async () => {
        const lost: string[] = [];
        for (let i = 0; i < 50; i++) {
          const lines: string[] = [];
          const fifos = await openOutputFifos(dir.path, `step-${i}`, (line, stream) => lines.push(`${stream}:${line}`));
          // The program opens the FIFOs itself, as a step does inside its container.
          const result = await runProcess('/bin/sh', ['-c', `exec /bin/sh -c "$0" >${fifos.stdout} 2>${fifos.stderr}`, `echo out ${i}; echo about to fail ${i} >&2; exit 3`]);
          assert.equal(result.code, 3);
          await fifos.drain(2_000);
          for (const line of [`stdout:out ${i}`, `stderr:about to fail ${i}`]) if (!lines.includes(line)) lost.push(line);
        }
        return lost;
      });
      assert.deepEqual(missing, [], 'no line is lost');
      assert.equal((await readdir(dir.path)).length, 100, 'two FIFOs per program, in the folder given');
    } finally {
      await dir.remove();
    }
  });

  test('a FIFO held by a process that escaped is closed after the drain time limit', { timeout }, async () => {
    const dir = await tempDir('slipway-output-fifo-');
    const marker = `sleep 619${Math.floor(Math.random() * 1000)}`;
    try {
      const lines: string[] = [];
      const fifos = await openOutputFifos(dir.path, 'held', (line) => lines.push(line));
      await runProcess('/bin/sh', ['-c', `exec /bin/sh -c "$0" >${fifos.stdout} 2>${fifos.stderr}`, `${escapee(marker, path.join(dir.path, 'pid'))}; echo before`]);
      const started = Date.now();
      await fifos.drain(300);
      const waited = Date.now() - started;
      assert.ok(waited >= 250 && waited < 5_000, `drain waited for the holder, then gave up (${waited} ms)`);
      assert.deepEqual(lines, ['before']);
      assert.equal(path.basename(fifos.stdout), 'held.stdout');
      assert.equal((await processesWith(marker)).length, 1, 'the holder was still there');
    } finally {
      killAll(await processesWith(marker));
      await dir.remove();
    }
  });
});
