/**
 * @module events/signature
 * How outgoing webhook requests are signed, and how a receiver verifies them.
 *
 * Every attempt carries
 *
 *   X-Slipway-Timestamp: <unix seconds when the attempt was sent>
 *   X-Slipway-Signature-256: sha256=<hex of HMAC-SHA256(key = secret, message = signed string)>
 *
 * where the signed string is exactly
 *
 *   <X-Slipway-Timestamp value> + "." + <raw request body bytes, as received>
 *
 * (the secret as UTF-8 bytes; the hex in lowercase). A receiver recomputes the HMAC over the
 * raw body (before any JSON parsing), compares in constant time, and rejects a timestamp
 * further than a few minutes from its own clock, so a captured request cannot be replayed
 * later; `X-Slipway-Delivery` (the same on every retry of one delivery) lets it drop repeats.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const signatureHeader = 'x-slipway-signature-256';
export const timestampHeader = 'x-slipway-timestamp';

/** The `X-Slipway-Signature-256` value for `body` sent at `timestamp` (unix seconds). */
export function signPayload(secret: string, timestamp: number | string, body: string | Buffer): string {
  const hmac = createHmac('sha256', Buffer.from(secret, 'utf8'));
  hmac.update(`${timestamp}.`, 'utf8');
  hmac.update(body);
  return `sha256=${hmac.digest('hex')}`;
}

export interface VerifyOptions {
  /** How far the timestamp may be from `now`; default 300 s. */
  toleranceSeconds?: number;
  /** Unix seconds; default the clock. */
  now?: number;
}

/**
 * True when `signature` is the signature of `body` at `timestamp` under `secret` and the
 * timestamp is within the tolerance: what a receiver checks before trusting a delivery.
 */
export function verifySignature(secret: string, timestamp: string | undefined, signature: string | undefined, body: string | Buffer, options: VerifyOptions = {}): boolean {
  if (!timestamp || !signature || !/^\d{1,12}$/.test(timestamp)) return false;
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number(timestamp)) > (options.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(signPayload(secret, timestamp, body), 'utf8');
  const given = Buffer.from(signature, 'utf8');
  return expected.length === given.length && timingSafeEqual(expected, given);
}
