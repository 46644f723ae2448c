/**
 * The queues' claims on PostgreSQL under statistics that know no pending row (issue 20, migration
 * 0012, docs/PERFORMANCE.md "sixth round"): statistics taken while every row was delivered, then a
 * backlog queued with no ANALYZE since, as after a quiet hour and a burst. The claim must take its
 * rows from the claimed state's partial index in due order and find them again by primary key: no
 * sort of the backlog, no scan of it. Checked on the plan PostgreSQL makes (EXPLAIN of the exact
 * statement the worker runs, with its values), not on a timing.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { claimQuery, type ClaimState, type QueueTable } from '../src/queue/leased.ts';
import { describePlan, explainPlan, postgresOrSkip, postgresStoreFilledBy } from './support/database.ts';

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
