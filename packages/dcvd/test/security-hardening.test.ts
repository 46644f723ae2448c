/**
 * Attacks on a running dcvd (issue 14, items 1, 6–11), each reproduced over
 * real HTTPS against a real server on SQLite or PostgreSQL
 * (DCVD_TEST_DATABASE=postgres): a concurrent burst of password guesses on
 * keep-alive connections, across two instances on one database; concurrent
 * code guesses; per-IP limits by IPv6 prefix; NUL bytes everywhere; cross-site
 * image requests aimed at a victim's code; codes in logged URLs; login names
 * that only look alike.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultDcvEmailConfig, defaultServeConfig } from '../src/config.ts';
import { ManualClock } from '../src/deps.ts';
import { DEFAULT_OUTBOX_POLICY } from '../src/queue/leased.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { capturedLogger } from './support/logs.ts';
import { limitKey } from '../src/accounts/networks.ts';
import { AccountError } from '../src/accounts/repository.ts';
import { TokenFailures } from '../src/admin/http.ts';
import { validateTemplate } from '../src/mail/templates.ts';
import { TemplateError } from '../src/mail/errors.ts';
import { startSmtpSink, type SmtpSink } from './support/smtp-sink.ts';
import { form, GET_PATH, PASSWORD, RESEND_PATH, startTestServer, type RequestOptions, type Response, type TestServer } from './support/server.ts';
import { metric } from './support/metrics.ts';
import { mailedCode } from './support/confirm.ts';
import { waitUntil } from './support/wait.ts';
import { errorBody } from './support/dcv.ts';

const AUTH_FAIL_TEXT = /^-16\n/;
const clock = new ManualClock(Date.UTC(2026, 2, 1, 9, 0, 0));
let sink: SmtpSink;
let server: TestServer;
let next = 8_400_000;

before(async () => {
  sink = await startSmtpSink();
  server = await startTestServer(
    {
      // X-Forwarded-For from loopback is believed: each test speaks from addresses of its own.
      trustProxy: ['127.0.0.1'],
      adminListen: { host: '127.0.0.1', port: 0 },
      adminToken: 'a'.repeat(40),
      dcvEmail: defaultDcvEmailConfig({ smtpUrl: sink.url, outbox: { ...DEFAULT_OUTBOX_POLICY, pollMs: 50 } }),
    },
    { clock },
  );
  await server.createAccount('alice');
});
after(async () => {
  await server.stop();
  await sink.close();
});

const from = <T extends RequestOptions>(ip: string, opts: T = {} as T): T => ({ ...opts, headers: { ...(opts.headers ?? {}), 'x-forwarded-for': ip } });
const apiCall = (login: string, password: string, ip: string, s: { post: TestServer['post'] } = server) =>
  s.post(GET_PATH, form({ loginName: login, loginPassword: password, domainName: 'www.example.com', product: '801' }), from(ip));

/** -16 causes in the request log lines written since `start`. */
function reasons(logs: Record<string, unknown>[], start: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of logs.slice(start)) if (l.msg === 'request' && l.code === -16) out[String(l.reason)] = (out[String(l.reason)] ?? 0) + 1;
  return out;
}

/**
 * reasons() once `count` refusals are in the log: fastify logs a request after its answer is sent,
 * so the last answers of a burst can arrive before their log lines. Waits for the lines, not for a time.
 */
async function settledReasons(logs: Record<string, unknown>[], start: number, count: number): Promise<Record<string, number>> {
  const refused = () => logs.slice(start).filter((l) => l.msg === 'request' && l.code === -16).length;
  for (let waited = 0; refused() < count && waited < 60_000; waited += 20) await sleep(20);
  return reasons(logs, start);
}

