/**
 * The webhook outbox's claim of due events: a fair share of the delivery slots per receiver, decided in the
 * claim itself (docs/OPERATIONS.md, "Signed webhooks"). A receiver (an account's own URL, or the events queued
 * before migration 0007, which name none and share one cap of their own) has at most `cap` events in
 * `sending` under a live lease at once, counted in the database, so over every worker and instance sharing
 * it; one claim takes at most `cap` minus that count per receiver, oldest first. So a receiver that hangs, or
 * an account with thousands of events, holds `cap` slots and leaves the others to everyone else, and no
 * event is claimed only to be put back (the first attempt, reverted in 6b8b7f1, put over-cap events back for
 * one time limit: 37 of 400 events delivered in 20 s to a receiver answering in 20 ms).
 *
 * The global receiver (the operator's --webhook-url, the commonest and often the only one) has a share of its
 * own, `globalCap` (by default every slot but one receiver's share: 12 of 16), so that an operator whose only
 * receiver it is keeps most of the worker's slots, and whatever it does the rest are left to accounts' URLs.
 * Its first `cap` events in `sending` compete with everyone's in due order; a claim gives it the ones beyond
 * those only after every other receiver's eligible events, so a busy global receiver with an old backlog
 * does not keep an account's event waiting behind that backlog whenever one of its POSTs ends.
 *
 * The statement, on both databases:
 *  1. `receivers`: the receivers with pending events, walked one index seek each (a recursive "loose index
 *     scan" of migration 0017's index (receiver, next_attempt_at) of pending rows);
 *  2. `candidates`: each one's oldest `cap` due events but the global receiver's (an index range each: a
 *     LATERAL subquery on PostgreSQL, a join on the ids a correlated subquery lists on SQLite), the global
 *     receiver's oldest `globalCap` (one index range), and the oldest `cap` of the events without a receiver;
 *  3. `busy`: the events in `sending` with a live lease, per receiver (a range of the lease index: a few
 *     dozen rows, the slots of every instance; rows whose lease ran out are not counted, and count again
 *     once the takeover claim has taken them);
 *  4. numbered per receiver in due order (`row_number() over (partition by receiver …)`), kept while the
 *     number plus the receiver's busy count is within its cap, the oldest `limit` of them chosen, the
 *     global receiver's beyond `cap` last;
 *  5. on PostgreSQL the chosen ones locked `for update skip locked` (a locking clause cannot stand beside
 *     the window function, and locking every candidate would lock `cap` rows per receiver), then updated,
 *     found again by primary key, under the same state guard as the queues' claim.
 *
 * Its cost grows with the receivers that have pending events, not with the events: one hung receiver with
 * 50,000 due events costs what 4 would. Measured once (scratch script, 12 free slots, a cap of 4, one
 * receiver at its cap with 50,000 due events): on SQLite the statement with its update, before the commit,
 * 0.4–0.7 ms beside 20 other receivers with due events (the email outbox's statement on the same table:
 * 0.2–0.4 ms), 2.7 ms beside 1,000 and 11 ms beside 10,000, about 2.5 µs a receiver; on PostgreSQL 8.7 ms
 * beside 1,000. A window over every due row, the obvious statement, took 52 ms a claim over those 50,000 rows
 * on SQLite, holding its write lock meanwhile; reading only the oldest few hundred due rows would have let
 * the hung receiver's oldest events hide everyone else's, which is the starvation this is for.
 *
 * On PostgreSQL a claim's snapshot cannot see another instance's claim that has not committed yet, so two at
 * once could each count the other's receivers below their cap: the claims of every instance take one
 * transaction-scoped advisory lock first and run one after another (a few ms each). SQLite's write lock,
 * which the claim's UPDATE takes before it reads, does the same there.
 */
import { sql, type Kysely, type RawBuilder, type Selectable } from 'kysely';
import { unindexedState, type Dialect } from '../store/database.ts';
import type { Database, WebhookOutboxTable } from '../store/schema.ts';
import { GLOBAL_RECEIVER } from './secrets.ts';
import { prepared, type PreparedQuery } from '../store/prepared.ts';

