/**
 * DcvClient at its fetch interface: what it sends, retries (GetDCVEmailAddressList
 * only, network failures only), timeouts and abort, and that the password stays
 * out of every error. Round trips against a real dcvd are in
 * packages/dcvd/test/client-sdk.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import {
  DEFAULT_BASE_URL,
  DcvApiError,
  DcvClient,
  DcvRequestError,
  ErrorCode,
  type DcvClientOptions,
  type FetchInitLike,
  type FetchLike,
} from '../src/index.ts';

const PASSWORD = 'Tr0ub4dor & 3 = +secret/é';
const LIST = '0\ndomain_name\texample.com\nlevel2_email\tadmin@example.com\n';

interface Call {
  url: string;
  init: FetchInitLike;
}

/** A fetch that records its calls and answers with the next of `steps` (a body, or an error to throw, or a function). */
function scripted(steps: (string | Error | ((init: FetchInitLike) => Promise<Response>))[]) {
  const calls: Call[] = [];
  const fetch: FetchLike = async (url, init) => {
    calls.push({ url, init });
    const step = steps[Math.min(calls.length - 1, steps.length - 1)];
    if (step instanceof Error) throw step;
    if (typeof step === 'function') return step(init);
    return new Response(step ?? '', { status: 200 });
  };
  return { calls, fetch };
}

function client(fetch: FetchLike, opts: Partial<DcvClientOptions> = {}) {
  return new DcvClient({ baseUrl: 'https://dcvd.test:8443/', loginName: 'demo', loginPassword: PASSWORD, fetch, ...opts });
}

/** A fetch that never answers until its signal aborts, as a stalled server. */
const stalled = (init: FetchInitLike) =>
  new Promise<Response>((_, reject) => {
    init.signal.addEventListener('abort', () => reject(new DOMException('This operation was aborted', 'AbortError')));
  });

test('GetDCVEmailAddressList: one POST of a form body, canonical names in the seed\u2019s order', async () => {
  const f = scripted([LIST]);
  const result = await client(f.fetch).getDcvEmailAddressList({ responseFormat: 2, product: 803, domainName: 'www.example.com' });
  assert.deepEqual(result.levels, { 2: ['admin@example.com'] });
  assert.equal(f.calls.length, 1);
  const { url, init } = f.calls[0]!;
  assert.equal(url, 'https://dcvd.test:8443/products/!GetDCVEmailAddressList');
  assert.equal(init.method, 'POST');
  assert.equal(init.redirect, 'manual');
  assert.equal(init.headers['content-type'], 'application/x-www-form-urlencoded');
  assert.deepEqual([...new URLSearchParams(init.body)], [
    ['loginName', 'demo'],
    ['loginPassword', PASSWORD],
    ['domainName', 'www.example.com'],
    ['product', '803'],
    ['responseFormat', '2'],
  ]);
});

test('an omitted product or responseFormat is not sent (the server decides)', async () => {
  const f = scripted([LIST]);
  await client(f.fetch).getDcvEmailAddressList({ domainName: 'example.com' });
  assert.deepEqual([...new URLSearchParams(f.calls[0]!.init.body).keys()], ['loginName', 'loginPassword', 'domainName']);
});

test('ResendDCVEmail: orderNumber or baseOrderNumber, dcvTemplateId sent as dcvTemplateID', async () => {
  const f = scripted(['errorCode=0']);
  const c = client(f.fetch);
  await c.resendDcvEmail({ orderNumber: 1234567 });
  await c.resendDcvEmail({ baseOrderNumber: 99 }, { dcvEmailAddress: 'admin@example.com', dcvTemplateId: 3 });
  assert.equal(f.calls[0]!.url, 'https://dcvd.test:8443/products/!ResendDCVEmail');
  assert.equal(f.calls[0]!.init.body, `loginName=demo&loginPassword=${new URLSearchParams({ p: PASSWORD }).toString().slice(2)}&orderNumber=1234567`);
  assert.deepEqual(Object.fromEntries(new URLSearchParams(f.calls[1]!.init.body)), {
    loginName: 'demo',
    loginPassword: PASSWORD,
    baseOrderNumber: '99',
    dcvEmailAddress: 'admin@example.com',
    dcvTemplateID: '3',
  });
});

