/** Injected sources of time and randomness, so tests can control both (ARCHITECTURE "Habits"). */
import { randomBytes } from 'node:crypto';

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export interface RandomSource {
  bytes(n: number): Buffer;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Requests up to this size are served from the pool; larger ones call randomBytes themselves. */
const POOLED_MAX = 256;

/**
 * CSPRNG bytes drawn from a 4 KiB buffer refilled by crypto.randomBytes: one call into OpenSSL per
 * 4 KiB instead of one per request (issue 20: the Message-ID's 16 bytes alone were 3.5 % of a resend's
 * CPU in a profile under load). Each byte is handed out once; a caller gets a copy, not a view of the
 * pool (whose unused bytes are other callers' future draws). The pool holds up to 4 KiB of future draws (validation
 * codes, IVs, secrets among them) in this process's memory, beside the keys they are used with and
 * OpenSSL's own generator state: a heap dump that shows the pool shows those too. node's
 * randomUUID pools the same way. `source` is for tests.
 */
export function pooledRandom(source: (n: number) => Buffer = randomBytes): (n: number) => Buffer {
  let pool = source(4096);
  let offset = 0;
  return (n) => {
    // Anything but a whole size up to POOLED_MAX goes to randomBytes, which refuses a bad one.
    if (!Number.isInteger(n) || n < 0 || n > POOLED_MAX) return randomBytes(n);
    if (offset + n > pool.length) {
      pool = source(4096);
      offset = 0;
    }
    offset += n;
    return Buffer.from(pool.subarray(offset - n, offset));
  };
}

export const cryptoRandom: RandomSource = { bytes: pooledRandom() };

/** A number in [0, 1), uniform, from 32 random bits of the source. */
export function randomFraction(random: RandomSource): number {
  return random.bytes(4).readUInt32BE(0) / 2 ** 32;
}

/** A clock tests can move. */
export class ManualClock implements Clock {
  constructor(private t: number = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
  set(ms: number): void {
    this.t = ms;
  }
}
