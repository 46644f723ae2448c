/**
 * Migration 0011_shared_dcv_email on a database that already has evidence
 * (SQLite: the evidence table is rebuilt; PostgreSQL: its UNIQUE is dropped):
 * rows and ids kept, new rows numbered after them, one evidence row per
 * domain of a value allowed, the same domain twice for a value refused.
 */
import assert from 'node:assert/strict';
import type { Kysely } from 'kysely';
import type { Store } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { describeMigration } from './support/database.ts';

async function exercise(store: Store, migrateTo: (name: string) => Promise<void>): Promise<void> {
  const db = store.db as unknown as Kysely<any>;
  await migrateTo('0010_mpic_evidence');

  const now = 1_767_000_000_000;
  const account = await db.insertInto('accounts').values({ login: 'old', password_hash: 'x', created_at: now, updated_at: now }).returning('id').executeTakeFirstOrThrow();
  const order = await db
    .insertInto('orders')
    .values({ account_id: account.id, order_number: 77, base_order_number: 77, domain: 'a.example.com', dcv_method: 'email', dcv_status: 'validated', created_at: now, updated_at: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  const domain = await db
    .insertInto('order_domains')
    .values({ order_id: order.id, position: 1, domain: 'a.example.com', dcv_method: 'email', dcv_status: 'validated', created_at: now, updated_at: now })
    .returning('id')
    .executeTakeFirstOrThrow();
  const value = await db
    .insertInto('random_values')
    .values({ order_id: order.id, value_hash: 'h'.repeat(64), recipient: 'admin@example.com', adn: 'example.com', address_source: 'constructed', created_at: now, expires_at: now + 1, order_domain_id: domain.id })
    .returning('id')
    .executeTakeFirstOrThrow();
  const evidence = (domainName: string) => ({
    order_id: order.id, random_value_id: value.id, decision: 'approved', br_section: '3.2.2.4.4', br_version: '2.2.6', domain: domainName, adn: 'example.com',
    recipient: 'admin@example.com', address_source: 'constructed', value_hash: 'h'.repeat(64), value_created_at: now, decided_at: now, source_ip: '192.0.2.1',
  });
  const old = await db.insertInto('dcv_evidence').values(evidence('a.example.com')).returning('id').executeTakeFirstOrThrow();
  // Before 0011: one row per value.
  await assert.rejects(db.insertInto('dcv_evidence').values(evidence('b.example.com')).execute());

  await migrateToLatest(db, store.dialect);
  const kept = await db.selectFrom('dcv_evidence').selectAll().execute();
  assert.equal(kept.length, 1);
  assert.equal(Number(kept[0]!.id), Number(old.id));
  assert.equal(kept[0]!.domain, 'a.example.com');
  assert.equal(kept[0]!.source_ip, '192.0.2.1');
  // After: a row per domain of the value, numbered after the kept one; the same domain twice refused.
  const second = await db.insertInto('dcv_evidence').values(evidence('b.example.com')).returning('id').executeTakeFirstOrThrow();
  assert.ok(Number(second.id) > Number(old.id));
  await assert.rejects(db.insertInto('dcv_evidence').values(evidence('b.example.com')).execute());
  // The evidence still goes with its order.
  await db.deleteFrom('orders').where('id', '=', order.id).execute();
  assert.equal((await db.selectFrom('dcv_evidence').selectAll().execute()).length, 0);
}

await describeMigration('migration 0011_shared_dcv_email on a database with evidence', exercise);