/** Keep-alive HTTPS connections, opened before the burst so that every request lands at once. */
function keepAlive(s: RunningServer, sockets: number) {
  const agent = new https.Agent({ ca: s.cert, keepAlive: true, maxSockets: sockets });
  const send = (path: string, body: string | undefined, headers: Record<string, string>, method = 'POST'): Promise<Response> =>
    new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: s.https.port, path, method, agent, servername: 'localhost', headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  return {
    agent,
    async warm() {
      await Promise.all(Array.from({ length: sockets }, () => send('/healthz', undefined, {}, 'GET')));
    },
    login(login: string, password: string, ip: string) {
      const body = form({ loginName: login, loginPassword: password, domainName: 'www.example.com', product: '801' });
      return send(GET_PATH, body, { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': ip });
    },
    get(path: string, headers: Record<string, string>) {
      return send(path, undefined, headers, 'GET');
    },
  };
}

describe('item 1: lockout and per-IP limit under a concurrent burst', () => {
  test('150 wrong passwords and the right one at once: 5 verifications, the right one refused while locked', async () => {
    await server.createAccount('burst1');
    const start = server.logs.length;
    const before = await metric(server, 'dcvd_password_verifications_total', 'kind="account"');
    const conn = keepAlive(server, 50);
    await conn.warm();
    // Each guess from an address of its own, so that only the account's lockout can stop them.
    const wrong = Array.from({ length: 150 }, (_, i) => conn.login('burst1', `wrong password ${i}`, `198.18.1.${i + 1}`));
    const right = conn.login('burst1', PASSWORD, '198.18.2.1');
    const answers = await Promise.all([...wrong, right]);
    conn.agent.destroy();
    for (const r of answers) assert.match(r.body, AUTH_FAIL_TEXT);
    const causes = await settledReasons(server.logs, start, answers.length);
    assert.equal(causes['wrong-password'], 5, `verified wrong passwords: ${JSON.stringify(causes)}`);
    assert.equal((await metric(server, 'dcvd_password_verifications_total', 'kind="account"')) - before, 5);
    // The rest were refused unverified: locked, or (a machine too busy to settle the reservations
    // within the wait) busy — either way no verification, which is the bound under test.
    assert.equal((causes.locked ?? 0) + (causes.busy ?? 0), 146, JSON.stringify(causes));
    const row = await server.accounts.find('burst1');
    assert.ok(row!.locked_until! > clock.now(), 'locked');
    // Still locked for the right password, until the window is over.
    assert.match((await apiCall('burst1', PASSWORD, '198.18.2.2')).body, AUTH_FAIL_TEXT);
    clock.advance(15 * 60_000 + 1);
    assert.match((await apiCall('burst1', PASSWORD, '198.18.2.3')).body, /^0\n/);
  });

  test('a burst of unknown logins from one source IP: at most the IP limit of verifications', async () => {
    const s = await startTestServer({ trustProxy: ['127.0.0.1'], auth: { ...defaultServeConfig().auth, ipFailures: 10 } }, { clock });
    try {
      await s.createAccount('honest');
      const start = s.logs.length;
      const conn = keepAlive(s, 40);
      await conn.warm();
      const answers = await Promise.all(Array.from({ length: 80 }, (_, i) => conn.login(`nobody${i}`, 'whatever password', '203.0.113.9')));
      conn.agent.destroy();
      for (const r of answers) assert.match(r.body, AUTH_FAIL_TEXT);
      const causes = await settledReasons(s.logs, start, answers.length);
      assert.equal(causes['unknown-login'], 10, JSON.stringify(causes));
      assert.equal((causes['ip-blocked'] ?? 0) + (causes.busy ?? 0), 70, JSON.stringify(causes));
      assert.equal(await metric(s, 'dcvd_password_verifications_total', 'kind="dummy"'), 10);
      // The blocked address is refused even with the right password; another address is not.
      assert.match((await apiCall('honest', PASSWORD, '203.0.113.9', s)).body, AUTH_FAIL_TEXT);
      assert.match((await apiCall('honest', PASSWORD, '203.0.113.10', s)).body, /^0\n/);
    } finally {
      await s.stop();
    }
  });

  test('two instances on one database: together at most 5 verifications', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-second-'));
    const { logger, lines: logs } = capturedLogger('info');
    // SQLite: the first server's database file; PostgreSQL: its schema.
    const second = await startServer(
      defaultServeConfig({ listen: { host: '127.0.0.1', port: 0 }, trustProxy: ['127.0.0.1'], dataDir: server.databaseUrl ? dataDir : server.dataDir, databaseUrl: server.databaseUrl }),
      { logger, clock },
    );
    try {
      await server.createAccount('burst2');
      const before1 = await metric(server, 'dcvd_password_verifications_total', 'kind="account"');
      const a = keepAlive(server, 30);
      const b = keepAlive(second, 30);
      await Promise.all([a.warm(), b.warm()]);
      const answers = await Promise.all(Array.from({ length: 80 }, (_, i) => (i % 2 ? a : b).login('burst2', `wrong password ${i}`, `198.18.3.${i + 1}`)));
      a.agent.destroy();
      b.agent.destroy();
      for (const r of answers) assert.match(r.body, AUTH_FAIL_TEXT);
      const verified = (await metric(server, 'dcvd_password_verifications_total', 'kind="account"')) - before1 + (await metric(second, 'dcvd_password_verifications_total', 'kind="account"'));
      assert.equal(verified, 5);
      const row = await server.accounts.find('burst2');
      assert.ok(row!.locked_until! > clock.now(), 'locked');
    } finally {
      await second.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('no attack: concurrent calls with the right password all succeed, verified once', async () => {
    await server.createAccount('busy');
    const before = await metric(server, 'dcvd_password_verifications_total', 'kind="account"');
    const conn = keepAlive(server, 20);
    await conn.warm();
    const answers = await Promise.all(Array.from({ length: 40 }, () => conn.login('busy', PASSWORD, '198.18.4.1')));
    conn.agent.destroy();
    for (const r of answers) assert.match(r.body, /^0\n/);
    assert.equal((await metric(server, 'dcvd_password_verifications_total', 'kind="account"')) - before, 1);
  });
});

describe('item 9: per-IP limits group IPv6 addresses by prefix', () => {
  test('limitKey: IPv6 by its /64 (or the configured prefix), IPv4 and mapped IPv4 alone', () => {
    assert.equal(limitKey('2001:db8:1:2:aaaa::1', 64), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:db8:1:2:ffff:ffff:ffff:ffff', 64), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:db8:1:2:3::1', 48), '2001:db8:1::/48');
    assert.equal(limitKey('2001:db8::1', 128), '2001:db8::1');
    assert.equal(limitKey('192.0.2.7', 64), '192.0.2.7');
    assert.equal(limitKey('::ffff:192.0.2.7', 64), '192.0.2.7');
    assert.equal(limitKey('not an ip', 64), 'not an ip');
  });

  test('API logins: wrong passwords from one /64, each from another address, are blocked at the limit', async () => {
    const s = await startTestServer({ trustProxy: ['127.0.0.1'], auth: { ...defaultServeConfig().auth, ipFailures: 10 } }, { clock });
    try {
      await s.createAccount('v6');
      for (let i = 0; i < 30; i += 1) await apiCall(`nobody${i}`, 'wrong password', `2001:db8:6:6:${(i + 1).toString(16)}::1`, s);
      const causes = reasons(s.logs, 0);
      assert.equal(causes['unknown-login'], 10, JSON.stringify(causes));
      assert.equal(causes['ip-blocked'], 20);
      assert.match((await apiCall('v6', PASSWORD, '2001:db8:6:6:abcd::9', s)).body, AUTH_FAIL_TEXT);
      assert.match((await apiCall('v6', PASSWORD, '2001:db8:6:7::9', s)).body, /^0\n/, 'another /64 is not blocked');
    } finally {
      await s.stop();
    }
  });

  test('--ipv6-prefix 128 counts every IPv6 address alone', async () => {
    const s = await startTestServer({ trustProxy: ['127.0.0.1'], ipv6Prefix: 128, auth: { ...defaultServeConfig().auth, ipFailures: 3 } }, { clock });
    try {
      for (let i = 0; i < 6; i += 1) await apiCall(`nobody${i}`, 'wrong password', `2001:db8:9::${i + 1}`, s);
      assert.deepEqual(reasons(s.logs, 0), { 'unknown-login': 6 });
    } finally {
      await s.stop();
    }
  });

  test('validation codes: guesses from one /64 share the limit', async () => {
    const start = server.logs.length;
    const statuses: number[] = [];
    for (let i = 0; i < 25; i += 1) statuses.push((await server.request(from(`2001:db8:7:7::${(i + 1).toString(16)}`, { method: 'GET', path: `/dcv/confirm/${'A'.repeat(25)}${i % 10}` }))).status);
    assert.equal(statuses.filter((s) => s === 404).length, 20);
    assert.equal(statuses.filter((s) => s === 429).length, 5);
    assert.ok(server.logs.length > start);
  });

  // The internal API believes no proxy, and loopback has one IPv6 address: its counter is tested directly.
  test('admin tokens: wrong tokens from one /64 share the limit', () => {
    const failures = new TokenFailures({ failures: 10, windowMs: 60_000, blockMs: 60_000 }, clock, 64);
    for (let i = 0; i < 10; i += 1) failures.fail(`2001:db8:8:8::${i + 1}`);
    assert.ok(failures.blocked('2001:db8:8:8:ffff::1') > 0);
    assert.equal(failures.blocked('2001:db8:8:9::1'), 0);
    assert.equal(failures.blocked('192.0.2.1'), 0);
  });
});

describe('item 7: concurrent code guesses from one IP', () => {
  test('200 unknown codes at once: 20 answered 404, the rest 429', async () => {
    const conn = keepAlive(server, 50);
    await conn.warm();
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => conn.get(`/dcv/confirm/${String(i).padStart(26, 'B')}`, { 'x-forwarded-for': '198.18.7.7' })));
    conn.agent.destroy();
    assert.equal(answers.filter((r) => r.status === 404).length, 20);
    assert.equal(answers.filter((r) => r.status === 429).length, 180);
  });
});

describe('item 8: cross-site sub-resource requests do not lock a recipient out', () => {
  test('30 cross-site <img> GETs of random codes, then the real link opens', async () => {
    const orderNumber = (next += 1);
    const m = await mailedCode(server, sink, clock, { login: 'alice', orderNumber, domain: 'www.example.com', address: 'admin@example.com' });
    const victim = '198.18.8.8';
    // What a browser sends for <img src="https://dcvd/dcv/confirm/…"> on another site.
    const img = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image', 'x-forwarded-for': victim };
    for (let i = 0; i < 30; i += 1) {
      const r = await server.request({ method: 'GET', path: `/dcv/confirm/${String(i).padStart(26, 'C')}`, headers: img });
      assert.equal(r.status, 403);
    }
    // A sub-resource request never opens a real code either (no details leak into an image or script load).
    assert.equal((await server.request({ method: 'GET', path: `/dcv/confirm/${m.code}`, headers: img })).status, 403);
    // The recipient clicks the link in the webmail: a cross-site top-level navigation.
    const r = await server.request({
      method: 'GET',
      path: `/dcv/confirm/${m.code}`,
      headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'x-forwarded-for': victim },
    });
    assert.equal(r.status, 200);
    assert.ok(r.body.includes(`<dd>${orderNumber}</dd>`));
  });

  test('navigations and clients without Sec-Fetch-* headers still count as guesses', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 22; i += 1) {
      const headers: Record<string, string> = i % 2 ? { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' } : {};
      statuses.push((await server.request({ method: 'GET', path: `/dcv/confirm/${String(i).padStart(26, 'D')}`, headers: { ...headers, 'x-forwarded-for': '198.18.8.9' } })).status);
    }
    assert.deepEqual(statuses, [...Array(20).fill(404), 429, 429]);
  });
});

