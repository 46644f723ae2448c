/**
 * Flow control of the DCV email outbox (issue 20; the model is Postfix's `in_flow_delay`, which
 * makes its SMTP server wait before it accepts a message while delivery cannot keep up). Without it,
 * an API that accepts emails faster than delivery sends them hides a growing backlog behind
 * `errorCode=0`: on two cores dcvd queues a resend for about 300 µs of CPU and delivers one for about
 * 460 (docs/PERFORMANCE.md, tenth round), so a saturating load left thousands of DCV emails waiting
 * for seconds or minutes after it.
 *
 * The signal is the **delivery lag**: how long the oldest email that is due (pending, its attempt
 * time come) has been waiting for a delivery slot, read from the outbox's due index (one row, so it
 * is the same for every instance sharing the database). While it is above `maxLagMs`, a call that
 * may queue emails waits, re-reading the lag every `REFRESH_MS`, until it falls back or `delayMs` has
 * passed, and then goes on either way: no call is refused or waits longer than `delayMs`, so a
 * stopped worker slows the API (and says so in the log and the metrics) but never stops it. Waiting
 * costs no CPU, which is what lets the workers catch up on the same cores. Emails that wait for a
 * retry after a failed attempt are not due until their retry time, so an SMTP server that refuses
 * them does not slow anything.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import type { Clock } from '../deps.ts';
import type { Logger } from '../log.ts';
import type { Database } from '../store/schema.ts';
import { prepared } from '../store/prepared.ts';
import type { OutboxFlowConfig } from '../queue/policy.ts';

/** How often a waiting call reads the lag again (one statement per process, shared by every waiting call). */
export const REFRESH_MS = 100;

/** The due time of the email that has waited longest, by the due index (exported for test/query-plans.test.ts). */
export const oldestDueEmail = prepared((db, p: { now: number }) =>
  db.selectFrom('outbox').select('next_attempt_at').where('state', '=', 'pending').where('next_attempt_at', '<=', p.now).orderBy('next_attempt_at').limit(1),
);

export type FlowOutcome = 'caught-up' | 'timed-out';

export interface OutboxFlowDeps {
  db: Kysely<Database>;
  /** The clock the outbox's rows are dated by (the sandbox's in the sandbox). */
  clock: Clock;
  config: OutboxFlowConfig;
  log: Logger;
  /** A call waited: why it went on and for how long (metrics). */
  onWait?: (outcome: FlowOutcome, seconds: number) => void;
  /** Narrow seams for unit tests: the waits and the monotonic time they are measured by. */
  sleep?: (ms: number) => Promise<unknown>;
  monotonic?: () => number;
}

/** How often, at most, the log says that delivery is behind. */
const LOG_EVERY_MS = 60_000;

export class OutboxFlow {
  private readonly sleep: (ms: number) => Promise<unknown>;
  private readonly monotonic: () => number;
  private measured: { at: number; lagMs: number } | undefined;
  private measuring: Promise<number> | undefined;
  private loggedAt = -Infinity;
  private waitsSinceLog = 0;

  constructor(private readonly deps: OutboxFlowDeps) {
    this.sleep = deps.sleep ?? ((ms) => sleep(ms));
    this.monotonic = deps.monotonic ?? (() => performance.now());
  }

  get enabled(): boolean {
    return this.deps.config.maxLagMs > 0 && this.deps.config.delayMs > 0;
  }

  /**
   * Resolves when a call may queue emails: at once while delivery keeps up, else when the lag falls
   * back under the limit or after `delayMs`, whichever is first.
   */
  async admit(): Promise<void> {
    if (!this.enabled) return;
    const { maxLagMs, delayMs } = this.deps.config;
    if ((await this.lag()) <= maxLagMs) return;
    const started = this.monotonic();
    let outcome: FlowOutcome = 'timed-out';
    for (;;) {
      const left = delayMs - (this.monotonic() - started);
      if (left <= 0) break;
      await this.sleep(Math.min(REFRESH_MS, left));
      if ((await this.lag()) <= maxLagMs) {
        outcome = 'caught-up';
        break;
      }
    }
    const seconds = (this.monotonic() - started) / 1000;
    this.deps.onWait?.(outcome, seconds);
    this.noteWait();
  }

  /** The delivery lag in ms, read at most once per REFRESH_MS and shared by every caller meanwhile. */
  private lag(): Promise<number> {
    const now = this.monotonic();
    if (this.measured && now - this.measured.at < REFRESH_MS) return Promise.resolve(this.measured.lagMs);
    this.measuring ??= this.read().finally(() => {
      this.measuring = undefined;
    });
    return this.measuring;
  }

  private async read(): Promise<number> {
    const now = this.deps.clock.now();
    let lagMs = 0;
    try {
      const row = await oldestDueEmail.first(this.deps.db, { now });
      lagMs = row ? Math.max(0, now - Number(row.next_attempt_at)) : 0;
    } catch (err) {
      // The call goes on and meets the same database in its own transaction, which answers for it.
      this.deps.log.warn({ err }, 'outbox flow control: the delivery lag could not be read; calls go on without waiting');
    }
    this.measured = { at: this.monotonic(), lagMs };
    return lagMs;
  }

  private noteWait(): void {
    this.waitsSinceLog += 1;
    const now = this.monotonic();
    if (now - this.loggedAt < LOG_EVERY_MS) return;
    this.deps.log.warn(
      { outboxFlow: { lagMs: this.measured?.lagMs ?? null, maxLagMs: this.deps.config.maxLagMs, delayMs: this.deps.config.delayMs, waits: this.waitsSinceLog } },
      'DCV email delivery is behind: calls that queue emails wait for it (--outbox-max-lag); said at most once a minute',
    );
    this.loggedAt = now;
    this.waitsSinceLog = 0;
  }
}
