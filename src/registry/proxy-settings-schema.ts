/**
 * @module registry/proxy-settings-schema
 * The `proxy` object of `POST /api/v1/namespaces` and `PUT …/proxy` (a pull-through cache's
 * upstream), and how it is shown. Apart from the store (proxy-settings.ts) because auth/api.ts
 * takes these and api modules load in the browser (no node or server imports here).
 */
import { z } from 'zod';

export const proxySettingsInput = z.strictObject({
  url: z.url({ protocol: /^https?$/ }).describe('The upstream registry, e.g. https://registry-1.docker.io'),
  credentialsId: z.string().min(1).optional().describe('An external registry of the namespace; default: the longest matching prefix, if any'),
  insecure: z.boolean().default(false).describe('Accept an upstream TLS certificate that does not verify'),
  ttl: z.string().regex(/^\d+(ms|s|m|h|d)$/, 'a duration such as 30s, 15m or 24h').default('24h').describe('How long a cached tag is served before it is re-checked upstream'),
  mirrorOf: z.string().min(1).optional().describe('e.g. docker.io: also serve the upstream\'s own repository paths without the namespace prefix'),
});
export type ProxySettingsInput = z.input<typeof proxySettingsInput>;

export const proxySettingsView = z.object({
  url: z.string(), credentialsId: z.string().nullable(), insecure: z.boolean(), ttl: z.string(), mirrorOf: z.string().nullable(),
});
