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
export const cryptoRandom: RandomSource = { bytes: (n) => randomBytes(n) };

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
