/**
 * ResendDCVEmail end to end (seed, CONTRACT §1, §4, §5): a real server over
 * HTTPS, a real SMTP server (smtp-server) reading what arrives with mailparser.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { ManualClock } from '../src/deps.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { canonicalCode, codeState, hashCode, loadValueKeys, RandomValueStore } from '../src/orders/random-values.ts';
import { OrderRepository } from '../src/orders/orders.ts';
import { cryptoRandom } from '../src/deps.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, PASSWORD, RESEND_PATH, startTestServer, type TestServer } from './support/server.ts';
import { codeIn, createOrder, createTemplate, errorBody, getList, OK, resend } from './support/dcv.ts';

const DAY = 24 * 3600_000;
const TTL = 7 * DAY;
const clock = new ManualClock(Date.UTC(2026, 0, 10, 9, 0, 0));
let sink: SmtpSink;
let server: TestServer;

before(async () => {
  sink = await startSmtpSink();
  server = await startTestServer(
    {
      httpListen: { host: '127.0.0.1', port: 0 },
      dcvEmail: defaultDcvEmailConfig({
        smtpUrl: sink.url,
        mailFrom: 'dcv@ca.example',
        publicUrl: 'https://dcv.ca.example/',
        caName: 'Example Trust CA',
        randomValueTtlMs: TTL,
        outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50 },
      }),
    },
    { clock },
  );
  await server.createAccount('alice');
  await server.createAccount('bob');
  await server.createAccount('vera', { permissions: ['auto-apply', 'voucher'] });
});
after(async () => {
  await server.stop();
  await sink.close();
});

/** Waits for the next `n` emails and returns them. */
async function next(n = 1) {
  const before = sink.messages.length;
  const all = await sink.waitFor(before + n);
  await server.outbox!.idle();
  return all.slice(before);
}

async function outboxRow(messageId: string | undefined) {
  return server.store.db.selectFrom('outbox').selectAll().where('message_id', '=', messageId ?? '').executeTakeFirstOrThrow();
}

const orders = () => new OrderRepository(server.store.db, clock, cryptoRandom);

test('the first DCV email: recipient, subject, code, link and Message-ID as the outbox recorded them', async () => {
  await createOrder(server, clock, 'alice', { domain: 'www.example.com', orderNumber: 1000001 });
  await getList(server, 'alice', 'www.example.com');
  const r = await resend(server, 'alice', { orderNumber: 1000001, dcvEmailAddress: 'admin@example.com' });
  assert.equal(r.body, OK);
  assert.equal(r.headers['content-type'], 'application/x-www-form-urlencoded');

  const [mail] = await next();
  assert.deepEqual(mail!.envelope.rcptTo, ['admin@example.com']);
  assert.equal(mail!.envelope.mailFrom, 'dcv@ca.example');
  assert.deepEqual(mail!.parsed.to, ['admin@example.com']);
  assert.deepEqual(mail!.parsed.from, ['dcv@ca.example']);
  assert.equal(mail!.parsed.subject, 'Example Trust CA: domain control validation for www.example.com (order 1000001)');
  const code = codeIn(mail!.parsed.text);
  assert.equal(canonicalCode(code), code);
  const link = `https://dcv.ca.example/dcv/confirm/${code}`;
  assert.ok(mail!.parsed.text!.includes(link));
  // HTML-escaped by the engine ('/' as &#x2F;), which every HTML reader decodes back.
  assert.ok(mail!.parsed.html!.replaceAll('&#x2F;', '/').includes(`href="${link}"`));
  assert.match(mail!.parsed.text!, /Authorization domain: +example\.com\n/, 'the ADN of admin@example.com');
  // The CA's identity (issue 13): named in body and HTML, the ADN under the page's label, the
  // Message-ID on the sender's domain.
  assert.match(mail!.parsed.text!, /from Example Trust CA for www\.example\.com\./);
  assert.match(mail!.parsed.text!, /Certificate authority: +Example Trust CA\n/);
  assert.match(mail!.parsed.html!, /Certificate authority<\/td><td[^>]*>Example Trust CA</);
  assert.match(mail!.parsed.html!, /Authorization domain<\/td><td[^>]*>example\.com</);
  assert.match(mail!.parsed.messageId!, /^<[0-9a-f]{32}@ca\.example>$/);
  assert.match(mail!.parsed.text!, new RegExp(`expire on ${new Date(clock.now() + TTL).toISOString().slice(0, 10)} 09:00:00 UTC`));

  const row = await outboxRow(mail!.parsed.messageId);
  assert.deepEqual([row.state, row.attempts, row.recipient, row.mail_from, row.subject], ['delivered', 1, 'admin@example.com', 'dcv@ca.example', mail!.parsed.subject]);
  assert.match(row.response ?? '', /^250 /);

  // Stored only as a keyed hash; nothing in the database, its WAL or the logs holds the code.
  const value = await new RandomValueStore(server.store.db, loadValueKeys(server.dataDir)).findByCode(code.toLowerCase());
  assert.ok(value);
  assert.equal(value.value_hash, hashCode(loadValueKeys(server.dataDir), code));
  assert.deepEqual([value.recipient, value.adn, value.address_source, value.expires_at - value.created_at], ['admin@example.com', 'example.com', 'constructed', TTL]);
  assert.equal(codeState(value, clock.now()), 'active');
  if (server.databaseUrl === undefined) {
    for (const f of readdirSync(server.dataDir).filter((n) => n.startsWith('dcvd.sqlite'))) {
      assert.ok(!readFileSync(join(server.dataDir, f)).includes(code), `${f} holds the code`);
    }
  }
  assert.ok(!JSON.stringify(server.logs).includes(code), 'a log line holds the code');
  assert.ok(server.logs.some((l) => l.msg === 'dcv email delivered' && l.messageId === row.message_id));
});

