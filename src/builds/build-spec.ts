/**
 * @module builds/build-spec
 * The build-spec file components are built with: the Oracle OCI DevOps `build_spec.yaml` layout
 * (see /work/shared/reference/formats.md §1). Wrong types and missing fields are errors with the
 * key and line. Unknown keys are warnings with the key and line (OCI DevOps ignores them, and
 * real specs carry some), errors with `strict`; an input artifact with a `url` and no `type` is
 * taken as `URL` with a warning (the only type that has a `url`), an error with `strict`.
 *
 * Accepted: `version: 0.1`, `component` (`build` | `command`), `timeoutInSeconds`, `runAs`,
 * `shell` (`bash` | `sh`), `failImmediatelyOnError`, `env` (`variables`, `vaultVariables`,
 * `exportedVariables`), `inputArtifacts` (kept for the caller), `steps` (`type: Command` only,
 * with `onFailure` steps) and `outputArtifacts` (`BINARY` | `DOCKER_IMAGE`).
 *
 * `${NAME}` placeholders are filled from the predefined `OCI_*` variables, pipeline parameters
 * and exported variables in the artifact fields and `env.variables` values (`resolveBuildSpec`);
 * step commands are left alone, their shell expands the same names from the step environment
 * (`stepEnvironment`). `$${NAME}` stands for a literal `${NAME}`.
 *
 * The zod schema is in build-spec-schema.ts; finding and reading the file in build-spec-file.ts.
 */
import { SlipwayError } from '../http/error-catalog.js';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { specSchema, type failureStepSchema, type ParsedSpec } from './build-spec-schema.js';
import { dropKeys, splitUnknownKeys } from './unknown-keys.js';

export interface BuildSpecIssue {
  /** Where in the spec, e.g. `steps[1].command`; '' for the whole file. */
  path: string;
  message: string;
  /** 1-based, when the position is known. */
  line?: number;
  column?: number;
}

/** A key the parser ignored (or a field it filled in); refused instead with `strict`. */
export interface BuildSpecWarning extends BuildSpecIssue {
  /** The spec file, relative to the repository. */
  file: string;
  /** The key concerned, e.g. `image`. */
  key: string;
}

/** One line for a run's log: `warning: build_spec.yaml line 7: steps[0].image: unknown key … (ignored)`. */
export function formatBuildSpecWarning(warning: BuildSpecWarning): string {
  return `warning: ${warning.file}${warning.line !== undefined ? ` line ${warning.line}` : ''}: ${warning.path}: ${warning.message}`;
}

export class BuildSpecError extends SlipwayError {
  override readonly name = 'BuildSpecError';
  constructor(message: string, readonly issues: BuildSpecIssue[] = []) {
    super('BUILD_SPEC_INVALID', message);
  }

  /** The line of the first issue, when known. */
  get line(): number | undefined {
    return this.issues[0]?.line;
  }
}

export type StepShell = 'bash' | 'sh';

export interface FailureStep {
  type: 'Command';
  name: string;
  command: string;
  timeoutInSeconds?: number;
  failImmediatelyOnError?: boolean;
  shell?: StepShell;
  runAs?: string;
}

export interface BuildStep extends FailureStep {
  /** Command steps run when this step fails (then the build still fails). */
  onFailure: FailureStep[];
}

export type InputArtifact =
  | { name: string; type: 'GENERIC_ARTIFACT'; location: string; artifactId?: string; registryId?: string; path?: string; version?: string }
  | { name: string; type: 'STAGE_ARTIFACT'; location: string }
  | { name: string; type: 'URL'; location: string; url: string };

export interface OutputArtifact {
  name: string;
  type: 'BINARY' | 'DOCKER_IMAGE';
  /** A local image `name:tag` (DOCKER_IMAGE) or a file path, absolute or relative to the primary source (BINARY). */
  location: string;
  /** Not in Oracle's documentation but seen in the wild (`version: ${var}`). */
  version?: string;
}

