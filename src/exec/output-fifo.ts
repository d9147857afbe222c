/**
 * @module exec/output-fifo
 * The output of a program that runs behind a relay which can drop its last lines: buildah's
 * chroot runtime copies a step's stdout and stderr in a goroutine and exits with the step's
 * status without waiting for it, so a failing step's last line could be lost under load. The
 * program writes into two FIFOs instead (bind-mounted into its container) that this process
 * reads itself, and `drain` only returns once both reached their end — once every process that
 * held them is gone, which is after every byte written has been read.
 *
 * This process keeps a write end of each FIFO open until `drain`, so a reader never sees an end
 * before the program has even opened them.
 */
import { closeSync, constants, openSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { lineSplitter, runProcess } from './process.js';

export interface OutputFifos {
  /** Host paths of the FIFOs (in the folder given to `openOutputFifos`). */
  stdout: string;
  stderr: string;
  /**
   * Call once the program ended: waits until both FIFOs reached their end (all lines passed to
   * `onLine`); a FIFO still held after `timeoutMs` (by a process that escaped every kill) is
   * closed after one more read.
   */
  drain(timeoutMs: number): Promise<void>;
}

/**
 * Makes `<dir>/<name>.stdout` and `<dir>/<name>.stderr` (writable by any user, readable by the
 * owner only: the folder decides who can reach them) and starts reading them line by line.
 */
export async function openOutputFifos(dir: string, name: string, onLine: (line: string, stream: 'stdout' | 'stderr') => void): Promise<OutputFifos> {
  const files = { stdout: path.join(dir, `${name}.stdout`), stderr: path.join(dir, `${name}.stderr`) };
  const made = await runProcess('mkfifo', ['-m', '0622', files.stdout, files.stderr], { timeoutMs: 30_000 });
  if (made.code !== 0) throw new Error(`cannot make the output FIFOs in ${dir}: ${made.stderrTail.slice(-1)[0] ?? `exit ${made.code}`}`);
  const streams = (['stdout', 'stderr'] as const).map((stream) => {
    // Non-blocking opens: the reader first (a writer may only open once there is one), then our own writer.
    const readFd = openSync(files[stream], constants.O_RDONLY | constants.O_NONBLOCK);
    const keepFd = openSync(files[stream], constants.O_WRONLY | constants.O_NONBLOCK);
    const socket = new net.Socket({ fd: readFd, readable: true, writable: false });
    const lines = lineSplitter((line) => onLine(line, stream));
    const ended = new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => lines.push(chunk));
      socket.on('error', () => undefined);
      socket.once('close', () => {
        lines.end();
        resolve();
      });
    });
    return { socket, keepFd, ended };
  });
  let drained: Promise<void> | undefined;
  return {
    ...files,
    drain(timeoutMs: number) {
      drained ??= (async () => {
        for (const { keepFd } of streams) closeSync(keepFd);
        let timer: NodeJS.Timeout | undefined;
        const all = Promise.all(streams.map((s) => s.ended)).then(() => false);
        const late = await Promise.race([all, new Promise<boolean>((resolve) => { timer = setTimeout(() => setImmediate(() => resolve(true)), timeoutMs); })]);
        clearTimeout(timer);
        if (late) for (const { socket } of streams) socket.destroy();
        await all;
      })();
      return drained;
    },
  };
}
