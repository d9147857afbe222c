/**
 * @module artifacts/score
 * Score workloads (`apiVersion: score.dev/v1b1`): strict validation that follows the Score
 * JSON schema (the root and every object with a fixed shape allow no extra keys; `metadata`
 * and resource `metadata`/`params` stay open), and the mapping of a workload onto a Slipway
 * function (docs/score.md).
 *
 * Mapping of a workload onto a function:
 *
 * - **Exactly one container.** A function runs one container; a workload with more is refused.
 * - `image` → `image`. `"."` (or an image left to the deployer) takes `options.image` (the
 *   workload artefact's default image), which is then required.
 * - `command` → `command` (overrides ENTRYPOINT), `args` → `args` (overrides CMD).
 * - `variables` → `env`. Placeholders are expanded the way score-go does: `${metadata.<key>}`
 *   (nested keys with `.`, a literal dot written `\.`; non-string values inserted as JSON),
 *   `$$` → `$`. `${resources.…}` is refused: Slipway provisions no resources. Names must be
 *   valid environment variable names (letters, digits, `_`, not starting with a digit).
 * - `resources.limits.memory` (else `resources.requests.memory`) → `memoryMB`: bytes with an
 *   optional K/M/G/T (powers of 1000) or Ki/Mi/Gi/Ti (powers of 1024) unit, converted to MiB,
 *   rounded up, at least 64 (the function minimum), at most 16384. `cpu` is ignored with a
 *   warning (functions have no CPU setting).
 * - `service.ports`: the function contract is one HTTP server on port 8000. None, or one TCP
 *   port whose `targetPort` (defaulting to `port`) is 8000, is accepted; anything else is
 *   refused with an explanation.
 * - `files`, `volumes` and top-level `resources` are refused: the function could not work
 *   without what they provide, and Slipway mounts no files or volumes and provisions nothing.
 * - `livenessProbe`, `readinessProbe` and `before` are ignored with a warning: Slipway checks
 *   readiness itself (the instance answers on port 8000) and there is only one container.
 * - The function name is `metadata.name` unless the caller names the function (`options.name`,
 *   e.g. an automation rule's function list).
 */
import { SlipwayError } from '../http/error-catalog.js';
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';

/** Bad input: the message names the offending path(s). */
export class ArtefactInputError extends SlipwayError {
  override name = 'ArtefactInputError';
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}

const labelPattern = /^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/;
const label = (what: string) => z.string().regex(labelPattern, `${what} must be an RFC1123 label: 2–63 of a-z, 0-9 and -, not starting or ending with -`);
const annotationKeyPattern = /^(([a-z0-9][a-z0-9-]{0,61}[a-z0-9])(\.[a-z0-9][a-z0-9-]{0,61}[a-z0-9])*\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,61}[A-Za-z0-9]$/;
const annotations = z.record(
  z.string().max(316).regex(annotationKeyPattern, 'annotation keys are an optional DNS prefix with / and 2–63 of letters, digits, ., _ and -'),
  z.string(),
);
const port = z.number().int().min(1).max(65_535);

