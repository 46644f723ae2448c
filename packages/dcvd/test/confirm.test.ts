/**
 * The confirmation pages over HTTP (CONTRACT §6): GET changes nothing,
 * approve/decline spend the code atomically and write evidence, CSRF and
 * cross-site checks, security headers, code guessing limited per source IP,
 * bad input never answered with a 5xx, no code in the logs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { defaultDcvEmailConfig } from '../src/config.ts';
import { ManualClock } from '../src/deps.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { listEvidence } from '../src/orders/confirmation.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, startTestServer, type RequestOptions, type TestServer } from './support/server.ts';
import { csrfOf, mailedCode } from './support/confirm.ts';
import { runDcvd } from './support/cli.ts';

const DAY = 24 * 3600_000;
const clock = new ManualClock(Date.UTC(2026, 2, 1, 9, 0, 0));
let sink: SmtpSink;
let server: TestServer;
let next = 3_000_000;

before(async () => {
  sink = await startSmtpSink();
  server = await startTestServer(
    {
      dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, randomValueTtlMs: 7 * DAY, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50 }, caName: 'Example <Trust> & Co' }),
      codeGuessing: { failureLimit: 5, windowMs: 15 * 60_000 },
    },
    { clock },
  );
  await server.createAccount('alice');
});
after(async () => {
  await server.stop();
  await sink.close();
});

async function mailed(domain = 'www.example.com', address = 'admin@example.com') {
  const orderNumber = (next += 1);
  const m = await mailedCode(server, sink, clock, { login: 'alice', orderNumber, domain, address });
  return { ...m, orderNumber, path: new URL(m.link).pathname };
}

const get = (path: string, opts: RequestOptions = {}) => server.request({ ...opts, method: 'GET', path });
/** A POST as our own form sends it (same-origin). */
const submit = (fields: Record<string, string>, opts: RequestOptions = {}) =>
  server.post('/dcv/confirm', form(fields), { ...opts, headers: { 'sec-fetch-site': 'same-origin', origin: 'null', 'user-agent': 'dcvd-test/1', ...(opts.headers ?? {}) } });

async function orderStatus(orderNumber: number) {
  return (await server.store.db.selectFrom('orders').select(['id', 'dcv_status']).where('order_number', '=', orderNumber).executeTakeFirstOrThrow());
}

