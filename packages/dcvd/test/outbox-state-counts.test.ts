/**
 * The outbox's emails by state for the metrics (src/outbox/state-counts.ts): the final emails are counted
 * once, so a scrape reads only the emails from the oldest one still waiting on. Checked against a plain
 * `count(*) … group by state` through random sequences of the queue's own transitions, on SQLite and on
 * PostgreSQL; that counted emails are not read again (a change behind its back is not seen, until the
 * totals start again); that an id PostgreSQL shows after a larger one is still counted; and the plans of
 * its statements (index probes and a range of the primary key, never the whole outbox).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CompiledQuery, sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Store } from '../src/store/database.ts';
import type { Database } from '../src/store/schema.ts';
import { headQuery, outboxStateCounts, rangeQuery, type OutboxState } from '../src/outbox/state-counts.ts';
import { OUTBOX_STATES } from '../src/outbox/states.ts';
import { bulkFill, describePlan, explainPlan, postgresOrSkip, postgresTestStore, sqliteTestStore } from './support/database.ts';

const NOW = 1_700_000_000_000;
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

const sqliteStore = async (): Promise<Store> => (await sqliteTestStore(cleanups, 'dcvd-state-counts-')).store;

/** An account, an order and a random value the emails can refer to. */
async function fixture(db: Kysely<Database>): Promise<{ orderId: number; valueId: number }> {
  await sql`insert into accounts (login, password_hash, created_at, updated_at) values ('counts', 'x', ${NOW}, ${NOW})`.execute(db);
  await sql`insert into orders (account_id, order_number, base_order_number, domain, dcv_method, dcv_status, created_at, updated_at)
    select id, 1, 1, 'example.com', 'email', 'awaiting', ${NOW}, ${NOW} from accounts where login = 'counts'`.execute(db);
  const { id: orderId } = await db.selectFrom('orders').select('id').where('order_number', '=', 1).executeTakeFirstOrThrow();
  const value = await db
    .insertInto('random_values')
    .values({ order_id: orderId, value_hash: 'counts', recipient: 'admin@example.com', adn: 'example.com', address_source: 'constructed', created_at: NOW, expires_at: NOW + 86_400_000 })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { orderId: Number(orderId), valueId: Number(value.id) };
}

let serial = 0;
async function insertEmails(db: Kysely<Database>, f: { orderId: number; valueId: number }, n: number, state: OutboxState = 'pending'): Promise<void> {
  const rows = Array.from({ length: n }, () => ({
    message_id: `<counts-${++serial}@ca.example>`,
    order_id: f.orderId,
    random_value_id: f.valueId,
    recipient: 'admin@example.com',
    state,
    attempts: 0,
    next_attempt_at: NOW + serial,
    created_at: NOW + serial,
    updated_at: NOW + serial,
  }));
  for (let i = 0; i < rows.length; i += 500) await db.insertInto('outbox').values(rows.slice(i, i + 500)).execute();
}

/** What a plain count of the whole outbox says, every state present (0 for none). */
async function truth(db: Kysely<Database>): Promise<Record<string, number>> {
  const counts: Record<string, number> = Object.fromEntries(OUTBOX_STATES.map((s) => [s, 0]));
  for (const r of await db.selectFrom('outbox').select(['state', sql<number>`count(*)`.as('n')]).groupBy('state').execute()) counts[r.state] = Number(r.n);
  return counts;
}

/** A small deterministic generator (the sequences must be the same on every run). */
function random(seed: number): () => number {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
    return x / 2 ** 32;
  };
}

/** One of the queue's own transitions on a few random emails in `from` (pending → sending, sending → an outcome or back, pending → cancelled). */
async function step(db: Kysely<Database>, rnd: () => number): Promise<void> {
  const moves: [OutboxState, OutboxState[]][] = [
    ['pending', ['sending', 'cancelled']],
    ['sending', ['delivered', 'failed', 'pending']],
  ];
  const [from, tos] = moves[Math.floor(rnd() * moves.length)]!;
  const ids = (await db.selectFrom('outbox').select('id').where('state', '=', from).orderBy('id').execute()).map((r) => Number(r.id));
  for (const id of ids) {
    if (rnd() < 0.4) await db.updateTable('outbox').set({ state: tos[Math.floor(rnd() * tos.length)]! }).where('id', '=', id).execute();
  }
}

