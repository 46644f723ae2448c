/**
 * The database behind a typed query builder (CONTRACT §10): SQLite in WAL
 * mode in the data directory by default, PostgreSQL for a postgres:// URL.
 *
 * SQLite transactions begin IMMEDIATE (below), so several processes on one file queue for the write
 * lock instead of failing (issue 20's --processes and --role).
 *
 * Lock order (issue 14): every transaction that touches an order writes (and
 * so locks) its `orders` row FIRST, then `random_values`, then `outbox`, then
 * the rows it only inserts (`dcv_evidence`, `webhook_outbox`). Approve/decline
 * (orders/confirmation.ts), a resend or an admin send (orders/dcv-email.ts)
 * and a cancellation (orders/orders.ts) all follow it, so two of them on one
 * order queue up on the orders row instead of deadlocking on PostgreSQL. The
 * outbox and webhook workers lock only their own queue's rows (FOR UPDATE SKIP
 * LOCKED). A transaction that still fails with serialization_failure (40001)
 * or deadlock_detected (40P01), or that met a changed named statement, is retried by retryTransaction().
 */
import { mkdirSync, statfsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type SQLite from 'better-sqlite3';
import type pg from 'pg';
import { CompiledQuery, Kysely, PostgresAdapter, PostgresDialect, sql, SqliteDialect, SqliteDriver, type DatabaseConnection, type Driver, type QueryResult, type RawBuilder, type SqliteDatabase, type SqliteDialectConfig } from 'kysely';
import type { Database } from './schema.ts';
import { FALLBACK_AUTOCHECKPOINT_PAGES, startCheckpointer } from './checkpointer.ts';
import { GroupCommit, type TransactionWork } from './group-commit.ts';

export type Dialect = 'sqlite' | 'postgres';

/** A unique or primary key the statement would have broken: SQLite's constraint error, PostgreSQL's 23505. */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/**
 * An insert of an object that was checked not to exist: when another request inserted the same one between the
 * check and the insert, the error `taken` makes (the operator's 409), not the database's (a 500).
 */
export async function insertedOnce<T>(insert: Promise<T>, taken: () => Error): Promise<T> {
  try {
    return await insert;
  } catch (err) {
    if (isUniqueViolation(err)) throw taken();
    throw err;
  }
}

/** The dialect of a query builder or transaction (its adapter), for the few statements written per dialect. */
export function dialectOf(db: Kysely<Database>): Dialect {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite';
}

/**
 * A queue row's `state` as a guard that no index on the state serves (only migration 0017's partial index
 * of the webhook claim, whose predicate it is), beside a condition that finds the rows
 * (their ids, value, order): so that the planner takes that condition's index instead of the
 * state's. SQLite as `+state`: with a plain `state = ?` it walks the whole (state, …) index range
 * of the backlog and tests each row against the other condition, a cost that grows with the
 * backlog (issue 20: 0.8 ms a claim at 15,000 pending; 169 µs an order under AutoApplyOrder's
 * load). PostgreSQL as `state || ''`: with statistics that know no pending row, a plain
 * `state = $n` is served by migration 0012's partial index, all of the backlog read and filtered
 * (15–25 ms a claim at 100,000 pending).
 */
export function unindexedState(dialect: Dialect, column: 'state' | 'o.state' = 'state'): RawBuilder<string> {
  return dialect === 'postgres' ? sql<string>`(${sql.ref(column)} || '')` : sql<string>`+${sql.ref(column)}`;
}

/**
 * A number column as a guard no index serves, on both databases (unary `+`), for the same reason:
 * the account of an order chain's lookup, which SQLite otherwise planned through the account's
 * index and so walked all of that account's orders to find a chain (or not find one).
 */
export function unindexedNumber(column: 'account_id' | 'o.id'): RawBuilder<number> {
  return sql<number>`+${sql.ref(column)}`;
}

/** Longest a statement may wait or run: SQLite's busy timeout, PostgreSQL's statement_timeout. */
export const STATEMENT_TIMEOUT_MS = 5000;

export interface Store {
  db: Kysely<Database>;
  dialect: Dialect;
  /** Where the data lives, for messages (never contains a password). */
  location: string;
  close(): Promise<void>;
}

export interface StoreOptions {
  dataDir: string;
  /** `postgres://…`, `sqlite:/path/file.db`, or undefined for `<dataDir>/dcvd.sqlite`. */
  databaseUrl?: string | undefined;
  /** PostgreSQL pool size. */
  poolSize?: number;
  /**
   * SQLite: WAL checkpoints in a worker thread instead of inside commits
   * (src/store/checkpointer.ts). For long-running processes (the server), not
   * for one CLI command. `elsewhere`: another process on the same file runs the thread (a `--role api`
   * process beside its worker, issue 20): this one only raises its commits' own threshold as that one does,
   * without a thread (an isolate, several MiB) of its own; the WAL is the file's, one checkpointer serves all.
   */
  backgroundCheckpoints?: { intervalMs?: number; onError?: (message: string) => void; elsewhere?: boolean };
}

// A process loads the driver of its own database only, when it opens it: a SQLite server never needs pg's
// modules, nor a PostgreSQL one better-sqlite3's (memory of each process, issue 20). Both are CommonJS.
const require = createRequire(import.meta.url);
let pgDriver: typeof pg | undefined;

export function loadPg(): typeof pg {
  if (pgDriver === undefined) {
    pgDriver = require('pg') as typeof pg;
    // int8 (bigint) columns hold millisecond times and ids, all below 2^53: return numbers, not strings.
    pgDriver.types.setTypeParser(20, (v) => Number(v));
  }
  return pgDriver;
}

/** close() may be called by several owners (server, tests): the first call does the work. */
function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

/**
 * The database URL as logs and the CLI print it: no password, whether in the URL's user part or in a
 * query parameter (node-postgres reads `password` and `sslpassword` there too, as in a Unix-socket URL
 * `postgres://dcvd@localhost/dcvd?host=/var/run/postgresql&password=…`).
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const key of [...u.searchParams.keys()]) {
      if (/password/i.test(key)) u.searchParams.set(key, '***');
    }
    return u.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

/**
 * Kysely's SQLite driver prepares every statement anew; preparing costs more
 * than running the small queries of the hot path. This keeps prepared
 * statements by SQL text (bounded, least recently used dropped first). A
 * statement still iterating (a stream) is never handed out twice.
 */
export function withStatementCache(db: SQLite.Database, max = 500): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => db.close(),
    prepare(sql: string) {
      const hit = cache.get(sql);
      if (hit && !hit.busy) {
        cache.delete(sql);
        cache.set(sql, hit);
        return hit;
      }
      const stmt = db.prepare(sql);
      if (!hit) {
        cache.set(sql, stmt);
        if (cache.size > max) cache.delete(cache.keys().next().value!);
      }
      return stmt;
    },
  };
}

