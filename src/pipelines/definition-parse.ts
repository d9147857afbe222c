/**
 * @module pipelines/definition-parse
 * A pipeline definition checked against its schema (spec.ts), with unknown keys left out and
 * reported as warnings the way build specs do (builds' unknown-keys), refused with `strict: true`.
 * Apart from spec.ts because the builds entry it uses is server code, and spec.ts loads in the
 * browser.
 */
import { dropKeys, splitUnknownKeys } from '../builds/index.js';
import { pipelineInputSchema, type PipelineInput } from './spec.js';

/** A key of the definition that was left out. */
export interface PipelineWarning {
  /** Dotted, like the error messages: `stages.0.image`. */
  path: string;
  key: string;
  message: string;
}

/** The definition, or the problems (`path: message`) that refuse it. */
export type PipelineParseResult = { ok: true; spec: PipelineInput; warnings: PipelineWarning[] } | { ok: false; errors: string[] };

const issueText = (issue: { path: PropertyKey[]; message: string }) => `${issue.path.map(String).join('.') || '(pipeline)'}: ${issue.message}`;

/** Validates a definition: unknown keys are warnings and left out, errors with `strict: true`. */
export function parsePipelineInput(input: unknown): PipelineParseResult {
  const first = pipelineInputSchema.safeParse(input);
  if (first.success) return { ok: true, spec: first.data, warnings: [] };
  const strict = input !== null && typeof input === 'object' && (input as { strict?: unknown }).strict === true;
  const { unknown, others } = splitUnknownKeys(first.error.issues);
  if (strict || others.length > 0 || unknown.length === 0) return { ok: false, errors: (strict ? first.error.issues : others).map(issueText) };
  const copy = structuredClone(input);
  dropKeys(copy, unknown);
  const second = pipelineInputSchema.safeParse(copy);
  if (!second.success) return { ok: false, errors: second.error.issues.map(issueText) };
  const warnings = unknown.map(({ parent, key }) => {
    const at = parent.map(String).join('.');
    return { path: at === '' ? key : `${at}.${key}`, key, message: `unknown key ${JSON.stringify(key)}${at === '' ? '' : ` in ${at}`} (ignored)` };
  });
  return { ok: true, spec: second.data, warnings };
}
