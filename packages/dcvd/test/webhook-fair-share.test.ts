/**
 * The webhook claim's fair share per receiver (src/webhooks/fair-claim.ts): one receiver has at most its cap
 * of events in `sending` at once, decided in the claim, so a receiver that hangs leaves the other slots to
 * the other accounts, a busy receiver is never starved by events claimed and put back, and the cap holds
 * over two workers sharing the database. The global receiver (the operator's --webhook-url) has a larger
 * share, whose part beyond an account's goes only to slots no other receiver's due event wants. Real
 * receivers on loopback count the POSTs they hold open; on
 * SQLite, and on PostgreSQL with DCVD_TEST_DATABASE=postgres. No timing is asserted: each test waits for
 * its outcome within wide bounds and counts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Insertable, Selectable } from 'kysely';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { cryptoRandom, systemClock } from '../src/deps.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { loadValueKeys } from '../src/orders/random-values.ts';
import { accountReceiver, GLOBAL_RECEIVER, issueWebhookSecret } from '../src/webhooks/secrets.ts';
import { WebhookWorker } from '../src/webhooks/webhooks.ts';
import { busySince, claimFairShare, defaultGlobalConcurrency, defaultReceiverConcurrency } from '../src/webhooks/fair-claim.ts';
import type { WebhookOutboxTable } from '../src/store/schema.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { LOOPBACK, startTestServer, type TestServer } from './support/server.ts';
import { decideByMail } from './support/confirm.ts';
import { capturedLogger } from './support/logs.ts';
import { waitUntil } from './support/wait.ts';

const POLICY = { ...DEFAULT_OUTBOX_POLICY, pollMs: 50, retryBaseMs: 100, retryMaxMs: 300, maxAttempts: 20 };
/** The default share: a quarter of the 16 slots. */
const CAP = defaultReceiverConcurrency(POLICY.concurrency);
/** The global receiver's default share: the 16 slots less one receiver's share. */
const GLOBAL_CAP = defaultGlobalConcurrency(POLICY.concurrency, CAP);
/** The global URL's path on the test receiver, and its signing secret. */
const GLOBAL_PATH = '/global';
const GLOBAL_SECRET = 'global-secret-0123456789';
/** Long enough that no held POST times out during a test (at most a third of the lease). */
const TIMEOUT_MS = 100_000;
/** Wide: the suite runs on a loaded 2-core machine. */
const WAIT_MS = 120_000;

let sink: SmtpSink;
let server: TestServer;
let receiver: http.Server;
let port = 0;
let next = 9_100_000;

/** Per receiver path: what it does with a POST, the POSTs it holds open now and at most, and those answered. */
interface Path {
  /** Answer at once, after about 20 ms, or not until released. */
  mode: 'ok' | 'slow' | 'hang';
  open: number;
  max: number;
  answered: number;
  held: http.ServerResponse[];
}
const paths = new Map<string, Path>();
const pathOf = (name: string): Path => {
  let p = paths.get(name);
  if (!p) paths.set(name, (p = { mode: 'ok', open: 0, max: 0, answered: 0, held: [] }));
  return p;
};

before(async () => {
  receiver = http.createServer((req, res) => {
    const p = pathOf(req.url ?? '');
    p.open += 1;
    p.max = Math.max(p.max, p.open);
    res.on('close', () => (p.open -= 1));
    req.resume();
    const answer = () => {
      p.answered += 1;
      res.writeHead(204).end();
    };
    if (p.mode === 'hang') p.held.push(res);
    // 10–30 ms: claims taken together do not stay in step (in step, each claim would find its receiver's slots all free).
    else if (p.mode === 'slow') setTimeout(answer, 10 + Math.random() * 20);
    else answer();
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  port = (receiver.address() as AddressInfo).port;
  sink = await startSmtpSink();
  server = await startTestServer({
    dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, outbox: POLICY }),
    webhooks: { allowNetworks: LOOPBACK, timeoutMs: TIMEOUT_MS, url: `http://127.0.0.1:${port}${GLOBAL_PATH}`, secret: GLOBAL_SECRET },
  });
});
after(async () => {
  for (const p of paths.values()) release(p);
  await server.stop();
  await sink.close();
  receiver.closeAllConnections();
  await new Promise((r) => receiver.close(r));
});