/**
 * After some errors (SQLITE_FULL on a full disk, SQLITE_IOERR, SQLITE_NOMEM)
 * SQLite has already rolled the transaction back. Kysely's ROLLBACK would then
 * fail ("no transaction is active") and that error, not the cause, would reach
 * the log: roll back only a transaction that is still open.
 */
class SqliteDriverKeepingCause extends SqliteDriver {
  /** SQLite's one connection, wrapped once. */
  private connection: DatabaseConnection | undefined;

  constructor(
    config: SqliteDialectConfig,
    private readonly sqlite: SQLite.Database,
  ) {
    super(config);
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    const inner = await super.acquireConnection();
    return (this.connection ??= new BusyRetryingConnection(inner, this.sqlite));
  }

  /**
   * BEGIN IMMEDIATE: a transaction takes the write lock when it starts. With several processes on one file
   * (`--processes`, `--role`), a deferred transaction that read first and then writes fails at once with
   * SQLITE_BUSY when another process wrote in between, without waiting; an immediate one waits for the lock
   * (BusyRetryingConnection) instead. In one process Kysely runs one transaction at a time anyway, so it costs nothing.
   */
  override async beginTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('begin immediate'));
  }

  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    if (this.sqlite.inTransaction) await super.rollbackTransaction(connection);
  }
}

