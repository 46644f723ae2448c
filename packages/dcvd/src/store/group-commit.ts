/**
 * Group commit on SQLite (issue 20, eighth round): the write transactions that requests ask for in one
 * turn of the event loop run in one SQLite transaction, each inside a savepoint of its own, and are
 * answered when that transaction has committed.
 *
 * Why: a commit in WAL mode writes every page its transaction changed to the log, one write per page,
 * and takes and drops SQLite's file locks. For a resend (an order's two rows, an outbox row and its
 * five index entries) that was the largest single cost of the request (70 µs of about 600, with the
 * BEGIN another 7). Transactions of one group mostly change the same pages (the outbox's last leaf
 * pages, its indexes' last pages), which a group writes once.
 *
 * What each transaction still gets, exactly as alone:
 * - atomicity: its savepoint is rolled back when its work throws, the others of the group go on;
 * - isolation: the group runs its members one after the other, each seeing the ones before it, as
 *   one connection ran them before (SQLite has one writer at a time anyway);
 * - durability before the answer: no member's promise settles before the group's COMMIT returned;
 *   when the COMMIT fails, every member that had succeeded fails with its error, and nothing of the
 *   group is written.
 * When SQLite rolls the whole transaction back by itself (a full disk, an I/O error), the members
 * that had run fail with that error and the ones not yet run go on in the next group.
 *
 * Used by the hot paths' write transactions through `writeTransaction` (src/store/database.ts):
 * ResendDCVEmail's queueing and AutoApplyOrder's order. The queues record their delivery outcomes of a
 * turn in one transaction their own way (src/queue/leased.ts, `finish`), on PostgreSQL too.
 *
 * A member must use only the transaction it is given: the group holds SQLite's one connection, so
 * a statement on the database itself would wait for the group, and the group for it.
 */
import type SQLite from 'better-sqlite3';
import type { ControlledTransaction, Kysely } from 'kysely';
import type { Database } from './schema.ts';

/** The work of one write transaction: its statements on `trx`, its result. */
export type TransactionWork<T> = (trx: Kysely<Database>) => Promise<T>;

interface Member {
  work: TransactionWork<unknown>;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/**
 * Members of one transaction at most: enough to take a loaded turn's requests (64 connections of a
 * benchmark, about a third of them in one turn), few enough that the first of them is not held long
 * (each member's statements take some tens of µs).
 */
export const MAX_GROUP_MEMBERS = 64;

const SAVEPOINT = 'dcvd_group_member';

export class GroupCommit {
  private readonly queue: Member[] = [];
  private scheduled = false;
  private running = false;
  /** Transactions committed, and the members they carried (tests, and the benchmark's notes). */
  readonly stats = { groups: 0, members: 0 };

  /**
   * `bind` is told the group's transaction when it begins and returns what undoes that when it ends:
   * the store lets the precompiled statements run on it synchronously meanwhile (database.ts).
   */
  constructor(
    private readonly db: Kysely<Database>,
    private readonly sqlite: SQLite.Database,
    private readonly bind: (trx: Kysely<Database>) => () => void = () => () => undefined,
    private readonly maxMembers = MAX_GROUP_MEMBERS,
  ) {}

  private readonly savepoints = new Map<string, SQLite.Statement>();

  /** SAVEPOINT, ROLLBACK TO and RELEASE of a member's savepoint, each prepared once. */
  private savepoint(command: 'savepoint' | 'rollback to' | 'release'): void {
    let stmt = this.savepoints.get(command);
    if (!stmt) this.savepoints.set(command, (stmt = this.sqlite.prepare(`${command} ${SAVEPOINT}`)));
    stmt.run();
  }

  run<T>(work: TransactionWork<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  /** After the poll phase: every request read in this turn of the loop has asked by then. */
  private schedule(): void {
    if (this.scheduled || this.running) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.running = true;
    try {
      await this.commitGroup(this.queue.splice(0, this.maxMembers));
    } finally {
      this.running = false;
      if (this.queue.length > 0) this.schedule();
    }
  }

  private async commitGroup(members: Member[]): Promise<void> {
    let trx: ControlledTransaction<Database>;
    try {
      trx = await this.db.startTransaction().execute();
    } catch (err) {
      for (const m of members) m.reject(err);
      return;
    }
    const unbind = this.bind(trx);
    let committed: { member: Member; value: unknown }[] | undefined;
    try {
      committed = await this.runMembers(trx, members);
    } finally {
      unbind();
    }
    // Answered once the transaction is no longer theirs to use.
    for (const d of committed ?? []) d.member.resolve(d.value);
  }

  /** The members run, and the COMMIT: the ones to answer, or undefined when the group failed (all answered). */
  private async runMembers(trx: ControlledTransaction<Database>, members: Member[]): Promise<{ member: Member; value: unknown }[] | undefined> {
    const done: { member: Member; value: unknown }[] = [];
    const failAll = async (err: unknown, notRun: Member[]) => {
      for (const d of done) d.member.reject(err);
      for (const m of notRun) m.reject(err);
      // Releases the connection; rolls back only a transaction still open (SqliteDriverKeepingCause).
      await trx.rollback().execute().catch(() => undefined);
    };
    // A member alone needs no savepoint: its failure rolls the transaction back.
    const alone = members.length === 1;
    for (let i = 0; i < members.length; i++) {
      const member = members[i]!;
      try {
        if (!alone) this.savepoint('savepoint');
      } catch (err) {
        await failAll(err, members.slice(i));
        return;
      }
      let value: unknown;
      try {
        value = await member.work(trx);
      } catch (err) {
        member.reject(err);
        if (alone || !this.sqlite.inTransaction) {
          // SQLite rolled the whole transaction back: what ran before is gone, what did not run goes on.
          this.queue.unshift(...members.slice(i + 1));
          await failAll(err, []);
          return;
        }
        try {
          this.savepoint('rollback to');
          this.savepoint('release');
        } catch (undoErr) {
          await failAll(undoErr, members.slice(i + 1));
          return;
        }
        continue;
      }
      try {
        if (!alone) this.savepoint('release');
      } catch (err) {
        member.reject(err);
        await failAll(err, members.slice(i + 1));
        return;
      }
      done.push({ member, value });
    }
    try {
      await trx.commit().execute();
    } catch (err) {
      await failAll(err, []);
      return;
    }
    this.stats.groups += 1;
    this.stats.members += done.length;
    return done;
  }
}
