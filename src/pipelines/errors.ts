/**
 * @module pipelines/errors
 * The pipelines part's domain errors (bad input, unknown pipeline/run, conflicting state);
 * their HTTP status comes from the error catalog. Re-exported by service.ts.
 */
import { SlipwayError } from '../http/error-catalog.js';

export class PipelineInputError extends SlipwayError {
  constructor(message: string) {
    super('BAD_REQUEST', message);
  }
}
export class PipelineNotFoundError extends SlipwayError {
  constructor(message: string) {
    super('NOT_FOUND', message);
  }
}
export class PipelineConflictError extends SlipwayError {
  constructor(message: string) {
    super('CONFLICT', message);
  }
}
