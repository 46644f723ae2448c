/**
 * The reseller's email-DCV flow over the API (issue 16, CONTRACT §12):
 * AutoApplySSL / AutoApplyOrder with a real CSR (made here with
 * @peculiar/x509 over WebCrypto), AutoUpdateDCV, ResendDCVEmail of a
 * multi-domain order, GetMDCDomainDetails, CollectSSL, on a real server over HTTPS with a
 * real SMTP server. Runs on SQLite and (DCVD_TEST_DATABASE=postgres) PostgreSQL.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as x509 from '@peculiar/x509';
import type { webcrypto } from 'node:crypto';
import { sql } from 'kysely';
import { DcvApiError, DcvClient, ErrorCode, decodeMdcDomainDetails, decodeUrlencoded, encodeTextError, encodeUrlencoded, type ErrorCodeValue } from '@dcvd/client';
import { nodeFetch } from '../src/cli/node-fetch.ts';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { ManualClock } from '../src/deps.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { ProductRepository } from '../src/orders/products.ts';
import { OrderRepository } from '../src/orders/orders.ts';
import { defaultEmailDcvPolicy } from '../src/orders/email-dcv-policy.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, PASSWORD, startTestServer, type TestServer } from './support/server.ts';
import { codeIn, errorBody, getList, OK, resend } from './support/dcv.ts';
import { waitUntil } from './support/wait.ts';
import { csrfOf } from './support/confirm.ts';

x509.cryptoProvider.set(globalThis.crypto);

const clock = new ManualClock(Date.UTC(2026, 0, 10, 9, 0, 0));
/** The server's email DCV blocklist: the server reads this array, so a test can blocklist a domain as an operator's restart would. */
const blocklist = ['blocked.example.com'];
let sink: SmtpSink;
let server: TestServer;

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
let ecKeys: webcrypto.CryptoKeyPair;

