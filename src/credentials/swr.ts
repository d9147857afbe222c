/**
 * @module credentials/swr
 * Huawei Cloud SWR (SoftWare Repository for Container) long-lived login derived from an IAM
 * access key pair, as documented by Huawei (swr_01_1000) and summarised in
 * shared/reference/formats.md §2.6:
 *
 *   username = `{project}@{AK}`                       (project is normally the region ID)
 *   password = lowercase hex HMAC-SHA256(key = SK, message = AK)
 *
 * Computed locally: no call to Huawei is needed, so nothing here touches the network.
 */
import { createHmac } from 'node:crypto';

export interface SwrAccessKey {
  /** Project name: normally the region ID (`cn-north-4`), or a sub-project (`eu-de_dev`). */
  region: string;
  /** IAM access key ID (AK). */
  accessKey: string;
  /** IAM secret access key (SK). */
  secretKey: string;
}

/** The login key: lowercase hex HMAC-SHA256 of the AK, keyed with the SK. */
export function swrLoginPassword(accessKey: string, secretKey: string): string {
  return createHmac('sha256', secretKey).update(accessKey).digest('hex');
}

/** `docker login` username and password for SWR. Throws when a field is missing or malformed. */
export function swrLogin(key: SwrAccessKey): { username: string; password: string } {
  if (!key.region || /[@\s/]/.test(key.region)) throw new Error('SWR login needs a region (project name) without "@", "/" or spaces');
  if (!key.accessKey || /[@\s]/.test(key.accessKey)) throw new Error('SWR login needs an access key (AK) without "@" or spaces');
  if (!key.secretKey) throw new Error('SWR login needs a secret key (SK)');
  return { username: `${key.region}@${key.accessKey}`, password: swrLoginPassword(key.accessKey, key.secretKey) };
}

/**
 * The public SWR registry host of a region: `swr.{region}.myhuaweicloud.com`. A sub-project
 * name (`eu-de_dev`) uses its region's host. Other clouds (e.g. OTC's
 * `swr.eu-de.otc.t-systems.com`) are configured as explicit prefixes instead.
 */
export function swrRegistryHost(region: string): string {
  const regionId = region.split('_')[0]!;
  return `swr.${regionId.toLowerCase()}.myhuaweicloud.com`;
}
