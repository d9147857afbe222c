/**
 * @module functions/proxy-headers
 * Header filtering of the gateway proxy: which headers are hop-by-hop or recomputed, and the
 * helpers that drop them from flat raw lists and reshape the answer headers.
 */
/** Headers that describe one connection, never forwarded in either direction. */
const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

/**
 * Incoming request headers the proxy drops or recomputes: the hop-by-hop ones, `host` and
 * `x-forwarded-*` (rewritten), `content-length` (re-added when it applies), `expect` (the
 * front server answered any `100-continue` already).
 */
export const recomputed = new Set([...hopByHop, 'host', 'content-length', 'expect', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);

/** Methods for which Node's client would frame an unannounced body as chunked. */
export const bodilessByDefault = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

/** Connection options that are not header names. */
const connectionOptions = new Set(['close', 'keep-alive', 'upgrade']);

/** Removes from a flat [name, value, …] list the headers named in a `Connection` value. */
export function dropNamedInConnection(headers: string[], connection: string): void {
  if (connection === 'keep-alive' || connection === 'close') return; // the usual values, nothing named
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    if (!name || connectionOptions.has(name)) continue;
    for (let i = headers.length - 2; i >= 0; i -= 2) {
      if (headers[i]!.toLowerCase() === name) headers.splice(i, 2);
    }
  }
}

/** The instance's answer headers as a flat list for `writeHead`, without hop-by-hop ones. */
export function answerHeaders(raw: string[]): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (hopByHop.has(lower)) {
      if (lower === 'connection') connection = connection === undefined ? raw[i + 1]! : `${connection}, ${raw[i + 1]!}`;
      continue;
    }
    out.push(name, raw[i + 1]!);
  }
  if (connection !== undefined) dropNamedInConnection(out, connection);
  return out;
}

/** Flat header list to the object shape of `IncomingMessage.headers` (lower-case names, set-cookie as a list). */
export function headerObject(flat: string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase();
    const value = flat[i + 1]!;
    const prior = out[name];
    if (prior === undefined) out[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(prior)) prior.push(value);
    else out[name] = `${prior}, ${value}`;
  }
  return out;
}

/** Extra headers with lower-case names (the same object when they already are). */
export function lowerCaseNames(extra: Record<string, string> | undefined): Record<string, string> | undefined {
  if (extra === undefined) return undefined;
  for (const name in extra) {
    if (name !== name.toLowerCase()) {
      const out: Record<string, string> = {};
      for (const key in extra) out[key.toLowerCase()] = extra[key]!;
      return out;
    }
  }
  return extra;
}
