/**
 * @module db/errors
 * Driver errors recognised by their code, on both dialects, so that no caller reads a
 * driver's message text.
 */

/** SQLite (better-sqlite3) and PostgreSQL (pg) codes of a unique-constraint violation. */
const uniqueViolationCodes = new Set(['SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_CONSTRAINT_PRIMARYKEY', '23505']);

/** Did a write fail because a row with the same unique key exists? */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && uniqueViolationCodes.has(code);
}