test('the link opens a page that shows the order and changes nothing; strict headers', async () => {
  const m = await mailed();
  assert.match(m.link, /^https:\/\/localhost:\d+\/dcv\/confirm\/[0-9A-Z]{26}$/);
  assert.equal(m.mail.parsed.subject, `Example <Trust> & Co: domain control validation for www.example.com (order ${m.orderNumber})`);
  assert.match(m.mail.parsed.text!, /Authorization domain: +example\.com\n/);
  // No --mail-from and no --public-url: the sender and the Message-IDs fall back to localhost.
  assert.deepEqual(m.mail.parsed.from, ['dcvd@localhost']);
  assert.match(m.mail.parsed.messageId!, /^<[0-9a-f]{32}@localhost>$/);
  for (let i = 0; i < 2; i += 1) {
    const r = await get(m.path);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
    assert.ok(r.body.includes(`<dd>${m.orderNumber}</dd>`));
    assert.ok(r.body.includes('<dd>www.example.com</dd>'));
    assert.ok(r.body.includes('<dd>example.com</dd>'), 'the ADN');
    // The CA's identity (issue 13), escaped, and the ADN under the same label as in the email.
    assert.ok(r.body.includes('<dt>Certificate authority</dt><dd>Example &lt;Trust&gt; &amp; Co</dd>'));
    assert.ok(r.body.includes('the certificate authority <strong>Example &lt;Trust&gt; &amp; Co</strong>'));
    assert.ok(r.body.includes('<dt>Authorization domain</dt><dd>example.com</dd>'));
    assert.match(r.body, /<button type="submit" name="decision" value="approve"/);
    assert.match(r.body, /<button type="submit" name="decision" value="decline"/);
    assert.equal(r.headers['content-security-policy'], "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    assert.equal(r.headers['x-frame-options'], 'DENY');
    assert.equal(r.headers['referrer-policy'], 'no-referrer');
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.equal(r.headers['cache-control'], 'no-store');
    assert.match(String(r.headers['strict-transport-security']), /max-age=\d+/);
    assert.doesNotMatch(r.body, /<script|https?:\/\/(?!localhost)/, 'no scripts, no external assets');
  }
  assert.equal((await orderStatus(m.orderNumber)).dcv_status, 'awaiting');
  const css = await get('/dcv/style.css');
  assert.equal(css.status, 200);
  assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
});

test('approve: validated, code spent, evidence with everything §6 lists; a second approval sees "already used"', async () => {
  const m = await mailed('shop.example.org', 'admin@example.org');
  const page = await get(m.path);
  const r = await submit({ code: m.code, csrf: csrfOf(page.body), decision: 'approve' });
  assert.equal(r.status, 200);
  assert.match(r.body, /<h1>Approved<\/h1>/);
  assert.equal((await orderStatus(m.orderNumber)).dcv_status, 'validated');

  const again = await submit({ code: m.code, csrf: csrfOf(page.body), decision: 'approve' });
  assert.equal(again.status, 409);
  assert.match(again.body, /already used/);
  const link = await get(m.path);
  assert.equal(link.status, 409);

  const [e, ...rest] = await listEvidence(server.store.db, { orderId: (await orderStatus(m.orderNumber)).id });
  assert.equal(rest.length, 0);
  const row = await server.store.db.selectFrom('outbox').selectAll().where('message_id', '=', m.mail.parsed.messageId!).executeTakeFirstOrThrow();
  const value = await server.store.db.selectFrom('random_values').selectAll().where('id', '=', row.random_value_id).executeTakeFirstOrThrow();
  assert.deepEqual(e, {
    decision: 'approved',
    method: 'BR 3.2.2.4.4 Email to a Constructed Address, version 2.2.6',
    brSection: '3.2.2.4.4',
    brVersion: '2.2.6',
    orderNumber: m.orderNumber,
    domain: 'shop.example.org',
    adn: 'example.org',
    recipient: 'admin@example.org',
    addressSource: 'constructed',
    dns: null,
    randomValueHash: value.value_hash,
    randomValueCreatedAt: new Date(value.created_at).toISOString(),
    emailMessageId: m.mail.parsed.messageId,
    emailSentAt: new Date(row.delivered_at!).toISOString(),
    decidedAt: new Date(clock.now()).toISOString(),
    sourceIp: '127.0.0.1',
    userAgent: 'dcvd-test/1',
    usable: true,
    unusableReason: null,
    emailMethodsUsableUntil: null,
  });
  assert.equal(value.spent_at, clock.now());

  // The operator sees it too (CONTRACT §9).
  const env: Record<string, string> = server.databaseUrl ? { DCVD_DATABASE_URL: server.databaseUrl } : {};
  const shown = runDcvd(server.dataDir, ['order', 'show', String(m.orderNumber), '--json'], { env });
  assert.equal(shown.code, 0, shown.stderr);
  const order = JSON.parse(shown.stdout);
  assert.equal(order.dcvStatus, 'validated');
  // Judged against the default cut-off (BR: email methods not relied upon from 2028-03-15).
  assert.deepEqual(order.evidence, [{ ...e, emailMethodsUsableUntil: '2028-03-15T00:00:00.000Z' }]);
});

/** A POST of our form with a User-Agent of these bytes as they are on the wire, over a TLS connection of its own. */
function postWithRawUserAgent(fields: Record<string, string>, userAgent: Buffer): Promise<string> {
  const body = form(fields);
  const head = `POST /dcv/confirm HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nSec-Fetch-Site: same-origin\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\nUser-Agent: `;
  return new Promise((resolve, reject) => {
    // Written, not ended: the server closes the connection once it has answered (Connection: close).
    const socket = tls.connect({ host: '127.0.0.1', port: server.https!.port, servername: 'localhost', ca: server.cert }, () =>
      socket.write(Buffer.concat([Buffer.from(head), userAgent, Buffer.from(`\r\n\r\n${body}`)])),
    );
    let answer = '';
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('end', () => resolve(answer.split('\r\n')[0]!));
    socket.on('error', reject);
  });
}

test('the evidence\u2019s user agent: UTF-8 bytes read as UTF-8, controls and invisible characters replaced, at most 512 characters', async () => {
  const cases: [string, Buffer, string][] = [
    // Valid UTF-8: a C1 CSI (U+009B), a bidi override and a zero-width space among letters and an emoji. (Node
    // refuses C0 controls and DEL in a header: 400.)
    ['utf-8', Buffer.from('Mozilla/5.0 \u00dcn\u00efcode \u{1F600} \u009b31mred safe\u202eevil\u200b.', 'utf8'), 'Mozilla/5.0 \u00dcn\u00efcode \u{1F600} \ufffd31mred safe\ufffdevil\ufffd.'],
    // Not UTF-8 (a lone 0x9B): latin1, where 0x9B is the C1 control CSI.
    ['latin1', Buffer.from([0x41, 0x9b, 0x33, 0x31, 0x6d, 0x42, 0xe9]), 'A\ufffd31mB\u00e9'],
    ['long', Buffer.from('\u00e9'.repeat(600), 'utf8'), '\u00e9'.repeat(512)],
  ];
  const orders: number[] = [];
  for (const [name, bytes, stored] of cases) {
    const m = await mailed(`ua-${name}.example.com`, 'admin@example.com');
    orders.push(m.orderNumber);
    const status = await postWithRawUserAgent({ code: m.code, csrf: csrfOf((await get(m.path)).body), decision: 'approve' }, bytes);
    assert.equal(status, 'HTTP/1.1 200 OK', name);
    const orderId = (await orderStatus(m.orderNumber)).id;
    const [e] = await listEvidence(server.store.db, { orderId });
    assert.equal(e!.userAgent, stored, name);
    // Stored so, not only shown so.
    const row = await server.store.db.selectFrom('dcv_evidence').select('user_agent').where('order_id', '=', orderId).executeTakeFirstOrThrow();
    assert.equal(row.user_agent, stored, name);
  }
  // A row stored raw before 2026-12-04 is cleaned where it is shown.
  const oldId = (await orderStatus(orders[0]!)).id;
  await server.store.db.updateTable('dcv_evidence').set({ user_agent: 'old \u009b31m \u202eagent' }).where('order_id', '=', oldId).execute();
  assert.equal((await listEvidence(server.store.db, { orderId: oldId }))[0]!.userAgent, 'old \ufffd31m \ufffdagent');
  // What the operator's terminal gets: no C0 or C1 control, no bidi control.
  const env: Record<string, string> = server.databaseUrl ? { DCVD_DATABASE_URL: server.databaseUrl } : {};
  for (const orderNumber of orders.slice(0, 2)) {
    const shown = runDcvd(server.dataDir, ['order', 'show', String(orderNumber), '--json'], { env });
    assert.equal(shown.code, 0, shown.stderr);
    assert.doesNotMatch(shown.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e]/);
  }
});

