/**
 * Build specs (OCI DevOps `build_spec.yaml`, formats.md §1): real-world examples parse into the
 * normalised shape; bad YAML, unsupported step types, wrong types and missing fields are errors
 * naming the key and line; unknown keys are warnings naming file, key and line (errors with
 * `strict`); `${…}` placeholders are filled from predefined variables, parameters
 * and exported variables; the file is found in a checkout and never outside it.
 */
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  BuildSpecError,
  formatBuildSpecWarning,
  parseBuildSpec,
  placeholderValues,
  predefinedVariables,
  readBuildSpec,
  resolveBuildSpec,
  stepEnvironment,
  substitutePlaceholders,
} from '../src/builds/build-spec.js';
import { findBuildSpec, loadBuildSpec } from '../src/builds/build-spec-file.js';
import { tempDir } from './helpers/harness.js';

const timeout = 60_000;

/** After oracle-devrel/oci-devops-examples `oci-devops-golan-sample/build_spec.yaml` (formats.md §1.5). */
const golangSample = `version: 0.1
component: build
timeoutInSeconds: 6000
runAs: root
shell: bash
env:
  # these are local variables to the build config
  variables:

  # the value of a vaultVariable is the secret-id (in OCI ID format) stored in the OCI Vault service
  vaultVariables:

  # exportedVariables are made available to use as parameters in sucessor Build Pipeline stages
  exportedVariables:
    - BUILDRUN_HASH

inputArtifacts:
    - name: golan-cli
      type: URL
      url: https://go.dev/dl/go1.17.8.linux-amd64.tar.gz
      location: \${OCI_PRIMARY_SOURCE_DIR}/gocli.tar.gz

steps:
  - type: Command
    name: "Define unique image tag"
    timeoutInSeconds: 40
    command: |
      export BUILDRUN_HASH=\`echo \${OCI_BUILD_RUN_ID} | rev | cut -c 1-7\`
      echo "BUILDRUN_HASH: " $BUILDRUN_HASH

#You may skip below and can run the build inside the docker container itself,while building the docker image.
  - type: Command
    timeoutInSeconds: 600
    name: "Build the app"
    command: |
      cd \${OCI_PRIMARY_SOURCE_DIR}
      rm -rf /usr/local/go && tar -C /usr/local -xzf gocli.tar.gz
      export PATH=$PATH:/usr/local/go/bin
      go build -o main .

    onFailure:
      - type: Command
        command: |
          echo "Handling Failure"
          echo "Failure successfully handled"
        timeoutInSeconds: 40
        runAs: root

  - type: Command
    timeoutInSeconds: 1200
    name: "Build container image"
    command: |
      cd \${OCI_PRIMARY_SOURCE_DIR}
      docker build --pull --rm -t golan_app_base .

outputArtifacts:
  - name: golan_app_base_image
    type: DOCKER_IMAGE
    # this location tag doesn't effect the tag used to deliver the container image
    location: golan_app_base:latest

  - name: golan_kube_manifest
    type: BINARY
    location: \${OCI_PRIMARY_SOURCE_DIR}/deployment_manifest.yaml
`;

/** After `oci-build-examples/oci-build-caching/build_spec.yaml`: variables, no runAs, onFailure without name. */
const cachingSample = `version: 0.1
component: build
timeoutInSeconds: 1000
shell: bash
env:
  variables:
    BUILD_CACHE_OS_BUCKET_NAME: build-cache
    BUILD_CACHE_OS_FILE_NAME: cache.zip
    BUILDX_VERSION: 0.8.2
  exportedVariables:
    - BUILDRUN_HASH

steps:
  - type: Command
    name: "Define unique image tag"
    timeoutInSeconds: 140
    command: |
      echo "OCI_BUILD_RUN_ID: \${OCI_BUILD_RUN_ID}"
      export BUILDRUN_HASH=\`echo \${OCI_BUILD_RUN_ID} | rev | cut -c 1-7\`
  - type: Command
    name: "Docker build"
    command: |
      docker buildx build -t="hello-world-java" --load .
    onFailure:
      - type: Command
        command: |
          echo "Handling Failure"
outputArtifacts:
  - name: Build_output_image
    type: DOCKER_IMAGE
    location: "hello-world-java"
`;

