/**
 * @module functions/errors
 * The domain errors of the functions part; `routes.ts` maps each to its HTTP status.
 */
import { SlipwayError, type ErrorCode } from '../http/error-catalog.js';

/** A domain error class for one code. */
function withCode(code: ErrorCode) {
  return class extends SlipwayError {
    constructor(message: string) {
      super(code, message);
    }
  };
}

export class FunctionNotFoundError extends withCode('NOT_FOUND') {}
export class FunctionInputError extends withCode('BAD_REQUEST') {}
export class FunctionConflictError extends withCode('CONFLICT') {}
/** The function cannot answer: 502 with the reason. */
export class FunctionFailedError extends withCode('FUNCTION_FAILED') {}
/** No instance answered in time: 504. */
export class FunctionTimeoutError extends withCode('FUNCTION_TIMEOUT') {}
