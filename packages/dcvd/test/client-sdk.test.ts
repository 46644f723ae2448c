/**
 * @dcvd/client against a real dcvd (CONTRACT §11): the SDK's own code over
 * real HTTPS (a node:https fetch that trusts the test server's self-signed
 * certificate — the client's `fetch` option exists for this), every error
 * code dcvd answers on each endpoint, both response formats, and successes
 * that go through the 24-hour registry and the outbox. CollectSSL too (the
 * rest of the flow's SDK calls, on orders placed over the API, are in
 * order-flow.test.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DcvApiError,
  DcvClient,
  DcvRequestError,
  ErrorCode,
  errorMessage,
  type DcvClientOptions,
  type Endpoint,
  type FetchInitLike,
  type FetchLike,
  type ResponseFormat,
} from '@dcvd/client';
import { cryptoRandom, ManualClock } from '../src/deps.ts';
import { parseResolvers } from '../src/dns/client.ts';
import { nodeFetch } from '../src/cli/node-fetch.ts';
import { startTestDnsServer, type TestDnsServer } from './support/dns-server.ts';
import { PASSWORD, startTestServer, type TestServer } from './support/server.ts';
import { OrderRepository } from '../src/orders/orders.ts';
import { createOrder } from './support/dcv.ts';

const clock = new ManualClock(Date.UTC(2026, 10, 23, 12));
let dns: TestDnsServer;
let s: TestServer;
let https: FetchLike;

before(async () => {
  dns = await startTestDnsServer();
  s = await startTestServer(
    {
      httpListen: { host: '127.0.0.1', port: 0 },
      trustProxy: ['127.0.0.2/32'],
      dnsServers: parseResolvers(dns.address),
      dnsTimeoutMs: 300,
      dnsAttempts: 1,
      emailDcv: { blocklist: ['blocked.example.com'], cutoff: Date.UTC(2028, 2, 15) },
    },
    { clock },
  );
  https = nodeFetch({ ca: s.cert });
  await s.createAccount('alice');
  await s.createAccount('nobody', { permissions: [] });
});
after(async () => {
  await s.stop();
  await dns.close();
});

const baseUrl = () => `https://127.0.0.1:${s.https.port}`;

function client(opts: Partial<DcvClientOptions> = {}): DcvClient {
  return new DcvClient({ baseUrl: baseUrl(), loginName: 'alice', loginPassword: PASSWORD, fetch: https, ...opts });
}

/**
 * Requests a well-formed client never sends (-2, -17) are made by altering
 * the client's request on its way, as a broken proxy would; the answer is
 * still read by the client's own code.
 */
function altered(change: (init: FetchInitLike) => FetchInitLike): FetchLike {
  return (url, init) => https(url, change(init));
}
const withUnknownParam = altered((init) => ({ ...init, body: `${init.body}&Bogus=1` }));
const asGet = altered((init) => ({ ...init, method: 'GET' as 'POST' }));

async function apiError(call: Promise<unknown>): Promise<DcvApiError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof DcvApiError) return err;
    throw err;
  }
  assert.fail('the call succeeded');
}

function assertError(err: DcvApiError, endpoint: Endpoint, code: number, item?: string, format: ResponseFormat = 2): void {
  assert.equal(err.endpoint, endpoint);
  assert.equal(err.code, code);
  // The text format carries no errorItem, and GetDCVEmailAddressList's -2 message names no parameter.
  const itemLost = endpoint === 'GetDCVEmailAddressList' && code === -2 && format === 1;
  assert.equal(err.item, CODES_WITH_ITEM.has(code) && !itemLost ? item : undefined);
  // The seed's text, xxxx replaced (the -90 message names the endpoint, without an errorItem).
  assert.equal(err.message, errorMessage(endpoint, code, code === -90 ? endpoint : item));
  assert.ok(!err.message.includes(PASSWORD));
}
const CODES_WITH_ITEM = new Set([-2, -3, -4]);