/** After `Dharmesh78/buildspec_Example3/build_spec.yaml`: quoted keys, an output `version: \${var}`. */
const parameterSample = `version: 0.1
component: build
timeoutInSeconds: 6000
runAs: root
shell: bash
env:
  variables:
    "var" : "20"   #build run paramater
  exportedVariables:
    - var

steps:
  - type: Command
    name: "Build Source 1"
    timeoutInSeconds: 400
    command: |
      var=22
      javac HelloWorld.java

outputArtifacts:
  - name: outputEg3
    version: \${var}
    type: BINARY
    location: HelloWorld.class`;

function parseError(text: string, options: { strict?: boolean } = {}): BuildSpecError {
  try {
    parseBuildSpec(text, options);
  } catch (error) {
    assert.ok(error instanceof BuildSpecError, String(error));
    return error;
  }
  assert.fail('expected a BuildSpecError');
}

describe('parseBuildSpec', () => {
  test('parses the golang sample into the normalised shape', { timeout }, () => {
    const spec = parseBuildSpec(golangSample);
    assert.equal(spec.version, '0.1');
    assert.equal(spec.component, 'build');
    assert.equal(spec.timeoutInSeconds, 6000);
    assert.equal(spec.runAs, 'root');
    assert.equal(spec.shell, 'bash');
    assert.deepEqual(spec.env, { variables: {}, vaultVariables: {}, exportedVariables: ['BUILDRUN_HASH'] });
    assert.deepEqual(spec.inputArtifacts, [
      { name: 'golan-cli', type: 'URL', url: 'https://go.dev/dl/go1.17.8.linux-amd64.tar.gz', location: '${OCI_PRIMARY_SOURCE_DIR}/gocli.tar.gz' },
    ]);
    assert.deepEqual(
      spec.steps.map((step) => [step.name, step.timeoutInSeconds, step.onFailure.length]),
      [
        ['Define unique image tag', 40, 0],
        ['Build the app', 600, 1],
        ['Build container image', 1200, 0],
      ],
    );
    assert.match(spec.steps[0]!.command, /^export BUILDRUN_HASH=`echo \$\{OCI_BUILD_RUN_ID\} \| rev \| cut -c 1-7`\n/);
    assert.deepEqual(spec.steps[1]!.onFailure[0], {
      type: 'Command',
      name: 'Build the app: on failure 1',
      command: 'echo "Handling Failure"\necho "Failure successfully handled"\n',
      timeoutInSeconds: 40,
      runAs: 'root',
    });
    assert.deepEqual(spec.outputArtifacts, [
      { name: 'golan_app_base_image', type: 'DOCKER_IMAGE', location: 'golan_app_base:latest' },
      { name: 'golan_kube_manifest', type: 'BINARY', location: '${OCI_PRIMARY_SOURCE_DIR}/deployment_manifest.yaml' },
    ]);
  });

  test('parses the caching and parameter samples; defaults fill what is left out', { timeout }, () => {
    const caching = parseBuildSpec(cachingSample);
    assert.deepEqual(caching.env.variables, { BUILD_CACHE_OS_BUCKET_NAME: 'build-cache', BUILD_CACHE_OS_FILE_NAME: 'cache.zip', BUILDX_VERSION: '0.8.2' });
    assert.equal(caching.runAs, undefined);
    assert.equal(caching.steps[1]!.onFailure[0]!.name, 'Docker build: on failure 1');
    assert.deepEqual(caching.inputArtifacts, []);

    const parameter = parseBuildSpec(parameterSample);
    assert.deepEqual(parameter.env.variables, { var: '20' });
    assert.deepEqual(parameter.outputArtifacts, [{ name: 'outputEg3', type: 'BINARY', location: 'HelloWorld.class', version: '${var}' }]);

    const minimal = parseBuildSpec('version: "0.1"\nsteps:\n  - type: Command\n    command: make\n');
    assert.deepEqual(minimal, {
      version: '0.1',
      component: 'build',
      shell: 'bash',
      env: { variables: {}, vaultVariables: {}, exportedVariables: [] },
      inputArtifacts: [],
      steps: [{ type: 'Command', name: 'Step 1', command: 'make', onFailure: [] }],
      outputArtifacts: [],
    });
  });

  test('numbers and booleans in env.variables are kept as written', { timeout }, () => {
    const spec = parseBuildSpec('version: 0.1\nenv:\n  variables:\n    RETRIES: 3\n    DEBUG: true\n    RATIO: 0.50\nsteps:\n  - type: Command\n    command: make\n');
    assert.deepEqual(spec.env.variables, { RETRIES: '3', DEBUG: 'true', RATIO: '0.5' });
  });

  test('bad YAML is an error with its line', { timeout }, () => {
    const error = parseError('version: 0.1\nsteps:\n  - type: Command\n    command: "unterminated\n  - type: Command\n');
    assert.match(error.message, /^build_spec\.yaml is not a valid build spec: line \d+: invalid YAML/);
    assert.ok(error.line !== undefined && error.line >= 4, `line ${error.line}`);

    const tabs = parseError('version: 0.1\nsteps:\n\t- type: Command\n');
    assert.equal(tabs.line, 3);

    const duplicate = parseError('version: 0.1\nsteps:\n  - type: Command\n    command: a\n    command: b\n');
    assert.equal(duplicate.line, 5);
    assert.match(duplicate.message, /unique/);
  });

  const withUnknownKeys = `version: 0.1
steps:
  - type: Command
    name: build
    comand: make
outputArtifacts:
  - name: bin
    type: BINARY
    location: out/app
    digest: sha256:abc
imageName: app
`;

  test('with strict, unknown keys are errors naming the key and its line, at every level', { timeout }, () => {
    const error = parseError(withUnknownKeys, { strict: true });
    assert.deepEqual(
      error.issues.map((issue) => [issue.line, issue.path, issue.message]),
      [
        [3, 'steps[0].command', 'is required (a command or a script)'],
        [5, 'steps[0].comand', 'unknown key in steps[0] "comand"'],
        [10, 'outputArtifacts[0].digest', 'unknown key in outputArtifacts[0] "digest"'],
        [11, 'imageName', 'unknown top-level key "imageName"'],
      ],
    );
    assert.match(error.message, /line 11: imageName: unknown top-level key "imageName"/);
  });

  test('without strict, unknown keys are warnings (file, line, key); a missing field next to them is still an error', { timeout }, () => {
    // The missing command is refused, the unknown keys are not among the errors.
    const error = parseError(withUnknownKeys);
    assert.deepEqual(error.issues.map((issue) => [issue.line, issue.path, issue.message]), [[3, 'steps[0].command', 'is required (a command or a script)']]);

    // Keys OCI DevOps ignores, as public specs carry them.
    const { spec, warnings } = readBuildSpec(`version: 0.1
component: build
steps:
  - type: Command
    name: compile
    image: golang:1.22
    command: go build -o app .
outputArtifacts:
  - name: app-image
    type: DOCKER_IMAGE
    location: app:latest
    registryId: ocid1.artifactrepository.oc1..example
    path: team/app
    imageUri: fra.ocir.io/ns/app
`, { fileName: 'ci/build_spec.yml' });
    assert.equal(spec.steps[0]!.command, 'go build -o app .');
    assert.deepEqual(spec.outputArtifacts, [{ name: 'app-image', type: 'DOCKER_IMAGE', location: 'app:latest' }]);
    assert.deepEqual(
      warnings.map((w) => [w.file, w.line, w.key, w.path]),
      [
        ['ci/build_spec.yml', 6, 'image', 'steps[0].image'],
        ['ci/build_spec.yml', 12, 'registryId', 'outputArtifacts[0].registryId'],
        ['ci/build_spec.yml', 13, 'path', 'outputArtifacts[0].path'],
        ['ci/build_spec.yml', 14, 'imageUri', 'outputArtifacts[0].imageUri'],
      ],
    );
    assert.equal(formatBuildSpecWarning(warnings[0]!), 'warning: ci/build_spec.yml line 6: steps[0].image: unknown key in steps[0] "image" (ignored)');
    assert.equal(readBuildSpec(golangSample).warnings.length, 0);

    // Wrong types stay errors, unknown keys or not.
    const wrongType = parseError('version: 0.1\nextra: 1\nsteps:\n  - type: Command\n    command: make\n    timeoutInSeconds: soon\n');
    assert.deepEqual(wrongType.issues.map((issue) => [issue.line, issue.path]), [[6, 'steps[0].timeoutInSeconds']]);
    assert.match(wrongType.message, /must be a whole number of seconds, not the text "soon"/);
  });

  test('an input artifact with a url and no type is taken as URL (a warning); strict refuses it', { timeout }, () => {
    const text = `version: 0.1
inputArtifacts:
  - name: golang
    url: https://go.dev/dl/go1.22.linux-amd64.tar.gz
    location: /workspace/go.tgz
  - name: other
    location: /tmp/x
steps:
  - type: Command
    command: make
`;
    const missing = parseError(text);
    assert.deepEqual(missing.issues.map((issue) => [issue.line, issue.path, issue.message]), [[6, 'inputArtifacts[1].type', 'is required (GENERIC_ARTIFACT, STAGE_ARTIFACT, URL)']]);

    const lenient = readBuildSpec(text.replace(/  - name: other\n    location: \/tmp\/x\n/, ''));
    assert.deepEqual(lenient.spec.inputArtifacts, [{ name: 'golang', type: 'URL', location: '/workspace/go.tgz', url: 'https://go.dev/dl/go1.22.linux-amd64.tar.gz' }]);
    assert.deepEqual(lenient.warnings.map((w) => [w.line, w.key, w.path, w.message]), [[3, 'type', 'inputArtifacts[0].type', 'no type; taken as URL (the artifact has a url)']]);

    const strict = parseError(text, { strict: true });
    assert.equal(strict.issues[0]!.path, 'inputArtifacts[0].type');
    assert.equal(strict.issues[0]!.line, 3);
    assert.equal(strict.issues[0]!.message, 'is required (GENERIC_ARTIFACT, STAGE_ARTIFACT, URL)');
  });

  test('unsupported step, artifact and shell types name the supported ones', { timeout }, () => {
    const error = parseError(`version: 0.1
shell: zsh
steps:
  - type: VulnerabilityAudit
    name: scan
    command: x
  - type: Command
    command: make
    onFailure:
      - type: Script
        command: echo failed
outputArtifacts:
  - name: a
    type: HELM_CHART
    location: chart.tgz
`);
    const byPath = Object.fromEntries(error.issues.map((issue) => [issue.path, issue]));
    assert.equal(byPath['shell']!.message, 'unsupported shell the text "zsh"; supported: bash, sh');
    assert.equal(byPath['steps[0].type']!.message, 'unsupported step type "VulnerabilityAudit"; supported step types: Command');
    assert.equal(byPath['steps[0].type']!.line, 4);
    assert.equal(byPath['steps[1].onFailure[0].type']!.message, 'unsupported step type "Script"; supported step types: Command');
    assert.equal(byPath['steps[1].onFailure[0].type']!.line, 10);
    assert.match(byPath['outputArtifacts[0].type']!.message, /supported: BINARY, DOCKER_IMAGE/);
  });

  test('bad values: version, timeouts, variable names, exported names, duplicates, missing steps', { timeout }, () => {
    const error = parseError(`version: 1.0
timeoutInSeconds: 1.5
env:
  variables:
    9LIVES: x
  exportedVariables:
    - OCI_SECRET
    - ok-name
inputArtifacts:
  - name: tool
    type: URL
    location: /tmp/tool
outputArtifacts:
  - name: a
    type: BINARY
    location: a
  - name: a
    type: BINARY
    location: b
`);
    const byPath = Object.fromEntries(error.issues.map((issue) => [issue.path, issue]));
    assert.equal(byPath['version']!.message, 'must be 0.1, not number 1');
    assert.equal(byPath['version']!.line, 1);
    assert.equal(byPath['timeoutInSeconds']!.message, 'must be a whole number of seconds');
    assert.match(byPath['env.variables.9LIVES']!.message, /not a valid variable name/);
    assert.equal(byPath['env.variables.9LIVES']!.line, 5);
    assert.match(byPath['env.exportedVariables[0]']!.message, /must not start with "oci"/);
    assert.match(byPath['env.exportedVariables[1]']!.message, /not a valid name/);
    assert.equal(byPath['inputArtifacts[0].url']!.message, 'is required for URL input artifacts');
    assert.match(byPath['outputArtifacts[1].name']!.message, /duplicate output artifact name "a"/);
    assert.equal(byPath['outputArtifacts[1].name']!.line, 17);
    assert.equal(byPath['steps']!.message, 'is required (a list of steps)');

    assert.match(parseError('').message, /is empty/);
    assert.match(parseError('- just\n- a list\n').message, /must be a map of build-spec keys, not a list/);
    assert.match(parseError('version: 0.1\nsteps: []\n').message, /steps: must have at least one step/);
  });
});

