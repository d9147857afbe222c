/**
 * @module pipelines/spec
 * The pipeline resource as the API takes it (JSON, or YAML through the CLI): parameters with
 * defaults, sources (the first, or the one `primarySource` names, is primary), triggers and
 * stages. Stages run in the order given; a `parallel` entry runs its stages at the same time
 * and the next entry starts when all of them succeeded.
 *
 * Stage types (OCI DevOps names in brackets): `build` [BUILD], `deliver` [DELIVER_ARTIFACT],
 * `deploy` [DEPLOY_FUNCTION], `trigger` [TRIGGER_DEPLOYMENT_PIPELINE], `wait` [WAIT] and
 * `approval` [MANUAL_APPROVAL]. `${name}` placeholders (parameters, exported variables) are
 * filled in artifact locations, build-spec values and stage settings when the stage runs.
 *
 * Unknown keys are left out with a warning (parsePipelineInput, definition-parse.ts), as in
 * build specs; `strict: true` refuses them, here and in the build specs of the build stages.
 * No node or server imports here: pipelines/api.ts takes these schemas into the browser.
 */
import { z } from 'zod';
import { functionNamePattern } from '../functions/spec.js';
import { validateGlobs } from './path-filter.js';

export const pipelineNamePattern = functionNamePattern;
/** OCI DevOps parameter names. */
export const parameterNamePattern = /^[a-zA-Z][a-zA-Z_0-9]*$/;
const stageNamePattern = /^[A-Za-z0-9](?:[A-Za-z0-9_. -]{0,62}[A-Za-z0-9])?$/;
const sourceNamePattern = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$/;
/** A glob as path-filter.ts reads it; a bad one is refused with the reason. */
const glob = z.string().superRefine((pattern, ctx) => {
  try {
    validateGlobs([pattern], 'pattern');
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
  }
});