/** A PEM CSR for `cn` with `sans` as SAN dNSNames (or IPs), signed by `keys`. */
async function makeCsr(cn: string, sans: string[] = [], keys: webcrypto.CryptoKeyPair = ecKeys, alg: webcrypto.Algorithm = EC): Promise<string> {
  const names = sans.map((v) => ({ type: /^[0-9.]+$/.test(v) ? ('ip' as const) : ('dns' as const), value: v }));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}`,
    keys,
    signingAlgorithm: alg,
    extensions: names.length ? [new x509.SubjectAlternativeNameExtension(names)] : [],
  });
  return csr.toString('pem');
}

before(async () => {
  ecKeys = (await crypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  sink = await startSmtpSink();
  server = await startTestServer(
    {
      dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, randomValueTtlMs: 7 * 24 * 3600_000, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50 } }),
      emailDcv: { ...defaultEmailDcvPolicy(), blocklist },
    },
    { clock },
  );
  await server.createAccount('alice');
  await server.createAccount('bob');
  await server.createAccount('nopriv', { permissions: [] });
  const products = new ProductRepository(server.store.db, clock);
  await products.create({ code: 24, name: 'DV single', multiDomain: false, maxDomains: 1, wildcard: false, allowedDays: [90, 365] });
  await products.create({ code: 361, name: 'DV multi', multiDomain: true, maxDomains: 5, wildcard: true, allowedDays: [365] });
});
after(async () => {
  await server?.stop();
  await sink?.close();
});

/** An API call of `login` to `path`. */
function postAs(path: string, login: string, params: Record<string, string | number>) {
  const pairs: Record<string, string> = { loginName: login, loginPassword: PASSWORD };
  for (const [k, v] of Object.entries(params)) pairs[k] = String(v);
  return server.post(path, form(pairs));
}

function call(endpoint: string, login: string, params: Record<string, string | number>) {
  return postAs(`/products/!${endpoint}`, login, params);
}

/** Decodes a body twice, as the public PHP client does (URL-decode, then parse as a query string). */
function phpRead(body: string): Record<string, string> {
  const once = decodeURIComponent(body.replace(/\+/g, ' '));
  return Object.fromEntries(new URLSearchParams(once));
}

async function nextMails(n: number) {
  const before = sink.messages.length;
  const all = await sink.waitFor(before + n, 60_000);
  await server.outbox!.idle();
  return all.slice(before, before + n);
}

async function confirm(code: string, decision: 'approve' | 'decline' = 'approve') {
  const page = await server.request({ method: 'GET', path: `/dcv/confirm/${code}` });
  const r = await server.post('/dcv/confirm', form({ code, csrf: csrfOf(page.body), decision }), {
    headers: { 'sec-fetch-site': 'same-origin', origin: 'null', 'user-agent': 'dcvd-test/1' },
  });
  assert.equal(r.status, 200);
}

async function orderCount(): Promise<number> {
  return (await server.store.db.selectFrom('orders').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n;
}

test('single domain, as the public PHP client sends it: AutoApplySSL, email, confirm, GetMDCDomainDetails says Validated', async () => {
  // The server's SQLite connection keeps its group commits' savepoint journals in memory (after its migrations).
  if (server.store.dialect === 'sqlite') assert.equal((await sql<{ temp_store: number }>`pragma temp_store`.execute(server.store.db)).rows[0]!.temp_store, 2);
  await getList(server, 'alice', 'www.example.com');
  const csr = await makeCsr('www.example.com', ['www.example.com']);
  const r = await call('AutoApplySSL', 'alice', {
    product: 24, days: 365, serverSoftware: -1, isCustomerValidated: 'N', dcvMethod: 'EMAIL',
    dcvEmailAddress: 'admin@example.com', csr, responseFormat: 1, showCertificateID: 'Y',
  });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/x-www-form-urlencoded');
  assert.match(r.body, /^errorCode=0&orderNumber=[0-9]+&certificateID=[0-9]+&totalCost=0\.00&expectedDeliveryTime=0$/);
  const placed = phpRead(r.body);
  const orderNumber = Number(placed.orderNumber);

  const [mail] = await nextMails(1);
  assert.equal(mail!.envelope.rcptTo[0], 'admin@example.com');
  const code = codeIn(mail!.parsed.text);

  const before = await call('GetMDCDomainDetails', 'alice', { orderNumber });
  assert.equal(before.body, 'errorCode=0&1_domainName=www.example.com&1_dcvMethod=EMAIL&1_dcvStatus=Awaiting');
  await confirm(code);
  const afterIt = phpRead((await call('GetMDCDomainDetails', 'alice', { orderNumber })).body);
  assert.equal(afterIt['1_dcvStatus'], 'Validated');
  assert.equal(afterIt['1_domainName'], 'www.example.com');

  const details = await call('GetMDCDomainDetails', 'alice', { orderNumber, showStatusDetails: 'Y', responseFormat: 2 });
  assert.equal(details.headers['content-type'], 'application/json; charset=utf-8');
  const decoded = decodeMdcDomainDetails(details.body);
  assert.ok(decoded.ok);
  assert.equal(decoded.value[0]!.dcvEmailAddress, 'admin@example.com');
  assert.equal(decoded.value[0]!.validatedAt, Math.floor(clock.now() / 1000));
  assert.equal(decoded.value[0]!.lastEmailSentAt, Math.floor(clock.now() / 1000));
  assert.equal(decoded.value[0]!.validationUsable, 'Y');
  // From the email-DCV cut-off on (issue 18): still `Validated` for clients that compare the string,
  // and the details say the email validation may no longer be relied upon.
  const today = clock.now();
  clock.set(Date.UTC(2028, 2, 15));
  try {
    const late = decodeMdcDomainDetails((await call('GetMDCDomainDetails', 'alice', { orderNumber, showStatusDetails: 'Y', responseFormat: 2 })).body);
    assert.ok(late.ok);
    assert.equal(late.value[0]!.dcvStatus, 'Validated');
    assert.equal(late.value[0]!.validationUsable, 'N');
  } finally {
    clock.set(today);
  }

  // AutoApplyOrder, the newer name, answers alike; a validated domain cannot change its method.
  const upd = await call('AutoUpdateDCV', 'alice', { orderNumber, newMethod: 'EMAIL', newDCVEmailAddress: 'admin@example.com' });
  assert.equal(upd.body, encodeUrlencoded('AutoUpdateDCV', { code: -160 }));
  const stored = await server.store.db.selectFrom('orders').select(['csr', 'days', 'product']).where('order_number', '=', orderNumber).executeTakeFirstOrThrow();
  assert.deepEqual([stored.csr?.replace(/\s+/g, ''), stored.days, stored.product], [csr.replace(/\s+/g, ''), 365, 24]);
});

test('multi-domain: one email per domain, delivered once; AutoUpdateDCV switches method and address; resend covers every awaiting domain', async () => {
  const names = ['a.example.com', 'b.example.org', 'c.example.net'];
  for (const n of names) await getList(server, 'alice', n);
  const csr = await makeCsr('a.example.com', ['a.example.com', 'b.example.org']);
  const r = await call('AutoApplyOrder', 'alice', {
    product: 361, days: 365, csr, domainNames: 'c.example.net',
    dcvEmailAddresses: 'admin@example.com,hostmaster@example.org webmaster@example.net',
  });
  assert.match(r.body, /^errorCode=0&orderNumber=/);
  const orderNumber = Number(decodeUrlencoded(r.body).ok && phpRead(r.body).orderNumber);
  const mails = await nextMails(3);
  assert.deepEqual(mails.map((m) => m.envelope.rcptTo[0]).sort(), ['admin@example.com', 'hostmaster@example.org', 'webmaster@example.net']);
  const codes = new Map(mails.map((m) => [m.envelope.rcptTo[0]!, codeIn(m.parsed.text)]));
  assert.equal(new Set(codes.values()).size, 3, 'each email carries its own random value');
  // Each email names its own domain.
  for (const m of mails) assert.ok(m.parsed.text?.includes(names[['admin@example.com', 'hostmaster@example.org', 'webmaster@example.net'].indexOf(m.envelope.rcptTo[0]!)]!));

  let d = phpRead((await call('GetMDCDomainDetails', 'alice', { orderNumber })).body);
  assert.deepEqual([d['1_domainName'], d['2_domainName'], d['3_domainName']], names);

  // b → HTTP_CSR_HASH: its code stops working; c → a new address: a new email with a new value, the old code superseded.
  await getList(server, 'alice', 'c.example.net');
  const u = await call('AutoUpdateDCV', 'alice', {
    orderNumber, domainNames: 'b.example.org c.example.net', newMethods: 'HTTP_CSR_HASH,EMAIL', newDCVEmailAddresses: 'admin@example.org postmaster@example.net',
  });
  assert.match(u.body, /^errorCode=0&expectedDeliveryTime=0&certificateID=[0-9]+$/);
  const [fresh] = await nextMails(1);
  assert.equal(fresh!.envelope.rcptTo[0], 'postmaster@example.net');
  const newCode = codeIn(fresh!.parsed.text);
  assert.notEqual(newCode, codes.get('webmaster@example.net'));
  for (const old of [codes.get('hostmaster@example.org')!, codes.get('webmaster@example.net')!]) {
    const page = await server.request({ method: 'GET', path: `/dcv/confirm/${old}` });
    assert.doesNotMatch(page.body, /name="decision" value="approve"/, 'an outstanding code of a changed domain no longer works');
  }
  d = phpRead((await call('GetMDCDomainDetails', 'alice', { orderNumber })).body);
  assert.equal(d['2_dcvMethod'], 'HTTP_CSR_HASH');
  assert.equal(d['2_dcvStatus'], 'Awaiting');

  // A resend refused for one domain undoes what it did for the others: a's email (the order's first domain,
  // whose mirror on the order row is written with the order's lock) is rolled back when c's is refused.
  clock.advance(120_000);
  const db = server.store.db;
  const orderId = (await db.selectFrom('orders').select('id').where('order_number', '=', orderNumber).executeTakeFirstOrThrow()).id;
  const c = await db.selectFrom('order_domains').select(['id', 'last_dcv_email_at']).where('order_id', '=', orderId).where('domain', '=', 'c.example.net').executeTakeFirstOrThrow();
  await db.updateTable('order_domains').set({ last_dcv_email_at: clock.now() }).where('id', '=', c.id).execute();
  const state = async () => ({
    order: await db.selectFrom('orders').select(['dcv_email_address', 'last_dcv_email_at', 'updated_at']).where('id', '=', orderId).executeTakeFirstOrThrow(),
    domains: await db.selectFrom('order_domains').select(['dcv_email_address', 'last_dcv_email_at', 'updated_at']).where('order_id', '=', orderId).orderBy('position').execute(),
    emails: (await db.selectFrom('outbox').select('id').where('order_id', '=', orderId).execute()).length,
  });
  const kept = await state();
  assert.equal((await resend(server, 'alice', { orderNumber })).body, errorBody(-160));
  assert.deepEqual(await state(), kept);
  await db.updateTable('order_domains').set({ last_dcv_email_at: c.last_dcv_email_at }).where('id', '=', c.id).execute();

  // A resend without a domain: the two domains still awaiting email DCV (a and c), each to its own address.
  const rs = await resend(server, 'alice', { orderNumber });
  assert.equal(rs.body, 'errorCode=0');
  const again = await nextMails(2);
  assert.deepEqual(again.map((m) => m.envelope.rcptTo[0]).sort(), ['admin@example.com', 'postmaster@example.net']);

  // Approving a validates only a; the order stays awaiting until c is validated too (b waits for its HTTP method).
  await confirm(codeIn(again.find((m) => m.envelope.rcptTo[0] === 'admin@example.com')!.parsed.text));
  d = phpRead((await call('GetMDCDomainDetails', 'alice', { orderNumber })).body);
  assert.deepEqual([d['1_dcvStatus'], d['2_dcvStatus'], d['3_dcvStatus']], ['Validated', 'Awaiting', 'Awaiting']);
  const order = await server.store.db.selectFrom('orders').select('dcv_status').where('order_number', '=', orderNumber).executeTakeFirstOrThrow();
  assert.equal(order.dcv_status, 'awaiting');
  // The validated domain: -160; the HTTP one cannot be resent alone, but the order's resend still serves c.
  const v = await call('AutoUpdateDCV', 'alice', { orderNumber, domainName: 'a.example.com', newMethod: 'CNAME_CSR_HASH' });
  assert.equal(v.body, encodeUrlencoded('AutoUpdateDCV', { code: -160 }));
  // Another account never learns the order exists.
  assert.equal((await call('GetMDCDomainDetails', 'bob', { orderNumber })).body, encodeUrlencoded('GetMDCDomainDetails', { code: -4, item: 'orderNumber' }));
  assert.equal(
    (await call('AutoUpdateDCV', 'bob', { orderNumber, domainName: 'c.example.net', newMethod: 'HTTP_CSR_HASH' })).body,
    encodeUrlencoded('AutoUpdateDCV', { code: -4, item: 'orderNumber' }),
  );
  // Declining c's code declines the order; b, waiting for its HTTP method, stays awaiting, yet the order takes
  // no change any more, as it takes no resend (found by a review: AutoUpdateDCV answered 0 and switched b).
  await confirm(codeIn(again.find((m) => m.envelope.rcptTo[0] === 'postmaster@example.net')!.parsed.text), 'decline');
  d = phpRead((await call('GetMDCDomainDetails', 'alice', { orderNumber })).body);
  assert.deepEqual([d['1_dcvStatus'], d['2_dcvStatus'], d['3_dcvStatus']], ['Validated', 'Awaiting', 'Declined']);
  const declined = await call('AutoUpdateDCV', 'alice', { orderNumber, domainName: 'b.example.org', newMethod: 'CNAME_CSR_HASH' });
  assert.equal(declined.body, encodeUrlencoded('AutoUpdateDCV', { code: -160 }));
  d = phpRead((await call('GetMDCDomainDetails', 'alice', { orderNumber })).body);
  assert.equal(d['2_dcvMethod'], 'HTTP_CSR_HASH', 'nothing changed');
  // No email was sent twice.
  const ids = sink.messages.map((m) => m.parsed.messageId);
  assert.equal(new Set(ids).size, ids.length);
});

test('AutoUpdateDCV names a wildcard domain with or without its *., any other only as it is: *.name of a plain name is -4 and changes nothing', async () => {
  const r = await call('AutoApplyOrder', 'alice', { product: 361, days: 365, csr: await makeCsr('www.wild.example.com'), domainNames: '*.wild.example.org', dcvMethod: 'HTTP_CSR_HASH' });
  assert.match(r.body, /^errorCode=0&orderNumber=/);
  const orderNumber = Number(phpRead(r.body).orderNumber);
  const methods = async () => {
    const d = phpRead((await call('GetMDCDomainDetails', 'alice', { orderNumber })).body);
    return [`${d['1_domainName']} ${d['1_dcvMethod']}`, `${d['2_domainName']} ${d['2_dcvMethod']}`];
  };
  assert.deepEqual(await methods(), ['www.wild.example.com HTTP_CSR_HASH', '*.wild.example.org HTTP_CSR_HASH']);
  // Found by fuzzing (2026-12-04): a `*.` name fell back to the plain domain of the same name, and changed it.
  const u = (item: string) => encodeUrlencoded('AutoUpdateDCV', { code: -4, item });
  assert.equal((await call('AutoUpdateDCV', 'alice', { orderNumber, domainName: '*.www.wild.example.com', newMethod: 'CNAME_CSR_HASH' })).body, u('domainName'));
  assert.equal((await call('AutoUpdateDCV', 'alice', { orderNumber, domainNames: '*.www.wild.example.com', newMethods: 'CNAME_CSR_HASH' })).body, u('domainNames'));
  assert.equal((await call('AutoUpdateDCV', 'alice', { orderNumber, domainNames: 'wild.example.org *.www.wild.example.com', newMethods: 'CNAME_CSR_HASH HTTPS_CSR_HASH' })).body, u('domainNames'));
  assert.deepEqual(await methods(), ['www.wild.example.com HTTP_CSR_HASH', '*.wild.example.org HTTP_CSR_HASH'], 'nothing changed');
  // The wildcard domain, with or without its `*.`; the plain one as it is.
  assert.match((await call('AutoUpdateDCV', 'alice', { orderNumber, domainName: 'wild.example.org', newMethod: 'CNAME_CSR_HASH' })).body, /^errorCode=0&/);
  assert.deepEqual(await methods(), ['www.wild.example.com HTTP_CSR_HASH', '*.wild.example.org CNAME_CSR_HASH']);
  assert.match((await call('AutoUpdateDCV', 'alice', { orderNumber, domainName: '*.wild.example.org', newMethod: 'HTTPS_CSR_HASH' })).body, /^errorCode=0&/);
  assert.match((await call('AutoUpdateDCV', 'alice', { orderNumber, domainNames: 'WWW.wild.example.com.', newMethods: 'CNAME_CSR_HASH' })).body, /^errorCode=0&/);
  assert.deepEqual(await methods(), ['www.wild.example.com CNAME_CSR_HASH', '*.wild.example.org HTTPS_CSR_HASH']);
});

test('AutoUpdateDCV: after the order, a missing parameter (-3, in table order) before an invalid one (-4), in both forms', async () => {
  const place = async (params: Record<string, string | number>) => {
    const r = await call('AutoApplyOrder', 'alice', { days: 365, dcvMethod: 'HTTP_CSR_HASH', ...params });
    assert.match(r.body, /^errorCode=0&orderNumber=/);
    return Number(phpRead(r.body).orderNumber);
  };
  const single = await place({ product: 24, csr: await makeCsr('order-of-checks.example.com') });
  const multi = await place({ product: 361, csr: await makeCsr('a.order-of-checks.example.com'), domainNames: 'b.order-of-checks.example.com' });
  const u = (code: ErrorCodeValue, item: string) => encodeUrlencoded('AutoUpdateDCV', { code, item });
  const cases: [Record<string, string | number>, string][] = [
    // Found by fuzzing (2026-12-04): a name not of the order answered -4 domainName before the missing newMethod.
    [{ orderNumber: single, domainName: 'elsewhere.example.com' }, u(-3, 'newMethod')],
    [{ orderNumber: single, domainName: 'elsewhere.example.com', newMethod: 'EMAIL' }, u(-3, 'newDCVEmailAddress')],
    [{ orderNumber: single, domainName: 'elsewhere.example.com', newMethod: 'CNAME_CSR_HASH' }, u(-4, 'domainName')],
    [{ orderNumber: single, domainName: '*.order-of-checks.example.com', newMethod: 'CNAME_CSR_HASH' }, u(-4, 'domainName')],
    // domainName, required for a multi-domain order, comes before newMethod in the table.
    [{ orderNumber: multi }, u(-3, 'domainName')],
    [{ orderNumber: multi, domainName: 'elsewhere.example.com' }, u(-3, 'newMethod')],
    // The multi-domain form: newMethods, then the addresses its EMAIL items need, then the lists' values.
    [{ orderNumber: multi, domainNames: 'elsewhere.example.com' }, u(-3, 'newMethods')],
    [{ orderNumber: multi, domainNames: 'elsewhere.example.com', newMethods: 'EMAIL' }, u(-3, 'newDCVEmailAddresses')],
    [{ orderNumber: multi, domainNames: ',', newMethods: 'EMAIL' }, u(-3, 'newDCVEmailAddresses')],
    [{ orderNumber: multi, domainNames: 'elsewhere.example.com', newMethods: 'CNAME_CSR_HASH' }, u(-4, 'domainNames')],
    // The order itself comes first: another account's, or none, is -4 whatever else is missing.
    [{ orderNumber: 12_345, domainName: 'elsewhere.example.com' }, u(-4, 'orderNumber')],
  ];
  for (const [params, expected] of cases) assert.equal((await call('AutoUpdateDCV', 'alice', params)).body, expected, JSON.stringify(params));
  // Nothing changed.
  for (const orderNumber of [single, multi]) assert.doesNotMatch((await call('GetMDCDomainDetails', 'alice', { orderNumber })).body, /CNAME_CSR_HASH|=EMAIL/);
});

test('bad input: each parameter its -2/-3/-4, bad CSRs -4 csr and nothing stored, domain rules, policy, permissions', async () => {
  await getList(server, 'alice', 'shop.example.com');
  const good = await makeCsr('shop.example.com');
  const base = { product: 24, days: 365, csr: good, dcvEmailAddress: 'admin@example.com' };
  const err = (code: ErrorCodeValue, item?: string) => encodeUrlencoded('AutoApplyOrder', item === undefined ? { code } : { code, item });
  const count = await orderCount();

  const rsa1024 = (await crypto.subtle.generateKey(
    { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 1024 },
    true,
    ['sign', 'verify'],
  )) as webcrypto.CryptoKeyPair;
  const weak = await makeCsr('shop.example.com', [], rsa1024, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as webcrypto.Algorithm);
  // A flipped byte in the signature (the DER's last byte): parses, does not verify.
  const der = Buffer.from(good.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
  der[der.length - 1]! ^= 0x01;
  const forged = der.toString('base64');

  const cases: [Record<string, string | number>, string, string?][] = [
    [{ ...base, bogus: 1 }, err(-2, 'bogus')],
    [{ days: 365, csr: good }, err(-3, 'product')],
    [{ product: 24, csr: good }, err(-3, 'days')],
    [{ product: 24, days: 365 }, err(-3, 'csr')],
    [{ ...base, product: 'x' }, err(-4, 'product')],
    [{ ...base, product: 999 }, err(-4, 'product')],
    [{ ...base, days: 730 }, err(-4, 'days')],
    [{ product: 24, years: 2, csr: good, dcvEmailAddress: 'admin@example.com' }, err(-4, 'years')],
    [{ product: 24, years: 0, csr: good, dcvEmailAddress: 'admin@example.com' }, err(-4, 'years')],
    [{ ...base, organizationName: 'x'.repeat(256) }, err(-4, 'organizationName')],
    [{ ...base, appRepFax: '+1 555 0100' }, err(-2, 'appRepFax')],
    [{ ...base, dcvMethod: 'email' }, err(-4, 'dcvMethod')],
    [{ ...base, showCertificateID: 'yes' }, err(-4, 'showCertificateID')],
    [{ ...base, serverSoftware: '-2' }, err(-4, 'serverSoftware')],
    [{ ...base, responseFormat: 2 }, err(-4, 'responseFormat')],
    [{ ...base, csr: 'not a csr' }, err(-4, 'csr')],
    [{ ...base, csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----' }, err(-4, 'csr')],
    [{ ...base, csr: weak }, err(-4, 'csr')],
    [{ ...base, csr: forged }, err(-4, 'csr')],
    // Bytes after the request, or a second request: the CSR would be stored with them.
    [{ ...base, csr: Buffer.concat([Buffer.from(good.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64'), Buffer.alloc(100, 0x41)]).toString('base64') }, err(-4, 'csr')],
    [{ ...base, csr: `${good.trim()}\n${good.trim()}` }, err(-4, 'csr')],
    // Padding inside: node's base64 decoder would stop there and drop the rest without a word.
    [{ ...base, csr: `${good.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '').replace(/=+$/, '')}=AAAA` }, err(-4, 'csr')],
    [{ ...base, csr: await makeCsr('printer.local') }, err(-37)],
    [{ ...base, csr: await makeCsr('shop.example.com', ['8.8.8.8']) }, err(-19)],
    [{ ...base, csr: await makeCsr('co.uk') }, err(-4, 'csr')],
    [{ ...base, csr: await makeCsr('shop.example.com', ['other.example.com']) }, err(-4, 'csr')],
    [{ ...base, csr: await makeCsr('*.example.com') }, err(-4, 'csr')],
    [{ ...base, domainNames: 'x.example.com' }, err(-4, 'domainNames')],
    [{ product: 24, days: 365, csr: good }, err(-3, 'dcvEmailAddress')],
    [{ ...base, dcvEmailAddress: 'root@example.com' }, err(-4, 'dcvEmailAddress')],
    // Method keywords are items of dcvEmailAddresses only.
    [{ ...base, dcvEmailAddress: 'HTTPCSRHASH' }, err(-4, 'dcvEmailAddress')],
    [{ ...base, csr: await makeCsr('www.blocked.example.com') }, err(-160)],
  ];
  for (const [params, expected] of cases) {
    const r = await call('AutoApplyOrder', 'alice', params);
    assert.equal(r.status, 200);
    assert.equal(r.body, expected, JSON.stringify(Object.keys(params)));
  }
  assert.equal((await call('AutoApplyOrder', 'nopriv', base)).body, err(-91));
  // The CSR without armour is accepted (same order data).
  const bare = good.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  assert.match((await call('AutoApplyOrder', 'alice', { ...base, csr: bare })).body, /^errorCode=0&/);
  assert.equal(await orderCount(), count + 1, 'no refused request stored an order');
  await nextMails(1);

  // AutoUpdateDCV and GetMDCDomainDetails: their -3/-4.
  const u = (code: ErrorCodeValue, item?: string) => encodeUrlencoded('AutoUpdateDCV', item === undefined ? { code } : { code, item });
  assert.equal((await call('AutoUpdateDCV', 'alice', { newMethod: 'EMAIL' })).body, u(-3, 'orderNumber'));
  assert.equal((await call('AutoUpdateDCV', 'alice', { orderNumber: 1, newMethod: 'FTP' })).body, u(-4, 'newMethod'));
  assert.equal((await call('AutoUpdateDCV', 'alice', { orderNumber: 12345 })).body, u(-4, 'orderNumber'));
  const own = (await server.store.db.selectFrom('orders').select('order_number').orderBy('id', 'desc').executeTakeFirstOrThrow()).order_number;
  assert.equal((await call('AutoUpdateDCV', 'alice', { orderNumber: own, domainNames: ',', newMethods: ',' })).body, u(-4, 'domainNames'));
  assert.equal((await call('AutoUpdateDCV', 'alice', { orderNumber: own, domainNames: ',' })).body, u(-3, 'newMethods'), 'a missing parameter before an invalid one');
  assert.equal((await call('AutoUpdateDCV', 'alice', { orderNumber: own, domainNames: ' ', newMethods: 'HTTP_CSR_HASH' })).body, u(-4, 'domainNames'));
  const g = (code: ErrorCodeValue, item?: string) => encodeUrlencoded('GetMDCDomainDetails', item === undefined ? { code } : { code, item });
  assert.equal((await call('GetMDCDomainDetails', 'alice', {})).body, g(-3, 'orderNumber'));
  assert.equal((await call('GetMDCDomainDetails', 'alice', { orderNumber: 1, showStatusDetails: 'X' })).body, g(-4, 'showStatusDetails'));
  const json = await call('GetMDCDomainDetails', 'alice', { orderNumber: 12345, responseFormat: 2 });
  assert.deepEqual(JSON.parse(json.body), { errorCode: -4, errorMessage: "The value of the 'orderNumber' argument is invalid!", errorItem: 'orderNumber' });
});

test('orders as public clients of the real host place them: ordering details, years, method keywords, domainNames\u2019 order; GetMDCDomainDetails in threes', async () => {
  const db = server.store.db;
  const daysOf = async (orderNumber: number) => (await db.selectFrom('orders').select('days').where('order_number', '=', orderNumber).executeTakeFirstOrThrow()).days;
  const placedNumber = (body: string) => {
    assert.match(body, /^errorCode=0&orderNumber=[0-9]+&/);
    return Number(phpRead(body).orderNumber);
  };
  // A hosting panel's order: the organisation, its representative, vetting flags and mailing options with every order.
  await getList(server, 'alice', 'panel.example.com');
  const panel = await call('AutoApplyOrder', 'alice', {
    product: 24, days: 365, csr: await makeCsr('panel.example.com'), serverSoftware: -1, isCustomerValidated: 'Y', dcvMethod: 'EMAIL',
    dcvEmailAddress: 'admin@example.com', uniqueValue: 'A1B2C3D4E5F6A7B8C9D0', showCertificateID: 'Y', foreignOrderNumber: 'inv-42',
    appRepEmailAddress: 'ops@example.com', appRepForename: 'Ada', appRepSurname: 'Lovelace', appRepTelephone: '+44 20 7946 0000',
    emailAddress: 'none', organizationName: 'Example Ltd', streetAddress1: '1 High St', localityName: 'London', stateOrProvinceName: 'London',
    postalCode: 'N1 9GU', countryName: 'GB', companyNumber: '01234567', test: 'N', orderNumber: '',
  });
  assert.equal(await daysOf(placedNumber(panel.body)), 365);
  await nextMails(1);
  // An older client: AutoApplySSL with `years`, its own flags, the address lines it keeps.
  await getList(server, 'alice', 'portal.example.com');
  const portal = await call('AutoApplySSL', 'alice', {
    product: 24, years: 1, csr: await makeCsr('portal.example.com'), serverSoftware: 2, isCustomerValidated: 'Y', prioritiseCSRValues: 'N',
    isAppRepValidated: 'Y', isCallbackCompleted: 'Y', streetAddress1: 'Rua 1', localityName: 'Sao Paulo', stateOrProvinceName: 'SP',
    postalCode: '01000-000', countryName: 'BR', emailAddress: 'certs@example.com', dcvEmailAddress: 'admin@example.com', responseFormat: 1,
  });
  assert.equal(await daysOf(placedNumber(portal.body)), 365);
  await nextMails(1);
  // `days` wins over `years` when both come.
  await getList(server, 'alice', 'both.example.com');
  const both = await call('AutoApplyOrder', 'alice', { product: 24, days: 90, years: 1, csr: await makeCsr('both.example.com'), dcvEmailAddress: 'admin@example.com' });
  assert.equal(await daysOf(placedNumber(both.body)), 90);
  await nextMails(1);

  // A multi-domain order listing every name in domainNames in its own order (not the CSR's), one item per
  // name in that order, and a keyword instead of an address for the domain validated by file.
  for (const n of ['p.example.com', 'q.example.org', 'r.example.net']) await getList(server, 'alice', n);
  const multi = await call('AutoApplyOrder', 'alice', {
    product: 361, days: 365, csr: await makeCsr('p.example.com', ['p.example.com', 'q.example.org', 'r.example.net']),
    domainNames: 'r.example.net,p.example.com,q.example.org', dcvEmailAddresses: 'webmaster@example.net,admin@example.com,httpcsrhash',
    primaryDomainName: 'p.example.com', maxSubjectCNs: 1, servers: 1, isCustomerValidated: 'N', serverSoftware: -1,
  });
  const orderNumber = placedNumber(multi.body);
  const mails = await nextMails(2);
  const to = new Map(mails.map((m) => [m.envelope.rcptTo[0]!, m.parsed.text ?? '']));
  assert.deepEqual([...to.keys()].sort(), ['admin@example.com', 'webmaster@example.net']);
  assert.ok(to.get('webmaster@example.net')!.includes('r.example.net'), 'the first item went to the first name of domainNames');
  assert.ok(to.get('admin@example.com')!.includes('p.example.com'));
  // Format 1 with showStatusDetails=Y: three numbered fields a domain, read by position as a public client reads them.
  const body = (await call('GetMDCDomainDetails', 'alice', { orderNumber, showStatusDetails: 'Y' })).body;
  const numbered = [...new URLSearchParams(body)].filter(([k]) => /\d+_/.test(k)).map(([, v]) => v);
  const rows = Array.from({ length: numbered.length / 3 }, (_, i) => numbered.slice(3 * i, 3 * i + 3));
  assert.deepEqual(rows, [
    ['p.example.com', 'EMAIL', 'Awaiting'],
    ['q.example.org', 'HTTP_CSR_HASH', 'Awaiting'],
    ['r.example.net', 'EMAIL', 'Awaiting'],
  ]);
  // The details, by name, in JSON.
  const json = decodeMdcDomainDetails((await call('GetMDCDomainDetails', 'alice', { orderNumber, showStatusDetails: 'Y', responseFormat: 2 })).body);
  assert.ok(json.ok);
  assert.deepEqual(json.value.map((d) => d.dcvEmailAddress), ['admin@example.com', undefined, 'webmaster@example.net']);
  // domainNames that leave a name out keep the CN-first order: the items are checked against p, q, r.
  await getList(server, 'alice', 's.example.com');
  const partial = await call('AutoApplyOrder', 'alice', {
    product: 361, days: 365, csr: await makeCsr('s.example.com', ['s.example.com', 'q.example.org']), domainNames: 'r.example.net',
    dcvEmailAddresses: 'webmaster@example.net,admin@example.org,admin@example.net',
  });
  assert.equal(partial.body, encodeUrlencoded('AutoApplyOrder', { code: -4, item: 'dcvEmailAddresses' }));
  // A keyword is ASCII: with U+017F (which toUpperCase() turns into S) it is an item like any other, not offered: -4.
  const lookalike = await call('AutoApplyOrder', 'alice', {
    product: 361, days: 365, csr: await makeCsr('p.example.com', ['p.example.com', 'q.example.org', 'r.example.net']),
    domainNames: 'r.example.net,p.example.com,q.example.org', dcvEmailAddresses: 'webmaster@example.net,admin@example.com,http\u017fcsrha\u017fh',
  });
  assert.equal(lookalike.body, encodeUrlencoded('AutoApplyOrder', { code: -4, item: 'dcvEmailAddresses' }));
});

test('CollectSSL: the status queries public clients send, at /products/download/CollectSSL; -20 for a declined order', async () => {
  const collect = (login: string, params: Record<string, string | number>) => postAs('/products/download/CollectSSL', login, params);
  await getList(server, 'alice', 'collect.example.com');
  const placed = phpRead((await call('AutoApplyOrder', 'alice', { product: 24, days: 365, csr: await makeCsr('collect.example.com'), dcvEmailAddress: 'admin@example.com' })).body);
  const orderNumber = Number(placed.orderNumber);
  const certificateID = Number(placed.certificateID);
  const [mail] = await nextMails(1);
  // A hosting panel's status query: urlencoded, every flag; the email went out, so DCV is in progress (2).
  const flags = { queryType: 0, responseFormat: 1, showValidityPeriod: 'Y', showFQDN: 'Y', showExtStatus: 'Y', showStatusDetails: 'Y', showMDCDomainDetails: 'Y' };
  const status = await collect('alice', { orderNumber, ...flags });
  assert.equal(status.status, 200);
  assert.equal(status.headers['content-type'], 'application/x-www-form-urlencoded');
  assert.equal(status.body, `errorCode=0&orderNumber=${orderNumber}&certificateID=${certificateID}&dcvStatus=2&fqdn=collect.example.com`);
  // Its download: no certificate (dcvd issues none), the status only.
  assert.equal((await collect('alice', { orderNumber, queryType: 1, responseType: 3, responseFormat: 1 })).body, `errorCode=0&orderNumber=${orderNumber}&certificateID=${certificateID}`);
  // By certificateID or by the chain; under /products/!CollectSSL too.
  assert.equal((await collect('alice', { certificateID, ...flags })).body, status.body);
  assert.equal((await collect('alice', { baseOrderNumber: orderNumber, ...flags })).body, status.body);
  assert.equal((await call('CollectSSL', 'alice', { orderNumber, ...flags })).body, status.body);
  // A client that sends no responseFormat reads lines: the status line.
  const text = await collect('alice', { baseOrderNumber: orderNumber, queryType: 2, showExtStatus: 'Y', responseType: 3, responseEncoding: 0 });
  assert.equal(text.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(text.body, '0\n');
  await confirm(codeIn(mail!.parsed.text));
  assert.equal((await collect('alice', { orderNumber, ...flags })).body, `errorCode=0&orderNumber=${orderNumber}&certificateID=${certificateID}&dcvStatus=1&fqdn=collect.example.com`);

  // An order whose method dcvd does not perform has not started (0); a declined one is -20.
  const byFile = phpRead((await call('AutoApplyOrder', 'alice', { product: 24, days: 365, csr: await makeCsr('file.example.com'), dcvMethod: 'HTTP_CSR_HASH' })).body);
  assert.match((await collect('alice', { orderNumber: byFile.orderNumber!, ...flags })).body, /&dcvStatus=0&fqdn=file\.example\.com$/);
  await getList(server, 'alice', 'declined.example.com');
  const declined = phpRead((await call('AutoApplyOrder', 'alice', { product: 24, days: 365, csr: await makeCsr('declined.example.com'), dcvEmailAddress: 'admin@example.com' })).body);
  await confirm(codeIn((await nextMails(1))[0]!.parsed.text), 'decline');
  const c = (code: ErrorCodeValue, item?: string) => encodeUrlencoded('CollectSSL', item === undefined ? { code } : { code, item });
  assert.equal((await collect('alice', { orderNumber: declined.orderNumber!, ...flags })).body, c(-20));
  assert.equal((await collect('alice', { orderNumber: declined.orderNumber!, queryType: 0 })).body, '-20\nThe order was rejected or cancelled.\n');

  // Bad input: each its code, in the format asked for; another account's order is never revealed.
  assert.equal((await collect('alice', { orderNumber, responseFormat: 1 })).body, c(-3, 'queryType'));
  assert.equal((await collect('alice', { queryType: 0, responseFormat: 1 })).body, c(-3, 'orderNumber'));
  assert.equal((await collect('alice', { orderNumber, queryType: 4, responseFormat: 1 })).body, c(-4, 'queryType'));
  assert.equal((await collect('alice', { orderNumber, certificateID: certificateID + 1, queryType: 0, responseFormat: 1 })).body, c(-4, 'certificateID'));
  assert.equal((await collect('alice', { certificateID: certificateID + 1, queryType: 0, responseFormat: 1 })).body, c(-4, 'certificateID'));
  assert.equal((await collect('alice', { orderNumber, queryType: 0, showCertificateID: 'Y', responseFormat: 1 })).body, c(-2, 'showCertificateID'));
  assert.equal((await collect('bob', { orderNumber, ...flags })).body, c(-4, 'orderNumber'));
  assert.equal((await collect('bob', { certificateID, ...flags })).body, c(-4, 'certificateID'));
  assert.equal((await collect('bob', { orderNumber, queryType: 0 })).body, "-4\nThe value of the 'orderNumber' argument is invalid!\n");
});

test('a multi-domain order: the blocklist holds for every domain a resend or a queued email would validate; its webhooks tell the order from the domain', async () => {
  await server.createAccount('mdhook', { webhookUrl: 'https://192.0.2.1/hook' });
  for (const n of ['md-one.example.com', 'md-two.example.org']) await getList(server, 'mdhook', n);
  const placed = await call('AutoApplyOrder', 'mdhook', {
    product: 361, days: 365, csr: await makeCsr('md-one.example.com', ['md-one.example.com', 'md-two.example.org']), dcvEmailAddresses: 'admin@example.com,admin@example.org',
  });
  const orderNumber = Number(phpRead(placed.body).orderNumber);
  const mails = await nextMails(2);
  const codeOf = (to: string) => codeIn(mails.find((m) => m.envelope.rcptTo[0] === to)!.parsed.text);
  await confirm(codeOf('admin@example.com'));
  // The first domain's approval: the event says that domain is validated and the order still awaits the other.
  const order = await server.store.db.selectFrom('orders').select(['id', 'dcv_status']).where('order_number', '=', orderNumber).executeTakeFirstOrThrow();
  assert.equal(order.dcv_status, 'awaiting');
  const [event] = await server.store.db.selectFrom('webhook_outbox').select('body').where('order_id', '=', order.id).execute();
  const body = JSON.parse(event!.body);
  assert.equal(body.type, 'dcv.validated');
  assert.deepEqual(body.order, { orderNumber, baseOrderNumber: orderNumber, account: 'mdhook', domain: 'md-one.example.com', dcvStatus: 'awaiting' });
  assert.deepEqual(body.domain, { name: 'md-one.example.com', dcvStatus: 'validated' });
  assert.equal(body.evidence.domain, 'md-one.example.com');

  // An email for the second domain, refused once by the mail server, waits for its retry; meanwhile the operator
  // blocklists that domain: the retry does not send it.
  clock.advance(3600_000);
  sink.refuseNext(1, 451);
  assert.equal((await resend(server, 'mdhook', { orderNumber })).body, OK);
  const latest = () => server.store.db.selectFrom('outbox').selectAll().where('order_id', '=', order.id).orderBy('id', 'desc').limit(1).executeTakeFirstOrThrow();
  await waitUntil('the refused attempt recorded', async () => (await latest()).attempts === 1 && (await latest()).state === 'pending');
  assert.equal((await latest()).recipient, 'admin@example.org');
  blocklist.push('md-two.example.org');
  try {
    const sent = sink.messages.length;
    clock.advance(3 * 3600_000);
    server.outbox!.wake();
    await waitUntil('the retry cancelled', async () => (await latest()).state === 'cancelled');
    assert.match((await latest()).last_error ?? '', /^not sent: .*blocklist/);
    assert.equal(sink.messages.length, sent, 'nothing sent');
    // And the next resend is refused, though the order's first domain is not blocklisted.
    clock.advance(3600_000);
    assert.equal((await resend(server, 'mdhook', { orderNumber })).body, errorBody(-160));
  } finally {
    blocklist.pop();
  }
});

test('AutoApplyOrder: a certificate id another order took between the draw and the insert is drawn again (unique since migration 0016)', async () => {
  await getList(server, 'alice', 'first-id.example.com');
  const first = phpRead((await call('AutoApplyOrder', 'alice', { product: 24, days: 365, csr: await makeCsr('first-id.example.com'), dcvEmailAddress: 'admin@example.com' })).body);
  await nextMails(1);
  // The next draw for a certificate id comes out as the first order's, as when two orders draw at once.
  const draw = OrderRepository.prototype.unusedOrderNumber;
  let calls = 0;
  OrderRepository.prototype.unusedOrderNumber = async function (this: OrderRepository) {
    calls += 1;
    return calls === 2 ? Number(first.certificateID) : draw.call(this);
  };
  let second: Record<string, string>;
  try {
    await getList(server, 'alice', 'second-id.example.com');
    const r = await call('AutoApplyOrder', 'alice', { product: 24, days: 365, csr: await makeCsr('second-id.example.com'), dcvEmailAddress: 'admin@example.com' });
    assert.equal(r.status, 200);
    second = phpRead(r.body);
  } finally {
    OrderRepository.prototype.unusedOrderNumber = draw;
  }
  assert.equal(second.errorCode, '0');
  assert.ok(calls >= 4, `drawn again (${calls} draws)`);
  assert.notEqual(second.certificateID, first.certificateID);
  await nextMails(1);
  // Each id finds its own order.
  const collect = (certificateID: string) => postAs('/products/download/CollectSSL', 'alice', { certificateID, queryType: 0, responseFormat: 1 });
  assert.match((await collect(first.certificateID!)).body, new RegExp(`^errorCode=0&orderNumber=${first.orderNumber}&`));
  assert.match((await collect(second.certificateID!)).body, new RegExp(`^errorCode=0&orderNumber=${second.orderNumber}&`));
});

test('the SDK: getDcvEmailAddressList → autoApplyOrder → autoUpdateDcv → getMdcDomainDetails', async () => {
  const client = new DcvClient({
    baseUrl: `https://localhost:${server.https.port}`,
    loginName: 'alice',
    loginPassword: PASSWORD,
    fetch: nodeFetch({ ca: server.cert }),
  });
  const list = await client.getDcvEmailAddressList({ domainName: 'sdk.example.com', product: 801 });
  assert.ok(list.emails.includes('admin@example.com'));
  await client.getDcvEmailAddressList({ domainName: 'two.example.com', product: 801 });
  const placed = await client.autoApplyOrder({
    product: 361, days: 365, csr: await makeCsr('sdk.example.com'), domainNames: ['two.example.com'],
    dcvEmailAddresses: ['admin@example.com', 'webmaster@example.com'],
  });
  await nextMails(2);
  let details = await client.getMdcDomainDetails(placed.orderNumber, { showStatusDetails: true });
  assert.deepEqual(details.map((d) => [d.domainName, d.dcvMethod, d.dcvStatus, d.dcvEmailAddress]), [
    ['sdk.example.com', 'EMAIL', 'Awaiting', 'admin@example.com'],
    ['two.example.com', 'EMAIL', 'Awaiting', 'webmaster@example.com'],
  ]);
  await client.autoUpdateDcv({ orderNumber: placed.orderNumber }, [{ domainName: 'two.example.com', method: 'CNAME_CSR_HASH' }]);
  details = await client.getMdcDomainDetails(placed.orderNumber, { responseFormat: 2 });
  assert.equal(details[1]!.dcvMethod, 'CNAME_CSR_HASH');
  await assert.rejects(client.getMdcDomainDetails(1), (err: unknown) => err instanceof DcvApiError && err.code === -4 && err.item === 'orderNumber');
});