test('AutoApplyOrder: the real host\u2019s required serverSoftware and isCustomerValidated are sent; errorCode=1 is a placed order awaiting payment', async () => {
  const placed = 'errorCode=0&orderNumber=1234567&certificateID=7654321&totalCost=0.00&expectedDeliveryTime=0';
  const unpaid = 'errorCode=1&orderNumber=1234568&certificateID=7654322&totalCost=12.34&expectedDeliveryTime=0';
  const f = scripted([placed, unpaid, 'errorCode=-4&errorMessage=The+value+of+the+%27csr%27+argument+is+invalid%21&errorItem=csr']);
  const c = client(f.fetch);
  const first = await c.autoApplyOrder({ product: 287, days: 365, csr: 'CSR' });
  assert.deepEqual(first, { paymentRequired: false, orderNumber: 1234567, certificateID: 7654321, totalCost: '0.00', expectedDeliveryTime: 0 });
  const sent = Object.fromEntries(new URLSearchParams(f.calls[0]!.init.body));
  assert.equal(f.calls[0]!.url, 'https://dcvd.test:8443/products/!AutoApplyOrder');
  assert.equal(sent.serverSoftware, '-1');
  assert.equal(sent.isCustomerValidated, 'N');
  assert.equal(sent.responseFormat, '1');
  // The caller's own values win over the defaults.
  const second = await c.autoApplyOrder({ product: 287, days: 365, csr: 'CSR', serverSoftware: 2, isCustomerValidated: 'Y' });
  assert.deepEqual(second, { paymentRequired: true, orderNumber: 1234568, certificateID: 7654322, totalCost: '12.34', expectedDeliveryTime: 0 });
  const sent2 = Object.fromEntries(new URLSearchParams(f.calls[1]!.init.body));
  assert.equal(sent2.serverSoftware, '2');
  assert.equal(sent2.isCustomerValidated, 'Y');
  // Below 0 stays an error; and no call was retried.
  await assert.rejects(c.autoApplyOrder({ product: 287, days: 365, csr: 'CSR' }), (err: unknown) => err instanceof DcvApiError && err.code === -4);
  assert.equal(f.calls.length, 3);
});

test('CollectSSL: posted to /products/download/CollectSSL, queryType 0 and responseFormat 1 unless told, show flags as Y/N only when given', async () => {
  const f = scripted(['errorCode=0&orderNumber=1234567&certificateID=7654321&dcvStatus=2&fqdn=www.example.com']);
  const c = client(f.fetch);
  const status = await c.collectSsl({ orderNumber: 1234567 }, { showStatusDetails: true, showFQDN: false });
  assert.deepEqual(status, { statusCode: 0, orderNumber: 1234567, certificateID: 7654321, dcvStatus: 2, fqdn: 'www.example.com', extra: {}, lines: [] });
  assert.equal(f.calls[0]!.url, 'https://dcvd.test:8443/products/download/CollectSSL');
  assert.deepEqual([...new URLSearchParams(f.calls[0]!.init.body)], [
    ['loginName', 'demo'],
    ['loginPassword', PASSWORD],
    ['orderNumber', '1234567'],
    ['queryType', '0'],
    ['responseFormat', '1'],
    ['showStatusDetails', 'Y'],
    ['showFQDN', 'N'],
  ]);
  // By certificate ID or by the chain, the caller's queryType and responseFormat; no flag sent unless given.
  await c.collectSsl({ certificateID: 7654321 }, { queryType: 2, responseFormat: 0 });
  await c.collectSsl({ baseOrderNumber: 99 });
  assert.deepEqual(Object.fromEntries(new URLSearchParams(f.calls[1]!.init.body)), { loginName: 'demo', loginPassword: PASSWORD, certificateID: '7654321', queryType: '2', responseFormat: '0' });
  assert.deepEqual(Object.fromEntries(new URLSearchParams(f.calls[2]!.init.body)), { loginName: 'demo', loginPassword: PASSWORD, baseOrderNumber: '99', queryType: '0', responseFormat: '1' });
  // The real host's path at the default base URL.
  const d = scripted(['0\n']);
  assert.deepEqual(await new DcvClient({ loginName: 'a', loginPassword: 'b', fetch: d.fetch }).collectSsl({ orderNumber: 1 }, { responseFormat: 0 }), { statusCode: 0, extra: {}, lines: [] });
  assert.equal(d.calls[0]!.url, 'https://secure.trust-provider.com/products/download/CollectSSL');
});