test('random values: reused only for an identical resend; otherwise new, and the old ones stop working', async () => {
  const keys = loadValueKeys(server.dataDir);
  const values = new RandomValueStore(server.store.db, keys);
  await createOrder(server, clock, 'alice', { domain: 'shop.example.com', orderNumber: 1100001 });
  await getList(server, 'alice', 'shop.example.com');
  await createTemplate(server, clock, null, 71, { subject: 'Check {{domain}}', text: 'Validation code: {{validationCode}}\n{{confirmationUrl}}\n' });

  assert.equal((await resend(server, 'alice', { orderNumber: 1100001, dcvEmailAddress: 'admin@example.com' })).body, OK);
  const first = codeIn((await next())[0]!.parsed.text);

  // Same address, same template, not expired: the same value, in a new email with its own Message-ID.
  clock.advance(61_000);
  assert.equal((await resend(server, 'alice', { orderNumber: 1100001 })).body, OK);
  const [again] = await next();
  assert.equal(codeIn(again!.parsed.text), first);
  clock.advance(61_000);
  assert.equal((await resend(server, 'alice', { orderNumber: 1100001, dcvEmailAddress: 'ADMIN@Example.COM'.replace('ADMIN', 'admin') })).body, OK);
  assert.equal(codeIn((await next())[0]!.parsed.text), first, 'the same address in another case is the same recipient');

  // Another address: a new value; the old one is superseded.
  clock.advance(61_000);
  assert.equal((await resend(server, 'alice', { orderNumber: 1100001, dcvEmailAddress: 'webmaster@shop.example.com' })).body, OK);
  const [moved] = await next();
  const second = codeIn(moved!.parsed.text);
  assert.notEqual(second, first);
  assert.match(moved!.parsed.text!, /Authorization domain: +shop\.example\.com\n/);
  assert.equal(codeState((await values.findByCode(first))!, clock.now()), 'superseded');
  assert.equal(codeState((await values.findByCode(second))!, clock.now()), 'active');

  // Another template: a new value.
  clock.advance(61_000);
  assert.equal((await resend(server, 'alice', { orderNumber: 1100001, dcvTemplateID: 71 })).body, OK);
  const [templated] = await next();
  assert.equal(templated!.parsed.subject, 'Check shop.example.com');
  const third = codeIn(templated!.parsed.text);
  assert.notEqual(third, second);
  assert.equal(codeState((await values.findByCode(second))!, clock.now()), 'superseded');

  // Expired (the configured 7 days): a new value.
  clock.advance(TTL);
  assert.equal(codeState((await values.findByCode(third))!, clock.now()), 'expired');
  assert.equal((await resend(server, 'alice', { orderNumber: 1100001, dcvTemplateID: 71 })).body, OK);
  const fourth = codeIn((await next())[0]!.parsed.text);
  assert.ok(![first, second, third].includes(fourth));

  // Spent once, atomically; a spent code is not reused and cannot be spent again.
  const v4 = (await values.findByCode(fourth))!;
  const spends = await Promise.all([values.spend(v4.id, clock.now()), values.spend(v4.id, clock.now())]);
  assert.deepEqual(spends.sort(), [false, true]);
  assert.equal(codeState((await values.findByCode(fourth))!, clock.now()), 'spent');
  const all = await server.store.db.selectFrom('random_values').select('id').where('order_id', '=', v4.order_id).execute();
  assert.equal(all.length, 4);
  // Every email but the first had its own Message-ID.
  const ids = await server.store.db.selectFrom('outbox').select('message_id').where('order_id', '=', v4.order_id).execute();
  assert.equal(new Set(ids.map((i) => i.message_id)).size, 6);
});

