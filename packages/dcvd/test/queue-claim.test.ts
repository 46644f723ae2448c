/**
 * The leased queue's claims on SQLite (issue 20): a claim finds the rows it
 * updates by primary key, not by walking the backlog's (state, …) index range
 * (that made every claim cost more as the backlog grew); and a drained
 * backlog is delivered once per row with never more rows held than the
 * concurrency.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { systemClock } from '../src/deps.ts';
import { createLogger } from '../src/log.ts';
import { openStore } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import type { Database } from '../src/store/schema.ts';
import { DEFAULT_OUTBOX_POLICY, LeasedQueueWorker, type QueueColumns } from '../src/queue/leased.ts';

const dir = mkdtempSync(join(tmpdir(), 'dcvd-queue-claim-'));
after(() => rmSync(dir, { recursive: true, force: true }));

class Recorder extends LeasedQueueWorker<QueueColumns> {
  readonly delivered: number[] = [];
  held = 0;
  mostHeld = 0;
  protected async deliver(row: QueueColumns): Promise<void> {
    this.mostHeld = Math.max(this.mostHeld, ++this.held);
    this.delivered.push(row.id);
    await new Promise((r) => setImmediate(r));
    await this.finish(row, { state: 'delivered' });
    this.held--;
  }
}

test('on SQLite a claim updates its rows by primary key, and a backlog drains once per row', async () => {
  const store = openStore({ dataDir: dir });
  await migrateToLatest(store.db, 'sqlite');
  await store.close();
  const file = join(dir, 'dcvd.sqlite');
  const raw = new SQLite(file);
  raw.pragma('foreign_keys = OFF'); // rows without orders: only the queue's columns matter here
  const now = Date.now();
  const insert = raw.prepare(`insert into outbox (message_id, order_id, random_value_id, recipient, state, attempts, next_attempt_at, created_at, updated_at)
    values (?, 1, 1, 'a@example.com', 'pending', 0, ?, ?, ?)`);
  raw.transaction(() => {
    for (let i = 0; i < 2000; i++) insert.run(`<m${i}@dcvd>`, now - 2000 + i, now, now);
  })();

  const statements = new Set<string>();
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: new SQLite(file) }),
    log: (event) => void statements.add(event.query.sql),
  });
  const policy = { ...DEFAULT_OUTBOX_POLICY, concurrency: 8, pollMs: 50 };
  const worker = new Recorder({ db, dialect: 'sqlite', clock: systemClock, policy, log: createLogger('silent'), table: 'outbox', what: 'emails', noun: 'email' });
  worker.start();
  const deadline = Date.now() + 60_000;
  while (worker.delivered.length < 2000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await worker.stop();
  await db.destroy();

  assert.equal(worker.delivered.length, 2000);
  assert.equal(new Set(worker.delivered).size, 2000, 'a row was delivered twice');
  assert.ok(worker.mostHeld <= 8, `held ${worker.mostHeld} rows at once with concurrency 8`);
  assert.equal((raw.prepare(`select count(*) as n from outbox where state = 'delivered' and claim_token is null`).get() as { n: number }).n, 2000);

  const claims = [...statements].filter((s) => s.startsWith('update "outbox"') && s.includes('where "id" in (select'));
  assert.equal(claims.length, 2, 'the pending claim and the expired-lease claim');
  for (const claim of claims) {
    const plan = raw.prepare(`explain query plan ${claim}`).all(...Array.from({ length: (claim.match(/\?/g) ?? []).length }, () => 1)) as { detail: string }[];
    const outer = plan[0]!.detail;
    assert.match(outer, /INTEGER PRIMARY KEY/, `the claim walks an index instead: ${plan.map((p) => p.detail).join(' | ')}`);
  }
  raw.close();
});
