/**
 * WAL checkpoints in a worker thread (src/store/checkpointer.ts), on a real
 * SQLite file: commits of the main connection no longer checkpoint by
 * themselves, the worker moves the WAL into the database file, and a store
 * opened without it keeps SQLite's own behaviour.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import { openStore } from '../src/store/database.ts';
import { migrateToLatest } from '../src/store/migrations.ts';
import { FALLBACK_AUTOCHECKPOINT_PAGES, startCheckpointer, type CheckpointResult } from '../src/store/checkpointer.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'dcvd-checkpoint-'));
  dirs.push(d);
  return d;
}

/** Enough rows that SQLite's default automatic checkpoint (1,000 pages) would have run several times. */
async function writeMany(db: ReturnType<typeof openStore>['db']): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    await db
      .insertInto('ip_failures')
      .values({ ip: `10.0.${Math.floor(i / 250)}.${i % 250}-${'x'.repeat(1200)}`, failures: 1, window_start: i, blocked_until: null })
      .execute();
  }
}

describe('background WAL checkpoints', () => {
  test('the server store raises the automatic checkpoint and a worker thread moves the WAL into the database', async () => {
    const dir = tempDir();
    const errors: string[] = [];
    const store = openStore({ dataDir: dir, backgroundCheckpoints: { intervalMs: 50, onError: (m) => errors.push(m) } });
    await migrateToLatest(store.db, store.dialect);
    const [auto] = (await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(store.db)).rows;
    assert.equal(auto?.wal_autocheckpoint, FALLBACK_AUTOCHECKPOINT_PAGES);

    const before = statSync(join(dir, 'dcvd.sqlite')).size;
    await writeMany(store.db);
    // Give the worker a few rounds, then the rows must be in the database file itself.
    await sleep(400);
    const after = statSync(join(dir, 'dcvd.sqlite')).size;
    assert.ok(after > before + 3000 * 1200, `database file grew from ${before} to ${after} bytes`);
    assert.deepEqual(errors, []);
    await store.close();

    // Everything is there after a reopen.
    const check = new SQLite(join(dir, 'dcvd.sqlite'), { readonly: true });
    assert.equal((check.prepare('select count(*) as n from ip_failures').get() as { n: number }).n, 3000);
    check.close();
  });

  test('the worker reports each checkpoint; stop runs a last one', async () => {
    const dir = tempDir();
    const file = join(dir, 'db.sqlite');
    const main = new SQLite(file);
    main.pragma('journal_mode = WAL');
    main.pragma('wal_autocheckpoint = 0');
    main.exec('create table t (v text)');
    const results: CheckpointResult[] = [];
    const worker = startCheckpointer(file, { intervalMs: 60_000, onResult: (r) => results.push(r) });
    const insert = main.prepare('insert into t values (?)');
    for (let i = 0; i < 500; i++) insert.run('y'.repeat(2000));
    // Nothing checkpointed the WAL yet (automatic checkpoints are off, the interval is long).
    assert.ok(statSync(`${file}-wal`).size > 500 * 2000);
    await worker.stop();
    const last = results.at(-1);
    assert.ok(last, 'a result for the last checkpoint');
    assert.ok(last.log > 0);
    assert.equal(last.checkpointed, last.log, 'the whole WAL is in the database file');
    assert.ok(statSync(file).size > 500 * 2000);
    main.close();
  });

  test('a CLI-style store (no option) leaves SQLite checkpointing by itself', async () => {
    const store = openStore({ dataDir: tempDir() });
    const [auto] = (await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(store.db)).rows;
    assert.equal(auto?.wal_autocheckpoint, 1000);
    await store.close();
  });
});