/** Answers the POSTs a hung path holds, and every later one at once. */
function release(p: Path): void {
  p.mode = 'ok';
  for (const res of p.held.splice(0)) {
    p.answered += 1;
    res.writeHead(204).end();
  }
}

type Row = Selectable<WebhookOutboxTable>;

/**
 * An account with its own URL and signing secret (or, `global`, one whose events go to the global URL), and its
 * first event (a real decision's, delivered), to copy.
 */
async function account(login: string, opts: { global?: boolean } = {}): Promise<{ path: Path; template: Row }> {
  const path = pathOf(opts.global ? GLOBAL_PATH : `/${login}`);
  await server.createAccount(login, opts.global ? {} : { webhookUrl: `http://127.0.0.1:${port}/${login}` });
  const { id } = await server.store.db.selectFrom('accounts').select('id').where('login', '=', login).executeTakeFirstOrThrow();
  if (!opts.global) await issueWebhookSecret(server.store.db, { keys: loadValueKeys(server.dataDir), random: cryptoRandom }, accountReceiver(id), Date.now());
  path.answered = 0; // the global URL's path counts every account's events that go there
  const orderNumber = (next += 1);
  await decideByMail(server, sink, systemClock, { login, orderNumber, domain: `f${orderNumber}.example.com` }, 'approve');
  const order = await server.store.db.selectFrom('orders').select('id').where('order_number', '=', orderNumber).executeTakeFirstOrThrow();
  const events = () => server.store.db.selectFrom('webhook_outbox').selectAll().where('order_id', '=', order.id).execute();
  await waitUntil(`${login}'s first event delivered`, async () => (await events()).every((e) => e.state === 'delivered'), WAIT_MS);
  const [template] = await events();
  assert.equal(template!.receiver, opts.global ? GLOBAL_RECEIVER : accountReceiver(id));
  assert.equal(path.answered, 1);
  path.answered = 0;
  path.max = 0;
  return { path, template: template! };
}

/** Queues `n` more events like `template`, due from `at` on, one ms apart; their ids. */
async function queue(template: Row, n: number, at = Date.now()): Promise<number[]> {
  const { id: _, ...copy } = template;
  const rows: Insertable<WebhookOutboxTable>[] = Array.from({ length: n }, (_, i) => ({
    ...copy, event_id: randomUUID(), state: 'pending', attempts: 0, next_attempt_at: at + i, lease_until: null, claim_token: null,
    last_error: null, response: null, delivered_at: null, created_at: at, updated_at: at,
  }));
  const ids: number[] = [];
  for (let i = 0; i < rows.length; i += 100) {
    const chunk = await server.store.db.insertInto('webhook_outbox').values(rows.slice(i, i + 100)).returning('id').execute();
    ids.push(...chunk.map((r) => r.id));
  }
  return ids;
}

/** Makes `receiver` hang, queues `n` events like its template and waits until it holds `share` POSTs open; their ids. */
async function hangWith(name: string, receiver: { path: Path; template: Row }, n: number, share: number): Promise<number[]> {
  receiver.path.mode = 'hang';
  const ids = await queue(receiver.template, n);
  server.webhooks!.wake();
  await waitUntil(`the ${name} receiver holds ${share} POSTs`, async () => receiver.path.open >= share, WAIT_MS);
  return ids;
}

const rowsOf = (ids: number[]) => server.store.db.selectFrom('webhook_outbox').selectAll().where('id', 'in', ids).execute();
const allDelivered = async (ids: number[]) => (await rowsOf(ids)).every((r) => r.state === 'delivered');

test(`the default share is a quarter of the slots: ${CAP}; the global receiver's, the slots less one receiver's share: ${GLOBAL_CAP}`, () => {
  assert.equal(CAP, 4);
  assert.equal(defaultReceiverConcurrency(1), 1);
  assert.equal(defaultReceiverConcurrency(64), 16);
  assert.equal(GLOBAL_CAP, 12);
  assert.equal(defaultGlobalConcurrency(1, 1), 1);
  assert.equal(defaultGlobalConcurrency(4, 1), 3);
  assert.equal(defaultGlobalConcurrency(64, 16), 48);
  // Never less than another receiver's share (the operator raised that one): --webhook-receiver-concurrency 10 of 16.
  assert.equal(defaultGlobalConcurrency(16, 10), 10);
});