function suite(name: string, open: () => Promise<Store | undefined>) {
  describe(name, () => {
    test('agrees with a count of the whole outbox through random sequences of the queue’s transitions', async (t) => {
      const store = await open();
      if (!store) return t.skip('no PostgreSQL');
      const f = await fixture(store.db);
      // settleMs 0 on PostgreSQL too: nothing here commits out of order (that case is below).
      const counts = outboxStateCounts(store.db, { settleMs: 0 });
      assert.deepEqual((await counts.read()).counts, await truth(store.db), 'an empty outbox');
      for (const seed of [1, 2, 3]) {
        const rnd = random(seed);
        for (let round = 0; round < 25; round++) {
          if (rnd() < 0.5) await insertEmails(store.db, f, 1 + Math.floor(rnd() * 20));
          await step(store.db, rnd);
          const read = await counts.read();
          assert.deepEqual(read.counts, await truth(store.db), `seed ${seed}, round ${round}`);
        }
        // Drain: everything final, then the totals hold with nothing waiting.
        await store.db.updateTable('outbox').set({ state: 'delivered' }).where('state', 'in', ['pending', 'sending']).execute();
        assert.deepEqual((await counts.read()).counts, await truth(store.db), `seed ${seed}, drained`);
      }
    });

    test('emails counted as final are not read again; the oldest waiting email bounds what is; a restored database starts the totals again', async (t) => {
      const store = await open();
      if (!store) return t.skip('no PostgreSQL');
      const f = await fixture(store.db);
      const base = serial;
      await insertEmails(store.db, f, 30, 'delivered');
      await insertEmails(store.db, f, 5, 'pending');
      await insertEmails(store.db, f, 10, 'delivered');
      let clock = 0;
      const counts = outboxStateCounts(store.db, { settleMs: 0, recountMs: 1000, now: () => clock });
      const first = await counts.read();
      assert.equal(first.counts.delivered, 40);
      assert.equal(first.counts.pending, 5);
      assert.equal(first.oldestWaitingCreatedAt, NOW + base + 31, 'the oldest waiting email’s creation');
      const ids = (await store.db.selectFrom('outbox').select('id').orderBy('id').execute()).map((r) => Number(r.id));
      // Behind its back (dcvd never changes a final email): one of the first 30, counted once, and one after
      // the oldest waiting email, counted at every read.
      await store.db.updateTable('outbox').set({ state: 'failed' }).where('id', 'in', [ids[0]!, ids[40]!]).execute();
      const second = await counts.read();
      assert.equal(second.counts.failed, 1, 'only the change after the oldest waiting email is seen');
      assert.equal(second.counts.delivered, 39);
      // PostgreSQL counts the final emails again from nothing every recountMs (SQLite needs not: its ids are never out of order).
      clock += 1000;
      const third = await counts.read();
      if (store.dialect === 'postgres') assert.equal(third.counts.failed, 2, 'the recount sees the first change too');
      else assert.equal(third.counts.failed, 1);
      // Failed emails put back to pending by hand (an operator's SQL; dcvd never does it): a waiting email
      // among those counted as final starts the totals again.
      await store.db.updateTable('outbox').set({ state: 'pending' }).where('id', '=', ids[0]!).execute();
      assert.deepEqual((await counts.read()).counts, await truth(store.db), 'an email counted as final is waiting again');
      await store.db.updateTable('outbox').set({ state: 'failed' }).where('id', '=', ids[0]!).execute();
      // The largest id went down (a restored backup): the totals start again, whatever the dialect.
      await store.db.updateTable('outbox').set({ state: 'delivered' }).where('state', '=', 'pending').execute();
      assert.equal((await counts.read()).oldestWaitingCreatedAt, undefined, 'nothing waiting: every email counted as final');
      await store.db.deleteFrom('outbox').where('id', '>', ids[20]!).execute();
      const fourth = await counts.read();
      assert.deepEqual(fourth.counts, await truth(store.db));
      assert.equal(fourth.counts.failed, 1);
      assert.equal(fourth.counts.delivered, 20);
    });
  });
}

suite('SQLite', sqliteStore);
suite('PostgreSQL', async () => ((await postgresOrSkip()) ? undefined : (await postgresTestStore(cleanups)).store));

