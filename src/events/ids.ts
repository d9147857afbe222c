/**
 * @module events/ids
 * Ids of the events part: `<prefix>_<9 base36 ms><4 base36 sequence><random>` — `ev_` events,
 * `wh_` webhooks, `whd_` deliveries — so they sort by creation time: the outbox pages by
 * `id > cursor` and retention cuts by id.
 */
import { randomBytes } from 'node:crypto';

let lastIdTime = 0;
let idSequence = 0;

function time36(ms: number): string {
  return Math.max(0, Math.floor(ms)).toString(36).padStart(9, '0');
}

export function newId(prefix: 'ev' | 'wh' | 'whd', now: number): string {
  if (now === lastIdTime) idSequence++;
  else { lastIdTime = now; idSequence = 0; }
  return `${prefix}_${time36(now)}${idSequence.toString(36).padStart(4, '0')}${randomBytes(8).toString('base64url')}`;
}

/** Below every id of that prefix made at or after `ms`. */
export function idFloor(prefix: 'ev' | 'wh' | 'whd', ms: number): string {
  return `${prefix}_${time36(ms)}`;
}

/** Below every event id made at or after `ms`. */
export function eventIdFloor(ms: number): string {
  return idFloor('ev', ms);
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