test('CollectSSL: -20 (a cancelled or declined order) is a DcvApiError in either form; never retried, even with retries configured', async () => {
  for (const body of ['errorCode=-20&errorMessage=The+order+was+rejected+or+cancelled.', '-20\nThe order was rejected or cancelled.\n']) {
    const f = scripted([body]);
    await assert.rejects(client(f.fetch).collectSsl({ orderNumber: 1 }), (err: unknown) => {
      assert.ok(err instanceof DcvApiError);
      assert.equal(err.endpoint, 'CollectSSL');
      assert.equal(err.code, ErrorCode.OrderRejected);
      assert.equal(err.message, 'The order was rejected or cancelled.');
      assert.equal(err.item, undefined);
      return true;
    });
  }
  const refused = scripted([new TypeError('fetch failed'), 'errorCode=0']);
  await assert.rejects(client(refused.fetch, { retries: 5, retryDelayMs: 1 }).collectSsl({ orderNumber: 1 }), { name: 'DcvRequestError', kind: 'network', endpoint: 'CollectSSL', attempts: 1 });
  const stalls = scripted([stalled, 'errorCode=0']);
  await assert.rejects(client(stalls.fetch, { retries: 5, retryDelayMs: 1, timeoutMs: 30 }).collectSsl({ orderNumber: 1 }), { kind: 'timeout' });
  assert.equal(refused.calls.length, 1);
  assert.equal(stalls.calls.length, 1);
});

test('the default base URL is the seeds\u2019 reseller host; a path prefix is kept', async () => {
  assert.equal(DEFAULT_BASE_URL, 'https://secure.trust-provider.com');
  const f = scripted(['errorCode=0']);
  await new DcvClient({ loginName: 'a', loginPassword: 'b', fetch: f.fetch }).resendDcvEmail({ orderNumber: 1 });
  assert.equal(f.calls[0]!.url, 'https://secure.trust-provider.com/products/!ResendDCVEmail');
  await client(f.fetch, { baseUrl: 'https://gw.example/dcv//' }).resendDcvEmail({ orderNumber: 1 });
  assert.equal(f.calls[1]!.url, 'https://gw.example/dcv/products/!ResendDCVEmail');
});

test('constructor rejects what cannot work, without echoing the password', () => {
  const f = scripted([]);
  assert.throws(() => client(f.fetch, { baseUrl: 'ftp://x' }), /https:/);
  assert.throws(() => client(f.fetch, { baseUrl: 'not a url' }), /not a URL/);
  assert.throws(() => client(f.fetch, { baseUrl: `https://demo:${encodeURIComponent(PASSWORD)}@host` }), (err: Error) => {
    assert.match(err.message, /must not carry credentials/);
    assert.ok(!err.message.includes('secret'));
    return true;
  });
  assert.throws(() => client(f.fetch, { timeoutMs: -1 }), /timeoutMs/);
  assert.throws(() => client(f.fetch, { retries: 1.5 }), /retries/);
  assert.throws(() => new DcvClient({ loginName: 'a', loginPassword: undefined as unknown as string, fetch: f.fetch }), /must be strings/);
});

test('network failures of GetDCVEmailAddressList are retried only when asked, with a growing pause', async () => {
  const refused = new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:8443') });
  const noRetry = scripted([refused, LIST]);
  await assert.rejects(client(noRetry.fetch).getDcvEmailAddressList({ domainName: 'a.com', product: 801 }), (err: unknown) => {
    assert.ok(err instanceof DcvRequestError);
    assert.equal(err.kind, 'network');
    assert.equal(err.attempts, 1);
    assert.match(err.message, /^GetDCVEmailAddressList: request to https:\/\/dcvd\.test:8443\/products\/!GetDCVEmailAddressList failed: fetch failed: connect ECONNREFUSED/);
    return true;
  });
  assert.equal(noRetry.calls.length, 1);

  const twice = scripted([refused, refused, LIST]);
  const started = Date.now();
  const result = await client(twice.fetch, { retries: 2, retryDelayMs: 40 }).getDcvEmailAddressList({ domainName: 'a.com', product: 801 });
  assert.deepEqual(result.emails, ['admin@example.com']);
  assert.equal(twice.calls.length, 3);
  assert.ok(Date.now() - started >= 40 + 80 - 5, 'paused 40 ms, then 80 ms');

  const exhausted = scripted([refused]);
  await assert.rejects(client(exhausted.fetch, { retries: 2, retryDelayMs: 1 }).getDcvEmailAddressList({ domainName: 'a.com', product: 801 }), (err: unknown) => {
    assert.ok(err instanceof DcvRequestError && err.kind === 'network' && err.attempts === 3);
    return true;
  });
  assert.equal(exhausted.calls.length, 3);
});

