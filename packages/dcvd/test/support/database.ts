/**
 * Which database the tests run on (CONTRACT §10): SQLite always; PostgreSQL
 * when DCVD_TEST_DATABASE=postgres. Each test server then gets a schema of
 * its own in the PostgreSQL database (search_path), dropped at the end, so
 * test files can run side by side against one server.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import SQLite from 'better-sqlite3';
import { after, before, describe, test } from 'node:test';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import type { Database } from '../../src/store/schema.ts';
import { dialectOf, openStore, type Store } from '../../src/store/database.ts';
import { migrateToLatest } from '../../src/store/migrations.ts';

export const DEFAULT_TEST_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/test';

export function testDatabaseKind(): 'sqlite' | 'postgres' {
  return process.env.DCVD_TEST_DATABASE === 'postgres' ? 'postgres' : 'sqlite';
}

function baseUrl(): string {
  return process.env.DCVD_TEST_DATABASE_URL ?? DEFAULT_TEST_POSTGRES_URL;
}

/** True when a PostgreSQL server answers at the test URL. */
export async function postgresReachable(url = baseUrl()): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * For tests that need PostgreSQL whatever DCVD_TEST_DATABASE says: node:test's
 * `skip` option — false when a server answers, else a clear message (the URL
 * without its password). Where DCVD_REQUIRE_POSTGRES=1 (CI) a missing server
 * throws instead, so the run fails rather than passing with the case skipped.
 */
export async function postgresOrSkip(): Promise<false | string> {
  const url = baseUrl();
  if (await postgresReachable(url)) return false;
  if (process.env.DCVD_REQUIRE_POSTGRES === '1') throw new Error(`no PostgreSQL at ${url}, and DCVD_REQUIRE_POSTGRES=1`);
  return `skipped: no PostgreSQL at ${url.replace(/:[^:@/]*@/, ':***@')}`;
}

export interface TestDatabase {
  /** undefined: SQLite in the data directory. */
  url: string | undefined;
  drop(): Promise<void>;
}

/** A fresh database for one test server. */
export async function createTestDatabase(): Promise<TestDatabase> {
  if (testDatabaseKind() === 'sqlite') return { url: undefined, drop: async () => undefined };
  return createPostgresSchema();
}

