/**
 * Statements whose cost must not grow with a table that only grows (issue 20, ninth round), checked on
 * the plans the databases make for the exact statements (EXPLAIN), not on timings:
 * - cancelling the emails still waiting of one value, order or domain finds them through that value's
 *   or order's index, not by walking the backlog of pending emails (under AutoApplyOrder's load SQLite
 *   took the (state, …) index: 169 µs an order, growing with the backlog); SQLite with a backlog and no
 *   statistics, PostgreSQL with statistics taken before the backlog was queued;
 * - the newest order of a chain is found by the chain's index, not by walking the account's orders;
 * - the minute's purge of sealed codes walks the emails that still keep one, not every random value ever made;
 * - the outbox flow control's delivery lag is one row of the due index (read every 100 ms under load);
 * - after the email cut-off, the search for validated orders without their `dcv.unusable` event probes the
 *   events by order on PostgreSQL, whatever statistics from before the cut-off say (not an anti-join that
 *   rescans every event for each order).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { openStore, type Store } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { cancelPendingOfDomain, cancelPendingOfOrder, cancelPendingOfValue, eraseSealedOfDomain, eraseSealedOfOrder } from '../src/orders/random-values.ts';
import { newestOfChainQuery, numberTaken, orderByCertificateQuery, orderByNumberWithDomains } from '../src/orders/orders.ts';
import { liveValue } from '../src/orders/dcv-email.ts';
import { purgeSealedCodes, sealedOfDeadValues } from '../src/outbox/outbox.ts';
import { UNUSABLE_EVENT, unusableCandidates } from '../src/webhooks/webhooks.ts';
import { oldestDueEmail } from '../src/outbox/flow.ts';
import { describePlan, explainPlan, postgresOrSkip, postgresStoreFilledBy, sqlitePlan } from './support/database.ts';

const NOW = 1_700_000_000_000;

/** Each statement, with the indexes that may find its rows. */
const cases = (store: Store) => [
  { name: 'the pending emails of a value', indexes: ['outbox_random_value'], ...cancelPendingOfValue.statement(store.db, { valueId: 7, now: NOW, lastError: 'x' }) },
  { name: 'the pending emails of an order', indexes: ['outbox_order'], ...cancelPendingOfOrder.statement(store.db, { orderId: 7, now: NOW, lastError: 'x' }) },
  { name: "the pending emails of a domain's values", indexes: ['outbox_random_value'], ...cancelPendingOfDomain.statement(store.db, { domainId: 7, now: NOW, lastError: 'x' }) },
  // The partial index of emails keeping a code (migration 0013) serves too, probed by the values.
  { name: "the sealed codes of a domain's values", indexes: ['outbox_random_value', 'outbox_sealed'], ...eraseSealedOfDomain.statement(store.db, { domainId: 7 }) },
  { name: 'the sealed codes of an order', indexes: ['outbox_order'], ...eraseSealedOfOrder.statement(store.db, { orderId: 7 }) },
];