test('a receiver that hangs holds its share of the slots; another account\u2019s event, queued after all of its events, is delivered meanwhile', async () => {
  const hog = await account('hog');
  const other = await account('other');
  const hogIds = await hangWith('hung', hog, 40, CAP);
  // Due after every one of the hog's: a claim in due order alone would never reach it.
  const [otherId] = await queue(other.template, 1, Date.now() + 1000);
  await waitUntil('the other account\u2019s event delivered', () => allDelivered([otherId!]), WAIT_MS);
  assert.equal(other.path.answered, 1);
  // The hog's events are still held: the cap, no more, at its receiver, the rest waiting unclaimed.
  assert.equal(hog.path.answered, 0);
  assert.equal(hog.path.open, CAP);
  assert.equal(hog.path.max, CAP, `at most ${CAP} POSTs at once at the hung receiver (${hog.path.max})`);
  const states = (await rowsOf(hogIds)).map((r) => r.state);
  assert.equal(states.filter((s) => s === 'sending').length, CAP);
  assert.equal(states.filter((s) => s === 'pending').length, 40 - CAP);

  release(hog.path);
  await waitUntil('every one of the hog\u2019s events delivered', () => allDelivered(hogIds), WAIT_MS);
  assert.equal(hog.path.answered, 40);
  assert.ok(hog.path.max <= CAP, `at most ${CAP} at once (${hog.path.max})`);
  // None was claimed and put back, nor timed out: one attempt each.
  assert.deepEqual(new Set((await rowsOf(hogIds)).map((r) => r.attempts)), new Set([1]));
});

test('400 events to one receiver answering in about 20 ms are all delivered at its share, each at its first attempt (nothing claimed and put back)', async () => {
  const busy = await account('busy');
  busy.path.mode = 'slow';
  const ids = await queue(busy.template, 400);
  server.webhooks!.wake();
  await waitUntil('400 events delivered', () => allDelivered(ids), WAIT_MS);
  assert.equal(busy.path.answered, 400);
  const attempts = (await rowsOf(ids)).map((r) => r.attempts);
  assert.deepEqual(new Set(attempts), new Set([1]), 'one attempt each');
  assert.ok(busy.path.max <= CAP, `at most ${CAP} POSTs at once (${busy.path.max})`);
  assert.equal(busy.path.max, CAP, `its share used (${busy.path.max} at most at once)`);
});

test(`with only the global URL, a receiver that hangs, then answers slowly, has up to its share (${GLOBAL_CAP}) in flight, never more, each event at its first attempt`, async () => {
  const global = await account('operator', { global: true });
  const ids = await hangWith('global', global, 300, GLOBAL_CAP);
  // The worker polls every 50 ms, with 4 of its 16 slots free: give it many chances to take more.
  await sleep(1000);
  assert.equal(global.path.open, GLOBAL_CAP);
  assert.equal(global.path.max, GLOBAL_CAP, `at most ${GLOBAL_CAP} at once at the global receiver (${global.path.max})`);
  assert.equal((await rowsOf(ids)).filter((r) => r.state === 'sending').length, GLOBAL_CAP);
  // Answering in 10–30 ms from now on.
  release(global.path);
  global.path.mode = 'slow';
  await waitUntil('300 events delivered', () => allDelivered(ids), WAIT_MS);
  assert.equal(global.path.answered, 300);
  assert.ok(global.path.max <= GLOBAL_CAP, `at most ${GLOBAL_CAP} POSTs at once (${global.path.max})`);
  assert.deepEqual(new Set((await rowsOf(ids)).map((r) => r.attempts)), new Set([1]), 'one attempt each');
});

