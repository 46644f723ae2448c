/**
 * The indexes that serve the statements reading the webhook outbox's pending events, on both databases, with a
 * few events and with a backlog (docs/PERFORMANCE.md, "seventeenth round: an unused webhook index"). Migration
 * 0018 dropped migration 0012's `webhook_outbox_pending_due`: since 0017 none of these statements read it, and
 * each enqueue and retry wrote an entry of it. The statements, with the indexes they may read the table by:
 * - the webhook claim (src/webhooks/fair-claim.ts): its pending events by migration 0017's index only; the
 *   events sending by a lease index; the rows it updates by primary key;
 * - the gauges `dcvd_webhooks_waiting` and `dcvd_webhooks_oldest_pending_seconds` (src/metrics.ts): by a
 *   `(state, …)` index, or a scan of the table where the planner counts most of it as waiting.
 * The other statements reading the table find their rows by id or order (`webhook_outbox_order`), and the
 * takeover claim its expired leases by a lease index (test/queue-plan.test.ts); none reads pending events.
 *
 * The table's indexes are pinned too: a change that wants a partial index of pending rows back (or any other
 * index) fails here first, and must show the plan that needs it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import { fairClaimQuery, type FairClaimInput } from '../src/webhooks/fair-claim.ts';
import { oldestWaitingWebhookQuery, webhooksWaitingQuery } from '../src/metrics.ts';
import type { Store } from '../src/store/database.ts';
import type { Database } from '../src/store/schema.ts';
import { describeMigration, describePlan, explainPlan, postgresOrSkip, postgresStoreFilledBy, sqlitePlan, sqliteStoreFilledBy, type PlanNode } from './support/database.ts';

const NOW = 1_700_000_000_000;
const FAIR: FairClaimInput = { now: NOW, limit: 12, leaseUntil: NOW + 300_000, token: 'index-plan', cap: 4, globalCap: 12, claimedSince: NOW - 90_000 };

/** webhook_outbox's indexes since migration 0018, by dialect (SQLite's automatic one is event_id's UNIQUE). */
const INDEXES = {
  postgres: ['webhook_outbox_due', 'webhook_outbox_event_id_key', 'webhook_outbox_lease', 'webhook_outbox_order', 'webhook_outbox_pkey', 'webhook_outbox_receiver_due', 'webhook_outbox_sending_lease'],
  sqlite: ['sqlite_autoindex_webhook_outbox_1', 'webhook_outbox_due', 'webhook_outbox_lease', 'webhook_outbox_order', 'webhook_outbox_receiver_due'],
};

async function indexesOf(db: Kysely<Database>, dialect: 'sqlite' | 'postgres'): Promise<string[]> {
  const { rows } =
    dialect === 'postgres'
      ? await sql<{ name: string }>`select indexname as name from pg_indexes where schemaname = current_schema() and tablename = 'webhook_outbox'`.execute(db)
      : await sql<{ name: string }>`select name from sqlite_master where type = 'index' and tbl_name = 'webhook_outbox'`.execute(db);
  return rows.map((r) => r.name).sort();
}

/** The indexes each statement may read webhook_outbox by on PostgreSQL, and whether a scan of the table may serve it. */
const CLAIM_INDEXES = ['webhook_outbox_receiver_due', 'webhook_outbox_pkey', 'webhook_outbox_lease', 'webhook_outbox_sending_lease'];
const GAUGE_INDEXES = ['webhook_outbox_due', 'webhook_outbox_lease'];

/**
 * The events, as `insert … select` statements over `series(n)` (the dialect's row generator, rows numbered `g`):
 * `backlog` pending events of one receiver, a few of 200 others', some without a receiver (queued before
 * migration 0007), the global URL's not yet due, one receiver at its cap, and dead workers' expired leases.
 */
