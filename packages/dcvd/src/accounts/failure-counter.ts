/**
 * Failures per source IP in a window, blocking the IP once a limit is reached
 * (CONTRACT §6, §7): one atomic upsert per failure, in the database so that
 * several instances count together. Used for API logins (`ip_failures`) and
 * for guessed validation codes (`code_failures`); both tables have one shape.
 */
import { sql, type Kysely } from 'kysely';
import type { Database, IpFailureTable } from '../store/schema.ts';
import { prepared, type PreparedQuery } from '../store/prepared.ts';

/** Either table, typed by the shape both have. */
type Counters = Kysely<Record<string, IpFailureTable>>;
const counters = (db: Kysely<Database>) => db as unknown as Counters;

export interface FailureLimit {
  /** Failures within the window that block the IP. */
  limit: number;
  windowMs: number;
  blockMs: number;
}

export class FailureCounter {
  private readonly db: Counters;
  /** The block check runs on every API request (and every code guess): precompiled. */
  private readonly blockedUntil: PreparedQuery<{ ip: string }, Pick<IpFailureTable, 'blocked_until'>>;

  constructor(
    private readonly database: Kysely<Database>,
    private readonly table: 'ip_failures' | 'code_failures',
    private readonly policy: FailureLimit,
  ) {
    this.db = counters(database);
    this.blockedUntil = prepared((db, p: { ip: string }) => counters(db).selectFrom(table).select('blocked_until').where('ip', '=', p.ip));
  }

  async blocked(ip: string, now: number): Promise<boolean> {
    const row = await this.blockedUntil.first(this.database, { ip });
    return row?.blocked_until != null && row.blocked_until > now;
  }

  /** Counts one failure; the one that reaches the limit blocks the IP for `blockMs`. */
  async record(ip: string, now: number): Promise<void> {
    const windowStart = now - this.policy.windowMs;
    const started = sql.ref(`${this.table}.window_start`);
    const failures = sql.ref(`${this.table}.failures`);
    const row = await this.db
      .insertInto(this.table)
      .values({ ip, window_start: now, failures: 1, blocked_until: null })
      .onConflict((oc) =>
        oc.column('ip').doUpdateSet({
          failures: sql<number>`case when ${started} <= ${windowStart} then 1 else ${failures} + 1 end`,
          window_start: sql<number>`case when ${started} <= ${windowStart} then ${now} else ${started} end`,
        }),
      )
      .returning('failures')
      .executeTakeFirst();
    if (row && row.failures >= this.policy.limit) {
      await this.db
        .updateTable(this.table)
        .set({ blocked_until: now + this.policy.blockMs, failures: 0, window_start: now })
        .where('ip', '=', ip)
        .execute();
    }
  }

  /** Deletes counters whose window and block are both over; returns how many. */
  async purge(now: number): Promise<number> {
    const result = await this.db
      .deleteFrom(this.table)
      .where('window_start', '<=', now - this.policy.windowMs)
      .where((eb) => eb.or([eb('blocked_until', 'is', null), eb('blocked_until', '<=', now)]))
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