test('the global receiver at its share and a hung account at its cap hold every slot; once the global receiver answers, another account\u2019s event goes out ahead of the global receiver\u2019s older events beyond an account\u2019s share', async () => {
  const global = await account('operator-2', { global: true });
  const hung = await account('hung');
  const other = await account('other-2');
  const hungIds = await hangWith('hung', hung, 10, CAP);
  const globalIds = await hangWith('global', global, 200, GLOBAL_CAP);
  // Due after every one of the global receiver's events.
  const [otherId] = await queue(other.template, 1, Date.now() + 1000);
  // The rule's limit: 12 and 4 are the 16 slots, and both receivers hold theirs until they answer (or time out).
  await sleep(1500);
  assert.equal((await rowsOf([otherId!]))[0]!.state, 'pending');
  assert.equal(global.path.open, GLOBAL_CAP);
  assert.equal(hung.path.open, CAP);
  // The global receiver answers, in 10–30 ms from now on: its events beyond an account's share come after the other's.
  release(global.path);
  global.path.mode = 'slow';
  await waitUntil('the other account\u2019s event delivered', () => allDelivered([otherId!]), WAIT_MS);
  await waitUntil('the global receiver\u2019s events delivered', () => allDelivered(globalIds), WAIT_MS);
  const [delivered] = await rowsOf([otherId!]);
  const before = (await rowsOf(globalIds)).filter((r) => r.delivered_at! < delivered!.delivered_at!).length;
  // In due order alone it would have waited for all 200 (it is due after them); it was claimed with the first slots freed.
  assert.ok(before < 100, `${before} of the global receiver's 200 events delivered before the other account's`);
  assert.ok(global.path.max <= GLOBAL_CAP, `at most ${GLOBAL_CAP} at once at the global receiver (${global.path.max})`);
  // The hung receiver held its cap throughout, no more.
  assert.equal(hung.path.max, CAP);
  assert.equal(hung.path.answered, 0);
  release(hung.path);
  await waitUntil('the hung receiver\u2019s events delivered', () => allDelivered(hungIds), WAIT_MS);
});

test('with the global receiver at its share, one account\u2019s POST in flight leaves the last free slots to the other accounts (a claim waits for one free slot, not a batch)', async () => {
  const global = await account('operator-3', { global: true });
  const slow = await account('one-open');
  const other = await account('other-3');
  const globalIds = await hangWith('global', global, 20, GLOBAL_CAP);
  const slowIds = await hangWith('one-open', slow, 1, 1);
  const [otherId] = await queue(other.template, 1);
  server.webhooks!.wake();
  // 13 POSTs hang and 3 slots are free: the other account's event goes out at the next claim. Until a review found
  // it, the worker waited for a quarter of the slots (4) to be free, so the event stayed pending until a hung POST
  // ended: here after the 100 s time limit, which the bound below is half of.
  await waitUntil('the other account\u2019s event delivered while 13 POSTs hang', () => allDelivered([otherId!]), TIMEOUT_MS / 2);
  assert.equal(global.path.open, GLOBAL_CAP);
  assert.equal(slow.path.open, 1);
  release(global.path);
  release(slow.path);
  await waitUntil('the held events delivered', () => allDelivered([...globalIds, ...slowIds]), WAIT_MS);
});

/** Another worker on the test server's database, as another instance's (`globalConcurrency`: its --webhook-global-concurrency). */
function worker(opts: { globalConcurrency?: number } = {}): WebhookWorker {
  const { logger } = capturedLogger('warn');
  return new WebhookWorker({
    db: server.store.db, dialect: server.store.dialect, clock: systemClock, policy: POLICY, log: logger, secret: GLOBAL_SECRET, keys: loadValueKeys(server.dataDir),
    egress: { allowNetworks: LOOPBACK, resolvers: [], dnsTimeoutMs: 500, dnsAttempts: 1, timeoutMs: TIMEOUT_MS },
    globalUrl: `http://127.0.0.1:${port}${GLOBAL_PATH}`,
    ...opts,
  });
}

