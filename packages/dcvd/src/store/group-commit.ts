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
 * - durability before the answer: no member is answered, with its value or with its own error,
 *   before the group's COMMIT returned. When the COMMIT fails, every member that had run fails with
 *   its error, a refused one too (its refusal may rest on another member's writes, now gone), and
 *   nothing of the group is written.
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
  /** Transactions committed, and the members they carried (tests read them). */
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
    let outcome: Outcome;
    try {
      outcome = await this.runMembers(trx, members);
    } catch (err) {
      // A savepoint that could not be taken, rolled back or released: the whole group is undone.
      await trx.rollback().execute().catch(() => undefined);
      outcome = { failed: err, settled: members };
    } finally {
      unbind();
    }
    // Every member is answered only now: the transaction is no longer theirs to use, and its fate is known.
    if ('failed' in outcome) {
      // A refusal too may rest on another member's writes that are now gone: it gets the group's error.
      for (const m of outcome.settled) m.reject(outcome.failed);
      return;
    }
    this.stats.groups += 1;
    this.stats.members += outcome.done.length;
    for (const d of outcome.done) d.member.resolve(d.value);
    for (const r of outcome.refused) r.member.reject(r.err);
  }

  /** Runs the members and the COMMIT (or the ROLLBACK); puts back in the queue the members that did not run. */
  private async runMembers(trx: ControlledTransaction<Database>, members: Member[]): Promise<Outcome> {
    const done: { member: Member; value: unknown }[] = [];
    const refused: { member: Member; err: unknown }[] = [];
    const ran = () => [...done.map((d) => d.member), ...refused.map((r) => r.member)];
    // Releases the connection; rolls back only a transaction still open (SqliteDriverKeepingCause).
    const rollback = () => trx.rollback().execute().catch(() => undefined);
    /** SQLite ended the transaction by itself (a full disk, an I/O error): what ran is gone, what did not goes on. */
    const ended = async (err: unknown, from: number): Promise<Outcome> => {
      this.queue.unshift(...members.slice(from));
      await rollback();
      return { failed: err, settled: ran() };
    };
    // A member alone needs no savepoint: its failure rolls the transaction back.
    const alone = members.length === 1;
    for (let i = 0; i < members.length; i++) {
      const member = members[i]!;
      if (!alone) this.savepoint('savepoint');
      let value: unknown;
      try {
        value = await member.work(trx);
      } catch (err) {
        if (!this.sqlite.inTransaction) {
          refused.push({ member, err });
          return ended(err, i + 1);
        }
        if (alone) {
          await rollback();
          return { failed: err, settled: [member] };
        }
        this.savepoint('rollback to');
        this.savepoint('release');
        refused.push({ member, err });
        continue;
      }
      if (!this.sqlite.inTransaction) {
        // The member went on after SQLite ended the transaction under it (an error it caught).
        const err = new Error('SQLite rolled the transaction back');
        refused.push({ member, err });
        return ended(err, i + 1);
      }
      if (!alone) this.savepoint('release');
      done.push({ member, value });
    }
    try {
      await trx.commit().execute();
    } catch (err) {
      await rollback();
      return { failed: err, settled: ran() };
    }
    return { done, refused };
  }
}

/** How a group ended: committed (each member with its value or its own error), or failed (all with the group's error). */
type Outcome = { done: { member: Member; value: unknown }[]; refused: { member: Member; err: unknown }[] } | { failed: unknown; settled: Member[] };