test('an answer of the server is never retried, whatever its code or status', async () => {
  for (const step of ['-14\nAn unknown error occurred!\n', '<html>502 Bad Gateway</html>']) {
    const f = scripted([step, LIST]);
    await assert.rejects(client(f.fetch, { retries: 3, retryDelayMs: 1 }).getDcvEmailAddressList({ domainName: 'a.com', product: 801 }));
    assert.equal(f.calls.length, 1, step);
  }
});

test('ResendDCVEmail is never retried, even with retries configured', async () => {
  const f = scripted([new TypeError('fetch failed'), 'errorCode=0']);
  await assert.rejects(client(f.fetch, { retries: 5, retryDelayMs: 1 }).resendDcvEmail({ orderNumber: 1 }), (err: unknown) => {
    assert.ok(err instanceof DcvRequestError && err.kind === 'network' && err.endpoint === 'ResendDCVEmail');
    return true;
  });
  const t = scripted([stalled, 'errorCode=0']);
  await assert.rejects(client(t.fetch, { retries: 5, retryDelayMs: 1, timeoutMs: 30 }).resendDcvEmail({ orderNumber: 1 }), { name: 'DcvRequestError', kind: 'timeout' });
  assert.equal(f.calls.length, 1);
  assert.equal(t.calls.length, 1);
});

test('timeouts abort the request through its signal; GetDCVEmailAddressList retries them when asked', async () => {
  const f = scripted([stalled]);
  const started = Date.now();
  await assert.rejects(client(f.fetch, { timeoutMs: 50 }).getDcvEmailAddressList({ domainName: 'a.com', product: 801 }), (err: unknown) => {
    assert.ok(err instanceof DcvRequestError);
    assert.equal(err.kind, 'timeout');
    assert.match(err.message, /no answer from https:\/\/dcvd\.test:8443\/products\/!GetDCVEmailAddressList within 50 ms/);
    return true;
  });
  assert.ok(Date.now() - started < 1000);
  assert.equal(f.calls[0]!.init.signal.aborted, true);

  const retried = scripted([stalled, LIST]);
  const result = await client(retried.fetch, { timeoutMs: 30, retries: 1, retryDelayMs: 1 }).getDcvEmailAddressList({ domainName: 'a.com', product: 801 });
  assert.deepEqual(result.emails, ['admin@example.com']);
  assert.equal(retried.calls.length, 2);
});

test('the timeout also covers reading the body', async () => {
  const slowBody = (init: FetchInitLike) =>
    Promise.resolve({
      status: 200,
      text: () => new Promise<string>((_, reject) => init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')))),
    } as unknown as Response);
  await assert.rejects(client(scripted([slowBody]).fetch, { timeoutMs: 30 }).resendDcvEmail({ orderNumber: 1 }), { kind: 'timeout' });
});

test('the caller\u2019s signal aborts a call, before it starts, in flight, and during a retry pause', async () => {
  const before = scripted([LIST]);
  await assert.rejects(client(before.fetch).getDcvEmailAddressList({ domainName: 'a.com', product: 801, signal: AbortSignal.abort() }), { kind: 'aborted' });
  assert.equal(before.calls.length, 0);

  const inFlight = scripted([stalled]);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 20);
  await assert.rejects(client(inFlight.fetch, { timeoutMs: 0 }).resendDcvEmail({ orderNumber: 1 }, { signal: controller.signal }), { kind: 'aborted', attempts: 1 });

  const pause = scripted([new TypeError('fetch failed'), LIST]);
  const c2 = new AbortController();
  setTimeout(() => c2.abort(), 30);
  const started = Date.now();
  await assert.rejects(
    client(pause.fetch, { retries: 3, retryDelayMs: 10_000 }).getDcvEmailAddressList({ domainName: 'a.com', product: 801, signal: c2.signal }),
    { kind: 'aborted' },
  );
  assert.ok(Date.now() - started < 2000, 'the pause ended at the abort');
  assert.equal(pause.calls.length, 1);
});

