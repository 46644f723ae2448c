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
 * emails from the oldest waiting one on (the queue and what was sent since) and index probes (on
 * PostgreSQL also a walk back over the last minute's emails, below).
 *
 * "Older" is by id, and an id is only trusted once every email with a smaller id is visible: SQLite has
 * one writer at a time, and its ids (AUTOINCREMENT, never reused) become visible in order. PostgreSQL draws
 * an identity when a row is inserted and shows it when its transaction commits, so an id may appear after
 * a larger one: there the trusted id is the newest of the emails created at least `settleMs` (60 s) ago by
 * the system clock, whose smaller ids were drawn before it by transactions that have ended since (dcvd's
 * transactions that queue emails run a few statements of at most 5 s each). The totals are counted again
 * from nothing every `recountMs` (1 h) all the same, so that an email a longer transaction inserted (or a
 * clock far off) is missing from them for at most that long. On both, the totals start again when the
 * largest id went down (a database restored under a running server).
 */
import { sql, type Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import { dialectOf } from '../store/database.ts';
import { OUTBOX_STATES } from './states.ts';

export type OutboxState = (typeof OUTBOX_STATES)[number];

export interface OutboxStateCountsOptions {
  /** PostgreSQL: how old an email must be (by its creation time) before ids up to its own are trusted (default 60 s). */
  settleMs?: number;
  /** PostgreSQL: how often the final emails are counted again from nothing (default 1 h; SQLite: never). */
  recountMs?: number;
  /** The clock the emails' creation times are read against, in ms (default: the system's). */
  now?: () => number;
}

export interface OutboxStateCounts {
  /** Every state with its number of emails (0 for none) and the creation time of the oldest email still waiting. */
  read(): Promise<{ counts: Record<OutboxState, number>; oldestWaitingCreatedAt: number | undefined }>;
}

const WAITING = ['pending', 'sending'] as const;

/**
 * The largest id, by the primary key, and the oldest email still waiting, by the state's index (exported
 * for the plan checks). `id + 0`: a `min(id)` alone is planned by PostgreSQL as a walk of the primary key
 * from the oldest email until a waiting one, through the whole history (measured: 38 ms at 200,000
 * emails against 0.7 ms); beside `min(created_at)` it is not, but the guard does not depend on that.
 */
export const headQuery = (db: Kysely<Database>, settledBefore: number | undefined) =>
  db
    .selectFrom('outbox')
    .select((eb) => [
      eb.selectFrom('outbox as o').select((o) => o.fn.max('o.id').as('m')).as('max_id'),
      // PostgreSQL: the newest email created before `settledBefore`, found by walking the primary key back from the newest.
      settledBefore === undefined
        ? sql<null>`null`.as('settled_id')
        : eb.selectFrom('outbox as s').select((o) => o.fn.max('s.id').as('m')).where('s.created_at', '<=', settledBefore).as('settled_id'),
      sql<number | string | null>`min(id + 0)`.as('oldest_id'),
      eb.fn.min('created_at').as('oldest_at'),
    ])
    .where('state', 'in', WAITING);

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
  const settleMs = options.settleMs ?? 60_000;
  const recountMs = postgres ? (options.recountMs ?? 3_600_000) : Infinity;
  const now = options.now ?? Date.now;
  /** The final emails with ids up to `upTo`, counted once. */
  let upTo = 0;
  let final = zero();
  let countedSince = now();
  const byState = (from: number, to: number) => rangeQuery(db, from, to).execute();

  return {
    async read() {
      const at = now();
      const head = await headQuery(db, postgres ? at - settleMs : undefined).executeTakeFirstOrThrow();
      const maxId = head.max_id == null ? 0 : Number(head.max_id);
      if (maxId < upTo || at - countedSince >= recountMs) {
        upTo = 0;
        final = zero();
        countedSince = at;
      }
      // The largest id every smaller one is visible below: SQLite's newest; PostgreSQL's newest email of settleMs ago.
      const trusted = postgres ? (head.settled_id == null ? 0 : Number(head.settled_id)) : maxId;
      const oldestWaiting = head.oldest_id == null ? undefined : Number(head.oldest_id);
      const settled = Math.min(trusted, oldestWaiting === undefined ? Infinity : oldestWaiting - 1);
      if (settled > upTo) {
        for (const r of await byState(upTo, settled)) final[r.state as OutboxState] += Number(r.n);
        upTo = settled;
      }
      const counts = { ...final };
      if (maxId > upTo) for (const r of await byState(upTo, maxId)) counts[r.state as OutboxState] += Number(r.n);
      return { counts, oldestWaitingCreatedAt: head.oldest_at == null ? undefined : Number(head.oldest_at) };
    },
  };
}
