/**
 * The email-method sunset on every path (CONTRACT §6; BR 3.2.2.4.4, .13, .14):
 * after the cut-off, or for a blocklisted domain, no DCV email is sent or
 * confirmed. ResendDCVEmail answers -160, a queued email is cancelled when its
 * turn comes, the confirmation page refuses, order creation refuses, and
 * earlier validations are reported unusable (evidence, internal API, webhook).
 * Runs on SQLite and, with DCVD_TEST_DATABASE=postgres, on PostgreSQL.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { cryptoRandom, ManualClock } from '../src/deps.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { ConfirmationService, listEvidence } from '../src/orders/confirmation.ts';
import { loadValueKeys } from '../src/orders/random-values.ts';
import { queueDcvEmail } from '../src/orders/dcv-email.ts';
import { OrderRepository } from '../src/orders/orders.ts';
import { AdminService } from '../src/admin/service.ts';
import { OrderError } from '../src/orders/orders.ts';
import { queueUnusableWebhooks, UNUSABLE_EVENT } from '../src/webhooks/webhooks.ts';
import { daysUntilCutoff, emailDcvRefusal, emailMethodsPhase } from '../src/orders/email-dcv-policy.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, GET_PATH, PASSWORD, startTestServer, type TestServer } from './support/server.ts';
import { csrfOf, mailedCode } from './support/confirm.ts';
import { createOrder, errorBody, getList, OK, resend } from './support/dcv.ts';
import { runDcvd } from './support/cli.ts';

const DAY = 24 * 3600_000;
const START = Date.UTC(2027, 2, 1, 9, 0, 0);
const CUTOFF = Date.UTC(2027, 2, 10);
const TOKEN = 'sunset-admin-token-0123456789abcdefghij';
const SECRET = 'sunset-webhook-secret';
const clock = new ManualClock(START);
let sink: SmtpSink;
let server: TestServer;
let hooks: http.Server;

before(async () => {
  sink = await startSmtpSink();
  hooks = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', () => resolve()));
  server = await startTestServer(
    {
      adminListen: { host: '127.0.0.1', port: 0 },
      adminToken: TOKEN,
      emailDcv: { blocklist: ['blocked.example.com'], cutoff: CUTOFF },
      brVersion: '2.2.6',
      webhooks: { url: `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`, secret: SECRET },
      // Emails go out only when something wakes the worker (a resend does), so a test can leave one queued.
      dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, randomValueTtlMs: 20 * DAY, resendIntervalMs: 0, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 3600_000 } }),
    },
    { clock },
  );
  await server.createAccount('alice');
});
after(async () => {
  await server.stop();
  await sink.close();
  await new Promise<void>((resolve) => hooks.close(() => resolve()));
});

const get = (path: string) => server.request({ method: 'GET', path });
const submit = (fields: Record<string, string>) =>
  server.post('/dcv/confirm', form(fields), { headers: { 'sec-fetch-site': 'same-origin', origin: 'null', 'user-agent': 'dcvd-test/1' } });
const admin = async (path: string) => {
  const r = await server.request({ admin: true, method: 'GET', path, headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: r.status, json: JSON.parse(r.body) };
};
const orderRow = (orderNumber: number) => server.store.db.selectFrom('orders').selectAll().where('order_number', '=', orderNumber).executeTakeFirstOrThrow();

// Made before the cut-off, used after it.
let validated: number;
let pending: { orderNumber: number; path: string; code: string };
let queuedMessageId: string;

test('the policy function: cut-off, blocklist (and below), phases and days left', () => {
  const policy = { blocklist: ['blocked.example.com'], cutoff: CUTOFF };
  assert.equal(emailDcvRefusal(policy, 'www.example.com', START), undefined);
  assert.equal(emailDcvRefusal(policy, 'blocked.example.com', START), 'blocklist');
  assert.equal(emailDcvRefusal(policy, 'a.b.blocked.example.com', START), 'blocklist');
  assert.equal(emailDcvRefusal(policy, 'notblocked.example.com', START), undefined);
  assert.equal(emailDcvRefusal(policy, 'www.example.com', CUTOFF), 'cutoff');
  assert.equal(emailMethodsPhase(policy, Date.UTC(2026, 2, 14)), 'usable');
  assert.equal(emailMethodsPhase(policy, Date.UTC(2026, 2, 15)), 'discouraged');
  assert.equal(emailMethodsPhase(policy, CUTOFF), 'refused');
  assert.equal(daysUntilCutoff(policy, START), 9);
  assert.equal(daysUntilCutoff(policy, CUTOFF + DAY), 0);
});

test('between 2026-03-15 and the cut-off: a warning at start (SHOULD NOT, BR 3.2.2.4.4) and the days left as a metric', async () => {
  const warning = server.logs.find((l) => String(l.msg).startsWith('the email DCV methods SHOULD NOT be used since 2026-03-15 (BR 3.2.2.4.4'));
  assert.ok(warning);
  assert.equal(warning.level, 40);
  assert.equal(warning.daysLeft, 9);
  assert.match(await server.metrics.render(), /\ndcvd_email_dcv_days_left 9\n/);
});

test('a blocklisted domain: ResendDCVEmail answers -160 and sends nothing, order creation with an email refuses, its code cannot confirm', async () => {
  await createOrder(server, clock, 'alice', { domain: 'www.blocked.example.com', orderNumber: 8000001 });
  const sent = sink.messages.length;
  assert.equal((await resend(server, 'alice', { orderNumber: 8000001, dcvEmailAddress: 'admin@blocked.example.com' })).body, errorBody(-160));
  assert.equal((await resend(server, 'alice', { orderNumber: 8000001 })).body, errorBody(-160), 'before the -3 of an order without address');
  assert.equal((await server.store.db.selectFrom('outbox').select('id').where('order_id', '=', (await orderRow(8000001)).id).execute()).length, 0);
  assert.equal(sink.messages.length, sent);

  const service = new AdminService({ db: server.store.db, clock, random: cryptoRandom, dcvEmail: () => assert.fail('no email may be made'), emailPolicy: { blocklist: ['blocked.example.com'], cutoff: CUTOFF } });
  await assert.rejects(service.createOrder({ account: 'alice', domain: 'shop.blocked.example.com', dcvMethod: 'email', dcvEmail: 'admin@blocked.example.com' }), (err: unknown) => {
    assert.ok(err instanceof OrderError);
    assert.equal(err.kind, 'conflict');
    assert.match(err.message, /no DCV email for shop\.blocked\.example\.com: the domain is on the email DCV blocklist/);
    return true;
  });
  assert.equal(await server.store.db.selectFrom('orders').select('id').where('domain', '=', 'shop.blocked.example.com').executeTakeFirst(), undefined, 'nothing written');

  // A code mailed before the domain was blocklisted: this instance (no blocklist) mails it, one with the blocklist refuses it.
  const m = await mailedCode(server, sink, clock, { login: 'alice', orderNumber: 8000002, domain: 'www.later-blocked.example.org', address: 'admin@later-blocked.example.org' });
  const strict = new ConfirmationService({
    db: server.store.db,
    clock,
    keys: loadValueKeys(server.dataDir),
    policy: { failureLimit: 100, windowMs: 60_000 },
    emailPolicy: { blocklist: ['later-blocked.example.org'], cutoff: CUTOFF },
  });
  assert.deepEqual(await strict.lookup(m.code, '127.0.0.9'), { state: 'refused', refusal: 'blocklist' });
  const decided = await strict.decide(m.code, 'approve', { ip: '127.0.0.9', userAgent: undefined });
  assert.equal(decided.outcome, 'refused');
  assert.equal((await orderRow(8000002)).dcv_status, 'awaiting');
});

test('before the cut-off: a validation, a mailed code and an email still queued', async () => {
  const a = await mailedCode(server, sink, clock, { login: 'alice', orderNumber: 8100001, domain: 'www.example.com', address: 'admin@example.com' });
  const page = await get(new URL(a.link).pathname);
  assert.equal((await submit({ code: a.code, csrf: csrfOf(page.body), decision: 'approve' })).status, 200);
  validated = 8100001;
  const evidence = (await admin(`/v1/orders/${validated}/evidence`)).json;
  assert.deepEqual([evidence[0].usable, evidence[0].unusableReason, evidence[0].brVersion, evidence[0].emailMethodsUsableUntil], [true, null, '2.2.6', new Date(CUTOFF).toISOString()]);
  await server.webhooks!.idle();
  const hook = await server.store.db.selectFrom('webhook_outbox').select('body').where('event', '=', 'dcv.validated').executeTakeFirstOrThrow();
  assert.equal(JSON.parse(hook.body).evidence.usable, true);

  const b = await mailedCode(server, sink, clock, { login: 'alice', orderNumber: 8100002, domain: 'shop.example.com', address: 'admin@example.com' });
  const path = new URL(b.link).pathname;
  pending = { orderNumber: 8100002, path, code: b.code };

  // Queued, not yet delivered (nothing woke the worker).
  const order = await createOrder(server, clock, 'alice', { domain: 'mail.example.com', orderNumber: 8100003 });
  await getList(server, 'alice', 'mail.example.com');
  const queued = await queueDcvEmail(
    server.store.db,
    { keys: loadValueKeys(server.dataDir), random: cryptoRandom, randomValueTtlMs: 20 * DAY, resendIntervalMs: 0 },
    { order, recipient: { address: 'admin@example.com', adn: 'example.com', source: 'constructed', dnsDetail: null }, templateRef: null, now: clock.now() },
  );
  assert.ok(queued.queued);
  queuedMessageId = queued.messageId;
});

test('after the cut-off: no email is offered, resent or delivered; the page refuses; validations are reported unusable', async () => {
  // The pending order's form, shown an hour before the cut-off and sent after it (a form is good for 2 hours of the server's clock).
  clock.set(CUTOFF - 3600_000);
  const csrf = csrfOf((await get(pending.path)).body);
  clock.set(CUTOFF + 3600_000);
  const sent = sink.messages.length;

  // GetDCVEmailAddressList and ResendDCVEmail: -160.
  const list = await server.post(GET_PATH, form({ loginName: 'alice', loginPassword: PASSWORD, domainName: 'www.example.com', product: '801' }));
  assert.match(list.body, /^-160\n/);
  assert.equal((await resend(server, 'alice', { orderNumber: pending.orderNumber })).body, errorBody(-160));
  assert.equal((await resend(server, 'alice', { orderNumber: validated })).body, errorBody(-160));
  assert.ok(server.logs.some((l) => l.msg === 'email DCV refused by policy' && l.policy === 'cutoff' && l.orderNumber === pending.orderNumber));

  // The queued email is cancelled when its turn comes, and the outbox says why.
  server.outbox!.wake();
  await server.outbox!.idle();
  const row = await server.store.db.selectFrom('outbox').selectAll().where('message_id', '=', queuedMessageId).executeTakeFirstOrThrow();
  assert.deepEqual([row.state, row.sealed_code, row.delivered_at], ['cancelled', null, null]);
  assert.match(row.last_error ?? '', /^not sent: email DCV methods may not be relied upon from 2027-03-10 \(BR 3\.2\.2\.4\.4, \.13, \.14; --email-dcv-cutoff\)$/);
  const env: Record<string, string> = server.databaseUrl ? { DCVD_DATABASE_URL: server.databaseUrl } : {};
  const outbox = runDcvd(server.dataDir, ['outbox', 'list', '--state', 'cancelled', '--json'], { env });
  assert.equal(outbox.code, 0, outbox.stderr);
  assert.ok((JSON.parse(outbox.stdout) as { messageId: string; lastError: string }[]).some((e) => e.messageId === queuedMessageId && e.lastError.includes('2027-03-10')));
  assert.equal(sink.messages.length, sent, 'nothing was sent');

  // The confirmation page: the link and the form both refuse, with a clear page; nothing changes.
  const shown = await get(pending.path);
  assert.equal(shown.status, 403);
  assert.match(shown.body, /<h1>Email validation is no longer accepted<\/h1>/);
  assert.doesNotMatch(shown.body, /value="approve"/);
  const posted = await submit({ code: pending.code, csrf, decision: 'approve' });
  assert.equal(posted.status, 403);
  assert.match(posted.body, /no longer accepts approval by email/);
  assert.equal((await orderRow(pending.orderNumber)).dcv_status, 'awaiting');
  assert.equal((await listEvidence(server.store.db, { orderId: (await orderRow(pending.orderNumber)).id })).length, 0);

  // The earlier validation: unusable in the internal API and in `order show` (with the operator's cut-off).
  const evidence = (await admin(`/v1/orders/${validated}/evidence`)).json;
  assert.equal(evidence[0].usable, false);
  assert.match(evidence[0].unusableReason, /email DCV methods may not be relied upon from 2027-03-10/);
  assert.equal((await admin(`/v1/orders/${validated}`)).json.evidence[0].usable, false);
  // The CLI judges at the real time, so it is given a cut-off that has passed in real time too.
  const cli = runDcvd(server.dataDir, ['order', 'show', String(validated), '--json', '--email-dcv-cutoff', '2026-01-01'], { env });
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(JSON.parse(cli.stdout).evidence[0].usable, false);
  const text = runDcvd(server.dataDir, ['order', 'show', String(validated)], { env: { ...env, DCVD_EMAIL_DCV_CUTOFF: '2026-01-01' } });
  assert.match(text.stdout, /BR 3\.2\.2\.4\.4 Email to a Constructed Address, version 2\.2\.6/);
  assert.match(text.stdout, /not usable: email DCV methods may not be relied upon from 2026-01-01/);

  // The ordering system is told once per validated order, by a signed webhook.
  const validatedId = (await orderRow(validated)).id;
  assert.equal(await queueUnusableWebhooks(server.store.db, server.store.dialect, { url: 'http://127.0.0.1:9/unused', secret: SECRET }, { blocklist: [], cutoff: CUTOFF }, clock.now()), 1);
  assert.equal(await queueUnusableWebhooks(server.store.db, server.store.dialect, { url: 'http://127.0.0.1:9/unused', secret: SECRET }, { blocklist: [], cutoff: CUTOFF }, clock.now()), 0, 'once');
  const event = await server.store.db.selectFrom('webhook_outbox').selectAll().where('order_id', '=', validatedId).where('event', '=', UNUSABLE_EVENT).executeTakeFirstOrThrow();
  const body = JSON.parse(event.body);
  assert.equal(body.type, 'dcv.unusable');
  assert.equal(body.order.orderNumber, validated);
  assert.deepEqual([body.evidence.usable, body.evidence.brSection], [false, '3.2.2.4.4']);
  assert.match(await server.metrics.render(), /\ndcvd_email_dcv_days_left 0\n/);
});

test('order creation with a first email after the cut-off refuses (AdminService, behind the internal API; the CLI)', async () => {
  const service = new AdminService({ db: server.store.db, clock, random: cryptoRandom, dcvEmail: () => assert.fail('no email may be made'), emailPolicy: { blocklist: [], cutoff: CUTOFF } });
  await assert.rejects(service.createOrder({ account: 'alice', domain: 'late.example.com', dcvMethod: 'email', dcvEmail: 'admin@example.com' }), /email DCV methods may not be relied upon from 2027-03-10/);
  // Without an email the order is still created (another method can validate it).
  const plain = await service.createOrder({ account: 'alice', domain: 'late.example.com', dcvMethod: 'email' });
  assert.equal(plain.queuedEmail, null);
  const env: Record<string, string> = server.databaseUrl ? { DCVD_DATABASE_URL: server.databaseUrl } : {};
  const cli = runDcvd(server.dataDir, ['order', 'create', '--account', 'alice', '--domain', 'cli.example.com', '--dcv-email', 'admin@example.com', '--email-dcv-cutoff', '2020-01-01'], { env });
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /no DCV email for cli\.example\.com: email DCV methods may not be relied upon from 2020-01-01/);
  assert.equal(await new OrderRepository(server.store.db, clock, cryptoRandom).list().then((all) => all.some((o) => o.domain === 'cli.example.com')), false);
});