test('the minimum interval: a faster resend is -160, also when requests race', async () => {
  await createOrder(server, clock, 'alice', { domain: 'fast.example.com', orderNumber: 1200001 });
  await getList(server, 'alice', 'fast.example.com');
  // Counted from before each resend: the email may arrive before the answer is read (next() counts
  // from when it is called, and missed it on PostgreSQL: "8 of 9 messages").
  const first = sink.messages.length;
  const bodies = await Promise.all(
    Array.from({ length: 12 }, () => resend(server, 'alice', { orderNumber: 1200001, dcvEmailAddress: 'admin@example.com' }).then((r) => r.body)),
  );
  assert.equal(bodies.filter((b) => b === OK).length, 1);
  assert.equal(bodies.filter((b) => b === errorBody(-160)).length, 11);
  await sink.waitFor(first + 1);
  await server.outbox!.idle();
  clock.advance(59_999);
  assert.equal((await resend(server, 'alice', { orderNumber: 1200001 })).body, errorBody(-160));
  // A refused resend to another offered address changes nothing: the order's mirror of its first domain,
  // written with the order's lock, is rolled back with the refused claim.
  const state = () =>
    server.store.db
      .selectFrom('orders as o')
      .innerJoin('order_domains as d', 'd.order_id', 'o.id')
      .select(['o.dcv_email_address as orderAddress', 'o.last_dcv_email_at as orderLast', 'o.updated_at', 'd.dcv_email_address as domainAddress', 'd.last_dcv_email_at as domainLast'])
      .where('o.order_number', '=', 1200001)
      .executeTakeFirstOrThrow();
  const kept = await state();
  assert.equal(kept.orderAddress, 'admin@example.com');
  assert.equal((await resend(server, 'alice', { orderNumber: 1200001, dcvEmailAddress: 'webmaster@fast.example.com' })).body, errorBody(-160));
  assert.deepEqual(await state(), kept);
  clock.advance(1);
  const second = sink.messages.length;
  assert.equal((await resend(server, 'alice', { orderNumber: 1200001 })).body, OK);
  await sink.waitFor(second + 1);
  await server.outbox!.idle();
  const emails = await server.store.db.selectFrom('outbox as o').innerJoin('orders as d', 'd.id', 'o.order_id').select('o.id').where('d.order_number', '=', 1200001).execute();
  assert.equal(emails.length, 2);
});

