/** The internal JSON API (CONTRACT §9): bearer token, the CLI's operations and views, errors, /metrics, OpenAPI. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { startTestServer, type Response, type TestServer } from './support/server.ts';
import { runDcvd } from './support/cli.ts';
import { getList } from './support/dcv.ts';
import { defaultServeConfig } from '../src/config.ts';
import { startServer } from '../src/server.ts';
import { createLogger } from '../src/log.ts';
import { systemClock, cryptoRandom } from '../src/deps.ts';
import { loadOrCreateCertificate } from '../src/http/tls.ts';
import { buildAdminApp, registeredRoutes } from '../src/admin/http.ts';
import { AdminService } from '../src/admin/service.ts';

const TOKEN = 'test-admin-token-0123456789abcdefghijklmnop';
let server: TestServer;

before(async () => {
  server = await startTestServer({ adminListen: { host: '127.0.0.1', port: 0 }, adminToken: TOKEN });
  await server.createAccount('alice');
});
after(() => server.stop());

interface ApiResult extends Response {
  json: any;
}

async function api(method: string, path: string, body?: unknown, opts: { token?: string | null; localAddress?: string; raw?: string; contentType?: string } = {}): Promise<ApiResult> {
  const headers: Record<string, string> = {};
  const token = opts.token === undefined ? TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const payload = opts.raw ?? (body === undefined ? undefined : JSON.stringify(body));
  if (payload !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
  const r = await server.request({ admin: true, method, path, headers, ...(payload === undefined ? {} : { body: payload }), ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
  let json: unknown;
  try {
    json = JSON.parse(r.body);
  } catch {
    json = undefined;
  }
  return { ...r, json };
}

/** The same operation through the `dcvd` command, on the server's database. */
function cli(args: string[], input?: string): any {
  const env: Record<string, string> = server.databaseUrl ? { DCVD_DATABASE_URL: server.databaseUrl } : {};
  const r = runDcvd(server.dataDir, [...args, '--json'], { env, ...(input === undefined ? {} : { input }) });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function assertError(r: ApiResult, status: number, code: string, message?: RegExp): void {
  assert.equal(r.status, status, r.body);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  assert.equal(r.json.error.code, code);
  assert.equal(typeof r.json.error.message, 'string');
  if (message) assert.match(r.json.error.message, message);
}

test('refuses to start without a token, or with one shorter than 32 characters', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'dcvd-admin-'));
  try {
    const logger = createLogger('fatal');
    for (const [adminToken, message] of [
      [undefined, /--admin-listen needs --admin-token/],
      ['short-token', /at least 32 characters/],
    ] as const) {
      const config = defaultServeConfig({ listen: { host: '127.0.0.1', port: 0 }, adminListen: { host: '127.0.0.1', port: 0 }, adminToken, dataDir });
      await assert.rejects(startServer(config, { logger }), message);
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('the bearer token is required, compared, and never logged; unknown routes are 404 JSON', async () => {
  const none = await api('GET', '/v1/accounts', undefined, { token: null });
  assertError(none, 401, 'unauthorized');
  assert.equal(none.headers['www-authenticate'], 'Bearer');
  assertError(await api('GET', '/v1/accounts', undefined, { token: TOKEN.slice(0, -1) + 'X' }), 401, 'unauthorized', /wrong token/);
  assertError(await api('GET', '/v1/accounts', undefined, { token: `${TOKEN}x` }), 401, 'unauthorized');
  // Without a token, not even the existence of a route is revealed.
  assertError(await api('GET', '/v1/nothing-here', undefined, { token: null }), 401, 'unauthorized');
  assertError(await api('GET', '/v1/nothing-here'), 404, 'not_found');
  assertError(await api('DELETE', '/v1/accounts'), 404, 'not_found');
  assertError(await api('GET', '/v1/orders/%E0%A4%A'), 400, 'invalid_request', /malformed URL/);
  assert.equal((await api('GET', '/v1/accounts')).status, 200);
  // Not on the public listener.
  assert.equal((await server.request({ method: 'GET', path: '/v1/accounts', headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
  assert.ok(!JSON.stringify(server.logs).includes(TOKEN), 'the token is in the log');
});

test('wrong tokens are limited per source IP: the limit blocks even the right token; other IPs go on', async () => {
  const from = '127.0.0.2';
  for (let i = 0; i < 10; i++) assertError(await api('GET', '/v1/accounts', undefined, { token: `wrong-${i}`, localAddress: from }), 401, 'unauthorized');
  const blocked = await api('GET', '/v1/accounts', undefined, { localAddress: from });
  assertError(blocked, 429, 'rate_limited');
  assert.ok(Number(blocked.headers['retry-after']) > 0);
  assert.equal((await api('GET', '/v1/accounts')).status, 200);
});

test('accounts: create, show, update, lock, unlock, list — the CLI\u2019s views; passwords only in bodies, never logged', async () => {
  const password = 'api password that is long enough';
  const created = await api('POST', '/v1/accounts', { login: 'api-user', password, permissions: ['auto-apply'], allowedNetworks: ['10.0.0.0/8'], passwordExpiresAt: '2030-01-31' });
  assert.equal(created.status, 201, created.body);
  assert.equal(created.json.login, 'api-user');
  assert.deepEqual(created.json.permissions, ['auto-apply']);
  assert.equal(created.json.passwordExpiresAt, '2030-01-31T00:00:00.000Z');
  assert.equal(created.json.password_hash, undefined);

  const shown = await api('GET', '/v1/accounts/api-user');
  assert.deepEqual(shown.json, created.json);
  const updated = await api('PATCH', '/v1/accounts/api-user', { permissions: ['auto-apply', 'voucher', 'voucher'], allowedNetworks: [], passwordExpiresAt: null, webhookUrl: 'https://orders.example/hook' });
  assert.equal(updated.status, 200, updated.body);
  assert.deepEqual(updated.json.permissions, ['auto-apply', 'voucher']);
  assert.deepEqual(updated.json.allowedNetworks, []);
  assert.equal(updated.json.passwordExpiresAt, null);
  assert.equal(updated.json.webhookUrl, 'https://orders.example/hook');
  assert.equal((await api('POST', '/v1/accounts/api-user/lock')).json.locked, true);
  assert.equal((await api('POST', '/v1/accounts/api-user/unlock')).json.locked, false);

  const list = await api('GET', '/v1/accounts');
  assert.deepEqual(list.json, cli(['account', 'list']));
  assert.deepEqual(
    list.json.find((a: { login: string }) => a.login === 'api-user'),
    (await api('GET', '/v1/accounts/api-user')).json,
  );
  assert.ok(!JSON.stringify(server.logs).includes(password), 'a password is in the log');
});

test('accounts: validation errors are 400, unknown logins 404, duplicates 409', async () => {
  assertError(await api('POST', '/v1/accounts', { login: 'x', password: 'short' }), 400, 'invalid_request', /password/);
  assertError(await api('POST', '/v1/accounts', { login: 'x', password: 'long enough password', permissions: ['root'] }), 400, 'invalid_request', /permissions/);
  assertError(await api('POST', '/v1/accounts', { login: 'x', password: 'long enough password', allowedNetworks: ['nonsense'] }), 400, 'invalid_request', /not an IP network/);
  assertError(await api('POST', '/v1/accounts', { login: 'x', password: 'long enough password', allowedNetworks: [''] }), 400, 'invalid_request', /an empty entry/);
  assertError(await api('POST', '/v1/accounts', { login: 'x', password: 'long enough password', extra: 1 }), 400, 'invalid_request');
  assertError(await api('POST', '/v1/accounts', { login: 'x', password: 'long enough password', webhookUrl: 'ftp://nope' }), 400, 'invalid_request');
  assertError(await api('POST', '/v1/accounts', { login: 'x', password: 'long enough password', passwordExpiresAt: 'tomorrow' }), 400, 'invalid_request');
  // Days and times that do not exist: the request's error, never rolled over (2025-03-02), never a 500.
  for (const date of ['2025-02-30', '2027-13-45', '2027-06-15T24:30:00Z', '2027-06-15T12:00:00+25:00']) {
    assertError(await api('POST', '/v1/accounts', { login: 'x', password: 'long enough password', passwordExpiresAt: date }), 400, 'invalid_request');
  }
  assertError(await api('POST', '/v1/accounts', undefined, { raw: '{"login":' }), 400, 'invalid_request');
  assertError(await api('POST', '/v1/accounts', undefined, { raw: 'login=x', contentType: 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
  assertError(await api('POST', '/v1/accounts', undefined, { raw: '{"login":"x","password":"long enough password"}', contentType: 'text/plain' }), 415, 'unsupported_media_type');
  assertError(await api('POST', '/v1/accounts', { login: 'alice', password: 'long enough password' }), 409, 'conflict', /already exists/);
  assertError(await api('GET', '/v1/accounts/ghost'), 404, 'not_found', /no account "ghost"/);
  assertError(await api('PATCH', '/v1/accounts/ghost', { permissions: [] }), 404, 'not_found');
  assertError(await api('POST', '/v1/accounts/ghost/lock'), 404, 'not_found');
  assert.equal(await server.accounts.find('x'), undefined);
});

test('orders: create with dcvEmailAddress obeys the 24-hour rule and queues an email; show, list, evidence, outbox, cancel equal the CLI', async () => {
  const body = { account: 'alice', domain: 'www.example.com', orderNumber: 9100001, dcvEmailAddress: 'admin@example.com' };
  assertError(await api('POST', '/v1/orders', body), 400, 'invalid_request', /in the last 24 hours/);
  assertError(await api('GET', '/v1/orders/9100001'), 404, 'not_found', /no order 9100001/);

  await getList(server, 'alice', 'www.example.com');
  const created = await api('POST', '/v1/orders', body);
  assert.equal(created.status, 201, created.body);
  assert.equal(created.json.orderNumber, 9100001);
  assert.equal(created.json.dcvEmailAddress, 'admin@example.com');
  assert.match(created.json.queuedEmail, /^<.+>$/);
  // Compared with the CLI once the email is delivered (to .eml files), so that both see the same state.
  for (let i = 0; (await api('GET', '/v1/outbox?order=9100001')).json[0].state !== 'delivered'; i++) {
    assert.ok(i < 100, 'the DCV email was not delivered');
    await new Promise((r) => setTimeout(r, 100));
  }

  const shown = await api('GET', '/v1/orders/9100001');
  assert.deepEqual(shown.json, cli(['order', 'show', '9100001']));
  assert.equal(shown.json.emails.length, 1);
  assert.equal(shown.json.emails[0].messageId, created.json.queuedEmail);
  const { emails: _e, evidence: _v, webhooks: _w, corroborations: _c, ...order } = shown.json;
  const { queuedEmail: _q, ...createdOrder } = created.json;
  assert.deepEqual(order, createdOrder);

  assert.deepEqual((await api('GET', '/v1/orders')).json, cli(['order', 'list']));
  assert.deepEqual((await api('GET', '/v1/orders?account=alice')).json, cli(['order', 'list', '--account', 'alice']));
  assert.deepEqual((await api('GET', '/v1/orders/9100001/evidence')).json, shown.json.evidence);
  const outbox = await api('GET', '/v1/outbox?order=9100001');
  assert.deepEqual(outbox.json, cli(['outbox', 'list', '--order', '9100001']));
  assert.equal(outbox.json[0].messageId, created.json.queuedEmail);

  const cancelled = await api('POST', '/v1/orders/9100001/cancel');
  assert.equal(cancelled.status, 200, cancelled.body);
  assert.equal(cancelled.json.dcvStatus, 'cancelled');
  const again = cli(['order', 'show', '9100001']);
  const { emails: _e2, evidence: _v2, webhooks: _w2, corroborations: _c2, ...cancelledOrder } = again;
  assert.deepEqual(cancelled.json, cancelledOrder);
  assertError(await api('POST', '/v1/orders/9100001/cancel'), 409, 'conflict', /already cancelled/);
});

test('orders: an order and its first DCV email are one transaction: an email that cannot be queued leaves no order', async () => {
  await getList(server, 'alice', 'atomic.example.com');
  // What the email needs (the value keys, the settings) fails after the order's insert, inside its transaction.
  const failing = new AdminService({ db: server.store.db, clock: systemClock, random: cryptoRandom, dcvEmail: () => { throw new Error('no secret key file'); } });
  await assert.rejects(failing.createOrder({ account: 'alice', domain: 'atomic.example.com', orderNumber: 9100901, dcvMethod: 'email', dcvEmail: 'admin@example.com' }), /no secret key file/);
  assert.equal(await server.store.db.selectFrom('orders').select('id').where('order_number', '=', 9100901).executeTakeFirst(), undefined, 'no order without its email');
  // The same call with the server's settings makes both.
  const created = await api('POST', '/v1/orders', { account: 'alice', domain: 'atomic.example.com', orderNumber: 9100901, dcvEmailAddress: 'admin@example.com' });
  assert.equal(created.status, 201);
  assert.match(created.json.queuedEmail, /@/);
});

test('orders: validation errors are 400, unknown orders and accounts 404, a taken number 409', async () => {
  const ok = await api('POST', '/v1/orders', { account: 'alice', domain: 'example.org' });
  assert.equal(ok.status, 201, ok.body);
  assert.ok(ok.json.orderNumber >= 10_000_000);
  assert.equal(ok.json.queuedEmail, null);
  assertError(await api('POST', '/v1/orders', { account: 'alice', domain: 'example.org', orderNumber: ok.json.orderNumber }), 409, 'conflict');
  assertError(await api('POST', '/v1/orders', { account: 'alice', domain: 'localhost' }), 400, 'invalid_request', /cannot be validated/);
  assertError(await api('POST', '/v1/orders', { account: 'alice', domain: 'example.org', orderNumber: 0 }), 400, 'invalid_request');
  assertError(await api('POST', '/v1/orders', { account: 'alice', domain: 'example.org', orderNumber: '12' }), 400, 'invalid_request');
  assertError(await api('POST', '/v1/orders', { account: 'alice', domain: 'example.org', dcvMethod: 'carrier-pigeon' }), 400, 'invalid_request');
  assertError(await api('POST', '/v1/orders', { account: 'alice' }), 400, 'invalid_request', /domain/);
  assertError(await api('POST', '/v1/orders', { account: 'ghost', domain: 'example.org' }), 404, 'not_found', /no account/);
  assertError(await api('POST', '/v1/orders', { account: 'alice', domain: 'example.org', templateId: 999 }), 404, 'not_found', /no template 999/);
  assertError(await api('POST', '/v1/orders', { account: 'alice', domain: 'example.org', product: 999 }), 404, 'not_found', /no product 999 in the catalogue/);
  for (const domain of ['*.example.org', ' *.example.org', '*\u3002example.org']) assertError(await api('POST', '/v1/orders', { account: 'alice', domain, product: 801 }), 400, 'invalid_request', /not a wildcard product/);
  assertError(await api('GET', '/v1/orders/abc'), 400, 'invalid_request');
  // Path and query integers in plain decimal digits only (typebox alone would read these as 16, 1000, 12 and 0).
  for (const loose of ['0x10', '1e3', '%2012', '12%20', '1.0', '+12']) assertError(await api('GET', `/v1/orders/${loose}`), 400, 'invalid_request', /whole number in decimal digits/);
  assertError(await api('GET', '/v1/outbox?limit=1e3'), 400, 'invalid_request', /query\/limit must be a whole number/);
  assertError(await api('GET', '/v1/outbox?order='), 400, 'invalid_request', /query\/order must be a whole number/);
  assertError(await api('GET', '/v1/orders/0'), 400, 'invalid_request');
  assertError(await api('GET', '/v1/orders/99999999999999999999'), 400, 'invalid_request');
  assertError(await api('GET', '/v1/orders/123456'), 404, 'not_found');
  assertError(await api('GET', '/v1/orders/123456/evidence'), 404, 'not_found');
  assertError(await api('POST', '/v1/orders/123456/cancel'), 404, 'not_found');
  assertError(await api('GET', '/v1/orders?account=ghost'), 404, 'not_found');
  assertError(await api('GET', '/v1/outbox?state=lost'), 400, 'invalid_request');
  assertError(await api('GET', '/v1/outbox?limit=0'), 400, 'invalid_request');
  assertError(await api('GET', '/v1/outbox?order=123456'), 404, 'not_found');
});

test('templates: create (account or global) and list equal the CLI; bad templates are 400', async () => {
  const text = 'Code {{validationCode}} for {{domain}}';
  const g = await api('POST', '/v1/templates', { global: true, id: 20, subject: 'Validate {{domain}}', text, html: '<p>{{validationCode}}</p>' });
  assert.equal(g.status, 201, g.body);
  assert.deepEqual({ id: g.json.id, account: g.json.account, hasHtml: g.json.hasHtml }, { id: 20, account: null, hasHtml: true });
  const a = await api('POST', '/v1/templates', { account: 'alice', id: 20, subject: 'Alice {{domain}}', text });
  assert.equal(a.json.account, 'alice');
  assert.deepEqual((await api('GET', '/v1/templates')).json, cli(['template', 'list']));
  assert.deepEqual((await api('GET', '/v1/templates?account=alice')).json, cli(['template', 'list', '--account', 'alice']));
  assertError(await api('POST', '/v1/templates', { global: true, id: 20, subject: 's', text }), 409, 'conflict');
  assertError(await api('POST', '/v1/templates', { global: true, account: 'alice', id: 21, subject: 's', text }), 400, 'invalid_request', /exactly one/);
  assertError(await api('POST', '/v1/templates', { id: 21, subject: 's', text }), 400, 'invalid_request', /exactly one/);
  assertError(await api('POST', '/v1/templates', { global: true, id: 21, subject: 's', text: 'no code here' }), 400, 'invalid_request', /validationCode/);
  assertError(await api('POST', '/v1/templates', { global: true, id: 21, subject: 's', text: '{{#x}}' }), 400, 'invalid_request');
  assertError(await api('POST', '/v1/templates', { account: 'ghost', id: 21, subject: 's', text }), 404, 'not_found');
});

test('GET /metrics: Prometheus text behind the token, with the API call counter', async () => {
  await getList(server, 'alice', 'metrics.example.com');
  assertError(await api('GET', '/metrics', undefined, { token: null }), 401, 'unauthorized');
  const r = await api('GET', '/metrics');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.match(r.body, /^# HELP dcvd_api_requests_total /m);
  assert.match(r.body, /^dcvd_api_requests_total\{endpoint="GetDCVEmailAddressList",code="0"\} [1-9]\d*$/m);
  assert.match(r.body, /^# TYPE dcvd_outbox_emails gauge$/m);
});

test('GET /openapi.json is docs/openapi.json, and names every route the app registers', async () => {
  const served = await api('GET', '/openapi.json');
  assert.equal(served.status, 200);
  const file = JSON.parse(readFileSync(new URL('../../../docs/openapi.json', import.meta.url), 'utf8'));
  assert.deepEqual(served.json, file, 'docs/openapi.json is stale: run `node --import tsx scripts/openapi.ts`');
  assert.equal(file.openapi, '3.1.0');
  // A 404 is documented where the path, the query or the body names an object that may not exist.
  for (const [path, method] of [['/v1/orders', 'post'], ['/v1/orders', 'get'], ['/v1/templates', 'get'], ['/v1/templates', 'post'], ['/v1/outbox', 'get'], ['/v1/orders/{orderNumber}', 'get']] as const) {
    assert.ok(file.paths[path][method].responses['404'], `${method.toUpperCase()} ${path} documents its 404`);
  }
  assert.equal(file.paths['/v1/accounts'].get.responses['404'], undefined, 'a plain list has no 404');

  const tls = await loadOrCreateCertificate({ dataDir: server.dataDir });
  const admin = new AdminService({ db: server.store.db, clock: systemClock, random: cryptoRandom, dcvEmail: () => assert.fail('not called') });
  const app = await buildAdminApp({ admin, token: TOKEN, logger: createLogger('fatal'), metrics: server.metrics, clock: systemClock, tls, bodyLimit: 65536 });
  await app.ready();
  const registered = registeredRoutes(app);
  assert.ok(registered.length >= 16, registered.join(', '));
  const documented = Object.entries(file.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
    Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
  );
  assert.deepEqual([...registered].sort(), [...documented].sort());
  await app.close();
});

test('fuzz: random JSON bodies, paths and query strings never get a 5xx', async () => {
  const json = fc.jsonValue({ maxDepth: 3 });
  const field = fc.oneof(fc.constantFrom('login', 'password', 'permissions', 'allowedNetworks', 'account', 'domain', 'orderNumber', 'id', 'subject', 'text', 'global', 'dcvEmailAddress'), fc.string());
  const body = fc.oneof(json, fc.dictionary(field, json, { maxKeys: 6 }));
  const target = fc.constantFrom(['POST', '/v1/accounts'], ['PATCH', '/v1/accounts/alice'], ['POST', '/v1/orders'], ['POST', '/v1/templates']);
  await fc.assert(
    fc.asyncProperty(target, body, async ([method, path], b) => {
      const r = await api(method!, path!, b);
      assert.ok(r.status < 500, `${method} ${path} ${JSON.stringify(b)} -> ${r.status} ${r.body}`);
      if (r.status >= 400) assert.equal(typeof r.json?.error?.code, 'string', r.body);
    }),
    { numRuns: 60 },
  );
  const segment = fc.string({ maxLength: 12 }).map(encodeURIComponent);
  await fc.assert(
    fc.asyncProperty(fc.constantFrom('/v1/accounts/', '/v1/orders/', '/v1/orders?account=', '/v1/outbox?limit=', '/v1/outbox?order=', '/v1/templates?account='), segment, async (prefix, s) => {
      const r = await api('GET', prefix + s);
      assert.ok(r.status < 500, `${prefix}${s} -> ${r.status} ${r.body}`);
    }),
    { numRuns: 60 },
  );
});

test('products: list, show and create as `dcvd product`, with its rules; bad input 400, unknown 404, duplicate 409', async () => {
  const list = await api('GET', '/v1/products');
  assert.equal(list.status, 200);
  assert.deepEqual(list.json, cli(['product', 'list']));
  assert.deepEqual(list.json.map((p: { code: number }) => p.code).slice(0, 2), [801, 803]);
  assert.deepEqual((await api('GET', '/v1/products/801')).json, { code: 801, name: 'VMC', multiDomain: false, maxDomains: 1, wildcard: false, allowedDays: [365, 395] });

  const created = await api('POST', '/v1/products', { code: 362, name: 'DV multi', multiDomain: true, maxDomains: 50, wildcard: true, allowedDays: [90, 365] });
  assert.equal(created.status, 201, created.body);
  assert.deepEqual(created.json, { code: 362, name: 'DV multi', multiDomain: true, maxDomains: 50, wildcard: true, allowedDays: [90, 365] });
  assert.deepEqual((await api('GET', '/v1/products/362')).json, created.json);
  // The defaults of the CLI: single-domain, one domain, no wildcards.
  const single = await api('POST', '/v1/products', { code: 24, name: 'DV', allowedDays: [365] });
  assert.deepEqual(single.json, { code: 24, name: 'DV', multiDomain: false, maxDomains: 1, wildcard: false, allowedDays: [365] });
  assert.ok(cli(['product', 'list']).some((p: { code: number }) => p.code === 362), 'the CLI sees what the API created');

  const bad: [unknown, RegExp?][] = [
    [{ name: 'x', allowedDays: [365] }, /code/],
    [{ code: 0, name: 'x', allowedDays: [365] }, /code/],
    [{ code: 'abc', name: 'x', allowedDays: [365] }, /code/],
    [{ code: 900, allowedDays: [365] }, /name/],
    [{ code: 900, name: '', allowedDays: [365] }, /name/],
    [{ code: 900, name: 'x'.repeat(129), allowedDays: [365] }, /name/],
    [{ code: 900, name: 'bad\u0001name', allowedDays: [365] }, /name must be one line without control characters/],
    // Not trimmed away: a line break at the end is a mistake in the caller's input; C1 controls and separators too.
    [{ code: 900, name: 'DV\n', allowedDays: [365] }, /name must be one line/],
    [{ code: 900, name: 'DV\u0085', allowedDays: [365] }, /name must be one line/],
    [{ code: 900, name: 'DV\u2028x', allowedDays: [365] }, /name must be one line/],
    // Names that look like others: a zero-width space, a bidi override, a lone surrogate.
    [{ code: 900, name: 'DV\u200b', allowedDays: [365] }, /invisible characters/],
    [{ code: 900, name: '\u202eVD', allowedDays: [365] }, /invisible characters/],
    [{ code: 900, name: 'DV\ud800', allowedDays: [365] }, /invisible characters/],
    [{ code: 900, name: '   ', allowedDays: [365] }, /name must be 1 to 128 characters/],
    [{ code: 900, name: 'x' }, /allowedDays/],
    [{ code: 900, name: 'x', allowedDays: [] }, /allowedDays/],
    [{ code: 900, name: 'x', allowedDays: [0] }, /allowedDays/],
    [{ code: 900, name: 'x', allowedDays: [3651] }, /allowedDays/],
    [{ code: 900, name: 'x', allowedDays: [365], maxDomains: 251 }, /maxDomains/],
    [{ code: 900, name: 'x', allowedDays: [365], maxDomains: 5 }, /single-domain/],
    [{ code: 900, name: 'x', allowedDays: [365], colour: 'red' }],
  ];
  for (const [body, message] of bad) assertError(await api('POST', '/v1/products', body), 400, 'invalid_request', message);
  assertError(await api('POST', '/v1/products', undefined, { raw: '{"code":' }), 400, 'invalid_request');
  assertError(await api('POST', '/v1/products', { code: 362, name: 'again', allowedDays: [365] }), 409, 'conflict', /already exists/);
  assertError(await api('GET', '/v1/products/999'), 404, 'not_found', /no product 999/);
  assertError(await api('GET', '/v1/products/abc'), 400, 'invalid_request');
  assertError(await api('GET', '/v1/products', undefined, { token: null }), 401, 'unauthorized');
  assertError(await api('POST', '/v1/products', { code: 901, name: 'x', allowedDays: [365] }, { token: null }), 401, 'unauthorized');
  assert.equal((await api('GET', '/v1/products/900')).status, 404, 'no refused request stored a product');
  assert.equal((await api('GET', '/v1/products/901')).status, 404);
});

// Found by fuzzing a live server (2026-12-04): the creates checked that the object did not exist, then inserted,
// and a create of the same object between the two got the database's unique-key error as a 500; on PostgreSQL two
// cancels at once both answered 200, and two accounts could start one chain at once.
test('concurrent creates of one object: one 201, the others 409, never a 500; one cancel wins; a chain stays one account\u2019s', async () => {
  const statuses = async (n: number, send: (i: number) => Promise<ApiResult>) => {
    const all = await Promise.all(Array.from({ length: n }, (_, i) => send(i)));
    for (const r of all) assert.ok(r.status < 500, r.body);
    return all.map((r) => r.status).sort();
  };
  const oneCreated = (got: number[], what: string) => assert.deepEqual(got, [201, ...Array(got.length - 1).fill(409)], what);
  oneCreated(await statuses(12, () => api('POST', '/v1/accounts', { login: 'racer', password: 'a long enough password' })), 'accounts');
  oneCreated(await statuses(12, () => api('POST', '/v1/products', { code: 4711, name: 'Race', allowedDays: [365] })), 'products');
  oneCreated(await statuses(12, () => api('POST', '/v1/templates', { global: true, id: 4711, subject: 'Race {{domain}}', text: 'Code {{validationCode}}' })), 'templates');

  const order = await api('POST', '/v1/orders', { account: 'alice', domain: 'race.example.org' });
  assert.equal(order.status, 201, order.body);
  assert.deepEqual(await statuses(8, () => api('POST', `/v1/orders/${order.json.orderNumber}/cancel`)), [200, ...Array(7).fill(409)], 'cancels');

  // Renewals of a chain no order has yet, for two accounts at once: the chain is the first one's.
  const base = 71_000_001;
  const created = await Promise.all(
    Array.from({ length: 10 }, (_, i) => api('POST', '/v1/orders', { account: i % 2 === 0 ? 'alice' : 'racer', domain: 'chain.example.org', baseOrderNumber: base })),
  );
  for (const r of created) assert.ok(r.status === 201 || (r.status === 400 && /belongs to another account/.test(r.json.error.message)), r.body);
  const owners = new Set(created.filter((r) => r.status === 201).map((r) => r.json.account));
  assert.equal(owners.size, 1, `one account's chain: ${[...owners].join(', ')}`);
  const rows = await server.store.db.selectFrom('orders').select('account_id').distinct().where('base_order_number', '=', base).execute();
  assert.equal(rows.length, 1);
});
