/**
 * Several processes on one SQLite file (issue 20's --processes and --role): a statement that finds
 * another connection's write lock waits for it without blocking the event loop, and transactions take
 * the write lock when they begin (IMMEDIATE), so a read-then-write transaction never fails on the
 * upgrade. The other connection here is a second better-sqlite3 handle, as another process would be.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import { openStore, type Store } from '../src/store/database.ts';

let dir: string;
let store: Store;
let other: SQLite.Database;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dcvd-busy-'));
  store = openStore({ dataDir: dir });
  other = new SQLite(join(dir, 'dcvd.sqlite'));
  other.pragma('journal_mode = WAL');
  other.exec('create table busy_probe (code integer primary key)');
});
after(async () => {
  other?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const insertProbe = (code: number) => sql`insert into busy_probe (code) values (${code})`.execute(store.db);

test('a write waits for another connection\u2019s lock while the event loop keeps turning', async () => {
  other.exec('begin immediate');
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  const write = insertProbe(1);
  const settled = { done: false };
  void write.then(() => (settled.done = true), () => (settled.done = true));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(settled.done, false, 'the write waited for the lock');
  assert.ok(ticks >= 5, `timers ran while it waited (${ticks} ticks)`);
  other.exec('commit');
  await write;
  clearInterval(ticker);
  const row = await sql<{ n: number }>`select count(*) as n from busy_probe where code = 1`.execute(store.db);
  assert.equal(Number(row.rows[0]!.n), 1);
});

test('a transaction that reads, then writes, waits for the lock at its start instead of failing on the upgrade', async () => {
  other.exec('begin immediate');
  const trx = store.db.transaction().execute(async (t) => {
    const before = await sql<{ n: number }>`select count(*) as n from busy_probe`.execute(t);
    await sql`insert into busy_probe (code) values (2)`.execute(t);
    return Number(before.rows[0]!.n);
  });
  await new Promise((r) => setTimeout(r, 50));
  // Written while the transaction waited: a deferred transaction would have read first and then hit SQLITE_BUSY_SNAPSHOT.
  other.exec(`insert into busy_probe (code) values (3)`);
  other.exec('commit');
  const counted = await trx;
  const all = await sql<{ n: number }>`select count(*) as n from busy_probe`.execute(store.db);
  assert.equal(Number(all.rows[0]!.n), 3);
  assert.ok(counted >= 2, 'the transaction began after the other commit and saw its row');
});