type WebhookRow = Selectable<WebhookOutboxTable>;

/**
 * A receiver's share of the delivery slots by default (`--webhook-receiver-concurrency`): a quarter of the
 * worker's (4 of the default 16), at least 1.
 */
export function defaultReceiverConcurrency(concurrency: number): number {
  return Math.max(1, Math.floor(concurrency / 4));
}

/**
 * The global receiver's share by default (`--webhook-global-concurrency`): every slot but one receiver's
 * share (12 of the default 16, with the default share of 4), so that whatever the operator's own receiver
 * does, an account's share of the slots is left to the others; but never less than another receiver's share
 * (which wins where the operator made that more than half the slots).
 */
export function defaultGlobalConcurrency(concurrency: number, receiverCap: number): number {
  return Math.max(receiverCap, concurrency - receiverCap);
}

export interface FairClaimInput extends Record<string, unknown> {
  now: number;
  limit: number;
  leaseUntil: number;
  token: string;
  /** The most events in `sending` one receiver may have: an account's own URL, or the events without a receiver. */
  cap: number;
  /** The most events in `sending` the global receiver (`--webhook-url`) may have. */
  globalCap: number;
  /**
   * Only events claimed since then count as sending (clock ms): a live worker finishes an event within the
   * webhook time limit, so older ones are a dead worker's, waiting for their lease to run out and be taken
   * over, and must not hold their receiver's share meanwhile (`busySince`).
   */
  claimedSince: number;
}

/**
 * When an event in `sending` stops holding its receiver's share: claimed longer ago than twice the time limit
 * of a POST (its lookup included) and a minute for the worker's reads and its outcome's commit. A live worker
 * is done with it by then; a dead one's events wait for their lease (`--outbox-lease`, 5 min) to be taken
 * over, and until 2026-12-04 they held the share all that time, so a crash stopped its receivers' deliveries
 * for up to 5 min (found by a review).
 */
export function busySince(now: number, webhookTimeoutMs: number): number {
  return now - (2 * webhookTimeoutMs + 60_000);
}

/** The global receiver's key in the `receiver` column (secrets.ts), written into the statement as a literal. */
const GLOBAL = sql.lit(GLOBAL_RECEIVER);

/**
 * The webhook claims' advisory lock on PostgreSQL: the two-key form, whose key space is apart from the
 * one-key locks of order numbers (orders/orders.ts). 0x64637664 is "dcvd".
 */
const CLAIM_LOCK = sql`select pg_advisory_xact_lock(1684240996, 1)`;

const fairClaims = new Map<Dialect, PreparedQuery<FairClaimInput, WebhookRow>>();

