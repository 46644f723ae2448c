/**
 * The transactional outbox under faults (CONTRACT §5): the SMTP server down
 * and back, refusals, the retry limit, the .eml default, a graceful stop while
 * the SMTP server hangs, and `dcvd serve` killed with SIGKILL mid-delivery.
 * Every check counts what a real SMTP server (smtp-server + mailparser) got.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { simpleParser } from 'mailparser';
import { defaultDcvEmailConfig, type DcvEmailConfig } from '../src/config.ts';
import { DEFAULT_OUTBOX_POLICY, retryDelay } from '../src/queue/leased.ts';
import { openStore, type Store } from '../src/store/database.ts';
import { systemClock } from '../src/deps.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, GET_PATH, PASSWORD, RESEND_PATH, startTestServer, type TestServer } from './support/server.ts';
import { createTestDatabase } from './support/database.ts';
import { startServe, type ServeProcess } from './support/instance.ts';
import { codeIn, createOrder, getList, OK, resend, seedOrders } from './support/dcv.ts';
import { waitUntil } from './support/wait.ts';

const FAST = { ...DEFAULT_OUTBOX_POLICY, pollMs: 50, retryBaseMs: 100, retryMaxMs: 400, maxAttempts: 6, leaseMs: 3000 };

function mailConfig(overrides: Partial<DcvEmailConfig>): DcvEmailConfig {
  return defaultDcvEmailConfig({ mailFrom: 'dcv@ca.example', outbox: FAST, ...overrides });
}

function outboxRows(store: Store) {
  return store.db.selectFrom('outbox').selectAll().orderBy('id').execute();
}

let nextOrder = 5_000_000;

/** Queues one DCV email per order through the API; returns the order numbers. */
async function queue(server: TestServer, n: number): Promise<number[]> {
  const numbers: number[] = [];
  for (let i = 0; i < n; i++) {
    const orderNumber = nextOrder++;
    await createOrder(server, systemClock, 'alice', { domain: 'www.example.com', orderNumber });
    assert.equal((await resend(server, 'alice', { orderNumber, dcvEmailAddress: 'admin@example.com' })).body, OK);
    numbers.push(orderNumber);
  }
  return numbers;
}

/** Each delivered Message-ID exactly once, and exactly the outbox's. */
function assertOncePerEmail(sink: SmtpSink, messageIds: string[]): void {
  const got = sink.messages.map((m) => m.parsed.messageId ?? '');
  assert.equal(got.length, new Set(got).size, `a Message-ID arrived twice: ${got.join(' ')}`);
  assert.deepEqual([...got].sort(), [...messageIds].sort());
}

describe('over SMTP', () => {
  let sink: SmtpSink;
  let server: TestServer;
  before(async () => {
    sink = await startSmtpSink();
    server = await startTestServer({ dcvEmail: mailConfig({ smtpUrl: sink.url }) });
    await server.createAccount('alice');
    await getList(server, 'alice', 'www.example.com');
  });
  after(async () => {
    await server.stop();
    await sink.close();
  });

  test('the SMTP server down for a while and back: every queued email delivered exactly once', async () => {
    await sink.stop();
    await queue(server, 10);
    // Each has failed at least twice (connection refused) and waits for its next attempt.
    await waitUntil('two failed attempts each', async () => (await outboxRows(server.store)).every((r) => r.state === 'pending' && r.attempts >= 2));
    const waiting = await outboxRows(server.store);
    assert.match(waiting[0]!.last_error ?? '', /ECONNECTION|ECONNREFUSED/);
    assert.equal(sink.messages.length, 0);

    await sink.start();
    await sink.waitFor(10, 10_000);
    await sleep(500); // time enough for any duplicate to show up
    await server.outbox!.idle();
    const rows = await outboxRows(server.store);
    assert.ok(rows.every((r) => r.state === 'delivered' && r.delivered_at !== null && r.last_error === null));
    assertOncePerEmail(sink, rows.map((r) => r.message_id));
    // Delivered emails are distinct DCV emails: one code each.
    assert.equal(new Set(sink.messages.map((m) => codeIn(m.parsed.text))).size, 10);
  });

  test('a 4xx refusal is retried; a 5xx refusal fails at once with its reason', async () => {
    sink.messages.length = 0;
    sink.refuseNext(1, 451);
    const [temp] = await queue(server, 1);
    await sink.waitFor(1);
    await server.outbox!.idle();
    let rows = await server.store.db.selectFrom('outbox as o').innerJoin('orders as d', 'd.id', 'o.order_id').selectAll('o').where('d.order_number', '=', temp!).execute();
    assert.deepEqual([rows[0]!.state, rows[0]!.attempts], ['delivered', 2]);

    sink.refuseNext(1, 550);
    const [perm] = await queue(server, 1);
    await waitUntil('the permanent failure', async () => {
      rows = await server.store.db.selectFrom('outbox as o').innerJoin('orders as d', 'd.id', 'o.order_id').selectAll('o').where('d.order_number', '=', perm!).execute();
      return rows[0]!.state === 'failed';
    });
    assert.equal(rows[0]!.attempts, 1);
    assert.match(rows[0]!.last_error!, /550/);
    assert.equal(rows[0]!.sealed_code, null, 'a failed email keeps no code');
    assert.equal(sink.messages.length, 1);
  });

  test('the retry limit: after maxAttempts the email is failed with the last reason', async () => {
    await sink.stop();
    const [n] = await queue(server, 1);
    let row;
    await waitUntil('the retry limit', async () => {
      row = (await server.store.db.selectFrom('outbox as o').innerJoin('orders as d', 'd.id', 'o.order_id').selectAll('o').where('d.order_number', '=', n!).executeTakeFirstOrThrow());
      return row.state === 'failed';
    });
    assert.equal(row!.attempts, FAST.maxAttempts);
    assert.match(row!.last_error!, /ECONNECTION|ECONNREFUSED/);
    await sink.start();
  });
});

