/**
 * The durable queue machinery shared by the DCV email outbox and the webhook
 * outbox (CONTRACT §5, §6, §10): rows go `pending` → `sending` (claimed under
 * a lease by one statement, `FOR UPDATE SKIP LOCKED` on PostgreSQL) → an
 * outcome recorded only by the claim's holder. A worker whose process died
 * loses its rows when the lease runs out; another takes them over.
 */
import { randomUUID } from 'node:crypto';
import { sql, type Compilable, type Kysely } from 'kysely';
import { cryptoRandom, randomFraction, type Clock, type RandomSource } from '../deps.ts';
import { unindexedState, type Dialect } from '../store/database.ts';
import type { Database } from '../store/schema.ts';
import type { Logger } from '../log.ts';
import { prepared, type PreparedQuery } from '../store/prepared.ts';
import { type OutboxPolicy } from './policy.ts';

export { DEFAULT_OUTBOX_POLICY, type OutboxPolicy } from './policy.ts';

/** The columns every queue table has. */
export interface QueueColumns {
  id: number;
  state: string;
  attempts: number;
  next_attempt_at: number;
  lease_until: number | null;
  claim_token: string | null;
  last_error: string | null;
  updated_at: number;
}

/** Delay before attempt `attempts + 1`: exponential, capped, with ±20 % jitter so a recovered server is not hit all at once. */
export function retryDelay(policy: OutboxPolicy, attempts: number, random: RandomSource = cryptoRandom): number {
  const exact = Math.min(policy.retryMaxMs, policy.retryBaseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(exact * (0.8 + randomFraction(random) * 0.4));
}

export type QueueTable = 'outbox' | 'webhook_outbox';

/** Where a queued item stands, as the operator interface shows it (emails and webhook events alike). */
export interface DeliveryView {
  state: string;
  attempts: number;
  /** When a pending item is tried next; null in any other state. */
  nextAttemptAt: string | null;
  lastError: string | null;
  response: string | null;
  createdAt: string;
  deliveredAt: string | null;
}

export function deliveryView(r: {
  state: string;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  response: string | null;
  created_at: number;
  delivered_at: number | null;
}): DeliveryView {
  return {
    state: r.state,
    attempts: r.attempts,
    nextAttemptAt: r.state === 'pending' ? new Date(r.next_attempt_at).toISOString() : null,
    lastError: r.last_error,
    response: r.response,
    createdAt: new Date(r.created_at).toISOString(),
    deliveredAt: r.delivered_at === null ? null : new Date(r.delivered_at).toISOString(),
  };
}

export interface QueueDeps {
  db: Kysely<Database>;
  dialect: Dialect;
  clock: Clock;
  /** The retries' jitter; crypto-random when absent. */
  random?: RandomSource | undefined;
  policy: OutboxPolicy;
  log: Logger;
  table: QueueTable;
  /** For log lines: "emails", "webhooks". */
  what: string;
  /** For log lines about one item: "dcv email", "webhook". */
  noun: string;
  /** Free slots a claim waits for (default: `claimBatch` of the concurrency). */
  claimBatch?: number;
}

/**
 * How many free slots a claim waits for: a quarter of the concurrency (4 of
 * the default 16). A claim of one row cost about as much as one of four (the
 * commit dominates), and emails claimed together finish together, so their
 * outcomes share a commit too. The price: on average about one slot in eight
 * waits for its neighbour, which only matters against an SMTP server slower
 * than dcvd.
 */
export function claimBatch(concurrency: number): number {
  return Math.max(1, Math.floor(concurrency / 4));
}

export type ClaimState = 'sending' | 'pending';
export interface ClaimInput extends Record<string, unknown> {
  state: ClaimState;
  now: number;
  limit: number;
  leaseUntil: number;
  token: string;
}

const claimQueries = new Map<string, PreparedQuery<ClaimInput, QueueColumns>>();

/** The claim of one queue table and kind of due row, compiled once per dialect (exported for test/queue-plan.test.ts). */
export function claimQuery(table: QueueTable, state: ClaimState, dialect: Dialect): PreparedQuery<ClaimInput, QueueColumns> {
  const key = `${table} ${state} ${dialect}`;
  let query = claimQueries.get(key);
  if (query) return query;
  const due = state === 'sending' ? 'lease_until' : 'next_attempt_at';
  query = prepared((database, p: ClaimInput) => {
    const db = database as unknown as Kysely<{ q: QueueColumns }>;
    const name = table as unknown as 'q';
    return db
      .updateTable(name)
      .set((eb) => ({
        state: 'sending',
        lease_until: p.leaseUntil,
        claim_token: p.token,
        attempts: eb('attempts', '+', 1),
        updated_at: p.now,
      }))
      .where((eb) => {
        const rows = eb.selectFrom(name).select('id').where('state', '=', p.state).where(due, '<=', p.now).orderBy(due).limit(p.limit);
        if (dialect !== 'postgres') return eb('id', 'in', rows);
        // `id = ANY(ARRAY(…))`, not `id IN (…)`: PostgreSQL may plan IN as a
        // nested-loop semi join that runs the subquery again for each row it
        // updates, and SKIP LOCKED makes each run skip the rows this statement
        // already took, so one claim took every due row (seen: limit 8, 500
        // taken, when the table was analyzed while nothing was pending). ARRAY
        // is an init plan: it runs once.
        return eb('id', '=', eb.fn.any(sql<number[]>`array${rows.forUpdate().skipLocked()}`));
      })
      // The state again, as a guard, written so that no index can serve it and the rows are
      // found by primary key (store/database.ts unindexedState: 0.8 ms a claim at 15,000 pending
      // on SQLite with a plain `state = ?`, against 0.12 ms by primary key).
      .where(unindexedState(dialect), '=', p.state)
      .returningAll() as unknown as Compilable<QueueColumns>;
  });
  claimQueries.set(key, query);
  return query;
}

export abstract class LeasedQueueWorker<Row extends QueueColumns> {
  private readonly inFlight = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private pumping: Promise<void> | undefined;
  private again = false;
  private stopping = false;
  /** When to look for rows whose lease ran out next (clock ms). */
  private nextTakeover = 0;
  /** Free slots a claim waits for (`claimBatch`). */
  private readonly claimBatch: number;
  /** Outcomes waiting for their commit (see `finish`). */
  private outcomes: Outcome[] = [];

  constructor(private readonly queue: QueueDeps) {
    this.claimBatch = queue.claimBatch ?? claimBatch(queue.policy.concurrency);
  }

  /** Delivers one claimed row and records its outcome with `finish`. */
  protected abstract deliver(row: Row): Promise<void>;

  /** Releases what delivery holds (a transport), after the last row in flight. */
  protected async close(): Promise<void> {}

  start(): void {
    this.timer = setInterval(() => this.wake(), this.queue.policy.pollMs);
    this.timer.unref();
    this.wake();
  }

  /** Look for due rows now (called when one was queued in this process). */
  wake(): void {
    if (this.stopping) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      // A wake that came after the last look for due rows.
      if (this.again) this.wake();
    });
  }

  /** Stops claiming, lets every claimed row finish (bounded by the delivery timeouts), then closes. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    await this.pumping;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    await this.close();
  }

  /** Resolves when nothing is in flight or being claimed (tests, benchmarks). */
  async idle(): Promise<void> {
    while (this.pumping || this.inFlight.size > 0) {
      await this.pumping;
      await Promise.allSettled([...this.inFlight]);
    }
  }

  private async pump(): Promise<void> {
    const { policy, log } = this.queue;
    try {
      do {
        this.again = false;
        while (!this.stopping && policy.concurrency - this.inFlight.size >= this.claimBatch) {
          const limit = policy.concurrency - this.inFlight.size;
          const rows = await this.claim(limit);
          for (const row of rows) {
            // A delivery that throws must not become an unhandled rejection (it would end the process).
            const p: Promise<void> = this.deliver(row).catch((err: unknown) => log.error({ err, table: this.queue.table }, `delivering ${this.queue.what} failed`)).finally(() => {
              this.inFlight.delete(p);
              this.wake();
            });
            this.inFlight.add(p);
          }
          // Fewer than asked: nothing more is due now (a wake or the timer looks again).
          if (rows.length < limit) break;
        }
      } while (this.again && !this.stopping);
    } catch (err) {
      log.error({ err, table: this.queue.table }, `claiming ${this.queue.what} failed`);
    }
  }

  /**
   * Takes up to `limit` due rows: sending ones whose lease ran out (a dead
   * worker's), then pending ones whose time has come. Expired leases are looked
   * for at most once a poll interval (and again at once after a full batch of
   * them): a lease lasts minutes, and the look costs a statement, which before
   * every claim was a third of the claims' cost while a backlog drained.
   */
  private async claim(limit: number): Promise<Row[]> {
    const now = this.queue.clock.now();
    let taken: Row[] = [];
    if (now >= this.nextTakeover) {
      taken = await this.claimWhere(limit, 'sending');
      this.nextTakeover = taken.length === limit ? now : now + this.queue.policy.pollMs;
    }
    return taken.length < limit ? [...taken, ...(await this.claimWhere(limit - taken.length, 'pending'))] : taken;
  }

  /**
   * One statement per claim, precompiled (src/store/prepared.ts). Each of the
   * two kinds is a range of its own index ((state, lease_until), (state,
   * next_attempt_at)), and the rows it updates are found by primary key, so a
   * claim costs the same with a backlog of millions as with none.
   */
  private async claimWhere(limit: number, state: ClaimState): Promise<Row[]> {
    const { clock, policy } = this.queue;
    const now = clock.now();
    return this.claimRows({ state, now, limit, leaseUntil: now + policy.leaseMs, token: randomUUID() });
  }

  /** Runs one claim (`claimQuery`). The webhook worker claims its pending rows with a fair share per receiver instead (webhooks/fair-claim.ts). */
  protected async claimRows(input: ClaimInput): Promise<Row[]> {
    const { db, dialect, table } = this.queue;
    return (await claimQuery(table, input.state, dialect).rows(db, input)) as unknown as Row[];
  }

  /**
   * Records a failed attempt: the row fails for good when the failure is
   * permanent or its attempts are used up (with `onFailed`'s changes too),
   * else it waits for its next attempt with backoff. Logs either outcome.
   */
  protected async failedAttempt(
    row: Row,
    reason: string,
    opts: { permanent: boolean; where: Record<string, unknown>; onFailed?: Partial<Omit<Row, 'id'>> },
  ): Promise<void> {
    const { clock, random, policy, log, noun } = this.queue;
    if (opts.permanent || row.attempts >= policy.maxAttempts) {
      await this.finish(row, { state: 'failed', last_error: reason, ...opts.onFailed } as Partial<Omit<Row, 'id'>>);
      log.warn({ ...opts.where, state: 'failed', reason }, `${noun} failed`);
    } else {
      const next = clock.now() + retryDelay(policy, row.attempts, random);
      await this.finish(row, { state: 'pending', next_attempt_at: next, last_error: reason } as Partial<Omit<Row, 'id'>>);
      log.warn({ ...opts.where, state: 'pending', reason, retryAt: new Date(next).toISOString() }, `${noun} attempt failed; will retry`);
    }
  }

  /**
   * Records an outcome, only while this claim still holds the row. Outcomes
   * that arrive within one turn of the event loop are committed together (one
   * transaction); each caller waits for its commit, so a row keeps its slot
   * until its outcome is durable.
   */
  protected finish(row: Row, changes: Partial<Omit<Row, 'id'>>): Promise<void> {
    const values = { ...(changes as Record<string, unknown>), lease_until: null, claim_token: null, updated_at: this.queue.clock.now() };
    return new Promise((done) => {
      if (this.outcomes.length === 0) setImmediate(() => void this.commitOutcomes());
      this.outcomes.push({ id: row.id, token: row.claim_token, values, done });
    });
  }

  private async commitOutcomes(): Promise<void> {
    const { db, table } = this.queue;
    const batch = this.outcomes;
    this.outcomes = [];
    const record = (trx: Kysely<Database>, o: Outcome) => finishQuery(table, Object.keys(o.values)).execute(trx, { ...o.values, id: o.id, claimed: o.token });
    try {
      if (batch.length === 1) await record(db, batch[0]!);
      else await db.transaction().execute(async (trx) => {
        for (const o of batch) await record(trx, o);
      });
      for (const o of batch) o.done();
      return;
    } catch (err) {
      if (batch.length === 1) {
        this.outcomeLost(batch[0]!, err);
        batch[0]!.done();
        return;
      }
    }
    // One outcome the database refuses must not lose the others': each again on its own.
    for (const o of batch) {
      try {
        await record(db, o);
      } catch (err) {
        this.outcomeLost(o, err);
      }
    }
    for (const o of batch) o.done();
  }

  private outcomeLost(o: Outcome, err: unknown): void {
    // The lease runs out and the row is taken over; for a delivered one that means a second send, so say so loudly.
    this.queue.log.error({ err, table: this.queue.table, id: o.id, outcome: o.values.state }, 'recording a delivery outcome failed');
  }
}

interface Outcome {
  id: number;
  token: string | null;
  values: Record<string, unknown>;
  done: () => void;
}

const finishQueries = new Map<string, PreparedQuery<Record<string, unknown>, unknown>>();

/**
 * The outcome update of one queue table and set of changed columns, compiled
 * once per dialect (an outbox has a handful of outcomes, so a handful of
 * statements). A value may be null: only the columns are fixed, not the values.
 */
function finishQuery(table: QueueTable, changed: string[]): PreparedQuery<Record<string, unknown>, unknown> {
  const key = `${table} ${changed.join(',')}`;
  let query = finishQueries.get(key);
  if (query) return query;
  query = prepared((database, p: Record<string, unknown>) => {
    const db = database as unknown as Kysely<{ q: Record<string, unknown> & { id: number; state: string; claim_token: string | null } }>;
    // Only a row still `sending` under this worker's claim: an outcome is final (src/outbox/state-counts.ts counts on it).
    return db
      .updateTable(table as unknown as 'q')
      .set(Object.fromEntries(changed.map((column) => [column, p[column]])))
      .where('id', '=', p.id as number)
      .where('claim_token', '=', p.claimed as string)
      .where('state', '=', 'sending');
  });
  finishQueries.set(key, query);
  return query;
}