describe('PostgreSQL: an id shown after a larger one', () => {
  test('is counted: the largest id a scrape saw is trusted only settleMs later', async (t) => {
    const skip = await postgresOrSkip();
    if (skip) return t.skip(skip);
    const { store, url } = await postgresTestStore(cleanups);
    const f = await fixture(store.db);
    let clock = 0;
    // The hour's recount left out: it would hide what this checks.
    const counts = outboxStateCounts(store.db, { settleMs: 60_000, recountMs: 3_600_000, now: () => clock });
    // A transaction draws its waiting email's id, then others commit larger ones, and the first commits last.
    const slow = new pg.Client({ connectionString: url });
    await slow.connect();
    try {
      await slow.query('begin');
      await slow.query(
        `insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at)
         values ('<slow@ca.example>', $1, $2, 'admin@example.com', 'pending', 0, $3, $3, $3)`,
        [f.orderId, f.valueId, NOW],
      );
      await insertEmails(store.db, f, 3, 'delivered');
      assert.deepEqual((await counts.read()).counts, await truth(store.db));
      clock = 30_000;
      assert.deepEqual((await counts.read()).counts, await truth(store.db));
      await slow.query('commit');
      // The first scrape's largest id is trusted now; the slow email below it is visible, and waiting.
      clock = 61_000;
      const read = await counts.read();
      assert.equal(read.counts.pending, 1, 'the email that showed up below the largest id seen');
      assert.deepEqual(read.counts, await truth(store.db));
      // Delivered: final, and counted as such.
      await store.db.updateTable('outbox').set({ state: 'delivered' }).where('message_id', '=', '<slow@ca.example>').execute();
      clock = 30 * 60_000;
      assert.equal((await counts.read()).counts.delivered, 4);
      await insertEmails(store.db, f, 2, 'failed');
      assert.deepEqual((await counts.read()).counts, await truth(store.db));
    } finally {
      await slow.end();
    }
  });
});

describe('plans: index probes and a range of the primary key', () => {
  const statements = (db: Kysely<Database>) => ({
    head: headQuery(db).compile(),
    range: rangeQuery(db, 190_000, 204_000).compile(),
    first: rangeQuery(db, 0, 190_000).compile(),
  });

  test('SQLite', async () => {
    const store = await sqliteStore();
    const f = await fixture(store.db);
    await insertEmails(store.db, f, 2000, 'delivered');
    await insertEmails(store.db, f, 100, 'pending');
    await sql`analyze`.execute(store.db);
    const { head, range } = statements(store.db);
    const plan = async (q: CompiledQuery) => (await store.db.executeQuery<{ detail: string }>(CompiledQuery.raw(`explain query plan ${q.sql}`, [...q.parameters]))).rows.map((r) => r.detail).join('; ');
    const headPlan = await plan(head);
    // The waiting emails by a state index; the largest id by the primary key (SQLite's plan says SEARCH for both).
    assert.doesNotMatch(headPlan, /SCAN outbox/, headPlan);
    assert.match(headPlan, /SEARCH outbox USING (COVERING )?INDEX outbox_(lease|due) \(state=\?\)/, headPlan);
    const rangePlan = await plan(range);
    assert.match(rangePlan, /SEARCH outbox USING INTEGER PRIMARY KEY \(rowid>\? AND rowid<\?\)/, rangePlan);
    assert.doesNotMatch(rangePlan, /SCAN outbox/, rangePlan);
    // The first count reads a state index, not the table's rows.
    const firstPlan = await plan(statements(store.db).first);
    assert.match(firstPlan, /SCAN outbox USING COVERING INDEX outbox_(lease|due)/, firstPlan);
  });

  test('PostgreSQL, 200,000 final emails and 4,000 waiting, analyzed', async (t) => {
    const skip = await postgresOrSkip();
    if (skip) return t.skip(skip);
    const { store } = await postgresTestStore(cleanups);
    const f = await fixture(store.db);
    await bulkFill(store.db, async (trx) => {
      await sql`insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at)
        select '<plan-' || g || '@ca.example>', ${f.orderId}, ${f.valueId}, 'a@example.com', case when g > 200000 then 'pending' when g % 50 = 0 then 'failed' else 'delivered' end, 1, g, g, g
        from generate_series(1, 204000) g`.execute(trx);
      await sql`analyze outbox`.execute(trx);
    });
    const { head, range } = statements(store.db);
    const headNodes = await explainPlan(store.db, head.sql, head.parameters);
    const headPlan = describePlan(headNodes);
    // The primary key read once, backwards from the newest email, for the largest id; never walked forwards
    // from the oldest email until a waiting one (what a min(id) alone gets); the waiting emails by a state index.
    const byKey = headNodes.filter((n) => n['Index Name'] === 'outbox_pkey');
    assert.equal(byKey.length, 1, headPlan);
    assert.ok(byKey.every((n) => (n as { 'Scan Direction'?: string })['Scan Direction'] === 'Backward'), headPlan);
    assert.ok(headNodes.some((n) => n['Index Name'] === 'outbox_lease' || n['Index Name'] === 'outbox_due'), headPlan);
    assert.ok(!headNodes.some((n) => n['Node Type'].includes('Seq Scan')), headPlan);
    const rangeNodes = await explainPlan(store.db, range.sql, range.parameters);
    const rangePlan = describePlan(rangeNodes);
    assert.ok(rangeNodes.some((n) => n['Index Name'] === 'outbox_pkey'), rangePlan);
    assert.ok(!rangeNodes.some((n) => n['Node Type'].includes('Seq Scan')), rangePlan);
  });
});