/** A schema of its own on the test PostgreSQL server, whatever DCVD_TEST_DATABASE says. */
export async function createPostgresSchema(): Promise<TestDatabase & { url: string }> {
  const schema = `dcvd_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl() });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  const url = new URL(baseUrl());
  url.searchParams.set('options', `-c search_path=${schema}`);
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: baseUrl() });
      await c.connect();
      await c.query(`drop schema if exists ${schema} cascade`);
      await c.end();
    },
  };
}

/**
 * A migrated store (and its URL) on a schema of its own on the test PostgreSQL server; `cleanups` gets what closes it
 * and drops the schema. PostgreSQL keeps nothing in the data directory.
 */
export async function postgresTestStore(cleanups: (() => Promise<void>)[], options: { poolSize?: number } = {}): Promise<{ store: Store; url: string }> {
  const schema = await createPostgresSchema();
  const store = openStore({ dataDir: '', databaseUrl: schema.url, ...options });
  cleanups.push(async () => {
    await store.close();
    await schema.drop();
  });
  await migrateToLatest(store.db, store.dialect);
  return { store, url: schema.url };
}

/** A migrated SQLite store in a data directory of its own (and its file); `cleanups` gets what closes it and removes the directory. */
export async function sqliteTestStore(cleanups: (() => Promise<void>)[], prefix = 'dcvd-store-'): Promise<{ store: Store; file: string }> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const store = openStore({ dataDir: dir });
  cleanups.push(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await migrateToLatest(store.db, store.dialect);
  return { store, file: join(dir, 'dcvd.sqlite') };
}

/**
 * Runs a test's bulk fill in one transaction, without dcvd's 5 s statement timeout on PostgreSQL: a fill of
 * hundreds of thousands of rows with their foreign keys checked takes longer on a busy machine, and a test
 * must not fail for being slow.
 */
export async function bulkFill(db: Kysely<Database>, fill: (trx: Kysely<Database>) => Promise<void>): Promise<void> {
  await db.transaction().execute(async (trx) => {
    if (dialectOf(trx) === 'postgres') await trx.executeQuery(CompiledQuery.raw('set local statement_timeout = 0'));
    await fill(trx);
  });
}

/** A node of PostgreSQL's `explain (format json)` plan. */
export interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  'Index Cond'?: string;
  /** `Forward` or `Backward` for an index scan. */
  'Scan Direction'?: string;
  /** With `analyze`: the rows a node gave per loop, and its loops. */
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

type Explained = { 'QUERY PLAN': { Plan: PlanNode }[] };
const planNodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(planNodes)];

/**
 * Every node of the plan PostgreSQL makes for `sql` with these parameters, the root first. `generic`: the
 * plan it makes for the statement whatever the values (dcvd's named statements switch to it after five
 * runs), from a PREPARE and an EXPLAIN EXECUTE under `plan_cache_mode = force_generic_plan`. `analyze`:
 * the statement runs (in a transaction rolled back after), and the nodes carry their actual rows; plain
 * EXPLAIN leaves out some nodes that never ran (a recursive query's subplans).
 */
export async function explainPlan(db: Kysely<Database>, sql: string, parameters: readonly unknown[], options: { generic?: boolean; analyze?: boolean } = {}): Promise<PlanNode[]> {
  if (!options.analyze) return explainWith(db, 'explain (format json)', sql, parameters, options.generic === true);
  return db.connection().execute(async (c) => {
    await c.executeQuery(CompiledQuery.raw('begin'));
    return cleanedUp(
      () => explainWith(c, 'explain (analyze, format json)', sql, parameters, options.generic === true),
      async () => void (await c.executeQuery(CompiledQuery.raw('rollback'))),
    );
  });
}

/**
 * `body`'s answer after `cleanup` ran; when `body` failed, its error, not one of the clean-up (in a transaction
 * that the failed EXPLAIN aborted, the generic plan's DEALLOCATE fails too, and that error hid the cause).
 */
async function cleanedUp<T>(body: () => Promise<T>, cleanup: () => Promise<void>): Promise<T> {
  let answer: T;
  try {
    answer = await body();
  } catch (err) {
    await cleanup().catch(() => undefined);
    throw err;
  }
  await cleanup();
  return answer;
}

async function explainWith(db: Kysely<Database>, explain: string, sql: string, parameters: readonly unknown[], generic: boolean): Promise<PlanNode[]> {
  if (!generic) {
    const explained = await db.executeQuery<Explained>(CompiledQuery.raw(`${explain} ${sql}`, [...parameters]));
    return planNodes(explained.rows[0]!['QUERY PLAN'][0]!.Plan);
  }
  const literal = (v: unknown) => (v === null ? 'null' : typeof v === 'number' ? String(v) : `'${String(v).replaceAll("'", "''")}'`);
  return db.connection().execute(async (c) => {
    const name = `explained_${randomBytes(6).toString('hex')}`;
    await c.executeQuery(CompiledQuery.raw(`set plan_cache_mode = force_generic_plan`));
    await c.executeQuery(CompiledQuery.raw(`prepare ${name} as ${sql}`));
    return cleanedUp(
      async () => {
        const args = parameters.length > 0 ? `(${parameters.map(literal).join(', ')})` : '';
        const explained = await c.executeQuery<Explained>(CompiledQuery.raw(`${explain} execute ${name}${args}`));
        return planNodes(explained.rows[0]!['QUERY PLAN'][0]!.Plan);
      },
      async () => {
        await c.executeQuery(CompiledQuery.raw(`deallocate ${name}`));
        await c.executeQuery(CompiledQuery.raw(`reset plan_cache_mode`));
      },
    );
  });
}

