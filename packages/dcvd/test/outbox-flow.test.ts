/**
 * The outbox's flow control (issue 20, src/outbox/flow.ts): while the oldest due DCV email has waited
 * longer than --outbox-max-lag for delivery, the calls that may queue emails wait, at most
 * --outbox-flow-delay, and then queue anyway. Over HTTPS against a `--role api` server (nothing in it
 * delivers, so the emails it queues stay due) on the test database, and directly on that server's
 * outbox with the waits' clock as the only fake.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { OutboxFlow, REFRESH_MS, type FlowOutcome } from '../src/outbox/flow.ts';
import { openStore } from '../src/store/database.ts';
import { startTestServer, type TestServer } from './support/server.ts';
import { capturedLogger } from './support/logs.ts';
import { createOrder, getList, OK, resend } from './support/dcv.ts';
import { metric } from './support/metrics.ts';

const DELAY_MS = 400;
const MAX_LAG_MS = 2000;

describe('outbox flow control', () => {
  let server: TestServer;
  let now = Date.UTC(2026, 11, 3, 12);
  const clock = { now: () => now };
  let nextOrder = 880_001;

  /** Queues one email of a new order at the fake time; answers how long the call took. */
  async function queueOne(): Promise<number> {
    const orderNumber = nextOrder++;
    await createOrder(server, clock, 'alice', { domain: 'www.example.com', orderNumber });
    const started = performance.now();
    const r = await resend(server, 'alice', { orderNumber, dcvEmailAddress: 'admin@example.com' });
    assert.equal(r.body, OK);
    return performance.now() - started;
  }

  /** The server's flow control reads the lag at most every REFRESH_MS of real time. */
  const readingExpires = () => sleep(REFRESH_MS + 20);
  const waits = (outcome: FlowOutcome) => metric(server, 'dcvd_outbox_flow_waits_total', `outcome="${outcome}"`);
  const pending = async () => Number((await server.store.db.selectFrom('outbox').select((eb) => eb.fn.countAll().as('n')).where('state', '=', 'pending').executeTakeFirstOrThrow()).n);

  before(async () => {
    server = await startTestServer(
      { role: 'api', dcvEmail: defaultDcvEmailConfig({ mailFrom: 'dcv@ca.example', resendIntervalMs: 0, outboxFlow: { maxLagMs: MAX_LAG_MS, delayMs: DELAY_MS } }) },
      { clock },
    );
    await server.createAccount('alice');
    await getList(server, 'alice', 'www.example.com');
  });
  after(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    // Each test starts with no email waiting.
    await server.store.db.updateTable('outbox').set({ state: 'delivered' }).where('state', '=', 'pending').execute();
    now += 60_000;
  });

  test('calls queue at once while delivery keeps up, and wait at most --outbox-flow-delay once it is behind', async () => {
    const timedOut = await waits('timed-out');
    await queueOne();
    await queueOne();
    assert.equal(await waits('timed-out'), timedOut, 'no email was due for longer than the limit: nobody waited');

    // Nothing in a --role api process delivers: 5 s later the first email is 5 s overdue.
    now += 5000;
    await readingExpires();
    const took = await queueOne();
    assert.ok(took >= DELAY_MS, `the call waited for delivery (${took.toFixed(0)} ms, at least ${DELAY_MS})`);
    assert.equal(await waits('timed-out'), timedOut + 1, 'the wait ended with the delay, delivery never caught up');
    assert.equal(await pending(), 3, 'the call queued its email after the wait: nothing refused, nothing lost');
    assert.ok(
      server.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('DCV email delivery is behind') && l.level === 40),
      'the log says that delivery is behind',
    );
  });

  test('a call that queues nothing never waits', async () => {
    await queueOne();
    now += 5000;
    await readingExpires();
    const before = await waits('timed-out');
    await getList(server, 'alice', 'www.example.com');
    assert.equal(await waits('timed-out'), before);
    assert.ok((await queueOne()) >= DELAY_MS, 'delivery was behind: a call that queues waited');
  });

  test('emails waiting for a retry are not due: a refusing SMTP server slows nothing', async () => {
    await queueOne();
    // As a failed attempt leaves it: pending again, its next attempt in 30 s.
    await server.store.db.updateTable('outbox').set({ attempts: 1, next_attempt_at: now + 30_000 }).where('state', '=', 'pending').execute();
    now += 10_000;
    await readingExpires();
    const before = await waits('timed-out');
    await queueOne();
    assert.equal(await waits('timed-out'), before);
    // The same email once its retry time has come and gone.
    now += 30_000;
    await readingExpires();
    assert.ok((await queueOne()) >= DELAY_MS, 'an overdue retry is due: a call that queues waited');
    assert.equal(await waits('timed-out'), before + 1);
  });

  describe('OutboxFlow on the same outbox, its waits on a fake clock', () => {
    let monotonic = 0;
    let slept: number[];
    let onSleep: (() => Promise<void>) | undefined;
    let outcomes: [FlowOutcome, number][];
    const flow = (config = { maxLagMs: MAX_LAG_MS, delayMs: 1000 }) =>
      new OutboxFlow({
        db: server.store.db,
        clock,
        config,
        log: capturedLogger('warn').logger,
        onWait: (outcome, seconds) => outcomes.push([outcome, seconds]),
        monotonic: () => monotonic,
        async sleep(ms) {
          slept.push(ms);
          monotonic += ms;
          await onSleep?.();
        },
      });
    beforeEach(() => {
      monotonic += 10_000;
      slept = [];
      onSleep = undefined;
      outcomes = [];
    });

    test('a waiting call goes on as soon as delivery catches up, reading the lag every 100 ms', async () => {
      await queueOne();
      now += 5000;
      onSleep = async () => {
        // Delivery catches up during the third wait.
        if (slept.length === 3) await server.store.db.updateTable('outbox').set({ state: 'delivered' }).where('state', '=', 'pending').execute();
      };
      await flow().admit();
      assert.deepEqual(slept, [REFRESH_MS, REFRESH_MS, REFRESH_MS]);
      assert.deepEqual(outcomes, [['caught-up', 0.3]]);
    });

    test('a call waits exactly the delay when delivery does not catch up', async () => {
      await queueOne();
      now += 5000;
      await flow({ maxLagMs: MAX_LAG_MS, delayMs: 250 }).admit();
      assert.deepEqual(slept, [100, 100, 50]);
      assert.deepEqual(outcomes, [['timed-out', 0.25]]);
    });

    test('one reading of the lag serves every call for 100 ms', async () => {
      const f = flow();
      await f.admit();
      assert.equal(slept.length, 0, 'nothing is due');
      await queueOne();
      now += 5000;
      await Promise.all([f.admit(), f.admit()]);
      assert.equal(slept.length, 0, 'within 100 ms of the last reading, calls use it');
      monotonic += REFRESH_MS;
      onSleep = async () => {
        await server.store.db.updateTable('outbox').set({ state: 'delivered' }).where('state', '=', 'pending').execute();
      };
      await Promise.all([f.admit(), f.admit(), f.admit()]);
      assert.deepEqual(slept, [REFRESH_MS, REFRESH_MS, REFRESH_MS], 'a new reading: all three waited once, and one reading after the wait let them go');
      assert.deepEqual(
        outcomes.map(([o]) => o),
        ['caught-up', 'caught-up', 'caught-up'],
      );
    });

    test('--outbox-max-lag 0 turns it off', async () => {
      await queueOne();
      now += 60_000;
      await flow({ maxLagMs: 0, delayMs: 1000 }).admit();
      assert.deepEqual(slept, []);
      assert.deepEqual(outcomes, []);
    });

    test('a lag that cannot be read lets the call go on, with a warning', async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-flow-'));
      // Not migrated: the outbox table does not exist, so the reading fails.
      const store = openStore({ dataDir });
      try {
        const { logger, lines } = capturedLogger('warn');
        await new OutboxFlow({ db: store.db, clock, config: { maxLagMs: MAX_LAG_MS, delayMs: 1000 }, log: logger, monotonic: () => monotonic, sleep: async (ms) => slept.push(ms) }).admit();
        assert.deepEqual(slept, []);
        assert.ok(lines.some((l) => typeof l.msg === 'string' && l.msg.includes('could not be read')));
      } finally {
        await store.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
});