test('two workers sharing the database hold the cap between them', async () => {
  const shared = await account('shared');
  const second = worker();
  second.start();
  try {
    shared.path.mode = 'hang';
    const ids = await queue(shared.template, 30);
    // Both look at once (on PostgreSQL their claims run on two connections).
    server.webhooks!.wake();
    second.wake();
    await waitUntil(`the hung receiver holds ${CAP} POSTs`, async () => shared.path.open >= CAP, WAIT_MS);
    // Each worker polls every 50 ms: give them many chances to take more.
    await sleep(1000);
    assert.equal(shared.path.open, CAP);
    assert.equal(shared.path.max, CAP, `at most ${CAP} at once over both workers (${shared.path.max})`);
    release(shared.path);
    shared.path.mode = 'slow';
    await waitUntil('30 events delivered', () => allDelivered(ids), WAIT_MS);
    assert.ok(shared.path.max <= CAP, `at most ${CAP} at once over both workers (${shared.path.max})`);
    assert.deepEqual(new Set((await rowsOf(ids)).map((r) => r.attempts)), new Set([1]));
  } finally {
    await second.stop();
  }
});

/** The webhook time limit the claims below assume. */
const CLAIM_TIMEOUT_MS = 15_000;

/**
 * Rows like `template` for the claims below: `add(receiver, n, state)` writes `n` of a receiver in `state`, the pending
 * ones due 7 ms apart in the order written (or later, when `later`), those sending under a live lease (or `lease` ms
 * from now) claimed now (or at `claimedAt`).
 */
function rowsAdder(template: Row, now: number) {
  const { id: _, ...copy } = template;
  let due = now - 100_000;
  return async (receiver: string | null, n: number, state: 'pending' | 'sending', opts: { lease?: number; later?: boolean; claimedAt?: number } = {}) => {
    const rows = Array.from({ length: n }, () => ({
      ...copy, receiver, event_id: randomUUID(), state, attempts: 0, next_attempt_at: opts.later ? now + 60_000 : (due += 7),
      lease_until: state === 'sending' ? now + (opts.lease ?? 60_000) : null, claim_token: state === 'sending' ? 'someone' : null,
      last_error: null, response: null, delivered_at: null, created_at: now, updated_at: opts.claimedAt ?? now,
    }));
    return (await server.store.db.insertInto('webhook_outbox').values(rows).returning('id').execute()).map((r) => r.id);
  };
}

/** One claim at `now` with the default shares, as the worker makes it. */
const claimAt = (now: number) => (limit: number) =>
  claimFairShare(server.store.db, server.store.dialect, {
    now, limit, leaseUntil: now + 300_000, token: randomUUID(), cap: CAP, globalCap: GLOBAL_CAP, claimedSince: busySince(now, CLAIM_TIMEOUT_MS),
  });
const sortedIds = (rows: { id: number }[]) => rows.map((r) => r.id).sort((x, y) => x - y);

test('one claim takes, per receiver, at most the cap less its events sending under a live lease, oldest first', async () => {
  const { template } = await account('claims');
  // The server's worker would claim these too: the tests from here on claim alone.
  await server.webhooks!.stop();
  const now = Date.now();
  const add = rowsAdder(template, now);
  const [a, b, c, d, e] = ['account:900001', 'account:900002', 'account:900003', 'account:900004', 'account:900005'];
  const pending = new Map<string | null, number[]>();
  // Interleaved, so that due order and receivers cross.
  for (let round = 0; round < 6; round++) {
    for (const [receiver, n] of [[a, 6], [b, 2], [c, 5], [d, 3], [e, 5], [null, 5], [GLOBAL_RECEIVER, 1]] as const) {
      if (round < n) pending.set(receiver, [...(pending.get(receiver) ?? []), ...(await add(receiver, 1, 'pending'))]);
    }
  }
  await add(a, 1, 'sending');
  await add(c, CAP, 'sending');
  await add(d, 2, 'sending', { lease: -1000 }); // leases run out: not counted (the takeover claim takes them)
  // A dead worker's: leases still live, but claimed longer ago than a live worker holds an event (busySince).
  await add(e, CAP, 'sending', { claimedAt: busySince(now, CLAIM_TIMEOUT_MS) - 1 });
  await add(null, 1, 'sending');
  await add(GLOBAL_RECEIVER, 3, 'pending', { later: true }); // not due
  const expected = new Map<string | null, number[]>([
    [a, pending.get(a)!.slice(0, CAP - 1)],
    [b, pending.get(b)!],
    [c, []],
    [d, pending.get(d)!],
    [e, pending.get(e)!.slice(0, CAP)],
    [null, pending.get(null)!.slice(0, CAP - 1)],
    [GLOBAL_RECEIVER, pending.get(GLOBAL_RECEIVER)!],
  ]);
  const eligible = [...expected.values()].flat().sort((x, y) => x - y); // ids in due order: they were queued so

  const claim = claimAt(now);
  // A small claim: the oldest eligible events, whatever their receivers.
  const first = await claim(5);
  assert.deepEqual(sortedIds(first), eligible.slice(0, 5));
  assert.ok(first.every((r) => r.state === 'sending' && r.attempts === 1));
  // A large one: the rest of each receiver's share, and nothing more, however many slots are free.
  const rest = await claim(100);
  assert.deepEqual(sortedIds(rest), eligible.slice(5));
  const taken = [...first, ...rest];
  for (const [receiver, ids] of expected) {
    assert.deepEqual(sortedIds(taken.filter((r) => r.receiver === receiver)), ids, `receiver ${receiver}`);
  }
  // Every receiver is at its cap or out of due events now.
  assert.deepEqual(await claim(100), []);
});