function events(series: (n: number) => string, backlog: number): string[] {
  const insert = (tag: string, receiver: string, state: string, n: number, due: string, lease: string) =>
    `insert into webhook_outbox (event_id, order_id, event, url, body, state, attempts, next_attempt_at, lease_until, created_at, updated_at, receiver)
     select '${tag}' || g, 1, 'validated', 'https://hooks.example/', '{}', '${state}', 0, ${due}, ${lease}, ${NOW} - g, ${NOW}, ${receiver}
     from ${series(n)}`;
  const few = Math.min(backlog, 2_000);
  return [
    insert('p', `'account:1'`, 'pending', backlog, `${NOW - 600_000} + g`, 'null'),
    insert('s', `'account:1'`, 'sending', 4, `${NOW - 700_000}`, `${NOW + 100_000}`),
    insert('o', `'account:' || (100 + g % 200)`, 'pending', few, `${NOW - 1_000} + g`, 'null'),
    insert('n', 'null', 'pending', Math.ceil(few / 20), `${NOW - 2_000} + g`, 'null'),
    insert('g', `'global'`, 'pending', Math.ceil(few / 2), `${NOW + 3_600_000} + g`, 'null'),
    insert('x', `'account:' || (g % 7)`, 'sending', Math.ceil(few / 4), `${NOW - 900_000}`, `${NOW - 1_000} - g`),
  ];
}
const delivered = (series: (n: number) => string, n: number) =>
  `insert into webhook_outbox (event_id, order_id, event, url, body, state, attempts, next_attempt_at, created_at, updated_at, receiver)
   select 'd' || g, 1, 'validated', 'https://hooks.example/', '{}', 'delivered', 1, ${NOW - 86_400_000} + g, ${NOW - 86_400_000}, ${NOW - 86_400_000}, 'account:' || (g % 50) from ${series(n)}`;

const pgSeries = (n: number) => `generate_series(1, ${n}) g`;
/** SQLite has no generate_series by default: a recursive table, usable after `from` with a `with` in front. */
const sqliteSeries = (n: number) => `(with recursive s(g) as (select 1 union all select g + 1 from s where g < ${n}) select g from s)`;

/** On PostgreSQL: the fair claim's plan (run and rolled back, custom and generic) and the gauges' (unnamed statements, planned with their values). */
function postgresChecks(storeOf: () => Store, backlog: boolean): void {
  const check = (name: string, all: PlanNode[], allowed: string[], scanAllowed: boolean) => {
    const summary = `${name}: ${describePlan(all)}`;
    const onTable = all.filter((n) => n['Relation Name'] === 'webhook_outbox' || n['Index Name']?.startsWith('webhook_outbox'));
    assert.ok(onTable.length > 0, summary);
    assert.deepEqual(onTable.map((n) => n['Index Name']).filter((i) => i !== undefined && !allowed.includes(i)), [], `only ${allowed.join(', ')}: ${summary}`);
    if (!scanAllowed) assert.ok(!onTable.some((n) => /Seq Scan|Bitmap Heap/.test(n['Node Type'])), `no scan of the table: ${summary}`);
    return onTable;
  };

  test('the claim reads its pending events by migration 0017\u2019s index only', async () => {
    const store = storeOf();
    const { sql: text, parameters } = fairClaimQuery('postgres').statement(store.db, FAIR);
    for (const generic of [false, true]) {
      const all = await explainPlan(store.db, text, parameters, { generic, analyze: true });
      // A few events: the rows it updates may be found by a scan of the table's few pages.
      const onTable = check(`${generic ? 'generic' : 'custom'} plan`, all, CLAIM_INDEXES, !backlog);
      assert.ok(onTable.some((n) => n['Index Name'] === 'webhook_outbox_receiver_due'), describePlan(all));
    }
  });

  test('the gauges read the waiting events by a (state, \u2026) index, or the whole table', async () => {
    const store = storeOf();
    for (const [name, query] of [['waiting', webhooksWaitingQuery], ['oldest', oldestWaitingWebhookQuery]] as const) {
      const { sql: text, parameters } = query(store.db).compile();
      check(name, await explainPlan(store.db, text, parameters), GAUGE_INDEXES, true);
    }
  });

  test('the table has the indexes of migration 0018', async () => {
    assert.deepEqual(await indexesOf(storeOf().db, 'postgres'), INDEXES.postgres);
  });
}

