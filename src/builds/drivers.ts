/**
 * @module builds/drivers
 * The BuildDriver drivers by their `builds.driver` name, each given its own settings
 * (`builds.<name>`). Test suite: test/suites/build-driver.ts.
 */
import path from 'node:path';
import type { BuildDriverName, Config } from '../config/config.js';
import type { BuildDriver } from './build-driver.js';
import { BuildahDriver } from './buildah-driver.js';

export interface BuildDriverContext {
  /** The data folder: private temp files of builds go to `<dataDir>/builds/tmp`. */
  dataDir: string;
}

export type BuildDriverFactories = { [K in BuildDriverName]: (settings: Config['builds'][K], context: BuildDriverContext) => BuildDriver };

/** buildah on the configured store: builds and pipeline stages share one layer cache. */
export function createBuildahDriver(settings: Config['builds']['buildah'], context: BuildDriverContext): BuildahDriver {
  const { storageRoot, runRoot, storageDriver } = settings;
  return new BuildahDriver({ tmpDir: path.join(context.dataDir, 'builds', 'tmp'), storage: { root: storageRoot, runRoot, driver: storageDriver } });
}

export const buildDrivers: BuildDriverFactories = {
  buildah: createBuildahDriver,
};