test('the order: by orderNumber, else by baseOrderNumber (newest of the chain); another account\u2019s is answered like a missing one', async () => {
  await createOrder(server, clock, 'alice', { domain: 'chain.example.com', orderNumber: 1300001 });
  await createOrder(server, clock, 'alice', { domain: 'chain.example.com', orderNumber: 1300002, baseOrderNumber: 1300001 });
  await getList(server, 'alice', 'chain.example.com');
  assert.equal((await resend(server, 'alice', { baseOrderNumber: 1300001, dcvEmailAddress: 'admin@example.com' })).body, OK);
  assert.equal((await next())[0]!.parsed.subject, 'Example Trust CA: domain control validation for chain.example.com (order 1300002)');
  assert.equal((await orders().findByNumber(1300001))!.dcv_email_address, null, 'the older order of the chain was not touched');

  // Both given: they must agree.
  assert.equal((await resend(server, 'alice', { orderNumber: 1300001, baseOrderNumber: 1000001 })).body, errorBody(-4, 'baseOrderNumber'));

  // bob asks about alice's orders and chains: exactly the answer for numbers that exist nowhere.
  await getList(server, 'bob', 'chain.example.com');
  const theirs = await resend(server, 'bob', { orderNumber: 1300002, dcvEmailAddress: 'admin@example.com' });
  const missing = await resend(server, 'bob', { orderNumber: 9300002, dcvEmailAddress: 'admin@example.com' });
  assert.equal(theirs.body, errorBody(-4, 'orderNumber'));
  assert.equal(theirs.body, missing.body);
  assert.deepEqual([theirs.status, theirs.headers['content-type'], theirs.headers['content-length']], [missing.status, missing.headers['content-type'], missing.headers['content-length']]);
  const theirChain = await resend(server, 'bob', { baseOrderNumber: 1300001 });
  const noChain = await resend(server, 'bob', { baseOrderNumber: 9300001 });
  assert.equal(theirChain.body, errorBody(-4, 'baseOrderNumber'));
  assert.equal(theirChain.body, noChain.body);
  assert.equal((await orders().findByNumber(1300002))!.last_dcv_email_at, clock.now(), 'bob changed nothing');
});

test('-90: a voucher order needs the voucher permission', async () => {
  await createOrder(server, clock, 'alice', { domain: 'voucher.example.com', orderNumber: 1400001, voucher: true });
  await createOrder(server, clock, 'vera', { domain: 'voucher.example.com', orderNumber: 1400002, voucher: true });
  await getList(server, 'alice', 'voucher.example.com');
  await getList(server, 'vera', 'voucher.example.com');
  const denied = await resend(server, 'alice', { orderNumber: 1400001, dcvEmailAddress: 'admin@example.com' });
  assert.equal(denied.body, 'errorCode=-90&errorMessage=Permission+denied+for+using+%27voucher%27+with+%27ResendDCVEmail%27.');
  assert.equal((await resend(server, 'vera', { orderNumber: 1400002, dcvEmailAddress: 'admin@example.com' })).body, OK);
  await next();
});

/** An order decided without a code (the confirmation, which also writes the evidence, is not what this file tests). */
async function decided(orderId: number, status: 'validated' | 'declined'): Promise<void> {
  const now = clock.now();
  for (const table of ['order_domains', 'orders'] as const) {
    const q = server.store.db.updateTable(table).set({ dcv_status: status, dcv_decided_at: now, updated_at: now });
    await (table === 'orders' ? q.where('id', '=', orderId) : q.where('order_id', '=', orderId)).execute();
  }
}

test('-160: the order is not awaiting email DCV', async () => {
  await getList(server, 'alice', 'state.example.com');
  const validated = await createOrder(server, clock, 'alice', { domain: 'state.example.com', orderNumber: 1500001 });
  await decided(validated.id, 'validated');
  const declined = await createOrder(server, clock, 'alice', { domain: 'state.example.com', orderNumber: 1500002 });
  await decided(declined.id, 'declined');
  await createOrder(server, clock, 'alice', { domain: 'state.example.com', orderNumber: 1500003 });
  await orders().cancel(1500003);
  await createOrder(server, clock, 'alice', { domain: 'state.example.com', orderNumber: 1500004, dcvMethod: 'cname' });
  for (const n of [1500001, 1500002, 1500003, 1500004]) {
    assert.equal((await resend(server, 'alice', { orderNumber: n, dcvEmailAddress: 'admin@example.com' })).body, errorBody(-160), String(n));
  }
  const rows = await server.store.db.selectFrom('outbox as o').innerJoin('orders as d', 'd.id', 'o.order_id').select('o.id').where('d.domain', '=', 'state.example.com').execute();
  assert.equal(rows.length, 0);
});