/** The claim statement of a dialect, compiled once (exported for test/webhook-fair-share.test.ts and test/queue-plan.test.ts). */
export function fairClaimQuery(dialect: Dialect): PreparedQuery<FairClaimInput, WebhookRow> {
  let query = fairClaims.get(dialect);
  if (query) return query;
  const postgres = dialect === 'postgres';
  query = prepared((db, p: FairClaimInput) => {
    // Written so that only migration 0017's index, whose predicate it is, serves the pending rows (and the
    // rows updated are found again by primary key): with statistics taken while nothing was pending,
    // PostgreSQL read the whole (state, …) indexes of a 50,000-event backlog for each receiver (0.2–0.4 s).
    const pending = sql`${unindexedState(dialect)} = 'pending'`;
    // In the index's order: PostgreSQL sorted the events without a receiver when asked for `next_attempt_at` alone.
    const oldest = (columns: RawBuilder<unknown>, receiver: RawBuilder<unknown>, limit: number | RawBuilder<unknown>) =>
      sql`select ${columns} from webhook_outbox
          where ${pending} and receiver ${receiver} and next_attempt_at <= ${p.now}
          order by receiver, next_attempt_at limit ${limit}`;
    const row = sql`id, next_attempt_at, receiver`;
    // The global receiver has a read of its own, of its larger share (SQLite refuses a LIMIT that names the
    // receiver in its correlated subquery, and a LIMIT of the global share for every receiver made PostgreSQL read
    // the whole backlog through a bitmap scan, stale statistics). So the walk's receivers but the global one are
    // read with the others' share, and the global one by that read alone: no event is a candidate twice.
    const others = sql`where r <> ${GLOBAL}`;
    // On PostgreSQL the global share is a subquery's value, which the planner cannot see: told 12, with statistics
    // from before a backlog it expected no more due events than that, so it read every one by a bitmap scan and
    // sorted them (86 ms for 100,000 due events); not knowing the limit, it reads the index in order and stops there.
    const globalLimit = postgres ? sql`(select cast(${p.globalCap} as bigint))` : p.globalCap;
    // SQLite has no LATERAL: each receiver's rows are joined by the ids its subquery lists.
    const perReceiver = postgres
      ? sql`select c.* from receivers cross join lateral (${oldest(row, sql`= r`, p.cap)}) c ${others}`
      : sql`select w.id, w.next_attempt_at, w.receiver from receivers join webhook_outbox w on w.id in (${oldest(sql`id`, sql`= r`, p.cap)}) ${others}`;
    const chosen = sql`with recursive receivers(r) as (
        select (select receiver from webhook_outbox where ${pending} and receiver is not null order by receiver limit 1)
        union all
        select (select receiver from webhook_outbox where ${pending} and receiver > r order by receiver limit 1) from receivers where r is not null
      ),
      candidates as (
        ${perReceiver}
        union all
        select * from (${oldest(row, sql`= ${GLOBAL}`, globalLimit)}) global_receiver
        union all
        select * from (${oldest(row, sql`is null`, p.cap)}) legacy
      ),
      busy as (
        select coalesce(receiver, '') as r, count(*) as n from webhook_outbox
        where state = 'sending' and lease_until > ${p.now} and updated_at > ${p.claimedSince} group by coalesce(receiver, '')
      )
      select id from (
        select c.id, c.next_attempt_at, c.receiver, row_number() over (partition by c.receiver order by c.next_attempt_at, c.id) + coalesce(b.n, 0) as slot
        from candidates c left join busy b on b.r = coalesce(c.receiver, '')
      ) numbered
      where case when receiver = ${GLOBAL} then slot <= ${p.globalCap} else slot <= ${p.cap} end
      order by case when receiver = ${GLOBAL} and slot > ${p.cap} then 1 else 0 end, next_attempt_at, id
      limit ${p.limit}`;
    // `id = any(array(…))` on PostgreSQL, as the queues' claim (queue/leased.ts): an init plan, run once. The
    // chosen events are locked `for update skip locked` there, not every candidate (a locking clause cannot
    // stand beside the window function): one taken meanwhile by a claim outside the advisory lock (an
    // instance of before migration 0017, during an upgrade) is left out, not waited for.
    const ids = postgres
      ? sql`id = any(array(select id from webhook_outbox where id = any(array(${chosen})) for update skip locked))`
      : sql`id in (${chosen})`;
    const update = sql<WebhookRow>`update webhook_outbox
      set state = 'sending', lease_until = ${p.leaseUntil}, claim_token = ${p.token}, attempts = attempts + 1, updated_at = ${p.now}
      where ${ids} and ${pending}
      returning *`;
    return { compile: () => update.compile(db) };
  });
  fairClaims.set(dialect, query);
  return query;
}

/** Takes up to `limit` due events, at most `cap` in `sending` per receiver, `globalCap` for the global one (with those already sending). */
export async function claimFairShare(db: Kysely<Database>, dialect: Dialect, input: FairClaimInput): Promise<WebhookRow[]> {
  const query = fairClaimQuery(dialect);
  if (dialect !== 'postgres') return query.rows(db, input);
  return db.transaction().execute(async (trx) => {
    await CLAIM_LOCK.execute(trx);
    return query.rows(trx, input);
  });
}