export interface BuildSpec {
  version: '0.1';
  component: 'build' | 'command';
  timeoutInSeconds?: number;
  runAs?: string;
  /** Default shell of the steps; `bash` when the spec does not say. */
  shell: StepShell;
  failImmediatelyOnError?: boolean;
  env: {
    variables: Record<string, string>;
    /** Name → secret reference; the value is injected at run time. */
    vaultVariables: Record<string, string>;
    /** Variables whose value at the end of the stage becomes a parameter of later stages. */
    exportedVariables: string[];
  };
  inputArtifacts: InputArtifact[];
  steps: BuildStep[];
  outputArtifacts: OutputArtifact[];
}

/** Where a repository's build spec is looked for, in this order. */
export const buildSpecFileNames = ['build_spec.yaml', 'build_spec.yml', '.slipway/build_spec.yaml'] as const;

/** Largest build-spec file `loadBuildSpec` reads. */
export const maxBuildSpecBytes = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

type PathSegment = string | number;

function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const segment of segments) out += typeof segment === 'number' ? `[${segment}]` : out === '' ? segment : `.${segment}`;
  return out;
}

/** The source offset of the node at `segments`: the key for a map entry, else the closest parent. */
function offsetOf(doc: Document, segments: readonly PathSegment[]): number | undefined {
  let node: unknown = doc.contents;
  let offset = (node as { range?: [number, number, number] } | null)?.range?.[0];
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (isMap(node)) {
      const pair = node.items.find((item) => (isScalar(item.key) ? String(item.key.value) : String(item.key)) === String(segment));
      if (!pair) break;
      const key = pair.key as { range?: [number, number, number] } | null;
      const value = pair.value as { range?: [number, number, number] } | null;
      if (i === segments.length - 1) {
        offset = key?.range?.[0] ?? value?.range?.[0] ?? offset;
        break;
      }
      offset = value?.range?.[0] ?? key?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment] as { range?: [number, number, number] } | null | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return offset;
}

function errorMessage(fileName: string, issues: BuildSpecIssue[]): string {
  const shown = issues.slice(0, 5).map((issue) => {
    const where = issue.line !== undefined ? `line ${issue.line}: ` : '';
    return `${where}${issue.path === '' ? '' : `${issue.path}: `}${issue.message}`;
  });
  const more = issues.length > 5 ? ` (and ${issues.length - 5} more)` : '';
  return `${fileName} is not a valid build spec: ${shown.join('; ')}${more}`;
}

export interface ParseOptions {
  /** Named in messages. Default `build_spec.yaml`. */
  fileName?: string;
  /** Unknown keys (and an input artifact with no `type`) are errors instead of warnings. */
  strict?: boolean;
}

export interface ParsedBuildSpec {
  spec: BuildSpec;
  /** What was ignored or filled in, in line order. */
  warnings: BuildSpecWarning[];
}

/** Parses and validates a build spec; throws a BuildSpecError naming the key and line of each problem. */
export function parseBuildSpec(text: string, options: ParseOptions = {}): BuildSpec {
  return readBuildSpec(text, options).spec;
}

