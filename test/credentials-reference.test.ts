/**
 * Image references, stored prefixes and longest-prefix matching of external registries.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { matchRegistry, normalisePrefix, normaliseReference } from '../src/credentials/reference.js';

const digest = `sha256:${'a'.repeat(64)}`;

describe('normaliseReference', () => {
  const valid: Array<[input: string, full: string, registry: string]> = [
    ['alpine', 'docker.io/library/alpine', 'docker.io'],
    ['alpine:3.20', 'docker.io/library/alpine', 'docker.io'],
    ['library/alpine', 'docker.io/library/alpine', 'docker.io'],
    ['user/app', 'docker.io/user/app', 'docker.io'],
    ['user/app:v1.2.3', 'docker.io/user/app', 'docker.io'],
    ['docker.io/alpine', 'docker.io/library/alpine', 'docker.io'],
    ['docker.io/user/app', 'docker.io/user/app', 'docker.io'],
    ['index.docker.io/library/alpine', 'docker.io/library/alpine', 'docker.io'],
    ['registry.hub.docker.com/user/app', 'docker.io/user/app', 'docker.io'],
    ['registry-1.docker.io/alpine:latest', 'docker.io/library/alpine', 'docker.io'],
    ['Index.Docker.IO/user/app', 'docker.io/user/app', 'docker.io'],
    ['registry.example.com/team/app', 'registry.example.com/team/app', 'registry.example.com'],
    ['Registry.Example.COM/team/app:1.0', 'registry.example.com/team/app', 'registry.example.com'],
    ['registry.example.com:5000/app', 'registry.example.com:5000/app', 'registry.example.com:5000'],
    ['localhost/app', 'localhost/app', 'localhost'],
    ['localhost:5000/app:dev', 'localhost:5000/app', 'localhost:5000'],
    ['LOCALHOST:5000/app', 'localhost:5000/app', 'localhost:5000'],
    ['myhost:5000/a/b/c', 'myhost:5000/a/b/c', 'myhost:5000'],
    ['127.0.0.1:5000/app', '127.0.0.1:5000/app', '127.0.0.1:5000'],
    ['[::1]:5000/app', '[::1]:5000/app', '[::1]:5000'],
    [`alpine@${digest}`, 'docker.io/library/alpine', 'docker.io'],
    [`registry.example.com/team/app:1.0@${digest}`, 'registry.example.com/team/app', 'registry.example.com'],
    ['ghcr.io/org/my_app.v2/sub-thing', 'ghcr.io/org/my_app.v2/sub-thing', 'ghcr.io'],
    ['swr.cn-north-4.myhuaweicloud.com/org/repo:tag', 'swr.cn-north-4.myhuaweicloud.com/org/repo', 'swr.cn-north-4.myhuaweicloud.com'],
    ['123456789012.dkr.ecr.eu-west-1.amazonaws.com/app', '123456789012.dkr.ecr.eu-west-1.amazonaws.com/app', '123456789012.dkr.ecr.eu-west-1.amazonaws.com'],
  ];
  for (const [input, full, registry] of valid) {
    test(`${input} → ${full}`, () => {
      const result = normaliseReference(input);
      assert.deepEqual(result, { registry, path: full.slice(registry.length + 1), full });
    });
  }

  const invalid: Array<[input: string, message: RegExp]> = [
    ['', /empty/],
    ['   ', /whitespace/],
    ['registry.example.com/Team/app', /must be lowercase/],
    ['registry.example.com/', /empty path component/],
    ['registry.example.com//app', /empty path component/],
    ['https://registry.example.com/app', /not a valid registry host/],
    ['app:', /not a valid tag/],
    ['app:-bad', /not a valid tag/],
    ['app@sha256:short', /not a valid digest/],
    ['registry.example.com:99999/app', /port 99999 is out of range/],
    ['-bad.example.com/app', /not a valid registry host/],
    ['app--/x', /not a valid path component/],
    [`registry.example.com/${'a'.repeat(260)}`, /longer than 255/],
  ];
  for (const [input, message] of invalid) {
    test(`rejects ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`, () => {
      assert.throws(() => normaliseReference(input), (error: Error) => {
        assert.match(error.message, /^invalid image reference /);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

describe('normalisePrefix', () => {
  const valid: Array<[input: string, expected: string]> = [
    ['registry.example.com', 'registry.example.com'],
    ['registry.example.com/team', 'registry.example.com/team'],
    ['Registry.Example.com/team/', 'registry.example.com/team'],
    ['https://registry.example.com/team/', 'registry.example.com/team'],
    ['http://localhost:5000', 'localhost:5000'],
    ['index.docker.io', 'docker.io'],
    ['https://index.docker.io/v1/', 'docker.io'],
    ['registry-1.docker.io/myorg', 'docker.io/myorg'],
    ['registry.hub.docker.com/library', 'docker.io/library'],
    ['docker.io/myorg', 'docker.io/myorg'],
    ['  ghcr.io/org  ', 'ghcr.io/org'],
  ];
  for (const [input, expected] of valid) {
    test(`${JSON.stringify(input)} → ${expected}`, () => assert.equal(normalisePrefix(input), expected));
  }

  const invalid: Array<[input: string, message: RegExp]> = [
    ['', /empty/],
    ['https://', /missing registry host/],
    ['myorg', /must start with a registry host/],
    ['registry.example.com/team:tag', /no tag, digest/],
    ['registry.example.com/Team', /must be lowercase/],
    ['bad_host.example.com', /not a valid registry host/],
  ];
  for (const [input, message] of invalid) {
    test(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(() => normalisePrefix(input), (error: Error) => {
        assert.match(error.message, /^invalid registry prefix /);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

describe('matchRegistry', () => {
  const entries = [
    { id: 'example-host', prefix: 'registry.example.com' },
    { id: 'example-team', prefix: 'https://Registry.Example.com/team/' },
    { id: 'example-team-app', prefix: 'registry.example.com/team/app' },
    { id: 'example-port', prefix: 'registry.example.com:5000' },
    { id: 'hub-myorg', prefix: 'index.docker.io/myorg' },
    { id: 'hub-library', prefix: 'docker.io/library' },
    { id: 'local', prefix: 'localhost:5000' },
    { id: 'broken', prefix: 'not a prefix' },
    { id: 'ghcr-duplicate-1', prefix: 'ghcr.io/org' },
    { id: 'ghcr-duplicate-2', prefix: 'GHCR.IO/org' },
  ];
  const rows: Array<[ref: string, expected: string | undefined]> = [
    ['registry.example.com/other/app', 'example-host'],
    ['registry.example.com/team', 'example-team'],
    ['registry.example.com/team/app', 'example-team-app'],
    ['registry.example.com/team/app:1.0', 'example-team-app'],
    ['registry.example.com/team/app/sub', 'example-team-app'],
    ['registry.example.com/team/application', 'example-team'],
    ['registry.example.com/team/other', 'example-team'],
    ['registry.example.com/teamx/app', 'example-host'],
    ['REGISTRY.EXAMPLE.COM/team/x', 'example-team'],
    ['registry.example.com:5000/team/app', 'example-port'],
    ['registry.example.com:5001/team/app', undefined],
    ['myorg/app', 'hub-myorg'],
    ['docker.io/myorg/app:latest', 'hub-myorg'],
    ['myorgx/app', undefined],
    ['alpine', 'hub-library'],
    ['registry-1.docker.io/library/alpine@' + digest, 'hub-library'],
    ['localhost:5000/app', 'local'],
    ['localhost/app', undefined],
    ['ghcr.io/org/app', 'ghcr-duplicate-1'],
    ['quay.io/org/app', undefined],
    ['example.com/team/app', undefined],
  ];
  for (const [ref, expected] of rows) {
    test(`${ref} → ${expected ?? 'no match'}`, () => assert.equal(matchRegistry(ref, entries)?.id, expected));
  }

  test('no entries → undefined', () => assert.equal(matchRegistry('alpine', []), undefined));

  test('an invalid reference throws instead of matching nothing', () => {
    assert.throws(() => matchRegistry('registry.example.com/Team/app', entries), /invalid image reference/);
  });

  test('entry order does not decide between different lengths', () => {
    const reversed = [...entries].reverse();
    assert.equal(matchRegistry('registry.example.com/team/app', reversed)?.id, 'example-team-app');
    assert.equal(matchRegistry('registry.example.com/team/x', reversed)?.id, 'example-team');
  });
});