const sourceSchema = z.strictObject({
  name: z.string().regex(sourceNamePattern, 'source names are letters, digits, _, . and -'),
  /** http(s)://, ssh-less: the server clones it (file:// works for local repositories). */
  url: z.string().min(1).max(2048).regex(/^(https?|file):\/\//, 'a http(s):// or file:// URL'),
  branch: z.string().min(1).max(255).default('main'),
  /** From the vault: `passwordSecret` names a secret of the namespace. */
  credentials: z.strictObject({ username: z.string().min(1).max(255), passwordSecret: z.string().min(1).max(128) }).optional(),
});

const parameterSchema = z.strictObject({
  name: z.string().regex(parameterNamePattern, 'parameter names are letters, digits and _, starting with a letter'),
  defaultValue: z.string().max(4096).optional(),
  description: z.string().max(1024).optional(),
});

/** An ISO-8601 duration (`PT30S`, `PT5M`, `P1D`) or `30s`/`5m`/`2h`/`1d`. */
export function parseStageDuration(text: string): number | null {
  const short = /^(\d+)(s|m|h|d)$/.exec(text);
  if (short) return Number(short[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[short[2] as 's']!;
  const iso = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(text);
  if (!iso || text === 'P' || text.endsWith('T')) return null;
  const [, d, h, m, s] = iso.map((v) => Number(v ?? 0));
  return (((d! * 24 + h!) * 60 + m!) * 60 + s!) * 1000;
}

const durationText = z.string().refine((t) => parseStageDuration(t) !== null, 'a duration like PT30S, PT5M, P1D or 30s, 5m');

const stageBase = { name: z.string().regex(stageNamePattern, 'stage names are 1–64 letters, digits, space, _, . and -'), description: z.string().max(1024).optional() };

const buildStage = z.strictObject({
  ...stageBase,
  type: z.literal('build'),
  /** Path of the build spec in the primary source. */
  buildSpecFile: z.string().min(1).max(1024).optional(),
  executor: z.enum(['shell', 'container']).optional(),
  /** Builder image of the container executor. */
  image: z.string().min(1).max(1024).optional(),
  /** The primary source of this stage (default the pipeline's). */
  primarySource: z.string().optional(),
  timeoutSeconds: z.number().int().min(1).max(86_400).optional(),
});

const deliverStage = z.strictObject({
  ...stageBase,
  type: z.literal('deliver'),
  artifacts: z.array(z.strictObject({
    /** An output artifact `name` of an earlier build stage. */
    artifact: z.string().min(1).max(256),
    /** `repo/name:tag` in Slipway's registry (or `host[:port]/repo:tag` of a registry with stored credentials); placeholders allowed. */
    location: z.string().min(1).max(1024),
  })).min(1).max(50),
});

const deployStage = z.strictObject({
  ...stageBase,
  type: z.literal('deploy'),
  functions: z.array(z.strictObject({
    name: z.string().regex(functionNamePattern, 'a function name'),
    /** A delivered artifact (default: the only delivered image). */
    artifact: z.string().min(1).max(256).optional(),
    /** Or an explicit image reference (placeholders allowed). */
    image: z.string().min(1).max(1024).optional(),
    /** When the function does not exist yet it is created with this type (default http). */
    type: z.enum(['http', 'event']).optional(),
    /** Extra env to set (placeholders allowed). */
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().max(32 * 1024)).optional(),
  })).min(1).max(20),
  /** Wait until the new revisions serve (default); a failed start fails the stage. */
  wait: z.boolean().default(true),
});

const triggerStage = z.strictObject({
  ...stageBase,
  type: z.literal('trigger'),
  pipeline: z.string().regex(pipelineNamePattern, 'a pipeline name'),
  parameters: z.record(z.string().regex(parameterNamePattern), z.string().max(4096)).default({}),
  /** Pass every parameter of this run on. */
  passAllParameters: z.boolean().default(false),
  /** Wait for the triggered run and fail when it fails. */
  wait: z.boolean().default(false),
});

const waitStage = z.strictObject({ ...stageBase, type: z.literal('wait'), duration: durationText });

const approvalStage = z.strictObject({
  ...stageBase,
  type: z.literal('approval'),
  /** Rejected automatically after this (default 7 days). */
  timeout: durationText.optional(),
});

export const stageSchema = z.discriminatedUnion('type', [buildStage, deliverStage, deployStage, triggerStage, waitStage, approvalStage]);
export type Stage = z.output<typeof stageSchema>;

const stageEntry = z.union([
  stageSchema,
  z.strictObject({ parallel: z.array(stageSchema).min(2).max(10), name: z.string().optional() }),
]);

const triggersSchema = z.strictObject({
  /** Push webhooks of the primary source: GitHub, GitLab, Gitea/Forgejo (detected from the headers). */
  webhook: z.strictObject({
    /** Branch globs (default the primary source's branch). */
    branches: z.array(glob).max(50).optional(),
    /** Tag globs: a tag push matching one runs the pipeline at the tag. */
    tags: z.array(glob).max(50).optional(),
    paths: z.strictObject({ include: z.array(glob).max(100).optional(), exclude: z.array(glob).max(100).optional() }).optional(),
  }).optional(),
  /** Poll the primary source for new commits. */
  mirror: z.strictObject({
    interval: durationText.optional(),
    branches: z.array(glob).max(50).optional(),
  }).optional(),
  /** A push to Slipway's registry: repository and tag globs (`team/base-*`, `v*`). */
  registry: z.array(z.strictObject({ repository: glob, tag: z.string().min(1).max(128).default('*') })).max(20).optional(),
}).default({});

export const pipelineInputSchema = z.strictObject({
  name: z.string().regex(pipelineNamePattern, 'name: 1–60 letters, digits, - and _, starting with a letter and ending with a letter or digit'),
  description: z.string().max(2048).optional(),
  /** Unknown keys (here and in the build specs of build stages) are errors, not warnings. */
  strict: z.boolean().optional(),
  parameters: z.array(parameterSchema).max(100).default([]),
  sources: z.array(sourceSchema).max(10).default([]),
  primarySource: z.string().optional(),
  triggers: triggersSchema,
  concurrency: z.strictObject({
    /** A newer commit cancels queued runs of older commits on the same branch. */
    cancelQueued: z.boolean().default(true),
    /** … and running ones too. */
    cancelRunning: z.boolean().default(false),
  }).prefault({}),
  stages: z.array(stageEntry).min(1).max(50),
}).superRefine((p, ctx) => {
  const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  const unique = (names: string[], what: string, path: string) => {
    const seen = new Set<string>();
    names.forEach((n, i) => {
      if (seen.has(n)) issue([path, i], `${what} "${n}" is used twice`);
      seen.add(n);
    });
  };
  unique(p.parameters.map((x) => x.name), 'parameter', 'parameters');
  unique(p.sources.map((x) => x.name), 'source', 'sources');
  if (p.primarySource && !p.sources.some((s) => s.name === p.primarySource)) issue(['primarySource'], `no source "${p.primarySource}"`);
  const flat = flattenStages(p.stages as StageEntry[]);
  unique(flat.map((s) => s.stage.name), 'stage', 'stages');
  const needsSource = flat.some((s) => s.stage.type === 'build') || p.triggers.webhook || p.triggers.mirror;
  if (needsSource && p.sources.length === 0) issue(['sources'], 'build stages and webhook/mirror triggers need a source');
  flat.forEach(({ stage, index }) => {
    if (stage.type === 'build' && stage.primarySource && !p.sources.some((s) => s.name === stage.primarySource)) issue(['stages', index, 'primarySource'], `no source "${stage.primarySource}"`);
    if (stage.type === 'deliver' && !flat.some((s) => s.group < flat.find((x) => x.stage === stage)!.group && s.stage.type === 'build')) issue(['stages', index], 'a deliver stage needs a build stage before it');
    if (stage.type === 'deploy') stage.functions.forEach((f, i) => { if (f.artifact && f.image) issue(['stages', index, 'functions', i], 'give artifact or image, not both'); });
    if (stage.type === 'trigger' && stage.pipeline === p.name) issue(['stages', index, 'pipeline'], 'a pipeline cannot trigger itself');
  });
});

export type PipelineInput = z.output<typeof pipelineInputSchema>;

export type StageEntry = PipelineInput['stages'][number];

/** Stages with their group: entries run in order, stages of one `parallel` entry share a group. */
export function flattenStages(entries: StageEntry[]): Array<{ stage: Stage; group: number; index: number }> {
  const out: Array<{ stage: Stage; group: number; index: number }> = [];
  entries.forEach((entry, index) => {
    if ('parallel' in entry) for (const stage of entry.parallel) out.push({ stage, group: index, index });
    else out.push({ stage: entry as Stage, group: index, index });
  });
  return out;
}

/** Run parameters: defaults, then overrides; every parameter must end with a value, unknown names are refused. */
export function resolveParameters(declared: PipelineInput['parameters'], overrides: Record<string, string>): Record<string, string> {
  const known = new Set(declared.map((p) => p.name));
  const unknown = Object.keys(overrides).filter((name) => !known.has(name));
  if (unknown.length > 0) throw new Error(`unknown parameter${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => `"${u}"`).join(', ')}`);
  const values: Record<string, string> = {};
  const missing: string[] = [];
  for (const p of declared) {
    const value = overrides[p.name] ?? p.defaultValue;
    if (value === undefined) missing.push(p.name);
    else values[p.name] = value;
  }
  if (missing.length > 0) throw new Error(`parameter${missing.length > 1 ? 's' : ''} ${missing.map((m) => `"${m}"`).join(', ')} need a value (no default)`);
  return values;
}

export const runInputSchema = z.strictObject({
  parameters: z.record(z.string(), z.string().max(4096)).default({}),
  /** Build this branch (default the primary source's) … */
  branch: z.string().min(1).max(255).optional(),
  /** … at this commit (default its head). */
  commit: z.string().regex(/^[0-9a-f]{4,64}$/, 'a commit SHA').optional(),
});

/** The source a pipeline's triggers and builds default to: `primarySource`, else the first. */
export function primarySource(spec: PipelineInput): PipelineInput['sources'][number] | undefined {
  return spec.primarySource ? spec.sources.find((s) => s.name === spec.primarySource) : spec.sources[0];
}
