/**
 * Failures per source IP in a window, blocking the IP once a limit is reached
 * (CONTRACT §6, §7), in the database so that several instances count together.
 * Used for API logins (`ip_failures`) and for guessed validation codes
 * (`code_failures`); both tables have one shape.
 *
 * The limit holds under concurrency (issue 14): before the work that can fail
 * (an argon2 verification, a code lookup) the caller reserves an attempt with
 * one atomic upsert that succeeds only while failures + attempts in flight are
 * under the limit; afterwards it settles the attempt as a failure (which may
 * block the IP) or releases it. A burst of any size therefore reaches at most
 * `limit` attempts per source per window, on every instance together. A
 * reservation that is never settled (a process killed mid-attempt) stops
 * counting after RESERVATION_TTL_MS.
 *
 * Sources are counted by `limitKey`: IPv6 addresses by their network of
 * `ipv6Prefix` bits.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Database, IpFailureTable } from '../store/schema.ts';
import { prepared, type PreparedQuery } from '../store/prepared.ts';
import { DEFAULT_IPV6_PREFIX, limitKey } from './networks.ts';

/** Either table, typed by the shape both have. */
type Counters = Kysely<Record<string, IpFailureTable>>;
const counters = (db: Kysely<Database>) => db as unknown as Counters;

/** After this long an unsettled reservation no longer counts (its process died). */
export const RESERVATION_TTL_MS = 60_000;

export interface FailureLimit {
  /** Failures within the window that block the IP. */
  limit: number;
  windowMs: number;
  blockMs: number;
}

/** `ok`: reserved; `blocked`: the source is blocked; `busy`: the limit is taken by attempts in flight. */
export type Reservation = 'ok' | 'blocked' | 'busy';

/**
 * Runs `attempt` until it is not `busy` (attempts in flight settle within
 * milliseconds), backing off up to `maxWaitMs` in all; then answers `busy`.
 */
export async function untilNotBusy<T>(attempt: () => Promise<T | 'busy'>, maxWaitMs = 10_000): Promise<T | 'busy'> {
  const deadline = Date.now() + maxWaitMs;
  let pause = 5;
  for (;;) {
    const result = await attempt();
    if (result !== 'busy' || Date.now() >= deadline) return result;
    await sleep(pause + Math.random() * pause);
    pause = Math.min(pause * 2, 200);
  }
}

/** How many sources' keys a counter remembers. */
const KEY_MEMORY = 1024;

export class FailureCounter {
  private readonly db: Counters;
  /** The block check runs on every API request (and every code guess): precompiled. */
  private readonly blockedUntil: PreparedQuery<{ ip: string }, Pick<IpFailureTable, 'blocked_until'>>;

  constructor(
    private readonly database: Kysely<Database>,
    private readonly table: 'ip_failures' | 'code_failures',
    private readonly policy: FailureLimit,
    private readonly ipv6Prefix: number = DEFAULT_IPV6_PREFIX,
  ) {
    this.db = counters(database);
    this.blockedUntil = prepared((db, p: { ip: string }) => counters(db).selectFrom(table).select('blocked_until').where('ip', '=', p.ip));
  }

  /** The keys of the sources seen last (a pure function of the address): parsing one was about 1 % of an API call's CPU. */
  private readonly keys = new Map<string, string>();

  /** The row key `ip` is counted under (its network for IPv6). */
  key(ip: string): string {
    let key = this.keys.get(ip);
    if (key === undefined) {
      key = limitKey(ip, this.ipv6Prefix).slice(0, 64);
      // Bounded: a flood of distinct sources just starts the memory over.
      if (this.keys.size >= KEY_MEMORY) this.keys.clear();
      this.keys.set(ip, key);
    }
    return key;
  }

  private col(name: keyof IpFailureTable): RawBuilder<number> {
    return sql<number>`${sql.ref(`${this.table}.${name}`)}`;
  }

  /** Failures of the current window (0 once it is over). */
  private liveFailures(now: number): RawBuilder<number> {
    return sql<number>`(case when ${this.col('window_start')} <= ${now - this.policy.windowMs} then 0 else ${this.col('failures')} end)`;
  }