test('dcvEmailAddress: -3 when the order never had one; the 24-hour rule; no header injection', async () => {
  await createOrder(server, clock, 'alice', { domain: 'addr.example.com', orderNumber: 1600001 });
  assert.equal((await resend(server, 'alice', { orderNumber: 1600001 })).body, errorBody(-3, 'dcvEmailAddress'));
  const notOffered = errorBody(-4, 'dcvEmailAddress');
  // Never offered to anyone; offered to bob only; offered for another domain.
  assert.equal((await resend(server, 'alice', { orderNumber: 1600001, dcvEmailAddress: 'admin@example.com' })).body, notOffered);
  await getList(server, 'bob', 'addr.example.com');
  assert.equal((await resend(server, 'alice', { orderNumber: 1600001, dcvEmailAddress: 'admin@example.com' })).body, notOffered);
  await getList(server, 'alice', 'other.example.com');
  assert.equal((await resend(server, 'alice', { orderNumber: 1600001, dcvEmailAddress: 'admin@other.example.com' })).body, notOffered);
  // Offered to alice 24 hours and 1 ms ago: expired.
  await getList(server, 'alice', 'addr.example.com');
  clock.advance(DAY + 1);
  assert.equal((await resend(server, 'alice', { orderNumber: 1600001, dcvEmailAddress: 'admin@example.com' })).body, notOffered);
  await getList(server, 'alice', 'addr.example.com');
  for (const evil of ['admin@example.com\r\nBcc: victim@evil.test', 'admin@example.com\nBcc: victim@evil.test', 'Admin <admin@example.com>', 'admin@example.com, victim@evil.test', 'admin@example.com\u0000']) {
    assert.equal((await resend(server, 'alice', { orderNumber: 1600001, dcvEmailAddress: evil })).body, notOffered, JSON.stringify(evil));
  }
  assert.equal(sink.messages.filter((m) => m.raw.includes('evil.test')).length, 0);
  assert.equal((await resend(server, 'alice', { orderNumber: 1600001, dcvEmailAddress: 'postmaster@addr.example.com' })).body, OK);
  assert.deepEqual((await next())[0]!.envelope.rcptTo, ['postmaster@addr.example.com']);
});

test('dcvTemplateID: the account\u2019s own, else global; unknown -4; ignored for 801 and 803', async () => {
  await createTemplate(server, clock, 'alice', 81, { subject: 'Alice asks about {{domain}}', text: 'Validation code: {{validationCode}}\n', html: '<p>{{domain}} {{validationCode}}</p>' });
  await createTemplate(server, clock, null, 81, { subject: 'Global 81 {{domain}}', text: 'Validation code: {{validationCode}}\n' });
  await createTemplate(server, clock, 'bob', 82, { subject: 'Bob only {{domain}}', text: 'Validation code: {{validationCode}}\n' });
  await getList(server, 'alice', 'tpl.example.com');
  await getList(server, 'bob', 'tpl.example.com');
  await createOrder(server, clock, 'alice', { domain: 'tpl.example.com', orderNumber: 1700001 });
  await createOrder(server, clock, 'bob', { domain: 'tpl.example.com', orderNumber: 1700002 });
  await createOrder(server, clock, 'alice', { domain: 'tpl.example.com', orderNumber: 1700003, product: 801 });
  await createOrder(server, clock, 'alice', { domain: 'tpl.example.com', orderNumber: 1700004, product: 803 });

  const bad = errorBody(-4, 'dcvTemplateID');
  assert.equal((await resend(server, 'alice', { orderNumber: 1700001, dcvEmailAddress: 'admin@example.com', dcvTemplateID: 82 })).body, bad, 'bob\u2019s template');
  assert.equal((await resend(server, 'alice', { orderNumber: 1700001, dcvEmailAddress: 'admin@example.com', dcvTemplateID: 999 })).body, bad);
  assert.equal((await resend(server, 'alice', { orderNumber: 1700001, dcvEmailAddress: 'admin@example.com', dcvTemplateID: 81 })).body, OK);
  const [own] = await next();
  assert.equal(own!.parsed.subject, 'Alice asks about tpl.example.com');
  assert.equal((await resend(server, 'bob', { orderNumber: 1700002, dcvEmailAddress: 'admin@example.com', dcvTemplateID: 81 })).body, OK);
  assert.equal((await next())[0]!.parsed.subject, 'Global 81 tpl.example.com');
  for (const n of [1700003, 1700004]) {
    assert.equal((await resend(server, 'alice', { orderNumber: n, dcvEmailAddress: 'admin@example.com', dcvTemplateID: 999 })).body, OK, String(n));
    assert.equal((await next())[0]!.parsed.subject, `Example Trust CA: domain control validation for tpl.example.com (order ${n})`);
  }
});

