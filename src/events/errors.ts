/**
 * @module events/errors
 * The errors of the events part (the routes map them to 400, 404 and 409) and the input checks
 * the outbox and the webhook subscriptions share.
 */
import { SlipwayError } from '../http/error-catalog.js';
import { patternProblem } from './patterns.js';

/** Bad input; the message starts with the field: `url: must be …`. */
export class EventInputError extends SlipwayError {
  override readonly name = 'EventInputError';
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}
export class EventNotFoundError extends SlipwayError {
  override readonly name = 'EventNotFoundError';
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}
export class EventConflictError extends SlipwayError {
  override readonly name = 'EventConflictError';
  constructor(message: string) {
    super('CONFLICT', message);
  }
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