test('retry delays: exponential from retryBaseMs, capped at retryMaxMs, \u00b120 % jitter from the injected random source', () => {
  const policy = { ...DEFAULT_OUTBOX_POLICY, retryBaseMs: 1000, retryMaxMs: 60_000 };
  const low = { bytes: (n: number) => Buffer.alloc(n, 0x00) };
  const high = { bytes: (n: number) => Buffer.alloc(n, 0xff) };
  const mid = { bytes: (n: number) => Buffer.from([0x80, ...Buffer.alloc(n - 1)]) };
  assert.deepEqual([1, 2, 3, 10].map((a) => retryDelay(policy, a, low)), [800, 1600, 3200, 48_000]);
  assert.deepEqual([1, 2, 3, 10].map((a) => retryDelay(policy, a, high)), [1200, 2400, 4800, 72_000]);
  assert.deepEqual([1, 2, 3, 10].map((a) => retryDelay(policy, a, mid)), [1000, 2000, 4000, 60_000]);
  // The default source: within the band.
  const d = retryDelay(policy, 3);
  assert.ok(d >= 3200 && d <= 4800, String(d));
});

test('without --smtp-url each email is an .eml file under the data dir\u2019s outbox/, and logged without its code', async () => {
  const server = await startTestServer({ dcvEmail: mailConfig({}) });
  try {
    await server.createAccount('alice');
    await getList(server, 'alice', 'www.example.com');
    await queue(server, 1);
    await waitUntil('the delivery', async () => (await outboxRows(server.store))[0]!.state === 'delivered');
    const [row] = await outboxRows(server.store);
    const dir = join(server.dataDir, 'outbox');
    const file = `${row!.message_id.slice(1, -1)}.eml`;
    assert.deepEqual(readdirSync(dir), [file]);
    const parsed = await simpleParser(readFileSync(join(dir, file)));
    assert.equal(parsed.messageId, row!.message_id);
    assert.equal(parsed.subject, row!.subject);
    const code = codeIn(parsed.text);
    assert.ok(parsed.text!.includes(`https://localhost:${server.https.port}/dcv/confirm/${code}`), 'the link defaults to this listener');
    const line = server.logs.find((l) => l.msg === 'dcv email written');
    assert.equal(line?.to, 'admin@example.com');
    assert.ok(!JSON.stringify(server.logs).includes(code));
  } finally {
    await server.stop();
  }
});

test('unsafe sender settings are refused at start', async () => {
  for (const mailFrom of ['dcv@ca.example\r\nBcc: victim@evil.test', 'CA <dcv@ca.example>']) {
    await assert.rejects(startTestServer({ dcvEmail: mailConfig({ mailFrom }) }), /--mail-from/);
  }
  await assert.rejects(startTestServer({ dcvEmail: mailConfig({ randomValueTtlMs: 31 * 86_400_000 }) }), /at most 30d/);
});