describe('cancelling waiting emails and erasing codes on SQLite, a backlog queued', () => {
  let dir: string;
  let store: Store;
  let raw: SQLite.Database;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dcvd-query-plans-'));
    store = openStore({ dataDir: dir });
    await migrateToLatest(store.db, 'sqlite');
    raw = new SQLite(join(dir, 'dcvd.sqlite'));
    raw.pragma('foreign_keys = OFF'); // rows without orders and values: only the outbox's indexes matter here
    const insert = raw.prepare(`insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at)
      values (?, ?, ?, 'a@example.com', 'pending', 0, ?, ?, ?)`);
    raw.transaction(() => {
      for (let i = 0; i < 2000; i++) insert.run(`<m${i}@dcvd>`, 1000 + i, 1000 + i, NOW + i, NOW, NOW);
    })();
  });
  after(async () => {
    raw?.close();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('each is found by its value or order, not by the state', () => {
    for (const c of cases(store)) {
      const plan = sqlitePlan(raw, c);
      const outbox = plan.filter((d) => /\boutbox\b/.test(d));
      const summary = plan.join(' | ');
      assert.equal(outbox.length, 1, `${c.name}: ${summary}`);
      assert.match(outbox[0]!, new RegExp(`^SEARCH outbox USING INDEX (${c.indexes.join('|')}) \\((order_id|random_value_id)=\\?\\)`), `${c.name}: ${summary}`);
    }
  });

  test("a chain's newest order by the chain's index, the purge of sealed codes by the emails that keep one", () => {
    const plan = (st: { sql: string; parameters: readonly unknown[] }) => sqlitePlan(raw, st);
    const chain = plan(newestOfChainQuery.statement(store.db, { accountId: 1, baseOrderNumber: 7 }));
    assert.deepEqual(chain, ['SEARCH orders USING INDEX orders_chain (base_order_number=?)'], chain.join(' | '));
    // CollectSSL's order by its certificate id: the partial index of migration 0014.
    const byCertificate = plan(orderByCertificateQuery.statement(store.db, { accountId: 1, certificateId: 7 }));
    assert.deepEqual(byCertificate, ['SEARCH orders USING INDEX orders_certificate (certificate_id=?)'], byCertificate.join(' | '));
    // AutoApplyOrder's draw of an unused number: one probe of each index, no scan.
    const taken = plan(numberTaken.statement(store.db, { n: 7 }));
    assert.ok(taken.some((d) => /^SEARCH orders USING (COVERING )?INDEX sqlite_autoindex_orders_\d+ \(order_number=\?\)/.test(d)), taken.join(' | '));
    assert.ok(taken.some((d) => /^SEARCH orders USING (COVERING )?INDEX orders_chain \(base_order_number=\?\)/.test(d)), taken.join(' | '));
    assert.ok(taken.some((d) => /^SEARCH orders USING (COVERING )?INDEX orders_certificate \(certificate_id=\?\)/.test(d)), taken.join(' | '));
    assert.ok(!taken.some((d) => /^SCAN/.test(d)), taken.join(' | '));
    // ResendDCVEmail's order with its domains' count and first id: the order by its number, the domains by their order.
    const withDomains = plan(orderByNumberWithDomains.statement(store.db, { orderNumber: 7 }));
    assert.ok(!withDomains.some((d) => /^SCAN/.test(d)), withDomains.join(' | '));
    assert.equal(withDomains.filter((d) => /^SEARCH s USING COVERING INDEX sqlite_autoindex_order_domains_\d+ \(order_id=\?/.test(d)).length, 2, withDomains.join(' | '));
    const purge = plan(sealedOfDeadValues.statement(store.db, { now: NOW }));
    assert.match(purge[0]!, /^SCAN outbox USING INDEX outbox_sealed\b/, purge.join(' | '));
    assert.ok(purge.slice(1).every((d) => !/^SCAN/.test(d)), `no scan but the sealed emails': ${purge.join(' | ')}`);
    assert.ok(purge.some((d) => /SEARCH rv USING INTEGER PRIMARY KEY/.test(d)), purge.join(' | '));
  });

  test("the outbox flow control's delivery lag is the due index's first row", () => {
    const st = oldestDueEmail.statement(store.db, { now: NOW });
    const plan = sqlitePlan(raw, st);
    assert.equal(plan.length, 1, `no sort, no scan: ${plan.join(' | ')}`);
    assert.match(plan[0]!, /^SEARCH outbox USING (COVERING )?INDEX outbox_due \(state=\? AND next_attempt_at<\?\)/, plan.join(' | '));
  });

  test('the purge erases the codes of dead values from finished emails only', async () => {
    const value = raw.prepare(`insert into random_values (order_id, value_hash, recipient, adn, address_source, created_at, expires_at, revoked_at, spent_at)
      values (1, ?, 'a@example.com', 'example.com', 'constructed', ?, ?, ?, ?)`);
    const email = raw.prepare(`insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at, sealed_code)
      values (?, 1, ?, 'a@example.com', ?, 0, ?, ?, ?, 'sealed')`);
    const ids: Record<string, number> = {};
    for (const [name, expires, revoked, spent] of [['live', NOW + 1000, null, null], ['expired', NOW, null, null], ['revoked', NOW + 1000, NOW, null], ['spent', NOW + 1000, null, NOW]] as const) {
      ids[name] = Number(value.run(`hash-${name}`, NOW - 1000, expires, revoked, spent).lastInsertRowid);
    }
    for (const name of Object.keys(ids)) {
      for (const state of ['delivered', 'failed', 'pending', 'sending']) email.run(`<${name}-${state}@purge>`, ids[name], state, NOW, NOW, NOW);
    }
    const kept = () => (raw.prepare(`select message_id from outbox where sealed_code is not null and message_id like '%@purge>' order by message_id`).all() as { message_id: string }[]).map((r) => r.message_id);
    assert.equal(await purgeSealedCodes(store.db, NOW), 6);
    assert.deepEqual(kept(), [
      '<expired-pending@purge>', '<expired-sending@purge>', '<live-delivered@purge>', '<live-failed@purge>', '<live-pending@purge>', '<live-sending@purge>',
      '<revoked-pending@purge>', '<revoked-sending@purge>', '<spent-pending@purge>', '<spent-sending@purge>',
    ]);
    assert.equal(await purgeSealedCodes(store.db, NOW), 0, 'nothing left to erase');
  });

  test('and the statements still cancel only what they name', async () => {
    const pendingOf = (column: string, id: number) => (raw.prepare(`select count(*) as n from outbox where ${column} = ? and state = 'pending'`).get(id) as { n: number }).n;
    assert.equal(await cancelPendingOfValue.affected(store.db, { valueId: 1005, now: NOW, lastError: 'x' }), 1);
    assert.equal(await cancelPendingOfOrder.affected(store.db, { orderId: 1006, now: NOW, lastError: 'x' }), 1);
    assert.equal(pendingOf('random_value_id', 1005), 0);
    assert.equal(pendingOf('order_id', 1006), 0);
    // A cancelled email is not cancelled again, and the others wait on.
    assert.equal(await cancelPendingOfValue.affected(store.db, { valueId: 1005, now: NOW, lastError: 'x' }), 0);
    assert.equal((raw.prepare(`select count(*) as n from outbox where state = 'pending' and message_id like '%@dcvd>'`).get() as { n: number }).n, 1998);
  });
});

describe('cancelling waiting emails and erasing codes on PostgreSQL, statistics that predate the backlog', { skip: await postgresOrSkip() }, () => {
  const { store: storeOf } = postgresStoreFilledBy(['outbox'], async (run) => {
    const rows = (state: string, n: number, offset: number) =>
      `insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at)
       select '<' || (g + ${offset}) || '@plan>', g + ${offset}, g + ${offset}, 'admin@example.com', '${state}', 0, ${NOW} + g, ${NOW}, ${NOW} from generate_series(1, ${n}) g`;
    // Statistics of a quiet hour (everything delivered, no code kept), then a burst queued before the
    // next ANALYZE, each email keeping its sealed code until it is sent.
    await run(rows('delivered', 20_000, 0));
    await run(`analyze outbox`);
    await run(rows('pending', 100_000, 20_000));
    await run(`update outbox set sealed_code = 'sealed' where state = 'pending'`);
    // A value resent 2,000 times since (as identical resends at interval 0 do): every email keeps its code.
    await run(`insert into random_values (id, order_id, value_hash, recipient, adn, address_source, created_at, expires_at, order_domain_id)
      values (7, 7, 'plan', 'admin@example.com', 'example.com', 'constructed', ${NOW}, ${NOW + 86_400_000}, 7)`);
    await run(`insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at, sealed_code)
      select '<r' || g || '@plan>', 7, 7, 'admin@example.com', 'delivered', 1, ${NOW}, ${NOW}, ${NOW}, 'sealed' from generate_series(1, 2000) g`);
  });

  test('each is found by its value or order, never by the pending index or a scan of the outbox', async () => {
    const store = storeOf();
    for (const [c, generic] of cases(store).flatMap((c) => [[c, false], [c, true]] as const)) {
      const all = await explainPlan(store.db, c.sql, c.parameters, { generic });
      const summary = `${generic ? 'generic' : 'custom'} plan: ${describePlan(all)}`;
      assert.ok(!all.some((n) => n['Relation Name'] === 'outbox' && /Seq Scan/.test(n['Node Type'])), `${c.name}: no scan of the outbox: ${summary}`);
      assert.ok(!all.some((n) => n['Index Name'] === 'outbox_pending_due' || n['Index Name'] === 'outbox_due'), `${c.name}: not by the state: ${summary}`);
      const outbox = all.filter((n) => n['Relation Name'] === 'outbox' && n['Index Name'] !== undefined);
      assert.ok(outbox.length > 0 && outbox.every((n) => c.indexes.includes(n['Index Name']!) && n['Index Cond'] !== undefined), `${c.name}: by ${c.indexes.join(' or ')}, probed: ${summary}`);
    }
  });

  test("a resend's live value reads its newest sealed code as one index entry, not every email of the value sorted", async () => {
    const store = storeOf();
    const st = liveValue.statement(store.db, { domainId: 7 });
    for (const generic of [false, true]) {
      const all = await explainPlan(store.db, st.sql, st.parameters, { generic });
      const summary = `${generic ? 'generic' : 'custom'} plan: ${describePlan(all)}`;
      const outbox = all.filter((n) => n['Relation Name'] === 'outbox');
      // Backward on (value, id): the newest entry is the first read, no sort of the value's emails.
      assert.ok(outbox.length === 1 && outbox[0]!['Index Name'] === 'outbox_sealed' && outbox[0]!['Scan Direction'] === 'Backward', `the value's newest email that keeps a code: ${summary}`);
    }
    const rows = await liveValue.rows(store.db, { domainId: 7 });
    assert.equal(rows[0]?.sealed_code, 'sealed');
  });

  test("the outbox flow control's delivery lag is the due index's first row", async () => {
    const store = storeOf();
    const st = oldestDueEmail.statement(store.db, { now: NOW + 50_000 });
    for (const generic of [false, true]) {
      const all = await explainPlan(store.db, st.sql, st.parameters, { generic });
      const summary = `${generic ? 'generic' : 'custom'} plan: ${describePlan(all)}`;
      assert.ok(!all.some((n) => /Seq Scan|Sort/.test(n['Node Type'])), `no scan, no sort: ${summary}`);
      assert.ok(all.some((n) => n['Node Type'] === 'Limit') && all.some((n) => n['Index Name'] === 'outbox_pending_due' || n['Index Name'] === 'outbox_due'), `the first row of a due index: ${summary}`);
    }
  });
});

describe('the email cut-off\'s candidates on PostgreSQL, statistics from before the cut-off', { skip: await postgresOrSkip() }, () => {
  const { store: storeOf } = postgresStoreFilledBy(['orders', 'webhook_outbox'], async (run) => {
    await run(`insert into accounts (login, password_hash, webhook_url, created_at, updated_at) values ('plan', 'x', 'https://hooks.example/', ${NOW}, ${NOW})`);
    // Before the cut-off: 20,000 validated orders, no dcv.unusable event; analyzed.
    await run(`insert into orders (account_id, order_number, base_order_number, domain, dcv_method, dcv_status, created_at, updated_at)
      select (select id from accounts where login = 'plan'), g, g, 'example.com', 'email', 'validated', ${NOW}, ${NOW} from generate_series(1, 20000) g`);
    await run(`analyze orders`);
    await run(`analyze webhook_outbox`);
    // After it, before the next ANALYZE: the events of 16,000 of them queued.
    await run(`insert into webhook_outbox (event_id, order_id, event, url, body, state, attempts, next_attempt_at, created_at, updated_at)
      select 'u' || o.id, o.id, '${UNUSABLE_EVENT}', 'https://hooks.example/', '{}', 'pending', 0, ${NOW}, ${NOW}, ${NOW} from orders o order by o.id limit 16000`);
  });

  test('the events are probed by order, never read whole', async () => {
    const store = storeOf();
    for (const [withGlobalUrl, generic] of [[true, false], [true, true], [false, false], [false, true]] as const) {
      const { sql, parameters } = unusableCandidates(store.db, 'postgres', withGlobalUrl, 200).compile();
      const all = await explainPlan(store.db, sql, parameters, { generic });
      const summary = `${generic ? 'generic' : 'custom'} plan: ${describePlan(all)}`;
      assert.ok(!all.some((n) => n['Relation Name'] === 'webhook_outbox' && /Seq Scan/.test(n['Node Type'])), `no scan of the events: ${summary}`);
      assert.ok(!all.some((n) => n['Node Type'] === 'Materialize' || n['Node Type'] === 'Hash'), `no events gathered for a join: ${summary}`);
      assert.ok(all.some((n) => n['Index Name'] === 'webhook_outbox_order' && n['Index Cond'] !== undefined), `the events probed by order: ${summary}`);
    }
  });
});

describe("AutoApplyOrder's number draw and a resend's order on PostgreSQL, 20,000 orders with their domains analyzed", { skip: await postgresOrSkip() }, () => {
  const { store: storeOf } = postgresStoreFilledBy(['orders', 'order_domains'], async (run) => {
    await run(`insert into accounts (login, password_hash, created_at, updated_at) values ('draw', 'x', ${NOW}, ${NOW})`);
    await run(`insert into orders (account_id, order_number, base_order_number, domain, dcv_method, dcv_status, created_at, updated_at)
      select (select id from accounts where login = 'draw'), g, g, 'example.com', 'email', 'awaiting', ${NOW}, ${NOW} from generate_series(1, 20000) g`);
    await run(`insert into order_domains (order_id, position, domain, dcv_method, dcv_status, created_at, updated_at)
      select id, 1, domain, dcv_method, dcv_status, created_at, updated_at from orders`);
    await run(`analyze orders`);
    await run(`analyze order_domains`);
  });

  test('the draw probes the number and the chain indexes; the order reads its domains by its id', async () => {
    const store = storeOf();
    for (const generic of [false, true]) {
      const kind = generic ? 'generic' : 'custom';
      const draw = await explainPlan(store.db, ...sqlOf(numberTaken.statement(store.db, { n: 7 })), { generic });
      assert.ok(!draw.some((n) => /Seq Scan/.test(n['Node Type'])), `${kind} plan, no scan: ${describePlan(draw)}`);
      const probed = draw.filter((n) => n['Relation Name'] === 'orders' && n['Index Cond'] !== undefined).map((n) => n['Index Name']);
      assert.ok(probed.includes('orders_chain') && probed.includes('orders_certificate') && probed.some((i) => i !== 'orders_chain' && i !== 'orders_certificate'), `${kind} plan, the three indexes probed: ${describePlan(draw)}`);
      const order = await explainPlan(store.db, ...sqlOf(orderByNumberWithDomains.statement(store.db, { orderNumber: 7 })), { generic });
      assert.ok(!order.some((n) => /Seq Scan/.test(n['Node Type'])), `${kind} plan, no scan: ${describePlan(order)}`);
      const domains = order.filter((n) => n['Relation Name'] === 'order_domains');
      assert.ok(domains.length === 2 && domains.every((n) => /order_id/.test(n['Index Cond'] ?? '')), `${kind} plan, the domains by their order: ${describePlan(order)}`);
    }
  });
});

const sqlOf = (st: { sql: string; parameters: readonly unknown[] }) => [st.sql, st.parameters] as const;
