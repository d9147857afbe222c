/**
 * @module logs/mask
 * Masking secrets in log lines: whoever writes a build's, a step's or a push's output into a
 * log passes every line through a masker made from the secret values in play (build secrets,
 * vault variables, registry passwords and their base64 `user:password` forms). A second
 * defence: secrets are never handed to a tool on its command line in the first place.
 */

export const maskedValue = '****';

/**
 * Returns a function that replaces every occurrence of any of `values` in a line with `****`
 * (longest first, so a secret containing another is masked whole). Empty values are ignored;
 * each line (6+ characters) of a multi-line value is masked on its own too.
 */
export function createMasker(values: Iterable<string>): (line: string) => string {
  const candidates: string[] = [];
  for (const value of values) {
    candidates.push(value);
    // Logs arrive line by line: a multi-line secret is also masked one line at a time.
    if (/[\r\n]/.test(value)) for (const part of value.split(/\r\n|\r|\n/)) if (part.trim().length >= 6) candidates.push(part);
  }
  const secrets = [...new Set(candidates.filter((value) => value.length > 0))].sort((a, b) => b.length - a.length);
  if (secrets.length === 0) return (line) => line;
  return (line) => {
    let masked = line;
    for (const secret of secrets) if (masked.includes(secret)) masked = masked.split(secret).join(maskedValue);
    return masked;
  };
}