/** Memory: bytes with an optional decimal or binary unit. */
export const memoryPattern = /^(0\.\d+|[1-9]\d*(\.\d+)?)(K|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;
const cpuPattern = /^\d+(?:m|\.\d+)?$/;
const resourcesLimits = z.object({
  memory: z.string().regex(memoryPattern, 'memory is a number of bytes with an optional unit, e.g. 128Mi, 1Gi, 500M').optional(),
  cpu: z.string().regex(cpuPattern, 'cpu is whole or fractional CPUs or milli-CPUs, e.g. 1, 0.5, 250m').optional(),
}).strict();

const fileFields = z.object({
  mode: z.string().regex(/^0?[0-7]{3}$/, 'mode is octal, e.g. 0644').optional(),
  source: z.string().min(1).optional(),
  content: z.string().optional(),
  binaryContent: z.string().optional(),
  noExpand: z.boolean().optional(),
});
const oneFileSource = {
  check: (f: { source?: string; content?: string; binaryContent?: string }) => [f.source, f.content, f.binaryContent].filter((v) => v !== undefined).length === 1,
  message: 'a file takes exactly one of source, content and binaryContent',
};
const fileSpec = fileFields.strict().refine(oneFileSource.check, { message: oneFileSource.message });
/** The deprecated array form (`target` inside each item) is still accepted. */
const fileItem = fileFields.extend({ target: z.string().min(1) }).strict().refine(oneFileSource.check, { message: oneFileSource.message });
const volumeSpec = z.object({
  source: z.string().min(1),
  path: z.string().optional(),
  readOnly: z.boolean().optional(),
}).strict();
const volumeItem = volumeSpec.extend({ target: z.string().min(1) }).strict();

const httpProbe = z.object({
  host: z.string().min(1).optional(),
  scheme: z.enum(['HTTP', 'HTTPS']).optional(),
  path: z.string(),
  port,
  httpHeaders: z.array(z.object({
    name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'header names are letters, digits, _ and -'),
    value: z.string().min(1),
  }).strict()).optional(),
}).strict();
const execProbe = z.object({ command: z.array(z.string()).min(1) }).strict();
const probe = z.object({ httpGet: httpProbe.optional(), exec: execProbe.optional() }).strict()
  .refine((p) => p.httpGet !== undefined || p.exec !== undefined, { message: 'a probe needs httpGet or exec' });

const container = z.object({
  image: z.string().min(1),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  variables: z.record(z.string().min(1).regex(/^[^=]+$/, 'variable names must not contain ='), z.string()).optional(),
  files: z.union([z.record(z.string().min(1), fileSpec), z.array(fileItem)]).optional(),
  volumes: z.union([z.record(z.string().min(1), volumeSpec), z.array(volumeItem)]).optional(),
  resources: z.object({ limits: resourcesLimits.optional(), requests: resourcesLimits.optional() }).strict().optional(),
  livenessProbe: probe.optional(),
  readinessProbe: probe.optional(),
  before: z.record(z.string(), z.object({ ready: z.enum(['started', 'healthy', 'complete']).optional() }).strict()).optional(),
}).strict();

const resourceName = /^[A-Za-z0-9][A-Za-z0-9-]{0,61}[A-Za-z0-9]$/;
const resource = z.object({
  type: z.string().regex(resourceName, 'type: 2–63 of letters, digits and -, not starting or ending with -'),
  class: z.string().regex(resourceName, 'class: 2–63 of letters, digits and -, not starting or ending with -').optional(),
  id: z.string().min(2).max(63).regex(/^[a-z0-9]+(?:-+[a-z0-9]+)*(?:\.[a-z0-9]+(?:-+[a-z0-9]+)*)*$/, 'id: dot-separated labels of a-z, 0-9 and -').optional(),
  metadata: z.looseObject({ annotations: annotations.optional() }).optional(),
  params: z.record(z.string(), z.unknown()).optional(),
}).strict();

export const scoreWorkloadSchema = z.object({
  apiVersion: z.literal('score.dev/v1b1', { error: 'apiVersion must be score.dev/v1b1' }),
  metadata: z.looseObject({ name: label('metadata.name'), annotations: annotations.optional() }),
  service: z.object({
    ports: z.record(label('a port name'), z.object({ port, protocol: z.enum(['TCP', 'UDP']).optional(), targetPort: port.optional() }).strict()).optional(),
  }).strict().optional(),
  containers: z.record(label('a container name'), container)
    .refine((c) => Object.keys(c).length >= 1, { message: 'at least one container is required' }),
  resources: z.record(label('a resource name'), resource).optional(),
}).strict();

export type ScoreWorkload = z.output<typeof scoreWorkloadSchema>;

/** Formats zod issues as `path: message; …` with `prefix` before every path. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], prefix = ''): string {
  return issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    const where = prefix ? (path ? `${prefix}.${path}` : prefix) : path || 'body';
    // A bad map key: zod keeps the reason in the nested issues.
    if (issue.code === 'invalid_key') return `${where}: invalid name: ${issue.issues.map((i) => i.message).join(', ')}`;
    return `${where}: ${issue.message}`;
  }).join('; ');
}

/**
 * Validates a Score workload given as an object, or as YAML or JSON text.
 * @param prefix put before each path in error messages (e.g. `spec`).
 */