const isBusy = (err: unknown) => typeof (err as { code?: unknown }).code === 'string' && (err as { code: string }).code.startsWith('SQLITE_BUSY');

/**
 * Waiting for another process's write lock without blocking the event loop. SQLite's own busy handler
 * (busy_timeout) sleeps inside the call, and better-sqlite3 is synchronous: with several processes on
 * one file (`--processes`, `--role`, the CLI beside `serve`) every request of the waiting process would
 * stall with it. The busy timeout is 0 instead, and a statement that found the lock taken outside a
 * transaction — a single statement, or the BEGIN IMMEDIATE of one, so nothing was done — is tried again
 * asynchronously (next turn of the loop, then 1, 2, 4… up to 10 ms apart) for up to STATEMENT_TIMEOUT_MS.
 */
class BusyRetryingConnection implements DatabaseConnection {
  constructor(
    private readonly inner: DatabaseConnection,
    private readonly sqlite: SQLite.Database,
  ) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    // The clock is read only once a statement found the lock taken: nothing on the common path.
    let deadline: number | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.inner.executeQuery<R>(query);
      } catch (err) {
        if (!isBusy(err) || this.sqlite.inTransaction) throw err;
        deadline ??= Date.now() + STATEMENT_TIMEOUT_MS;
        if (Date.now() >= deadline) throw err;
        if (attempt < 3) await new Promise<void>((resolve) => setImmediate(resolve));
        else await new Promise<void>((resolve) => setTimeout(resolve, Math.min(10, 2 ** (attempt - 3))));
      }
    }
  }

  streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(query, chunkSize);
  }
}

/**
 * One statement run at once on a SQLite database (src/store/prepared.ts, issue 20): its result as
 * Kysely's driver gives it, or undefined where the statement must take Kysely's path instead.
 */
export type SyncStatement = (sql: string, parameters: readonly unknown[]) => QueryResult<unknown> | undefined;

/**
 * By database: a store's own Kysely instance, and a group commit's transaction while it runs
 * (src/store/group-commit.ts); never another transaction.
 */
const syncStatements = new WeakMap<Kysely<Database>, SyncStatement>();

/** The synchronous path of `db`, if it is a SQLite store's database itself or its group commit's running transaction (not PostgreSQL). */
export function syncStatementOf(db: Kysely<Database>): SyncStatement | undefined {
  return syncStatements.get(db);
}

/**
 * A serving process's SQLite connection, after its migrations: temporary storage in memory. A group commit's
 * member runs in a savepoint (group-commit.ts), and SQLite copies every page a savepoint changes into a
 * sub-journal first, a temporary file past 64 KiB: a pwrite per page, 5 % of a resend's CPU (docs/PERFORMANCE.md,
 * fourteenth round); in memory it is a copy, never needed after a crash (the WAL is). The setting also keeps
 * SQLite's sorter and temporary b-trees in memory without a bound, so it comes after the migrations (CREATE
 * INDEX sorts a whole table) and the CLI never sets it; the server's own sorts are bounded (LIMIT keeps that
 * many rows, a GROUP BY by state a few). Nothing on PostgreSQL.
 */
export async function temporaryStorageInMemory(store: Store): Promise<void> {
  if (store.dialect === 'sqlite') await sql`pragma temp_store = memory`.execute(store.db);
}