test('every wire error of the seed on this endpoint: -1, -2, -3, -4, -14, -16, -17', async () => {
  const creds = { loginName: 'alice', loginPassword: PASSWORD };
  const cases: [string, Promise<{ body: string; status: number }>, string, number?][] = [
    ['-1', server.post(RESEND_PATH, form({ ...creds, orderNumber: '1000001' }), { plain: true }), 'errorCode=-1&errorMessage=Request+was+not+made+over+https%21'],
    ['-2', server.post(RESEND_PATH, form({ ...creds, orderNumber: '1', colour: 'red' })), "errorCode=-2&errorMessage=%27colour%27+is+an+unrecognized+argument%21&errorItem=colour"],
    ['-3 login', server.post(RESEND_PATH, form({ orderNumber: '1' })), 'errorCode=-3&errorMessage=The+%27loginName%27+argument+is+missing%21&errorItem=loginName'],
    ['-3 order', server.post(RESEND_PATH, form({ ...creds, dcvEmailAddress: 'admin@example.com' })), 'errorCode=-3&errorMessage=The+%27orderNumber%27+argument+is+missing%21&errorItem=orderNumber'],
    ['-4 integer', server.post(RESEND_PATH, form({ ...creds, orderNumber: '-1' })), 'errorCode=-4&errorMessage=The+value+of+the+%27orderNumber%27+argument+is+invalid%21&errorItem=orderNumber'],
    ['-4 template', server.post(RESEND_PATH, form({ ...creds, orderNumber: '1000001', dcvTemplateID: 'x' })), 'errorCode=-4&errorMessage=The+value+of+the+%27dcvTemplateID%27+argument+is+invalid%21&errorItem=dcvTemplateID'],
    ['-4 address length', server.post(RESEND_PATH, form({ ...creds, orderNumber: '1000001', dcvEmailAddress: `${'a'.repeat(250)}@example.com` })), 'errorCode=-4&errorMessage=The+value+of+the+%27dcvEmailAddress%27+argument+is+invalid%21&errorItem=dcvEmailAddress'],
    ['-14', server.post(RESEND_PATH, `${form(creds)}&x=${'a'.repeat(70_000)}`), 'errorCode=-14&errorMessage=An+unknown+error+occurred%21'],
    ['-16', server.post(RESEND_PATH, form({ loginName: 'alice', loginPassword: 'wrong password!', orderNumber: '1000001' })), 'errorCode=-16&errorMessage=Incorrect+login+details%2C+account+is+locked%2C+password+has+expired+or+your+source+IP+is+blocked.'],
    ['-17', server.request({ path: RESEND_PATH, method: 'GET' }), 'errorCode=-17&errorMessage=Request+used+GET+rather+than+POST%21'],
  ];
  for (const [name, p, body, status] of cases) {
    const r = await p;
    assert.equal(r.body, body, name);
    assert.equal(r.status, status ?? 200, name);
  }
});