test('the SDK: collectSsl at /products/download/CollectSSL, by order, certificate ID or chain, in both forms; -20 a DcvApiError', async () => {
  const https = nodeFetch({ ca: server.cert });
  const paths = new Set<string>();
  const sdk = (loginName = 'alice') =>
    new DcvClient({
      baseUrl: `https://localhost:${server.https.port}`, loginName, loginPassword: PASSWORD,
      fetch: (url, init) => {
        paths.add(new URL(url).pathname);
        return https(url, init);
      },
    });
  const client = sdk();
  await client.getDcvEmailAddressList({ domainName: 'sdk-collect.example.com' });
  const placed = await client.autoApplyOrder({ product: 24, days: 365, csr: await makeCsr('sdk-collect.example.com'), dcvEmailAddress: 'admin@example.com' });
  const [mail] = await nextMails(1);
  const { orderNumber, certificateID } = placed;
  const shown = { showStatusDetails: true, showFQDN: true };
  // The email went out: DCV in progress (2).
  const inProgress = { statusCode: 0, orderNumber, certificateID, dcvStatus: 2, fqdn: 'sdk-collect.example.com', extra: {}, lines: [] };
  assert.deepEqual(await client.collectSsl({ orderNumber }, shown), inProgress);
  assert.deepEqual(await client.collectSsl({ certificateID }, shown), inProgress);
  assert.deepEqual(await client.collectSsl({ baseOrderNumber: orderNumber }, { ...shown, queryType: 1 }), inProgress);
  assert.deepEqual(await client.collectSsl({ orderNumber }), { statusCode: 0, orderNumber, certificateID, extra: {}, lines: [] });
  // The line-based form: the status line alone, whatever was asked for.
  assert.deepEqual(await client.collectSsl({ orderNumber }, { ...shown, responseFormat: 0 }), { statusCode: 0, extra: {}, lines: [] });
  await confirm(codeIn(mail!.parsed.text));
  assert.equal((await client.collectSsl({ certificateID }, shown)).dcvStatus, 1);

  // Errors, in both forms: another account's order is -4 on the reference, two references that disagree -4 on the second.
  for (const responseFormat of [0, 1] as const) {
    await assert.rejects(sdk('bob').collectSsl({ orderNumber }, { responseFormat }), (err: unknown) => err instanceof DcvApiError && err.endpoint === 'CollectSSL' && err.code === -4 && err.item === 'orderNumber');
    await assert.rejects(client.collectSsl({ orderNumber, certificateID: certificateID + 1 }, { responseFormat }), (err: unknown) => err instanceof DcvApiError && err.code === -4 && err.item === 'certificateID');
  }
  // A declined order: -20, in either form.
  await client.getDcvEmailAddressList({ domainName: 'sdk-declined.example.com' });
  const declined = await client.autoApplyOrder({ product: 24, days: 365, csr: await makeCsr('sdk-declined.example.com'), dcvEmailAddress: 'admin@example.com' });
  await confirm(codeIn((await nextMails(1))[0]!.parsed.text), 'decline');
  for (const responseFormat of [0, 1] as const) {
    await assert.rejects(client.collectSsl({ certificateID: declined.certificateID }, { responseFormat }), (err: unknown) => {
      assert.ok(err instanceof DcvApiError);
      assert.equal(err.code, ErrorCode.OrderRejected);
      assert.equal(err.message, 'The order was rejected or cancelled.');
      return true;
    });
  }
  assert.deepEqual([...paths].sort(), ['/products/!AutoApplyOrder', '/products/!GetDCVEmailAddressList', '/products/download/CollectSSL']);
});

