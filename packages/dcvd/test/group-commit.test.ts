/**
 * Group commit on SQLite (src/store/group-commit.ts) on a real file: the write transactions asked for
 * in one turn of the event loop commit as one, each keeps its own atomicity, sees the ones before it,
 * and is answered only once the group is on disk (read back through a second connection); a failed
 * COMMIT fails every member, and a transaction SQLite rolled back by itself fails the members that had
 * run while the others go on in the next group. On PostgreSQL `writeTransaction` is a transaction of
 * its own per call.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import SQLite from 'better-sqlite3';
import { sql, type Kysely } from 'kysely';
import { groupCommitOf, syncStatementOf, temporaryStorageInMemory, writeTransaction, type Store } from '../src/store/database.ts';
import { prepared } from '../src/store/prepared.ts';
import type { Database } from '../src/store/schema.ts';
import { postgresOrSkip, postgresTestStore, sqliteTestStore } from './support/database.ts';

const noPostgres = await postgresOrSkip();
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const sqliteStore = () => sqliteTestStore(cleanups, 'dcvd-group-');

const insert = (trx: Kysely<Database>, ip: string, failures = 1) => trx.insertInto('ip_failures').values({ ip, failures, window_start: 0, blocked_until: null }).execute();
const ips = async (db: Kysely<Database>) => (await db.selectFrom('ip_failures').select('ip').orderBy('ip').execute()).map((r) => r.ip);

describe('group commit (SQLite)', () => {
  test('transactions asked in one turn commit as one; each is answered after the commit, seen from another connection', async () => {
    const { store, file } = await sqliteStore();
    const group = groupCommitOf(store.db)!;
    assert.ok(group, 'a SQLite store has a group commit');
    const other = new SQLite(file, { readonly: true });
    cleanups.push(async () => void other.close());
    const before = { ...group.stats };
    const seenAtAnswer: number[] = [];
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        writeTransaction(store.db, async (trx) => {
          await insert(trx, `192.0.2.${i}`);
          return i;
        }).then((value) => {
          // The answer comes after COMMIT: another connection already reads this member's row.
          seenAtAnswer.push((other.prepare('select count(*) as n from ip_failures where ip = ?').get(`192.0.2.${value}`) as { n: number }).n);
          return value;
        }),
      ),
    );
    assert.deepEqual(results, Array.from({ length: 20 }, (_, i) => i));
    assert.deepEqual(seenAtAnswer, Array(20).fill(1));
    assert.equal(group.stats.groups - before.groups, 1, 'one transaction for the twenty');
    assert.equal(group.stats.members - before.members, 20);

    // Asked in separate turns: a transaction each.
    for (let i = 0; i < 3; i++) await writeTransaction(store.db, (trx) => insert(trx, `198.51.100.${i}`));
    assert.equal(group.stats.groups - before.groups, 4);

    // A member alone (no savepoint) that throws: the transaction is rolled back, nothing of it stays.
    await assert.rejects(
      writeTransaction(store.db, async (trx) => {
        await insert(trx, '203.0.113.1');
        throw new Error('alone and refused');
      }),
      /alone and refused/,
    );
    assert.equal((await ips(store.db)).includes('203.0.113.1'), false);
    assert.equal(group.stats.groups - before.groups, 4);
    await writeTransaction(store.db, (trx) => insert(trx, '203.0.113.2'));
    assert.equal((await ips(store.db)).includes('203.0.113.2'), true);
  });

  test('members run one after the other, each seeing the ones before it; a member that throws undoes only its own writes', async () => {
    const { store } = await sqliteStore();
    const group = groupCommitOf(store.db)!;
    const before = group.stats.groups;
    const order: string[] = [];
    const first = writeTransaction(store.db, async (trx) => {
      order.push('first');
      await insert(trx, '192.0.2.1');
    });
    const failing = writeTransaction(store.db, async (trx) => {
      order.push('failing');
      await insert(trx, '192.0.2.2');
      await trx.updateTable('ip_failures').set({ failures: 99 }).where('ip', '=', '192.0.2.1').execute();
      throw new Error('refused after writing');
    });
    const third = writeTransaction(store.db, async (trx) => {
      order.push('third');
      // Sees the first member's row, not the failing member's writes.
      const rows = await trx.selectFrom('ip_failures').select(['ip', 'failures']).orderBy('ip').execute();
      await insert(trx, '192.0.2.3');
      return rows;
    });
    // A constraint error inside a member (a duplicate key) is that member's alone too.
    const duplicate = writeTransaction(store.db, (trx) => insert(trx, '192.0.2.1'));
    const [a, b, c, d] = await Promise.allSettled([first, failing, third, duplicate]);
    assert.equal(a.status, 'fulfilled');
    assert.equal(b.status, 'rejected');
    assert.match(String((b as PromiseRejectedResult).reason), /refused after writing/);
    assert.deepEqual((c as PromiseFulfilledResult<unknown>).value, [{ ip: '192.0.2.1', failures: 1 }]);
    assert.equal(d.status, 'rejected');
    assert.match(String((d as PromiseRejectedResult).reason), /UNIQUE/);
    assert.deepEqual(order, ['first', 'failing', 'third']);
    assert.deepEqual(await store.db.selectFrom('ip_failures').select(['ip', 'failures']).orderBy('ip').execute(), [
      { ip: '192.0.2.1', failures: 1 },
      { ip: '192.0.2.3', failures: 1 },
    ]);
    assert.equal(group.stats.groups - before, 1);
  });


  test('every store commits durably: synchronous FULL in WAL mode (a commit answered survives a power loss, CONTRACT §5)', async () => {
    const { store } = await sqliteStore();
    const pragma = async (name: string) => Object.values((await sql.raw(`pragma ${name}`).execute(store.db)).rows[0] as Record<string, unknown>)[0];
    assert.equal(await pragma('journal_mode'), 'wal');
    // 2 is FULL; NORMAL (1) in WAL mode syncs only at checkpoints, so the last commits can be lost with the OS.
    assert.equal(await pragma('synchronous'), 2);
  });

  test('a member that changed many pages before it throws is undone alone; the savepoints journal in memory', async () => {
    const { store } = await sqliteStore();
    const tempStore = async () => (await sql<{ temp_store: number }>`pragma temp_store`.execute(store.db)).rows[0]!.temp_store;
    // A store as the CLI opens it, and as migrations run: the default, so a CREATE INDEX sorts through files.
    assert.equal(await tempStore(), 0);
    // A serving process's (server.ts): the savepoints' sub-journal is a copy in memory, not a file written page by page.
    await temporaryStorageInMemory(store);
    assert.equal(await tempStore(), 2);
    await writeTransaction(store.db, async (trx) => {
      for (let i = 0; i < 300; i++) await insert(trx, `10.0.${i >> 8}.${i & 255}`);
    });
    const before = await store.db.selectFrom('ip_failures').select(['ip', 'failures']).orderBy('ip').execute();
    // Far more than the 64 KiB a sub-journal keeps in memory by default: every page of the table and its index, changed twice.
    const big = writeTransaction(store.db, async (trx) => {
      await trx.updateTable('ip_failures').set({ failures: 7 }).execute();
      for (let i = 0; i < 2000; i++) await insert(trx, `${'x'.repeat(200)}-${i}`);
      await trx.updateTable('ip_failures').set({ failures: 8 }).execute();
      throw new Error('refused after many pages');
    });
    const after = writeTransaction(store.db, (trx) => insert(trx, '192.0.2.99'));
    const [b, a] = await Promise.allSettled([big, after]);
    assert.equal(b.status, 'rejected');
    assert.equal(a.status, 'fulfilled');
    assert.deepEqual(
      await store.db.selectFrom('ip_failures').select(['ip', 'failures']).orderBy('ip').execute(),
      [...before, { ip: '192.0.2.99', failures: 1 }].sort((x, y) => (x.ip < y.ip ? -1 : 1)),
    );
  });
  test('a COMMIT that fails fails every member, and nothing of the group is written', async () => {
    const { store } = await sqliteStore();
    const group = groupCommitOf(store.db)!;
    const before = group.stats.groups;
    const fine = writeTransaction(store.db, (trx) => insert(trx, '192.0.2.10'));
    // A foreign key checked at COMMIT (deferred): the statement passes, the COMMIT refuses.
    const dangling = writeTransaction(store.db, async (trx) => {
      await sql`pragma defer_foreign_keys = on`.execute(trx);
      await sql`insert into order_domains (order_id, position, domain, dcv_method, dcv_status, created_at, updated_at) values (987654321, 0, 'example.com', 'email', 'awaiting', 0, 0)`.execute(trx);
    });
    const alsoFine = writeTransaction(store.db, (trx) => insert(trx, '192.0.2.11'));
    // A refusal that rests on an earlier member's write, now gone: it gets the COMMIT's error, not its own.
    const refusing = writeTransaction(store.db, async (trx) => {
      const seen = await trx.selectFrom('ip_failures').select('ip').where('ip', '=', '192.0.2.10').executeTakeFirst();
      if (seen) throw new Error('too soon');
    });
    const settled = await Promise.allSettled([fine, dangling, alsoFine, refusing]);
    for (const s of settled) {
      assert.equal(s.status, 'rejected');
      assert.match(String((s as PromiseRejectedResult).reason), /FOREIGN KEY/);
    }
    assert.deepEqual(await ips(store.db), []);
    assert.equal(group.stats.groups, before, 'no group committed');
    // The connection was given back: the next transaction commits.
    await writeTransaction(store.db, (trx) => insert(trx, '192.0.2.12'));
    assert.deepEqual(await ips(store.db), ['192.0.2.12']);
  });

  test('a transaction SQLite rolled back by itself fails the members that had run; the others go on in the next group', async () => {
    const { store } = await sqliteStore();
    const group = groupCommitOf(store.db)!;
    const before = group.stats.groups;
    const ran = writeTransaction(store.db, (trx) => insert(trx, '192.0.2.20'));
    // What a full disk or an I/O error does: SQLite ends the transaction, the statement fails.
    const broken = writeTransaction(store.db, async (trx) => {
      await insert(trx, '192.0.2.21');
      await sql`rollback`.execute(trx);
      throw new Error('database or disk is full');
    });
    const later = writeTransaction(store.db, async (trx) => {
      await insert(trx, '192.0.2.22');
      return 'later';
    });
    const [a, b, c] = await Promise.allSettled([ran, broken, later]);
    assert.equal(a.status, 'rejected');
    assert.match(String((a as PromiseRejectedResult).reason), /disk is full/);
    assert.equal(b.status, 'rejected');
    assert.deepEqual(c, { status: 'fulfilled', value: 'later' });
    assert.deepEqual(await ips(store.db), ['192.0.2.22']);
    assert.equal(group.stats.groups - before, 1);
  });

  test('a member that swallows the error of a transaction SQLite rolled back fails; the ones not yet run go on', async () => {
    const { store } = await sqliteStore();
    const swallowing = writeTransaction(store.db, async (trx) => {
      await insert(trx, '192.0.2.30');
      await sql`rollback`.execute(trx);
    });
    const after = writeTransaction(store.db, (trx) => insert(trx, '192.0.2.31'));
    const settled = await Promise.allSettled([swallowing, after]);
    assert.deepEqual(settled.map((s) => s.status), ['rejected', 'fulfilled'], 'the member not yet run goes on in the next group');
    assert.match(String((settled[0] as PromiseRejectedResult).reason), /rolled the transaction back/);
    assert.deepEqual(await ips(store.db), ['192.0.2.31']);
    await writeTransaction(store.db, (trx) => insert(trx, '192.0.2.32'));
    assert.deepEqual(await ips(store.db), ['192.0.2.31', '192.0.2.32']);
  });

  test('precompiled statements run on the group\'s transaction at once; after SQLite rolled it back they fail, never autocommit', async () => {
    const { store } = await sqliteStore();
    const insertIp = prepared((db, p: { ip: string }) => db.insertInto('ip_failures').values({ ip: p.ip, failures: 1, window_start: 0, blocked_until: null }));
    let kept: Kysely<Database> | undefined;
    let synchronous = false;
    await writeTransaction(store.db, async (trx) => {
      kept = trx;
      synchronous = syncStatementOf(trx) !== undefined;
      await insertIp.execute(trx, { ip: '192.0.2.50' });
    });
    assert.equal(synchronous, true, 'the group\'s transaction has the synchronous path while it runs');
    assert.equal(syncStatementOf(kept!), undefined, 'and no longer once it committed');
    assert.deepEqual(await ips(store.db), ['192.0.2.50']);

    let caught: unknown;
    const swallowing = writeTransaction(store.db, async (trx) => {
      await sql`rollback`.execute(trx);
      try {
        await insertIp.execute(trx, { ip: '192.0.2.51' });
      } catch (err) {
        caught = err;
      }
    });
    await assert.rejects(swallowing);
    assert.match(String(caught), /rolled back by SQLite/);
    assert.deepEqual(await ips(store.db), ['192.0.2.50'], 'nothing written outside the transaction');
  });

  test('a group takes at most its maximum of members; the rest commit in the next group', async () => {
    const { store } = await sqliteStore();
    const group = groupCommitOf(store.db)!;
    const before = { ...group.stats };
    await Promise.all(Array.from({ length: 150 }, (_, i) => writeTransaction(store.db, (trx) => insert(trx, `10.0.${i >> 8}.${i & 255}`))));
    assert.equal(group.stats.members - before.members, 150);
    assert.equal(group.stats.groups - before.groups, 3, '64 + 64 + 22');
    assert.equal((await ips(store.db)).length, 150);
  });
});

test('PostgreSQL: a transaction of its own per call, rolled back alone', { skip: noPostgres }, async () => {
  const { store } = await postgresTestStore(cleanups);
  assert.equal(groupCommitOf(store.db), undefined);
  const settled = await Promise.allSettled([
    writeTransaction(store.db, (trx) => insert(trx, '192.0.2.40')),
    writeTransaction(store.db, async (trx) => {
      await insert(trx, '192.0.2.41');
      throw new Error('refused');
    }),
  ]);
  assert.deepEqual(settled.map((s) => s.status), ['fulfilled', 'rejected']);
  assert.deepEqual(await ips(store.db), ['192.0.2.40']);
});