describe('placeholders', () => {
  const predefined = predefinedVariables({
    buildRunId: 'ocid1.devopsbuildrun.oc1.eu-frankfurt-1.amaaaaaabcdefg1234567',
    pipelineId: 'pipeline-1',
    stageName: 'build',
    workspaceDir: '/workspace',
    primarySourceName: 'app',
    source: { commit: 'c0ffee', branch: 'main', url: 'https://git.example.com/team/app.git' },
  });

  test('predefined variables follow formats.md §1.2', { timeout }, () => {
    assert.deepEqual(predefined, {
      OCI_STAGE_ID: '',
      OCI_PIPELINE_ID: 'pipeline-1',
      OCI_BUILD_RUN_ID: 'ocid1.devopsbuildrun.oc1.eu-frankfurt-1.amaaaaaabcdefg1234567',
      OCI_BUILD_STAGE_NAME: 'build',
      OCI_TRIGGER_COMMIT_HASH: '',
      OCI_TRIGGER_SOURCE_BRANCH_NAME: '',
      OCI_TRIGGER_SOURCE_URL: '',
      OCI_TRIGGER_EVENT_TYPE: '',
      OCI_WORKSPACE_DIR: '/workspace',
      OCI_PRIMARY_SOURCE_DIR: '/workspace/app',
      OCI_PRIMARY_SOURCE_NAME: 'app',
      OCI_PRIMARY_SOURCE_COMMIT_HASH: 'c0ffee',
      OCI_PRIMARY_SOURCE_SOURCE_URL: 'https://git.example.com/team/app.git',
      OCI_PRIMARY_SOURCE_SOURCE_BRANCH_NAME: 'main',
    });
    assert.equal(predefinedVariables({ buildRunId: 'r' }).OCI_PRIMARY_SOURCE_DIR, '/workspace/source');
  });

  test('substitutePlaceholders fills known names, keeps or refuses unknown ones, honours $${…}', { timeout }, () => {
    const values = { A: 'one', B_2: 'two' };
    assert.equal(substitutePlaceholders('${A}-${B_2}-${A}', values), 'one-two-one');
    assert.equal(substitutePlaceholders('$${A} ${MISSING} $A {A}', values), '${A} ${MISSING} $A {A}');
    assert.throws(() => substitutePlaceholders('x/${MISSING}/${A}', values, { strict: true, where: 'outputArtifacts[0].location' }), (error: unknown) => {
      assert.ok(error instanceof BuildSpecError);
      assert.equal(error.message, 'outputArtifacts[0].location: no value for ${MISSING} (not a predefined variable, parameter or exported variable)');
      return true;
    });
    // A value is inserted as is, never expanded again.
    assert.equal(substitutePlaceholders('${A}', { A: '${B_2}', B_2: 'no' }), '${B_2}');
  });

  test('resolveBuildSpec fills artifacts and variables, never commands; predefined names beat parameters', { timeout }, () => {
    const spec = parseBuildSpec(golangSample.replace('variables:\n', 'variables:\n    IMAGE: "registry.local/app:${BUILDRUN_HASH}"\n'));
    const values = placeholderValues(predefined, { BUILDRUN_HASH: 'param', OCI_WORKSPACE_DIR: '/hijack' }, { BUILDRUN_HASH: '1234567' });
    const resolved = resolveBuildSpec(spec, values);
    assert.equal(resolved.inputArtifacts[0]!.location, '/workspace/app/gocli.tar.gz');
    assert.equal(resolved.outputArtifacts[1]!.location, '/workspace/app/deployment_manifest.yaml');
    assert.equal(resolved.env.variables.IMAGE, 'registry.local/app:1234567');
    assert.equal(resolved.steps[1]!.command, spec.steps[1]!.command);
    assert.match(resolved.steps[1]!.command, /cd \$\{OCI_PRIMARY_SOURCE_DIR\}/);
    // The parsed spec is left as it was.
    assert.equal(spec.outputArtifacts[1]!.location, '${OCI_PRIMARY_SOURCE_DIR}/deployment_manifest.yaml');

    const withVersion = resolveBuildSpec(parseBuildSpec(parameterSample), placeholderValues(predefined, { var: '22' }));
    assert.equal(withVersion.outputArtifacts[0]!.version, '22');
    assert.throws(() => resolveBuildSpec(parseBuildSpec(parameterSample), predefined, { strict: true }), /outputArtifacts\[0\]\.version: no value for \$\{var\}/);
  });

  test('stepEnvironment: spec variables, then parameters, then predefined variables', { timeout }, () => {
    const spec = parseBuildSpec(`version: 0.1
env:
  variables:
    var: "20"
    SOURCE: \${OCI_PRIMARY_SOURCE_DIR}/src
    OCI_BUILD_RUN_ID: spoofed
  vaultVariables:
    TOKEN: ocid1.vaultsecret.oc1..example
steps:
  - type: Command
    command: echo $var
`);
    const env = stepEnvironment(spec, predefined, { var: '22', EXTRA: 'x' });
    assert.equal(env.var, '22');
    assert.equal(env.EXTRA, 'x');
    assert.equal(env.SOURCE, '/workspace/app/src');
    assert.equal(env.OCI_BUILD_RUN_ID, predefined.OCI_BUILD_RUN_ID);
    assert.equal(env.TOKEN, undefined);
    assert.deepEqual(spec.env.vaultVariables, { TOKEN: 'ocid1.vaultsecret.oc1..example' });
  });
});

