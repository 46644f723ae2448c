/**
 * Sandbox mode (issue 17): start-up and refusals, DNS overrides in front of a
 * real resolver, the captured mailbox and its viewer, the clock, fault
 * switches, auto-approval, and no sandbox route on a normal `serve`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { startTestSandbox, type TestSandbox } from './support/sandbox.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import { startTestServer } from './support/server.ts';
import { waitUntil } from './support/wait.ts';
import { parseResolvers } from '../src/dns/client.ts';
import { startSandbox } from '../src/sandbox/start.ts';
import { createLogger } from '../src/log.ts';
import { encodeTextError, errorMessage, type Endpoint } from '@dcvd/client';

let dns: TestDnsServer;
let sb: TestSandbox;
let nextOrder = 7_000_000;

before(async () => {
  dns = await startTestDnsServer();
  sb = await startTestSandbox({ serve: { dnsServers: parseResolvers(dns.address), dnsTimeoutMs: 1000, dnsAttempts: 1 } });
});
after(async () => {
  await sb?.stop();
  await dns?.close();
});

const list = (domainName: string) => sb.call('GetDCVEmailAddressList', { domainName, responseFormat: 2 });

/** Offers `address` for `domain` (24-hour rule), creates an order with it through the internal API, waits for the captured email. */
async function mailedOrder(domain: string, address: string, extra: Record<string, unknown> = {}) {
  const offered = await list(domain);
  assert.equal(offered.json?.errorCode, 0, offered.body);
  const orderNumber = (nextOrder += 1);
  const created = await sb.admin('POST', '/v1/orders', { account: sb.info.login, domain, orderNumber, dcvEmailAddress: address, ...extra });
  assert.equal(created.status, 201, created.body);
  let mail: any;
  await waitUntil('the captured email', async () => {
    const r = await sb.admin('GET', `/v1/sandbox/mail?order=${orderNumber}`);
    mail = r.json?.[0];
    return mail !== undefined && mail.state === 'delivered';
  });
  return { orderNumber, mail };
}

test('start-up: the block of settings, the info file, the log and every page say sandbox', async () => {
  const { info } = sb;
  assert.match(info.api, /^https:\/\/localhost:\d+$/);
  assert.equal(info.mailViewer, `${info.api}/sandbox/mail`);
  assert.ok(existsSync(info.caCertificate));
  assert.ok(info.password.length >= 12 && info.adminToken.length >= 32);
  const saved = join(info.dataDir, 'sandbox.json');
  assert.equal(statSync(saved).mode & 0o777, 0o600);
  assert.equal(JSON.parse(readFileSync(saved, 'utf8')).adminToken, info.adminToken);
  assert.ok(sb.logs.some((l) => /^SANDBOX mode/.test(String(l.msg))));
  for (const path of ['/dcv/confirm', '/sandbox/mail', '/dcv/confirm/AAAAAAAAAAAAAAAAAAAAAAAAAA']) {
    const page = await sb.https('GET', path);
    assert.match(page.body, /<p class="sandbox" role="note">Sandbox:/, path);
  }
  const status = await sb.admin('GET', '/v1/sandbox');
  assert.equal(status.status, 200);
  // Every endpoint of the legacy API, in name order.
  assert.deepEqual(status.json.endpoints, ['AutoApplyOrder', 'AutoApplySSL', 'AutoUpdateDCV', 'CollectSSL', 'GetDCVEmailAddressList', 'GetMDCDomainDetails', 'ResendDCVEmail']);
});

test('refusals: SMTP, and listeners beyond loopback unless asked', async () => {
  const logger = createLogger('fatal', 2);
  await assert.rejects(startSandbox({ smtpUrl: 'smtp://127.0.0.1:25', logger }), /never sends email/);
  await assert.rejects(startSandbox({ listen: { host: '0.0.0.0', port: 0 }, adminListen: { host: '127.0.0.1', port: 0 }, logger }), /loopback only.*--allow-remote/);
});