test('two concurrent approvals: one wins, the other sees "already used"; one evidence record', async () => {
  const m = await mailed('race.example.net', 'admin@example.net');
  const csrf = csrfOf((await get(m.path)).body);
  const results = await Promise.all(
    Array.from({ length: 4 }, (_, i) => submit({ code: m.code, csrf, decision: i % 2 === 0 ? 'approve' : 'decline' }, { localAddress: '127.0.0.1' })),
  );
  const won = results.filter((r) => r.status === 200);
  assert.equal(won.length, 1, results.map((r) => r.status).join(','));
  assert.ok(results.filter((r) => r.status === 409).length === 3);
  const status = (await orderStatus(m.orderNumber)).dcv_status;
  assert.equal(status, /<h1>Approved/.test(won[0]!.body) ? 'validated' : 'declined');
  assert.equal((await listEvidence(server.store.db, { orderId: (await orderStatus(m.orderNumber)).id })).length, 1);
});

test('decline: recorded on the order, code spent, evidence says declined', async () => {
  const m = await mailed('no.example.com', 'admin@example.com');
  const r = await submit({ code: m.code, csrf: csrfOf((await get(m.path)).body), decision: 'decline' });
  assert.equal(r.status, 200);
  assert.match(r.body, /<h1>Declined<\/h1>/);
  const o = await orderStatus(m.orderNumber);
  assert.equal(o.dcv_status, 'declined');
  assert.equal((await listEvidence(server.store.db, { orderId: o.id }))[0]!.decision, 'declined');
  assert.equal((await get(m.path)).status, 409);
});