describe('webhook_outbox\u2019s indexes on PostgreSQL, a few events, never analyzed', { skip: await postgresOrSkip() }, () => {
  const { store } = postgresStoreFilledBy(['webhook_outbox'], async (run) => {
    await run(delivered(pgSeries, 20));
    for (const text of events(pgSeries, 5)) await run(text);
  });
  postgresChecks(store, false);
});

describe('webhook_outbox\u2019s indexes on PostgreSQL, a backlog of 100,000 events of one receiver, statistics from before it', { skip: await postgresOrSkip() }, () => {
  const { store } = postgresStoreFilledBy(['webhook_outbox'], async (run) => {
    await run(delivered(pgSeries, 20_000));
    await run('analyze webhook_outbox');
    for (const text of events(pgSeries, 100_000)) await run(text);
  });
  postgresChecks(store, true);
});

for (const [title, backlog, analyzedBefore] of [
  ['a few events, no statistics', 5, false],
  ['a backlog of 100,000 events of one receiver, no statistics', 100_000, false],
  ['a backlog of 100,000 events of one receiver, an operator\u2019s ANALYZE from before it', 100_000, true],
] as const) {
  describe(`webhook_outbox\u2019s indexes on SQLite, ${title}`, () => {
    // Events without orders: only the table's indexes matter here.
    const { store, raw } = sqliteStoreFilledBy('dcvd-webhook-index-', (db) => {
      db.exec(delivered(sqliteSeries, backlog > 5 ? 20_000 : 20));
      if (analyzedBefore) db.exec('analyze');
      db.transaction(() => {
        for (const text of events(sqliteSeries, backlog)) db.exec(text);
      })();
    });
    const reads = (statement: { sql: string; parameters: readonly unknown[] }) => {
      const plan = sqlitePlan(raw(), statement);
      return { plan: plan.join(' | '), reads: plan.filter((d) => /^(SEARCH|SCAN) (webhook_outbox|w)\b/.test(d)) };
    };

    test('the claim reads its pending events by migration 0017\u2019s index only', () => {
      const { plan, reads: found } = reads(fairClaimQuery('sqlite').statement(store().db, FAIR));
      assert.deepEqual(found.filter((d) => !/ USING (COVERING )?INDEX webhook_outbox_(receiver_due|lease)\b| USING INTEGER PRIMARY KEY /.test(d)), [], `by an index, none scanned: ${plan}`);
      // The events sending by the lease index; every other read of the table is of pending events.
      const pending = found.filter((d) => !/webhook_outbox_lease|INTEGER PRIMARY KEY/.test(d));
      assert.ok(pending.length > 0 && pending.every((d) => /INDEX webhook_outbox_receiver_due\b/.test(d)), plan);
    });

    test('the gauges read the waiting events by a (state, \u2026) index', () => {
      for (const query of [webhooksWaitingQuery, oldestWaitingWebhookQuery]) {
        const { plan, reads: found } = reads(query(store().db).compile());
        assert.ok(found.length > 0 && found.every((d) => /^SEARCH webhook_outbox USING (COVERING )?INDEX webhook_outbox_(due|lease) \(state=\?\)/.test(d)), plan);
      }
    });

    test('the table has the indexes of migration 0018', async () => {
      assert.deepEqual(await indexesOf(store().db, 'sqlite'), INDEXES.sqlite);
    });
  });
}

await describeMigration('migration 0018_drop_webhook_pending_due', async (store, migrateTo) => {
  await migrateTo('0017_webhook_receiver_due');
  const before = await indexesOf(store.db, store.dialect);
  // Migration 0012 made it on PostgreSQL only.
  assert.equal(before.includes('webhook_outbox_pending_due'), store.dialect === 'postgres', before.join(', '));
  await migrateTo('0018_drop_webhook_pending_due');
  assert.deepEqual(await indexesOf(store.db, store.dialect), INDEXES[store.dialect]);
});
