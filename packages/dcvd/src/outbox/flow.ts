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

/**
 * How a call's wait ended: delivery caught up; the delay passed (or the request's deadline); the lag
 * could not be read (a database error, or no answer within the delay: the call went on); the call's
 * signal fired (its client went away, or its deadline passed).
 */
export type FlowOutcome = 'caught-up' | 'timed-out' | 'unread' | 'aborted';

export interface OutboxFlowDeps {
  db: Kysely<Database>;
  /** The clock the outbox's rows are dated by (the sandbox's in the sandbox). */
  clock: Clock;
  config: OutboxFlowConfig;
  log: Logger;
  /** A call waited, or could not learn the lag: how that ended and how long it took (metrics). */
  onWait?: (outcome: FlowOutcome, seconds: number) => void;
  /** Narrow seams for unit tests: the due time of the oldest due email, the waits, and the monotonic time they are measured by. */
  oldestDue?: (now: number) => Promise<number | undefined>;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<unknown>;
  monotonic?: () => number;
}

/** How often, at most, the log says that delivery is behind, or that the lag could not be read. */
const LOG_EVERY_MS = 60_000;

/** A reading of the lag: ms, or undefined when it failed. */
type Reading = number | undefined;

export class OutboxFlow {
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<unknown>;
  private readonly monotonic: () => number;
  private readonly oldestDue: (now: number) => Promise<number | undefined>;
  private measured: { at: number; lagMs: Reading } | undefined;
  private measuring: Promise<Reading> | undefined;
  private readonly said = { behind: -Infinity, unread: -Infinity };
  private waitsSinceLog = 0;

  constructor(private readonly deps: OutboxFlowDeps) {
    this.sleep = deps.sleep ?? ((ms, signal) => sleep(ms, undefined, signal ? { signal } : {}));
    this.monotonic = deps.monotonic ?? (() => performance.now());
    this.oldestDue = deps.oldestDue ?? (async (now) => (await oldestDueEmail.first(deps.db, { now }))?.next_attempt_at);
  }

  get enabled(): boolean {
    return this.deps.config.maxLagMs > 0 && this.deps.config.delayMs > 0;
  }

  /**
   * Resolves when a call may queue emails: at once while delivery keeps up, else when the lag falls
   * back under the limit or `delayMs` after the call came, whichever is first (reading the lag
   * included: a database that does not answer cannot hold a call longer). `signalOf` gives the call's
   * abort signal, asked for only when the call must wait; the wait ends when it fires. Resolves to
   * how the wait ended, or undefined when the call did not wait.
   */
  async admit(signalOf?: () => AbortSignal | undefined): Promise<FlowOutcome | undefined> {
    if (!this.enabled) return undefined;
    const { maxLagMs, delayMs } = this.deps.config;
    const started = this.monotonic();
    const left = () => delayMs - (this.monotonic() - started);
    const first = await this.lagWithin(delayMs);
    if (typeof first === 'number' && first <= maxLagMs) return undefined;
    let outcome: FlowOutcome = 'unread';
    if (typeof first === 'number') {
      outcome = 'timed-out';
      const signal = signalOf?.();
      for (;;) {
        if (left() <= 0) break;
        try {
          await this.sleep(Math.min(REFRESH_MS, left()), signal);
        } catch {
          // Aborted: the signal is read below.
        }
        if (signal?.aborted) {
          outcome = 'aborted';
          break;
        }
        if (left() <= 0) break;
        const lag = await this.lagWithin(left());
        if (lag === 'late') break;
        if (lag === undefined) {
          outcome = 'unread';
          break;
        }
        if (lag <= maxLagMs) {
          outcome = 'caught-up';
          break;
        }
      }
    }
    this.deps.onWait?.(outcome, (this.monotonic() - started) / 1000);
    if (outcome !== 'unread') this.noteWait();
    return outcome;
  }

  /**
   * The delivery lag in ms: the last reading while it is younger than REFRESH_MS, else a new one,
   * shared by every caller meanwhile; 'late' when it takes longer than `withinMs`.
   */
  private lagWithin(withinMs: number): Promise<Reading | 'late'> {
    if (this.measured && this.monotonic() - this.measured.at < REFRESH_MS) return Promise.resolve(this.measured.lagMs);
    this.measuring ??= this.read().finally(() => {
      this.measuring = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), Math.max(0, withinMs));
    });
    return Promise.race([this.measuring, late]).finally(() => clearTimeout(timer));
  }

  private async read(): Promise<Reading> {
    const now = this.deps.clock.now();
    let lagMs: Reading;
    try {
      const due = await this.oldestDue(now);
      lagMs = due === undefined ? 0 : Math.max(0, now - Number(due));
    } catch (err) {
      // The call goes on and meets the same database in its own transaction, which answers for it.
      if (this.mayLog('unread')) this.deps.log.warn({ err }, 'outbox flow control: the delivery lag could not be read; calls go on without waiting (said at most once a minute)');
    }
    this.measured = { at: this.monotonic(), lagMs };
    return lagMs;
  }

  /** True (and remembered) when the line of that kind was not said in the last minute. */
  private mayLog(kind: keyof OutboxFlow['said']): boolean {
    const now = this.monotonic();
    if (now - this.said[kind] < LOG_EVERY_MS) return false;
    this.said[kind] = now;
    return true;
  }

  private noteWait(): void {
    this.waitsSinceLog += 1;
    if (!this.mayLog('behind')) return;
    this.deps.log.warn(
      { outboxFlow: { lagMs: this.measured?.lagMs ?? null, maxLagMs: this.deps.config.maxLagMs, delayMs: this.deps.config.delayMs, waits: this.waitsSinceLog } },
      'DCV email delivery is behind: calls that queue emails wait for it (--outbox-max-lag); said at most once a minute',
    );
    this.waitsSinceLog = 0;
  }
}
