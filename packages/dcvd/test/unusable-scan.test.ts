/**
 * The minute's `dcv.unusable` scan after the email cut-off (src/webhooks/webhooks.ts UnusableWebhookScan):
 * skipped while nothing that could make a new candidate changed, scanned again when a validation's
 * evidence or an account's webhook URL changes, every hour all the same, and not skipped until the changes
 * stood still for 50 s (a validation committed late is still found). On SQLite and on PostgreSQL.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import type { Store } from '../src/store/database.ts';
import type { Database } from '../src/store/schema.ts';
import { ManualClock } from '../src/deps.ts';
import { AccountRepository } from '../src/accounts/repository.ts';
import { UNUSABLE_EVENT, UnusableWebhookScan } from '../src/webhooks/webhooks.ts';
import { postgresOrSkip, postgresTestStore, sqliteTestStore } from './support/database.ts';

const CUTOFF = Date.UTC(2027, 2, 10);
const NOW = CUTOFF + 3_600_000;
const MINUTE = 60_000;
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

let orderNumber = 1000;

/** An order already validated (its evidence written or not: `evidence`), as the confirmation leaves it. */
async function validatedOrder(db: Kysely<Database>, login: string, evidence: boolean): Promise<number> {
  const n = ++orderNumber;
  await sql`insert into orders (account_id, order_number, base_order_number, domain, dcv_method, dcv_status, dcv_decided_at, created_at, updated_at)
    select id, ${n}, ${n}, 'example.com', 'email', 'validated', ${NOW}, ${NOW}, ${NOW} from accounts where login = ${login}`.execute(db);
  const { id } = await db.selectFrom('orders').select('id').where('order_number', '=', n).executeTakeFirstOrThrow();
  if (evidence) await evidenceOf(db, Number(id), 'approved');
  return Number(id);
}

async function evidenceOf(db: Kysely<Database>, orderId: number, decision: 'approved' | 'declined'): Promise<void> {
  const value = await db
    .insertInto('random_values')
    .values({ order_id: orderId, value_hash: `scan-${orderId}-${decision}`, recipient: 'admin@example.com', adn: 'example.com', address_source: 'constructed', created_at: NOW, expires_at: NOW + MINUTE })
    .returning('id')
    .executeTakeFirstOrThrow();
  await db
    .insertInto('dcv_evidence')
    .values({
      order_id: orderId,
      random_value_id: value.id,
      decision,
      br_section: '3.2.2.4.4',
      br_version: '2.2.6',
      domain: 'example.com',
      adn: 'example.com',
      recipient: 'admin@example.com',
      address_source: 'constructed',
      dns_detail: null,
      value_hash: `scan-${orderId}-${decision}`,
      value_created_at: NOW,
      message_id: null,
      email_sent_at: null,
      decided_at: NOW,
      source_ip: '192.0.2.1',
      user_agent: null,
    })
    .execute();
}

const events = async (db: Kysely<Database>, orderId?: number) => {
  let q = db.selectFrom('webhook_outbox').select((eb) => eb.fn.countAll().as('n')).where('event', '=', UNUSABLE_EVENT);
  if (orderId !== undefined) q = q.where('order_id', '=', orderId);
  return Number((await q.executeTakeFirstOrThrow()).n);
};

