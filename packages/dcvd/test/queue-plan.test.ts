/**
 * The queues' claims on PostgreSQL under statistics that know no pending row (issue 20, migration
 * 0012, docs/PERFORMANCE.md "sixth round"): statistics taken while every row was delivered, then a
 * backlog queued with no ANALYZE since, as after a quiet hour and a burst. The claim must take its
 * rows from the claimed state's partial index in due order and find them again by primary key: no
 * sort of the backlog, no scan of it. Checked on the plan PostgreSQL makes (EXPLAIN of the exact
 * statement the worker runs, with its values), not on a timing.
 *
 * The webhook claim's fair share per receiver (src/webhooks/fair-claim.ts) likewise, on both databases:
 * one receiver's backlog of 100,000 due events, which a window over every due row would number at each
 * claim, is read only by migration 0017's index, a few entries per receiver.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { claimQuery, type ClaimState, type QueueTable } from '../src/queue/leased.ts';
import { fairClaimQuery, type FairClaimInput } from '../src/webhooks/fair-claim.ts';
import { GLOBAL_RECEIVER } from '../src/webhooks/secrets.ts';
import { describePlan, explainPlan, postgresOrSkip, postgresStoreFilledBy, sqlitePlan, sqliteStoreFilledBy } from './support/database.ts';

const NOW = 1_700_000_000_000;
const DELIVERED = 20_000;
// Smaller backlogs (30,000) got a good plan without migration 0012 here; 100,000 did not.
const BACKLOG = 100_000;

/** Rows of a queue table: `n` in `state`, due `due` ms from NOW; order and value ids need no rows (FK triggers off in this session). */
function insertRows(table: QueueTable, state: string, n: number, offset: number, due: number): string {
  // Due times spread over the rows, as a burst queues them.
  const common = `'${state}', 0, ${NOW + due} + g * 6, ${state === 'sending' ? `${NOW - 1000} - g` : 'null'}, ${NOW}, ${NOW}`;
  return table === 'outbox'
    ? `insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, lease_until, created_at, updated_at)
       select '<' || (g + ${offset}) || '@plan>', 1, 1, 'admin@example.com', ${common} from generate_series(1, ${n}) g`
    : `insert into webhook_outbox (event_id, order_id, event, url, body, state, attempts, next_attempt_at, lease_until, created_at, updated_at)
       select 'e' || (g + ${offset}), 1, 'validated', 'https://hooks.example/', '{}', ${common} from generate_series(1, ${n}) g`;
}

describe('queue claims on PostgreSQL with statistics that predate the backlog', { skip: await postgresOrSkip() }, () => {
  // Orders and values are not the point here: their foreign keys are not checked in the filling session.
  const { store: storeOf } = postgresStoreFilledBy(['outbox', 'webhook_outbox'], async (run) => {
    for (const table of ['outbox', 'webhook_outbox'] as const) {
      await run(insertRows(table, 'delivered', DELIVERED, 0, -86_400_000));
      await run(`analyze ${table}`);
      // The burst, after the statistics: pending and due, pending later (retries), a few sending with lapsed leases.
      await run(insertRows(table, 'pending', BACKLOG, DELIVERED, -600_000));
      await run(insertRows(table, 'pending', 5_000, DELIVERED + BACKLOG, 3_600_000));
      await run(insertRows(table, 'sending', 2_000, DELIVERED + BACKLOG + 5_000, -60_000));
    }
  });

  for (const table of ['outbox', 'webhook_outbox'] as const) {
    for (const state of ['pending', 'sending'] as const satisfies readonly ClaimState[]) {
      // Since migration 0017 the webhook worker claims its pending events by the fair claim (below), never by
      // this statement, and 0018 dropped the partial index its plan needed here (test/webhook-index-plan.test.ts).
      if (table === 'webhook_outbox' && state === 'pending') continue;
      test(`${table}, ${state}: due rows read in due order by index, found again by primary key, nothing sorted`, async () => {
        const store = storeOf();
        const { sql, parameters } = claimQuery(table, state, 'postgres').statement(store.db, { state, now: NOW, limit: 16, leaseUntil: NOW + 300_000, token: 'plan-test' });
        const all = await explainPlan(store.db, sql, parameters);
        const summary = describePlan(all);
        // In due order: the partial index of the state, or the (state, due column) index the table was created with.
        const ordered = state === 'pending' ? [`${table}_pending_due`, `${table}_due`] : [`${table}_sending_lease`, `${table}_lease`];
        assert.ok(!all.some((n) => /Sort|Seq Scan|Bitmap/.test(n['Node Type'])), `no sort or scan of the backlog: ${summary}`);
        const scans = all.filter((n) => n['Index Name'] !== undefined).map((n) => n['Index Name']!);
        assert.equal(scans.length, 2, summary);
        assert.ok(scans.includes(`${table}_pkey`), `the claimed rows found again by primary key: ${summary}`);
        assert.ok(scans.some((name) => ordered.includes(name)), `due rows read in due order: ${summary}`);
      });
    }
  }
});