test('a graceful stop while the SMTP server hangs loses nothing; the restarted server delivers once', async () => {
  const sink = await startSmtpSink();
  sink.hang(true);
  const first = await startTestServer({ dcvEmail: mailConfig({ smtpUrl: sink.url }) });
  await first.createAccount('alice');
  await getList(first, 'alice', 'www.example.com');
  await queue(first, 2);
  await waitUntil('both in flight', async () => (await outboxRows(first.store)).every((r) => r.state === 'sending') && sink.connections > 0);
  // close() waits for the hung sends to time out (a third of the lease), never abandons them mid-flight.
  await first.close();
  const { dataDir, databaseUrl } = first;
  sink.hang(false);
  assert.equal(sink.messages.length, 0);

  const second = await startTestServer({ dataDir, databaseUrl, dcvEmail: mailConfig({ smtpUrl: sink.url }) });
  try {
    await sink.waitFor(2);
    await sleep(500);
    await second.outbox!.idle();
    const rows = await outboxRows(second.store);
    assert.ok(rows.every((r) => r.state === 'delivered' && r.attempts === 2), JSON.stringify(rows.map((r) => [r.state, r.attempts])));
    assertOncePerEmail(sink, rows.map((r) => r.message_id));
  } finally {
    await second.stop();
    rmSync(dataDir, { recursive: true, force: true });
    await sink.close();
  }
});

describe('dcvd serve killed with SIGKILL mid-delivery', () => {
  let sink: SmtpSink;
  let dir: string;
  let databaseUrl: string | undefined;
  let dropDatabase: () => Promise<void>;
  const children: ChildProcess[] = [];
  before(async () => {
    sink = await startSmtpSink();
    dir = mkdtempSync(join(tmpdir(), 'dcvd-kill-'));
    const db = await createTestDatabase();
    databaseUrl = db.url;
    dropDatabase = db.drop;
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await sink.close();
    await dropDatabase();
    rmSync(dir, { recursive: true, force: true });
  });

  async function serve(): Promise<ServeProcess> {
    const args = ['--smtp-url', sink.url, '--outbox-lease', '3s', '--outbox-poll-interval', '100ms', '--outbox-retry-base', '200ms', '--log-level', 'warn'];
    if (databaseUrl) args.push('--database-url', databaseUrl);
    const started = await startServe(dir, args);
    children.push(started.child);
    return started;
  }

  test('what was pending or in flight is delivered after the restart, nothing twice', async () => {
    const store = openStore({ dataDir: dir, databaseUrl });
    try {
      await seedOrders(store, 'alice', 'www.example.com', [1, 2, 3, 4, 5, 6].map((i) => 6_000_000 + i));

      sink.hang(true);
      const a = await serve();
      const creds = { loginName: 'alice', loginPassword: PASSWORD };
      assert.match(await a.post(GET_PATH, form({ ...creds, domainName: 'www.example.com', product: '801' })), /^0\n/);
      for (let i = 1; i <= 6; i++) {
        assert.equal(await a.post(RESEND_PATH, form({ ...creds, orderNumber: String(6_000_000 + i), dcvEmailAddress: 'admin@example.com' })), OK);
      }
      // All six are in flight: the SMTP server has them and never answers DATA.
      await waitUntil('six emails in flight', async () => (await outboxRows(store)).filter((r) => r.state === 'sending').length === 6 && sink.connections > 0);
      await sleep(300);
      a.child.kill('SIGKILL');
      await a.exited;
      sink.hang(false);
      assert.equal(sink.messages.length, 0);

      const b = await serve();
      await sink.waitFor(6, 20_000);
      await sleep(1000);
      const rows = await outboxRows(store);
      assert.ok(rows.every((r) => r.state === 'delivered'), JSON.stringify(rows.map((r) => r.state)));
      assert.ok(rows.every((r) => r.attempts === 2), 'the killed attempt counts, the lease let the restart take over');
      assertOncePerEmail(sink, rows.map((r) => r.message_id));
      b.child.kill('SIGTERM');
      assert.equal(await b.exited, 0);
    } finally {
      await store.close();
    }
  });
});
