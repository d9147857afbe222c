/**
 * @module credentials/material
 * The long-lived login material Slipway stores for an external registry, one shape per type,
 * and the short-lived login it is turned into. The schema is strict so a typo in a field name
 * is a validation error rather than a silently ignored secret.
 */
import { z } from 'zod';

const text = z.string().min(1);

export const basicMaterialSchema = z.strictObject({
  type: z.literal('basic'),
  username: text,
  password: text,
  /** Optional expiry (epoch milliseconds) when the pair itself is temporary. */
  expiresAt: z.number().int().positive().optional(),
});

export const swrMaterialSchema = z.strictObject({
  type: z.literal('swr'),
  /** Project name: the region ID (`cn-north-4`) or a sub-project (`eu-de_dev`). */
  // The login is `<region>@<AK>`: an '@', '/' or space in either could never log in.
  region: text.regex(/^[^@\s/]+$/, 'a project name without "@", "/" or spaces'),
  accessKey: text.regex(/^[^@\s]+$/, 'an access key without "@" or spaces'),
  secretKey: text,
});

export const ecrMaterialSchema = z.strictObject({
  type: z.literal('ecr'),
  region: text,
  accessKeyId: text,
  secretAccessKey: text,
  sessionToken: text.optional(),
});

/** Google service-account key file, the fields we use (the file carries more). */
export const googleServiceAccountKeySchema = z.looseObject({
  type: z.literal('service_account'),
  client_email: text,
  private_key: text,
  private_key_id: z.string().optional(),
});

export const googleMaterialSchema = z.strictObject({
  type: z.enum(['gcr', 'gar']),
  /** The JSON key file, as text or parsed. */
  serviceAccountKey: z.union([text, googleServiceAccountKeySchema]),
});

export const acrMaterialSchema = z.strictObject({
  type: z.literal('acr'),
  /** Service principal application (client) ID. */
  clientId: text,
  clientSecret: text,
});

export const ocirMaterialSchema = z.strictObject({
  type: z.literal('ocir'),
  /** Object Storage namespace of the tenancy. */
  tenancyNamespace: text,
  /** User name, e.g. `jane@example.com` or `oracleidentitycloudservice/jane@example.com`. */
  username: text,
  /** An OCI auth token (not the console password). */
  authToken: text,
});

export const storedCredentialSchema = z.discriminatedUnion('type', [
  basicMaterialSchema,
  swrMaterialSchema,
  ecrMaterialSchema,
  googleMaterialSchema,
  acrMaterialSchema,
  ocirMaterialSchema,
]);

export type StoredCredential = z.infer<typeof storedCredentialSchema>;
export type CredentialType = StoredCredential['type'];
export type GoogleServiceAccountKey = z.infer<typeof googleServiceAccountKeySchema>;

export const credentialTypes = ['basic', 'swr', 'ecr', 'gcr', 'gar', 'acr', 'ocir'] as const satisfies readonly CredentialType[];

/** What `docker login` needs. `expiresAt` is epoch milliseconds; absent means long-lived. */
export interface RegistryLogin {
  username: string;
  password: string;
  expiresAt?: number;
}