describe('findBuildSpec', () => {
  test('looks for build_spec.yaml, build_spec.yml, .slipway/build_spec.yaml in that order', { timeout }, async () => {
    const dir = await tempDir('slipway-build-spec-test-');
    try {
      const repo = dir.path;
      assert.equal(await findBuildSpec(repo), null);
      await assert.rejects(loadBuildSpec(repo), /no build spec found in the repository \(looked for build_spec\.yaml, build_spec\.yml, \.slipway\/build_spec\.yaml\)/);

      await mkdir(path.join(repo, '.slipway'));
      await writeFile(path.join(repo, '.slipway', 'build_spec.yaml'), 'version: 0.1\nsteps:\n  - type: Command\n    command: slipway\n');
      assert.equal(await findBuildSpec(repo), path.join(await realRoot(repo), '.slipway', 'build_spec.yaml'));
      await writeFile(path.join(repo, 'build_spec.yml'), 'version: 0.1\nsteps:\n  - type: Command\n    command: yml\n');
      assert.equal(path.basename((await findBuildSpec(repo))!), 'build_spec.yml');
      await writeFile(path.join(repo, 'build_spec.yaml'), 'version: 0.1\nsteps:\n  - type: Command\n    command: yaml\n');
      const loaded = await loadBuildSpec(repo);
      assert.equal(path.basename(loaded.path), 'build_spec.yaml');
      assert.equal(loaded.spec.steps[0]!.command, 'yaml');

      // A stage's own buildSpecFile.
      await mkdir(path.join(repo, 'ci'));
      await writeFile(path.join(repo, 'ci', 'spec.yaml'), 'version: 0.1\nsteps:\n  - type: Command\n    command: custom\n    bogus: 1\n');
      const custom = await loadBuildSpec(repo, 'ci/spec.yaml');
      assert.equal(custom.spec.steps[0]!.command, 'custom');
      assert.deepEqual(custom.warnings.map((w) => [w.file, w.line, w.key]), [['ci/spec.yaml', 5, 'bogus']]);
      await assert.rejects(loadBuildSpec(repo, 'ci/spec.yaml', { strict: true }), (error: unknown) => {
        assert.ok(error instanceof BuildSpecError);
        assert.match(error.message, /^ci\/spec\.yaml is not a valid build spec: line 5: steps\[0\]\.bogus: unknown key/);
        return true;
      });
      assert.equal(await findBuildSpec(repo, 'ci/missing.yaml'), null);
      await assert.rejects(findBuildSpec(repo, '../outside.yaml'), /must be relative to the repository and stay inside it/);
      await assert.rejects(findBuildSpec(repo, '/etc/passwd'), /must be relative/);
    } finally {
      await dir.remove();
    }
  });

  test('a build spec that is a symlink to outside the repository is refused; a folder is skipped', { timeout }, async () => {
    const dir = await tempDir('slipway-build-spec-test-');
    try {
      const repo = path.join(dir.path, 'repo');
      await mkdir(repo);
      await writeFile(path.join(dir.path, 'secret.yaml'), 'version: 0.1\n');
      await mkdir(path.join(repo, 'build_spec.yaml'));
      await symlink('../secret.yaml', path.join(repo, 'build_spec.yml'));
      await assert.rejects(findBuildSpec(repo), /build spec "build_spec\.yml" is a link to outside the repository/);

      const inside = path.join(dir.path, 'inside');
      await mkdir(path.join(inside, 'ci'), { recursive: true });
      await writeFile(path.join(inside, 'ci', 'real.yaml'), 'version: 0.1\nsteps:\n  - type: Command\n    command: linked\n');
      await symlink('ci/real.yaml', path.join(inside, 'build_spec.yaml'));
      assert.equal((await loadBuildSpec(inside)).spec.steps[0]!.command, 'linked');
    } finally {
      await dir.remove();
    }
  });
});

async function realRoot(dir: string): Promise<string> {
  const { realpath } = await import('node:fs/promises');
  return realpath(dir);
}