/** parseBuildSpec, with the warnings (unknown keys) the caller shows in its log. */
export function readBuildSpec(text: string, options: ParseOptions = {}): ParsedBuildSpec {
  const fileName = options.fileName ?? 'build_spec.yaml';
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true, strict: true });
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((error) => {
      const pos = error.linePos?.[0];
      const message = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      return { path: '', message: `invalid YAML: ${message}`, line: pos?.line, column: pos?.col };
    });
    throw new BuildSpecError(errorMessage(fileName, issues), issues);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    throw new BuildSpecError(`${fileName} is not a valid build spec: ${(error as Error).message}`, [{ path: '', message: (error as Error).message }]);
  }
  if (data === null || data === undefined) {
    throw new BuildSpecError(`${fileName} is empty`, [{ path: '', message: 'the file is empty', line: 1, column: 1 }]);
  }
  const at = (segments: readonly PathSegment[]) => position(doc, lineCounter, segments);
  const warnings: BuildSpecWarning[] = options.strict ? [] : urlTypeWarnings(data, fileName, at);
  let result = specSchema.safeParse(data, { reportInput: true });
  if (!result.success) {
    const { unknown, others } = splitUnknownKeys(result.error.issues);
    const unknownIssues = unknown.map(({ parent, key }): BuildSpecWarning => {
      const segments = [...parent, key] as PathSegment[];
      const where = parent.length === 0 ? 'top-level key' : `key in ${formatPath(parent as PathSegment[])}`;
      return { file: fileName, key, path: formatPath(segments), message: `unknown ${where} ${JSON.stringify(key)}`, ...at(segments) };
    });
    const issues: BuildSpecIssue[] = others.map((issue) => ({ path: formatPath(issue.path as PathSegment[]), message: issue.message, ...at(issue.path as PathSegment[]) }));
    if (options.strict) issues.push(...unknownIssues.map(({ file: _file, key: _key, ...issue }) => issue));
    if (issues.length > 0) {
      issues.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
      throw new BuildSpecError(errorMessage(fileName, issues), issues);
    }
    // Only unknown keys: parsed again without them, they become warnings.
    dropKeys(data, unknown);
    warnings.push(...unknownIssues.map((warning) => ({ ...warning, message: `${warning.message} (ignored)` })));
    result = specSchema.safeParse(data, { reportInput: true });
    if (!result.success) {
      const again = result.error.issues.map((issue) => ({ path: formatPath(issue.path as PathSegment[]), message: issue.message, ...at(issue.path as PathSegment[]) }));
      throw new BuildSpecError(errorMessage(fileName, again), again);
    }
  }
  warnings.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
  return { spec: normalise(result.data), warnings };
}

/**
 * An input artifact with a `url` and no `type` becomes `type: URL` (in `data`, in place): URL is
 * the only type with a `url`, and public specs leave the type out.
 */
function urlTypeWarnings(data: unknown, file: string, at: (segments: readonly PathSegment[]) => { line?: number; column?: number }): BuildSpecWarning[] {
  const inputs = (data as { inputArtifacts?: unknown } | null)?.inputArtifacts;
  if (!Array.isArray(inputs)) return [];
  const warnings: BuildSpecWarning[] = [];
  inputs.forEach((artifact: unknown, index) => {
    if (artifact === null || typeof artifact !== 'object' || Array.isArray(artifact)) return;
    const fields = artifact as Record<string, unknown>;
    if (fields.type !== undefined || fields.url === undefined) return;
    fields.type = 'URL';
    warnings.push({ file, key: 'type', path: `inputArtifacts[${index}].type`, message: 'no type; taken as URL (the artifact has a url)', ...at(['inputArtifacts', index]) });
  });
  return warnings;
}

function position(doc: Document, lineCounter: LineCounter, segments: readonly PathSegment[]): { line?: number; column?: number } {
  const offset = offsetOf(doc, segments);
  if (offset === undefined) return {};
  const pos = lineCounter.linePos(offset);
  return { line: pos.line, column: pos.col };
}

function normaliseStep<T extends z.output<typeof failureStepSchema>>(step: T, name: string): FailureStep {
  const out: FailureStep = { type: 'Command', name: step.name ?? name, command: step.command };
  if (step.timeoutInSeconds !== undefined) out.timeoutInSeconds = step.timeoutInSeconds;
  if (step.failImmediatelyOnError !== undefined) out.failImmediatelyOnError = step.failImmediatelyOnError;
  if (step.shell !== undefined) out.shell = step.shell;
  if (step.runAs !== undefined) out.runAs = step.runAs;
  return out;
}