test('DNS overrides answer before the resolver, which still answers the rest', async () => {
  dns.setTxt('_validation-contactemail.real-dns.com', [['real@real-dns.com']]);
  const set = await sb.admin('POST', '/v1/sandbox/dns', { name: '_validation-contactemail.Override.com.', type: 'txt', records: ['dns-admin@override.com'] });
  assert.equal(set.status, 201, set.body);
  assert.equal(set.json.name, '_validation-contactemail.override.com');
  await sb.admin('POST', '/v1/sandbox/dns', { name: 'override.com', type: 'CAA', records: [{ tag: 'contactemail', value: 'caa@override.com' }] });

  const before = dns.queries.length;
  const overridden = await list('override.com');
  assert.equal(overridden.json.errorCode, 0, overridden.body);
  const emails = JSON.stringify(overridden.json);
  assert.match(emails, /dns-admin@override\.com/);
  assert.match(emails, /caa@override\.com/);
  const asked = dns.queries.slice(before).map((q) => `${q.type} ${q.name}`);
  assert.ok(!asked.includes('TXT _validation-contactemail.override.com'), 'an overridden name never reaches the resolver');
  assert.ok(asked.includes('CAA com'), 'the parts of the CAA climb without an override do');

  const real = await list('real-dns.com');
  assert.match(JSON.stringify(real.json), /real@real-dns\.com/);

  // Failures: SERVFAIL drops the source (and is counted as such), NXDOMAIN is an empty answer.
  await sb.admin('POST', '/v1/sandbox/dns', { name: '_validation-contactemail.override.com', type: 'TXT', failure: 'servfail' });
  const failed = await list('override.com');
  assert.equal(failed.json.errorCode, 0);
  assert.doesNotMatch(JSON.stringify(failed.json), /dns-admin@/);
  assert.ok(sb.logs.some((l) => (l.dns as { resolver?: string; kind?: string } | undefined)?.resolver === 'sandbox-override'));

  const listed = await sb.admin('GET', '/v1/sandbox/dns');
  assert.deepEqual(listed.json.map((o: { type: string; name: string }) => `${o.type} ${o.name}`), ['TXT _validation-contactemail.override.com', 'CAA override.com']);
  const cleared = await sb.admin('DELETE', '/v1/sandbox/dns?name=override.com&type=CAA');
  assert.deepEqual(cleared.json, { count: 1 });
  // A type without a name: every name's overrides of that type, the other type's kept.
  await sb.admin('POST', '/v1/sandbox/dns', { name: 'other.com', type: 'CAA', records: [{ tag: 'contactemail', value: 'caa@other.com' }] });
  assert.deepEqual((await sb.admin('DELETE', '/v1/sandbox/dns?type=caa')).json, { count: 1 });
  assert.equal((await sb.admin('DELETE', '/v1/sandbox/dns?type=MX')).status, 400);
  assert.deepEqual((await sb.admin('GET', '/v1/sandbox/dns')).json.map((o: { type: string; name: string }) => `${o.type} ${o.name}`), ['TXT _validation-contactemail.override.com']);
  assert.deepEqual((await sb.admin('DELETE', '/v1/sandbox/dns')).json, { count: 1 });
  assert.deepEqual((await sb.admin('GET', '/v1/sandbox/dns')).json, []);
});

test('DNS overrides: bad requests get a JSON 400 saying what is wrong', async () => {
  const cases: [unknown, RegExp][] = [
    [{ name: 'bad_name.com', type: 'TXT', records: ['a@b.com'] }, /not a valid domain name/],
    [{ name: '10.0.0.1', type: 'TXT', records: ['a@b.com'] }, /not a valid domain name/],
    [{ name: '*.example.com', type: 'TXT', records: ['a@b.com'] }, /wildcard/],
    [{ name: 'example.com', type: 'MX', records: [] }, /type must be one of TXT, CAA/],
    [{ name: 'example.com', type: 'TXT', records: ['Admin <a@b.com>'] }, /one contact address/],
    [{ name: 'example.com', type: 'TXT', records: ['a@b.com'], failure: 'servfail' }, /exactly one of records and failure/],
    [{ name: 'example.com', type: 'TXT', failure: 'refused' }, /failure must be one of/],
    [{ name: 'example.com', type: 'CAA', records: [{ tag: 'contactemail', value: 'nobody' }] }, /contactemail value/],
    [{ name: 'example.com', type: 'CAA', records: [{ tag: 'bad tag', value: 'x' }] }, /CAA tag/],
    [{ name: 'example.com', type: 'TXT', records: Array(21).fill('a@b.com') }, /body\/records/],
    [{ name: 'example.com', type: 'TXT', records: [], extra: 1 }, /body/],
  ];
  for (const [body, message] of cases) {
    const r = await sb.admin('POST', '/v1/sandbox/dns', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.error.code, 'invalid_request');
    assert.match(r.json.error.message, message, JSON.stringify(body));
  }
});

