/**
 * @module events/errors
 * The errors of the events part (the routes map them to 400, 404 and 409) and the input checks
 * the outbox and the webhook subscriptions share.
 */
import { patternProblem } from './patterns.js';

/** Bad input; the message starts with the field: `url: must be …`. */
export class EventInputError extends Error {
  override readonly name = 'EventInputError';
}
export class EventNotFoundError extends Error {
  override readonly name = 'EventNotFoundError';
}
export class EventConflictError extends Error {
  override readonly name = 'EventConflictError';
}

const namespacePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkNamespace(namespace: string): void {
  if (!namespacePattern.test(namespace)) throw new EventInputError('namespace: not a namespace name');
}

export function checkTypes(types: readonly string[] | undefined, field = 'type'): void {
  for (const pattern of types ?? []) {
    const problem = patternProblem(pattern);
    if (problem) throw new EventInputError(`${field}: ${problem}`);
  }
}
