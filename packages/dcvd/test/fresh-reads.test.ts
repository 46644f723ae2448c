/**
 * Concurrent identical reads sharing one statement (src/store/fresh-reads.ts, issue 20): never an
 * answer from a statement that started before the call; and on a real PostgreSQL schema, a burst of
 * remembered-credential authentications of one login and source runs two statements, not one each,
 * and still meets a lock committed before it.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { KyselyPlugin } from 'kysely';
import { FreshReads } from '../src/store/fresh-reads.ts';
import { Authenticator } from '../src/accounts/auth.ts';
import { AccountRepository } from '../src/accounts/repository.ts';
import { systemClock } from '../src/deps.ts';
import { postgresOrSkip, postgresTestStore } from './support/database.ts';

/** A statement the test ends by hand: `started` counts the ones run, `end(i, value)` answers the i-th. */
function statements<T>() {
  const pending: { resolve: (v: T) => void; reject: (e: unknown) => void }[] = [];
  return {
    run: () => new Promise<T>((resolve, reject) => pending.push({ resolve, reject })),
    get started() {
      return pending.length;
    },
    end: (i: number, value: T) => pending[i]!.resolve(value),
    fail: (i: number, err: unknown) => pending[i]!.reject(err),
  };
}

const settled = () => new Promise((r) => setImmediate(r));

describe('FreshReads', () => {
  test('reads asked while one runs share the next statement, which starts only when the running one ends', async () => {
    const reads = new FreshReads<string>();
    const s = statements<string>();
    const first = reads.read('k', s.run);
    const later = [reads.read('k', s.run), reads.read('k', s.run), reads.read('k', s.run)];
    assert.equal(s.started, 1, 'the later reads do not start a statement of their own');
    s.end(0, 'before');
    assert.equal(await first, 'before');
    await settled();
    assert.equal(s.started, 2, 'the next statement starts when the first ends');
    // Asked while the second runs: a third statement, not the second's answer.
    const last = reads.read('k', s.run);
    s.end(1, 'after');
    assert.deepEqual(await Promise.all(later), ['after', 'after', 'after'], 'none got the answer of the statement running when it asked');
    await settled();
    assert.equal(s.started, 3);
    s.end(2, 'latest');
    assert.equal(await last, 'latest');
    await settled();
    assert.equal(reads.inFlight, 0, 'nothing kept once no read runs');
  });

  test('another key runs its own statement; a read after all ended starts anew', async () => {
    const reads = new FreshReads<number>();
    const s = statements<number>();
    const a = reads.read('a', s.run);
    const b = reads.read('b', s.run);
    assert.equal(s.started, 2);
    s.end(0, 1);
    s.end(1, 2);
    assert.deepEqual(await Promise.all([a, b]), [1, 2]);
    await settled();
    const again = reads.read('a', s.run);
    assert.equal(s.started, 3);
    s.end(2, 3);
    assert.equal(await again, 3);
  });

  test('a failed statement fails the reads that shared it, not the next ones; a statement that throws at once too', async () => {
    const reads = new FreshReads<string>();
    const s = statements<string>();
    const first = reads.read('k', s.run);
    const shared = [reads.read('k', s.run), reads.read('k', s.run)];
    s.fail(0, new Error('first failed'));
    await assert.rejects(first, /first failed/);
    await settled();
    const next = reads.read('k', s.run);
    s.fail(1, new Error('second failed'));
    for (const p of shared) await assert.rejects(p, /second failed/);
    await settled();
    s.end(2, 'fine');
    assert.equal(await next, 'fine');
    await settled();
    assert.equal(reads.inFlight, 0);

    const throwing = () => {
      throw new Error('at once');
    };
    await assert.rejects(reads.read('t', throwing), /at once/);
    await settled();
    assert.equal(reads.inFlight, 0);
    assert.equal(await reads.read('t', async () => 'then'), 'then');
  });
});

test('a statement running longer than staleAfterMs no longer holds up its key: the next read starts its own, and those waiting take its answer', async () => {
  const clock = { t: 0 };
  const reads = new FreshReads<string>({ staleAfterMs: 6000, now: () => clock.t });
  const s = statements<string>();
  const stuck = reads.read('k', s.run);
  const waiting = reads.read('k', s.run);
  clock.t = 6000;
  const stillWaiting = reads.read('k', s.run);
  assert.equal(s.started, 1, 'not stale yet at the bound');
  clock.t = 6001;
  const fresh = reads.read('k', s.run);
  assert.equal(s.started, 2, 'past the bound a read starts its own statement');
  const joined = reads.read('k', s.run);
  assert.equal(s.started, 2, 'and later reads wait behind that one');
  s.end(1, 'fresh');
  assert.equal(await fresh, 'fresh');
  assert.deepEqual(await Promise.all([waiting, stillWaiting]), ['fresh', 'fresh'], 'those behind the stuck one took the answer of a statement started after they asked');
  await settled();
  assert.equal(s.started, 3, 'the read asked while it ran gets the next statement');
  // The stuck statement ends late: its caller gets it, and it does not disturb the key's newer statement.
  s.end(0, 'late');
  assert.equal(await stuck, 'late');
  await settled();
  assert.equal(reads.inFlight, 1);
  s.end(2, 'latest');
  assert.equal(await joined, 'latest');
  await settled();
  assert.equal(reads.inFlight, 0);
});

const noPostgres = await postgresOrSkip();

describe('remembered credentials on PostgreSQL', { skip: noPostgres }, () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  test('a burst of one login and source runs two statements, and meets a lock committed before it', async () => {
    const { store } = await postgresTestStore(cleanups);
    // Counts every statement run through it (a plugin sees each result, precompiled statements' too).
    let statementsRun = 0;
    const counting: KyselyPlugin = {
      transformQuery: (args) => args.node,
      transformResult: async (args) => {
        statementsRun++;
        return args.result;
      },
    };
    const db = store.db.withPlugin(counting);
    const password = 'correct horse battery staple 1';
    await new AccountRepository(db, systemClock).create('alice', { password, permissions: ['auto-apply'] });
    const auth = new Authenticator(db, systemClock);
    assert.equal((await auth.authenticate('alice', password, '192.0.2.1')).ok, true, 'verified and remembered');

    statementsRun = 0;
    const burst = await Promise.all(Array.from({ length: 64 }, () => auth.authenticate('alice', password, '192.0.2.1')));
    assert.ok(burst.every((r) => r.ok));
    assert.equal(statementsRun, 2, 'the first call\u2019s statement, and one for the 63 asked while it ran');

    await db.updateTable('accounts').set({ locked: 1 }).where('login', '=', 'alice').execute();
    const locked = await Promise.all(Array.from({ length: 16 }, () => auth.authenticate('alice', password, '192.0.2.1')));
    assert.deepEqual(new Set(locked.map((r) => (r.ok ? 'ok' : r.reason))), new Set(['locked']));
    // Another source is another statement.
    statementsRun = 0;
    await Promise.all([auth.authenticate('alice', password, '192.0.2.1'), auth.authenticate('alice', password, '198.51.100.7')]);
    assert.equal(statementsRun, 2);
  });
});