test('responseFormat=0: the real host\'s newline-delimited answer, for success and for errors', async () => {
  await getList(server, 'alice', 'lines.example.com');
  const csr = await makeCsr('lines.example.com');
  const base = { product: 24, days: 365, csr, dcvEmailAddress: 'admin@example.com', responseFormat: 0 };
  const mailsBefore = sink.messages.length;
  const withId = await call('AutoApplySSL', 'alice', { ...base, showCertificateID: 'Y' });
  assert.equal(withId.status, 200);
  assert.equal(withId.headers['content-type'], 'text/plain; charset=utf-8');
  const lines = withId.body.split('\n');
  assert.match(withId.body, /^0\n[0-9]+\n0\.00\n0\n[0-9]+\n$/);
  const stored = await server.store.db.selectFrom('orders').select(['certificate_id']).where('order_number', '=', Number(lines[1])).executeTakeFirstOrThrow();
  assert.equal(Number(lines[4]), stored.certificate_id);
  // Without showCertificateID=Y the certificate ID line is left out, as the real host does.
  const plain = await call('AutoApplyOrder', 'alice', base);
  assert.match(plain.body, /^0\n[0-9]+\n0\.00\n0\n$/);
  assert.notEqual(plain.body.split('\n')[1], lines[1]);
  // Counted from before the first order: its email may arrive before the second order is placed.
  await sink.waitFor(mailsBefore + 2, 60_000);
  await server.outbox!.idle();
  // Errors in that format: code, then message, as GetDCVEmailAddressList's text.
  assert.equal((await call('AutoApplyOrder', 'alice', { ...base, product: 999 })).body, encodeTextError('AutoApplyOrder', { code: -4, item: 'product' }));
  assert.equal((await call('AutoApplyOrder', 'alice', { ...base, bogus: 1 })).body, encodeTextError('AutoApplyOrder', { code: -2, item: 'bogus' }));
  const denied = await server.post('/products/!AutoApplyOrder', form({ loginName: 'alice', loginPassword: 'wrong password', responseFormat: '0', product: '24', days: '365', csr }));
  assert.equal(denied.body, encodeTextError('AutoApplyOrder', { code: -16 }));
  assert.equal((await call('AutoApplyOrder', 'nopriv', base)).body, encodeTextError('AutoApplyOrder', { code: -91 }));
  // Any other value is still -4 responseFormat, in the default (urlencoded) format.
  assert.equal((await call('AutoApplyOrder', 'alice', { ...base, responseFormat: 2 })).body, encodeUrlencoded('AutoApplyOrder', { code: -4, item: 'responseFormat' }));
});