describe('GetDCVEmailAddressList', () => {
  const five = (d: string) => ['admin', 'administrator', 'hostmaster', 'postmaster', 'webmaster'].map((l) => `${l}@${d}`);

  test('text (the server\u2019s default) and responseFormat 1: levels, emails, domain_name', async () => {
    for (const responseFormat of [undefined, 1] as const) {
      const list = await client().getDcvEmailAddressList({ domainName: 'WWW.Example.COM.', product: 801, responseFormat });
      assert.deepEqual(list, {
        domainName: 'www.example.com',
        levels: { 2: five('example.com'), 3: five('www.example.com') },
        emails: [...five('example.com'), ...five('www.example.com')],
        whoisEmails: [],
        extra: {},
      });
    }
  });

  test('JSON (responseFormat 2) adds the DNS contacts, in the same shape', async () => {
    dns.setTxt('_validation-contactemail.example.org', [['owner@example.net']]);
    const list = await client().getDcvEmailAddressList({ domainName: 'shop.example.org', product: 803, responseFormat: 2 });
    assert.equal(list.domainName, 'shop.example.org');
    assert.deepEqual(list.levels[2], [...five('example.org'), 'owner@example.net']);
    assert.deepEqual(list.levels[3], five('shop.example.org'));
    assert.equal(list.emails.length, 11);
    const text = await client().getDcvEmailAddressList({ domainName: 'shop.example.org', product: 803 });
    assert.ok(!text.emails.includes('owner@example.net'), 'text returns the constructed addresses only');
  });

  test('the default global fetch works too (plain listener behind a trusted TLS proxy on 127.0.0.2)', async () => {
    // Not the SDK's business to add X-Forwarded-Proto; the wrapper plays the proxy.
    const proxy: FetchLike = (url, init) => {
      const u = new URL(url);
      return proxied(u.pathname, init);
    };
    const proxied = (path: string, init: FetchInitLike) =>
      s.request({ path, method: init.method, body: init.body, localAddress: '127.0.0.2', plain: true, headers: { ...init.headers, 'x-forwarded-proto': 'https' } }).then((r) => ({
        status: r.status,
        text: async () => r.body,
      }));
    const list = await client({ baseUrl: `http://127.0.0.1:${s.http!.port}`, fetch: proxy }).getDcvEmailAddressList({ domainName: 'example.com', product: 801 });
    assert.deepEqual(list.levels, { 2: five('example.com') });
    // And the global fetch itself, to the plain listener from an untrusted address: the seed's -1.
    const err = await apiError(client({ baseUrl: `http://127.0.0.1:${s.http!.port}`, fetch: undefined }).getDcvEmailAddressList({ domainName: 'example.com', product: 801 }));
    assertError(err, 'GetDCVEmailAddressList', ErrorCode.NotHttps);
  });

  for (const responseFormat of [1, 2] as const satisfies readonly ResponseFormat[]) {
    describe(`every error code dcvd answers, responseFormat ${responseFormat}`, () => {
      const get = (domainName: string, extra: Partial<DcvClientOptions> = {}, product: number | null = 801) =>
        apiError(client(extra).getDcvEmailAddressList({ domainName, product: product ?? undefined, responseFormat }));
      const check = (err: DcvApiError, code: number, item?: string) => assertError(err, 'GetDCVEmailAddressList', code, item, responseFormat);

      test('-1 over plain HTTP', async () => {
        check(await get('example.com', { baseUrl: `http://127.0.0.1:${s.http!.port}` }), ErrorCode.NotHttps);
      });
      test('-2 an unknown parameter (item as sent)', async () => {
        check(await get('example.com', { fetch: withUnknownParam }), ErrorCode.UnrecognisedArgument, 'Bogus');
      });
      test('product omitted is fine (CONTRACT §1, revised); -3 domainName empty', async () => {
        const list = await client().getDcvEmailAddressList({ domainName: 'example.com', responseFormat });
        assert.deepEqual(list.levels[2], five('example.com'));
        check(await get(''), ErrorCode.MissingArgument, 'domainName');
      });
      test('-4 domain name, product, length', async () => {
        check(await get('a..example.com'), ErrorCode.InvalidArgument, 'domainName');
        check(await get('example.com', {}, 800), ErrorCode.InvalidArgument, 'product');
        check(await get(`${'a'.repeat(250)}.com`), ErrorCode.InvalidArgument, 'domainName');
        check(await get('example.com', { loginName: 'x'.repeat(65) }), ErrorCode.InvalidArgument, 'loginName');
      });
      test('-14 a body over the limit, with HTTP 200', async () => {
        const err = await get('a'.repeat(70_000));
        check(err, ErrorCode.UnknownError);
        assert.equal(err.status, 200);
      });
      test('-16 wrong password, unknown login', async () => {
        check(await get('example.com', { loginPassword: 'not the password at all' }), ErrorCode.IncorrectLogin);
        check(await get('example.com', { loginName: 'mallory' }), ErrorCode.IncorrectLogin);
      });
      test('-17 not POST', async () => {
        check(await get('example.com', { fetch: asGet }), ErrorCode.NotPost);
      });
      test('-19 a public IP address, -37 an intranet name or address', async () => {
        check(await get('8.8.8.8'), ErrorCode.PublicIpAddress);
        check(await get('fileserver.intranet'), ErrorCode.IntranetName);
        check(await get('10.1.2.3'), ErrorCode.IntranetName);
      });
      test('-91 no auto-apply permission', async () => {
        check(await get('example.com', { loginName: 'nobody' }), ErrorCode.AutoApplyPermissionDenied);
      });
      test('-160 refused by the operator\u2019s policy', async () => {
        check(await get('www.blocked.example.com'), ErrorCode.RequestUnsuccessful);
      });
    });
  }
});

