/**
 * @module cli/secrets
 * How the `slipway` command reads a secret: from stdin (`--password-stdin`, `--secret-stdin`),
 * from a file, from an environment variable, or from a prompt that does not echo. Secrets on
 * the command line end up in shell history and in `ps`, so the one flag that takes one
 * (`login --password`) warns. Nothing here prints a secret.
 */
import { readFile } from 'node:fs/promises';
import { UsageError } from './errors.js';

/** Everything on stdin, without the one line break a shell `echo` or here-string adds. */
export async function readStdinSecret(what: string, stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  const value = stripLineBreak(Buffer.concat(chunks).toString('utf8'));
  if (value === '') throw new UsageError(`${what}: stdin was empty`);
  return value;
}

/** A file's content without a final line break; a UsageError naming the file when unreadable. */
export async function readSecretFile(file: string, what: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`${what}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const value = stripLineBreak(text);
  if (value.trim() === '') throw new UsageError(`${what}: ${file} is empty`);
  return value;
}

export function stripLineBreak(text: string): string {
  return text.replace(/\r?\n$/, '');
}

/** Asks on the terminal without echoing; only when stdin is a TTY. */
export async function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new UsageError('no password given: use --password-stdin (or run in a terminal to be asked)');
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  stdin.setEncoding('utf8');
  try {
    return await new Promise<string>((resolve, reject) => {
      let value = '';
      const onData = (chunk: string) => {
        for (const char of chunk) {
          if (char === '\r' || char === '\n' || char === '\u0004') {
            stdin.off('data', onData);
            process.stderr.write('\n');
            resolve(value);
            return;
          }
          if (char === '\u0003') {
            stdin.off('data', onData);
            process.stderr.write('\n');
            reject(new UsageError('cancelled'));
            return;
          }
          if (char === '\u007f' || char === '\b') value = Array.from(value).slice(0, -1).join('');
          else value += char;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
  }
}