export function parseScore(input: unknown, prefix = ''): ScoreWorkload {
  let value = input;
  if (typeof input === 'string') {
    try {
      value = parseYaml(input, { maxAliasCount: 100 });
    } catch (error) {
      throw new ArtefactInputError(`${prefix || 'workload'}: not valid YAML or JSON: ${(error as Error).message.split('\n')[0]}`);
    }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ArtefactInputError(`${prefix || 'workload'}: a Score workload is an object with apiVersion, metadata and containers`);
  }
  const parsed = scoreWorkloadSchema.safeParse(value);
  if (!parsed.success) throw new ArtefactInputError(formatIssues(parsed.error.issues, prefix));
  return parsed.data;
}

// ---- placeholders ----

const placeholder = /\$(\$|\{([a-zA-Z0-9.\-_\\]+)\})/g;

function splitRef(ref: string): string[] {
  return ref.replace(/\\\./g, '\0').split('.').map((part) => part.replace(/\0/g, '.'));
}

/**
 * Expands `${metadata.…}` in `value` (score-go's rules); `$$` → `$`. Throws with `where` in the
 * message for `${resources.…}` and unknown roots or keys.
 */
export function expandPlaceholders(value: string, metadata: Record<string, unknown>, where: string): string {
  const problems: string[] = [];
  const result = value.replace(placeholder, (match, escaped: string, ref: string | undefined) => {
    if (ref === undefined) return escaped; // `$$`
    const parts = splitRef(ref);
    if (parts[0] === 'resources') {
      problems.push(`\${${ref}} refers to a resource, and Slipway provisions no Score resources: set the value directly`);
      return match;
    }
    if (parts[0] !== 'metadata') {
      problems.push(`\${${ref}}: unknown reference root "${parts[0]}" (only metadata; use $$ to escape a literal $)`);
      return match;
    }
    if (parts.length < 2) {
      problems.push(`\${${ref}}: name a metadata key, e.g. \${metadata.name}`);
      return match;
    }
    let current: unknown = metadata;
    for (const part of parts.slice(1)) {
      if (current === null || typeof current !== 'object' || Array.isArray(current) || !Object.hasOwn(current, part)) {
        problems.push(`\${${ref}}: metadata has no key "${parts.slice(1).join('.')}"`);
        return match;
      }
      current = (current as Record<string, unknown>)[part];
    }
    return typeof current === 'string' ? current : JSON.stringify(current);
  });
  if (problems.length > 0) throw new ArtefactInputError(problems.map((p) => `${where}: ${p}`).join('; '));
  return result;
}

// ---- memory ----