describe('ResendDCVEmail', () => {
  const check = (err: DcvApiError, code: number, item?: string) => assertError(err, 'ResendDCVEmail', code, item);
  const resend = (order: { orderNumber?: number; baseOrderNumber?: number }, opts: { dcvEmailAddress?: string; dcvTemplateId?: number } = {}, extra: Partial<DcvClientOptions> = {}) =>
    client(extra).resendDcvEmail(order as { orderNumber: number }, opts);

  test('success (errorCode=0) for an offered address, by order number and by base order number; then -160 within the interval', async () => {
    const order = await createOrder(s, clock, 'alice', { domain: 'mail.example.net', orderNumber: 5100001, baseOrderNumber: 5100000 });
    const list = await client().getDcvEmailAddressList({ domainName: 'mail.example.net', product: 801 });
    assert.deepEqual(await resend({ orderNumber: order.order_number }, { dcvEmailAddress: list.levels[3]![0] }), { extra: {} });
    // Too soon for another one: the seed's -160.
    check(await apiError(resend({ baseOrderNumber: 5100000 })), ErrorCode.RequestUnsuccessful);
    clock.advance(24 * 3600_000 - 60_000);
    // Resent to the last address (dcvEmailAddress omitted), found through the chain.
    assert.deepEqual(await resend({ baseOrderNumber: 5100000 }), { extra: {} });
  });

  test('-1 over plain HTTP', async () => {
    check(await apiError(resend({ orderNumber: 1 }, {}, { baseUrl: `http://127.0.0.1:${s.http!.port}` })), ErrorCode.NotHttps);
  });
  test('-2 an unknown parameter (item as sent)', async () => {
    check(await apiError(resend({ orderNumber: 1 }, {}, { fetch: withUnknownParam })), ErrorCode.UnrecognisedArgument, 'Bogus');
  });
  test('-3 no order number (an untyped caller), no address for an order that never had one', async () => {
    check(await apiError(resend({})), ErrorCode.MissingArgument, 'orderNumber');
    await createOrder(s, clock, 'alice', { domain: 'new.example.net', orderNumber: 5200001 });
    check(await apiError(resend({ orderNumber: 5200001 })), ErrorCode.MissingArgument, 'dcvEmailAddress');
  });
  test('-4 an unknown order, an address never offered, an unknown template, a non-integer', async () => {
    check(await apiError(resend({ orderNumber: 987654321 })), ErrorCode.InvalidArgument, 'orderNumber');
    check(await apiError(resend({ baseOrderNumber: 987654321 })), ErrorCode.InvalidArgument, 'baseOrderNumber');
    await createOrder(s, clock, 'alice', { domain: 'other.example.net', orderNumber: 5300001 });
    check(await apiError(resend({ orderNumber: 5300001 }, { dcvEmailAddress: 'someone@example.com' })), ErrorCode.InvalidArgument, 'dcvEmailAddress');
    check(await apiError(resend({ orderNumber: 5300001 }, { dcvTemplateId: 77 })), ErrorCode.InvalidArgument, 'dcvTemplateID');
    check(await apiError(resend({ orderNumber: 1.5 })), ErrorCode.InvalidArgument, 'orderNumber');
  });
  test('-14 a body over the limit, with HTTP 200', async () => {
    const err = await apiError(resend({ orderNumber: 1 }, { dcvEmailAddress: `${'a'.repeat(70_000)}@example.com` }));
    check(err, ErrorCode.UnknownError);
    assert.equal(err.status, 200);
  });
  test('-16 wrong password', async () => {
    check(await apiError(resend({ orderNumber: 1 }, {}, { loginPassword: 'not the password at all' })), ErrorCode.IncorrectLogin);
  });
  test('-17 not POST', async () => {
    check(await apiError(resend({ orderNumber: 1 }, {}, { fetch: asGet })), ErrorCode.NotPost);
  });
  test('-90 a voucher order without the voucher permission (the message names the endpoint, no errorItem)', async () => {
    await createOrder(s, clock, 'alice', { domain: 'voucher.example.net', orderNumber: 5400001, voucher: true });
    await client().getDcvEmailAddressList({ domainName: 'voucher.example.net', product: 801 });
    check(await apiError(resend({ orderNumber: 5400001 }, { dcvEmailAddress: 'admin@example.net' })), ErrorCode.VoucherPermissionDenied);
  });
});

