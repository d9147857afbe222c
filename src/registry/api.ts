/**
 * @module registry/api
 * The registry's `/api/v1` operations: the dashboard's repository catalog
 * (registry/catalog-routes.ts) and the namespace policies (registry/policy-api.ts). The `/v2`
 * OCI surface is not part of this document (it follows the distribution spec). No node-only
 * imports: the CLI and the dashboard use these too.
 */
import { z } from 'zod';
import { defineOperations } from '../http/api-contract.js';
import { policyOperations } from './policy-api.js';

const time = z.string().describe('RFC 3339 UTC');

export const repositorySummary = z.object({ name: z.string(), tags: z.number().describe('How many tags'), updatedAt: time.nullable().describe('The newest tag push') });
export const referrer = z.object({ digest: z.string(), artifactType: z.string().nullable(), size: z.number() });
export const tagEntry = z.object({
  name: z.string(), digest: z.string(), mediaType: z.string(), size: z.number(), pushedAt: time,
  platforms: z.array(z.string()).describe('`os/arch[/variant]` of each manifest of an index'),
  referrers: z.array(referrer).describe('Signatures, SBOMs … whose subject is this manifest'),
});
export const repositoryDetail = z.object({
  name: z.string(),
  tags: z.array(tagEntry),
  usedBy: z.object({ functions: z.array(z.string()), pipelines: z.array(z.string()) }).describe('Functions whose image is in the repository, pipelines whose definition names it'),
});
export const deleteTagQuery = z.object({ tag: z.string().describe('The tag to delete') });

export const catalogOperations = defineOperations({
  listRepositories: {
    method: 'GET', path: '/api/v1/namespaces/:ns/repositories', summary: 'The namespace\'s repositories with their tag counts', access: 'reader',
    answers: { 200: z.object({ repositories: z.array(repositorySummary) }) },
  },
  getRepository: {
    method: 'GET', path: '/api/v1/namespaces/:ns/repositories/*', summary: 'A repository: tags with digest, size, platforms and referrers; what uses it',
    description: 'The tail is the full repository name (`ns/app`, slashes allowed).', access: 'reader',
    answers: { 200: repositoryDetail },
  },
  deleteRepositoryTag: {
    method: 'DELETE', path: '/api/v1/namespaces/:ns/repositories/*', summary: 'Delete a tag of a repository',
    description: 'The tail is the full repository name. Immutable tags (registry-policy) are refused.', access: 'owner', query: deleteTagQuery,
    answers: { 204: null },
  },
});

export const registryOperations = { ...catalogOperations, ...policyOperations };