function normalise(parsed: ParsedSpec): BuildSpec {
  const spec: BuildSpec = {
    version: '0.1',
    component: parsed.component ?? 'build',
    shell: parsed.shell ?? 'bash',
    env: {
      variables: parsed.env?.variables ?? {},
      vaultVariables: parsed.env?.vaultVariables ?? {},
      exportedVariables: [...(parsed.env?.exportedVariables ?? [])],
    },
    inputArtifacts: (parsed.inputArtifacts ?? []).map((artifact): InputArtifact => {
      if (artifact.type === 'URL') return { name: artifact.name, type: 'URL', location: artifact.location, url: artifact.url! };
      if (artifact.type === 'STAGE_ARTIFACT') return { name: artifact.name, type: 'STAGE_ARTIFACT', location: artifact.location };
      const generic: InputArtifact = { name: artifact.name, type: 'GENERIC_ARTIFACT', location: artifact.location };
      if (artifact.artifactId !== undefined) generic.artifactId = artifact.artifactId;
      if (artifact.registryId !== undefined) generic.registryId = artifact.registryId;
      if (artifact.path !== undefined) generic.path = artifact.path;
      if (artifact.version !== undefined) generic.version = artifact.version;
      return generic;
    }),
    steps: parsed.steps.map((step, index): BuildStep => {
      const base = normaliseStep(step, `Step ${index + 1}`);
      return { ...base, onFailure: (step.onFailure ?? []).map((failure, j) => normaliseStep(failure, `${base.name}: on failure ${j + 1}`)) };
    }),
    outputArtifacts: (parsed.outputArtifacts ?? []).map((artifact) => {
      const out: OutputArtifact = { name: artifact.name, type: artifact.type, location: artifact.location };
      if (artifact.version !== undefined) out.version = artifact.version;
      return out;
    }),
  };
  if (parsed.timeoutInSeconds !== undefined) spec.timeoutInSeconds = parsed.timeoutInSeconds;
  if (parsed.runAs !== undefined) spec.runAs = parsed.runAs;
  if (parsed.failImmediatelyOnError !== undefined) spec.failImmediatelyOnError = parsed.failImmediatelyOnError;
  return spec;
}

// ---------------------------------------------------------------------------------------------
// Placeholders and variables
// ---------------------------------------------------------------------------------------------

/** What a build run knows about itself; fills the predefined `OCI_*` variables. */
export interface BuildRunContext {
  buildRunId: string;
  pipelineId?: string;
  stageId?: string;
  stageName?: string;
  /** Default `/workspace`. */
  workspaceDir?: string;
  /** Default `source`. */
  primarySourceName?: string;
  /** Default `<workspaceDir>/<primarySourceName>`. */
  primarySourceDir?: string;
  /** The primary source as built. */
  source?: { commit?: string; branch?: string; url?: string };
  /** What triggered the run (empty for a manual run). */
  trigger?: { commit?: string; branch?: string; url?: string; eventType?: string };
}

/** The predefined variables of formats.md §1.2, every one present (empty when unknown). */
export function predefinedVariables(context: BuildRunContext): Record<string, string> {
  const workspaceDir = context.workspaceDir ?? '/workspace';
  const sourceName = context.primarySourceName ?? 'source';
  return {
    OCI_STAGE_ID: context.stageId ?? '',
    OCI_PIPELINE_ID: context.pipelineId ?? '',
    OCI_BUILD_RUN_ID: context.buildRunId,
    OCI_BUILD_STAGE_NAME: context.stageName ?? '',
    OCI_TRIGGER_COMMIT_HASH: context.trigger?.commit ?? '',
    OCI_TRIGGER_SOURCE_BRANCH_NAME: context.trigger?.branch ?? '',
    OCI_TRIGGER_SOURCE_URL: context.trigger?.url ?? '',
    OCI_TRIGGER_EVENT_TYPE: context.trigger?.eventType ?? '',
    OCI_WORKSPACE_DIR: workspaceDir,
    OCI_PRIMARY_SOURCE_DIR: context.primarySourceDir ?? path.posix.join(workspaceDir, sourceName),
    OCI_PRIMARY_SOURCE_NAME: sourceName,
    OCI_PRIMARY_SOURCE_COMMIT_HASH: context.source?.commit ?? '',
    OCI_PRIMARY_SOURCE_SOURCE_URL: context.source?.url ?? '',
    OCI_PRIMARY_SOURCE_SOURCE_BRANCH_NAME: context.source?.branch ?? '',
  };
}