/** The fair claim's values: 12 free slots, a cap of 4, the global receiver's 12. */
const FAIR: FairClaimInput = { now: NOW, limit: 12, leaseUntil: NOW + 300_000, token: 'plan-test', cap: 4, globalCap: 12, claimedSince: NOW - 90_000 };
/**
 * The events of the fair claim's tests: one receiver's backlog (an account's, or the global receiver's: an operator
 * whose only receiver is the global URL), 200 other receivers' few, some without a receiver, the backlog's receiver
 * with 4 sending, the global receiver's 1,000 more not due yet.
 */
const fairRows = (backlog: string, values: (receiver: string, state: string, n: number, due: string, lease: string, tag?: string) => string): string[] => [
  values(`'${backlog}'`, 'pending', BACKLOG, `${NOW - 600_000} + g`, 'null', 'backlog'),
  values(`'${backlog}'`, 'sending', 4, `${NOW - 700_000}`, `${NOW + 100_000}`),
  values(`'account:' || (100 + g % 200)`, 'pending', 2_000, `${NOW - 1_000} + g`, 'null'),
  values('null', 'pending', 100, `${NOW - 2_000} + g`, 'null'),
  values(`'${GLOBAL_RECEIVER}'`, 'pending', 1_000, `${NOW + 3_600_000} + g`, 'null'),
];
/** Whose is the backlog: an account's receiver, or the global one. */
const BACKLOGS = ['account:1', GLOBAL_RECEIVER];

for (const backlog of BACKLOGS) {
  describe(`the webhook claim\u2019s fair share on PostgreSQL with statistics that predate ${backlog}'s backlog`, { skip: await postgresOrSkip() }, () => {
    const values = (receiver: string, state: string, n: number, due: string, lease: string, tag = '') =>
      `insert into webhook_outbox (event_id, order_id, event, url, body, state, attempts, next_attempt_at, lease_until, created_at, updated_at, receiver)
       select 'f${tag}' || ${state === 'delivered' ? '' : `'${state}' || `}${receiver === 'null' ? `'n'` : receiver} || '-' || g, 1, 'validated', 'https://hooks.example/', '{}', '${state}', 0, ${due}, ${lease}, ${NOW}, ${NOW}, ${receiver}
       from generate_series(1, ${n}) g`;
    const { store: storeOf } = postgresStoreFilledBy(['webhook_outbox'], async (run) => {
      // The statistics: delivered events of 50 accounts and of the global receiver, none pending.
      await run(values(`case when g % 51 = 50 then '${GLOBAL_RECEIVER}' else 'account:' || (g % 51) end`, 'delivered', DELIVERED, `${NOW - 86_400_000} + g`, 'null'));
      await run('analyze webhook_outbox');
      for (const text of fairRows(backlog, values)) await run(text);
    });

    for (const generic of [false, true]) {
      test(`${generic ? 'a generic plan' : 'the plan with its values'}: pending events only by migration 0017's index, a few per receiver, the global receiver's by a read of its own, found again by primary key`, async () => {
        const store = storeOf();
        const { sql, parameters } = fairClaimQuery('postgres').statement(store.db, FAIR);
        // Run (and rolled back): plain EXPLAIN leaves out the receivers' walk's recursive step.
        const all = await explainPlan(store.db, sql, parameters, { generic, analyze: true });
        const summary = describePlan(all);
        assert.ok(!all.some((n) => /Seq Scan|Bitmap/.test(n['Node Type'])), `no scan of the backlog: ${summary}`);
        const scans = all.filter((n) => n['Index Name'] !== undefined);
        // The events sending, by a lease index; everything pending, by the receivers' index.
        const allowed = ['webhook_outbox_receiver_due', 'webhook_outbox_pkey', 'webhook_outbox_sending_lease', 'webhook_outbox_lease'];
        assert.deepEqual(scans.map((n) => n['Index Name']!).filter((name) => !allowed.includes(name)), [], summary);
        const byReceiver = scans.filter((n) => n['Index Name'] === 'webhook_outbox_receiver_due');
        assert.equal(byReceiver.length, 5, `the receivers' walk (its first seek and its step), each one's events, the global receiver's, those without one: ${summary}`);
        // 202 receivers with pending events: a few entries each, not the 100,000 of the backlog.
        const read = byReceiver.reduce((sum, n) => sum + n['Actual Rows']! * n['Actual Loops']!, 0);
        assert.ok(read < 2_000, `${read} index entries read: ${summary}`);
        // The global receiver's read: one range of the index, at most its share's entries (all of them when the backlog is its own).
        const global = byReceiver.filter((n) => n['Index Cond']?.includes(`'${GLOBAL_RECEIVER}'`));
        assert.equal(global.length, 1, `one read of the global receiver's events: ${summary}`);
        assert.equal(global[0]!['Actual Loops'], 1, summary);
        assert.equal(global[0]!['Actual Rows'], backlog === GLOBAL_RECEIVER ? FAIR.globalCap : 0, `the global receiver's entries read: ${summary}`);
        // The walk's other receivers are read with the accounts' share, and the global one not again: one read for each of
        // the 200 accounts with a few events, and for the backlog's when it is an account's.
        const perReceiver = byReceiver.filter((n) => /= \(receivers\w*\.r\)/.test(n['Index Cond'] ?? ''));
        assert.equal(perReceiver.length, 1, summary);
        assert.equal(perReceiver[0]!['Actual Loops'], backlog === GLOBAL_RECEIVER ? 200 : 201, `the receivers read with the accounts' share: ${summary}`);
        assert.ok(scans.some((n) => n['Index Name'] === 'webhook_outbox_pkey'), `the claimed rows found again by primary key: ${summary}`);
      });
    }
  });
}

