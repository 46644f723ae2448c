/**
 * Issue 14 item 4: approve racing a resend. Approve used to lock
 * random_values then orders, a resend orders then random_values: on
 * PostgreSQL the two deadlocked (HTTP 500 on the page, -14 on the API). Now
 * every transaction that touches an order locks its `orders` row first
 * (store/database.ts documents the order) and a transaction that still fails
 * with 40001/40P01 is retried. Runs on SQLite and PostgreSQL.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, cryptoRandom } from '../src/deps.ts';
import { ConfirmationService, DEFAULT_CODE_GUESS_POLICY } from '../src/orders/confirmation.ts';
import { queueDcvEmail, type DcvEmailSettings } from '../src/orders/dcv-email.ts';
import { loadValueKeys, openSealedCode } from '../src/orders/random-values.ts';
import { retryTransaction } from '../src/store/database.ts';
import { createOrder } from './support/dcv.ts';
import { startTestServer, type TestServer } from './support/server.ts';

const TRIALS = 300;
const clock = new ManualClock(Date.UTC(2026, 5, 1, 12));
let s: TestServer;

before(async () => {
  s = await startTestServer({}, { clock });
  await s.createAccount('alice');
});
after(async () => {
  await s.stop();
});

test(`approve racing a resend of the same order, ${TRIALS} times: no error, one consistent outcome each`, async () => {
  const db = s.store.db;
  const keys = loadValueKeys(s.dataDir);
  const settings: DcvEmailSettings = { keys, random: cryptoRandom, randomValueTtlMs: 7 * 24 * 3600_000, resendIntervalMs: 0 };
  const confirmation = new ConfirmationService({ db, clock, keys, policy: DEFAULT_CODE_GUESS_POLICY });
  const recipient = (local: string) => ({ address: `${local}@race.example.com`, adn: 'race.example.com', source: 'constructed', dnsDetail: null });
  const errors: string[] = [];
  const outcomes = new Map<string, number>();
  for (let i = 0; i < TRIALS; i++) {
    const order = await createOrder(s, clock, 'alice', { domain: 'race.example.com', orderNumber: 7_000_000 + i });
    const first = await queueDcvEmail(db, settings, { order, recipient: recipient('admin'), templateRef: null, now: clock.now() });
    assert.ok(first.queued);
    const value = await db.selectFrom('random_values').select('value_hash').where('id', '=', first.randomValueId).executeTakeFirstOrThrow();
    const sealed = await db.selectFrom('outbox').select('sealed_code').where('random_value_id', '=', first.randomValueId).executeTakeFirstOrThrow();
    const code = openSealedCode(keys, sealed.sealed_code!, value.value_hash);
    // A resend to another address supersedes the value (random_values) while the approval spends it.
    const [approve, resend] = await Promise.allSettled([
      confirmation.decide(code, 'approve', { ip: '127.0.0.1', userAgent: 'race' }),
      queueDcvEmail(db, settings, { order, recipient: recipient('hostmaster'), templateRef: null, now: clock.now() }),
    ]);
    for (const r of [approve, resend]) if (r.status === 'rejected') errors.push(String((r.reason as Error)?.message ?? r.reason));
    if (approve.status === 'fulfilled' && resend.status === 'fulfilled') {
      const key = `${approve.value.outcome}/${resend.value.queued ? 'queued' : resend.value.reason}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      // Consistent: an approved order got no new email, a queued email means the code was superseded.
      const row = await db.selectFrom('orders').select('dcv_status').where('id', '=', order.id).executeTakeFirstOrThrow();
      if (approve.value.outcome === 'approved') {
        assert.equal(row.dcv_status, 'validated');
        assert.equal(resend.value.queued, false, key);
      } else {
        assert.equal(row.dcv_status, 'awaiting', key);
        assert.equal(resend.value.queued, true, key);
      }
    }
  }
  assert.deepEqual(errors, [], `${errors.length} of ${TRIALS * 2} calls failed; outcomes ${JSON.stringify([...outcomes])}`);
});

test('retryTransaction: 40P01 and 40001 run the transaction again, at most 3 times in all; other errors at once', async () => {
  const failing = (codes: string[]) => {
    let calls = 0;
    return {
      run: async () => {
        const code = codes[calls++];
        if (code !== undefined) throw Object.assign(new Error(`sqlstate ${code}`), { code });
        return 'done';
      },
      calls: () => calls,
    };
  };
  const twice = failing(['40P01', '40001']);
  assert.equal(await retryTransaction(twice.run), 'done');
  assert.equal(twice.calls(), 3);
  const always = failing(['40P01', '40P01', '40P01', '40P01']);
  await assert.rejects(retryTransaction(always.run), /sqlstate 40P01/);
  assert.equal(always.calls(), 3);
  const other = failing(['23505']);
  await assert.rejects(retryTransaction(other.run), /sqlstate 23505/);
  assert.equal(other.calls(), 1);
});
