/**
 * @module credentials/reference
 * Owns the image-name side of external registry credentials: normalising an image reference
 * the way Docker does, normalising a stored registry prefix, and picking the stored registry
 * whose prefix matches an image (longest prefix, on `/` boundaries).
 *
 * The grammar follows CNCF Distribution's `reference` package (`regexp.go`, `normalize.go`).
 */

/** An image reference reduced to where it lives: no tag, no digest, Docker Hub made explicit. */
export interface NormalisedReference {
  /** Lowercase host with optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`. */
  registry: string;
  /** Repository path inside the registry, e.g. `library/alpine`. */
  path: string;
  /** `registry/path`: the string prefixes are matched against. */
  full: string;
}

export const DOCKER_HUB = 'docker.io';

// Every spelling Docker clients use for Docker Hub; all are stored and matched as `docker.io`.
const dockerHubAliases = new Set([DOCKER_HUB, 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

// distribution/reference: path component, separators `.`, `_`, `__`, or runs of `-`.
const pathComponent = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const domainName = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*$/;
const ipv6Host = /^\[[a-fA-F0-9:]+\]$/;
const tagPattern = /^[\w][\w.-]{0,127}$/;
const digestPattern = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}$/;
const maxNameLength = 255;

function invalid(kind: string, input: string, reason: string): Error {
  return new Error(`invalid ${kind} ${JSON.stringify(input)}: ${reason}`);
}

/**
 * Docker's rule for "is the first component a host?": it contains `.` or `:`, is `localhost`,
 * or has an uppercase letter (a repository path never may, so Docker reads it as a host).
 */
function looksLikeHost(component: string): boolean {
  return /[.:]/.test(component) || component === 'localhost' || component !== component.toLowerCase();
}

/** Validates `host[:port]` and returns it lowercased, with Docker Hub aliases folded. */
function normaliseHost(host: string, kind: string, input: string): string {
  let name = host;
  let port: string | undefined;
  const portMatch = /^(.*):(\d+)$/.exec(host);
  if (portMatch) {
    name = portMatch[1]!;
    port = portMatch[2]!;
    const value = Number(port);
    if (value < 1 || value > 65535) throw invalid(kind, input, `port ${port} is out of range`);
  }
  if (!domainName.test(name) && !ipv6Host.test(name)) throw invalid(kind, input, `${JSON.stringify(host)} is not a valid registry host`);
  const lower = name.toLowerCase() + (port === undefined ? '' : `:${port}`);
  return dockerHubAliases.has(lower) ? DOCKER_HUB : lower;
}

function checkPath(components: string[], kind: string, input: string): void {
  for (const component of components) {
    if (component === '') throw invalid(kind, input, 'empty path component');
    if (!pathComponent.test(component)) {
      const reason = component !== component.toLowerCase() ? 'repository path must be lowercase' : `${JSON.stringify(component)} is not a valid path component`;
      throw invalid(kind, input, reason);
    }
  }
}

/**
 * Normalises an image reference: `alpine` → `docker.io/library/alpine`, `user/app` →
 * `docker.io/user/app`, Docker Hub aliases → `docker.io`, host lowercased, `:tag` and
 * `@digest` stripped (after being validated). Throws an Error naming the reference when it
 * is not a valid reference.
 */
export function normaliseReference(ref: string): NormalisedReference {
  const kind = 'image reference';
  if (typeof ref !== 'string' || ref.length === 0) throw invalid(kind, String(ref), 'empty');
  if (/\s/.test(ref)) throw invalid(kind, ref, 'contains whitespace');

  let name = ref;
  const at = name.indexOf('@');
  if (at !== -1) {
    const digest = name.slice(at + 1);
    if (!digestPattern.test(digest)) throw invalid(kind, ref, `${JSON.stringify(digest)} is not a valid digest`);
    name = name.slice(0, at);
  }
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) {
    const tag = name.slice(colon + 1);
    if (!tagPattern.test(tag)) throw invalid(kind, ref, `${JSON.stringify(tag)} is not a valid tag`);
    name = name.slice(0, colon);
  }
  if (name.length === 0) throw invalid(kind, ref, 'missing repository name');
  if (name.length > maxNameLength) throw invalid(kind, ref, `name longer than ${maxNameLength} characters`);

  const components = name.split('/');
  let registry = DOCKER_HUB;
  if (components.length > 1 && looksLikeHost(components[0]!)) {
    registry = normaliseHost(components.shift()!, kind, ref);
  }
  checkPath(components, kind, ref);
  // Docker Hub's official images live under `library/`; `alpine` means `library/alpine`.
  if (registry === DOCKER_HUB && components.length === 1) components.unshift('library');
  const path = components.join('/');
  return { registry, path, full: `${registry}/${path}` };
}

/**
 * Normalises a stored registry prefix: `host[:port][/path…]`, optionally written as a URL
 * (`https://registry.example.com/team/`) or a Docker config key (`https://index.docker.io/v1/`).
 * The host is required (`docker.io/myorg`, not `myorg`), lowercased, and Docker Hub aliases
 * become `docker.io`. Unlike references, no `library/` is inserted: `docker.io/myorg` is an
 * organisation prefix. Throws an Error naming the prefix when it is not valid.
 */
export function normalisePrefix(prefix: string): string {
  const kind = 'registry prefix';
  if (typeof prefix !== 'string' || prefix.trim().length === 0) throw invalid(kind, String(prefix), 'empty');
  let rest = prefix.trim();
  const scheme = /^https?:\/\//i.exec(rest);
  if (scheme) rest = rest.slice(scheme[0].length);
  rest = rest.replace(/\/+$/, '');
  if (/\s/.test(rest)) throw invalid(kind, prefix, 'contains whitespace');
  if (/[@?#]/.test(rest)) throw invalid(kind, prefix, 'a prefix has no tag, digest, query or fragment');

  const components = rest.split('/');
  const host = components.shift()!;
  if (host === '') throw invalid(kind, prefix, 'missing registry host');
  if (!looksLikeHost(host)) {
    throw invalid(kind, prefix, `must start with a registry host (e.g. docker.io/${host}); ${JSON.stringify(host)} is not one`);
  }
  if (components.some((component) => component.includes(':'))) throw invalid(kind, prefix, 'a prefix has no tag, digest, query or fragment');
  const registry = normaliseHost(host, kind, prefix);
  // A URL-style address such as Docker's `https://index.docker.io/v1/` names the registry,
  // not a repository called `v1`.
  if (scheme && components.length === 1 && /^v[12]$/.test(components[0]!)) components.pop();
  checkPath(components, kind, prefix);
  return [registry, ...components].join('/');
}

/**
 * Picks the entry whose prefix matches the image reference, longest prefix first, matching on
 * path-component boundaries: `registry.example.com/team` matches `registry.example.com/team`
 * and `registry.example.com/team/app`, never `registry.example.com/teamx/app`. Hosts compare
 * case-insensitively. On equal prefixes the earlier entry wins. Entries whose stored prefix is
 * invalid are skipped (one bad row must not break every pull); an invalid `ref` throws.
 */
export function matchRegistry<T extends { prefix: string }>(ref: string, entries: T[]): T | undefined {
  const { full } = normaliseReference(ref);
  let best: T | undefined;
  let bestLength = -1;
  for (const entry of entries) {
    let prefix: string;
    try {
      prefix = normalisePrefix(entry.prefix);
    } catch {
      continue;
    }
    const matches = full === prefix || full.startsWith(`${prefix}/`);
    if (matches && prefix.length > bestLength) {
      best = entry;
      bestLength = prefix.length;
    }
  }
  return best;
}