function suite(name: string, open: () => Promise<Store | undefined>) {
  describe(name, () => {
    test('skipped while nothing changes; scanned when a validation, a webhook URL or the hour says so', async (t) => {
      const store = await open();
      if (!store) return t.skip('no PostgreSQL');
      const { db } = store;
      const accounts = new AccountRepository(db, new ManualClock(NOW));
      await accounts.create('hooked', { password: 'scan password 1234', webhookUrl: 'https://hooks.example/a' });
      await accounts.create('plain', { password: 'scan password 1234' });
      const first = [await validatedOrder(db, 'hooked', true), await validatedOrder(db, 'hooked', true)];
      const plain = await validatedOrder(db, 'plain', true);
      let clock = 0;
      // No global URL: only accounts with their own URL get events.
      const scan = new UnusableWebhookScan(db, store.dialect, {}, { blocklist: [], cutoff: CUTOFF }, { monotonic: () => clock });

      /** Two minutes of runs that find nothing: the first sees the events just queued (a change), the second goes quiet. */
      const quiet = async () => {
        for (let i = 0; i < 2; i++) {
          clock += MINUTE;
          assert.equal(await scan.run(NOW), 0);
        }
      };

      assert.equal(await scan.run(CUTOFF - 1), 0, 'nothing before the cut-off');
      assert.equal(await events(db), 0);
      assert.equal(await scan.run(NOW), 2, 'the hooked account’s validated orders');
      for (const id of first) assert.equal(await events(db, id), 1);

      // Quiet: the next runs are skipped. An order validated with no evidence (no path of dcvd's does that)
      // stands for what the changes cannot show.
      await quiet();
      const unseen = await validatedOrder(db, 'hooked', false);
      clock += MINUTE;
      assert.equal(await scan.run(NOW), 0, 'skipped: nothing the changes show moved');
      assert.equal(await events(db, unseen), 0);
      // The hourly scan all the same.
      clock += 3_600_000;
      assert.equal(await scan.run(NOW), 1, 'the hourly scan finds it');
      assert.equal(await events(db, unseen), 1);

      // An account's URL set: its validated orders are scanned at the next run.
      await quiet();
      await accounts.update('plain', { webhookUrl: 'https://hooks.example/b' });
      clock += MINUTE;
      assert.equal(await scan.run(NOW), 1, 'the account’s URL was set');
      assert.equal(await events(db, plain), 1);

      // A validation (its evidence): scanned at the next run.
      await quiet();
      const late = await validatedOrder(db, 'hooked', true);
      clock += MINUTE;
      assert.equal(await scan.run(NOW), 1, 'a new validation');
      assert.equal(await events(db, late), 1);

      // Events lost (a restored database, a replica behind): the events' largest id went down.
      await quiet();
      await db.deleteFrom('webhook_outbox').where('order_id', '=', late).execute();
      clock += MINUTE;
      assert.equal(await scan.run(NOW), 1, 'the lost event queued again');
      assert.equal(await events(db, late), 1);
    });

    test('two runs at once queue each event once (a run while another is going returns at once; without that, the per-order check holds it)', async (t) => {
      const store = await open();
      if (!store) return t.skip('no PostgreSQL');
      const { db } = store;
      await new AccountRepository(db, new ManualClock(NOW)).create('hooked', { password: 'scan password 1234', webhookUrl: 'https://hooks.example/a' });
      const orders = [await validatedOrder(db, 'hooked', true), await validatedOrder(db, 'hooked', true)];
      const scan = new UnusableWebhookScan(db, store.dialect, {}, { blocklist: [], cutoff: CUTOFF });
      assert.deepEqual(await Promise.all([scan.run(NOW), scan.run(NOW)]), [2, 0]);
      for (const id of orders) assert.equal(await events(db, id), 1);
      // And the next one runs again.
      await validatedOrder(db, 'hooked', true);
      assert.equal(await scan.run(NOW), 1);
    });

    test('not skipped until the changes stood still for 50 s: a validation that shows up late is found', async (t) => {
      const store = await open();
      if (!store) return t.skip('no PostgreSQL');
      const { db } = store;
      const accounts = new AccountRepository(db, new ManualClock(NOW));
      await accounts.create('hooked', { password: 'scan password 1234', webhookUrl: 'https://hooks.example/a' });
      await validatedOrder(db, 'hooked', true);
      let clock = 0;
      const scan = new UnusableWebhookScan(db, store.dialect, {}, { blocklist: [], cutoff: CUTOFF }, { monotonic: () => clock });
      assert.equal(await scan.run(NOW), 1);
      clock = MINUTE;
      assert.equal(await scan.run(NOW), 0, 'the event just queued is a change');
      clock = 2 * MINUTE;
      assert.equal(await scan.run(NOW), 0, 'quiet');
      // Another validation's evidence is seen (a larger id), then, within the minute, an order whose own
      // validation committed later with a smaller id (PostgreSQL), or just before the cut-off on an
      // instance whose clock is behind: the changes no longer move, but the scans go on until they stood still.
      const declined = await validatedOrder(db, 'hooked', false);
      await db.updateTable('orders').set({ dcv_status: 'declined' }).where('id', '=', declined).execute();
      await evidenceOf(db, declined, 'declined');
      clock = 3 * MINUTE;
      assert.equal(await scan.run(NOW), 0, 'the change is seen; nothing to queue yet');
      const committedLate = await validatedOrder(db, 'hooked', false);
      clock = 3 * MINUTE + 30_000;
      assert.equal(await scan.run(NOW), 1, 'scanned again within the minute after the change');
      assert.equal(await events(db, committedLate), 1);
    });
  });
}

suite('SQLite', async () => (await sqliteTestStore(cleanups, 'dcvd-unusable-scan-')).store);
suite('PostgreSQL', async () => ((await postgresOrSkip()) ? undefined : (await postgresTestStore(cleanups)).store));