  /** Attempts in flight that still count. */
  private livePending(now: number): RawBuilder<number> {
    return sql<number>`(case when ${this.col('pending_at')} is null or ${this.col('pending_at')} <= ${now - RESERVATION_TTL_MS} then 0 else ${this.col('pending')} end)`;
  }

  async blocked(ip: string, now: number): Promise<boolean> {
    return (await this.blockEnd(ip, now)) !== undefined;
  }

  /** When the block of `ip` ends, if it is blocked at `now`. */
  async blockEnd(ip: string, now: number): Promise<number | undefined> {
    const row = await this.blockedUntil.first(this.database, { ip: this.key(ip) });
    return row?.blocked_until != null && row.blocked_until > now ? row.blocked_until : undefined;
  }

  /** Reserves one attempt for `ip` (see the module comment); settle it with `fail` or `release`. */
  async reserve(ip: string, now: number): Promise<Reservation> {
    const key = this.key(ip);
    const t = this.table;
    const row = await this.db
      .insertInto(t)
      .values({ ip: key, window_start: now, failures: 0, blocked_until: null, pending: 1, pending_at: now })
      .onConflict((oc) =>
        oc
          .column('ip')
          .doUpdateSet({
            pending: sql<number>`${this.livePending(now)} + 1`,
            pending_at: now,
            failures: this.liveFailures(now),
            window_start: sql<number>`(case when ${this.col('window_start')} <= ${now - this.policy.windowMs} then ${now} else ${this.col('window_start')} end)`,
          })
          .where(sql<boolean>`(${this.col('blocked_until')} is null or ${this.col('blocked_until')} <= ${now}) and ${this.liveFailures(now)} + ${this.livePending(now)} < ${this.policy.limit}`),
      )
      .returning('pending')
      .executeTakeFirst();
    if (row) return 'ok';
    return (await this.blocked(ip, now)) ? 'blocked' : 'busy';
  }

  /** Gives a reserved attempt back without counting it (it did not fail). */
  async release(ip: string): Promise<void> {
    await this.db
      .updateTable(this.table)
      .set({ pending: sql<number>`(case when ${this.col('pending')} > 0 then ${this.col('pending')} - 1 else 0 end)` })
      .where('ip', '=', this.key(ip))
      .execute();
  }

  /**
   * Counts one failure, settling a reserved attempt when `reserved`; the
   * failure that reaches the limit blocks the IP for `blockMs` (one statement).
   */
  async fail(ip: string, now: number, reserved = true): Promise<void> {
    const live = this.liveFailures(now);
    const reaches = sql<boolean>`${live} + 1 >= ${this.policy.limit}`;
    const pending = this.col('pending');
    await this.db
      .insertInto(this.table)
      .values({ ip: this.key(ip), window_start: now, failures: this.policy.limit <= 1 ? 0 : 1, blocked_until: this.policy.limit <= 1 ? now + this.policy.blockMs : null })
      .onConflict((oc) =>
        oc.column('ip').doUpdateSet({
          pending: reserved ? sql<number>`(case when ${pending} > 0 then ${pending} - 1 else 0 end)` : pending,
          blocked_until: sql<number>`(case when ${reaches} then ${now + this.policy.blockMs} else ${this.col('blocked_until')} end)`,
          failures: sql<number>`(case when ${reaches} then 0 else ${live} + 1 end)`,
          window_start: sql<number>`(case when ${reaches} or ${this.col('window_start')} <= ${now - this.policy.windowMs} then ${now} else ${this.col('window_start')} end)`,
        }),
      )
      .execute();
  }

  /** Counts one failure that had no reservation. */
  record(ip: string, now: number): Promise<void> {
    return this.fail(ip, now, false);
  }

  /** Deletes counters whose window and block are both over and that have nothing in flight; returns how many. */
  async purge(now: number): Promise<number> {
    const result = await this.db
      .deleteFrom(this.table)
      .where('window_start', '<=', now - this.policy.windowMs)
      .where((eb) => eb.or([eb('blocked_until', 'is', null), eb('blocked_until', '<=', now)]))
      .where((eb) => eb.or([eb('pending', '=', 0), eb('pending_at', 'is', null), eb('pending_at', '<=', now - RESERVATION_TTL_MS)]))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
