/**
 * Several `dcvd serve` processes on one PostgreSQL database (CONTRACT §10):
 * concurrent resends of one order and of many, a lockout made through one
 * instance honoured by the others, an operator lock taking effect at once on
 * remembered credentials, and one instance killed while delivering — every
 * email arrives exactly once. Needs PostgreSQL; skipped with a clear message
 * where none answers (and failed where DCVD_REQUIRE_POSTGRES=1).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { openStore, type Store } from '../src/store/database.ts';
import { AccountRepository } from '../src/accounts/repository.ts';
import { systemClock } from '../src/deps.ts';
import { createPostgresSchema, postgresOrSkip, type TestDatabase } from './support/database.ts';
import { startServe, type ServeProcess } from './support/instance.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, GET_PATH, PASSWORD, RESEND_PATH } from './support/server.ts';
import { OK, errorBody, seedOrders } from './support/dcv.ts';

const skip = await postgresOrSkip();

const AUTH_FAIL = errorBody(-16);
const BASE_ORDER = 7_100_000;

describe('three instances on one PostgreSQL database', { skip }, () => {
  let database: TestDatabase & { url: string };
  let store: Store;
  let sink: SmtpSink;
  let dir: string;
  const instances: ServeProcess[] = [];
  const creds = { loginName: 'alice', loginPassword: PASSWORD };

  before(async () => {
    database = await createPostgresSchema();
    dir = mkdtempSync(join(tmpdir(), 'dcvd-multi-'));
    sink = await startSmtpSink();
    store = openStore({ dataDir: dir, databaseUrl: database.url });
    await seedOrders(store, 'alice', 'www.example.com', Array.from({ length: 20 }, (_, i) => BASE_ORDER + 1 + i));
    // One data directory (certificate, secret key) shared by all three, as a deployment shares its secret key file.
    // The lease bounds how long a killed instance's emails wait; it must also outlast a delivery on a
    // busy machine, or a slow but live delivery is claimed again and sent twice (a 3 s lease did that
    // at load average 26: 15 emails for 10).
    const args = ['--database-url', database.url, '--smtp-url', sink.url, '--outbox-lease', '15s', '--outbox-poll-interval', '100ms', '--outbox-retry-base', '200ms', '--log-level', 'warn'];
    for (let i = 0; i < 3; i++) instances.push(await startServe(dir, args));
    assert.match(await instances[0]!.post(GET_PATH, form({ ...creds, domainName: 'www.example.com', product: '801' })), /^0\n/);
  });

  after(async () => {
    for (const i of instances) if (i.child.exitCode === null && i.child.signalCode === null) i.child.kill('SIGKILL');
    await Promise.all(instances.map((i) => i.exited));
    await store?.close();
    await sink?.close();
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const resend = (i: number, order: number) =>
    instances[i % instances.length]!.post(RESEND_PATH, form({ ...creds, orderNumber: String(order), dcvEmailAddress: 'admin@example.com' }));

  async function outbox() {
    return store.db.selectFrom('outbox').select(['message_id', 'state', 'order_id']).execute();
  }

  async function waitDelivered(count: number, timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const rows = await outbox();
      if (rows.length === count && rows.every((r) => r.state === 'delivered')) return;
      if (Date.now() > end) throw new Error(`outbox not delivered: ${JSON.stringify(rows.map((r) => r.state))}`);
      await sleep(100);
    }
  }

  function assertEachOnce(): void {
    const got = sink.messages.map((m) => m.parsed.messageId ?? '');
    assert.equal(got.length, new Set(got).size, `a Message-ID arrived twice: ${got.join(' ')}`);
  }

  test('concurrent resends of one order through all instances: exactly one is queued', async () => {
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => resend(i, BASE_ORDER + 1)));
    assert.equal(answers.filter((a) => a === OK).length, 1, answers.join('\n'));
    assert.equal(answers.filter((a) => a === errorBody(-160)).length, 11);
  });

  test('concurrent resends of different orders through all instances: all queued, each delivered once', async () => {
    const answers = await Promise.all(Array.from({ length: 9 }, (_, i) => resend(i, BASE_ORDER + 2 + i)));
    assert.deepEqual(answers, Array(9).fill(OK));
    await waitDelivered(10);
    await sleep(500);
    assert.equal(sink.messages.length, 10);
    assertEachOnce();
    const ids = (await outbox()).map((r) => r.message_id).sort();
    assert.deepEqual(sink.messages.map((m) => m.parsed.messageId).sort(), ids);
  });

  test('a lockout made through one instance is honoured by the others', async () => {
    const wrong = form({ loginName: 'alice', loginPassword: 'not the password', orderNumber: '1' });
    for (let i = 0; i < 5; i++) assert.equal(await instances[0]!.post(RESEND_PATH, wrong), AUTH_FAIL);
    const right = form({ ...creds, orderNumber: '1' });
    assert.equal(await instances[1]!.post(RESEND_PATH, right), AUTH_FAIL);
    assert.equal(await instances[2]!.post(RESEND_PATH, right), AUTH_FAIL);
    await new AccountRepository(store.db, systemClock).unlock('alice');
    assert.equal(await instances[1]!.post(RESEND_PATH, right), errorBody(-4, 'orderNumber'), 'unlocked everywhere at once');
  });

  test('an operator lock voids remembered credentials on every instance at once', async () => {
    const right = form({ ...creds, orderNumber: '1' });
    // Each instance now remembers the verified password…
    for (const i of instances) assert.equal(await i.post(RESEND_PATH, right), errorBody(-4, 'orderNumber'));
    await new AccountRepository(store.db, systemClock).lock('alice');
    for (const i of instances) assert.equal(await i.post(RESEND_PATH, right), AUTH_FAIL);
    await new AccountRepository(store.db, systemClock).unlock('alice');
  });

  test('one instance killed while delivering: the others take its emails over, each delivered once', async () => {
    sink.hang(true);
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => resend(i, BASE_ORDER + 12 + i)));
    assert.deepEqual(answers, Array(6).fill(OK));
    // Wait until every new email is claimed (in flight against the hanging server) before the kill.
    const end = Date.now() + 10_000;
    while ((await outbox()).filter((r) => r.state === 'sending').length < 6) {
      if (Date.now() > end) throw new Error('emails were not claimed');
      await sleep(50);
    }
    const victim = instances[0]!;
    victim.child.kill('SIGKILL');
    await victim.exited;
    sink.hang(false);
    await waitDelivered(16, 90_000);
    await sleep(500);
    assert.equal(sink.messages.length, 16);
    assertEachOnce();
  });
});
