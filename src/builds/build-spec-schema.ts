/**
 * @module builds/build-spec-schema
 * The zod schema of the build-spec format (build_spec.yaml): types, required fields and the
 * messages naming what was expected. build-spec.ts parses with it and normalises the result.
 */
import { z } from 'zod';

type IssueInput = { input?: unknown };

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `the text ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `${typeof value} ${String(value)}`;
}

function required(what: string) {
  return (issue: IssueInput) => (issue.input === undefined ? `is required (${what})` : `must be ${what}, not ${describe(issue.input)}`);
}

const text = (what = 'text') => z.string({ error: required(what) }).min(1, { error: 'must not be empty' });
/** YAML scalars that stand for text: numbers and booleans are taken as written. */
const scalarText = z.union([z.string(), z.number(), z.boolean()], { error: required('text') }).transform(String);
const positiveInt = z
  .number({ error: required('a whole number of seconds') })
  .int({ error: 'must be a whole number of seconds' })
  .positive({ error: 'must be more than 0' })
  .max(7 * 24 * 3600, { error: 'must be at most 604800 (7 days)' });
const bool = z.boolean({ error: required('true or false') });
const shell = z.enum(['bash', 'sh'], { error: (issue: IssueInput) => `unsupported shell ${describe(issue.input)}; supported: bash, sh` });
const envName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A YAML map that may be empty (`variables:` with nothing under it is null). */
function nameMap(valueSchema: z.ZodType<string, unknown>) {
  return z
    .record(z.string(), valueSchema, { error: required('a map of NAME: value') })
    .nullish()
    .superRefine((value, ctx) => {
      for (const key of Object.keys(value ?? {})) {
        if (!envName.test(key)) ctx.addIssue({ code: 'custom', path: [key], message: `${JSON.stringify(key)} is not a valid variable name (letters, digits and _, not starting with a digit)` });
      }
    })
    .transform((value) => ({ ...(value ?? {}) }));
}

const stepFields = {
  type: z.string({ error: required('Command') }).refine((value) => value === 'Command', {
    error: (issue: IssueInput) => `unsupported step type ${JSON.stringify(issue.input)}; supported step types: Command`,
  }),
  name: text().optional(),
  command: text('a command or a script'),
  timeoutInSeconds: positiveInt.optional(),
  failImmediatelyOnError: bool.optional(),
  shell: shell.optional(),
  runAs: text().optional(),
};

export const failureStepSchema = z.strictObject(stepFields, { error: required('a step (a map)') });
const stepSchema = z.strictObject(
  { ...stepFields, onFailure: z.array(failureStepSchema, { error: required('a list of Command steps') }).nullish() },
  { error: required('a step (a map)') },
);

const inputArtifactTypes = ['GENERIC_ARTIFACT', 'STAGE_ARTIFACT', 'URL'] as const;
const inputArtifactSchema = z
  .strictObject(
    {
      name: text(),
      type: z.enum(inputArtifactTypes, {
        error: (issue: IssueInput) => (issue.input === undefined ? `is required (${inputArtifactTypes.join(', ')})` : `unsupported input artifact type ${describe(issue.input)}; supported: ${inputArtifactTypes.join(', ')}`),
      }),
      location: text('a path on the build runner'),
      artifactId: text().optional(),
      registryId: text().optional(),
      path: text().optional(),
      version: scalarText.optional(),
      url: text('a URL').optional(),
    },
    { error: required('an input artifact (a map)') },
  )
  .superRefine((artifact, ctx) => {
    const allowed: Record<(typeof inputArtifactTypes)[number], string[]> = {
      GENERIC_ARTIFACT: ['artifactId', 'registryId', 'path', 'version'],
      STAGE_ARTIFACT: [],
      URL: ['url'],
    };
    for (const key of ['artifactId', 'registryId', 'path', 'version', 'url'] as const) {
      if (artifact[key] !== undefined && !allowed[artifact.type].includes(key)) {
        ctx.addIssue({ code: 'custom', path: [key], message: `is not a key of ${artifact.type} input artifacts` });
      }
    }
    if (artifact.type === 'URL' && artifact.url === undefined) ctx.addIssue({ code: 'custom', path: ['url'], message: 'is required for URL input artifacts' });
    if (artifact.type === 'GENERIC_ARTIFACT' && artifact.artifactId === undefined && (artifact.registryId === undefined || artifact.path === undefined || artifact.version === undefined)) {
      ctx.addIssue({ code: 'custom', path: [], message: 'a GENERIC_ARTIFACT needs artifactId, or registryId with path and version' });
    }
  });

const outputArtifactTypes = ['BINARY', 'DOCKER_IMAGE'] as const;
const outputArtifactSchema = z.strictObject(
  {
    name: text(),
    type: z.enum(outputArtifactTypes, { error: (issue: IssueInput) => `unsupported output artifact type ${describe(issue.input)}; supported: ${outputArtifactTypes.join(', ')}` }),
    location: text('an image name:tag or a file path'),
    version: scalarText.optional(),
  },
  { error: required('an output artifact (a map)') },
);

/** Artifact names are unique within inputs and within outputs (later stages refer to them by name). */
function uniqueNames(kind: 'input' | 'output') {
  return (artifacts: Array<{ name: string }>, ctx: z.RefinementCtx) => {
    const seen = new Set<string>();
    artifacts.forEach((artifact, index) => {
      if (seen.has(artifact.name)) ctx.addIssue({ code: 'custom', path: [index, 'name'], message: `duplicate ${kind} artifact name ${JSON.stringify(artifact.name)}` });
      seen.add(artifact.name);
    });
  };
}

export const specSchema = z
  .strictObject(
    {
      version: z.union([z.literal(0.1), z.literal('0.1')], { error: (issue: IssueInput) => (issue.input === undefined ? 'is required (0.1)' : `must be 0.1, not ${describe(issue.input)}`) }),
      component: z.enum(['build', 'command'], { error: (issue: IssueInput) => `unsupported component ${describe(issue.input)}; supported: build, command` }).optional(),
      timeoutInSeconds: positiveInt.optional(),
      runAs: text().optional(),
      shell: shell.optional(),
      failImmediatelyOnError: bool.optional(),
      env: z
        .strictObject(
          {
            variables: nameMap(scalarText),
            vaultVariables: nameMap(text('a secret reference')),
            exportedVariables: z
              .array(
                z.string({ error: required('a variable name') }).superRefine((name, ctx) => {
                  if (!/^[A-Za-z0-9_]+$/.test(name)) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(name)} is not a valid name (ASCII letters, digits and _)` });
                  else if (/^oci/i.test(name)) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(name)} must not start with "oci" (reserved for predefined variables)` });
                }),
                { error: required('a list of variable names') },
              )
              .nullish(),
          },
          { error: required('a map with variables, vaultVariables, exportedVariables') },
        )
        .nullish(),
      inputArtifacts: z.array(inputArtifactSchema, { error: required('a list of input artifacts') }).superRefine(uniqueNames('input')).nullish(),
      steps: z.array(stepSchema, { error: required('a list of steps') }).min(1, { error: 'must have at least one step' }),
      outputArtifacts: z.array(outputArtifactSchema, { error: required('a list of output artifacts') }).superRefine(uniqueNames('output')).nullish(),
    },
    { error: required('a map of build-spec keys') },
  );

export type ParsedSpec = z.output<typeof specSchema>;
