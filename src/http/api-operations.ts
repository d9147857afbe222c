/**
 * @module http/api-operations
 * Every part's `/api/v1` operations in one list, by operation id: what http/server.ts hands
 * to the OpenAPI document (http/openapi.ts), and what clients may import whole. Each part
 * keeps its own list beside its routes (`<part>/api.ts`).
 */
import { z } from 'zod';
import { artifactOperations } from '../artifacts/api.js';
import { authOperations } from '../auth/api.js';
import { buildOperations } from '../builds/api.js';
import { credentialOperations } from '../credentials/api.js';
import { eventOperations } from '../events/api.js';
import { functionOperations } from '../functions/api.js';
import { pipelineOperations } from '../pipelines/api.js';
import { registryOperations } from '../registry/api.js';
import { vaultOperations } from '../vault/api.js';
import { defineOperations } from './api-contract.js';

/** The document's own operation (served by http/openapi.ts). */
export const openApiOperations = defineOperations({
  getOpenApi: {
    method: 'GET', path: '/api/v1/openapi.json', summary: 'This document (OpenAPI 3.1); the interactive page is /api/docs', access: 'public',
    answers: { 200: z.looseObject({ openapi: z.string(), info: z.object({ title: z.string(), version: z.string() }), paths: z.record(z.string(), z.unknown()) }) },
  },
});

export const apiOperations = {
  ...openApiOperations,
  ...authOperations,
  ...vaultOperations,
  ...credentialOperations,
  ...buildOperations,
  ...functionOperations,
  ...pipelineOperations,
  ...artifactOperations,
  ...eventOperations,
  ...registryOperations,
};

/** The parts' lists, to check that no two use one operation id. */
export const operationLists = { openApiOperations, authOperations, vaultOperations, credentialOperations, buildOperations, functionOperations, pipelineOperations, artifactOperations, eventOperations, registryOperations };