/**
 * Values for placeholders: parameters, then exported variables of earlier stages over them, then
 * the predefined variables over both (they cannot be overridden).
 */
export function placeholderValues(predefined: Record<string, string>, parameters: Record<string, string> = {}, exported: Record<string, string> = {}): Record<string, string> {
  return { ...parameters, ...exported, ...predefined };
}

export interface SubstituteOptions {
  /** Unknown names are an error (BuildSpecError) instead of being left as written. */
  strict?: boolean;
  /** Named in the error, e.g. `outputArtifacts[0].location`. */
  where?: string;
}

const placeholderPattern = /\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Replaces `${NAME}` with `values[NAME]`; `$${NAME}` gives a literal `${NAME}`. */
export function substitutePlaceholders(text: string, values: Record<string, string>, options: SubstituteOptions = {}): string {
  const missing: string[] = [];
  const out = text.replace(placeholderPattern, (match, escape: string, name: string) => {
    if (escape) return match.slice(1);
    if (Object.prototype.hasOwnProperty.call(values, name)) return values[name]!;
    missing.push(name);
    return match;
  });
  if (missing.length > 0 && options.strict) {
    const where = options.where ? `${options.where}: ` : '';
    const names = [...new Set(missing)].map((name) => `\${${name}}`).join(', ');
    throw new BuildSpecError(`${where}no value for ${names} (not a predefined variable, parameter or exported variable)`, [
      { path: options.where ?? '', message: `no value for ${names}` },
    ]);
  }
  return out;
}

/**
 * The spec with placeholders filled in `env.variables` values and the artifact fields
 * (locations, URLs, paths, versions, ids). Step commands are not touched: their shell expands
 * variables itself, including those set by earlier steps.
 */
export function resolveBuildSpec(spec: BuildSpec, values: Record<string, string>, options: { strict?: boolean } = {}): BuildSpec {
  const sub = (value: string, where: string) => substitutePlaceholders(value, values, { strict: options.strict, where });
  const variables: Record<string, string> = {};
  for (const [name, value] of Object.entries(spec.env.variables)) variables[name] = sub(value, `env.variables.${name}`);
  return {
    ...spec,
    env: { ...spec.env, variables, vaultVariables: { ...spec.env.vaultVariables }, exportedVariables: [...spec.env.exportedVariables] },
    steps: spec.steps.map((step) => ({ ...step, onFailure: step.onFailure.map((failure) => ({ ...failure })) })),
    inputArtifacts: spec.inputArtifacts.map((artifact, index) => {
      const at = `inputArtifacts[${index}]`;
      const out = { ...artifact, location: sub(artifact.location, `${at}.location`) };
      if (out.type === 'URL') out.url = sub(out.url, `${at}.url`);
      if (out.type === 'GENERIC_ARTIFACT') {
        for (const key of ['artifactId', 'registryId', 'path', 'version'] as const) {
          const value = out[key];
          if (value !== undefined) out[key] = sub(value, `${at}.${key}`);
        }
      }
      return out;
    }),
    outputArtifacts: spec.outputArtifacts.map((artifact, index) => {
      const out = { ...artifact, location: sub(artifact.location, `outputArtifacts[${index}].location`) };
      if (out.version !== undefined) out.version = sub(out.version, `outputArtifacts[${index}].version`);
      return out;
    }),
  };
}

/**
 * The environment every step starts with: the spec's `env.variables` (placeholders filled), the
 * pipeline parameters over them (a run's argument beats the spec's default) and the predefined
 * variables over everything. Vault variables are not included: the caller injects their values.
 */
export function stepEnvironment(spec: BuildSpec, predefined: Record<string, string>, parameters: Record<string, string> = {}): Record<string, string> {
  const values = placeholderValues(predefined, parameters);
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(spec.env.variables)) env[name] = substitutePlaceholders(value, values);
  return { ...env, ...parameters, ...predefined };
}
