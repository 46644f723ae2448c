/**
 * The outbox's emails by state for the metrics (`dcvd_outbox_emails`), read at scrape time so they are
 * right across instances and restarts, without reading the whole outbox at every scrape (issue 20).
 *
 * No email is ever deleted (they are evidence), so a plain `count(*) … group by state` grows with the
 * whole history: a scrape took 15–17 ms at 200,000 emails on SQLite (bench/background.ts), where
 * better-sqlite3 holds the event loop for that long. But an email's final states (delivered, failed, cancelled) never change:
 * the queue records an outcome only from `sending`, and the cancels only from `pending`. So every email
 * older than the oldest one still waiting is final and stays as it is counted; those are counted once,
 * by id range, and added to as the oldest waiting email moves on. Each scrape then reads only the
 * emails from the oldest waiting one on (the queue and what was sent since) and index probes.
 *
 * "Older" is by id, and an id is only trusted once every email with a smaller id is visible: SQLite has
 * one writer at a time, and its ids (AUTOINCREMENT, never reused) become visible in order. PostgreSQL draws
 * an identity when a row is inserted and shows it when its transaction commits, so an id may appear after
 * a larger one: there the trusted id is the largest this process saw at a scrape at least `settleMs` (60 s)
 * before. Every smaller id had been drawn by then, by a transaction that has ended since: dcvd's
 * transactions that queue emails run a few statements of at most 5 s each and wait for nothing else (DNS
 * and MPIC come before them). Not the emails' `created_at`, which is when their request began. So a
 * process's scrapes count everything during its first minute. The totals are counted again from nothing
 * every `recountMs` (1 h) all the same, so that an email a longer transaction inserted is missing from them
 * for at most that long. On both, the totals and what was seen start again when the largest id went down
 * (a database restored under a running server), and the totals start again when a waiting email appears
 * among those counted as final (an operator's SQL putting failed emails back to pending, seen if a scrape
 * comes while they still wait; an edit a scrape does not see, or one between final states, stays in the
 * totals until the hourly recount on PostgreSQL or the process's restart on SQLite, which does not recount:
 * its full count is the event-loop stall this module removes). Each process keeps its own totals (on
 * PostgreSQL two processes' may differ by a late final email for up to that hour).
 *
 * The invariant the counting rests on is kept where outcomes are written: `finishQuery` (src/queue/leased.ts)
 * changes only a row still `sending` with the worker's claim, and the cancels only `pending` rows.
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import { dialectOf } from '../store/database.ts';
import { OUTBOX_STATES, WAITING_STATES } from './states.ts';

export type OutboxState = (typeof OUTBOX_STATES)[number];

export interface OutboxStateCountsOptions {
  /** PostgreSQL: how long after a scrape the largest id it saw is trusted (default 60 s). */
  settleMs?: number;
  /** PostgreSQL: how often the final emails are counted again from nothing (default 1 h; SQLite: never). */
  recountMs?: number;
  /** A monotonic clock in ms (default performance.now): this is about transactions' durations, not any dates. */
  now?: () => number;
}

export interface OutboxStateCounts {
  /** Every state with its number of emails (0 for none) and the creation time of the oldest email still waiting. */
  read(): Promise<{ counts: Record<OutboxState, number>; oldestWaitingCreatedAt: number | undefined }>;
}

/**
 * The largest id, by the primary key, and the oldest email still waiting, by the state's index (exported
 * for the plan checks). `id + 0`: a `min(id)` alone is planned by PostgreSQL as a walk of the primary key
 * from the oldest email until a waiting one, through the whole history (measured: 38 ms at 200,000
 * emails against 0.7 ms); beside `min(created_at)` it is not, but the guard does not depend on that.
 */
export const headQuery = (db: Kysely<Database>) =>
  db
    .selectFrom('outbox')
    .select((eb) => [
      eb.selectFrom('outbox as o').select((o) => o.fn.max('o.id').as('m')).as('max_id'),
      sql<number | string | null>`min(id + 0)`.as('oldest_id'),
      eb.fn.min('created_at').as('oldest_at'),
    ])
    .where('state', 'in', WAITING_STATES);

/**
 * The emails with ids in (from, to] by state (exported for the plan checks). From 0, the first count of a
 * process, a scan of a state index, which holds every id (SQLite's plan: the covering index, four times
 * faster than the table's rows); from an id, a range of the primary key. Bounded above in both: an
 * open-ended range is the state index's scan too on SQLite.
 */
export const rangeQuery = (db: Kysely<Database>, from: number, to: number) => {
  const q = db.selectFrom('outbox').select(['state', sql<number | string>`count(*)`.as('n')]).where('id', '<=', to);
  return (from > 0 ? q.where('id', '>', from) : q).groupBy('state');
};

const zero = (): Record<OutboxState, number> => Object.fromEntries(OUTBOX_STATES.map((s) => [s, 0])) as Record<OutboxState, number>;

export function outboxStateCounts(db: Kysely<Database>, options: OutboxStateCountsOptions = {}): OutboxStateCounts {
  const postgres = dialectOf(db) === 'postgres';
  const settleMs = postgres ? (options.settleMs ?? 60_000) : 0;
  const recountMs = postgres ? (options.recountMs ?? 3_600_000) : Infinity;
  const now = options.now ?? (() => performance.now());
  /** The final emails with ids up to `upTo`, counted once. */
  let upTo = 0;
  let final = zero();
  let countedSince = now();
  /** The largest id each scrape saw, oldest first: those of the last settleMs, and the newest one before. */
  let seen: { at: number; maxId: number }[] = [];
  const add = (into: Record<OutboxState, number>, rows: { state: string; n: number | string }[]) => {
    // A state dcvd does not write (a hand edit) is left out rather than turning a total into NaN.
    for (const r of rows) if (r.state in into) into[r.state as OutboxState] += Number(r.n);
  };

  return {
    async read() {
      const at = now();
      const head = await headQuery(db).executeTakeFirstOrThrow();
      const maxId = head.max_id == null ? 0 : Number(head.max_id);
      const oldestWaiting = head.oldest_id == null ? undefined : Number(head.oldest_id);
      if (maxId < upTo) seen = [];
      // A waiting email among those counted as final: dcvd never does that, but an operator's SQL may
      // (failed emails put back to pending), as may, on PostgreSQL, a transaction that outlived settleMs.
      const requeued = oldestWaiting !== undefined && oldestWaiting <= upTo;
      if (maxId < upTo || requeued || at - countedSince >= recountMs) {
        upTo = 0;
        final = zero();
        countedSince = at;
      }
      seen.push({ at, maxId });
      // The largest id trusted now: the newest one seen at least settleMs ago (SQLite: this scrape's).
      let newest = -1;
      while (newest + 1 < seen.length && at - seen[newest + 1]!.at >= settleMs) newest += 1;
      const trusted = newest >= 0 ? seen[newest]!.maxId : 0;
      if (newest > 0) seen.splice(0, newest);
      // Never above this scrape's largest id (an id seen before a restore is not one of this database's).
      const settled = Math.min(trusted, maxId, oldestWaiting === undefined ? Infinity : oldestWaiting - 1);
      if (settled > upTo) {
        add(final, await rangeQuery(db, upTo, settled).execute());
        upTo = settled;
      }
      const counts = { ...final };
      if (maxId > upTo) add(counts, await rangeQuery(db, upTo, maxId).execute());
      return { counts, oldestWaitingCreatedAt: head.oldest_at == null ? undefined : Number(head.oldest_at) };
    },
  };
}
