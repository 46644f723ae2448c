/** The sandbox clock (issue 17): the system's time plus an offset the internal API moves forward, never back. */
import type { Clock } from '../deps.ts';

/** At most this far in one step: a year and a day, past every window dcvd has (30-day codes, 24-hour rule). */
export const MAX_ADVANCE_MS = 366 * 86_400_000;

export class SandboxClock implements Clock {
  private offset = 0;
  constructor(private readonly base: Clock) {}

  now(): number {
    return this.base.now() + this.offset;
  }

  get offsetMs(): number {
    return this.offset;
  }

  /** Moves the clock forward; going back would let a spent code or an expired offer come back to life. */
  advance(ms: number): void {
    if (!Number.isInteger(ms) || ms <= 0 || ms > MAX_ADVANCE_MS) throw new RangeError(`advance by 1 ms to ${MAX_ADVANCE_MS / 86_400_000} days`);
    this.offset += ms;
  }
}
