/**
 * Migration 0016_orders_certificate_unique on a database where orders share certificate ids (placed before
 * AutoApplyOrder checked its draws): within an account the newest order of each shared id keeps it, the older get
 * new ids that no order has as its number, chain or certificate id; two accounts' orders sharing one both keep it
 * (CollectSSL looks an id up within the caller's account); orders without an id keep none; an account's shared id
 * is refused from then on. SQLite and PostgreSQL.
 */
import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import { isUniqueViolation, type Store } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { describeMigration } from './support/database.ts';

async function exercise(store: Store, migrateTo: (name: string) => Promise<void>): Promise<void> {
  const db = store.db as unknown as Kysely<any>;
  await migrateTo('0015_outbox_sealed_by_id');

  const now = 1_767_000_000_000;
  const account = await db.insertInto('accounts').values({ login: 'old', password_hash: 'x', created_at: now, updated_at: now }).returning('id').executeTakeFirstOrThrow();
  const other = await db.insertInto('accounts').values({ login: 'other', password_hash: 'x', created_at: now, updated_at: now }).returning('id').executeTakeFirstOrThrow();
  const place = async (orderNumber: number, certificateId: number | null, owner: { id: number } = account) =>
    Number(
      (
        await db
          .insertInto('orders')
          .values({
            account_id: owner.id, order_number: orderNumber, base_order_number: orderNumber, domain: `o${orderNumber}.example.com`,
            dcv_method: 'email', dcv_status: 'awaiting', created_at: now, updated_at: now, certificate_id: certificateId,
          })
          .returning('id')
          .executeTakeFirstOrThrow()
      ).id,
    );
  // Three orders share 55555555, two share 66666666 (the older of them first), one has its own, two have none.
  const a1 = await place(11111111, 55555555);
  const b1 = await place(11111112, 66666666);
  const a2 = await place(11111113, 55555555);
  const own = await place(11111114, 77777777);
  const none1 = await place(11111115, null);
  const b2 = await place(11111116, 66666666);
  const a3 = await place(11111117, 55555555);
  const none2 = await place(11111118, null);
  // Another account's order with the first account's ids: each account finds its own, so it keeps its id, and so
  // does the newest of the first account's.
  const otherOwn = await place(11111121, 77777777, other);
  const otherShared = await place(11111122, 55555555, other);

  await migrateToLatest(db, store.dialect);

  const ids = new Map(
    (await db.selectFrom('orders').select(['id', 'certificate_id']).execute()).map((r: { id: number; certificate_id: number | null }) => [
      Number(r.id),
      r.certificate_id === null ? null : Number(r.certificate_id),
    ]),
  );
  // The newest of each shared id keeps it, as CollectSSL answered it; the others keep theirs (or none).
  assert.equal(ids.get(a3), 55555555);
  assert.equal(ids.get(b2), 66666666);
  assert.equal(ids.get(own), 77777777);
  assert.equal(ids.get(none1), null);
  assert.equal(ids.get(none2), null);
  assert.equal(ids.get(otherOwn), 77777777);
  assert.equal(ids.get(otherShared), 55555555);
  // The older ones: new 8-digit ids, all different, none an order's number or another's certificate id.
  const renumbered = [a1, a2, b1].map((id) => ids.get(id)!);
  const numbers = new Set([11111111, 11111112, 11111113, 11111114, 11111115, 11111116, 11111117, 11111118, 11111121, 11111122, 55555555, 66666666, 77777777]);
  for (const n of renumbered) {
    assert.ok(Number.isSafeInteger(n) && n >= 10_000_000 && n < 100_000_000, String(n));
    assert.ok(!numbers.has(n), `${n} was already taken`);
  }
  assert.equal(new Set(renumbered).size, 3);

  // From now on an account's shared id is refused; orders without one are still many.
  await assert.rejects(place(11111119, 77777777), (err) => isUniqueViolation(err));
  await assert.rejects(place(11111123, 77777777, other), (err) => isUniqueViolation(err));
  await place(11111120, null);
  // CollectSSL's lookup still reads the index (the partial unique one, by its old name).
  if (store.dialect === 'sqlite') {
    const plan = (await sql<{ detail: string }>`explain query plan select id from orders where certificate_id = ${55555555} and account_id = ${account.id}`.execute(db)).rows.map((r) => r.detail);
    assert.ok(plan.some((d) => d.includes('INDEX orders_certificate')), plan.join(' | '));
  }
}

await describeMigration('migration 0016_orders_certificate_unique on orders sharing certificate ids', exercise);
