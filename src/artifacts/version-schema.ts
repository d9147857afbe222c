/**
 * @module artifacts/version-schema
 * The body of `POST /api/v1/namespaces/:ns/artefact-versions`, validated by the service
 * (service.ts) and documented by artifacts/api.ts. Apart from the service so the api module
 * loads in the browser (no node or server imports here).
 */
import { z } from 'zod';

const refPattern = /^refs\//;
const commitPattern = /^[0-9a-f]{5,40}$/;
const digestPattern = /^sha256:[0-9a-f]{64}$/;

const textField = (max: number) => z.string().max(max).regex(/^[^\s\p{Cc}]*$/u, 'no spaces or control characters');

export const artefactVersionInputSchema = z.object({
  type: z.enum(['container', 'workload']),
  name: textField(512).min(1, 'name is required'),
  version: textField(256).optional(),
  ref: z.string().max(512).optional()
    .refine((ref) => !ref || refPattern.test(ref), 'a git ref starts with refs/, e.g. refs/heads/main or refs/tags/v1'),
  commit: z.string().regex(commitPattern, 'commit is 5–40 lowercase hex digits').optional(),
  digest: z.string().regex(digestPattern, 'digest is sha256: and 64 lowercase hex digits').optional(),
  image: z.string().min(1).max(1024).optional(),
  spec: z.unknown().optional(),
}).strict();

export type ArtefactVersionInput = z.input<typeof artefactVersionInputSchema>;
