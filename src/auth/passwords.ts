/**
 * @module auth/passwords
 * Password hashing with scrypt (memory-hard, in node:crypto): N=2^15, r=8 → 32 MiB per hash,
 * ~50–100 ms here, which is what makes offline guessing expensive. Stored self-describing so
 * parameters can be raised later without invalidating old hashes. scrypt runs on libuv's thread
 * pool, which file reads and writes share: at most `maxConcurrentHashes` run at once, so a burst
 * of logins (or of wrong guesses) cannot stall the registry's disk I/O.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const cost = { N: 2 ** 15, r: 8, p: 1 };
const keyLength = 32;
/** Half of libuv's default pool of 4 threads. */
const maxConcurrentHashes = 2;
let running = 0;
const waiting: Array<() => void> = [];

async function scrypt(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  // A finishing hash hands its slot straight to the next waiter, so `running` never overshoots.
  if (running >= maxConcurrentHashes) await new Promise<void>((resolve) => waiting.push(resolve));
  else running++;
  try {
    return await new Promise((resolve, reject) => {
      scryptCallback(password, salt, keyLength, { ...options, maxmem: 128 * options.N! * options.r! * 2 }, (error, key) => (error ? reject(error) : resolve(key)));
    });
  } finally {
    const next = waiting.shift();
    if (next) next();
    else running--;
  }
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, cost);
  return ['scrypt', cost.N, cost.r, cost.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !key) return false;
  const expected = Buffer.from(key, 'base64url');
  const actual = await scrypt(password, Buffer.from(salt, 'base64url'), { N: Number(n), r: Number(r), p: Number(p) });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A hash of a random password, verified against when a user is unknown so timing does not tell. */
export const decoyHash = await hashPassword(randomBytes(16).toString('hex'));