/**
 * SQLite's statements are synchronous: a single statement on the database, with no transaction open on
 * its one connection, runs at once through the statement cache, as Kysely's driver would run it, without
 * Kysely's executor, connection mutex and promises around it (issue 20: about half of the CPU of the hot
 * path's one statement, and a tenth of what a text-format address list allocated; docs/PERFORMANCE.md).
 * Nothing can interleave with a synchronous call, so the one thing to rule out is a transaction open
 * between two of its statements (another call's, awaiting something): a statement run now would read or
 * write inside it. Then, and when another process holds the write lock (SQLITE_BUSY: the retrying path
 * waits for it), and once the database is closed, it answers undefined and the statement takes Kysely's path.
 */
function syncStatement(sqlite: SQLite.Database, statements: SqliteDatabase): SyncStatement {
  // Rows as objects, their column names read by better-sqlite3 on every row. Not `raw(true)` with names read
  // once: 2–3 µs a statement less, but SQLite prepares a statement again by itself after another connection
  // changed the schema (a migration run by the CLI beside a server), and `select *` then hands out other
  // columns, or the same ones in another order, under the names read before (docs/PERFORMANCE.md, seventh round).
  return (sql, parameters) => {
    if (!sqlite.open || sqlite.inTransaction) return undefined;
    try {
      return runNow(statements, sql, parameters);
    } catch (err) {
      if (isBusy(err)) return undefined;
      throw err;
    }
  };
}

/** One statement through the statement cache, with its result as Kysely's SQLite driver gives it. */
function runNow(statements: SqliteDatabase, sql: string, parameters: readonly unknown[]): QueryResult<unknown> {
  const stmt = statements.prepare(sql);
  if (stmt.reader) return { rows: stmt.all(parameters) };
  const { changes, lastInsertRowid } = stmt.run(parameters);
  return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
}

/**
 * The group commit's transaction (src/store/group-commit.ts) holds SQLite's one connection and the write
 * lock from its BEGIN IMMEDIATE to its COMMIT: its members' precompiled statements run on it at once, as
 * they do outside transactions, without Kysely's executor and promises around each. A statement's error
 * is the member's, as on Kysely's path. After SQLite rolled the transaction back by itself (a full disk,
 * an I/O error) a statement fails instead of running outside it, in autocommit.
 */
function syncStatementInTransaction(sqlite: SQLite.Database, statements: SqliteDatabase): SyncStatement {
  return (sql, parameters) => {
    if (!sqlite.open) throw new Error('the database is closed');
    if (!sqlite.inTransaction) throw new Error('the group commit\'s transaction was rolled back by SQLite');
    return runNow(statements, sql, parameters);
  };
}

class SqliteDialectKeepingCause extends SqliteDialect {
  constructor(
    private readonly config: SqliteDialectConfig,
    private readonly sqlite: SQLite.Database,
  ) {
    super(config);
  }

  override createDriver(): Driver {
    return new SqliteDriverKeepingCause(this.config, this.sqlite);
  }
}

/** SQLite's reason, and the likeliest cause an operator can act on: a full disk makes WAL mode fail with a mere "disk I/O error". */
function openProblem(file: string, err: unknown): string {
  const code = (err as { code?: unknown }).code;
  let problem = `${err instanceof Error ? err.message : String(err)}${typeof code === 'string' ? ` (${code})` : ''}`;
  try {
    if (statfsSync(dirname(file)).bavail === 0) problem += '; no space left on the disk';
  } catch {
    // The directory itself is the problem: SQLite's reason says enough.
  }
  return problem;
}

/** The SQL of the precompiled statements (prepared.ts) and the name each is prepared under on PostgreSQL. */
const statementNames = new Map<string, string>();

/**
 * Marks a precompiled statement's SQL (prepared.ts, once per statement) to run as a named prepared
 * statement on PostgreSQL: each connection parses it once and, after a few executions, plans it once,
 * instead of both on every call. Only fixed SQL is named (the hot paths' few statements), so a
 * connection holds at most that many. The name is a digest of the SQL, so one name means one
 * statement in every process and version sharing the database (or a pooler's server connections).
 */