test('answers that are not the protocol: a redirect (not followed), an error page, garbage with 200', async () => {
  const redirect = scripted([async () => new Response(null, { status: 302, headers: { location: 'https://elsewhere/' } })]);
  await assert.rejects(client(redirect.fetch).resendDcvEmail({ orderNumber: 1 }), (err: unknown) => {
    assert.ok(err instanceof DcvRequestError && err.kind === 'http' && err.status === 302);
    assert.match(err.message, /redirect \(HTTP 302\), not followed/);
    return true;
  });
  const opaque = scripted([async () => ({ status: 0, type: 'opaqueredirect', text: async () => '' }) as unknown as Response]);
  await assert.rejects(client(opaque.fetch).resendDcvEmail({ orderNumber: 1 }), { kind: 'http', status: 0 });
  const page = scripted([async () => new Response('<html>Bad Gateway</html>', { status: 502 })]);
  await assert.rejects(client(page.fetch).getDcvEmailAddressList({ domainName: 'a.com' }), { kind: 'http', status: 502, message: 'GetDCVEmailAddressList: HTTP 502 without an answer of the protocol' });
  const garbage = scripted(['hello']);
  await assert.rejects(client(garbage.fetch).getDcvEmailAddressList({ domainName: 'a.com' }), { kind: 'protocol', status: 200 });
  await assert.rejects(client(scripted(['{"errorCode":']).fetch).getDcvEmailAddressList({ domainName: 'a.com' }), { kind: 'protocol' });
});

test('the password never appears: not in errors, their causes, messages echoed by a server, or the client object', async () => {
  const encoded = new URLSearchParams({ p: PASSWORD }).toString().slice(2);
  const leaks = (text: string) => text.includes(PASSWORD) || text.includes(encoded) || text.includes(encodeURIComponent(PASSWORD));
  // A fetch whose failure quotes the request body, and servers that echo it back.
  const echoingFetch = scripted([async (init) => Promise.reject(new Error(`could not send ${init.body}`))]);
  const echoText = scripted([`-4\nThe value of '${PASSWORD}' is invalid!\n`]);
  const echoForm = scripted([`errorCode=-2&errorMessage=x&errorItem=${encoded}&errorDetail=${encoded}&other=${encoded}`]);
  const seen: unknown[] = [];
  for (const [f, call] of [
    [echoingFetch, (c: DcvClient) => c.getDcvEmailAddressList({ domainName: 'a.com' })],
    [echoText, (c: DcvClient) => c.getDcvEmailAddressList({ domainName: 'a.com' })],
    [echoForm, (c: DcvClient) => c.resendDcvEmail({ orderNumber: 1 })],
  ] as const) {
    await assert.rejects(call(client(f.fetch)), (err: unknown) => {
      seen.push(err);
      return true;
    });
  }
  const [network, apiText, apiForm] = seen as [DcvRequestError, DcvApiError, DcvApiError];
  assert.equal(network.kind, 'network');
  assert.match(network.message, /could not send loginName=demo&loginPassword=\[redacted\]&domainName=a\.com/);
  assert.equal(apiText.message, "The value of '[redacted]' is invalid!");
  assert.equal(apiForm.item, '[redacted]');
  assert.equal(apiForm.detail, '[redacted]');
  assert.deepEqual(apiForm.extra, { other: '[redacted]' });
  for (const err of seen) {
    assert.ok(!leaks(inspect(err, { depth: 10 })), inspect(err));
    assert.ok(!leaks(JSON.stringify(err)));
  }
  const c = client(scripted([]).fetch);
  assert.ok(!leaks(inspect(c, { showHidden: true, depth: 10 })));
  assert.equal(JSON.stringify(c), '{"baseUrl":"https://dcvd.test:8443","loginName":"demo"}');
});

test('the global fetch is used when none is given', async (t) => {
  const original = globalThis.fetch;
  const f = scripted(['errorCode=0']);
  globalThis.fetch = f.fetch as typeof fetch;
  t.after(() => {
    globalThis.fetch = original;
  });
  await new DcvClient({ loginName: 'a', loginPassword: 'b' }).resendDcvEmail({ orderNumber: 5 });
  assert.equal(f.calls.length, 1);
});