/** A plan's nodes in one line, for the assertions' messages. */
export const describePlan = (all: PlanNode[]): string =>
  all.map((n) => `${n['Node Type']}${n['Relation Name'] ? ` on ${n['Relation Name']}` : ''}${n['Index Name'] ? ` ${n['Index Name']}` : ''}`).join(' > ');

/**
 * A migrated PostgreSQL store (postgresTestStore) for a describe block, filled by `fill` in one session that skips foreign keys
 * (no orders or values behind the rows), with autovacuum off on `tables` so that the statistics stay as `fill`
 * left them.
 */
export function postgresStoreFilledBy(tables: string[], fill: (run: (text: string) => Promise<unknown>) => Promise<void>): { store: () => Store } {
  const cleanups: (() => Promise<void>)[] = [];
  let store: Store;
  before(async () => {
    ({ store } = await postgresTestStore(cleanups));
    await store.db.connection().execute(async (db) => {
      const run = (text: string) => db.executeQuery(CompiledQuery.raw(text));
      await run(`set session_replication_role = replica`);
      for (const table of tables) await run(`alter table ${table} set (autovacuum_enabled = false)`);
      await fill(run);
    });
  });
  after(async () => {
    for (const cleanup of cleanups) await cleanup();
  });
  return { store: () => store };
}

/** SQLite's plan of `statement` (`explain query plan`, read on `raw`): each node's detail, in order. */
export const sqlitePlan = (raw: SQLite.Database, statement: { sql: string; parameters: readonly unknown[] }): string[] =>
  (raw.prepare(`explain query plan ${statement.sql}`).all(...statement.parameters) as { detail: string }[]).map((p) => p.detail);

/**
 * A migrated SQLite store (sqliteTestStore, `prefix` naming its directory) for a describe block, filled by `fill` on
 * a connection of its own that skips foreign keys (rows without orders behind them); the connection stays open for
 * the block's plans (sqlitePlan). postgresStoreFilledBy's twin.
 */
export function sqliteStoreFilledBy(prefix: string, fill: (raw: SQLite.Database) => void): { store: () => Store; raw: () => SQLite.Database } {
  const cleanups: (() => Promise<void>)[] = [];
  let store: Store;
  let raw: SQLite.Database | undefined;
  before(async () => {
    let file: string;
    ({ store, file } = await sqliteTestStore(cleanups, prefix));
    raw = new SQLite(file);
    raw.pragma('foreign_keys = OFF');
    fill(raw);
  });
  after(async () => {
    raw?.close();
    for (const cleanup of cleanups) await cleanup();
  });
  return { store: () => store, raw: () => raw! };
}

/**
 * A test of one migration on both databases: `exercise` gets an empty store (SQLite in a directory of its own,
 * PostgreSQL in a schema of its own, skipped with a message where none answers) and a function that migrates it
 * up to a named migration, to fill it as that version left it before it migrates to the latest.
 */
export async function describeMigration(title: string, exercise: (store: Store, migrateTo: (name: string) => Promise<void>) => Promise<void>): Promise<void> {
  const noPostgres = await postgresOrSkip();
  const migrateTo = (store: Store) => async (name: string) => {
    await migrateToLatest(store.db, store.dialect, name);
  };
  describe(title, () => {
    const cleanups: (() => Promise<void>)[] = [];
    after(async () => {
      for (const c of cleanups.reverse()) await c();
    });
    for (const [kind, url] of [['SQLite', false], ['PostgreSQL', true]] as const) {
      test(kind, { skip: url && noPostgres }, async () => {
        const dir = mkdtempSync(join(tmpdir(), 'dcvd-migration-'));
        const pg = url ? await createPostgresSchema() : undefined;
        const store = openStore({ dataDir: dir, ...(pg ? { databaseUrl: pg.url } : {}) });
        cleanups.push(async () => {
          await store.close();
          await pg?.drop();
          rmSync(dir, { recursive: true, force: true });
        });
        await exercise(store, migrateTo(store));
      });
    }
  });
}