describe('CollectSSL', () => {
  const collect = (order: { orderNumber?: number; certificateID?: number; baseOrderNumber?: number }, responseFormat: 0 | 1, extra: Partial<DcvClientOptions> = {}) =>
    client(extra).collectSsl(order as { orderNumber: number }, { responseFormat, showStatusDetails: true, showFQDN: true });

  test('an order placed outside the API (no certificate ID): not started, then in progress once its email is sent; both forms', async () => {
    const order = await createOrder(s, clock, 'alice', { domain: 'status.example.net', orderNumber: 5500001, baseOrderNumber: 5500000 });
    const notStarted = { statusCode: 0, orderNumber: order.order_number, dcvStatus: 0, fqdn: 'status.example.net', extra: {}, lines: [] };
    assert.deepEqual(await collect({ orderNumber: 5500001 }, 1), notStarted);
    assert.deepEqual(await collect({ baseOrderNumber: 5500000 }, 1), notStarted);
    assert.deepEqual(await collect({ orderNumber: 5500001 }, 0), { statusCode: 0, extra: {}, lines: [] });
    const list = await client().getDcvEmailAddressList({ domainName: 'status.example.net' });
    await client().resendDcvEmail({ orderNumber: 5500001 }, { dcvEmailAddress: list.emails[0] });
    assert.deepEqual(await collect({ orderNumber: 5500001 }, 1), { ...notStarted, dcvStatus: 2 });
  });

  for (const responseFormat of [0, 1] as const) {
    describe(`every error code dcvd answers, responseFormat ${responseFormat}`, () => {
      const fails = async (order: { orderNumber?: number; certificateID?: number; baseOrderNumber?: number }, code: number, item?: string, extra: Partial<DcvClientOptions> = {}) =>
        assertError(await apiError(collect(order, responseFormat, extra)), 'CollectSSL', code, item);

      test('-1 over plain HTTP, -2 an unknown parameter, -3 no order (an untyped caller)', async () => {
        await fails({ orderNumber: 1 }, ErrorCode.NotHttps, undefined, { baseUrl: `http://127.0.0.1:${s.http!.port}` });
        await fails({ orderNumber: 1 }, ErrorCode.UnrecognisedArgument, 'Bogus', { fetch: withUnknownParam });
        await fails({}, ErrorCode.MissingArgument, 'orderNumber');
      });
      test('-4 an unknown order, certificate ID or chain, a non-integer', async () => {
        await fails({ orderNumber: 987654321 }, ErrorCode.InvalidArgument, 'orderNumber');
        await fails({ certificateID: 987654321 }, ErrorCode.InvalidArgument, 'certificateID');
        await fails({ baseOrderNumber: 987654321 }, ErrorCode.InvalidArgument, 'baseOrderNumber');
        await fails({ orderNumber: 1.5 }, ErrorCode.InvalidArgument, 'orderNumber');
      });
      test('-14 a body over the limit (answered in text, the form of a request not read), with HTTP 200', async () => {
        const huge = altered((init) => ({ ...init, body: `${init.body}&responseType=${'a'.repeat(70_000)}` }));
        const err = await apiError(collect({ orderNumber: 1 }, responseFormat, { fetch: huge }));
        assertError(err, 'CollectSSL', ErrorCode.UnknownError);
        assert.equal(err.status, 200);
      });
      test('-16 wrong password, -17 not POST', async () => {
        await fails({ orderNumber: 1 }, ErrorCode.IncorrectLogin, undefined, { loginPassword: 'not the password at all' });
        await fails({ orderNumber: 1 }, ErrorCode.NotPost, undefined, { fetch: asGet });
      });
      test('-20 an order the operator cancelled', async () => {
        const orderNumber = 5600001 + responseFormat;
        await createOrder(s, clock, 'alice', { domain: 'cancelled.example.net', orderNumber });
        await new OrderRepository(s.store.db, clock, cryptoRandom).cancel(orderNumber);
        await fails({ orderNumber }, ErrorCode.OrderRejected);
      });
    });
  }
});

test('a dcvd that is not there, or not trusted: DcvRequestError, no password in it', async () => {
  const refused = client({ baseUrl: 'https://127.0.0.1:1' });
  await assert.rejects(refused.resendDcvEmail({ orderNumber: 1 }), (err: unknown) => {
    assert.ok(err instanceof DcvRequestError && err.kind === 'network');
    assert.match(err.message, /ECONNREFUSED/);
    return true;
  });
  // The system's trust store does not know the self-signed certificate.
  await assert.rejects(client({ fetch: nodeFetch() }).getDcvEmailAddressList({ domainName: 'example.com', product: 801 }), (err: unknown) => {
    assert.ok(err instanceof DcvRequestError && err.kind === 'network');
    assert.match(err.message, /self[- ]signed certificate/);
    assert.ok(!err.message.includes(PASSWORD));
    return true;
  });
});
