/**
 * @module functions/errors
 * The domain errors of the functions part; `routes.ts` maps each to its HTTP status.
 */
export class FunctionNotFoundError extends Error {}
export class FunctionInputError extends Error {}
export class FunctionConflictError extends Error {}
/** The function cannot answer: 502 with the reason. */
export class FunctionFailedError extends Error {}
/** No instance answered in time: 504. */
export class FunctionTimeoutError extends Error {}