test(`the global receiver's claims: up to its share (${GLOBAL_CAP}) with those sending, its events beyond an account's share (${CAP}) after every other receiver's eligible ones, each event once`, async () => {
  // The worker is stopped (above); the events the test before left waiting, out of the way.
  await server.store.db.updateTable('webhook_outbox').set({ state: 'delivered' }).where('state', 'in', ['pending', 'sending']).execute();
  const template = await server.store.db.selectFrom('webhook_outbox').selectAll().limit(1).executeTakeFirstOrThrow();
  const now = Date.now();
  const add = rowsAdder(template, now);
  // The global receiver's 20 are the oldest; then an account's 6 and 2 without a receiver, interleaved.
  const global = await add(GLOBAL_RECEIVER, 20, 'pending');
  const later: number[] = [];
  for (let i = 0; i < 6; i++) later.push(...(await add('account:900011', 1, 'pending')), ...(i < 2 ? await add(null, 1, 'pending') : []));
  await add(GLOBAL_RECEIVER, 1, 'sending');
  const accountIds = later.filter((_, i) => i !== 1 && i !== 3); // the account's, in due order
  const legacy = [later[1]!, later[3]!];
  const claim = claimAt(now);
  // 8 free slots: the global receiver's oldest 3 (an account's share with the one sending), then the others' oldest 5 of 6
  // eligible, though 8 of the global receiver's are older than any of them.
  const first = await claim(8);
  const eligibleOthers = [...accountIds.slice(0, CAP), ...legacy].sort((x, y) => x - y);
  assert.deepEqual(sortedIds(first), [...global.slice(0, CAP - 1), ...eligibleOthers.slice(0, 5)]);
  // Then the last other one, and the global receiver's up to its share: 11 more with the one sending.
  const rest = await claim(100);
  assert.deepEqual(sortedIds(rest), [...global.slice(CAP - 1, GLOBAL_CAP - 1), ...eligibleOthers.slice(5)]);
  assert.equal(new Set([...first, ...rest].map((r) => r.id)).size, first.length + rest.length, 'each event claimed once');
  assert.deepEqual(await claim(100), []);
});

test('a worker whose global share is 2 (its globalConcurrency, from --webhook-global-concurrency) holds the global receiver to it', async () => {
  // The server's worker is stopped (above): this one delivers alone.
  await server.store.db.updateTable('webhook_outbox').set({ state: 'delivered' }).where('state', 'in', ['pending', 'sending']).execute();
  const template = await server.store.db.selectFrom('webhook_outbox').selectAll().where('receiver', '=', GLOBAL_RECEIVER).limit(1).executeTakeFirstOrThrow();
  const path = pathOf(GLOBAL_PATH);
  path.mode = 'hang';
  path.max = 0;
  const own = worker({ globalConcurrency: 2 });
  own.start();
  try {
    const ids = await queue(template, 10);
    own.wake();
    await waitUntil('the global receiver holds 2 POSTs', async () => path.open >= 2, WAIT_MS);
    await sleep(1000);
    assert.equal(path.open, 2);
    assert.equal(path.max, 2);
    release(path);
    await waitUntil('10 events delivered', () => allDelivered(ids), WAIT_MS);
    assert.equal(path.max, 2);
  } finally {
    await own.stop();
  }
});