test('mail: captured with its code and link, viewer pages escaped and the HTML isolated, delete', async () => {
  const tpl = await sb.admin('POST', '/v1/templates', {
    id: 77,
    global: true,
    subject: 'Approve <b>{{domain}}</b>',
    text: 'Code {{validationCode}} at {{confirmationUrl}} <script>alert(1)</script>',
    html: '<p>Code {{validationCode}}: <a href="{{confirmationUrl}}">confirm</a></p><script>alert(1)</script>',
  });
  assert.equal(tpl.status, 201, tpl.body);
  const { orderNumber, mail } = await mailedOrder('mail-test.com', 'admin@mail-test.com', { templateId: 77 });
  assert.equal(mail.to, 'admin@mail-test.com');
  assert.equal(mail.orderNumber, orderNumber);
  assert.equal(mail.domain, 'mail-test.com');
  assert.equal(mail.orderStatus, 'awaiting');
  assert.match(mail.code, /^[0-9A-Z]{26}$/);
  assert.equal(mail.confirmationUrl, `${sb.info.api}/dcv/confirm/${mail.code}`);
  const latest = await sb.admin('GET', `/v1/sandbox/mail?to=ADMIN@mail-test.com&limit=1`);
  assert.equal(latest.json[0].id, mail.id);

  const detail = await sb.admin('GET', `/v1/sandbox/mail/${encodeURIComponent(mail.id)}`);
  assert.match(detail.json.text, new RegExp(mail.code));
  assert.match(detail.json.html, /<script>/);

  const listPage = await sb.https('GET', '/sandbox/mail');
  assert.match(listPage.body, /Approve &lt;b&gt;mail-test\.com&lt;\/b&gt;/);
  assert.match(String(listPage.headers['content-security-policy']), /default-src 'none'/);
  const page = await sb.https('GET', `/sandbox/mail/${encodeURIComponent(mail.id)}`);
  assert.match(page.body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.doesNotMatch(page.body, /<script>/);
  assert.match(page.body, /<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" src="\/sandbox\/mail\/[^"]+\/html"/);
  assert.match(page.body, new RegExp(`id="confirmation-link" href="${sb.info.api}/dcv/confirm/${mail.code}"`));
  const html = await sb.https('GET', `/sandbox/mail/${encodeURIComponent(mail.id)}/html`);
  assert.match(String(html.headers['content-security-policy']), /^sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'/);
  assert.doesNotMatch(html.body, /class="sandbox"/, 'the email\u2019s own HTML is left as sent');

  // A cross-site form post cannot delete; the API can.
  const forged = await sb.https('POST', `/sandbox/mail/${encodeURIComponent(mail.id)}/delete`, { headers: { 'sec-fetch-site': 'cross-site', 'content-type': 'application/x-www-form-urlencoded' }, body: '' });
  assert.equal(forged.status, 403);
  assert.equal((await sb.admin('DELETE', `/v1/sandbox/mail/${encodeURIComponent(mail.id)}`)).status, 200);
  assert.equal((await sb.admin('GET', `/v1/sandbox/mail/${encodeURIComponent(mail.id)}`)).status, 404);
  assert.equal((await sb.https('GET', `/sandbox/mail/${encodeURIComponent(mail.id)}`)).status, 404);
  assert.ok(!existsSync(join(sb.info.dataDir, 'outbox', `${mail.id}.eml`)));
  assert.equal((await sb.admin('GET', '/v1/sandbox/mail?limit=0')).status, 400);
  // Numbers in plain decimal digits only, as on every admin route (not 1e1 or 0x10 read as 10 and 16).
  for (const query of ['limit=1e1', 'order=0x10', 'order=']) assert.equal((await sb.admin('GET', `/v1/sandbox/mail?${query}`)).status, 400, query);
});

test('mail: clearing the viewer beside a delete of one of its emails: both succeed, each email counted once', async () => {
  const mails = [(await mailedOrder('clear-one.com', 'admin@clear-one.com')).mail, (await mailedOrder('clear-two.com', 'admin@clear-two.com')).mail];
  const before = (await sb.admin('GET', '/v1/sandbox/mail')).json.length;
  // The delete arrives while the clear is at work (it removes file after file): before, the clear then met an
  // email already gone and answered 404 midway.
  const [cleared, ...deleted] = await Promise.all([sb.admin('DELETE', '/v1/sandbox/mail'), ...mails.map((m) => sb.admin('DELETE', `/v1/sandbox/mail/${encodeURIComponent(m.id)}`))]);
  assert.equal(cleared.status, 200, cleared.body);
  for (const d of deleted) assert.ok(d.status === 200 || d.status === 404, d.body);
  assert.equal(cleared.json.count + deleted.filter((d) => d.status === 200).length, before);
  assert.deepEqual((await sb.admin('GET', '/v1/sandbox/mail')).json, []);
});

test('clock: the resend interval and the 24-hour rule follow the sandbox clock', async () => {
  const { orderNumber } = await mailedOrder('clock-test.com', 'admin@clock-test.com');
  const again = () => sb.call('ResendDCVEmail', { orderNumber });
  assert.equal((await again()).body, 'errorCode=-160&errorMessage=The+attempt+to+resend+DCV+emails+did+not+succeed.');
  const moved = await sb.admin('POST', '/v1/sandbox/clock/advance', { by: '61s' });
  assert.equal(moved.status, 200);
  assert.ok(moved.json.offsetMs >= 61_000);
  assert.equal((await again()).body, 'errorCode=0');
  // 25 hours on, the address was offered too long ago to be named again.
  await sb.admin('POST', '/v1/sandbox/clock/advance', { by: '25h' });
  const named = await sb.call('ResendDCVEmail', { orderNumber, dcvEmailAddress: 'admin@clock-test.com' });
  assert.match(named.body, /^errorCode=-4&/);
  for (const by of ['-1s', '0s', '367d', 'soon']) {
    const r = await sb.admin('POST', '/v1/sandbox/clock/advance', { by });
    assert.equal(r.status, 400, by);
    assert.match(r.json.error.message, /^by: /);
  }
});

test('clock: a lockout ends when the sandbox clock passes its window', async () => {
  // A second account, so the seeded one stays usable for the other tests.
  const login = 'lockout-test';
  const password = 'lockout test password 1';
  assert.equal((await sb.admin('POST', '/v1/accounts', { login, password, permissions: ['auto-apply'] })).status, 201);
  const call = (pw: string) =>
    sb.https('POST', '/products/!GetDCVEmailAddressList', {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ loginName: login, loginPassword: pw, domainName: 'lockout-test.com' }).toString(),
    });
  for (let i = 0; i < 5; i++) assert.match((await call('wrong password 123')).body, /^-16\n/);
  assert.match((await call(password)).body, /^-16\n/, 'locked out');
  assert.ok((await sb.admin('GET', `/v1/accounts/${login}`)).json.lockedUntil);
  await sb.admin('POST', '/v1/sandbox/clock/advance', { by: '16m' });
  assert.match((await call(password)).body, /^0\n/, 'the lockout is over on the sandbox clock');
});

test('switches: the next N calls (of one login) answer an error, or wait first', async () => {
  const arm = (body: unknown) => sb.admin('POST', '/v1/sandbox/switches', body);
  assert.equal((await arm({ endpoint: 'GetDCVEmailAddressList', login: 'someone-else', errorCode: -14 })).status, 201);
  assert.equal((await arm({ endpoint: 'GetDCVEmailAddressList', login: sb.info.login, count: 2, errorCode: -160 })).status, 201);
  const codes = [];
  for (let i = 0; i < 3; i++) codes.push((await list('switch-test.com')).json.errorCode);
  assert.deepEqual(codes, [-160, -160, 0]);
  const text = await sb.call('GetDCVEmailAddressList', { domainName: 'switch-test.com' });
  assert.equal(text.body.split('\n')[0], '0', 'the other login\u2019s switch is still armed, not ours');
  assert.equal((await sb.admin('GET', '/v1/sandbox/switches')).json.length, 1);
  assert.deepEqual((await sb.admin('DELETE', '/v1/sandbox/switches')).json, { count: 1 });

  await arm({ endpoint: 'ResendDCVEmail', errorCode: -4, errorItem: 'orderNumber' });
  assert.match((await sb.call('ResendDCVEmail', { orderNumber: 1 })).body, /^errorCode=-4&errorMessage=[^&]+&errorItem=orderNumber$/);
  await arm({ endpoint: 'GetDCVEmailAddressList', latencyMs: 400 });
  const started = Date.now();
  assert.equal((await list('switch-test.com')).json.errorCode, 0);
  assert.ok(Date.now() - started >= 390, 'the call was held');

  const bad: [unknown, RegExp][] = [
    [{ endpoint: 'NoSuchEndpoint', errorCode: -14 }, /endpoint must be one of AutoApplyOrder, AutoApplySSL, AutoUpdateDCV, CollectSSL, GetDCVEmailAddressList, GetMDCDomainDetails, ResendDCVEmail/],
    [{ endpoint: 'ResendDCVEmail', errorCode: -999 }, /errorCode must be one of/],
    [{ endpoint: 'ResendDCVEmail', errorCode: -37 }, /errorCode must be one of/],
    [{ endpoint: 'ResendDCVEmail', errorCode: -4 }, /errorItem/],
    [{ endpoint: 'ResendDCVEmail', count: 0, errorCode: -14 }, /count/],
    [{ endpoint: 'ResendDCVEmail', count: 1001, errorCode: -14 }, /count/],
    [{ endpoint: 'ResendDCVEmail', errorCode: -14, latencyMs: 5 }, /exactly one of errorCode and latencyMs/],
    [{ endpoint: 'ResendDCVEmail', latencyMs: 60_001 }, /latencyMs/],
  ];
  for (const [body, message] of bad) {
    const r = await arm(body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(r.json.error.message, message, JSON.stringify(body));
  }
});

test('switches: a login filter sees the loginName the API reads, its name in any case (CONTRACT \u00a71)', async () => {
  const post = (body: string) => sb.https('POST', '/products/!GetDCVEmailAddressList', { body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  const creds = (name: string) => `${name}=${encodeURIComponent(sb.info.login)}&loginPassword=${encodeURIComponent(sb.info.password)}&domainName=switch-test.com`;
  for (const name of ['LOGINNAME', 'loginname', 'LoginName']) {
    await sb.admin('POST', '/v1/sandbox/switches', { endpoint: 'GetDCVEmailAddressList', login: sb.info.login, errorCode: -160 });
    assert.match((await post(creds(name))).body, /^-160\n/, name);
  }
  assert.deepEqual((await sb.admin('GET', '/v1/sandbox/switches')).json, []);
  // Values stay case-sensitive, and a repeated loginName is none (the API answers -4): the switch stays armed.
  await sb.admin('POST', '/v1/sandbox/switches', { endpoint: 'GetDCVEmailAddressList', login: sb.info.login, errorCode: -160 });
  assert.match((await post(`loginName=${sb.info.login.toUpperCase()}&loginPassword=x&domainName=switch-test.com`)).body, /^-16\n/);
  assert.match((await post(`loginName=${encodeURIComponent(sb.info.login)}&loginName=${encodeURIComponent(sb.info.login)}`)).body, /^-4\n/, 'a repeated loginName is -4, no login');
  assert.equal((await sb.admin('GET', '/v1/sandbox/switches')).json.length, 1);
  assert.deepEqual((await sb.admin('DELETE', '/v1/sandbox/switches')).json, { count: 1 });
});

test('switches: -90 names the endpoint in every endpoint\u2019s every format, as the real -90 does (no xxxx, no errorItem)', async () => {
  // [endpoint, body, format]: the switch answers in the format the call asked for.
  const calls: [Endpoint, string, 'text' | 'json' | 'urlencoded'][] = [
    ['GetDCVEmailAddressList', '', 'text'],
    ['GetDCVEmailAddressList', 'responseFormat=2', 'json'],
    ['ResendDCVEmail', '', 'urlencoded'],
    ['AutoApplyOrder', '', 'urlencoded'],
    ['AutoApplyOrder', 'responseFormat=0', 'text'],
    ['AutoApplySSL', '', 'urlencoded'],
    ['AutoUpdateDCV', '', 'urlencoded'],
    ['GetMDCDomainDetails', '', 'urlencoded'],
    ['GetMDCDomainDetails', 'responseFormat=2', 'json'],
    ['CollectSSL', '', 'text'],
    ['CollectSSL', 'responseFormat=1', 'urlencoded'],
  ];
  for (const [endpoint, body, format] of calls) {
    const what = `${endpoint} ${format}`;
    assert.equal((await sb.admin('POST', '/v1/sandbox/switches', { endpoint, errorCode: -90 })).status, 201, what);
    const r = await sb.https('POST', `/products/!${endpoint}`, { body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(r.status, 200, what);
    const message = errorMessage(endpoint, -90, endpoint);
    assert.ok(message.includes(`${endpoint}`) && !message.includes('xxxx'), message);
    const expected = format === 'text' ? encodeTextError(endpoint, { code: -90, item: endpoint })
      : format === 'json' ? JSON.stringify({ errorCode: -90, errorMessage: message })
      : new URLSearchParams({ errorCode: '-90', errorMessage: message }).toString();
    assert.equal(r.body, expected, what);
  }
  // The bytes, as a voucher order's real -90 answers them (test/resend.test.ts).
  await sb.admin('POST', '/v1/sandbox/switches', { endpoint: 'ResendDCVEmail', errorCode: -90 });
  assert.equal((await sb.call('ResendDCVEmail', { orderNumber: 1 })).body, 'errorCode=-90&errorMessage=Permission+denied+for+using+%27voucher%27+with+%27ResendDCVEmail%27.');
  await sb.admin('POST', '/v1/sandbox/switches', { endpoint: 'GetDCVEmailAddressList', errorCode: -90 });
  assert.equal((await sb.call('GetDCVEmailAddressList', { domainName: 'switch-test.com' })).body, '-90\nPermission Denied for using \u201cvoucher\u201d with \u2018GetDCVEmailAddressList\u2019\n');
});

test('clock: the confirmation pages\u2019 forms are dated by the sandbox clock (docs/SANDBOX.md): an advance past 2 hours expires a form shown', async () => {
  const { orderNumber, mail } = await mailedOrder('form-clock.com', 'admin@form-clock.com');
  const path = new URL(mail.confirmationUrl).pathname;
  const csrf = () => sb.https('GET', path).then((r) => /name="csrf" value="([^"]+)"/.exec(r.body)![1]!);
  const post = (token: string) =>
    sb.https('POST', '/dcv/confirm', { body: new URLSearchParams({ code: mail.code, csrf: token, decision: 'approve' }).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' } });
  const shown = await csrf();
  assert.equal((await sb.admin('POST', '/v1/sandbox/clock/advance', { by: '121m' })).status, 200);
  const late = await post(shown);
  assert.equal(late.status, 403);
  assert.match(late.body, /This form has expired/);
  assert.equal((await post(await csrf())).status, 200);
  assert.equal((await sb.admin('GET', `/v1/orders/${orderNumber}`)).json.dcvStatus, 'validated');
});

test('auto-approve: off by default, then approves an email once it is old enough on the sandbox clock', async () => {
  assert.deepEqual((await sb.admin('GET', '/v1/sandbox/auto-approve')).json, { afterSeconds: null });
  assert.equal((await sb.admin('POST', '/v1/sandbox/auto-approve', { afterSeconds: 86_401 })).status, 400);
  assert.equal((await sb.admin('POST', '/v1/sandbox/auto-approve', { afterSeconds: 3600 })).status, 200);
  const { orderNumber } = await mailedOrder('auto-test.com', 'admin@auto-test.com');
  const status = async () => (await sb.admin('GET', `/v1/orders/${orderNumber}`)).json.dcvStatus;
  assert.equal(await status(), 'awaiting');
  await sb.admin('POST', '/v1/sandbox/clock/advance', { by: '2h' });
  await waitUntil('auto-approval', async () => (await status()) === 'validated');
  const order = await sb.admin('GET', `/v1/orders/${orderNumber}`);
  assert.equal(order.json.evidence[0].userAgent, 'dcvd-sandbox-auto-approve');
  await sb.admin('POST', '/v1/sandbox/auto-approve', { afterSeconds: null });
});

test('webhooks: an integrator\u2019s receiver on loopback gets its account\u2019s events over http:// (dcvd serve allows no such target unless told)', async () => {
  const got: string[] = [];
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c));
    req.on('end', () => {
      got.push(body);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  try {
    const patched = await sb.admin('PATCH', `/v1/accounts/${sb.info.login}`, { webhookUrl: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook` });
    assert.equal(patched.status, 200, patched.body);
    assert.match(patched.json.webhookSecret, /^whsec_/);
    assert.equal((await sb.admin('POST', '/v1/sandbox/auto-approve', { afterSeconds: 0 })).status, 200);
    const { orderNumber } = await mailedOrder('hook-test.com', 'admin@hook-test.com');
    await waitUntil('the event at the loopback receiver', async () => got.length >= 1);
    const event = JSON.parse(got[0]!);
    assert.deepEqual([event.type, event.order.orderNumber, event.order.dcvStatus], ['dcv.validated', orderNumber, 'validated']);
  } finally {
    await sb.admin('POST', '/v1/sandbox/auto-approve', { afterSeconds: null });
    await sb.admin('PATCH', `/v1/accounts/${sb.info.login}`, { webhookUrl: null });
    receiver.closeAllConnections();
    await new Promise((r) => receiver.close(r));
  }
});

test('auto-approve is not a guess: a block of loopback by unknown codes does not stop it', async () => {
  // A client's own tests of unknown codes, from loopback, reach the guessing limit (20).
  const statuses: number[] = [];
  for (let i = 0; i < 21; i += 1) statuses.push((await sb.https('GET', `/dcv/confirm/${String(i).padStart(26, '7')}`)).status);
  assert.deepEqual(statuses, [...Array(20).fill(404), 429]);
  assert.equal((await sb.admin('POST', '/v1/sandbox/auto-approve', { afterSeconds: 0 })).status, 200);
  try {
    const { orderNumber } = await mailedOrder('auto-blocked.com', 'admin@auto-blocked.com');
    await waitUntil('auto-approval while loopback is blocked', async () => (await sb.admin('GET', `/v1/orders/${orderNumber}`)).json.dcvStatus === 'validated');
    const order = await sb.admin('GET', `/v1/orders/${orderNumber}`);
    assert.deepEqual([order.json.evidence[0].sourceIp, order.json.evidence[0].userAgent], ['127.0.0.1', 'dcvd-sandbox-auto-approve']);
    // Loopback is still blocked for the pages: the auto-approval neither counted nor lifted anything.
    assert.equal((await sb.https('GET', `/dcv/confirm/${'7'.repeat(26)}`)).status, 429);
  } finally {
    await sb.admin('POST', '/v1/sandbox/auto-approve', { afterSeconds: null });
    // The block ends with its window (sandbox clock).
    await sb.admin('POST', '/v1/sandbox/clock/advance', { by: '16m' });
  }
  assert.equal((await sb.https('GET', `/dcv/confirm/${'7'.repeat(26)}`)).status, 404);
});

test('a normal serve has no sandbox route: 404 on both listeners', async () => {
  const token = 'normal-serve-admin-token-0123456789abcdef';
  const server = await startTestServer({ adminListen: { host: '127.0.0.1', port: 0 }, adminToken: token });
  try {
    for (const path of ['/v1/sandbox', '/v1/sandbox/dns', '/v1/sandbox/mail', '/v1/sandbox/switches', '/v1/sandbox/clock']) {
      const r = await server.request({ admin: true, method: 'GET', path, headers: { authorization: `Bearer ${token}` } });
      assert.equal(r.status, 404, path);
      assert.equal(JSON.parse(r.body).error.code, 'not_found');
    }
    const posted = await server.request({ admin: true, method: 'POST', path: '/v1/sandbox/dns', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(posted.status, 404);
    for (const path of ['/sandbox/mail', '/sandbox']) assert.equal((await server.request({ method: 'GET', path })).status, 404, path);
    assert.doesNotMatch((await server.request({ method: 'GET', path: '/dcv/confirm' })).body, /Sandbox/);
  } finally {
    await server.stop();
  }
});