test('one email for several domains sharing an ADN address (BR 3.2.2.4.4): delivered once, one confirmation validates them all', async () => {
  const names = ['x1.example.com', 'x2.example.com', 'x3.example.org'];
  for (const n of names) await getList(server, 'alice', n);
  const r = await call('AutoApplyOrder', 'alice', {
    product: 361, days: 365, csr: await makeCsr('x1.example.com'), domainNames: 'x2.example.com x3.example.org',
    dcvEmailAddresses: 'admin@example.com admin@example.com admin@example.org',
  });
  assert.match(r.body, /^errorCode=0&orderNumber=/);
  const orderNumber = Number(phpRead(r.body).orderNumber);
  const order = await server.store.db.selectFrom('orders').select('id').where('order_number', '=', orderNumber).executeTakeFirstOrThrow();
  const outboxRows = async () => server.store.db.selectFrom('outbox').select(['recipient', 'state', 'random_value_id']).where('order_id', '=', order.id).orderBy('id').execute();

  // Two emails, not three: admin@example.com is an address of example.com, an ADN of x1 and of x2.
  const mails = await nextMails(2);
  assert.equal((await outboxRows()).length, 2);
  const shared = mails.find((m) => m.envelope.rcptTo[0] === 'admin@example.com')!;
  const own = mails.find((m) => m.envelope.rcptTo[0] === 'admin@example.org')!;
  assert.ok(shared.parsed.text?.includes('x1.example.com, x2.example.com'), 'the shared email lists both domains');
  assert.ok(!shared.parsed.text?.includes('x3.example.org'));
  const sharedCode = codeIn(shared.parsed.text);
  assert.notEqual(sharedCode, codeIn(own.parsed.text), 'each email keeps its own random value');

  // A resend re-sends the shared email in its entirety (same value, same recipient, same domains).
  clock.advance(120_000);
  assert.equal((await resend(server, 'alice', { orderNumber })).body, 'errorCode=0');
  const again = await nextMails(2);
  assert.equal(codeIn(again.find((m) => m.envelope.rcptTo[0] === 'admin@example.com')!.parsed.text), sharedCode);

  // AutoUpdateDCV of both to another shared address: one new email, a new value; the old shared code stops working.
  clock.advance(120_000);
  const u = await call('AutoUpdateDCV', 'alice', {
    orderNumber, domainNames: 'x1.example.com,x2.example.com', newMethods: 'EMAIL,EMAIL', newDCVEmailAddresses: 'webmaster@example.com webmaster@example.com',
  });
  assert.match(u.body, /^errorCode=0&/);
  const [updated] = await nextMails(1);
  assert.equal(updated!.envelope.rcptTo[0], 'webmaster@example.com');
  const newCode = codeIn(updated!.parsed.text);
  assert.notEqual(newCode, sharedCode);
  const dead = await server.request({ method: 'GET', path: `/dcv/confirm/${sharedCode}` });
  assert.doesNotMatch(dead.body, /name="decision" value="approve"/);

  // One confirmation validates both domains; each gets its own evidence row naming the shared value.
  const page = await server.request({ method: 'GET', path: `/dcv/confirm/${newCode}` });
  assert.match(page.body, /x1\.example\.com, x2\.example\.com/);
  await confirm(newCode);
  const d = phpRead((await call('GetMDCDomainDetails', 'alice', { orderNumber })).body);
  assert.deepEqual([d['1_dcvStatus'], d['2_dcvStatus'], d['3_dcvStatus']], ['Validated', 'Validated', 'Awaiting']);
  const evidence = await server.store.db.selectFrom('dcv_evidence').selectAll().where('order_id', '=', order.id).orderBy('id').execute();
  assert.deepEqual(evidence.map((e) => e.domain), ['x1.example.com', 'x2.example.com']);
  assert.equal(evidence[0]!.random_value_id, evidence[1]!.random_value_id);
  assert.equal(evidence[0]!.value_hash, evidence[1]!.value_hash);
  assert.deepEqual(evidence.map((e) => [e.recipient, e.adn, e.decision]), [['webmaster@example.com', 'example.com', 'approved'], ['webmaster@example.com', 'example.com', 'approved']]);
  // The code is spent: a second use decides nothing.
  const spent = await server.request({ method: 'GET', path: `/dcv/confirm/${newCode}` });
  assert.doesNotMatch(spent.body, /name="decision" value="approve"/);

  // Every email was delivered exactly once.
  await server.outbox!.idle();
  const rows = await outboxRows();
  assert.equal(rows.length, 5);
  const delivered = rows.filter((row) => row.state === 'delivered').length;
  const ours = sink.messages.filter((m) => ['admin@example.com', 'admin@example.org', 'webmaster@example.com'].includes(m.envelope.rcptTo[0]!) && /x[123]\.example/.test(m.parsed.text ?? ''));
  assert.equal(ours.length, delivered);
  const ids = sink.messages.map((m) => m.parsed.messageId);
  assert.equal(new Set(ids).size, ids.length);
});
