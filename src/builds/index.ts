/**
 * @module builds
 * The public entry of the builds part: what other parts (pipelines) may use. Build specs
 * stay here rather than in pipelines because a plain build (POST /api/builds) runs them too
 * and builds sits below pipelines; pipelines own the build-spec *files* in a repository (which
 * path, which stage), builds owns their format. The composition root and http still import
 * the driver map, the service and the routes by file.
 */
export { BuildError, type BuildDriver, type ImageRoot, type LocalImage, type RegistryAuth } from './build-driver.js';
export {
  BuildSpecError,
  formatBuildSpecWarning,
  placeholderValues,
  predefinedVariables,
  resolveBuildSpec,
  substitutePlaceholders,
  type BuildSpec,
  type FailureStep,
} from './build-spec.js';
export { loadBuildSpec } from './build-spec-file.js';
export { resolveBaseImages } from './base-resolution.js';
export { pushComponent } from './component-artifact.js';
export { dropKeys, splitUnknownKeys } from './unknown-keys.js';
