/**
 * @module cli/pipeline-files
 * Reading what `slipway pipeline`/`artefact` commands are given: `-p NAME=VALUE` parameters,
 * run numbers, and pipeline or Score files (JSON or YAML, or stdin).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { UsageError } from './errors.js';

/** `-p NAME=VALUE` flags → parameters; the value may be empty or hold `=`. */
export function parseParameters(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const value of values) {
    const at = value.indexOf('=');
    if (at <= 0) throw new UsageError(`-p/--param takes NAME=VALUE, got "${value}"`);
    const name = value.slice(0, at);
    if (!/^[a-zA-Z][a-zA-Z_0-9]*$/.test(name)) throw new UsageError(`-p/--param: "${name}" is not a parameter name (letters, digits and _, starting with a letter)`);
    if (name in out) throw new UsageError(`-p/--param: ${name} is given twice`);
    out[name] = value.slice(at + 1);
  }
  return out;
}

/** A run number argument. */
export function runNumber(value: string): number {
  if (!/^[1-9]\d{0,9}$/.test(value)) throw new UsageError(`run numbers are positive whole numbers, got "${value}"`);
  return Number(value);
}

/** A pipeline (or Score) file: JSON or YAML, by extension, else whichever parses. */
export function parseDocument(text: string, file: string): unknown {
  const ext = path.extname(file).toLowerCase();
  const asYaml = () => {
    try {
      return parseYaml(text, { prettyErrors: true }) as unknown;
    } catch (error) {
      throw new UsageError(`${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
    }
  };
  const asJson = () => {
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new UsageError(`${file} is not valid JSON: ${(error as Error).message}`);
    }
  };
  if (ext === '.json') return asJson();
  // YAML is a superset of JSON: files of any other name are read as YAML.
  return asYaml();
}

export async function readDocument(file: string): Promise<unknown> {
  let text: string;
  try {
    text = file === '-' ? (await readStdin()).toString('utf8') : await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`);
  }
  const document = parseDocument(text, file === '-' ? 'stdin.yaml' : file);
  if (typeof document !== 'object' || document === null || Array.isArray(document)) throw new UsageError(`${file}: expected a mapping (an object) at the top`);
  return document;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
