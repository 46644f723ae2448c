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
import { ErrorCode } from '@dcvd/client';
import { OutboxFlow, REFRESH_MS, oldestDueEmail, type FlowOutcome, type OutboxFlowDeps } from '../src/outbox/flow.ts';
import { createUseCases } from '../src/api/index.ts';
import { ClientGone } from '../src/api/types.ts';
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
    // The same email once its retry time has come and gone (the one just queued delivered, so only the retry is due).
    await server.store.db.updateTable('outbox').set({ state: 'delivered' }).where('state', '=', 'pending').where('attempts', '=', 0).execute();
    now += 30_000;
    await readingExpires();
    assert.ok((await queueOne()) >= DELAY_MS, 'an overdue retry is due: a call that queues waited');
    assert.equal(await waits('timed-out'), before + 1);
  });

  test('--outbox-flow-delay must be 1 ms to 10 s while flow control is on', async () => {
    for (const delayMs of [0, 10_001]) {
      await assert.rejects(
        startTestServer({ dcvEmail: defaultDcvEmailConfig({ mailFrom: 'dcv@ca.example', outboxFlow: { maxLagMs: MAX_LAG_MS, delayMs } }) }),
        /--outbox-flow-delay must be 1ms to 10s/,
      );
    }
  });

  describe('OutboxFlow on the same outbox, its waits on a fake clock', () => {
    let monotonic = 0;
    let slept: number[];
    let onSleep: (() => Promise<void>) | undefined;
    let outcomes: [FlowOutcome, number][];
    let reads: number;
    const flow = (config = { maxLagMs: MAX_LAG_MS, delayMs: 1000 }, seams: Partial<OutboxFlowDeps> = {}) =>
      new OutboxFlow({
        db: server.store.db,
        clock,
        config,
        log: capturedLogger('warn').logger,
        onWait: (outcome, seconds) => outcomes.push([outcome, seconds]),
        monotonic: () => monotonic,
        // The real statement, counted.
        async oldestDue(at) {
          reads += 1;
          return (await oldestDueEmail.first(server.store.db, { now: at }))?.next_attempt_at;
        },
        async sleep(ms) {
          slept.push(ms);
          monotonic += ms;
          await onSleep?.();
        },
        ...seams,
      });
    beforeEach(() => {
      monotonic += 10_000;
      slept = [];
      onSleep = undefined;
      outcomes = [];
      reads = 0;
    });

    test('a waiting call goes on as soon as delivery catches up, reading the lag every 100 ms', async () => {
      await queueOne();
      now += 5000;
      onSleep = async () => {
        // Delivery catches up during the third wait.
        if (slept.length === 3) await server.store.db.updateTable('outbox').set({ state: 'delivered' }).where('state', '=', 'pending').execute();
      };
      assert.equal(await flow().admit(), 'caught-up');
      assert.deepEqual(slept, [REFRESH_MS, REFRESH_MS, REFRESH_MS]);
      assert.deepEqual(outcomes, [['caught-up', 0.3]]);
    });

    test('a call waits exactly the delay when delivery does not catch up', async () => {
      await queueOne();
      now += 5000;
      assert.equal(await flow({ maxLagMs: MAX_LAG_MS, delayMs: 250 }).admit(), 'timed-out');
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
      assert.equal(reads, 1, 'one reading so far');
      monotonic += REFRESH_MS;
      onSleep = async () => {
        await server.store.db.updateTable('outbox').set({ state: 'delivered' }).where('state', '=', 'pending').execute();
      };
      const readsBefore = reads;
      await Promise.all([f.admit(), f.admit(), f.admit()]);
      assert.deepEqual(slept, [REFRESH_MS, REFRESH_MS, REFRESH_MS], 'a new reading: all three waited once, and one reading after the wait let them go');
      assert.equal(reads - readsBefore, 2, 'three calls, two readings: the one that made them wait and the one that let them go');
      assert.deepEqual(
        outcomes.map(([o]) => o),
        ['caught-up', 'caught-up', 'caught-up'],
      );
    });

    test('a reading that does not come back cannot hold a call longer than the delay', async () => {
      const f = flow({ maxLagMs: MAX_LAG_MS, delayMs: 150 }, { oldestDue: () => new Promise(() => undefined), monotonic: () => performance.now() });
      const started = performance.now();
      assert.equal(await f.admit(), 'unread');
      assert.ok(performance.now() - started >= 140, 'it waited for the reading, up to the delay');
      assert.deepEqual(slept, []);
      assert.equal(outcomes[0]?.[0], 'unread');
    });

    test("a wait ends when the call's signal fires, and the wrapper then queues nothing for a client gone", async () => {
      await queueOne();
      now += 5000;
      const controller = new AbortController();
      onSleep = async () => controller.abort(new ClientGone());
      assert.equal(await flow().admit(() => controller.signal), 'aborted');
      assert.deepEqual(slept, [REFRESH_MS]);
      assert.deepEqual(outcomes, [['aborted', 0.1]]);
      // The use cases behind it never run: deps they would need are missing, and the answer is -160.
      const useCases = createUseCases({ getList: {} as never, resend: {} as never, flow: {} as never, outboxFlow: { enabled: true, admit: async () => 'aborted' } });
      const ctx = { account: {} as never, sourceIp: '127.0.0.1', requestId: 'r', log: capturedLogger('info').logger, signal: controller.signal };
      for (const call of [useCases.resendDcvEmail, useCases.autoApplyOrder!, useCases.autoUpdateDcv!]) {
        assert.deepEqual(await call(ctx, {} as never), { ok: false, error: { code: ErrorCode.RequestUnsuccessful } });
      }
    });

    test('--outbox-max-lag 0 turns it off', async () => {
      await queueOne();
      now += 60_000;
      assert.equal(await flow({ maxLagMs: 0, delayMs: 1000 }).admit(), undefined);
      assert.equal(reads, 0);
      assert.deepEqual(slept, []);
      assert.deepEqual(outcomes, []);
    });

    test('a lag that cannot be read lets the call go on, with a warning', async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-flow-'));
      // Not migrated: the outbox table does not exist, so the reading fails.
      const store = openStore({ dataDir });
      try {
        const { logger, lines } = capturedLogger('warn');
        const f = new OutboxFlow({ db: store.db, clock, config: { maxLagMs: MAX_LAG_MS, delayMs: 1000 }, log: logger, monotonic: () => monotonic, sleep: async (ms) => slept.push(ms) });
        assert.equal(await f.admit(), 'unread');
        assert.equal(await f.admit(), 'unread', 'the failed reading is kept for 100 ms too');
        assert.deepEqual(slept, []);
        assert.equal(lines.filter((l) => typeof l.msg === 'string' && l.msg.includes('could not be read')).length, 1, 'said once');
        assert.ok(lines.some((l) => typeof l.msg === 'string' && l.msg.includes('could not be read')));
      } finally {
        await store.close();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
});
