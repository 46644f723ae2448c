/**
 * Precompiled queries (src/store/prepared.ts) on a real SQLite file and, where
 * one answers, a real PostgreSQL schema: values substituted per call, one
 * compiled form shared by a database and its transactions, and the mistakes
 * it must refuse (a value missing, an input the query never reads).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { openStore, retryTransaction, syncStatementOf, type Store } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { columns, prepared, preparedList } from '../src/store/prepared.ts';
import { CompiledQuery, sql } from 'kysely';
import pg from 'pg';
import { postgresOrSkip, postgresTestStore, sqliteTestStore } from './support/database.ts';

const byIp = prepared((db, p: { ip: string }) => db.selectFrom('ip_failures').select(['ip', 'failures']).where('ip', '=', p.ip));
const insertRow = prepared((db, p: { ip: string; failures: number; window_start: number; blocked_until: number | null }) =>
  db.insertInto('ip_failures').values(columns(p, ['ip', 'failures', 'window_start', 'blocked_until'])),
);
const bump = prepared((db, p: { ip: string; by: number }) =>
  db
    .updateTable('ip_failures')
    .set((eb) => ({ failures: eb('failures', '+', p.by) }))
    .where('ip', '=', p.ip),
);

async function exercise(store: Store): Promise<void> {
  const { db } = store;
  await insertRow.execute(db, { ip: '192.0.2.1', failures: 1, window_start: 10, blocked_until: null });
  await insertRow.execute(db, { ip: '192.0.2.2', failures: 5, window_start: 20, blocked_until: 99 });
  // Values differ per call; the compiled SQL is the same.
  assert.deepEqual(await byIp.first(db, { ip: '192.0.2.1' }), { ip: '192.0.2.1', failures: 1 });
  assert.deepEqual(await byIp.first(db, { ip: '192.0.2.2' }), { ip: '192.0.2.2', failures: 5 });
  assert.equal(await byIp.first(db, { ip: '198.51.100.9' }), undefined);
  assert.equal(await bump.affected(db, { ip: '192.0.2.2', by: 3 }), 1);
  assert.equal(await bump.affected(db, { ip: '198.51.100.9', by: 3 }), 0);

  // Inside a transaction, and rolled back with it.
  await assert.rejects(
    db.transaction().execute(async (trx) => {
      assert.equal(await bump.affected(trx, { ip: '192.0.2.1', by: 100 }), 1);
      assert.equal((await byIp.first(trx, { ip: '192.0.2.1' }))?.failures, 101);
      throw new Error('roll back');
    }),
    /roll back/,
  );
  assert.deepEqual(await byIp.rows(db, { ip: '192.0.2.1' }), [{ ip: '192.0.2.1', failures: 1 }]);
  assert.equal((await byIp.first(db, { ip: '192.0.2.2' }))?.failures, 8);

  // A value left out is refused before anything reaches the database.
  await assert.rejects(byIp.first(db, { ip: undefined as unknown as string }), /no value for ip/);
  // An input the query never reads means a column left out of its definition.
  // (A required column left out is a type error already; a nullable one is not.)
  const forgetful = prepared((d, p: { ip: string; failures: number; window_start: number; blocked_until: number | null }) =>
    d.insertInto('ip_failures').values(columns(p, ['ip', 'failures', 'window_start'])),
  );
  await assert.rejects(forgetful.execute(db, { ip: '192.0.2.3', failures: 1, window_start: 1, blocked_until: 5 }), /never uses blocked_until/);

  // A list query (the registry's multi-row upsert): values in the declared order, row after row.
  type Row = { ip0: string; failures0: number; window_start0: number; ip1: string; failures1: number; window_start1: number };
  const insertTwo = preparedList(
    (d, p: Row) =>
      d.insertInto('ip_failures').values([
        { ip: p.ip0, failures: p.failures0, window_start: p.window_start0 },
        { ip: p.ip1, failures: p.failures1, window_start: p.window_start1 },
      ]),
    ['ip0', 'failures0', 'window_start0', 'ip1', 'failures1', 'window_start1'],
  );
  await insertTwo.execute(db, ['192.0.2.4', 4, 40, '192.0.2.5', 5, 50]);
  assert.deepEqual(await byIp.first(db, { ip: '192.0.2.4' }), { ip: '192.0.2.4', failures: 4 });
  assert.deepEqual(await byIp.first(db, { ip: '192.0.2.5' }), { ip: '192.0.2.5', failures: 5 });
  // A list short of a value, or holding an undefined one, is refused before anything reaches the database.
  await assert.rejects(insertTwo.execute(db, ['192.0.2.6', 6, 60, '192.0.2.7', 7]), /5 values for 6 parameters/);
  await assert.rejects(insertTwo.execute(db, ['192.0.2.6', 6, 60, '192.0.2.7', 7, undefined]), /a value is undefined/);
  // A declared order that is not the compiled one is refused when it compiles.
  const misordered = preparedList((d, p: { ip: string; failures: number; window_start: number }) => d.insertInto('ip_failures').values(columns(p, ['ip', 'failures', 'window_start'])), [
    'failures',
    'ip',
    'window_start',
  ]);
  await assert.rejects(misordered.execute(db, [8, '192.0.2.8', 80]), /not in the declared order/);
  assert.equal(await byIp.first(db, { ip: '192.0.2.8' }), undefined);
}

const noPostgres = await postgresOrSkip();

describe('prepared queries', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  test('SQLite', async () => {
    const { store } = await sqliteTestStore(cleanups, 'dcvd-prepared-');
    await exercise(store);
  });

  test('PostgreSQL', { skip: noPostgres }, async () => {
    const { store } = await postgresTestStore(cleanups);
    assert.equal(syncStatementOf(store.db), undefined, 'no synchronous path on PostgreSQL');
    await exercise(store);
  });

  /** A PostgreSQL store of one connection (pg_prepared_statements is per session), and a precompiled `select *` run three times on it. */
  async function oneConnection() {
    // One connection, so that pg_prepared_statements (per session) shows what the calls left on it.
    const { store, url } = await postgresTestStore(cleanups, { poolSize: 1 });
    const whole = prepared((db, p: { ip: string }) => db.selectFrom('ip_failures').selectAll().where('ip', '=', p.ip));
    await insertRow.execute(store.db, { ip: '192.0.2.7', failures: 2, window_start: 1, blocked_until: null });
    for (let i = 0; i < 3; i++) assert.equal((await whole.first(store.db, { ip: '192.0.2.7' }))?.failures, 2);
    return { store, url, whole };
  }

  test('PostgreSQL prepares each precompiled statement once per connection under a name derived from its SQL, and runs it unnamed when the server lost it', { skip: noPostgres }, async () => {
    const { store, url, whole } = await oneConnection();
    const named = await sql<{ name: string; statement: string }>`select name, statement from pg_prepared_statements`.execute(store.db);
    const mine = named.rows.filter((r) => /from "ip_failures"/.test(r.statement));
    assert.equal(mine.filter((r) => /select \* from "ip_failures"/.test(r.statement)).length, 1, 'prepared once, under one name');
    assert.ok(mine.every((r) => /^dcvd_[0-9a-f]{40}$/.test(r.name)), mine.map((r) => r.name).join());
    // Kysely's own (not precompiled) statements are never named: their SQL varies with the call.
    await store.db.selectFrom('ip_failures').select('ip').where('failures', '>', 1).execute();
    const after = await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(store.db);
    assert.equal(after.rows.length, named.rows.length);

    // The server's side lost the statement (a pooler in transaction mode hands another server connection):
    // the call runs unnamed, and that connection names nothing from then on.
    await sql`deallocate all`.execute(store.db);
    assert.equal((await whole.first(store.db, { ip: '192.0.2.7' }))?.failures, 2);
    await whole.first(store.db, { ip: '192.0.2.7' });
    assert.equal((await sql`select name from pg_prepared_statements`.execute(store.db)).rows.length, 0, 'nothing prepared again on it');
  });

  test('PostgreSQL runs a prepared statement unnamed when another instance migrated its table', { skip: noPostgres }, async () => {
    const { store, url, whole } = await oneConnection();
    const before = await sql<{ statement: string }>`select statement from pg_prepared_statements`.execute(store.db);
    assert.equal(before.rows.filter((r) => r.statement.startsWith('select * from "ip_failures"')).length, 1, 'the statement runs named');
    // Another instance migrates the table under the prepared statement: its result type changes.
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query('alter table ip_failures add column note text');
      await admin.query("update ip_failures set note = 'added'");
    } finally {
      await admin.end();
    }
    // Inside a transaction the error aborted it: thrown as it is (not 25P02), and retryTransaction runs it again unnamed.
    let attempts = 0;
    const inside = await retryTransaction(() =>
      store.db.transaction().execute(async (trx) => {
        attempts++;
        return (await whole.first(trx, { ip: '192.0.2.7' })) as Record<string, unknown> | undefined;
      }),
    );
    assert.equal(inside?.note, 'added');
    assert.equal(attempts, 2, 'the first attempt met the changed result, the second ran unnamed');
    const row = (await whole.first(store.db, { ip: '192.0.2.7' })) as Record<string, unknown> | undefined;
    assert.equal(row?.note, 'added', 'the call ran again, unnamed, and saw the new column');
    assert.equal(((await whole.first(store.db, { ip: '192.0.2.7' })) as Record<string, unknown> | undefined)?.note, 'added');
  });

  test('SQLite runs a statement at once outside transactions, never inside another call\u2019s open transaction, and waits for another process\u2019s lock', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvd-prepared-'));
    const store = openStore({ dataDir: dir });
    const other = new SQLite(join(dir, 'dcvd.sqlite'));
    cleanups.push(async () => {
      other.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    await migrateToLatest(store.db, store.dialect);
    const { db } = store;
    const sync = syncStatementOf(db);
    assert.ok(sync, 'a SQLite store has the synchronous path');
    // Its results are what Kysely's driver gives.
    await insertRow.execute(db, { ip: '192.0.2.7', failures: 2, window_start: 1, blocked_until: null });
    const viaKysely = await db.executeQuery(CompiledQuery.raw('update ip_failures set failures = failures + 1 where ip = ?', ['192.0.2.7']));
    assert.deepEqual(sync('update ip_failures set failures = failures + 1 where ip = ?', ['192.0.2.7']), { ...viaKysely, rows: [] });
    assert.deepEqual(sync('select ip, failures from ip_failures where ip = ?', ['192.0.2.7']), { rows: [{ ip: '192.0.2.7', failures: 4 }] });
    // Several rows and columns, nulls, no row, a name given twice (the later column wins): the rows Kysely's
    // driver gives for the same SQL, run through it after the synchronous path (which keeps statements of its
    // own that hand out arrays) and again the second time, from each one's statement cache.
    await insertRow.execute(db, { ip: '192.0.2.9', failures: 3, window_start: 2, blocked_until: 7 });
    for (const query of [
      'select * from ip_failures order by ip',
      'select ip, blocked_until, ip as failures, failures from ip_failures order by ip desc',
      "select ip from ip_failures where ip = 'none'",
    ]) {
      for (let round = 0; round < 2; round++) {
        const mine = sync(query, []);
        assert.deepEqual(mine, { rows: (await db.executeQuery(CompiledQuery.raw(query, []))).rows }, query);
      }
    }
    assert.deepEqual(sync('select ip, failures, ip as failures from ip_failures where ip = ?', ['192.0.2.9'])?.rows, [{ ip: '192.0.2.9', failures: '192.0.2.9' }]);
    // Another connection changes the schema under a cached `select *` (the CLI migrating beside a server):
    // SQLite prepares the statement again by itself, and every value still comes under its own column's name.
    const star = 'select * from ip_failures where ip = ?';
    const viaDriver = async () => (await db.executeQuery(CompiledQuery.raw(star, ['192.0.2.9']))).rows;
    assert.deepEqual(sync(star, ['192.0.2.9'])?.rows, await viaDriver());
    other.exec('alter table ip_failures add column note text');
    other.exec("update ip_failures set note = 'added' where ip = '192.0.2.9'");
    const added = sync(star, ['192.0.2.9'])?.rows as Record<string, unknown>[];
    assert.equal(added[0]?.note, 'added');
    assert.equal(added[0]?.blocked_until, 7);
    assert.deepEqual(added, await viaDriver());
    // A rebuilt table whose columns come in the reverse order.
    const names = (other.prepare('select name from pragma_table_info(?)').pluck().all('ip_failures') as string[]).reverse();
    const list = names.map((n) => `"${n}"`).join(', ');
    other.exec(`begin;
      create table ip_failures_new as select ${list} from ip_failures;
      drop table ip_failures;
      alter table ip_failures_new rename to ip_failures;
      commit;`);
    const rebuilt = sync(star, ['192.0.2.9'])?.rows as Record<string, unknown>[];
    assert.deepEqual(Object.keys(rebuilt[0]!), names, 'the columns in their new order');
    assert.deepEqual(rebuilt, added, 'each value under its own name');
    await db.deleteFrom('ip_failures').where('ip', '=', '192.0.2.9').execute();

    // Another call's transaction, open between two of its statements: a statement on the database waits
    // for it to end and never sees its uncommitted row (run at once on the one connection, it would).
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const trx = db.transaction().execute(async (t) => {
      await insertRow.execute(t, { ip: '192.0.2.8', failures: 1, window_start: 1, blocked_until: null });
      await held;
      throw new Error('roll back');
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(sync('select ip from ip_failures where ip = ?', ['192.0.2.8']), undefined, 'not at once inside a transaction');
    const read = byIp.first(db, { ip: '192.0.2.8' });
    const written = bump.affected(db, { ip: '192.0.2.7', by: 10 });
    release();
    await assert.rejects(trx, /roll back/);
    assert.equal(await read, undefined, 'the rolled-back row was never read');
    assert.equal(await written, 1);
    assert.equal((await byIp.first(db, { ip: '192.0.2.7' }))?.failures, 14, 'the write landed after the rollback, not inside it');

    // Another process's write lock: the write waits for it (the retrying path), then lands.
    other.exec('begin immediate');
    const waiting = bump.affected(db, { ip: '192.0.2.7', by: 1 });
    const settled = { done: false };
    void waiting.finally(() => (settled.done = true)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(settled.done, false, 'waited for the other connection');
    other.exec('commit');
    assert.equal(await waiting, 1);
    assert.equal((await byIp.first(db, { ip: '192.0.2.7' }))?.failures, 15);

    // A transaction and PostgreSQL have no synchronous path.
    await db.transaction().execute(async (t) => assert.equal(syncStatementOf(t), undefined));
  });

  test('one compiled form per database, shared with its transactions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvd-prepared-'));
    const stores = [openStore({ dataDir: join(dir, 'a') }), openStore({ dataDir: join(dir, 'b') })];
    cleanups.push(async () => {
      for (const s of stores) await s.close();
      rmSync(dir, { recursive: true, force: true });
    });
    let builds = 0;
    const counted = prepared((db, p: { ip: string }) => {
      builds++;
      return db.selectFrom('ip_failures').select('ip').where('ip', '=', p.ip);
    });
    for (const s of stores) {
      await migrateToLatest(s.db, s.dialect);
      await counted.rows(s.db, { ip: 'x' });
      await counted.rows(s.db, { ip: 'y' });
      await s.db.transaction().execute((trx) => counted.rows(trx, { ip: 'z' }));
    }
    assert.equal(builds, 2);
  });
});