const units: Record<string, number> = {
  '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Score memory quantity in MiB, rounded up (not clamped). */
export function memoryToMiB(quantity: string): number {
  const match = memoryPattern.exec(quantity);
  if (!match) throw new ArtefactInputError(`memory "${quantity}" is not a quantity like 128Mi or 1G`);
  const bytes = Number(match[1]) * units[match[3] ?? '']!;
  return Math.ceil(bytes / 2 ** 20 - 1e-9);
}

// ---- mapping ----

export interface ScoreFunctionConfig {
  image: string;
  command?: string[];
  args?: string[];
  env: Record<string, string>;
  memoryMB?: number;
}

export interface ScoreConversion {
  name: string;
  config: ScoreFunctionConfig;
  warnings: string[];
}

const functionNamePattern = /^[A-Za-z](?:[A-Za-z0-9_-]{0,58}[A-Za-z0-9])?$/;
const envNamePattern = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const functionPort = 8000;
const minMemoryMB = 64;
const maxMemoryMB = 16_384;

/**
 * Maps a validated workload onto a function config (see the module comment). Throws
 * ArtefactInputError listing every problem, each with its path.
 */
export function scoreToFunction(workload: ScoreWorkload, options: { image?: string; name?: string } = {}): ScoreConversion {
  const problems: string[] = [];
  const warnings: string[] = [];

  const name = options.name ?? workload.metadata.name;
  if (!functionNamePattern.test(name)) {
    problems.push(`${options.name ? 'function name' : 'metadata.name'}: "${name}" is not a function name (1–60 of letters, digits, - and _, starting with a letter)`);
  }

  const entries = Object.entries(workload.containers);
  if (entries.length !== 1) {
    problems.push(`containers: a function runs exactly one container, the workload has ${entries.length} (${entries.map(([n]) => n).join(', ')})`);
  }
  const [containerName, c] = entries[0] ?? ['', undefined];
  const at = `containers.${containerName}`;
  const config: ScoreFunctionConfig = { image: '', env: {} };

  if (c) {
    if (c.image === '.') {
      if (options.image) config.image = options.image;
      else problems.push(`${at}.image: "." means the image is supplied at deploy time, and none was given (set the artefact's image)`);
    } else {
      config.image = c.image;
    }
    if (c.command) config.command = c.command;
    if (c.args) config.args = c.args;
    for (const [key, value] of Object.entries(c.variables ?? {})) {
      const where = `${at}.variables.${key}`;
      if (!envNamePattern.test(key)) {
        problems.push(`${where}: environment variable names are letters, digits and _, not starting with a digit`);
        continue;
      }
      try {
        config.env[key] = expandPlaceholders(value, workload.metadata, where);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
    const memory = c.resources?.limits?.memory ?? c.resources?.requests?.memory;
    if (memory !== undefined) {
      const which = c.resources?.limits?.memory !== undefined ? 'limits' : 'requests';
      const mib = memoryToMiB(memory);
      if (mib > maxMemoryMB) problems.push(`${at}.resources.${which}.memory: ${memory} is over the function maximum of ${maxMemoryMB}Mi`);
      else config.memoryMB = Math.max(minMemoryMB, mib);
    }
    if (c.resources?.limits?.cpu !== undefined || c.resources?.requests?.cpu !== undefined) {
      warnings.push(`${at}.resources: cpu is ignored (functions have no CPU setting)`);
    }
    if (c.files !== undefined && Object.keys(c.files).length > 0) {
      problems.push(`${at}.files: not supported; Slipway mounts no files into functions (bake them into the image or pass values as variables)`);
    }
    if (c.volumes !== undefined && Object.keys(c.volumes).length > 0) {
      problems.push(`${at}.volumes: not supported; functions have no volumes (their filesystem is read-only and instances are disposable)`);
    }
    if (c.livenessProbe) warnings.push(`${at}.livenessProbe: ignored; Slipway checks that the instance answers on port ${functionPort}`);
    if (c.readinessProbe) warnings.push(`${at}.readinessProbe: ignored; Slipway checks that the instance answers on port ${functionPort}`);
    if (c.before && Object.keys(c.before).length > 0) warnings.push(`${at}.before: ignored; a function runs a single container`);
  }

  const ports = Object.entries(workload.service?.ports ?? {});
  if (ports.length > 1) {
    problems.push(`service.ports: a function serves one HTTP port (${functionPort}); the workload declares ${ports.length} (${ports.map(([n]) => n).join(', ')})`);
  } else if (ports.length === 1) {
    const [portName, p] = ports[0]!;
    const target = p.targetPort ?? p.port;
    if (p.protocol === 'UDP') problems.push(`service.ports.${portName}.protocol: functions serve HTTP over TCP, not UDP`);
    if (target !== functionPort) {
      problems.push(`service.ports.${portName}: the container must listen on port ${functionPort} (the function contract); ${p.targetPort !== undefined ? 'targetPort' : 'port'} is ${target}`);
    }
  }

  const resources = Object.keys(workload.resources ?? {});
  if (resources.length > 0) {
    problems.push(`resources: not supported; Slipway provisions no Score resources (${resources.join(', ')}): give the workload its settings as variables`);
  }

  if (problems.length > 0) throw new ArtefactInputError(problems.join('; '));
  return { name, config, warnings };
}