test('typed code: the form finds the order (case, spaces, hyphens forgiven); an unknown one is refused', async () => {
  const m = await mailed('typed.example.com', 'admin@example.com');
  const page = await get('/dcv/confirm');
  assert.equal(page.status, 200);
  assert.match(page.body, /<label for="code">Validation code<\/label>/);
  const typed = `${m.code.slice(0, 6).toLowerCase()} ${m.code.slice(6, 13)}-${m.code.slice(13)}`;
  const shown = await submit({ code: typed, csrf: csrfOf(page.body) });
  assert.equal(shown.status, 200);
  assert.ok(shown.body.includes(`<dd>${m.orderNumber}</dd>`));
  assert.equal((await orderStatus(m.orderNumber)).dcv_status, 'awaiting');
  const approved = await submit({ code: m.code, csrf: csrfOf(shown.body), decision: 'approve' });
  assert.equal(approved.status, 200);
  const unknown = await submit({ code: '0'.repeat(26), csrf: csrfOf(page.body) }, { localAddress: '127.0.0.9' });
  assert.equal(unknown.status, 404);
  assert.match(unknown.body, /role="alert">That code was not recognised/);
});

test('CSRF: no token, a token of another code, a cross-site fetch or a foreign Origin are refused, and change nothing', async () => {
  const m = await mailed('csrf.example.com', 'admin@example.com');
  const other = await mailed('csrf2.example.com', 'admin@example.com');
  const csrf = csrfOf((await get(m.path)).body);
  const otherCsrf = csrfOf((await get(other.path)).body);
  const cases: [Record<string, string>, RequestOptions][] = [
    [{ code: m.code, decision: 'approve' }, {}],
    [{ code: m.code, csrf: '', decision: 'approve' }, {}],
    [{ code: m.code, csrf: otherCsrf, decision: 'approve' }, {}],
    [{ code: m.code, csrf: csrf.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')), decision: 'approve' }, {}],
    [{ code: m.code, csrf: `${Math.floor(Date.now() / 1000) - 3 * 3600}.${csrf.split('.')[1]}`, decision: 'approve' }, {}],
    [{ code: m.code, csrf, decision: 'approve' }, { headers: { 'sec-fetch-site': 'cross-site' } }],
    [{ code: m.code, csrf, decision: 'approve' }, { headers: { 'sec-fetch-site': 'same-site' } }],
    [{ code: m.code, csrf, decision: 'approve' }, { headers: { origin: 'https://evil.example' } }],
    [{ code: m.code, csrf, decision: 'maybe' }, {}],
  ];
  for (const [fields, opts] of cases) {
    const r = await submit(fields, opts);
    assert.equal(r.status, 403, JSON.stringify(fields) + JSON.stringify(opts));
    assert.match(r.body, /<h1>Request refused<\/h1>/);
  }
  assert.equal((await orderStatus(m.orderNumber)).dcv_status, 'awaiting');
  // The page's own Origin (as a browser without no-referrer would send) is accepted.
  const own = `localhost:${server.https.port}`;
  const ok = await submit({ code: m.code, csrf, decision: 'approve' }, { headers: { host: own, origin: `https://${own}` } });
  assert.equal(ok.status, 200);
});

test('a decision whose code is not code-shaped is refused (403) whatever its token, and is no guess: the address is not blocked', async () => {
  // Found by fuzzing (2026-12-04): the token was checked only for a code-shaped code, so these were
  // looked up and counted, and a few of them (the limit is 5 here, 20 by default) blocked the address.
  const m = await mailed('shape.example.com', 'admin@example.com');
  const ip = '127.0.0.79';
  const lookupCsrf = csrfOf((await get('/dcv/confirm')).body);
  const realCsrf = csrfOf((await get(m.path, { localAddress: ip })).body);
  const codes = ['', 'ABC', 'not-even-a-code', '%ZZ', 'x'.repeat(3000), `${m.code}0`, `Z${m.code.slice(1)}`, '00000000000000000000000000000'];
  for (const code of codes) {
    for (const csrf of [undefined, '', lookupCsrf, realCsrf]) {
      const fields: Record<string, string> = { code, decision: 'approve', ...(csrf === undefined ? {} : { csrf }) };
      const r = await submit(fields, { localAddress: ip });
      assert.equal(r.status, 403, JSON.stringify({ code: code.slice(0, 30), csrf }));
      assert.match(r.body, /<h1>Request refused<\/h1>/);
    }
  }
  // Its row exists (opening the real link reserved a guess, then released it), with no failure counted.
  const row = await server.store.db.selectFrom('code_failures').select(['failures', 'blocked_until']).where('ip', '=', ip).executeTakeFirst();
  assert.deepEqual({ failures: Number(row?.failures ?? 0), blocked: row?.blocked_until ?? null }, { failures: 0, blocked: null }, 'no guess counted');
  assert.equal((await get(m.path, { localAddress: ip })).status, 200, 'not blocked');
  assert.equal((await submit({ code: m.code, csrf: realCsrf, decision: 'approve' }, { localAddress: ip })).status, 200);
});

test('a form is good for two hours of the server\u2019s clock (the injected one): then refused, and a fresh page works', async () => {
  const m = await mailed('form-age.example.com', 'admin@example.com');
  const stale = csrfOf((await get(m.path)).body);
  clock.advance(2 * 3600_000 + 1000);
  const refused = await submit({ code: m.code, csrf: stale, decision: 'approve' });
  assert.equal(refused.status, 403);
  assert.match(refused.body, /This form has expired or was not sent from this site\. Open the link in the email again\./);
  assert.equal((await orderStatus(m.orderNumber)).dcv_status, 'awaiting');
  const fresh = csrfOf((await get(m.path)).body);
  assert.equal((await submit({ code: m.code, csrf: fresh, decision: 'approve' })).status, 200);
  assert.equal((await orderStatus(m.orderNumber)).dcv_status, 'validated');
});

test('expired, superseded and cancelled codes each get their page', async () => {
  const old = await mailed('states.example.com', 'admin@example.com');
  clock.advance(61_000);
  const fresh = await mailedCode(server, sink, clock, { login: 'alice', orderNumber: old.orderNumber, domain: 'states.example.com', address: 'webmaster@example.com', create: false });
  const superseded = await get(old.path);
  assert.equal(superseded.status, 410);
  assert.match(superseded.body, /This code was replaced/);
  // A form shown half an hour before the code expires (7 days), sent an hour later: the form is
  // still good (2 hours), the code is not.
  clock.advance(7 * DAY - 30 * 60_000);
  const csrf = csrfOf((await get(new URL(fresh.link).pathname)).body);
  clock.advance(3600_000);
  const expired = await get(new URL(fresh.link).pathname);
  assert.equal(expired.status, 410);
  assert.match(expired.body, /This code has expired/);
  const late = await submit({ code: fresh.code, csrf, decision: 'approve' });
  assert.equal(late.status, 410);
  assert.equal((await orderStatus(old.orderNumber)).dcv_status, 'awaiting');

  const c = await mailed('cancel.example.com', 'admin@example.com');
  const env: Record<string, string> = server.databaseUrl ? { DCVD_DATABASE_URL: server.databaseUrl } : {};
  const cancel = runDcvd(server.dataDir, ['order', 'cancel', String(c.orderNumber)], { env });
  assert.equal(cancel.code, 0, cancel.stderr);
  assert.match(cancel.stdout, new RegExp(`^cancelled order ${c.orderNumber} {2}\\(cancelled\\)\n`));
  assert.equal((await orderStatus(c.orderNumber)).dcv_status, 'cancelled');
  const cancelled = await get(c.path);
  assert.equal(cancelled.status, 410);
  assert.match(cancelled.body, /This request was cancelled/);
});

test('unknown codes are limited per source IP (in the database): the limit blocks even a real code, other IPs go on', async () => {
  const m = await mailed('guess.example.com', 'admin@example.com');
  const ip = '127.0.0.77';
  for (let i = 0; i < 4; i += 1) {
    const r = await get(`/dcv/confirm/${String(i).padStart(26, '0')}`, { localAddress: ip });
    assert.equal(r.status, 404);
    assert.match(r.body, /Code not recognised/);
  }
  assert.equal((await get('/dcv/confirm/not-even-a-code', { localAddress: ip })).status, 404);
  const blocked = await get(m.path, { localAddress: ip });
  assert.equal(blocked.status, 429);
  assert.equal(blocked.headers['retry-after'], '900');
  assert.match(blocked.body, /Too many attempts/);
  const typed = await submit({ code: m.code, csrf: csrfOf((await get('/dcv/confirm')).body) }, { localAddress: ip });
  assert.equal(typed.status, 429);
  const row = await server.store.db.selectFrom('code_failures').selectAll().where('ip', '=', ip).executeTakeFirstOrThrow();
  assert.ok(row.blocked_until! > clock.now());
  assert.equal((await get(m.path, { localAddress: '127.0.0.78' })).status, 200);
  // The block ends after the window.
  clock.advance(15 * 60_000 + 1);
  assert.equal((await get(m.path, { localAddress: ip })).status, 200);
});

test('the 429 page and its Retry-After give the time left of the block (--code-failure-window), not a fixed 15 minutes', async () => {
  const m = await mailed('wait.example.com', 'admin@example.com');
  const ip = '127.0.0.79';
  for (let i = 0; i < 5; i += 1) assert.equal((await get(`/dcv/confirm/${String(i).padStart(26, '1')}`, { localAddress: ip })).status, 404);
  const at = (r: { body: string }) => /Wait ([^<]*) and try again/.exec(r.body)?.[1];
  const first = await get(m.path, { localAddress: ip });
  assert.equal(first.status, 429);
  assert.equal(first.headers['retry-after'], '900');
  assert.equal(at(first), '15 minutes');
  clock.advance(10 * 60_000 + 30_000);
  const later = await get(m.path, { localAddress: ip });
  assert.equal(later.status, 429);
  assert.equal(later.headers['retry-after'], '270');
  assert.equal(at(later), '5 minutes');
  // The typed code and a decision get the same.
  const typed = await submit({ code: m.code, csrf: csrfOf((await get('/dcv/confirm')).body) }, { localAddress: ip });
  assert.deepEqual([typed.status, typed.headers['retry-after'], at(typed)], [429, '270', '5 minutes']);
  const decided = await submit({ code: m.code, csrf: csrfOf((await get(m.path)).body), decision: 'approve' }, { localAddress: ip });
  clock.advance(4 * 60_000 + 10_000);
  const last = await get(m.path, { localAddress: ip });
  assert.deepEqual([decided.status, decided.headers['retry-after'], at(decided)], [429, '270', '5 minutes']);
  assert.deepEqual([last.status, last.headers['retry-after'], at(last)], [429, '20', 'a minute']);
  clock.advance(20_000);
  assert.equal((await get(m.path, { localAddress: ip })).status, 200);
});

test('prefetches and prerenders (speculation rules, link previews) answer 503 uncached without a lookup: no guess counted, no details shown', async () => {
  const m = await mailed('prefetch.example.com', 'admin@example.com');
  const ip = '127.0.0.80';
  // What Chromium sends for a hostile page's speculation rules (a top-level navigation, as far as Sec-Fetch-* go),
  // and the older browsers' markers.
  const navigation = { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' };
  const markers: Record<string, string>[] = [
    { 'sec-purpose': 'prefetch' },
    { 'sec-purpose': 'prefetch;prerender' },
    { 'sec-purpose': 'prefetch;anonymous-client-ip' },
    { purpose: 'prefetch' },
    { 'x-purpose': 'preview' },
    { 'x-purpose': 'prefetch' },
    { 'x-moz': 'prefetch' },
  ];
  let n = 0;
  for (const marker of markers) {
    for (let i = 0; i < 5; i += 1) {
      const r = await get(`/dcv/confirm/${String((n += 1)).padStart(26, '0')}`, { localAddress: ip, headers: { ...navigation, ...marker } });
      assert.equal(r.status, 503, JSON.stringify(marker));
      assert.equal(r.headers['cache-control'], 'no-store');
    }
    const real = await get(m.path, { localAddress: ip, headers: { ...navigation, ...marker } });
    assert.equal(real.status, 503, JSON.stringify(marker));
    assert.ok(!real.body.includes(String(m.orderNumber)) && !real.body.includes('csrf'), 'a prefetch never shows the code\u2019s page');
  }
  const row = await server.store.db.selectFrom('code_failures').selectAll().where('ip', '=', ip).executeTakeFirst();
  assert.equal(row, undefined, 'no guess counted or reserved');
  // The recipient opens the link: the page, with its form.
  const opened = await get(m.path, { localAddress: ip, headers: { ...navigation, 'sec-fetch-user': '?1' } });
  assert.equal(opened.status, 200);
  assert.ok(opened.body.includes(`<dd>${m.orderNumber}</dd>`));
  assert.equal((await submit({ code: m.code, csrf: csrfOf(opened.body), decision: 'approve' }, { localAddress: ip })).status, 200);
});

test('bad input never crashes or answers 5xx', async () => {
  const m = await mailed('fuzz.example.com', 'admin@example.com');
  const csrf = csrfOf((await get(m.path)).body);
  const bodies: [string, string][] = [
    ['application/x-www-form-urlencoded', ''],
    ['application/x-www-form-urlencoded', 'code=%ZZ&decision=approve'],
    ['application/x-www-form-urlencoded', `code=${m.code}&code=${m.code}&csrf=${csrf}&decision=approve`],
    ['application/x-www-form-urlencoded', `code=${m.code}&csrf=${csrf}&decision=approve&decision=decline`],
    ['application/x-www-form-urlencoded', `code=${'x'.repeat(3000)}&csrf=${csrf}&decision=approve`],
    ['application/x-www-form-urlencoded', 'x'.repeat(10_000)],
    ['application/json', JSON.stringify({ code: m.code, csrf, decision: 'approve' })],
    ['text/plain', 'hello'],
    ['multipart/form-data; boundary=x', '--x--'],
    ['application/x-www-form-urlencoded; charset=utf-16', 'a=b'],
    ['', 'code=1'],
  ];
  for (let i = 0; i < 60; i += 1) {
    const bytes = Buffer.from(Array.from({ length: 1 + ((i * 37) % 300) }, (_, j) => (i * 131 + j * 17) % 256));
    bodies.push(['application/x-www-form-urlencoded', bytes.toString('latin1')]);
  }
  for (const [type, body] of bodies) {
    const r = await server.request({ path: '/dcv/confirm', method: 'POST', body, headers: type ? { 'content-type': type } : {}, localAddress: '127.0.0.90' });
    assert.ok(r.status >= 200 && r.status < 500, `${type} ${body.slice(0, 40)} → ${r.status}`);
    assert.match(String(r.headers['content-security-policy']), /default-src 'none'/);
  }
  for (const path of ['/dcv/confirm/%00', '/dcv/confirm/' + 'A'.repeat(500), '/dcv/confirm/%E0%A4%A', '/dcv/confirm/..%2f..%2fetc']) {
    const r = await get(path, { localAddress: '127.0.0.91' });
    assert.ok(r.status >= 400 && r.status < 500, `${path} → ${r.status}`);
  }
  for (const method of ['PUT', 'DELETE', 'PATCH']) assert.equal((await server.request({ path: '/dcv/confirm', method })).status, 404);
  assert.equal((await orderStatus(m.orderNumber)).dcv_status, 'awaiting');
});

test('no validation code reaches the logs', async () => {
  const m = await mailed('logs.example.com', 'admin@example.com');
  await get(m.path);
  await submit({ code: m.code, csrf: csrfOf((await get(m.path)).body), decision: 'approve' });
  const text = JSON.stringify(server.logs);
  assert.ok(!text.includes(m.code), 'code in logs');
  assert.ok(text.includes('/dcv/confirm/[redacted]'));
});