export function nameStatement(sql: string): void {
  if (!statementNames.has(sql)) statementNames.set(sql, `dcvd_${createHash('sha256').update(sql).digest('hex').slice(0, 40)}`);
}

/**
 * What makes a client run its named statements unnamed from then on: 0A000, "cached plan must not
 * change result type" (another instance migrated the schema under the statement); 26000 and 42P05, a
 * statement missing or already there on the server's side, which a connection pooler in transaction
 * mode (PgBouncer before 1.21's max_prepared_statements) causes by handing each transaction another
 * server connection. Outside a transaction the call runs again unnamed at once; inside one the error
 * aborted the transaction, so it is thrown as it is, and `retryTransaction` runs the whole
 * transaction again (these codes are among its RETRYABLE_SQLSTATES).
 */
const UNNAMED_AFTER = new Set(['0A000', '26000', '42P05']);

/** Each new pooled client runs a named statement's SQL under its name (pg prepares it on that connection the first time). */
function namingStatements(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (config: unknown, ...rest: unknown[]) => Promise<unknown>;
  const status = () => (client as unknown as { getTransactionStatus(): string | null }).getTransactionStatus();
  let naming = true;
  (client as { query: unknown }).query = (config: unknown, ...rest: unknown[]) => {
    const values = rest[0];
    // Only Kysely's form, (sql, values): a callback or a config object passes through as it came.
    const name = naming && rest.length === 1 && typeof config === 'string' && Array.isArray(values) ? statementNames.get(config) : undefined;
    if (name === undefined) return query(config, ...rest);
    return query({ name, text: config, values }).catch((err: unknown) => {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== 'string' || !UNNAMED_AFTER.has(code)) throw err;
      naming = false;
      // Inside a transaction ('T', or 'E' once pg has read the server's next ReadyForQuery: the error may come
      // first) the failed statement aborted it; another statement in it would only fail with 25P02.
      if (status() !== 'I') throw err;
      return query(config, values);
    });
  };
}