describe('item 11: validation codes never reach the log', () => {
  test('query-string and path forms are redacted in every log line', async () => {
    const code = 'QQQQQWWWWWEEEEERRRRRTTTTTY';
    const start = server.logs.length;
    await server.request({ method: 'GET', path: `/dcv/confirm?code=${code}` });
    await server.request({ method: 'GET', path: `/dcv/confirm/?code=${code}` });
    await server.request({ method: 'GET', path: `/dcv/confirm/${code}?x=1` });
    await server.request({ method: 'GET', path: `/prefix/dcv/confirm/${code}` });
    await server.request({ method: 'GET', path: `/elsewhere?code=${code}&randomValue=${code}` });
    await server.request({ admin: true, method: 'GET', path: `/v1/nothing?code=${code}`, headers: { authorization: `Bearer ${'a'.repeat(40)}` } });
    const lines = server.logs.slice(start).map((l) => JSON.stringify(l));
    assert.ok(lines.length >= 6, 'every request was logged');
    for (const line of lines) assert.ok(!line.includes(code) && !line.includes(code.slice(0, 12)), line);
  });

  test('a real code in paths that are not the confirmation route (404s), percent-encoded or spelled as canonicalCode forgives', async () => {
    const orderNumber = (next += 1);
    const { code } = await mailedCode(server, sink, clock, { login: 'alice', orderNumber, domain: 'www.example.com', address: 'admin@example.com' });
    const encoded = (s: string) => [...Buffer.from(s)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
    const spellings = [
      code,
      code.toLowerCase(),
      `${code.slice(0, 13)}-${code.slice(13)}`,
      `${code.slice(0, 13)}%20${code.slice(13)}`,
      encoded(code),
      // A code with an S read from the long s (U+017F), a 1 from a dotless i: canonicalCode upper-cases them.
      encoded(`${code.slice(0, 5).toLowerCase().replace(/s/g, '\u017f').replace(/1/g, '\u0131')}${code.slice(5)}`),
    ];
    // The reviewer's paths (they reached the log in clear), each with every spelling.
    const paths = spellings.flatMap((c) => [`/dcv/confirm%2F${c}`, `/dcv%2Fconfirm%2F${c}`, `/dcv//confirm/${c}`, `/dcv/./confirm/${c}`, `/dcv/confirm;${c}`, `/${c}`, `/dcv/${c}`, `/x?${c}`]);
    const start = server.logs.length;
    for (const path of paths) assert.equal((await server.request({ method: 'GET', path })).status, 404, path);
    await server.request({ admin: true, method: 'GET', path: `/v1/orders/${code}`, headers: { authorization: `Bearer ${'a'.repeat(40)}` } });
    // Paths without a code are logged as they were.
    await server.request({ method: 'GET', path: '/healthz' });
    await server.request({ admin: true, method: 'GET', path: `/v1/orders/${orderNumber}`, headers: { authorization: `Bearer ${'a'.repeat(40)}` } });
    const logged = () => server.logs.slice(start).filter((l) => l.msg === 'request');
    await waitUntil('the request log lines', async () => logged().length >= paths.length + 3);
    const lines = logged();
    assert.equal(lines.length, paths.length + 3);
    // Read as canonicalCode would: decoded, upper-cased, without spaces and hyphens, I and L as 1, O as 0.
    const canonical = (s: string) =>
      decodeURIComponent(s.replace(/%(?![0-9a-f]{2})/gi, '%25'))
        .toUpperCase()
        .replace(/[\s-]/g, '')
        .replace(/[IL]/g, '1')
        .replace(/O/g, '0');
    for (const line of lines.map((l) => JSON.stringify(l))) assert.ok(!canonical(line).includes(code), line);
    assert.deepEqual(lines.slice(-2).map((l) => l.path), ['/healthz', `/v1/orders/${orderNumber}`]);
    assert.equal(lines[0]!.path, '/dcv/confirm%2F[redacted]');
  });
});

describe('item 6: NUL bytes get the contract’s error on both databases', () => {
  const admin = (method: string, path: string, body?: unknown) =>
    server.request({
      admin: true,
      method,
      path,
      headers: { authorization: `Bearer ${'a'.repeat(40)}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  test('API: a NUL in loginName is a login failure (-16) and counts against the IP', async () => {
    const start = server.logs.length;
    const r = await server.post(GET_PATH, 'loginName=ali%00ce&loginPassword=whatever+password&domainName=www.example.com&product=801', from('198.18.6.1'));
    assert.match(r.body, AUTH_FAIL_TEXT);
    assert.deepEqual(reasons(server.logs, start), { 'unknown-login': 1 });
    const row = await server.store.db.selectFrom('ip_failures').select('failures').where('ip', '=', '198.18.6.1').executeTakeFirst();
    assert.equal(row?.failures, 1);
  });

  test('API: NUL in other parameters gets -4 or the endpoint’s own error, never -14', async () => {
    const start = server.logs.length;
    const get = await server.post(GET_PATH, `loginName=alice&loginPassword=${encodeURIComponent(PASSWORD)}&domainName=www.exa%00mple.com&product=801`);
    assert.match(get.body, /^-4\n/);
    const resend = await server.post(RESEND_PATH, `loginName=alice&loginPassword=${encodeURIComponent(PASSWORD)}&orderNumber=${next}&dcvEmailAddress=admin%00@example.com`);
    assert.doesNotMatch(resend.body, /errorCode=-14/);
    assert.equal(resend.status, 200);
    const wrongPassword = await server.post(GET_PATH, `loginName=alice&loginPassword=wrong%00password&domainName=www.example.com&product=801`, from('198.18.6.2'));
    assert.match(wrongPassword.body, AUTH_FAIL_TEXT);
    assert.ok(!server.logs.slice(start).some((l) => l.level === 50), 'no error logged');
    assert.notEqual(resend.body, errorBody(-14));
  });

  test('admin API: NUL in paths, query strings and JSON bodies answers 400 JSON', async () => {
    const start = server.logs.length;
    const cases = [
      await admin('GET', '/v1/accounts/ali%00ce'),
      await admin('POST', '/v1/accounts/ali%00ce/lock'),
      await admin('GET', '/v1/orders?account=ali%00ce'),
      await admin('GET', '/v1/templates?account=ali%00ce'),
      await admin('POST', '/v1/accounts', { login: 'ali\u0000ce', password: PASSWORD }),
      await admin('PATCH', '/v1/accounts/alice', { webhookUrl: 'https://example.com/\u0000' }),
      await admin('POST', '/v1/templates', { id: 77, subject: 'Hi\u0000', text: 'Code {{code}}\u0000' }),
    ];
    for (const r of cases) {
      assert.equal(r.status, 400, r.body);
      assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
      assert.equal(JSON.parse(r.body).error.code, 'invalid_request');
    }
    assert.ok(!server.logs.slice(start).some((l) => l.level === 50), 'no error logged');
  });

  test('templates (CLI files, admin API): NUL in any part is refused before the database', () => {
    const ok = { subject: 'Validate {{domain}}', text: 'Code {{validationCode}}' };
    assert.doesNotThrow(() => validateTemplate(ok));
    assert.throws(() => validateTemplate({ ...ok, text: 'Code {{validationCode}}\u0000' }), TemplateError);
    assert.throws(() => validateTemplate({ ...ok, html: '<p>{{validationCode}}\u0000</p>' }), TemplateError);
    assert.throws(() => validateTemplate({ ...ok, subject: 'Validate\u0000' }), TemplateError);
  });

  test('confirmation pages: NUL in a code is an unknown code', async () => {
    const r = await server.request(from('198.18.6.3', { method: 'GET', path: '/dcv/confirm/AAAAA%00AAAAAAAAAAAAAAAAAAAA' }));
    assert.equal(r.status, 404);
  });
});

describe('item 10: login names that only look alike are refused', () => {
  const bad: [string, RegExp][] = [
    ['Cafe\u0301', /NFC/],
    [' alice2', /whitespace/],
    ['alice2 ', /whitespace/],
    ['alice\u00a0', /whitespace/],
    ['ali\u200bce', /invisible/],
    ['ali\u200dce', /invisible/],
    ['ali\u2060ce', /invisible/],
    ['ali\ufeffce', /invisible/],
    ['ali\u00adce', /invisible/],
    ['ali\u034fce', /invisible/],
    ['ali\u3164ce', /invisible/],
    ['ali\u202ece', /invisible/],
    ['ali\u0007ce', /control/],
    ['ali\u0085ce', /control/],
    ['ali\ue000ce', /invisible/],
  ];
  test('account create refuses them (repository, CLI path and admin API share the check)', async () => {
    for (const [login, why] of bad) {
      await assert.rejects(server.accounts.create(login, { password: PASSWORD }), (err: unknown) => err instanceof AccountError && why.test(err.message), JSON.stringify(login));
      const r = await server.request({
        admin: true,
        method: 'POST',
        path: '/v1/accounts',
        headers: { authorization: `Bearer ${'a'.repeat(40)}`, 'content-type': 'application/json' },
        body: JSON.stringify({ login, password: PASSWORD }),
      });
      assert.equal(r.status, 400, `${JSON.stringify(login)}: ${r.body}`);
    }
    // NFC names, inner spaces and case are fine; the login check stays exact.
    await server.createAccount('Café Ops');
    await server.createAccount('café ops');
    assert.match((await apiCall('Café Ops', PASSWORD, '198.18.10.1')).body, /^0\n/);
    assert.match((await apiCall('Cafe\u0301 Ops', PASSWORD, '198.18.10.1')).body, AUTH_FAIL_TEXT);
    assert.match((await apiCall('CAFÉ OPS', PASSWORD, '198.18.10.1')).body, AUTH_FAIL_TEXT);
  });
});