for (const backlog of BACKLOGS) {
  describe(`the webhook claim\u2019s fair share on SQLite, ${backlog}'s backlog queued and no statistics`, () => {
    // Rows without orders: only the outbox's indexes matter here.
    const { store, raw } = sqliteStoreFilledBy('dcvd-queue-plan-', (db) => {
      const values = (receiver: string, state: string, n: number, due: string, lease: string, tag = '') =>
        `with recursive s(g) as (select 1 union all select g + 1 from s where g < ${n})
         insert into webhook_outbox (event_id, order_id, event, url, body, state, attempts, next_attempt_at, lease_until, created_at, updated_at, receiver)
         select 'f${tag}' || '${state}' || coalesce(${receiver}, 'n') || '-' || g, 1, 'validated', 'https://hooks.example/', '{}', '${state}', 0, ${due}, ${lease}, ${NOW}, ${NOW}, ${receiver} from s`;
      db.transaction(() => {
        for (const text of fairRows(backlog, values)) db.exec(text);
      })();
    });

    test("pending events only by migration 0017's index, the claimed rows by primary key, nothing scanned", () => {
      const plan = sqlitePlan(raw(), fairClaimQuery('sqlite').statement(store().db, FAIR));
      const summary = plan.join(' | ');
      const reads = plan.filter((d) => /^(SEARCH|SCAN) (webhook_outbox|w)\b/.test(d));
      assert.ok(!reads.some((d) => /^SCAN/.test(d)), `no scan of the backlog: ${summary}`);
      const pending = reads.filter((d) => !/webhook_outbox_lease|INTEGER PRIMARY KEY/.test(d));
      // The walk's first seek and its step, each receiver's events, the global receiver's, those without one.
      assert.equal(pending.length, 5, summary);
      assert.ok(pending.every((d) => /USING (COVERING )?INDEX webhook_outbox_receiver_due \(receiver/.test(d) || /USING (COVERING )?INDEX webhook_outbox_receiver_due$/.test(d)), summary);
      assert.ok(reads.some((d) => /^SEARCH webhook_outbox USING INTEGER PRIMARY KEY/.test(d)), `the claimed rows by primary key: ${summary}`);
    });
  });
}