export function openStore(options: StoreOptions): Store {
  const url = options.databaseUrl;
  if (url && /^postgres(ql)?:\/\//i.test(url)) {
    // A database that does not answer, or a lock held too long, fails a query (-14) instead of holding it forever.
    const pool = new (loadPg().Pool)({
      connectionString: url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: 5000,
      statement_timeout: STATEMENT_TIMEOUT_MS,
    });
    // An idle client's error (e.g. the server restarted) must not crash the process.
    pool.on('error', () => undefined);
    pool.on('connect', namingStatements);
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    return { db, dialect: 'postgres', location: redactUrl(url), close: once(() => db.destroy()) };
  }
  let file: string;
  if (url) {
    if (!url.startsWith('sqlite:')) throw new Error('database URL must start with postgres:// or sqlite:');
    file = url.slice('sqlite:'.length).replace(/^\/\//, '');
  } else {
    mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    file = join(options.dataDir, 'dcvd.sqlite');
  }
  let sqlite: SQLite.Database | undefined;
  try {
    const Driver = require('better-sqlite3') as typeof SQLite;
    sqlite = new Driver(file);
    sqlite.pragma('journal_mode = WAL');
    // FULL: a commit is on disk when it returns, so an answered `errorCode=0` ("durably queued", CONTRACT §5)
    // survives a power loss or an OS crash too, not only the process's crash as with NORMAL in WAL mode (one
    // fdatasync of the WAL per commit, and the group commit makes one commit of a turn's writes).
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('foreign_keys = ON');
    // The CLI and the server (and --processes) write the same file: a statement that finds the lock taken is
    // tried again without blocking the event loop (BusyRetryingConnection), not slept on inside SQLite.
    sqlite.pragma('busy_timeout = 0');
  } catch (err) {
    sqlite?.close();
    throw new Error(`cannot open the database ${file}: ${openProblem(file, err)}`, { cause: err });
  }
  const statements = withStatementCache(sqlite);
  const db = new Kysely<Database>({ dialect: new SqliteDialectKeepingCause({ database: statements }, sqlite) });
  syncStatements.set(db, syncStatement(sqlite, statements));
  const inGroup = syncStatementInTransaction(sqlite, statements);
  groupCommits.set(
    db,
    new GroupCommit(db, sqlite, (trx) => {
      syncStatements.set(trx, inGroup);
      return () => syncStatements.delete(trx);
    }),
  );
  let checkpointer: ReturnType<typeof startCheckpointer> | undefined;
  if (options.backgroundCheckpoints) {
    sqlite.pragma(`wal_autocheckpoint = ${FALLBACK_AUTOCHECKPOINT_PAGES}`);
    // After a checkpoint the WAL is reused from its start; this trims the file back if a burst grew it.
    sqlite.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
    if (!options.backgroundCheckpoints.elsewhere) checkpointer = startCheckpointer(file, options.backgroundCheckpoints);
  }
  return {
    db,
    dialect: 'sqlite',
    location: file,
    close: once(async () => {
      await checkpointer?.stop();
      await db.destroy();
    }),
  };
}

/** The tables the API, the confirmation pages and the workers use on every request or tick. */
export const HOT_TABLES = [
  'accounts',
  'ip_failures',
  'offered_addresses',
  'orders',
  'dcv_templates',
  'random_values',
  'outbox',
  'dcv_evidence',
  'code_failures',
  'webhook_outbox',
] as const satisfies readonly (keyof Database)[];

/**
 * Readiness (issue 14): reads at most one row of each hot table, so a dropped
 * table or a corrupt root page (SQLITE_CORRUPT) says "not ready" instead of
 * failing the requests. Cheap: each reads at most one row. Returns
 * "table <name> unreadable" for the first that fails, undefined when all read.
 */
export async function unreadableTable(db: Kysely<Database>, onError?: (table: string, err: unknown) => void): Promise<string | undefined> {
  for (const table of HOT_TABLES) {
    try {
      // `select *`: `select 1` may be answered from a smaller index without reading the table itself.
      await sql`select * from ${sql.table(table)} limit 1`.execute(db);
    } catch (err) {
      onError?.(table, err);
      return `table ${table} unreadable`;
    }
  }
  return undefined;
}

/**
 * PostgreSQL SQLSTATEs after which the whole transaction may simply run again: serialization_failure,
 * deadlock_detected, and a named statement's UNNAMED_AFTER (the retry runs it unnamed).
 */
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01', ...UNNAMED_AFTER]);

/** By database: a SQLite store's own Kysely instance only. */
const groupCommits = new WeakMap<Kysely<Database>, GroupCommit>();

/** The group commit of a SQLite store's database (tests read its counts). */
export function groupCommitOf(db: Kysely<Database>): GroupCommit | undefined {
  return groupCommits.get(db);
}

/**
 * A write transaction of a hot path: on SQLite, a member of the group commit (src/store/group-commit.ts:
 * the transactions asked for in one turn of the event loop commit together, each in its own savepoint);
 * on PostgreSQL, a transaction of its own, run again after a serialization failure or deadlock
 * (`retryTransaction`). `work` must use only the transaction it is given.
 */
export function writeTransaction<T>(db: Kysely<Database>, work: TransactionWork<T>): Promise<T> {
  const group = groupCommits.get(db);
  return group ? group.run(work) : retryTransaction(() => db.transaction().execute(work));
}

/**
 * Runs `transaction` (a whole `db.transaction().execute(…)`) again when it
 * fails with serialization_failure, deadlock_detected or UNNAMED_AFTER, at most `attempts`
 * times in all, after a short random pause; any other error, or the last
 * one, is thrown. The transaction must be safe to repeat: it was rolled back.
 */
export async function retryTransaction<T>(transaction: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction();
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (attempt >= attempts || typeof code !== 'string' || !RETRYABLE_SQLSTATES.has(code)) throw err;
      await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * attempt));
    }
  }
}
