/**
 * @module functions/runtimes
 * The RuntimeDriver drivers by their `functions.runtime` name. A factory throws
 * RuntimeUnavailableError when its tools are missing on this host (functions are then off).
 * Test suite: test/suites/runtime-driver.ts.
 */
import type { RuntimeName } from '../config/config.js';
import { createRuncRuntime } from './runc-runtime.js';
import type { RuntimeDriver } from './runtime-driver.js';

export interface RuntimeSettings {
  /** The data folder (the runc driver keeps images, bundles and its state in `<dataDir>/functions`). */
  dataDir: string;
  /** `functions.addressPool`: addresses of instances, one /30 each. */
  addressPool: string;
}

export type RuntimeFactory = (settings: RuntimeSettings) => Promise<RuntimeDriver>;

export const runtimes: Record<RuntimeName, RuntimeFactory> = {
  runc: createRuncRuntime,
};
