/**
 * @module events/patterns
 * The grammar of event types and of the patterns webhooks and streams filter them with, and
 * the check of outgoing webhook URLs. Shared by the bus (which validates what it is given)
 * and the routes (which answer 400 naming the field).
 *
 *   type     segments of `[a-z0-9][a-z0-9_-]*` joined by dots: `run.failed`, `artefact.created`
 *   pattern  the same, where a segment may be `*`, which matches any run of characters
 *            (dots included): `run.*` matches `run.failed` (not `deploy.succeeded`),
 *            `*.failed` matches `run.failed` and `deploy.failed`, `*` matches every type.
 */

const segment = '[a-z0-9][a-z0-9_-]*';
const typeGrammar = new RegExp(`^${segment}(?:\\.${segment})*$`);
const patternGrammar = new RegExp(`^(?:\\*|${segment})(?:\\.(?:\\*|${segment}))*$`);
const maxLength = 100;

/** Why `type` is not an event type, or null when it is one. */
export function eventTypeProblem(type: unknown): string | null {
  if (typeof type !== 'string' || type.length === 0) return 'must be a non-empty string';
  if (type.length > maxLength) return `must be at most ${maxLength} characters`;
  if (!typeGrammar.test(type)) return 'must be dot-separated lowercase segments of letters, digits, "_" and "-" (e.g. run.failed)';
  return null;
}

/** Why `pattern` is not an event pattern, or null when it is one. */
export function patternProblem(pattern: unknown): string | null {
  if (typeof pattern !== 'string' || pattern.length === 0) return 'must be a non-empty string';
  if (pattern.length > maxLength) return `must be at most ${maxLength} characters`;
  if (!patternGrammar.test(pattern)) return 'must be an event type whose segments may be "*" (e.g. run.*, deploy.succeeded, *)';
  return null;
}

const compiled = new Map<string, RegExp>();

/** Does `type` match `pattern` (a valid pattern)? */
export function matchesPattern(pattern: string, type: string): boolean {
  if (pattern === '*') return true;
  if (!pattern.includes('*')) return pattern === type;
  let regex = compiled.get(pattern);
  if (!regex) {
    regex = new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.]/g, '\\.')).join('.*')}$`);
    if (compiled.size > 1000) compiled.clear();
    compiled.set(pattern, regex);
  }
  return regex.test(type);
}

export function matchesAny(patterns: readonly string[], type: string): boolean {
  return patterns.some((pattern) => matchesPattern(pattern, type));
}

/** The SQL LIKE form of a pattern (escape character `\`); `_` is escaped, `%` cannot occur. */
export function likeOf(pattern: string): string {
  return pattern.replace(/_/g, '\\_').replace(/\*/g, '%');
}

const maxUrlLength = 2048;

/** Why `url` is not acceptable as a webhook target, or null when it is. */
export function webhookUrlProblem(url: unknown): string | null {
  if (typeof url !== 'string' || url.length === 0) return 'must be a non-empty string';
  if (url.length > maxUrlLength) return `must be at most ${maxUrlLength} characters`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'must be an absolute http:// or https:// URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'must be an http:// or https:// URL';
  if (!parsed.hostname) return 'must name a host';
  if (parsed.username || parsed.password) return 'must not carry credentials (receivers verify the signature instead)';
  if (parsed.hash) return 'must not have a #fragment';
  return null;
}
