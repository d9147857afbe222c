/**
 * @module config/duration
 * Durations as the config file, the API and the CLI write them (`250ms`, `30s`, `15m`, `24h`,
 * `2d`). Pure (no node imports): the api.ts schemas use it, and they load in the browser.
 */
export const durationPattern = /^(\d+)(ms|s|m|h|d)$/;

/** Milliseconds of `30s`, `15m`, …; a bare number is seconds. Throws on anything else. */
export function parseDuration(value: number | string): number {
  if (typeof value === 'number') return value * 1000;
  const match = durationPattern.exec(value);
  if (!match) throw new Error(`not a duration: ${value}`);
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  return Number(match[1]) * units[match[2]!]!;
}
