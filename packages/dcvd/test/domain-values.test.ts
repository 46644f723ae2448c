/**
 * The values of one domain of an order (src/orders/random-values.ts `valuesOfDomain`): its own and the
 * shared ones that list it (BR 3.2.2.4.4, one email for several domains). What a resend may reuse
 * (`reusableValue`: the newest live value, its shared domains and its sealed code, read in one statement)
 * and what a new value supersedes (`revokeValuesOfDomain`), on SQLite and, where one answers, PostgreSQL.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore, type Store } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { AccountRepository } from '../src/accounts/repository.ts';
import { OrderRepository, type OrderDomainRow } from '../src/orders/orders.ts';
import { queueDcvEmail, reusableValue, type DcvEmailSettings } from '../src/orders/dcv-email.ts';
import { deriveKeys, revokeValuesOfDomain } from '../src/orders/random-values.ts';
import { cryptoRandom, type Clock } from '../src/deps.ts';
import { createPostgresSchema, postgresOrSkip } from './support/database.ts';

const NOW = Date.UTC(2026, 11, 1);
const clock: Clock = { now: () => NOW };
const settings: DcvEmailSettings = { keys: deriveKeys(Buffer.alloc(32, 3)), random: cryptoRandom, randomValueTtlMs: 86_400_000, resendIntervalMs: 0 };
const admin = { address: 'admin@example.com', adn: 'example.com', source: 'constructed', dnsDetail: null };
const hostmaster = { address: 'hostmaster@example.com', adn: 'example.com', source: 'constructed', dnsDetail: null };

async function exercise(store: Store): Promise<void> {
  const { db } = store;
  await migrateToLatest(db, store.dialect);
  await new AccountRepository(db, clock).create('values', { password: 'values password 1234', permissions: [] });
  const account = await db.selectFrom('accounts').select('id').where('login', '=', 'values').executeTakeFirstOrThrow();
  const orders = new OrderRepository(db, clock, cryptoRandom);
  const order = await orders.create({ accountId: account.id, domain: 'a.example.com', orderNumber: 1001, dcvMethod: 'email' });
  const other = await orders.create({ accountId: account.id, domain: 'c.example.com', orderNumber: 1002, dcvMethod: 'email' });
  // A second domain of the first order (position 2), like a multi-domain order's.
  const first = await db.selectFrom('order_domains').selectAll().where('order_id', '=', order.id).executeTakeFirstOrThrow();
  const { id: _id, ...copy } = first;
  await db.insertInto('order_domains').values({ ...copy, position: 2, domain: 'b.example.com' }).execute();
  const [a, b] = (await db.selectFrom('order_domains').selectAll().where('order_id', '=', order.id).orderBy('position').execute()) as [OrderDomainRow, OrderDomainRow];
  const c = await db.selectFrom('order_domains').selectAll().where('order_id', '=', other.id).executeTakeFirstOrThrow();

  // One email for both domains: a value of a's own that lists b too.
  const shared = await queueDcvEmail(db, settings, { order, domain: a, alsoCovers: [b], recipient: admin, templateRef: null, now: NOW });
  assert.ok(shared.queued && !shared.reusedValue);
  const elsewhere = await queueDcvEmail(db, settings, { order: other, domain: c, recipient: admin, templateRef: null, now: NOW });
  assert.ok(elsewhere.queued);

  // Reusable only for the same recipient, content and domains (from either domain's side); with the sealed code its email kept.
  const sealedOf = async (valueId: number) => (await db.selectFrom('outbox').select('sealed_code').where('random_value_id', '=', valueId).executeTakeFirstOrThrow()).sealed_code;
  const reuse = await reusableValue(db, order.id, admin, null, NOW, a.id, [b]);
  assert.deepEqual(reuse, { valueId: shared.randomValueId, sealed: await sealedOf(shared.randomValueId) });
  assert.equal((await reusableValue(db, order.id, admin, null, NOW, b.id, [a]))?.valueId, shared.randomValueId);
  assert.equal(await reusableValue(db, order.id, admin, null, NOW, a.id), undefined, 'it lists b as well: not a resend of a alone');
  assert.equal(await reusableValue(db, order.id, admin, null, NOW, b.id), undefined);
  assert.equal(await reusableValue(db, order.id, hostmaster, null, NOW, a.id, [b]), undefined, 'another recipient');
  assert.equal(await reusableValue(db, order.id, admin, null, NOW + 86_400_000, a.id, [b]), undefined, 'expired');
  // A one-domain value: its own domain only; the default (no domain given) is the order's first domain.
  assert.equal((await reusableValue(db, other.id, admin, null, NOW))?.valueId, elsewhere.randomValueId);
  assert.equal((await reusableValue(db, other.id, admin, null, NOW, c.id))?.sealed, await sealedOf(elsewhere.randomValueId));

  // A resend of the same email reuses the value and its code; the reuse is read inside the queueing transaction.
  const again = await queueDcvEmail(db, settings, { order, domain: a, alsoCovers: [b], recipient: admin, templateRef: null, now: NOW });
  assert.ok(again.queued && again.reusedValue && again.randomValueId === shared.randomValueId);

  // A new value for b alone supersedes the shared one (it lists b), for a as well; emails waiting with it are not sent.
  const own = await queueDcvEmail(db, settings, { order, domain: b, recipient: hostmaster, templateRef: null, now: NOW + 1 });
  assert.ok(own.queued && !own.reusedValue);
  const value = (id: number) => db.selectFrom('random_values').select(['revoked_at', 'revoked_reason']).where('id', '=', id).executeTakeFirstOrThrow();
  assert.deepEqual(await value(shared.randomValueId), { revoked_at: NOW + 1, revoked_reason: 'superseded' });
  const emails = await db.selectFrom('outbox').select(['state', 'sealed_code', 'last_error']).where('random_value_id', '=', shared.randomValueId).execute();
  assert.equal(emails.length, 2);
  for (const e of emails) assert.deepEqual(e, { state: 'cancelled', sealed_code: null, last_error: 'superseded by a newer DCV email' });
  assert.equal(await reusableValue(db, order.id, admin, null, NOW + 1, a.id, [b]), undefined);
  assert.equal((await reusableValue(db, order.id, hostmaster, null, NOW + 1, b.id))?.valueId, own.randomValueId);
  // The other order's value is untouched.
  assert.deepEqual(await value(elsewhere.randomValueId), { revoked_at: null, revoked_reason: null });

  // A domain leaving email DCV: its values stop working, a sent email loses its sealed copy, one in flight keeps it.
  await db.updateTable('outbox').set({ state: 'delivered' }).where('random_value_id', '=', own.randomValueId).execute();
  await revokeValuesOfDomain(db, b.id, 'method-changed', NOW + 2);
  assert.deepEqual(await value(own.randomValueId), { revoked_at: NOW + 2, revoked_reason: 'method-changed' });
  assert.deepEqual(await db.selectFrom('outbox').select(['state', 'sealed_code']).where('random_value_id', '=', own.randomValueId).execute(), [{ state: 'delivered', sealed_code: null }]);
  await db.updateTable('outbox').set({ state: 'sending' }).where('random_value_id', '=', elsewhere.randomValueId).execute();
  await revokeValuesOfDomain(db, c.id, 'method-changed', NOW + 3);
  assert.notEqual(await sealedOf(elsewhere.randomValueId), null, 'an email in flight keeps its code until it ends');
  assert.equal((await value(elsewhere.randomValueId)).revoked_reason, 'method-changed');
  // An earlier revocation is not overwritten.
  assert.deepEqual(await value(shared.randomValueId), { revoked_at: NOW + 1, revoked_reason: 'superseded' });
}

const noPostgres = await postgresOrSkip();

describe('the values of a domain', () => {
  test('SQLite', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dcvd-values-'));
    const store = openStore({ dataDir: dir });
    try {
      await exercise(store);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('PostgreSQL', { skip: noPostgres }, async () => {
    const schema = await createPostgresSchema();
    const store = openStore({ dataDir: '', databaseUrl: schema.url });
    try {
      await exercise(store);
    } finally {
      await store.close();
      await schema.drop();
    }
  });
});
